/*
 * recall_qps.c -- recall@k and queries/second of a saved index over a list of
 * (leaves_to_search, pre_reorder) settings, measured in one process.
 *
 * Why a separate program when `avq search` prints QPS: a sweep through the
 * CLI pays the index load per setting, and on a shared 2-core machine one
 * wall-clock pass is noisy.  Here the index is mapped once, each setting runs
 * `--repeat` passes over the queries, and the best pass is kept, timed both by
 * the wall clock and by the thread's CPU clock (which ignores time the thread
 * was descheduled by other load).  The CPU clock is what to compare when the
 * machine is not idle; the wall clock is what a user sees.
 *
 * usage: recall_qps INDEX QUERY GT [--settings L:R,L:R,...] [--k 10]
 *                   [--repeat 3] [--nq N] [--batch THREADS] [--spreads Z,Z,...]
 *                   [--compare THREADS]
 * --nq N: N queries evenly spaced over the file (GloVe's query file is in
 * word-frequency order: its first rows are the easy, frequent words).
 * --spreads: an A/B of the leaf ranking weight (avq_search_params.
 * leaf_spread_z; < 0 = off, 0 = the index's): every setting is timed for
 * each weight, the weights taking turns within each repeat, so that load
 * changes hit them alike.
 * --compare THREADS: an A/B of one-query-at-a-time search against
 * avq_index_search_batch on THREADS threads: each repeat runs a single pass
 * and then a batch pass, so that load changes hit both alike; both must
 * return the same ids (else exit 1), and the ratio of their best CPU-clock
 * times is printed.
 * Output: CSV on stdout: leaves,reorder,recall,qps_wall,qps_cpu
 * (with --spreads: leaves,reorder,spread_z,recall,qps_wall,qps_cpu;
 * with --compare: leaves,reorder,recall,single_qps_cpu,batch_qps_cpu,
 * batch_over_single)
 */
#include "avq.h"
#include "cmd_common.h"
#include "dataset.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One pass over the queries; returns 0 or an avq status. */
static int run_pass(const avq_index *idx, const float *queries, size_t nq, size_t dim,
                    const avq_search_params *sp, int batch_threads, int64_t *ids,
                    double *wall, double *cpu) {
    double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
    int st = AVQ_OK;
    if (batch_threads > 0) {
        st = avq_index_search_batch(idx, queries, nq, sp, batch_threads, ids, NULL);
    } else {
        for (size_t q = 0; q < nq && st == AVQ_OK; q++)
            st = avq_index_search(idx, queries + q * dim, sp, ids + q * sp->k, NULL);
    }
    *wall = now(CLOCK_MONOTONIC) - w0;
    *cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
    return st;
}

/* The next "L:R" of a comma-separated settings list into *sp (k results,
 * the rest at their defaults), *s moved past it; false at the end of the
 * list or at text that is not L:R. */
static bool next_setting(const char **s, size_t k, avq_search_params *sp) {
    if (!**s) return false;
    char *end;
    avq_search_params_init(sp);
    sp->k = k;
    sp->leaves_to_search = strtoul(*s, &end, 10);
    if (*end != ':') return false;
    sp->pre_reorder = strtoul(end + 1, &end, 10);
    *s = *end == ',' ? end + 1 : end;
    return true;
}

/* --compare: single and batch passes taking turns in every repeat; the
 * best CPU time of each.  Returns the exit status. */
static int compare_passes(const avq_index *idx, const float *queries, size_t nq, size_t dim,
                          const int32_t *gt, size_t gt_cols, size_t k, const char *settings,
                          int repeat, int threads, int64_t *ids) {
    int64_t *one = malloc(nq * k * sizeof *one);
    if (!one) return 1;
    printf("leaves,reorder,recall,single_qps_cpu,batch_qps_cpu,batch_over_single\n");
    avq_search_params sp;
    for (const char *s = settings; next_setting(&s, k, &sp);) {
        double best[2] = {1e30, 1e30};
        for (int r = 0; r < repeat; r++)
            for (int pass = 0; pass < 2; pass++) {
                double wall, cpu;
                if (run_pass(idx, queries, nq, dim, &sp, pass ? threads : 0, pass ? ids : one,
                             &wall, &cpu) != AVQ_OK) {
                    fprintf(stderr, "recall_qps: %s\n", avq_last_error());
                    free(one);
                    return 1;
                }
                if (cpu < best[pass]) best[pass] = cpu;
            }
        if (memcmp(one, ids, nq * k * sizeof *ids) != 0) {
            fprintf(stderr, "recall_qps: batch and single searches disagree at %zu:%zu\n",
                    sp.leaves_to_search, sp.pre_reorder);
            free(one);
            return 1;
        }
        /* the process CPU clock counts every batch worker */
        double single_qps = (double)nq / best[0], batch_qps = (double)nq * threads / best[1];
        printf("%zu,%zu,%.4f,%.1f,%.1f,%.3f\n", sp.leaves_to_search, sp.pre_reorder,
               cli_recall_at_k(one, nq, k, gt, gt_cols), single_qps, batch_qps,
               batch_qps / single_qps);
        fflush(stdout);
    }
    free(one);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s INDEX QUERY GT [--settings L:R,...] [--k 10] [--repeat 3]"
                        " [--nq N] [--batch THREADS] [--compare THREADS] [--load mmap|copy]\n",
                argv[0]);
        return 2;
    }
    const char *settings = "10:50,20:80,40:100,60:120,80:150,120:200,200:300";
    size_t k = 10, nq_limit = 0;
    int repeat = 3, batch = 0, compare = 0;
    unsigned load = AVQ_LOAD_MMAP | AVQ_LOAD_SKIP_CHECKSUMS; /* --load mmap (the default) */
    float spreads[16];
    int nspreads = 0;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--settings")) settings = argv[i + 1];
        else if (!strcmp(argv[i], "--k")) k = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--repeat")) repeat = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--nq")) nq_limit = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--compare")) compare = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--load")) {
            /* copy: the file read into anonymous memory (huge pages where the
             * kernel gives them), as a server holding the index would */
            if (!strcmp(argv[i + 1], "copy")) load = AVQ_LOAD_COPY;
            else if (strcmp(argv[i + 1], "mmap") != 0) {
                fprintf(stderr, "recall_qps: --load wants mmap or copy, got %s\n", argv[i + 1]);
                return 2;
            }
        }
        else if (!strcmp(argv[i], "--spreads")) {
            for (char *s = argv[i + 1], *end; *s && nspreads < 16; s = *end ? end + 1 : end) {
                spreads[nspreads++] = strtof(s, &end);
                if (end == s || (*end && *end != ',')) {
                    fprintf(stderr, "recall_qps: --spreads wants numbers, got %s\n", argv[i + 1]);
                    return 2;
                }
            }
        } else {
            fprintf(stderr, "recall_qps: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    avq_index *idx = NULL;
    if (avq_index_load(argv[1], load, &idx) != AVQ_OK) {
        fprintf(stderr, "recall_qps: %s\n", avq_last_error());
        return 1;
    }
    float_matrix query = {0};
    int_matrix gt = {0};
    if (dataset_read_float(argv[2], &query) != 0 || dataset_read_int(argv[3], &gt) != 0) {
        fprintf(stderr, "recall_qps: cannot read %s or %s\n", argv[2], argv[3]);
        return 1;
    }
    size_t nq = query.rows < gt.rows ? query.rows : gt.rows;
    if (nq_limit && nq_limit < nq) {
        /* evenly spaced rows, moved to the front (queries and their truth) */
        for (size_t i = 0; i < nq_limit; i++) {
            size_t from = i * nq / nq_limit;
            memmove(query.data + i * query.cols, query.data + from * query.cols,
                    query.cols * sizeof *query.data);
            memmove(gt.data + i * gt.cols, gt.data + from * gt.cols, gt.cols * sizeof *gt.data);
        }
        nq = nq_limit;
    }
    if (k > gt.cols || query.cols != avq_index_dim(idx)) {
        fprintf(stderr, "recall_qps: k or dimension does not match the ground truth / index\n");
        return 1;
    }
    int64_t *ids = malloc(nq * k * sizeof *ids);
    if (!ids) return 1;
    if (compare > 0) {
        int st = compare_passes(idx, query.data, nq, query.cols, gt.data, gt.cols, k, settings,
                                repeat, compare, ids);
        free(ids);
        float_matrix_free(&query);
        int_matrix_free(&gt);
        avq_index_free(idx);
        return st;
    }
    printf(nspreads ? "leaves,reorder,spread_z,recall,qps_wall,qps_cpu\n"
                    : "leaves,reorder,recall,qps_wall,qps_cpu\n");
    int runs = nspreads ? nspreads : 1;
    avq_search_params sp;
    for (const char *s = settings; next_setting(&s, k, &sp);) {
        double best_wall[16], best_cpu[16], recall[16];
        for (int z = 0; z < runs; z++) best_wall[z] = best_cpu[z] = 1e30;
        for (int r = 0; r < repeat; r++) {
            for (int t = 0; t < runs; t++) {
                int z = (t + r) % runs; /* rotate which weight goes first */
                if (nspreads) sp.leaf_spread_z = spreads[z];
                double wall, cpu;
                if (run_pass(idx, query.data, nq, query.cols, &sp, batch, ids, &wall, &cpu) !=
                    AVQ_OK) {
                    fprintf(stderr, "recall_qps: %s\n", avq_last_error());
                    return 1;
                }
                if (wall < best_wall[z]) best_wall[z] = wall;
                if (cpu < best_cpu[z]) best_cpu[z] = cpu;
                recall[z] = cli_recall_at_k(ids, nq, k, gt.data, gt.cols);
            }
        }
        for (int z = 0; z < runs; z++) {
            /* with batch threads the process CPU clock counts every worker */
            double cpu_qps = batch > 0 ? (double)nq * batch / best_cpu[z] : (double)nq / best_cpu[z];
            printf("%zu,%zu,", sp.leaves_to_search, sp.pre_reorder);
            if (nspreads) printf("%g,", (double)spreads[z]);
            printf("%.4f,%.1f,%.1f\n", recall[z], (double)nq / best_wall[z], cpu_qps);
        }
        fflush(stdout);
    }
    free(ids);
    float_matrix_free(&query);
    int_matrix_free(&gt);
    avq_index_free(idx);
    return 0;
}
