/*
 * scan.h -- the fast-scan kernels: what they compute, the table through which
 * the search reaches them, and the small pieces every ISA shares.
 *
 * The search never calls a kernel by name; it asks src/cpu.c for the table
 * of the chosen ISA (avq_kernels_get()) and calls through it.  All ISAs
 * produce bit-identical integer sums, and therefore identical thresholded
 * top-k results, to the scalar reference (tests/test_scan.c checks it); the
 * float kernels only agree to rounding.
 *
 * Integer conventions (lut.h): a point's sum is
 *   sum = sum_m lut8[m*C + code_m] - 128*K,
 * exact in int16 when K <= 256.  Any K is exact in the *32 variants and in
 * the top-k scans: the AVX2 kernel works modulo 2^16 inside chunks of <= 256
 * blocks (harmless, the chunk's sum fits int16) and widens to int32 between
 * chunks; scalar and AVX-512 accumulate in int32 throughout.
 *
 * Preconditions (checked by the callers, not in the hot path): K >= 1;
 * 1 <= nq <= AVQ_SCAN_MAX_BATCH (lut16_topk: <= its table's lut16_topk_batch);
 * 4-bit codes < 16; every pointer valid for
 * the sizes given; the *16 variants need K <= 256.  n = 0 is a no-op.
 * Kernels never read outside the packed size (avq_pack_size) or the LUT.
 */
#ifndef AVQ_SCAN_H
#define AVQ_SCAN_H

#include "lut.h"
#include "topk.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Queries sharing each code load in a batched scan (register budget of AVX2:
 * 4 accumulators per query).  The lut16 top-k scan of some ISAs takes more
 * (avq_kernels.lut16_topk_batch, at most AVQ_SCAN_WIDE_BATCH: AVX-512 has 32
 * registers, and a batched search whose leaves are shared by many queries
 * reads each code load once for all of them). */
enum { AVQ_SCAN_MAX_BATCH = 3, AVQ_SCAN_WIDE_BATCH = 6, AVQ_SCAN_CHUNK_BLOCKS = 256 };

/* One leaf as the scan sees it.  `codes` is the packed layout (pack.h) of
 * its code width: 4-bit for the lut16 kernels, 8-bit for lut256. */
typedef struct {
    const uint8_t *codes;
    size_t n, K;
    const int64_t *ids; /* id of local point i, or NULL: id_base + i */
    int64_t id_base;
    const uint32_t *alive; /* bit i of word g: point 32g+i is live; NULL = all */
} avq_scan_leaf;

/* One query in a thresholded scan.  dist = avq_lut8_dist(base, scale, sum)
 * with base = leaf bias + avq_lut8_info.offset (so it changes per leaf). */
typedef struct {
    const uint8_t *lut8; /* K x 16 (lut16) or K x 256 (lut256) */
    double base, scale;
    avq_topk *topk;      /* candidates with sum < threshold are pushed here */
} avq_scan_query;

typedef void (*avq_lut16_sums16_fn)(const uint8_t *packed, size_t n, size_t K, size_t nq,
                                    const uint8_t *const *luts, int16_t *const *sums);
typedef void (*avq_sums32_fn)(const uint8_t *codes, size_t n, size_t K, size_t nq,
                              const uint8_t *const *luts, int32_t *const *sums);
typedef void (*avq_topk_scan_fn)(const avq_scan_leaf *leaf, size_t nq,
                                 const avq_scan_query *queries);
typedef void (*avq_dot_rows_fn)(const float *q, const float *rows, size_t n, size_t d,
                                float *out);
typedef void (*avq_dot_gather_fn)(const float *q, const float *const *rows, size_t d,
                                  size_t n, float *out);
typedef void (*avq_dot_rows_i8_fn)(const float *q, const int8_t *rows, size_t n, size_t d,
                                   float *out);
typedef void (*avq_dot_gather_i8_fn)(const float *q, const int8_t *const *rows, size_t d,
                                     size_t n, float *out);
typedef void (*avq_dot_gather_f16_fn)(const float *q, const uint16_t *const *rows, size_t d,
                                      size_t n, float *out);

/* out[i] = sum_j qc[j] * code_i[j] for the 16 * blocks centers of an int8
 * center sketch (layout in centers.h; code_sums its per-center code sums),
 * exact in int32 on every ISA. */
typedef void (*avq_sketch_dots_fn)(const int8_t *qc, const int8_t *codes,
                                   const int32_t *code_sums, size_t blocks, size_t dim4,
                                   int32_t *out);

typedef void (*avq_lut_block_fn)(const float *q, const float *centers, size_t C, size_t len,
                                 bool l2, float *out);
typedef void (*avq_lut_quantize_block_fn)(const float *lut, size_t C, float lo, double scale,
                                          uint8_t *out);
typedef bool (*avq_lut_block_range_fn)(const float *v, size_t C, float *lo, float *hi);

typedef struct {
    const char *isa; /* "scalar", "avx2", "avx512", "neon" */
    /* 4-bit codes, packed layout.  sums[q][i] for the n points. */
    avq_lut16_sums16_fn lut16_sums16; /* K <= 256 */
    avq_sums32_fn lut16_sums32;       /* any K */
    /* Push every point whose sum is below the query's integer threshold
     * (derived from its topk's threshold, re-derived after each group of 32
     * points) into that query's topk, as (avq_lut8_dist(...), id). */
    avq_topk_scan_fn lut16_topk;
    size_t lut16_topk_batch; /* the most queries lut16_topk takes at once */
    /* 8-bit codes, packed 8-bit layout; the same outputs with C = 256. */
    avq_sums32_fn lut256_sums32;
    avq_topk_scan_fn lut256_topk;
    /* out[i] = <q, row i> for rows n x d row-major, or for the rows at
     * rows[0..n) (dot_gather: re-ranking candidates of many leaves).  The i8 variants
     * read int8 rows; per-dimension scales are folded into q by the caller.
     * dot_gather_f16 reads IEEE half rows (vecmath.h), converted exactly. */
    avq_dot_rows_fn dot_rows;
    avq_dot_gather_fn dot_gather;
    avq_dot_rows_i8_fn dot_rows_i8;
    avq_dot_gather_i8_fn dot_gather_i8;
    avq_dot_gather_f16_fn dot_gather_f16;
    avq_sketch_dots_fn sketch_dots; /* leaf selection's first pass (centers.h) */
    /* One block of a query's LUT and its quantization: the same bits as
     * avq_lut_block_scalar / avq_lut_quantize_block_scalar (lut.h). */
    avq_lut_block_fn lut_block;
    avq_lut_quantize_block_fn lut_quantize_block;
    avq_lut_block_range_fn lut_block_range; /* equal numbers, see lut.h */
} avq_kernels;

extern const avq_kernels avq_kernels_scalar;
#if defined(__x86_64__)
extern const avq_kernels avq_kernels_avx2;
extern const avq_kernels avq_kernels_avx512;
/* src/simd/lut_avx2.c, src/simd/lut_avx512.c */
void avq_lut_block_avx2(const float *q, const float *centers, size_t C, size_t len, bool l2,
                        float *out);
void avq_lut_quantize_block_avx2(const float *lut, size_t C, float lo, double scale,
                                 uint8_t *out);
bool avq_lut_block_range_avx2(const float *v, size_t C, float *lo, float *hi);
void avq_lut_block_avx512(const float *q, const float *centers, size_t C, size_t len, bool l2,
                          float *out);
void avq_lut_quantize_block_avx512(const float *lut, size_t C, float lo, double scale,
                                   uint8_t *out);
bool avq_lut_block_range_avx512(const float *v, size_t C, float *lo, float *hi);
#endif
#if defined(__aarch64__)
extern const avq_kernels avq_kernels_neon; /* src/simd/scan_neon.c */
#endif

/* ---- shared by the thresholded scans of every ISA ---------------------- */

/* A query's integer threshold, kept in step with its topk's float one. */
typedef struct {
    const avq_scan_query *query;
    float eps;   /* the topk threshold `thr` was derived from */
    int32_t thr; /* sums < thr are pushed */
    int32_t sum_min, sum_max;
} avq_scan_threshold;

static inline void avq_scan_threshold_refresh(avq_scan_threshold *t) {
    float eps = t->query->topk->worst_dist;
    if (eps == t->eps) return; /* the common case once the buffer is full */
    t->eps = eps;
    t->thr = avq_lut8_threshold(eps, t->query->base, t->query->scale, t->sum_min,
                                t->sum_max);
}

static inline void avq_scan_threshold_init(avq_scan_threshold *t, const avq_scan_query *q,
                                           size_t K) {
    t->query = q;
    t->sum_min = -128 * (int32_t)K;
    t->sum_max = 127 * (int32_t)K;
    t->eps = q->topk->worst_dist;
    t->thr = avq_lut8_threshold(t->eps, q->base, q->scale, t->sum_min, t->sum_max);
}

static inline int64_t avq_scan_id(const avq_scan_leaf *leaf, size_t i) {
    return leaf->ids ? leaf->ids[i] : leaf->id_base + (int64_t)i;
}

/* Push the points of a group whose bit is set in `mask` (bit s = point
 * first + s, sums[s] its sum). */
static inline void avq_scan_push_mask(const avq_scan_threshold *t, const avq_scan_leaf *leaf,
                                      size_t first, uint32_t mask, const int32_t *sums) {
    while (mask) {
        unsigned s = (unsigned)__builtin_ctz(mask);
        mask &= mask - 1;
        avq_topk_push(t->query->topk,
                      avq_lut8_dist(t->query->base, t->query->scale, sums[s]),
                      avq_scan_id(leaf, first + s));
    }
}

/* The same for a group whose sums are int16 (K <= 256). */
static inline void avq_scan_push_mask16(const avq_scan_threshold *t, const avq_scan_leaf *leaf,
                                        size_t first, uint32_t mask, const int16_t *sums) {
    while (mask) {
        unsigned s = (unsigned)__builtin_ctz(mask);
        mask &= mask - 1;
        avq_topk_push(t->query->topk,
                      avq_lut8_dist(t->query->base, t->query->scale, sums[s]),
                      avq_scan_id(leaf, first + s));
    }
}

/* Bits [0, count) set, for masking the padded lanes of a last group. */
static inline uint32_t avq_scan_valid_mask(size_t count) {
    return count >= 32 ? 0xFFFFFFFFu : (uint32_t)((1u << count) - 1u);
}

/* The points of group g that may be pushed: not padding, and live. */
static inline uint32_t avq_scan_group_mask(const avq_scan_leaf *leaf, size_t g) {
    uint32_t m = avq_scan_valid_mask(leaf->n - 32 * g);
    return leaf->alive ? m & leaf->alive[g] : m;
}

/* The thresholded scans request the code bytes of the group
 * AVQ_SCAN_PREFETCH_GROUPS ahead of the one they sum.  A leaf is a short
 * stream (tens of KB) that starts cold, and at 2M points the codes no longer
 * sit in the caches a query scan touches: on an Intel Xeon (2026-12-02,
 * sif-2m, 156 of 1,414 leaves) requesting 4 groups ahead took the query
 * from 1,780-2,330 to 2,080-2,880 queries/s, 2 and 8 groups gained less;
 * on GloVe (331k points) it was within the noise, slightly ahead. */
enum { AVQ_SCAN_PREFETCH_GROUPS = 4 };

/* Requests group g + AVQ_SCAN_PREFETCH_GROUPS of `groups` groups of
 * group_bytes each, when there is one.  A hint only: no fault, no result
 * changes. */
static inline void avq_scan_prefetch_ahead(const avq_scan_leaf *leaf, size_t g, size_t groups,
                                           size_t group_bytes) {
    if (g + AVQ_SCAN_PREFETCH_GROUPS >= groups) return;
    const char *p = (const char *)leaf->codes + (g + AVQ_SCAN_PREFETCH_GROUPS) * group_bytes;
    for (size_t b = 0; b < group_bytes; b += 64) __builtin_prefetch(p + b, 0, 3);
}

/* Scalar reference kernels, also the building blocks of the SIMD files'
 * slow paths. */
void avq_lut16_sums16_scalar(const uint8_t *packed, size_t n, size_t K, size_t nq,
                             const uint8_t *const *luts, int16_t *const *sums);
void avq_lut16_sums32_scalar(const uint8_t *packed, size_t n, size_t K, size_t nq,
                             const uint8_t *const *luts, int32_t *const *sums);
void avq_lut16_topk_scalar(const avq_scan_leaf *leaf, size_t nq,
                           const avq_scan_query *queries);
void avq_lut256_sums32_scalar(const uint8_t *codes, size_t n, size_t K, size_t nq,
                              const uint8_t *const *luts, int32_t *const *sums);
void avq_lut256_topk_scalar(const avq_scan_leaf *leaf, size_t nq,
                            const avq_scan_query *queries);
void avq_dot_rows_scalar(const float *q, const float *rows, size_t n, size_t d, float *out);
void avq_dot_gather_scalar(const float *q, const float *const *rows, size_t d, size_t n,
                           float *out);
void avq_dot_rows_i8_scalar(const float *q, const int8_t *rows, size_t n, size_t d,
                            float *out);
void avq_dot_gather_i8_scalar(const float *q, const int8_t *const *rows, size_t d, size_t n,
                              float *out);
void avq_dot_gather_f16_scalar(const float *q, const uint16_t *const *rows, size_t d, size_t n,
                               float *out);
void avq_sketch_dots_scalar(const int8_t *qc, const int8_t *codes, const int32_t *code_sums,
                            size_t blocks, size_t dim4, int32_t *out);

#endif
