/*
 * kmeans.h -- Lloyd's k-means and nearest-center assignment.
 *
 * Two stages of the index need k-means: the partitioner (thousands of leaf
 * centers in the full dimension) and the product quantizer (16 or 256
 * centers per block of 1..8 dimensions).  Both are served by one routine
 * with plain-array inputs, so it can be tested on its own and reused by the
 * search side ("which leaves are nearest to these queries" is the same
 * tiled assignment as a k-means step).
 *
 * Determinism: for a given seed the result is the same bit for bit whatever
 * the number of threads -- the sample, the initial rows and the re-seeding
 * come from one splitmix64 stream on the calling thread, assignment is per
 * row, and each center is summed over its members in row order by a single
 * worker.
 */
#ifndef AVQ_KMEANS_H
#define AVQ_KMEANS_H

#include "avq_internal.h"

#include <stddef.h>
#include <stdint.h>

/* Rows of at most this many dimensions are scored directly, without SGEMM:
 * avq_kmeans_train and avq_assign_nearest with d <= this (and k <= 4096)
 * never call OpenBLAS, so with threads = 1 they may run inside an
 * avq_parallel_for worker (pq.c trains its blocks that way). */
#define AVQ_KMEANS_DIRECT_MAX_DIM 8

typedef enum {
    AVQ_KMEANS_INIT_RANDOM = 0,    /* k distinct rows of the sample, uniformly */
    AVQ_KMEANS_INIT_PLUSPLUS = 1   /* k-means++ (D² sampling): slower, O(n k d) */
} avq_kmeans_init;

typedef struct {
    size_t k;                /* number of centers, >= 1 */
    size_t max_iter;         /* Lloyd iterations (assign + update), >= 1 */
    size_t training_sample;  /* train on a Bernoulli sample of at most this many
                                rows; 0 = use every row */
    size_t min_cluster_size; /* after each update, clusters with fewer members
                                are re-seeded next to a member of a large
                                cluster; 0 or 1 = only empty clusters */
    double tol;              /* stop when the relative drop of the inertia
                                between two iterations is below tol; 0 = never */
    int spherical;           /* normalise centers to unit length (for unit-norm
                                data: assignment becomes max inner product) */
    avq_kmeans_init init;
    uint64_t seed;
    int threads;             /* 0 = one per CPU */
} avq_kmeans_params;

/* Defaults: 12 iterations, sample 100000, min_cluster_size 1, tol 1e-4,
 * random init, not spherical, seed 42, all CPUs. */
void avq_kmeans_default_params(avq_kmeans_params *p, size_t k);

typedef struct {
    size_t iterations;       /* assignment steps run */
    size_t sample_rows;      /* rows actually trained on */
    size_t reseeded;         /* re-seedings over all iterations */
    double inertia;          /* sum of squared distances at the last assignment
                                (on the sample, before the last update) */
    double *inertia_history; /* optional, caller-provided, max_iter entries:
                                the inertia after each assignment step */
} avq_kmeans_stats;

/* Train k centers on the n x d row-major matrix x (finite values, n >= k).
 * centers: k x d output.  stats may be NULL.  Progress stage "kmeans",
 * counted in iterations.  Errors: AVQ_ERR_INVALID, AVQ_ERR_NOMEM,
 * AVQ_ERR_CANCELLED. */
int avq_kmeans_train(const float *x, size_t n, size_t d, const avq_kmeans_params *p,
                     float *centers, avq_kmeans_stats *stats, avq_progress_fn progress,
                     void *progress_user);

typedef enum {
    AVQ_NEAREST_L2 = 0, /* smallest squared Euclidean distance */
    AVQ_NEAREST_IP = 1  /* largest inner product */
} avq_nearest_kind;

/* For every row of x (n x d) the index of the best of the k centers (k x d);
 * ties go to the lower index.  score (may be NULL) receives the squared
 * distance (L2, clamped at 0) or the inner product (IP) to that center.
 * SGEMM in tiles from the calling thread, argmin over rows by `threads`
 * workers; must therefore not be called from inside an avq_parallel_for
 * worker.  Progress stage `stage` (NULL = "assign"), counted in rows.
 * Does not check x for finiteness (callers validate once). */
int avq_assign_nearest(const float *x, size_t n, size_t d, const float *centers, size_t k,
                       avq_nearest_kind kind, int threads, int32_t *assign, float *score,
                       avq_progress_fn progress, void *progress_user, const char *stage);

/* out[j] = |centers_j|^2 (k rows of d), summed in double. */
void avq_center_norms2(const float *centers, size_t k, size_t d, float *out);

/* Bernoulli sample of row indices: each of the n rows is kept with
 * probability cap/n (stopping at cap), in increasing order, drawn from *rng.
 * When cap is 0, n <= cap, or fewer than `at_least` rows were drawn, every
 * row is taken.  *idx is malloc'ed (free()), *count its length. */
int avq_sample_rows(size_t n, size_t cap, size_t at_least, uint64_t *rng, size_t **idx,
                    size_t *count);

#endif
