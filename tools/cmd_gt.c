/*
 * cmd_gt.c -- `avq gt`: exact ground truth, and the shared loader used by
 * the commands that read a base set and a query set.
 */
#include "avq.h"
#include "cli.h"
#include "cmd_common.h"
#include "dataset.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

enum { GT_DEFAULT_K = 100 };

static void usage(FILE *out) {
    fprintf(out,
            "usage: avq gt --base B --query Q --k K [--metric M] --out GT.ivecs\n"
            "              [--threads T] [--distances D.fvecs]\n\n"
            "Exact top-K neighbours of every query (brute force, ties to the lower id).\n"
            "  --base B        database vectors (.fvecs .bvecs .npy FILE.hdf5:train)\n"
            "  --query Q       query vectors (same formats; FILE.hdf5:test)\n"
            "  --k K           neighbours per query (default %d)\n"
            "  --metric M      required unless an HDF5 input declares its 'distance'\n"
            "                  (ann-benchmarks files do; a different --metric is an error):\n",
            GT_DEFAULT_K);
    cli_metric_help(out, "                  ");
    fprintf(out,
            "  --out GT        ids as .ivecs, .npy or FILE.hdf5:neighbors\n"
            "  --distances D   also write the scores (.fvecs .npy FILE.hdf5:distances)\n"
            "  --threads T     worker threads (default: all %d CPUs this process may use)\n",
            avq_default_threads());
}

int cli_load_base_query(const char *cmd, const char *base_path, const char *query_path,
                        float_matrix *base, float_matrix *query) {
    int st = dataset_read_float(base_path, base);
    if (st != 0) return cli_fail(cmd, st);
    st = dataset_read_float(query_path, query);
    if (st != 0) {
        float_matrix_free(base);
        return cli_fail(cmd, st);
    }
    if (base->cols != query->cols) {
        int rc = cli_error(cmd, "dimension mismatch: base %s has %zu columns, query %s has %zu",
                           base_path, base->cols, query_path, query->cols);
        float_matrix_free(base);
        float_matrix_free(query);
        return rc;
    }
    return 0;
}

int cli_resolve_metric(const char *cmd, const char *given, const char *const *paths, size_t n,
                       avq_metric *out) {
    avq_metric metric;
    if (given && avq_metric_parse(given, &metric) != AVQ_OK)
        return cli_usage_error(cmd, "--metric: %s", cli_last_error());
    const char *from = NULL; /* the file whose attribute decided */
    avq_metric declared = AVQ_METRIC_DOT;
    for (size_t i = 0; i < n; i++) {
        if (!paths[i]) continue;
        char distance[64];
        int r = dataset_distance(paths[i], distance, sizeof distance);
        if (r < 0) return cli_fail(cmd, r);
        if (r == 0) continue;
        avq_metric m;
        if (avq_metric_parse(distance, &m) != AVQ_OK) {
            if (given) continue; /* e.g. "hamming": --metric says how to read it */
            return cli_error(cmd, "%s declares distance '%s', which avq does not serve: give "
                                  "--metric", paths[i], distance);
        }
        if (from && m != declared)
            return cli_error(cmd, "%s declares distance %s but %s declares %s", from,
                             avq_metric_name(declared), paths[i], avq_metric_name(m));
        if (given && m != metric)
            return cli_error(cmd, "--metric %s (%s) contradicts %s, whose 'distance' attribute "
                                  "is '%s' (%s): drop --metric or give the file's",
                             given, avq_metric_name(metric), paths[i], distance,
                             avq_metric_name(m));
        from = paths[i];
        declared = m;
    }
    if (!given && !from)
        return cli_usage_error(cmd, "--metric is required (no input declares its distance)");
    *out = given ? metric : declared;
    return 0;
}

int cli_write_ids(const char *cmd, const char *path, const int64_t *ids, size_t rows,
                  size_t cols) {
    int st = dataset_write_int64(path, ids, rows, cols);
    return st == 0 ? 0 : cli_fail(cmd, st);
}

int cmd_gt(int argc, char **argv) {
    static const struct option opts[] = {
        {"base", required_argument, 0, 'b'},    {"query", required_argument, 0, 'q'},
        {"k", required_argument, 0, 'k'},       {"metric", required_argument, 0, 'm'},
        {"out", required_argument, 0, 'o'},     {"threads", required_argument, 0, 't'},
        {"distances", required_argument, 0, 'd'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *base_path = NULL, *query_path = NULL, *out_path = NULL, *metric_name = NULL,
               *dist_path = NULL;
    size_t k = GT_DEFAULT_K;
    long threads = 0;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'b': base_path = optarg; break;
        case 'q': query_path = optarg; break;
        case 'o': out_path = optarg; break;
        case 'm': metric_name = optarg; break;
        case 'd': dist_path = optarg; break;
        case 'k':
            if (!cli_parse_size(optarg, &k) || k == 0)
                return cli_usage_error("gt", "--k must be a positive integer, got '%s'", optarg);
            break;
        case 't':
            if (!cli_parse_int(optarg, 0, 256, &threads))
                return cli_usage_error("gt", "--threads must be 0..256, got '%s'", optarg);
            break;
        case 'h': usage(stdout); return 0;
        default: return cli_bad_option("gt", argv);
        }
    }
    if (optind < argc) return cli_usage_error("gt", "unexpected argument '%s'", argv[optind]);
    if (!base_path || !query_path || !out_path)
        return cli_usage_error("gt", "--base, --query and --out are required");
    avq_metric metric;
    const char *const inputs[] = {base_path, query_path};
    int mrc = cli_resolve_metric("gt", metric_name, inputs, 2, &metric);
    if (mrc) return mrc;

    float_matrix base, query;
    int rc = cli_load_base_query("gt", base_path, query_path, &base, &query);
    if (rc) return rc;
    if (k > base.rows) {
        rc = cli_error("gt", "--k %zu is larger than the base set (%zu vectors)", k, base.rows);
        goto out;
    }
    int64_t *ids = malloc(query.rows * k * sizeof *ids);
    float *scores = malloc(query.rows * k * sizeof *scores);
    if (!ids || !scores) {
        rc = cli_error("gt", "out of memory for %zu x %zu results", query.rows, k);
    } else {
        double t0 = cli_now();
        int st = avq_exact_search(base.data, base.rows, base.cols, query.data, query.rows,
                                  metric, k, (int)threads, ids, scores, cli_progress, NULL);
        double secs = cli_now() - t0;
        if (st != AVQ_OK) rc = cli_fail("gt", st);
        if (!rc) rc = cli_write_ids("gt", out_path, ids, query.rows, k);
        if (!rc && dist_path) {
            st = dataset_write_float(dist_path, scores, query.rows, k);
            if (st) rc = cli_fail("gt", st);
        }
        if (!rc)
            fprintf(stderr, "avq gt: %zu queries x %zu base vectors, top-%zu %s in %.2f s\n",
                    query.rows, base.rows, k, avq_metric_name(metric), secs);
    }
    free(ids);
    free(scores);
out:
    float_matrix_free(&base);
    float_matrix_free(&query);
    return rc;
}

double cli_recall_at_k(const int64_t *ids, size_t nq, size_t k, const int32_t *truth,
                       size_t truth_cols) {
    size_t hits = 0;
    for (size_t q = 0; q < nq; q++)
        for (size_t i = 0; i < k; i++)
            for (size_t j = 0; j < k; j++)
                if (ids[q * k + i] == truth[q * truth_cols + j]) {
                    hits++;
                    break;
                }
    return nq ? (double)hits / (double)(nq * k) : 0.0;
}
