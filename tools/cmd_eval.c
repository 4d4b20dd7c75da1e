/*
 * cmd_eval.c -- `avq eval`: recall of a result file against ground truth.
 *
 * recall@k     = |returned top-k ∩ true top-k| / k, averaged over queries
 *                (the ann-benchmarks definition, without distance ties).
 * Recall1@N    = fraction of queries whose true nearest neighbour is among
 *                the first N returned (the paper's Figure 3 measure).
 */
#include "avq.h"
#include "cli.h"
#include "dataset.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: avq eval --result R.ivecs --gt GT.ivecs [--k 10] [--recall1-at N]\n\n"
            "Prints 'recall@K <value>' (and 'recall1@N <value>' if asked).\n"
            "  --result R      ids returned by a search (.ivecs .npy FILE.hdf5:DATASET)\n"
            "  --gt GT         true neighbours, best first (FILE.hdf5 -> 'neighbors')\n"
            "  --k K           recall@K, needs K columns in both files (default 10)\n"
            "  --recall1-at N  also Recall1@N: true top-1 found among the first N\n");
}

static double recall_at_k(const int_matrix *res, const int_matrix *gt, size_t k) {
    double total = 0.0;
    for (size_t q = 0; q < res->rows; q++) {
        const int32_t *r = res->data + q * res->cols, *g = gt->data + q * gt->cols;
        size_t hits = 0;
        for (size_t i = 0; i < k; i++)
            for (size_t j = 0; j < k; j++)
                if (r[i] == g[j] && r[i] >= 0) {
                    hits++;
                    break;
                }
        total += (double)hits / (double)k;
    }
    return total / (double)res->rows;
}

static double recall1_at(const int_matrix *res, const int_matrix *gt, size_t n) {
    size_t found = 0;
    for (size_t q = 0; q < res->rows; q++) {
        const int32_t *r = res->data + q * res->cols;
        int32_t truth = gt->data[q * gt->cols];
        for (size_t i = 0; i < n; i++)
            if (r[i] == truth) {
                found++;
                break;
            }
    }
    return (double)found / (double)res->rows;
}

int cmd_eval(int argc, char **argv) {
    static const struct option opts[] = {{"result", required_argument, 0, 'r'},
                                         {"gt", required_argument, 0, 'g'},
                                         {"k", required_argument, 0, 'k'},
                                         {"recall1-at", required_argument, 0, 'n'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *res_path = NULL, *gt_path = NULL;
    size_t k = 10, n1 = 0;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'r': res_path = optarg; break;
        case 'g': gt_path = optarg; break;
        case 'k':
            if (!cli_parse_size(optarg, &k) || k == 0)
                return cli_usage_error("eval", "--k must be a positive integer, got '%s'", optarg);
            break;
        case 'n':
            if (!cli_parse_size(optarg, &n1) || n1 == 0)
                return cli_usage_error("eval", "--recall1-at must be a positive integer, got '%s'",
                                       optarg);
            break;
        case 'h': usage(stdout); return 0;
        default: return cli_bad_option("eval", argv);
        }
    }
    if (optind < argc) return cli_usage_error("eval", "unexpected argument '%s'", argv[optind]);
    if (!res_path || !gt_path) return cli_usage_error("eval", "--result and --gt are required");

    int_matrix res, gt;
    int st = dataset_read_int(res_path, &res);
    if (st) return cli_fail("eval", st);
    st = dataset_read_int(gt_path, &gt);
    if (st) {
        int_matrix_free(&res);
        return cli_fail("eval", st);
    }
    int rc = 0;
    if (res.rows != gt.rows)
        rc = cli_error("eval", "%s has %zu rows but %s has %zu: not the same queries",
                       res_path, res.rows, gt_path, gt.rows);
    else if (res.cols < k || gt.cols < k)
        rc = cli_error("eval", "--k %zu needs %zu columns; %s has %zu, %s has %zu", k, k,
                       res_path, res.cols, gt_path, gt.cols);
    else if (n1 > res.cols)
        rc = cli_error("eval", "--recall1-at %zu exceeds the %zu results per query in %s", n1,
                       res.cols, res_path);
    if (!rc) {
        printf("recall@%zu %.4f\n", k, recall_at_k(&res, &gt, k));
        if (n1) printf("recall1@%zu %.4f\n", n1, recall1_at(&res, &gt, n1));
    }
    int_matrix_free(&res);
    int_matrix_free(&gt);
    return rc;
}
