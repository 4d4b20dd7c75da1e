/*
 * test_scan.c -- lookup tables (suite lut) and the fast-scan kernels (suite
 * scan).
 *
 * The integer kernels of every ISA this CPU supports (scalar, AVX2, AVX-512
 * on x86-64; scalar and NEON on aarch64, run under qemu-aarch64 by
 * `make test-arm64`) are compared bit for bit
 * with a naive sum computed here from the UNPACKED codes (so the scalar
 * kernel is tested too, not trusted), over the shapes that break SIMD code:
 * partial groups, n < 32, odd K, K = 1, K > 256, 1..3 queries, tables of all
 * 0 and all 255.  The thresholded scans must return exactly the top-k of an
 * exact sort of the reference distances, with thresholds that admit none,
 * some or all points.  Float kernels are checked against double precision.
 */
#include <criterion/criterion.h>

#include "avq_internal.h"
#include "cpu.h"
#include "lut.h"
#include "pack.h"
#include "scan.h"
#include "topk.h"
#include "vecmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Every ISA of every build: those this build or CPU lacks are skipped (but
 * see scan.arch_kernels_present: the architecture's own must be there). */
static const char *const ISAS[] = {"scalar", "avx2", "avx512", "neon"};
enum { N_ISAS = 4 };

/* ---- fixtures ----------------------------------------------------------- */

typedef struct {
    size_t n, K, C;
    uint8_t *codes;  /* n x K unpacked */
    uint8_t *packed; /* the packed layout of its width (pack.h) */
} leaf_data;

static leaf_data make_leaf(size_t n, size_t K, size_t C, uint64_t seed) {
    leaf_data L = {n, K, C, malloc(n * K + 1), NULL};
    cr_assert(L.codes);
    for (size_t i = 0; i < n * K; i++) L.codes[i] = (uint8_t)(avq_rng_next(&seed) % C);
    int bits = C == 16 ? 4 : 8;
    L.packed = malloc(avq_pack_size(bits, n, K) + 1);
    cr_assert(L.packed);
    cr_assert_eq(avq_pack(bits, L.codes, n, K, L.packed), AVQ_OK);
    return L;
}

static void free_leaf(leaf_data *L) {
    free(L->codes);
    free(L->packed);
}

/* fill: -1 random bytes, else that constant */
static uint8_t *make_lut8(size_t K, size_t C, int fill, uint64_t seed) {
    uint8_t *lut = malloc(K * C);
    cr_assert(lut);
    for (size_t i = 0; i < K * C; i++)
        lut[i] = fill < 0 ? (uint8_t)avq_rng_next(&seed) : (uint8_t)fill;
    return lut;
}

static int32_t naive_sum(const leaf_data *L, const uint8_t *lut8, size_t i) {
    int32_t s = 0;
    for (size_t m = 0; m < L->K; m++) s += lut8[m * L->C + L->codes[i * L->K + m]];
    return s - 128 * (int32_t)L->K;
}

/* ---- all-sums kernels --------------------------------------------------- */

static void check_sums(const leaf_data *L, size_t nq, const uint8_t *const *luts) {
    int32_t *want[3], *got32[3];
    int16_t *got16[3];
    for (size_t q = 0; q < nq; q++) {
        want[q] = malloc(L->n * sizeof(int32_t) + 4);
        got32[q] = malloc(L->n * sizeof(int32_t) + 4);
        got16[q] = malloc(L->n * sizeof(int16_t) + 4);
        for (size_t i = 0; i < L->n; i++) want[q][i] = naive_sum(L, luts[q], i);
    }
    for (int a = 0; a < N_ISAS; a++) {
        const avq_kernels *k = avq_kernels_for(ISAS[a]);
        if (!k) continue;
        for (size_t q = 0; q < nq; q++) memset(got32[q], 0x5A, L->n * sizeof(int32_t));
        if (L->C == 16) k->lut16_sums32(L->packed, L->n, L->K, nq, luts, got32);
        else k->lut256_sums32(L->packed, L->n, L->K, nq, luts, got32);
        for (size_t q = 0; q < nq; q++)
            for (size_t i = 0; i < L->n; i++)
                cr_assert_eq(got32[q][i], want[q][i], "%s C=%zu sums32 n=%zu K=%zu nq=%zu q=%zu i=%zu",
                             ISAS[a], L->C, L->n, L->K, nq, q, i);
        if (L->C != 16 || L->K > AVQ_SCAN_CHUNK_BLOCKS) continue;
        k->lut16_sums16(L->packed, L->n, L->K, nq, luts, got16);
        for (size_t q = 0; q < nq; q++)
            for (size_t i = 0; i < L->n; i++)
                cr_assert_eq(got16[q][i], want[q][i], "%s sums16 n=%zu K=%zu nq=%zu q=%zu i=%zu",
                             ISAS[a], L->n, L->K, nq, q, i);
    }
    for (size_t q = 0; q < nq; q++) {
        free(want[q]);
        free(got32[q]);
        free(got16[q]);
    }
}

static void sums_case(size_t n, size_t K, size_t C, size_t nq, int fill, uint64_t seed) {
    leaf_data L = make_leaf(n, K, C, seed);
    uint8_t *luts[3];
    for (size_t q = 0; q < nq; q++) luts[q] = make_lut8(K, C, fill, seed * 3 + q);
    check_sums(&L, nq, (const uint8_t *const *)luts);
    for (size_t q = 0; q < nq; q++) free(luts[q]);
    free_leaf(&L);
}

Test(scan, lut16_sums_all_isas_match_reference) {
    static const size_t ns[] = {1, 7, 31, 32, 33, 95, 160, 1001};
    static const size_t Ks[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 25, 50, 63, 64, 100, 255, 256};
    uint64_t seed = 1;
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (size_t b = 0; b < sizeof Ks / sizeof *Ks; b++)
            for (size_t nq = 1; nq <= 3; nq++) sums_case(ns[a], Ks[b], 16, nq, -1, seed++);
}

Test(scan, lut16_sums_more_than_256_blocks) {
    static const size_t Ks[] = {257, 258, 300, 511, 512, 513, 777};
    for (size_t b = 0; b < sizeof Ks / sizeof *Ks; b++)
        for (size_t nq = 1; nq <= 3; nq++) {
            sums_case(45, Ks[b], 16, nq, -1, 100 + b);
            sums_case(64, Ks[b], 16, nq, 255, 200 + b);
            sums_case(13, Ks[b], 16, nq, 0, 300 + b);
        }
}

Test(scan, lut16_sums_extreme_tables) {
    static const size_t Ks[] = {1, 3, 128, 255, 256};
    for (size_t b = 0; b < sizeof Ks / sizeof *Ks; b++)
        for (size_t nq = 1; nq <= 3; nq++) {
            sums_case(70, Ks[b], 16, nq, 0, 400 + b);   /* -128K: -32768 at K=256 */
            sums_case(70, Ks[b], 16, nq, 255, 500 + b); /* 127K: 32512 at K=256 */
        }
}

Test(scan, lut256_sums_all_isas_match_reference) {
    /* the AVX-512 kernel reads groups in pairs: one group, a pair, a pair
     * and a lone group, partial last groups; K across the 256-block chunks */
    static const size_t ns[] = {5, 32, 64, 77, 96, 130};
    static const size_t Ks[] = {1, 3, 8, 25, 64, 256, 257, 513};
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (size_t b = 0; b < sizeof Ks / sizeof *Ks; b++)
            for (size_t nq = 1; nq <= 3; nq++) sums_case(ns[a], Ks[b], 256, nq, -1, 600 + 10 * a + b);
    for (size_t nq = 1; nq <= 3; nq++) {
        sums_case(70, 257, 256, nq, 255, 700 + nq); /* the largest chunk sums */
        sums_case(70, 257, 256, nq, 0, 710 + nq);
    }
}

/* ---- thresholded top-k -------------------------------------------------- */

static int cmp_nb(const void *a, const void *b) {
    const avq_neighbor *x = a, *y = b;
    if (x->dist != y->dist) return x->dist < y->dist ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

typedef struct {
    double base, scale;
    float prefill;  /* distance of k pre-filled entries; NAN: none */
    size_t k;
} topk_case;

/* Pre-fill with k entries at `prefill` (ids -1..-k) and compact, so the
 * buffer's threshold starts there: the way to make a threshold admit none,
 * some or all of the leaf. */
static void start_topk(avq_topk *t, avq_neighbor *storage, const topk_case *c) {
    avq_topk_init(t, c->k, storage, 2 * c->k + 1);
    if (isnan(c->prefill)) return;
    for (size_t j = 0; j < c->k + 1; j++) avq_topk_push(t, c->prefill, -(int64_t)j - 1);
    avq_topk_compact(t);
}

/* The expected result: the exact sort of every candidate ever offered. */
static size_t expected_topk(const leaf_data *L, const uint8_t *lut8, const topk_case *c,
                            const int64_t *ids, const uint32_t *alive, avq_neighbor *out) {
    size_t total = 0;
    avq_neighbor *all = malloc((L->n + c->k + 1) * sizeof *all);
    if (!isnan(c->prefill))
        for (size_t j = 0; j < c->k + 1; j++) all[total++] = (avq_neighbor){c->prefill, -(int64_t)j - 1};
    for (size_t i = 0; i < L->n; i++)
        if (!alive || (alive[i / 32] >> (i % 32)) & 1u)
            all[total++] = (avq_neighbor){avq_lut8_dist(c->base, c->scale, naive_sum(L, lut8, i)),
                                          ids ? ids[i] : 1000 + (int64_t)i};
    qsort(all, total, sizeof *all, cmp_nb);
    size_t k = total < c->k ? total : c->k;
    memcpy(out, all, k * sizeof *all);
    free(all);
    return k;
}

/* Dead slots of a living index (a liveness bitmap, 1 = live) are never
 * pushed: every kernel is run without one and with one killing about a
 * third of the points. */
static void check_topk(const leaf_data *L, size_t nq, uint8_t *const *luts,
                       const topk_case *cases, const int64_t *ids) {
    uint32_t *bitmap = calloc((L->n + 31) / 32 + 1, sizeof *bitmap);
    for (size_t i = 0; i < L->n; i++)
        if ((i * 2654435761u) % 3 != 0) bitmap[i / 32] |= 1u << (i % 32);
    for (int a = 0; a < 2 * N_ISAS; a++) {
        const uint32_t *alive = a >= N_ISAS ? bitmap : NULL;
        const avq_kernels *kern = avq_kernels_for(ISAS[a % N_ISAS]);
        if (!kern || (L->C == 16 ? kern->lut16_topk_batch : AVQ_SCAN_MAX_BATCH) < nq) continue;
        avq_topk topk[AVQ_SCAN_WIDE_BATCH];
        avq_neighbor *storage[AVQ_SCAN_WIDE_BATCH];
        avq_scan_query queries[AVQ_SCAN_WIDE_BATCH];
        for (size_t q = 0; q < nq; q++) {
            storage[q] = malloc((2 * cases[q].k + 1) * sizeof(avq_neighbor));
            start_topk(&topk[q], storage[q], &cases[q]);
            queries[q] = (avq_scan_query){luts[q], cases[q].base, cases[q].scale, &topk[q]};
        }
        avq_scan_leaf leaf = {L->packed, L->n, L->K, ids, 1000, alive};
        if (L->C == 16) kern->lut16_topk(&leaf, nq, queries);
        else kern->lut256_topk(&leaf, nq, queries);
        for (size_t q = 0; q < nq; q++) {
            avq_neighbor want[64];
            size_t nw = expected_topk(L, luts[q], &cases[q], ids, alive, want);
            size_t ng = avq_topk_finish(&topk[q]);
            cr_assert_eq(ng, nw, "%s n=%zu K=%zu q=%zu: %zu results, want %zu", ISAS[a % N_ISAS], L->n,
                         L->K, q, ng, nw);
            for (size_t j = 0; j < nw; j++) {
                cr_assert_eq(topk[q].items[j].id, want[j].id,
                             "%s C=%zu n=%zu K=%zu nq=%zu q=%zu rank %zu", ISAS[a % N_ISAS], L->C, L->n,
                             L->K, nq, q, j);
                cr_assert_eq(topk[q].items[j].dist, want[j].dist);
            }
            free(storage[q]);
        }
    }
    free(bitmap);
}

/* A prefill at the distance of the reference sum of rank `rank` (in sorted
 * order) makes the threshold admit about that many points. */
static float dist_at_rank(const leaf_data *L, const uint8_t *lut8, double base, double scale,
                          size_t rank) {
    float *d = malloc(L->n * sizeof(float));
    for (size_t i = 0; i < L->n; i++) d[i] = avq_lut8_dist(base, scale, naive_sum(L, lut8, i));
    for (size_t i = 1; i < L->n; i++) /* insertion sort: n is small here */
        for (size_t j = i; j > 0 && d[j] < d[j - 1]; j--) {
            float t = d[j];
            d[j] = d[j - 1];
            d[j - 1] = t;
        }
    float v = d[rank < L->n ? rank : L->n - 1];
    free(d);
    return v;
}

static void topk_shapes(size_t C) {
    static const size_t ns[] = {1, 9, 32, 33, 100, 517};
    static const size_t Ks[] = {1, 2, 3, 5, 8, 25, 50, 64, 256, 257, 300};
    uint64_t seed = 77;
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (size_t b = 0; b < sizeof Ks / sizeof *Ks; b++)
            for (size_t nq = 1; nq <= (C == 16 ? AVQ_SCAN_WIDE_BATCH : AVQ_SCAN_MAX_BATCH); nq++) {
                if (C == 256 && Ks[b] > 64 && ns[a] > 100) continue; /* keep it quick */
                if (nq > AVQ_SCAN_MAX_BATCH && ns[a] > 100 && Ks[b] > 64) continue;
                leaf_data L = make_leaf(ns[a], Ks[b], C, seed++);
                uint8_t *luts[AVQ_SCAN_WIDE_BATCH];
                topk_case cases[AVQ_SCAN_WIDE_BATCH];
                int64_t *ids = malloc(L.n * sizeof(int64_t));
                for (size_t i = 0; i < L.n; i++) ids[i] = (int64_t)(L.n - i) * 7; /* reversed */
                for (size_t q = 0; q < nq; q++) {
                    luts[q] = make_lut8(L.K, C, -1, seed * 5 + q);
                    /* small scales make many float ties: the id order must decide */
                    double scale = q == 2 ? 1.0 / 64 : 0.013;
                    double base = q == 1 ? 12345.678 : -3.5;
                    size_t k = 1 + (seed + q) % 20;
                    float prefill;
                    switch ((seed + q) % 4) {
                    case 0: prefill = NAN; break;                        /* admits all */
                    case 1: prefill = -1e30f; break;                      /* admits none */
                    case 2: prefill = 1e30f; break;                       /* admits all, full */
                    default: prefill = dist_at_rank(&L, luts[q], base, scale, L.n / 3); /* some */
                    }
                    cases[q] = (topk_case){base, scale, prefill, k};
                }
                check_topk(&L, nq, luts, cases, NULL);
                check_topk(&L, nq, luts, cases, ids);
                for (size_t q = 0; q < nq; q++) free(luts[q]);
                free(ids);
                free_leaf(&L);
            }
}

Test(scan, lut16_topk_equals_exact_sort) { topk_shapes(16); }

Test(scan, lut256_topk_equals_exact_sort) { topk_shapes(256); }

Test(scan, lut16_topk_counts_admitted_points) {
    /* With k >= n and the buffer never compacting, every point is pushed. */
    leaf_data L = make_leaf(70, 9, 16, 5);
    uint8_t *lut = make_lut8(9, 16, -1, 6);
    for (int a = 0; a < N_ISAS; a++) {
        const avq_kernels *kern = avq_kernels_for(ISAS[a]);
        if (!kern) continue;
        avq_neighbor storage[200];
        avq_topk t;
        avq_topk_init(&t, 100, storage, 200);
        avq_scan_query q = {lut, 0.0, 1.0, &t};
        avq_scan_leaf leaf = {L.packed, L.n, L.K, NULL, 0, NULL};
        kern->lut16_topk(&leaf, 1, &q);
        cr_assert_eq(t.size, 70, "%s pushed %zu", ISAS[a], t.size);
        cr_assert_eq(avq_topk_finish(&t), 70);
    }
    free(lut);
    free_leaf(&L);
}

/* ---- float kernels ------------------------------------------------------ */

Test(scan, float_dot_kernels_match_double) {
    static const size_t ds[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 100, 128, 300};
    uint64_t seed = 9;
    size_t n = 13;
    for (size_t a = 0; a < sizeof ds / sizeof *ds; a++) {
        size_t d = ds[a];
        float *q = malloc(d * sizeof(float)), *rows = malloc(n * d * sizeof(float));
        int8_t *rows8 = malloc(n * d);
        for (size_t t = 0; t < d; t++) q[t] = (float)(avq_rng_uniform(&seed) * 2 - 1);
        for (size_t t = 0; t < n * d; t++) {
            rows[t] = (float)(avq_rng_uniform(&seed) * 2 - 1);
            rows8[t] = (int8_t)((int)(avq_rng_next(&seed) % 255) - 127);
        }
        int64_t index[5] = {12, 0, 7, 7, 3};
        const float *gather[5];
        const int8_t *gather8[5];
        for (int g = 0; g < 5; g++) {
            gather[g] = rows + index[g] * d;
            gather8[g] = rows8 + index[g] * d;
        }
        for (int i = 0; i < N_ISAS; i++) {
            const avq_kernels *k = avq_kernels_for(ISAS[i]);
            if (!k) continue;
            float out[13], out8[13], outi[5], outi8[5];
            k->dot_rows(q, rows, n, d, out);
            k->dot_rows_i8(q, rows8, n, d, out8);
            k->dot_gather(q, gather, d, 5, outi);
            k->dot_gather_i8(q, gather8, d, 5, outi8);
            for (size_t r = 0; r < n; r++) {
                double want = 0, want8 = 0, mag = 0, mag8 = 0;
                for (size_t t = 0; t < d; t++) {
                    want += (double)q[t] * rows[r * d + t];
                    want8 += (double)q[t] * rows8[r * d + t];
                    mag += fabs((double)q[t] * rows[r * d + t]);
                    mag8 += fabs((double)q[t] * rows8[r * d + t]);
                }
                cr_assert(fabs(out[r] - want) <= 1e-5 * mag + 1e-6, "%s d=%zu f32 %g vs %g",
                          ISAS[i], d, out[r], want);
                cr_assert(fabs(out8[r] - want8) <= 1e-5 * mag8 + 1e-6, "%s d=%zu i8 %g vs %g",
                          ISAS[i], d, out8[r], want8);
                for (size_t j = 0; j < 5; j++)
                    if ((size_t)index[j] == r) {
                        cr_assert(fabs(outi[j] - want) <= 1e-5 * mag + 1e-6);
                        cr_assert(fabs(outi8[j] - want8) <= 1e-5 * mag8 + 1e-6);
                    }
            }
        }
        free(q);
        free(rows);
        free(rows8);
    }
}

/* float16 rows: every ISA's kernel gives, bit for bit, what its float
 * kernel gives on the exactly converted rows (the re-ranking score of a
 * float16 index is the float score of its rounded vectors), on every
 * length including the masked and scalar tails. */
Test(scan, float16_dot_kernel_is_the_float_kernel_on_converted_rows) {
    static const size_t ds[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 100, 128, 300};
    uint64_t seed = 21;
    for (size_t a = 0; a < sizeof ds / sizeof *ds; a++) {
        size_t d = ds[a], n = 7;
        float *q = malloc(d * sizeof(float)), *wide = malloc(n * d * sizeof(float));
        uint16_t *half = malloc(n * d * sizeof(uint16_t));
        for (size_t t = 0; t < d; t++) q[t] = (float)(avq_rng_uniform(&seed) * 2 - 1);
        for (size_t t = 0; t < n * d; t++) {
            /* magnitudes from subnormal halves to thousands, both signs */
            double mag = pow(2.0, -20.0 + 32.0 * avq_rng_uniform(&seed));
            half[t] = avq_half_from_float((float)(avq_rng_uniform(&seed) < 0.5 ? -mag : mag));
            wide[t] = avq_float_from_half(half[t]);
        }
        const uint16_t *hrows[7];
        const float *frows[7];
        for (size_t r = 0; r < n; r++) {
            hrows[r] = half + ((r * 3) % n) * d;
            frows[r] = wide + ((r * 3) % n) * d;
        }
        for (int i = 0; i < N_ISAS; i++) {
            const avq_kernels *k = avq_kernels_for(ISAS[i]);
            if (!k) continue;
            float got[7], want[7];
            k->dot_gather_f16(q, hrows, d, n, got);
            k->dot_gather(q, frows, d, n, want);
            for (size_t r = 0; r < n; r++)
                cr_assert(memcmp(&got[r], &want[r], sizeof(float)) == 0,
                          "%s d=%zu row %zu: float16 %a vs float %a", ISAS[i], d, r,
                          (double)got[r], (double)want[r]);
        }
        free(q);
        free(wide);
        free(half);
    }
}

/* The conversions: every finite half survives half -> float -> half, and
 * float -> half rounds to nearest, ties to even -- checked at every
 * midpoint between neighbouring halves and against the compiler's own
 * _Float16 conversion on random floats where it has one. */
Test(scan, float16_conversion_round_trips_and_rounds_to_nearest_even) {
    for (uint32_t h = 0; h < 0x10000u; h++) {
        if ((h & 0x7c00u) == 0x7c00u) continue; /* inf and NaN are never stored */
        float f = avq_float_from_half((uint16_t)h);
        cr_assert_eq(avq_half_from_float(f), (uint16_t)h, "half %#x -> %a -> %#x", h, (double)f,
                     avq_half_from_float(f));
        if ((h & 0x7fffu) == 0x7bffu) continue; /* no larger finite neighbour */
        /* the midpoint to the next half away from zero: exact in float */
        double mid = ((double)f + (double)avq_float_from_half((uint16_t)(h + 1))) / 2.0;
        uint16_t even = (h & 1u) ? (uint16_t)(h + 1) : (uint16_t)h;
        cr_assert_eq(avq_half_from_float((float)mid), even, "midpoint after %#x", h);
        float below = nextafterf((float)mid, 0.0f), above = nextafterf((float)mid, 2.0f * (float)mid);
        cr_assert_eq(avq_half_from_float(below), (uint16_t)h, "just below the midpoint after %#x", h);
        cr_assert_eq(avq_half_from_float(above), (uint16_t)(h + 1), "just above the midpoint after %#x", h);
    }
    cr_assert_eq(avq_half_from_float(65504.0f), 0x7bffu);
    cr_assert_eq(avq_half_from_float(-0.0f), 0x8000u);
    cr_assert_eq(avq_half_from_float(1e-30f), 0u); /* below 2^-25: zero */
#ifdef __FLT16_MAX__
    uint64_t seed = 5;
    for (int i = 0; i < 200000; i++) {
        float f = (float)((avq_rng_uniform(&seed) * 2 - 1) * pow(2.0, -26.0 + 41.5 * avq_rng_uniform(&seed)));
        _Float16 c = (_Float16)f;
        uint16_t want;
        memcpy(&want, &c, sizeof want);
        cr_assert_eq(avq_half_from_float(f), want, "%a: %#x vs the compiler's %#x", (double)f,
                     avq_half_from_float(f), want);
    }
#endif
}

/* The comparisons above skip an ISA whose table is missing; the one every
 * CPU of the architecture has must never be skipped (a build that lost
 * src/simd/scan_neon.c would otherwise pass on aarch64 by testing scalar
 * against itself). */
Test(scan, arch_kernels_present) {
#if defined(__aarch64__)
    const avq_kernels *k = avq_kernels_for("neon");
    cr_assert_not_null(k, "aarch64 without the neon kernels");
    cr_assert_str_eq(k->isa, "neon");
    cr_assert_null(avq_kernels_for("avx2"));
    const char *want = getenv("AVQ_ISA");
    if (!want || !*want) cr_assert_str_eq(avq_isa(), "neon");
#elif defined(__x86_64__)
    cr_assert_null(avq_kernels_for("neon"));
    if (avq_cpu_supports("avx2")) cr_assert_not_null(avq_kernels_for("avx2"));
#endif
    cr_assert_not_null(avq_kernels_for("scalar"));
}

Test(scan, dispatch) {
    const char *isa = avq_isa();
    cr_assert(strcmp(isa, "scalar") == 0 || strcmp(isa, "avx2") == 0 ||
              strcmp(isa, "avx512") == 0 || strcmp(isa, "neon") == 0);
    cr_assert_str_eq(avq_kernels_get()->isa, isa);
    cr_assert_not_null(avq_kernels_for("scalar"));
    cr_assert_null(avq_kernels_for("sse9"));
    cr_assert_null(avq_kernels_for(NULL));
    /* the chosen ISA is one the CPU supports, and honours AVQ_ISA if it can */
    cr_assert(avq_cpu_supports(isa));
    const char *want = getenv("AVQ_ISA");
    if (want && avq_cpu_supports(want)) cr_assert_str_eq(isa, want);
    for (int a = 0; a < N_ISAS; a++) {
        const avq_kernels *k = avq_kernels_for(ISAS[a]);
        cr_assert_eq(k != NULL, avq_cpu_supports(ISAS[a]));
        if (k) cr_assert_str_eq(k->isa, ISAS[a]);
    }
}

/* ---- LUT construction and quantization (suite lut) ---------------------- */

/* The LUT block kernels of every ISA give the reference's bits: lengths
 * the SIMD code handles (2, 4) and those it hands back (1, 3, 5), whole
 * and partial groups of 16 centers, products that are -0, and for the
 * quantization entries exactly at the halves and beyond 255.  The query
 * block sits at an address that is a multiple of 4 but not of 8, as a
 * block of a query does at an odd offset (regression: the len-2 kernel
 * read its two floats as one double, which the sanitizer build refused
 * as a misaligned load). */
Test(lut, block_kernels_match_reference_bits) {
    static const size_t Cs[] = {1, 15, 16, 17, 31, 48, 256};
    uint64_t seed = 31;
    _Alignas(16) float qbuf[9];
    float *q = qbuf + 1, *centers = malloc(256 * 8 * sizeof(float));
    float want[256], got[256];
    for (int a = 0; a < N_ISAS; a++) {
        const avq_kernels *k = avq_kernels_for(ISAS[a]);
        if (!k) continue;
        for (size_t len = 1; len <= 5; len++)
            for (size_t c = 0; c < sizeof Cs / sizeof *Cs; c++)
                for (int l2 = 0; l2 < 2; l2++) {
                    size_t C = Cs[c];
                    for (size_t t = 0; t < len; t++)
                        q[t] = t == 1 ? 0.0f : (float)(avq_rng_uniform(&seed) * 4 - 2);
                    for (size_t i = 0; i < C * len; i++)
                        centers[i] = i % 7 == 3 ? -0.0f : (float)(avq_rng_uniform(&seed) * 4 - 2);
                    avq_lut_block_scalar(q, centers, C, len, l2, want);
                    k->lut_block(q, centers, C, len, l2, got);
                    cr_assert_eq(memcmp(want, got, C * sizeof(float)), 0,
                                 "%s lut_block len=%zu C=%zu l2=%d", ISAS[a], len, C, l2);
                }
        for (size_t c = 0; c < sizeof Cs / sizeof *Cs; c++) {
            size_t C = Cs[c];
            double scale = 0.013;
            float lo = -1.25f, lut[256];
            uint8_t w8[256], g8[256];
            for (size_t j = 0; j < C; j++) {
                switch (j % 4) {
                case 0: lut[j] = lo + (float)(avq_rng_uniform(&seed) * 3.3); break; /* to 255 */
                case 1: lut[j] = (float)(lo + ((double)(j % 200) + 0.5) * scale); break; /* halves */
                case 2: lut[j] = lo; break;
                default: lut[j] = lo + 100.0f; /* far beyond 255 units */
                }
            }
            avq_lut_quantize_block_scalar(lut, C, lo, scale, w8);
            k->lut_quantize_block(lut, C, lo, scale, g8);
            cr_assert_eq(memcmp(w8, g8, C), 0, "%s lut_quantize_block C=%zu", ISAS[a], C);
            float wlo, whi, glo, ghi;
            cr_assert(avq_lut_block_range_scalar(lut, C, &wlo, &whi));
            cr_assert(k->lut_block_range(lut, C, &glo, &ghi));
            cr_assert(wlo == glo && whi == ghi, "%s lut_block_range C=%zu: %g %g, want %g %g",
                      ISAS[a], C, (double)glo, (double)ghi, (double)wlo, (double)whi);
            /* one NaN or infinity anywhere, the last entry included */
            static const float odd[] = {NAN, INFINITY, -INFINITY};
            for (size_t o = 0; o < 3; o++)
                for (size_t at = 0; at < C; at += (C > 20 ? 7 : 1)) {
                    float saved = lut[at];
                    lut[at] = odd[o];
                    cr_assert(!k->lut_block_range(lut, C, &glo, &ghi), "%s C=%zu at %zu", ISAS[a], C, at);
                    lut[at] = saved;
                    float last = lut[C - 1];
                    lut[C - 1] = odd[o];
                    cr_assert(!k->lut_block_range(lut, C, &glo, &ghi), "%s C=%zu last", ISAS[a], C);
                    lut[C - 1] = last;
                }
        }
    }
    free(centers);
}

Test(lut, build_matches_definition) {
    size_t d = 7, dpb = 2, K = 4;
    uint64_t seed = 3;
    float q[7], book[256 * 7], lut[4 * 256];
    for (size_t t = 0; t < d; t++) q[t] = (float)avq_rng_uniform(&seed) - 0.5f;
    for (size_t t = 0; t < 256 * d; t++) book[t] = (float)avq_rng_uniform(&seed) - 0.5f;
    cr_assert_eq(avq_lut_blocks(d, dpb), K);
    static const size_t Cs[] = {16, 256};
    for (size_t c = 0; c < 2; c++)
        for (int metric = 0; metric < 2; metric++) {
            size_t C = Cs[c];
            cr_assert_eq(avq_lut_build(q, d, dpb, book, C, metric ? AVQ_METRIC_L2 : AVQ_METRIC_DOT, lut),
                         AVQ_OK);
            for (size_t m = 0; m < K; m++) {
                size_t len = m == K - 1 ? 1 : 2; /* last block is short */
                for (size_t j = 0; j < C; j++) {
                    const float *center = book + C * m * dpb + j * len;
                    double want = 0;
                    for (size_t t = 0; t < len; t++) {
                        double e = metric ? (double)q[m * dpb + t] - center[t] : 0;
                        want += metric ? e * e : -(double)q[m * dpb + t] * center[t];
                    }
                    cr_assert(fabs(lut[m * C + j] - want) < 1e-6, "C=%zu m=%zu j=%zu", C, m, j);
                }
            }
        }
    cr_assert_eq(avq_lut_build(q, d, 0, book, 16, AVQ_METRIC_DOT, lut), AVQ_ERR_INVALID);
    cr_assert_eq(avq_lut_build(q, d, 2, book, 16, (avq_metric)9, lut), AVQ_ERR_INVALID);
}

/* The estimate from the quantized table is within K/2 integer units (plus
 * float rounding) of the float sum, in both modes. */
Test(lut, quantization_error_is_bounded) {
    uint64_t seed = 11;
    static const size_t Ks[] = {1, 8, 50, 300};
    for (size_t b = 0; b < 4; b++)
        for (int mode = 0; mode < 2; mode++)
            for (int shift = 0; shift < 2; shift++) {
                size_t K = Ks[b], C = 16;
                float *lut = malloc(K * C * sizeof(float));
                uint8_t *lut8 = malloc(K * C);
                for (size_t i = 0; i < K * C; i++)
                    lut[i] = (float)(avq_rng_uniform(&seed) * 2 - 1) * (float)(1 + i % 3) +
                             (shift ? 5.0f : 0.0f); /* L2-like: all positive */
                avq_lut8_info info;
                cr_assert_eq(avq_lut_quantize(lut, K, C, (avq_lut8_mode)mode, lut8, &info), AVQ_OK);
                cr_assert_eq(info.sum_min, -128 * (int32_t)K);
                cr_assert_eq(info.sum_max, 127 * (int32_t)K);
                cr_assert_eq(info.scale, (double)(float)info.scale);
                for (int trial = 0; trial < 50; trial++) {
                    double exact = 0;
                    int32_t sum = 0;
                    for (size_t m = 0; m < K; m++) {
                        size_t j = avq_rng_next(&seed) % C;
                        exact += lut[m * C + j];
                        sum += lut8[m * C + j];
                    }
                    sum -= 128 * (int32_t)K;
                    double est = avq_lut8_dist(info.offset, info.scale, sum);
                    cr_assert(fabs(est - exact) <= 0.5001 * K * info.scale + 1e-4 * fabs(exact),
                              "mode %d K=%zu: %g vs %g", mode, K, est, exact);
                }
                free(lut);
                free(lut8);
            }
}

Test(lut, quantize_edge_cases) {
    float zeros[32] = {0};
    uint8_t lut8[32];
    avq_lut8_info info;
    for (int mode = 0; mode < 2; mode++) {
        cr_assert_eq(avq_lut_quantize(zeros, 2, 16, (avq_lut8_mode)mode, lut8, &info), AVQ_OK);
        cr_assert_eq(info.scale, 1.0);
        /* every code estimates exactly 0 */
        int32_t sum = lut8[3] + lut8[16 + 9] - 256;
        cr_assert_eq(avq_lut8_dist(info.offset, info.scale, sum), 0.0f);
    }
    /* symmetric mode: the DESIGN.md formula exactly */
    float v[16];
    for (int j = 0; j < 16; j++) v[j] = (float)(j - 8) * 0.25f; /* max |v| = 2 */
    cr_assert_eq(avq_lut_quantize(v, 1, 16, AVQ_LUT8_SYMMETRIC, lut8, &info), AVQ_OK);
    cr_assert_eq(info.scale, (double)(float)(2.0 / 127));
    for (int j = 0; j < 16; j++)
        cr_assert_eq(lut8[j], (uint8_t)(floor(v[j] / info.scale + 0.5) + 128), "j=%d", j);
    cr_assert_eq(avq_lut_quantize(v, 1, 16, AVQ_LUT8_BLOCK_MIN, lut8, &info), AVQ_OK);
    cr_assert_eq(lut8[0], 0);
    cr_assert_eq(lut8[15], 255);
    v[5] = NAN;
    cr_assert_eq(avq_lut_quantize(v, 1, 16, AVQ_LUT8_SYMMETRIC, lut8, &info), AVQ_ERR_INVALID);
    v[5] = INFINITY;
    cr_assert_eq(avq_lut_quantize(v, 1, 16, AVQ_LUT8_BLOCK_MIN, lut8, &info), AVQ_ERR_INVALID);
    cr_assert_eq(avq_lut_quantize(v, 0, 16, AVQ_LUT8_BLOCK_MIN, lut8, &info), AVQ_ERR_INVALID);
}

/* The integer threshold admits exactly the sums whose distance is <= eps,
 * checked against every possible sum. */
static void check_threshold(float eps, double base, double scale, int32_t lo, int32_t hi) {
    int32_t thr = avq_lut8_threshold(eps, base, scale, lo, hi);
    cr_assert(thr >= lo && thr <= hi + 1);
    for (int32_t s = lo; s <= hi; s++)
        cr_assert_eq(s < thr, avq_lut8_dist(base, scale, s) <= eps,
                     "eps=%.9g base=%.17g scale=%.17g s=%d thr=%d", eps, base, scale, s, thr);
}

Test(lut, threshold_is_exact) {
    uint64_t seed = 21;
    check_threshold(INFINITY, 0.0, 0.01, -128, 127);
    check_threshold(-INFINITY, 0.0, 0.01, -128, 127);
    check_threshold(NAN, 0.0, 0.01, -128, 127);
    check_threshold(-1e30f, 0.0, 0.01, -32768, 32512);
    check_threshold(1e30f, 0.0, 0.01, -32768, 32512);
    /* huge base: the float steps are coarser than the integer steps (ties) */
    check_threshold(1.0e6f, 1.0e6, 1.0 / 1024, -32768, 32512);
    check_threshold(1.0e6f + 0.0625f, 1.0e6, 1.0 / 1024, -32768, 32512);
    for (int trial = 0; trial < 300; trial++) {
        int32_t K = 1 + (int32_t)(avq_rng_next(&seed) % 256);
        double scale = (double)(float)(avq_rng_uniform(&seed) * 0.1 + 1e-4);
        double base = (avq_rng_uniform(&seed) - 0.5) * 100;
        int32_t s = -128 * K + (int32_t)(avq_rng_next(&seed) % (uint64_t)(255 * K + 1));
        /* eps exactly on a representable distance, or between two */
        float eps = avq_lut8_dist(base, scale, s);
        if (trial % 2) eps = nextafterf(eps, trial % 4 == 1 ? INFINITY : -INFINITY);
        check_threshold(eps, base, scale, -128 * K, 127 * K);
    }
}
