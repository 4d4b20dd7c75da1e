/*
 * util.c -- small numeric and memory helpers used across the pipeline.
 */
#include "avq_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

void *avq_alloc_aligned(size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (bytes > SIZE_MAX - 63) return NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    return aligned_alloc(64, rounded);
}

void avq_free_aligned(void *p) { free(p); }

void avq_release_pages(void *p, size_t bytes) {
#if defined(MADV_DONTNEED)
    long page = sysconf(_SC_PAGESIZE);
    if (!p || page <= 0 || bytes < (size_t)page) return;
    uintptr_t mask = (uintptr_t)page - 1;
    uintptr_t first = ((uintptr_t)p + mask) & ~mask, end = ((uintptr_t)p + bytes) & ~mask;
    if (end > first) (void)madvise((void *)first, end - first, MADV_DONTNEED); /* a hint */
#else
    (void)p;
    (void)bytes;
#endif
}

size_t avq_first_non_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return n;
}

bool avq_all_finite(const float *x, size_t n) {
    /* Branch-free sweep: isfinite() in a plain loop vectorises poorly, but
     * x - x is 0 for finite values and NaN otherwise. */
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++) acc += x[i] - x[i];
    return acc == 0.0f;
}

double avq_dot_f64(const float *a, const float *b, size_t d) {
    double s = 0.0;
    for (size_t i = 0; i < d; i++) s += (double)a[i] * b[i];
    return s;
}

double avq_norm2_f64(const float *a, size_t d) { return avq_dot_f64(a, a, d); }
