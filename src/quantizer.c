/*
 * build.c -- from a matrix of vectors to a searchable index.
 *
 * The pipeline, each step in its own file:
 *   1. validate and copy the data (normalised for cosine)         here
 *   2. train leaf centers by k-means, assign every point          kmeans.c
 *   3. order points by leaf (counting sort), keep the id map      here
 *   4. residuals r = x - c_leaf (dot/cosine) or raw x (L2)        here
 *   5. train the PQ codebook on a sample of residuals             pq.c
 *   6. encode every residual with the score-aware loss            aniso.c
 *   7. pack 4-bit codes per leaf for the fast scan                pack.c
 *   8. keep re-ranking data (float or int8 vectors)               here
 *
 * Why L2 quantizes raw vectors with no leaf bias: the squared distance does
 * not decompose into a leaf term plus a residual term the way the inner
 * product does (|q - c - r|² has the cross term <c, r>), and ScaNN makes the
 * same choice for its squared-L2 asymmetric hashing.  The anisotropic loss is
 * defined for inner products only, so L2 uses the reconstruction loss.
 *
 * Small data takes simpler tiers (see avq_build_params in avq.h): below
 * brute_force_below points nothing is trained, below 100k points there is a
 * single leaf whose center is the mean (so residuals are centred).
 */
#include "aniso.h"
#include "avq_internal.h"
#include "index.h"
#include "partition.h"
#include "kmeans.h"
#include "pack.h"
#include "pq.h"
#include "vecmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum { SINGLE_LEAF_BELOW = 100000, MIN_POINTS_PER_LEAF = 16 };

void avq_build_params_init(avq_build_params *p, avq_metric metric) {
    memset(p, 0, sizeof *p);
    p->metric = metric;
    p->num_leaves = 0;
    p->training_sample = 0;
    p->kmeans_iterations = 12;
    p->spherical = -1;
    p->avq_center_eta = 0.0f;
    p->dims_per_block = 2;
    p->bits = 4;
    p->threshold = metric == AVQ_METRIC_L2 ? NAN : 0.2f;
    p->eta = 0.0f;
    p->reorder = AVQ_REORDER_FLOAT;
    p->brute_force_below = 20000;
    p->threads = 0;
    p->seed = 42;
}

void avq_search_params_init(avq_search_params *p) {
    p->k = 10;
    p->leaves_to_search = 0;
    p->pre_reorder = 0;
}

static int validate_params(const avq_build_params *p, size_t n, size_t dim) {
    if (p->metric != AVQ_METRIC_DOT && p->metric != AVQ_METRIC_L2 &&
        p->metric != AVQ_METRIC_COSINE)
        return avq_fail(AVQ_ERR_INVALID, "build: unknown metric %d", (int)p->metric);
    if (p->bits != 4 && p->bits != 8)
        return avq_fail(AVQ_ERR_INVALID, "build: bits must be 4 or 8, got %d", p->bits);
    if (p->dims_per_block < 1 || (size_t)p->dims_per_block > dim)
        return avq_fail(AVQ_ERR_INVALID, "build: dims_per_block must be in [1, %zu], got %d",
                        dim, p->dims_per_block);
    if (p->num_leaves > n)
        return avq_fail(AVQ_ERR_INVALID, "build: num_leaves %zu exceeds the %zu points",
                        p->num_leaves, n);
    if (p->kmeans_iterations < 1 || p->kmeans_iterations > 1000)
        return avq_fail(AVQ_ERR_INVALID, "build: kmeans_iterations must be 1..1000, got %d",
                        p->kmeans_iterations);
    if (p->reorder != AVQ_REORDER_FLOAT && p->reorder != AVQ_REORDER_INT8 &&
        p->reorder != AVQ_REORDER_NONE)
        return avq_fail(AVQ_ERR_INVALID, "build: unknown reorder kind %d", (int)p->reorder);
    if (!isnan(p->threshold) && !(p->threshold >= 0.0f && isfinite(p->threshold)))
        return avq_fail(AVQ_ERR_INVALID, "build: threshold must be >= 0 or NaN, got %g",
                        (double)p->threshold);
    if (!(p->eta >= 0.0f) || !isfinite(p->eta))
        return avq_fail(AVQ_ERR_INVALID, "build: eta must be >= 0 (0 = derive from threshold), got %g",
                        (double)p->eta);
    if (!(p->avq_center_eta >= 0.0f) || !isfinite(p->avq_center_eta))
        return avq_fail(AVQ_ERR_INVALID, "build: avq_center_eta must be >= 0, got %g",
                        (double)p->avq_center_eta);
    if (n > (size_t)INT32_MAX)
        return avq_fail(AVQ_ERR_INVALID, "build: %zu points exceed the limit of %d", n, INT32_MAX);
    return AVQ_OK;
}

/* The number of leaves the index will really have. */
static size_t choose_num_leaves(const avq_build_params *p, size_t n) {
    if (p->num_leaves > 0) return p->num_leaves;
    if (n < SINGLE_LEAF_BELOW) return 1;
    size_t leaves = (size_t)llround(sqrt((double)n));
    size_t cap = n / MIN_POINTS_PER_LEAF;
    return leaves < cap ? leaves : cap;
}

#define TRY(expr)                      \
    do {                               \
        st = (expr);                   \
        if (st != AVQ_OK) goto fail;   \
    } while (0)

#define ALLOC(ptr, count)                                                     \
    do {                                                                      \
        size_t bytes_;                                                        \
        if (!avq_mul_ok((count), sizeof *(ptr), &bytes_) ||                   \
            !((ptr) = malloc(bytes_ ? bytes_ : 1))) {                         \
            st = avq_fail_nomem(#ptr, (count) * sizeof *(ptr));               \
            goto fail;                                                        \
        }                                                                     \
    } while (0)

/* Leaf centers and the leaf of every point. */
static int partition_points(avq_index *idx, const float *x, int32_t *leaf_of) {
    const avq_build_params *p = &idx->params;
    size_t L = idx->num_leaves, n = idx->n, d = idx->dim;
    int st = AVQ_OK;
    if (L == 1) {
        /* One leaf.  Dot/cosine: its center is the mean, so residuals are
         * centred.  L2: codes quantize raw vectors, the center is unused. */
        memset(idx->centers, 0, d * sizeof(float));
        if (p->metric != AVQ_METRIC_L2) {
            double *sum = calloc(d, sizeof *sum);
            if (!sum) return avq_fail_nomem("mean", d * sizeof *sum);
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < d; j++) sum[j] += x[i * d + j];
            for (size_t j = 0; j < d; j++) idx->centers[j] = (float)(sum[j] / (double)n);
            free(sum);
        }
        memset(leaf_of, 0, n * sizeof *leaf_of);
        return AVQ_OK;
    }
    /* k-means with small leaves re-seeded (a 3-point leaf costs a scan
     * call for nothing), then, if asked, anisotropic centers (inner-product
     * metrics: the centers that minimise the score-aware loss of the leaf,
     * DESIGN.md §2 step 2; points are not reassigned afterwards). */
    avq_partition_params pp;
    avq_partition_default_params(&pp);
    pp.num_leaves = L;
    pp.max_iter = (size_t)p->kmeans_iterations;
    pp.training_sample = p->training_sample ? p->training_sample : 100000;
    pp.spherical = p->spherical < 0 ? p->metric == AVQ_METRIC_COSINE : p->spherical;
    pp.avq_eta = p->avq_center_eta > 0.0f && p->metric != AVQ_METRIC_L2
                     ? (double)p->avq_center_eta : NAN;
    pp.seed = p->seed;
    pp.threads = p->threads;
    avq_partition part;
    st = avq_partition_train(x, n, d, &pp, &part, p->progress, p->progress_user);
    if (st != AVQ_OK) return st;
    memcpy(idx->centers, part.centers, L * d * sizeof(float));
    memcpy(leaf_of, part.assignment, n * sizeof *leaf_of);
    avq_partition_free(&part);
    return AVQ_OK;
}

/* Counting sort of points by leaf: fills leaf_offsets and ids. */
static int order_by_leaf(avq_index *idx, const int32_t *leaf_of) {
    size_t L = idx->num_leaves;
    uint64_t *fill = malloc(L * sizeof *fill);
    if (!fill) return avq_fail_nomem("leaf fill pointers", L * sizeof *fill);
    memset(idx->leaf_offsets, 0, (L + 1) * sizeof *idx->leaf_offsets);
    for (size_t i = 0; i < idx->n; i++) idx->leaf_offsets[leaf_of[i] + 1]++;
    for (size_t l = 0; l < L; l++) idx->leaf_offsets[l + 1] += idx->leaf_offsets[l];
    memcpy(fill, idx->leaf_offsets, L * sizeof *fill);
    for (size_t i = 0; i < idx->n; i++) idx->ids[fill[leaf_of[i]]++] = (int64_t)i;
    free(fill);
    return AVQ_OK;
}

/* Per-dimension int8 quantization of the re-ranking vectors. */
static void quantize_int8(avq_index *idx, const float *xs) {
    size_t n = idx->n, d = idx->dim;
    for (size_t j = 0; j < d; j++) idx->i8_scale[j] = 0.0f;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < d; j++) {
            float a = fabsf(xs[i * d + j]);
            if (a > idx->i8_scale[j]) idx->i8_scale[j] = a;
        }
    for (size_t j = 0; j < d; j++) idx->i8_scale[j] = idx->i8_scale[j] > 0 ? idx->i8_scale[j] / 127.0f : 1.0f;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < d; j++) {
            float v = roundf(xs[i * d + j] / idx->i8_scale[j]);
            idx->vectors_i8[i * d + j] = (int8_t)(v > 127 ? 127 : (v < -127 ? -127 : v));
        }
}

/* Pack per-leaf 4-bit codes (or copy 8-bit rows) into idx->codes. */
static int store_codes(avq_index *idx, const uint8_t *codes) {
    size_t L = idx->num_leaves, K = idx->num_blocks;
    int st = AVQ_OK;
    ALLOC(idx->code_offsets, L + 1);
    idx->code_offsets[0] = 0;
    for (size_t l = 0; l < L; l++) {
        size_t count = idx->leaf_offsets[l + 1] - idx->leaf_offsets[l];
        size_t bytes = idx->bits == 4 ? avq_pack4_size(count, K) : count * K;
        idx->code_offsets[l + 1] = idx->code_offsets[l] + bytes;
    }
    idx->codes = avq_alloc_aligned(idx->code_offsets[L]);
    if (!idx->codes) return avq_fail_nomem("codes", idx->code_offsets[L]);
    for (size_t l = 0; l < L; l++) {
        size_t first = idx->leaf_offsets[l], count = idx->leaf_offsets[l + 1] - first;
        uint8_t *dst = idx->codes + idx->code_offsets[l];
        if (idx->bits == 8) memcpy(dst, codes + first * K, count * K);
        else if (count > 0) TRY(avq_pack4(codes + first * K, count, K, dst));
    }
    return AVQ_OK;
fail:
    return st;
}

/* Steps 4-7: residuals, codebook, anisotropic codes, packing. */
static int quantize(avq_index *idx, const float *xs) {
    const avq_build_params *p = &idx->params;
    size_t n = idx->n, d = idx->dim;
    float *resid = NULL;
    uint8_t *codes = NULL;
    int st = AVQ_OK;
    avq_pq_shape shape = {d, idx->dims_per_block, idx->num_centers};
    ALLOC(resid, n * d);
    for (size_t l = 0; l < idx->num_leaves; l++) {
        const float *c = idx->centers + l * d;
        int use_center = p->metric != AVQ_METRIC_L2;
        for (uint64_t i = idx->leaf_offsets[l]; i < idx->leaf_offsets[l + 1]; i++)
            for (size_t j = 0; j < d; j++)
                resid[i * d + j] = xs[i * d + j] - (use_center ? c[j] : 0.0f);
    }
    ALLOC(idx->codebook, idx->num_centers * d);
    avq_pq_train_params tp;
    avq_pq_default_train_params(&tp);
    tp.seed = p->seed + 1;
    tp.threads = p->threads;
    if (p->training_sample) tp.training_sample = p->training_sample;
    TRY(avq_pq_train(resid, n, &shape, &tp, idx->codebook, p->progress, p->progress_user));

    ALLOC(codes, n * idx->num_blocks);
    avq_aniso_params ap;
    avq_aniso_default_params(&ap);
    ap.threads = p->threads;
    ap.threshold = NAN;
    ap.eta = NAN;
    if (p->metric != AVQ_METRIC_L2) {
        if (p->eta > 0.0f) ap.eta = p->eta;
        else ap.threshold = p->threshold;
    }
    TRY(avq_aniso_encode(resid, xs, n, &shape, idx->codebook, &ap, codes, p->progress,
                         p->progress_user));
    free(resid);
    resid = NULL;
    TRY(store_codes(idx, codes));
fail:
    free(resid);
    free(codes);
    return st;
}

/* Step 8 and the per-leaf metadata the search needs. */
static int keep_reorder_data(avq_index *idx, float **xs_owned) {
    size_t n = idx->n, d = idx->dim;
    int st = AVQ_OK;
    if (idx->params.metric == AVQ_METRIC_L2) {
        ALLOC(idx->norms2, n);
        avq_row_norms2(*xs_owned, n, d, idx->norms2);
    }
    if (idx->mode == AVQ_MODE_BRUTE || idx->reorder == AVQ_REORDER_FLOAT) {
        idx->vectors = *xs_owned; /* hand over the leaf-ordered copy */
        *xs_owned = NULL;
    } else if (idx->reorder == AVQ_REORDER_INT8) {
        ALLOC(idx->vectors_i8, n * d);
        ALLOC(idx->i8_scale, d);
        quantize_int8(idx, *xs_owned);
    }
fail:
    return st;
}

static void set_search_defaults(avq_index *idx) {
    size_t L = idx->num_leaves;
    /* About 3.5 % of the leaves and 80 candidates: recall@10 ~0.91 on
     * GloVe-100 with the default sqrt(n) = 576 leaves (doc/RESULTS.md); at
     * least 1. */
    size_t leaves = (L * 7 + 199) / 200;
    idx->default_leaves_to_search = leaves < 1 ? 1 : leaves;
    idx->default_pre_reorder = 80;
}

int avq_index_build(const float *data, size_t n, size_t dim, const avq_build_params *params,
                    avq_index **out) {
    if (out) *out = NULL;
    if (!data || !params || !out)
        return avq_fail(AVQ_ERR_INVALID, "build: NULL data, params or out");
    if (n == 0 || dim == 0)
        return avq_fail(AVQ_ERR_INVALID, "build: n=%zu and dim=%zu must be >= 1", n, dim);
    int st = validate_params(params, n, dim);
    if (st != AVQ_OK) return st;
    size_t bad = avq_first_non_finite(data, n * dim);
    if (bad < n * dim)
        return avq_fail(AVQ_ERR_INVALID, "build: row %zu, column %zu is not a finite number",
                        bad / dim, bad % dim);

    avq_index *idx = calloc(1, sizeof *idx);
    float *xs = NULL, *x = NULL;
    int32_t *leaf_of = NULL;
    if (!idx) return avq_fail_nomem("index", sizeof *idx);
    idx->params = *params; /* the callback is cleared once the build is done */
    idx->n = n;
    idx->dim = dim;
    idx->reorder = params->reorder;
    idx->bits = params->bits;
    idx->dims_per_block = (size_t)params->dims_per_block;
    idx->num_blocks = (dim + idx->dims_per_block - 1) / idx->dims_per_block;
    idx->num_centers = params->bits == 4 ? 16 : 256;
    idx->mode = n < params->brute_force_below || n < idx->num_centers ? AVQ_MODE_BRUTE : AVQ_MODE_PQ;
    idx->num_leaves = idx->mode == AVQ_MODE_BRUTE ? 1 : choose_num_leaves(params, n);

    ALLOC(x, n * dim);
    memcpy(x, data, n * dim * sizeof(float));
    if (params->metric == AVQ_METRIC_COSINE) avq_normalize_rows(x, n, dim);
    ALLOC(idx->centers, idx->num_leaves * dim);
    ALLOC(idx->center_norms, idx->num_leaves);
    ALLOC(idx->leaf_offsets, idx->num_leaves + 1);
    ALLOC(idx->ids, n);
    ALLOC(leaf_of, n);
    if (idx->mode == AVQ_MODE_BRUTE) {
        memset(idx->centers, 0, dim * sizeof(float));
        memset(leaf_of, 0, n * sizeof *leaf_of);
    } else {
        TRY(partition_points(idx, x, leaf_of));
    }
    TRY(order_by_leaf(idx, leaf_of));
    free(leaf_of);
    leaf_of = NULL;
    for (size_t l = 0; l < idx->num_leaves; l++)
        idx->center_norms[l] = (float)sqrt(avq_norm2_f64(idx->centers + l * dim, dim));

    /* the working copy, permuted into leaf order */
    ALLOC(xs, n * dim);
    for (size_t i = 0; i < n; i++)
        memcpy(xs + i * dim, x + (size_t)idx->ids[i] * dim, dim * sizeof(float));
    free(x);
    x = NULL;
    if (idx->mode == AVQ_MODE_PQ) TRY(quantize(idx, xs));
    TRY(keep_reorder_data(idx, &xs));
    free(xs);
    set_search_defaults(idx);
    idx->params.progress = NULL;
    idx->params.progress_user = NULL;
    *out = idx;
    return AVQ_OK;
fail:
    free(x);
    free(xs);
    free(leaf_of);
    avq_index_free(idx);
    return st;
}

void avq_index_release_arrays(avq_index *idx) {
    if (idx->mapping) { /* every array points into a file mapping (io.c) */
        munmap(idx->mapping, idx->mapping_bytes);
        return;
    }
    free(idx->centers);
    free(idx->center_norms);
    free(idx->leaf_offsets);
    free(idx->ids);
    free(idx->codebook);
    avq_free_aligned(idx->codes);
    free(idx->code_offsets);
    free(idx->vectors);
    free(idx->vectors_i8);
    free(idx->i8_scale);
    free(idx->norms2);
}

void avq_index_free(avq_index *idx) {
    if (!idx) return;
    avq_index_release_arrays(idx);
    free(idx);
}

size_t avq_index_size(const avq_index *idx) { return idx->n; }
size_t avq_index_dim(const avq_index *idx) { return idx->dim; }
avq_metric avq_index_metric(const avq_index *idx) { return idx->params.metric; }
size_t avq_index_num_leaves(const avq_index *idx) { return idx->num_leaves; }

size_t avq_index_memory_bytes(const avq_index *idx) {
    size_t n = idx->n, d = idx->dim, L = idx->num_leaves, b = 0;
    b += L * d * sizeof(float) + L * sizeof(float) + (L + 1) * sizeof(uint64_t);
    b += n * sizeof(int64_t);
    if (idx->codebook) b += idx->num_centers * d * sizeof(float);
    if (idx->codes) b += idx->code_offsets[L] + (L + 1) * sizeof(uint64_t);
    if (idx->vectors) b += n * d * sizeof(float);
    if (idx->vectors_i8) b += n * d + d * sizeof(float);
    if (idx->norms2) b += n * sizeof(float);
    return b;
}

void avq_index_build_params(const avq_index *idx, avq_build_params *out) { *out = idx->params; }

void avq_index_default_search_params(const avq_index *idx, avq_search_params *out) {
    avq_search_params_init(out);
    out->leaves_to_search = idx->default_leaves_to_search;
    out->pre_reorder = idx->default_pre_reorder;
}
