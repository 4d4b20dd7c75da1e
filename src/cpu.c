/*
 * cpu.c -- CPU feature detection and the dispatch of the kernel tables.
 *
 * Requirements per table are exactly the -m flags its file is compiled with
 * (the compiler may use any of them anywhere in that file):
 *   avx2    AVX2, FMA, BMI1, BMI2, POPCNT; XCR0 saves SSE and AVX state
 *   avx512  the above + AVX-512 F, BW, VL, DQ, VBMI, VNNI; XCR0 also saves
 *           the opmask and both halves of the ZMM state
 * So a Skylake-X or Cascade Lake (no VBMI) runs the avx2 table; Ice Lake and
 * later, Zen 4/5 the avx512 one.  Checking XCR0 (via xgetbv, only after cpuid reports OSXSAVE) matters:
 * a CPU can have AVX-512 that the kernel or hypervisor has not enabled, and
 * using it would fault.
 *
 * The choice is computed once under pthread_once and then only read, so
 * avq_isa() and avq_kernels_get() are safe from any thread.
 */
#include "cpu.h"

#include "avq_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>

typedef struct {
    bool avx2, avx512;
} isa_support;

static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static isa_support detect(void) {
    isa_support s = {false, false};
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return s;
    bool osxsave = c & (1u << 27), avx = c & (1u << 28), fma = c & (1u << 12),
         popcnt = c & (1u << 23);
    if (!osxsave || !avx || !fma || !popcnt) return s;
    uint64_t xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) return s; /* SSE + AVX state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return s;
    bool avx2 = b & (1u << 5), bmi1 = b & (1u << 3), bmi2 = b & (1u << 8);
    s.avx2 = avx2 && bmi1 && bmi2;
    bool f = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31),
         vbmi = c & (1u << 1), vnni = c & (1u << 11);
    bool zmm_state = (xcr0 & 0xE0) == 0xE0; /* opmask, ZMM_Hi256, Hi16_ZMM */
    s.avx512 = s.avx2 && f && dq && bw && vl && vbmi && vnni && zmm_state;
    return s;
}
#endif

bool avq_cpu_supports(const char *isa) {
    if (!isa) return false;
    if (strcmp(isa, "scalar") == 0) return true;
#if defined(__x86_64__)
    isa_support s = detect();
    if (strcmp(isa, "avx2") == 0) return s.avx2;
    if (strcmp(isa, "avx512") == 0) return s.avx512;
#endif
    return false;
}

const avq_kernels *avq_kernels_for(const char *isa) {
    if (!avq_cpu_supports(isa)) return NULL;
#if defined(__x86_64__)
    if (strcmp(isa, "avx512") == 0) return &avq_kernels_avx512;
    if (strcmp(isa, "avx2") == 0) return &avq_kernels_avx2;
#endif
    return &avq_kernels_scalar;
}

static const avq_kernels *chosen;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

/* The best supported ISA not above the requested one ("avx512" when none). */
static void choose(void) {
    static const char *const ladder[] = {"avx512", "avx2", "scalar"};
    const char *want = getenv("AVQ_ISA");
    size_t start = 0;
    for (size_t i = 0; want && i < 3; i++)
        if (strcmp(want, ladder[i]) == 0) start = i;
    for (size_t i = start; i < 3; i++) {
        const avq_kernels *k = avq_kernels_for(ladder[i]);
        if (k) {
            chosen = k;
            return;
        }
    }
    chosen = &avq_kernels_scalar;
}

const avq_kernels *avq_kernels_get(void) {
    pthread_once(&chosen_once, choose);
    return chosen;
}

const char *avq_isa(void) { return avq_kernels_get()->isa; }
