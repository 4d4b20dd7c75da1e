/*
 * bench/scan.c -- how close the fast-scan kernels get to the memory system.
 *
 * A 4-bit scan reads K/2 bytes per point and does a few instructions per
 * byte, so its natural yardstick is the single-core streaming read
 * bandwidth, measured here in the same run (sum of a 1 GiB array, best of a
 * few passes) rather than quoted from a data sheet.  For every ISA the CPU
 * supports, N in {10k, 100k, 1M} and K in {25, 50, 64, 100}, it times
 *   sums  all int16 sums (lut16_sums16), 1 query and a batch of 3,
 *   topk  the thresholded scan into a k=10 buffer, 1 and 3 queries,
 * and prints points/s per query, code bytes/s and the ratio to the read
 * bandwidth (batched scans read the codes once for 3 queries, so their
 * bytes/s is per pass).  Each number is the best of several repetitions:
 * the machine is shared and noisy, the best run is the least disturbed.
 * Also printed: LUT quantization error of the two uint8 modes (lut.h), so
 * the choice of default rests on a measurement.
 *
 *   build/bench/scan                 everything (~1-2 minutes)
 *   build/bench/scan --quick         N = 100k only
 *   build/bench/scan --isa avx512    one ISA only (options combine)
 *   build/bench/scan --isa neon      the NEON kernels (an aarch64 build)
 *   build/bench/scan --bits 8        8-bit codes (LUT256 kernels, int32 sums;
 *                                    K in {13, 25, 32, 50}: K bytes per
 *                                    point, so K = 25 reads what 4-bit K = 50
 *                                    reads)
 */
#include "avq_internal.h"
#include "cpu.h"
#include "lut.h"
#include "pack.h"
#include "scan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Keeps results alive so the compiler cannot drop the work. */
static volatile uint64_t sink;

/* ---- the yardstick: streaming read bandwidth --------------------------- */

static uint64_t sum_words(const uint64_t *w, size_t n) {
    uint64_t a = 0, b = 0, c = 0, d = 0, e = 0, f = 0, g = 0, h = 0;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        a += w[i];
        b += w[i + 1];
        c += w[i + 2];
        d += w[i + 3];
        e += w[i + 4];
        f += w[i + 5];
        g += w[i + 6];
        h += w[i + 7];
    }
    return a + b + c + d + e + f + g + h;
}

static double read_bandwidth(size_t bytes, int passes) {
    size_t n = bytes / sizeof(uint64_t);
    uint64_t *w = avq_alloc_aligned(n * sizeof *w);
    if (!w) return NAN;
    for (size_t i = 0; i < n; i++) w[i] = i; /* fault the pages in */
    double best = 1e30;
    for (int p = 0; p < passes; p++) {
        double t0 = now();
        sink += sum_words(w, n);
        double t = now() - t0;
        if (t < best) best = t;
    }
    avq_free_aligned(w);
    return (double)bytes / best;
}

/* ---- scan timings ------------------------------------------------------ */

typedef struct {
    const avq_kernels *k;
    const uint8_t *packed;
    size_t n, K;
    int bits;
    const uint8_t *luts[3];
    int16_t *sums[3];
    int32_t *sums32[3];
    avq_topk topk[3];
    avq_neighbor storage[3][21];
} scan_job;

static void run_sums(scan_job *j, size_t nq) {
    if (j->bits == 8) {
        j->k->lut256_sums32(j->packed, j->n, j->K, nq, j->luts, j->sums32);
        sink += (uint64_t)j->sums32[0][j->n - 1];
        return;
    }
    j->k->lut16_sums16(j->packed, j->n, j->K, nq, j->luts, j->sums);
    sink += (uint64_t)j->sums[0][j->n - 1];
}

static void run_topk(scan_job *j, size_t nq) {
    avq_scan_query q[3];
    for (size_t i = 0; i < nq; i++) {
        avq_topk_init(&j->topk[i], 10, j->storage[i], 21);
        q[i] = (avq_scan_query){j->luts[i], 0.0, 0.01, &j->topk[i]};
    }
    avq_scan_leaf leaf = {j->packed, j->n, j->K, NULL, 0, NULL};
    (j->bits == 8 ? j->k->lut256_topk : j->k->lut16_topk)(&leaf, nq, q);
    sink += (uint64_t)avq_topk_finish(&j->topk[0]);
}

/* Best seconds per call over `rounds` rounds of enough calls to last ~5 ms. */
static double best_time(void (*fn)(scan_job *, size_t), scan_job *j, size_t nq, int rounds) {
    double t0 = now();
    fn(j, nq);
    double once = now() - t0;
    int reps = once > 5e-3 ? 1 : (int)(5e-3 / (once + 1e-9)) + 1;
    double best = once;
    for (int r = 0; r < rounds; r++) {
        t0 = now();
        for (int i = 0; i < reps; i++) fn(j, nq);
        double t = (now() - t0) / reps;
        if (t < best) best = t;
    }
    return best;
}

static void print_row(const char *isa, int bits, size_t n, size_t K, const char *mode,
                      size_t nq, double seconds, double bandwidth, double single_rate) {
    double code_bytes = (double)avq_pack_size(bits, n, K);
    double per_query = (double)n / seconds; /* points per second for each query */
    printf("%-7s %8zu %4zu  %-4s %2zu  %9.1f  %7.2f  %5.0f%%", isa, n, K, mode, nq,
           per_query / 1e6, code_bytes / seconds / 1e9, 100.0 * code_bytes / seconds / bandwidth);
    if (nq > 1) printf("   x%.2f", per_query * (double)nq / single_rate);
    printf("\n");
}

static void bench_isa(const avq_kernels *k, int bits, size_t n, size_t K, double bandwidth,
                      uint64_t *seed) {
    size_t C = bits == 8 ? 256 : 16;
    uint8_t *codes = malloc(n * K);
    uint8_t *packed = avq_alloc_aligned(avq_pack_size(bits, n, K));
    scan_job *j = calloc(1, sizeof *j);
    if (!codes || !packed || !j) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n * K; i++) codes[i] = (uint8_t)(avq_rng_next(seed) % C);
    if (avq_pack(bits, codes, n, K, packed) != AVQ_OK) exit(1);
    free(codes);
    j->k = k;
    j->packed = packed;
    j->n = n;
    j->K = K;
    j->bits = bits;
    uint8_t *lut_store = malloc(3 * K * C);
    for (size_t i = 0; i < 3 * K * C; i++) lut_store[i] = (uint8_t)avq_rng_next(seed);
    for (int q = 0; q < 3; q++) {
        j->luts[q] = lut_store + (size_t)q * K * C;
        j->sums[q] = avq_alloc_aligned(n * sizeof(int16_t));
        j->sums32[q] = avq_alloc_aligned(n * sizeof(int32_t));
    }
    int rounds = n >= 1000000 ? 3 : 5;
    double s1 = best_time(run_sums, j, 1, rounds);
    print_row(k->isa, bits, n, K, "sums", 1, s1, bandwidth, 0);
    double s3 = best_time(run_sums, j, 3, rounds);
    print_row(k->isa, bits, n, K, "sums", 3, s3, bandwidth, (double)n / s1);
    double t1 = best_time(run_topk, j, 1, rounds);
    print_row(k->isa, bits, n, K, "topk", 1, t1, bandwidth, 0);
    double t3 = best_time(run_topk, j, 3, rounds);
    print_row(k->isa, bits, n, K, "topk", 3, t3, bandwidth, (double)n / t1);
    for (int q = 0; q < 3; q++) {
        avq_free_aligned(j->sums[q]);
        avq_free_aligned(j->sums32[q]);
    }
    free(lut_store);
    avq_free_aligned(packed);
    free(j);
}

/* ---- LUT quantization error --------------------------------------------- */

static double gaussian(uint64_t *seed) {
    double u = avq_rng_uniform(seed) + 1e-12, v = avq_rng_uniform(seed);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* RMS error of the uint8 estimate relative to the spread (std) of the float
 * estimates, over random codes, for random Gaussian queries/codebooks. */
static void lut_error(avq_metric metric, uint64_t *seed) {
    enum { D = 100, DPB = 2, C = 16, POINTS = 2000, QUERIES = 50 };
    size_t K = avq_lut_blocks(D, DPB);
    float q[D], book[C * D], lut[(D / DPB) * C];
    uint8_t lut8[(D / DPB) * C];
    uint8_t *codes = malloc(POINTS * K);
    for (size_t i = 0; i < POINTS * K; i++) codes[i] = (uint8_t)(avq_rng_next(seed) & 15);
    double err2[2] = {0, 0}, spread2 = 0;
    for (int t = 0; t < QUERIES; t++) {
        for (int i = 0; i < D; i++) q[i] = (float)gaussian(seed);
        for (int i = 0; i < C * D; i++) book[i] = (float)(0.3 * gaussian(seed));
        avq_lut_build(q, D, DPB, book, C, metric, lut);
        double mean = 0, sq = 0;
        double *exact = malloc(POINTS * sizeof(double));
        for (size_t p = 0; p < POINTS; p++) {
            exact[p] = 0;
            for (size_t m = 0; m < K; m++) exact[p] += lut[m * C + codes[p * K + m]];
            mean += exact[p];
            sq += exact[p] * exact[p];
        }
        mean /= POINTS;
        spread2 += sq / POINTS - mean * mean;
        for (int mode = 0; mode < 2; mode++) {
            avq_lut8_info info;
            avq_lut_quantize(lut, K, C, (avq_lut8_mode)mode, lut8, &info);
            for (size_t p = 0; p < POINTS; p++) {
                int32_t s = -128 * (int32_t)K;
                for (size_t m = 0; m < K; m++) s += lut8[m * C + codes[p * K + m]];
                double e = avq_lut8_dist(info.offset, info.scale, s) - exact[p];
                err2[mode] += e * e / POINTS;
            }
        }
        free(exact);
    }
    printf("LUT8 error (%s, d=100, K=50): RMS error / std of scores: symmetric %.4f, "
           "block-min %.4f\n",
           metric == AVQ_METRIC_L2 ? "squared L2" : "inner product", sqrt(err2[0] / spread2),
           sqrt(err2[1] / spread2));
    free(codes);
}

int main(int argc, char **argv) {
    int quick = 0, bits = 4;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else if (strcmp(argv[i], "--isa") == 0 && i + 1 < argc) only = argv[++i];
        else if (strcmp(argv[i], "--bits") == 0 && i + 1 < argc &&
                 (strcmp(argv[i + 1], "4") == 0 || strcmp(argv[i + 1], "8") == 0))
            bits = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--quick] [--isa scalar|avx2|avx512|neon] [--bits 4|8]\n",
                    argv[0]);
            return 2;
        }
    }
    /* every ISA any build has; the ones this CPU lacks are skipped */
    static const char *const isas[] = {"avx512", "avx2", "neon", "scalar"};
    enum { NISA = sizeof isas / sizeof isas[0] };
    if (only) {
        int a = 0;
        while (a < NISA && strcmp(only, isas[a]) != 0) a++;
        if (a == NISA || !avq_kernels_for(only)) {
            fprintf(stderr, "scan: --isa %s: not an ISA this build and CPU can run\n", only);
            return 2;
        }
    }
    uint64_t seed = 42;
    printf("avq fast-scan benchmark; dispatch chooses \"%s\"\n", avq_isa());
    lut_error(AVQ_METRIC_DOT, &seed);
    lut_error(AVQ_METRIC_L2, &seed);
    double bw = read_bandwidth((size_t)1 << 30, 5);
    printf("single-core streaming read bandwidth: %.1f GB/s (sum over 1 GiB, best of 5)\n\n", bw / 1e9);
    printf("%-7s %8s %4s  %-4s %2s  %9s  %7s  %6s  %s\n", "isa", "N", "K", "mode", "nq",
           "Mpts/s/q", "GB/s", "of bw", "batch gain per query");
    static const size_t ns[] = {10000, 100000, 1000000};
    static const size_t Ks4[] = {25, 50, 64, 100}, Ks8[] = {13, 25, 32, 50};
    const size_t *Ks = bits == 8 ? Ks8 : Ks4;
    printf("%d-bit codes\n", bits);
    for (int a = 0; a < NISA; a++) {
        const avq_kernels *k = avq_kernels_for(isas[a]);
        if (!k || (only && strcmp(only, isas[a]) != 0)) continue;
        for (size_t i = 0; i < 3; i++) {
            if (quick && ns[i] != 100000) continue;
            for (size_t b = 0; b < 4; b++) bench_isa(k, bits, ns[i], Ks[b], bw, &seed);
        }
        printf("\n");
    }
    return 0;
}
