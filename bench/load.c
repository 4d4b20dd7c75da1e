/*
 * load.c -- how long avq_index_load takes in each mode, and the first query
 * after it.
 *
 * For each mode (mmap without checksum verification, mmap, copy) the index
 * is loaded --reps times; each load is followed by one search (the first
 * query after a load pays the page faults of what it touches) and a free.
 * Printed: min and median of the load time and of the first query, the
 * steady-state query time for comparison, and the file size per vector.
 *
 * The page cache is warm (the file was read recently) unless --cold is
 * given: then the file's cached pages are dropped before every load with
 * posix_fadvise(POSIX_FADV_DONTNEED) -- unprivileged, affects this file
 * only, and only pages nobody has mapped -- so the load reads from disk.
 *
 * usage: load [--index I] [--query Q.fvecs] [--reps N] [--cold]
 *   defaults: data/glove-100/demo.avq (built by `make demo`),
 *             data/glove-100/query.fvecs, 7 repetitions.
 * Without the index it prints a note and exits 0 (so `make bench-micro`
 * does not need the data).
 */
#include "avq.h"
#include "dataset.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void drop_cache(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

int main(int argc, char **argv) {
    const char *index_path = "data/glove-100/demo.avq", *query_path = "data/glove-100/query.fvecs";
    int reps = 7, cold = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--index") && i + 1 < argc) index_path = argv[++i];
        else if (!strcmp(argv[i], "--query") && i + 1 < argc) query_path = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cold")) cold = 1;
        else {
            fprintf(stderr, "usage: load [--index I] [--query Q.fvecs] [--reps N] [--cold]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > 1000) reps = 7;
    struct stat sb;
    if (stat(index_path, &sb) != 0) {
        printf("load: %s not found: skipped (run `make demo` first)\n", index_path);
        return 0;
    }
    float_matrix queries = {0};
    if (dataset_read_float(query_path, &queries) != AVQ_OK) {
        fprintf(stderr, "load: %s\n", avq_last_error());
        return 1;
    }

    static const struct {
        unsigned flags;
        const char *name;
    } modes[] = {
        {AVQ_LOAD_MMAP | AVQ_LOAD_SKIP_CHECKSUMS, "mmap, checksums skipped"},
        {AVQ_LOAD_MMAP, "mmap, checksums verified"},
        {AVQ_LOAD_COPY, "copy"},
    };
    double *load_t = calloc((size_t)reps, sizeof *load_t), *first_t = calloc((size_t)reps, sizeof *first_t);
    double steady = 0;
    size_t n = 0, dim = 0;
    printf("index %s: %.1f MB, %s page cache, isa %s\n", index_path, (double)sb.st_size / 1e6,
           cold ? "cold (pages dropped before each load)" : "warm", avq_isa());
    printf("%-26s %10s %10s %12s %12s\n", "mode", "load min", "load med", "1st query min",
           "1st query med");
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        for (int r = 0; r < reps; r++) {
            if (cold) drop_cache(index_path);
            avq_index *index = NULL;
            double t0 = now();
            if (avq_index_load(index_path, modes[m].flags, &index) != AVQ_OK) {
                fprintf(stderr, "load: %s\n", avq_last_error());
                return 1;
            }
            double t1 = now();
            n = avq_index_size(index);
            dim = avq_index_dim(index);
            if (dim != queries.cols) {
                fprintf(stderr, "load: index dimension %zu, queries %zu\n", dim, queries.cols);
                return 1;
            }
            avq_search_params sp;
            avq_search_params_init(&sp); /* its struct_size is kept */
            avq_index_default_search_params(index, &sp);
            int64_t ids[10];
            float scores[10];
            size_t q = (size_t)r % queries.rows;
            if (avq_index_search(index, queries.data + q * dim, &sp, ids, scores) != AVQ_OK ||
                ids[0] < 0 || (size_t)ids[0] >= n) {
                fprintf(stderr, "load: first search failed: %s\n", avq_last_error());
                return 1;
            }
            double t2 = now();
            load_t[r] = t1 - t0;
            first_t[r] = t2 - t1;
            if (m == 0 && r == reps - 1) {
                /* steady state: the same index, 200 more queries */
                size_t nq = queries.rows < 200 ? queries.rows : 200;
                double s0 = now();
                for (size_t i = 0; i < nq; i++)
                    avq_index_search(index, queries.data + i * dim, &sp, ids, scores);
                steady = (now() - s0) / (double)nq;
            }
            avq_index_free(index);
        }
        double lmin = load_t[0], fmin = first_t[0];
        for (int r = 1; r < reps; r++) {
            if (load_t[r] < lmin) lmin = load_t[r];
            if (first_t[r] < fmin) fmin = first_t[r];
        }
        printf("%-26s %8.2f ms %8.2f ms %10.2f ms %10.2f ms\n", modes[m].name, 1e3 * lmin,
               1e3 * median(load_t, reps), 1e3 * fmin, 1e3 * median(first_t, reps));
    }
    printf("steady-state query (default parameters): %.3f ms\n", 1e3 * steady);
    printf("file: %zu vectors x %zu dims, %.1f bytes/vector (float32 vectors alone: %zu)\n", n, dim,
           (double)sb.st_size / (double)n, dim * sizeof(float));
    free(load_t);
    free(first_t);
    float_matrix_free(&queries);
    return 0;
}
