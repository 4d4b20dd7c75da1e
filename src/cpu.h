/*
 * cpu.h -- run-time choice of the SIMD kernels.
 *
 * The library is compiled for the baseline of its architecture; only
 * src/simd/ files carry -mavx2 / -mavx512* flags, and nothing from them runs
 * until this module has checked, with cpuid and xgetbv, that the CPU has the
 * instructions AND that the operating system saves the register state they
 * use.  On aarch64 the NEON kernels (src/simd/scan_neon.c, baseline, no
 * flag) run when the ASIMD hwcap is set.  The choice is made once per
 * process (pthread_once) and can be forced with AVQ_ISA=scalar|avx2|avx512
 * (x86-64) or AVQ_ISA=scalar|neon (aarch64); a forced ISA the CPU cannot
 * run falls back to the best one it can, and that or an unknown value is
 * reported with one line on stderr.
 */
#ifndef AVQ_CPU_H
#define AVQ_CPU_H

#include "scan.h"

#include <stdbool.h>

/* The kernel table of the chosen ISA (never NULL). */
const avq_kernels *avq_kernels_get(void);

/* The table of the ISA named "scalar", "avx2", "avx512" or "neon" if this
 * build has it and this CPU can run it, else NULL.  Lets tests compare
 * every supported ISA with the scalar reference regardless of AVQ_ISA. */
const avq_kernels *avq_kernels_for(const char *isa);

/* Whether the CPU (and OS) can run the named ISA's kernels. */
bool avq_cpu_supports(const char *isa);

#endif
