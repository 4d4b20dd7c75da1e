/*
 * partition.c -- leaves: training, assignment, member lists, AVQ centers,
 * and leaf selection at query time.
 *
 * The partition is plain k-means on a sample (kmeans.c) followed by one
 * nearest-center assignment of every point, as ScaNN does: training on
 * 100k rows is as good as training on all of them for ~sqrt(N) leaves, and
 * the full assignment is a single tiled SGEMM pass.
 *
 * AVQ centers (doc/DESIGN.md §2, build step 2) re-solve each leaf's center
 * to minimise the score-aware loss of "point approximated by its leaf
 * center" instead of the squared distance.  Each leaf is a d x d symmetric
 * positive definite system; d is ~100, so a hand-written Cholesky in
 * double (d³/3 flops, well under a millisecond) is simpler than dragging in
 * LAPACK, and it runs inside our workers, where BLAS may not be called.
 * The global rescale afterwards is a least-squares fit of one scalar,
 * summed per leaf in a fixed order so the result does not depend on the
 * thread count.
 *
 * Leaf selection scores every center; for many queries that is an SGEMM
 * tile on the calling thread, for one query (inside a search worker) a
 * plain loop.  Both rank by the same distance with ties to the lower leaf.
 */
#include "partition.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { SELECT_TILE_FLOATS = 4 << 20 };

void avq_partition_default_params(avq_partition_params *p) {
    memset(p, 0, sizeof *p);
    p->num_leaves = 0;
    p->max_iter = 12;
    p->training_sample = 100000;
    p->min_cluster_size = 50;
    p->spherical = 0;
    p->init = AVQ_KMEANS_INIT_RANDOM;
    p->avq_eta = NAN;
    p->seed = 42;
    p->threads = 0;
}

void avq_partition_free(avq_partition *part) {
    if (!part) return;
    free(part->centers);
    free(part->assignment);
    free(part->offsets);
    free(part->members);
    memset(part, 0, sizeof *part);
}

void avq_partition_group(const int32_t *assign, size_t n, size_t L, size_t *offsets,
                         int32_t *members) {
    memset(offsets, 0, (L + 1) * sizeof *offsets);
    for (size_t i = 0; i < n; i++) offsets[assign[i] + 1]++;
    for (size_t l = 0; l < L; l++) offsets[l + 1] += offsets[l];
    /* offsets[l + 1] is the end of leaf l: fill each leaf from its end, going
     * backwards over the ids, so no cursor array is needed and ids come out
     * increasing; afterwards offsets[l + 1] is the start of leaf l */
    for (size_t i = n; i-- > 0;) members[--offsets[assign[i] + 1]] = (int32_t)i;
    for (size_t l = 0; l < L; l++) offsets[l] = offsets[l + 1];
    offsets[L] = n;
}

/* ---- Cholesky ---------------------------------------------------------- */

bool avq_cholesky(double *A, size_t d) {
    for (size_t j = 0; j < d; j++) {
        double s = A[j * d + j];
        for (size_t k = 0; k < j; k++) s -= A[j * d + k] * A[j * d + k];
        if (!(s > 0.0)) return false;
        double ljj = sqrt(s);
        A[j * d + j] = ljj;
        for (size_t i = j + 1; i < d; i++) {
            double t = A[i * d + j];
            for (size_t k = 0; k < j; k++) t -= A[i * d + k] * A[j * d + k];
            A[i * d + j] = t / ljj;
        }
    }
    return true;
}

void avq_cholesky_solve(const double *Lm, size_t d, double *b) {
    for (size_t i = 0; i < d; i++) {
        double t = b[i];
        for (size_t k = 0; k < i; k++) t -= Lm[i * d + k] * b[k];
        b[i] = t / Lm[i * d + i];
    }
    for (size_t i = d; i-- > 0;) {
        double t = b[i];
        for (size_t k = i + 1; k < d; k++) t -= Lm[k * d + i] * b[k];
        b[i] = t / Lm[i * d + i];
    }
}

/* ---- AVQ centers ------------------------------------------------------- */

typedef struct {
    const float *x;
    size_t d;
    const size_t *offsets;
    const int32_t *members;
    double eta;
    float *centers;
    double *work;          /* per worker: d*d + 2d doubles */
    double *dot_sum;       /* per leaf: <c_S, sum x_i> */
    double *norm_sum;      /* per leaf: |S| |c_S|² */
    unsigned char *failed; /* per leaf */
} avq_job;

/* A (lower triangle) and b of one leaf; sum_x gets sum of its members. */
static void avq_system(const avq_job *job, size_t lo, size_t hi, double *A, double *b,
                       double *sum_x) {
    size_t d = job->d;
    double eta = job->eta;
    memset(A, 0, d * d * sizeof *A);
    memset(b, 0, d * sizeof *b);
    memset(sum_x, 0, d * sizeof *sum_x);
    double diag = 0.0;
    for (size_t m = lo; m < hi; m++) {
        const float *xi = job->x + (size_t)job->members[m] * d;
        for (size_t t = 0; t < d; t++) sum_x[t] += xi[t];
        double n2 = avq_norm2_f64(xi, d);
        if (!(n2 > 0.0)) continue;
        double ni = sqrt(n2);
        double w = pow(ni, eta - 1.0), v = (eta - 1.0) * pow(ni, eta - 3.0);
        diag += w;
        for (size_t r = 0; r < d; r++) {
            double vr = v * xi[r];
            double *row = A + r * d;
            for (size_t c = 0; c <= r; c++) row[c] += vr * xi[c];
            b[r] += eta * w * xi[r];
        }
    }
    for (size_t r = 0; r < d; r++) A[r * d + r] += diag;
}

static int avq_leaves(void *ctx, size_t begin, size_t end, int worker) {
    const avq_job *job = ctx;
    size_t d = job->d;
    double *A = job->work + (size_t)worker * (d * d + 2 * d);
    double *b = A + d * d, *sum_x = b + d;
    for (size_t l = begin; l < end; l++) {
        size_t lo = job->offsets[l], hi = job->offsets[l + 1];
        float *c = job->centers + l * d;
        if (lo < hi) {
            avq_system(job, lo, hi, A, b, sum_x);
            if (avq_cholesky(A, d)) {
                avq_cholesky_solve(A, d, b);
                for (size_t t = 0; t < d; t++) c[t] = (float)b[t];
            } else {
                job->failed[l] = 1;
            }
        } else {
            memset(sum_x, 0, d * sizeof *sum_x);
        }
        job->dot_sum[l] = 0.0;
        for (size_t t = 0; t < d; t++) job->dot_sum[l] += (double)c[t] * sum_x[t];
        job->norm_sum[l] = (double)(hi - lo) * avq_norm2_f64(c, d);
    }
    return AVQ_OK;
}

int avq_partition_avq_centers(const float *x, size_t n, size_t d, const size_t *offsets,
                              const int32_t *members, size_t L, double eta, int threads,
                              float *centers, double *scale_out, size_t *failed_out) {
    if (!x || !offsets || !members || !centers || L == 0 || d == 0)
        return avq_fail(AVQ_ERR_INVALID, "avq centers: NULL input or zero size");
    if (!(eta > 0.0) || !isfinite(eta))
        return avq_fail(AVQ_ERR_INVALID, "avq centers: eta must be a positive number, got %g", eta);
    if (offsets[L] != n)
        return avq_fail(AVQ_ERR_INVALID, "avq centers: member lists hold %zu points, expected %zu",
                        offsets[L], n);
    threads = avq_resolve_threads(threads);
    double *work = malloc((size_t)threads * (d * d + 2 * d) * sizeof(double));
    double *sums = malloc(2 * L * sizeof(double));
    unsigned char *failed = calloc(L, 1);
    int st = AVQ_OK;
    if (!work || !sums || !failed) {
        st = avq_fail_nomem("avq centers", (size_t)threads * d * d * sizeof(double));
        goto done;
    }
    avq_job job = {x, d, offsets, members, eta, centers, work, sums, sums + L, failed};
    st = avq_parallel_for(L, 4, threads, avq_leaves, &job, NULL, NULL, "avq centers");
    if (st != AVQ_OK) goto done;
    double num = 0.0, den = 0.0;
    size_t nfailed = 0;
    for (size_t l = 0; l < L; l++) {
        num += sums[l];
        den += sums[L + l];
        nfailed += failed[l];
    }
    double s = den > 0.0 && isfinite(num / den) ? num / den : 1.0;
    for (size_t i = 0; i < L * d; i++) centers[i] = (float)(centers[i] * s);
    if (scale_out) *scale_out = s;
    if (failed_out) *failed_out = nfailed;
done:
    free(work);
    free(sums);
    free(failed);
    return st;
}

/* ---- residuals --------------------------------------------------------- */

typedef struct {
    const float *x, *centers;
    const int32_t *assign;
    size_t d;
    float *out;
} residual_job;

static int residual_rows(void *ctx, size_t begin, size_t end, int worker) {
    (void)worker;
    const residual_job *job = ctx;
    for (size_t i = begin; i < end; i++) {
        const float *xi = job->x + i * job->d, *c = job->centers + (size_t)job->assign[i] * job->d;
        float *o = job->out + i * job->d;
        for (size_t t = 0; t < job->d; t++) o[t] = xi[t] - c[t];
    }
    return AVQ_OK;
}

int avq_partition_residuals(const float *x, size_t n, size_t d, const float *centers,
                            const int32_t *assign, int threads, float *out) {
    if (!x || !centers || !assign || !out)
        return avq_fail(AVQ_ERR_INVALID, "residuals: NULL input or output");
    residual_job job = {x, centers, assign, d, out};
    return avq_parallel_for(n, 1024, threads, residual_rows, &job, NULL, NULL, "residuals");
}

/* ---- training ---------------------------------------------------------- */

int avq_partition_train(const float *x, size_t n, size_t d, const avq_partition_params *p,
                        avq_partition *out, avq_progress_fn progress, void *progress_user) {
    if (!out) return avq_fail(AVQ_ERR_INVALID, "partition: NULL output");
    memset(out, 0, sizeof *out);
    if (!x || !p) return avq_fail(AVQ_ERR_INVALID, "partition: NULL data or params");
    if (n == 0 || d == 0) return avq_fail(AVQ_ERR_INVALID, "partition: n=%zu, d=%zu", n, d);
    size_t L = p->num_leaves ? p->num_leaves : (size_t)llround(sqrt((double)n));
    if (L == 0) L = 1;
    if (L > n)
        return avq_fail(AVQ_ERR_INVALID, "partition: %zu leaves for only %zu points", L, n);

    avq_kmeans_params km;
    avq_kmeans_default_params(&km, L);
    km.max_iter = p->max_iter;
    km.training_sample = p->training_sample;
    km.spherical = p->spherical;
    km.init = p->init;
    km.seed = p->seed;
    km.threads = p->threads;
    /* a leaf can only hold ~sample/L rows on average: never demand more
     * than half of that, or re-seeding would never stop */
    size_t rows = p->training_sample && p->training_sample < n ? p->training_sample : n;
    size_t cap = rows / (2 * L);
    km.min_cluster_size = p->min_cluster_size < cap ? p->min_cluster_size : cap;

    avq_partition part = {n, d, L, NULL, NULL, NULL, NULL, 1.0};
    part.centers = malloc(L * d * sizeof(float));
    part.assignment = malloc(n * sizeof(int32_t));
    part.offsets = malloc((L + 1) * sizeof(size_t));
    part.members = malloc(n * sizeof(int32_t));
    int st = AVQ_OK;
    if (!part.centers || !part.assignment || !part.offsets || !part.members) {
        st = avq_fail_nomem("partition", L * d * sizeof(float) + n * 8);
        goto fail;
    }
    st = avq_kmeans_train(x, n, d, &km, part.centers, NULL, progress, progress_user);
    if (st != AVQ_OK) goto fail;
    st = avq_assign_nearest(x, n, d, part.centers, L, AVQ_NEAREST_L2, p->threads,
                            part.assignment, NULL, progress, progress_user, "partition");
    if (st != AVQ_OK) goto fail;
    avq_partition_group(part.assignment, n, L, part.offsets, part.members);
    if (p->avq_eta > 0.0) {
        st = avq_partition_avq_centers(x, n, d, part.offsets, part.members, L, p->avq_eta,
                                       p->threads, part.centers, &part.avq_scale, NULL);
        if (st != AVQ_OK) goto fail;
        if (progress && progress(progress_user, "avq centers", L, L)) {
            st = avq_fail(AVQ_ERR_CANCELLED, "avq centers: cancelled by the progress callback");
            goto fail;
        }
    }
    *out = part;
    return AVQ_OK;
fail:
    avq_partition_free(&part);
    return st;
}

/* ---- leaf selection ---------------------------------------------------- */

static size_t select_best(avq_neighbor *v, size_t L, size_t m, int32_t *leaves, float *dists) {
    if (m > L) m = L;
    if (m < L) avq_neighbors_select(v, L, m);
    avq_neighbors_sort(v, m);
    for (size_t j = 0; j < m; j++) {
        leaves[j] = (int32_t)v[j].id;
        if (dists) dists[j] = v[j].dist;
    }
    return m;
}

size_t avq_select_leaves_one(const float *centers, const float *cnorm2, size_t L, size_t d,
                             const float *query, avq_metric metric, size_t m,
                             avq_neighbor *scratch, int32_t *leaves, float *dists) {
    double q2 = metric == AVQ_METRIC_L2 ? avq_norm2_f64(query, d) : 0.0;
    for (size_t l = 0; l < L; l++) {
        const float *c = centers + l * d;
        float dot = 0.0f;
        for (size_t t = 0; t < d; t++) dot += query[t] * c[t];
        float c2 = metric != AVQ_METRIC_L2 ? 0.0f
                   : cnorm2 ? cnorm2[l] : (float)avq_norm2_f64(c, d);
        scratch[l].dist = metric == AVQ_METRIC_L2 ? (float)q2 + c2 - 2.0f * dot : -dot;
        scratch[l].id = (int64_t)l;
    }
    return select_best(scratch, L, m, leaves, dists);
}

typedef struct {
    const float *tile, *cnorm2, *queries;
    size_t L, d, m, q0;
    avq_metric metric;
    avq_neighbor *scratch; /* L per worker */
    int32_t *leaves;
    float *dists;
} select_job;

static int select_rows(void *ctx, size_t begin, size_t end, int worker) {
    const select_job *job = ctx;
    avq_neighbor *v = job->scratch + (size_t)worker * job->L;
    for (size_t r = begin; r < end; r++) {
        const float *row = job->tile + r * job->L;
        size_t q = job->q0 + r;
        double q2 = job->metric == AVQ_METRIC_L2 ? avq_norm2_f64(job->queries + q * job->d, job->d) : 0.0;
        for (size_t l = 0; l < job->L; l++) {
            v[l].dist = job->metric == AVQ_METRIC_L2 ? (float)q2 + job->cnorm2[l] - 2.0f * row[l]
                                                     : -row[l];
            v[l].id = (int64_t)l;
        }
        select_best(v, job->L, job->m, job->leaves + q * job->m,
                    job->dists ? job->dists + q * job->m : NULL);
    }
    return AVQ_OK;
}

int avq_select_leaves(const float *centers, size_t L, size_t d, const float *queries,
                      size_t nq, avq_metric metric, size_t m, int threads, int32_t *leaves,
                      float *dists) {
    if (!centers || !queries || !leaves)
        return avq_fail(AVQ_ERR_INVALID, "select leaves: NULL centers, queries or output");
    if (L == 0 || d == 0 || nq == 0 || m == 0)
        return avq_fail(AVQ_ERR_INVALID, "select leaves: L=%zu, d=%zu, nq=%zu, m=%zu must be >= 1",
                        L, d, nq, m);
    if (metric != AVQ_METRIC_DOT && metric != AVQ_METRIC_L2 && metric != AVQ_METRIC_COSINE)
        return avq_fail(AVQ_ERR_INVALID, "select leaves: unknown metric %d", (int)metric);
    if (L > INT32_MAX || d > INT32_MAX)
        return avq_fail(AVQ_ERR_INVALID, "select leaves: L=%zu or d=%zu too large", L, d);
    if (m > L) m = L;
    threads = avq_resolve_threads(threads);
    size_t rt = SELECT_TILE_FLOATS / L;
    if (rt == 0) rt = 1;
    if (rt > nq) rt = nq;
    float *tile = avq_alloc_aligned(rt * L * sizeof(float));
    float *cnorm2 = malloc(L * sizeof(float));
    avq_neighbor *scratch = malloc((size_t)threads * L * sizeof *scratch);
    int st = AVQ_OK;
    if (!tile || !cnorm2 || !scratch) {
        st = avq_fail_nomem("leaf selection", rt * L * sizeof(float));
        goto done;
    }
    for (size_t l = 0; l < L; l++) cnorm2[l] = (float)avq_norm2_f64(centers + l * d, d);
    for (size_t q0 = 0; q0 < nq && st == AVQ_OK; q0 += rt) {
        size_t rows = nq - q0 < rt ? nq - q0 : rt;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)L, (int)d, 1.0f,
                    queries + q0 * d, (int)d, centers, (int)d, 0.0f, tile, (int)L);
        select_job job = {tile, cnorm2, queries, L, d, m, q0, metric, scratch, leaves, dists};
        st = avq_parallel_for(rows, 16, threads, select_rows, &job, NULL, NULL, "select leaves");
    }
done:
    avq_free_aligned(tile);
    free(cnorm2);
    free(scratch);
    return st;
}
