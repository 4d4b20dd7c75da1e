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
#include <unistd.h>

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

/* anisotropic loss of an int8 row against x at eta */
static double i8_loss(const float *x, const int8_t *v, const float *scale, size_t d, double eta) {
    double r2 = 0.0, par = 0.0, n2 = 0.0;
    for (size_t j = 0; j < d; j++) {
        double e = (double)x[j] - (double)v[j] * scale[j];
        r2 += e * e;
        par += e * x[j];
        n2 += (double)x[j] * x[j];
    }
    par /= sqrt(n2);
    return eta * par * par + (r2 - par * par);
}

Test(weights, int8_rounding_lowers_the_loss) {
    size_t n = 400, d = 32;
    float *x = random_points(n, d, 9), scale[32];
    for (size_t j = 0; j < d; j++) scale[j] = 0.05f + 0.01f * (float)j; /* coarse: errors matter */
    void *scratch = malloc(avq_aniso_round_i8_scratch(d));
    int8_t near[32], aware[32];
    double sum_near = 0.0, sum_aware = 0.0, par_near = 0.0, par_aware = 0.0;
    size_t changed = 0;
    for (size_t i = 0; i < n; i++) {
        const float *xi = x + i * d;
        for (size_t j = 0; j < d; j++) {
            float v = roundf(xi[j] / scale[j]);
            near[j] = (int8_t)(v > 127 ? 127 : (v < -127 ? -127 : v));
        }
        /* eta = 1: nearest rounding, bit for bit as the index's plain rows */
        avq_aniso_round_i8(xi, d, scale, 1.0, scratch, aware);
        cr_assert_arr_eq(near, aware, d);
        avq_aniso_round_i8(xi, d, scale, 8.0, scratch, aware);
        double ln = i8_loss(xi, near, scale, d, 8.0), la = i8_loss(xi, aware, scale, d, 8.0);
        cr_assert_leq(la, ln + 1e-12, "row %zu: %g > nearest %g", i, la, ln);
        for (size_t j = 0; j < d; j++) {
            double v = (double)xi[j] / scale[j];
            cr_assert(aware[j] == (int8_t)floor(v) || aware[j] == (int8_t)ceil(v),
                      "row %zu dim %zu: %d is not a neighbour of %g", i, j, aware[j], v);
        }
        changed += memcmp(near, aware, d) != 0;
        sum_near += ln;
        sum_aware += la;
        /* the parallel error is what shrinks */
        double pn = i8_loss(xi, near, scale, d, 2.0) - ln, pa = i8_loss(xi, aware, scale, d, 2.0) - la;
        par_near += -pn / 6.0; /* loss(2) - loss(8) = -6 par² */
        par_aware += -pa / 6.0;
    }
    cr_assert_gt(changed, n / 2, "only %zu of %zu rows changed", changed, n);
    /* the batch form: the same rows as one call per row, any thread count */
    {
        int8_t *one = malloc(n * d), *three = malloc(n * d);
        double *etas = malloc(n * sizeof *etas);
        for (size_t i = 0; i < n; i++) etas[i] = 1.0 + (double)(i % 9);
        cr_assert_eq(avq_aniso_round_i8_rows(x, n, d, scale, etas, 1, one), AVQ_OK);
        cr_assert_eq(avq_aniso_round_i8_rows(x, n, d, scale, etas, 3, three), AVQ_OK);
        cr_assert_arr_eq(one, three, n * d);
        for (size_t i = 0; i < n; i += 37) {
            avq_aniso_round_i8(x + i * d, d, scale, etas[i], scratch, aware);
            cr_assert_arr_eq(aware, one + i * d, d, "row %zu", i);
        }
        free(one);
        free(three);
        free(etas);
    }
    cr_assert_lt(sum_aware, 0.9 * sum_near, "%g vs %g", sum_aware, sum_near);
    cr_assert_lt(par_aware, 0.5 * par_near, "parallel %g vs %g", par_aware, par_near);
    /* a zero row stays zero; values past the grid clamp */
    float zero[32] = {0}, big[32];
    for (size_t j = 0; j < d; j++) big[j] = (j % 2 ? 1.0f : -1.0f) * 200.0f * scale[j];
    avq_aniso_round_i8(zero, d, scale, 8.0, scratch, aware);
    for (size_t j = 0; j < d; j++) cr_assert_eq(aware[j], 0);
    avq_aniso_round_i8(big, d, scale, 8.0, scratch, aware);
    for (size_t j = 0; j < d; j++) cr_assert_eq(aware[j], j % 2 ? 127 : -127);
    free(scratch);
    free(x);
}

Test(weights, index_keeps_weight_and_int8_rounding) {
    size_t n = 3000, d = 16;
    float *x = random_points(n, d, 21);
    avq_build_params p;
    avq_build_params_init(&p, AVQ_METRIC_DOT);
    p.brute_force_below = 100;
    p.threads = 2;
    p.weight = AVQ_WEIGHT_EXP;
    p.weight_param = 3.0f;
    p.threshold_kind = AVQ_THRESHOLD_ABSOLUTE;
    p.reorder = AVQ_REORDER_INT8;
    p.int8_aware = 1;
    avq_index *a = NULL, *b = NULL;
    cr_assert_eq(avq_index_build(x, n, d, &p, &a), AVQ_OK, "%s", avq_last_error());
    char path[] = "/tmp/avq-test-weights-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(avq_index_save(a, path), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(avq_index_load(path, AVQ_LOAD_COPY, &b), AVQ_OK, "%s", avq_last_error());
    unlink(path);
    avq_build_params got;
    avq_build_params_init(&got, AVQ_METRIC_DOT);
    avq_index_build_params(b, &got);
    cr_assert_eq(got.weight, AVQ_WEIGHT_EXP);
    cr_assert_float_eq(got.weight_param, 3.0f, 0.0f);
    cr_assert_eq(got.int8_aware, 1);
    /* the same search results from the loaded copy */
    int64_t ia[10], ib[10];
    float sa[10], sb[10];
    avq_search_params sp;
    avq_search_params_init(&sp);
    cr_assert_eq(avq_index_search(a, x, &sp, ia, sa), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(avq_index_search(b, x, &sp, ib, sb), AVQ_OK, "%s", avq_last_error());
    cr_assert_arr_eq(ia, ib, sizeof ia);
    /* bad build parameters are refused with a message */
    avq_build_params bad = p;
    bad.weight = AVQ_WEIGHT_LOGISTIC;
    bad.weight_param = 0.0f;
    avq_index *c = NULL;
    cr_assert_eq(avq_index_build(x, n, d, &bad, &c), AVQ_ERR_INVALID);
    bad = p;
    bad.eta = 3.0f;
    cr_assert_eq(avq_index_build(x, n, d, &bad, &c), AVQ_ERR_INVALID);
    bad = p;
    bad.int8_aware = 2;
    cr_assert_eq(avq_index_build(x, n, d, &bad, &c), AVQ_ERR_INVALID);
    avq_build_params_init(&bad, AVQ_METRIC_L2);
    bad.weight = AVQ_WEIGHT_POW;
    bad.weight_param = 2.0f;
    cr_assert_eq(avq_index_build(x, n, d, &bad, &c), AVQ_ERR_INVALID);
    cr_assert_null(c);
    avq_index_free(a);
    avq_index_free(b);
    free(x);
}
