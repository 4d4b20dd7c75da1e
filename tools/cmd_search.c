/*
 * cmd_search.c -- `avq search`: run queries and write the ids found.
 *
 * --exact runs brute force against --base; --index searches a saved index.
 * Queries/second is printed to stdout as "qps <value>" so scripts can read
 * it, with a human summary on stderr.
 */
#include "avq.h"
#include "cli.h"
#include "cmd_common.h"
#include "dataset.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: avq search --exact --base B --query Q --metric ip|l2|cos --k K --out R\n"
            "                  [--threads T] [--scores S]\n\n"
            "  --exact         brute-force search of --base (exact, deterministic)\n"
            "  --base B        database vectors (.fvecs .bvecs .npy FILE.hdf5:train)\n"
            "  --query Q       query vectors (FILE.hdf5:test)\n"
            "  --metric M      ip, l2 or cos\n"
            "  --k K           results per query (default 10)\n"
            "  --out R         result ids (.ivecs .npy FILE.hdf5:DATASET)\n"
            "  --scores S      also write the scores (.fvecs .npy)\n"
            "  --threads T     worker threads (default: all CPUs)\n"
            "Prints 'qps <queries per second>' on stdout.\n");
}

int cmd_search(int argc, char **argv) {
    static const struct option opts[] = {
        {"exact", no_argument, 0, 'x'},       {"base", required_argument, 0, 'b'},
        {"query", required_argument, 0, 'q'}, {"k", required_argument, 0, 'k'},
        {"metric", required_argument, 0, 'm'}, {"out", required_argument, 0, 'o'},
        {"scores", required_argument, 0, 's'}, {"threads", required_argument, 0, 't'},
        {"index", required_argument, 0, 'i'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *base_path = NULL, *query_path = NULL, *out_path = NULL, *metric_name = NULL,
               *scores_path = NULL, *index_path = NULL;
    size_t k = 10;
    long threads = 0;
    int exact = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'x': exact = 1; break;
        case 'b': base_path = optarg; break;
        case 'q': query_path = optarg; break;
        case 'o': out_path = optarg; break;
        case 'm': metric_name = optarg; break;
        case 's': scores_path = optarg; break;
        case 'i': index_path = optarg; break;
        case 'k':
            if (!cli_parse_size(optarg, &k) || k == 0)
                return cli_usage_error("search", "--k must be a positive integer, got '%s'", optarg);
            break;
        case 't':
            if (!cli_parse_int(optarg, 0, 256, &threads))
                return cli_usage_error("search", "--threads must be 0..256, got '%s'", optarg);
            break;
        case 'h': usage(stdout); return 0;
        default: return cli_usage_error("search", "unknown or incomplete option");
        }
    }
    if (optind < argc) return cli_usage_error("search", "unexpected argument '%s'", argv[optind]);
    if (index_path) return cli_error("search", "--index is not supported by this build yet");
    if (!exact) return cli_usage_error("search", "give --exact (brute force) or --index");
    if (!base_path || !query_path || !metric_name)
        return cli_usage_error("search", "--exact needs --base, --query and --metric");
    avq_metric metric;
    if (avq_metric_parse(metric_name, &metric) != AVQ_OK)
        return cli_fail("search", AVQ_ERR_INVALID);

    float_matrix base, query;
    int rc = cli_load_base_query("search", base_path, query_path, &base, &query);
    if (rc) return rc;
    if (k > base.rows) {
        rc = cli_error("search", "--k %zu is larger than the base set (%zu vectors)", k,
                       base.rows);
        goto out;
    }
    int64_t *ids = malloc(query.rows * k * sizeof *ids);
    float *scores = malloc(query.rows * k * sizeof *scores);
    if (!ids || !scores) {
        rc = cli_error("search", "out of memory for %zu x %zu results", query.rows, k);
    } else {
        double t0 = cli_now();
        int st = avq_exact_search(base.data, base.rows, base.cols, query.data, query.rows,
                                  metric, k, (int)threads, ids, scores, cli_progress, NULL);
        double secs = cli_now() - t0;
        if (st != AVQ_OK) rc = cli_fail("search", st);
        if (!rc && out_path) rc = cli_write_ids("search", out_path, ids, query.rows, k);
        if (!rc && scores_path) {
            st = dataset_write_float(scores_path, scores, query.rows, k);
            if (st) rc = cli_fail("search", st);
        }
        if (!rc) {
            double qps = (double)query.rows / (secs > 0 ? secs : 1e-9);
            printf("qps %.1f\n", qps);
            fprintf(stderr, "avq search: exact %s, %zu queries in %.3f s (%.1f queries/s, %ld threads)\n",
                    avq_metric_name(metric), query.rows, secs, qps, threads);
        }
    }
    free(ids);
    free(scores);
out:
    float_matrix_free(&base);
    float_matrix_free(&query);
    return rc;
}
