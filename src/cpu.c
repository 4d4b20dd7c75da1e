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
 *   neon    (aarch64) Advanced SIMD: part of the AArch64 baseline, so the
 *           file needs no flag; the ASIMD hwcap is checked all the same
 *
 * The choice is computed once under pthread_once and then only read, so
 * avq_isa() and avq_kernels_get() are safe from any thread.  An AVQ_ISA
 * value that is not a kernel set of this build, or one this CPU cannot run,
 * is not obeyed silently: one line on stderr names the value, the valid
 * ones and the set used instead (include/avq.h, avq_isa).
 */
#include "cpu.h"

#include "avq_internal.h"

#include <pthread.h>
#include <stdio.h>
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

#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>

static bool has_asimd(void) { return (getauxval(AT_HWCAP) & HWCAP_ASIMD) != 0; }
#elif defined(__aarch64__)
static bool has_asimd(void) { return true; } /* baseline of the architecture */
#endif

/* The kernel sets of this build, best first: the ladder the choice walks. */
#if defined(__x86_64__)
static const char *const ladder[] = {"avx512", "avx2", "scalar"};
#elif defined(__aarch64__)
static const char *const ladder[] = {"neon", "scalar"};
#else
static const char *const ladder[] = {"scalar"};
#endif
enum { LADDER_SIZE = sizeof ladder / sizeof ladder[0] };

bool avq_cpu_supports(const char *isa) {
    if (!isa) return false;
    if (strcmp(isa, "scalar") == 0) return true;
#if defined(__x86_64__)
    isa_support s = detect();
    if (strcmp(isa, "avx2") == 0) return s.avx2;
    if (strcmp(isa, "avx512") == 0) return s.avx512;
#elif defined(__aarch64__)
    if (strcmp(isa, "neon") == 0) return has_asimd();
#endif
    return false;
}

const avq_kernels *avq_kernels_for(const char *isa) {
    if (!avq_cpu_supports(isa)) return NULL;
#if defined(__x86_64__)
    if (strcmp(isa, "avx512") == 0) return &avq_kernels_avx512;
    if (strcmp(isa, "avx2") == 0) return &avq_kernels_avx2;
#elif defined(__aarch64__)
    if (strcmp(isa, "neon") == 0) return &avq_kernels_neon;
#endif
    return &avq_kernels_scalar;
}

static const avq_kernels *chosen;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

/* The AVQ_ISA value that was not obeyed, why, and what is used instead: one
 * line, written with a single call so that it is not interleaved. */
static void warn_isa(const char *want, const char *why, const char *used) {
    char valid[64] = "";
    for (size_t i = 0; i < LADDER_SIZE; i++) {
        if (i) strncat(valid, ", ", sizeof valid - strlen(valid) - 1);
        strncat(valid, ladder[i], sizeof valid - strlen(valid) - 1);
    }
    fprintf(stderr, "avq: warning: AVQ_ISA=%.40s %s (valid: %s); using %s instead\n", want, why,
            valid, used);
}

/* The best supported ISA not above the requested one (the best of all when
 * AVQ_ISA is unset, empty or unknown). */
static void choose(void) {
    const char *want = getenv("AVQ_ISA");
    if (want && !*want) want = NULL; /* empty: as if unset */
    size_t start = 0;
    bool known = false;
    for (size_t i = 0; want && i < LADDER_SIZE; i++)
        if (strcmp(want, ladder[i]) == 0) {
            start = i;
            known = true;
        }
    chosen = &avq_kernels_scalar;
    for (size_t i = start; i < LADDER_SIZE; i++) {
        const avq_kernels *k = avq_kernels_for(ladder[i]);
        if (k) {
            chosen = k;
            break;
        }
    }
    if (want && !known) warn_isa(want, "is not a kernel set of this build", chosen->isa);
    else if (want && strcmp(want, chosen->isa) != 0)
        warn_isa(want, "cannot run on this CPU", chosen->isa);
}

const avq_kernels *avq_kernels_get(void) {
    pthread_once(&chosen_once, choose);
    return chosen;
}

const char *avq_isa(void) { return avq_kernels_get()->isa; }
