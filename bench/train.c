/*
 * train.c -- time the training stages of an index on GloVe-100 (or any base
 * file given as the first argument): partition (2000 leaves, 12 k-means
 * iterations on a 100k sample, spherical), residuals, 4-bit codebooks
 * (dims_per_block 2), anisotropic encoding at T = 0.2.
 *
 * It exists to check the performance target (whole training < 60 s on two
 * threads for 331k x 100) stage by stage, so a regression shows where it
 * happened.  Exits 0 after printing when the data is missing (the bench
 * suite must not fail on a machine without `make data`).
 *
 *   build/bench/train [base.fvecs] [threads]
 */
#include "aniso.h"
#include "dataset.h"
#include "partition.h"
#include "pq.h"
#include "vecmath.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fail(const char *what, int st) {
    fprintf(stderr, "bench train: %s failed: %s\n", what, avq_last_error());
    return st ? 1 : 0;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "data/glove-100/base.fvecs";
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    if (access(path, R_OK) != 0) {
        printf("bench train: %s not found (run `make data`), skipped\n", path);
        return 0;
    }
    float_matrix base;
    int st = dataset_read_float(path, &base);
    if (st) return fail("reading the base", st);
    size_t n = base.rows, d = base.cols;
    avq_normalize_rows(base.data, n, d);
    printf("bench train: %zu x %zu, %d threads\n", n, d, threads);

    int rc = 1;
    avq_partition part = {0};
    avq_pq_shape shape = {d, 2, 16};
    size_t K = avq_pq_num_blocks(&shape);
    float *resid = malloc(n * d * sizeof(float));
    float *codebook = malloc(shape.num_centers * d * sizeof(float));
    uint8_t *codes = malloc(n * K);
    if (!resid || !codebook || !codes) {
        fprintf(stderr, "bench train: out of memory\n");
        goto out;
    }
    double t0 = now();
    avq_partition_params pp;
    avq_partition_default_params(&pp);
    pp.num_leaves = 2000;
    pp.spherical = 1;
    pp.threads = threads;
    if ((st = avq_partition_train(base.data, n, d, &pp, &part, NULL, NULL))) {
        fail("partition", st);
        goto out;
    }
    double t1 = now();
    if ((st = avq_partition_residuals(base.data, n, d, part.centers, part.assignment, threads,
                                      resid))) {
        fail("residuals", st);
        goto out;
    }
    double t2 = now();
    avq_pq_train_params tp;
    avq_pq_default_train_params(&tp);
    tp.threads = threads;
    if ((st = avq_pq_train(resid, n, &shape, &tp, codebook, NULL, NULL))) {
        fail("codebooks", st);
        goto out;
    }
    double t3 = now();
    avq_aniso_params ap;
    avq_aniso_default_params(&ap);
    ap.threshold = 0.2;
    ap.threads = threads;
    if ((st = avq_aniso_encode(resid, base.data, n, &shape, codebook, &ap, codes, NULL, NULL))) {
        fail("encode", st);
        goto out;
    }
    double t4 = now();
    printf("  partition (kmeans 2000 x 12 it on 100k + assign all) %7.2f s\n", t1 - t0);
    printf("  residuals                                           %7.2f s\n", t2 - t1);
    printf("  codebooks (%zu blocks x 16, 10 it on 100k)           %7.2f s\n", K, t3 - t2);
    printf("  anisotropic encoding (T = 0.2)                      %7.2f s\n", t4 - t3);
    printf("  total                                               %7.2f s\n", t4 - t0);
    rc = 0;
out:
    avq_partition_free(&part);
    free(resid);
    free(codebook);
    free(codes);
    float_matrix_free(&base);
    return rc;
}
