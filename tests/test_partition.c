/*
 * test_partition.c -- leaves: every point in its nearest leaf and in exactly
 * one member list, AVQ centers that solve their normal equations and the
 * global rescale, leaf selection (batched = single = brute force), residuals,
 * determinism and bad input.
 */
#include <criterion/criterion.h>

#include "partition.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Unit-norm points around a few directions (like normalised embeddings). */
static float *unit_data(size_t n, size_t d, uint64_t seed) {
    float *x = malloc(n * d * sizeof(float));
    cr_assert(x);
    for (size_t i = 0; i < n; i++) {
        size_t dir = (size_t)(avq_rng_next(&seed) % 7);
        double norm2 = 0.0;
        for (size_t t = 0; t < d; t++) {
            double v = (t % 7 == dir ? 1.0 : 0.0) + 0.6 * (avq_rng_uniform(&seed) - 0.5);
            x[i * d + t] = (float)v;
            norm2 += v * v;
        }
        for (size_t t = 0; t < d; t++) x[i * d + t] = (float)(x[i * d + t] / sqrt(norm2));
    }
    return x;
}

static double sq_dist(const float *a, const float *b, size_t d) {
    double s = 0.0;
    for (size_t t = 0; t < d; t++) s += ((double)a[t] - b[t]) * ((double)a[t] - b[t]);
    return s;
}

Test(partition, group_builds_sorted_member_lists) {
    int32_t assign[10] = {2, 0, 2, 1, 0, 2, 4, 4, 0, 2};
    size_t offsets[6];
    int32_t members[10];
    avq_partition_group(assign, 10, 5, offsets, members);
    size_t want_off[6] = {0, 3, 4, 8, 8, 10};
    int32_t want_mem[10] = {1, 4, 8, 3, 0, 2, 5, 9, 6, 7};
    for (int l = 0; l < 6; l++) cr_assert_eq(offsets[l], want_off[l], "offset %d", l);
    for (int i = 0; i < 10; i++) cr_assert_eq(members[i], want_mem[i], "member %d", i);
}

Test(partition, every_point_in_its_nearest_leaf) {
    size_t n = 3000, d = 16;
    float *x = unit_data(n, d, 1);
    avq_partition_params p;
    avq_partition_default_params(&p);
    p.num_leaves = 40;
    p.threads = 2;
    avq_partition part;
    cr_assert_eq(avq_partition_train(x, n, d, &p, &part, NULL, NULL), AVQ_OK);
    cr_assert_eq(part.num_leaves, 40);
    cr_assert_eq(part.offsets[0], 0);
    cr_assert_eq(part.offsets[40], n);
    unsigned char *seen = calloc(n, 1);
    for (size_t l = 0; l < 40; l++)
        for (size_t m = part.offsets[l]; m < part.offsets[l + 1]; m++) {
            int32_t id = part.members[m];
            cr_assert_eq(part.assignment[id], (int32_t)l);
            cr_assert(!seen[id]);
            seen[id] = 1;
            if (m > part.offsets[l]) cr_assert_lt(part.members[m - 1], id);
        }
    for (size_t i = 0; i < n; i++) {
        cr_assert(seen[i]);
        double mine = sq_dist(x + i * d, part.centers + (size_t)part.assignment[i] * d, d);
        for (size_t l = 0; l < 40; l++)
            cr_assert_geq(sq_dist(x + i * d, part.centers + l * d, d), mine - 1e-5);
    }
    cr_assert_eq(part.avq_scale, 1.0);
    free(seen);
    avq_partition_free(&part);
    avq_partition_free(&part); /* idempotent */
    free(x);
}

Test(partition, default_leaves_and_determinism) {
    size_t n = 2500, d = 8;
    float *x = unit_data(n, d, 2);
    avq_partition_params p;
    avq_partition_default_params(&p);
    p.spherical = 1;
    p.threads = 1;
    avq_partition a, b;
    cr_assert_eq(avq_partition_train(x, n, d, &p, &a, NULL, NULL), AVQ_OK);
    cr_assert_eq(a.num_leaves, 50, "round(sqrt(2500))");
    p.threads = 2;
    cr_assert_eq(avq_partition_train(x, n, d, &p, &b, NULL, NULL), AVQ_OK);
    cr_assert_eq(memcmp(a.centers, b.centers, 50 * d * sizeof(float)), 0);
    cr_assert_eq(memcmp(a.assignment, b.assignment, n * sizeof(int32_t)), 0);
    for (size_t l = 0; l < 50; l++)
        cr_assert_float_eq(sqrt(avq_norm2_f64(a.centers + l * d, d)), 1.0, 1e-5);
    avq_partition_free(&a);
    avq_partition_free(&b);
    free(x);
}

/* Recompute a leaf's A and b (DESIGN.md §2 step 2) in double. */
static void leaf_system(const float *x, size_t d, const int32_t *mem, size_t cnt, double eta,
                        double *A, double *b) {
    memset(A, 0, d * d * sizeof *A);
    memset(b, 0, d * sizeof *b);
    for (size_t m = 0; m < cnt; m++) {
        const float *xi = x + (size_t)mem[m] * d;
        double ni = sqrt(avq_norm2_f64(xi, d));
        double w = pow(ni, eta - 1.0), v = (eta - 1.0) * pow(ni, eta - 3.0);
        for (size_t r = 0; r < d; r++) {
            A[r * d + r] += w;
            for (size_t c = 0; c < d; c++) A[r * d + c] += v * xi[r] * xi[c];
            b[r] += eta * w * xi[r];
        }
    }
}

static void check_avq_centers(float norm_scale) {
    size_t n = 2000, d = 12, L = 10;
    float *x = unit_data(n, d, 3);
    /* non-unit norms exercise the n_i^(eta-1) weights */
    uint64_t rng = 4;
    for (size_t i = 0; i < n; i++) {
        float s = norm_scale == 1.0f ? 1.0f : (float)(0.5 + norm_scale * avq_rng_uniform(&rng));
        for (size_t t = 0; t < d; t++) x[i * d + t] *= s;
    }
    avq_partition_params p;
    avq_partition_default_params(&p);
    p.num_leaves = L;
    p.avq_eta = 2.5;
    avq_partition part;
    cr_assert_eq(avq_partition_train(x, n, d, &p, &part, NULL, NULL), AVQ_OK);
    double s = part.avq_scale;
    cr_assert(isfinite(s) && s > 0.0);
    double *A = malloc(d * d * sizeof *A), *b = malloc(d * sizeof *b);
    double num = 0.0, den = 0.0;
    for (size_t l = 0; l < L; l++) {
        size_t lo = part.offsets[l], cnt = part.offsets[l + 1] - lo;
        cr_assert_gt(cnt, 0);
        leaf_system(x, d, part.members + lo, cnt, 2.5, A, b);
        const float *c = part.centers + l * d;
        double res2 = 0.0, b2 = 0.0;
        for (size_t r = 0; r < d; r++) {
            double ac = 0.0;
            for (size_t k = 0; k < d; k++) ac += A[r * d + k] * (c[k] / s);
            res2 += (ac - b[r]) * (ac - b[r]);
            b2 += b[r] * b[r];
        }
        cr_assert_lt(sqrt(res2 / b2), 1e-5, "leaf %zu: relative residual %g", l,
                     sqrt(res2 / b2));
        /* the rescale is the least-squares scalar: its gradient vanishes */
        for (size_t m = lo; m < lo + cnt; m++)
            num += avq_dot_f64(c, x + (size_t)part.members[m] * d, d);
        den += (double)cnt * avq_norm2_f64(c, d);
    }
    cr_assert_float_eq(num / den, 1.0, 1e-5);
    free(A);
    free(b);
    avq_partition_free(&part);
    free(x);
}

Test(partition, avq_centers_solve_normal_equations) { check_avq_centers(1.0f); }
Test(partition, avq_centers_with_varied_norms) { check_avq_centers(1.5f); }

Test(partition, avq_centers_keep_empty_leaves) {
    float x[8] = {1, 0, 0.8f, 0.6f, 0, 1, 0.6f, 0.8f};
    size_t offsets[4] = {0, 2, 2, 4}; /* leaf 1 is empty */
    int32_t members[4] = {0, 1, 2, 3};
    float centers[6] = {1, 0, 7, 7, 0, 1};
    double s = 0.0;
    size_t failed = 9;
    cr_assert_eq(avq_partition_avq_centers(x, 4, 2, offsets, members, 3, 3.0, 1, centers, &s,
                                           &failed),
                 AVQ_OK);
    cr_assert_eq(failed, 0);
    cr_assert_float_eq(centers[2], 7.0 * s, 1e-5);
    cr_assert_float_eq(centers[3], 7.0 * s, 1e-5);
    cr_assert_eq(avq_partition_avq_centers(x, 4, 2, offsets, members, 3, 0.0, 1, centers, NULL,
                                           NULL),
                 AVQ_ERR_INVALID);
    cr_assert_eq(avq_partition_avq_centers(x, 4, 2, offsets, members, 3, NAN, 1, centers, NULL,
                                           NULL),
                 AVQ_ERR_INVALID);
}

static void check_selection(avq_metric metric) {
    size_t L = 60, d = 10, nq = 37, m = 7;
    float *c = unit_data(L, d, 5), *q = unit_data(nq, d, 6);
    for (size_t i = 0; i < L * d; i++) c[i] *= (float)(1.0 + 0.01 * (double)(i % 13));
    int32_t *batch = malloc(nq * m * sizeof(int32_t)), one[7];
    float *bd = malloc(nq * m * sizeof(float)), od[7], cn[60];
    avq_neighbor scratch[60];
    for (size_t l = 0; l < L; l++) cn[l] = (float)avq_norm2_f64(c + l * d, d);
    cr_assert_eq(avq_select_leaves(c, L, d, q, nq, metric, m, 2, batch, bd), AVQ_OK);
    for (size_t i = 0; i < nq; i++) {
        const float *qi = q + i * d;
        cr_assert_eq(avq_select_leaves_one(c, cn, L, d, qi, metric, m, scratch, one, od), m);
        for (size_t j = 0; j < m; j++) {
            cr_assert_eq(one[j], batch[i * m + j], "query %zu rank %zu", i, j);
            cr_assert_float_eq(od[j], bd[i * m + j], 1e-4);
            if (j) cr_assert_leq(bd[i * m + j - 1], bd[i * m + j]);
        }
        /* brute force: nothing outside the list beats the last one kept */
        double worst = -INFINITY;
        for (size_t j = 0; j < m; j++) {
            const float *cl = c + (size_t)batch[i * m + j] * d;
            double v = metric == AVQ_METRIC_L2 ? sq_dist(qi, cl, d) : -avq_dot_f64(qi, cl, d);
            cr_assert_float_eq(v, bd[i * m + j], 1e-4);
            if (v > worst) worst = v;
        }
        for (size_t l = 0; l < L; l++) {
            double v = metric == AVQ_METRIC_L2 ? sq_dist(qi, c + l * d, d)
                                               : -avq_dot_f64(qi, c + l * d, d);
            int in = 0;
            for (size_t j = 0; j < m; j++) in |= batch[i * m + j] == (int32_t)l;
            if (!in) cr_assert_geq(v, worst - 1e-5);
        }
    }
    free(c);
    free(q);
    free(batch);
    free(bd);
}

Test(partition, select_leaves_inner_product) { check_selection(AVQ_METRIC_DOT); }
Test(partition, select_leaves_l2) { check_selection(AVQ_METRIC_L2); }

Test(partition, select_leaves_clamps_and_rejects) {
    float c[6] = {1, 0, 0, 1, -1, 0}, q[2] = {0.9f, 0.1f};
    int32_t leaves[3];
    float dists[3];
    cr_assert_eq(avq_select_leaves(c, 3, 2, q, 1, AVQ_METRIC_DOT, 10, 1, leaves, dists), AVQ_OK);
    cr_assert_eq(leaves[0], 0);
    cr_assert_eq(leaves[1], 1);
    cr_assert_eq(leaves[2], 2);
    cr_assert_float_eq(dists[0], -0.9f, 1e-6);
    cr_assert_eq(avq_select_leaves(c, 3, 2, q, 1, AVQ_METRIC_DOT, 0, 1, leaves, dists),
                 AVQ_ERR_INVALID);
    cr_assert_eq(avq_select_leaves(c, 3, 2, q, 1, (avq_metric)5, 1, 1, leaves, dists),
                 AVQ_ERR_INVALID);
    cr_assert_eq(avq_select_leaves(NULL, 3, 2, q, 1, AVQ_METRIC_DOT, 1, 1, leaves, dists),
                 AVQ_ERR_INVALID);
}

Test(partition, residuals_subtract_the_leaf_center) {
    float x[6] = {1, 2, 3, 4, 5, 6}, c[4] = {1, 1, 10, 10}, out[6];
    int32_t assign[3] = {1, 0, 1};
    cr_assert_eq(avq_partition_residuals(x, 3, 2, c, assign, 2, out), AVQ_OK);
    float want[6] = {-9, -8, 2, 3, -5, -4};
    for (int i = 0; i < 6; i++) cr_assert_eq(out[i], want[i]);
}

Test(partition, bad_input_is_rejected) {
    float x[8] = {0};
    avq_partition_params p;
    avq_partition_default_params(&p);
    avq_partition part;
    p.num_leaves = 5;
    cr_assert_eq(avq_partition_train(x, 4, 2, &p, &part, NULL, NULL), AVQ_ERR_INVALID);
    cr_assert_null(part.centers);
    p.num_leaves = 2;
    x[1] = NAN;
    cr_assert_eq(avq_partition_train(x, 4, 2, &p, &part, NULL, NULL), AVQ_ERR_INVALID);
    cr_assert_null(part.assignment);
    cr_assert_eq(avq_partition_train(NULL, 4, 2, &p, &part, NULL, NULL), AVQ_ERR_INVALID);
    cr_assert_eq(avq_partition_train(x, 4, 2, &p, NULL, NULL, NULL), AVQ_ERR_INVALID);
}
