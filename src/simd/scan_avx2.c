/*
 * scan_avx2.c -- the fast-scan kernels for AVX2 (+FMA, BMI).
 *
 * LUT16 (doc/DESIGN.md §3).  One 32-byte load holds blocks m and m+1 of a
 * group of 32 points (pack.h), and the query's quantized LUT for the same two
 * blocks is the next 32 bytes of lut8 -- the layouts were chosen so that no
 * shuffling of either is needed.  pshufb looks up the low nibbles (points
 * 0..15) and the high nibbles (points 16..31) of both blocks at once.  The
 * looked-up bytes are accumulated WITHOUT widening: adding the vector as
 * 16-bit lanes sums "even byte + 256 * odd byte", a second accumulator sums
 * the odd bytes alone (>> 8), and at the end even = wide - (odd << 8).  All
 * of it is modulo 2^16, which is exact as long as the final sum of a chunk
 * fits 16 bits: hence chunks of at most 256 blocks (AVQ_SCAN_CHUNK_BLOCKS),
 * widened to int32 between chunks when K > 256.  Per 32 code bytes and
 * query that is 2 pshufb + 2 shifts + 4 adds, plus 3 ops shared by the
 * queries of a batch (mask, shift, mask): batching 3 queries per pass over
 * the codes divides the memory traffic by 3 for ~2.5x the ALU work, which is
 * the right trade when a single query is bound by memory bandwidth.
 *
 * Thresholded scans compare a group's 32 sums with the query's int16
 * threshold (cmpgt, packs, movemask); only when a bit is set do they store
 * the sums, fix the bit order, push candidates and re-derive the threshold,
 * so the common "nothing here" case costs ~5 instructions per group.
 *
 * Odd K: the last block is a 16-byte load zero-extended to 32 bytes, with
 * the LUT's upper lane zero as well, so the second lane adds nothing.  No
 * load ever reaches beyond a group or beyond the LUT.
 *
 * LUT256 has no better AVX2 formulation than the scalar loads (vpgatherdd is
 * no faster than scalar loads on current cores and would over-read the LUT),
 * so the table points at the scalar kernel.  Float kernels: FMA with two
 * accumulators per row, scalar tails.
 */
#include "scan.h"
#include "vecmath.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

/* One query's accumulators for one 256-block chunk of a group. */
typedef struct {
    __m256i wide_lo, odd_lo;  /* points 0..15  */
    __m256i wide_hi, odd_hi;  /* points 16..31 */
} acc16;

INLINE void acc_zero(acc16 *a) {
    a->wide_lo = a->odd_lo = a->wide_hi = a->odd_hi = _mm256_setzero_si256();
}

INLINE void acc_add(acc16 *a, __m256i lut, __m256i lo_nibbles, __m256i hi_nibbles) {
    __m256i v_lo = _mm256_shuffle_epi8(lut, lo_nibbles);
    __m256i v_hi = _mm256_shuffle_epi8(lut, hi_nibbles);
    a->wide_lo = _mm256_add_epi16(a->wide_lo, v_lo);
    a->odd_lo = _mm256_add_epi16(a->odd_lo, _mm256_srli_epi16(v_lo, 8));
    a->wide_hi = _mm256_add_epi16(a->wide_hi, v_hi);
    a->odd_hi = _mm256_add_epi16(a->odd_hi, _mm256_srli_epi16(v_hi, 8));
}

/* 16 sums in point order from one (wide, odd) pair: lane 0 holds the even
 * blocks, lane 1 the odd blocks; bytes alternate between even and odd
 * points. */
INLINE __m256i finish_half(__m256i wide, __m256i odd, __m256i minus_bias) {
    __m256i even = _mm256_sub_epi16(wide, _mm256_slli_epi16(odd, 8));
    __m256i p0_7 = _mm256_unpacklo_epi16(even, odd);
    __m256i p8_15 = _mm256_unpackhi_epi16(even, odd);
    __m256i sum = _mm256_add_epi16(_mm256_permute2x128_si256(p0_7, p8_15, 0x20),
                                   _mm256_permute2x128_si256(p0_7, p8_15, 0x31));
    return _mm256_add_epi16(sum, minus_bias);
}

INLINE __m256i load32(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

INLINE __m256i load16_zext(const uint8_t *p) {
    return _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)p));
}

/* The int16 sums (minus 128 per block) of blocks [first, first+blocks) of one
 * group, for nq queries: out[q][0] = points 0..15, out[q][1] = 16..31.
 * `codes` points at the group's block `first`.  The queries are spelled out
 * (a0..a2) instead of looped over: nq is a constant after inlining, and
 * compilers do not reliably unroll a loop over an array of accumulators at
 * -O2 -- when they do not, the accumulators live in memory and a 3-query
 * batch runs several times slower than three single scans. */
INLINE void chunk_sums(const uint8_t *codes, const uint8_t *const *luts, size_t first,
                       size_t blocks, int nq, __m256i out[AVQ_SCAN_MAX_BATCH][2]) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    acc16 a0, a1, a2;
    acc_zero(&a0);
    acc_zero(&a1);
    acc_zero(&a2);
    const uint8_t *l0 = luts[0] + 16 * first;
    const uint8_t *l1 = nq > 1 ? luts[1] + 16 * first : l0;
    const uint8_t *l2 = nq > 2 ? luts[2] + 16 * first : l0;
    size_t m = 0;
    for (; m + 2 <= blocks; m += 2) {
        __m256i c = load32(codes + 16 * m);
        __m256i lo = _mm256_and_si256(c, low4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), low4);
        acc_add(&a0, load32(l0 + 16 * m), lo, hi);
        if (nq > 1) acc_add(&a1, load32(l1 + 16 * m), lo, hi);
        if (nq > 2) acc_add(&a2, load32(l2 + 16 * m), lo, hi);
    }
    if (m < blocks) {
        __m256i c = load16_zext(codes + 16 * m);
        __m256i lo = _mm256_and_si256(c, low4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), low4);
        acc_add(&a0, load16_zext(l0 + 16 * m), lo, hi);
        if (nq > 1) acc_add(&a1, load16_zext(l1 + 16 * m), lo, hi);
        if (nq > 2) acc_add(&a2, load16_zext(l2 + 16 * m), lo, hi);
    }
    const __m256i minus_bias = _mm256_set1_epi16((short)(-128 * (int)blocks));
    out[0][0] = finish_half(a0.wide_lo, a0.odd_lo, minus_bias);
    out[0][1] = finish_half(a0.wide_hi, a0.odd_hi, minus_bias);
    if (nq > 1) {
        out[1][0] = finish_half(a1.wide_lo, a1.odd_lo, minus_bias);
        out[1][1] = finish_half(a1.wide_hi, a1.odd_hi, minus_bias);
    }
    if (nq > 2) {
        out[2][0] = finish_half(a2.wide_lo, a2.odd_lo, minus_bias);
        out[2][1] = finish_half(a2.wide_hi, a2.odd_hi, minus_bias);
    }
}

/* int32 sums of a whole group for any K: chunks of <= 256 blocks, widened. */
INLINE void group_sums32(const uint8_t *group, size_t K, const uint8_t *const *luts, int nq,
                         __m256i out[AVQ_SCAN_MAX_BATCH][4]) {
    __m256i part[AVQ_SCAN_MAX_BATCH][2];
    for (int q = 0; q < nq; q++)
        out[q][0] = out[q][1] = out[q][2] = out[q][3] = _mm256_setzero_si256();
    for (size_t first = 0; first < K; first += AVQ_SCAN_CHUNK_BLOCKS) {
        size_t blocks = K - first < AVQ_SCAN_CHUNK_BLOCKS ? K - first : AVQ_SCAN_CHUNK_BLOCKS;
        chunk_sums(group + 16 * first, luts, first, blocks, nq, part);
        for (int q = 0; q < nq; q++)
            for (int h = 0; h < 2; h++) {
                __m256i lo8 = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(part[q][h]));
                __m256i hi8 = _mm256_cvtepi16_epi32(_mm256_extracti128_si256(part[q][h], 1));
                out[q][2 * h] = _mm256_add_epi32(out[q][2 * h], lo8);
                out[q][2 * h + 1] = _mm256_add_epi32(out[q][2 * h + 1], hi8);
            }
    }
}

/* ---- all sums ----------------------------------------------------------- */

INLINE void sums16_nq(const uint8_t *packed, size_t n, size_t K, int nq,
                      const uint8_t *const *luts, int16_t *const *sums) {
    __m256i out[AVQ_SCAN_MAX_BATCH][2];
    size_t full = n / 32;
    for (size_t g = 0; g < full; g++) {
        chunk_sums(packed + g * 16 * K, luts, 0, K, nq, out);
        for (int q = 0; q < nq; q++) {
            _mm256_storeu_si256((__m256i *)(sums[q] + 32 * g), out[q][0]);
            _mm256_storeu_si256((__m256i *)(sums[q] + 32 * g + 16), out[q][1]);
        }
    }
    if (n % 32) {
        int16_t tmp[32];
        chunk_sums(packed + full * 16 * K, luts, 0, K, nq, out);
        for (int q = 0; q < nq; q++) {
            _mm256_storeu_si256((__m256i *)tmp, out[q][0]);
            _mm256_storeu_si256((__m256i *)(tmp + 16), out[q][1]);
            memcpy(sums[q] + 32 * full, tmp, (n % 32) * sizeof(int16_t));
        }
    }
}

static void lut16_sums16_avx2(const uint8_t *packed, size_t n, size_t K, size_t nq,
                              const uint8_t *const *luts, int16_t *const *sums) {
    if (nq == 1) sums16_nq(packed, n, K, 1, luts, sums);
    else if (nq == 2) sums16_nq(packed, n, K, 2, luts, sums);
    else sums16_nq(packed, n, K, 3, luts, sums);
}

INLINE void sums32_nq(const uint8_t *packed, size_t n, size_t K, int nq,
                      const uint8_t *const *luts, int32_t *const *sums) {
    __m256i out[AVQ_SCAN_MAX_BATCH][4];
    for (size_t g = 0; g < (n + 31) / 32; g++) {
        group_sums32(packed + g * 16 * K, K, luts, nq, out);
        size_t count = n - 32 * g < 32 ? n - 32 * g : 32;
        for (int q = 0; q < nq; q++) {
            int32_t tmp[32];
            int32_t *dst = count == 32 ? sums[q] + 32 * g : tmp;
            for (int v = 0; v < 4; v++) _mm256_storeu_si256((__m256i *)(dst + 8 * v), out[q][v]);
            if (count < 32) memcpy(sums[q] + 32 * g, tmp, count * sizeof(int32_t));
        }
    }
}

static void lut16_sums32_avx2(const uint8_t *packed, size_t n, size_t K, size_t nq,
                              const uint8_t *const *luts, int32_t *const *sums) {
    if (nq == 1) sums32_nq(packed, n, K, 1, luts, sums);
    else if (nq == 2) sums32_nq(packed, n, K, 2, luts, sums);
    else sums32_nq(packed, n, K, 3, luts, sums);
}

/* ---- thresholded top-k -------------------------------------------------- */

/* movemask of packs_epi16(lo, hi) numbers the points 0-7, 16-23, 8-15, 24-31
 * (packs works per 128-bit lane); swap the middle bytes back. */
INLINE uint32_t point_order(uint32_t m) {
    return (m & 0xFF0000FFu) | ((m >> 8) & 0x0000FF00u) | ((m << 8) & 0x00FF0000u);
}

INLINE void topk16_nq(const avq_scan_leaf *leaf, int nq, const avq_scan_query *queries) {
    size_t K = leaf->K, n = leaf->n;
    avq_scan_threshold thr[AVQ_SCAN_MAX_BATCH];
    __m256i thr_v[AVQ_SCAN_MAX_BATCH];
    const uint8_t *luts[AVQ_SCAN_MAX_BATCH];
    for (int q = 0; q < nq; q++) {
        avq_scan_threshold_init(&thr[q], &queries[q], K);
        thr_v[q] = _mm256_set1_epi16((short)thr[q].thr);
        luts[q] = queries[q].lut8;
    }
    __m256i out[AVQ_SCAN_MAX_BATCH][2];
    size_t groups = (n + 31) / 32;
    for (size_t g = 0; g < groups; g++) {
        avq_scan_prefetch_ahead(leaf, g, groups, 16 * K);
        chunk_sums(leaf->codes + g * 16 * K, luts, 0, K, nq, out);
        for (int q = 0; q < nq; q++) {
            __m256i lt_lo = _mm256_cmpgt_epi16(thr_v[q], out[q][0]);
            __m256i lt_hi = _mm256_cmpgt_epi16(thr_v[q], out[q][1]);
            uint32_t mask = (uint32_t)_mm256_movemask_epi8(_mm256_packs_epi16(lt_lo, lt_hi));
            if (!mask) continue;
            mask = point_order(mask) & avq_scan_group_mask(leaf, g);
            int16_t tmp[32];
            _mm256_storeu_si256((__m256i *)tmp, out[q][0]);
            _mm256_storeu_si256((__m256i *)(tmp + 16), out[q][1]);
            avq_scan_push_mask16(&thr[q], leaf, 32 * g, mask, tmp);
            avq_scan_threshold_refresh(&thr[q]);
            thr_v[q] = _mm256_set1_epi16((short)thr[q].thr);
        }
    }
}

/* K > 256: int32 sums, compared in scalar (a rare configuration). */
INLINE void topk32_nq(const avq_scan_leaf *leaf, int nq, const avq_scan_query *queries) {
    size_t K = leaf->K, n = leaf->n;
    avq_scan_threshold thr[AVQ_SCAN_MAX_BATCH];
    const uint8_t *luts[AVQ_SCAN_MAX_BATCH];
    for (int q = 0; q < nq; q++) {
        avq_scan_threshold_init(&thr[q], &queries[q], K);
        luts[q] = queries[q].lut8;
    }
    __m256i out[AVQ_SCAN_MAX_BATCH][4];
    for (size_t g = 0; g < (n + 31) / 32; g++) {
        group_sums32(leaf->codes + g * 16 * K, K, luts, nq, out);
        for (int q = 0; q < nq; q++) {
            int32_t tmp[32];
            uint32_t mask = 0;
            __m256i t = _mm256_set1_epi32(thr[q].thr);
            for (int v = 0; v < 4; v++) {
                _mm256_storeu_si256((__m256i *)(tmp + 8 * v), out[q][v]);
                __m256i lt = _mm256_cmpgt_epi32(t, out[q][v]);
                mask |= (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(lt)) << (8 * v);
            }
            mask &= avq_scan_group_mask(leaf, g);
            if (!mask) continue;
            avq_scan_push_mask(&thr[q], leaf, 32 * g, mask, tmp);
            avq_scan_threshold_refresh(&thr[q]);
        }
    }
}

static void lut16_topk_avx2(const avq_scan_leaf *leaf, size_t nq,
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

INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE __m256 load8_i8(const int8_t *p) {
    __m128i bytes = _mm_loadl_epi64((const __m128i *)p);
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
}

/* Eight halves as floats, exactly, without F16C (the avx2 table does not
 * require it): vecmath.h's avq_float_from_half, eight lanes wide. */
INLINE __m256 load8_f16(const uint16_t *p) {
    __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    __m256i mag = _mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x7fff)), 13);
    __m256i sign = _mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x8000)), 16);
    __m256 f = _mm256_mul_ps(_mm256_castsi256_ps(mag), _mm256_set1_ps(0x1p112f));
    return _mm256_or_ps(f, _mm256_castsi256_ps(sign));
}

/* The stored row kinds: float, int8 (scales folded into the query by the
 * caller) and IEEE half.  `kind` is a constant at every call, so each
 * kernel compiles to one kind of load, and all three share the arithmetic:
 * a float16 row scores exactly as its converted floats would. */
enum { ROW_F32, ROW_I8, ROW_F16 };

INLINE __m256 row8(const void *b, size_t t, int kind) {
    return kind == ROW_F32 ? _mm256_loadu_ps((const float *)b + t)
           : kind == ROW_I8 ? load8_i8((const int8_t *)b + t)
                            : load8_f16((const uint16_t *)b + t);
}

INLINE float row1(const void *b, size_t t, int kind) {
    return kind == ROW_F32 ? ((const float *)b)[t]
           : kind == ROW_I8 ? (float)((const int8_t *)b)[t]
                            : avq_float_from_half(((const uint16_t *)b)[t]);
}

INLINE float dot_row(const float *a, const void *b, size_t d, int kind) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    size_t t = 0;
    for (; t + 16 <= d; t += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + t), row8(b, t, kind), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + t + 8), row8(b, t + 8, kind), s1);
    }
    if (t + 8 <= d) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + t), row8(b, t, kind), s0);
        t += 8;
    }
    float s = hsum(_mm256_add_ps(s0, s1));
    for (; t < d; t++) s += a[t] * row1(b, t, kind);
    return s;
}

INLINE float dot_f32(const float *a, const float *b, size_t d) { return dot_row(a, b, d, ROW_F32); }
INLINE float dot_i8(const float *a, const int8_t *b, size_t d) { return dot_row(a, b, d, ROW_I8); }
INLINE float dot_f16(const float *a, const uint16_t *b, size_t d) {
    return dot_row(a, b, d, ROW_F16);
}

static void dot_gather_f16_avx2(const float *q, const uint16_t *const *rows, size_t d, size_t n,
                                float *out) {
    for (size_t i = 0; i < n; i++) out[i] = dot_f16(q, rows[i], d);
}

static void dot_rows_avx2(const float *q, const float *rows, size_t n, size_t d, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = dot_f32(q, rows + i * d, d);
}

static void dot_gather_avx2(const float *q, const float *const *rows, size_t d, size_t n,
                            float *out) {
    for (size_t i = 0; i < n; i++) out[i] = dot_f32(q, rows[i], d);
}

static void dot_rows_i8_avx2(const float *q, const int8_t *rows, size_t n, size_t d,
                             float *out) {
    for (size_t i = 0; i < n; i++) out[i] = dot_i8(q, rows + i * d, d);
}

static void dot_gather_i8_avx2(const float *q, const int8_t *const *rows, size_t d,
                               size_t n, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = dot_i8(q, rows[i], d);
}

/* ---- int8 center sketch ------------------------------------------------- */

/* A 64-byte block row is 4 dimensions of 16 centers (centers.h): two 32-byte
 * halves of 8 centers.  vpmaddubsw multiplies unsigned by signed bytes and
 * adds pairs into saturating int16, so the query goes in as |qc| and its
 * signs move onto the codes (vpsignb); |qc|, |code| <= 127 keep each pair
 * within 2 x 127 x 127 < 32767, and vpmaddwd adds the pairs of pairs into
 * int32 exactly. */
static void sketch_dots_avx2(const int8_t *qc, const int8_t *codes, const int32_t *code_sums,
                             size_t blocks, size_t dim4, int32_t *out) {
    (void)code_sums;
    size_t groups = dim4 / 4;
    const __m256i ones = _mm256_set1_epi16(1);
    for (size_t b = 0; b < blocks; b++) {
        const int8_t *c = codes + 64 * b * groups;
        __m256i lo = _mm256_setzero_si256(), hi = lo;
        for (size_t g = 0; g < groups; g++) {
            int32_t word;
            memcpy(&word, qc + 4 * g, 4);
            __m256i qv = _mm256_set1_epi32(word), qa = _mm256_abs_epi8(qv);
            __m256i c0 = _mm256_loadu_si256((const __m256i *)(const void *)(c + 64 * g));
            __m256i c1 = _mm256_loadu_si256((const __m256i *)(const void *)(c + 64 * g + 32));
            lo = _mm256_add_epi32(lo, _mm256_madd_epi16(
                                          _mm256_maddubs_epi16(qa, _mm256_sign_epi8(c0, qv)), ones));
            hi = _mm256_add_epi32(hi, _mm256_madd_epi16(
                                          _mm256_maddubs_epi16(qa, _mm256_sign_epi8(c1, qv)), ones));
        }
        _mm256_storeu_si256((__m256i *)(void *)(out + 16 * b), lo);
        _mm256_storeu_si256((__m256i *)(void *)(out + 16 * b + 8), hi);
    }
}

const avq_kernels avq_kernels_avx2 = {
    .isa = "avx2",
    .lut16_sums16 = lut16_sums16_avx2,
    .lut16_sums32 = lut16_sums32_avx2,
    .lut16_topk = lut16_topk_avx2,
    .lut16_topk_batch = AVQ_SCAN_MAX_BATCH,
    .lut256_sums32 = avq_lut256_sums32_scalar,
    .lut256_topk = avq_lut256_topk_scalar,
    .dot_rows = dot_rows_avx2,
    .dot_gather = dot_gather_avx2,
    .dot_rows_i8 = dot_rows_i8_avx2,
    .dot_gather_i8 = dot_gather_i8_avx2,
    .dot_gather_f16 = dot_gather_f16_avx2,
    .sketch_dots = sketch_dots_avx2,
    .lut_block = avq_lut_block_avx2,
    .lut_quantize_block = avq_lut_quantize_block_avx2,
    .lut_block_range = avq_lut_block_range_avx2,
};

#endif /* __x86_64__ */
