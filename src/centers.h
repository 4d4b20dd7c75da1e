/*
 * centers.h -- an int8 sketch of the leaf centers, for choosing a query's
 * leaves without reading every center in float.
 *
 * Why.  A query scores all L centers to pick its best m.  In float that is
 * L x d x 4 bytes (230 KB at GloVe's 576 leaves, 565 KB at 1,414) and, on a
 * Zen 4 core, about 6 ns per center with the four-row FMA kernel: 3.4 us of
 * a 36 us query, 8 % of it (2026-12-03, perf and a microbenchmark).  The
 * sketch keeps every center as int8 codes, with per-dimension scales, laid
 * out so one 64-byte load holds 4 dimensions of 16 centers: an exact integer
 * inner product with an int8 copy of the query costs one vpdpbusd per load.
 *
 * Exactness.  The sketch only narrows the field.  For every center it
 * bounds how far the integer estimate can be from the float inner product
 * (quantization of center and query, and the float kernel's own rounding);
 * a center whose best case cannot beat the m-th best worst case is dropped,
 * and the float kernel scores the survivors (about 1.4 m of them on GloVe).
 * The m leaves chosen, and their scores, are therefore exactly those of
 * scoring every center in float: nothing downstream can tell the
 * difference, which tests/test_centers.c checks.
 *
 * The sketch is derived from the centers when a quantizer is trained or
 * loaded; it is not stored in index files.
 */
#ifndef AVQ_CENTERS_H
#define AVQ_CENTERS_H

#include <stddef.h>
#include <stdint.h>

/* Centers per block of the layout (one 64-byte load = 4 dims x 16 centers). */
enum { AVQ_SKETCH_BLOCK = 16 };

typedef struct avq_center_sketch {
    size_t num_leaves, dim;
    size_t dim4;         /* dim rounded up to a multiple of 4 (zero-padded)  */
    size_t blocks;       /* ceil(num_leaves / 16); padding centers are zero  */
    /* codes of center 16b + i, dims 4g .. 4g+3, at byte
     * 64 (b dim4/4 + g) + 4 i + t  (t = 0..3) */
    int8_t *codes;
    int32_t *code_sums;  /* blocks x 16: the sum of each center's codes      */
    float *scale;        /* dim: c_j ~ scale[j] * code_j                     */
    /* over all centers: the largest rounding error | c / scale - code | (in
     * code units), code norm | code |, norm | c | and leaf spread */
    double max_err_norm, max_code_norm, max_norm, max_spread;
    void *block;         /* the one allocation the arrays live in            */
} avq_center_sketch;

/* The sketch of L x d centers (row-major; spread: the leaf spreads, or
 * NULL), or NULL in *out when a sketch would not pay (few centers) or
 * cannot be exact in int32 (huge d).  Errors: AVQ_ERR_NOMEM. */
int avq_center_sketch_make(const float *centers, const float *spread, size_t L, size_t d,
                           avq_center_sketch **out);
void avq_center_sketch_free(avq_center_sketch *s);
/* Bytes the sketch takes (0 for NULL). */
size_t avq_center_sketch_bytes(const avq_center_sketch *s);

/* A query as the sketch scores it: codes qc (dim4 bytes, zero-padded) with
 * q_j scale_j ~ tau qc_j, |qc_j| <= 127; tau = 0 when q_j scale_j is zero
 * for every j. */
typedef struct {
    double tau;
    double q_norm;    /* | q |, to within float rounding */
    double dot_bound; /* | tau <qc, code_l> - the float kernel's <q, c_l> |
                         is at most this, for every l */
} avq_sketch_query;

/* The bound is quantization (Cauchy-Schwarz on the rounding errors of the
 * center's codes and of the query's) plus the float kernel's own rounding;
 * it holds for any data, and overestimating only admits more survivors. */
void avq_center_sketch_query(const avq_center_sketch *s, const float *q, int8_t *qc,
                             avq_sketch_query *out);

#endif
