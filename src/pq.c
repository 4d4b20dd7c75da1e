/*
 * pq.c -- product-quantization codebooks, reconstruction codes, decoding.
 *
 * Codebooks are trained the way ScaNN trains them: plain squared-L2 k-means
 * per block on a sample of the vectors to be coded.  (The paper's anisotropic
 * codebook update is a separate, optional step; the score-aware part that
 * matters most is the choice of codes, in aniso.c.)  One Bernoulli sample of
 * rows is drawn for all blocks, so every block's codebook is fitted to the
 * same points, and each block's columns are gathered into a small contiguous
 * matrix: k-means then runs on a (sample x len_m) array.  Blocks of up to
 * AVQ_KMEANS_DIRECT_MAX_DIM dimensions (the usual 2..8) are scored without
 * SGEMM, so the workers train whole blocks side by side; wider blocks go
 * through the SGEMM path of the partitioner, which must not be entered from
 * our workers, so they are trained one after another from the calling
 * thread, each k-means multi-threaded.  Either way block m's codebook
 * depends only on the sample and m (its own seed): the same bit for bit
 * whatever the thread count.
 *
 * The reconstruction encoder is the anisotropic encoder with no threshold, so
 * "identical to reconstruction when eta = 1" holds by construction and both
 * share one tested code path (double-precision distances, lower index wins).
 */
#include "pq.h"

#include "aniso.h"
#include "kmeans.h"
#include "vecmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int avq_pq_check_shape(const avq_pq_shape *s, const char *who) {
    if (!s) return avq_fail(AVQ_ERR_INVALID, "%s: NULL PQ shape", who);
    if (s->dim == 0 || s->dims_per_block == 0)
        return avq_fail(AVQ_ERR_INVALID, "%s: dim=%zu and dims_per_block=%zu must be >= 1", who,
                        s->dim, s->dims_per_block);
    if (s->dims_per_block > s->dim)
        return avq_fail(AVQ_ERR_INVALID, "%s: dims_per_block=%zu exceeds the dimension %zu", who,
                        s->dims_per_block, s->dim);
    if (s->num_centers < 2 || s->num_centers > 256)
        return avq_fail(AVQ_ERR_INVALID, "%s: %zu centers per block, must be 2..256", who,
                        s->num_centers);
    size_t bytes;
    if (!avq_mul_ok(s->num_centers, s->dim, &bytes) || s->dim > INT32_MAX)
        return avq_fail(AVQ_ERR_INVALID, "%s: dimension %zu too large", who, s->dim);
    return AVQ_OK;
}

void avq_pq_default_train_params(avq_pq_train_params *p) {
    memset(p, 0, sizeof *p);
    p->training_sample = 100000;
    p->max_iter = 10;
    p->seed = 7;
    p->threads = 0;
}

static void gather_block(const float *rows, size_t d, const size_t *idx, size_t count,
                         size_t start, size_t len, float *out) {
    for (size_t r = 0; r < count; r++) {
        const float *src = rows + idx[r] * d + start;
        for (size_t t = 0; t < len; t++) out[r * len + t] = src[t];
    }
}

typedef struct {
    const float *rows;
    const avq_pq_shape *shape;
    const avq_pq_train_params *p;
    const size_t *idx;
    size_t count;
    float *block; /* count * dims_per_block floats per worker */
    int threads;  /* for each block's k-means */
    float *codebook;
} train_job;

/* Block m's codebook: k-means on the block's columns of the sample, with a
 * seed derived from block m alone, so the result does not depend on which
 * worker trains it or when. */
static int train_blocks(void *ctx, size_t begin, size_t end, int worker) {
    const train_job *job = ctx;
    const avq_pq_shape *shape = job->shape;
    float *block = job->block + (size_t)worker * job->count * shape->dims_per_block;
    avq_kmeans_params km;
    avq_kmeans_default_params(&km, shape->num_centers);
    km.max_iter = job->p->max_iter;
    km.training_sample = 0; /* already sampled */
    km.threads = job->threads;
    for (size_t m = begin; m < end; m++) {
        size_t start = avq_pq_block_start(shape, m), len = avq_pq_block_len(shape, m);
        gather_block(job->rows, shape->dim, job->idx, job->count, start, len, block);
        km.seed = job->p->seed ^ (0x9E3779B97F4A7C15ull * (m + 1));
        int st = avq_kmeans_train(block, job->count, len, &km,
                                  job->codebook + shape->num_centers * m * shape->dims_per_block,
                                  NULL, NULL, NULL);
        if (st != AVQ_OK) return st;
    }
    return AVQ_OK;
}

int avq_pq_train_sample(size_t n, const avq_pq_shape *shape, const avq_pq_train_params *p,
                        size_t **idx, size_t *count) {
    uint64_t rng = p->seed;
    return avq_sample_rows(n, p->training_sample, shape->num_centers, &rng, idx, count);
}

int avq_pq_train(const float *rows, size_t n, const avq_pq_shape *shape,
                 const avq_pq_train_params *p, float *codebook, avq_progress_fn progress,
                 void *progress_user) {
    int st = avq_pq_check_shape(shape, "pq train");
    if (st != AVQ_OK) return st;
    if (!rows || !p || !codebook)
        return avq_fail(AVQ_ERR_INVALID, "pq train: NULL rows, params or codebook");
    size_t d = shape->dim, C = shape->num_centers, K = avq_pq_num_blocks(shape);
    if (n < C)
        return avq_fail(AVQ_ERR_INVALID, "pq train: %zu centers per block need at least %zu rows, got %zu",
                        C, C, n);
    if (p->max_iter == 0)
        return avq_fail(AVQ_ERR_INVALID, "pq train: max_iter must be >= 1");
    if (!avq_all_finite_wide(rows, n * d)) {
        size_t at = avq_first_non_finite(rows, n * d);
        return avq_fail(AVQ_ERR_INVALID, "pq train: row %zu, column %zu is not a finite number",
                        at / d, at % d);
    }
    size_t *idx = NULL, count = 0;
    st = avq_pq_train_sample(n, shape, p, &idx, &count);
    if (st != AVQ_OK) return st;
    /* Blocks of at most AVQ_KMEANS_DIRECT_MAX_DIM dimensions never reach
     * OpenBLAS: the workers take whole blocks, one single-threaded k-means
     * each (no synchronisation inside a block's iterations).  Wider blocks
     * go through SGEMM, which must be called from this thread: one block
     * after another, each k-means multi-threaded. */
    int threads = avq_resolve_threads(p->threads);
    bool by_block = shape->dims_per_block <= AVQ_KMEANS_DIRECT_MAX_DIM;
    int workers = by_block ? (threads < (int)K ? threads : (int)K) : 1;
    size_t floats = count * shape->dims_per_block * (size_t)workers;
    float *block = malloc(floats * sizeof(float));
    if (!block) {
        free(idx);
        return avq_fail_nomem("pq train block", floats * sizeof(float));
    }
    train_job job = {rows, shape, p, idx, count, block, by_block ? 1 : threads, codebook};
    if (by_block) {
        st = avq_parallel_for(K, 1, workers, train_blocks, &job, progress, progress_user,
                              "codebooks");
    } else {
        for (size_t m = 0; m < K && st == AVQ_OK; m++) {
            st = train_blocks(&job, m, m + 1, 0);
            if (st == AVQ_OK && progress && progress(progress_user, "codebooks", m + 1, K))
                st = avq_fail(AVQ_ERR_CANCELLED, "codebooks: cancelled by the progress callback");
        }
    }
    free(block);
    free(idx);
    return st;
}

int avq_pq_encode(const float *rows, size_t n, const avq_pq_shape *shape,
                  const float *codebook, int threads, uint8_t *codes,
                  avq_progress_fn progress, void *progress_user) {
    avq_aniso_params ap;
    avq_aniso_default_params(&ap);
    ap.threads = threads;
    return avq_aniso_encode(rows, rows, n, shape, codebook, &ap, codes, progress,
                            progress_user);
}

int avq_pq_decode(const uint8_t *codes, size_t n, const avq_pq_shape *shape,
                  const float *codebook, float *out) {
    int st = avq_pq_check_shape(shape, "pq decode");
    if (st != AVQ_OK) return st;
    if (!codes || !codebook || !out)
        return avq_fail(AVQ_ERR_INVALID, "pq decode: NULL codes, codebook or output");
    size_t d = shape->dim, C = shape->num_centers, K = avq_pq_num_blocks(shape);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *code = codes + i * K;
        for (size_t m = 0; m < K; m++) {
            if (code[m] >= C)
                return avq_fail(AVQ_ERR_INVALID, "pq decode: row %zu block %zu has code %u >= %zu",
                                i, m, (unsigned)code[m], C);
            size_t len = avq_pq_block_len(shape, m);
            const float *c = avq_pq_block_centers(shape, codebook, m) + code[m] * len;
            memcpy(out + i * d + avq_pq_block_start(shape, m), c, len * sizeof(float));
        }
    }
    return AVQ_OK;
}

double avq_pq_mean_sq_error(const float *rows, const uint8_t *codes, size_t n,
                            const avq_pq_shape *shape, const float *codebook) {
    size_t K = avq_pq_num_blocks(shape);
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        for (size_t m = 0; m < K; m++) {
            size_t len = avq_pq_block_len(shape, m);
            const float *c = avq_pq_block_centers(shape, codebook, m) + codes[i * K + m] * len;
            const float *y = rows + i * shape->dim + avq_pq_block_start(shape, m);
            for (size_t t = 0; t < len; t++) {
                double e = (double)y[t] - c[t];
                total += e * e;
            }
        }
    }
    return n ? total / (double)n : 0.0;
}
