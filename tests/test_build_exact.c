/*
 * test_build_exact.c -- the build's shortcuts give the same bits as the
 * plain computations they replace: the anisotropic encoder (blocks left out
 * of the coordinate descent, candidates passed over by a lower bound, the
 * 2-dimensional fast path, the reductions over 16 centers) against the
 * straightforward per-point descent it replaced, kept here as the
 * reference; several rows' norms at once against avq_norm2_f64; the wide
 * finiteness check against avq_all_finite; and the codebook trained on the
 * sampled rows only against the codebook trained on all of them.
 */
#include <criterion/criterion.h>

#include "aniso.h"
#include "vecmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the reference encoder: every block, every candidate, every round --- */

typedef struct {
    double r;
    size_t m;
} ref_order;

static int ref_cmp(const void *pa, const void *pb) {
    const ref_order *a = pa, *b = pb;
    if (a->r != b->r) return a->r > b->r ? -1 : 1;
    return a->m < b->m ? -1 : (a->m > b->m);
}

static void ref_encode_point(const float *y, const float *x, size_t d, const avq_pq_shape *s,
                             const float *cb, double eta, int max_rounds, uint8_t *code) {
    size_t K = avq_pq_num_blocks(s), C = s->num_centers;
    double *R = malloc(K * C * sizeof *R), *P = malloc(K * C * sizeof *P);
    ref_order *order = malloc(K * sizeof *order);
    cr_assert(R && P && order);
    double norm2 = avq_norm2_f64(x, d);
    int aniso = eta > 1.0 && norm2 > 0.0 && max_rounds > 0;
    double inv = aniso ? 1.0 / sqrt(norm2) : 0.0;
    for (size_t m = 0; m < K; m++) {
        size_t start = avq_pq_block_start(s, m), len = avq_pq_block_len(s, m);
        const float *cm = avq_pq_block_centers(s, cb, m);
        size_t best = 0;
        for (size_t j = 0; j < C; j++) {
            double r = 0.0, p = 0.0;
            for (size_t t = 0; t < len; t++) {
                double e = (double)y[start + t] - cm[j * len + t];
                r += e * e;
                p += e * x[start + t];
            }
            R[m * C + j] = r;
            P[m * C + j] = p * inv;
            if (r < R[m * C + best]) best = j;
        }
        code[m] = (uint8_t)best;
    }
    if (aniso) {
        double par = 0.0;
        for (size_t m = 0; m < K; m++) {
            par += P[m * C + code[m]];
            order[m].r = R[m * C + code[m]];
            order[m].m = m;
        }
        qsort(order, K, sizeof *order, ref_cmp);
        for (int round = 0; round < max_rounds; round++) {
            int changed = 0;
            for (size_t o = 0; o < K; o++) {
                size_t m = order[o].m, cur = code[m], best = cur;
                const double *Rm = R + m * C, *Pm = P + m * C;
                double best_delta = 0.0, base = par - Pm[cur], par2 = par * par;
                for (size_t j = 0; j < C; j++) {
                    double np = base + Pm[j];
                    double dpar = np * np - par2;
                    if (j == cur || dpar > 0.0) continue;
                    double delta = (eta - 1.0) * dpar + (Rm[j] - Rm[cur]);
                    if (delta < best_delta) {
                        best_delta = delta;
                        best = j;
                    }
                }
                if (best == cur) continue;
                par += Pm[best] - Pm[cur];
                code[m] = (uint8_t)best;
                changed = 1;
            }
            if (!changed) break;
        }
    }
    free(R);
    free(P);
    free(order);
}

/* Unit points x, residuals y = x - (one of 3 centers), a codebook of C
 * centers per block trained on y (n >= C); with `ties`,
 * every other center of a trained codebook repeats the one before it (equal
 * R values: the lower index must win), and some residual blocks sit exactly
 * on a center (R = 0). */
static void run_case(size_t n, size_t d, size_t dpb, size_t C, double eta, int rounds, int ties,
                     uint64_t seed) {
    avq_pq_shape s = {d, dpb, C};
    size_t K = avq_pq_num_blocks(&s);
    float *x = malloc(n * d * sizeof(float)), *y = malloc(n * d * sizeof(float));
    float *cb = malloc(C * d * sizeof(float));
    uint8_t *got = malloc(n * K), *want = malloc(K);
    cr_assert(x && y && cb && got && want);
    float centers[3 * 128];
    cr_assert_leq(d, 128);
    for (size_t i = 0; i < 3 * d; i++) centers[i] = (float)(0.3 * (avq_rng_uniform(&seed) - 0.5));
    for (size_t i = 0; i < n; i++) {
        double norm2 = 0.0;
        for (size_t t = 0; t < d; t++) {
            double g = avq_rng_uniform(&seed) - 0.5 + (t % 7 == 0 ? 0.2 : 0.0);
            x[i * d + t] = (float)g;
            norm2 += g * g;
        }
        for (size_t t = 0; t < d; t++) x[i * d + t] = (float)(x[i * d + t] / sqrt(norm2));
        for (size_t t = 0; t < d; t++) y[i * d + t] = x[i * d + t] - centers[(i % 3) * d + t];
    }
    /* a trained codebook: the residuals' own scale, where blocks are close
     * calls (random centers leave most blocks far from moving) */
    avq_pq_train_params tp;
    avq_pq_default_train_params(&tp);
    tp.max_iter = 4;
    tp.seed = seed;
    cr_assert_eq(avq_pq_train(y, n, &s, &tp, cb, NULL, NULL), AVQ_OK, "%s", avq_last_error());
    if (ties) {
        for (size_t m = 0; m < K; m++) {
            size_t len = avq_pq_block_len(&s, m);
            float *cm = cb + C * m * dpb;
            for (size_t j = 1; j < C; j += 2) memcpy(cm + j * len, cm + (j - 1) * len, len * sizeof(float));
        }
        size_t len = avq_pq_block_len(&s, 0);
        for (size_t i = 0; i < n; i += 5) /* block 0 exactly on center 2 */
            memcpy(y + i * d, cb + 2 * len, len * sizeof(float));
    }
    avq_aniso_params p;
    avq_aniso_default_params(&p);
    p.eta = eta;
    p.max_rounds = rounds;
    p.threads = 2;
    cr_assert_eq(avq_aniso_encode(y, x, n, &s, cb, &p, got, NULL, NULL), AVQ_OK, "%s",
                 avq_last_error());
    double e = eta < 1.0 ? 1.0 : (eta < AVQ_ETA_MAX ? eta : AVQ_ETA_MAX);
    for (size_t i = 0; i < n; i++) {
        ref_encode_point(y + i * d, x + i * d, d, &s, cb, e, rounds, want);
        cr_assert_eq(memcmp(got + i * K, want, K), 0,
                     "d %zu dpb %zu C %zu eta %g rounds %d ties %d: point %zu differs", d, dpb, C,
                     eta, rounds, ties, i);
    }
    free(x);
    free(y);
    free(cb);
    free(got);
    free(want);
}

Test(build_exact, encode_2d_blocks_16_centers) {
    double etas[] = {1.0, 1.5, 4.125, 30.0, AVQ_ETA_MAX};
    for (size_t e = 0; e < sizeof etas / sizeof etas[0]; e++)
        for (int ties = 0; ties < 2; ties++) {
            run_case(600, 100, 2, 16, etas[e], 10, ties, 100 + e);
            run_case(300, 31, 2, 16, etas[e], 10, ties, 200 + e); /* last block: 1 dimension */
        }
}

Test(build_exact, encode_round_limits) {
    int rounds[] = {0, 1, 2, 3};
    for (size_t r = 0; r < sizeof rounds / sizeof rounds[0]; r++) {
        run_case(400, 40, 2, 16, 6.0, rounds[r], 0, 300 + r);
        run_case(200, 40, 2, 16, 6.0, rounds[r], 1, 310 + r);
    }
    /* beyond 1e5 possible moves no block is left out: still the same codes */
    run_case(50, 100, 2, 16, 6.0, 3000, 0, 320);
}

Test(build_exact, encode_general_blocks) {
    run_case(300, 30, 3, 16, 5.0, 10, 0, 400); /* 3-dimensional blocks */
    run_case(300, 30, 3, 16, 5.0, 10, 1, 401);
    run_case(600, 24, 2, 256, 5.0, 10, 0, 402); /* 8-bit codes */
    run_case(600, 24, 2, 256, 5.0, 10, 1, 403);
    run_case(200, 20, 1, 16, 5.0, 10, 1, 404);
    run_case(200, 20, 4, 8, 5.0, 10, 1, 405);
}

/* ---- norms and finiteness ------------------------------------------------ */

Test(build_exact, row_norms_bit_for_bit) {
    uint64_t seed = 7;
    size_t dims[] = {1, 2, 3, 7, 8, 9, 100, 129};
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        size_t d = dims[di];
        for (size_t n = 0; n <= 19; n++) {
            float *x = malloc((n ? n : 1) * d * sizeof(float));
            double *out = malloc((n ? n : 1) * sizeof(double));
            float *f32 = malloc((n ? n : 1) * sizeof(float));
            cr_assert(x && out && f32);
            for (size_t i = 0; i < n * d; i++)
                x[i] = (float)((avq_rng_uniform(&seed) - 0.5) * pow(10.0, (double)(i % 9) - 4.0));
            avq_rows_norm2_f64(x, n, d, out);
            avq_row_norms2(x, n, d, f32);
            for (size_t i = 0; i < n; i++) {
                double w = avq_norm2_f64(x + i * d, d);
                cr_assert(memcmp(&out[i], &w, sizeof w) == 0, "d %zu n %zu row %zu", d, n, i);
                cr_assert_eq(f32[i], (float)w);
            }
            free(x);
            free(out);
            free(f32);
        }
    }
}

Test(build_exact, normalize_and_check_rows_per_row) {
    uint64_t seed = 9;
    size_t n = 37, d = 13;
    float *x = malloc(n * d * sizeof(float)), *want = malloc(n * d * sizeof(float));
    cr_assert(x && want);
    for (size_t i = 0; i < n * d; i++) x[i] = (float)(avq_rng_uniform(&seed) - 0.5);
    memset(x + 5 * d, 0, d * sizeof(float)); /* a zero row stays zero */
    for (size_t t = 0; t < d; t++) x[11 * d + t] = 1e-42f; /* subnormals: scaled in double */
    x[17 * d + 3] = NAN; /* left as it is, in place or copied */
    memcpy(want, x, n * d * sizeof(float));
    for (size_t i = 0; i < n; i++) avq_normalize_rows(want + i * d, 1, d); /* one row a call */
    float *to = malloc(n * d * sizeof(float)), *copy = avq_normalized_copy(x, n, d);
    cr_assert(to && copy);
    avq_normalize_rows_to(x, n, d, to);
    avq_normalize_rows(x, n, d);
    cr_assert_eq(memcmp(x, want, n * d * sizeof(float)), 0);
    cr_assert_eq(memcmp(to, want, n * d * sizeof(float)), 0);
    cr_assert_eq(memcmp(copy, want, n * d * sizeof(float)), 0);
    free(to);
    free(copy);
    x[17 * d + 3] = 0.25f;
    cr_assert_eq(avq_check_rows(x, n, d, AVQ_METRIC_DOT, "t", NULL), AVQ_OK);
    x[20 * d + 4] = NAN;
    cr_assert_eq(avq_check_rows(x, n, d, AVQ_METRIC_DOT, "t", NULL), AVQ_ERR_INVALID);
    cr_assert(strstr(avq_last_error(), "row 20, column 4 is not a finite number"), "%s",
              avq_last_error());
    x[20 * d + 4] = 0.5f;
    x[33 * d + 2] = 3e15f; /* |x|² > 1e30 */
    cr_assert_eq(avq_check_rows(x, n, d, AVQ_METRIC_L2, "t", NULL), AVQ_ERR_INVALID);
    cr_assert(strstr(avq_last_error(), "row 33 is too large"), "%s", avq_last_error());
    cr_assert_eq(avq_check_rows(x, n, d, AVQ_METRIC_COSINE, "t", NULL), AVQ_OK);
    free(x);
    free(want);
}

Test(build_exact, all_finite_wide_matches) {
    float v[70];
    for (size_t n = 0; n <= 70; n++) {
        for (size_t i = 0; i < n; i++) v[i] = (float)i - 30.5f;
        cr_assert(avq_all_finite_wide(v, n));
        float bad[3] = {NAN, INFINITY, -INFINITY};
        for (size_t b = 0; b < 3; b++)
            for (size_t at = 0; at < n; at++) {
                float keep = v[at];
                v[at] = bad[b];
                cr_assert(!avq_all_finite_wide(v, n), "n %zu at %zu", n, at);
                cr_assert_eq(avq_all_finite_wide(v, n), avq_all_finite(v, n));
                v[at] = keep;
            }
    }
}

/* ---- the codebook from the sampled rows alone ---------------------------- */

Test(build_exact, codebook_from_sample_rows) {
    size_t n = 30000, d = 12;
    avq_pq_shape s = {d, 2, 16};
    uint64_t seed = 5;
    float *rows = malloc(n * d * sizeof(float));
    cr_assert(rows);
    for (size_t i = 0; i < n * d; i++) rows[i] = (float)(avq_rng_uniform(&seed) - 0.5);
    avq_pq_train_params tp;
    avq_pq_default_train_params(&tp);
    tp.training_sample = 5000;
    tp.max_iter = 4;
    tp.seed = 77;
    float want[16 * 12], got[16 * 12];
    cr_assert_eq(avq_pq_train(rows, n, &s, &tp, want, NULL, NULL), AVQ_OK);
    size_t *idx = NULL, count = 0;
    cr_assert_eq(avq_pq_train_sample(n, &s, &tp, &idx, &count), AVQ_OK);
    cr_assert(count > 4000 && count <= 5000, "%zu", count);
    float *picked = malloc(count * d * sizeof(float));
    cr_assert(picked);
    for (size_t r = 0; r < count; r++) {
        if (r) cr_assert_gt(idx[r], idx[r - 1]);
        memcpy(picked + r * d, rows + idx[r] * d, d * sizeof(float));
    }
    tp.training_sample = 0;
    cr_assert_eq(avq_pq_train(picked, count, &s, &tp, got, NULL, NULL), AVQ_OK);
    cr_assert_eq(memcmp(want, got, sizeof want), 0);
    free(idx);
    free(picked);
    free(rows);
}
