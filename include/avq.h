/*
 * avq.h -- the public interface of avq, and its manual.
 *
 * avq searches dense float vectors for the highest inner product (MIPS), the
 * highest cosine similarity, or the smallest squared Euclidean distance.  Its
 * index is the one described by Guo et al., "Accelerating Large-Scale
 * Inference with Anisotropic Vector Quantization" (ICML 2020,
 * arXiv:1908.10396): a k-means partition of the data into leaves, a 4-bit (or
 * 8-bit) product quantizer whose codes are chosen to minimise the
 * *score-aware* (anisotropic) loss instead of the reconstruction error, a
 * SIMD "fast scan" over the packed codes, and an exact re-ranking of the best
 * candidates.  For small data, or to obtain ground truth, the exact
 * (brute-force) search below is also part of the API.
 *
 * This header is the only one a user needs.  Everything in it is C11.
 *
 * ---------------------------------------------------------------------------
 * Conventions that hold for every function
 * ---------------------------------------------------------------------------
 * Errors.  Functions that can fail return an `int` status: AVQ_OK (0) on
 *   success, one of the negative AVQ_ERR_* codes on failure.  On failure a
 *   human-readable message with context ("base.fvecs: row 12 has dimension 99,
 *   expected 100") is stored in a thread-local buffer and can be read with
 *   avq_last_error() until the next failing call *in the same thread*.
 *   Output arguments are left untouched (or set to NULL for pointers to
 *   created objects) when a call fails, and nothing leaks.
 *
 * Memory.  The caller owns every buffer it passes in; avq never keeps a
 *   pointer to a caller's buffer after a call returns (an index copies what it
 *   needs).  Objects avq creates (avq_index) are released with their own
 *   _free function, which accepts NULL.
 *
 * Threads.  avq has no global mutable state.  An avq_index is immutable once
 *   built or loaded: any number of threads may search it at once without
 *   locks.  Functions that take a `threads` argument use that many worker
 *   threads (0 means "one per online CPU") and return only when all are done.
 *
 * Scores.  For AVQ_METRIC_DOT and AVQ_METRIC_COSINE, scores are similarities:
 *   larger is better and results come in decreasing order.  For AVQ_METRIC_L2
 *   scores are squared Euclidean distances: smaller is better and results come
 *   in increasing order.  Ties are broken by the lower id.  When fewer than k
 *   results exist, the remaining ids are -1 and their scores are NaN.
 *
 * Ids.  A database vector's id is its row number in the array it was built
 *   from (0-based), returned as int64_t.
 */
#ifndef AVQ_H
#define AVQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define AVQ_API
#else
#define AVQ_API __attribute__((visibility("default")))
#endif

/* ------------------------------------------------------------------------- */
/* Version                                                                   */
/* ------------------------------------------------------------------------- */

#define AVQ_VERSION_MAJOR 0
#define AVQ_VERSION_MINOR 1
#define AVQ_VERSION_PATCH 0
/* One number that compares: 100*100*major + 100*minor + patch. */
#define AVQ_VERSION_NUMBER \
    (AVQ_VERSION_MAJOR * 10000 + AVQ_VERSION_MINOR * 100 + AVQ_VERSION_PATCH)

/* The version of the library actually linked, as "MAJOR.MINOR.PATCH".  The
 * string is static; never free it. */
AVQ_API const char *avq_version(void);

/* The same as a number (see AVQ_VERSION_NUMBER).  Compare it with the macro
 * to detect a header/library mismatch. */
AVQ_API unsigned avq_version_number(void);

/* ------------------------------------------------------------------------- */
/* Errors                                                                    */
/* ------------------------------------------------------------------------- */

typedef enum avq_status {
    AVQ_OK = 0,
    AVQ_ERR_INVALID = -1,     /* an argument is out of range or inconsistent */
    AVQ_ERR_NOMEM = -2,       /* an allocation failed */
    AVQ_ERR_IO = -3,          /* the operating system refused a read/write */
    AVQ_ERR_FORMAT = -4,      /* a file is truncated, corrupt or of an unknown version */
    AVQ_ERR_CANCELLED = -5,   /* a progress callback asked to stop */
    AVQ_ERR_UNSUPPORTED = -6, /* valid request this build/CPU cannot serve */
    AVQ_ERR_INTERNAL = -7     /* a bug in avq: please report it */
} avq_status;

/* A short static description of a status code ("invalid argument", ...).
 * Unknown codes give "unknown error".  Never returns NULL. */
AVQ_API const char *avq_strerror(int status);

/* The message of the last failure in the calling thread, with context.  The
 * string lives in thread-local storage and stays valid until the next failing
 * avq call in the same thread.  Returns "" if nothing failed yet. */
AVQ_API const char *avq_last_error(void);

/* ------------------------------------------------------------------------- */
/* Metrics                                                                   */
/* ------------------------------------------------------------------------- */

typedef enum avq_metric {
    AVQ_METRIC_DOT = 0,    /* maximum inner product <q, x>             */
    AVQ_METRIC_L2 = 1,     /* minimum squared Euclidean ||q - x||^2     */
    AVQ_METRIC_COSINE = 2  /* maximum <q, x> / (||q|| ||x||); vectors are
                              normalised on the way in, a zero vector
                              scores 0 against everything                */
} avq_metric;

/* Parse "ip"/"dot"/"dot_product", "l2"/"squared_l2", "cos"/"cosine"/"angular".
 * Returns AVQ_OK or AVQ_ERR_INVALID (with a message listing the choices). */
AVQ_API int avq_metric_parse(const char *name, avq_metric *out);

/* The canonical name of a metric ("dot_product", "squared_l2", "cosine");
 * "unknown" for a value outside the enum.  Static string. */
AVQ_API const char *avq_metric_name(avq_metric metric);

/* ------------------------------------------------------------------------- */
/* Progress and cancellation                                                 */
/* ------------------------------------------------------------------------- */

/* Called from the thread that started a long operation (never from a worker)
 * with the name of the current stage ("kmeans", "encode", "search", ...) and
 * how far it got: done out of total units.  Return 0 to continue, non-zero to
 * cancel: the operation then stops soon, frees what it allocated and returns
 * AVQ_ERR_CANCELLED. */
typedef int (*avq_progress_fn)(void *user, const char *stage, size_t done,
                               size_t total);

/* ------------------------------------------------------------------------- */
/* Exact search                                                              */
/* ------------------------------------------------------------------------- */

/* Brute-force k-nearest-neighbour search: the ground truth, and the right
 * tool below ~20k vectors.
 *
 *   base      n x dim row-major floats (read only, not retained)
 *   queries   nq x dim row-major floats
 *   k         results per query, 1 <= k; if k > n the tail is padded with
 *             id -1 / score NaN
 *   threads   worker threads, 0 = one per CPU
 *   ids       nq x k output, row-major, caller-allocated
 *   scores    nq x k output, or NULL if not wanted
 *   progress  optional (may be NULL), called with stage "exact"
 *
 * Scores follow the conventions at the top of this file; ties go to the
 * lower id, so the result is fully deterministic and independent of
 * `threads`.  Inner products are computed in float32 with a GEMM (OpenBLAS),
 * so scores equal a naive double loop to within float rounding.
 * Errors: AVQ_ERR_INVALID (NULL pointer, n, dim, nq or k of 0, a NaN or
 * infinite value in base or queries), AVQ_ERR_NOMEM, AVQ_ERR_CANCELLED.
 * Thread-safe: yes (reads its inputs only). */
AVQ_API int avq_exact_search(const float *base, size_t n, size_t dim,
                             const float *queries, size_t nq,
                             avq_metric metric, size_t k, int threads,
                             int64_t *ids, float *scores,
                             avq_progress_fn progress, void *progress_user);

/* ------------------------------------------------------------------------- */
/* CPU features                                                              */
/* ------------------------------------------------------------------------- */

/* The instruction set the SIMD kernels use in this process: "avx512",
 * "avx2" or "scalar".  Chosen at first use from the CPU (cpuid/xgetbv); the
 * environment variable AVQ_ISA=scalar|avx2|avx512 forces a choice (a choice
 * the CPU cannot run falls back to the best it can).  Static string. */
AVQ_API const char *avq_isa(void);

#ifdef __cplusplus
}
#endif

#endif /* AVQ_H */
