/*
 * test_aniso.c -- eta (values, guards, clamping) and the score-aware
 * encoder: never worse than the reconstruction start under the anisotropic
 * loss (a property over random data, with residuals as in a real index),
 * identical to reconstruction at eta = 1, smaller parallel error,
 * determinism, zero vectors, and bad input.
 */
#include <criterion/criterion.h>

#include "aniso.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

Test(aniso, eta_values) {
    /* unit norm, d = 100, T = 0.2: 99 * 0.04 / 0.96 */
    cr_assert_float_eq(avq_eta(1.0, 100, 0.2, AVQ_ETA_ASYMPTOTIC), 4.125, 1e-12);
    /* the exact finite-d ratio (DESIGN.md: ~5.95; scipy quad gives 5.953314) */
    cr_assert_float_eq(avq_eta(1.0, 100, 0.2, AVQ_ETA_EXACT), 5.953314, 1e-4);
    /* more reference values of the integral ratio (scipy quad, rel 1e-12) */
    cr_assert_float_eq(avq_eta(1.0, 2000, 0.05, AVQ_ETA_EXACT), 6.7926877, 1e-4);
    cr_assert_float_eq(avq_eta(1.0, 2000, 0.3, AVQ_ETA_EXACT), 199.890274, 2e-3);
    cr_assert_float_eq(avq_eta(4.0, 20, 0.5, AVQ_ETA_EXACT), 2.9575037, 1e-4);
    cr_assert_float_eq(avq_eta(1.0, 3, 0.1, AVQ_ETA_EXACT), 1.1746032, 1e-4);
    /* growing T sharpens the anisotropy */
    cr_assert_lt(avq_eta(1.0, 100, 0.2, AVQ_ETA_ASYMPTOTIC), avq_eta(1.0, 100, 0.3, AVQ_ETA_ASYMPTOTIC));
    cr_assert_lt(avq_eta(1.0, 100, 0.2, AVQ_ETA_EXACT), avq_eta(1.0, 100, 0.3, AVQ_ETA_EXACT));
}

Test(aniso, eta_guards_are_finite) {
    avq_eta_mode modes[2] = {AVQ_ETA_ASYMPTOTIC, AVQ_ETA_EXACT};
    for (int i = 0; i < 2; i++) {
        avq_eta_mode m = modes[i];
        cr_assert_eq(avq_eta(0.0, 100, 0.2, m), AVQ_ETA_MAX, "zero vector");
        cr_assert_eq(avq_eta(0.04, 100, 0.2, m), AVQ_ETA_MAX, "|x| = T");
        cr_assert_eq(avq_eta(0.01, 100, 0.2, m), AVQ_ETA_MAX, "|x| < T");
        cr_assert_eq(avq_eta(0.04 * (1 + 1e-9), 100, 0.2, m), AVQ_ETA_MAX, "just above T");
        double near = avq_eta(0.04 * 1.001, 100, 0.2, m);
        cr_assert(isfinite(near) && near <= AVQ_ETA_MAX && near > 100.0);
        /* large norms: the asymptotic form drops below 1 and is clamped; the
         * exact ratio is always above 1 and tends to it */
        double large = avq_eta(1e6, 100, 0.2, m);
        cr_assert(large >= 1.0 && large < 1.01, "large norm: %g", large);
        if (m == AVQ_ETA_ASYMPTOTIC) cr_assert_eq(large, 1.0);
        cr_assert_eq(avq_eta(1.0, 100, 0.0, m), 1.0, "T = 0");
        cr_assert_eq(avq_eta(1.0, 100, NAN, m), 1.0, "no threshold");
        cr_assert_eq(avq_eta(1.0, 100, -0.2, m), 1.0, "negative T");
        cr_assert_eq(avq_eta(1.0, 1, 0.2, m), 1.0, "d = 1");
        cr_assert_eq(avq_eta(NAN, 100, 0.2, m), AVQ_ETA_MAX);
        cr_assert_eq(avq_eta(INFINITY, 100, 0.2, m), AVQ_ETA_MAX);
        for (double n2 = 0.041; n2 < 100.0; n2 *= 1.7) {
            double e = avq_eta(n2, 100, 0.2, m);
            cr_assert(isfinite(e) && e >= 1.0 && e <= AVQ_ETA_MAX, "norm2 %g: %g", n2, e);
        }
    }
}

typedef struct {
    size_t n, d, K;
    avq_pq_shape shape;
    float *x, *y, *cb; /* originals, residuals, codebook */
} fixture;

/* Unit-norm points; residuals against one of a few random "leaf centers"
 * (so |y| != |x|, as in a partitioned index); a codebook trained on y. */
static fixture make_fixture(size_t n, size_t d, size_t dpb, uint64_t seed) {
    fixture f = {n, d, 0, {d, dpb, 16}, NULL, NULL, NULL};
    f.K = avq_pq_num_blocks(&f.shape);
    f.x = malloc(n * d * sizeof(float));
    f.y = malloc(n * d * sizeof(float));
    f.cb = malloc(16 * d * sizeof(float));
    cr_assert(f.x && f.y && f.cb);
    float leaves[4 * 64];
    cr_assert_leq(d, 64);
    for (size_t i = 0; i < 4 * d; i++) leaves[i] = (float)(0.4 * (avq_rng_uniform(&seed) - 0.5));
    for (size_t i = 0; i < n; i++) {
        double norm2 = 0.0;
        for (size_t t = 0; t < d; t++) {
            double g = avq_rng_uniform(&seed) - 0.5 + (t % 5 == 0 ? 0.3 : 0.0);
            f.x[i * d + t] = (float)g;
            norm2 += g * g;
        }
        for (size_t t = 0; t < d; t++) f.x[i * d + t] = (float)(f.x[i * d + t] / sqrt(norm2));
        const float *c = leaves + (i % 4) * d;
        for (size_t t = 0; t < d; t++) f.y[i * d + t] = f.x[i * d + t] - c[t];
    }
    avq_pq_train_params tp;
    avq_pq_default_train_params(&tp);
    tp.max_iter = 6;
    cr_assert_eq(avq_pq_train(f.y, n, &f.shape, &tp, f.cb, NULL, NULL), AVQ_OK);
    return f;
}

static void free_fixture(fixture *f) {
    free(f->x);
    free(f->y);
    free(f->cb);
}

static uint8_t *encode(const fixture *f, double T, double eta, avq_eta_mode mode, int threads) {
    uint8_t *codes = malloc(f->n * f->K);
    avq_aniso_params p;
    avq_aniso_default_params(&p);
    p.threshold = T;
    p.eta = eta;
    p.eta_mode = mode;
    p.threads = threads;
    cr_assert_eq(avq_aniso_encode(f->y, f->x, f->n, &f->shape, f->cb, &p, codes, NULL, NULL),
                 AVQ_OK, "%s", avq_last_error());
    return codes;
}

static void check_never_worse(size_t d, size_t dpb, double T, avq_eta_mode mode) {
    fixture f = make_fixture(1500, d, dpb, 11 + d);
    uint8_t *rec = encode(&f, NAN, NAN, mode, 2);
    uint8_t *ani = encode(&f, T, NAN, mode, 2);
    size_t improved = 0;
    for (size_t i = 0; i < f.n; i++) {
        const float *y = f.y + i * d, *x = f.x + i * d;
        double eta = avq_eta(avq_norm2_f64(x, d), d, T, mode);
        double start = avq_aniso_loss(y, x, rec + i * f.K, &f.shape, f.cb, eta);
        double got = avq_aniso_loss(y, x, ani + i * f.K, &f.shape, f.cb, eta);
        cr_assert_leq(got, start + 1e-12 * (1.0 + start), "point %zu: %.17g > %.17g", i, got,
                      start);
        improved += got < start;
    }
    cr_assert_gt(improved, f.n / 4, "only %zu of %zu points improved", improved, f.n);
    free(rec);
    free(ani);
    free_fixture(&f);
}

Test(aniso, never_worse_than_reconstruction_dpb2) { check_never_worse(40, 2, 0.2, AVQ_ETA_ASYMPTOTIC); }
Test(aniso, never_worse_than_reconstruction_dpb3) { check_never_worse(31, 3, 0.3, AVQ_ETA_ASYMPTOTIC); }
Test(aniso, never_worse_than_reconstruction_exact) { check_never_worse(24, 4, 0.2, AVQ_ETA_EXACT); }

Test(aniso, reduces_parallel_error) {
    size_t d = 40;
    fixture f = make_fixture(1500, d, 2, 21);
    uint8_t *rec = encode(&f, NAN, NAN, AVQ_ETA_ASYMPTOTIC, 2);
    uint8_t *ani = encode(&f, 0.3, NAN, AVQ_ETA_ASYMPTOTIC, 2);
    /* loss at eta -> infinity is dominated by par²: compare par² via eta = 1e4 - 1 */
    double par_rec = 0.0, par_ani = 0.0;
    for (size_t i = 0; i < f.n; i++) {
        const float *y = f.y + i * d, *x = f.x + i * d;
        double r1 = avq_aniso_loss(y, x, rec + i * f.K, &f.shape, f.cb, 1.0);
        double r2 = avq_aniso_loss(y, x, rec + i * f.K, &f.shape, f.cb, 2.0);
        double a1 = avq_aniso_loss(y, x, ani + i * f.K, &f.shape, f.cb, 1.0);
        double a2 = avq_aniso_loss(y, x, ani + i * f.K, &f.shape, f.cb, 2.0);
        par_rec += r2 - r1; /* = par² */
        par_ani += a2 - a1;
    }
    cr_assert_lt(par_ani, 0.7 * par_rec, "par² %g vs %g", par_ani, par_rec);
    free(rec);
    free(ani);
    free_fixture(&f);
}

Test(aniso, eta_one_equals_reconstruction) {
    fixture f = make_fixture(1000, 30, 2, 31);
    uint8_t *rec = malloc(f.n * f.K);
    cr_assert_eq(avq_pq_encode(f.y, f.n, &f.shape, f.cb, 2, rec, NULL, NULL), AVQ_OK);
    uint8_t *fixed = encode(&f, NAN, 1.0, AVQ_ETA_ASYMPTOTIC, 2);
    uint8_t *below = encode(&f, NAN, 0.5, AVQ_ETA_ASYMPTOTIC, 1); /* clamped to 1 */
    /* T = 0.1 in d = 30: 29 * 0.01 / 0.99 < 1, clamped to 1 */
    uint8_t *lowT = encode(&f, 0.1, NAN, AVQ_ETA_ASYMPTOTIC, 2);
    cr_assert_eq(memcmp(rec, fixed, f.n * f.K), 0);
    cr_assert_eq(memcmp(rec, below, f.n * f.K), 0);
    cr_assert_eq(memcmp(rec, lowT, f.n * f.K), 0);
    uint8_t *big = encode(&f, NAN, 5.0, AVQ_ETA_ASYMPTOTIC, 2);
    cr_assert_neq(memcmp(rec, big, f.n * f.K), 0, "eta = 5 changes some codes");
    free(rec);
    free(fixed);
    free(below);
    free(lowT);
    free(big);
    free_fixture(&f);
}

Test(aniso, deterministic_across_threads) {
    fixture f = make_fixture(1200, 20, 2, 41);
    uint8_t *a = encode(&f, 0.2, NAN, AVQ_ETA_ASYMPTOTIC, 1);
    uint8_t *b = encode(&f, 0.2, NAN, AVQ_ETA_ASYMPTOTIC, 2);
    uint8_t *c = encode(&f, 0.2, NAN, AVQ_ETA_ASYMPTOTIC, 3);
    cr_assert_eq(memcmp(a, b, f.n * f.K), 0);
    cr_assert_eq(memcmp(a, c, f.n * f.K), 0);
    free(a);
    free(b);
    free(c);
    free_fixture(&f);
}

Test(aniso, zero_vectors_fall_back_to_reconstruction) {
    fixture f = make_fixture(200, 12, 2, 51);
    for (size_t i = 0; i < f.n; i += 3) memset(f.x + i * f.d, 0, f.d * sizeof(float));
    uint8_t *rec = encode(&f, NAN, NAN, AVQ_ETA_ASYMPTOTIC, 2);
    uint8_t *ani = encode(&f, 0.2, NAN, AVQ_ETA_ASYMPTOTIC, 2);
    for (size_t i = 0; i < f.n; i += 3)
        cr_assert_eq(memcmp(rec + i * f.K, ani + i * f.K, f.K), 0, "row %zu", i);
    free(rec);
    free(ani);
    free_fixture(&f);
}

Test(aniso, rounds_zero_is_reconstruction) {
    fixture f = make_fixture(300, 16, 4, 61);
    uint8_t *rec = encode(&f, NAN, NAN, AVQ_ETA_ASYMPTOTIC, 2);
    uint8_t *ani = malloc(f.n * f.K);
    avq_aniso_params p;
    avq_aniso_default_params(&p);
    p.threshold = 0.3;
    p.max_rounds = 0;
    cr_assert_eq(avq_aniso_encode(f.y, f.x, f.n, &f.shape, f.cb, &p, ani, NULL, NULL), AVQ_OK);
    cr_assert_eq(memcmp(rec, ani, f.n * f.K), 0);
    free(rec);
    free(ani);
    free_fixture(&f);
}

static int cancel_now(void *user, const char *stage, size_t done, size_t total) {
    (void)user;
    (void)stage;
    (void)done;
    (void)total;
    return 1;
}

Test(aniso, bad_input_and_cancel) {
    fixture f = make_fixture(600, 8, 2, 71);
    uint8_t *codes = malloc(f.n * f.K);
    avq_aniso_params p;
    avq_aniso_default_params(&p);
    p.threshold = -0.1;
    cr_assert_eq(avq_aniso_encode(f.y, f.x, f.n, &f.shape, f.cb, &p, codes, NULL, NULL),
                 AVQ_ERR_INVALID);
    p.threshold = INFINITY;
    cr_assert_eq(avq_aniso_encode(f.y, f.x, f.n, &f.shape, f.cb, &p, codes, NULL, NULL),
                 AVQ_ERR_INVALID);
    p.threshold = 0.2;
    p.max_rounds = -1;
    cr_assert_eq(avq_aniso_encode(f.y, f.x, f.n, &f.shape, f.cb, &p, codes, NULL, NULL),
                 AVQ_ERR_INVALID);
    p.max_rounds = 10;
    p.eta_mode = (avq_eta_mode)7;
    cr_assert_eq(avq_aniso_encode(f.y, f.x, f.n, &f.shape, f.cb, &p, codes, NULL, NULL),
                 AVQ_ERR_INVALID);
    p.eta_mode = AVQ_ETA_ASYMPTOTIC;
    cr_assert_eq(avq_aniso_encode(f.y, NULL, f.n, &f.shape, f.cb, &p, codes, NULL, NULL),
                 AVQ_ERR_INVALID);
    f.x[5] = NAN;
    cr_assert_eq(avq_aniso_encode(f.y, f.x, f.n, &f.shape, f.cb, &p, codes, NULL, NULL),
                 AVQ_ERR_INVALID);
    cr_assert(strstr(avq_last_error(), "original row 0"), "%s", avq_last_error());
    f.x[5] = 0.0f;
    /* one thread: with more, a spawned worker may finish every chunk before
     * the calling thread reports progress, and a finished job is not cancelled */
    p.threads = 1;
    cr_assert_eq(avq_aniso_encode(f.y, f.x, f.n, &f.shape, f.cb, &p, codes, cancel_now, NULL),
                 AVQ_ERR_CANCELLED);
    free(codes);
    free_fixture(&f);
}

static double total_loss(const fixture *f, const uint8_t *codes, const float *cb, double T) {
    double sum = 0.0;
    for (size_t i = 0; i < f->n; i++) {
        const float *x = f->x + i * f->d;
        double eta = isnan(T) ? 1.0 : avq_eta(avq_norm2_f64(x, f->d), f->d, T, AVQ_ETA_ASYMPTOTIC);
        sum += avq_aniso_loss(f->y + i * f->d, x, codes + i * f->K, &f->shape, cb, eta);
    }
    return sum;
}

Test(aniso, codebook_update_reconstruction_gives_means) {
    fixture f = make_fixture(800, 10, 4, 81); /* blocks 4, 4, 2 */
    uint8_t *codes = encode(&f, NAN, NAN, AVQ_ETA_ASYMPTOTIC, 2);
    float *cb = malloc(16 * f.d * sizeof(float));
    memcpy(cb, f.cb, 16 * f.d * sizeof(float));
    avq_aniso_params p;
    avq_aniso_default_params(&p);
    cr_assert_eq(avq_aniso_update_codebook(f.y, f.x, f.n, &f.shape, codes, &p, cb), AVQ_OK);
    for (size_t m = 0; m < f.K; m++) {
        size_t len = avq_pq_block_len(&f.shape, m), st = avq_pq_block_start(&f.shape, m);
        for (size_t j = 0; j < 16; j++) {
            double mean[4] = {0}, cnt = 0;
            for (size_t i = 0; i < f.n; i++)
                if (codes[i * f.K + m] == j) {
                    cnt += 1;
                    for (size_t t = 0; t < len; t++) mean[t] += f.y[i * f.d + st + t];
                }
            const float *c = avq_pq_block_centers(&f.shape, cb, m) + j * len;
            const float *old = avq_pq_block_centers(&f.shape, f.cb, m) + j * len;
            for (size_t t = 0; t < len; t++)
                cr_assert_float_eq(c[t], cnt ? mean[t] / cnt : old[t], 1e-5, "m %zu j %zu", m, j);
        }
    }
    free(codes);
    free(cb);
    free_fixture(&f);
}

Test(aniso, codebook_update_lowers_the_anisotropic_loss) {
    fixture f = make_fixture(1500, 24, 2, 91);
    uint8_t *codes = encode(&f, 0.2, NAN, AVQ_ETA_ASYMPTOTIC, 2);
    float *cb = malloc(16 * f.d * sizeof(float));
    memcpy(cb, f.cb, 16 * f.d * sizeof(float));
    avq_aniso_params p;
    avq_aniso_default_params(&p);
    p.threshold = 0.2;
    double before = total_loss(&f, codes, f.cb, 0.2);
    cr_assert_eq(avq_aniso_update_codebook(f.y, f.x, f.n, &f.shape, codes, &p, cb), AVQ_OK);
    double after = total_loss(&f, codes, cb, 0.2);
    cr_assert_lt(after, before, "%g -> %g", before, after);
    /* it is the minimiser: nudging any entry cannot help */
    for (size_t r = 0; r < 16 * f.d; r += 37) {
        float keep = cb[r];
        cb[r] = keep + 1e-3f;
        cr_assert_geq(total_loss(&f, codes, cb, 0.2), after * (1 - 1e-9));
        cb[r] = keep - 1e-3f;
        cr_assert_geq(total_loss(&f, codes, cb, 0.2), after * (1 - 1e-9));
        cb[r] = keep;
    }
    /* deterministic across thread counts */
    float *cb2 = malloc(16 * f.d * sizeof(float));
    memcpy(cb2, f.cb, 16 * f.d * sizeof(float));
    p.threads = 1;
    cr_assert_eq(avq_aniso_update_codebook(f.y, f.x, f.n, &f.shape, codes, &p, cb2), AVQ_OK);
    cr_assert_eq(memcmp(cb, cb2, 16 * f.d * sizeof(float)), 0);
    free(cb2);
    free(codes);
    free(cb);
    free_fixture(&f);
}

Test(aniso, codebook_update_rejects_large_systems) {
    avq_pq_shape s = {300, 2, 16}; /* 4800 unknowns */
    float *v = calloc(300 * 16, sizeof(float));
    uint8_t codes[150] = {0};
    avq_aniso_params p;
    avq_aniso_default_params(&p);
    cr_assert_eq(avq_aniso_update_codebook(v, v, 1, &s, codes, &p, v), AVQ_ERR_UNSUPPORTED);
    free(v);
}
