/*
 * test_seed.c -- seeding a fresh candidate list (src/search.c, "Seeding")
 * leaves the candidate list exactly as the plain thresholded scan makes it.
 *
 * A query's first leaf is scanned with its threshold preset from the sums
 * of a sample of the leaf, and scanned again with an open threshold when
 * fewer than k live points passed.  Seeding only runs when the leaf holds
 * at least 4 x pre_reorder points, so a search with pre_reorder R' > leaf
 * size / 4 is a plain scan: its best R candidates by (approx, leaf, id)
 * must be, id for id and bit for bit, the R candidates of the seeded
 * search with pre_reorder R.
 *
 * The data are made to stress the limit: two big leaves, runs of identical
 * vectors (many ties at the limit), removed vectors (dead points: sampled,
 * but never pushed nor counted towards the k that must pass) -- a few, so
 * that the preset usually holds, or many at the start of each leaf, so that
 * it often fails and the rescan runs -- for every metric, one query per
 * call and batched.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "living_common.h"

enum { N = 7000, DIM = 16, NQ = 40, R = 20, R_WIDE = 2000, LEAVES = 2 };

/* N points, in runs of up to 8 identical rows. */
static float *tied_points(void) {
    float *x = lv_clustered(N, DIM, 901);
    uint64_t rng = 902;
    for (size_t i = 0; i + 1 < N;) {
        size_t run = 1 + lv_rng(&rng) % 8;
        for (size_t j = 1; j < run && i + j < N; j++)
            memcpy(x + (i + j) * DIM, x + i * DIM, DIM * sizeof *x);
        i += run;
    }
    return x;
}

/* Built with LEAVES leaves, the vectors added in ascending id order (where
 * the index breaks ties of quantized distance), then some removed (leaves
 * are not compacted, so the dead points stay in the scan): with `sparse`,
 * every 9th, which leaves the sampled limit enough live points; otherwise
 * the first 40% of the ids, which puts half the sample on dead points, so
 * that too few live ones pass the limit and the leaf must be scanned again. */
static avq_index *seeded_index(avq_metric metric, const float *x, bool sparse) {
    avq_build_params p = lv_params(metric, 4, AVQ_REORDER_FLOAT, LEAVES, 100);
    avq_quantizer *qz = NULL;
    cr_assert_eq(avq_quantizer_train(x, N, DIM, &p, &qz), AVQ_OK, "%s", avq_last_error());
    avq_index *index = NULL;
    cr_assert_eq(avq_index_create(qz, &index), AVQ_OK, "%s", avq_last_error());
    avq_quantizer_free(qz);
    cr_assert_eq(avq_index_set_compact_threshold(index, 0.0), AVQ_OK);
    int64_t *ids = malloc(N * sizeof *ids);
    cr_assert_not_null(ids);
    for (size_t i = 0; i < N; i++) ids[i] = (int64_t)(3 * i + 5);
    cr_assert_eq(avq_index_add(index, x, N, ids, 2, NULL), AVQ_OK, "%s", avq_last_error());
    size_t removed = 0;
    for (size_t i = 0; i < N; i++)
        if (sparse ? i % 9 == 0 : i < N * 2 / 5) ids[removed++] = (int64_t)(3 * i + 5);
    size_t gone = 0;
    cr_assert_eq(avq_index_remove(index, ids, removed, &gone), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(gone, removed);
    free(ids);
    return index;
}

static int by_approx_leaf_id(const void *pa, const void *pb) {
    const avq_candidate *a = pa, *b = pb;
    if (a->approx != b->approx) return a->approx < b->approx ? -1 : 1;
    if (a->leaf != b->leaf) return a->leaf < b->leaf ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* Each query's candidates at pre_reorder `pre`, sorted, nq x width rows. */
static avq_candidate *candidates(const avq_index *index, const float *queries, size_t nq,
                                 size_t leaves, size_t pre, size_t batch, size_t *width,
                                 size_t *counts) {
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.k = 10;
    sp.leaves_to_search = leaves;
    sp.pre_reorder = pre;
    cr_assert_eq(avq_index_candidate_count(index, &sp, width), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(*width, pre);
    avq_candidate *c = calloc(nq * *width, sizeof *c);
    float *offsets = malloc(nq * sizeof *offsets);
    cr_assert(c && offsets);
    for (size_t q = 0; q < nq; q += batch) {
        size_t m = nq - q < batch ? nq - q : batch;
        int st = avq_index_search_candidates(index, queries + q * DIM, m, &sp, NULL, 1,
                                             c + q * *width, counts + q, offsets + q);
        cr_assert_eq(st, AVQ_OK, "%s", avq_last_error());
    }
    for (size_t q = 0; q < nq; q++) qsort(c + q * *width, counts[q], sizeof *c, by_approx_leaf_id);
    free(offsets);
    return c;
}

static void expect_seeded_equals_plain(avq_metric metric, bool sparse) {
    float *x = tied_points();
    if (metric == AVQ_METRIC_COSINE) lv_normalize(x, N, DIM);
    avq_index *index = seeded_index(metric, x, sparse);
    /* the leaves are large enough to seed at R and too small at R_WIDE */
    size_t live[LEAVES];
    cr_assert_eq(avq_index_num_leaves(index), LEAVES);
    cr_assert_eq(avq_index_leaf_live(index, live), AVQ_OK);
    for (size_t l = 0; l < LEAVES; l++)
        cr_assert(live[l] > 1000 && live[l] < 4 * R_WIDE,
                  "leaf %zu holds %zu", l, live[l]);
    /* queries: fresh points, and copies of indexed ones (ties at the top) */
    float *queries = lv_clustered(NQ, DIM, 903);
    for (size_t q = 0; q < NQ; q += 2) memcpy(queries + q * DIM, x + (q * 97) * DIM, DIM * 4);
    if (metric == AVQ_METRIC_COSINE) lv_normalize(queries, NQ, DIM);
    for (size_t leaves = 1; leaves <= LEAVES; leaves++)
        for (size_t batch = 1; batch <= NQ; batch += NQ - 1) {
            size_t wn, ww, cn[NQ], cw[NQ];
            avq_candidate *narrow = candidates(index, queries, NQ, leaves, R, batch, &wn, cn);
            avq_candidate *wide = candidates(index, queries, NQ, leaves, R_WIDE, batch, &ww, cw);
            for (size_t q = 0; q < NQ; q++) {
                cr_assert_eq(cn[q], R, "%s leaves %zu batch %zu query %zu: %zu candidates",
                             avq_metric_name(metric), leaves, batch, q, cn[q]);
                cr_assert(cw[q] >= R);
                for (size_t i = 0; i < R; i++) {
                    const avq_candidate *a = &narrow[q * wn + i], *b = &wide[q * ww + i];
                    cr_assert(a->id == b->id && a->leaf == b->leaf &&
                                  memcmp(&a->approx, &b->approx, sizeof a->approx) == 0 &&
                                  memcmp(&a->exact, &b->exact, sizeof a->exact) == 0,
                              "%s leaves %zu batch %zu query %zu rank %zu: seeded id %lld "
                              "(%.9g, leaf %u), plain id %lld (%.9g, leaf %u)",
                              avq_metric_name(metric), leaves, batch, q, i, (long long)a->id,
                              (double)a->approx, a->leaf, (long long)b->id, (double)b->approx,
                              b->leaf);
                }
            }
            free(narrow);
            free(wide);
        }
    avq_index_free(index);
    free(queries);
    free(x);
}

Test(seed, dot_equals_plain_scan) { expect_seeded_equals_plain(AVQ_METRIC_DOT, true); }
Test(seed, cosine_equals_plain_scan) { expect_seeded_equals_plain(AVQ_METRIC_COSINE, true); }
Test(seed, l2_equals_plain_scan) { expect_seeded_equals_plain(AVQ_METRIC_L2, true); }
Test(seed, dot_rescan_equals_plain_scan) { expect_seeded_equals_plain(AVQ_METRIC_DOT, false); }
Test(seed, cosine_rescan_equals_plain_scan) {
    expect_seeded_equals_plain(AVQ_METRIC_COSINE, false);
}
Test(seed, l2_rescan_equals_plain_scan) { expect_seeded_equals_plain(AVQ_METRIC_L2, false); }
