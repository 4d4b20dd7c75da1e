/*
 * vecmath.h -- plain-C vector helpers shared by the pipeline stages
 * (normalisation, norms).  Hot inner products live in the SIMD kernels or in
 * BLAS, not here.
 */
#ifndef AVQ_VECMATH_H
#define AVQ_VECMATH_H

#include <stddef.h>

/* Scale each of the n rows of x (dim floats) to unit length in place; a zero
 * row stays zero. */
void avq_normalize_rows(float *x, size_t n, size_t dim);

/* A malloc'ed, normalised copy of x (free with free()), or NULL. */
float *avq_normalized_copy(const float *x, size_t n, size_t dim);

/* out[i] = |x_i|² (accumulated in double, stored as float). */
void avq_row_norms2(const float *x, size_t n, size_t dim, float *out);

#endif
