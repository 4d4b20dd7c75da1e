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
    for (size_t i = 0; i < n; i++) {
        size_t col = 0;
        double norm2 = 0.0;
        avq_vector_problem why = avq_vector_check(x + i * dim, dim, metric, &col, &norm2);
        if (why != AVQ_VECTOR_OK)
            return fail_vector(why, x + i * dim, col, norm2, metric, who, row_word, i, true);
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

void avq_normalize_rows(float *x, size_t n, size_t dim) {
    for (size_t i = 0; i < n; i++) {
        float *row = x + i * dim;
        double norm = sqrt(avq_norm2_f64(row, dim));
        if (!(norm > 0.0)) continue;
        double inv = 1.0 / norm;
        if (inv >= FLT_MIN && inv <= FLT_MAX) {
            float finv = (float)inv;
            for (size_t j = 0; j < dim; j++) row[j] *= finv;
        } else {
            /* 1/|x| is no normal float (a row of subnormals, or of values
             * near FLT_MAX): scale in double */
            for (size_t j = 0; j < dim; j++) row[j] = (float)((double)row[j] * inv);
        }
    }
}

float *avq_normalized_copy(const float *x, size_t n, size_t dim) {
    size_t bytes;
    if (!avq_mul_ok(n, dim * sizeof(float), &bytes)) return NULL;
    float *copy = malloc(bytes ? bytes : 1);
    if (!copy) return NULL;
    memcpy(copy, x, bytes);
    avq_normalize_rows(copy, n, dim);
    return copy;
}

void avq_row_norms2(const float *x, size_t n, size_t dim, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = (float)avq_norm2_f64(x + i * dim, dim);
}
