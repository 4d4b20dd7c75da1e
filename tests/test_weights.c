/*
 * test_weights.c -- the numerical eta of general score weights (issue 19):
 * the step weight reproduces avq_eta's exact finite-d closed form and tends
 * to its asymptotic form as d grows; POW gives its closed form P + 1 at
 * every norm and d; EXP grows with the norm and approaches 1 + L²|x|²/d;
 * every weight gives a finite eta >= 1; the norm table interpolates; the
 * encoder follows the weight and refuses bad ones.
 */
#include <criterion/criterion.h>

#include "aniso.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double step_eta(double norm, size_t d, double T) {
    avq_weight w = {AVQ_WEIGHT_STEP, T, 0.0};
    return avq_weight_eta(&w, norm, d);
}

Test(weights, step_equals_exact_closed_form) {
    /* the reference values of test_aniso (scipy quad) and avq_eta's own */
    cr_assert_float_eq(step_eta(1.0, 100, 0.2), 5.953314, 1e-5);
    cr_assert_float_eq(step_eta(1.0, 2000, 0.05), 6.7926877, 1e-5);
    cr_assert_float_eq(step_eta(2.0, 20, 0.5), 2.9575037, 1e-5);
    cr_assert_float_eq(step_eta(1.0, 3, 0.1), 1.1746032, 1e-5);
    size_t ds[] = {3, 10, 100, 960};
    double Ts[] = {0.05, 0.2, 0.5}, norms[] = {0.7, 1.0, 3.0};
    for (size_t a = 0; a < 4; a++)
        for (size_t b = 0; b < 3; b++)
            for (size_t c = 0; c < 3; c++) {
                double num = step_eta(norms[c], ds[a], Ts[b]);
                double ref = avq_eta(norms[c] * norms[c], ds[a], Ts[b], AVQ_ETA_EXACT);
                cr_assert(fabs(num - ref) <= 1e-4 * ref, "d %zu T %g |x| %g: %.8f vs %.8f",
                          ds[a], Ts[b], norms[c], num, ref);
            }
}

Test(weights, step_tends_to_asymptotic_form) {
    /* exact / asymptotic - 1 ~ 2(1 - c²)/(d c²): it shrinks like 1/d */
    double prev = INFINITY;
    size_t ds[] = {100, 1000, 10000, 100000};
    for (size_t i = 0; i < 4; i++) {
        double num = step_eta(1.0, ds[i], 0.2);
        double asym = avq_eta(1.0, ds[i], 0.2, AVQ_ETA_ASYMPTOTIC);
        double rel = num / asym - 1.0;
        cr_assert(rel > 0.0 && rel < prev, "d %zu: %g (previous %g)", ds[i], rel, prev);
        prev = rel;
    }
    cr_assert_lt(prev, 1e-3);
    /* with the norm: the same limit for T/|x| */
    double num = step_eta(3.0, 100000, 0.9), asym = avq_eta(9.0, 100000, 0.9, AVQ_ETA_ASYMPTOTIC);
    cr_assert(fabs(num / asym - 1.0) < 1e-3, "%g vs %g", num, asym);
}

Test(weights, pow_is_p_plus_one) {
    size_t ds[] = {2, 3, 20, 100, 960};
    double Ps[] = {0.0, 1.0, 3.125, 8.0}, norms[] = {0.01, 1.0, 6.5};
    for (size_t a = 0; a < 5; a++)
        for (size_t b = 0; b < 4; b++)
            for (size_t c = 0; c < 3; c++) {
                avq_weight w = {AVQ_WEIGHT_POW, NAN, Ps[b]};
                double e = avq_weight_eta(&w, norms[c], ds[a]);
                cr_assert(fabs(e - (Ps[b] + 1.0)) < 1e-6 * (Ps[b] + 1.0),
                          "d %zu P %g |x| %g: %.9f", ds[a], Ps[b], norms[c], e);
            }
}

Test(weights, exp_grows_with_norm) {
    avq_weight w = {AVQ_WEIGHT_EXP, NAN, 10.0};
    double prev = 0.0;
    for (double n = 0.05; n < 8.0; n *= 1.3) {
        double e = avq_weight_eta(&w, n, 100);
        cr_assert(isfinite(e) && e >= 1.0 && e > prev, "|x| %g: %g after %g", n, e, prev);
        prev = e;
    }
    /* large d: the score of a random q is ~ N(0, |x|²/d), tilted by e^{Lt} */
    for (double n = 0.5; n <= 2.0; n *= 2.0) {
        double e = avq_weight_eta(&w, n, 10000), approx = 1.0 + 100.0 * n * n / 10000.0;
        cr_assert(fabs(e - approx) < 1e-3 * approx, "|x| %g: %g vs %g", n, e, approx);
    }
    avq_weight flat = {AVQ_WEIGHT_EXP, NAN, 0.0}; /* w = 1: isotropic */
    cr_assert_float_eq(avq_weight_eta(&flat, 3.0, 100), 1.0, 1e-9);
}

Test(weights, step_falls_with_norm_and_logistic_tends_to_step) {
    double prev = INFINITY;
    for (double n = 0.25; n < 20.0; n *= 1.3) {
        double e = step_eta(n, 100, 0.2);
        cr_assert(e >= 1.0 && e < prev, "|x| %g: %g after %g", n, e, prev);
        prev = e;
    }
    avq_weight lg = {AVQ_WEIGHT_LOGISTIC, 0.2, 1e-4};
    cr_assert(fabs(avq_weight_eta(&lg, 1.0, 100) / step_eta(1.0, 100, 0.2) - 1.0) < 1e-3);
    /* softer steps spread the weight: eta falls toward 1 as S grows */
    prev = INFINITY;
    for (double S = 0.01; S < 10.0; S *= 2.0) {
        lg.param = S;
        double e = avq_weight_eta(&lg, 1.0, 100);
        cr_assert(e >= 1.0 && e < prev, "S %g: %g after %g", S, e, prev);
        prev = e;
    }
    cr_assert_lt(prev, 1.1);
}

Test(weights, every_weight_finite_and_at_least_one) {
    avq_weight ws[] = {{AVQ_WEIGHT_STEP, 0.2, 0.0},     {AVQ_WEIGHT_STEP, 3.0, 0.0},
                       {AVQ_WEIGHT_STEP, -0.5, 0.0},    {AVQ_WEIGHT_POW, NAN, 2.0},
                       {AVQ_WEIGHT_POW, NAN, 60.0},     {AVQ_WEIGHT_EXP, NAN, 3.0},
                       {AVQ_WEIGHT_EXP, NAN, 200.0},    {AVQ_WEIGHT_LOGISTIC, 0.2, 0.05},
                       {AVQ_WEIGHT_LOGISTIC, 5.0, 0.01}, {AVQ_WEIGHT_LOGISTIC, -1.0, 1.0}};
    size_t ds[] = {2, 3, 100, 1000};
    for (size_t i = 0; i < sizeof ws / sizeof *ws; i++)
        for (size_t a = 0; a < 4; a++)
            for (double n = 0.0; n < 40.0; n = n * 1.7 + 0.01) {
                double e = avq_weight_eta(&ws[i], n, ds[a]);
                cr_assert(isfinite(e) && e >= 1.0 && e <= AVQ_ETA_MAX,
                          "weight %zu d %zu |x| %g: %g", i, ds[a], n, e);
            }
    /* no score reaches T: the guard value, as avq_eta */
    cr_assert_eq(step_eta(0.1, 100, 0.2), AVQ_ETA_MAX);
    cr_assert_eq(step_eta(0.0, 100, 0.2), AVQ_ETA_MAX);
    cr_assert_eq(step_eta(1.0, 1, 0.2), 1.0);
}

Test(weights, check_refuses_bad_weights) {
    avq_weight ok[] = {{AVQ_WEIGHT_STEP, 0.2, 0}, {AVQ_WEIGHT_POW, NAN, 0},
                       {AVQ_WEIGHT_EXP, NAN, 4}, {AVQ_WEIGHT_LOGISTIC, 0.2, 0.05}};
    avq_weight bad[] = {{AVQ_WEIGHT_STEP, NAN, 0},      {AVQ_WEIGHT_POW, NAN, -1},
                        {AVQ_WEIGHT_POW, NAN, INFINITY}, {AVQ_WEIGHT_EXP, NAN, -0.5},
                        {AVQ_WEIGHT_LOGISTIC, 0.2, 0},   {AVQ_WEIGHT_LOGISTIC, NAN, 0.1},
                        {(avq_weight_kind)9, 0.2, 1}};
    for (size_t i = 0; i < 4; i++) cr_assert_null(avq_weight_check(&ok[i]), "ok %zu", i);
    for (size_t i = 0; i < 7; i++) cr_assert_not_null(avq_weight_check(&bad[i]), "bad %zu", i);
    cr_assert_not_null(avq_weight_check(NULL));
}

Test(weights, table_interpolates) {
    avq_weight w = {AVQ_WEIGHT_EXP, NAN, 5.0};
    avq_eta_table *t = malloc(sizeof *t);
    cr_assert_not_null(t);
    avq_eta_table_build(t, &w, 2.6, 6.5, 100);
    for (double n = 2.6; n <= 6.5; n += 0.0137) {
        double direct = avq_weight_eta(&w, n, 100), got = avq_eta_table_lookup(t, n);
        cr_assert(fabs(got - direct) < 1e-4 * direct, "|x| %g: %g vs %g", n, got, direct);
    }
    cr_assert_eq(avq_eta_table_lookup(t, 1.0), t->eta[0], "below the range: clamped");
    cr_assert_eq(avq_eta_table_lookup(t, 9.0), t->eta[t->knots - 1], "above: clamped");
    avq_eta_table_build(t, &w, 3.0, 3.0, 100); /* one norm */
    cr_assert_eq(t->knots, 1);
    cr_assert_float_eq(avq_eta_table_lookup(t, 7.0), avq_weight_eta(&w, 3.0, 100), 1e-12);
    free(t);
}

/* n random points, norms spread over [1, 5] */
static float *random_points(size_t n, size_t d, unsigned seed) {
    float *x = malloc(n * d * sizeof *x);
    srand(seed);
    for (size_t i = 0; i < n; i++) {
        double scale = 1.0 + 4.0 * (double)i / (double)n, s2 = 0.0;
        for (size_t j = 0; j < d; j++) {
            x[i * d + j] = (float)((double)rand() / RAND_MAX - 0.5);
            s2 += (double)x[i * d + j] * x[i * d + j];
        }
        for (size_t j = 0; j < d; j++) x[i * d + j] = (float)(x[i * d + j] * scale / sqrt(s2));
    }
    return x;
}

static float *random_codebook(size_t C, size_t d, unsigned seed) {
    float *cb = malloc(C * d * sizeof *cb);
    srand(seed);
    for (size_t i = 0; i < C * d; i++) cb[i] = (float)(((double)rand() / RAND_MAX - 0.5) * 0.8);
    return cb;
}

Test(weights, encoder_follows_the_weight) {
    size_t n = 600, d = 16;
    avq_pq_shape shape = {d, 2, 16};
    size_t K = avq_pq_num_blocks(&shape);
    float *x = random_points(n, d, 3), *cb = random_codebook(16, d, 4);
    uint8_t *a = malloc(n * K), *b = malloc(n * K);
    avq_aniso_params p;
    /* POW P = 3 is a fixed eta of 4, relative or absolute */
    avq_aniso_default_params(&p);
    p.threads = 1;
    p.eta = 4.0;
    cr_assert_eq(avq_aniso_encode(x, x, n, &shape, cb, &p, a, NULL, NULL), AVQ_OK);
    avq_aniso_default_params(&p);
    p.threads = 1;
    p.weight = AVQ_WEIGHT_POW;
    p.weight_param = 3.0;
    p.relative = 1;
    cr_assert_eq(avq_aniso_encode(x, x, n, &shape, cb, &p, b, NULL, NULL), AVQ_OK);
    cr_assert_arr_eq(a, b, n * K);
    /* EXP absolute: each point gets its own norm's eta, so the codes equal a
     * per-point fixed-eta encoding with eta from avq_weight_eta */
    avq_aniso_default_params(&p);
    p.threads = 2;
    p.weight = AVQ_WEIGHT_EXP;
    p.weight_param = 2.0;
    cr_assert_eq(avq_aniso_encode(x, x, n, &shape, cb, &p, a, NULL, NULL), AVQ_OK);
    avq_weight w = {AVQ_WEIGHT_EXP, NAN, 2.0};
    size_t differ = 0, differ_small = 0;
    double lo_eta = avq_weight_eta(&w, 1.0, d), hi_eta = avq_weight_eta(&w, 5.0, d);
    cr_assert_gt(hi_eta, lo_eta + 1.0, "the weight must spread eta: %g..%g", lo_eta, hi_eta);
    for (size_t i = 0; i < n; i++) {
        double nr = 0.0;
        for (size_t j = 0; j < d; j++) nr += (double)x[i * d + j] * x[i * d + j];
        avq_aniso_params q;
        avq_aniso_default_params(&q);
        q.threads = 1;
        q.eta = avq_weight_eta(&w, sqrt(nr), d);
        uint8_t one[8], with_small[8];
        cr_assert_eq(avq_aniso_encode(x + i * d, x + i * d, 1, &shape, cb, &q, one, NULL, NULL),
                     AVQ_OK);
        q.eta = lo_eta; /* the smallest norm's eta for everyone */
        cr_assert_eq(
            avq_aniso_encode(x + i * d, x + i * d, 1, &shape, cb, &q, with_small, NULL, NULL),
            AVQ_OK);
        differ += memcmp(one, a + i * K, K) != 0;
        differ_small += memcmp(with_small, a + i * K, K) != 0;
    }
    /* the table interpolates (1e-4 relative): almost every code is the same */
    cr_assert_leq(differ, n / 100, "%zu of %zu differ", differ, n);
    cr_assert_gt(differ_small, n / 10, "one eta for all would be a different encoding (%zu)",
                 differ_small);
    /* bad weights are refused */
    p.weight = AVQ_WEIGHT_LOGISTIC;
    p.threshold = 0.2;
    p.weight_param = 0.0;
    cr_assert_eq(avq_aniso_encode(x, x, n, &shape, cb, &p, a, NULL, NULL), AVQ_ERR_INVALID);
    p.weight = (avq_weight_kind)7;
    p.weight_param = 1.0;
    cr_assert_eq(avq_aniso_encode(x, x, n, &shape, cb, &p, a, NULL, NULL), AVQ_ERR_INVALID);
    free(x);
    free(cb);
    free(a);
    free(b);
}
