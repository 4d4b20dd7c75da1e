/*
 * search.c -- answering queries with an index.
 *
 * One query goes through five steps:
 *   1. prepare    copy (normalise for cosine), check it is finite
 *   2. leaves     score every leaf center with one dot-product kernel call,
 *                 keep the best `leaves_to_search`, visit best first -- the
 *                 top-k threshold then tightens as early as possible, which
 *                 lets the scan reject more candidates in later leaves
 *   3. LUT        one float LUT for the whole query (the leaf only adds a
 *                 bias -<q, c_leaf>), quantized to uint8 once
 *   4. scan       the SIMD fast scan of each leaf's packed codes pushes only
 *                 candidates below the running threshold into ONE top-k
 *                 buffer shared by all leaves
 *   5. reorder    the best `pre_reorder` candidates are re-scored exactly
 *                 (float or int8 vectors) and the final top-k is taken, with
 *                 ties to the lower caller id
 *
 * All memory a query needs lives in a scratch block allocated once per call
 * (single query) or once per worker (batch), so the hot loops never
 * allocate.  The index is only read: any number of threads may search it.
 */
#include "avq_internal.h"
#include "cpu.h"
#include "index.h"
#include "lut.h"
#include "scan.h"
#include "topk.h"
#include "vecmath.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t k, leaves, pre_reorder; /* resolved parameters */
} resolved_params;

typedef struct {
    float *q;               /* dim: the query as searched (normalised)      */
    float *q_i8;            /* dim: q scaled for int8 re-ranking            */
    float *lut;             /* K x C                                        */
    uint8_t *lut8;          /* K x C                                        */
    float *scores;          /* max(L, brute n) center / point scores        */
    avq_neighbor *leaves;   /* L                                            */
    avq_neighbor *cand;     /* candidate buffer, cand_capacity              */
    size_t cand_capacity;
    int64_t *positions;     /* pre_reorder                                  */
    float *exact;           /* pre_reorder                                  */
    avq_neighbor *final;    /* 2k + 1                                       */
    void *block;            /* the one allocation all of the above live in  */
} search_scratch;

static int resolve_params(const avq_index *idx, const avq_search_params *p,
                          resolved_params *r) {
    if (!p) return avq_fail(AVQ_ERR_INVALID, "search: NULL params");
    if (p->k == 0) return avq_fail(AVQ_ERR_INVALID, "search: k must be >= 1");
    if (p->k > (1u << 20))
        return avq_fail(AVQ_ERR_INVALID, "search: k = %zu is unreasonably large (max 1048576)",
                        p->k);
    if (p->leaves_to_search > idx->num_leaves)
        return avq_fail(AVQ_ERR_INVALID, "search: leaves_to_search %zu exceeds the index's %zu leaves",
                        p->leaves_to_search, idx->num_leaves);
    if (p->pre_reorder > (1u << 22))
        return avq_fail(AVQ_ERR_INVALID, "search: pre_reorder = %zu is unreasonably large",
                        p->pre_reorder);
    r->k = p->k;
    r->leaves = p->leaves_to_search ? p->leaves_to_search : idx->default_leaves_to_search;
    size_t pre = p->pre_reorder ? p->pre_reorder : idx->default_pre_reorder;
    r->pre_reorder = idx->reorder == AVQ_REORDER_NONE ? r->k : (pre < r->k ? r->k : pre);
    return AVQ_OK;
}

static size_t align64(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

static int scratch_init(search_scratch *s, const avq_index *idx, const resolved_params *r) {
    size_t d = idx->dim, KC = idx->num_blocks * idx->num_centers;
    size_t nscores = idx->mode == AVQ_MODE_BRUTE ? idx->n : idx->num_leaves;
    s->cand_capacity = 2 * r->pre_reorder + 1;
    size_t sizes[] = {
        d * sizeof(float),           d * sizeof(float),
        KC * sizeof(float),          KC,
        nscores * sizeof(float),     idx->num_leaves * sizeof(avq_neighbor),
        s->cand_capacity * sizeof(avq_neighbor), r->pre_reorder * sizeof(int64_t),
        r->pre_reorder * sizeof(float), (2 * r->k + 1) * sizeof(avq_neighbor),
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) total += align64(sizes[i]);
    char *p = avq_alloc_aligned(total);
    if (!p) return avq_fail_nomem("search scratch", total);
    s->block = p;
    void **slots[] = {(void **)&s->q,      (void **)&s->q_i8,   (void **)&s->lut,
                      (void **)&s->lut8,   (void **)&s->scores, (void **)&s->leaves,
                      (void **)&s->cand,   (void **)&s->positions, (void **)&s->exact,
                      (void **)&s->final};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *slots[i] = p;
        p += align64(sizes[i]);
    }
    return AVQ_OK;
}

static void scratch_free(search_scratch *s) { avq_free_aligned(s->block); }

/* Step 1.  Returns |q|² (needed to report L2 distances). */
static int prepare_query(const avq_index *idx, const float *query, search_scratch *s,
                         double *qnorm2) {
    size_t d = idx->dim;
    size_t bad = avq_first_non_finite(query, d);
    if (bad < d)
        return avq_fail(AVQ_ERR_INVALID, "search: query value %zu is not a finite number", bad);
    memcpy(s->q, query, d * sizeof(float));
    if (idx->params.metric == AVQ_METRIC_COSINE) avq_normalize_rows(s->q, 1, d);
    *qnorm2 = avq_norm2_f64(s->q, d);
    if (idx->reorder == AVQ_REORDER_INT8 && idx->vectors_i8)
        for (size_t j = 0; j < d; j++) s->q_i8[j] = s->q[j] * idx->i8_scale[j];
    return AVQ_OK;
}

/* Distance (smaller is better) from an inner product with a stored point. */
static inline float point_distance(const avq_index *idx, float dot, size_t pos) {
    return idx->params.metric == AVQ_METRIC_L2 ? idx->norms2[pos] - 2.0f * dot : -dot;
}

/* Exact scores of every point: the brute-force tier. */
static void score_all_points(const avq_index *idx, const avq_kernels *kern, search_scratch *s,
                             avq_topk *out) {
    kern->dot_rows(s->q, idx->vectors, idx->n, idx->dim, s->scores);
    for (size_t i = 0; i < idx->n; i++)
        avq_topk_push(out, point_distance(idx, s->scores[i], i), idx->ids[i]);
}

/* Step 2: the best `count` leaves, best first, into s->leaves. */
static void select_leaves(const avq_index *idx, const avq_kernels *kern, search_scratch *s,
                          size_t count) {
    size_t L = idx->num_leaves;
    float *dist = s->scores;
    kern->dot_rows(s->q, idx->centers, L, idx->dim, dist);
    if (idx->params.metric == AVQ_METRIC_L2) {
        for (size_t l = 0; l < L; l++) {
            float cn = idx->center_norms[l];
            dist[l] = cn * cn - 2.0f * dist[l];
        }
    } else {
        for (size_t l = 0; l < L; l++) dist[l] = -dist[l];
    }
    avq_smallest_of(dist, L, count, s->leaves);
}

/* The next leaf's first code groups are requested while this leaf is
 * scanned: a leaf is only a few KB, so the hardware prefetcher, which needs a
 * few misses to detect a stream, would otherwise start every leaf cold. */
enum { LEAF_PREFETCH_BYTES = 1024 };

static void prefetch_leaf_start(const avq_index *idx, size_t leaf) {
    const char *p = (const char *)(idx->codes + idx->code_offsets[leaf]);
    uint64_t bytes = idx->code_offsets[leaf + 1] - idx->code_offsets[leaf];
    if (bytes > LEAF_PREFETCH_BYTES) bytes = LEAF_PREFETCH_BYTES;
    for (uint64_t b = 0; b < bytes; b += 64) AVQ_PREFETCH(p + b);
}

/* Steps 3-4: quantized LUT and the fast scan into `cand`. */
static int scan_leaves(const avq_index *idx, const avq_kernels *kern, search_scratch *s,
                       size_t count, avq_topk *cand) {
    size_t K = idx->num_blocks, C = idx->num_centers;
    int st = avq_lut_build(s->q, idx->dim, idx->dims_per_block, idx->codebook, C,
                           idx->params.metric, s->lut);
    avq_lut8_info info;
    if (st == AVQ_OK) st = avq_lut_quantize(s->lut, K, C, AVQ_LUT8_BLOCK_MIN, s->lut8, &info);
    if (st != AVQ_OK) return st;
    avq_topk_scan_fn scan = idx->bits == 4 ? kern->lut16_topk : kern->lut256_topk;
    for (size_t i = 0; i < count; i++) {
        size_t l = (size_t)s->leaves[i].id;
        uint64_t first = idx->leaf_offsets[l], n = idx->leaf_offsets[l + 1] - first;
        if (n == 0) continue;
        /* dot/cosine: score = <q, c> + <q, r>, so the leaf adds -<q,c>,
         * which is exactly the leaf's selection distance; L2 has no bias */
        double bias = idx->params.metric == AVQ_METRIC_L2 ? 0.0 : (double)s->leaves[i].dist;
        if (i + 1 < count) prefetch_leaf_start(idx, (size_t)s->leaves[i + 1].id);
        avq_scan_leaf leaf = {idx->codes + idx->code_offsets[l], (size_t)n, K, NULL,
                              (int64_t)first};
        avq_scan_query query = {s->lut8, bias + info.offset, info.scale, cand};
        scan(&leaf, 1, &query);
    }
    return AVQ_OK;
}

/* Step 5: exact re-scoring of the candidates (positions) into `out`. */
static void reorder_candidates(const avq_index *idx, const avq_kernels *kern,
                               search_scratch *s, const avq_neighbor *c, size_t count,
                               avq_topk *out) {
    if (idx->reorder == AVQ_REORDER_NONE) {
        for (size_t i = 0; i < count; i++)
            avq_topk_push(out, c[i].dist, idx->ids[c[i].id]);
        return;
    }
    /* The candidates' rows are scattered over the whole index (one cache miss
     * per line); requesting all of them before the first dot product lets the
     * misses overlap instead of being paid one row at a time. */
    size_t row_bytes = idx->dim * (idx->reorder == AVQ_REORDER_FLOAT ? sizeof(float) : 1);
    const char *rows = idx->reorder == AVQ_REORDER_FLOAT ? (const char *)idx->vectors
                                                        : (const char *)idx->vectors_i8;
    for (size_t i = 0; i < count; i++) {
        s->positions[i] = c[i].id;
        const char *row = rows + (size_t)c[i].id * row_bytes;
        for (size_t b = 0; b < row_bytes; b += 64) AVQ_PREFETCH(row + b);
        AVQ_PREFETCH(row + row_bytes - 1);
        AVQ_PREFETCH(&idx->ids[c[i].id]);
    }
    if (idx->reorder == AVQ_REORDER_FLOAT)
        kern->dot_index(s->q, idx->vectors, idx->dim, s->positions, count, s->exact);
    else
        kern->dot_index_i8(s->q_i8, idx->vectors_i8, idx->dim, s->positions, count, s->exact);
    for (size_t i = 0; i < count; i++)
        avq_topk_push(out, point_distance(idx, s->exact[i], (size_t)c[i].id), idx->ids[c[i].id]);
}

static void write_output(const avq_index *idx, avq_topk *out, double qnorm2, size_t k,
                         int64_t *ids, float *scores) {
    size_t found = avq_topk_finish(out);
    for (size_t j = 0; j < k; j++) {
        int64_t id = -1;
        float score = NAN;
        if (j < found) {
            id = out->items[j].id;
            float d = out->items[j].dist;
            score = idx->params.metric == AVQ_METRIC_L2 ? fmaxf(d + (float)qnorm2, 0.0f) : -d;
        }
        ids[j] = id;
        if (scores) scores[j] = score;
    }
}

static int search_with_scratch(const avq_index *idx, const avq_kernels *kern,
                               const resolved_params *r, search_scratch *s,
                               const float *query, int64_t *ids, float *scores) {
    double qnorm2 = 0.0;
    int st = prepare_query(idx, query, s, &qnorm2);
    if (st != AVQ_OK) return st;
    avq_topk out;
    avq_topk_init(&out, r->k, s->final, 2 * r->k + 1);
    if (idx->mode == AVQ_MODE_BRUTE) {
        score_all_points(idx, kern, s, &out);
    } else {
        avq_topk cand;
        avq_topk_init(&cand, r->pre_reorder, s->cand, s->cand_capacity);
        select_leaves(idx, kern, s, r->leaves);
        st = scan_leaves(idx, kern, s, r->leaves, &cand);
        if (st != AVQ_OK) return st;
        size_t count = avq_topk_take(&cand);
        reorder_candidates(idx, kern, s, cand.items, count, &out);
    }
    write_output(idx, &out, qnorm2, r->k, ids, scores);
    return AVQ_OK;
}

int avq_index_search(const avq_index *idx, const float *query, const avq_search_params *p,
                     int64_t *ids, float *scores) {
    if (!idx || !query || !ids)
        return avq_fail(AVQ_ERR_INVALID, "search: NULL index, query or ids");
    resolved_params r;
    int st = resolve_params(idx, p, &r);
    if (st != AVQ_OK) return st;
    search_scratch s;
    st = scratch_init(&s, idx, &r);
    if (st != AVQ_OK) return st;
    st = search_with_scratch(idx, avq_kernels_get(), &r, &s, query, ids, scores);
    scratch_free(&s);
    return st;
}

typedef struct {
    const avq_index *idx;
    const avq_kernels *kern;
    resolved_params r;
    search_scratch *scratch; /* one per worker */
    const float *queries;
    int64_t *ids;
    float *scores;
} batch_job;

static int search_range(void *ctx, size_t begin, size_t end, int worker) {
    batch_job *job = ctx;
    size_t d = job->idx->dim, k = job->r.k;
    for (size_t q = begin; q < end; q++) {
        int st = search_with_scratch(job->idx, job->kern, &job->r, &job->scratch[worker],
                                     job->queries + q * d, job->ids + q * k,
                                     job->scores ? job->scores + q * k : NULL);
        if (st != AVQ_OK) {
            char why[256];
            snprintf(why, sizeof why, "%s", avq_last_error());
            return avq_fail(st, "query %zu: %s", q, why);
        }
    }
    return AVQ_OK;
}

int avq_index_search_batch(const avq_index *idx, const float *queries, size_t nq,
                           const avq_search_params *p, int threads, int64_t *ids,
                           float *scores) {
    if (!idx || !queries || !ids)
        return avq_fail(AVQ_ERR_INVALID, "search: NULL index, queries or ids");
    if (nq == 0) return AVQ_OK;
    batch_job job = {idx, avq_kernels_get(), {0, 0, 0}, NULL, queries, ids, scores};
    int st = resolve_params(idx, p, &job.r);
    if (st != AVQ_OK) return st;
    threads = avq_resolve_threads(threads);
    if ((size_t)threads > nq) threads = (int)nq;
    job.scratch = calloc((size_t)threads, sizeof *job.scratch);
    if (!job.scratch) return avq_fail_nomem("batch scratch", (size_t)threads * sizeof *job.scratch);
    int made = 0;
    for (; made < threads && st == AVQ_OK; made++) st = scratch_init(&job.scratch[made], idx, &job.r);
    if (st == AVQ_OK) {
        /* small chunks: dynamic balance, and a failing query stops the rest */
        size_t chunk = nq / ((size_t)threads * 8);
        st = avq_parallel_for(nq, chunk < 1 ? 1 : (chunk > 64 ? 64 : chunk), threads,
                              search_range, &job, NULL, NULL, "search");
    }
    for (int w = 0; w < made; w++) scratch_free(&job.scratch[w]);
    free(job.scratch);
    return st;
}
