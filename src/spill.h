/*
 * spill.h -- SOAR spilling: each vector's second leaf (spill.c).
 */
#ifndef AVQ_SPILL_H
#define AVQ_SPILL_H

#include <stddef.h>
#include <stdint.h>

/* For each of the n rows of x (n x d, as the index keeps them: normalised
 * for cosine) with primary leaf primary[i] among the L centers (L x d),
 * the leaf of its spilled copy: the center c' != primary minimising SOAR's
 * |r'|^2 + lambda <r, r'>^2 / |r|^2 (r = x - c_primary, r' = x - c').  Ties
 * go to the lower leaf.  GEMMs on the calling thread (OpenBLAS's threads),
 * the argmin on `threads` workers: must not be called from inside an
 * avq_parallel_for worker.  Errors: AVQ_ERR_INVALID (L < 2, lambda < 0 or
 * not finite, a primary out of range), AVQ_ERR_NOMEM. */
int avq_spill_assign(const float *x, size_t n, size_t d, const float *centers, size_t L,
                     const int32_t *primary, float lambda, int threads, int32_t *out);

#endif
