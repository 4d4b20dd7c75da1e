/*
 * lut_avx2.c -- a query's LUT blocks with AVX2: the same bits as lut.c's
 * reference loops, 8 centers at a time.  The scheme is lut_avx512.c's (read
 * its header for why the bits are the same) at half the width: a register
 * holds two centers of 4 dimensions or four of 2, in-lane shuffles make
 * each register one dimension of 8 centers, and one permute restores the
 * center order.
 */
#include "lut.h"
#include "scan.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

static inline __m256 terms(__m256 centers, __m256 qpat, bool l2) {
    if (!l2) return _mm256_mul_ps(qpat, centers);
    __m256 e = _mm256_sub_ps(qpat, centers);
    return _mm256_mul_ps(e, e);
}

static inline __m256 finish(__m256 sum, bool l2) {
    return l2 ? sum : _mm256_xor_ps(sum, _mm256_set1_ps(-0.0f));
}

/* 8 centers of 4 dims (32 floats at c). */
static inline __m256 block8_len4(const float *c, __m256 qpat, bool l2) {
    __m256 p0 = terms(_mm256_loadu_ps(c), qpat, l2);      /* centers 0, 1 */
    __m256 p1 = terms(_mm256_loadu_ps(c + 8), qpat, l2);  /* centers 2, 3 */
    __m256 p2 = terms(_mm256_loadu_ps(c + 16), qpat, l2);
    __m256 p3 = terms(_mm256_loadu_ps(c + 24), qpat, l2);
    __m256 t0 = _mm256_unpacklo_ps(p0, p1), t1 = _mm256_unpackhi_ps(p0, p1);
    __m256 t2 = _mm256_unpacklo_ps(p2, p3), t3 = _mm256_unpackhi_ps(p2, p3);
    /* d_k lane 4L + r = dimension k of center 2r + L */
    __m256 d0 = _mm256_shuffle_ps(t0, t2, 0x44), d1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 d2 = _mm256_shuffle_ps(t1, t3, 0x44), d3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s = _mm256_add_ps(_mm256_setzero_ps(), d0);
    s = _mm256_add_ps(s, d1);
    s = _mm256_add_ps(s, d2);
    s = _mm256_add_ps(s, d3);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    return finish(_mm256_permutevar8x32_ps(s, order), l2);
}

/* 8 centers of 2 dims (16 floats at c). */
static inline __m256 block8_len2(const float *c, __m256 qpat, bool l2) {
    __m256 p0 = terms(_mm256_loadu_ps(c), qpat, l2);     /* centers 0..3 */
    __m256 p1 = terms(_mm256_loadu_ps(c + 8), qpat, l2); /* centers 4..7 */
    /* lane 4L + 2r + i holds center 4r + 2L + i */
    __m256 d0 = _mm256_shuffle_ps(p0, p1, 0x88), d1 = _mm256_shuffle_ps(p0, p1, 0xDD);
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_setzero_ps(), d0), d1);
    const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
    return finish(_mm256_permutevar8x32_ps(s, order), l2);
}

void avq_lut_block_avx2(const float *q, const float *centers, size_t C, size_t len, bool l2,
                        float *out) {
    size_t j = 0;
    if (len == 4) {
        __m256 qpat = _mm256_broadcast_ps((const __m128 *)(const void *)q);
        for (; j + 8 <= C; j += 8) _mm256_storeu_ps(out + j, block8_len4(centers + 4 * j, qpat, l2));
    } else if (len == 2) {
        /* q is only float-aligned: its two floats move as one double by
         * memcpy, not through a cast pointer */
        double pair;
        memcpy(&pair, q, sizeof pair);
        __m256 qpat = _mm256_castpd_ps(_mm256_set1_pd(pair));
        for (; j + 8 <= C; j += 8) _mm256_storeu_ps(out + j, block8_len2(centers + 2 * j, qpat, l2));
    }
    if (j < C) avq_lut_block_scalar(q, centers + j * len, C - j, len, l2, out + j);
}

/* Four entries: (double)lut - lo, / scale, + 0.5, at most 255, truncated
 * (the values are in [0.5, 255], where the signed conversion is exact). */
static inline __m128i quantize4(__m128 v, __m256d lo, __m256d scale) {
    __m256d u = _mm256_div_pd(_mm256_sub_pd(_mm256_cvtps_pd(v), lo), scale);
    u = _mm256_min_pd(_mm256_add_pd(u, _mm256_set1_pd(0.5)), _mm256_set1_pd(255.0));
    return _mm256_cvttpd_epi32(u);
}

void avq_lut_quantize_block_avx2(const float *lut, size_t C, float lo, double scale,
                                 uint8_t *out) {
    const __m256d lo_d = _mm256_set1_pd((double)lo), scale_d = _mm256_set1_pd(scale);
    size_t j = 0;
    for (; j + 16 <= C; j += 16) {
        __m128i a = quantize4(_mm_loadu_ps(lut + j), lo_d, scale_d);
        __m128i b = quantize4(_mm_loadu_ps(lut + j + 4), lo_d, scale_d);
        __m128i c = quantize4(_mm_loadu_ps(lut + j + 8), lo_d, scale_d);
        __m128i d = quantize4(_mm_loadu_ps(lut + j + 12), lo_d, scale_d);
        /* 0..255 fit both saturating packs unchanged */
        __m128i bytes = _mm_packus_epi16(_mm_packs_epi32(a, b), _mm_packs_epi32(c, d));
        _mm_storeu_si128((__m128i *)(out + j), bytes);
    }
    if (j < C) avq_lut_quantize_block_scalar(lut + j, C - j, lo, scale, out + j);
}

/* Running minima and maxima in 8 lanes, the tail masked by repeating entry
 * 0; x - x flags NaN and infinities (see lut_avx512.c). */
bool avq_lut_block_range_avx2(const float *v, size_t C, float *lo, float *hi) {
    if (C < 8) return avq_lut_block_range_scalar(v, C, lo, hi);
    __m256 mn = _mm256_loadu_ps(v), mx = mn, bad = _mm256_sub_ps(mn, mn);
    size_t j = 8;
    for (; j + 8 <= C; j += 8) {
        __m256 x = _mm256_loadu_ps(v + j);
        mn = _mm256_min_ps(x, mn);
        mx = _mm256_max_ps(x, mx);
        bad = _mm256_add_ps(bad, _mm256_sub_ps(x, x));
    }
    for (; j < C; j++) { /* fewer than 8 left: one lane at a time */
        __m256 x = _mm256_set1_ps(v[j]);
        mn = _mm256_min_ps(x, mn);
        mx = _mm256_max_ps(x, mx);
        bad = _mm256_add_ps(bad, _mm256_sub_ps(x, x));
    }
    if (_mm256_movemask_ps(_mm256_cmp_ps(bad, bad, _CMP_UNORD_Q))) return false;
    __m128 m4 = _mm_min_ps(_mm256_castps256_ps128(mn), _mm256_extractf128_ps(mn, 1));
    __m128 x4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_min_ps(m4, _mm_movehl_ps(m4, m4));
    x4 = _mm_max_ps(x4, _mm_movehl_ps(x4, x4));
    m4 = _mm_min_ss(m4, _mm_shuffle_ps(m4, m4, 1));
    x4 = _mm_max_ss(x4, _mm_shuffle_ps(x4, x4, 1));
    *lo = _mm_cvtss_f32(m4);
    *hi = _mm_cvtss_f32(x4);
    return true;
}

#endif /* __x86_64__ */
