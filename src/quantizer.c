/*
 * quantizer.c -- training: from a sample of vectors to a quantizer.
 *
 * The pipeline, each step in its own file:
 *   1. validate and copy the data (normalised for cosine)         here
 *   2. train leaf centers by k-means, assign every point          kmeans.c
 *   3. order points by leaf (counting sort)                       here
 *   4. residuals r = x - c_leaf (dot/cosine) or raw x (L2)        here
 *   5. train the PQ codebook on a sample of residuals             pq.c
 *   6. int8 scales of the re-ranking rows                          here
 * Encoding (aniso.c) and packing (pack.c) happen when vectors are added to
 * an index (mutate.c); avq_index_build is train + add (also here).
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
#include "centers.h"
#include "index.h"
#include "partition.h"
#include "pq.h"
#include "vecmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { SINGLE_LEAF_BELOW = AVQ_SINGLE_LEAF_BELOW, MIN_POINTS_PER_LEAF = 16 };

/* The fields every version of avq_build_params has had since struct_size
 * was introduced (0.2): a caller's struct must cover them. */
#define BUILD_PARAMS_MIN_SIZE (offsetof(avq_build_params, progress_user) + sizeof(void *))
#define SEARCH_PARAMS_MIN_SIZE (offsetof(avq_search_params, pre_reorder) + sizeof(size_t))

static void build_defaults(avq_build_params *p, avq_metric metric) {
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->metric = metric;
    p->num_leaves = 0;
    p->training_sample = 0;
    p->kmeans_iterations = 12;
    p->spherical = -1;
    /* raw inner products: the partition decides recall (doc/RESULTS.md,
     * "True MIPS": on raw GloVe, scanning 20 leaves of plain k-means can
     * reach recall@10 0.55 at most, of spherical k-means with anisotropic
     * centers 0.80) */
    /* cosine too since 2026-12-03 (doc/RESULTS.md, "AVQ centers for cosine") */
    p->avq_center_eta = metric == AVQ_METRIC_L2 ? 0.0f : 2.5f;
    /* ... and so does the leaf ranking: see avq.h and doc/RESULTS.md */
    p->leaf_spread_z = metric == AVQ_METRIC_DOT ? -1.0f : 0.0f; /* auto */
    p->dims_per_block = 2;
    p->bits = 4;
    p->threshold = metric == AVQ_METRIC_L2 ? NAN : 0.2f;
    p->eta = 0.0f;
    p->reorder = AVQ_REORDER_FLOAT;
    p->brute_force_below = 20000;
    p->threads = 0;
    p->seed = 42;
    p->spill = 0;
    p->spill_lambda = AVQ_DEFAULT_SPILL_LAMBDA;
}

void avq_build_params_init_sized(avq_build_params *p, size_t struct_size, avq_metric metric) {
    if (!p || struct_size == 0) return;
    avq_build_params full;
    build_defaults(&full, metric);
    size_t n = struct_size < sizeof full ? struct_size : sizeof full;
    full.struct_size = struct_size;
    memcpy(p, &full, n);
}

int avq_build_params_resolve(const avq_build_params *in, avq_build_params *out) {
    if (!in) return avq_fail(AVQ_ERR_INVALID, "build: NULL params");
    if (in->struct_size < BUILD_PARAMS_MIN_SIZE)
        return avq_fail(AVQ_ERR_INVALID,
                        "build: params.struct_size is %zu: initialise the struct with "
                        "avq_build_params_init()", in->struct_size);
    build_defaults(out, in->metric);
    size_t n = in->struct_size < sizeof *out ? in->struct_size : sizeof *out;
    memcpy(out, in, n);
    out->struct_size = sizeof *out;
    return AVQ_OK;
}

void avq_search_params_init_sized(avq_search_params *p, size_t struct_size) {
    if (!p || struct_size == 0) return;
    avq_search_params full;
    memset(&full, 0, sizeof full);
    full.struct_size = struct_size;
    full.k = 10;
    size_t n = struct_size < sizeof full ? struct_size : sizeof full;
    memcpy(p, &full, n);
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
        p->reorder != AVQ_REORDER_NONE && p->reorder != AVQ_REORDER_FLOAT16)
        return avq_fail(AVQ_ERR_INVALID, "build: unknown reorder kind %d", (int)p->reorder);
    if (!isnan(p->threshold) && !(p->threshold >= 0.0f && isfinite(p->threshold)))
        return avq_fail(AVQ_ERR_INVALID, "build: threshold must be >= 0 or NaN, got %g",
                        (double)p->threshold);
    if (!(p->eta >= 0.0f) || !isfinite(p->eta))
        return avq_fail(AVQ_ERR_INVALID, "build: eta must be >= 0 (0 = derive from threshold), got %g",
                        (double)p->eta);
    if (p->threshold_kind != AVQ_THRESHOLD_AUTO && p->threshold_kind != AVQ_THRESHOLD_RELATIVE &&
        p->threshold_kind != AVQ_THRESHOLD_ABSOLUTE)
        return avq_fail(AVQ_ERR_INVALID, "build: unknown threshold_kind %d", (int)p->threshold_kind);
    if (!(p->avq_center_eta >= 0.0f) || !isfinite(p->avq_center_eta))
        return avq_fail(AVQ_ERR_INVALID, "build: avq_center_eta must be >= 0, got %g",
                        (double)p->avq_center_eta);
    if (!isfinite(p->leaf_spread_z))
        return avq_fail(AVQ_ERR_INVALID,
                        "build: leaf_spread_z must be a number (>= 0, or < 0 for auto), got %g",
                        (double)p->leaf_spread_z);
    if (p->leaf_spread_z > 0.0f && p->metric == AVQ_METRIC_L2)
        return avq_fail(AVQ_ERR_INVALID,
                        "build: leaf_spread_z ranks leaves by inner product; it must be 0 for L2");
    /* L2 codes minimise the plain reconstruction error and its leaves are
     * plain k-means (doc/DESIGN.md): every anisotropic setting would be
     * silently dropped, so one set explicitly is an error, as in the CLI.
     * Values that mean "the default" (NaN threshold, 0 eta, AUTO, 0) pass. */
    if (p->metric == AVQ_METRIC_L2) {
        const char *what = !isnan(p->threshold) ? "threshold (L2's default is NaN)"
                           : p->eta != 0.0f ? "eta"
                           : p->threshold_kind != AVQ_THRESHOLD_AUTO ? "threshold_kind"
                           : p->avq_center_eta != 0.0f ? "avq_center_eta"
                           : p->weight != AVQ_WEIGHT_STEP ? "weight"
                           : p->weight_param != 0.0f ? "weight_param"
                           : p->int8_aware ? "int8_aware" : NULL;
        if (what)
            return avq_fail(AVQ_ERR_INVALID,
                            "build: %s applies to dot and cosine only: L2 has no anisotropic "
                            "loss (its codes minimise the reconstruction error); leave it at "
                            "its default", what);
    }
    /* score-aware weights (issue 19) */
    if (p->weight != AVQ_WEIGHT_STEP) {
        avq_weight w = {p->weight, p->threshold, p->weight_param};
        const char *why = avq_weight_check(&w);
        if (why) return avq_fail(AVQ_ERR_INVALID, "build: weight: %s", why);
        if (p->eta > 0.0f)
            return avq_fail(AVQ_ERR_INVALID,
                            "build: eta fixes the weight's eta itself: give eta or a weight, "
                            "not both");
    } else if (!isfinite(p->weight_param)) {
        return avq_fail(AVQ_ERR_INVALID, "build: weight_param must be a number");
    }
    if (p->int8_aware != 0 && p->int8_aware != 1)
        return avq_fail(AVQ_ERR_INVALID, "build: int8_aware must be 0 or 1, got %d", p->int8_aware);
    /* SOAR spilling (issue 15) */
    if (p->spill != 0 && p->spill != 1)
        return avq_fail(AVQ_ERR_INVALID,
                        "build: spill must be 0 or 1 (extra leaves per vector), got %d", p->spill);
    if (!(p->spill_lambda >= 0.0f) || isinf(p->spill_lambda))
        return avq_fail(AVQ_ERR_INVALID, "build: spill_lambda must be a finite number >= 0, got %g",
                        (double)p->spill_lambda);
    if (n > (size_t)INT32_MAX)
        return avq_fail(AVQ_ERR_INVALID, "build: %zu points exceed the limit of %d", n, INT32_MAX);
    if (dim > (1u << 20))
        return avq_fail(AVQ_ERR_INVALID, "build: dimension %zu exceeds the limit of %u", dim,
                        1u << 20);
    return AVQ_OK;
}

/* Whether training n rows with resolved parameters p gives the exact tier
 * (every point scored, float rows kept) instead of codes: below
 * brute_force_below points, or fewer points than a codebook has centers. */
static bool trains_exact_tier(const avq_build_params *p, size_t n) {
    return n < p->brute_force_below || n < (size_t)(p->bits == 4 ? 16 : 256);
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


/* Leaf centers and the leaf of every point. */
static int partition_points(avq_quantizer *q, const float *x, size_t n, int32_t *leaf_of) {
    const avq_build_params *p = &q->params;
    size_t L = q->num_leaves, d = q->dim;
    int st = AVQ_OK;
    if (L == 1) {
        /* One leaf.  Dot/cosine: its center is the mean, so residuals are
         * centred.  L2: codes quantize raw vectors, the center is unused. */
        memset(q->centers, 0, d * sizeof(float));
        if (p->metric != AVQ_METRIC_L2) {
            double *sum = calloc(d, sizeof *sum);
            if (!sum) return avq_fail_nomem("mean", d * sizeof *sum);
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < d; j++) sum[j] += x[i * d + j];
            for (size_t j = 0; j < d; j++) q->centers[j] = (float)(sum[j] / (double)n);
            free(sum);
        }
        memset(leaf_of, 0, n * sizeof *leaf_of);
        return AVQ_OK;
    }
    /* k-means with small leaves re-seeded (a 3-point leaf costs a scan
     * call for nothing), then, if asked, anisotropic centers (inner-product
     * metrics: the centers that minimise the score-aware loss of the leaf,
     * doc/DESIGN.md §2, build step 2; points are not reassigned afterwards). */
    avq_partition_params pp;
    avq_partition_default_params(&pp);
    pp.num_leaves = L;
    pp.max_iter = (size_t)p->kmeans_iterations;
    pp.training_sample = p->training_sample ? p->training_sample : AVQ_DEFAULT_TRAINING_SAMPLE;
    pp.spherical = p->spherical < 0 ? p->metric != AVQ_METRIC_L2 : p->spherical;
    pp.avq_eta = p->avq_center_eta > 0.0f && p->metric != AVQ_METRIC_L2
                     ? (double)p->avq_center_eta : NAN;
    pp.seed = p->seed;
    pp.threads = p->threads;
    avq_partition part;
    st = avq_partition_train(x, n, d, &pp, &part, p->progress, p->progress_user);
    if (st != AVQ_OK) return st;
    memcpy(q->centers, part.centers, L * d * sizeof(float));
    memcpy(leaf_of, part.assignment, n * sizeof *leaf_of);
    avq_partition_free(&part);
    return AVQ_OK;
}

/* Each leaf's spread around its center, sqrt(mean |x - c|^2 / dim) over the
 * training rows it holds (0 for a leaf that holds none).  Leaf ranking adds
 * z |q| spread to <q, c>: for residuals spread evenly over the dimensions,
 * |q| spread is the standard deviation of <q, x - c> within the leaf, so the
 * leaf is ranked by the score of a point z deviations above its center's --
 * the points a MIPS query wants are the extreme ones, and a wide leaf of
 * large-norm points holds more of them than its center's score says. */
static int leaf_spreads(avq_quantizer *q, const float *x, size_t n, const int32_t *leaf_of) {
    size_t L = q->num_leaves, d = q->dim;
    double *sum = calloc(L, sizeof *sum);
    size_t *count = calloc(L, sizeof *count);
    if (!sum || !count) {
        free(sum);
        free(count);
        return avq_fail_nomem("leaf spreads", L * (sizeof *sum + sizeof *count));
    }
    for (size_t i = 0; i < n; i++) {
        size_t l = (size_t)leaf_of[i];
        const float *r = x + i * d, *c = q->centers + l * d;
        double s = 0.0;
        for (size_t j = 0; j < d; j++) s += ((double)r[j] - c[j]) * ((double)r[j] - c[j]);
        sum[l] += s;
        count[l]++;
    }
    for (size_t l = 0; l < L; l++)
        q->leaf_spread[l] = count[l] ? (float)sqrt(sum[l] / ((double)count[l] * (double)d)) : 0.0f;
    free(sum);
    free(count);
    return AVQ_OK;
}

/* leaf_spread_z as the index keeps it: auto (< 0) is the default weight
 * for dot products on rows whose norms vary, else 0 (cosine and L2 have no
 * use for it; unit-norm rows under dot behave as cosine). */
static float resolve_spread_z(const avq_build_params *p, const float *x, size_t n, size_t d) {
    if (p->leaf_spread_z >= 0.0f) return p->leaf_spread_z;
    if (p->metric != AVQ_METRIC_DOT || n == 0) return 0.0f;
    double sum = 0.0, sum2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        double norm = sqrt(avq_norm2_f64(x + i * d, d));
        sum += norm;
        sum2 += norm * norm;
    }
    double mean = sum / (double)n, var = sum2 / (double)n - mean * mean;
    double cv = mean > 0.0 ? sqrt(var > 0.0 ? var : 0.0) / mean : 0.0;
    return cv >= AVQ_LEAF_SPREAD_AUTO_MIN_CV ? AVQ_DEFAULT_LEAF_SPREAD_Z : 0.0f;
}

/* Rows in leaf order (stable: increasing row inside a leaf). */
static int order_by_leaf(const int32_t *leaf_of, size_t n, size_t L, size_t *order) {
    size_t *fill = calloc(L + 1, sizeof *fill);
    if (!fill) return avq_fail_nomem("leaf fill pointers", (L + 1) * sizeof *fill);
    for (size_t i = 0; i < n; i++) fill[leaf_of[i] + 1]++;
    for (size_t l = 0; l < L; l++) fill[l + 1] += fill[l];
    for (size_t i = 0; i < n; i++) order[fill[leaf_of[i]]++] = i;
    free(fill);
    return AVQ_OK;
}

/* The PQ codebook, trained on the residuals of the rows in leaf order (the
 * order the frozen index of avq 0.1 trained in, so the same data and seed
 * give the same codebook).  Only the residuals of the rows avq_pq_train
 * samples are made (avq_pq_train_sample: at 2M rows, 100,000 of 2,000,000,
 * instead of an 800 MB array of them all); it then trains on exactly
 * those, in the same order. */
static int train_codebook(avq_quantizer *q, const float *x, size_t n, const int32_t *leaf_of) {
    const avq_build_params *p = &q->params;
    size_t d = q->dim;
    float *resid = NULL;
    size_t *order = NULL, *idx = NULL, count = 0;
    int st = AVQ_OK;
    avq_pq_shape shape = {d, q->dims_per_block, q->num_centers};
    avq_pq_train_params tp;
    avq_pq_default_train_params(&tp);
    tp.seed = p->seed + 1;
    tp.threads = p->threads;
    if (p->training_sample) tp.training_sample = p->training_sample;
    AVQ_ALLOC(order, n);
    TRY(order_by_leaf(leaf_of, n, q->num_leaves, order));
    TRY(avq_pq_train_sample(n, &shape, &tp, &idx, &count));
    AVQ_ALLOC(resid, count * d);
    int use_center = p->metric != AVQ_METRIC_L2;
    for (size_t r = 0; r < count; r++) {
        size_t i = order[idx[r]];
        const float *row = x + i * d, *c = q->centers + (size_t)leaf_of[i] * d;
        for (size_t j = 0; j < d; j++) resid[r * d + j] = row[j] - (use_center ? c[j] : 0.0f);
    }
    free(order);
    order = NULL;
    free(idx);
    idx = NULL;
    AVQ_ALLOC(q->codebook, q->num_centers * d);
    tp.training_sample = 0; /* the rows are the sample */
    TRY(avq_pq_train(resid, count, &shape, &tp, q->codebook, p->progress, p->progress_user));
fail:
    free(order);
    free(idx);
    free(resid);
    return st;
}

/* Per-dimension int8 scales: the largest |x_j| of the training rows maps to
 * 127 (rows added later beyond it are clamped). */
void avq_int8_scales(const float *x, size_t n, size_t d, float *scale) {
    for (size_t j = 0; j < d; j++) scale[j] = 0.0f;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < d; j++) {
            float a = fabsf(x[i * d + j]);
            if (a > scale[j]) scale[j] = a;
        }
    for (size_t j = 0; j < d; j++) scale[j] = scale[j] > 0 ? scale[j] / 127.0f : 1.0f;
}

static void set_search_defaults(avq_quantizer *q) {
    size_t L = q->num_leaves;
    /* About 3.5 % of the leaves and 80 candidates: recall@10 ~0.91 on
     * GloVe-100 with the default sqrt(n) = 576 leaves (doc/RESULTS.md); at
     * least 1. */
    size_t leaves = (L * AVQ_DEFAULT_LEAVES_PERMILLE + 999) / 1000;
    q->default_leaves_to_search = leaves < 1 ? 1 : leaves;
    q->default_pre_reorder = AVQ_DEFAULT_PRE_REORDER;
}

static void quantizer_release(avq_quantizer *q) {
    avq_center_sketch_free(q->sketch);
    if (q->mapping) {
        avq_mapping_unref(q->mapping);
    } else {
        free(q->centers);
        free(q->center_norms);
        free(q->leaf_spread);
        free(q->codebook);
        free(q->i8_scale);
    }
    free(q);
}

void avq_quantizer_ref(const avq_quantizer *q) {
    atomic_fetch_add(&((avq_quantizer *)q)->refs, 1);
}

void avq_quantizer_free(avq_quantizer *q) {
    if (q && atomic_fetch_sub(&q->refs, 1) == 1) quantizer_release(q);
}

int avq_quantizer_train_assign(const float *data, size_t n, size_t dim,
                               const avq_build_params *params, avq_quantizer **out,
                               int32_t **leaf_of_out) {
    if (out) *out = NULL;
    if (leaf_of_out) *leaf_of_out = NULL;
    if (!data || !params || !out)
        return avq_fail(AVQ_ERR_INVALID, "build: NULL data, params or out");
    if (n == 0 || dim == 0)
        return avq_fail(AVQ_ERR_INVALID, "build: n=%zu and dim=%zu must be >= 1", n, dim);
    avq_build_params p;
    int st = avq_build_params_resolve(params, &p);
    if (st != AVQ_OK) return st;
    st = validate_params(&p, n, dim);
    if (st != AVQ_OK) return st;
    st = avq_check_rows(data, n, dim, p.metric, "build", "row");
    if (st != AVQ_OK) return st;

    avq_quantizer *q = calloc(1, sizeof *q);
    float *x = NULL;
    int32_t *leaf_of = NULL;
    if (!q) return avq_fail_nomem("quantizer", sizeof *q);
    atomic_init(&q->refs, 1);
    q->params = p; /* the callback is cleared once training is done */
    q->dim = dim;
    q->trained_n = n;
    q->reorder = p.reorder;
    q->bits = p.bits;
    q->dims_per_block = (size_t)p.dims_per_block;
    q->num_blocks = (dim + q->dims_per_block - 1) / q->dims_per_block;
    q->num_centers = p.bits == 4 ? 16 : 256;
    q->mode = trains_exact_tier(&p, n) ? AVQ_MODE_BRUTE : AVQ_MODE_PQ;
    q->num_leaves = q->mode == AVQ_MODE_BRUTE ? 1 : choose_num_leaves(&p, n);
    /* a copy in a second leaf needs a second leaf */
    if (q->num_leaves < 2) q->params.spill = 0;

    AVQ_ALLOC(x, n * dim);
    if (p.metric == AVQ_METRIC_COSINE) avq_normalize_rows_to(data, n, dim, x); /* one pass */
    else memcpy(x, data, n * dim * sizeof(float));
    AVQ_ALLOC(q->centers, q->num_leaves * dim);
    AVQ_ALLOC(q->center_norms, q->num_leaves);
    AVQ_ALLOC(leaf_of, n);
    if (q->mode == AVQ_MODE_BRUTE) {
        memset(q->centers, 0, dim * sizeof(float));
        memset(leaf_of, 0, n * sizeof *leaf_of);
    } else {
        TRY(partition_points(q, x, n, leaf_of));
        TRY(train_codebook(q, x, n, leaf_of));
        if (q->reorder == AVQ_REORDER_INT8) {
            AVQ_ALLOC(q->i8_scale, dim);
            avq_int8_scales(x, n, dim, q->i8_scale);
        }
    }
    for (size_t l = 0; l < q->num_leaves; l++)
        q->center_norms[l] = (float)sqrt(avq_norm2_f64(q->centers + l * dim, dim));
    q->params.leaf_spread_z = resolve_spread_z(&p, x, n, dim);
    if (q->mode == AVQ_MODE_PQ && q->params.leaf_spread_z > 0.0f) {
        AVQ_ALLOC(q->leaf_spread, q->num_leaves);
        TRY(leaf_spreads(q, x, n, leaf_of));
    }
    if (q->mode == AVQ_MODE_PQ) TRY(avq_quantizer_make_sketch(q));
    set_search_defaults(q);
    q->params.progress = NULL;
    q->params.progress_user = NULL;
    free(x);
    if (leaf_of_out) *leaf_of_out = leaf_of;
    else free(leaf_of);
    *out = q;
    return AVQ_OK;
fail:
    free(x);
    free(leaf_of);
    quantizer_release(q);
    return st;
}

int avq_quantizer_train(const float *data, size_t n, size_t dim, const avq_build_params *params,
                        avq_quantizer **out) {
    return avq_quantizer_train_assign(data, n, dim, params, out, NULL);
}

size_t avq_quantizer_dim(const avq_quantizer *q) { return q->dim; }
avq_metric avq_quantizer_metric(const avq_quantizer *q) { return q->params.metric; }
size_t avq_quantizer_num_leaves(const avq_quantizer *q) { return q->num_leaves; }

int avq_quantizer_make_sketch(avq_quantizer *q) {
    avq_center_sketch_free(q->sketch);
    q->sketch = NULL;
    return avq_center_sketch_make(q->centers, q->leaf_spread, q->num_leaves, q->dim, &q->sketch);
}

size_t avq_quantizer_memory_bytes(const avq_quantizer *q) {
    size_t d = q->dim, L = q->num_leaves, b = L * d * sizeof(float) + L * sizeof(float);
    if (q->leaf_spread) b += L * sizeof(float);
    if (q->codebook) b += q->num_centers * d * sizeof(float);
    if (q->i8_scale) b += d * sizeof(float);
    return b + avq_center_sketch_bytes(q->sketch);
}

/* ---- the one-call build ---------------------------------------------------- */

/* Cosine: a zero row has no direction and cannot be added (mutate.c), so
 * refuse it before the training spends its time, in the build's words.
 * Anything else wrong is the training's to report. */
static int refuse_zero_cosine_rows(const float *data, size_t n, size_t dim,
                                   const avq_build_params *params) {
    if (!data || !params || params->struct_size < BUILD_PARAMS_MIN_SIZE ||
        params->metric != AVQ_METRIC_COSINE || dim == 0)
        return AVQ_OK;
    double norms[8];
    for (size_t i0 = 0; i0 < n; i0 += 8) { /* avq_norm2_f64's sums, 8 rows at a time */
        size_t rows = n - i0 < 8 ? n - i0 : 8;
        avq_rows_norm2_f64(data + i0 * dim, rows, dim, norms);
        for (size_t k = 0; k < rows; k++)
            if (norms[k] == 0.0)
                return avq_fail(AVQ_ERR_INVALID,
                                "build: row %zu is a zero vector, which has no cosine similarity",
                                i0 + k);
    }
    return AVQ_OK;
}

/* Float16 rows: a component beyond the half range is refused before the
 * training, not after it, when the rows are added (cosine rows are
 * normalised: always in range; the exact tier keeps float rows). */
static int refuse_rows_beyond_half(const float *data, size_t n, size_t dim,
                                   const avq_build_params *params) {
    avq_build_params p;
    if (!data || !params || params->struct_size < BUILD_PARAMS_MIN_SIZE ||
        avq_build_params_resolve(params, &p) != AVQ_OK || p.reorder != AVQ_REORDER_FLOAT16 ||
        p.metric == AVQ_METRIC_COSINE || trains_exact_tier(&p, n))
        return AVQ_OK; /* bad parameters are the training's to report */
    return avq_check_half_range(data, n, dim, "build");
}

int avq_index_build(const float *data, size_t n, size_t dim, const avq_build_params *params,
                    avq_index **out) {
    if (out) *out = NULL;
    avq_quantizer *q = NULL;
    int32_t *leaf_of = NULL;
    int st = refuse_zero_cosine_rows(data, n, dim, params);
    if (st == AVQ_OK) st = refuse_rows_beyond_half(data, n, dim, params);
    if (st != AVQ_OK) return st;
    st = avq_quantizer_train_assign(data, n, dim, params, &q, &leaf_of);
    if (st != AVQ_OK) return st;
    avq_index *x = NULL;
    st = avq_index_alloc(q, &x);
    avq_quantizer_free(q); /* the index holds its own reference */
    if (st == AVQ_OK) {
        /* the progress callback of the caller's params for the encoding */
        avq_build_params p;
        avq_build_params_resolve(params, &p);
        st = avq_index_add_assigned(x, data, n, NULL, NULL, NULL, leaf_of, p.threads, NULL, false, NULL,
                                    p.progress, p.progress_user);
    }
    free(leaf_of);
    if (st != AVQ_OK) {
        avq_index_free(x);
        return st;
    }
    *out = x;
    return AVQ_OK;
}
