/*
 * scan_neon.c -- the fast-scan kernels for AArch64 Advanced SIMD (NEON).
 *
 * NEON is part of the AArch64 baseline, so this file needs no -m flag and
 * is compiled into every aarch64 build; src/cpu.c still checks the ASIMD
 * hwcap before choosing it.
 *
 * LUT16 (doc/DESIGN.md §3).  The packed layout (pack.h) has one 16-byte row
 * per block: point s's code in the low nibble of byte s, point s+16's in
 * the high nibble.  That row is exactly one 128-bit register, and the
 * query's quantized LUT for the block is the 16 bytes at lut8 + 16m, so one
 * TBL (vqtbl1q_u8) looks up the low nibbles (points 0..15) and one the high
 * nibbles (points 16..31), with no shuffling of codes or tables.  Unlike the
 * AVX2 kernel (which adds bytes as 16-bit lanes and corrects later), the
 * looked-up bytes are widened exactly: the blocks are taken in pairs, the
 * two looked-up vectors added with a widening add (UADDL / UADDL2: bytes
 * 0..7 and 8..15 into eight u16 lanes each) and the result added to the
 * u16 accumulators of points 0-7, 8-15, 16-23, 24-31.  A u16 lane holds
 * sums up to 65535 >= 255 * 256, so a chunk of at most 256 blocks
 * (AVQ_SCAN_CHUNK_BLOCKS) is exact; subtracting 128 per block modulo 2^16
 * then gives the int16 sum exactly (it lies in [-32768, 32512]).  K > 256
 * widens the chunk sums to int32 between chunks, as the AVX2 kernel does.
 * Per pair of blocks and query that is 4 TBL + 4 UADDL + 4 ADD, plus a
 * 32-byte LUT load; the code load (one LD1 of two registers), 2 AND and
 * 2 USHR (5 per block pair) are shared by the queries of a batch (the
 * compiled loop: bench/README.md, "ARM64").  Adding pairs before
 * accumulating halves the length of each accumulator's dependency chain,
 * which would otherwise bound a single-query scan.
 *
 * An odd K's last block is one 16-byte row: NEON's natural width, so no
 * load ever reaches beyond a group or the LUT, and no masking is needed.
 *
 * Thresholded scans compare the 32 int16 sums with the query's threshold
 * (4 CMGT), OR the masks and test them with one UMAXV: the common "nothing
 * here" case costs ~10 instructions per group.  Only when a lane is set is
 * the 32-bit mask built (AND with lane bits, ADDV) and the candidates
 * pushed in point order, exactly as scalar does.
 *
 * LUT256 keeps the scalar kernel (NEON has no gather; TBL reaches 64 bytes
 * at most).  Float kernels: FMLA with two accumulators of four lanes,
 * scalar tails.
 */
#include "scan.h"
#include "vecmath.h"

#if defined(__aarch64__)

#include <arm_neon.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

/* One query's u16 accumulators for one chunk of a group. */
typedef struct {
    uint16x8_t p0, p1, p2, p3; /* points 0-7, 8-15, 16-23, 24-31 */
} acc16;

INLINE void acc_zero(acc16 *a) { a->p0 = a->p1 = a->p2 = a->p3 = vdupq_n_u16(0); }

/* Blocks m and m+1: lut.val[j] is block m+j's table, lo[j] / hi[j] its
 * code nibbles. */
INLINE void acc_add2(acc16 *a, uint8x16x2_t lut, const uint8x16_t lo[2],
                     const uint8x16_t hi[2]) {
    uint8x16_t l0 = vqtbl1q_u8(lut.val[0], lo[0]), l1 = vqtbl1q_u8(lut.val[1], lo[1]);
    uint8x16_t h0 = vqtbl1q_u8(lut.val[0], hi[0]), h1 = vqtbl1q_u8(lut.val[1], hi[1]);
    a->p0 = vaddq_u16(a->p0, vaddl_u8(vget_low_u8(l0), vget_low_u8(l1)));
    a->p1 = vaddq_u16(a->p1, vaddl_high_u8(l0, l1));
    a->p2 = vaddq_u16(a->p2, vaddl_u8(vget_low_u8(h0), vget_low_u8(h1)));
    a->p3 = vaddq_u16(a->p3, vaddl_high_u8(h0, h1));
}

/* One block (the last of an odd count). */
INLINE void acc_add1(acc16 *a, uint8x16_t lut, uint8x16_t lo, uint8x16_t hi) {
    uint8x16_t l = vqtbl1q_u8(lut, lo), h = vqtbl1q_u8(lut, hi);
    a->p0 = vaddw_u8(a->p0, vget_low_u8(l));
    a->p1 = vaddw_high_u8(a->p1, l);
    a->p2 = vaddw_u8(a->p2, vget_low_u8(h));
    a->p3 = vaddw_high_u8(a->p3, h);
}

/* The int16 sums in point order (8 per register), minus 128 per block:
 * exact modulo 2^16, and the true sum fits int16 (see the top). */
INLINE void acc_finish(const acc16 *a, uint16x8_t bias, int16x8_t out[4]) {
    out[0] = vreinterpretq_s16_u16(vsubq_u16(a->p0, bias));
    out[1] = vreinterpretq_s16_u16(vsubq_u16(a->p1, bias));
    out[2] = vreinterpretq_s16_u16(vsubq_u16(a->p2, bias));
    out[3] = vreinterpretq_s16_u16(vsubq_u16(a->p3, bias));
}

/* The int16 sums (minus 128 per block) of blocks [first, first+blocks) of
 * one group (blocks <= 256), for nq queries: out[q][v] = points 8v..8v+7.
 * `codes` points at the group's block `first`.  The queries are spelled out
 * (a0..a2), not looped over, for the reason given in scan_avx2.c: nq is a
 * constant after inlining, and the accumulators must stay in registers. */
INLINE void chunk_sums(const uint8_t *codes, const uint8_t *const *luts, size_t first,
                       size_t blocks, int nq, int16x8_t out[AVQ_SCAN_MAX_BATCH][4]) {
    const uint8x16_t low4 = vdupq_n_u8(0x0F);
    acc16 a0, a1, a2;
    acc_zero(&a0);
    acc_zero(&a1);
    acc_zero(&a2);
    const uint8_t *l0 = luts[0] + 16 * first;
    const uint8_t *l1 = nq > 1 ? luts[1] + 16 * first : l0;
    const uint8_t *l2 = nq > 2 ? luts[2] + 16 * first : l0;
    size_t m = 0;
    for (; m + 2 <= blocks; m += 2) {
        uint8x16x2_t c = vld1q_u8_x2(codes + 16 * m);
        uint8x16_t lo[2] = {vandq_u8(c.val[0], low4), vandq_u8(c.val[1], low4)};
        uint8x16_t hi[2] = {vshrq_n_u8(c.val[0], 4), vshrq_n_u8(c.val[1], 4)};
        acc_add2(&a0, vld1q_u8_x2(l0 + 16 * m), lo, hi);
        if (nq > 1) acc_add2(&a1, vld1q_u8_x2(l1 + 16 * m), lo, hi);
        if (nq > 2) acc_add2(&a2, vld1q_u8_x2(l2 + 16 * m), lo, hi);
    }
    if (m < blocks) {
        uint8x16_t c = vld1q_u8(codes + 16 * m);
        uint8x16_t lo = vandq_u8(c, low4), hi = vshrq_n_u8(c, 4);
        acc_add1(&a0, vld1q_u8(l0 + 16 * m), lo, hi);
        if (nq > 1) acc_add1(&a1, vld1q_u8(l1 + 16 * m), lo, hi);
        if (nq > 2) acc_add1(&a2, vld1q_u8(l2 + 16 * m), lo, hi);
    }
    const uint16x8_t bias = vdupq_n_u16((uint16_t)(128 * blocks));
    acc_finish(&a0, bias, out[0]);
    if (nq > 1) acc_finish(&a1, bias, out[1]);
    if (nq > 2) acc_finish(&a2, bias, out[2]);
}

/* int32 sums of a whole group for any K: out[q][v] = points 4v..4v+3;
 * chunks of <= 256 blocks, widened between chunks. */
INLINE void group_sums32(const uint8_t *group, size_t K, const uint8_t *const *luts, int nq,
                         int32x4_t out[AVQ_SCAN_MAX_BATCH][8]) {
    int16x8_t part[AVQ_SCAN_MAX_BATCH][4];
    for (int q = 0; q < nq; q++)
        for (int v = 0; v < 8; v++) out[q][v] = vdupq_n_s32(0);
    for (size_t first = 0; first < K; first += AVQ_SCAN_CHUNK_BLOCKS) {
        size_t blocks = K - first < AVQ_SCAN_CHUNK_BLOCKS ? K - first : AVQ_SCAN_CHUNK_BLOCKS;
        chunk_sums(group + 16 * first, luts, first, blocks, nq, part);
        for (int q = 0; q < nq; q++)
            for (int h = 0; h < 4; h++) {
                out[q][2 * h] = vaddw_s16(out[q][2 * h], vget_low_s16(part[q][h]));
                out[q][2 * h + 1] = vaddw_high_s16(out[q][2 * h + 1], part[q][h]);
            }
    }
}

/* ---- all sums ----------------------------------------------------------- */

INLINE void store16(int16_t *dst, const int16x8_t v[4]) {
    for (int h = 0; h < 4; h++) vst1q_s16(dst + 8 * h, v[h]);
}

INLINE void sums16_nq(const uint8_t *packed, size_t n, size_t K, int nq,
                      const uint8_t *const *luts, int16_t *const *sums) {
    int16x8_t out[AVQ_SCAN_MAX_BATCH][4];
    size_t full = n / 32;
    for (size_t g = 0; g < full; g++) {
        chunk_sums(packed + g * 16 * K, luts, 0, K, nq, out);
        for (int q = 0; q < nq; q++) store16(sums[q] + 32 * g, out[q]);
    }
    if (n % 32) {
        int16_t tmp[32];
        chunk_sums(packed + full * 16 * K, luts, 0, K, nq, out);
        for (int q = 0; q < nq; q++) {
            store16(tmp, out[q]);
            memcpy(sums[q] + 32 * full, tmp, (n % 32) * sizeof(int16_t));
        }
    }
}

static void lut16_sums16_neon(const uint8_t *packed, size_t n, size_t K, size_t nq,
                              const uint8_t *const *luts, int16_t *const *sums) {
    if (nq == 1) sums16_nq(packed, n, K, 1, luts, sums);
    else if (nq == 2) sums16_nq(packed, n, K, 2, luts, sums);
    else sums16_nq(packed, n, K, 3, luts, sums);
}

INLINE void sums32_nq(const uint8_t *packed, size_t n, size_t K, int nq,
                      const uint8_t *const *luts, int32_t *const *sums) {
    int32x4_t out[AVQ_SCAN_MAX_BATCH][8];
    for (size_t g = 0; g < (n + 31) / 32; g++) {
        group_sums32(packed + g * 16 * K, K, luts, nq, out);
        size_t count = n - 32 * g < 32 ? n - 32 * g : 32;
        for (int q = 0; q < nq; q++) {
            int32_t tmp[32];
            int32_t *dst = count == 32 ? sums[q] + 32 * g : tmp;
            for (int v = 0; v < 8; v++) vst1q_s32(dst + 4 * v, out[q][v]);
            if (count < 32) memcpy(sums[q] + 32 * g, tmp, count * sizeof(int32_t));
        }
    }
}

static void lut16_sums32_neon(const uint8_t *packed, size_t n, size_t K, size_t nq,
                              const uint8_t *const *luts, int32_t *const *sums) {
    if (nq == 1) sums32_nq(packed, n, K, 1, luts, sums);
    else if (nq == 2) sums32_nq(packed, n, K, 2, luts, sums);
    else sums32_nq(packed, n, K, 3, luts, sums);
}

/* ---- thresholded top-k -------------------------------------------------- */

/* Bit s of the result = lane s of the four 8-lane masks (all-ones or zero),
 * in point order.  Only called once some lane is known to be set. */
INLINE uint32_t mask_bits16(const uint16x8_t c[4]) {
    static const uint16_t lane_bit[8] = {1, 2, 4, 8, 16, 32, 64, 128};
    const uint16x8_t bits = vld1q_u16(lane_bit);
    uint32_t m = 0;
    for (int v = 0; v < 4; v++) m |= (uint32_t)vaddvq_u16(vandq_u16(c[v], bits)) << (8 * v);
    return m;
}

INLINE void topk16_nq(const avq_scan_leaf *leaf, int nq, const avq_scan_query *queries) {
    size_t K = leaf->K, n = leaf->n;
    avq_scan_threshold thr[AVQ_SCAN_MAX_BATCH];
    int16x8_t thr_v[AVQ_SCAN_MAX_BATCH];
    const uint8_t *luts[AVQ_SCAN_MAX_BATCH];
    for (int q = 0; q < nq; q++) {
        avq_scan_threshold_init(&thr[q], &queries[q], K);
        thr_v[q] = vdupq_n_s16((int16_t)thr[q].thr);
        luts[q] = queries[q].lut8;
    }
    int16x8_t out[AVQ_SCAN_MAX_BATCH][4];
    for (size_t g = 0; g < (n + 31) / 32; g++) {
        chunk_sums(leaf->codes + g * 16 * K, luts, 0, K, nq, out);
        for (int q = 0; q < nq; q++) {
            uint16x8_t c[4];
            for (int v = 0; v < 4; v++) c[v] = vcltq_s16(out[q][v], thr_v[q]);
            uint16x8_t any = vorrq_u16(vorrq_u16(c[0], c[1]), vorrq_u16(c[2], c[3]));
            if (!vmaxvq_u16(any)) continue;
            uint32_t mask = mask_bits16(c) & avq_scan_group_mask(leaf, g);
            if (!mask) continue;
            int16_t tmp[32];
            store16(tmp, out[q]);
            avq_scan_push_mask16(&thr[q], leaf, 32 * g, mask, tmp);
            avq_scan_threshold_refresh(&thr[q]);
            thr_v[q] = vdupq_n_s16((int16_t)thr[q].thr);
        }
    }
}

/* K > 256: int32 sums (a rare configuration). */
INLINE void topk32_nq(const avq_scan_leaf *leaf, int nq, const avq_scan_query *queries) {
    static const uint32_t lane_bit[4] = {1, 2, 4, 8};
    size_t K = leaf->K, n = leaf->n;
    avq_scan_threshold thr[AVQ_SCAN_MAX_BATCH];
    const uint8_t *luts[AVQ_SCAN_MAX_BATCH];
    for (int q = 0; q < nq; q++) {
        avq_scan_threshold_init(&thr[q], &queries[q], K);
        luts[q] = queries[q].lut8;
    }
    const uint32x4_t bits = vld1q_u32(lane_bit);
    int32x4_t out[AVQ_SCAN_MAX_BATCH][8];
    for (size_t g = 0; g < (n + 31) / 32; g++) {
        group_sums32(leaf->codes + g * 16 * K, K, luts, nq, out);
        for (int q = 0; q < nq; q++) {
            int32x4_t t = vdupq_n_s32(thr[q].thr);
            uint32_t mask = 0;
            for (int v = 0; v < 8; v++)
                mask |= vaddvq_u32(vandq_u32(vcltq_s32(out[q][v], t), bits)) << (4 * v);
            mask &= avq_scan_group_mask(leaf, g);
            if (!mask) continue;
            int32_t tmp[32];
            for (int v = 0; v < 8; v++) vst1q_s32(tmp + 4 * v, out[q][v]);
            avq_scan_push_mask(&thr[q], leaf, 32 * g, mask, tmp);
            avq_scan_threshold_refresh(&thr[q]);
        }
    }
}

static void lut16_topk_neon(const avq_scan_leaf *leaf, size_t nq,
                            const avq_scan_query *queries) {
    if (leaf->K > AVQ_SCAN_CHUNK_BLOCKS) {
        if (nq == 1) topk32_nq(leaf, 1, queries);
        else if (nq == 2) topk32_nq(leaf, 2, queries);
        else topk32_nq(leaf, 3, queries);
    } else {
        if (nq == 1) topk16_nq(leaf, 1, queries);
        else if (nq == 2) topk16_nq(leaf, 2, queries);
        else topk16_nq(leaf, 3, queries);
    }
}

/* ---- float kernels ------------------------------------------------------ */

/* 4 components of a row from t on: floats, or (half) IEEE halves, which
 * fcvtl converts exactly -- so a float16 row is scored with exactly the
 * float kernel's arithmetic on its converted values.  `half` is a constant
 * at every call, so each kernel compiles to one kind of load. */
INLINE float32x4_t row4(const void *b, size_t t, bool half) {
    return half ? vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)b + t)))
                : vld1q_f32((const float *)b + t);
}

INLINE float row1(const void *b, size_t t, bool half) {
    return half ? avq_float_from_half(((const uint16_t *)b)[t]) : ((const float *)b)[t];
}

INLINE float dot_row(const float *a, const void *b, size_t d, bool half) {
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
    size_t t = 0;
    for (; t + 8 <= d; t += 8) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + t), row4(b, t, half));
        s1 = vfmaq_f32(s1, vld1q_f32(a + t + 4), row4(b, t + 4, half));
    }
    if (t + 4 <= d) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + t), row4(b, t, half));
        t += 4;
    }
    float s = vaddvq_f32(vaddq_f32(s0, s1));
    for (; t < d; t++) s += a[t] * row1(b, t, half);
    return s;
}

INLINE float dot_f32(const float *a, const float *b, size_t d) { return dot_row(a, b, d, false); }

/* 8 int8 values as two float vectors. */
INLINE float32x4x2_t load8_i8(const int8_t *p) {
    int16x8_t w = vmovl_s8(vld1_s8(p));
    float32x4x2_t r = {{vcvtq_f32_s32(vmovl_s16(vget_low_s16(w))),
                        vcvtq_f32_s32(vmovl_high_s16(w))}};
    return r;
}

INLINE float dot_i8(const float *a, const int8_t *b, size_t d) {
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
    size_t t = 0;
    for (; t + 8 <= d; t += 8) {
        float32x4x2_t v = load8_i8(b + t);
        s0 = vfmaq_f32(s0, vld1q_f32(a + t), v.val[0]);
        s1 = vfmaq_f32(s1, vld1q_f32(a + t + 4), v.val[1]);
    }
    float s = vaddvq_f32(vaddq_f32(s0, s1));
    for (; t < d; t++) s += a[t] * (float)b[t];
    return s;
}

static void dot_rows_neon(const float *q, const float *rows, size_t n, size_t d, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = dot_f32(q, rows + i * d, d);
}

static void dot_gather_neon(const float *q, const float *const *rows, size_t d, size_t n,
                            float *out) {
    for (size_t i = 0; i < n; i++) out[i] = dot_f32(q, rows[i], d);
}

static void dot_gather_f16_neon(const float *q, const uint16_t *const *rows, size_t d, size_t n,
                                float *out) {
    for (size_t i = 0; i < n; i++) out[i] = dot_row(q, rows[i], d, true);
}

static void dot_rows_i8_neon(const float *q, const int8_t *rows, size_t n, size_t d,
                             float *out) {
    for (size_t i = 0; i < n; i++) out[i] = dot_i8(q, rows + i * d, d);
}

static void dot_gather_i8_neon(const float *q, const int8_t *const *rows, size_t d,
                               size_t n, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = dot_i8(q, rows[i], d);
}

const avq_kernels avq_kernels_neon = {
    .isa = "neon",
    .lut16_sums16 = lut16_sums16_neon,
    .lut16_sums32 = lut16_sums32_neon,
    .lut16_topk = lut16_topk_neon,
    .lut16_topk_batch = AVQ_SCAN_MAX_BATCH,
    .lut256_sums32 = avq_lut256_sums32_scalar,
    .lut256_topk = avq_lut256_topk_scalar,
    .dot_rows = dot_rows_neon,
    .dot_gather = dot_gather_neon,
    .dot_rows_i8 = dot_rows_i8_neon,
    .dot_gather_i8 = dot_gather_i8_neon,
    .dot_gather_f16 = dot_gather_f16_neon,
    /* the scalar loops (NEON's baseline has no 4-way byte dot product) */
    .sketch_dots = avq_sketch_dots_scalar,
    .lut_block = avq_lut_block_scalar,
    .lut_quantize_block = avq_lut_quantize_block_scalar,
    .lut_block_range = avq_lut_block_range_scalar,
};

#endif /* __aarch64__ */
