/*
 * test_kmeans.c -- k-means and nearest-center assignment: the Lloyd
 * invariant (inertia never rises when only empty clusters are re-seeded),
 * spherical centers, determinism across seeds and thread counts, the tiled
 * SGEMM and the small-dimension assignment paths against a double-precision
 * brute force, and the error cases.
 */
#include <criterion/criterion.h>

#include "kmeans.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* n points around `blobs` random centers, deterministic. */
static float *blob_data(size_t n, size_t d, size_t blobs, uint64_t seed) {
    float *x = malloc(n * d * sizeof(float));
    float *c = malloc(blobs * d * sizeof(float));
    cr_assert(x && c);
    for (size_t i = 0; i < blobs * d; i++) c[i] = (float)(4.0 * avq_rng_uniform(&seed) - 2.0);
    for (size_t i = 0; i < n; i++) {
        size_t b = (size_t)(avq_rng_next(&seed) % blobs);
        for (size_t t = 0; t < d; t++)
            x[i * d + t] = c[b * d + t] + (float)(avq_rng_uniform(&seed) - 0.5);
    }
    free(c);
    return x;
}

static double sq_dist(const float *a, const float *b, size_t d) {
    double s = 0.0;
    for (size_t t = 0; t < d; t++) {
        double e = (double)a[t] - b[t];
        s += e * e;
    }
    return s;
}

Test(kmeans, inertia_never_increases) {
    size_t n = 3000, d = 12, k = 25;
    float *x = blob_data(n, d, 8, 1);
    float *centers = malloc(k * d * sizeof(float));
    double history[30];
    avq_kmeans_params p;
    avq_kmeans_default_params(&p, k);
    p.max_iter = 30;
    p.tol = 0.0;
    p.min_cluster_size = 1;
    p.threads = 2;
    avq_kmeans_stats stats = {.inertia_history = history};
    cr_assert_eq(avq_kmeans_train(x, n, d, &p, centers, &stats, NULL, NULL), AVQ_OK);
    cr_assert_eq(stats.iterations, 30);
    cr_assert_eq(stats.sample_rows, n);
    for (size_t i = 1; i < stats.iterations; i++)
        cr_assert_leq(history[i], history[i - 1] * (1.0 + 1e-6), "iteration %zu: %g > %g", i,
                      history[i], history[i - 1]);
    cr_assert_lt(history[stats.iterations - 1], history[0]);
    free(x);
    free(centers);
}

Test(kmeans, converges_early_with_tolerance) {
    size_t n = 2000, d = 4, k = 5;
    float *x = blob_data(n, d, 5, 2);
    float *centers = malloc(k * d * sizeof(float));
    avq_kmeans_params p;
    avq_kmeans_default_params(&p, k);
    p.max_iter = 100;
    p.tol = 1e-3;
    avq_kmeans_stats stats = {0};
    cr_assert_eq(avq_kmeans_train(x, n, d, &p, centers, &stats, NULL, NULL), AVQ_OK);
    cr_assert_lt(stats.iterations, 100);
    cr_assert_geq(stats.iterations, 2);
    free(x);
    free(centers);
}

Test(kmeans, spherical_centers_have_unit_norm) {
    size_t n = 2000, d = 16, k = 20;
    float *x = blob_data(n, d, 6, 3);
    float *centers = malloc(k * d * sizeof(float));
    avq_kmeans_params p;
    avq_kmeans_default_params(&p, k);
    p.spherical = 1;
    cr_assert_eq(avq_kmeans_train(x, n, d, &p, centers, NULL, NULL, NULL), AVQ_OK);
    for (size_t j = 0; j < k; j++)
        cr_assert_float_eq(sqrt(avq_norm2_f64(centers + j * d, d)), 1.0, 1e-5, "center %zu", j);
    free(x);
    free(centers);
}

/* Same seed -> same bits, whatever the thread count and init. */
static void check_deterministic(avq_kmeans_init init, size_t d) {
    size_t n = 4000, k = 30;
    float *x = blob_data(n, d, 10, 4);
    float *a = malloc(k * d * sizeof(float)), *b = malloc(k * d * sizeof(float));
    avq_kmeans_params p;
    avq_kmeans_default_params(&p, k);
    p.init = init;
    p.training_sample = 2500; /* exercise the Bernoulli sample */
    p.min_cluster_size = 40;  /* and re-seeding */
    p.threads = 1;
    avq_kmeans_stats sa = {0}, sb = {0};
    cr_assert_eq(avq_kmeans_train(x, n, d, &p, a, &sa, NULL, NULL), AVQ_OK);
    p.threads = 2;
    cr_assert_eq(avq_kmeans_train(x, n, d, &p, b, &sb, NULL, NULL), AVQ_OK);
    cr_assert_eq(memcmp(a, b, k * d * sizeof(float)), 0);
    cr_assert_eq(sa.sample_rows, sb.sample_rows);
    cr_assert_leq(sa.sample_rows, 2500);
    cr_assert_gt(sa.sample_rows, 2000);
    p.seed = 1234;
    cr_assert_eq(avq_kmeans_train(x, n, d, &p, b, NULL, NULL, NULL), AVQ_OK);
    cr_assert_neq(memcmp(a, b, k * d * sizeof(float)), 0, "another seed, other centers");
    free(x);
    free(a);
    free(b);
}

Test(kmeans, deterministic_random_init) { check_deterministic(AVQ_KMEANS_INIT_RANDOM, 10); }
Test(kmeans, deterministic_plusplus_init) { check_deterministic(AVQ_KMEANS_INIT_PLUSPLUS, 10); }
Test(kmeans, deterministic_small_dimension) { check_deterministic(AVQ_KMEANS_INIT_RANDOM, 2); }

Test(kmeans, plusplus_finds_separated_blobs) {
    /* 4 tight, far-apart blobs: k-means++ puts one center in each */
    size_t n = 400, d = 3, k = 4;
    float *x = malloc(n * d * sizeof(float));
    uint64_t rng = 5;
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < d; t++)
            x[i * d + t] = (float)(100.0 * (double)((i % 4) == t) + 0.01 * avq_rng_uniform(&rng));
    float centers[12];
    avq_kmeans_params p;
    avq_kmeans_default_params(&p, k);
    p.init = AVQ_KMEANS_INIT_PLUSPLUS;
    avq_kmeans_stats stats = {0};
    cr_assert_eq(avq_kmeans_train(x, n, d, &p, centers, &stats, NULL, NULL), AVQ_OK);
    cr_assert_lt(stats.inertia, n * 0.01);
    free(x);
}

Test(kmeans, duplicate_rows_give_finite_centers) {
    size_t n = 500, d = 4, k = 50;
    float *x = calloc(n * d, sizeof(float));
    for (size_t i = 0; i < n; i++) x[i * d] = (float)(i % 3); /* only 3 distinct rows */
    float *centers = malloc(k * d * sizeof(float));
    avq_kmeans_params p;
    avq_kmeans_default_params(&p, k);
    avq_kmeans_stats stats = {0};
    cr_assert_eq(avq_kmeans_train(x, n, d, &p, centers, &stats, NULL, NULL), AVQ_OK);
    cr_assert(avq_all_finite(centers, k * d));
    cr_assert_gt(stats.reseeded, 0);
    cr_assert_float_eq(stats.inertia, 0.0, 1e-3);
    free(x);
    free(centers);
}

/* The assignment against a double brute force, both kinds, both paths
 * (d <= 8 is scored directly, larger d through SGEMM tiles). */
static void check_assign(size_t d, size_t k, avq_nearest_kind kind) {
    size_t n = 700;
    uint64_t rng = 6 + d + k;
    float *x = malloc(n * d * sizeof(float)), *c = malloc(k * d * sizeof(float));
    for (size_t i = 0; i < n * d; i++) x[i] = (float)(avq_rng_uniform(&rng) * 2 - 1);
    for (size_t i = 0; i < k * d; i++) c[i] = (float)(avq_rng_uniform(&rng) * 2 - 1);
    int32_t *assign = malloc(n * sizeof(int32_t));
    float *score = malloc(n * sizeof(float));
    cr_assert_eq(avq_assign_nearest(x, n, d, c, k, kind, 2, assign, score, NULL, NULL, NULL),
                 AVQ_OK);
    for (size_t i = 0; i < n; i++) {
        const float *row = x + i * d;
        double best = INFINITY;
        for (size_t j = 0; j < k; j++) {
            double v = kind == AVQ_NEAREST_L2 ? sq_dist(row, c + j * d, d)
                                              : -avq_dot_f64(row, c + j * d, d);
            if (v < best) best = v;
        }
        cr_assert(assign[i] >= 0 && (size_t)assign[i] < k);
        double got = kind == AVQ_NEAREST_L2 ? sq_dist(row, c + (size_t)assign[i] * d, d)
                                            : -avq_dot_f64(row, c + (size_t)assign[i] * d, d);
        cr_assert_leq(got, best + 1e-4, "row %zu: chose %g, best %g", i, got, best);
        double want_score = kind == AVQ_NEAREST_L2 ? got : -got;
        cr_assert_float_eq(score[i], want_score, 1e-4);
    }
    free(x);
    free(c);
    free(assign);
    free(score);
}

Test(kmeans, assign_l2_tiled) { check_assign(20, 37, AVQ_NEAREST_L2); }
Test(kmeans, assign_ip_tiled) { check_assign(20, 37, AVQ_NEAREST_IP); }
Test(kmeans, assign_l2_direct) { check_assign(3, 16, AVQ_NEAREST_L2); }
Test(kmeans, assign_ip_direct) { check_assign(2, 9, AVQ_NEAREST_IP); }
Test(kmeans, assign_many_center_tiles) { check_assign(9, 5000, AVQ_NEAREST_L2); }

Test(kmeans, assign_ties_go_to_lower_index) {
    float x[2] = {1.0f, 0.0f};
    float c[6] = {0.0f, 1.0f, 1.0f, 0.0f, 1.0f, 0.0f}; /* centers 1 and 2 equal */
    int32_t a;
    cr_assert_eq(avq_assign_nearest(x, 1, 2, c, 3, AVQ_NEAREST_L2, 1, &a, NULL, NULL, NULL, NULL),
                 AVQ_OK);
    cr_assert_eq(a, 1);
}

/* The exact arithmetic both assignment paths document: float <x,c> summed
 * from 0 in dimension order, objective (float)|c|² - 2<x,c> (L2) or
 * 0 - <x,c> (IP), first center with the smallest objective (strict <). */
static void reference_assign(const float *x, size_t n, size_t d, const float *c, size_t k,
                             avq_nearest_kind kind, int32_t *assign, float *obj) {
    for (size_t i = 0; i < n; i++) {
        float best = INFINITY;
        int32_t at = 0;
        for (size_t j = 0; j < k; j++) {
            float dot = 0.0f;
            for (size_t t = 0; t < d; t++) dot += x[i * d + t] * c[j * d + t];
            float cn = kind == AVQ_NEAREST_L2 ? (float)avq_norm2_f64(c + j * d, d) : 0.0f;
            float v = cn - (kind == AVQ_NEAREST_L2 ? 2.0f : 1.0f) * dot;
            if (v < best) {
                best = v;
                at = (int32_t)j;
            }
        }
        assign[i] = at;
        obj[i] = best;
    }
}

/* Bit for bit against the reference, on rows snapped to a coarse grid and
 * centers with duplicates, so that exact ties are frequent: the direct path
 * (d <= 8: blocks of 16 rows, a tail) and the tiled path (blocks of 64
 * centers, a tail of centers, ties across blocks). */
static void check_assign_exact(size_t n, size_t d, size_t k, avq_nearest_kind kind) {
    uint64_t rng = 99 + n + d + k;
    float *x = malloc(n * d * sizeof(float)), *c = malloc(k * d * sizeof(float));
    for (size_t i = 0; i < n * d; i++) x[i] = (float)(avq_rng_next(&rng) % 5) - 2.0f;
    for (size_t j = 0; j < k; j++)
        for (size_t t = 0; t < d; t++)
            c[j * d + t] = j % 3 == 2 ? c[(j / 2) * d + t] /* a copy of an earlier center */
                                      : (float)(avq_rng_next(&rng) % 5) - 2.0f;
    int32_t *assign = malloc(n * sizeof(int32_t)), *want = malloc(n * sizeof(int32_t));
    float *score = malloc(n * sizeof(float)), *obj = malloc(n * sizeof(float));
    reference_assign(x, n, d, c, k, kind, want, obj);
    for (int threads = 1; threads <= 3; threads += 2) {
        cr_assert_eq(avq_assign_nearest(x, n, d, c, k, kind, threads, assign, score, NULL, NULL,
                                        NULL),
                     AVQ_OK);
        for (size_t i = 0; i < n; i++) {
            cr_assert_eq(assign[i], want[i], "d=%zu k=%zu row %zu: %d, want %d", d, k, i,
                         assign[i], want[i]);
            float s = kind == AVQ_NEAREST_IP ? -obj[i]
                                             : (float)avq_norm2_f64(x + i * d, d) + obj[i];
            if (kind == AVQ_NEAREST_L2 && !(s > 0.0f)) s = 0.0f;
            cr_assert_eq(score[i], s, "d=%zu k=%zu row %zu: score %.9g, want %.9g", d, k, i,
                         score[i], s);
        }
    }
    free(x);
    free(c);
    free(assign);
    free(want);
    free(score);
    free(obj);
}

Test(kmeans, assign_direct_exact_with_ties) {
    check_assign_exact(1000, 2, 16, AVQ_NEAREST_L2);
    check_assign_exact(999, 3, 256, AVQ_NEAREST_L2);
    check_assign_exact(37, 8, 5, AVQ_NEAREST_IP);
    check_assign_exact(5, 1, 2, AVQ_NEAREST_L2);
}

Test(kmeans, assign_tiled_exact_with_ties) {
    check_assign_exact(500, 9, 200, AVQ_NEAREST_L2); /* 3 blocks of 64 + 8 */
    check_assign_exact(300, 12, 64, AVQ_NEAREST_IP); /* one block, no tail */
    check_assign_exact(300, 10, 40, AVQ_NEAREST_L2); /* tail only */
    check_assign_exact(200, 9, 4100, AVQ_NEAREST_L2); /* two center tiles */
}

/* The minimum and the first column holding it in different blocks of 64,
 * or in the tail: the earliest column still wins. */
Test(kmeans, assign_tiled_ties_across_blocks) {
    size_t d = 9, k = 200;
    float *c = calloc(k * d, sizeof(float)), x[9] = {1.0f};
    for (size_t j = 0; j < k; j++) c[j * d + 1] = 1.0f + (float)j; /* all far */
    size_t cases[][3] = {{70, 130, 195}, {130, 131, 199}, {195, 197, 199}, {0, 64, 128}};
    for (size_t q = 0; q < 4; q++) {
        float *cc = malloc(k * d * sizeof(float));
        memcpy(cc, c, k * d * sizeof(float));
        for (int e = 0; e < 3; e++) {
            memset(cc + cases[q][e] * d, 0, d * sizeof(float));
            cc[cases[q][e] * d] = 1.0f; /* the row itself: distance 0 */
        }
        int32_t a;
        float s;
        cr_assert_eq(avq_assign_nearest(x, 1, d, cc, k, AVQ_NEAREST_L2, 1, &a, &s, NULL, NULL,
                                        NULL),
                     AVQ_OK);
        cr_assert_eq(a, (int32_t)cases[q][0], "case %zu: %d", q, a);
        cr_assert_eq(s, 0.0f);
        free(cc);
    }
    free(c);
}

/* Objectives that overflow float: NaN never wins, and when nothing is below
 * +inf the direct path takes the first +inf center (as before the one-pass
 * kernel), not center 0 whose objective is NaN. */
Test(kmeans, assign_direct_overflow_never_picks_nan) {
    float x[2] = {1e19f, 1e-30f};
    float c[4] = {1e20f, 0.0f,  /* |c|² = inf, <x,c> = inf: NaN */
                  0.0f, 1e20f}; /* |c|² = inf, <x,c> tiny: +inf */
    int32_t a = -1;
    float s;
    cr_assert_eq(avq_assign_nearest(x, 1, 2, c, 2, AVQ_NEAREST_L2, 1, &a, &s, NULL, NULL, NULL),
                 AVQ_OK);
    cr_assert_eq(a, 1);
    cr_assert(isinf(s));
}

static int cancel_now(void *user, const char *stage, size_t done, size_t total) {
    (void)stage;
    (void)done;
    (void)total;
    ++*(int *)user;
    return 1;
}

Test(kmeans, progress_can_cancel) {
    size_t n = 1000, d = 10, k = 10;
    float *x = blob_data(n, d, 3, 7);
    float *centers = malloc(k * d * sizeof(float));
    avq_kmeans_params p;
    avq_kmeans_default_params(&p, k);
    int calls = 0;
    cr_assert_eq(avq_kmeans_train(x, n, d, &p, centers, NULL, cancel_now, &calls),
                 AVQ_ERR_CANCELLED);
    cr_assert_eq(calls, 1);
    cr_assert(strstr(avq_last_error(), "cancel"));
    free(x);
    free(centers);
}

Test(kmeans, bad_input_is_rejected) {
    float x[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, centers[12];
    avq_kmeans_params p;
    avq_kmeans_default_params(&p, 4);
    cr_assert_eq(avq_kmeans_train(x, 3, 4, &p, centers, NULL, NULL, NULL), AVQ_ERR_INVALID,
                 "k > n");
    p.k = 0;
    cr_assert_eq(avq_kmeans_train(x, 3, 4, &p, centers, NULL, NULL, NULL), AVQ_ERR_INVALID);
    p.k = 2;
    cr_assert_eq(avq_kmeans_train(NULL, 3, 4, &p, centers, NULL, NULL, NULL), AVQ_ERR_INVALID);
    p.max_iter = 0;
    cr_assert_eq(avq_kmeans_train(x, 3, 4, &p, centers, NULL, NULL, NULL), AVQ_ERR_INVALID);
    p.max_iter = 5;
    p.tol = NAN;
    cr_assert_eq(avq_kmeans_train(x, 3, 4, &p, centers, NULL, NULL, NULL), AVQ_ERR_INVALID);
    p.tol = 0.0;
    x[5] = NAN;
    cr_assert_eq(avq_kmeans_train(x, 3, 4, &p, centers, NULL, NULL, NULL), AVQ_ERR_INVALID);
    cr_assert(strstr(avq_last_error(), "row 1"), "message: %s", avq_last_error());
    int32_t a[3];
    cr_assert_eq(avq_assign_nearest(x, 0, 4, centers, 2, AVQ_NEAREST_L2, 1, a, NULL, NULL, NULL,
                                    NULL),
                 AVQ_ERR_INVALID);
    cr_assert_eq(avq_assign_nearest(x, 3, 4, centers, 2, (avq_nearest_kind)9, 1, a, NULL, NULL,
                                    NULL, NULL),
                 AVQ_ERR_INVALID);
}

Test(kmeans, sample_rows_are_increasing_and_capped) {
    uint64_t rng = 9;
    size_t *idx = NULL, count = 0;
    cr_assert_eq(avq_sample_rows(100000, 1000, 10, &rng, &idx, &count), AVQ_OK);
    cr_assert_leq(count, 1000);
    cr_assert_gt(count, 850);
    for (size_t i = 1; i < count; i++) cr_assert_lt(idx[i - 1], idx[i]);
    free(idx);
    cr_assert_eq(avq_sample_rows(50, 1000, 10, &rng, &idx, &count), AVQ_OK);
    cr_assert_eq(count, 50);
    cr_assert_eq(idx[49], 49);
    free(idx);
}
