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
#include "cli_tags.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SEARCH_DEFAULT_K = 10 };
/* Below this a queries/s figure is mostly timer noise and start-up. */
#define MIN_TIMED_SECONDS 0.1

static void usage(FILE *out) {
    fprintf(out,
            "usage: avq search --exact --base B --query Q [--metric M] --k K --out R\n"
            "       avq search --index INDEX --query Q --k K --out R [--leaves-to-search L]\n"
            "                  [--reorder R] [--batch [--threads T]] [--mmap]\n"
            "                  [--allow-ids F | --deny-ids F | --tags-any L | --tags-all L]\n"
            "                  [--filter-min-scanned N] [--filter-exact-below N]\n"
            "       (both: [--scores S] [--replace])\n\n"
            "  --index INDEX   search an index written by 'avq build'\n"
            "  --leaves-to-search L   leaves scanned per query (default: the index's, set\n"
            "                  at build time: %d per 1000 leaves, rounded up; more than\n"
            "                  the index has means all of them; 'avq info' shows it)\n"
            "  --reorder R     candidates re-scored exactly (pre_reorder; default: the\n"
            "                  index's, %d unless built otherwise)\n"
            "  --batch         use the batched API over --threads workers (default:\n"
            "                  one query at a time on one thread, as latency benchmarks do)\n"
            "  --threads T     workers of --batch or --exact (default: all %d CPUs this\n"
            "                  process may use); without --batch an index search is\n"
            "                  single-threaded, so --threads there is an error\n"
            "  --mmap          map the index file instead of reading it\n"
            "  --metric M      with --index: only checked against the index's metric\n"
            "                  (fixed at build time; a different one is an error)\n"
            "  --exact         brute-force search of --base (exact, deterministic)\n"
            "  --base B        database vectors (.fvecs .bvecs .npy FILE.hdf5:train)\n"
            "  --query Q       query vectors (FILE.hdf5:test)\n"
            "  --metric M      with --exact: required unless an HDF5 input declares its\n"
            "                  'distance' (ann-benchmarks files do):\n",
            AVQ_DEFAULT_LEAVES_PERMILLE, AVQ_DEFAULT_PRE_REORDER, avq_default_threads());
    cli_metric_help(out, "                  ");
    fprintf(out,
            "  --k K           results per query (default %d)\n"
            "  --out R         result ids (.ivecs .npy FILE.hdf5:DATASET, default\n"
            "                  dataset 'neighbors'); required (or --scores): a search\n"
            "                  whose results go nowhere is refused (to time one, write\n"
            "                  them to a scratch file)\n"
            "  --scores S      also write the scores (.fvecs .npy FILE.hdf5:DATASET,\n"
            "                  default dataset 'distances')\n"
            "  --replace       let an HDF5 output replace an existing dataset (without it\n"
            "                  that is refused before the search).  An output is never\n"
            "                  one of the input files (.fvecs/.npy/.ivecs); a new\n"
            "                  dataset may go into an input HDF5 file\n"
            "Prints 'qps <queries per second>' on stdout (for scripts; a run shorter than\n"
            "%.1f s is too short to time well, and the summary on stderr says so).\n\n",
            SEARCH_DEFAULT_K, MIN_TIMED_SECONDS);
    fputs(tags_filter_help, out);
}

/* "1234.5 queries/s", or a note that the run was too short to time. */
static const char *rate_text(char *buf, size_t cap, size_t nq, double secs) {
    if (secs < MIN_TIMED_SECONDS)
        snprintf(buf, cap, "%.3f s: too short to time", secs);
    else
        snprintf(buf, cap, "%.1f queries/s", (double)nq / secs);
    return buf;
}

typedef struct {
    size_t k, leaves, pre_reorder;
    int threads, batch, use_mmap;
    const char *metric_name; /* --metric: checked against the index's */
    filter_options filter;
    size_t filter_min_scanned, filter_exact_below;
} index_settings;

/* Flags of every output write: an existing HDF5 dataset is kept (the
 * write refused) unless --replace. */
static unsigned out_flags;

static int write_results(const char *out_path, const char *scores_path, const int64_t *ids,
                         const float *scores, size_t rows, size_t k) {
    int st = out_path ? dataset_write_int64_flags(out_path, ids, rows, k, out_flags) : 0;
    if (!st && scores_path) st = dataset_write_float_flags(scores_path, scores, rows, k, out_flags);
    return st ? cli_fail("search", st) : 0;
}

/* Before any work: the outputs can be written, none is an input file (an
 * HDF5 input may receive a new dataset), and they do not collide. */
static int check_outputs(const char *out_path, const char *scores_path,
                         const char *const inputs[][2], size_t ninputs) {
    const char *outs[2][2] = {{"--out", out_path}, {"--scores", scores_path}};
    for (int o = 0; o < 2; o++) {
        const char *path = outs[o][1], *dset;
        if (!path) continue;
        int st = dataset_check_output(path, o == 0, out_flags);
        if (st) return cli_fail("search", st);
        bool h5 = dataset_hdf5_name(path, &dset);
        for (size_t i = 0; i < ninputs && !h5; i++)
            if (inputs[i][1] && dataset_same_file(path, inputs[i][1]))
                return cli_error("search", "%s %s is the file %s reads; refusing to overwrite an "
                                 "input: write the results elsewhere", outs[o][0], path,
                                 inputs[i][0]);
    }
    if (out_path && scores_path && dataset_same_file(out_path, scores_path)) {
        const char *d1, *d2;
        bool h5 = dataset_hdf5_name(out_path, &d1) && dataset_hdf5_name(scores_path, &d2);
        if (!h5 || (d1 && d2 && strcmp(d1, d2) == 0))
            return cli_error("search", "--out and --scores name the same %s", h5 ? "dataset" : "file");
    }
    return 0;
}

/* Search an index file: one query at a time (the latency protocol of
 * ann-benchmarks) unless --batch. */
static int search_index(const char *index_path, const char *query_path, const char *out_path,
                        const char *scores_path, const index_settings *set) {
    /* the filter first: a bad id or tag list is reported before a long load */
    avq_filter *filter = NULL;
    char filter_desc[96] = "";
    const char *const inputs[][2] = {{"--index", index_path}, {"--query", query_path},
                                     {"--allow-ids", set->filter.allow_ids},
                                     {"--deny-ids", set->filter.deny_ids}};
    int rc = check_outputs(out_path, scores_path, inputs, 4);
    if (rc) return rc;
    rc = filter_make("search", &set->filter, &filter, filter_desc, sizeof filter_desc);
    if (rc) return rc;
    avq_index *index = NULL;
    double t0 = cli_now();
    int st = avq_index_load(index_path, set->use_mmap ? AVQ_LOAD_MMAP : AVQ_LOAD_COPY, &index);
    if (st) {
        avq_filter_free(filter);
        return cli_fail("search", st);
    }
    double load_s = cli_now() - t0;
    float_matrix query;
    st = dataset_read_float(query_path, &query);
    if (st) {
        avq_filter_free(filter);
        avq_index_free(index);
        return cli_fail("search", st);
    }
    int64_t *ids = NULL;
    float *scores = NULL;
    if (query.cols != avq_index_dim(index)) {
        rc = cli_error("search", "dimension mismatch: index has %zu, %s has %zu", avq_index_dim(index),
                       query_path, query.cols);
        goto out;
    }
    char declared[64];
    int has_distance = dataset_distance(query_path, declared, sizeof declared);
    if (has_distance < 0) {
        rc = cli_fail("search", has_distance);
        goto out;
    }
    if (set->metric_name || has_distance) {
        /* --metric, or an ann-benchmarks query file's 'distance', must be
         * the index's: the metric is fixed when the index is built */
        avq_metric want, have = avq_index_metric(index);
        const char *const query_input[] = {query_path};
        rc = cli_resolve_metric("search", set->metric_name, query_input, 1, &want);
        if (!rc && want != have)
            rc = cli_error("search", "%s %s, but the index %s was built for %s (the metric is "
                                     "fixed at build time: drop --metric, or rebuild)",
                           set->metric_name ? "--metric asks for" : "the queries declare",
                           avq_metric_name(want), index_path, avq_metric_name(have));
        if (rc) goto out;
    }
    if (set->k > avq_index_size(index)) {
        rc = cli_error("search", "--k %zu is larger than the index (%zu vectors)", set->k,
                       avq_index_size(index));
        goto out;
    }
    avq_search_params sp;
    avq_search_params_init(&sp);
    avq_index_default_search_params(index, &sp);
    sp.k = set->k;
    if (set->leaves) sp.leaves_to_search = set->leaves;
    if (set->pre_reorder) sp.pre_reorder = set->pre_reorder;
    sp.filter = filter;
    /* the library clamps leaves_to_search to the leaves there are; say
     * what it searched */
    size_t leaves_used = sp.leaves_to_search;
    if (avq_index_num_leaves(index) > 0 && leaves_used > avq_index_num_leaves(index))
        leaves_used = avq_index_num_leaves(index);
    if (set->filter_min_scanned) sp.filter_min_scanned = set->filter_min_scanned;
    if (set->filter_exact_below) sp.filter_exact_below = set->filter_exact_below;
    ids = malloc(query.rows * sp.k * sizeof *ids);
    scores = malloc(query.rows * sp.k * sizeof *scores);
    if (!ids || !scores) {
        rc = cli_error("search", "out of memory for %zu x %zu results", query.rows, sp.k);
        goto out;
    }
    t0 = cli_now();
    if (set->batch) {
        st = avq_index_search_batch(index, query.data, query.rows, &sp, set->threads, ids, scores);
    } else {
        for (size_t q = 0; q < query.rows && st == AVQ_OK; q++)
            st = avq_index_search(index, query.data + q * query.cols, &sp, ids + q * sp.k,
                                  scores + q * sp.k);
    }
    double secs = cli_now() - t0;
    if (st) {
        rc = cli_fail("search", st);
        goto out;
    }
    rc = write_results(out_path, scores_path, ids, scores, query.rows, sp.k);
    if (!rc) {
        double qps = (double)query.rows / (secs > 0 ? secs : 1e-9);
        printf("qps %.1f\n", qps);
        char how[64], rate[64];
        int workers = set->threads > 0 ? set->threads : avq_default_threads();
        if (set->batch)
            snprintf(how, sizeof how, "batched over %d thread%s", workers, workers == 1 ? "" : "s");
        else
            snprintf(how, sizeof how, "one at a time on 1 thread");
        fprintf(stderr,
                "avq search: %zu queries, k=%zu, leaves_to_search=%zu, pre_reorder=%zu%s%s, "
                "%s: %s (load %.1f ms, SIMD %s)\n",
                query.rows, sp.k, leaves_used, sp.pre_reorder,
                filter ? ", filter " : "", filter_desc, how,
                rate_text(rate, sizeof rate, query.rows, secs), 1e3 * load_s, avq_isa());
    }
out:
    free(ids);
    free(scores);
    avq_filter_free(filter);
    float_matrix_free(&query);
    avq_index_free(index);
    return rc;
}

static int search_main(int exact, const char *index_path, const char *base_path,
                       const char *query_path, const char *out_path, const char *scores_path,
                       const char *metric_name, size_t k, long threads, int batch, int use_mmap,
                       size_t leaves, size_t pre_reorder, filter_options filter,
                       size_t min_scanned, size_t exact_below);

int cmd_search(int argc, char **argv) {
    static const struct option opts[] = {
        {"exact", no_argument, 0, 'x'},       {"base", required_argument, 0, 'b'},
        {"query", required_argument, 0, 'q'}, {"k", required_argument, 0, 'k'},
        {"metric", required_argument, 0, 'm'}, {"out", required_argument, 0, 'o'},
        {"scores", required_argument, 0, 's'}, {"threads", required_argument, 0, 't'},
        {"index", required_argument, 0, 'i'}, {"help", no_argument, 0, 'h'},
        {"leaves-to-search", required_argument, 0, 'L'}, {"reorder", required_argument, 0, 'R'},
        {"batch", no_argument, 0, 'B'}, {"mmap", no_argument, 0, 'M'},
        {"allow-ids", required_argument, 0, 'A'}, {"deny-ids", required_argument, 0, 'D'},
        {"tags-any", required_argument, 0, 'Y'}, {"tags-all", required_argument, 0, 'W'},
        {"filter-min-scanned", required_argument, 0, 'S'},
        {"filter-exact-below", required_argument, 0, 'E'},
        {"replace", no_argument, 0, 'P'},
        {0, 0, 0, 0}};
    const char *base_path = NULL, *query_path = NULL, *out_path = NULL, *metric_name = NULL,
               *scores_path = NULL, *index_path = NULL;
    size_t k = SEARCH_DEFAULT_K;
    long threads = 0;
    int exact = 0, batch = 0, use_mmap = 0, threads_given = 0, c;
    size_t leaves = 0, pre_reorder = 0, min_scanned = 0, exact_below = 0;
    filter_options filter = {0};
    /* the filter options in the order given, for the "exclude each other" message */
    const char *filter_names[4];
    int filters_given = 0;
    optind = 1;
    opterr = 0;
    out_flags = DATASET_KEEP_EXISTING;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'x': exact = 1; break;
        case 'P': out_flags &= ~DATASET_KEEP_EXISTING; break;
        case 'B': batch = 1; break;
        case 'M': use_mmap = 1; break;
        case 'L':
            if (!cli_parse_size(optarg, &leaves) || leaves == 0)
                return cli_usage_error("search", "--leaves-to-search must be a positive integer, got '%s'", optarg);
            break;
        case 'R':
            if (!cli_parse_size(optarg, &pre_reorder) || pre_reorder == 0)
                return cli_usage_error("search", "--reorder must be a positive integer, got '%s'", optarg);
            break;
        case 'A':
        case 'D':
        case 'Y':
        case 'W': {
            const char **slot = c == 'A' ? &filter.allow_ids : c == 'D' ? &filter.deny_ids
                              : c == 'Y' ? &filter.tags_any : &filter.tags_all;
            const char *name = c == 'A' ? "--allow-ids" : c == 'D' ? "--deny-ids"
                             : c == 'Y' ? "--tags-any" : "--tags-all";
            if (*slot) return cli_usage_error("search", "%s given twice", name);
            if (!*optarg) return cli_usage_error("search", "%s needs a value", name);
            *slot = optarg;
            filter_names[filters_given++] = name;
            break;
        }
        case 'S':
            if (!cli_parse_size(optarg, &min_scanned) || min_scanned == 0)
                return cli_usage_error("search", "--filter-min-scanned must be a positive integer, got '%s'", optarg);
            break;
        case 'E':
            if (!cli_parse_size(optarg, &exact_below) || exact_below == 0)
                return cli_usage_error("search", "--filter-exact-below must be a positive integer, got '%s'", optarg);
            break;
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
            threads_given = 1;
            break;
        case 'h': usage(stdout); return 0;
        default: return cli_bad_option("search", argv);
        }
    }
    if (optind < argc) return cli_usage_error("search", "unexpected argument '%s'", argv[optind]);
    if (index_path && exact) return cli_usage_error("search", "--exact and --index exclude each other");
    /* every option takes effect or is refused: those of the other mode */
    if (exact) {
        const char *index_only = use_mmap ? "--mmap" : batch ? "--batch" : leaves ? "--leaves-to-search"
                                 : pre_reorder ? "--reorder" : NULL;
        if (index_only)
            return cli_usage_error("search", "%s applies to --index searches, not --exact (brute "
                                             "force has no leaves, candidates or index file)",
                                   index_only);
    } else if (index_path) {
        if (base_path)
            return cli_usage_error("search", "--base applies to --exact; an --index search "
                                             "reads only the index");
        if (threads_given && !batch)
            return cli_usage_error("search", "--threads needs --batch: one query at a time runs "
                                             "on one thread (add --batch to use %ld)",
                                   threads);
    }
    if (filters_given > 1)
        return cli_usage_error("search", "%s and %s exclude each other: give at most one filter "
                                         "(--allow-ids, --deny-ids, --tags-any or --tags-all)",
                               filter_names[0], filter_names[1]);
    if ((min_scanned || exact_below) && !filters_given)
        return cli_usage_error("search", "%s applies only to a filtered search (give --allow-ids, "
                                         "--deny-ids, --tags-any or --tags-all)",
                               min_scanned ? "--filter-min-scanned" : "--filter-exact-below");
    if (!(out_flags & DATASET_KEEP_EXISTING)) {
        const char *dset;
        bool h5 = (out_path && dataset_hdf5_name(out_path, &dset)) ||
                  (scores_path && dataset_hdf5_name(scores_path, &dset));
        if (!h5)
            return cli_usage_error("search", "--replace applies to HDF5 outputs (an existing "
                                             "dataset); other output files are always replaced");
    }
    if (filters_given && !index_path)
        return cli_usage_error("search", "%s needs --index (filters apply to index searches)",
                               filter_names[0]);
    /* scores into HDF5 go to 'distances' (ann-benchmarks), not the float
     * default 'train' */
    char *scores_named = NULL;
    const char *scores_dset;
    if (scores_path && dataset_hdf5_name(scores_path, &scores_dset) && !scores_dset) {
        size_t len = strlen(scores_path) + sizeof ":distances";
        if (!(scores_named = malloc(len)))
            return cli_error("search", "out of memory");
        snprintf(scores_named, len, "%s:distances", scores_path);
        scores_path = scores_named;
    }
    int rc = search_main(exact, index_path, base_path, query_path, out_path, scores_path,
                         metric_name, k, threads, batch, use_mmap, leaves, pre_reorder,
                         filter, min_scanned, exact_below);
    free(scores_named);
    return rc;
}

/* A search whose results go nowhere is refused. */
static int need_output(const char *out_path, const char *scores_path) {
    if (out_path || scores_path) return 0;
    return cli_usage_error("search", "--out is required: where the result ids go (a search "
                                     "whose results go nowhere is refused; --scores alone is "
                                     "enough when only the scores are wanted)");
}

static int search_main(int exact, const char *index_path, const char *base_path,
                       const char *query_path, const char *out_path, const char *scores_path,
                       const char *metric_name, size_t k, long threads, int batch, int use_mmap,
                       size_t leaves, size_t pre_reorder, filter_options filter,
                       size_t min_scanned, size_t exact_below) {
    if (index_path) {
        if (!query_path) return cli_usage_error("search", "--index needs --query");
        if (need_output(out_path, scores_path)) return 2;
        index_settings set = {k, leaves, pre_reorder, (int)threads, batch, use_mmap, metric_name,
                              filter, min_scanned, exact_below};
        return search_index(index_path, query_path, out_path, scores_path, &set);
    }
    if (!exact) return cli_usage_error("search", "give --exact (brute force) or --index");
    if (!base_path || !query_path)
        return cli_usage_error("search", "--exact needs --base and --query");
    if (need_output(out_path, scores_path)) return 2;
    avq_metric metric;
    const char *const metric_inputs[] = {base_path, query_path};
    int mrc = cli_resolve_metric("search", metric_name, metric_inputs, 2, &metric);
    if (mrc) return mrc;

    const char *const inputs[][2] = {{"--base", base_path}, {"--query", query_path}};
    int rc = check_outputs(out_path, scores_path, inputs, 2);
    if (rc) return rc;
    float_matrix base, query;
    rc = cli_load_base_query("search", base_path, query_path, &base, &query);
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
        if (!rc) rc = write_results(out_path, scores_path, ids, scores, query.rows, k);
        if (!rc) {
            double qps = (double)query.rows / (secs > 0 ? secs : 1e-9);
            printf("qps %.1f\n", qps);
            int workers = threads > 0 ? (int)threads : avq_default_threads();
            char rate[64];
            fprintf(stderr, "avq search: exact %s, %zu queries, %d thread%s: %s\n",
                    avq_metric_name(metric), query.rows, workers, workers == 1 ? "" : "s",
                    rate_text(rate, sizeof rate, query.rows, secs));
        }
    }
    free(ids);
    free(scores);
out:
    float_matrix_free(&base);
    float_matrix_free(&query);
    return rc;
}
