/*
 * test_mips.c -- un-normalised (true MIPS) data: the relative anisotropic
 * threshold keeps the score-aware loss at every norm, where the absolute
 * threshold silently falls back to reconstruction (the bug of avq 0.1: eta
 * clamped to 1 for |x| >> T), and the index's dot-product defaults use it.
 */
#include <criterion/criterion.h>

#include "aniso.h"
#include "avq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* d = 24: T = 0.4 gives the unit-vector eta 23 * 0.16 / 0.84 = 4.4 (T = 0.2
 * would give 0.96, clamped to 1: no anisotropy to test) */
enum { N = 1500, D = 24, DPB = 2, C = 16 };

typedef struct {
    avq_pq_shape shape;
    size_t K;
    float *x, *y, *cb;
} mips_fixture;

/* Points with norms spread over [0.5, 4] (times `scale`), residuals against
 * a few centers, and a codebook trained on the residuals. */
static mips_fixture make(double scale, uint64_t seed) {
    mips_fixture f = {{D, DPB, C}, 0, NULL, NULL, NULL};
    f.K = avq_pq_num_blocks(&f.shape);
    f.x = malloc(N * D * sizeof(float));
    f.y = malloc(N * D * sizeof(float));
    f.cb = malloc(C * D * sizeof(float));
    float centers[3 * D];
    for (size_t i = 0; i < 3 * D; i++) centers[i] = (float)(scale * (avq_rng_uniform(&seed) - 0.5));
    for (size_t i = 0; i < N; i++) {
        double norm2 = 0, target = scale * (0.5 + 3.5 * avq_rng_uniform(&seed));
        for (size_t t = 0; t < D; t++) {
            double g = avq_rng_uniform(&seed) - 0.5 + (t % 4 == 0 ? 0.25 : 0.0);
            f.x[i * D + t] = (float)g;
            norm2 += g * g;
        }
        for (size_t t = 0; t < D; t++) {
            f.x[i * D + t] = (float)(f.x[i * D + t] * target / sqrt(norm2));
            f.y[i * D + t] = f.x[i * D + t] - centers[(i % 3) * D + t];
        }
    }
    avq_pq_train_params tp;
    avq_pq_default_train_params(&tp);
    tp.max_iter = 6;
    cr_assert_eq(avq_pq_train(f.y, N, &f.shape, &tp, f.cb, NULL, NULL), AVQ_OK);
    return f;
}

static void release(mips_fixture *f) {
    free(f->x);
    free(f->y);
    free(f->cb);
}

static uint8_t *encode(const mips_fixture *f, double T, int relative) {
    uint8_t *codes = malloc(N * f->K);
    avq_aniso_params p;
    avq_aniso_default_params(&p);
    p.threshold = T;
    p.relative = relative;
    p.threads = 2;
    cr_assert_eq(avq_aniso_encode(f->y, f->x, N, &f->shape, f->cb, &p, codes, NULL, NULL), AVQ_OK,
                 "%s", avq_last_error());
    return codes;
}

/* Scaling the data and the codebook by a power of two is exact in floating
 * point, so a scale-free loss must give the same codes bit for bit. */
static void scale_fixture(mips_fixture *f, float s) {
    for (size_t i = 0; i < N * D; i++) {
        f->x[i] *= s;
        f->y[i] *= s;
    }
    for (size_t i = 0; i < C * D; i++) f->cb[i] *= s;
}

Test(mips, relative_threshold_is_scale_free) {
    mips_fixture f = make(1.0, 7);
    uint8_t *base = encode(&f, 0.4, 1);
    float scales[] = {1.0f / 64, 8.0f, 256.0f};
    float total = 1.0f;
    for (int k = 0; k < 3; k++) {
        scale_fixture(&f, scales[k] / total);
        total = scales[k];
        uint8_t *got = encode(&f, 0.4, 1);
        cr_assert_eq(memcmp(base, got, N * f.K), 0, "scale %g changed the codes", scales[k]);
        free(got);
    }
    free(base);
    release(&f);
}

Test(mips, absolute_threshold_degenerates_on_large_norms) {
    /* norms 128..1024 >> T: the absolute eta clamps to 1 for every point,
     * i.e. the reconstruction codes; the relative one does not */
    mips_fixture f = make(256.0, 9);
    uint8_t *rec = encode(&f, NAN, 0), *abs_ = encode(&f, 0.4, 0), *rel = encode(&f, 0.4, 1);
    cr_assert_eq(memcmp(rec, abs_, N * f.K), 0, "absolute T at |x| >> T is reconstruction");
    size_t differ = 0;
    for (size_t i = 0; i < N; i++) differ += memcmp(rec + i * f.K, rel + i * f.K, f.K) != 0;
    cr_assert_gt(differ, N / 10, "relative T changed only %zu of %d points", differ, N);
    free(rec);
    free(abs_);
    free(rel);
    release(&f);
}

Test(mips, relative_eta_of_a_unit_vector_is_the_absolute_one) {
    /* unit-norm rows (exactly, up to the rounding of the normalisation):
     * both kinds encode alike wherever |x|² rounds to 1 */
    mips_fixture f = make(1.0, 11);
    for (size_t i = 0; i < N; i++) {
        float *x = f.x + i * D;
        memset(x, 0, D * sizeof(float));
        x[i % D] = (i & 1) ? 1.0f : -1.0f; /* |x|² = 1 exactly */
    }
    uint8_t *abs_ = encode(&f, 0.4, 0), *rel = encode(&f, 0.4, 1);
    cr_assert_eq(memcmp(abs_, rel, N * f.K), 0);
    free(abs_);
    free(rel);
    release(&f);
}

Test(mips, relative_eta_is_finite_for_every_norm) {
    /* zero rows and tiny norms: codes are produced (no NaN weights), and a
     * zero row is coded as reconstruction would */
    mips_fixture f = make(1.0, 13);
    for (size_t i = 0; i < N; i += 5) {
        for (size_t t = 0; t < D; t++) f.x[i * D + t] = i % 10 ? 1e-30f * (float)(t + 1) : 0.0f;
    }
    uint8_t *rec = encode(&f, NAN, 1), *rel = encode(&f, 0.4, 1);
    for (size_t i = 0; i < N; i += 10)
        cr_assert_eq(memcmp(rec + i * f.K, rel + i * f.K, f.K), 0, "zero row %zu", i);
    for (size_t i = 0; i < N * f.K; i++) cr_assert_lt(rel[i], C);
    free(rec);
    free(rel);
    release(&f);
}

/* ---- the index's defaults for dot products ------------------------------ */

static float *raw_rows(size_t n, size_t d, double scale, uint64_t seed) {
    float *x = malloc(n * d * sizeof *x);
    for (size_t i = 0; i < n; i++) {
        double norm = scale * exp(0.6 * (avq_rng_uniform(&seed) + avq_rng_uniform(&seed) - 1.0));
        double s2 = 0;
        for (size_t t = 0; t < d; t++) {
            double g = avq_rng_uniform(&seed) - 0.5 + ((i + t) % 7 == 0 ? 0.4 : 0.0);
            x[i * d + t] = (float)g;
            s2 += g * g;
        }
        for (size_t t = 0; t < d; t++) x[i * d + t] = (float)(x[i * d + t] * norm / sqrt(s2));
    }
    return x;
}

static avq_index *build_dot(const float *x, size_t n, size_t d, float threshold,
                            avq_threshold_kind kind) {
    avq_build_params p;
    avq_build_params_init(&p, AVQ_METRIC_DOT);
    p.brute_force_below = 100;
    p.num_leaves = 8;
    p.reorder = AVQ_REORDER_NONE; /* scores are the codes' estimates */
    p.threshold = threshold;
    p.threshold_kind = kind;
    avq_index *index = NULL;
    cr_assert_eq(avq_index_build(x, n, d, &p, &index), AVQ_OK, "%s", avq_last_error());
    return index;
}

/* Fraction of queries whose top-10 estimates differ between two indexes. */
static double differing(const avq_index *a, const avq_index *b, const float *q, size_t nq,
                        size_t d) {
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.leaves_to_search = 8;
    size_t differ = 0;
    for (size_t i = 0; i < nq; i++) {
        int64_t ia[10], ib[10];
        float sa[10], sb[10];
        cr_assert_eq(avq_index_search(a, q + i * d, &sp, ia, sa), AVQ_OK);
        cr_assert_eq(avq_index_search(b, q + i * d, &sp, ib, sb), AVQ_OK);
        differ += memcmp(ia, ib, sizeof ia) != 0 || memcmp(sa, sb, sizeof sa) != 0;
    }
    return (double)differ / (double)nq;
}

Test(mips, dot_default_is_anisotropic_on_raw_norms) {
    enum { n = 6000, d = 32, nq = 50 };
    float *x = raw_rows(n, d, 5.0, 21), *q = raw_rows(nq, d, 1.0, 22);
    avq_build_params p;
    avq_build_params_init(&p, AVQ_METRIC_DOT);
    cr_assert_eq(p.threshold_kind, AVQ_THRESHOLD_AUTO);
    avq_index *def = build_dot(x, n, d, 0.2f, AVQ_THRESHOLD_AUTO);
    avq_index *rec = build_dot(x, n, d, NAN, AVQ_THRESHOLD_AUTO);
    avq_index *abs_ = build_dot(x, n, d, 0.2f, AVQ_THRESHOLD_ABSOLUTE);
    cr_assert_gt(differing(def, rec, q, nq, d), 0.5, "the default codes are reconstruction");
    cr_assert_eq(differing(abs_, rec, q, nq, d), 0.0, "absolute T at |x| ~ 5 >> T");
    avq_index_free(def);
    avq_index_free(rec);
    avq_index_free(abs_);
    free(x);
    free(q);
}

Test(mips, threshold_kind_survives_save_and_load) {
    enum { n = 3000, d = 16 };
    float *x = raw_rows(n, d, 4.0, 31);
    avq_index *a = build_dot(x, n, d, 0.2f, AVQ_THRESHOLD_RELATIVE), *b = NULL;
    void *bytes = NULL;
    size_t size = 0;
    cr_assert_eq(avq_index_save_bytes(a, &bytes, &size), AVQ_OK);
    cr_assert_eq(avq_index_load_bytes(bytes, size, &b), AVQ_OK, "%s", avq_last_error());
    avq_build_params pa, pb;
    avq_build_params_init(&pa, AVQ_METRIC_DOT);
    avq_build_params_init(&pb, AVQ_METRIC_DOT);
    avq_index_build_params(a, &pa);
    avq_index_build_params(b, &pb);
    cr_assert_eq(pb.threshold_kind, AVQ_THRESHOLD_RELATIVE);
    /* rows added after the load are encoded the same way */
    float *more = raw_rows(200, d, 4.0, 32);
    cr_assert_eq(avq_index_add(a, more, 200, NULL, 1, NULL), AVQ_OK);
    cr_assert_eq(avq_index_add(b, more, 200, NULL, 1, NULL), AVQ_OK);
    void *ba = NULL, *bb = NULL;
    size_t sa = 0, sb = 0;
    cr_assert_eq(avq_index_save_bytes(a, &ba, &sa), AVQ_OK);
    cr_assert_eq(avq_index_save_bytes(b, &bb, &sb), AVQ_OK);
    cr_assert_eq(sa, sb);
    cr_assert_eq(memcmp(ba, bb, sa), 0, "the loaded index encodes differently");
    avq_free(bytes);
    avq_free(ba);
    avq_free(bb);
    avq_index_free(a);
    avq_index_free(b);
    free(x);
    free(more);
}
