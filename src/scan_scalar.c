/*
 * scan_scalar.c -- the reference kernels: the definition of what every SIMD
 * kernel must compute bit for bit, and the fallback for CPUs without AVX2
 * (and for ARM, where no SIMD kernel exists yet).
 *
 * Written for obviousness first: sums are exact int32 (no modulo tricks), a
 * group's 32 sums are computed into an array and then filtered.  Still laid
 * out so a compiler does a decent job: the inner loop over the 16 bytes of
 * one block row is branch-free and feeds 32 independent accumulators, and
 * the thresholded scans re-derive their integer threshold per group of 32
 * points exactly as the SIMD kernels do, so all ISAs push the same
 * candidates in the same order.
 */
#include "scan.h"
#include "vecmath.h"

#include "pack.h"

#include <string.h>

/* The 32 sums of one packed group (points beyond the leaf are padding).
 * Point-major order (two points per byte column, all K blocks) keeps each
 * sum in a register; a block-major loop over 32 accumulators makes the
 * compiler keep them in memory or emulate gathers. */
static void lut16_group_sums(const uint8_t *group, size_t K, const uint8_t *lut,
                             int32_t sums[32]) {
    for (int s = 0; s < 16; s++) {
        int32_t lo = 0, hi = 0;
        for (size_t m = 0; m < K; m++) {
            uint8_t byte = group[16 * m + (size_t)s];
            lo += lut[16 * m + (byte & 15)];
            hi += lut[16 * m + (byte >> 4)];
        }
        sums[s] = lo - 128 * (int32_t)K;
        sums[s + 16] = hi - 128 * (int32_t)K;
    }
}

static size_t group_count(size_t n) { return (n + 31) / 32; }

static size_t points_in_group(size_t n, size_t g) {
    size_t left = n - 32 * g;
    return left < 32 ? left : 32;
}

void avq_lut16_sums32_scalar(const uint8_t *packed, size_t n, size_t K, size_t nq,
                             const uint8_t *const *luts, int32_t *const *sums) {
    int32_t group[32];
    for (size_t g = 0; g < group_count(n); g++)
        for (size_t q = 0; q < nq; q++) {
            lut16_group_sums(packed + g * 16 * K, K, luts[q], group);
            memcpy(sums[q] + 32 * g, group, points_in_group(n, g) * sizeof(int32_t));
        }
}

void avq_lut16_sums16_scalar(const uint8_t *packed, size_t n, size_t K, size_t nq,
                             const uint8_t *const *luts, int16_t *const *sums) {
    int32_t group[32];
    for (size_t g = 0; g < group_count(n); g++)
        for (size_t q = 0; q < nq; q++) {
            lut16_group_sums(packed + g * 16 * K, K, luts[q], group);
            for (size_t s = 0; s < points_in_group(n, g); s++)
                sums[q][32 * g + s] = (int16_t)group[s];
        }
}

/* Filter one group's sums against a threshold and push the survivors. */
static void push_group(avq_scan_threshold *t, const avq_scan_leaf *leaf, size_t g,
                       const int32_t sums[32]) {
    uint32_t mask = 0;
    for (int s = 0; s < 32; s++) mask |= (uint32_t)(sums[s] < t->thr) << s;
    mask &= avq_scan_group_mask(leaf, g);
    if (mask) {
        avq_scan_push_mask(t, leaf, 32 * g, mask, sums);
        avq_scan_threshold_refresh(t);
    }
}

void avq_lut16_topk_scalar(const avq_scan_leaf *leaf, size_t nq,
                           const avq_scan_query *queries) {
    avq_scan_threshold thr[AVQ_SCAN_MAX_BATCH];
    int32_t sums[32];
    for (size_t q = 0; q < nq; q++) avq_scan_threshold_init(&thr[q], &queries[q], leaf->K);
    for (size_t g = 0; g < group_count(leaf->n); g++)
        for (size_t q = 0; q < nq; q++) {
            lut16_group_sums(leaf->codes + g * 16 * leaf->K, leaf->K, queries[q].lut8, sums);
            push_group(&thr[q], leaf, g, sums);
        }
}

/* ---- LUT256: packed 8-bit codes (pack.h) -------------------------------- */

/* The 32 sums of one packed 8-bit group, byte column by byte column (byte
 * 2s + h of a row is point s + 16h): four independent chains per point,
 * since table lookups are load-latency bound. */
static void lut256_group_sums(const uint8_t *group, size_t K, const uint8_t *lut,
                              int32_t sums[32]) {
    for (size_t col = 0; col < 32; col++) {
        int32_t a = 0, b = 0, c = 0, d = 0;
        size_t m = 0;
        for (; m + 4 <= K; m += 4) {
            a += lut[(m + 0) * 256 + group[(m + 0) * 32 + col]];
            b += lut[(m + 1) * 256 + group[(m + 1) * 32 + col]];
            c += lut[(m + 2) * 256 + group[(m + 2) * 32 + col]];
            d += lut[(m + 3) * 256 + group[(m + 3) * 32 + col]];
        }
        for (; m < K; m++) a += lut[m * 256 + group[m * 32 + col]];
        sums[col / 2 + 16 * (col % 2)] = a + b + c + d - 128 * (int32_t)K;
    }
}

void avq_lut256_sums32_scalar(const uint8_t *packed, size_t n, size_t K, size_t nq,
                              const uint8_t *const *luts, int32_t *const *sums) {
    int32_t group[32];
    for (size_t g = 0; g < group_count(n); g++)
        for (size_t q = 0; q < nq; q++) {
            lut256_group_sums(packed + g * 32 * K, K, luts[q], group);
            memcpy(sums[q] + 32 * g, group, points_in_group(n, g) * sizeof(int32_t));
        }
}

void avq_lut256_topk_scalar(const avq_scan_leaf *leaf, size_t nq,
                            const avq_scan_query *queries) {
    avq_scan_threshold thr[AVQ_SCAN_MAX_BATCH];
    int32_t sums[32];
    size_t K = leaf->K;
    for (size_t q = 0; q < nq; q++) avq_scan_threshold_init(&thr[q], &queries[q], K);
    for (size_t g = 0; g < group_count(leaf->n); g++)
        for (size_t q = 0; q < nq; q++) {
            lut256_group_sums(leaf->codes + g * 32 * K, K, queries[q].lut8, sums);
            push_group(&thr[q], leaf, g, sums);
        }
}

/* ---- float kernels ------------------------------------------------------ */

/* One dot product for every stored row kind: float, int8 (scales folded
 * into the query by the caller) and IEEE half (converted exactly), with the
 * same four-way summation, so a float16 row scores exactly as its converted
 * floats would.  `kind` is a constant at every call. */
enum { ROW_F32, ROW_I8, ROW_F16 };

static inline float row1(const void *b, size_t t, int kind) {
    return kind == ROW_F32  ? ((const float *)b)[t]
           : kind == ROW_I8 ? (float)((const int8_t *)b)[t]
                            : avq_float_from_half(((const uint16_t *)b)[t]);
}

static inline float dot_row(const float *a, const void *b, size_t d, int kind) {
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    size_t t = 0;
    for (; t + 4 <= d; t += 4) {
        s0 += a[t] * row1(b, t, kind);
        s1 += a[t + 1] * row1(b, t + 1, kind);
        s2 += a[t + 2] * row1(b, t + 2, kind);
        s3 += a[t + 3] * row1(b, t + 3, kind);
    }
    for (; t < d; t++) s0 += a[t] * row1(b, t, kind);
    return (s0 + s1) + (s2 + s3);
}

static float dot_f32(const float *a, const float *b, size_t d) { return dot_row(a, b, d, ROW_F32); }
static float dot_i8(const float *a, const int8_t *b, size_t d) { return dot_row(a, b, d, ROW_I8); }
static float dot_f16(const float *a, const uint16_t *b, size_t d) {
    return dot_row(a, b, d, ROW_F16);
}

void avq_dot_rows_scalar(const float *q, const float *rows, size_t n, size_t d, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = dot_f32(q, rows + i * d, d);
}

void avq_dot_gather_scalar(const float *q, const float *const *rows, size_t d, size_t n,
                           float *out) {
    for (size_t i = 0; i < n; i++) out[i] = dot_f32(q, rows[i], d);
}

void avq_dot_rows_i8_scalar(const float *q, const int8_t *rows, size_t n, size_t d,
                            float *out) {
    for (size_t i = 0; i < n; i++) out[i] = dot_i8(q, rows + i * d, d);
}

void avq_dot_gather_i8_scalar(const float *q, const int8_t *const *rows, size_t d,
                              size_t n, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = dot_i8(q, rows[i], d);
}

void avq_dot_gather_f16_scalar(const float *q, const uint16_t *const *rows, size_t d, size_t n,
                               float *out) {
    for (size_t i = 0; i < n; i++) out[i] = dot_f16(q, rows[i], d);
}

void avq_sketch_dots_scalar(const int8_t *qc, const int8_t *codes, const int32_t *code_sums,
                            size_t blocks, size_t dim4, int32_t *out) {
    (void)code_sums;
    size_t groups = dim4 / 4;
    for (size_t b = 0; b < blocks; b++) {
        int32_t acc[16] = {0};
        for (size_t g = 0; g < groups; g++) {
            const int8_t *c = codes + 64 * (b * groups + g);
            for (size_t i = 0; i < 16; i++)
                for (size_t t = 0; t < 4; t++) acc[i] += (int32_t)qc[4 * g + t] * c[4 * i + t];
        }
        memcpy(out + 16 * b, acc, sizeof acc);
    }
}

const avq_kernels avq_kernels_scalar = {
    .isa = "scalar",
    .lut16_sums16 = avq_lut16_sums16_scalar,
    .lut16_sums32 = avq_lut16_sums32_scalar,
    .lut16_topk = avq_lut16_topk_scalar,
    .lut16_topk_batch = AVQ_SCAN_MAX_BATCH,
    .lut256_sums32 = avq_lut256_sums32_scalar,
    .lut256_topk = avq_lut256_topk_scalar,
    .dot_rows = avq_dot_rows_scalar,
    .dot_gather = avq_dot_gather_scalar,
    .dot_rows_i8 = avq_dot_rows_i8_scalar,
    .dot_gather_i8 = avq_dot_gather_i8_scalar,
    .dot_gather_f16 = avq_dot_gather_f16_scalar,
    .sketch_dots = avq_sketch_dots_scalar,
    .lut_block = avq_lut_block_scalar,
    .lut_quantize_block = avq_lut_quantize_block_scalar,
    .lut_block_range = avq_lut_block_range_scalar,
};
