/*
 * scan_avx512.c -- the fast-scan kernels for AVX-512 (F, BW, VL, DQ, VBMI).
 *
 * The same packed layout as AVX2 (pack.h), read four blocks per 64-byte
 * load: vpshufb works within 128-bit lanes, so lane j of a load is block
 * m+j and lane j of the next 64 LUT bytes is that block's table -- again no
 * shuffling of codes or tables.  The accumulation trick is the AVX2 one
 * (16-bit lanes modulo 2^16, a separate accumulator for odd bytes, chunks of
 * <= 256 blocks); see scan_avx2.c for the arithmetic.  What AVX-512 adds:
 *   - twice the lookups per instruction, and 32 vector registers, so a
 *     3-query batch keeps its 12 accumulators in registers;
 *   - masked loads for the 1..3 trailing blocks (the masked-off bytes read as
 *     zero and are never fetched, so nothing beyond a group or the LUT is
 *     touched and a zero table lane adds nothing);
 *   - the 32 sums of a group end up in ONE register in point order (a 4x4
 *     transpose of 128-bit lanes with vshufi64x2), compared with one
 *     vpcmpw into a 32-bit mask: no packs, no bit reordering.
 * The alternative "wide swizzle" (128 points per vpshufb) would need a
 * different packed layout for the same number of lookups per instruction;
 * it only saves the per-group reduction (~16 instructions per 32 points
 * against ~11 per 4 blocks), so the shared layout was kept.
 *
 * LUT256 keeps the scalar kernel (see scan_avx2.c: gathers are not faster
 * than scalar loads here).  Float kernels: 16-wide FMA, masked tails.
 */
#include "scan.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

typedef struct {
    __m512i wide_lo, odd_lo;  /* points 0..15  */
    __m512i wide_hi, odd_hi;  /* points 16..31 */
} acc16;

INLINE void acc_zero(acc16 *a) {
    a->wide_lo = a->odd_lo = a->wide_hi = a->odd_hi = _mm512_setzero_si512();
}

INLINE void acc_add(acc16 *a, __m512i lut, __m512i lo_nibbles, __m512i hi_nibbles) {
    __m512i v_lo = _mm512_shuffle_epi8(lut, lo_nibbles);
    __m512i v_hi = _mm512_shuffle_epi8(lut, hi_nibbles);
    a->wide_lo = _mm512_add_epi16(a->wide_lo, v_lo);
    a->odd_lo = _mm512_add_epi16(a->odd_lo, _mm512_srli_epi16(v_lo, 8));
    a->wide_hi = _mm512_add_epi16(a->wide_hi, v_hi);
    a->odd_hi = _mm512_add_epi16(a->odd_hi, _mm512_srli_epi16(v_hi, 8));
}

/* Reduce the four block lanes and order the 32 sums by point. */
INLINE __m512i finish(const acc16 *a, __m512i minus_bias) {
    __m512i even_lo = _mm512_sub_epi16(a->wide_lo, _mm512_slli_epi16(a->odd_lo, 8));
    __m512i even_hi = _mm512_sub_epi16(a->wide_hi, _mm512_slli_epi16(a->odd_hi, 8));
    __m512i p0 = _mm512_unpacklo_epi16(even_lo, a->odd_lo);  /* points 0..7 per lane */
    __m512i p8 = _mm512_unpackhi_epi16(even_lo, a->odd_lo);  /* 8..15 */
    __m512i p16 = _mm512_unpacklo_epi16(even_hi, a->odd_hi); /* 16..23 */
    __m512i p24 = _mm512_unpackhi_epi16(even_hi, a->odd_hi); /* 24..31 */
    __m512i s01 = _mm512_add_epi16(_mm512_shuffle_i64x2(p0, p8, 0x44),
                                   _mm512_shuffle_i64x2(p0, p8, 0xEE));
    __m512i s23 = _mm512_add_epi16(_mm512_shuffle_i64x2(p16, p24, 0x44),
                                   _mm512_shuffle_i64x2(p16, p24, 0xEE));
    __m512i sum = _mm512_add_epi16(_mm512_shuffle_i64x2(s01, s23, 0x88),
                                   _mm512_shuffle_i64x2(s01, s23, 0xDD));
    return _mm512_add_epi16(sum, minus_bias);
}

/* int16 sums (minus 128 per block) of blocks [first, first+blocks) of one
 * group for nq queries, 32 points in point order per query.  Queries are
 * spelled out rather than looped over, for the reason given in
 * scan_avx2.c. */
INLINE void chunk_sums(const uint8_t *codes, const uint8_t *const *luts, size_t first,
                       size_t blocks, int nq, __m512i out[AVQ_SCAN_MAX_BATCH]) {
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    acc16 a0, a1, a2;
    acc_zero(&a0);
    acc_zero(&a1);
    acc_zero(&a2);
    const uint8_t *l0 = luts[0] + 16 * first;
    const uint8_t *l1 = nq > 1 ? luts[1] + 16 * first : l0;
    const uint8_t *l2 = nq > 2 ? luts[2] + 16 * first : l0;
    size_t m = 0;
    for (; m + 4 <= blocks; m += 4) {
        __m512i c = _mm512_loadu_si512(codes + 16 * m);
        __m512i lo = _mm512_and_si512(c, low4);
        __m512i hi = _mm512_and_si512(_mm512_srli_epi16(c, 4), low4);
        acc_add(&a0, _mm512_loadu_si512(l0 + 16 * m), lo, hi);
        if (nq > 1) acc_add(&a1, _mm512_loadu_si512(l1 + 16 * m), lo, hi);
        if (nq > 2) acc_add(&a2, _mm512_loadu_si512(l2 + 16 * m), lo, hi);
    }
    if (m < blocks) {
        __mmask64 keep = (__mmask64)((1ull << (16 * (blocks - m))) - 1);
        __m512i c = _mm512_maskz_loadu_epi8(keep, codes + 16 * m);
        __m512i lo = _mm512_and_si512(c, low4);
        __m512i hi = _mm512_and_si512(_mm512_srli_epi16(c, 4), low4);
        acc_add(&a0, _mm512_maskz_loadu_epi8(keep, l0 + 16 * m), lo, hi);
        if (nq > 1) acc_add(&a1, _mm512_maskz_loadu_epi8(keep, l1 + 16 * m), lo, hi);
        if (nq > 2) acc_add(&a2, _mm512_maskz_loadu_epi8(keep, l2 + 16 * m), lo, hi);
    }
    const __m512i minus_bias = _mm512_set1_epi16((short)(-128 * (int)blocks));
    out[0] = finish(&a0, minus_bias);
    if (nq > 1) out[1] = finish(&a1, minus_bias);
    if (nq > 2) out[2] = finish(&a2, minus_bias);
}

/* int32 sums of a whole group for any K: out[q][0] = points 0..15, [1] = 16..31. */
INLINE void group_sums32(const uint8_t *group, size_t K, const uint8_t *const *luts, int nq,
                         __m512i out[AVQ_SCAN_MAX_BATCH][2]) {
    __m512i part[AVQ_SCAN_MAX_BATCH];
    for (int q = 0; q < nq; q++) out[q][0] = out[q][1] = _mm512_setzero_si512();
    for (size_t first = 0; first < K; first += AVQ_SCAN_CHUNK_BLOCKS) {
        size_t blocks = K - first < AVQ_SCAN_CHUNK_BLOCKS ? K - first : AVQ_SCAN_CHUNK_BLOCKS;
        chunk_sums(group + 16 * first, luts, first, blocks, nq, part);
        for (int q = 0; q < nq; q++) {
            __m512i lo = _mm512_cvtepi16_epi32(_mm512_castsi512_si256(part[q]));
            __m512i hi = _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(part[q], 1));
            out[q][0] = _mm512_add_epi32(out[q][0], lo);
            out[q][1] = _mm512_add_epi32(out[q][1], hi);
        }
    }
}

INLINE __mmask32 valid_points(size_t n, size_t g) {
    return (__mmask32)avq_scan_valid_mask(n - 32 * g);
}

/* ---- all sums ----------------------------------------------------------- */

INLINE void sums16_nq(const uint8_t *packed, size_t n, size_t K, int nq,
                      const uint8_t *const *luts, int16_t *const *sums) {
    __m512i out[AVQ_SCAN_MAX_BATCH];
    for (size_t g = 0; g < (n + 31) / 32; g++) {
        chunk_sums(packed + g * 16 * K, luts, 0, K, nq, out);
        __mmask32 keep = valid_points(n, g);
        for (int q = 0; q < nq; q++) _mm512_mask_storeu_epi16(sums[q] + 32 * g, keep, out[q]);
    }
}

static void lut16_sums16_avx512(const uint8_t *packed, size_t n, size_t K, size_t nq,
                                const uint8_t *const *luts, int16_t *const *sums) {
    if (nq == 1) sums16_nq(packed, n, K, 1, luts, sums);
    else if (nq == 2) sums16_nq(packed, n, K, 2, luts, sums);
    else sums16_nq(packed, n, K, 3, luts, sums);
}

INLINE void sums32_nq(const uint8_t *packed, size_t n, size_t K, int nq,
                      const uint8_t *const *luts, int32_t *const *sums) {
    __m512i out[AVQ_SCAN_MAX_BATCH][2];
    for (size_t g = 0; g < (n + 31) / 32; g++) {
        group_sums32(packed + g * 16 * K, K, luts, nq, out);
        __mmask32 keep = valid_points(n, g);
        for (int q = 0; q < nq; q++) {
            _mm512_mask_storeu_epi32(sums[q] + 32 * g, (__mmask16)keep, out[q][0]);
            _mm512_mask_storeu_epi32(sums[q] + 32 * g + 16, (__mmask16)(keep >> 16), out[q][1]);
        }
    }
}

static void lut16_sums32_avx512(const uint8_t *packed, size_t n, size_t K, size_t nq,
                                const uint8_t *const *luts, int32_t *const *sums) {
    if (nq == 1) sums32_nq(packed, n, K, 1, luts, sums);
    else if (nq == 2) sums32_nq(packed, n, K, 2, luts, sums);
    else sums32_nq(packed, n, K, 3, luts, sums);
}

/* ---- thresholded top-k -------------------------------------------------- */

INLINE void topk16_nq(const avq_scan_leaf *leaf, int nq, const avq_scan_query *queries) {
    size_t K = leaf->K, n = leaf->n;
    avq_scan_threshold thr[AVQ_SCAN_MAX_BATCH];
    __m512i thr_v[AVQ_SCAN_MAX_BATCH];
    const uint8_t *luts[AVQ_SCAN_MAX_BATCH];
    for (int q = 0; q < nq; q++) {
        avq_scan_threshold_init(&thr[q], &queries[q], K);
        thr_v[q] = _mm512_set1_epi16((short)thr[q].thr);
        luts[q] = queries[q].lut8;
    }
    __m512i out[AVQ_SCAN_MAX_BATCH];
    for (size_t g = 0; g < (n + 31) / 32; g++) {
        chunk_sums(leaf->codes + g * 16 * K, luts, 0, K, nq, out);
        for (int q = 0; q < nq; q++) {
            __mmask32 mask = _mm512_cmplt_epi16_mask(out[q], thr_v[q]);
            if (!mask) continue;
            mask &= valid_points(n, g);
            int16_t tmp[32];
            _mm512_storeu_si512(tmp, out[q]);
            avq_scan_push_mask16(&thr[q], leaf, 32 * g, (uint32_t)mask, tmp);
            avq_scan_threshold_refresh(&thr[q]);
            thr_v[q] = _mm512_set1_epi16((short)thr[q].thr);
        }
    }
}

INLINE void topk32_nq(const avq_scan_leaf *leaf, int nq, const avq_scan_query *queries) {
    size_t K = leaf->K, n = leaf->n;
    avq_scan_threshold thr[AVQ_SCAN_MAX_BATCH];
    const uint8_t *luts[AVQ_SCAN_MAX_BATCH];
    for (int q = 0; q < nq; q++) {
        avq_scan_threshold_init(&thr[q], &queries[q], K);
        luts[q] = queries[q].lut8;
    }
    __m512i out[AVQ_SCAN_MAX_BATCH][2];
    for (size_t g = 0; g < (n + 31) / 32; g++) {
        group_sums32(leaf->codes + g * 16 * K, K, luts, nq, out);
        for (int q = 0; q < nq; q++) {
            __m512i t = _mm512_set1_epi32(thr[q].thr);
            uint32_t mask = (uint32_t)_mm512_cmplt_epi32_mask(out[q][0], t) |
                            (uint32_t)_mm512_cmplt_epi32_mask(out[q][1], t) << 16;
            mask &= (uint32_t)valid_points(n, g);
            if (!mask) continue;
            int32_t tmp[32];
            _mm512_storeu_si512(tmp, out[q][0]);
            _mm512_storeu_si512(tmp + 16, out[q][1]);
            avq_scan_push_mask(&thr[q], leaf, 32 * g, mask, tmp);
            avq_scan_threshold_refresh(&thr[q]);
        }
    }
}

static void lut16_topk_avx512(const avq_scan_leaf *leaf, size_t nq,
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

INLINE __mmask16 tail_mask(size_t left) {
    return (__mmask16)((1u << (left < 16 ? left : 16)) - 1u);
}

INLINE float dot_f32(const float *a, const float *b, size_t d) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    size_t t = 0;
    for (; t + 32 <= d; t += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + t), _mm512_loadu_ps(b + t), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + t + 16), _mm512_loadu_ps(b + t + 16), s1);
    }
    for (; t < d; t += 16) {
        __mmask16 k = tail_mask(d - t);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, a + t), _mm512_maskz_loadu_ps(k, b + t), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

INLINE __m512 load16_i8(__mmask16 k, const int8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(k, p)));
}

INLINE float dot_i8(const float *a, const int8_t *b, size_t d) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    size_t t = 0;
    for (; t + 32 <= d; t += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + t), load16_i8(0xFFFF, b + t), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + t + 16), load16_i8(0xFFFF, b + t + 16), s1);
    }
    for (; t < d; t += 16) {
        __mmask16 k = tail_mask(d - t);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, a + t), load16_i8(k, b + t), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static void dot_rows_avx512(const float *q, const float *rows, size_t n, size_t d,
                            float *out) {
    for (size_t i = 0; i < n; i++) out[i] = dot_f32(q, rows + i * d, d);
}

static void dot_index_avx512(const float *q, const float *rows, size_t d,
                             const int64_t *index, size_t n, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = dot_f32(q, rows + (size_t)index[i] * d, d);
}

static void dot_rows_i8_avx512(const float *q, const int8_t *rows, size_t n, size_t d,
                               float *out) {
    for (size_t i = 0; i < n; i++) out[i] = dot_i8(q, rows + i * d, d);
}

static void dot_index_i8_avx512(const float *q, const int8_t *rows, size_t d,
                                const int64_t *index, size_t n, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = dot_i8(q, rows + (size_t)index[i] * d, d);
}

const avq_kernels avq_kernels_avx512 = {
    .isa = "avx512",
    .lut16_sums16 = lut16_sums16_avx512,
    .lut16_sums32 = lut16_sums32_avx512,
    .lut16_topk = lut16_topk_avx512,
    .lut256_sums32 = avq_lut256_sums32_scalar,
    .lut256_topk = avq_lut256_topk_scalar,
    .dot_rows = dot_rows_avx512,
    .dot_index = dot_index_avx512,
    .dot_rows_i8 = dot_rows_i8_avx512,
    .dot_index_i8 = dot_index_i8_avx512,
};

#endif /* __x86_64__ */
