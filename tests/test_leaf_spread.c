/*
 * test_leaf_spread.c -- leaf ranking by center score plus spread
 * (avq_build_params.leaf_spread_z, the dot-product default since 0.4).
 *
 * What must hold: the defaults per metric; bad weights refused; the search
 * override "off" gives exactly the index built without spreads (training is
 * otherwise unchanged); the ranking has an effect on raw-norm data; batched
 * and one-at-a-time searches agree; the spreads survive every save/load
 * path; a file of the format before 0.4 (shorter CONF, no LSPR) still loads
 * and ranks as before; a damaged LSPR section or a CONF that promises one
 * that is missing is refused.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "avq.h"
#include "../fuzz/avq_file.h" /* fuzz/ is not on the include path */

enum { N = 6000, D = 24, NQ = 60, LEAVES = 24 };

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform(uint64_t *s) { return (double)(splitmix(s) >> 11) * 0x1.0p-53; }

/* Clustered directions with log-normal norms spread over ~10x: the MIPS
 * case, where leaves of large-norm points are wide. */
static float *mips_rows(size_t n, uint64_t seed, double norm_sigma) {
    float *x = malloc(n * D * sizeof *x);
    cr_assert_not_null(x);
    for (size_t i = 0; i < n; i++) {
        size_t cluster = (size_t)(splitmix(&seed) % 16);
        double s2 = 0.0;
        for (size_t t = 0; t < D; t++) {
            double g = uniform(&seed) - 0.5 + (t % 16 == cluster ? 1.5 : 0.0);
            x[i * D + t] = (float)g;
            s2 += g * g;
        }
        double z = 0.0;
        for (int k = 0; k < 12; k++) z += uniform(&seed);
        double norm = exp(norm_sigma * (z - 6.0));
        for (size_t t = 0; t < D; t++) x[i * D + t] = (float)(x[i * D + t] * norm / sqrt(s2));
    }
    return x;
}

static avq_index *build(const float *x, avq_metric metric, float z) {
    avq_build_params p;
    avq_build_params_init(&p, metric);
    p.brute_force_below = 100;
    p.num_leaves = LEAVES;
    p.leaf_spread_z = z;
    p.threads = 1;
    avq_index *index = NULL;
    cr_assert_eq(avq_index_build(x, N, D, &p, &index), AVQ_OK, "%s", avq_last_error());
    return index;
}

/* Search every query one at a time with leaves L and override z. */
static void search_all(const avq_index *index, const float *q, size_t leaves, float z,
                       int64_t *ids, float *scores) {
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.leaves_to_search = leaves;
    sp.pre_reorder = 40;
    sp.leaf_spread_z = z;
    for (size_t i = 0; i < NQ; i++)
        cr_assert_eq(avq_index_search(index, q + i * D, &sp, ids + 10 * i, scores + 10 * i), AVQ_OK,
                     "%s", avq_last_error());
}

static void assert_same_answers(const avq_index *a, float za, const avq_index *b, float zb,
                                const float *q, const char *what) {
    int64_t ia[10 * NQ], ib[10 * NQ];
    float sa[10 * NQ], sb[10 * NQ];
    search_all(a, q, 4, za, ia, sa);
    search_all(b, q, 4, zb, ib, sb);
    cr_assert_arr_eq(ia, ib, sizeof ia, "%s: ids differ", what);
    cr_assert_arr_eq(sa, sb, sizeof sa, "%s: scores differ", what);
}

Test(leaf_spread, defaults_per_metric) {
    avq_build_params p;
    avq_build_params_init(&p, AVQ_METRIC_DOT);
    cr_assert_lt(p.leaf_spread_z, 0.0f, "dot: auto");
    cr_assert_gt(AVQ_DEFAULT_LEAF_SPREAD_Z, 0.0f);
    avq_build_params_init(&p, AVQ_METRIC_COSINE);
    cr_assert_eq(p.leaf_spread_z, 0.0f);
    avq_build_params_init(&p, AVQ_METRIC_L2);
    cr_assert_eq(p.leaf_spread_z, 0.0f);
}

Test(leaf_spread, bad_weights_are_refused) {
    float *x = mips_rows(N, 1, 0.5);
    avq_build_params p;
    avq_index *index = NULL;
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        avq_build_params_init(&p, AVQ_METRIC_DOT);
        p.leaf_spread_z = bad[k];
        cr_assert_eq(avq_index_build(x, N, D, &p, &index), AVQ_ERR_INVALID, "z = %g", (double)bad[k]);
        cr_assert_null(index);
        cr_assert_not_null(strstr(avq_last_error(), "leaf_spread_z"), "%s", avq_last_error());
    }
    avq_build_params_init(&p, AVQ_METRIC_L2);
    p.leaf_spread_z = 2.0f;
    cr_assert_eq(avq_index_build(x, N, D, &p, &index), AVQ_ERR_INVALID);
    cr_assert_not_null(strstr(avq_last_error(), "L2"), "%s", avq_last_error());
    /* a search weight on an index that keeps no spreads would do nothing */
    index = build(x, AVQ_METRIC_DOT, 0.0f);
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.leaf_spread_z = 2.0f;
    int64_t ids[10];
    cr_assert_eq(avq_index_search(index, x, &sp, ids, NULL), AVQ_ERR_INVALID);
    cr_assert_not_null(strstr(avq_last_error(), "no leaf spreads"), "%s", avq_last_error());
    sp.leaf_spread_z = NAN;
    cr_assert_eq(avq_index_search(index, x, &sp, ids, NULL), AVQ_ERR_INVALID);
    sp.leaf_spread_z = -1.0f; /* off: fine without spreads */
    cr_assert_eq(avq_index_search(index, x, &sp, ids, NULL), AVQ_OK, "%s", avq_last_error());
    avq_index_free(index);
    free(x);
}

/* The weight an index resolved to, and whether it saved spreads. */
static float stored_z(const avq_index *index) {
    avq_build_params p;
    avq_build_params_init(&p, AVQ_METRIC_DOT);
    avq_index_build_params(index, &p);
    return p.leaf_spread_z;
}

Test(leaf_spread, auto_follows_the_norms) {
    float *raw = mips_rows(N, 13, 0.5), *unit = mips_rows(N, 13, 0.0);
    avq_index *a = build(raw, AVQ_METRIC_DOT, -1.0f), *b = build(unit, AVQ_METRIC_DOT, -1.0f);
    cr_assert_float_eq(stored_z(a), AVQ_DEFAULT_LEAF_SPREAD_Z, 0.0f, "varied norms: on");
    cr_assert_eq(stored_z(b), 0.0f, "unit norms: off");
    /* ... so b keeps no spreads: a search weight is refused there */
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.leaf_spread_z = 1.0f;
    int64_t ids[10];
    cr_assert_eq(avq_index_search(a, unit, &sp, ids, NULL), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(avq_index_search(b, unit, &sp, ids, NULL), AVQ_ERR_INVALID);
    /* auto for cosine and L2 is off, not an error */
    avq_index *c = build(raw, AVQ_METRIC_COSINE, -1.0f), *l2 = build(raw, AVQ_METRIC_L2, -1.0f);
    cr_assert_eq(stored_z(c), 0.0f);
    cr_assert_eq(stored_z(l2), 0.0f);
    avq_index_free(a);
    avq_index_free(b);
    avq_index_free(c);
    avq_index_free(l2);
    free(raw);
    free(unit);
}

Test(leaf_spread, off_is_exactly_the_index_without_spreads) {
    float *x = mips_rows(N, 2, 0.7), *q = mips_rows(NQ, 3, 0.0);
    avq_index *with = build(x, AVQ_METRIC_DOT, 2.0f), *without = build(x, AVQ_METRIC_DOT, 0.0f);
    assert_same_answers(with, -1.0f, without, 0.0f, q, "z off vs built without");
    /* ... and the ranking changes what a 4-leaf search finds */
    int64_t ia[10 * NQ], ib[10 * NQ];
    float sa[10 * NQ], sb[10 * NQ];
    search_all(with, q, 2, 0.0f, ia, sa);
    search_all(without, q, 2, 0.0f, ib, sb);
    size_t differ = 0;
    for (size_t i = 0; i < NQ; i++) differ += memcmp(ia + 10 * i, ib + 10 * i, 10 * sizeof *ia) != 0;
    /* (a few: most queries' best leaves win either way; without the
     * spreads taking part none would change) */
    cr_assert_geq(differ, 3, "only %zu of %d queries changed: the spreads rank nothing", differ,
                 NQ);
    /* an explicit weight equal to the stored one is the default */
    assert_same_answers(with, 2.0f, with, 0.0f, q, "z = 2 vs the index's 2");
    avq_index_free(with);
    avq_index_free(without);
    free(x);
    free(q);
}

/* Recall@10 of 4-leaf searches against the exact answers. */
static double recall_at(const avq_index *index, const float *q, float z) {
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.leaves_to_search = LEAVES; /* all leaves: near exact with 400 */
    sp.pre_reorder = 400;
    int64_t truth[10 * NQ], got[10 * NQ];
    float scores[10 * NQ];
    for (size_t i = 0; i < NQ; i++)
        cr_assert_eq(avq_index_search(index, q + i * D, &sp, truth + 10 * i, NULL), AVQ_OK);
    search_all(index, q, 4, z, got, scores);
    size_t hit = 0;
    for (size_t i = 0; i < NQ; i++)
        for (size_t a = 0; a < 10; a++)
            for (size_t b = 0; b < 10; b++) hit += got[10 * i + a] == truth[10 * i + b];
    return (double)hit / (10.0 * NQ);
}

Test(leaf_spread, raises_recall_on_spread_norms) {
    /* wide norms (sigma 0.7: 1st to 99th percentile ~5x apart) */
    float *x = mips_rows(N, 4, 0.7), *q = mips_rows(NQ, 5, 0.0);
    avq_index *index = build(x, AVQ_METRIC_DOT, 2.0f);
    double on = recall_at(index, q, 0.0f), off = recall_at(index, q, -1.0f);
    cr_assert_gt(on, off, "recall with spreads %.3f, without %.3f", on, off);
    avq_index_free(index);
    free(x);
    free(q);
}

Test(leaf_spread, batch_equals_one_at_a_time) {
    float *x = mips_rows(N, 6, 0.5), *q = mips_rows(NQ, 7, 0.0);
    avq_index *index = build(x, AVQ_METRIC_DOT, 2.0f);
    int64_t one[10 * NQ], many[10 * NQ];
    float s1[10 * NQ], s2[10 * NQ];
    search_all(index, q, 4, 0.0f, one, s1);
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.leaves_to_search = 4;
    sp.pre_reorder = 40;
    cr_assert_eq(avq_index_search_batch(index, q, NQ, &sp, 2, many, s2), AVQ_OK, "%s",
                 avq_last_error());
    cr_assert_arr_eq(one, many, sizeof one);
    cr_assert_arr_eq(s1, s2, sizeof s1);
    avq_index_free(index);
    free(x);
    free(q);
}

static char dir[64], path[128];

static void make_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/avq-spread-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/x.avq", dir);
}

static void remove_dir(void) {
    unlink(path);
    rmdir(dir);
}

Test(leaf_spread, survives_every_save_and_load, .init = make_dir, .fini = remove_dir) {
    float *x = mips_rows(N, 8, 0.5), *q = mips_rows(NQ, 9, 0.0);
    avq_index *a = build(x, AVQ_METRIC_DOT, 1.5f);
    cr_assert_eq(avq_index_save(a, path), AVQ_OK, "%s", avq_last_error());
    const unsigned modes[] = {AVQ_LOAD_COPY, AVQ_LOAD_MMAP, AVQ_LOAD_MMAP | AVQ_LOAD_SKIP_CHECKSUMS};
    for (size_t m = 0; m < 3; m++) {
        avq_index *b = NULL;
        cr_assert_eq(avq_index_load(path, modes[m], &b), AVQ_OK, "%s", avq_last_error());
        avq_build_params p;
        avq_build_params_init(&p, AVQ_METRIC_DOT);
        avq_index_build_params(b, &p);
        cr_assert_float_eq(p.leaf_spread_z, 1.5f, 0.0f);
        assert_same_answers(a, 0.0f, b, 0.0f, q, "loaded");
        avq_index_free(b);
    }
    void *bytes = NULL;
    size_t size = 0;
    avq_index *c = NULL;
    cr_assert_eq(avq_index_save_bytes(a, &bytes, &size), AVQ_OK);
    cr_assert_eq(avq_index_load_bytes(bytes, size, &c), AVQ_OK, "%s", avq_last_error());
    assert_same_answers(a, 0.0f, c, 0.0f, q, "from bytes");
    avq_free(bytes);
    avq_index_free(c);
    /* a quantizer saved alone carries them to the shards made from it
     * (added rows go to their nearest leaf, not the training assignment:
     * compare with a shard of the in-memory quantizer) */
    avq_quantizer *qz = NULL;
    cr_assert_eq(avq_quantizer_save(avq_index_quantizer(a), path), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(avq_quantizer_load(path, &qz), AVQ_OK, "%s", avq_last_error());
    avq_index *shard = NULL, *ref = NULL;
    cr_assert_eq(avq_index_create(qz, &shard), AVQ_OK);
    cr_assert_eq(avq_index_create(avq_index_quantizer(a), &ref), AVQ_OK);
    cr_assert_eq(avq_index_add(shard, x, N, NULL, 1, NULL), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(avq_index_add(ref, x, N, NULL, 1, NULL), AVQ_OK, "%s", avq_last_error());
    assert_same_answers(ref, 0.0f, shard, 0.0f, q, "shard from the saved quantizer");
    avq_quantizer_free(qz);
    avq_index_free(shard);
    avq_index_free(ref);
    avq_index_free(a);
    free(x);
    free(q);
}

/* The saved image of a small dot index and its section table. */
typedef struct {
    uint8_t *data;
    size_t size, count;
    avqf_section secs[AVQF_MAX_SECTIONS];
} image;

static void image_of(const avq_index *index, image *img) {
    void *bytes = NULL;
    cr_assert_eq(avq_index_save_bytes(index, &bytes, &img->size), AVQ_OK);
    img->data = malloc(img->size);
    memcpy(img->data, bytes, img->size);
    avq_free(bytes);
    img->count = avqf_sections(img->data, img->size, img->secs, AVQF_MAX_SECTIONS);
    cr_assert_geq(img->count, 5);
}

/* The image rebuilt without section `drop` (a tag, 0 = none), with CONF
 * cut to conf_bytes (0 = as it is). */
static uint8_t *rebuilt(const image *img, uint32_t drop, size_t conf_bytes, size_t *size) {
    avqf_out out[AVQF_MAX_SECTIONS];
    size_t count = 0;
    for (size_t s = 0; s < img->count; s++) {
        if (img->secs[s].tag == drop) continue;
        size_t len = (size_t)img->secs[s].length;
        if (img->secs[s].tag == AVQF_TAG('C', 'O', 'N', 'F') && conf_bytes) len = conf_bytes;
        out[count++] = (avqf_out){img->secs[s].tag, img->secs[s].flags,
                                  img->data + img->secs[s].offset, len};
    }
    uint8_t *d = avqf_write(out, count, size);
    cr_assert_not_null(d);
    return d;
}

Test(leaf_spread, file_format) {
    float *x = mips_rows(N, 10, 0.5), *q = mips_rows(NQ, 11, 0.0);
    avq_index *a = build(x, AVQ_METRIC_DOT, 2.0f);
    image img;
    image_of(a, &img);
    const uint32_t LSPR = AVQF_TAG('L', 'S', 'P', 'R');
    int s = avqf_find(img.secs, img.count, LSPR);
    cr_assert_geq(s, 0, "a dot index saves its spreads");
    cr_assert_eq(img.secs[s].flags, 0u, "LSPR must be optional: readers before 0.4 skip it");
    cr_assert_eq(img.secs[s].length, LEAVES * sizeof(float));

    /* what avq 0.3 wrote: CONF of 24 slots, no LSPR -> the old ranking */
    size_t size = 0;
    uint8_t *old = rebuilt(&img, LSPR, 24 * 8, &size);
    avq_index *b = NULL;
    cr_assert_eq(avq_index_load_bytes(old, size, &b), AVQ_OK, "%s", avq_last_error());
    assert_same_answers(a, -1.0f, b, 0.0f, q, "a 0.3 file");
    avq_build_params p;
    avq_build_params_init(&p, AVQ_METRIC_DOT);
    avq_index_build_params(b, &p);
    cr_assert_eq(p.leaf_spread_z, 0.0f);
    avq_index_free(b);
    free(old);

    /* a CONF that asks for spreads, without them */
    uint8_t *missing = rebuilt(&img, LSPR, 0, &size);
    cr_assert_eq(avq_index_load_bytes(missing, size, &b), AVQ_ERR_FORMAT);
    cr_assert_not_null(strstr(avq_last_error(), "LSPR"), "%s", avq_last_error());
    free(missing);

    /* spreads that are not finite and >= 0 never reach the scores */
    const float bad[] = {-1.0f, NAN, INFINITY};
    for (size_t k = 0; k < 3; k++) {
        uint8_t *c = malloc(img.size);
        memcpy(c, img.data, img.size);
        memcpy(c + img.secs[s].offset + 4 * 3, &bad[k], 4);
        avqf_fix(c, img.size, AVQF_FIX_SECTION_CRC | AVQF_FIX_HEADER_CRC);
        cr_assert_eq(avq_index_load_bytes(c, img.size, &b), AVQ_ERR_FORMAT, "spread %g",
                     (double)bad[k]);
        cr_assert_not_null(strstr(avq_last_error(), "LSPR"), "%s", avq_last_error());
        free(c);
    }
    /* and a weight in CONF that is not a finite number >= 0 */
    int ci = avqf_find(img.secs, img.count, AVQF_TAG('C', 'O', 'N', 'F'));
    cr_assert_geq(ci, 0);
    cr_assert_geq(img.secs[ci].length, 25 * 8);
    uint8_t *c = malloc(img.size);
    memcpy(c, img.data, img.size);
    avqf_put64(c + img.secs[ci].offset + 24 * 8, 0xBF800000u /* -1.0f */);
    avqf_fix(c, img.size, AVQF_FIX_SECTION_CRC | AVQF_FIX_HEADER_CRC);
    cr_assert_eq(avq_index_load_bytes(c, img.size, &b), AVQ_ERR_FORMAT);
    free(c);
    free(img.data);
    avq_index_free(a);
    free(x);
    free(q);
}

Test(leaf_spread, cosine_and_l2_files_keep_none) {
    float *x = mips_rows(N, 12, 0.5);
    const avq_metric metrics[] = {AVQ_METRIC_COSINE, AVQ_METRIC_L2};
    for (size_t m = 0; m < 2; m++) {
        avq_index *a = build(x, metrics[m], 0.0f);
        image img;
        image_of(a, &img);
        cr_assert_lt(avqf_find(img.secs, img.count, AVQF_TAG('L', 'S', 'P', 'R')), 0);
        free(img.data);
        avq_index_free(a);
    }
    free(x);
}
