/*
 * vecmath.c -- see vecmath.h.
 */
#include "vecmath.h"

#include "avq_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void avq_normalize_rows(float *x, size_t n, size_t dim) {
    for (size_t i = 0; i < n; i++) {
        float *row = x + i * dim;
        double norm = sqrt(avq_norm2_f64(row, dim));
        if (norm > 0.0) {
            float inv = (float)(1.0 / norm);
            for (size_t j = 0; j < dim; j++) row[j] *= inv;
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
