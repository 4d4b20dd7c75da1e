/*
 * cmd_tune.c -- `avq tune`: the fastest (leaves_to_search, pre_reorder) that
 * reaches a target recall@k: a thin client of avq_index_tune (src/tune.c,
 * which explains the method and the sampling), as Python's Index.tune is.
 *
 * Ground truth comes from --gt (ids per query row, best first), is computed
 * exactly from --base, or -- with neither -- from the index's own vectors.
 */
#include "avq.h"
#include "cli.h"
#include "cmd_common.h"
#include "dataset.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *out) {
    avq_tune_params d;
    avq_tune_params_init(&d);
    fprintf(out,
            "usage: avq tune --index INDEX --query Q [--gt GT | --base B] [--target %.2g]\n"
            "                [--k %zu] [--queries N] [--seed S] [--runs %d] [--threads T]\n\n"
            "Finds the fastest leaves_to_search / pre_reorder (--reorder) reaching the\n"
            "target recall@k on half of a sample of the queries, and reports it on the\n"
            "other half.\n"
            "  --index INDEX   an index written by 'avq build'\n"
            "  --query Q       sample queries, like the ones the index will serve\n"
            "  --gt GT         their true neighbours, best first (as 'avq gt' writes)\n"
            "  --base B        or: the indexed vectors, to compute the truth exactly\n"
            "                  (neither: computed from the index's own vectors, which\n"
            "                  needs an index built with --reorder float, the default)\n"
            "  --target R      recall@k to reach (default %.2g)\n"
            "  --k K           neighbours per query (default %zu)\n"
            "  --queries N     sample size (default %zu; 0 = all): N rows spread evenly over\n"
            "                  the whole file (not its first rows: query files are often\n"
            "                  sorted, e.g. by word frequency); even ones tune, odd ones check\n"
            "  --seed S        draw the sample at random with this seed instead\n"
            "  --runs N        timed passes per candidate setting, best kept (default %d)\n"
            "  --threads T     threads for the recall searches (default: all %d CPUs this\n"
            "                  process may use; timing always uses one)\n"
            "Prints the candidates, then 'best leaves_to_search L pre_reorder R' on stdout.\n",
            d.target_recall, d.k, d.runs, d.target_recall, d.k, d.max_queries, d.runs,
            avq_default_threads());
}

typedef struct {
    const char *index, *query, *gt, *base;
    avq_tune_params p;
} tune_options;

static int parse_options(int argc, char **argv, tune_options *o) {
    static const struct option opts[] = {
        {"index", required_argument, 0, 'i'}, {"query", required_argument, 0, 'q'},
        {"gt", required_argument, 0, 'g'},    {"base", required_argument, 0, 'b'},
        {"target", required_argument, 0, 'r'}, {"k", required_argument, 0, 'k'},
        {"queries", required_argument, 0, 'n'}, {"runs", required_argument, 0, 'R'},
        {"threads", required_argument, 0, 't'}, {"seed", required_argument, 0, 's'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    avq_tune_params_init(&o->p);
    float target;
    long v;
    size_t z;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'i': o->index = optarg; break;
        case 'q': o->query = optarg; break;
        case 'g': o->gt = optarg; break;
        case 'b': o->base = optarg; break;
        case 'r':
            if (!cli_parse_float(optarg, &target) || !(target > 0.0f && target <= 1.0f))
                return cli_usage_error("tune", "--target must be in (0, 1], got '%s'", optarg);
            o->p.target_recall = target;
            break;
        case 'k':
            if (!cli_parse_size(optarg, &o->p.k) || o->p.k == 0)
                return cli_usage_error("tune", "--k must be a positive integer, got '%s'", optarg);
            break;
        case 'n':
            if (!cli_parse_size(optarg, &z) || z == 1)
                return cli_usage_error("tune", "--queries must be 0 (all) or >= 2, got '%s'", optarg);
            o->p.max_queries = z;
            break;
        case 's':
            if (!cli_parse_size(optarg, &z) || z == 0)
                return cli_usage_error("tune", "--seed must be a positive integer, got '%s'", optarg);
            o->p.seed = z;
            break;
        case 'R':
            if (!cli_parse_int(optarg, 1, 100, &v))
                return cli_usage_error("tune", "--runs must be 1..100, got '%s'", optarg);
            o->p.runs = (int)v;
            break;
        case 't':
            if (!cli_parse_int(optarg, 0, 256, &v))
                return cli_usage_error("tune", "--threads must be 0..256, got '%s'", optarg);
            o->p.threads = (int)v;
            break;
        case 'h': usage(stdout); return -1;
        default: return cli_bad_option("tune", argv);
        }
    }
    if (optind < argc) return cli_usage_error("tune", "unexpected argument '%s'", argv[optind]);
    if (!o->index || !o->query)
        return cli_usage_error("tune", "--index and --query are required");
    if (o->gt && o->base) return cli_usage_error("tune", "--gt and --base exclude each other");
    return 0;
}

/* True if the index holds exactly the ids 0..size-1, so that row r of the
 * file it was built from is id r (not so once vectors were added under
 * other ids or removed). */
static bool ids_are_rows(const avq_index *index) {
    size_t n = avq_index_size(index);
    for (size_t r = 0; r < n; r++)
        if (!avq_index_contains(index, (int64_t)r)) return false;
    return true;
}

/* The true top-k ids of every query (nq x cols into *truth, malloc'ed),
 * from --gt or by exact search of --base; *truth NULL: from the index. */
static int load_truth(const tune_options *o, const avq_index *index, const float_matrix *query,
                      int64_t **truth, size_t *cols) {
    *truth = NULL;
    *cols = 0;
    size_t k = o->p.k;
    if (o->gt) {
        int_matrix gt;
        int st = dataset_read_int(o->gt, &gt);
        if (st) return cli_fail("tune", st);
        int rc = 0;
        if (gt.rows < query->rows || gt.cols < k)
            rc = cli_error("tune", "%s has %zu x %zu ids; need %zu queries x k=%zu", o->gt,
                           gt.rows, gt.cols, query->rows, k);
        else if (!(*truth = malloc(query->rows * gt.cols * sizeof **truth)))
            rc = cli_error("tune", "out of memory for the ground truth");
        for (size_t i = 0; !rc && i < query->rows * gt.cols; i++) (*truth)[i] = gt.data[i];
        if (!rc) *cols = gt.cols;
        int_matrix_free(&gt);
        return rc;
    }
    if (!o->base) return 0;
    float_matrix base;
    int st = dataset_read_float(o->base, &base);
    if (st) return cli_fail("tune", st);
    int rc = 0;
    if (base.cols != query->cols || base.rows != avq_index_size(index)) {
        rc = cli_error("tune", "%s is %zu x %zu, but the index holds %zu x %zu", o->base,
                       base.rows, base.cols, avq_index_size(index), avq_index_dim(index));
    } else if (!ids_are_rows(index)) {
        rc = cli_error("tune", "the index's ids are not the row numbers of %s (vectors were "
                               "added or removed): give --gt with the neighbours' ids, or "
                               "neither (the truth then comes from the index)", o->base);
    } else if (!(*truth = malloc(query->rows * k * sizeof **truth))) {
        rc = cli_error("tune", "out of memory for the ground truth");
    } else {
        fprintf(stderr, "avq tune: exact search of %zu queries for the ground truth\n",
                query->rows);
        st = avq_exact_search(base.data, base.rows, base.cols, query->data, query->rows,
                              avq_index_metric(index), k, o->p.threads, *truth, NULL,
                              cli_progress, NULL);
        if (st) rc = cli_fail("tune", st);
        else *cols = k;
    }
    float_matrix_free(&base);
    if (rc) {
        free(*truth);
        *truth = NULL;
    }
    return rc;
}

static int print_result(const tune_options *o, const avq_tune_result *r) {
    size_t k = o->p.k;
    if (r->exact) {
        fprintf(stderr, "avq tune: this index is the exact (brute-force) tier: every search "
                        "is exact, nothing to tune (recall@%zu %.4f)\n",
                k, r->recall_check);
        return 0;
    }
    printf("leaves_to_search,pre_reorder,recall_tune,qps\n");
    for (size_t i = 0; i < r->num_candidates; i++) {
        const avq_tune_candidate *c = &r->candidates[i];
        if (c->leaves_to_search)
            printf("%zu,%zu,%.4f,%.1f\n", c->leaves_to_search, c->pre_reorder, c->recall, c->qps);
        else
            printf("-,%zu,unreachable,-\n", c->pre_reorder);
    }
    if (!r->reached)
        return cli_error("tune", "recall@%zu %.3f is out of reach even with every leaf (%.4f at "
                                 "best); rebuild with more candidates kept (--reorder) or finer "
                                 "codes", k, o->p.target_recall, r->recall_tune);
    printf("best leaves_to_search %zu pre_reorder %zu\n", r->leaves_to_search, r->pre_reorder);
    char sample[64];
    if (o->p.seed)
        snprintf(sample, sizeof sample, "random sample, seed %llu", (unsigned long long)o->p.seed);
    else
        snprintf(sample, sizeof sample, "sample spread evenly over the file");
    fprintf(stderr,
            "avq tune: leaves_to_search=%zu pre_reorder=%zu: recall@%zu %.4f on %zu tuning and "
            "%.4f on %zu held-out queries (%s; target %.3f), %.0f queries/s one at a time\n",
            r->leaves_to_search, r->pre_reorder, k, r->recall_tune, r->tune_queries,
            r->recall_check, r->check_queries, sample, o->p.target_recall, r->qps);
    return 0;
}

/* Reduce the queries to the rows avq_index_tune would sample. */
static int keep_sample(tune_options *o, float_matrix *query) {
    size_t *rows = malloc(query->rows * sizeof *rows), m = 0, d = query->cols;
    if (!rows) return cli_error("tune", "out of memory");
    int st = avq_tune_sample(query->rows, &o->p, rows, &m);
    if (st) {
        free(rows);
        return cli_fail("tune", st);
    }
    for (size_t i = 0; i < m; i++) /* rows ascending: in place */
        memmove(query->data + i * d, query->data + rows[i] * d, d * sizeof(float));
    free(rows);
    query->rows = m;
    o->p.max_queries = 0;
    return 0;
}

int cmd_tune(int argc, char **argv) {
    tune_options o;
    int rc = parse_options(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    avq_index *index = NULL;
    int st = avq_index_load(o.index, AVQ_LOAD_MMAP, &index);
    if (st) return cli_fail("tune", st);
    float_matrix query = {0};
    int64_t *truth = NULL;
    size_t truth_cols = 0;
    st = dataset_read_float(o.query, &query);
    if (st) {
        rc = cli_fail("tune", st);
    } else if (query.cols != avq_index_dim(index)) {
        rc = cli_error("tune", "dimension mismatch: index has %zu, %s has %zu",
                       avq_index_dim(index), o.query, query.cols);
    } else if (query.rows < 2) {
        rc = cli_error("tune", "%s has %zu queries; need at least 2", o.query, query.rows);
    } else if (o.p.k > avq_index_size(index)) {
        rc = cli_error("tune", "--k %zu is larger than the index (%zu vectors)", o.p.k,
                       avq_index_size(index));
    } else {
        if (o.p.seed && (o.p.max_queries == 0 || o.p.max_queries >= query.rows))
            fprintf(stderr, "avq tune: warning: --seed has no effect: the sample is every one "
                            "of the %zu queries (give --queries N below that to draw N)\n",
                    query.rows);
        /* ground truth from --base costs an exact search per query: only
         * for the sample (then tuned as a whole, max_queries 0) */
        if (o.base && (rc = keep_sample(&o, &query)) != 0) goto out;
        rc = load_truth(&o, index, &query, &truth, &truth_cols);
        if (!rc) {
            avq_tune_result r;
            o.p.progress = cli_progress;
            st = avq_index_tune(index, query.data, query.rows, truth, truth_cols, &o.p, &r);
            rc = st ? cli_fail("tune", st) : print_result(&o, &r);
        }
    }
out:
    free(truth);
    float_matrix_free(&query);
    avq_index_free(index);
    return rc;
}
