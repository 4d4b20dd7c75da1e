/*
 * lut.h -- per-query lookup tables: the float table, its uint8 quantization,
 * and the exact bridge between the kernels' integer sums and float distances.
 *
 * Float LUT (K x C floats, block-major, C = 16 or 256):
 *   lut[m*C + j] = -<q_m, C_m[j]>      inner product (dot, cosine)
 *   lut[m*C + j] = |q_m - C_m[j]|^2    squared L2
 * so that a point's estimated distance is bias + sum_m lut[m*C + code_m]
 * (smaller is better).
 *
 * Quantized LUT (K x C uint8) with ONE scale per query, because the kernels
 * add table entries of different blocks as integers.  Every kernel returns
 *   sum = sum_m lut8[m*C + code_m] - 128*K          (int16 if K <= 256)
 * and the distance it stands for is, by definition (see avq_lut8_dist):
 *   dist = (float)(base + scale * sum),   base = bias + offset   (in double)
 * Two quantizations are offered; both fit the same kernel convention:
 *   AVQ_LUT8_SYMMETRIC  the plain one: scale = max|lut| / 127,
 *                       lut8 = round(lut / scale) + 128, offset = 0.
 *   AVQ_LUT8_BLOCK_MIN  FAISS-style per-block minimum: lut8 =
 *                       round((lut - min_m) / scale) with scale =
 *                       max_m(max_m - min_m) / 255, offset = sum_m min_m +
 *                       128*K*scale.  Uses the whole 0..255 range in the
 *                       widest block instead of half of it; the error
 *                       measurements are in bench/scan.c and the report.
 * The search uses AVQ_LUT8_BLOCK_MIN (doc/DESIGN.md §2, search step 3).
 */
#ifndef AVQ_LUT_H
#define AVQ_LUT_H

#include "avq.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { AVQ_LUT8_SYMMETRIC = 0, AVQ_LUT8_BLOCK_MIN = 1 } avq_lut8_mode;

typedef struct {
    double scale;    /* float units per integer unit (a float value, > 0) */
    double offset;   /* add to the leaf bias to get `base` */
    int32_t sum_min; /* every kernel sum lies in [sum_min, sum_max]: */
    int32_t sum_max; /* -128*K and 127*K                             */
} avq_lut8_info;

/* Number of blocks: ceil(d / dims_per_block). */
size_t avq_lut_blocks(size_t d, size_t dims_per_block);

/* The float LUT of one query (d floats) against a codebook of C centers per
 * block (layout: block m's centers start at codebook + C*m*dpb, center j is
 * the len_m floats at codebook + C*m*dpb + j*len_m).  AVQ_METRIC_DOT and
 * AVQ_METRIC_COSINE give -<q_m, c>, AVQ_METRIC_L2 |q_m - c|^2.  `lut` has
 * K*C floats.  AVQ_ERR_INVALID on NULL pointers, zero sizes or an unknown
 * metric. */
int avq_lut_build(const float *query, size_t d, size_t dims_per_block,
                  const float *codebook, size_t C, avq_metric metric, float *lut);

/* The reference per-block loops behind the two calls above (the kernel
 * table's lut_block and lut_quantize_block, scan.h):
 *   avq_lut_block_scalar: out[j] = -<q, c_j> (or |q - c_j|^2 if l2) for the
 *     C centers of `len` floats at centers + j*len, summed in dimension
 *     order in float, without fused multiply-adds;
 *   avq_lut_quantize_block_scalar: out[j] = the byte nearest
 *     (lut[j] - lo) / scale (in double, halves up, at most 255) for entries
 *     lut[j] >= lo. */
void avq_lut_block_scalar(const float *q, const float *centers, size_t C, size_t len, bool l2,
                          float *out);
void avq_lut_quantize_block_scalar(const float *lut, size_t C, float lo, double scale,
                                   uint8_t *out);
/* The smallest and largest of C >= 1 entries, and true; false (lo and hi
 * unset) if an entry is NaN or infinite.  A SIMD version may return the
 * other sign of a zero extreme; that cannot change the table (lut.c
 * subtracts the minimum before dividing, and sums the minima into a double
 * that starts at +0). */
bool avq_lut_block_range_scalar(const float *v, size_t C, float *lo, float *hi);

/* Quantize a K x C float LUT to uint8 (see the top of this file).  An
 * all-zero LUT gets scale 1.  AVQ_ERR_INVALID on a non-finite entry, K = 0,
 * C = 0 or NULL pointers. */
int avq_lut_quantize(const float *lut, size_t K, size_t C, avq_lut8_mode mode,
                     uint8_t *lut8, avq_lut8_info *info);

/* THE conversion of a kernel sum to a distance.  scale is a float value and
 * |sum| < 2^29, so scale*sum is exact in double: the result does not depend
 * on whether the compiler fuses the multiply-add (it may in the -mfma kernel
 * files), and it is monotone non-decreasing in sum.  Every kernel and
 * avq_lut8_threshold use this one function. */
static inline float avq_lut8_dist(double base, double scale, int32_t sum) {
    return (float)(base + scale * (double)sum);
}

/* The integer threshold for a leaf: the smallest thr in [sum_min, sum_max+1]
 * such that every sum in [sum_min, sum_max] with
 * avq_lut8_dist(base, scale, sum) <= eps satisfies sum < thr, and no other.
 * Why "<= eps" and not "< eps": the top-k buffer also admits a distance
 * equal to its threshold when the id is lower, so the integer filter must
 * let ties through and leave the final decision to the buffer.  Computed
 * from a double estimate (eps - base) / scale and then corrected by
 * evaluating avq_lut8_dist itself (galloping, then bisection), so rounding
 * in the estimate can never reject a candidate that the buffer would take.
 * eps = +inf gives sum_max + 1 (all pass), NaN gives sum_min (none). */
int32_t avq_lut8_threshold(float eps, double base, double scale, int32_t sum_min,
                           int32_t sum_max);

#endif
