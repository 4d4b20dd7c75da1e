/*
 * living_common.h -- helpers shared by the tests of the living index
 * (test_living.c, test_living_io.c): data, parameters, result snapshots and
 * the checks every search result must pass.  Header-only (static
 * functions), written against include/avq.h alone, so that the tests say
 * what the public API promises and nothing about how src/ keeps it.
 *
 * Data: a fixed-seed mixture of Gaussian clusters, as in test_index.c (real
 * embeddings are clustered; uniform noise would make every method look
 * equally bad).
 *
 * (The Makefile's object rule does not list the headers in tests/: touch the .c files
 * after editing this one.)
 */
#ifndef AVQ_LIVING_COMMON_H
#define AVQ_LIVING_COMMON_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "avq.h"

/* ---- random numbers and data ---------------------------------------------- */

static inline uint64_t lv_rng(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline double lv_unit(uint64_t *s) { return (double)(lv_rng(s) >> 11) * 0x1.0p-53; }

/* n x dim points around 48 centers in [-1, 1]^dim. */
static inline float *lv_clustered(size_t n, size_t dim, uint64_t seed) {
    uint64_t rng = seed;
    size_t nc = 48;
    float *centers = malloc(nc * dim * sizeof *centers), *x = malloc(n * dim * sizeof *x);
    cr_assert(centers && x);
    for (size_t i = 0; i < nc * dim; i++) centers[i] = (float)(lv_unit(&rng) * 2 - 1);
    for (size_t i = 0; i < n; i++) {
        size_t c = lv_rng(&rng) % nc;
        for (size_t j = 0; j < dim; j++) {
            double g = lv_unit(&rng) + lv_unit(&rng) + lv_unit(&rng) - 1.5;
            x[i * dim + j] = centers[c * dim + j] + (float)(0.35 * g);
        }
    }
    free(centers);
    return x;
}

static inline void lv_normalize(float *x, size_t n, size_t dim) {
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (size_t j = 0; j < dim; j++) s += (double)x[i * dim + j] * x[i * dim + j];
        float inv = (float)(1.0 / sqrt(s));
        for (size_t j = 0; j < dim; j++) x[i * dim + j] *= inv;
    }
}

static inline float *lv_copy(const float *x, size_t count) {
    float *c = malloc(count * sizeof *c);
    cr_assert_not_null(c);
    memcpy(c, x, count * sizeof *c);
    return c;
}

/* ---- parameters ------------------------------------------------------------- */

/* leaves = 0 with brute_below > n gives the exact tier. */
static inline avq_build_params lv_params(avq_metric metric, int bits, avq_reorder reorder,
                                         size_t leaves, size_t brute_below) {
    avq_build_params p;
    avq_build_params_init(&p, metric);
    p.bits = bits;
    p.reorder = reorder;
    p.num_leaves = leaves;
    p.brute_force_below = brute_below;
    p.threads = 2;
    p.seed = 1234;
    return p;
}

static inline avq_index *lv_build(const float *x, size_t n, size_t dim, const avq_build_params *p) {
    avq_index *index = NULL;
    cr_assert_eq(avq_index_build(x, n, dim, p, &index), AVQ_OK, "build: %s", avq_last_error());
    cr_assert_not_null(index);
    return index;
}

/* Every leaf, and every scanned point re-ranked: with FLOAT reorder the
 * answer then depends on the stored vectors only. */
static inline avq_search_params lv_exhaustive(const avq_index *index, size_t k, size_t points) {
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.k = k;
    sp.leaves_to_search = avq_index_num_leaves(index);
    sp.pre_reorder = points > k ? points : k;
    return sp;
}

static inline avq_search_params lv_default(const avq_index *index, size_t k) {
    avq_search_params sp;
    avq_search_params_init(&sp);
    avq_index_default_search_params(index, &sp);
    sp.k = k;
    return sp;
}

static inline avq_index_stats lv_stats(const avq_index *index) {
    avq_index_stats st;
    memset(&st, 0, sizeof st);
    cr_assert_eq(avq_index_get_stats(index, &st), AVQ_OK, "stats: %s", avq_last_error());
    return st;
}

/* ---- results ---------------------------------------------------------------- */

/* One search of every query: nq x k ids and scores. */
typedef struct {
    size_t nq, k;
    int64_t *ids;
    float *scores;
} lv_results;

/* The checks every result row must pass, whatever the index holds: ids
 * valid or -1 only as a tail (then NaN scores), no id twice, scores in the
 * metric's order. */
static inline void lv_check_row(const int64_t *ids, const float *scores, size_t k,
                                avq_metric metric, const char *what, size_t q) {
    bool tail = false;
    for (size_t i = 0; i < k; i++) {
        if (ids[i] == AVQ_NO_ID) {
            tail = true;
            if (scores) cr_assert(isnan(scores[i]), "%s query %zu rank %zu: id -1 with score %g",
                                  what, q, i, (double)scores[i]);
            continue;
        }
        cr_assert(!tail, "%s query %zu: id %lld after a -1", what, q, (long long)ids[i]);
        for (size_t j = 0; j < i; j++)
            cr_assert_neq(ids[i], ids[j], "%s query %zu: id %lld at ranks %zu and %zu", what, q,
                          (long long)ids[i], j, i);
        if (scores && i > 0 && ids[i - 1] != AVQ_NO_ID) {
            bool ordered = metric == AVQ_METRIC_L2 ? scores[i] >= scores[i - 1]
                                                   : scores[i] <= scores[i - 1];
            cr_assert(ordered, "%s query %zu: scores out of order at rank %zu (%g, %g)", what, q,
                      i, (double)scores[i - 1], (double)scores[i]);
        }
    }
}

static inline lv_results lv_search(const avq_index *index, const float *queries, size_t nq,
                                   const avq_search_params *sp, const char *what) {
    lv_results r = {nq, sp->k, malloc(nq * sp->k * sizeof(int64_t)),
                    malloc(nq * sp->k * sizeof(float))};
    cr_assert(r.ids && r.scores);
    size_t dim = avq_index_dim(index);
    for (size_t q = 0; q < nq; q++) {
        int st = avq_index_search(index, queries + q * dim, sp, r.ids + q * r.k, r.scores + q * r.k);
        cr_assert_eq(st, AVQ_OK, "%s: search %zu: %s", what, q, avq_last_error());
        lv_check_row(r.ids + q * r.k, r.scores + q * r.k, r.k, avq_index_metric(index), what, q);
    }
    return r;
}

static inline void lv_results_free(lv_results *r) {
    free(r->ids);
    free(r->scores);
    r->ids = NULL;
    r->scores = NULL;
}

/* Identical ids and scores (bit for bit). */
static inline void lv_expect_same(const lv_results *a, const lv_results *b, const char *what) {
    cr_assert_eq(a->nq, b->nq);
    cr_assert_eq(a->k, b->k);
    for (size_t q = 0; q < a->nq; q++)
        for (size_t i = 0; i < a->k; i++) {
            size_t at = q * a->k + i;
            cr_assert_eq(a->ids[at], b->ids[at], "%s: query %zu rank %zu: id %lld vs %lld", what,
                         q, i, (long long)a->ids[at], (long long)b->ids[at]);
            cr_assert(memcmp(&a->scores[at], &b->scores[at], sizeof(float)) == 0 ||
                          (isnan(a->scores[at]) && isnan(b->scores[at])),
                      "%s: query %zu rank %zu: score %.9g vs %.9g", what, q, i,
                      (double)a->scores[at], (double)b->scores[at]);
        }
}

/* recall@k of `got` against `truth` (both nq x k). */
static inline double lv_recall(const int64_t *got, const int64_t *truth, size_t nq, size_t k) {
    size_t hits = 0;
    for (size_t q = 0; q < nq; q++)
        for (size_t i = 0; i < k; i++)
            for (size_t j = 0; j < k; j++) hits += got[q * k + i] == truth[q * k + j];
    return (double)hits / (double)(nq * k);
}

/* Exact top-k over the rows listed (ids[r] is row r's id), as ids. */
static inline int64_t *lv_truth(const float *rows, const int64_t *ids, size_t n, size_t dim,
                                const float *queries, size_t nq, avq_metric metric, size_t k) {
    int64_t *t = malloc(nq * k * sizeof *t);
    cr_assert_eq(avq_exact_search(rows, n, dim, queries, nq, metric, k, 2, t, NULL, NULL, NULL),
                 AVQ_OK, "%s", avq_last_error());
    for (size_t i = 0; i < nq * k; i++)
        if (t[i] >= 0) t[i] = ids ? ids[t[i]] : t[i];
    return t;
}

/* ---- files ------------------------------------------------------------------ */

static char lv_dir[64];

static inline const char *lv_tmpdir(void) {
    if (!lv_dir[0]) {
        snprintf(lv_dir, sizeof lv_dir, "/tmp/avq-living-XXXXXX");
        cr_assert_not_null(mkdtemp(lv_dir));
    }
    return lv_dir;
}

/* Remove the temporary directory and the files in it (call from .fini). */
static inline void lv_tmpdir_remove(void) {
    if (!lv_dir[0]) return;
    DIR *d = opendir(lv_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[400];
            snprintf(p, sizeof p, "%s/%s", lv_dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(lv_dir);
    lv_dir[0] = 0;
}

/* A path in this process's temporary directory (static buffer rotation:
 * up to 8 live at once). */
static inline const char *lv_path(const char *name) {
    static char paths[8][160];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 160, "%s/%s", lv_tmpdir(), name);
    return p;
}

static inline uint8_t *lv_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc((size_t)len + 1);
    cr_assert_eq(fread(data, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *size = (size_t)len;
    return data;
}

static inline void lv_write_file(const char *path, const void *data, size_t size) {
    unlink(path); /* a new inode: never rewrite a file that may be mapped */
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    cr_assert_eq(fwrite(data, 1, size, f), size);
    cr_assert_eq(fclose(f), 0);
}

/* The bytes avq_index_save_bytes gives (malloc'ed copy). */
static inline uint8_t *lv_bytes(const avq_index *index, size_t *size) {
    void *b = NULL;
    cr_assert_eq(avq_index_save_bytes(index, &b, size), AVQ_OK, "save_bytes: %s", avq_last_error());
    cr_assert_not_null(b);
    uint8_t *c = malloc(*size + 1);
    memcpy(c, b, *size);
    avq_free(b);
    return c;
}

#endif
