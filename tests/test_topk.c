/*
 * test_topk.c -- the bounded top-k buffer (src/topk.c) against a full qsort:
 * random streams, heavy ties (order must be by (dist, id) whatever the push
 * order), k = 1, the smallest legal capacity (k + 1), reuse after finish.
 */
#include <criterion/criterion.h>

#include "avq_internal.h"
#include "topk.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_ref(const void *a, const void *b) {
    const avq_neighbor *x = a, *y = b;
    if (x->dist != y->dist) return x->dist < y->dist ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Push `n` candidates into a buffer of (k, capacity) and compare with the
 * first k of a sorted copy.  `levels` > 0 quantizes distances to that many
 * values (ties); ids are a shuffled permutation, so ties arrive in any order. */
static void run_case(size_t n, size_t k, size_t capacity, unsigned levels, uint64_t seed) {
    avq_neighbor *all = malloc(n * sizeof *all), *storage = malloc(capacity * sizeof *storage);
    cr_assert(all && storage);
    for (size_t i = 0; i < n; i++) {
        double u = avq_rng_uniform(&seed);
        all[i].dist = levels ? (float)(avq_rng_next(&seed) % levels) : (float)(u * 2 - 1);
        all[i].id = (int64_t)i;
    }
    for (size_t i = n; i > 1; i--) { /* shuffle ids */
        size_t j = avq_rng_next(&seed) % i;
        int64_t t = all[i - 1].id;
        all[i - 1].id = all[j].id;
        all[j].id = t;
    }
    avq_topk t;
    avq_topk_init(&t, k, storage, capacity);
    for (size_t i = 0; i < n; i++) avq_topk_push(&t, all[i].dist, all[i].id);
    size_t got = avq_topk_finish(&t);
    qsort(all, n, sizeof *all, cmp_ref);
    size_t want = n < k ? n : k;
    cr_assert_eq(got, want, "n=%zu k=%zu cap=%zu: %zu results", n, k, capacity, got);
    for (size_t j = 0; j < want; j++) {
        cr_assert_eq(t.items[j].id, all[j].id, "n=%zu k=%zu cap=%zu levels=%u rank %zu", n, k,
                     capacity, levels, j);
        cr_assert_eq(t.items[j].dist, all[j].dist);
    }
    if (got == k) { /* the threshold is the k-th best */
        cr_assert_eq(t.worst_dist, all[k - 1].dist);
        cr_assert_eq(t.worst_id, all[k - 1].id);
    }
    free(all);
    free(storage);
}

Test(topk, random_against_qsort) {
    static const size_t ks[] = {1, 2, 5, 10, 80, 100, 500};
    static const size_t ns[] = {0, 1, 3, 10, 99, 1000, 20000};
    uint64_t seed = 1;
    for (size_t a = 0; a < 7; a++)
        for (size_t b = 0; b < 7; b++) {
            run_case(ns[b], ks[a], 2 * ks[a] + 1, 0, seed++);
            run_case(ns[b], ks[a], ks[a] + 1, 0, seed++); /* smallest capacity */
            run_case(ns[b], ks[a], 8 * ks[a], 0, seed++);
        }
}

Test(topk, ties_go_to_lower_id) {
    uint64_t seed = 2;
    static const unsigned levels[] = {1, 2, 7};
    for (size_t l = 0; l < 3; l++)
        for (size_t k = 1; k <= 33; k += 8) {
            run_case(500, k, k + 1, levels[l], seed++);
            run_case(500, k, 3 * k, levels[l], seed++);
        }
    /* buffers large enough for the sampled compaction, with ties */
    for (size_t l = 0; l < 3; l++) {
        run_case(5000, 100, 201, levels[l], seed++);
        run_case(5000, 80, 161, levels[l], seed++);
        run_case(3000, 300, 1200, levels[l], seed++);
    }
}

Test(topk, k1_keeps_the_minimum) {
    avq_neighbor storage[2];
    avq_topk t;
    avq_topk_init(&t, 1, storage, 2);
    float d[] = {3, 1, 4, 1, 5, 9, 2, 6, 0.5f, 0.5f};
    for (int i = 0; i < 10; i++) avq_topk_push(&t, d[i], 100 - i);
    cr_assert_eq(avq_topk_finish(&t), 1);
    cr_assert_eq(t.items[0].dist, 0.5f);
    cr_assert_eq(t.items[0].id, 91); /* of ids 92 and 91 at 0.5, the lower */
}

Test(topk, threshold_rejects_and_admits_ties) {
    avq_neighbor storage[3];
    avq_topk t;
    avq_topk_init(&t, 2, storage, 3);
    cr_assert(avq_topk_admits(&t, INFINITY, 0)); /* nothing yet: everything */
    avq_topk_push(&t, 1.0f, 10);
    avq_topk_push(&t, 2.0f, 20);
    avq_topk_push(&t, 3.0f, 30); /* full: compacts to {1, 2} */
    cr_assert_eq(t.size, 2);
    cr_assert_eq(t.worst_dist, 2.0f);
    cr_assert_eq(t.worst_id, 20);
    cr_assert(!avq_topk_admits(&t, 2.5f, 0));
    cr_assert(!avq_topk_admits(&t, 2.0f, 21));
    cr_assert(avq_topk_admits(&t, 2.0f, 19));
    cr_assert(!avq_topk_admits(&t, NAN, 0));
    avq_topk_push(&t, NAN, 1); /* ignored */
    cr_assert_eq(t.size, 2);
}

Test(topk, reset_and_reuse_after_finish) {
    avq_neighbor storage[7];
    avq_topk t;
    avq_topk_init(&t, 3, storage, 7);
    for (int i = 0; i < 20; i++) avq_topk_push(&t, (float)(i % 5), i);
    cr_assert_eq(avq_topk_finish(&t), 3);
    /* pushing after finish continues the same search */
    avq_topk_push(&t, -1.0f, 99);
    cr_assert_eq(avq_topk_finish(&t), 3);
    cr_assert_eq(t.items[0].id, 99);
    cr_assert_eq(t.items[1].id, 0);
    cr_assert_eq(t.items[2].id, 5);
    avq_topk_reset(&t);
    cr_assert_eq(avq_topk_finish(&t), 0);
    cr_assert(isinf(t.worst_dist));
}

Test(topk, select_and_sort_helpers) {
    uint64_t seed = 5;
    avq_neighbor v[200], ref[200];
    for (int i = 0; i < 200; i++) v[i] = (avq_neighbor){(float)(avq_rng_next(&seed) % 17), i};
    memcpy(ref, v, sizeof v);
    qsort(ref, 200, sizeof *ref, cmp_ref);
    avq_neighbors_select(v, 200, 37);
    avq_neighbors_sort(v, 37);
    for (int j = 0; j < 37; j++) cr_assert_eq(v[j].id, ref[j].id, "rank %d", j);
}

/* avq_smallest_of (leaf selection) against a full sort: both of its paths
 * (direct selection for small n or large m, sampled threshold otherwise),
 * continuous scores, heavy ties, and a sorted input whose strided sample is
 * the worst case for the threshold. */
static void check_smallest_of(size_t n, size_t m, int mode, uint64_t seed) {
    float *dist = malloc(n * sizeof *dist);
    avq_neighbor *work = malloc(n * sizeof *work), *ref = malloc(n * sizeof *ref);
    cr_assert(dist && work && ref);
    for (size_t i = 0; i < n; i++) {
        if (mode == 0) dist[i] = (float)avq_rng_uniform(&seed);
        else if (mode == 1) dist[i] = (float)(avq_rng_next(&seed) % 7);
        else dist[i] = (float)(n - i); /* descending: the best are at the end */
        ref[i] = (avq_neighbor){dist[i], (int64_t)i};
    }
    qsort(ref, n, sizeof *ref, cmp_ref);
    size_t got = avq_smallest_of(dist, n, m, work);
    size_t want = m < n ? m : n;
    cr_assert_eq(got, want, "n=%zu m=%zu", n, m);
    for (size_t j = 0; j < want; j++) {
        cr_assert_eq(work[j].id, ref[j].id, "n=%zu m=%zu mode=%d rank %zu", n, m, mode, j);
        cr_assert_eq(work[j].dist, ref[j].dist);
    }
    free(dist);
    free(work);
    free(ref);
}

Test(topk, smallest_of_matches_sort) {
    const size_t ns[] = {1, 5, 100, 511, 512, 2000, 4097, 20000};
    const size_t ms[] = {1, 3, 40, 64, 400, 5000};
    uint64_t seed = 11;
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (size_t b = 0; b < sizeof ms / sizeof ms[0]; b++)
            for (int mode = 0; mode < 3; mode++)
                check_smallest_of(ns[a], ms[b], mode, seed++);
    cr_assert_eq(avq_smallest_of(NULL, 0, 5, NULL), 0);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* avq_floats_nth against a sorted copy: every rank of arrays of 1..300
 * values (both sides of its 128-value scratch), distinct values, heavy ties
 * (4 levels) and all equal, and infinities. */
/* avq_floats_smallest (the sketched leaf selection's m-th estimate) equals
 * the m-th of a sort and leaves its input alone, on both of its paths: the
 * sampled limit (n >= 512, m <= n / 8) and the plain selection, including
 * skewed inputs where the sample keeps too few (mode 2: all but a few equal
 * values; mode 3: the strided sample's positions hold the only small
 * values, so its limit keeps fewer than m and the plain selection runs). */
Test(topk, floats_smallest_matches_sort) {
    static const size_t ns[] = {1, 7, 511, 512, 600, 2000};
    uint64_t seed = 6;
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (int mode = 0; mode < 4; mode++) {
            size_t n = ns[a];
            float *v = malloc(n * sizeof *v), *copy = malloc(n * sizeof *v);
            float *sorted = malloc(n * sizeof *v), *work = malloc(n * sizeof *v);
            cr_assert(v && copy && sorted && work);
            for (size_t i = 0; i < n; i++) {
                double u = avq_rng_uniform(&seed);
                v[i] = mode == 0   ? (float)(u * 2 - 1)
                       : mode == 1 ? (float)(avq_rng_next(&seed) % 5)
                       : mode == 2 ? (i % 97 == 3 ? -1.0f : 2.0f)
                       : i % (n / 128 + (n < 128)) == 0 ? -(float)i
                                   : (float)i;
            }
            memcpy(copy, v, n * sizeof *v);
            memcpy(sorted, v, n * sizeof *v);
            qsort(sorted, n, sizeof *sorted, cmp_float);
            for (size_t m = 1; m <= n; m += (m < 40 ? 1 : n / 7 + 1)) {
                float got = avq_floats_smallest(v, n, m, work);
                cr_assert(got == sorted[m - 1], "n=%zu mode %d m %zu: %g, want %g", n, mode, m,
                          (double)got, (double)sorted[m - 1]);
                cr_assert(memcmp(v, copy, n * sizeof *v) == 0, "n=%zu: input changed", n);
            }
            free(v);
            free(copy);
            free(sorted);
            free(work);
        }
}

Test(topk, floats_nth_matches_sort) {
    uint64_t seed = 5;
    float v[300], sorted[300], work[300];
    for (size_t n = 1; n <= 300; n += (n < 140 ? 1 : 23))
        for (int mode = 0; mode < 4; mode++) {
            for (size_t i = 0; i < n; i++) {
                double u = avq_rng_uniform(&seed);
                v[i] = mode == 0   ? (float)(u * 2 - 1)
                       : mode == 1 ? (float)(avq_rng_next(&seed) % 4)
                       : mode == 2 ? 7.0f
                                   : (u < 0.2 ? INFINITY : u > 0.8 ? -INFINITY : (float)u);
            }
            memcpy(sorted, v, n * sizeof *v);
            qsort(sorted, n, sizeof *sorted, cmp_float);
            for (size_t r = 0; r < n; r++) {
                memcpy(work, v, n * sizeof *v);
                float got = avq_floats_nth(work, n, r);
                cr_assert(got == sorted[r], "n=%zu mode %d rank %zu: %g, want %g", n, mode, r,
                          (double)got, (double)sorted[r]);
            }
        }
}
