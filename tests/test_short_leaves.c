/*
 * test_short_leaves.c -- a search returns k results whenever the index
 * holds k live points, even when the leaves it chose hold fewer (issue 16,
 * item 4: duplicate-heavy data leaves k-means cells empty; removals empty
 * leaves too).  Single and batched searches must agree.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "avq.h"

enum { DISTINCT = 10, COPIES = 300, DIM = 8, K = 10 };

static uint64_t next(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

/* DISTINCT random vectors, each COPIES times. */
static float *duplicated(void) {
    float *x = malloc((size_t)DISTINCT * COPIES * DIM * sizeof *x);
    uint64_t s = 42;
    float base[DISTINCT][DIM];
    for (int i = 0; i < DISTINCT; i++)
        for (int j = 0; j < DIM; j++) base[i][j] = (float)(next(&s) % 2000) / 1000.0f - 1.0f;
    for (int c = 0; c < COPIES; c++)
        for (int i = 0; i < DISTINCT; i++) memcpy(x + ((size_t)c * DISTINCT + i) * DIM, base[i], sizeof base[i]);
    return x;
}

static void check_full(const int64_t *ids, size_t nq, const char *what) {
    for (size_t q = 0; q < nq; q++)
        for (int j = 0; j < K; j++)
            cr_assert(ids[q * K + j] != AVQ_NO_ID, "%s: query %zu has only %d results", what, q, j);
}

Test(short_leaves, duplicate_heavy_data_returns_k_results) {
    float *x = duplicated();
    size_t n = (size_t)DISTINCT * COPIES;
    int metrics[] = {AVQ_METRIC_DOT, AVQ_METRIC_L2, AVQ_METRIC_COSINE};
    for (int mi = 0; mi < 3; mi++) {
        avq_build_params p;
        avq_build_params_init(&p, (avq_metric)metrics[mi]);
        p.num_leaves = 20;
        p.brute_force_below = 100;
        p.threads = 1;
        avq_index *ix = NULL;
        cr_assert_eq(avq_index_build(x, n, DIM, &p, &ix), AVQ_OK, "%s", avq_last_error());
        avq_index_stats st;
        avq_index_get_stats(ix, &st);
        cr_assert(st.empty_leaves > 0, "the data should leave leaves empty (got %zu)", st.empty_leaves);
        avq_search_params sp;
        avq_search_params_init(&sp);
        sp.k = K;
        sp.leaves_to_search = 1;
        int64_t ids[DISTINCT * K], batch[DISTINCT * K];
        float sc[DISTINCT * K], bsc[DISTINCT * K];
        /* queries: the distinct vectors themselves, slightly moved */
        float q[DISTINCT * DIM];
        for (int i = 0; i < DISTINCT * DIM; i++) q[i] = x[i] + 0.01f;
        for (int i = 0; i < DISTINCT; i++)
            cr_assert_eq(avq_index_search(ix, q + i * DIM, &sp, ids + i * K, sc + i * K), AVQ_OK);
        check_full(ids, DISTINCT, "single");
        cr_assert_eq(avq_index_search_batch(ix, q, DISTINCT, &sp, 2, batch, bsc), AVQ_OK);
        check_full(batch, DISTINCT, "batch");
        cr_assert(memcmp(ids, batch, sizeof ids) == 0, "batch and single results differ");
        cr_assert(memcmp(sc, bsc, sizeof sc) == 0, "batch and single scores differ");
        avq_index_free(ix);
    }
    free(x);
}

Test(short_leaves, removals_that_empty_the_chosen_leaf) {
    /* remove, again and again, what a one-leaf search returns: the query's
     * best leaf empties after a few rounds, and the search must go on to
     * the next leaves (single and batch alike) */
    size_t n = 4000;
    float *x = malloc(n * DIM * sizeof *x);
    uint64_t s = 7;
    for (size_t i = 0; i < n * DIM; i++) x[i] = (float)(next(&s) % 2000) / 1000.0f - 1.0f;
    avq_build_params p;
    avq_build_params_init(&p, AVQ_METRIC_L2);
    p.num_leaves = 16;
    p.brute_force_below = 100;
    p.threads = 1;
    avq_index *ix = NULL;
    cr_assert_eq(avq_index_build(x, n, DIM, &p, &ix), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(avq_index_set_compact_threshold(ix, 0), AVQ_OK);
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.k = K;
    sp.leaves_to_search = 1;
    for (int round = 0; round < 100; round++) {
        int64_t got[K], batch[K];
        cr_assert_eq(avq_index_search(ix, x, &sp, got, NULL), AVQ_OK);
        check_full(got, 1, "single");
        cr_assert_eq(avq_index_search_batch(ix, x, 1, &sp, 1, batch, NULL), AVQ_OK);
        cr_assert(memcmp(got, batch, sizeof got) == 0, "round %d: batch and single differ", round);
        size_t removed = 0;
        cr_assert_eq(avq_index_remove(ix, got, K, &removed), AVQ_OK);
        cr_assert_eq(removed, K);
    }
    avq_index_stats st;
    avq_index_get_stats(ix, &st);
    cr_assert(st.empty_leaves > 0, "the rounds should have emptied a leaf");
    free(x);
    avq_index_free(ix);
}
