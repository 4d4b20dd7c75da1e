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
 * Threads.  avq has no global mutable state.  An avq_quantizer is immutable.
 *   An avq_index changes only through its writer functions (add, upsert,
 *   remove, compact); any number of threads may search it, and call its
 *   read-only functions, while ONE writer changes it -- concurrent writers
 *   are serialised by a mutex inside the index.  A search never waits for a
 *   writer and never sees a half-made change: it sees each leaf either
 *   before or after a change (doc/DESIGN.md, "Concurrency").  Functions that
 *   take a `threads` argument use that many worker threads (0 means "one per
 *   CPU this process may use", avq_default_threads) and return only when
 *   all are done.
 *
 * Structs across versions.  Parameter and statistics structs start with a
 *   `struct_size` field that their _init macro sets to the caller's
 *   sizeof: a newer library never reads or writes past an older caller's
 *   struct, and fields it added later take their defaults.  Always start
 *   from the _init macro; a struct whose struct_size is 0 is refused.
 *
 * Scores.  For AVQ_METRIC_DOT and AVQ_METRIC_COSINE, scores are similarities:
 *   larger is better and results come in decreasing order.  For AVQ_METRIC_L2
 *   scores are squared Euclidean distances: smaller is better and results come
 *   in increasing order.  Ties are broken by the lower id.  When fewer than k
 *   results exist, the remaining ids are -1 and their scores are NaN.
 *
 * Input domain.  Every vector avq is given -- to build, train, add, upsert
 *   (and their _tagged forms), exact search (base and queries), and as a
 *   query to a search -- must have finite values and, for AVQ_METRIC_DOT and
 *   AVQ_METRIC_L2, a squared norm (summed in double) of at most 1e30, i.e.
 *   |x| <= 1e15, so that every inner product, distance and lookup-table
 *   entry stays finite in float32.  A vector outside it is refused with
 *   AVQ_ERR_INVALID and a message naming its row and column.
 *   AVQ_METRIC_COSINE normalises vectors first and accepts any finite
 *   magnitude, but an index cannot hold a zero vector.
 *
 * Ids.  Every vector in an index has a 64-bit id.  The caller chooses it
 *   (avq_index_add with ids) or avq assigns the next free one: one more than
 *   the largest id the index has ever held (0 for an empty index), so an
 *   index built in one call from n rows has ids 0..n-1, its row numbers.
 *   The id -1 (AVQ_NO_ID) is reserved: it marks "no result".
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
#define AVQ_VERSION_MINOR 7
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
                              normalised on the way in; a zero vector
                              has no direction: refused when built or
                              added, and a zero query scores 0           */
} avq_metric;

/* Parse a metric name, ignoring ASCII case.  The accepted names (one table,
 * shared by this function, the avq CLI's --metric, the 'distance' attribute
 * of ann-benchmarks HDF5 files and the Python module):
 *   AVQ_METRIC_DOT     dot_product, dot, ip, inner_product, mips
 *   AVQ_METRIC_L2      squared_l2, l2, euclidean, sqeuclidean
 *   AVQ_METRIC_COSINE  cosine, cos, angular
 * ("euclidean" ranks as the Euclidean distance does; the scores are still
 * squared distances.)  Returns AVQ_OK or AVQ_ERR_INVALID (with a message
 * listing the choices).  Thread-safe. */
AVQ_API int avq_metric_parse(const char *name, avq_metric *out);

/* The i-th name of that table (i = 0, 1, ... until NULL), its metric in
 * *metric (if not NULL); the first name of each metric is its canonical
 * one.  For listing the choices in help texts.  Static strings. */
AVQ_API const char *avq_metric_alias(size_t i, avq_metric *metric);

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
 * k may exceed n up to 1048576 (the rest padded with -1 / NaN).
 * Errors: AVQ_ERR_INVALID (NULL pointer, n, dim, nq or k of 0, k > n
 * together with k > 1048576, a base or query row outside the input domain
 * -- top of this file), AVQ_ERR_NOMEM, AVQ_ERR_CANCELLED.
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
 * exact scores; FLOAT16 keeps IEEE half-precision rows (2 bytes/dimension,
 * each component within 2^-11 of its value; added in 0.7) -- half the
 * memory and re-ranking traffic of FLOAT for scores within ~0.05 % -- and
 * needs every stored component within +-65504 (larger ones are refused,
 * AVQ_ERR_INVALID); INT8 keeps 1 byte/dimension (per-dimension scales) and
 * gives scores within ~0.5 %; NONE returns the quantized estimates as they
 * are.  Exact search, avq_index_get and retraining read the stored rows:
 * with FLOAT16 or INT8 they see the rounded vectors. */
typedef enum avq_reorder {
    AVQ_REORDER_FLOAT = 0,
    AVQ_REORDER_INT8 = 1,
    AVQ_REORDER_NONE = 2,
    AVQ_REORDER_FLOAT16 = 3
} avq_reorder;

/* How the anisotropic threshold T applies to a point x.  T is a score
 * threshold for unit-norm data; ABSOLUTE uses it as it is (ScaNN's
 * anisotropic_quantization_threshold), which on un-normalised data makes
 * eta = 1 -- plain reconstruction -- for every point whose norm is well
 * above T.  RELATIVE applies T |x| to point x, so every point is weighted as
 * a unit vector is (the normalised case's eta for any norm).  AUTO: RELATIVE
 * for AVQ_METRIC_DOT, ABSOLUTE for COSINE (where the two coincide); L2 has
 * no anisotropic loss. */
typedef enum avq_threshold_kind {
    AVQ_THRESHOLD_AUTO = 0,
    AVQ_THRESHOLD_RELATIVE = 1,
    AVQ_THRESHOLD_ABSOLUTE = 2
} avq_threshold_kind;

/* The score weight w(t) of the anisotropic loss (added in 0.4; doc/RESULTS.md,
 * "Score-aware weights").  The loss weighs the error of a point's score
 * t = <q, x> (unit q) by w(t); eta = h_par / h_perp follows from w and the
 * distribution of t for random q, per point norm (numerically, except the
 * step's closed forms).  `threshold` is T, `weight_param` the other number:
 *   STEP      1[t >= T]                 the paper's weight (the default)
 *   POW       t^P on t > 0, P = weight_param >= 0  (eta = P + 1 at every
 *             norm and dimension: a fixed eta)
 *   EXP       e^{L t}, L = weight_param >= 0 (eta ~ 1 + L^2 |x|^2 / d:
 *             grows with the norm under an absolute threshold_kind)
 *   LOGISTIC  1 / (1 + e^{-(t - T)/S}), S = weight_param > 0 (a soft step)
 * With a relative threshold_kind every point is weighted as its unit vector
 * is (one eta for all points); absolute weighs the point's own scores. */
typedef enum avq_weight_kind {
    AVQ_WEIGHT_STEP = 0,
    AVQ_WEIGHT_POW = 1,
    AVQ_WEIGHT_EXP = 2,
    AVQ_WEIGHT_LOGISTIC = 3
} avq_weight_kind;

/* Everything an index is built from.  Always start from
 * avq_build_params_init(), which fills the recommended defaults, then change
 * what you need: fields may be added at the end in later versions.
 *
 * The index has three tiers, chosen by size as ScaNN recommends:
 *   n < brute_force_below      exact scoring of every vector (no training)
 *   n < AVQ_SINGLE_LEAF_BELOW  one leaf: 4-bit anisotropic PQ scan + reorder
 *                              (when num_leaves is 0 = auto)
 *   otherwise                  num_leaves k-means leaves + PQ + reorder
 * (an explicit num_leaves applies from brute_force_below on).
 *
 * For AVQ_METRIC_L2 every anisotropic field
 * (threshold, eta, threshold_kind, avq_center_eta, weight, weight_param,
 * int8_aware) must keep the value avq_build_params_init(.., AVQ_METRIC_L2)
 * gives: a changed one fails the build with AVQ_ERR_INVALID naming it (L2
 * codes minimise the plain reconstruction error, so the setting would be
 * ignored). */
typedef struct avq_build_params {
    size_t struct_size;       /* set by avq_build_params_init: sizeof       */
    avq_metric metric;
    /* partitioning */
    size_t num_leaves;        /* 0 = auto (about sqrt(n)); 1 = no partition   */
    size_t training_sample;   /* rows used to train k-means; 0 = auto (100k) */
    int kmeans_iterations;    /* default 12                                   */
    int spherical;            /* unit-norm k-means centers: -1 = auto (cosine
                                 and dot: for raw inner products the leaves
                                 then follow directions, not norms)          */
    float avq_center_eta;     /* > 0: anisotropic leaf centers with this η
                                 (inner-product metrics only; must be 0 for
                                 L2); 0 = off;
                                 default 2.5 for dot and cosine, 0 for L2    */
    /* product quantization */
    int dims_per_block;       /* dimensions per code, default 2               */
    int bits;                 /* 4 (16 centers, default) or 8 (256 centers:
                                 a SIMD scan on AVX-512 CPUs, scalar
                                 elsewhere; doc/RESULTS.md "8-bit codes")    */
    float threshold;          /* anisotropic threshold T (ScaNN's
                                 anisotropic_quantization_threshold), default
                                 0.2 for dot/cosine; NaN = reconstruction loss
                                 (plain PQ); must stay NaN (its default) for
                                 L2, which has no anisotropic loss; see
                                 threshold_kind for un-normalised data       */
    float eta;                /* > 0: use this η = h∥/h⊥ for every point
                                 instead of deriving it from T (dot/cosine
                                 only: 0 for L2)                             */
    /* re-ranking */
    avq_reorder reorder;      /* default AVQ_REORDER_FLOAT                    */
    /* execution */
    size_t brute_force_below; /* default 20000                                */
    int threads;              /* 0 = one per CPU                              */
    uint64_t seed;            /* all sampling is reproducible from it         */
    avq_progress_fn progress; /* optional, see avq_progress_fn               */
    void *progress_user;
    /* added in 0.2 */
    avq_threshold_kind threshold_kind; /* how `threshold` scales with a
                                 point's norm; default AVQ_THRESHOLD_AUTO,
                                 the only value L2 accepts                  */
    /* added in 0.4 */
    float leaf_spread_z;      /* leaf ranking for inner products: a leaf is
                                 ranked by <q, c> + z |q| s, with s the
                                 per-dimension spread (RMS residual / sqrt d)
                                 of its points around its center c -- the
                                 score of a point z standard deviations above
                                 the leaf's mean, so wide leaves of large-norm
                                 points are not passed over for narrow ones
                                 (doc/RESULTS.md, "True MIPS").  0 = off (plain
                                 center scores); < 0 = auto, the default for
                                 dot: AVQ_DEFAULT_LEAF_SPREAD_Z when the
                                 training rows' norms vary (relative standard
                                 deviation >= AVQ_LEAF_SPREAD_AUTO_MIN_CV),
                                 else 0 -- on unit-norm data it does not help.
                                 Default 0 for cosine and L2 (where it must
                                 be 0 or auto).  The index stores the value
                                 it resolved to (avq_index_build_params);
                                 avq_search_params.leaf_spread_z overrides */
    /* added in 0.4 (score-aware weights, issue 19) */
    avq_weight_kind weight;   /* w(t) of the loss; default AVQ_WEIGHT_STEP
                                 (with `threshold` as T: the paper's loss);
                                 must be STEP for L2                        */
    float weight_param;       /* P, L or S of `weight` (see avq_weight_kind);
                                 ignored by STEP; default 0; must be 0 for L2 */
    int int8_aware;           /* with reorder = AVQ_REORDER_INT8: round each
                                 row to the int8 grid by the anisotropic loss
                                 (greedy floor/ceil flips) instead of to the
                                 nearest step; default 0; dot/cosine only */
    /* added in 0.5 (SOAR spilling, issue 15) */
    int spill;                /* extra leaves each vector is stored in: 0 (the
                                 default) or 1.  With 1, every vector is also
                                 stored in a second leaf chosen by SOAR's
                                 spilled-residual loss (Sun, Guo, Kumar,
                                 NeurIPS 2023; doc/DESIGN.md "Spilling"), so
                                 a query whose best leaves miss its primary
                                 leaf can still find it.  Costs a second copy
                                 of the codes, the id and the re-ranking row
                                 (memory and add time about 2x); searches
                                 de-duplicate before re-ranking.  Needs a
                                 partition: an index with one leaf (or the
                                 exact tier) resolves it to 0 */
    float spill_lambda;       /* lambda of the spill loss
                                 |r'|^2 + lambda <r, r'>^2 / |r|^2, >= 0:
                                 0 = the second-nearest center; default
                                 AVQ_DEFAULT_SPILL_LAMBDA (the paper's) */
} avq_build_params;

/* SOAR's orthogonality-amplification weight, as the paper recommends. */
#define AVQ_DEFAULT_SPILL_LAMBDA 1.0f

/* The weight leaf_spread_z = auto resolves to on data of varied norms, and
 * the relative standard deviation of the norms from which it does. */
#define AVQ_DEFAULT_LEAF_SPREAD_Z 2.0f
#define AVQ_LEAF_SPREAD_AUTO_MIN_CV 0.05

/* Defaults the library applies that avq_build_params_init cannot show
 * (they depend on n, or belong to the search), named for help texts:
 *   AVQ_SINGLE_LEAF_BELOW        num_leaves = 0 (auto) gives one leaf below
 *                                this many points, else round(sqrt(n))
 *                                leaves, at most n / 16
 *   AVQ_DEFAULT_TRAINING_SAMPLE  training_sample = 0 (auto): this many rows
 *                                (all of them when there are fewer)
 *   AVQ_DEFAULT_PRE_REORDER      the pre_reorder an index defaults to
 *   AVQ_DEFAULT_LEAVES_PERMILLE  the leaves_to_search an index defaults to:
 *                                this many per 1000 leaves, rounded up,
 *                                at least 1 */
#define AVQ_SINGLE_LEAF_BELOW 100000
#define AVQ_DEFAULT_TRAINING_SAMPLE 100000
#define AVQ_DEFAULT_PRE_REORDER 80
#define AVQ_DEFAULT_LEAVES_PERMILLE 35

/* Fill *params with the defaults for `metric` (writing at most struct_size
 * bytes).  Never fails.  Use the macro: it passes the caller's sizeof. */
AVQ_API void avq_build_params_init_sized(avq_build_params *params, size_t struct_size,
                                         avq_metric metric);
#define avq_build_params_init(params, metric) \
    avq_build_params_init_sized((params), sizeof *(params), (metric))

/* The id that marks "no result" in search output; never a vector's id. */
#define AVQ_NO_ID ((int64_t)-1)

/* ------------------------------------------------------------------------- */
/* The quantizer: what training produces                                     */
/* ------------------------------------------------------------------------- */

/* A trained quantizer: the metric, the leaf centers, the PQ codebook, the
 * encoding settings (T or eta, bits, dimensions per block), the reorder kind
 * and its int8 scales, and the default search settings.  It holds no
 * vectors.  Immutable once made, so it may be used from any number of
 * threads, and many indexes (shards) may share one: every index created from
 * it scores vectors the same way, so their results merge exactly.
 * Internally reference-counted: an index created from it keeps what it
 * needs alive, so the caller may free its handle at any time. */
typedef struct avq_quantizer avq_quantizer;

/* Train a quantizer on n sample vectors (row-major, not retained): k-means
 * leaves, the PQ codebook and the int8 scales, exactly as avq_index_build
 * trains them (the tiers of avq_build_params apply: with n below
 * brute_force_below the quantizer is the exact tier, which has no codes).
 * Long: reports progress and can be cancelled through params->progress.
 * Errors: as avq_index_build.  Thread-safe: yes. */
AVQ_API int avq_quantizer_train(const float *data, size_t n, size_t dim,
                                const avq_build_params *params, avq_quantizer **out);

/* Release the caller's handle (indexes created from it keep their own
 * reference).  NULL is a no-op. */
AVQ_API void avq_quantizer_free(avq_quantizer *quantizer);

/* Save a quantizer alone (an index file holding no vectors; atomic like
 * avq_index_save).  Errors: AVQ_ERR_INVALID, AVQ_ERR_IO. */
AVQ_API int avq_quantizer_save(const avq_quantizer *quantizer, const char *path);

/* Load a quantizer from a file written by avq_quantizer_save -- or from any
 * index file, taking its quantizer and ignoring its vectors.  Checked like
 * avq_index_load.  Errors: AVQ_ERR_INVALID, AVQ_ERR_IO, AVQ_ERR_FORMAT,
 * AVQ_ERR_NOMEM. */
AVQ_API int avq_quantizer_load(const char *path, avq_quantizer **out);

/* Accessors (quantizer must not be NULL). */
AVQ_API size_t avq_quantizer_dim(const avq_quantizer *quantizer);
AVQ_API avq_metric avq_quantizer_metric(const avq_quantizer *quantizer);
AVQ_API size_t avq_quantizer_num_leaves(const avq_quantizer *quantizer);

/* An index: opaque; searched from any number of threads while one writer
 * changes it (see "Threads" at the top). */
typedef struct avq_index avq_index;

/* Create an empty index that encodes with `quantizer` (which it shares:
 * the caller keeps its handle and may free it).  Fill it with
 * avq_index_add.  Errors: AVQ_ERR_INVALID (NULL), AVQ_ERR_NOMEM. */
AVQ_API int avq_index_create(const avq_quantizer *quantizer, avq_index **out);

/* The quantizer the index encodes with, borrowed: valid while the index
 * lives; pass it to avq_index_create to make more shards like this one. */
AVQ_API const avq_quantizer *avq_index_quantizer(const avq_index *index);

/* Build an index over n vectors of dimension dim (row-major, copied: the
 * caller may free `data` afterwards): avq_quantizer_train on the data, then
 * avq_index_add of every row with ids 0..n-1 (the rows keep the leaves
 * training gave them).  On success *out owns a new index
 * (release with avq_index_free).  Long: reports progress and can be
 * cancelled through params->progress.
 * Errors: AVQ_ERR_INVALID (bad params -- the message names the field --,
 * NULL pointers, n or dim 0, a row outside the input domain, a zero row
 * with the cosine metric), AVQ_ERR_NOMEM,
 * AVQ_ERR_CANCELLED.  Thread-safe: yes. */
AVQ_API int avq_index_build(const float *data, size_t n, size_t dim,
                            const avq_build_params *params, avq_index **out);

/* Release an index and everything it owns (or unmaps).  NULL is a no-op.
 * No other call may be running on it. */
AVQ_API void avq_index_free(avq_index *index);

/* ---- changing an index ----------------------------------------------------
 * All four writer functions are all-or-nothing: on any error the index is
 * exactly as before the call.  They encode with the index's quantizer (its
 * leaves, codebook and anisotropic weights are never retrained: see
 * avq_index_stats for the drift to watch).  Writers are serialised with
 * each other; searches run on while they work and see each leaf change at
 * once.  Rows are checked first: a row with NaN/Inf or, for dot/L2, a norm
 * above 1e15, a zero row with the
 * cosine metric, a duplicate id within the call or the id AVQ_NO_ID make the
 * call fail with AVQ_ERR_INVALID naming the row, and nothing is added. */

/* Add n vectors (row-major n x dim, copied) under `ids` (n distinct ids
 * not in the index), or under automatic ids when ids is NULL (the next
 * free ones, see "Ids" above).  ids_out, if not NULL, receives the n ids
 * used.  threads: encoding workers (0 = one per CPU).
 * Errors: AVQ_ERR_INVALID (also: an id already present -- use
 * avq_index_upsert to replace), AVQ_ERR_NOMEM.  n = 0 is a no-op. */
AVQ_API int avq_index_add(avq_index *index, const float *vectors, size_t n,
                          const int64_t *ids, int threads, int64_t *ids_out);

/* Insert or replace: ids present get their vector replaced, the others are
 * added.  *replaced (if not NULL) receives how many were present.
 * Errors as avq_index_add (ids is required here). */
AVQ_API int avq_index_upsert(avq_index *index, const float *vectors, size_t n,
                             const int64_t *ids, int threads, size_t *replaced);

/* Remove the vectors with these ids.  Ids not in the index are counted,
 * not an error: *removed (if not NULL) receives how many were present.
 * From the moment this returns no search started afterwards returns them.
 * A leaf whose share of dead slots passes the compaction threshold (0.5 by
 * default, avq_index_set_compact_threshold) is compacted before return.
 * Errors: AVQ_ERR_INVALID (NULL with n > 0), AVQ_ERR_NOMEM. */
AVQ_API int avq_index_remove(avq_index *index, const int64_t *ids, size_t n,
                             size_t *removed);

/* Rewrite every leaf whose dead share is at least min_dead_fraction
 * (0 = every leaf with any dead slot) without its dead slots, reclaiming
 * their memory.  *compacted (if not NULL): leaves rewritten.
 * Errors: AVQ_ERR_INVALID (fraction outside [0, 1]), AVQ_ERR_NOMEM. */
AVQ_API int avq_index_compact(avq_index *index, double min_dead_fraction,
                              size_t *compacted);

/* The dead share at which avq_index_remove and avq_index_upsert compact a
 * leaf by themselves:
 * (0, 1], or 0 to turn automatic compaction off.  Default 0.5.
 * Errors: AVQ_ERR_INVALID. */
AVQ_API int avq_index_set_compact_threshold(avq_index *index, double fraction);

/* 1 if a vector with this id is in the index, 0 if not. */
AVQ_API int avq_index_contains(const avq_index *index, int64_t id);

/* The stored vectors of n ids into out (n x dim), as the index keeps them
 * for re-ranking: exact with FLOAT reorder (normalised for cosine),
 * rounded to the nearest half with FLOAT16, dequantized with INT8.  Errors: AVQ_ERR_INVALID (an id not present: the
 * message names it; out is then partly written), AVQ_ERR_UNSUPPORTED
 * (reorder NONE keeps no vectors). */
AVQ_API int avq_index_get(const avq_index *index, const int64_t *ids, size_t n,
                          float *out);

/* Retrain: a new index over the live vectors of `index` (as avq_index_get
 * returns them), with a quantizer trained afresh with `params` (NULL = the
 * parameters `index` was built with) and the same ids.  This is the remedy
 * for drift (leaves grown apart, a distribution that moved); its cost is a
 * full build.  The old index is not changed; swap the two when it returns.
 * Errors: as avq_index_build, AVQ_ERR_UNSUPPORTED (reorder NONE). */
AVQ_API int avq_index_retrain(const avq_index *index, const avq_build_params *params,
                              avq_index **out);

/* What the index holds and how its leaves have drifted. */
typedef struct avq_index_stats {
    size_t struct_size;       /* set by avq_index_get_stats: sizeof         */
    size_t live;              /* vectors searchable (avq_index_size)        */
    size_t dead;              /* removed slots not yet compacted away       */
    size_t leaves, empty_leaves;
    size_t min_leaf, max_leaf;/* live vectors of the smallest/largest leaf  */
    double mean_leaf;         /* live / leaves                              */
    double leaf_cv;           /* std. deviation / mean of live leaf sizes:
                                 0 = perfectly even; it grows as added data
                                 drifts from the training sample            */
    double max_leaf_dead;     /* largest dead share of any leaf             */
    size_t memory_bytes;      /* as avq_index_memory_bytes                  */
    int64_t next_id;          /* the id the next automatic add will use     */
    /* since 0.3 */
    size_t tagged;            /* live vectors carrying at least one tag     */
    size_t tag_postings;      /* (vector, tag) pairs over live vectors      */
    size_t distinct_tags;     /* tags carried by at least one live vector   */
    /* since 0.5 */
    size_t spilled;           /* live spilled copies (build param spill):
                                 slots beyond the one per vector; the leaf
                                 sizes above count every slot               */
} avq_index_stats;

AVQ_API int avq_index_stats_sized(const avq_index *index, avq_index_stats *out,
                                  size_t struct_size);
/* Fill *out (the macro passes sizeof *out).  Errors: AVQ_ERR_INVALID. */
#define avq_index_get_stats(index, out) \
    avq_index_stats_sized((index), (out), sizeof *(out))

/* Per-call search settings.  Start from avq_search_params_init(). */
typedef struct avq_search_params {
    size_t struct_size;       /* set by avq_search_params_init: sizeof      */
    size_t k;                 /* results per query, default 10                */
    size_t leaves_to_search;  /* leaves scanned per query; 0 = index default;
                                 more than the index has = all of them       */
    size_t pre_reorder;       /* candidates re-scored exactly; 0 = default;
                                 ignored without reorder data                 */
    /* ---- since 0.3: filtered search (see "Tags and filters") ---- */
    const struct avq_filter *filter; /* NULL = every vector may be returned    */
    size_t filter_min_scanned;/* filtered scan: after leaves_to_search leaves
                                 holding allowed vectors, go on to further
                                 leaves until at least this many allowed
                                 vectors were scanned; 0 = default
                                 (8 x pre_reorder)                            */
    size_t filter_exact_below;/* when the filter is known to allow at most
                                 this many vectors (tag counts, the size of
                                 an allow set), score them all exactly
                                 instead of scanning; 0 = default (1500);
                                 1 = (almost) never                           */
    /* ---- since 0.4 ---- */
    float leaf_spread_z;      /* leaf ranking (avq_build_params.leaf_spread_z):
                                 0 = the index's; > 0 = this z; < 0 = off.
                                 An index built with leaf_spread_z = 0 keeps
                                 no spreads: a z > 0 is then AVQ_ERR_INVALID */
} avq_search_params;

/* k = 10, leaves_to_search and pre_reorder 0 (the index's defaults).  Use
 * the macro: it passes the caller's sizeof. */
AVQ_API void avq_search_params_init_sized(avq_search_params *params, size_t struct_size);
#define avq_search_params_init(params) \
    avq_search_params_init_sized((params), sizeof *(params))

/* Search one query (dim floats).  ids/scores: k entries each, caller
 * allocated (scores may be NULL).  When the leaves_to_search chosen leaves
 * hold fewer than k live vectors (emptied by removals, or left empty by
 * duplicate-heavy data), the search goes on to the next leaves until they
 * hold k: an index with at least k vectors always returns k results.  Scores and order follow the conventions
 * at the top of this file; with reordering the scores are exact (FLOAT) or
 * int8-approximate, without they are the quantized estimates.
 * Allocates a small scratch per call; for allocation-free repeated searches
 * use avq_index_search_batch with many queries.
 * A leaves_to_search above the index's number of leaves means all of them
 * (clamped, as FAISS clamps nprobe; not an error).
 * Errors: AVQ_ERR_INVALID (k = 0 or k > 1048576,
 * a query outside the input domain -- NaN, infinity, or for dot/L2 a norm
 * above 1e15 --, NULL pointers), AVQ_ERR_CANCELLED (a filter callback
 * stopped it).  Thread-safe: yes, any number of concurrent calls. */
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

/* avq_index_search_batch with one filter per query: filters[i] (NULL = no
 * filter) applies to query i and params->filter is ignored.  Filtered
 * queries are searched one at a time inside each worker (their leaves and
 * masks differ, so leaf reads are not shared); results equal those of
 * avq_index_search with params->filter = filters[i].  filters may be NULL
 * (then params->filter applies to every query).
 * Errors as avq_index_search_batch.  Thread-safe: yes (a callback filter
 * is then called from `threads` threads at once). */
AVQ_API int avq_index_search_batch_filtered(const avq_index *index, const float *queries,
                                            size_t nq, const avq_search_params *params,
                                            const struct avq_filter *const *filters,
                                            int threads, int64_t *ids, float *scores);

/* Accessors (index must not be NULL). */
AVQ_API size_t avq_index_size(const avq_index *index);      /* live vectors */
AVQ_API size_t avq_index_dim(const avq_index *index);       /* dimension  */
AVQ_API avq_metric avq_index_metric(const avq_index *index);
AVQ_API size_t avq_index_num_leaves(const avq_index *index);
/* Bytes of memory the index holds (codes, centers, codebooks, reorder data,
 * ids), excluding the allocator's overhead. */
AVQ_API size_t avq_index_memory_bytes(const avq_index *index);
/* The parameters its quantizer was trained with (progress callback
 * cleared).  *out must come from avq_build_params_init (its struct_size is
 * kept). */
AVQ_API void avq_index_build_params(const avq_index *index, avq_build_params *out);
/* The defaults used when avq_search_params leaves fields at 0.  *out must
 * come from avq_search_params_init. */
AVQ_API void avq_index_default_search_params(const avq_index *index,
                                             avq_search_params *out);

/* 1 if the index is in the exact tier (built from fewer than
 * brute_force_below vectors: no codes, every search scores every vector
 * exactly, leaves_to_search and pre_reorder do not matter), else 0. */
AVQ_API int avq_index_is_exact(const avq_index *index);

/* The ids of the live vectors: the first `capacity` into ids (may be NULL
 * when capacity is 0), in no particular order, and their number into
 * *count (a first call with capacity 0 sizes the buffer).  Waits for a
 * running writer (one consistent set).  Errors: AVQ_ERR_INVALID (NULL). */
AVQ_API int avq_index_ids(const avq_index *index, int64_t *ids, size_t capacity,
                          size_t *count);

/* ---- tuning the search settings -------------------------------------------
 * avq_index_tune finds the fastest (leaves_to_search, pre_reorder) reaching
 * a target recall@k on sample queries like the ones the index will serve.
 * For each pre_reorder R of the ladder 2k, 3k, 5k, 8k, 12k, 20k, 30k (up
 * to the index's size) a bisection finds the fewest leaves reaching the
 * target on the tuning half of the sample; each such pair is timed one
 * query at a time on the calling thread (best of `runs` passes, by the
 * thread's CPU clock) and the fastest wins.  Its recall on the other half
 * (held out) is what to expect on new queries.
 *
 * The sample: max_queries of the nq queries (all when fewer), spread
 * evenly over the whole set -- rows floor(i * nq / max_queries) -- or, with
 * a non-zero seed, drawn at random; its even members tune and its odd
 * members check.  Query files are often sorted (by word frequency, by
 * time), so the first rows would not be a fair sample. */
typedef struct avq_tune_params {
    size_t struct_size;       /* set by avq_tune_params_init: sizeof        */
    double target_recall;     /* recall@k to reach, in (0, 1]; default 0.9  */
    size_t k;                 /* neighbours per query; default 10           */
    size_t max_queries;       /* sample size (half tune, half check);
                                 0 = every query; default 2000              */
    uint64_t seed;            /* 0 (default) = evenly spaced rows; else a
                                 random sample drawn with this seed         */
    int runs;                 /* timed passes per candidate, 1..100; the
                                 best is kept; default 3                    */
    int threads;              /* workers of the recall searches (and of the
                                 ground truth); 0 = avq_default_threads()   */
    avq_progress_fn progress; /* optional, stage "tune": rungs of the ladder
                                 done out of all; may cancel               */
    void *progress_user;
} avq_tune_params;

#define AVQ_TUNE_DEFAULT_TARGET 0.9
#define AVQ_TUNE_DEFAULT_QUERIES 2000
#define AVQ_TUNE_MAX_CANDIDATES 8

/* One rung of the ladder: the fewest leaves reaching the target with
 * pre_reorder candidates (0 = unreachable even with every leaf; recall is
 * then the recall with every leaf), its recall on the tuning half and its
 * queries/second (one at a time, one thread; 0 when unreachable). */
typedef struct avq_tune_candidate {
    size_t leaves_to_search, pre_reorder;
    double recall, qps;
} avq_tune_candidate;

typedef struct avq_tune_result {
    size_t struct_size;       /* set by avq_index_tune: sizeof              */
    size_t leaves_to_search;  /* the choice                                 */
    size_t pre_reorder;
    int reached;              /* 1 if the choice reaches the target on the
                                 tuning half; 0: it is every leaf with the
                                 best pre_reorder tried, the closest there is */
    int exact;                /* 1: an exact-tier index (avq_index_is_exact):
                                 nothing to choose, the defaults returned   */
    double recall_tune;       /* recall@k of the choice, tuning half        */
    double recall_check;      /* and held-out half                          */
    double qps;               /* one query at a time, one thread, CPU time  */
    size_t tune_queries, check_queries;
    size_t num_candidates;    /* rungs tried, in candidates[]               */
    avq_tune_candidate candidates[AVQ_TUNE_MAX_CANDIDATES];
} avq_tune_result;

/* The rows avq_index_tune would sample from nq queries with these params
 * (max_queries, seed): min(nq, max_queries) row numbers, ascending, into
 * rows (room for that many), their number into *count.  To compute ground
 * truth for the sample only: tune with those rows and max_queries = 0.
 * Errors: AVQ_ERR_INVALID (NULL), AVQ_ERR_NOMEM. */
AVQ_API int avq_tune_sample(size_t nq, const avq_tune_params *params, size_t *rows,
                            size_t *count);

/* Defaults into *params (the macro passes sizeof).  Never fails. */
AVQ_API void avq_tune_params_init_sized(avq_tune_params *params, size_t struct_size);
#define avq_tune_params_init(params) avq_tune_params_init_sized((params), sizeof *(params))

/* Tune `index` on nq queries (row-major nq x dim).  truth: the true
 * neighbours' ids, nq rows of truth_cols >= k, best first (as avq_exact_search
 * or an ann-benchmarks 'neighbors' dataset gives them); or NULL: computed
 * exactly from the index's own vectors (needs AVQ_REORDER_FLOAT or the
 * exact tier).  The result goes to *out (the macro passes sizeof).  Long
 * (dozens of batched searches): no writer should change the index
 * meanwhile.  Errors: AVQ_ERR_INVALID (NULL, fewer than 2 queries, k
 * outside [1, size], truth_cols < k, target outside (0, 1], a query outside
 * the input domain), AVQ_ERR_UNSUPPORTED (truth NULL on an index without
 * float re-ranking data), AVQ_ERR_NOMEM, AVQ_ERR_CANCELLED.
 * Thread-safe: yes (the index is only searched). */
AVQ_API int avq_index_tune_sized(const avq_index *index, const float *queries, size_t nq,
                                 const int64_t *truth, size_t truth_cols,
                                 const avq_tune_params *params, avq_tune_result *out,
                                 size_t out_size);
#define avq_index_tune(index, queries, nq, truth, truth_cols, params, out) \
    avq_index_tune_sized((index), (queries), (nq), (truth), (truth_cols), (params), (out), \
                         sizeof *(out))

/* ------------------------------------------------------------------------- */
/* Tags and filters                                                          */
/* ------------------------------------------------------------------------- */

/* Tags.  Each vector may carry up to AVQ_MAX_TAGS_PER_VECTOR tags: 32-bit
 * numbers with any meaning (tenant, language, category, "in stock").  A
 * search can be restricted to vectors having ANY or ALL of a list of tags
 * (ScaNN calls these "restricts").  Tags are stored in the index: saved,
 * loaded (copy or mmap) and kept through add, remove, upsert and compact.
 *
 * Tags of n vectors are passed as a CSR pair: tag_offsets has n + 1
 * entries, tag_offsets[0] = 0 and non-decreasing, and vector i's tags are
 * tags[tag_offsets[i] .. tag_offsets[i + 1]).  A range may hold at most
 * AVQ_MAX_TAGS_PER_VECTOR entries; a tag listed twice for one vector counts
 * once; an empty range means no tags.  avq_index_retrain keeps every
 * vector's tags. */
#define AVQ_MAX_TAGS_PER_VECTOR 1024
/* The most tags one tag filter may list. */
#define AVQ_MAX_FILTER_TAGS 4096

/* avq_index_add with tags (tag_offsets and tags NULL = no tags).
 * Errors as avq_index_add, and AVQ_ERR_INVALID for malformed offsets or a
 * vector with more than AVQ_MAX_TAGS_PER_VECTOR tags (the row is named). */
AVQ_API int avq_index_add_tagged(avq_index *index, const float *vectors, size_t n,
                                 const int64_t *ids, const size_t *tag_offsets,
                                 const uint32_t *tags, int threads, int64_t *ids_out);

/* avq_index_upsert with tags: each row gets exactly the tags given.
 * (Plain avq_index_upsert keeps the tags of the vectors it replaces.)
 * tag_offsets and tags NULL: as avq_index_upsert.  Errors as
 * avq_index_add_tagged. */
AVQ_API int avq_index_upsert_tagged(avq_index *index, const float *vectors, size_t n,
                                    const int64_t *ids, const size_t *tag_offsets,
                                    const uint32_t *tags, int threads, size_t *replaced);

/* Replace the tags of n vectors already in the index (their vectors stay
 * as they are); all-or-nothing like the other writers.  This is how to tag
 * an index made by avq_index_build (ids 0..n-1).
 * Errors: AVQ_ERR_INVALID (an id not present -- named --, an id twice,
 * malformed offsets, too many tags), AVQ_ERR_NOMEM. */
AVQ_API int avq_index_set_tags(avq_index *index, const int64_t *ids, size_t n,
                               const size_t *tag_offsets, const uint32_t *tags);

/* The tags of vector `id`, ascending and distinct: the first `capacity`
 * into tags (may be NULL when capacity is 0), and their total number into
 * *count (so a first call with capacity 0 sizes the buffer).
 * Errors: AVQ_ERR_INVALID (NULL count, id not present). */
AVQ_API int avq_index_get_tags(const avq_index *index, int64_t id, uint32_t *tags,
                               size_t capacity, size_t *count);

/* The number of live vectors carrying `tag` (exact once no writer runs). */
AVQ_API size_t avq_index_tag_count(const avq_index *index, uint32_t tag);

/* Filters.  An avq_filter says which vectors a search may return; put it
 * in avq_search_params.filter (or pass one per query to
 * avq_index_search_batch_filtered).  A filter is immutable once made, is
 * not tied to an index, and may be used by any number of searches and
 * threads at once; free it after the last search that uses it.
 *
 * Filters work inside the scan, not after it: leaves with no allowed vector
 * are not scanned, 32-vector code groups with none are skipped, only
 * allowed vectors enter the candidate list and the re-ranking, and the
 * search goes on to further leaves until enough allowed vectors were seen
 * (avq_search_params.filter_min_scanned) -- so recall does not collapse
 * when the condition is rare or unrelated to the query.  When a filter is
 * known to allow few vectors (a tag filter, by the index's tag counts; an
 * allow set, by its size) and the index keeps re-ranking data, those are
 * scored exactly instead (filter_exact_below): the answer is then exact.
 * The planner's rule and its measured crossover: doc/DESIGN.md, "Filtered
 * search".  So a filter that allows everything returns the unfiltered
 * results only when neither rule applies (no exact plan, and
 * filter_min_scanned at most the vectors of the leaves_to_search leaves);
 * otherwise it returns results at least as good. */
typedef struct avq_filter avq_filter;

/* Only vectors whose id is one of ids[0..n) (copied; duplicates and ids not
 * in the index are fine).  n = 0 allows nothing: searches return only
 * AVQ_NO_ID.  An allow set is checked per scanned vector (a hash lookup),
 * and is not resolved to places in the index: to restrict searches to a
 * small, fixed group of vectors, tagging them is faster.
 * Errors: AVQ_ERR_INVALID (NULL with n > 0, NULL out), AVQ_ERR_NOMEM. */
AVQ_API int avq_filter_allow_ids(const int64_t *ids, size_t n, avq_filter **out);

/* Every vector except those whose id is in ids[0..n) ("not already
 * seen").  Errors as avq_filter_allow_ids. */
AVQ_API int avq_filter_deny_ids(const int64_t *ids, size_t n, avq_filter **out);

/* The general, slow path: keep(user, id) is called for each live vector
 * the search considers (every vector of every leaf it visits) and returns
 * 1 to allow it, 0 to skip it, or a negative number to stop the search,
 * which then fails with AVQ_ERR_CANCELLED naming the id and the value.  It
 * must not change the index, and must be thread-safe when used by a
 * batched search with several threads.  Prefer tags or id sets: a
 * callback cannot tell the planner how many vectors it allows. */
typedef int (*avq_keep_fn)(void *user, int64_t id);
AVQ_API int avq_filter_callback(avq_keep_fn keep, void *user, avq_filter **out);

/* Vectors carrying at least one of tags[0..n) (ANY) / all of them (ALL).
 * Errors: AVQ_ERR_INVALID (n = 0, n > AVQ_MAX_FILTER_TAGS, NULL), 
 * AVQ_ERR_NOMEM. */
AVQ_API int avq_filter_tags_any(const uint32_t *tags, size_t n, avq_filter **out);
AVQ_API int avq_filter_tags_all(const uint32_t *tags, size_t n, avq_filter **out);

/* Release a filter.  NULL is a no-op. */
AVQ_API void avq_filter_free(avq_filter *filter);

/* ------------------------------------------------------------------------- */
/* Saving and loading                                                        */
/* ------------------------------------------------------------------------- */

/* Write the index to one file (format: doc/FORMAT.md: version 3 when some
 * vector has tags, else version 2, which avq 0.2 reads).  It
 * holds the quantizer, every leaf with its dead slots and liveness, the
 * ids, tags and the next automatic id: a loaded index is the saved one, and
 * can change again.  Waits for a running writer (the file is one consistent
 * state); searches go on meanwhile.  The data goes to an unnamed temporary
 * file in the same directory (O_TMPFILE; a named one where the filesystem
 * lacks it), is flushed to disk (fsync) and then renamed over `path`: a
 * crash or a full disk mid-save never destroys a previous file at `path`,
 * and a killed save leaves nothing behind.  `path` is followed as cp
 * follows a destination: a symlink's target is replaced (the link stays),
 * a character device or FIFO is written in place, a directory is refused;
 * a new file gets mode 0666 & ~umask, a replaced one keeps its mode
 * (doc/FORMAT.md, "Saving: what the path is").
 * Errors: AVQ_ERR_INVALID (NULL), AVQ_ERR_IO (message names the file and the
 * system error), AVQ_ERR_UNSUPPORTED (a big-endian host: files are
 * little-endian).  Thread-safe: yes (the index is only read). */
AVQ_API int avq_index_save(const avq_index *index, const char *path);

/* Flags for avq_index_load. */
#define AVQ_LOAD_COPY 0u          /* read the file into memory owned by the index */
#define AVQ_LOAD_MMAP 1u          /* map the file read-only: near-instant, pages
                                     come from the page cache on first use; the
                                     file must not be modified while mapped.
                                     The index can still change: a leaf is
                                     copied into memory on its first write  */
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

/* Version-1 files (avq 0.1) load too: their ids are their row numbers. */

/* The same format in memory: *bytes (release with avq_free) holds what
 * avq_index_save would write, *size its length.  For pickling, sending an
 * index over a network, keeping it in a database.
 * Errors: AVQ_ERR_INVALID, AVQ_ERR_NOMEM. */
AVQ_API int avq_index_save_bytes(const avq_index *index, void **bytes, size_t *size);

/* Load an index from size bytes written by avq_index_save_bytes (or read
 * from an index file); the bytes are copied and verified as by
 * avq_index_load with AVQ_LOAD_COPY.  Errors: as avq_index_load. */
AVQ_API int avq_index_load_bytes(const void *bytes, size_t size, avq_index **out);

/* Release memory avq handed to the caller (avq_index_save_bytes).  NULL is
 * a no-op. */
AVQ_API void avq_free(void *p);

/* ------------------------------------------------------------------------- */
/* CPU features                                                              */
/* ------------------------------------------------------------------------- */

/* The number of worker threads `threads = 0` stands for, now: the CPUs in
 * the calling thread's affinity mask (sched_getaffinity: taskset, docker
 * --cpuset-cpus), limited by the CPU quota of the process's cgroup and its
 * ancestors (cgroup v2 cpu.max, v1 cpu.cfs_quota_us / cpu.cfs_period_us:
 * docker --cpus, Kubernetes limits), rounded up; between 1 and 256.  Read
 * afresh on each call (a changed mask or quota applies to the next call
 * that resolves threads = 0).  Never fails; thread-safe. */
AVQ_API int avq_default_threads(void);

/* The instruction set the SIMD kernels use in this process: "avx512",
 * "avx2" or "scalar" on x86-64, "neon" or "scalar" on aarch64, "scalar"
 * elsewhere.  Chosen at first use from the CPU (x86-64: cpuid/xgetbv;
 * aarch64: the ASIMD hwcap); the environment variable AVQ_ISA forces a
 * choice among this build's sets (x86-64: scalar|avx2|avx512, aarch64:
 * neon|scalar): a choice the CPU cannot run falls back to the best it can
 * below it, an unknown value to the best of all, each with one warning on
 * stderr.  Static string. */
AVQ_API const char *avq_isa(void);

/* ------------------------------------------------------------------------- */
/* Merging results from shards                                               */
/* ------------------------------------------------------------------------- */

/* Data too large for one index is split into shards: indexes created from
 * ONE quantizer (avq_index_create), each holding a disjoint set of ids.
 * Every shard then scores a vector exactly as a single index over all the
 * data would, so per-shard answers can be merged (doc/DESIGN.md,
 * "Sharding").  Two levels are offered:
 *
 *   avq_merge_topk         the top-k of per-shard top-k lists -- what you
 *                          get by searching every shard and keeping the
 *                          best.  Exact for the exact search and the exact
 *                          tier; for the quantized tiers each shard re-ranks
 *                          its own best pre_reorder candidates, so the
 *                          merged answer is at least as good as, but not
 *                          always equal to, one index over all the data.
 *   avq_index_search_candidates + avq_merge_candidates
 *                          each shard exports its best pre_reorder
 *                          candidates by quantized score WITH their re-ranked
 *                          scores; the merge takes the global best
 *                          pre_reorder by quantized score, then the top-k by
 *                          re-ranked score: the answer of one index over all
 *                          the data, ids and scores, bit for bit (for an
 *                          index whose vectors went in in ascending id order
 *                          within each leaf -- one add of ascending ids, or
 *                          adds in ascending id order -- which is where the
 *                          single index breaks ties of quantized scores).
 *                          This is what avq-mpi (mpi/) uses.              */

/* The top k of nlists result lists, for nq queries at once.  List i holds
 * nq rows of widths[i] entries, row-major: ids[i][q * widths[i] + j] and
 * scores[i][...] (as avq_index_search_batch writes them with k =
 * widths[i]).  Each row must be in the order of the conventions at the top
 * of this file for `metric` (best first, ties by lower id); an id of
 * AVQ_NO_ID ends a row (the rest is padding).  out_ids / out_scores
 * (out_scores may be NULL) are nq x k, best first, ties by the lower id,
 * padded with AVQ_NO_ID / NaN when the lists hold fewer than k entries.
 * An id present in two lists is not detected (shards hold disjoint ids).
 * widths[i] may be 0 (an empty list; its pointers may then be NULL).
 * Allocates O(nlists) once per call.
 * Errors: AVQ_ERR_INVALID (NULL arrays, k = 0 or above 1048576, a NaN
 * score of a real id, a row out of order -- list, query and position are
 * named), AVQ_ERR_NOMEM.  Thread-safe: yes (reads its inputs only). */
AVQ_API int avq_merge_topk(avq_metric metric, size_t nq, size_t nlists,
                           const int64_t *const *ids, const float *const *scores,
                           const size_t *widths, size_t k, int64_t *out_ids,
                           float *out_scores);

/* One candidate of a quantized search, as a shard exports it.  Distances
 * are "smaller is better" (a similarity s is -s; for L2 the squared
 * distance minus |q|^2, see avq_index_search_candidates). */
typedef struct avq_candidate {
    int64_t id;       /* the vector's id                                   */
    float approx;     /* quantized distance: what the scan ranked it by    */
    float exact;      /* re-ranked distance (exact with FLOAT reorder,
                         int8 with INT8, = approx with NONE)               */
    uint32_t leaf;    /* its leaf: the first tie-break of approx           */
    uint32_t reserved;/* 0                                                 */
} avq_candidate;

/* How many candidates per query avq_index_search_candidates exports at
 * most with these params: the resolved pre_reorder (at least k; k for an
 * index without reorder data or of the exact tier).
 * Errors: as avq_index_search's parameter checks (filters are refused). */
AVQ_API int avq_index_candidate_count(const avq_index *index, const avq_search_params *params,
                                      size_t *out);

/* The live vectors of each leaf: counts[l] for l < avq_index_num_leaves
 * (caller-allocated).  Summed over shards this is the leaf_live argument
 * below.  Exact once no writer runs.  Errors: AVQ_ERR_INVALID (NULL). */
AVQ_API int avq_index_leaf_live(const avq_index *index, size_t *counts);

/* Search nq queries (row-major nq x dim) like avq_index_search_batch, but
 * instead of the top k write each query's best candidates by quantized
 * distance, in no particular order, each with its re-ranked distance:
 * candidates[q * R .. q * R + counts[q]) with R = avq_index_candidate_count
 * (candidates is nq x R, counts nq).  offsets[q] (nq floats) receives what
 * turns a distance into a score: for AVQ_METRIC_L2 score = max(exact +
 * offset, 0), for the others score = -exact (offset 0).  The exact tier
 * exports its top k by exact distance, with approx = exact and leaf 0.
 *
 * leaf_live (NULL, or avq_index_num_leaves entries): the live vectors per
 * leaf of the whole sharded index (the sum of every shard's
 * avq_index_leaf_live).  A search whose leaves_to_search leaves hold fewer
 * than k live vectors goes on to further leaves (see avq_index_search); with
 * leaf_live every shard decides that by the counts of the whole, as one
 * index would -- pass it for results equal to one index.  NULL: this
 * index's own counts.
 *
 * params->filter must be NULL: a filtered search plans by the counts of the
 * index it runs on, so shards would not plan alike (AVQ_ERR_UNSUPPORTED).
 * Errors: as avq_index_search_batch; AVQ_ERR_UNSUPPORTED (a filter).
 * Thread-safe: yes. */
AVQ_API int avq_index_search_candidates(const avq_index *index, const float *queries, size_t nq,
                                        const avq_search_params *params,
                                        const size_t *leaf_live, int threads,
                                        avq_candidate *candidates, size_t *counts,
                                        float *offsets);

/* Merge the candidates of nlists shards into the answer one index would
 * give: per query, the best R by (approx, leaf, id), then of those the
 * best k by (exact, id), converted to scores with offsets[q].  List i is
 * nq x R candidates (lists[i]) with counts[i][q] valid per query -- the
 * output of avq_index_search_candidates with the same params (R =
 * avq_index_candidate_count; the same for every shard of one quantizer).
 * lists[i] may be NULL for a shard that did not answer (it then counts as
 * empty).  out_ids / out_scores (may be NULL) are nq x k, padded with
 * AVQ_NO_ID / NaN.  Allocates O(nlists * R) once per call.
 * Errors: AVQ_ERR_INVALID (NULL arrays, k or R of 0, k > R, a count above
 * R, a NaN distance -- named), AVQ_ERR_NOMEM.  Thread-safe: yes. */
AVQ_API int avq_merge_candidates(avq_metric metric, size_t nq, size_t nlists,
                                 const avq_candidate *const *lists,
                                 const size_t *const *counts, size_t R, size_t k,
                                 const float *offsets, int64_t *out_ids, float *out_scores);

#ifdef __cplusplus
}
#endif

#endif /* AVQ_H */
