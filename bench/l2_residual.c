/*
 * l2_residual.c -- squared-L2 search: should the PQ codebook quantize the raw
 * vectors (what avq does) or the residuals x - c_leaf (what IVF-PQ usually
 * does)?  A measurement of accuracy, not speed.
 *
 * Why it is a question: with residual codes the distance is
 *   |q - c - r̂|² = |q - c|² - 2<q - c, r̂> + |r̂|²,
 * so either every leaf needs its own LUT (q - c changes per leaf) or the
 * scan must add a per-point |r̂|² + 2<c, r̂> term that a LUT cannot hold.
 * Raw codes need one LUT per query and nothing else, which is why avq uses
 * them.  Residuals are smaller, so their codes are more precise; this
 * program measures how much recall that buys at equal (leaves, candidates),
 * with float distances to the decoded vectors (no 8-bit LUT rounding, the
 * same for both), then exact re-ranking of the best R candidates.
 *
 * usage: l2_residual BASE QUERY GT [NQ]   (e.g. the files of data/fashion-mnist-784)
 */
#include "avq_internal.h"
#include "dataset.h"
#include "kmeans.h"
#include "pq.h"
#include "topk.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double sqdist(const float *a, const float *b, size_t d) {
    double s = 0;
    for (size_t j = 0; j < d; j++) {
        double t = (double)a[j] - b[j];
        s += t * t;
    }
    return s;
}

/* Train a 4-bit, 2-dims-per-block PQ on rows and return the decoded rows. */
static float *pq_roundtrip(const float *rows, size_t n, size_t d, double *mse) {
    avq_pq_shape shape = {d, 2, 16};
    avq_pq_train_params tp;
    avq_pq_default_train_params(&tp);
    size_t K = avq_pq_num_blocks(&shape);
    float *codebook = malloc(16 * d * sizeof *codebook), *out = malloc(n * d * sizeof *out);
    uint8_t *codes = malloc(n * K);
    if (!codebook || !out || !codes ||
        avq_pq_train(rows, n, &shape, &tp, codebook, NULL, NULL) != AVQ_OK ||
        avq_pq_encode(rows, n, &shape, codebook, 0, codes, NULL, NULL) != AVQ_OK ||
        avq_pq_decode(codes, n, &shape, codebook, out) != AVQ_OK) {
        fprintf(stderr, "l2_residual: PQ failed: %s\n", avq_last_error());
        exit(1);
    }
    *mse = avq_pq_mean_sq_error(rows, codes, n, &shape, codebook);
    free(codebook);
    free(codes);
    return out;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s BASE QUERY GT [NQ]\n", argv[0]);
        return 2;
    }
    float_matrix base, query;
    int_matrix gt;
    if (dataset_read_float(argv[1], &base) || dataset_read_float(argv[2], &query) ||
        dataset_read_int(argv[3], &gt)) {
        fprintf(stderr, "l2_residual: %s\n", avq_last_error());
        return 1;
    }
    size_t n = base.rows, d = base.cols, nq = argc > 4 ? strtoul(argv[4], NULL, 10) : 1000;
    if (nq > query.rows) nq = query.rows;
    size_t L = (size_t)sqrt((double)n);
    float *centers = malloc(L * d * sizeof *centers), *resid = malloc(n * d * sizeof *resid);
    int32_t *leaf = malloc(n * sizeof *leaf);
    avq_kmeans_params kp;
    avq_kmeans_default_params(&kp, L);
    if (!centers || !resid || !leaf ||
        avq_kmeans_train(base.data, n, d, &kp, centers, NULL, NULL, NULL) != AVQ_OK ||
        avq_assign_nearest(base.data, n, d, centers, L, AVQ_NEAREST_L2, 0, leaf, NULL, NULL,
                           NULL, "assign") != AVQ_OK) {
        fprintf(stderr, "l2_residual: partition failed: %s\n", avq_last_error());
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < d; j++)
            resid[i * d + j] = base.data[i * d + j] - centers[(size_t)leaf[i] * d + j];
    double mse_raw, mse_res;
    float *raw_hat = pq_roundtrip(base.data, n, d, &mse_raw);
    float *res_hat = pq_roundtrip(resid, n, d, &mse_res);
    for (size_t i = 0; i < n; i++) /* x̂ = c + r̂ */
        for (size_t j = 0; j < d; j++) res_hat[i * d + j] += centers[(size_t)leaf[i] * d + j];
    printf("# %zu x %zu, %zu leaves, 4-bit PQ, 2 dims/block; reconstruction MSE raw %.4g, "
           "residual %.4g\n", n, d, L, mse_raw, mse_res);
    printf("leaves,reorder,recall_raw,recall_residual\n");

    static const size_t leaves_list[] = {2, 5, 10, 20}, reorder_list[] = {20, 50, 100};
    /* members of each leaf: counting sort */
    size_t *start = calloc(L + 1, sizeof *start), *member = malloc(n * sizeof *member);
    for (size_t i = 0; i < n; i++) start[leaf[i] + 1]++;
    for (size_t l = 0; l < L; l++) start[l + 1] += start[l];
    size_t *fill = malloc(L * sizeof *fill);
    if (!start || !member || !fill) return 1;
    memcpy(fill, start, L * sizeof *fill);
    for (size_t i = 0; i < n; i++) member[fill[leaf[i]]++] = i;
    free(fill);
    avq_neighbor *lv = malloc(L * sizeof *lv), *cand = malloc(n * sizeof *cand);
    float *ldist = malloc(L * sizeof *ldist);
    for (size_t a = 0; a < 4; a++)
        for (size_t b = 0; b < 3; b++) {
            size_t Ls = leaves_list[a], R = reorder_list[b], hits[2] = {0, 0};
            for (size_t q = 0; q < nq; q++) {
                const float *qv = query.data + q * d;
                for (size_t l = 0; l < L; l++) ldist[l] = (float)sqdist(qv, centers + l * d, d);
                avq_smallest_of(ldist, L, Ls, lv);
                for (int v = 0; v < 2; v++) {
                    const float *hat = v ? res_hat : raw_hat;
                    size_t nc = 0;
                    for (size_t t = 0; t < Ls; t++)
                        for (size_t m = start[lv[t].id]; m < start[lv[t].id + 1]; m++) {
                            size_t i = member[m];
                            cand[nc++] = (avq_neighbor){(float)sqdist(qv, hat + i * d, d),
                                                        (int64_t)i};
                        }
                    size_t keep = R < nc ? R : nc;
                    if (keep < nc) avq_neighbors_select(cand, nc, keep);
                    for (size_t t = 0; t < keep; t++)
                        cand[t].dist = (float)sqdist(qv, base.data + cand[t].id * d, d);
                    size_t k = 10 < keep ? 10 : keep;
                    if (k < keep) avq_neighbors_select(cand, keep, k);
                    for (size_t t = 0; t < k; t++)
                        for (size_t g = 0; g < 10; g++)
                            hits[v] += cand[t].id == gt.data[q * gt.cols + g];
                }
            }
            printf("%zu,%zu,%.4f,%.4f\n", Ls, R, hits[0] / (10.0 * nq), hits[1] / (10.0 * nq));
            fflush(stdout);
        }
    return 0;
}
