/*
 * lut_avx512.c -- a query's LUT blocks with AVX-512: the same bits as the
 * reference loops in lut.c, 16 centers at a time.
 *
 * Why it exists: an 8-bit index has 256 centers per block, so a query's
 * table is 16x the 4-bit one (6,400 entries for GloVe at 4 dims per
 * block).  Entry by entry, quantizing it (a double division each) and
 * building it were 29 % and 11 % of a GloVe query at 8 leaves.
 *
 * Same bits, not just close: every entry is computed by the operations of
 * the scalar code in the same order -- float products, then a float sum
 * that starts at 0.0f and adds the dimensions in order (no fused
 * multiply-add: the file is built with -std=c11, where GCC does not
 * contract, and mul/add intrinsics are used, never fmadd), then in the
 * quantization a double subtraction and a double division (IEEE exact,
 * whatever the width) and the truncation of a non-negative value.  The
 * vector code only regroups the work: 16 centers of `len` floats are four
 * (len 4) or two (len 2) registers with one center per 128-bit lane (len
 * 4) or two (len 2); in-lane shuffles transpose the products so that each
 * register holds one dimension of 16 centers, and a final permute puts
 * the 16 sums back in center order.  Other lengths and a partial last
 * group of centers take the scalar loop.
 */
#include "lut.h"
#include "scan.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

/* The products (or squared differences) of 4 centers x 4 dims in one
 * register against the query pattern q0 q1 q2 q3 repeated. */
static inline __m512 terms(__m512 centers, __m512 qpat, bool l2) {
    if (!l2) return _mm512_mul_ps(qpat, centers);
    __m512 e = _mm512_sub_ps(qpat, centers);
    return _mm512_mul_ps(e, e);
}

/* -sum or sum, per center, of ((0 + t0) + t1) + ... as the scalar code. */
static inline __m512 finish(__m512 sum, bool l2) {
    return l2 ? sum : _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(sum),
                                                              _mm512_set1_epi32(INT32_MIN)));
}

/* 16 centers of 4 dims (64 floats at c). */
static inline __m512 block16_len4(const float *c, __m512 qpat, bool l2) {
    __m512 p0 = terms(_mm512_loadu_ps(c), qpat, l2);      /* centers 0..3   */
    __m512 p1 = terms(_mm512_loadu_ps(c + 16), qpat, l2); /* centers 4..7   */
    __m512 p2 = terms(_mm512_loadu_ps(c + 32), qpat, l2);
    __m512 p3 = terms(_mm512_loadu_ps(c + 48), qpat, l2);
    /* per 128-bit lane L: t0 = [p0.0 p1.0 p0.1 p1.1], t1 = [p0.2 p1.2 p0.3 p1.3] */
    __m512 t0 = _mm512_unpacklo_ps(p0, p1), t1 = _mm512_unpackhi_ps(p0, p1);
    __m512 t2 = _mm512_unpacklo_ps(p2, p3), t3 = _mm512_unpackhi_ps(p2, p3);
    /* d_k lane 4L + r = dimension k of center 4r + L */
    __m512 d0 = _mm512_shuffle_ps(t0, t2, 0x44), d1 = _mm512_shuffle_ps(t0, t2, 0xEE);
    __m512 d2 = _mm512_shuffle_ps(t1, t3, 0x44), d3 = _mm512_shuffle_ps(t1, t3, 0xEE);
    __m512 s = _mm512_add_ps(_mm512_setzero_ps(), d0);
    s = _mm512_add_ps(s, d1);
    s = _mm512_add_ps(s, d2);
    s = _mm512_add_ps(s, d3);
    /* center j = 4r + L sits in lane 4L + r */
    const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    return finish(_mm512_permutexvar_ps(order, s), l2);
}

/* 16 centers of 2 dims (32 floats at c). */
static inline __m512 block16_len2(const float *c, __m512 qpat, bool l2) {
    __m512 p0 = terms(_mm512_loadu_ps(c), qpat, l2);      /* centers 0..7  */
    __m512 p1 = terms(_mm512_loadu_ps(c + 16), qpat, l2); /* centers 8..15 */
    /* per 128-bit lane L: d0 = dim 0 of [p0 c2L, p0 c2L+1, p1 c2L, p1 c2L+1] */
    __m512 d0 = _mm512_shuffle_ps(p0, p1, 0x88), d1 = _mm512_shuffle_ps(p0, p1, 0xDD);
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_setzero_ps(), d0), d1);
    /* lane 4L + 2r + i holds center 8r + 2L + i */
    const __m512i order = _mm512_set_epi32(15, 14, 11, 10, 7, 6, 3, 2, 13, 12, 9, 8, 5, 4, 1, 0);
    return finish(_mm512_permutexvar_ps(order, s), l2);
}

void avq_lut_block_avx512(const float *q, const float *centers, size_t C, size_t len, bool l2,
                          float *out) {
    size_t j = 0;
    if (len == 4) {
        __m512 qpat = _mm512_broadcast_f32x4(_mm_loadu_ps(q));
        for (; j + 16 <= C; j += 16) _mm512_storeu_ps(out + j, block16_len4(centers + 4 * j, qpat, l2));
    } else if (len == 2) {
        /* the query's two floats, twice per lane: moved as one double by
         * memcpy, since q is only float-aligned (a double load through a
         * cast pointer would be a misaligned access) */
        double pair;
        memcpy(&pair, q, sizeof pair);
        __m128 q2 = _mm_castpd_ps(_mm_set1_pd(pair));
        __m512 qpat = _mm512_broadcast_f32x4(q2);
        for (; j + 16 <= C; j += 16) _mm512_storeu_ps(out + j, block16_len2(centers + 2 * j, qpat, l2));
    }
    if (j < C) avq_lut_block_scalar(q, centers + j * len, C - j, len, l2, out + j);
}

/* Eight entries: (double)lut - lo, / scale, + 0.5, at most 255, truncated. */
static inline __m128i quantize8(__m256 v, __m512d lo, __m512d scale) {
    __m512d u = _mm512_div_pd(_mm512_sub_pd(_mm512_cvtps_pd(v), lo), scale);
    u = _mm512_min_pd(_mm512_add_pd(u, _mm512_set1_pd(0.5)), _mm512_set1_pd(255.0));
    return _mm512_cvtepi32_epi8(_mm512_castsi256_si512(_mm512_cvttpd_epu32(u)));
}

void avq_lut_quantize_block_avx512(const float *lut, size_t C, float lo, double scale,
                                   uint8_t *out) {
    const __m512d lo_d = _mm512_set1_pd((double)lo), scale_d = _mm512_set1_pd(scale);
    size_t j = 0;
    for (; j + 16 <= C; j += 16) {
        __m512 v = _mm512_loadu_ps(lut + j);
        __m128i a = quantize8(_mm512_castps512_ps256(v), lo_d, scale_d);
        __m128i b = quantize8(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)),
                              lo_d, scale_d);
        _mm_storeu_si128((__m128i *)(out + j), _mm_unpacklo_epi64(a, b));
    }
    if (j < C) avq_lut_quantize_block_scalar(lut + j, C - j, lo, scale, out + j);
}

/* 16 lanes of running minima and maxima (vminps/vmaxps are `a < b ? a : b`
 * and `a > b ? a : b` per lane, the scalar loops' operations), reduced at
 * the end; the tail is masked by repeating entry 0.  Finiteness: x - x is
 * 0 for a finite x and NaN for NaN or an infinity, and a NaN added in
 * stays. */
bool avq_lut_block_range_avx512(const float *v, size_t C, float *lo, float *hi) {
    if (C < 16) return avq_lut_block_range_scalar(v, C, lo, hi);
    __m512 mn = _mm512_loadu_ps(v), mx = mn, bad = _mm512_sub_ps(mn, mn);
    size_t j = 16;
    for (; j + 16 <= C; j += 16) {
        __m512 x = _mm512_loadu_ps(v + j);
        mn = _mm512_min_ps(x, mn);
        mx = _mm512_max_ps(x, mx);
        bad = _mm512_add_ps(bad, _mm512_sub_ps(x, x));
    }
    if (j < C) {
        __m512 x = _mm512_mask_loadu_ps(_mm512_set1_ps(v[0]), (__mmask16)((1u << (C - j)) - 1u),
                                        v + j);
        mn = _mm512_min_ps(x, mn);
        mx = _mm512_max_ps(x, mx);
        bad = _mm512_add_ps(bad, _mm512_sub_ps(x, x));
    }
    if (_mm512_cmp_ps_mask(bad, bad, _CMP_UNORD_Q)) return false;
    *lo = _mm512_reduce_min_ps(mn);
    *hi = _mm512_reduce_max_ps(mx);
    return true;
}

#endif /* __x86_64__ */
