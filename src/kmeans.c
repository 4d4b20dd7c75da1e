/*
 * kmeans.c -- Lloyd's k-means for the partitioner and the product quantizer.
 *
 * The expensive part of k-means is the assignment: n rows against k centers.
 * With |x - c|² = |x|² + |c|² - 2<x,c> it becomes one matrix product, which
 * OpenBLAS' SGEMM does an order of magnitude faster than any loop we could
 * write portably.  We compute it in tiles (at most TILE_FLOATS scores,
 * 16 MB; 4 MB tiles measured slower on a shared machine: one thread start-up
 * and OpenBLAS hand-over per tile) from the calling thread -- OpenBLAS runs
 * its own threads and must not be entered from ours -- and let our workers
 * take the argmin over the tile's rows: one vectorisable pass for the
 * minimum by blocks of columns, then a scan of the one block holding it.
 * Small dimensions (PQ blocks) skip SGEMM: one pass over the centers for
 * 16 rows at a time, minimum and index tracked together.
 *
 * The update sums each cluster's members in double precision, in row order,
 * one cluster per worker at a time (members found by a counting sort).  That
 * is what makes the result independent of the number of threads: no
 * floating-point sum is ever split between workers.
 *
 * Empty and too-small clusters are re-seeded next to a random member of a
 * large cluster (a row drawn uniformly lands in a big cluster with
 * probability proportional to its size), so the k centers stay useful.  With
 * only empty clusters re-seeded the inertia never increases from one
 * assignment to the next (an empty cluster moved costs nothing, and the next
 * assignment can only lower the cost); re-seeding a non-empty small cluster
 * may raise it briefly, which is the price of balanced leaves.
 *
 * The training set is a Bernoulli sample (each row kept with probability
 * sample/n, capped at `sample`) drawn from a fixed-seed splitmix64 stream,
 * as ScaNN does: cheap, reproducible and unbiased.
 */
#include "kmeans.h"

#include "vecmath.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { TILE_FLOATS = 4 << 20, CENTER_TILE = 4096, ROW_CHUNK = 64, ARGMIN_BLOCK = 64,
       DIRECT_MAX_DIM = AVQ_KMEANS_DIRECT_MAX_DIM, DIRECT_ROWS = 16, PREFETCH_AHEAD = 4 };

void avq_kmeans_default_params(avq_kmeans_params *p, size_t k) {
    memset(p, 0, sizeof *p);
    p->k = k;
    p->max_iter = 12;
    p->training_sample = 100000;
    p->min_cluster_size = 1;
    p->tol = 1e-4;
    p->spherical = 0;
    p->init = AVQ_KMEANS_INIT_RANDOM;
    p->seed = 42;
    p->threads = 0;
}

/* ---- assignment -------------------------------------------------------- */

typedef struct {
    float *tile;          /* rows x cols scores, rewritten in place */
    size_t cols, c0, r0;  /* tile = rows [r0, ..) x centers [c0, c0 + cols) */
    const float *cn;      /* |c|² (L2) or zeros (inner product) */
    float two;            /* 2 (L2) or 1 (inner product) */
    float *best;          /* running minimum of the per-row objective */
    int32_t *assign;
} argmin_job;

/* The first column of a row of inner products where the objective to
 * minimise (|c|² - 2<x,c> for L2, -<x,c> for IP: cn[c] - two * row[c], cn
 * all zero for IP) is smallest, and that minimum in *min.  Ties go to the
 * lower column; NaN objectives (from products that overflow float: entry
 * points refuse such input, vecmath.h, but nothing here may depend on it)
 * never win.  When no objective is below +inf the result is (+inf, 0): the
 * callers then keep what they had.
 *
 * One pass for the minimum, in blocks of ARGMIN_BLOCK columns: eight lanes
 * of `v < m ? v : m` (x86 minps, which GCC 12 vectorises at -O2 only in
 * loops of fixed trip count, hence the blocks; no -ffast-math needed), and
 * a block whose minimum is strictly below all earlier ones becomes the
 * candidate.  Then that block alone is scanned again for the first column
 * holding the minimum (the same float expression, so the same values).
 * The tail columns past the last full block are compared one by one. */
static float argmin_objective(const float *restrict row, size_t cols, const float *restrict cn,
                              float two, int32_t *at) {
    float best = INFINITY;
    size_t best_block = SIZE_MAX, best_col = 0;
    size_t c = 0;
    for (; c + ARGMIN_BLOCK <= cols; c += ARGMIN_BLOCK) {
        float m[8];
        for (int u = 0; u < 8; u++) m[u] = INFINITY;
        for (size_t b = 0; b < ARGMIN_BLOCK; b += 8)
            for (int u = 0; u < 8; u++) {
                float v = cn[c + b + u] - two * row[c + b + u];
                m[u] = v < m[u] ? v : m[u];
            }
        float bm = m[0];
        for (int u = 1; u < 8; u++) bm = m[u] < bm ? m[u] : bm;
        if (bm < best) {
            best = bm;
            best_block = c;
        }
    }
    if (best_block != SIZE_MAX) {
        for (size_t j = best_block; j < best_block + ARGMIN_BLOCK; j++)
            if (cn[j] - two * row[j] == best) {
                best_col = j;
                break;
            }
    }
    for (; c < cols; c++) {
        float v = cn[c] - two * row[c];
        if (v < best) {
            best = v;
            best_col = c;
        }
    }
    *at = (int32_t)best_col;
    return best;
}

static int argmin_rows(void *ctx, size_t begin, size_t end, int worker) {
    (void)worker;
    const argmin_job *job = ctx;
    const float *cn = job->cn + job->c0;
    for (size_t r = begin; r < end; r++) {
        int32_t c;
        float m = argmin_objective(job->tile + r * job->cols, job->cols, cn, job->two, &c);
        size_t i = job->r0 + r;
        /* strict: an equal value in a later center tile keeps the lower index */
        if (!(m < job->best[i])) continue;
        job->best[i] = m;
        job->assign[i] = (int32_t)job->c0 + c;
    }
    return AVQ_OK;
}

typedef struct {
    const float *x;
    size_t d;
    avq_nearest_kind kind;
    const float *xnorm2; /* |x|² per row (rounded to float), or NULL */
    float *score;
} finish_job;

/* Turn the minimised objective into the documented score. */
static int finish_scores(void *ctx, size_t begin, size_t end, int worker) {
    (void)worker;
    const finish_job *job = ctx;
    for (size_t i = begin; i < end; i++) {
        if (job->kind == AVQ_NEAREST_IP) {
            job->score[i] = -job->score[i];
        } else {
            float xn = job->xnorm2 ? job->xnorm2[i]
                                   : (float)avq_norm2_f64(job->x + i * job->d, job->d);
            float v = xn + job->score[i];
            job->score[i] = v > 0.0f ? v : 0.0f;
        }
    }
    return AVQ_OK;
}

void avq_center_norms2(const float *centers, size_t k, size_t d, float *out) {
    for (size_t j = 0; j < k; j++) out[j] = (float)avq_norm2_f64(centers + j * d, d);
}

/* Small dimensions (PQ blocks of 1..8 dims): a GEMM with an inner dimension
 * of 2 is mostly overhead, so the workers score rows directly.  DIRECT_ROWS
 * rows at a time are transposed into a d x DIRECT_ROWS block on the stack;
 * then for each center in turn the objective of all of them is computed and
 * compared with their running minimum -- a loop over rows of fixed length,
 * which GCC vectorises at -O2, with the minimum and its index tracked in the
 * same pass.  The arithmetic is that of the GEMM path (float <x,c> summed
 * from 0 in dimension order, then |c|² - 2<x,c>), and the strict < over
 * centers in increasing order keeps the lower index on ties. */
typedef struct {
    const float *x, *centers, *cn;
    size_t d, k;
    float two;
    float *best;
    int32_t *assign;
} direct_job;

static void direct_block(const direct_job *job, size_t r0, size_t rows) {
    size_t d = job->d, k = job->k;
    float two = job->two;
    float xt[DIRECT_MAX_DIM][DIRECT_ROWS], best[DIRECT_ROWS], acc[DIRECT_ROWS];
    int32_t idx[DIRECT_ROWS];
    const float *x = job->x + r0 * d;
    for (size_t t = 0; t < d; t++)
        for (size_t r = 0; r < DIRECT_ROWS; r++) xt[t][r] = r < rows ? x[r * d + t] : 0.0f;
    for (size_t r = 0; r < DIRECT_ROWS; r++) {
        best[r] = INFINITY;
        idx[r] = 0;
    }
    for (size_t j = 0; j < k; j++) {
        const float *c = job->centers + j * d;
        for (size_t r = 0; r < DIRECT_ROWS; r++) acc[r] = 0.0f;
        for (size_t t = 0; t < d; t++) {
            float ct = c[t];
            for (size_t r = 0; r < DIRECT_ROWS; r++) acc[r] += xt[t][r] * ct;
        }
        float cj = job->cn[j];
        int32_t jj = (int32_t)j;
        for (size_t r = 0; r < DIRECT_ROWS; r++) {
            float v = cj - two * acc[r];
            int32_t lt = -(int32_t)(v < best[r]); /* all ones where v wins */
            best[r] = v < best[r] ? v : best[r];
            idx[r] = (idx[r] & ~lt) | (jj & lt);
        }
    }
    for (size_t r = 0; r < rows; r++) {
        job->best[r0 + r] = best[r];
        job->assign[r0 + r] = idx[r];
    }
}

/* A row none of whose objectives is below +inf (overflowing or NaN
 * products): the first center whose objective is +inf, else 0, as the
 * two-pass argmin this replaced chose. */
static void direct_no_minimum(const direct_job *job, size_t i) {
    const float *row = job->x + i * job->d;
    for (size_t j = 0; j < job->k; j++) {
        float dot = 0.0f;
        for (size_t t = 0; t < job->d; t++) dot += row[t] * job->centers[j * job->d + t];
        if (job->cn[j] - job->two * dot == INFINITY) {
            job->assign[i] = (int32_t)j;
            return;
        }
    }
}

static int direct_rows(void *ctx, size_t begin, size_t end, int worker) {
    (void)worker;
    const direct_job *job = ctx;
    for (size_t r0 = begin; r0 < end; r0 += DIRECT_ROWS) {
        size_t rows = end - r0 < DIRECT_ROWS ? end - r0 : DIRECT_ROWS;
        direct_block(job, r0, rows);
    }
    for (size_t i = begin; i < end; i++)
        if (!(job->best[i] < INFINITY)) direct_no_minimum(job, i);
    return AVQ_OK;
}

/* avq_assign_nearest; xnorm2 (may be NULL) holds (float)|x|² of every row,
 * for callers that assign the same rows again and again (k-means). */
static int assign_nearest(const float *x, size_t n, size_t d, const float *centers, size_t k,
                          avq_nearest_kind kind, int threads, int32_t *assign, float *score,
                          const float *xnorm2, avq_progress_fn progress, void *progress_user,
                          const char *stage) {
    if (!x || !centers || !assign)
        return avq_fail(AVQ_ERR_INVALID, "assign: NULL rows, centers or output");
    if (n == 0 || d == 0 || k == 0)
        return avq_fail(AVQ_ERR_INVALID, "assign: n=%zu, d=%zu, k=%zu must all be >= 1", n, d, k);
    if (kind != AVQ_NEAREST_L2 && kind != AVQ_NEAREST_IP)
        return avq_fail(AVQ_ERR_INVALID, "assign: unknown kind %d", (int)kind);
    if (n > INT32_MAX || d > INT32_MAX || k > INT32_MAX)
        return avq_fail(AVQ_ERR_INVALID, "assign: n=%zu, d=%zu or k=%zu too large", n, d, k);
    if (!stage) stage = "assign";

    size_t ct = k < CENTER_TILE ? k : CENTER_TILE;
    size_t rt = TILE_FLOATS / ct;
    if (rt > n) rt = n;
    bool direct = d <= DIRECT_MAX_DIM && k <= CENTER_TILE;
    float *tile = direct ? NULL : avq_alloc_aligned(rt * ct * sizeof(float));
    float *cn = malloc(k * sizeof(float));
    float *best = score ? score : malloc(n * sizeof(float));
    float two = kind == AVQ_NEAREST_L2 ? 2.0f : 1.0f;
    int st = AVQ_OK;
    if ((!direct && !tile) || !best || !cn) {
        st = avq_fail_nomem("assignment buffers", rt * ct * sizeof(float) + n * sizeof(float));
        goto done;
    }
    if (kind == AVQ_NEAREST_L2)
        avq_center_norms2(centers, k, d, cn);
    else
        for (size_t j = 0; j < k; j++) cn[j] = 0.0f;
    if (direct) {
        /* every row is written: no initialisation */
        direct_job job = {x, centers, cn, d, k, two, best, assign};
        st = avq_parallel_for(n, 1024, threads, direct_rows, &job, progress, progress_user,
                              stage);
    } else {
        for (size_t i = 0; i < n; i++) {
            best[i] = INFINITY;
            assign[i] = 0;
        }
    }
    for (size_t r0 = 0; !direct && r0 < n && st == AVQ_OK; r0 += rt) {
        size_t rows = n - r0 < rt ? n - r0 : rt;
        for (size_t c0 = 0; c0 < k && st == AVQ_OK; c0 += ct) {
            size_t cols = k - c0 < ct ? k - c0 : ct;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)cols, (int)d,
                        1.0f, x + r0 * d, (int)d, centers + c0 * d, (int)d, 0.0f, tile,
                        (int)cols);
            argmin_job job = {tile, cols, c0, r0, cn, two, best, assign};
            st = avq_parallel_for(rows, ROW_CHUNK, threads, argmin_rows, &job, NULL, NULL, stage);
        }
        if (st == AVQ_OK && progress && progress(progress_user, stage, r0 + rows, n))
            st = avq_fail(AVQ_ERR_CANCELLED, "%s: cancelled by the progress callback", stage);
    }
    if (st == AVQ_OK && score) {
        finish_job job = {x, d, kind, xnorm2, score};
        st = avq_parallel_for(n, 1024, threads, finish_scores, &job, NULL, NULL, stage);
    }
done:
    avq_free_aligned(tile);
    free(cn);
    if (best != score) free(best);
    return st;
}

int avq_assign_nearest(const float *x, size_t n, size_t d, const float *centers, size_t k,
                       avq_nearest_kind kind, int threads, int32_t *assign, float *score,
                       avq_progress_fn progress, void *progress_user, const char *stage) {
    return assign_nearest(x, n, d, centers, k, kind, threads, assign, score, NULL, progress,
                          progress_user, stage);
}

/* ---- sampling and initialisation ---------------------------------------- */

int avq_sample_rows(size_t n, size_t cap, size_t at_least, uint64_t *rng, size_t **idx,
                    size_t *count) {
    size_t want = (cap == 0 || n <= cap) ? n : cap;
    size_t *v = malloc((want ? want : 1) * sizeof *v);
    if (!v) return avq_fail_nomem("sample indices", want * sizeof(size_t));
    size_t kept = 0;
    if (want < n) {
        double p = (double)cap / (double)n;
        for (size_t i = 0; i < n && kept < want; i++)
            if (avq_rng_uniform(rng) < p) v[kept++] = i;
    }
    if (want == n || kept < at_least) {
        size_t *all = want == n ? v : realloc(v, n * sizeof *v);
        if (!all) {
            free(v);
            return avq_fail_nomem("sample indices", n * sizeof(size_t));
        }
        v = all;
        for (size_t i = 0; i < n; i++) v[i] = i;
        kept = n;
    }
    *idx = v;
    *count = kept;
    return AVQ_OK;
}

/* Bernoulli sample of at most `cap` rows into a new matrix; *out stays NULL
 * when every row is used. */
static int take_sample(const float *x, size_t n, size_t d, size_t cap, size_t k,
                       uint64_t *rng, float **out, size_t *rows) {
    *out = NULL;
    *rows = n;
    size_t *idx = NULL, kept = 0;
    int st = avq_sample_rows(n, cap, k, rng, &idx, &kept);
    if (st != AVQ_OK) return st;
    if (kept == n) {
        free(idx);
        return AVQ_OK;
    }
    float *s = malloc(kept * d * sizeof(float));
    if (!s) {
        free(idx);
        return avq_fail_nomem("k-means sample", kept * d * sizeof(float));
    }
    for (size_t r = 0; r < kept; r++) memcpy(s + r * d, x + idx[r] * d, d * sizeof(float));
    free(idx);
    *out = s;
    *rows = kept;
    return AVQ_OK;
}

static void normalize_row(float *c, size_t d) {
    double norm = sqrt(avq_norm2_f64(c, d));
    if (norm > 0.0)
        for (size_t t = 0; t < d; t++) c[t] = (float)(c[t] / norm);
}

/* k distinct rows by a partial Fisher-Yates shuffle of the row indices. */
static int init_random(const float *x, size_t n, size_t d, size_t k, uint64_t *rng,
                       float *centers) {
    size_t *perm = malloc(n * sizeof *perm);
    if (!perm) return avq_fail_nomem("k-means init", n * sizeof(size_t));
    for (size_t i = 0; i < n; i++) perm[i] = i;
    for (size_t j = 0; j < k; j++) {
        size_t r = j + (size_t)(avq_rng_next(rng) % (n - j));
        size_t t = perm[j];
        perm[j] = perm[r];
        perm[r] = t;
        memcpy(centers + j * d, x + perm[j] * d, d * sizeof(float));
    }
    free(perm);
    return AVQ_OK;
}

typedef struct {
    const float *x, *c;
    size_t d;
    double *dist2;
} pp_job;

static int pp_update(void *ctx, size_t begin, size_t end, int worker) {
    (void)worker;
    const pp_job *job = ctx;
    for (size_t i = begin; i < end; i++) {
        const float *row = job->x + i * job->d;
        double s = 0.0;
        for (size_t t = 0; t < job->d; t++) {
            double diff = (double)row[t] - job->c[t];
            s += diff * diff;
        }
        if (s < job->dist2[i]) job->dist2[i] = s;
    }
    return AVQ_OK;
}

/* k-means++: each next center is a row drawn with probability proportional
 * to its squared distance to the nearest center so far. */
static int init_plusplus(const float *x, size_t n, size_t d, size_t k, uint64_t *rng,
                         int threads, float *centers, avq_progress_fn progress, void *user) {
    double *dist2 = malloc(n * sizeof *dist2);
    if (!dist2) return avq_fail_nomem("k-means++ distances", n * sizeof(double));
    for (size_t i = 0; i < n; i++) dist2[i] = INFINITY;
    size_t pick = (size_t)(avq_rng_next(rng) % n);
    int st = AVQ_OK;
    for (size_t j = 0; j < k && st == AVQ_OK; j++) {
        if (j > 0) {
            double total = 0.0;
            for (size_t i = 0; i < n; i++) total += dist2[i];
            double target = avq_rng_uniform(rng) * total, cum = 0.0;
            pick = n - 1;
            if (total > 0.0) {
                for (size_t i = 0; i < n; i++) {
                    cum += dist2[i];
                    if (cum > target && dist2[i] > 0.0) {
                        pick = i;
                        break;
                    }
                }
            } else {
                pick = (size_t)(avq_rng_next(rng) % n); /* only duplicates left */
            }
        }
        memcpy(centers + j * d, x + pick * d, d * sizeof(float));
        pp_job job = {x, centers + j * d, d, dist2};
        st = avq_parallel_for(n, 2048, threads, pp_update, &job, NULL, NULL, "kmeans++");
        if (st == AVQ_OK && progress && (j + 1) % 64 == 0 &&
            progress(user, "kmeans++", j + 1, k))
            st = avq_fail(AVQ_ERR_CANCELLED, "kmeans++: cancelled by the progress callback");
    }
    free(dist2);
    return st;
}

/* ---- update ------------------------------------------------------------ */

typedef struct {
    const float *x;
    size_t d, k;
    const size_t *offsets, *members; /* counting sort of rows by cluster */
    float *centers;
    double *acc;                      /* d doubles per worker */
    int spherical;
} update_job;

/* center = sum / count, or the sum scaled to unit length (spherical). */
static void finish_center(const double *sum, size_t count, size_t d, int spherical, float *c) {
    double scale = 1.0 / (double)count;
    if (spherical) {
        double norm2 = 0.0;
        for (size_t t = 0; t < d; t++) norm2 += sum[t] * sum[t];
        if (norm2 == 0.0) return; /* members cancel out: keep the old center */
        scale = 1.0 / sqrt(norm2);
    }
    for (size_t t = 0; t < d; t++) c[t] = (float)(sum[t] * scale);
}

static int update_centers(void *ctx, size_t begin, size_t end, int worker) {
    const update_job *job = ctx;
    size_t d = job->d;
    double *acc = job->acc + (size_t)worker * d;
    for (size_t j = begin; j < end; j++) {
        size_t lo = job->offsets[j], hi = job->offsets[j + 1];
        if (lo == hi) continue; /* empty: re-seeded by the caller */
        memset(acc, 0, d * sizeof *acc);
        for (size_t m = lo; m < hi; m++) {
            const float *row = job->x + job->members[m] * d;
            /* the members are scattered over the sample: ask for the row
             * PREFETCH_AHEAD members on now, or every row is a cache miss
             * waited for (the update was memory-latency bound) */
            if (m + PREFETCH_AHEAD < job->offsets[job->k]) {
                const char *next = (const char *)(job->x + job->members[m + PREFETCH_AHEAD] * d);
                for (size_t b = 0; b < d * sizeof(float); b += 64) __builtin_prefetch(next + b);
            }
            /* fixed-count blocks so that GCC -O2 vectorises; each acc[t]
             * is still its own sum in row order */
            size_t t = 0;
            for (; t + 8 <= d; t += 8)
                for (int u = 0; u < 8; u++) acc[t + u] += row[t + u];
            for (; t < d; t++) acc[t] += row[t];
        }
        finish_center(acc, hi - lo, d, job->spherical, job->centers + j * d);
    }
    return AVQ_OK;
}

/* Small dimensions (d <= AVQ_KMEANS_DIRECT_MAX_DIM): one pass over the rows
 * in order on the calling thread, each added to its cluster's sum -- the
 * same sums in the same order as the counting sort and update_centers,
 * without their scattered reads or a worker per call.  counts[j] receives
 * the cluster sizes; sum holds k x d doubles. */
static void update_small(const float *x, size_t n, size_t d, size_t k, const int32_t *assign,
                         int spherical, double *sum, size_t *counts, float *centers) {
    memset(sum, 0, k * d * sizeof *sum);
    memset(counts, 0, k * sizeof *counts);
    for (size_t i = 0; i < n; i++) {
        size_t j = (size_t)assign[i];
        const float *row = x + i * d;
        double *acc = sum + j * d;
        for (size_t t = 0; t < d; t++) acc[t] += row[t];
        counts[j]++;
    }
    for (size_t j = 0; j < k; j++)
        if (counts[j]) finish_center(sum + j * d, counts[j], d, spherical, centers + j * d);
}

/* Stable counting sort of the rows by assigned cluster. */
static void group_members(const int32_t *assign, size_t n, size_t k, size_t *offsets,
                          size_t *members) {
    memset(offsets, 0, (k + 1) * sizeof *offsets);
    for (size_t i = 0; i < n; i++) offsets[assign[i] + 1]++;
    for (size_t j = 0; j < k; j++) offsets[j + 1] += offsets[j];
    size_t *next = members + n; /* caller provides 2n + k + 1 slots */
    memcpy(next, offsets, k * sizeof *next);
    for (size_t i = 0; i < n; i++) members[next[assign[i]]++] = i;
}

/* Move every cluster smaller than `min_size` next to a random member of a
 * cluster at least twice that size.  Returns how many were moved. */
static size_t reseed_small(const float *x, size_t n, size_t d, size_t k, size_t min_size,
                           int spherical, const int32_t *assign, size_t *counts,
                           uint64_t *rng, float *centers) {
    if (min_size < 1) min_size = 1;
    size_t moved = 0;
    for (size_t j = 0; j < k; j++) {
        if (counts[j] >= min_size) continue;
        size_t row = n, tries = 0;
        for (; tries < 64; tries++) {
            size_t r = (size_t)(avq_rng_next(rng) % n);
            if (counts[assign[r]] >= 2 * min_size) {
                row = r;
                break;
            }
        }
        if (row == n) {
            size_t largest = 0;
            for (size_t c = 1; c < k; c++)
                if (counts[c] > counts[largest]) largest = c;
            if (counts[largest] < 2) continue; /* nothing left to split */
            for (size_t r = 0; r < n; r++)
                if ((size_t)assign[r] == largest) { row = r; break; }
            /* counts are the pretend counts after earlier moves this round,
             * so the largest may be a cluster no row is assigned to yet */
            if (row == n) continue;
        }
        const float *src = x + row * d;
        float *c = centers + j * d;
        double scale = 1e-4 * sqrt(avq_norm2_f64(src, d) / (double)d);
        for (size_t t = 0; t < d; t++)
            c[t] = (float)(src[t] + scale * (avq_rng_uniform(rng) - 0.5));
        if (spherical) normalize_row(c, d);
        size_t donor = (size_t)assign[row];
        counts[j] = counts[donor] / 2; /* pretend the donor split in two */
        counts[donor] -= counts[j];
        moved++;
    }
    return moved;
}

/* ---- training ---------------------------------------------------------- */

static int check_params(const float *x, size_t n, size_t d, const avq_kmeans_params *p,
                        const float *centers) {
    if (!x || !p || !centers)
        return avq_fail(AVQ_ERR_INVALID, "kmeans: NULL data, params or centers");
    if (n == 0 || d == 0 || p->k == 0 || p->max_iter == 0)
        return avq_fail(AVQ_ERR_INVALID, "kmeans: n=%zu, d=%zu, k=%zu, max_iter=%zu must be >= 1",
                        n, d, p->k, p->max_iter);
    if (p->k > n)
        return avq_fail(AVQ_ERR_INVALID, "kmeans: k=%zu centers need at least as many rows, got %zu",
                        p->k, n);
    if (p->k > INT32_MAX || n > INT32_MAX || d > INT32_MAX)
        return avq_fail(AVQ_ERR_INVALID, "kmeans: n=%zu, d=%zu or k=%zu too large", n, d, p->k);
    if (p->init != AVQ_KMEANS_INIT_RANDOM && p->init != AVQ_KMEANS_INIT_PLUSPLUS)
        return avq_fail(AVQ_ERR_INVALID, "kmeans: unknown init %d", (int)p->init);
    if (!(p->tol >= 0.0))
        return avq_fail(AVQ_ERR_INVALID, "kmeans: tol must be >= 0, got %g", p->tol);
    size_t bytes;
    if (!avq_mul_ok(n, d, &bytes) || !avq_all_finite_wide(x, n * d))
        return avq_fail(AVQ_ERR_INVALID, "kmeans: row %zu, column %zu is not a finite number",
                        avq_first_non_finite(x, n * d) / d, avq_first_non_finite(x, n * d) % d);
    return AVQ_OK;
}

int avq_kmeans_train(const float *x, size_t n, size_t d, const avq_kmeans_params *p,
                     float *centers, avq_kmeans_stats *stats, avq_progress_fn progress,
                     void *progress_user) {
    int st = check_params(x, n, d, p, centers);
    if (st != AVQ_OK) return st;
    size_t k = p->k;
    int threads = avq_resolve_threads(p->threads);
    uint64_t rng = p->seed;
    float *sample = NULL, *dist = NULL, *xnorm2 = NULL;
    int32_t *assign = NULL;
    size_t *offsets = NULL, *members = NULL, ns = n;
    double *acc = NULL;

    st = take_sample(x, n, d, p->training_sample, k, &rng, &sample, &ns);
    if (st != AVQ_OK) return st;
    const float *xs = sample ? sample : x;

    dist = malloc(ns * sizeof *dist);
    xnorm2 = malloc(ns * sizeof *xnorm2);
    assign = malloc(ns * sizeof *assign);
    offsets = malloc((k + 1) * sizeof *offsets);
    bool small = d <= AVQ_KMEANS_DIRECT_MAX_DIM;
    members = small ? NULL : malloc((2 * ns + k + 1) * sizeof *members);
    acc = malloc((small ? k : (size_t)threads) * d * sizeof *acc);
    if (!dist || !xnorm2 || !assign || !offsets || (!small && !members) || !acc) {
        st = avq_fail_nomem("k-means buffers", ns * (sizeof(float) + 4 + 2 * sizeof(size_t)));
        goto done;
    }
    st = p->init == AVQ_KMEANS_INIT_PLUSPLUS
             ? init_plusplus(xs, ns, d, k, &rng, threads, centers, progress, progress_user)
             : init_random(xs, ns, d, k, &rng, centers);
    if (st != AVQ_OK) goto done;
    if (p->spherical)
        for (size_t j = 0; j < k; j++) normalize_row(centers + j * d, d);
    avq_row_norms2(xs, ns, d, xnorm2); /* (float)avq_norm2_f64 per row, 8 rows at a time */

    avq_kmeans_stats local = {0};
    if (stats) local.inertia_history = stats->inertia_history;
    local.sample_rows = ns;
    double prev = INFINITY;
    for (size_t it = 0; it < p->max_iter; it++) {
        st = assign_nearest(xs, ns, d, centers, k, AVQ_NEAREST_L2, threads, assign, dist,
                            xnorm2, NULL, NULL, "kmeans");
        if (st != AVQ_OK) goto done;
        double inertia = 0.0;
        for (size_t i = 0; i < ns; i++) inertia += dist[i];
        if (local.inertia_history) local.inertia_history[it] = inertia;
        local.inertia = inertia;
        local.iterations = it + 1;

        if (small) {
            update_small(xs, ns, d, k, assign, p->spherical, acc, offsets, centers);
        } else {
            group_members(assign, ns, k, offsets, members);
            update_job job = {xs, d, k, offsets, members, centers, acc, p->spherical};
            st = avq_parallel_for(k, 16, threads, update_centers, &job, NULL, NULL, "kmeans");
            if (st != AVQ_OK) goto done;
            for (size_t j = 0; j < k; j++) offsets[j] = offsets[j + 1] - offsets[j];
        }
        local.reseeded += reseed_small(xs, ns, d, k, p->min_cluster_size, p->spherical,
                                       assign, offsets, &rng, centers);

        if (progress && progress(progress_user, "kmeans", it + 1, p->max_iter)) {
            st = avq_fail(AVQ_ERR_CANCELLED, "kmeans: cancelled by the progress callback");
            goto done;
        }
        bool converged = inertia == 0.0 || (prev - inertia) <= p->tol * prev;
        prev = inertia;
        if (converged && it > 0) break;
    }
    if (stats) *stats = local;
done:
    free(sample);
    free(dist);
    free(xnorm2);
    free(assign);
    free(offsets);
    free(members);
    free(acc);
    return st;
}
