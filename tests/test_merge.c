/*
 * test_merge.c -- merging per-shard results (src/merge.c, and the candidate
 * export of src/search.c): the k-way top-k merge against a full sort (ties,
 * k above the total, empty lists, padding, refusals), the candidate merge
 * against a sort, and the point of both: shards made from one quantizer,
 * searched for candidates and merged, give the ids and scores of one index
 * over all the data -- for every metric, every reorder kind, the exact tier,
 * duplicate-heavy data (ties of quantized scores across shards), and
 * leaves emptied by removals in some shards only.
 */
#include <criterion/criterion.h>

#include "avq.h"
#include "avq_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- avq_merge_topk ------------------------------------------------------ */

typedef struct {
    float score;
    int64_t id;
} scored;

static avq_metric sort_metric;

static int cmp_scored(const void *pa, const void *pb) {
    const scored *a = pa, *b = pb;
    if (a->score != b->score) {
        bool better = sort_metric == AVQ_METRIC_L2 ? a->score < b->score : a->score > b->score;
        return better ? -1 : 1;
    }
    return (a->id > b->id) - (a->id < b->id);
}

/* nlists lists of random widths for nq queries, scores from `levels`
 * values (ties), ids distinct; the merge must equal a sort of everything. */
static void merge_vs_sort(avq_metric metric, size_t nlists, size_t nq, size_t k, unsigned levels,
                          uint64_t seed) {
    int64_t **ids = calloc(nlists, sizeof *ids);
    float **scores = calloc(nlists, sizeof *scores);
    size_t *widths = calloc(nlists, sizeof *widths);
    scored *all = malloc(nlists * 64 * sizeof *all);
    int64_t *out_ids = malloc(nq * k * sizeof *out_ids);
    float *out_scores = malloc(nq * k * sizeof *out_scores);
    cr_assert(ids && scores && widths && all && out_ids && out_scores);
    sort_metric = metric;
    int64_t next_id = 0;
    /* per list: width w, per query row: `fill` real entries then padding */
    size_t **fill = calloc(nlists, sizeof *fill);
    for (size_t i = 0; i < nlists; i++) {
        widths[i] = avq_rng_next(&seed) % 12; /* 0 = an empty list */
        ids[i] = widths[i] ? malloc(nq * widths[i] * sizeof(int64_t)) : NULL;
        scores[i] = widths[i] ? malloc(nq * widths[i] * sizeof(float)) : NULL;
        fill[i] = calloc(nq, sizeof(size_t));
    }
    for (size_t q = 0; q < nq; q++) {
        for (size_t i = 0; i < nlists; i++) {
            size_t w = widths[i];
            if (!w) continue;
            size_t f = avq_rng_next(&seed) % (w + 1);
            fill[i][q] = f;
            scored row[12];
            for (size_t j = 0; j < f; j++) {
                row[j].score = levels ? (float)(avq_rng_next(&seed) % levels)
                                      : (float)avq_rng_uniform(&seed);
                row[j].id = next_id + (int64_t)(avq_rng_next(&seed) % 1000) * 1000 + (int64_t)i;
            }
            next_id += 1000000;
            qsort(row, f, sizeof row[0], cmp_scored);
            for (size_t j = 0; j < w; j++) {
                ids[i][q * w + j] = j < f ? row[j].id : AVQ_NO_ID;
                scores[i][q * w + j] = j < f ? row[j].score : NAN;
            }
        }
    }
    cr_assert_eq(avq_merge_topk(metric, nq, nlists, (const int64_t *const *)ids,
                                (const float *const *)scores, widths, k, out_ids, out_scores),
                 AVQ_OK, "%s", avq_last_error());
    for (size_t q = 0; q < nq; q++) {
        size_t n = 0;
        for (size_t i = 0; i < nlists; i++)
            for (size_t j = 0; j < fill[i][q]; j++)
                all[n++] = (scored){scores[i][q * widths[i] + j], ids[i][q * widths[i] + j]};
        qsort(all, n, sizeof *all, cmp_scored);
        for (size_t j = 0; j < k; j++) {
            if (j < n) {
                cr_assert_eq(out_ids[q * k + j], all[j].id, "query %zu rank %zu", q, j);
                cr_assert_eq(out_scores[q * k + j], all[j].score);
            } else {
                cr_assert_eq(out_ids[q * k + j], AVQ_NO_ID);
                cr_assert(isnan(out_scores[q * k + j]));
            }
        }
    }
    for (size_t i = 0; i < nlists; i++) {
        free(ids[i]);
        free(scores[i]);
        free(fill[i]);
    }
    free(fill);
    free(ids);
    free(scores);
    free(widths);
    free(all);
    free(out_ids);
    free(out_scores);
}

Test(merge, topk_equals_sort_every_metric) {
    for (int m = 0; m < 3; m++) {
        merge_vs_sort((avq_metric)m, 5, 40, 10, 0, 1 + (uint64_t)m);
        merge_vs_sort((avq_metric)m, 7, 40, 3, 4, 11 + (uint64_t)m); /* heavy ties */
    }
}

Test(merge, topk_k_above_total_pads) {
    merge_vs_sort(AVQ_METRIC_DOT, 3, 20, 100, 0, 5); /* at most 33 real entries */
    merge_vs_sort(AVQ_METRIC_L2, 1, 20, 50, 3, 6);   /* one list */
}

Test(merge, topk_no_lists_and_empty_lists) {
    int64_t out[4];
    float sc[4];
    cr_assert_eq(avq_merge_topk(AVQ_METRIC_DOT, 1, 0, NULL, NULL, NULL, 4, out, sc), AVQ_OK);
    for (int j = 0; j < 4; j++) {
        cr_assert_eq(out[j], AVQ_NO_ID);
        cr_assert(isnan(sc[j]));
    }
    const int64_t *ids[2] = {NULL, NULL};
    const float *scores[2] = {NULL, NULL};
    size_t widths[2] = {0, 0};
    cr_assert_eq(avq_merge_topk(AVQ_METRIC_L2, 1, 2, ids, scores, widths, 4, out, NULL), AVQ_OK);
    cr_assert_eq(out[0], AVQ_NO_ID);
}

Test(merge, topk_ties_go_to_the_lower_id_across_lists) {
    /* the same score in three lists: ids 7, 3, 5 -> 3, 5, 7 */
    int64_t a[] = {7, 9}, b[] = {3, 8}, c[] = {5, AVQ_NO_ID};
    float sa[] = {1.0f, 0.5f}, sb[] = {1.0f, 0.5f}, sc[] = {1.0f, NAN};
    const int64_t *ids[] = {a, b, c};
    const float *scores[] = {sa, sb, sc};
    size_t widths[] = {2, 2, 2};
    int64_t out[5];
    float os[5];
    cr_assert_eq(avq_merge_topk(AVQ_METRIC_COSINE, 1, 3, ids, scores, widths, 5, out, os), AVQ_OK);
    int64_t want[] = {3, 5, 7, 8, 9};
    for (int j = 0; j < 5; j++) cr_assert_eq(out[j], want[j], "rank %d: %lld", j, (long long)out[j]);
    cr_assert_eq(os[3], 0.5f);
    /* L2: smaller first */
    float la[] = {0.5f, 1.0f}, lb[] = {0.5f, 2.0f}, lc[] = {0.1f, NAN};
    const float *l2[] = {la, lb, lc};
    cr_assert_eq(avq_merge_topk(AVQ_METRIC_L2, 1, 3, ids, l2, widths, 3, out, os), AVQ_OK);
    cr_assert_eq(out[0], 5);
    cr_assert_eq(out[1], 3);
    cr_assert_eq(out[2], 7);
}

Test(merge, topk_refuses_bad_input) {
    int64_t a[] = {1, 2};
    float up[] = {0.1f, 0.9f}, nan[] = {NAN, 0.0f};
    const int64_t *ids[] = {a};
    const float *s_up[] = {up}, *s_nan[] = {nan};
    size_t w[] = {2};
    int64_t out[2];
    /* a DOT row in increasing order is out of order */
    cr_assert_eq(avq_merge_topk(AVQ_METRIC_DOT, 1, 1, ids, s_up, w, 2, out, NULL),
                 AVQ_ERR_INVALID);
    cr_assert(strstr(avq_last_error(), "order"), "%s", avq_last_error());
    cr_assert_eq(avq_merge_topk(AVQ_METRIC_DOT, 1, 1, ids, s_nan, w, 2, out, NULL),
                 AVQ_ERR_INVALID);
    cr_assert(strstr(avq_last_error(), "NaN"), "%s", avq_last_error());
    cr_assert_eq(avq_merge_topk(AVQ_METRIC_DOT, 1, 1, ids, s_up, w, 0, out, NULL),
                 AVQ_ERR_INVALID);
    cr_assert_eq(avq_merge_topk(AVQ_METRIC_L2, 1, 1, NULL, s_up, w, 2, out, NULL),
                 AVQ_ERR_INVALID);
    /* the same lists are fine for L2 (ascending) */
    cr_assert_eq(avq_merge_topk(AVQ_METRIC_L2, 1, 1, ids, s_up, w, 2, out, NULL), AVQ_OK);
}

/* ---- avq_merge_candidates vs a sort -------------------------------------- */

static int cmp_approx(const void *pa, const void *pb) {
    const avq_candidate *a = pa, *b = pb;
    if (a->approx != b->approx) return a->approx < b->approx ? -1 : 1;
    if (a->leaf != b->leaf) return a->leaf < b->leaf ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

static int cmp_exact_ref(const void *pa, const void *pb) {
    const avq_candidate *a = pa, *b = pb;
    if (a->exact != b->exact) return a->exact < b->exact ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

Test(merge, candidates_equal_sort) {
    enum { NL = 4, NQ = 30, R = 20, K = 7 };
    uint64_t seed = 99;
    avq_candidate *lists[NL];
    size_t *counts[NL];
    float offsets[NQ];
    for (size_t q = 0; q < NQ; q++) offsets[q] = (float)q;
    for (size_t i = 0; i < NL; i++) {
        lists[i] = malloc(NQ * R * sizeof(avq_candidate));
        counts[i] = malloc(NQ * sizeof(size_t));
        for (size_t q = 0; q < NQ; q++) {
            counts[i][q] = i == 2 ? 0 : avq_rng_next(&seed) % (R + 1);
            for (size_t j = 0; j < R; j++)
                lists[i][q * R + j] = (avq_candidate){
                    (int64_t)(q * 1000 + j * NL + i), (float)(avq_rng_next(&seed) % 5),
                    (float)(avq_rng_next(&seed) % 7) - 3.0f, (uint32_t)(avq_rng_next(&seed) % 3),
                    0};
        }
    }
    lists[3] = NULL; /* a shard that did not answer */
    for (int m = 0; m < 3; m++) {
        int64_t ids[NQ * K];
        float scores[NQ * K];
        cr_assert_eq(avq_merge_candidates((avq_metric)m, NQ, NL,
                                          (const avq_candidate *const *)lists,
                                          (const size_t *const *)counts, R, K, offsets, ids,
                                          scores),
                     AVQ_OK, "%s", avq_last_error());
        for (size_t q = 0; q < NQ; q++) {
            avq_candidate all[NL * R];
            size_t n = 0;
            for (size_t i = 0; i < NL; i++)
                if (lists[i])
                    for (size_t j = 0; j < counts[i][q]; j++) all[n++] = lists[i][q * R + j];
            qsort(all, n, sizeof *all, cmp_approx);
            if (n > R) n = R;
            qsort(all, n, sizeof *all, cmp_exact_ref);
            for (size_t j = 0; j < K; j++) {
                if (j >= n) {
                    cr_assert_eq(ids[q * K + j], AVQ_NO_ID);
                    continue;
                }
                cr_assert_eq(ids[q * K + j], all[j].id, "metric %d query %zu rank %zu", m, q, j);
                float want = m == AVQ_METRIC_L2 ? fmaxf(all[j].exact + offsets[q], 0.0f)
                                                : -all[j].exact;
                cr_assert_eq(scores[q * K + j], want);
            }
        }
    }
    /* a count above R is refused */
    counts[0][0] = R + 1;
    int64_t ids[NQ * K];
    cr_assert_eq(avq_merge_candidates(AVQ_METRIC_DOT, NQ, NL, (const avq_candidate *const *)lists,
                                      (const size_t *const *)counts, R, K, offsets, ids, NULL),
                 AVQ_ERR_INVALID);
    cr_assert_eq(avq_merge_candidates(AVQ_METRIC_DOT, NQ, NL, (const avq_candidate *const *)lists,
                                      (const size_t *const *)counts, R, R + 1, offsets, ids, NULL),
                 AVQ_ERR_INVALID);
    for (size_t i = 0; i < NL; i++) {
        free(lists[i]);
        free(counts[i]);
    }
}

/* ---- shards of one quantizer == one index --------------------------------- */

enum { DIM = 16, N = 4000, NQ = 60, SHARDS = 3 };

/* Clustered data; `dups` > 0 makes every row one of `dups` distinct rows
 * (ties of quantized and exact scores everywhere). */
static float *make_data(size_t n, unsigned dups, uint64_t seed) {
    float *x = malloc(n * DIM * sizeof *x);
    for (size_t i = 0; i < n; i++) {
        size_t src = dups ? i % dups : i;
        uint64_t s = seed + src * 7919;
        float c = (float)(src % 13);
        for (size_t j = 0; j < DIM; j++)
            x[i * DIM + j] = (float)(avq_rng_uniform(&s) - 0.5) + (j % 3 == 0 ? c * 0.3f : 0.0f);
    }
    return x;
}

/* The shard of an id in these tests (any function works: shards hold
 * disjoint ids). */
static size_t shard_of(int64_t id) { return (size_t)(((uint64_t)id * 2654435761u) >> 7) % SHARDS; }

typedef struct {
    avq_metric metric;
    avq_reorder reorder;
    size_t brute_below;
    unsigned dups;
    size_t leaves_to_search, pre_reorder, k;
    bool remove_some; /* empty a few leaves in some shards only */
} shard_case;

static void shards_equal_single(shard_case c) {
    float *data = make_data(N, c.dups, 5);
    float *queries = make_data(NQ, 0, 777);
    avq_build_params bp;
    avq_build_params_init(&bp, c.metric);
    bp.num_leaves = 24;
    bp.reorder = c.reorder;
    bp.brute_force_below = c.brute_below;
    bp.threads = 2;
    bp.seed = 3;
    avq_quantizer *qz = NULL;
    cr_assert_eq(avq_quantizer_train(data, N, DIM, &bp, &qz), AVQ_OK, "%s", avq_last_error());
    avq_index *single = NULL, *shard[SHARDS] = {NULL};
    cr_assert_eq(avq_index_create(qz, &single), AVQ_OK);
    int64_t *ids = malloc(N * sizeof *ids);
    for (size_t i = 0; i < N; i++) ids[i] = (int64_t)i * 3 + 1; /* not row numbers */
    cr_assert_eq(avq_index_add(single, data, N, ids, 2, NULL), AVQ_OK, "%s", avq_last_error());
    float *part = malloc(N * DIM * sizeof *part);
    int64_t *pids = malloc(N * sizeof *pids);
    for (size_t s = 0; s < SHARDS; s++) {
        size_t m = 0;
        for (size_t i = 0; i < N; i++)
            if (shard_of(ids[i]) == s) {
                memcpy(part + m * DIM, data + i * DIM, DIM * sizeof(float));
                pids[m++] = ids[i];
            }
        cr_assert_eq(avq_index_create(qz, &shard[s]), AVQ_OK);
        cr_assert_eq(avq_index_add(shard[s], part, m, pids, 2, NULL), AVQ_OK);
    }
    size_t L = avq_quantizer_num_leaves(qz);
    if (c.remove_some) {
        /* remove every second vector: leaves then hold fewer than k */
        size_t m = 0;
        for (size_t i = 0; i < N; i += 2) pids[m++] = ids[i]; /* half of everything */
        size_t removed = 0;
        cr_assert_eq(avq_index_remove(single, pids, m, &removed), AVQ_OK);
        cr_assert_eq(removed, m);
        for (size_t s = 0; s < SHARDS; s++) cr_assert_eq(avq_index_remove(shard[s], pids, m, NULL), AVQ_OK);
    }
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.k = c.k;
    sp.leaves_to_search = c.leaves_to_search;
    sp.pre_reorder = c.pre_reorder;
    int64_t *want = malloc(NQ * c.k * sizeof *want), *got = malloc(NQ * c.k * sizeof *got);
    float *want_s = malloc(NQ * c.k * sizeof *want_s), *got_s = malloc(NQ * c.k * sizeof *got_s);
    cr_assert_eq(avq_index_search_batch(single, queries, NQ, &sp, 2, want, want_s), AVQ_OK,
                 "%s", avq_last_error());
    size_t R = 0;
    cr_assert_eq(avq_index_candidate_count(shard[0], &sp, &R), AVQ_OK);
    size_t *live = calloc(L, sizeof *live), *one_live = calloc(L, sizeof *one_live);
    for (size_t s = 0; s < SHARDS; s++) {
        cr_assert_eq(avq_index_leaf_live(shard[s], one_live), AVQ_OK);
        for (size_t l = 0; l < L; l++) live[l] += one_live[l];
    }
    avq_candidate *lists[SHARDS];
    size_t *counts[SHARDS];
    float *offsets[SHARDS];
    for (size_t s = 0; s < SHARDS; s++) {
        lists[s] = malloc(NQ * R * sizeof(avq_candidate));
        counts[s] = malloc(NQ * sizeof(size_t));
        offsets[s] = malloc(NQ * sizeof(float));
        cr_assert_eq(avq_index_search_candidates(shard[s], queries, NQ, &sp, live, 2, lists[s],
                                                 counts[s], offsets[s]),
                     AVQ_OK, "%s", avq_last_error());
        for (size_t q = 0; q < NQ; q++) cr_assert_eq(offsets[s][q], offsets[0][q]);
    }
    cr_assert_eq(avq_merge_candidates(c.metric, NQ, SHARDS, (const avq_candidate *const *)lists,
                                      (const size_t *const *)counts, R, c.k, offsets[0], got,
                                      got_s),
                 AVQ_OK, "%s", avq_last_error());
    for (size_t i = 0; i < NQ * c.k; i++) {
        cr_assert_eq(got[i], want[i], "metric %d reorder %d: query %zu rank %zu: id %lld, one "
                     "index %lld", (int)c.metric, (int)c.reorder, i / c.k, i % c.k,
                     (long long)got[i], (long long)want[i]);
        if (want[i] != AVQ_NO_ID)
            cr_assert_eq(got_s[i], want_s[i], "query %zu rank %zu: %.9g vs %.9g", i / c.k,
                         i % c.k, got_s[i], want_s[i]);
    }
    /* a filter is refused */
    avq_filter *f = NULL;
    cr_assert_eq(avq_filter_deny_ids(ids, 1, &f), AVQ_OK);
    sp.filter = f;
    cr_assert_eq(avq_index_candidate_count(shard[0], &sp, &R), AVQ_ERR_UNSUPPORTED);
    avq_filter_free(f);
    for (size_t s = 0; s < SHARDS; s++) {
        free(lists[s]);
        free(counts[s]);
        free(offsets[s]);
        avq_index_free(shard[s]);
    }
    avq_index_free(single);
    avq_quantizer_free(qz);
    free(live);
    free(one_live);
    free(want);
    free(got);
    free(want_s);
    free(got_s);
    free(ids);
    free(pids);
    free(part);
    free(data);
    free(queries);
}

Test(merge, shards_equal_one_index_every_metric, .timeout = 120) {
    for (int m = 0; m < 3; m++)
        shards_equal_single((shard_case){(avq_metric)m, AVQ_REORDER_FLOAT, 100, 0, 3, 40, 10, false});
}

Test(merge, shards_equal_one_index_int8_and_none, .timeout = 120) {
    shards_equal_single((shard_case){AVQ_METRIC_DOT, AVQ_REORDER_INT8, 100, 0, 4, 30, 10, false});
    shards_equal_single((shard_case){AVQ_METRIC_L2, AVQ_REORDER_NONE, 100, 0, 4, 0, 10, false});
}

Test(merge, shards_equal_one_index_exact_tier) {
    /* brute_force_below above n: the quantizer (and so every shard) is exact */
    shards_equal_single((shard_case){AVQ_METRIC_COSINE, AVQ_REORDER_FLOAT, 100000, 0, 0, 0, 10, false});
    shards_equal_single((shard_case){AVQ_METRIC_L2, AVQ_REORDER_FLOAT, 100000, 0, 0, 0, 25, false});
}

Test(merge, shards_equal_one_index_with_ties, .timeout = 120) {
    /* 150 distinct rows repeated: equal quantized scores across shards */
    for (int m = 0; m < 3; m++)
        shards_equal_single((shard_case){(avq_metric)m, AVQ_REORDER_FLOAT, 100, 150, 2, 30, 10, false});
}

Test(merge, shards_equal_one_index_after_removals, .timeout = 120) {
    /* half removed, 1 leaf, k = 100: the chosen leaf often holds fewer than
     * k, and the search goes on by the counts of the whole */
    shards_equal_single((shard_case){AVQ_METRIC_DOT, AVQ_REORDER_FLOAT, 100, 0, 1, 120, 100, true});
    shards_equal_single((shard_case){AVQ_METRIC_L2, AVQ_REORDER_FLOAT, 100, 0, 1, 120, 100, true});
}
