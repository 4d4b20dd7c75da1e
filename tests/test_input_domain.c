/*
 * test_input_domain.c -- every kind of input value against every metric and
 * build tier (issue 16): NaN, +-Inf, huge finite values (whose squares
 * overflow float32), values just inside the documented bound, subnormals,
 * all-zero rows, -0.0, duplicates, n < k, n = 1, dim = 1 and dim = 4096.
 *
 * The rule (src/vecmath.h): a vector is accepted when its values are finite
 * and, for dot and L2, its squared norm is at most 1e30 (|x| <= 1e15);
 * cosine vectors are normalised first, so any finite one is accepted (a
 * zero vector cannot be added to a cosine index).  Every case either builds
 * and answers correctly -- each returned score is the double-precision
 * score of that id, no point outside the answer beats it, and it agrees
 * with avq_exact_search -- or fails with AVQ_ERR_INVALID and a message
 * naming the row (and column).
 *
 * Tiers: "exact" is the default build of a small n (below
 * brute_force_below: one leaf, every point scored exactly); "pq" lowers
 * brute_force_below to 0 and asks for several leaves, so the data are
 * partitioned by k-means and quantized (n below the 16 codebook centers
 * still falls back to exact: the n = 1 and n < 16 rows).  PQ searches
 * scan every leaf with pre_reorder = n, so with float re-ranking the
 * answer must be exact: any difference is a bug, not recall.
 *
 * AVQ_INPUT_DOMAIN_MATRIX=1 prints the matrix (input x shape x metric x
 * tier -> outcome) on stderr.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avq.h"
#include "avq_internal.h"
#include "kmeans.h"
#include "vecmath.h"

typedef enum {
    IN_NORMAL,
    IN_NAN,
    IN_POS_INF,
    IN_NEG_INF,
    IN_HUGE_1E19,   /* one value: |x|² ~ 1e38, just inside FLT_MAX */
    IN_HUGE_1E20,   /* one value whose square overflows float32 */
    IN_HUGE_FLTMAX, /* one value 3e38 */
    IN_ALL_HUGE,    /* every value ~1e20 */
    IN_NEAR_LIMIT,  /* every row of norm just under 1e15 */
    IN_SUBNORMAL,   /* every value subnormal */
    IN_SOME_SUBNORMAL,
    IN_ZERO_ROWS,
    IN_NEG_ZERO,    /* -0.0 everywhere it can be, and one all -0.0 row */
    IN_DUPLICATES,  /* 5 distinct vectors */
    IN_COUNT
} input_kind;

static const char *input_name[IN_COUNT] = {
    "normal", "NaN", "+Inf", "-Inf", "huge 1e19", "huge 1e20", "huge 3e38", "all ~1e20",
    "norm 0.9e15", "subnormal", "some subnormal rows", "zero rows", "-0.0", "duplicates"};

/* the row and column a bad value is planted at */
enum { BAD_ROW = 3, BAD_COL = 0 };

typedef enum { TIER_EXACT, TIER_PQ } tier;
static const char *tier_name[2] = {"exact", "pq"};
static const avq_metric METRICS[3] = {AVQ_METRIC_DOT, AVQ_METRIC_L2, AVQ_METRIC_COSINE};

static int matrix_wanted(void) {
    const char *e = getenv("AVQ_INPUT_DOMAIN_MATRIX");
    return e && *e && strcmp(e, "0") != 0;
}

static float uniform(uint64_t *rng) { return (float)(avq_rng_uniform(rng) * 2.0 - 1.0); }

/* n x dim values of one kind (queries use the same generator, other seed) */
static float *make_rows(input_kind kind, size_t n, size_t dim, uint64_t seed) {
    float *x = malloc(n * dim * sizeof *x);
    uint64_t rng = seed;
    for (size_t i = 0; i < n * dim; i++) x[i] = uniform(&rng);
    size_t bad = (BAD_ROW < n ? BAD_ROW : n - 1) * dim + (BAD_COL < dim ? BAD_COL : 0);
    switch (kind) {
    case IN_NORMAL: break;
    case IN_NAN: x[bad] = NAN; break;
    case IN_POS_INF: x[bad] = INFINITY; break;
    case IN_NEG_INF: x[bad] = -INFINITY; break;
    case IN_HUGE_1E19: x[bad] = 1e19f; break;
    case IN_HUGE_1E20: x[bad] = -1e20f; break;
    case IN_HUGE_FLTMAX: x[bad] = 3e38f; break;
    case IN_ALL_HUGE:
        for (size_t i = 0; i < n * dim; i++) x[i] *= 1e20f;
        break;
    case IN_NEAR_LIMIT: {
        float s = (float)(0.9e15 / sqrt((double)dim));
        for (size_t i = 0; i < n * dim; i++) x[i] *= s;
        break;
    }
    case IN_SUBNORMAL:
        for (size_t i = 0; i < n * dim; i++) x[i] *= 1e-39f;
        break;
    case IN_SOME_SUBNORMAL:
        for (size_t i = 0; i < n; i += 3)
            for (size_t j = 0; j < dim; j++) x[i * dim + j] *= 1e-40f;
        break;
    case IN_ZERO_ROWS:
        for (size_t i = 0; i < n; i += 7) memset(x + i * dim, 0, dim * sizeof *x);
        break;
    case IN_NEG_ZERO:
        for (size_t i = 0; i < n * dim; i++)
            if (i % dim % 2 == 1) x[i] = -0.0f; /* odd columns (none when dim = 1) */
        for (size_t j = 0; j < dim; j++) x[(n / 2) * dim + j] = -0.0f;
        break;
    case IN_DUPLICATES:
        for (size_t i = 5; i < n; i++) memcpy(x + i * dim, x + (i % 5) * dim, dim * sizeof *x);
        break;
    default: break;
    }
    return x;
}

/* The message an input must be refused with for this metric, or NULL if it
 * must be accepted. */
static const char *expected_refusal(input_kind kind, avq_metric m, size_t n, char *buf,
                                    size_t len) {
    size_t row = BAD_ROW < n ? BAD_ROW : n - 1;
    switch (kind) {
    case IN_NAN:
    case IN_POS_INF:
    case IN_NEG_INF:
        snprintf(buf, len, "build: row %zu, column %d is not a finite number", row, BAD_COL);
        return buf;
    case IN_HUGE_1E19:
    case IN_HUGE_1E20:
    case IN_HUGE_FLTMAX:
        if (m == AVQ_METRIC_COSINE) return NULL;
        snprintf(buf, len, "build: row %zu is too large for %s: its squared norm is", row,
                 avq_metric_name(m));
        return buf;
    case IN_ALL_HUGE:
        if (m == AVQ_METRIC_COSINE) return NULL;
        snprintf(buf, len, "build: row 0 is too large for %s", avq_metric_name(m));
        return buf;
    case IN_ZERO_ROWS:
        if (m != AVQ_METRIC_COSINE) return NULL;
        snprintf(buf, len, "build: row 0 is a zero vector");
        return buf;
    case IN_NEG_ZERO:
        if (m != AVQ_METRIC_COSINE) return NULL;
        snprintf(buf, len, "build: row %zu is a zero vector", n / 2);
        return buf;
    default: return NULL;
    }
}

/* ---- the reference: double precision, no avq code ------------------------ */

static double ref_score(const float *q, const float *x, size_t dim, avq_metric m) {
    if (m == AVQ_METRIC_COSINE) {
        /* scale first so that neither subnormal nor huge rows lose anything */
        double qm = 0, xm = 0;
        for (size_t j = 0; j < dim; j++) {
            qm = fmax(qm, fabs(q[j]));
            xm = fmax(xm, fabs(x[j]));
        }
        if (qm == 0 || xm == 0) return 0.0;
        double dot = 0, qq = 0, xx = 0;
        for (size_t j = 0; j < dim; j++) {
            double a = q[j] / qm, b = x[j] / xm;
            dot += a * b;
            qq += a * a;
            xx += b * b;
        }
        return dot / sqrt(qq * xx);
    }
    double s = 0;
    for (size_t j = 0; j < dim; j++)
        s += m == AVQ_METRIC_DOT ? (double)q[j] * x[j]
                                 : ((double)q[j] - x[j]) * ((double)q[j] - x[j]);
    return s;
}

/* how far apart two correct float answers may be for this query */
static double tolerance(const float *q, const float *base, size_t n, size_t dim, avq_metric m) {
    if (m == AVQ_METRIC_COSINE) return 2e-3;
    double qq = avq_norm2_f64(q, dim), xx = 0;
    for (size_t i = 0; i < n; i++) xx = fmax(xx, avq_norm2_f64(base + i * dim, dim));
    return 2e-3 * (m == AVQ_METRIC_L2 ? qq + xx : sqrt(qq * xx)) + 1e-30;
}

/* better(a, b): a ranks before b */
static int better(double a, double b, avq_metric m) { return m == AVQ_METRIC_L2 ? a < b : a > b; }

static void check_answer(const char *what, const float *q, const float *base, size_t n,
                         size_t dim, avq_metric m, size_t k, const int64_t *ids,
                         const float *scores) {
    double tol = tolerance(q, base, n, dim, m);
    size_t want = k < n ? k : n;
    double worst = 0;
    for (size_t r = 0; r < k; r++) {
        if (r >= want) {
            cr_assert(ids[r] == -1 && isnan(scores[r]),
                      "%s: rank %zu of %zu points: id %lld score %g, expected -1/NaN", what, r, n,
                      (long long)ids[r], (double)scores[r]);
            continue;
        }
        cr_assert(ids[r] >= 0 && (size_t)ids[r] < n, "%s: rank %zu: id %lld (n = %zu)", what, r,
                  (long long)ids[r], n);
        for (size_t s = 0; s < r; s++)
            cr_assert_neq(ids[s], ids[r], "%s: id %lld twice", what, (long long)ids[r]);
        double truth = ref_score(q, base + (size_t)ids[r] * dim, dim, m);
        cr_assert(isfinite(scores[r]) && fabs(scores[r] - truth) <= tol,
                  "%s: rank %zu id %lld: score %.9g, true score %.9g (tol %g)", what, r,
                  (long long)ids[r], (double)scores[r], truth, tol);
        if (r > 0)
            cr_assert(!better(scores[r], scores[r - 1], m) || fabs(scores[r] - scores[r - 1]) <= tol,
                      "%s: ranks %zu, %zu out of order (%g, %g)", what, r - 1, r,
                      (double)scores[r - 1], (double)scores[r]);
        worst = truth;
    }
    /* nothing left out beats the last result by more than rounding */
    for (size_t i = 0; i < n; i++) {
        int in = 0;
        for (size_t r = 0; r < want; r++) in |= ids[r] == (int64_t)i;
        if (in) continue;
        double s = ref_score(q, base + i * dim, dim, m);
        cr_assert(!better(s, worst, m) || fabs(s - worst) <= tol,
                  "%s: point %zu (score %.9g) beats the last result (%.9g)", what, i, s, worst);
    }
}

static int build(const float *x, size_t n, size_t dim, avq_metric m, tier t, avq_index **out) {
    avq_build_params p;
    avq_build_params_init(&p, m);
    p.dims_per_block = dim == 1 ? 1 : 2;
    p.threads = 1;
    if (t == TIER_PQ) {
        p.brute_force_below = 0;
        p.num_leaves = n >= 64 ? 4 : (n >= 8 ? 2 : 1);
        /* anisotropic leaf centers (dot) solve a dim x dim system per leaf:
         * ~10 s at dim 4096, which tests nothing about the input domain */
        if (dim > 1024) p.avq_center_eta = 0.0f;
    }
    return avq_index_build(x, n, dim, &p, out);
}

/* One case: build (or be refused as expected), then search every query and
 * check the answers against the reference and against avq_exact_search. */
static void run_case(input_kind kind, size_t n, size_t dim, size_t k, avq_metric m, tier t) {
    char what[160], buf[160];
    snprintf(what, sizeof what, "%s, n=%zu dim=%zu k=%zu, %s, %s tier", input_name[kind], n, dim,
             k, avq_metric_name(m), tier_name[t]);
    float *base = make_rows(kind, n, dim, 11 + kind);
    const char *refusal = expected_refusal(kind, m, n, buf, sizeof buf);
    avq_index *ix = NULL;
    int st = build(base, n, dim, m, t, &ix);
    if (refusal) {
        cr_assert_eq(st, AVQ_ERR_INVALID, "%s: build gave %d, expected a refusal", what, st);
        cr_assert(strstr(avq_last_error(), refusal) != NULL, "%s: message '%s' lacks '%s'", what,
                  avq_last_error(), refusal);
        if (matrix_wanted())
            fprintf(stderr, "MATRIX | %s | n=%zu dim=%zu k=%zu | %s | %s | refused: %s\n",
                    input_name[kind], n, dim, k, avq_metric_name(m), tier_name[t],
                    avq_last_error());
        free(base);
        return;
    }
    cr_assert_eq(st, AVQ_OK, "%s: build: %s", what, avq_last_error());
    size_t leaves = avq_index_num_leaves(ix);
    /* queries: some rows of the data themselves, some of the same kind, a
     * zero query (never for cosine: no cosine direction) */
    size_t nq = 6;
    float *queries = make_rows(kind == IN_NAN || kind == IN_POS_INF || kind == IN_NEG_INF
                                   ? IN_NORMAL : kind, nq, dim, 99 + kind);
    memcpy(queries, base, dim * sizeof *queries);
    if (n > 1) memcpy(queries + dim, base + (n - 1) * dim, dim * sizeof *queries);
    if (m != AVQ_METRIC_COSINE) memset(queries + 2 * dim, 0, dim * sizeof *queries);
    int64_t *ids = malloc(k * sizeof *ids), *eids = malloc(k * sizeof *eids);
    float *scores = malloc(k * sizeof *scores), *escores = malloc(k * sizeof *escores);
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.k = k;
    sp.leaves_to_search = leaves;
    sp.pre_reorder = n > k ? n : k;
    for (size_t qi = 0; qi < nq; qi++) {
        const float *q = queries + qi * dim;
        char qwhat[200];
        snprintf(qwhat, sizeof qwhat, "%s, query %zu", what, qi);
        st = avq_index_search(ix, q, &sp, ids, scores);
        cr_assert_eq(st, AVQ_OK, "%s: search: %s", qwhat, avq_last_error());
        check_answer(qwhat, q, base, n, dim, m, k, ids, scores);
        st = avq_exact_search(base, n, dim, q, 1, m, k, 1, eids, escores, NULL, NULL);
        cr_assert_eq(st, AVQ_OK, "%s: exact search: %s", qwhat, avq_last_error());
        char ewhat[220];
        snprintf(ewhat, sizeof ewhat, "%s (avq_exact_search)", qwhat);
        check_answer(ewhat, q, base, n, dim, m, k, eids, escores);
        double tol = tolerance(q, base, n, dim, m);
        for (size_t r = 0; r < k; r++)
            cr_assert((isnan(scores[r]) && isnan(escores[r])) ||
                          fabs(scores[r] - escores[r]) <= tol,
                      "%s: rank %zu: index score %.9g, exact search %.9g", qwhat, r,
                      (double)scores[r], (double)escores[r]);
    }
    if (matrix_wanted())
        fprintf(stderr, "MATRIX | %s | n=%zu dim=%zu k=%zu | %s | %s | correct (%zu leaf%s)\n",
                input_name[kind], n, dim, k, avq_metric_name(m), tier_name[t], leaves,
                leaves == 1 ? "" : "s");
    free(ids);
    free(eids);
    free(scores);
    free(escores);
    free(queries);
    avq_index_free(ix);
    free(base);
}

static void run_shape(size_t n, size_t dim, size_t k, tier t) {
    for (int kind = 0; kind < IN_COUNT; kind++)
        for (int mi = 0; mi < 3; mi++) run_case((input_kind)kind, n, dim, k, METRICS[mi], t);
}

/* ---- the matrix ------------------------------------------------------------ */

Test(input_domain, every_kind_exact_tier) { run_shape(200, 8, 10, TIER_EXACT); }
Test(input_domain, every_kind_pq_tier) { run_shape(200, 8, 10, TIER_PQ); }
Test(input_domain, n_below_k) {
    run_shape(5, 8, 10, TIER_EXACT);
    run_shape(20, 8, 30, TIER_PQ); /* 20 >= 16 centers: really quantized */
}
Test(input_domain, n_is_one) {
    run_shape(1, 8, 10, TIER_EXACT);
    run_shape(1, 8, 10, TIER_PQ); /* falls back to the exact tier */
}
Test(input_domain, dim_one) {
    run_shape(200, 1, 10, TIER_EXACT);
    run_shape(200, 1, 10, TIER_PQ);
}
Test(input_domain, dim_4096, .timeout = 120) {
    for (int mi = 0; mi < 3; mi++)
        for (int t = 0; t < 2; t++) {
            input_kind kinds[] = {IN_NORMAL, IN_NAN, IN_HUGE_1E20, IN_NEAR_LIMIT, IN_SUBNORMAL,
                                  IN_ZERO_ROWS, IN_NEG_ZERO, IN_DUPLICATES};
            for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
                run_case(kinds[i], 40, 4096, 10, METRICS[mi], (tier)t);
        }
}

/* ---- regressions, one per bug fixed ------------------------------------------ */

/* Values whose squares overflow float crashed the quantized build (NaN
 * k-means objectives: heap-buffer-overflow in the argmin); near 1e19 the
 * build succeeded and every search failed ("lut quantize: entry ... not
 * finite").  Both are refused now, naming row and column. */
Test(input_domain, huge_values_refused_by_quantized_build) {
    size_t n = 400, d = 8;
    float scales[] = {1e19f, 1e20f, 3e38f};
    for (size_t s = 0; s < 3; s++)
        for (int mi = 0; mi < 2; mi++) {
            float *x = make_rows(IN_NORMAL, n, d, 5);
            for (size_t i = 0; i < n * d; i++) x[i] *= scales[s];
            avq_index *ix = NULL;
            int st = build(x, n, d, METRICS[mi], TIER_PQ, &ix);
            cr_assert_eq(st, AVQ_ERR_INVALID, "scale %g %s: build gave %d", (double)scales[s],
                         avq_metric_name(METRICS[mi]), st);
            cr_assert(strstr(avq_last_error(), "build: row 0 is too large") &&
                          strstr(avq_last_error(), "column"),
                      "%s", avq_last_error());
            avq_quantizer *q = NULL;
            avq_build_params p;
            avq_build_params_init(&p, METRICS[mi]);
            p.brute_force_below = 0;
            p.num_leaves = 4;
            cr_assert_eq(avq_quantizer_train(x, n, d, &p, &q), AVQ_ERR_INVALID);
            cr_assert_null(q);
            free(x);
        }
}

/* Rows added to a living index go through the same check (they used to be
 * encoded: k-means assignment with NaN objectives, out of bounds). */
Test(input_domain, huge_values_refused_by_add_and_upsert) {
    size_t n = 300, d = 4;
    for (int mi = 0; mi < 3; mi++) {
        avq_metric m = METRICS[mi];
        float *x = make_rows(IN_NORMAL, n, d, 8);
        avq_build_params p;
        avq_build_params_init(&p, m);
        p.brute_force_below = 0;
        p.num_leaves = 4;
        avq_quantizer *q;
        cr_assert_eq(avq_quantizer_train(x, n, d, &p, &q), AVQ_OK, "%s", avq_last_error());
        avq_index *ix;
        cr_assert_eq(avq_index_create(q, &ix), AVQ_OK);
        avq_quantizer_free(q);
        cr_assert_eq(avq_index_add(ix, x, n, NULL, 0, NULL), AVQ_OK, "%s", avq_last_error());
        float row[2][4] = {{0.5f, 0.25f, 0, 1}, {1, 2, -4e20f, 3}};
        int64_t ids[2] = {1000, 1001};
        int st = avq_index_add(ix, &row[0][0], 2, ids, 0, NULL);
        if (m == AVQ_METRIC_COSINE) {
            cr_assert_eq(st, AVQ_OK, "%s", avq_last_error());
            cr_assert_eq(avq_index_size(ix), n + 2);
            /* the huge row is found as its own best match */
            avq_search_params sp;
            avq_search_params_init(&sp);
            sp.k = 1;
            sp.leaves_to_search = 4;
            int64_t got;
            float score;
            cr_assert_eq(avq_index_search(ix, row[1], &sp, &got, &score), AVQ_OK, "%s",
                         avq_last_error());
            cr_assert_eq(got, 1001);
            cr_assert_float_eq(score, 1.0f, 1e-3);
        } else {
            cr_assert_eq(st, AVQ_ERR_INVALID, "%s: add gave %d", avq_metric_name(m), st);
            cr_assert(strstr(avq_last_error(), "add: row 1 is too large") &&
                          strstr(avq_last_error(), "column 2 holds -4e+20"),
                      "%s", avq_last_error());
            cr_assert_eq(avq_index_size(ix), n); /* all or nothing */
            int64_t up[2] = {0, 1};
            cr_assert_eq(avq_index_upsert(ix, &row[0][0], 2, up, 0, NULL), AVQ_ERR_INVALID);
            cr_assert(strstr(avq_last_error(), "upsert: row 1 is too large"), "%s",
                      avq_last_error());
            /* a row of norm just under the bound is accepted */
            float edge[4] = {0.99e15f, 0, 0, 0};
            cr_assert_eq(avq_index_add(ix, edge, 1, NULL, 0, NULL), AVQ_OK, "%s",
                         avq_last_error());
        }
        avq_index_free(ix);
        free(x);
    }
}

/* avq_exact_search applies the rule to base and queries (dot/L2 scores of
 * such rows overflow to inf - inf = NaN). */
Test(input_domain, exact_search_refuses_huge_rows) {
    float base[6] = {1, 2, 3, 4, 5, 6}, q[2] = {1, 2};
    int64_t ids[3];
    float sc[3];
    for (int mi = 0; mi < 2; mi++) {
        base[3] = 2e19f;
        cr_assert_eq(avq_exact_search(base, 3, 2, q, 1, METRICS[mi], 3, 1, ids, sc, NULL, NULL),
                     AVQ_ERR_INVALID);
        cr_assert(strstr(avq_last_error(), "exact search: base row 1 is too large") &&
                      strstr(avq_last_error(), "column 1"),
                  "%s", avq_last_error());
        base[3] = 4;
        q[0] = -1e16f;
        cr_assert_eq(avq_exact_search(base, 3, 2, q, 1, METRICS[mi], 3, 1, ids, sc, NULL, NULL),
                     AVQ_ERR_INVALID);
        cr_assert(strstr(avq_last_error(), "exact search: query row 0 is too large"), "%s",
                  avq_last_error());
        q[0] = 1;
    }
    base[3] = 2e19f;
    q[0] = 3e38f;
    cr_assert_eq(avq_exact_search(base, 3, 2, q, 1, AVQ_METRIC_COSINE, 3, 1, ids, sc, NULL, NULL),
                 AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(ids[0], 2); /* (5, 6) is the closest direction to (1, 0) */
    for (int r = 0; r < 3; r++) cr_assert(isfinite(sc[r]) && fabsf(sc[r]) <= 1.0f + 1e-6f);
}

/* Item 5: k is checked before it sizes anything.  A k far beyond n used to
 * be accepted and n x k padding written into the caller's buffer. */
Test(input_domain, exact_search_refuses_absurd_k) {
    float base[6] = {1, 2, 3, 4, 5, 6}, q[2] = {1, 2};
    int64_t ids[4] = {7, 7, 7, 7};
    cr_assert_eq(avq_exact_search(base, 3, 2, q, 1, AVQ_METRIC_DOT, (size_t)1 << 30, 1, ids,
                                  NULL, NULL, NULL),
                 AVQ_ERR_INVALID);
    cr_assert(strstr(avq_last_error(), "k = 1073741824 exceeds both the 3 base rows"), "%s",
              avq_last_error());
    cr_assert_eq(ids[0], 7); /* nothing written */
    /* padding up to the search limit stays as documented */
    size_t k = (size_t)1 << 20;
    int64_t *many = malloc(k * sizeof *many);
    cr_assert_eq(avq_exact_search(base, 3, 2, q, 1, AVQ_METRIC_DOT, k, 1, many, NULL, NULL, NULL),
                 AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(many[0], 2);
    cr_assert_eq(many[3], -1);
    cr_assert_eq(many[k - 1], -1);
    free(many);
}

/* The k-means argmin looked for the minimum objective with an unbounded
 * `while (obj[c] != m) c++`: when every objective is NaN (products that
 * overflow float) the minimum is +inf, in no column, and the loop ran off
 * the buffer.  Both paths (direct for d <= 8, GEMM above) now give a valid
 * center. */
Test(input_domain, kmeans_assignment_with_nan_objectives) {
    size_t dims[2] = {2, 16}, n = 50, k = 5;
    for (int t = 0; t < 2; t++) {
        size_t d = dims[t];
        float *x = malloc(n * d * sizeof *x), *c = malloc(k * d * sizeof *c);
        for (size_t i = 0; i < n * d; i++) x[i] = 1e20f;
        for (size_t i = 0; i < k * d; i++) c[i] = 1e20f; /* |c|² = inf, <x,c> = inf */
        int32_t *assign = malloc(n * sizeof *assign);
        float *score = malloc(n * sizeof *score);
        for (int kind = 0; kind < 2; kind++) {
            cr_assert_eq(avq_assign_nearest(x, n, d, c, k, (avq_nearest_kind)kind, 1, assign,
                                            score, NULL, NULL, "test"),
                         AVQ_OK);
            for (size_t i = 0; i < n; i++)
                cr_assert(assign[i] >= 0 && (size_t)assign[i] < k, "d=%zu kind %d: row %zu -> %d",
                          d, kind, i, assign[i]);
        }
        /* NaN in some objectives only: the finite minimum still wins */
        for (size_t i = 0; i < d; i++) c[2 * d + i] = 0.0f;
        cr_assert_eq(avq_assign_nearest(x, n, d, c, k, AVQ_NEAREST_L2, 1, assign, NULL, NULL,
                                        NULL, "test"),
                     AVQ_OK);
        for (size_t i = 0; i < n; i++) cr_assert_eq(assign[i], 2, "d=%zu row %zu", d, i);
        free(x);
        free(c);
        free(assign);
        free(score);
    }
}

/* Normalising a row of subnormals multiplied by (float)(1/|x|) = inf: the
 * row became inf/NaN (a cosine index of such rows answered NaN).  Rows
 * near FLT_MAX lost precision to a subnormal 1/|x|. */
Test(input_domain, normalize_subnormal_and_huge_rows) {
    float rows[3][4] = {{1e-42f, 0, -3e-42f, 2e-44f},
                        {3e38f, -3e38f, 1e38f, 0},
                        {0, -0.0f, 0, 0}};
    avq_normalize_rows(&rows[0][0], 3, 4);
    for (int i = 0; i < 2; i++) {
        cr_assert(avq_all_finite(rows[i], 4), "row %d", i);
        cr_assert_float_eq(avq_norm2_f64(rows[i], 4), 1.0, 1e-5, "row %d", i);
    }
    cr_assert_float_eq(rows[0][2], -3.0 / sqrt(10.0 + 4e-4), 1e-3);
    cr_assert_float_eq(rows[1][2], 1.0 / sqrt(19.0), 1e-6);
    cr_assert_eq(avq_norm2_f64(rows[2], 4), 0.0);
}

/* The bound itself: inclusive, dot/L2 only, in double. */
Test(input_domain, the_bound) {
    float at[2] = {1e15f, 0}, above[2] = {1.0001e15f, 0}, tiny[2] = {1e-45f, 0};
    size_t col = 99;
    double norm2 = 0;
    cr_assert_eq(avq_vector_check(at, 2, AVQ_METRIC_L2, &col, &norm2),
                 (double)1e15f * 1e15f <= AVQ_MAX_NORM2 ? AVQ_VECTOR_OK : AVQ_VECTOR_TOO_LARGE);
    cr_assert_eq(avq_vector_check(above, 2, AVQ_METRIC_DOT, &col, &norm2), AVQ_VECTOR_TOO_LARGE);
    cr_assert_eq(col, 0);
    cr_assert_eq(avq_vector_check(above, 2, AVQ_METRIC_COSINE, NULL, NULL), AVQ_VECTOR_OK);
    cr_assert_eq(avq_vector_check(tiny, 2, AVQ_METRIC_DOT, NULL, NULL), AVQ_VECTOR_OK);
    float bad[3] = {1, INFINITY, NAN};
    cr_assert_eq(avq_vector_check(bad, 3, AVQ_METRIC_COSINE, &col, NULL), AVQ_VECTOR_NOT_FINITE);
    cr_assert_eq(col, 1);
    float maxf[2] = {FLT_MAX, FLT_MAX};
    cr_assert_eq(avq_vector_check(maxf, 2, AVQ_METRIC_COSINE, NULL, NULL), AVQ_VECTOR_OK);
    cr_assert_eq(avq_check_query(above, 2, AVQ_METRIC_L2, "search"), AVQ_ERR_INVALID);
    cr_assert(strstr(avq_last_error(), "search: the query is too large for squared_l2"), "%s",
              avq_last_error());
    cr_assert_eq(avq_check_query(bad, 3, AVQ_METRIC_L2, "search"), AVQ_ERR_INVALID);
    cr_assert_str_eq(avq_last_error(), "search: query value 1 is not a finite number");
}

/* Queries of an index obey the same rule (src/search.c calls
 * avq_check_query; a dot/L2 query of norm > 1e15 used to give inf/NaN
 * scores or "lut quantize: ... not finite"), single and batch. */
Test(input_domain, index_search_refuses_huge_query) {
    size_t n = 300, d = 8;
    for (int t = 0; t < 2; t++)
        for (int mi = 0; mi < 3; mi++) {
            float *x = make_rows(IN_NORMAL, n, d, 3);
            avq_index *ix;
            cr_assert_eq(build(x, n, d, METRICS[mi], (tier)t, &ix), AVQ_OK);
            float q[8] = {1, 2, 3, 4e19f, 5, 6, 7, 8};
            avq_search_params sp;
            avq_search_params_init(&sp);
            int64_t ids[10];
            float sc[10];
            int st = avq_index_search(ix, q, &sp, ids, sc);
            int st2 = avq_index_search_batch(ix, q, 1, &sp, 1, ids, sc);
            if (METRICS[mi] == AVQ_METRIC_COSINE) {
                cr_assert_eq(st, AVQ_OK, "%s", avq_last_error());
                cr_assert_eq(st2, AVQ_OK, "%s", avq_last_error());
                for (int r = 0; r < 10; r++) cr_assert(isfinite(sc[r]));
            } else {
                cr_assert_eq(st, AVQ_ERR_INVALID);
                cr_assert_eq(st2, AVQ_ERR_INVALID);
                cr_assert(strstr(avq_last_error(), "the query is too large"), "%s",
                          avq_last_error());
            }
            avq_index_free(ix);
            free(x);
        }
}

/* Values at the bound through the other encodings: 8-bit codes and int8
 * re-ranking (its sums are the largest float quantity: <= sqrt(dim)·1e30)
 * stay finite, and a data row finds itself. */
Test(input_domain, bound_with_8bit_codes_and_int8_reorder) {
    size_t n = 300, d = 16;
    for (int mi = 0; mi < 2; mi++)
        for (int variant = 0; variant < 2; variant++) {
            float *x = make_rows(IN_NEAR_LIMIT, n, d, 21);
            avq_build_params p;
            avq_build_params_init(&p, METRICS[mi]);
            p.brute_force_below = 0;
            p.num_leaves = 4;
            p.threads = 1;
            p.reorder = variant ? AVQ_REORDER_INT8 : AVQ_REORDER_NONE;
            p.bits = variant ? 4 : 8;
            avq_index *ix;
            cr_assert_eq(avq_index_build(x, n, d, &p, &ix), AVQ_OK, "%s", avq_last_error());
            avq_search_params sp;
            avq_search_params_init(&sp);
            sp.k = 5;
            sp.leaves_to_search = 4;
            sp.pre_reorder = n;
            int64_t ids[5];
            float sc[5];
            for (size_t qi = 0; qi < 20; qi++) {
                cr_assert_eq(avq_index_search(ix, x + qi * d, &sp, ids, sc), AVQ_OK, "%s",
                             avq_last_error());
                for (int r = 0; r < 5; r++)
                    cr_assert(ids[r] >= 0 && isfinite(sc[r]), "%s variant %d query %zu rank %d: "
                              "id %lld score %g", avq_metric_name(METRICS[mi]), variant, qi, r,
                              (long long)ids[r], (double)sc[r]);
                if (METRICS[mi] == AVQ_METRIC_L2 && variant == 1)
                    cr_assert_eq(ids[0], (int64_t)qi, "query %zu found %lld", qi,
                                 (long long)ids[0]);
            }
            avq_index_free(ix);
            free(x);
        }
}
