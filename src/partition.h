/*
 * partition.h -- the coarse level of the index: k-means leaves, the leaf of
 * every database point, per-leaf member lists, optional AVQ centers, and the
 * choice of leaves to search for a query (doc/DESIGN.md §2: build steps 1-3,
 * search step 1).
 */
#ifndef AVQ_PARTITION_H
#define AVQ_PARTITION_H

#include "avq_internal.h"
#include "kmeans.h"
#include "topk.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    size_t num_leaves;       /* 0 = round(sqrt(n)) */
    size_t max_iter;         /* k-means iterations (default 12) */
    size_t training_sample;  /* Bernoulli sample for k-means (default 100000) */
    size_t min_cluster_size; /* re-seed smaller leaves while training (default 50;
                                lowered automatically when n / leaves is small) */
    int spherical;           /* unit-norm centers (default 0) */
    avq_kmeans_init init;    /* default random distinct rows */
    double avq_eta;          /* > 0: re-solve the centers once with the AVQ
                                closed form at this eta (e.g. 2.5); NaN or <= 0:
                                off (default) */
    uint64_t seed;           /* default 42 */
    int threads;             /* 0 = one per CPU */
} avq_partition_params;

void avq_partition_default_params(avq_partition_params *p);

/* A trained partition.  All arrays are malloc'ed and owned by the struct. */
typedef struct {
    size_t n, dim, num_leaves;
    float *centers;      /* num_leaves x dim */
    int32_t *assignment; /* n: the leaf of each database point */
    size_t *offsets;     /* num_leaves + 1: leaf l holds members[offsets[l] .. offsets[l+1]) */
    int32_t *members;    /* n point ids grouped by leaf, increasing within a leaf */
    double avq_scale;    /* the global rescale applied to AVQ centers (1 if none) */
} avq_partition;

/* Train leaves on x (n x d, finite), assign every point to its nearest
 * center (squared L2), build the member lists, and optionally re-solve the
 * centers (AVQ; points are NOT reassigned afterwards).  On failure *out is
 * zeroed and nothing leaks.  Uses OpenBLAS: calling thread only.  Progress
 * stages "kmeans", "partition", "avq centers". */
int avq_partition_train(const float *x, size_t n, size_t d, const avq_partition_params *p,
                        avq_partition *out, avq_progress_fn progress, void *progress_user);

/* Free the arrays and zero the struct; NULL-safe. */
void avq_partition_free(avq_partition *part);

/* Counting sort of point ids by leaf: offsets (L+1) and members (n), ids
 * increasing inside a leaf.  assign values must be in [0, L). */
void avq_partition_group(const int32_t *assign, size_t n, size_t L, size_t *offsets,
                         int32_t *members);

/* AVQ centers (doc/DESIGN.md §2, build step 2): for each non-empty leaf S,
 * with n_i = |x_i| and w_i = n_i^(eta-1),
 *   A = sum w_i I + (eta-1) sum n_i^(eta-3) x_i x_i^T,  b = eta sum w_i x_i,
 *   c_S = A^-1 b  (Cholesky in double; zero vectors are skipped, their terms
 *   vanish for eta > 1; a leaf whose A is not positive definite keeps its
 *   center),
 * then every center is multiplied by one global
 *   s = sum_S <c_S, sum_{i in S} x_i> / sum_S |S| |c_S|².
 * centers (L x d) is read for the leaves kept and overwritten for the rest.
 * scale_out (may be NULL) receives s; failed_out (may be NULL) the number of
 * leaves whose system could not be solved.  Multi-threaded, no BLAS. */
int avq_partition_avq_centers(const float *x, size_t n, size_t d, const size_t *offsets,
                              const int32_t *members, size_t L, double eta, int threads,
                              float *centers, double *scale_out, size_t *failed_out);

/* out (n x d) = x_i - centers[assign[i]]; out may equal x. */
int avq_partition_residuals(const float *x, size_t n, size_t d, const float *centers,
                            const int32_t *assign, int threads, float *out);

/* Leaf ranking distance, smaller is better: -<q,c> for DOT/COSINE (the
 * caller normalises for cosine), |q - c|² for L2. */

/* The best `m` of the L leaves for each of nq queries (nq x d): leaves
 * (nq x m, best first, ties to the lower leaf) and optionally their
 * distances (nq x m, may be NULL).  m is clamped to L; the caller sizes the
 * outputs for min(m, L) per query.  One SGEMM per query tile from the calling
 * thread (never call it from a worker), selection by `threads` workers. */
int avq_select_leaves(const float *centers, size_t L, size_t d, const float *queries,
                      size_t nq, avq_metric metric, size_t m, int threads, int32_t *leaves,
                      float *dists);

/* The same for a single query, in plain C with no BLAS and no allocation, so
 * a search worker may call it: cnorm2 holds |c|² per leaf (needed for L2,
 * may be NULL for DOT/COSINE), scratch holds L entries.  Returns how many
 * leaves were written (min(m, L)). */
size_t avq_select_leaves_one(const float *centers, const float *cnorm2, size_t L, size_t d,
                             const float *query, avq_metric metric, size_t m,
                             avq_neighbor *scratch, int32_t *leaves, float *dists);

/* Dense symmetric positive definite solves in double, for the AVQ centers
 * and the anisotropic codebook update (no LAPACK dependency).
 * avq_cholesky: in place A = L Lᵀ on the lower triangle of the row-major
 * d x d A (the upper triangle is ignored); false if A is not numerically
 * positive definite.  avq_cholesky_solve: solve L Lᵀ z = b in place of b. */
bool avq_cholesky(double *A, size_t d);
void avq_cholesky_solve(const double *L, size_t d, double *b);

#endif
