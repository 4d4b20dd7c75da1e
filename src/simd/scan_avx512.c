/*
 * scan_avx512.c -- the fast-scan kernels for AVX-512 (F, BW, VL, DQ, VBMI,
 * VNNI).
 *
 * Same packed layout as every other ISA (pack.h), read four blocks per
 * 64-byte load, but NOT the pshufb scheme of scan_avx2.c.  Per load:
 *   1. one vpermb transposes the 64 code bytes so that bytes 4s..4s+3 hold
 *      point s's codes for the 4 blocks (shared by all queries of a batch);
 *   2. nibble | 16*block gives a 6-bit index into the 64-byte LUT of those 4
 *      blocks, which is exactly lut8 + 16m (no table rearrangement); one
 *      vpermb per nibble half looks up 64 entries;
 *   3. one vpdpbusd per half adds each point's 4 bytes into its int32 lane.
 * That is 4 shared + 4 per-query instructions per 128 lookups, against
 * 3 + 8 for the pshufb / 16-bit-accumulator scheme (which was the first
 * version of this file: on the Zen 5 development machine both ran at the
 * same speed; on an Intel Xeon (2026-12-02, bench/scan --quick, N = 100000,
 * K = 50, one query, the two versions built from the same tree) this one
 * scans 1,086-1,141 Mpoints/s against 802-855 for the pshufb one, and with
 * 3 queries 551-588 against 367-374 per query; at K = 100 they tie).  The
 * sums are exact int32 for any K: no modulo-2^16 reasoning, no 256-block
 * chunks, and the 32 sums of a group come out in point order in two
 * registers, compared with vpcmpd straight into a 32-bit mask.
 * A "wide swizzle" layout would save nothing here: the transposition is one
 * instruction per load, shared by the queries.
 *
 * Tails: the 1..7 trailing blocks are read with masked loads (masked-off
 * bytes read as zero and are never fetched), and a zero LUT slot adds
 * nothing, so no load reaches beyond a group or the LUT.
 *
 * LUT256 (8-bit codes): two 128-entry vpermi2b lookups per 64 points and
 * block, see the section below.  Float kernels: 16-wide FMA, masked tails.
 */
#include "scan.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

/* Byte p = 4s + j of a transposed 64-byte code load is byte 16j + s of the
 * load: point s (low nibble) / s+16 (high nibble) for block m+j.  slot[p]
 * = 16j selects block j's 16 entries in the 64-byte table of 4 blocks. */
INLINE __m512i transpose_index(void) {
    return _mm512_set_epi8(63, 47, 31, 15, 62, 46, 30, 14, 61, 45, 29, 13, 60, 44, 28, 12,
                           59, 43, 27, 11, 58, 42, 26, 10, 57, 41, 25, 9, 56, 40, 24, 8,
                           55, 39, 23, 7, 54, 38, 22, 6, 53, 37, 21, 5, 52, 36, 20, 4,
                           51, 35, 19, 3, 50, 34, 18, 2, 49, 33, 17, 1, 48, 32, 16, 0);
}

INLINE __m512i slot_offsets(void) { return _mm512_set1_epi32(0x30201000); }

/* vpdpbusd (AVX512-VNNI) is not among the Makefile's AVX-512 flags, but
 * every CPU with VBMI that matters has it (Ice Lake and later, Zen 4 and
 * later), so cpu.c requires it for this table and the LUT16 functions enable
 * it locally.  With -mavx512vnni in the flags the attribute is a no-op. */
#if defined(__AVX512VNNI__)
#define WITH_VNNI
#else
#define WITH_VNNI __attribute__((target("avx512vnni")))
#endif

/* Sum each 4 consecutive table bytes (one point, 4 blocks) into its int32
 * lane: u8 x s8(1) products, summed in groups of four and accumulated. */
WITH_VNNI INLINE __m512i add_quads(__m512i acc, __m512i bytes) {
    return _mm512_dpbusd_epi32(acc, bytes, _mm512_set1_epi8(1));
}

/* One query's int32 accumulators, two sets alternating by step so that the
 * dependency chain of the accumulate does not limit a single-query scan. */
typedef struct {
    __m512i lo_a, hi_a, lo_b, hi_b; /* points 0..15 and 16..31 */
} acc32;

INLINE void acc_zero(acc32 *a) {
    a->lo_a = a->hi_a = a->lo_b = a->hi_b = _mm512_setzero_si512();
}

WITH_VNNI INLINE void acc_step(__m512i *lo, __m512i *hi, __m512i lut, __m512i idx_lo, __m512i idx_hi) {
    *lo = add_quads(*lo, _mm512_permutexvar_epi8(idx_lo, lut));
    *hi = add_quads(*hi, _mm512_permutexvar_epi8(idx_hi, lut));
}

/* vpermb indexes of one 64-byte code load: (transposed low nibble | slot)
 * and (transposed high nibble | slot).  vpternlog 0xEA = (A & B) | C. */
INLINE void code_indexes(__m512i codes, __m512i *idx_lo, __m512i *idx_hi) {
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    __m512i t = _mm512_permutexvar_epi8(transpose_index(), codes);
    *idx_lo = _mm512_ternarylogic_epi32(t, low4, slot_offsets(), 0xEA);
    *idx_hi = _mm512_ternarylogic_epi32(_mm512_srli_epi16(t, 4), low4, slot_offsets(), 0xEA);
}

/* int32 sums (minus 128 per block) of a whole group for nq queries:
 * out[q][0] = points 0..15, out[q][1] = points 16..31.  Exact for any K.
 * Queries are spelled out rather than looped over, for the reason given in
 * scan_avx2.c. */
WITH_VNNI INLINE void group_sums(const uint8_t *group, size_t K, const uint8_t *const *luts, int nq,
                       __m512i out[AVQ_SCAN_MAX_BATCH][2]) {
    acc32 a0, a1, a2;
    acc_zero(&a0);
    acc_zero(&a1);
    acc_zero(&a2);
    const uint8_t *l0 = luts[0], *l1 = nq > 1 ? luts[1] : l0, *l2 = nq > 2 ? luts[2] : l0;
    __m512i lo, hi;
    size_t m = 0;
    for (; m + 8 <= K; m += 8) {
        code_indexes(_mm512_loadu_si512(group + 16 * m), &lo, &hi);
        acc_step(&a0.lo_a, &a0.hi_a, _mm512_loadu_si512(l0 + 16 * m), lo, hi);
        if (nq > 1) acc_step(&a1.lo_a, &a1.hi_a, _mm512_loadu_si512(l1 + 16 * m), lo, hi);
        if (nq > 2) acc_step(&a2.lo_a, &a2.hi_a, _mm512_loadu_si512(l2 + 16 * m), lo, hi);
        code_indexes(_mm512_loadu_si512(group + 16 * m + 64), &lo, &hi);
        acc_step(&a0.lo_b, &a0.hi_b, _mm512_loadu_si512(l0 + 16 * m + 64), lo, hi);
        if (nq > 1) acc_step(&a1.lo_b, &a1.hi_b, _mm512_loadu_si512(l1 + 16 * m + 64), lo, hi);
        if (nq > 2) acc_step(&a2.lo_b, &a2.hi_b, _mm512_loadu_si512(l2 + 16 * m + 64), lo, hi);
    }
    for (; m < K; m += 4) {
        /* 1..7 trailing blocks; masked-off bytes read as zero and are not
         * fetched, and a zero table slot adds nothing */
        size_t left = K - m < 4 ? K - m : 4;
        __mmask64 keep = left == 4 ? ~(__mmask64)0 : (__mmask64)((1ull << (16 * left)) - 1);
        code_indexes(_mm512_maskz_loadu_epi8(keep, group + 16 * m), &lo, &hi);
        acc_step(&a0.lo_a, &a0.hi_a, _mm512_maskz_loadu_epi8(keep, l0 + 16 * m), lo, hi);
        if (nq > 1) acc_step(&a1.lo_a, &a1.hi_a, _mm512_maskz_loadu_epi8(keep, l1 + 16 * m), lo, hi);
        if (nq > 2) acc_step(&a2.lo_a, &a2.hi_a, _mm512_maskz_loadu_epi8(keep, l2 + 16 * m), lo, hi);
    }
    const __m512i minus_bias = _mm512_set1_epi32(-128 * (int32_t)K);
    out[0][0] = _mm512_add_epi32(_mm512_add_epi32(a0.lo_a, a0.lo_b), minus_bias);
    out[0][1] = _mm512_add_epi32(_mm512_add_epi32(a0.hi_a, a0.hi_b), minus_bias);
    if (nq > 1) {
        out[1][0] = _mm512_add_epi32(_mm512_add_epi32(a1.lo_a, a1.lo_b), minus_bias);
        out[1][1] = _mm512_add_epi32(_mm512_add_epi32(a1.hi_a, a1.hi_b), minus_bias);
    }
    if (nq > 2) {
        out[2][0] = _mm512_add_epi32(_mm512_add_epi32(a2.lo_a, a2.lo_b), minus_bias);
        out[2][1] = _mm512_add_epi32(_mm512_add_epi32(a2.hi_a, a2.hi_b), minus_bias);
    }
}

/* The same sums for 4..AVQ_SCAN_WIDE_BATCH queries: one pair of
 * accumulators per query (the alternating second set of group_sums is
 * there for the dependency chain of a single query; with four or more the
 * queries interleave by themselves, and 32 registers would not hold it). */
WITH_VNNI INLINE void group_sums_wide(const uint8_t *group, size_t K, const uint8_t *const *luts,
                                      int nq, __m512i out[AVQ_SCAN_WIDE_BATCH][2]) {
    __m512i lo[AVQ_SCAN_WIDE_BATCH], hi[AVQ_SCAN_WIDE_BATCH], idx_lo, idx_hi;
    _Pragma("GCC unroll 6") for (int q = 0; q < nq; q++) lo[q] = hi[q] = _mm512_setzero_si512();
    size_t m = 0;
    for (; m + 4 <= K; m += 4) {
        code_indexes(_mm512_loadu_si512(group + 16 * m), &idx_lo, &idx_hi);
        _Pragma("GCC unroll 6") for (int q = 0; q < nq; q++)
            acc_step(&lo[q], &hi[q], _mm512_loadu_si512(luts[q] + 16 * m), idx_lo, idx_hi);
    }
    if (m < K) {
        __mmask64 keep = (__mmask64)((1ull << (16 * (K - m))) - 1);
        code_indexes(_mm512_maskz_loadu_epi8(keep, group + 16 * m), &idx_lo, &idx_hi);
        _Pragma("GCC unroll 6") for (int q = 0; q < nq; q++)
            acc_step(&lo[q], &hi[q], _mm512_maskz_loadu_epi8(keep, luts[q] + 16 * m), idx_lo,
                     idx_hi);
    }
    const __m512i minus_bias = _mm512_set1_epi32(-128 * (int32_t)K);
    _Pragma("GCC unroll 6") for (int q = 0; q < nq; q++) {
        out[q][0] = _mm512_add_epi32(lo[q], minus_bias);
        out[q][1] = _mm512_add_epi32(hi[q], minus_bias);
    }
}

INLINE __mmask32 valid_points(size_t n, size_t g) {
    return (__mmask32)avq_scan_valid_mask(n - 32 * g);
}

/* ---- all sums ----------------------------------------------------------- */

WITH_VNNI INLINE void sums16_nq(const uint8_t *packed, size_t n, size_t K, int nq,
                      const uint8_t *const *luts, int16_t *const *sums) {
    __m512i out[AVQ_SCAN_MAX_BATCH][2];
    for (size_t g = 0; g < (n + 31) / 32; g++) {
        group_sums(packed + g * 16 * K, K, luts, nq, out);
        __mmask32 keep = valid_points(n, g);
        for (int q = 0; q < nq; q++) {
            __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi32_epi16(out[q][0])),
                                              _mm512_cvtepi32_epi16(out[q][1]), 1);
            _mm512_mask_storeu_epi16(sums[q] + 32 * g, keep, both);
        }
    }
}

WITH_VNNI static void lut16_sums16_avx512(const uint8_t *packed, size_t n, size_t K, size_t nq,
                                const uint8_t *const *luts, int16_t *const *sums) {
    if (nq == 1) sums16_nq(packed, n, K, 1, luts, sums);
    else if (nq == 2) sums16_nq(packed, n, K, 2, luts, sums);
    else sums16_nq(packed, n, K, 3, luts, sums);
}

WITH_VNNI INLINE void sums32_nq(const uint8_t *packed, size_t n, size_t K, int nq,
                      const uint8_t *const *luts, int32_t *const *sums) {
    __m512i out[AVQ_SCAN_MAX_BATCH][2];
    for (size_t g = 0; g < (n + 31) / 32; g++) {
        group_sums(packed + g * 16 * K, K, luts, nq, out);
        __mmask32 keep = valid_points(n, g);
        for (int q = 0; q < nq; q++) {
            _mm512_mask_storeu_epi32(sums[q] + 32 * g, (__mmask16)keep, out[q][0]);
            _mm512_mask_storeu_epi32(sums[q] + 32 * g + 16, (__mmask16)(keep >> 16), out[q][1]);
        }
    }
}

WITH_VNNI static void lut16_sums32_avx512(const uint8_t *packed, size_t n, size_t K, size_t nq,
                                const uint8_t *const *luts, int32_t *const *sums) {
    if (nq == 1) sums32_nq(packed, n, K, 1, luts, sums);
    else if (nq == 2) sums32_nq(packed, n, K, 2, luts, sums);
    else sums32_nq(packed, n, K, 3, luts, sums);
}

/* ---- thresholded top-k -------------------------------------------------- */

WITH_VNNI INLINE void topk_nq(const avq_scan_leaf *leaf, int nq, const avq_scan_query *queries) {
    size_t K = leaf->K, n = leaf->n;
    avq_scan_threshold thr[AVQ_SCAN_WIDE_BATCH];
    __m512i thr_v[AVQ_SCAN_WIDE_BATCH];
    const uint8_t *luts[AVQ_SCAN_WIDE_BATCH];
    for (int q = 0; q < nq; q++) {
        avq_scan_threshold_init(&thr[q], &queries[q], K);
        thr_v[q] = _mm512_set1_epi32(thr[q].thr);
        luts[q] = queries[q].lut8;
    }
    __m512i out[AVQ_SCAN_WIDE_BATCH][2];
    size_t groups = (n + 31) / 32;
    for (size_t g = 0; g < groups; g++) {
        avq_scan_prefetch_ahead(leaf, g, groups, 16 * K);
        if (nq <= AVQ_SCAN_MAX_BATCH) group_sums(leaf->codes + g * 16 * K, K, luts, nq, out);
        else group_sums_wide(leaf->codes + g * 16 * K, K, luts, nq, out);
        for (int q = 0; q < nq; q++) {
            uint32_t mask = (uint32_t)_mm512_cmplt_epi32_mask(out[q][0], thr_v[q]) |
                            (uint32_t)_mm512_cmplt_epi32_mask(out[q][1], thr_v[q]) << 16;
            if (!mask) continue;
            mask &= avq_scan_group_mask(leaf, g);
            int32_t tmp[32];
            _mm512_storeu_si512(tmp, out[q][0]);
            _mm512_storeu_si512(tmp + 16, out[q][1]);
            avq_scan_push_mask(&thr[q], leaf, 32 * g, mask, tmp);
            avq_scan_threshold_refresh(&thr[q]);
            thr_v[q] = _mm512_set1_epi32(thr[q].thr);
        }
    }
}

WITH_VNNI static void lut16_topk_avx512(const avq_scan_leaf *leaf, size_t nq,
                              const avq_scan_query *queries) {
    switch (nq) {
    case 1: topk_nq(leaf, 1, queries); break;
    case 2: topk_nq(leaf, 2, queries); break;
    case 3: topk_nq(leaf, 3, queries); break;
    case 4: topk_nq(leaf, 4, queries); break;
    case 5: topk_nq(leaf, 5, queries); break;
    default: topk_nq(leaf, 6, queries); break;
    }
}

/* ---- LUT256: packed 8-bit codes ----------------------------------------- */

/* Row m of two consecutive groups (pack.h) fills one register: bytes 0..31
 * the first group's, 32..63 the second's.  A block's 256-entry table is
 * four 64-byte registers T0..T3; vpermi2b looks up 128 entries by the low 7
 * bits of each code, so one permute over (T0, T1) and one over (T2, T3),
 * blended by the code's top bit, give the 64 table bytes.  They are added
 * as 16-bit lanes, even and odd bytes apart: with the layout's byte order
 * the even bytes are points 0..15 and the odd ones points 16..31 of each
 * group, in order, so widening to 32 bits needs no shuffle.  A 16-bit sum
 * of up to 256 bytes cannot wrap (255 * 256 < 2^16); longer codes are
 * summed in chunks of AVQ_SCAN_CHUNK_BLOCKS blocks widened into int32
 * between chunks.  Sums are therefore exact, like the scalar kernel's.
 *
 * Per block and 64 points: 2 permutes, 1 mask extraction, 1 blend, 1 and,
 * 1 shift, 2 adds, and 4 table loads shared by the two groups (the scalar
 * kernel spends 64 dependent loads on the same work). */

/* One query's int32 sums of a pair of groups: [0] points 0..15 and [1]
 * 16..31 of the first group, [2] and [3] the same of the second. */
typedef struct {
    __m512i s[4];
} pair_sums;

INLINE void lut256_chunk(__m512i codes, __mmask64 top, const uint8_t *lut, __m512i *even,
                         __m512i *odd) {
    const __m512i low8 = _mm512_set1_epi16(0x00FF);
    __m512i lo = _mm512_permutex2var_epi8(_mm512_loadu_si512(lut), codes,
                                          _mm512_loadu_si512(lut + 64));
    __m512i hi = _mm512_permutex2var_epi8(_mm512_loadu_si512(lut + 128), codes,
                                          _mm512_loadu_si512(lut + 192));
    __m512i v = _mm512_mask_blend_epi8(top, lo, hi);
    *even = _mm512_add_epi16(*even, _mm512_and_si512(v, low8));
    *odd = _mm512_add_epi16(*odd, _mm512_srli_epi16(v, 8));
}

/* Widen one chunk's 16-bit sums into the int32 sums. */
INLINE void widen_into(pair_sums *p, __m512i even, __m512i odd) {
    p->s[0] = _mm512_add_epi32(p->s[0], _mm512_cvtepu16_epi32(_mm512_castsi512_si256(even)));
    p->s[1] = _mm512_add_epi32(p->s[1], _mm512_cvtepu16_epi32(_mm512_castsi512_si256(odd)));
    p->s[2] = _mm512_add_epi32(p->s[2], _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(even, 1)));
    p->s[3] = _mm512_add_epi32(p->s[3], _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(odd, 1)));
}

/* The sums of groups g0 and g1 (g1 may repeat g0 when there is no second
 * group; its sums are then ignored) for nq queries, minus 128 per block. */
INLINE void lut256_pair_sums(const uint8_t *g0, const uint8_t *g1, size_t K,
                             const uint8_t *const *luts, int nq,
                             pair_sums out[AVQ_SCAN_MAX_BATCH]) {
    const uint8_t *l0 = luts[0], *l1 = nq > 1 ? luts[1] : l0, *l2 = nq > 2 ? luts[2] : l0;
    for (int q = 0; q < nq; q++)
        for (int i = 0; i < 4; i++) out[q].s[i] = _mm512_setzero_si512();
    for (size_t start = 0; start < K; start += AVQ_SCAN_CHUNK_BLOCKS) {
        size_t end = K - start > AVQ_SCAN_CHUNK_BLOCKS ? start + AVQ_SCAN_CHUNK_BLOCKS : K;
        __m512i e0 = _mm512_setzero_si512(), o0 = e0, e1 = e0, o1 = e0, e2 = e0, o2 = e0;
        for (size_t m = start; m < end; m++) {
            __m512i codes = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(g0 + 32 * m))),
                _mm256_loadu_si256((const __m256i *)(g1 + 32 * m)), 1);
            __mmask64 top = _mm512_movepi8_mask(codes);
            lut256_chunk(codes, top, l0 + 256 * m, &e0, &o0);
            if (nq > 1) lut256_chunk(codes, top, l1 + 256 * m, &e1, &o1);
            if (nq > 2) lut256_chunk(codes, top, l2 + 256 * m, &e2, &o2);
        }
        widen_into(&out[0], e0, o0);
        if (nq > 1) widen_into(&out[1], e1, o1);
        if (nq > 2) widen_into(&out[2], e2, o2);
    }
    const __m512i minus_bias = _mm512_set1_epi32(-128 * (int32_t)K);
    for (int q = 0; q < nq; q++)
        for (int i = 0; i < 4; i++) out[q].s[i] = _mm512_add_epi32(out[q].s[i], minus_bias);
}

INLINE void lut256_sums32_nq(const uint8_t *packed, size_t n, size_t K, int nq,
                             const uint8_t *const *luts, int32_t *const *sums) {
    size_t groups = (n + 31) / 32, group_bytes = 32 * K;
    pair_sums out[AVQ_SCAN_MAX_BATCH];
    for (size_t g = 0; g < groups; g += 2) {
        bool two = g + 1 < groups;
        const uint8_t *g0 = packed + g * group_bytes;
        lut256_pair_sums(g0, two ? g0 + group_bytes : g0, K, luts, nq, out);
        for (size_t h = 0; h < (two ? 2u : 1u); h++) {
            __mmask32 keep = valid_points(n, g + h);
            for (int q = 0; q < nq; q++) {
                int32_t *dst = sums[q] + 32 * (g + h);
                _mm512_mask_storeu_epi32(dst, (__mmask16)keep, out[q].s[2 * h]);
                _mm512_mask_storeu_epi32(dst + 16, (__mmask16)(keep >> 16), out[q].s[2 * h + 1]);
            }
        }
    }
}

static void lut256_sums32_avx512(const uint8_t *packed, size_t n, size_t K, size_t nq,
                                 const uint8_t *const *luts, int32_t *const *sums) {
    if (nq == 1) lut256_sums32_nq(packed, n, K, 1, luts, sums);
    else if (nq == 2) lut256_sums32_nq(packed, n, K, 2, luts, sums);
    else lut256_sums32_nq(packed, n, K, 3, luts, sums);
}

/* Group g's candidates for one query, from its two sum registers, exactly
 * as the other kernels push them (threshold refreshed after the group). */
INLINE void push_group32(avq_scan_threshold *t, __m512i *thr_v, const avq_scan_leaf *leaf,
                         size_t g, __m512i lo, __m512i hi) {
    uint32_t mask = (uint32_t)_mm512_cmplt_epi32_mask(lo, *thr_v) |
                    (uint32_t)_mm512_cmplt_epi32_mask(hi, *thr_v) << 16;
    if (!mask) return;
    mask &= avq_scan_group_mask(leaf, g);
    int32_t tmp[32];
    _mm512_storeu_si512(tmp, lo);
    _mm512_storeu_si512(tmp + 16, hi);
    avq_scan_push_mask(t, leaf, 32 * g, mask, tmp);
    avq_scan_threshold_refresh(t);
    *thr_v = _mm512_set1_epi32(t->thr);
}

INLINE void lut256_topk_nq(const avq_scan_leaf *leaf, int nq, const avq_scan_query *queries) {
    size_t K = leaf->K, groups = (leaf->n + 31) / 32, group_bytes = 32 * K;
    avq_scan_threshold thr[AVQ_SCAN_MAX_BATCH];
    __m512i thr_v[AVQ_SCAN_MAX_BATCH];
    const uint8_t *luts[AVQ_SCAN_MAX_BATCH];
    for (int q = 0; q < nq; q++) {
        avq_scan_threshold_init(&thr[q], &queries[q], K);
        thr_v[q] = _mm512_set1_epi32(thr[q].thr);
        luts[q] = queries[q].lut8;
    }
    pair_sums out[AVQ_SCAN_MAX_BATCH];
    for (size_t g = 0; g < groups; g += 2) {
        bool two = g + 1 < groups;
        avq_scan_prefetch_ahead(leaf, g, groups, group_bytes);
        avq_scan_prefetch_ahead(leaf, g + 1, groups, group_bytes);
        const uint8_t *g0 = leaf->codes + g * group_bytes;
        lut256_pair_sums(g0, two ? g0 + group_bytes : g0, K, luts, nq, out);
        /* group g for every query, then group g + 1: the order of the
         * one-group kernels, so every threshold refresh happens at the same
         * point and the same candidates are pushed */
        for (int q = 0; q < nq; q++)
            push_group32(&thr[q], &thr_v[q], leaf, g, out[q].s[0], out[q].s[1]);
        if (two)
            for (int q = 0; q < nq; q++)
                push_group32(&thr[q], &thr_v[q], leaf, g + 1, out[q].s[2], out[q].s[3]);
    }
}

static void lut256_topk_avx512(const avq_scan_leaf *leaf, size_t nq,
                               const avq_scan_query *queries) {
    if (nq == 1) lut256_topk_nq(leaf, 1, queries);
    else if (nq == 2) lut256_topk_nq(leaf, 2, queries);
    else lut256_topk_nq(leaf, 3, queries);
}

/* ---- float kernels ------------------------------------------------------ */

INLINE __mmask16 tail_mask(size_t left) {
    return (__mmask16)((1u << (left < 16 ? left : 16)) - 1u);
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

/* The four accumulators' totals: per 128-bit lane s01 = [a0 a1 a0 a1] pair
 * sums, s23 likewise, then s = [a0 a1 a2 a3]; then the four lanes are
 * added. */
INLINE __m128 sum4_lanes(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    __m512 s01 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
    __m512 s23 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
    __m512 s = _mm512_add_ps(_mm512_shuffle_ps(s01, s23, 0x44), _mm512_shuffle_ps(s01, s23, 0xEE));
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1)));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* 16 components of a row from t on: floats, or (half) IEEE halves, which
 * vcvtph2ps converts exactly -- so a float16 row is scored with exactly the
 * float kernel's arithmetic on its converted values.  `half` is a constant
 * at every call, so each kernel compiles to one kind of load. */
INLINE __m512 row16(const void *r, size_t t, bool half) {
    return half ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)r + t)))
                : _mm512_loadu_ps((const float *)r + t);
}

INLINE __m512 row16_tail(__mmask16 k, const void *r, size_t t, bool half) {
    return half ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, (const uint16_t *)r + t))
                : _mm512_maskz_loadu_ps(k, (const float *)r + t);
}

/* Four rows at once: four accumulators, then one transposing reduction
 * for the four sums instead of a full horizontal reduction per row (which
 * cost as much as the multiply-adds at d = 100).  The query's loads are
 * shared by the four rows. */
INLINE __m128 dot4_rows(const float *q, const void *r0, const void *r1, const void *r2,
                        const void *r3, size_t d, bool half) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t t = 0;
    for (; t + 16 <= d; t += 16) {
        __m512 qv = _mm512_loadu_ps(q + t);
        a0 = _mm512_fmadd_ps(qv, row16(r0, t, half), a0);
        a1 = _mm512_fmadd_ps(qv, row16(r1, t, half), a1);
        a2 = _mm512_fmadd_ps(qv, row16(r2, t, half), a2);
        a3 = _mm512_fmadd_ps(qv, row16(r3, t, half), a3);
    }
    if (t < d) {
        __mmask16 k = tail_mask(d - t);
        __m512 qv = _mm512_maskz_loadu_ps(k, q + t);
        a0 = _mm512_fmadd_ps(qv, row16_tail(k, r0, t, half), a0);
        a1 = _mm512_fmadd_ps(qv, row16_tail(k, r1, t, half), a1);
        a2 = _mm512_fmadd_ps(qv, row16_tail(k, r2, t, half), a2);
        a3 = _mm512_fmadd_ps(qv, row16_tail(k, r3, t, half), a3);
    }
    return sum4_lanes(a0, a1, a2, a3);
}

INLINE __m128 dot4_f32(const float *q, const float *r0, const float *r1, const float *r2,
                       const float *r3, size_t d) {
    return dot4_rows(q, r0, r1, r2, r3, d, false);
}

/* A lone row gets exactly the arithmetic it would get among four, so a
 * vector's score never depends on where it stands in a list (batch and
 * single searches, shards and one index must agree bit for bit). */
INLINE float dot1_f32(const float *q, const float *r, size_t d) {
    return _mm_cvtss_f32(dot4_f32(q, r, r, r, r, d));
}

static void dot_rows_avx512(const float *q, const float *rows, size_t n, size_t d,
                            float *out) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float *r = rows + i * d;
        _mm_storeu_ps(out + i, dot4_f32(q, r, r + d, r + 2 * d, r + 3 * d, d));
    }
    for (; i < n; i++) out[i] = dot1_f32(q, rows + i * d, d);
}

static void dot_gather_avx512(const float *q, const float *const *rows, size_t d,
                              size_t n, float *out) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        _mm_storeu_ps(out + i, dot4_f32(q, rows[i], rows[i + 1], rows[i + 2], rows[i + 3], d));
    for (; i < n; i++) out[i] = dot1_f32(q, rows[i], d);
}

static void dot_gather_f16_avx512(const float *q, const uint16_t *const *rows, size_t d,
                                  size_t n, float *out) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        _mm_storeu_ps(out + i,
                      dot4_rows(q, rows[i], rows[i + 1], rows[i + 2], rows[i + 3], d, true));
    for (; i < n; i++) {
        const uint16_t *r = rows[i];
        out[i] = _mm_cvtss_f32(dot4_rows(q, r, r, r, r, d, true));
    }
}

static void dot_rows_i8_avx512(const float *q, const int8_t *rows, size_t n, size_t d,
                               float *out) {
    for (size_t i = 0; i < n; i++) out[i] = dot_i8(q, rows + i * d, d);
}

static void dot_gather_i8_avx512(const float *q, const int8_t *const *rows, size_t d,
                                 size_t n, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = dot_i8(q, rows[i], d);
}

/* ---- int8 center sketch ------------------------------------------------- */

/* One 64-byte load is 4 dimensions of 16 centers (centers.h); the query's 4
 * codes of those dimensions, broadcast, meet it in one vpdpbusd.  vpdpbusd
 * multiplies unsigned by signed bytes, so the query goes in as qc + 128 and
 * 128 x (the center's code sum) comes off at the end: exact in int32.  Four
 * blocks at a time keep four accumulation chains in flight. */
WITH_VNNI INLINE __m512i sketch_query4(const int8_t *qc, size_t g) {
    int32_t word;
    memcpy(&word, qc + 4 * g, 4);
    return _mm512_xor_si512(_mm512_set1_epi32(word), _mm512_set1_epi8((char)0x80));
}

WITH_VNNI INLINE void sketch_finish(__m512i acc, const int32_t *sums, int32_t *out) {
    __m512i offset = _mm512_slli_epi32(_mm512_loadu_si512(sums), 7);
    _mm512_storeu_si512(out, _mm512_sub_epi32(acc, offset));
}

WITH_VNNI static void sketch_dots_avx512(const int8_t *qc, const int8_t *codes,
                                         const int32_t *code_sums, size_t blocks, size_t dim4,
                                         int32_t *out) {
    size_t groups = dim4 / 4, stride = 64 * groups, b = 0;
    for (; b + 4 <= blocks; b += 4) {
        const int8_t *c = codes + b * stride;
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t g = 0; g < groups; g++) {
            __m512i qv = sketch_query4(qc, g);
            a0 = _mm512_dpbusd_epi32(a0, qv, _mm512_loadu_si512(c + 64 * g));
            a1 = _mm512_dpbusd_epi32(a1, qv, _mm512_loadu_si512(c + stride + 64 * g));
            a2 = _mm512_dpbusd_epi32(a2, qv, _mm512_loadu_si512(c + 2 * stride + 64 * g));
            a3 = _mm512_dpbusd_epi32(a3, qv, _mm512_loadu_si512(c + 3 * stride + 64 * g));
        }
        sketch_finish(a0, code_sums + 16 * b, out + 16 * b);
        sketch_finish(a1, code_sums + 16 * (b + 1), out + 16 * (b + 1));
        sketch_finish(a2, code_sums + 16 * (b + 2), out + 16 * (b + 2));
        sketch_finish(a3, code_sums + 16 * (b + 3), out + 16 * (b + 3));
    }
    for (; b < blocks; b++) {
        const int8_t *c = codes + b * stride;
        __m512i a0 = _mm512_setzero_si512();
        for (size_t g = 0; g < groups; g++)
            a0 = _mm512_dpbusd_epi32(a0, sketch_query4(qc, g), _mm512_loadu_si512(c + 64 * g));
        sketch_finish(a0, code_sums + 16 * b, out + 16 * b);
    }
}

const avq_kernels avq_kernels_avx512 = {
    .isa = "avx512",
    .lut16_sums16 = lut16_sums16_avx512,
    .lut16_sums32 = lut16_sums32_avx512,
    .lut16_topk = lut16_topk_avx512,
    .lut16_topk_batch = AVQ_SCAN_WIDE_BATCH,
    .lut256_sums32 = lut256_sums32_avx512,
    .lut256_topk = lut256_topk_avx512,
    .dot_rows = dot_rows_avx512,
    .dot_gather = dot_gather_avx512,
    .dot_rows_i8 = dot_rows_i8_avx512,
    .dot_gather_i8 = dot_gather_i8_avx512,
    .dot_gather_f16 = dot_gather_f16_avx512,
    .sketch_dots = sketch_dots_avx512,
    .lut_block = avq_lut_block_avx512,
    .lut_quantize_block = avq_lut_quantize_block_avx512,
    .lut_block_range = avq_lut_block_range_avx512,
};

#endif /* __x86_64__ */
