/*
 * vecmath.h -- plain-C vector helpers shared by the pipeline stages
 * (normalisation, norms, the input-domain check).  Hot inner products live
 * in the SIMD kernels or in BLAS, not here.
 */
#ifndef AVQ_VECMATH_H
#define AVQ_VECMATH_H

#include "avq.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- the input domain -------------------------------------------------------
 *
 * Every vector that enters avq (built, trained, added, upserted, searched
 * for, exact-searched) must have finite values and, for the dot and L2
 * metrics, a squared Euclidean norm (summed in double) of at most
 * AVQ_MAX_NORM2 = 1e30, i.e. |x| <= 1e15.  Below that bound every quantity
 * computed in float32 stays finite with a margin of 2^28: inner products
 * (|<q,x>| <= 1e30), squared distances (|q-x|² <= 4e30), k-means
 * objectives, lookup-table entries and their sums, int8 re-ranking sums
 * (<= sqrt(dim)·1e30 <= 1.1e33 at the largest dim, 2^20).  Values whose squares
 * overflow float32 (|x| >= 1.8e19) otherwise turn into NaN objectives and
 * unsearchable lookup tables.  Cosine vectors are normalised (in double
 * where float would overflow or underflow) before anything else, so for
 * cosine any finite vector is accepted. */
#define AVQ_MAX_NORM2 1e30

/* What is wrong with one vector for `metric` (a valid metric). */
typedef enum {
    AVQ_VECTOR_OK = 0,
    AVQ_VECTOR_NOT_FINITE, /* a NaN or infinity: *col is the first one */
    AVQ_VECTOR_TOO_LARGE   /* dot/L2, |x|² > AVQ_MAX_NORM2: *col is the largest |value| */
} avq_vector_problem;

/* Check x (dim floats).  On a problem *col is the column above and *norm2
 * the squared norm (either may be NULL).  One pass over x in the normal
 * case. */
avq_vector_problem avq_vector_check(const float *x, size_t dim, avq_metric metric,
                                    size_t *col, double *norm2);

/* Check n rows of dim floats.  AVQ_OK, or AVQ_ERR_INVALID for the first bad
 * row with one of the messages
 *     "<who>: <row_word> R, column C is not a finite number"
 *     "<who>: <row_word> R is too large for <metric>: its squared norm is
 *      S (column C holds V); vectors of norm up to 1e15 are accepted"
 * (no "<who>: " when who is NULL or empty; row_word NULL = "row"). */
int avq_check_rows(const float *x, size_t n, size_t dim, avq_metric metric, const char *who,
                   const char *row_word);

/* One query of dim floats, for the search entry points: AVQ_OK or
 * AVQ_ERR_INVALID with "<who>: query value C is not a finite number" or
 * "<who>: the query is too large for <metric>: ...". */
int avq_check_query(const float *q, size_t dim, avq_metric metric, const char *who);

/* Scale each of the n rows of x (dim floats) to unit length in place; a zero
 * row stays zero.  Rows of any finite magnitude (subnormal to FLT_MAX)
 * come out of unit length. */
void avq_normalize_rows(float *x, size_t n, size_t dim);

/* avq_normalize_rows of x written to out (n x dim; out == x is the in-place
 * case): one pass instead of a copy and a pass over it. */
void avq_normalize_rows_to(const float *x, size_t n, size_t dim, float *out);

/* A malloc'ed, normalised copy of x (free with free()), or NULL. */
float *avq_normalized_copy(const float *x, size_t n, size_t dim);

/* IEEE 754 binary16 (half precision), the FLOAT16 re-ranking rows.
 * avq_half_from_float rounds to nearest, ties to even; |f| must be <= 65504
 * (the largest finite half; the caller checks) and f not NaN.
 * avq_float_from_half is exact for every finite half: the half's exponent
 * and mantissa bits, moved into a float's, read as a float scaled by 2^-112
 * (subnormal halves become subnormal floats), and the multiplication by
 * 2^112 is exact -- the same arithmetic the SIMD kernels without a
 * conversion instruction use, so every ISA sees the same floats. */
enum { AVQ_HALF_MAX = 65504 };
uint16_t avq_half_from_float(float f);
/* AVQ_OK if every value of x (n rows of d) is within +-AVQ_HALF_MAX, else
 * AVQ_ERR_INVALID naming the first row and component outside (`what`
 * starts the message: "build", "add"). */
int avq_check_half_range(const float *x, size_t n, size_t d, const char *what);
static inline float avq_float_from_half(uint16_t h) {
    uint32_t bits = (uint32_t)(h & 0x7fffu) << 13, sign = (uint32_t)(h & 0x8000u) << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    f *= 0x1p112f;
    memcpy(&bits, &f, sizeof f);
    bits |= sign;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* avq_all_finite(x, n) (every value finite), several times faster on
 * long arrays. */
bool avq_all_finite_wide(const float *x, size_t n);

/* out[i] = avq_norm2_f64(x_i) for the n rows of x (dim floats), bit for bit
 * (each row summed in order), several rows side by side: faster than one
 * call per row. */
void avq_rows_norm2_f64(const float *x, size_t n, size_t dim, double *out);

/* out[i] = |x_i|² (accumulated in double, stored as float). */
void avq_row_norms2(const float *x, size_t n, size_t dim, float *out);

#endif
