/*
 * test_batch_speedpath.c -- the batched search's own steps give the single
 * search's answers: center scores computed a block of centers at a time for
 * a whole chunk, and the leaf visiting order (every query's best leaf first,
 * for the queries that ranked it first, then the rest once each).
 *
 * The batches here are built to exercise those steps: more queries than one
 * chunk holds (several chunks on one worker), repeated and nearly repeated
 * queries (many queries with the same best leaf, which other queries rank
 * lower), leaf spreads on (the ranking key that is not the center score)
 * and a spilled index (duplicate candidates), for every metric and reorder
 * kind; and the shard-candidate output, whose chunked answer must equal one
 * query per call.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avq.h"
#include "avq_internal.h"

enum { N = 12000, DIM = 24, NQ = 260, K = 10 };

static float *base, *queries;

/* Gaussian-ish clusters (sum of uniforms), varied norms for dot products. */
static float *clustered(size_t n, size_t dim, uint64_t seed) {
    uint64_t rng = seed;
    size_t nc = 48;
    float *centers = malloc(nc * dim * sizeof *centers), *x = malloc(n * dim * sizeof *x);
    for (size_t i = 0; i < nc * dim; i++) centers[i] = (float)(avq_rng_uniform(&rng) * 2 - 1);
    for (size_t i = 0; i < n; i++) {
        size_t c = avq_rng_next(&rng) % nc;
        float scale = (float)(0.5 + avq_rng_uniform(&rng));
        for (size_t j = 0; j < dim; j++) {
            double g = avq_rng_uniform(&rng) + avq_rng_uniform(&rng) + avq_rng_uniform(&rng) - 1.5;
            x[i * dim + j] = scale * (centers[c * dim + j] + (float)(0.4 * g));
        }
    }
    free(centers);
    return x;
}

/* Queries: fresh ones, then exact repeats of earlier ones and slightly
 * moved copies, so that many queries share a best leaf. */
static void setup(void) {
    base = clustered(N, DIM, 71);
    queries = clustered(NQ, DIM, 72);
    uint64_t rng = 73;
    for (size_t q = NQ / 2; q < NQ; q++) {
        size_t from = avq_rng_next(&rng) % 40;
        for (size_t j = 0; j < DIM; j++)
            queries[q * DIM + j] =
                queries[from * DIM + j] + (q % 3 ? (float)(0.02 * (avq_rng_uniform(&rng) - 0.5)) : 0.0f);
    }
}

static void teardown(void) {
    free(base);
    free(queries);
}

static avq_index *build(avq_metric metric, int bits, avq_reorder reorder, float spread, int spill) {
    avq_build_params p;
    avq_build_params_init(&p, metric);
    p.bits = bits;
    p.reorder = reorder;
    p.num_leaves = 60;
    p.brute_force_below = 1000;
    p.threads = 2;
    p.leaf_spread_z = spread;
    p.spill = spill;
    avq_index *index = NULL;
    cr_assert_eq(avq_index_build(base, N, DIM, &p, &index), AVQ_OK, "%s", avq_last_error());
    return index;
}

static void expect_batch_equals_single(avq_index *index, size_t leaves, size_t pre, int threads,
                                       const char *what) {
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.k = K;
    sp.leaves_to_search = leaves;
    sp.pre_reorder = pre;
    int64_t *ids = malloc(NQ * K * sizeof *ids), one[K];
    float *scores = malloc(NQ * K * sizeof *scores), os[K];
    cr_assert_eq(avq_index_search_batch(index, queries, NQ, &sp, threads, ids, scores), AVQ_OK,
                 "%s: %s", what, avq_last_error());
    for (size_t q = 0; q < NQ; q++) {
        cr_assert_eq(avq_index_search(index, queries + q * DIM, &sp, one, os), AVQ_OK);
        for (int i = 0; i < K; i++) {
            cr_assert_eq(one[i], ids[q * K + i], "%s: query %zu rank %d", what, q, i);
            cr_assert_eq(os[i], scores[q * K + i], "%s: query %zu rank %d score", what, q, i);
        }
    }
    free(ids);
    free(scores);
}

Test(batch_speedpath, many_chunks_shared_first_leaves, .init = setup, .fini = teardown) {
    const struct {
        avq_metric metric;
        int bits;
        avq_reorder reorder;
        float spread;
        int spill;
    } cases[] = {
        {AVQ_METRIC_COSINE, 4, AVQ_REORDER_FLOAT, 0.0f, 0},
        {AVQ_METRIC_DOT, 4, AVQ_REORDER_INT8, 1.0f, 0},
        {AVQ_METRIC_L2, 4, AVQ_REORDER_NONE, 0.0f, 0},
        {AVQ_METRIC_L2, 8, AVQ_REORDER_FLOAT, 0.0f, 0},
        {AVQ_METRIC_COSINE, 4, AVQ_REORDER_FLOAT, 0.0f, 1},
        {AVQ_METRIC_DOT, 4, AVQ_REORDER_FLOAT16, 0.0f, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        avq_index *index =
            build(cases[c].metric, cases[c].bits, cases[c].reorder, cases[c].spread, cases[c].spill);
        char what[96];
        snprintf(what, sizeof what, "case %zu (metric %d, %d-bit, reorder %d)", c,
                 (int)cases[c].metric, cases[c].bits, (int)cases[c].reorder);
        expect_batch_equals_single(index, 6, 40, 1, what);
        expect_batch_equals_single(index, 1, 20, 1, what); /* only first leaves */
        expect_batch_equals_single(index, 60, 30, 2, what); /* every leaf */
        avq_index_free(index);
    }
}

/* The shard-candidate output of a batch equals that of one query per call
 * (a chunk of one has no leaves to share and no centers to block). */
Test(batch_speedpath, candidates_chunked_equal_one_by_one, .init = setup, .fini = teardown) {
    avq_index *index = build(AVQ_METRIC_DOT, 4, AVQ_REORDER_FLOAT, 0.0f, 0);
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.k = K;
    sp.leaves_to_search = 8;
    sp.pre_reorder = 30;
    size_t width = 0;
    cr_assert_eq(avq_index_candidate_count(index, &sp, &width), AVQ_OK);
    avq_candidate *all = calloc(NQ * width, sizeof *all), *one = calloc(width, sizeof *one);
    size_t *counts = malloc(NQ * sizeof *counts), count1;
    float *offsets = malloc(NQ * sizeof *offsets), offset1;
    cr_assert_eq(avq_index_search_candidates(index, queries, NQ, &sp, NULL, 1, all, counts,
                                             offsets),
                 AVQ_OK, "%s", avq_last_error());
    for (size_t q = 0; q < NQ; q++) {
        cr_assert_eq(avq_index_search_candidates(index, queries + q * DIM, 1, &sp, NULL, 1, one,
                                                 &count1, &offset1),
                     AVQ_OK);
        cr_assert_eq(count1, counts[q], "query %zu", q);
        cr_assert_eq(offset1, offsets[q], "query %zu", q);
        /* the lists are unordered: compare as sets of (id, approx, exact) */
        for (size_t i = 0; i < count1; i++) {
            bool found = false;
            for (size_t j = 0; j < count1 && !found; j++) {
                const avq_candidate *a = &one[i], *b = &all[q * width + j];
                found = a->id == b->id && a->approx == b->approx && a->exact == b->exact &&
                        a->leaf == b->leaf;
            }
            cr_assert(found, "query %zu candidate %zu missing from the batch", q, i);
        }
    }
    free(all);
    free(one);
    free(counts);
    free(offsets);
    avq_index_free(index);
}
