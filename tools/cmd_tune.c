/*
 * cmd_tune.c -- `avq tune`: the fastest (leaves_to_search, pre_reorder) that
 * reaches a target recall@k, chosen on one half of the queries and checked
 * on the other (even and odd query rows).
 *
 * Why a search over two numbers is enough: recall grows with both, time grows
 * with both, and for a fixed pre_reorder R the recall is (nearly) monotone in
 * the number of leaves L.  So for each R of a short geometric ladder
 * (2k, 3k, 5k, 8k, 12k, 20k, 30k, capped by the index size) a bisection finds the
 * smallest L that reaches the target on the tuning half; each such (L, R)
 * is then timed one query at a time on one thread (the latency protocol;
 * best of --runs passes by the process CPU clock, which other load on the
 * machine disturbs least), and the fastest wins.  The recall of the choice
 * on the held-out half is reported too: it is what to expect on new
 * queries, and it can be a little below the target (tuning overfits a bit).
 *
 * Ground truth comes from --gt (ids per query row, best first) or is
 * computed exactly from --base.
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
    fprintf(out,
            "usage: avq tune --index INDEX --query Q (--gt GT | --base B) [--target 0.9]\n"
            "                [--k 10] [--queries N] [--runs 3] [--threads T]\n\n"
            "Finds the fastest leaves_to_search / pre_reorder (--reorder) reaching the\n"
            "target recall@k on half of the queries, and reports it on the other half.\n"
            "  --index INDEX   an index written by 'avq build'\n"
            "  --query Q       sample queries, like the ones the index will serve\n"
            "  --gt GT         their true neighbours, best first (as 'avq gt' writes)\n"
            "  --base B        or: the indexed vectors, to compute the truth exactly\n"
            "  --target R      recall@k to reach (default 0.9)\n"
            "  --k K           neighbours per query (default 10)\n"
            "  --queries N     use the first N queries (default 2000; half tune, half check)\n"
            "  --runs N        timed passes per candidate setting, best kept (default 3)\n"
            "  --threads T     threads for the recall searches (timing uses one)\n"
            "Prints the candidates, then 'best leaves_to_search L pre_reorder R' on stdout.\n");
}

typedef struct {
    const avq_index *index;
    const float *queries; /* nq x dim */
    size_t nq, dim, k;
    const int32_t *truth; /* nq x truth_cols */
    size_t truth_cols;
    int threads;
    int64_t *ids; /* nq x k */
} tune_set;

/* Recall of one setting (batched: the answer is the one-at-a-time answer). */
static avq_search_params setting(const tune_set *t, size_t leaves, size_t pre) {
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.k = t->k;
    sp.leaves_to_search = leaves;
    sp.pre_reorder = pre;
    return sp;
}

static int measure_recall(const tune_set *t, size_t leaves, size_t pre, double *recall) {
    avq_search_params sp = setting(t, leaves, pre);
    int st = avq_index_search_batch(t->index, t->queries, t->nq, &sp, t->threads, t->ids, NULL);
    if (st == AVQ_OK) *recall = cli_recall_at_k(t->ids, t->nq, t->k, t->truth, t->truth_cols);
    return st;
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Queries/second of one setting, one query at a time. */
static int measure_qps(const tune_set *t, size_t leaves, size_t pre, int runs, double *qps) {
    avq_search_params sp = setting(t, leaves, pre);
    double best = 1e30;
    for (int r = 0; r < runs; r++) {
        double c0 = cpu_seconds();
        for (size_t q = 0; q < t->nq; q++) {
            int st = avq_index_search(t->index, t->queries + q * t->dim, &sp, t->ids + q * t->k,
                                      NULL);
            if (st != AVQ_OK) return st;
        }
        double secs = cpu_seconds() - c0;
        if (secs < best) best = secs;
    }
    *qps = (double)t->nq / (best > 1e-9 ? best : 1e-9);
    return AVQ_OK;
}

/* Smallest number of leaves reaching `target` with `pre` candidates, or 0 if
 * even all leaves do not. */
static int min_leaves(const tune_set *t, size_t pre, double target, size_t *out,
                      double *recall_out) {
    size_t L = avq_index_num_leaves(t->index);
    double r;
    int st = measure_recall(t, L, pre, &r);
    if (st != AVQ_OK) return st;
    if (r < target) {
        *out = 0;
        return AVQ_OK;
    }
    size_t lo = 1, hi = L; /* hi reaches the target */
    double r_hi = r;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        st = measure_recall(t, mid, pre, &r);
        if (st != AVQ_OK) return st;
        if (r >= target) {
            hi = mid;
            r_hi = r;
        } else {
            lo = mid + 1;
        }
    }
    *out = hi;
    *recall_out = r_hi;
    return AVQ_OK;
}

typedef struct {
    const char *index, *query, *gt, *base;
    double target;
    size_t k, queries;
    long runs, threads;
} tune_options;

static int parse_options(int argc, char **argv, tune_options *o) {
    static const struct option opts[] = {
        {"index", required_argument, 0, 'i'}, {"query", required_argument, 0, 'q'},
        {"gt", required_argument, 0, 'g'},    {"base", required_argument, 0, 'b'},
        {"target", required_argument, 0, 'r'}, {"k", required_argument, 0, 'k'},
        {"queries", required_argument, 0, 'n'}, {"runs", required_argument, 0, 'R'},
        {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    *o = (tune_options){NULL, NULL, NULL, NULL, 0.9, 10, 2000, 3, 0};
    float target;
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
            o->target = target;
            break;
        case 'k':
            if (!cli_parse_size(optarg, &o->k) || o->k == 0)
                return cli_usage_error("tune", "--k must be a positive integer, got '%s'", optarg);
            break;
        case 'n':
            if (!cli_parse_size(optarg, &o->queries) || o->queries < 2)
                return cli_usage_error("tune", "--queries must be >= 2, got '%s'", optarg);
            break;
        case 'R':
            if (!cli_parse_int(optarg, 1, 100, &o->runs))
                return cli_usage_error("tune", "--runs must be 1..100, got '%s'", optarg);
            break;
        case 't':
            if (!cli_parse_int(optarg, 0, 256, &o->threads))
                return cli_usage_error("tune", "--threads must be 0..256, got '%s'", optarg);
            break;
        case 'h': usage(stdout); return -1;
        default: return cli_bad_option("tune", argv);
        }
    }
    if (optind < argc) return cli_usage_error("tune", "unexpected argument '%s'", argv[optind]);
    if (!o->index || !o->query || (!o->gt == !o->base))
        return cli_usage_error("tune", "--index, --query and one of --gt or --base are required");
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

/* The true top-k ids of the queries, from --gt or by exact search of --base. */
static int load_truth(const tune_options *o, const avq_index *index, const float_matrix *query,
                      int_matrix *truth) {
    if (o->gt) {
        int st = dataset_read_int(o->gt, truth);
        if (st) return cli_fail("tune", st);
        if (truth->rows < query->rows || truth->cols < o->k)
            return cli_error("tune", "%s has %zu x %zu ids; need %zu queries x k=%zu", o->gt,
                             truth->rows, truth->cols, query->rows, o->k);
        return 0;
    }
    float_matrix base;
    int st = dataset_read_float(o->base, &base);
    if (st) return cli_fail("tune", st);
    int rc = 0;
    int64_t *ids = malloc(query->rows * o->k * sizeof *ids);
    truth->data = malloc(query->rows * o->k * sizeof *truth->data);
    truth->rows = query->rows;
    truth->cols = o->k;
    if (base.cols != query->cols || base.rows != avq_index_size(index)) {
        rc = cli_error("tune", "%s is %zu x %zu, but the index holds %zu x %zu", o->base,
                       base.rows, base.cols, avq_index_size(index), avq_index_dim(index));
    } else if (!ids_are_rows(index)) {
        rc = cli_error("tune", "the index's ids are not the row numbers of %s (vectors were "
                               "added or removed): give --gt with the neighbours' ids instead",
                       o->base);
    } else if (!ids || !truth->data) {
        rc = cli_error("tune", "out of memory for the ground truth");
    } else {
        fprintf(stderr, "avq tune: exact search of %zu queries for the ground truth\n",
                query->rows);
        st = avq_exact_search(base.data, base.rows, base.cols, query->data, query->rows,
                              avq_index_metric(index), o->k, (int)o->threads, ids, NULL,
                              cli_progress, NULL);
        if (st) rc = cli_fail("tune", st);
        for (size_t i = 0; !rc && i < query->rows * o->k; i++) truth->data[i] = (int32_t)ids[i];
    }
    free(ids);
    float_matrix_free(&base);
    return rc;
}

/* Even rows tune, odd rows check: query files are often sorted (by word
 * frequency, by time), so halves would differ in difficulty. */
static void split_rows(const float_matrix *query, const int_matrix *truth, size_t nq,
                       float *q_even, float *q_odd, int32_t *t_even, int32_t *t_odd) {
    size_t d = query->cols, tc = truth->cols;
    for (size_t i = 0; i < nq; i++) {
        size_t h = i / 2;
        memcpy((i % 2 ? q_odd : q_even) + h * d, query->data + i * d, d * sizeof(float));
        memcpy((i % 2 ? t_odd : t_even) + h * tc, truth->data + i * tc, tc * sizeof(int32_t));
    }
}

static int tune(const tune_options *o, const avq_index *index, const float_matrix *query,
                const int_matrix *truth) {
    size_t nq = query->rows < o->queries ? query->rows : o->queries, half = (nq + 1) / 2;
    size_t d = query->cols, tc = truth->cols;
    int64_t *ids = malloc(half * o->k * sizeof *ids);
    float *q_split = malloc(2 * half * d * sizeof *q_split);
    int32_t *t_split = malloc(2 * half * tc * sizeof *t_split);
    if (!ids || !q_split || !t_split) {
        free(ids);
        free(q_split);
        free(t_split);
        return cli_error("tune", "out of memory");
    }
    split_rows(query, truth, nq, q_split, q_split + half * d, t_split, t_split + half * tc);
    tune_set tuning = {index, q_split, half, d, o->k, t_split, tc, (int)o->threads, ids};
    tune_set check = tuning;
    check.queries = q_split + half * d;
    check.nq = nq / 2;
    check.truth = t_split + half * tc;

    if (avq_index_num_leaves(index) == 0) {
        free(ids);
        free(q_split);
        free(t_split);
        fprintf(stderr, "avq tune: this index is the exact (brute-force) tier: every search "
                        "is exact, nothing to tune\n");
        return 0;
    }
    static const size_t ladder[] = {2, 3, 5, 8, 12, 20, 30};
    size_t best_L = 0, best_R = 0;
    double best_qps = 0;
    int rc = 0;
    printf("leaves_to_search,pre_reorder,recall_tune,qps\n");
    for (size_t i = 0; !rc && i < sizeof ladder / sizeof ladder[0]; i++) {
        size_t R = ladder[i] * o->k;
        if (R > avq_index_size(index)) break;
        size_t L;
        double rec = 0, qps = 0;
        int st = min_leaves(&tuning, R, o->target, &L, &rec);
        if (st == AVQ_OK && L) st = measure_qps(&tuning, L, R, (int)o->runs, &qps);
        if (st != AVQ_OK) {
            rc = cli_fail("tune", st);
            break;
        }
        if (!L) {
            printf("-,%zu,unreachable,-\n", R);
            continue;
        }
        printf("%zu,%zu,%.4f,%.1f\n", L, R, rec, qps);
        fflush(stdout);
        if (qps > best_qps) {
            best_qps = qps;
            best_L = L;
            best_R = R;
        }
    }
    if (!rc && !best_L)
        rc = cli_error("tune", "recall@%zu %.3f is out of reach even with every leaf; rebuild "
                       "with more candidates kept (--reorder) or finer codes", o->k, o->target);
    if (!rc) {
        double held_out;
        int st = measure_recall(&check, best_L, best_R, &held_out);
        if (st != AVQ_OK) {
            rc = cli_fail("tune", st);
        } else {
            printf("best leaves_to_search %zu pre_reorder %zu\n", best_L, best_R);
            fprintf(stderr,
                    "avq tune: leaves_to_search=%zu pre_reorder=%zu: recall@%zu %.4f on %zu "
                    "held-out queries (target %.3f), %.0f queries/s one at a time\n",
                    best_L, best_R, o->k, held_out, check.nq, o->target, best_qps);
        }
    }
    free(ids);
    free(q_split);
    free(t_split);
    return rc;
}

int cmd_tune(int argc, char **argv) {
    tune_options o;
    int rc = parse_options(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    avq_index *index = NULL;
    int st = avq_index_load(o.index, AVQ_LOAD_MMAP, &index);
    if (st) return cli_fail("tune", st);
    float_matrix query = {0};
    int_matrix truth = {0};
    st = dataset_read_float(o.query, &query);
    if (st) {
        rc = cli_fail("tune", st);
    } else if (query.cols != avq_index_dim(index)) {
        rc = cli_error("tune", "dimension mismatch: index has %zu, %s has %zu",
                       avq_index_dim(index), o.query, query.cols);
    } else if (query.rows < 2) {
        rc = cli_error("tune", "%s has %zu queries; need at least 2", o.query, query.rows);
    } else if (o.k > avq_index_size(index)) {
        rc = cli_error("tune", "--k %zu is larger than the index (%zu vectors)", o.k,
                       avq_index_size(index));
    } else {
        if (query.rows > o.queries) query.rows = o.queries;
        rc = load_truth(&o, index, &query, &truth);
        if (!rc) rc = tune(&o, index, &query, &truth);
    }
    int_matrix_free(&truth);
    float_matrix_free(&query);
    avq_index_free(index);
    return rc;
}
