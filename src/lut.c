/*
 * lut.c -- building and quantizing per-query lookup tables.  The per-block
 * loops here are the reference; the kernel table (scan.h) may carry SIMD
 * versions of them (src/simd/lut_avx512.c) that must give the same bits.
 * For 4-bit codes a LUT is K*16 entries, small next to the scan; for 8-bit
 * codes it is K*256, and building and quantizing it one entry at a time
 * (a double division each) was a third of a GloVe query.
 *
 * Quantization keeps ONE scale per query because the kernels add entries of
 * different blocks as integers; per-block offsets are free (they add up to a
 * constant per query), which is why AVQ_LUT8_BLOCK_MIN can use the full
 * 0..255 range of the widest block.  The scale is rounded to a float value
 * so that scale * sum is exact in double (see avq_lut8_dist): the integer to
 * float bridge is then the same function in every translation unit whatever
 * the compiler does with multiply-adds, and the threshold derivation below
 * can rely on it bit for bit.
 */
#include "lut.h"

#include "avq_internal.h"
#include "cpu.h"

#include <math.h>

size_t avq_lut_blocks(size_t d, size_t dims_per_block) {
    if (dims_per_block == 0) return 0;
    return d / dims_per_block + (d % dims_per_block != 0);
}

static float neg_dot(const float *a, const float *b, size_t len) {
    float s = 0.0f;
    for (size_t t = 0; t < len; t++) s += a[t] * b[t];
    return -s;
}

static float squared_l2(const float *a, const float *b, size_t len) {
    float s = 0.0f;
    for (size_t t = 0; t < len; t++) {
        float e = a[t] - b[t];
        s += e * e;
    }
    return s;
}

void avq_lut_block_scalar(const float *q, const float *centers, size_t C, size_t len, bool l2,
                          float *out) {
    for (size_t j = 0; j < C; j++)
        out[j] = l2 ? squared_l2(q, centers + j * len, len) : neg_dot(q, centers + j * len, len);
}

int avq_lut_build(const float *query, size_t d, size_t dims_per_block,
                  const float *codebook, size_t C, avq_metric metric, float *lut) {
    if (!query || !codebook || !lut || d == 0 || dims_per_block == 0 || C == 0)
        return avq_fail(AVQ_ERR_INVALID, "lut: NULL pointer or zero size (d=%zu, dpb=%zu, C=%zu)",
                        d, dims_per_block, C);
    if (metric != AVQ_METRIC_DOT && metric != AVQ_METRIC_COSINE && metric != AVQ_METRIC_L2)
        return avq_fail(AVQ_ERR_INVALID, "lut: unknown metric %d", (int)metric);
    size_t K = avq_lut_blocks(d, dims_per_block);
    avq_lut_block_fn block = avq_kernels_get()->lut_block;
    for (size_t m = 0; m < K; m++) {
        size_t first = m * dims_per_block;
        size_t len = d - first < dims_per_block ? d - first : dims_per_block;
        block(query + first, codebook + C * first, C, len, metric == AVQ_METRIC_L2, lut + m * C);
    }
    return AVQ_OK;
}

/* Quantize one value already divided by the scale: nearest integer (halves
 * up, independent of the FP rounding mode), clamped to a byte. */
static uint8_t to_byte(double units) {
    double r = floor(units + 0.5);
    return (uint8_t)(r < 0.0 ? 0.0 : (r > 255.0 ? 255.0 : r));
}

/* to_byte for units >= 0, the block-min case (every entry is at least its
 * block's minimum).  Truncation of a non-negative value is floor, and this
 * spelling stays inline on baseline x86-64, where floor() is a libm call:
 * the LUT is quantized once per query, so it is on the query path. */
static uint8_t to_byte_nonneg(double units) {
    double r = units + 0.5;
    return r >= 255.0 ? 255 : (uint8_t)(uint32_t)r;
}

static void quantize_symmetric(const float *lut, size_t K, size_t C, uint8_t *lut8,
                               avq_lut8_info *info) {
    size_t total = K * C;
    float max_abs = 0.0f;
    for (size_t i = 0; i < total; i++) max_abs = fmaxf(max_abs, fabsf(lut[i]));
    double scale = (double)(float)((double)max_abs / 127.0);
    if (!(scale > 0.0)) scale = 1.0; /* all zero, or too small to resolve */
    for (size_t i = 0; i < total; i++) lut8[i] = to_byte((double)lut[i] / scale + 128.0);
    info->scale = scale;
    info->offset = 0.0;
}

/* Entries are finite (checked by the caller), so plain comparisons replace
 * fminf/fmaxf, which are out-of-line calls without -ffast-math. */
static float block_min(const float *v, size_t C) {
    float lo = v[0];
    for (size_t j = 1; j < C; j++) lo = v[j] < lo ? v[j] : lo;
    return lo;
}

static float block_max(const float *v, size_t C) {
    float hi = v[0];
    for (size_t j = 1; j < C; j++) hi = v[j] > hi ? v[j] : hi;
    return hi;
}

void avq_lut_quantize_block_scalar(const float *lut, size_t C, float lo, double scale,
                                   uint8_t *out) {
    for (size_t j = 0; j < C; j++) out[j] = to_byte_nonneg(((double)lut[j] - lo) / scale);
}

bool avq_lut_block_range_scalar(const float *v, size_t C, float *lo, float *hi) {
    for (size_t j = 0; j < C; j++)
        if (!isfinite(v[j])) return false;
    *lo = block_min(v, C);
    *hi = block_max(v, C);
    return true;
}

/* Block minima of up to this many blocks are kept for the second pass
 * (GloVe has 50); beyond, they are found again. */
enum { KEPT_MINIMA = 256 };

/* Block-min quantization; false (nothing written) if an entry is not
 * finite.  The finiteness check rides on the first pass over the table,
 * which reads every entry anyway. */
static bool quantize_block_min(const float *lut, size_t K, size_t C, uint8_t *lut8,
                               avq_lut8_info *info) {
    const avq_kernels *kern = avq_kernels_get();
    float widest = 0.0f, kept[KEPT_MINIMA];
    double min_sum = 0.0;
    for (size_t m = 0; m < K; m++) {
        float lo, hi;
        if (!kern->lut_block_range(lut + m * C, C, &lo, &hi)) return false;
        float width = hi - lo;
        widest = width > widest ? width : widest;
        min_sum += lo;
        if (m < KEPT_MINIMA) kept[m] = lo;
    }
    /* A width so small (subnormal) that width / 255 rounds to zero in float
     * is no spread at all: every entry quantizes to its block minimum. */
    double scale = (double)(float)((double)widest / 255.0);
    if (!(scale > 0.0)) scale = 1.0;
    for (size_t m = 0; m < K; m++) {
        float lo = m < KEPT_MINIMA ? kept[m] : block_min(lut + m * C, C);
        kern->lut_quantize_block(lut + m * C, C, lo, scale, lut8 + m * C);
    }
    info->scale = scale;
    info->offset = min_sum + 128.0 * (double)K * scale;
    return true;
}

int avq_lut_quantize(const float *lut, size_t K, size_t C, avq_lut8_mode mode,
                     uint8_t *lut8, avq_lut8_info *info) {
    if (!lut || !lut8 || !info || K == 0 || C == 0)
        return avq_fail(AVQ_ERR_INVALID, "lut quantize: NULL pointer or K=%zu, C=%zu", K, C);
    if (K > (size_t)1 << 20)
        return avq_fail(AVQ_ERR_INVALID, "lut quantize: K=%zu blocks is too many", K);
    if (mode != AVQ_LUT8_SYMMETRIC && mode != AVQ_LUT8_BLOCK_MIN)
        return avq_fail(AVQ_ERR_INVALID, "lut quantize: unknown mode %d", (int)mode);
    bool finite = mode == AVQ_LUT8_SYMMETRIC ? avq_first_non_finite(lut, K * C) == K * C
                                             : quantize_block_min(lut, K, C, lut8, info);
    if (!finite) {
        size_t bad = avq_first_non_finite(lut, K * C);
        return avq_fail(AVQ_ERR_INVALID, "lut quantize: entry %zu (block %zu) is not finite",
                        bad, bad / C);
    }
    if (mode == AVQ_LUT8_SYMMETRIC) quantize_symmetric(lut, K, C, lut8, info);
    info->sum_min = -128 * (int32_t)K;
    info->sum_max = 127 * (int32_t)K;
    return AVQ_OK;
}

static int admitted(float eps, double base, double scale, int32_t sum) {
    return avq_lut8_dist(base, scale, sum) <= eps;
}

int32_t avq_lut8_threshold(float eps, double base, double scale, int32_t sum_min,
                           int32_t sum_max) {
    if (isnan(eps) || !admitted(eps, base, scale, sum_min)) return sum_min;
    if (admitted(eps, base, scale, sum_max)) return sum_max + 1;
    /* Invariant from here on: admitted(a) and !admitted(b), a < b; the
     * answer is the b of the final bracket with b = a + 1. */
    int32_t a = sum_min, b = sum_max;
    double guess = floor(((double)eps - base) / scale);
    if (guess > (double)a && guess < (double)b) {
        int32_t g = (int32_t)guess;
        int64_t step = 1;
        if (admitted(eps, base, scale, g)) {
            a = g; /* gallop up until rejected */
            while (b - (int64_t)a > step && admitted(eps, base, scale, (int32_t)(a + step))) {
                a = (int32_t)(a + step);
                step *= 2;
            }
            if (b - (int64_t)a > step) b = (int32_t)(a + step);
        } else {
            b = g; /* gallop down until admitted */
            while ((int64_t)b - a > step && !admitted(eps, base, scale, (int32_t)(b - step))) {
                b = (int32_t)(b - step);
                step *= 2;
            }
            if ((int64_t)b - a > step) a = (int32_t)(b - step);
        }
    }
    while (b - a > 1) {
        int32_t mid = a + (b - a) / 2;
        if (admitted(eps, base, scale, mid)) a = mid;
        else b = mid;
    }
    return b;
}
