/*
 * vecmath.c -- see vecmath.h.
 */
#include "vecmath.h"

#include "avq_internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows are summed NORMS_ROWS at a time, one sequential sum per row: the
 * sums are avq_norm2_f64's, bit for bit, but the rows' chains of dependent
 * additions overlap (one row alone waits on each add's latency; 100
 * dimensions cost 4x what 8 rows side by side do). */
enum { NORMS_ROWS = 8 };

void avq_rows_norm2_f64(const float *x, size_t n, size_t dim, double *out) {
    size_t i = 0;
    for (; i + NORMS_ROWS <= n; i += NORMS_ROWS) {
        const float *r0 = x + i * dim, *r1 = r0 + dim, *r2 = r1 + dim, *r3 = r2 + dim;
        const float *r4 = r3 + dim, *r5 = r4 + dim, *r6 = r5 + dim, *r7 = r6 + dim;
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, s4 = 0.0, s5 = 0.0, s6 = 0.0, s7 = 0.0;
        for (size_t j = 0; j < dim; j++) {
            s0 += (double)r0[j] * r0[j];
            s1 += (double)r1[j] * r1[j];
            s2 += (double)r2[j] * r2[j];
            s3 += (double)r3[j] * r3[j];
            s4 += (double)r4[j] * r4[j];
            s5 += (double)r5[j] * r5[j];
            s6 += (double)r6[j] * r6[j];
            s7 += (double)r7[j] * r7[j];
        }
        out[i] = s0;
        out[i + 1] = s1;
        out[i + 2] = s2;
        out[i + 3] = s3;
        out[i + 4] = s4;
        out[i + 5] = s5;
        out[i + 6] = s6;
        out[i + 7] = s7;
    }
    for (; i < n; i++) out[i] = avq_norm2_f64(x + i * dim, dim);
}

bool avq_all_finite_wide(const float *x, size_t n) {
    /* x - x is 0 for a finite value and NaN otherwise, so every partial sum
     * is 0 or NaN whatever the grouping: 16 independent sums vectorise
     * where avq_all_finite's single chain cannot */
    float acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) acc[k] += x[i + (size_t)k] - x[i + (size_t)k];
    float a = 0.0f;
    for (int k = 0; k < 16; k++) a += acc[k];
    for (; i < n; i++) a += x[i] - x[i];
    return a == 0.0f;
}

avq_vector_problem avq_vector_check(const float *x, size_t dim, avq_metric metric,
                                    size_t *col, double *norm2) {
    /* A float's square is at most 1.2e77 and dim at most 2^20 or so, so the
     * sum is finite in double exactly when every value is finite: one
     * branch-free pass decides the normal case. */
    double s = 0.0;
    for (size_t j = 0; j < dim; j++) s += (double)x[j] * x[j];
    if (norm2) *norm2 = s;
    double limit = metric == AVQ_METRIC_COSINE ? INFINITY : AVQ_MAX_NORM2;
    if (s <= limit && isfinite(s)) return AVQ_VECTOR_OK;
    size_t at = avq_first_non_finite(x, dim);
    if (at < dim || !isfinite(s)) {
        if (col) *col = at < dim ? at : 0;
        return AVQ_VECTOR_NOT_FINITE;
    }
    size_t big = 0;
    for (size_t j = 1; j < dim; j++)
        if (fabsf(x[j]) > fabsf(x[big])) big = j;
    if (col) *col = big;
    return AVQ_VECTOR_TOO_LARGE;
}

static int fail_vector(avq_vector_problem why, const float *x, size_t col, double norm2,
                       avq_metric metric, const char *who, const char *what, size_t row,
                       bool numbered) {
    const char *sep = who && *who ? ": " : "";
    if (!who) who = "";
    char name[64];
    if (numbered) snprintf(name, sizeof name, "%s %zu", what, row);
    else snprintf(name, sizeof name, "%s", what);
    if (why == AVQ_VECTOR_NOT_FINITE)
        return numbered ? avq_fail(AVQ_ERR_INVALID, "%s%s%s, column %zu is not a finite number",
                                   who, sep, name, col)
                        : avq_fail(AVQ_ERR_INVALID, "%s%s%s value %zu is not a finite number",
                                   who, sep, name, col);
    return avq_fail(AVQ_ERR_INVALID,
                    "%s%s%s%s is too large for %s: its squared norm is %.3g (column %zu holds "
                    "%g); vectors of norm up to 1e15 (squared norm 1e30) are accepted",
                    who, sep, numbered ? "" : "the ", name, avq_metric_name(metric), norm2, col,
                    (double)x[col]);
}

int avq_check_rows(const float *x, size_t n, size_t dim, avq_metric metric, const char *who,
                   const char *row_word) {
    if (!row_word) row_word = "row";
    /* the normal case, a row's squared norm finite and in range, decided
     * from avq_vector_check's own sum taken NORMS_ROWS rows at a time */
    double limit = metric == AVQ_METRIC_COSINE ? INFINITY : AVQ_MAX_NORM2;
    double norms[NORMS_ROWS];
    for (size_t i0 = 0; i0 < n; i0 += NORMS_ROWS) {
        size_t rows = n - i0 < NORMS_ROWS ? n - i0 : NORMS_ROWS;
        avq_rows_norm2_f64(x + i0 * dim, rows, dim, norms);
        for (size_t k = 0; k < rows; k++) {
            if (norms[k] <= limit && isfinite(norms[k])) continue;
            size_t i = i0 + k, col = 0;
            double norm2 = 0.0;
            avq_vector_problem why = avq_vector_check(x + i * dim, dim, metric, &col, &norm2);
            if (why != AVQ_VECTOR_OK)
                return fail_vector(why, x + i * dim, col, norm2, metric, who, row_word, i, true);
        }
    }
    return AVQ_OK;
}

int avq_check_query(const float *q, size_t dim, avq_metric metric, const char *who) {
    size_t col = 0;
    double norm2 = 0.0;
    avq_vector_problem why = avq_vector_check(q, dim, metric, &col, &norm2);
    return why == AVQ_VECTOR_OK ? AVQ_OK
                                : fail_vector(why, q, col, norm2, metric, who, "query", 0, false);
}

void avq_normalize_rows_to(const float *x, size_t n, size_t dim, float *out) {
    double norms[NORMS_ROWS];
    for (size_t i = 0; i < n; i++) {
        const float *row = x + i * dim;
        float *o = out + i * dim;
        if (i % NORMS_ROWS == 0)
            avq_rows_norm2_f64(row, n - i < NORMS_ROWS ? n - i : NORMS_ROWS, dim, norms);
        double norm = sqrt(norms[i % NORMS_ROWS]);
        if (!(norm > 0.0)) {
            if (o != row) memcpy(o, row, dim * sizeof(float));
            continue;
        }
        double inv = 1.0 / norm;
        if (inv >= FLT_MIN && inv <= FLT_MAX) {
            float finv = (float)inv;
            for (size_t j = 0; j < dim; j++) o[j] = row[j] * finv;
        } else {
            /* 1/|x| is no normal float (a row of subnormals, or of values
             * near FLT_MAX): scale in double */
            for (size_t j = 0; j < dim; j++) o[j] = (float)((double)row[j] * inv);
        }
    }
}

void avq_normalize_rows(float *x, size_t n, size_t dim) { avq_normalize_rows_to(x, n, dim, x); }

float *avq_normalized_copy(const float *x, size_t n, size_t dim) {
    size_t bytes;
    if (!avq_mul_ok(n, dim * sizeof(float), &bytes)) return NULL;
    float *copy = malloc(bytes ? bytes : 1);
    if (!copy) return NULL;
    avq_normalize_rows_to(x, n, dim, copy);
    return copy;
}

void avq_row_norms2(const float *x, size_t n, size_t dim, float *out) {
    double norms[NORMS_ROWS];
    for (size_t i0 = 0; i0 < n; i0 += NORMS_ROWS) {
        size_t rows = n - i0 < NORMS_ROWS ? n - i0 : NORMS_ROWS;
        avq_rows_norm2_f64(x + i0 * dim, rows, dim, norms);
        for (size_t k = 0; k < rows; k++) out[i0 + k] = (float)norms[k];
    }
}

uint16_t avq_half_from_float(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t a = x & 0x7fffffffu;
    if (a >= 0x38800000u) {
        /* a normal half (|f| >= 2^-14): round the 13 mantissa bits that go
         * (ties to even; a carry moves into the exponent, as it should),
         * then rebias the exponent from 127 to 15 */
        a += 0xfffu + ((a >> 13) & 1u);
        return (uint16_t)(sign | (uint16_t)((a - 0x38000000u) >> 13));
    }
    if (a < 0x33000000u) return sign; /* below 2^-25: rounds to zero */
    /* a subnormal half: f in units of 2^-24, rounded to nearest even */
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u, shift = 126u - e; /* 14..24 */
    uint32_t h = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    h += (uint32_t)(rem > half) | ((uint32_t)(rem == half) & (h & 1u));
    return (uint16_t)(sign | (uint16_t)h);
}

int avq_check_half_range(const float *x, size_t n, size_t d, const char *what) {
    for (size_t i = 0; i < n * d; i++)
        if (!(fabsf(x[i]) <= (float)AVQ_HALF_MAX))
            return avq_fail(AVQ_ERR_INVALID,
                            "%s: row %zu: component %zu is %g, outside the float16 range +-%d "
                            "of the re-ranking rows (reorder float16; use reorder float)",
                            what, i / d, i % d, (double)x[i], AVQ_HALF_MAX);
    return AVQ_OK;
}
