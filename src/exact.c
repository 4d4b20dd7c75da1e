/*
 * exact.c -- brute-force k-nearest-neighbour search.
 *
 * This is the ground-truth engine (every recall number in avq is measured
 * against it) and the fallback for data too small to be worth an index.  It
 * must therefore be exact, deterministic and not embarrassingly slow.
 *
 * All three metrics reduce to one inner-product matrix S = Q Bᵀ computed by
 * OpenBLAS' SGEMM in tiles (QUERY_TILE queries x BASE_TILE base rows, 32 MB
 * of scores), turned into a "smaller is better" distance per metric:
 *   dot     d = -<q,x>
 *   cosine  d = -<q/|q|, x/|x|>          (inputs normalised once, up front)
 *   L2      d = |x|² - 2<q,x>  (+ |q|² added when reporting)
 * Each query keeps an avq_topk buffer across base tiles; the tiles are
 * streamed in a fixed order and ties go to the lower id, so the answer does
 * not depend on the number of threads.
 *
 * Threads: SGEMM is called from this thread and parallelised by OpenBLAS
 * itself; the selection over each score tile is split over our workers by
 * query rows (every query's buffer is touched by one worker only).
 */
#include "avq_internal.h"
#include "topk.h"
#include "vecmath.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { QUERY_TILE = 1024, BASE_TILE = 8192, EXACT_MAX_PADDED_K = 1 << 20 };

typedef struct {
    avq_metric metric;
    const float *base_norms2; /* L2 only: |x|² per base row */
    const float *scores;      /* current tile, rows x cols */
    size_t base_begin, cols;  /* tile covers base rows [base_begin, +cols) */
    size_t query_begin;       /* first query of the tile */
    avq_topk *heaps;          /* one per query, indexed from query 0 */
} tile_job;

static int select_tile_rows(void *ctx, size_t begin, size_t end, int worker) {
    (void)worker;
    const tile_job *job = ctx;
    for (size_t r = begin; r < end; r++) {
        const float *row = job->scores + r * job->cols;
        avq_topk *heap = &job->heaps[job->query_begin + r];
        if (job->metric == AVQ_METRIC_L2) {
            const float *norms = job->base_norms2 + job->base_begin;
            for (size_t c = 0; c < job->cols; c++)
                avq_topk_push(heap, norms[c] - 2.0f * row[c],
                              (int64_t)(job->base_begin + c));
        } else {
            for (size_t c = 0; c < job->cols; c++)
                avq_topk_push(heap, -row[c], (int64_t)(job->base_begin + c));
        }
    }
    return AVQ_OK;
}

static int write_results(avq_topk *heaps, size_t nq, size_t k, avq_metric metric,
                         const float *queries, size_t dim, int64_t *ids, float *scores) {
    for (size_t q = 0; q < nq; q++) {
        size_t found = avq_topk_finish(&heaps[q]);
        float qnorm2 = metric == AVQ_METRIC_L2
                           ? (float)avq_norm2_f64(queries + q * dim, dim) : 0.0f;
        for (size_t j = 0; j < k; j++) {
            int64_t id = -1;
            float score = NAN;
            if (j < found) {
                id = heaps[q].items[j].id;
                float d = heaps[q].items[j].dist;
                /* |q-x|² can come out slightly negative in float: clamp */
                score = metric == AVQ_METRIC_L2 ? fmaxf(d + qnorm2, 0.0f) : -d;
            }
            ids[q * k + j] = id;
            if (scores) scores[q * k + j] = score;
        }
    }
    return AVQ_OK;
}

int avq_exact_search(const float *base, size_t n, size_t dim, const float *queries,
                     size_t nq, avq_metric metric, size_t k, int threads,
                     int64_t *ids, float *scores, avq_progress_fn progress,
                     void *progress_user) {
    if (!base || !queries || !ids)
        return avq_fail(AVQ_ERR_INVALID, "exact search: NULL base, queries or ids");
    if (n == 0 || dim == 0 || nq == 0 || k == 0)
        return avq_fail(AVQ_ERR_INVALID,
                        "exact search: n=%zu, dim=%zu, nq=%zu, k=%zu must all be >= 1",
                        n, dim, nq, k);
    if (metric != AVQ_METRIC_DOT && metric != AVQ_METRIC_L2 && metric != AVQ_METRIC_COSINE)
        return avq_fail(AVQ_ERR_INVALID, "exact search: unknown metric %d", (int)metric);
    if (n > (size_t)INT32_MAX || dim > (size_t)INT32_MAX)
        return avq_fail(AVQ_ERR_INVALID, "exact search: n=%zu or dim=%zu too large", n, dim);
    /* padding beyond n is allowed up to avq_index_search's limit, so that a
     * k like 10^9 is refused here, before anything (ours or a binding's
     * nq x k result arrays) is sized by it */
    if (k > n && k > EXACT_MAX_PADDED_K)
        return avq_fail(AVQ_ERR_INVALID,
                        "exact search: k = %zu exceeds both the %zu base rows and the limit of "
                        "%d results per query", k, n, EXACT_MAX_PADDED_K);
    int st = avq_check_rows(base, n, dim, metric, "exact search", "base row");
    if (st == AVQ_OK) st = avq_check_rows(queries, nq, dim, metric, "exact search", "query row");
    if (st != AVQ_OK) return st;

    size_t kk = k < n ? k : n;  /* at most n real results exist */
    size_t cap = 2 * kk + 1;
    float *norm_base = NULL, *norm_queries = NULL, *base_norms2 = NULL, *tile = NULL;
    avq_neighbor *storage = NULL;
    avq_topk *heaps = NULL;
    size_t tile_rows = nq < QUERY_TILE ? nq : QUERY_TILE;
    size_t tile_cols = n < BASE_TILE ? n : BASE_TILE;
    size_t bytes = 0;
    st = AVQ_OK;

    if (!avq_mul_ok(nq, cap * sizeof(avq_neighbor), &bytes) ||
        !(storage = malloc(bytes)) || !(heaps = malloc(nq * sizeof *heaps)) ||
        !(tile = avq_alloc_aligned(tile_rows * tile_cols * sizeof(float)))) {
        st = avq_fail_nomem("exact search buffers", bytes);
        goto done;
    }
    if (metric == AVQ_METRIC_COSINE) {
        norm_base = avq_normalized_copy(base, n, dim);
        norm_queries = avq_normalized_copy(queries, nq, dim);
        if (!norm_base || !norm_queries) {
            st = avq_fail_nomem("normalised copies", (n + nq) * dim * sizeof(float));
            goto done;
        }
        base = norm_base;
        queries = norm_queries;
    }
    if (metric == AVQ_METRIC_L2) {
        if (!(base_norms2 = malloc(n * sizeof(float)))) {
            st = avq_fail_nomem("base norms", n * sizeof(float));
            goto done;
        }
        avq_row_norms2(base, n, dim, base_norms2);
    }
    for (size_t q = 0; q < nq; q++) avq_topk_init(&heaps[q], kk, storage + q * cap, cap);

    size_t total = ((nq + tile_rows - 1) / tile_rows) * n, done_units = 0;
    for (size_t q0 = 0; q0 < nq && st == AVQ_OK; q0 += tile_rows) {
        size_t rows = nq - q0 < tile_rows ? nq - q0 : tile_rows;
        for (size_t b0 = 0; b0 < n && st == AVQ_OK; b0 += tile_cols) {
            size_t cols = n - b0 < tile_cols ? n - b0 : tile_cols;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)cols,
                        (int)dim, 1.0f, queries + q0 * dim, (int)dim, base + b0 * dim,
                        (int)dim, 0.0f, tile, (int)cols);
            tile_job job = {metric, base_norms2, tile, b0, cols, q0, heaps};
            st = avq_parallel_for(rows, 16, threads, select_tile_rows, &job, NULL, NULL,
                                  "exact");
            done_units += cols;
            if (st == AVQ_OK && progress && progress(progress_user, "exact", done_units, total))
                st = avq_fail(AVQ_ERR_CANCELLED, "exact search cancelled by the progress callback");
        }
    }
    if (st == AVQ_OK)
        st = write_results(heaps, nq, k, metric, queries, dim, ids, scores);
done:
    free(norm_base);
    free(norm_queries);
    free(base_norms2);
    avq_free_aligned(tile);
    free(storage);
    free(heaps);
    return st;
}
