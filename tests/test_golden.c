/*
 * test_golden.c -- index files written by avq 0.1.0 (format version 1) must
 * load, in every load mode, and give the same answers in every later
 * version.  The files and the rules are in tests/golden/ (README.md there):
 * they are never regenerated.
 *
 * Every NAME.avq in the directory is checked against NAME.queries.fvecs and
 * NAME.expected.txt; the v1 sets listed below must be present.  The
 * directory is tests/golden relative to the working directory (the
 * repository root under `make test`), or $AVQ_GOLDEN_DIR.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avq.h"

static const char *golden_dir(void) {
    const char *d = getenv("AVQ_GOLDEN_DIR");
    return d && d[0] ? d : "tests/golden";
}

static const char *const REQUIRED[] = {
    "golden_v1_l2_pq4_float",
    "golden_v1_cos_pq8_int8",
    "golden_v1_dot_brute",
};

typedef struct {
    size_t nq, dim, k;
    float *queries;   /* nq x dim */
    int64_t *ids;     /* nq x k   */
    float *scores;    /* nq x k   */
    size_t n, leaves;
    char metric[32];
} expectation;

static float *read_fvecs(const char *path, size_t *rows, size_t *dim) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    float *data = NULL;
    size_t n = 0;
    int32_t d;
    while (fread(&d, 4, 1, f) == 1) {
        cr_assert(d > 0 && d < 4096, "%s: bad dimension %d", path, (int)d);
        cr_assert(n == 0 || (size_t)d == *dim, "%s: ragged", path);
        *dim = (size_t)d;
        data = realloc(data, (n + 1) * (size_t)d * sizeof *data);
        cr_assert_eq(fread(data + n * (size_t)d, 4, (size_t)d, f), (size_t)d, "%s: truncated", path);
        n++;
    }
    fclose(f);
    cr_assert(n > 0, "%s: empty", path);
    *rows = n;
    return data;
}

static void read_expected(const char *path, expectation *e) {
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    char line[256];
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_assert_eq(sscanf(line, "# n %zu dim %*u metric %31s leaves %zu bits %*d dims_per_block %*d reorder %*d k %zu",
                        &e->n, e->metric, &e->leaves, &e->k), 4, "%s: bad header: %s", path, line);
    e->ids = malloc(e->nq * e->k * sizeof *e->ids);
    e->scores = malloc(e->nq * e->k * sizeof *e->scores);
    for (size_t q = 0; q < e->nq; q++) {
        int qq;
        cr_assert_not_null(fgets(line, sizeof line, f), "%s: query %zu missing", path, q);
        cr_assert(sscanf(line, "query %d", &qq) == 1 && (size_t)qq == q, "%s: %s", path, line);
        for (size_t r = 0; r < e->k; r++) {
            int rank;
            long long id;
            double score;
            cr_assert_not_null(fgets(line, sizeof line, f));
            cr_assert_eq(sscanf(line, "%d %lld %lf", &rank, &id, &score), 3, "%s: %s", path, line);
            cr_assert_eq((size_t)rank, r);
            e->ids[q * e->k + r] = id;
            e->scores[q * e->k + r] = (float)score;
        }
    }
    fclose(f);
}

static void check_set(const char *dir, const char *name) {
    char path[512], qpath[512], epath[512];
    snprintf(path, sizeof path, "%s/%s.avq", dir, name);
    snprintf(qpath, sizeof qpath, "%s/%s.queries.fvecs", dir, name);
    snprintf(epath, sizeof epath, "%s/%s.expected.txt", dir, name);
    expectation e = {0};
    e.queries = read_fvecs(qpath, &e.nq, &e.dim);
    read_expected(epath, &e);

    static const unsigned modes[] = {AVQ_LOAD_COPY, AVQ_LOAD_MMAP,
                                     AVQ_LOAD_MMAP | AVQ_LOAD_SKIP_CHECKSUMS};
    for (size_t m = 0; m < 3; m++) {
        avq_index *index = NULL;
        int st = avq_index_load(path, modes[m], &index);
        cr_assert_eq(st, AVQ_OK, "%s (mode %u): %s", path, modes[m], avq_last_error());
        cr_assert_eq(avq_index_size(index), e.n, "%s", name);
        cr_assert_eq(avq_index_dim(index), e.dim, "%s", name);
        cr_assert_eq(avq_index_num_leaves(index), e.leaves, "%s", name);
        cr_assert_str_eq(avq_metric_name(avq_index_metric(index)), e.metric, "%s", name);
        avq_search_params sp;
        avq_search_params_init(&sp);
        sp.k = e.k;
        sp.leaves_to_search = e.leaves;
        sp.pre_reorder = e.n;
        int64_t ids[64];
        float scores[64];
        cr_assert(e.k <= 64);
        for (size_t q = 0; q < e.nq; q++) {
            cr_assert_eq(avq_index_search(index, e.queries + q * e.dim, &sp, ids, scores), AVQ_OK,
                         "%s: %s", name, avq_last_error());
            for (size_t r = 0; r < e.k; r++) {
                int64_t want = e.ids[q * e.k + r];
                float ws = e.scores[q * e.k + r];
                cr_expect_eq(ids[r], want, "%s mode %u query %zu rank %zu: id %lld, expected %lld",
                             name, modes[m], q, r, (long long)ids[r], (long long)want);
                cr_expect(fabsf(scores[r] - ws) <= 1e-5f * fmaxf(1.0f, fabsf(ws)),
                          "%s mode %u query %zu rank %zu: score %.9g, expected %.9g", name,
                          modes[m], q, r, (double)scores[r], (double)ws);
            }
            /* the default (approximate) parameters must work too.  dp must
             * come from avq_search_params_init: the library keeps its
             * struct_size, and an uninitialised one (whatever the stack held:
             * 21 under the criterion shim, on x86-64 and under qemu-aarch64)
             * made the search refuse the struct. */
            avq_search_params dp;
            avq_search_params_init(&dp);
            avq_index_default_search_params(index, &dp);
            cr_assert_eq(avq_index_search(index, e.queries + q * e.dim, &dp, ids, scores), AVQ_OK,
                         "%s mode %u query %zu, default parameters: %s", name, modes[m], q,
                         avq_last_error());
        }
        avq_index_free(index);
    }
    free(e.queries);
    free(e.ids);
    free(e.scores);
}

Test(golden, v1_files_are_present) {
    const char *dir = golden_dir();
    for (size_t i = 0; i < sizeof REQUIRED / sizeof REQUIRED[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s.avq", dir, REQUIRED[i]);
        FILE *f = fopen(path, "rb");
        cr_assert_not_null(f, "golden file %s is missing (run the tests from the repository root "
                              "or set AVQ_GOLDEN_DIR)", path);
        fclose(f);
    }
}

Test(golden, every_golden_file_loads_and_answers_as_recorded, .timeout = 60) {
    const char *dir = golden_dir();
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);
    size_t checked = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        size_t len = strlen(ent->d_name);
        if (len <= 4 || strcmp(ent->d_name + len - 4, ".avq") != 0) continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(len - 4), ent->d_name);
        check_set(dir, name);
        checked++;
    }
    closedir(d);
    cr_assert_geq(checked, sizeof REQUIRED / sizeof REQUIRED[0]);
}
