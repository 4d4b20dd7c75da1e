/*
 * make_golden.c -- writes the golden index files of tests/golden/ ONCE.
 *
 * DO NOT RERUN to "update" the files: their whole point is that they were
 * written by an old version of avq and must still load and give the same
 * answers in every later version (tests/test_golden.c).  If the format
 * version changes, add a new set under a new name (golden_v2_...) and keep
 * the old ones.  The program refuses to overwrite an existing file.
 *
 * Build and run (from the repository root, after `make`):
 *   cc -std=c11 -D_GNU_SOURCE -Iinclude tests/golden/make_golden.c build/libavq.a \
 *      -lopenblas -lpthread -lm -o /tmp/make_golden && /tmp/make_golden tests/golden
 *
 * For each configuration it writes
 *   NAME.avq            the index (avq_index_save)
 *   NAME.queries.fvecs  the queries (TEXMEX: int32 dim, then dim float32)
 *   NAME.expected.txt   for each query the top-k ids and scores (%.9g)
 * The expected results are those of a search over every leaf with every
 * point re-ranked (leaves_to_search = leaves, pre_reorder = n), so they
 * depend on the stored data only, not on the search heuristics of a version.
 */
#include "avq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { NQ = 6, K = 5 };

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float rng_sym(uint64_t *s) { return (float)((double)(rng_next(s) >> 11) * 0x1.0p-52 - 1.0); }

static void die(const char *what) {
    fprintf(stderr, "make_golden: %s: %s\n", what, avq_last_error());
    exit(1);
}

static void refuse_existing(const char *path) {
    struct stat sb;
    if (stat(path, &sb) == 0) {
        fprintf(stderr, "make_golden: %s exists: golden files are never regenerated "
                        "(see tests/golden/README.md)\n", path);
        exit(1);
    }
}

typedef struct {
    const char *name;
    avq_metric metric;
    size_t n, dim, leaves;
    int bits, dpb;
    avq_reorder reorder;
    uint64_t seed;
} golden;

static void make(const char *dir, const golden *g) {
    char idx_path[512], q_path[512], e_path[512];
    snprintf(idx_path, sizeof idx_path, "%s/%s.avq", dir, g->name);
    snprintf(q_path, sizeof q_path, "%s/%s.queries.fvecs", dir, g->name);
    snprintf(e_path, sizeof e_path, "%s/%s.expected.txt", dir, g->name);
    refuse_existing(idx_path);
    refuse_existing(q_path);
    refuse_existing(e_path);

    uint64_t rng = g->seed;
    float *x = malloc(g->n * g->dim * sizeof *x), *q = malloc(NQ * g->dim * sizeof *q);
    float centers[4][64];
    for (int c = 0; c < 4; c++)
        for (size_t j = 0; j < g->dim; j++) centers[c][j] = rng_sym(&rng);
    for (size_t i = 0; i < g->n; i++)
        for (size_t j = 0; j < g->dim; j++)
            x[i * g->dim + j] = centers[i % 4][j] + 0.4f * rng_sym(&rng);
    for (size_t i = 0; i < NQ * g->dim; i++) q[i] = rng_sym(&rng);

    avq_build_params p;
    avq_build_params_init(&p, g->metric);
    p.num_leaves = g->leaves;
    p.bits = g->bits;
    p.dims_per_block = g->dpb;
    p.reorder = g->reorder;
    p.brute_force_below = g->leaves == 0 ? 20000 : 1; /* leaves 0: the exact tier */
    p.threads = 1;
    p.seed = g->seed;
    avq_index *built = NULL, *loaded = NULL;
    if (avq_index_build(x, g->n, g->dim, &p, &built) != AVQ_OK) die("build");
    if (avq_index_save(built, idx_path) != AVQ_OK) die("save");
    if (avq_index_load(idx_path, AVQ_LOAD_COPY, &loaded) != AVQ_OK) die("load");

    FILE *qf = fopen(q_path, "wb"), *ef = fopen(e_path, "w");
    if (!qf || !ef) die("open output");
    fprintf(ef, "# %s: avq %s, format version 1; per query: rank id score\n", g->name,
            avq_version());
    fprintf(ef, "# n %zu dim %zu metric %s leaves %zu bits %d dims_per_block %d reorder %d k %d\n",
            avq_index_size(loaded), avq_index_dim(loaded),
            avq_metric_name(avq_index_metric(loaded)), avq_index_num_leaves(loaded), g->bits,
            g->dpb, (int)g->reorder, K);
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.k = K;
    sp.leaves_to_search = avq_index_num_leaves(loaded);
    sp.pre_reorder = g->n;
    for (int i = 0; i < NQ; i++) {
        int32_t d = (int32_t)g->dim;
        fwrite(&d, 4, 1, qf);
        fwrite(q + i * g->dim, 4, g->dim, qf);
        int64_t ids[K], ids2[K];
        float scores[K], scores2[K];
        if (avq_index_search(loaded, q + i * g->dim, &sp, ids, scores) != AVQ_OK) die("search");
        if (avq_index_search(built, q + i * g->dim, &sp, ids2, scores2) != AVQ_OK) die("search");
        if (memcmp(ids, ids2, sizeof ids) || memcmp(scores, scores2, sizeof scores)) {
            fprintf(stderr, "make_golden: loaded and built index disagree\n");
            exit(1);
        }
        fprintf(ef, "query %d\n", i);
        for (int r = 0; r < K; r++) fprintf(ef, "%d %lld %.9g\n", r, (long long)ids[r], (double)scores[r]);
    }
    if (fclose(qf) != 0 || fclose(ef) != 0) die("write");
    avq_index_free(built);
    avq_index_free(loaded);
    free(x);
    free(q);
    printf("wrote %s, %s, %s\n", idx_path, q_path, e_path);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_golden DIR\n");
        return 2;
    }
    static const golden sets[] = {
        {"golden_v1_l2_pq4_float", AVQ_METRIC_L2, 120, 6, 3, 4, 2, AVQ_REORDER_FLOAT, 20240601},
        {"golden_v1_cos_pq8_int8", AVQ_METRIC_COSINE, 256, 4, 2, 8, 2, AVQ_REORDER_INT8, 20240602},
        {"golden_v1_dot_brute", AVQ_METRIC_DOT, 40, 5, 0, 4, 2, AVQ_REORDER_FLOAT, 20240603},
    };
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) make(argv[1], &sets[i]);
    return 0;
}
