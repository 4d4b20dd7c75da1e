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
/* The index                                                                 */
/* ------------------------------------------------------------------------- */

/* How candidates found by the quantized scan are re-scored before the final
 * top-k.  FLOAT keeps a copy of the vectors (4 bytes/dimension) and gives
 * exact scores; INT8 keeps 1 byte/dimension (per-dimension scales) and gives
 * scores within ~0.5 % ; NONE returns the quantized estimates as they are. */
typedef enum avq_reorder {
    AVQ_REORDER_FLOAT = 0,
    AVQ_REORDER_INT8 = 1,
    AVQ_REORDER_NONE = 2
} avq_reorder;

/* Everything an index is built from.  Always start from
 * avq_build_params_init(), which fills the recommended defaults, then change
 * what you need: fields may be added at the end in later versions.
 *
 * The index has three tiers, chosen by size as ScaNN recommends:
 *   n < brute_force_below      exact scoring of every vector (no training)
 *   n < 100 * 1000             one leaf: 4-bit anisotropic PQ scan + reorder
 *   otherwise                  num_leaves k-means leaves + PQ + reorder     */
typedef struct avq_build_params {
    avq_metric metric;
    /* partitioning */
    size_t num_leaves;        /* 0 = auto (about sqrt(n)); 1 = no partition   */
    size_t training_sample;   /* rows used to train k-means; 0 = auto (100k) */
    int kmeans_iterations;    /* default 12                                   */
    int spherical;            /* unit-norm leaf centers: -1 = auto (cosine)   */
    float avq_center_eta;     /* > 0: anisotropic leaf centers with this η
                                 (inner-product metrics only); 0 = off        */
    /* product quantization */
    int dims_per_block;       /* dimensions per 4-bit code, default 2         */
    int bits;                 /* 4 (16 centers, SIMD fast scan) or 8          */
    float threshold;          /* anisotropic threshold T (ScaNN's
                                 anisotropic_quantization_threshold), default
                                 0.2 for dot/cosine; NaN = reconstruction loss
                                 (plain PQ); ignored for L2                   */
    float eta;                /* > 0: use this η = h∥/h⊥ for every point
                                 instead of deriving it from T               */
    /* re-ranking */
    avq_reorder reorder;      /* default AVQ_REORDER_FLOAT                    */
    /* execution */
    size_t brute_force_below; /* default 20000                                */
    int threads;              /* 0 = one per CPU                              */
    uint64_t seed;            /* all sampling is reproducible from it         */
    avq_progress_fn progress; /* optional, see avq_progress_fn               */
    void *progress_user;
} avq_build_params;

/* Fill *params with the defaults for `metric`.  Never fails. */
AVQ_API void avq_build_params_init(avq_build_params *params, avq_metric metric);

/* An index: opaque, immutable after build or load, safe to search from any
 * number of threads at once. */
typedef struct avq_index avq_index;

/* Build an index over n vectors of dimension dim (row-major, copied: the
 * caller may free `data` afterwards).  On success *out owns a new index
 * (release with avq_index_free).  Long: reports progress and can be
 * cancelled through params->progress.
 * Errors: AVQ_ERR_INVALID (bad params -- the message names the field --,
 * NULL pointers, n or dim 0, NaN/infinite values), AVQ_ERR_NOMEM,
 * AVQ_ERR_CANCELLED.  Thread-safe: yes. */
AVQ_API int avq_index_build(const float *data, size_t n, size_t dim,
                            const avq_build_params *params, avq_index **out);

/* Release an index and everything it owns (or unmaps).  NULL is a no-op.
 * No search may be running on it. */
AVQ_API void avq_index_free(avq_index *index);

/* Per-call search settings.  Start from avq_search_params_init(). */
typedef struct avq_search_params {
    size_t k;                 /* results per query, default 10                */
    size_t leaves_to_search;  /* leaves scanned per query; 0 = index default  */
    size_t pre_reorder;       /* candidates re-scored exactly; 0 = default;
                                 ignored without reorder data                 */
} avq_search_params;

/* k = 10, leaves_to_search and pre_reorder 0 (the index's defaults). */
AVQ_API void avq_search_params_init(avq_search_params *params);

/* Search one query (dim floats).  ids/scores: k entries each, caller
 * allocated (scores may be NULL).  Scores and order follow the conventions
 * at the top of this file; with reordering the scores are exact (FLOAT) or
 * int8-approximate, without they are the quantized estimates.
 * Allocates a small scratch per call; for allocation-free repeated searches
 * use avq_index_search_batch with many queries.
 * Errors: AVQ_ERR_INVALID (k = 0, leaves_to_search > leaves, NaN in the
 * query, NULL pointers).  Thread-safe: yes, any number of concurrent calls. */
AVQ_API int avq_index_search(const avq_index *index, const float *query,
                             const avq_search_params *params, int64_t *ids,
                             float *scores);

/* Search nq queries (row-major nq x dim) with `threads` workers (0 = one per
 * CPU).  ids/scores are nq x k, row-major.  Results are identical to nq
 * calls of avq_index_search, but the throughput is higher: workers take
 * chunks of up to 96 queries, and inside a chunk every leaf's codes are
 * read once for up to 3 of the queries that chose it.  Scratch memory is
 * allocated once per call (about 0.5 MB per worker on GloVe-100), never per
 * query.  If a query is invalid (NaN) the call fails with the query's number
 * in the message; rows of other queries may or may not have been written.
 * Errors as avq_index_search.  Thread-safe: yes. */
AVQ_API int avq_index_search_batch(const avq_index *index, const float *queries,
                                   size_t nq, const avq_search_params *params,
                                   int threads, int64_t *ids, float *scores);

/* Accessors (index must not be NULL). */
AVQ_API size_t avq_index_size(const avq_index *index);      /* vectors    */
AVQ_API size_t avq_index_dim(const avq_index *index);       /* dimension  */
AVQ_API avq_metric avq_index_metric(const avq_index *index);
AVQ_API size_t avq_index_num_leaves(const avq_index *index);
/* Bytes of memory the index holds (codes, centers, codebooks, reorder data,
 * ids), excluding the allocator's overhead. */
AVQ_API size_t avq_index_memory_bytes(const avq_index *index);
/* The parameters it was built with (progress callback cleared). */
AVQ_API void avq_index_build_params(const avq_index *index, avq_build_params *out);
/* The defaults used when avq_search_params leaves fields at 0. */
AVQ_API void avq_index_default_search_params(const avq_index *index,
                                             avq_search_params *out);

/* ------------------------------------------------------------------------- */
/* Saving and loading                                                        */
/* ------------------------------------------------------------------------- */

/* Write the index to one file (format: doc/FORMAT.md).  The data goes to a
 * temporary file in the same directory, is flushed to disk (fsync) and then
 * renamed over `path`: a crash or a full disk mid-save never destroys a
 * previous file at `path`.
 * Errors: AVQ_ERR_INVALID (NULL), AVQ_ERR_IO (message names the file and the
 * system error).  Thread-safe: yes (the index is only read). */
AVQ_API int avq_index_save(const avq_index *index, const char *path);

/* Flags for avq_index_load. */
#define AVQ_LOAD_COPY 0u          /* read the file into memory owned by the index */
#define AVQ_LOAD_MMAP 1u          /* map the file read-only: near-instant, pages
                                     come from the page cache on first use; the
                                     file must not be modified while mapped   */
#define AVQ_LOAD_SKIP_CHECKSUMS 2u /* with AVQ_LOAD_MMAP only (a copy always
                                     verifies): trust the data sections'
                                     CRC32C (headers and every size are still
                                     validated): for files you wrote
                                     yourself.  The
                                     stored ids are not checked either (a
                                     corrupt file then cannot crash a search,
                                     but may return wrong ids)               */

/* Load an index saved by avq_index_save.  Every count and length is checked
 * against the file size and against each other before anything is
 * allocated, and the checksums are verified (unless skipped), so a truncated
 * or corrupted file gives AVQ_ERR_FORMAT with the section and reason --
 * never a crash.  A file of a newer format version that this library cannot
 * read also gives AVQ_ERR_FORMAT, naming both versions.
 * On success *out owns the index (release with avq_index_free, which also
 * unmaps).  Errors: AVQ_ERR_INVALID, AVQ_ERR_IO, AVQ_ERR_FORMAT,
 * AVQ_ERR_NOMEM.  Thread-safe: yes. */
AVQ_API int avq_index_load(const char *path, unsigned flags, avq_index **out);

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
