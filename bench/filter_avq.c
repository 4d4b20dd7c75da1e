/*
 * filter_avq.c -- the avq side of the filtered-search benchmark (bench/filter.py,
 * `make bench-filter`, issue 13), through the public API only.
 *
 *   filter_avq tag INDEX TAGS.csr OUT
 *       load INDEX (an `avq build` of the base, ids 0..n-1), give vector i the
 *       tags of row i of TAGS.csr with avq_index_set_tags, save to OUT; prints
 *       key=value lines (seconds, the index's tag statistics).
 *
 *   filter_avq search INDEX QUERY.fvecs FILTERS.csr GT.ivecs
 *                     [--settings L:R:S:E,...] [--k 10] [--repeat 1] [--all]
 *                     [--no-filter] [--nq N] [--saturate R] [--max-seconds S]
 *                     [--min-queries 200]
 *       query i is searched with filter tags_any(row i of FILTERS.csr) (--all:
 *       tags_all); one avq_index_search call per query on one thread.  Each
 *       setting is leaves_to_search : pre_reorder : filter_min_scanned :
 *       filter_exact_below (0 = the library's default, as in the struct).
 *       The filters are made before timing (one per distinct tag list).
 *       --no-filter: the same queries without a filter (the ground truth is
 *       then only used for its shape; recall is against it all the same).
 *       CSV on stdout:
 *         leaves,reorder,min_scanned,exact_below,recall,qps_wall,qps_cpu,nq,planned_exact
 *       planned_exact = share of the queries whose filter is known (by the
 *       index's tag counts: the sum over the listed tags, an upper bound of
 *       the allowed count for ANY) to allow at most exact_below vectors (0 =
 *       the index's default, avq_index_default_search_params) --
 *       the planner's rule as avq.h states it; the library does not report
 *       its choice per query.
 *
 * Times: the thread's CPU clock (CLOCK_THREAD_CPUTIME_ID, the headline on a
 * shared machine) and the wall clock, best of --repeat passes.
 * CSR files: 8 bytes "FLTCSR1\0", uint64 rows, uint64 nnz, uint64
 * offsets[rows + 1], uint32 values[nnz], little-endian (bench/filter.py).
 */
#include "avq.h"
#include "cmd_common.h"
#include "dataset.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what, const char *detail) {
    fprintf(stderr, "filter_avq: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

typedef struct {
    uint64_t rows, nnz;
    uint64_t *off;
    uint32_t *val;
} csr;

static csr read_csr(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open", path);
    char magic[8];
    csr c = {0};
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "FLTCSR1", 8) != 0 ||
        fread(&c.rows, 8, 1, f) != 1 || fread(&c.nnz, 8, 1, f) != 1)
        die("not a FLTCSR1 file", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    if (c.rows > (1ull << 32) || c.nnz > (1ull << 34) ||
        (uint64_t)size != 24 + 8 * (c.rows + 1) + 4 * c.nnz)
        die("size does not match the header", path);
    fseek(f, 24, SEEK_SET);
    c.off = malloc((c.rows + 1) * sizeof *c.off);
    c.val = malloc((c.nnz ? c.nnz : 1) * sizeof *c.val);
    if (!c.off || !c.val) die("out of memory", path);
    if (fread(c.off, 8, c.rows + 1, f) != c.rows + 1 ||
        (c.nnz && fread(c.val, 4, c.nnz, f) != c.nnz))
        die("truncated", path);
    fclose(f);
    if (c.off[0] != 0 || c.off[c.rows] != c.nnz) die("bad offsets", path);
    for (uint64_t i = 0; i < c.rows; i++)
        if (c.off[i] > c.off[i + 1]) die("offsets decrease", path);
    return c;
}

static int cmd_tag(int argc, char **argv) {
    if (argc != 5) die("usage: filter_avq tag INDEX TAGS.csr OUT", NULL);
    avq_index *idx = NULL;
    if (avq_index_load(argv[2], AVQ_LOAD_COPY, &idx) != AVQ_OK) die("load", avq_last_error());
    csr t = read_csr(argv[3]);
    size_t n = avq_index_size(idx);
    if (t.rows != n) die("the tag file does not have one row per indexed vector", argv[3]);
    int64_t *ids = malloc(n * sizeof *ids);
    size_t *off = malloc((n + 1) * sizeof *off);
    if (!ids || !off) die("out of memory", NULL);
    for (size_t i = 0; i < n; i++) ids[i] = (int64_t)i;
    for (size_t i = 0; i <= n; i++) off[i] = (size_t)t.off[i];
    double w0 = now(CLOCK_MONOTONIC);
    if (avq_index_set_tags(idx, ids, n, off, t.val) != AVQ_OK) die("set_tags", avq_last_error());
    double set_s = now(CLOCK_MONOTONIC) - w0;
    w0 = now(CLOCK_MONOTONIC);
    if (avq_index_save(idx, argv[4]) != AVQ_OK) die("save", avq_last_error());
    double save_s = now(CLOCK_MONOTONIC) - w0;
    avq_index_stats st;
    if (avq_index_get_stats(idx, &st) != AVQ_OK) die("stats", avq_last_error());
    printf("set_tags_s=%.3f\nsave_s=%.3f\nlive=%zu\ntagged=%zu\ntag_postings=%zu\n"
           "distinct_tags=%zu\nmemory_bytes=%zu\nleaves=%zu\n",
           set_s, save_s, st.live, st.tagged, st.tag_postings, st.distinct_tags, st.memory_bytes,
           st.leaves);
    avq_index_free(idx);
    free(ids);
    free(off);
    free(t.off);
    free(t.val);
    return 0;
}

static int cmd_search(int argc, char **argv) {
    if (argc < 6)
        die("usage: filter_avq search INDEX QUERY FILTERS.csr GT [--settings L:R:S:E,...] "
            "[--k 10] [--repeat 1] [--all] [--no-filter] [--nq N] [--saturate R] "
            "[--max-seconds S] [--min-queries N]", NULL);
    const char *settings = "0:0:0:0";
    size_t k = 10, nq_limit = 0;
    int repeat = 1, all = 0, nofilter = 0;
    double saturate = 0;  /* skip settings once a cheaper one of the family reached this recall */
    double max_seconds = 0;
    size_t min_queries = 200;
    enum { MAX_SAT = 256 };
    size_t sat_key[MAX_SAT][4];
    size_t nsat = 0;
    for (int i = 6; i < argc; i++) {
        if (!strcmp(argv[i], "--all")) all = 1;
        else if (!strcmp(argv[i], "--no-filter")) nofilter = 1;
        else if (i + 1 < argc && !strcmp(argv[i], "--settings")) settings = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--k")) k = strtoul(argv[++i], NULL, 10);
        else if (i + 1 < argc && !strcmp(argv[i], "--repeat")) repeat = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--nq")) nq_limit = strtoul(argv[++i], NULL, 10);
        else if (i + 1 < argc && !strcmp(argv[i], "--saturate")) saturate = atof(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--max-seconds")) max_seconds = atof(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--min-queries")) min_queries = strtoul(argv[++i], NULL, 10);
        else die("unknown option", argv[i]);
    }
    if (k == 0 || repeat < 1) die("bad --k or --repeat", NULL);
    avq_index *idx = NULL;
    if (avq_index_load(argv[2], AVQ_LOAD_MMAP | AVQ_LOAD_SKIP_CHECKSUMS, &idx) != AVQ_OK)
        die("load", avq_last_error());
    float_matrix query = {0};
    int_matrix gt = {0};
    if (dataset_read_float(argv[3], &query) != 0) die("read", avq_last_error());
    if (dataset_read_int(argv[5], &gt) != 0) die("read", avq_last_error());
    csr fl = read_csr(argv[4]);
    size_t nq = query.rows < gt.rows ? query.rows : gt.rows;
    if (nq_limit && nq_limit < nq) nq = nq_limit;
    if (fl.rows < nq) die("the filter file has fewer rows than the queries", argv[4]);
    if (k > gt.cols || query.cols != avq_index_dim(idx)) die("k or dimension does not match", NULL);

    /* one filter per distinct (consecutive) tag list, made before timing */
    avq_filter **filters = calloc(nq, sizeof *filters);
    size_t *known = calloc(nq, sizeof *known);  /* sum of the tag counts */
    if (!filters || !known) die("out of memory", NULL);
    for (size_t q = 0; q < nq; q++) {
        const uint32_t *t = fl.val + fl.off[q];
        size_t nt = (size_t)(fl.off[q + 1] - fl.off[q]);
        if (q > 0 && nt == fl.off[q] - fl.off[q - 1] && !memcmp(t, fl.val + fl.off[q - 1], nt * 4)) {
            filters[q] = filters[q - 1];
            known[q] = known[q - 1];
            continue;
        }
        int st = all ? avq_filter_tags_all(t, nt, &filters[q]) : avq_filter_tags_any(t, nt, &filters[q]);
        if (st != AVQ_OK) die("filter", avq_last_error());
        for (size_t j = 0; j < nt; j++) known[q] += avq_index_tag_count(idx, t[j]);
    }

    avq_search_params defaults;
    avq_search_params_init(&defaults);
    avq_index_default_search_params(idx, &defaults);
    int64_t *ids = malloc(nq * k * sizeof *ids);
    if (!ids) die("out of memory", NULL);
    printf("leaves,reorder,min_scanned,exact_below,recall,qps_wall,qps_cpu,nq,planned_exact\n");
    fflush(stdout);
    for (const char *s = settings; *s;) {
        char *end;
        avq_search_params sp;
        avq_search_params_init(&sp);
        sp.k = k;
        sp.leaves_to_search = strtoul(s, &end, 10);
        if (*end != ':') die("bad setting (L:R:S:E)", s);
        sp.pre_reorder = strtoul(end + 1, &end, 10);
        if (*end != ':') die("bad setting (L:R:S:E)", s);
        sp.filter_min_scanned = strtoul(end + 1, &end, 10);
        if (*end != ':') die("bad setting (L:R:S:E)", s);
        sp.filter_exact_below = strtoul(end + 1, &end, 10);
        if (*end && *end != ',') die("bad setting (L:R:S:E)", s);
        int skip = 0;
        for (size_t j = 0; j < nsat; j++)
            skip |= sat_key[j][0] <= sp.leaves_to_search && sat_key[j][1] <= sp.pre_reorder &&
                    sat_key[j][2] == sp.filter_min_scanned && sat_key[j][3] == sp.filter_exact_below;
        if (skip) {
            printf("%zu,%zu,%zu,%zu,-1,0,0,0,0\n", sp.leaves_to_search, sp.pre_reorder,
                   sp.filter_min_scanned, sp.filter_exact_below);
            s = *end == ',' ? end + 1 : end;
            continue;
        }
        size_t eb = sp.filter_exact_below ? sp.filter_exact_below : defaults.filter_exact_below;
        size_t planned = 0;
        for (size_t q = 0; q < nq; q++) planned += !nofilter && known[q] <= eb;
        double best_wall = 1e30, best_cpu = 1e30;
        size_t done = nq;   /* queries of this setting: a prefix when --max-seconds cut it */
        for (int r = 0; r < repeat; r++) {
            double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_THREAD_CPUTIME_ID);
            size_t q = 0;
            for (; q < done; q++) {
                sp.filter = nofilter ? NULL : filters[q];
                if (avq_index_search(idx, query.data + q * query.cols, &sp, ids + q * k, NULL) != AVQ_OK)
                    die("search", avq_last_error());
                if (r == 0 && max_seconds > 0 && q + 1 >= min_queries && q + 1 < nq &&
                    now(CLOCK_THREAD_CPUTIME_ID) - c0 > max_seconds) {
                    q++;
                    break;
                }
            }
            done = q;
            double c = now(CLOCK_THREAD_CPUTIME_ID) - c0, w = now(CLOCK_MONOTONIC) - w0;
            if (c < best_cpu) best_cpu = c;
            if (w < best_wall) best_wall = w;
        }
        planned = 0;
        for (size_t q = 0; q < done; q++) planned += !nofilter && known[q] <= eb;
        double recall = cli_recall_at_k(ids, done, k, gt.data, gt.cols);
        printf("%zu,%zu,%zu,%zu,%.4f,%.1f,%.1f,%zu,%.3f\n", sp.leaves_to_search, sp.pre_reorder,
               sp.filter_min_scanned, sp.filter_exact_below, recall, (double)done / best_wall,
               (double)done / best_cpu, done, (double)planned / (double)done);
        if (saturate > 0 && recall >= saturate && nsat < MAX_SAT) {
            sat_key[nsat][0] = sp.leaves_to_search;
            sat_key[nsat][1] = sp.pre_reorder;
            sat_key[nsat][2] = sp.filter_min_scanned;
            sat_key[nsat][3] = sp.filter_exact_below;
            nsat++;
        }
        fflush(stdout);
        s = *end == ',' ? end + 1 : end;
    }
    for (size_t q = 0; q < nq; q++)
        if (filters[q] && (q + 1 == nq || filters[q + 1] != filters[q])) avq_filter_free(filters[q]);
    free(filters);
    free(known);
    free(ids);
    free(fl.off);
    free(fl.val);
    float_matrix_free(&query);
    int_matrix_free(&gt);
    avq_index_free(idx);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        printf("usage: filter_avq tag INDEX TAGS.csr OUT\n"
               "       filter_avq search INDEX QUERY FILTERS.csr GT [--settings L:R:S:E,...]\n"
               "                  [--k 10] [--repeat 1] [--all] [--no-filter] [--nq N] [--saturate R]\n"
               "                  [--max-seconds S] [--min-queries 200]\n"
               "avq's side of bench/filter.py (filtered search with tags_any / tags_all).\n");
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "tag")) return cmd_tag(argc, argv);
    if (!strcmp(argv[1], "search")) return cmd_search(argc, argv);
    die("unknown command (tag, search)", argv[1]);
    return 2;
}
