/*
 * tune.c -- avq_index_tune: the fastest (leaves_to_search, pre_reorder) that
 * reaches a target recall@k on sample queries; and the two read-only
 * accessors it needs (avq_index_ids, avq_index_is_exact).  The CLI's
 * `avq tune` and Python's Index.tune are thin clients of it.
 *
 * Why a search over two numbers is enough: recall grows with both, time
 * grows with both, and for a fixed pre_reorder R the recall is (nearly)
 * monotone in the number of leaves L.  So for each R of a short geometric
 * ladder (2k, 3k, 5k, 8k, 12k, 20k, 30k, capped by the index size) a
 * bisection finds the smallest L that reaches the target on the tuning
 * half; each such (L, R) is then timed one query at a time on the calling
 * thread (the latency protocol; best of `runs` passes by the thread's CPU
 * clock, which other load on the machine disturbs least), and the fastest
 * wins.  Its recall on the held-out half is reported too: what to expect
 * on new queries, a little below the target when tuning overfits.
 *
 * Which queries: query files are often sorted (ann-benchmarks' GloVe test
 * set by word frequency, logs by time), so the first rows are not a fair
 * sample -- on GloVe the first 2,000 are the easy ones.  The sample is
 * spread evenly over the whole set (or drawn at random with a seed), then
 * its even members tune and its odd members check.
 */
#include "avq_internal.h"
#include "index.h"
#include "vecmath.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TUNE_PARAMS_MIN_SIZE (offsetof(avq_tune_params, threads) + sizeof(int))

void avq_tune_params_init_sized(avq_tune_params *p, size_t struct_size) {
    if (!p || struct_size == 0) return;
    avq_tune_params full;
    memset(&full, 0, sizeof full);
    full.struct_size = struct_size;
    full.target_recall = AVQ_TUNE_DEFAULT_TARGET;
    full.k = 10;
    full.max_queries = AVQ_TUNE_DEFAULT_QUERIES;
    full.seed = 0;
    full.runs = 3;
    full.threads = 0;
    memcpy(p, &full, struct_size < sizeof full ? struct_size : sizeof full);
}

int avq_index_is_exact(const avq_index *index) {
    return index && index->q->mode == AVQ_MODE_BRUTE;
}

int avq_index_ids(const avq_index *cx, int64_t *ids, size_t capacity, size_t *count) {
    avq_index *x = (avq_index *)cx;
    if (!x || !count || (capacity > 0 && !ids))
        return avq_fail(AVQ_ERR_INVALID, "ids: NULL argument");
    /* no writer while listing: one consistent set */
    pthread_mutex_lock(&x->write_lock);
    size_t n = 0;
    for (size_t l = 0; l < x->num_leaves; l++) {
        const avq_leaf *v = avq_leaf_load(x, l);
        for (size_t s = 0; s < v->n; s++) {
            if (!avq_leaf_slot_alive(v, s)) continue;
            if (n < capacity) ids[n] = v->store->ids[s];
            n++;
        }
    }
    pthread_mutex_unlock(&x->write_lock);
    *count = n;
    return AVQ_OK;
}

static double thread_cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const avq_index *index;
    const float *queries; /* nq x dim */
    size_t nq, dim, k;
    const int64_t *truth; /* nq x k, best first */
    int threads;
    int64_t *ids; /* nq x k scratch */
} tune_set;

static avq_search_params setting(size_t k, size_t leaves, size_t pre) {
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.k = k;
    sp.leaves_to_search = leaves;
    sp.pre_reorder = pre;
    return sp;
}

/* recall@k of t->ids against t->truth */
static double recall_of(const tune_set *t) {
    size_t hits = 0, k = t->k;
    for (size_t q = 0; q < t->nq; q++)
        for (size_t i = 0; i < k; i++) {
            int64_t id = t->ids[q * k + i];
            if (id == AVQ_NO_ID) continue;
            for (size_t j = 0; j < k; j++)
                if (id == t->truth[q * k + j]) {
                    hits++;
                    break;
                }
        }
    return t->nq ? (double)hits / (double)(t->nq * k) : 0.0;
}

/* Recall of one setting (batched: the answer is the one-at-a-time one). */
static int measure_recall(const tune_set *t, size_t leaves, size_t pre, double *recall) {
    avq_search_params sp = setting(t->k, leaves, pre);
    int st = avq_index_search_batch(t->index, t->queries, t->nq, &sp, t->threads, t->ids, NULL);
    if (st == AVQ_OK) *recall = recall_of(t);
    return st;
}

/* Queries/second of one setting, one query at a time on this thread. */
static int measure_qps(const tune_set *t, size_t leaves, size_t pre, int runs, double *qps) {
    avq_search_params sp = setting(t->k, leaves, pre);
    double best = 1e30;
    for (int r = 0; r < runs; r++) {
        double c0 = thread_cpu_seconds();
        for (size_t q = 0; q < t->nq; q++) {
            int st = avq_index_search(t->index, t->queries + q * t->dim, &sp, t->ids + q * t->k,
                                      NULL);
            if (st != AVQ_OK) return st;
        }
        double secs = thread_cpu_seconds() - c0;
        if (secs < best) best = secs;
    }
    *qps = (double)t->nq / (best > 1e-9 ? best : 1e-9);
    return AVQ_OK;
}

/* Smallest number of leaves reaching `target` with `pre` candidates (0 if
 * even all leaves do not), and its recall. */
static int min_leaves(const tune_set *t, size_t pre, double target, size_t *out,
                      double *recall_out) {
    size_t L = avq_index_num_leaves(t->index);
    double r = 0.0;
    int st = measure_recall(t, L, pre, &r);
    if (st != AVQ_OK) return st;
    *out = 0;
    *recall_out = r;
    if (r < target) return AVQ_OK;
    size_t lo = 1, hi = L; /* hi reaches the target */
    double r_hi = r;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        st = measure_recall(t, mid, pre, &r);
        if (st != AVQ_OK) return st;
        if (r >= target) {
            hi = mid;
            r_hi = r;
        } else {
            lo = mid + 1;
        }
    }
    *out = hi;
    *recall_out = r_hi;
    return AVQ_OK;
}

/* The sample: m of nq row numbers, ascending -- evenly spaced (seed 0) or
 * a uniformly random subset. */
static int choose_rows(size_t nq, size_t m, uint64_t seed, size_t *rows) {
    if (seed == 0) {
        /* floor(i * nq / m) without overflow: i < m and nq % m < m */
        for (size_t i = 0; i < m; i++) rows[i] = i * (nq / m) + i * (nq % m) / m;
        return AVQ_OK;
    }
    size_t *perm = malloc(nq * sizeof *perm);
    if (!perm) return avq_fail_nomem("tune sample", nq * sizeof *perm);
    for (size_t i = 0; i < nq; i++) perm[i] = i;
    uint64_t state = seed;
    for (size_t i = 0; i < m; i++) { /* partial Fisher-Yates */
        size_t j = i + (size_t)(avq_rng_next(&state) % (uint64_t)(nq - i));
        size_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    /* ascending (a counting pass over a bitmap keeps it O(nq)) */
    uint8_t *chosen = calloc(nq, 1);
    if (!chosen) {
        free(perm);
        return avq_fail_nomem("tune sample", nq);
    }
    for (size_t i = 0; i < m; i++) chosen[perm[i]] = 1;
    for (size_t i = 0, n = 0; i < nq; i++)
        if (chosen[i]) rows[n++] = i;
    free(chosen);
    free(perm);
    return AVQ_OK;
}

int avq_tune_sample(size_t nq, const avq_tune_params *params, size_t *rows, size_t *count) {
    if (!params || !rows || !count) return avq_fail(AVQ_ERR_INVALID, "tune sample: NULL argument");
    if (params->struct_size < TUNE_PARAMS_MIN_SIZE)
        return avq_fail(AVQ_ERR_INVALID, "tune sample: params.struct_size is %zu: initialise "
                                         "the struct with avq_tune_params_init()",
                        params->struct_size);
    size_t m = params->max_queries && params->max_queries < nq ? params->max_queries : nq;
    int st = m ? choose_rows(nq, m, params->seed, rows) : AVQ_OK;
    if (st == AVQ_OK) *count = m;
    return st;
}

/* The exact top-k of the sampled queries against the index's own vectors
 * (needs float re-ranking data: exact copies). */
static int truth_from_index(const avq_index *index, const float *queries, size_t nq, size_t k,
                            int threads, int64_t *truth) {
    if (!avq_index_is_exact(index) && index->q->reorder != AVQ_REORDER_FLOAT)
        return avq_fail(AVQ_ERR_UNSUPPORTED,
                        "tune: without ground truth the neighbours are computed from the index's "
                        "own vectors, but this index keeps %s: give the true neighbours",
                        index->q->reorder == AVQ_REORDER_INT8      ? "only int8 approximations"
                        : index->q->reorder == AVQ_REORDER_FLOAT16 ? "only float16 approximations"
                                                                   : "none (reorder 'none')");
    size_t n = 0, d = index->dim, got = 0;
    int st = avq_index_ids(index, NULL, 0, &n);
    if (st != AVQ_OK) return st;
    if (n < k) return avq_fail(AVQ_ERR_INVALID, "tune: k = %zu exceeds the index's %zu vectors", k, n);
    int64_t *ids = malloc(n * sizeof *ids), *rows = malloc(nq * k * sizeof *rows);
    float *base = NULL;
    size_t bytes;
    if (avq_mul_ok(n, d * sizeof(float), &bytes)) base = malloc(bytes);
    if (!ids || !rows || !base) {
        st = avq_fail_nomem("tune ground truth", n * d * sizeof(float));
        goto done;
    }
    st = avq_index_ids(index, ids, n, &got);
    if (st == AVQ_OK && got != n)
        st = avq_fail(AVQ_ERR_INVALID, "tune: the index changed while its ground truth was "
                                       "computed (a writer ran): tune without writers");
    if (st == AVQ_OK) st = avq_index_get(index, ids, n, base);
    if (st == AVQ_OK)
        st = avq_exact_search(base, n, d, queries, nq, avq_index_metric(index), k, threads, rows,
                              NULL, NULL, NULL);
    if (st == AVQ_OK)
        for (size_t i = 0; i < nq * k; i++) truth[i] = rows[i] < 0 ? AVQ_NO_ID : ids[rows[i]];
done:
    free(ids);
    free(rows);
    free(base);
    return st;
}

static int report(const avq_tune_params *p, size_t done, size_t total) {
    if (p->struct_size >= offsetof(avq_tune_params, progress_user) + sizeof(void *) &&
        p->progress && p->progress(p->progress_user, "tune", done, total) != 0)
        return avq_fail(AVQ_ERR_CANCELLED, "tune: cancelled by the progress callback");
    return AVQ_OK;
}

int avq_index_tune_sized(const avq_index *index, const float *queries, size_t nq,
                         const int64_t *truth, size_t truth_cols, const avq_tune_params *params,
                         avq_tune_result *out, size_t out_size) {
    if (!index || !queries || !params || !out)
        return avq_fail(AVQ_ERR_INVALID, "tune: NULL argument");
    if (params->struct_size < TUNE_PARAMS_MIN_SIZE)
        return avq_fail(AVQ_ERR_INVALID,
                        "tune: params.struct_size is %zu: initialise the struct with "
                        "avq_tune_params_init()", params->struct_size);
    if (out_size < offsetof(avq_tune_result, candidates))
        return avq_fail(AVQ_ERR_INVALID, "tune: result struct too small (%zu bytes)", out_size);
    avq_tune_params p;
    avq_tune_params_init(&p);
    memcpy(&p, params, params->struct_size < sizeof p ? params->struct_size : sizeof p);
    p.struct_size = params->struct_size;
    size_t k = p.k, dim = avq_index_dim(index), size = avq_index_size(index);
    if (!(p.target_recall > 0.0 && p.target_recall <= 1.0))
        return avq_fail(AVQ_ERR_INVALID, "tune: target_recall must be in (0, 1], got %g",
                        p.target_recall);
    if (k == 0 || k > size)
        return avq_fail(AVQ_ERR_INVALID, "tune: k = %zu must be in [1, %zu] (the index's size)",
                        k, size);
    if (p.runs < 1 || p.runs > 100)
        return avq_fail(AVQ_ERR_INVALID, "tune: runs must be 1..100, got %d", p.runs);
    size_t m = p.max_queries && p.max_queries < nq ? p.max_queries : nq;
    if (m < 2)
        return avq_fail(AVQ_ERR_INVALID, "tune: %zu queries; need at least 2 (half tune, half "
                                         "check)", m);
    if (truth && truth_cols < k)
        return avq_fail(AVQ_ERR_INVALID, "tune: the ground truth has %zu neighbours per query; "
                                         "need k = %zu", truth_cols, k);
    int st0 = avq_check_rows(queries, nq, dim, avq_index_metric(index), "tune", "query");
    if (st0 != AVQ_OK) return st0;

    size_t half = (m + 1) / 2, *rows = malloc(m * sizeof *rows);
    float *q_split = malloc(m * dim * sizeof *q_split);
    int64_t *t_split = malloc(m * k * sizeof *t_split), *ids = malloc(half * k * sizeof *ids);
    int st = AVQ_OK;
    if (!rows || !q_split || !t_split || !ids) {
        st = avq_fail_nomem("tune", m * (dim * sizeof(float) + 2 * k * sizeof(int64_t)));
        goto done;
    }
    if ((st = choose_rows(nq, m, p.seed, rows)) != AVQ_OK) goto done;
    /* even sample members first (they tune), then the odd ones (check) */
    for (size_t i = 0; i < m; i++) {
        size_t at = (i % 2 ? half : 0) + i / 2;
        memcpy(q_split + at * dim, queries + rows[i] * dim, dim * sizeof(float));
        if (truth) memcpy(t_split + at * k, truth + rows[i] * truth_cols, k * sizeof(int64_t));
    }
    if (!truth && (st = truth_from_index(index, q_split, m, k, p.threads, t_split)) != AVQ_OK)
        goto done;

    tune_set tuning = {index, q_split, half, dim, k, t_split, p.threads, ids};
    tune_set check = tuning;
    check.queries = q_split + half * dim;
    check.nq = m / 2;
    check.truth = t_split + half * k;

    avq_tune_result r;
    memset(&r, 0, sizeof r);
    r.struct_size = out_size < sizeof r ? out_size : sizeof r;
    r.tune_queries = tuning.nq;
    r.check_queries = check.nq;
    r.exact = avq_index_is_exact(index);
    if (r.exact) {
        /* every search is exact: nothing to choose */
        avq_search_params sp;
        avq_search_params_init(&sp);
        avq_index_default_search_params(index, &sp);
        r.leaves_to_search = sp.leaves_to_search;
        r.pre_reorder = sp.pre_reorder;
        if ((st = measure_recall(&tuning, 0, 0, &r.recall_tune)) != AVQ_OK) goto done;
        if ((st = measure_recall(&check, 0, 0, &r.recall_check)) != AVQ_OK) goto done;
        if ((st = measure_qps(&tuning, 0, 0, p.runs, &r.qps)) != AVQ_OK) goto done;
        r.reached = r.recall_tune >= p.target_recall;
    } else {
        static const size_t ladder[] = {2, 3, 5, 8, 12, 20, 30};
        enum { RUNGS = sizeof ladder / sizeof ladder[0] };
        _Static_assert(RUNGS <= AVQ_TUNE_MAX_CANDIDATES, "candidate array too small");
        for (size_t i = 0; i < RUNGS; i++) {
            size_t R = ladder[i] * k;
            if (R > size) break;
            if ((st = report(&p, i, RUNGS)) != AVQ_OK) goto done;
            avq_tune_candidate c = {0, R, 0.0, 0.0};
            if ((st = min_leaves(&tuning, R, p.target_recall, &c.leaves_to_search, &c.recall)))
                goto done;
            if (c.leaves_to_search &&
                (st = measure_qps(&tuning, c.leaves_to_search, R, p.runs, &c.qps)) != AVQ_OK)
                goto done;
            r.candidates[r.num_candidates++] = c;
            if (c.leaves_to_search && c.qps > r.qps) {
                r.qps = c.qps;
                r.leaves_to_search = c.leaves_to_search;
                r.pre_reorder = R;
                r.recall_tune = c.recall;
            }
        }
        r.reached = r.leaves_to_search > 0;
        if (!r.reached) {
            /* the best there is: every leaf, the most candidates tried */
            for (size_t i = 0; i < r.num_candidates; i++)
                if (r.candidates[i].recall >= r.recall_tune) {
                    r.recall_tune = r.candidates[i].recall;
                    r.pre_reorder = r.candidates[i].pre_reorder;
                }
            r.leaves_to_search = avq_index_num_leaves(index);
            if (!r.pre_reorder) r.pre_reorder = k;
            if ((st = measure_qps(&tuning, r.leaves_to_search, r.pre_reorder, p.runs, &r.qps)))
                goto done;
        }
        st = measure_recall(&check, r.leaves_to_search, r.pre_reorder, &r.recall_check);
        if (st != AVQ_OK) goto done;
        if ((st = report(&p, RUNGS, RUNGS)) != AVQ_OK) goto done;
    }
    memcpy(out, &r, r.struct_size);
    out->struct_size = out_size;
done:
    free(rows);
    free(q_split);
    free(t_split);
    free(ids);
    return st;
}
