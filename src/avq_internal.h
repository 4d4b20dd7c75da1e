/*
 * avq_internal.h -- what every file in src/ shares: the error convention, the
 * worker-thread helper and a few numeric utilities.
 *
 * Each pipeline stage keeps its own internal header (kmeans.h, pq.h, scan.h,
 * ...) so that a file's dependencies are visible in its #include lines; this
 * one holds only what truly everyone needs.
 */
#ifndef AVQ_INTERNAL_H
#define AVQ_INTERNAL_H

#include "avq.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors ------------------------------------------------------------ */

/* Record a failure for avq_last_error() (printf-style message) and return
 * `status`, so a failing path reads `return avq_fail(AVQ_ERR_INVALID, ...)`. */
int avq_fail(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Shorthand for an allocation failure of `bytes` while doing `what`. */
int avq_fail_nomem(const char *what, size_t bytes);

/* ---- memory hints ------------------------------------------------------ */

/* Ask for the cache line holding `p` ahead of use (a no-op where the
 * compiler has no builtin).  Never faults, so any address is allowed. */
#if defined(__GNUC__) || defined(__clang__)
#define AVQ_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#else
#define AVQ_PREFETCH(p) ((void)(p))
#endif

/* ---- allocation -------------------------------------------------------- */

/* 64-byte aligned allocation (cache line / AVX-512 width); NULL on failure or
 * on a size overflow.  Free with avq_free_aligned(). */
void *avq_alloc_aligned(size_t bytes);
void avq_free_aligned(void *p);
/* bytes rounded up to a whole number of 64-byte lines */
static inline size_t avq_align64(size_t bytes) { return (bytes + 63) & ~(size_t)63; }
/* Hands the whole pages inside [p, p + bytes) of a heap block back to the
 * OS: for a large array whose part has been copied elsewhere and will not
 * be read again before the block is freed (those bytes read as zero
 * afterwards).  Lowers the resident peak of adding many rows at once: the
 * leaves' copies grow as the encoded arrays shrink.  A hint; a no-op where
 * madvise(MADV_DONTNEED) is missing. */
void avq_release_pages(void *p, size_t bytes);

/* ptr = malloc(count elements), or record the failure in `st` and jump to
 * the function's `fail` label (the pattern of the multi-step builders). */
#define AVQ_ALLOC(ptr, count)                                                 \
    do {                                                                      \
        size_t bytes_;                                                        \
        if (!avq_mul_ok((count), sizeof *(ptr), &bytes_) ||                   \
            !((ptr) = malloc(bytes_ ? bytes_ : 1))) {                         \
            st = avq_fail_nomem(#ptr, (count) * sizeof *(ptr));               \
            goto fail;                                                        \
        }                                                                     \
    } while (0)

/* a * b without overflow; returns false (and leaves *out alone) if it would. */
static inline bool avq_mul_ok(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}

/* ---- threads ----------------------------------------------------------- */

/* The number of online CPUs (at least 1). */
int avq_cpu_count(void);

/* Resolve a user's `threads` argument: 0 -> CPU count, clamp to [1, 256]. */
int avq_resolve_threads(int threads);

/* Work function of avq_parallel_for: process items [begin, end) on worker
 * number `worker` (0 <= worker < threads).  Returns AVQ_OK or an error
 * status; the first error stops the distribution of further chunks. */
typedef int (*avq_range_fn)(void *ctx, size_t begin, size_t end, int worker);

/* Run fn over [0, n) in chunks of `chunk` items, handed out dynamically to
 * `threads` workers (the calling thread is worker 0).  Returns the first
 * error a chunk reported, else AVQ_OK.  Chunks may run in any order, so fn
 * must write disjoint outputs.  If `progress` is not NULL it is called from
 * the calling thread with (done items, n) after each of its chunks and may
 * cancel (AVQ_ERR_CANCELLED). */
int avq_parallel_for(size_t n, size_t chunk, int threads, avq_range_fn fn,
                     void *ctx, avq_progress_fn progress, void *progress_user,
                     const char *stage);

/* ---- numeric helpers --------------------------------------------------- */

/* True if all n values are finite (no NaN, no infinity). */
bool avq_all_finite(const float *x, size_t n);

/* Index of the first non-finite value, or n if there is none. */
size_t avq_first_non_finite(const float *x, size_t n);

/* Squared Euclidean norm and dot product in double precision (reference
 * quality, used outside hot loops). */
double avq_dot_f64(const float *a, const float *b, size_t d);
double avq_norm2_f64(const float *a, size_t d);

/* Deterministic 64-bit PRNG (splitmix64): reproducible across platforms. */
static inline uint64_t avq_rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* Uniform double in [0, 1). */
static inline double avq_rng_uniform(uint64_t *state) {
    return (double)(avq_rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

#endif
