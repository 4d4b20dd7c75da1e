/*
 * test_centers.c -- the int8 center sketch (src/centers.c) and the leaf
 * selection through it (src/search.c, select_leaves_sketched).
 *
 * Three claims are checked:
 *   1. every ISA's sketch_dots kernel returns exactly the integer inner
 *      products of the query's codes with the centers' codes (computed here
 *      from the layout documented in centers.h, not through a kernel), over
 *      block counts that exercise the four-block loop and its tail, and
 *      dimensions that are not multiples of 4, with codes at +-127;
 *   2. the sketch's bound holds: |tau <qc, code_l> - <q, c_l>| <= dot_bound
 *      for every center, with <q, c_l> from each ISA's float kernel, for
 *      queries and centers of very different scales and an all-zero
 *      dimension;
 *   3. a search through the sketch chooses exactly the leaves of the float
 *      selection: every candidate (id, leaf, approx bits -- the approx
 *      carries the leaf's bias) and every result is the same with the
 *      sketch and with it taken away, for every metric, with leaf spreads,
 *      with exactly tied centers, one query per call and batched.
 */
#include <criterion/criterion.h>

#include "living_common.h"

#include "avq_internal.h"
#include "centers.h"
#include "cpu.h"
#include "index.h"
#include "scan.h"

static const char *const ISAS[] = {"scalar", "avx2", "avx512", "neon"};
enum { N_ISAS = 4 };

static float *random_rows(size_t n, size_t d, double scale, uint64_t seed) {
    float *x = malloc(n * d * sizeof *x);
    cr_assert_not_null(x);
    for (size_t i = 0; i < n * d; i++) x[i] = (float)((lv_unit(&seed) * 2 - 1) * scale);
    return x;
}

/* Code of center l, dimension j, read straight from the documented layout. */
static int code_at(const avq_center_sketch *s, size_t l, size_t j) {
    size_t b = l / AVQ_SKETCH_BLOCK, i = l % AVQ_SKETCH_BLOCK, groups = s->dim4 / 4;
    return s->codes[64 * (b * groups + j / 4) + 4 * i + j % 4];
}

Test(centers, kernels_equal_the_integer_products) {
    static const size_t Ls[] = {64, 70, 129, 200, 257};
    static const size_t ds[] = {1, 3, 4, 5, 17, 100, 131};
    uint64_t seed = 31;
    for (size_t a = 0; a < sizeof Ls / sizeof *Ls; a++)
        for (size_t b = 0; b < sizeof ds / sizeof *ds; b++) {
            size_t L = Ls[a], d = ds[b];
            float *c = random_rows(L, d, 1.0, seed++);
            /* one center at the extreme of every dimension, with signs: the
             * codes reach +-127 */
            for (size_t j = 0; j < d; j++) c[5 * d + j] = j % 2 ? -1.0f : 1.0f;
            avq_center_sketch *s = NULL;
            cr_assert_eq(avq_center_sketch_make(c, NULL, L, d, &s), AVQ_OK);
            cr_assert_not_null(s);
            cr_assert_eq(code_at(s, 5, 0), 127);
            if (d > 1) cr_assert_eq(code_at(s, 5, 1), -127);
            float *q = random_rows(1, d, 3.0, seed++);
            int8_t *qc = calloc(s->dim4, 1);
            int8_t *extreme = calloc(s->dim4, 1);
            size_t padded = 16 * s->blocks;
            int32_t *want = malloc(padded * sizeof *want), *got = malloc(padded * sizeof *got);
            cr_assert(qc && extreme && want && got);
            avq_sketch_query sq;
            avq_center_sketch_query(s, q, qc, &sq);
            for (size_t j = 0; j < d; j++) extreme[j] = j % 3 ? 127 : -127;
            for (int pass = 0; pass < 2; pass++) {
                const int8_t *query = pass ? extreme : qc;
                for (size_t l = 0; l < padded; l++) {
                    int32_t sum = 0;
                    for (size_t j = 0; l < L && j < d; j++) sum += query[j] * code_at(s, l, j);
                    want[l] = sum;
                }
                for (int i = 0; i < N_ISAS; i++) {
                    const avq_kernels *k = avq_kernels_for(ISAS[i]);
                    if (!k) continue;
                    memset(got, 0x55, padded * sizeof *got);
                    k->sketch_dots(query, s->codes, s->code_sums, s->blocks, s->dim4, got);
                    for (size_t l = 0; l < padded; l++)
                        cr_assert_eq(got[l], want[l], "%s L=%zu d=%zu pass %d center %zu: %d vs %d",
                                     ISAS[i], L, d, pass, l, got[l], want[l]);
                }
            }
            free(want);
            free(got);
            free(qc);
            free(extreme);
            free(q);
            free(c);
            avq_center_sketch_free(s);
        }
}

Test(centers, few_centers_or_huge_dimensions_get_no_sketch) {
    float c[63 * 2] = {0};
    avq_center_sketch *s = (avq_center_sketch *)1;
    cr_assert_eq(avq_center_sketch_make(c, NULL, 63, 2, &s), AVQ_OK);
    cr_assert_null(s);
    cr_assert_eq(avq_center_sketch_bytes(NULL), 0);
    avq_center_sketch_free(NULL);
}

Test(centers, the_bound_holds) {
    size_t L = 150;
    static const size_t ds[] = {2, 7, 100, 300};
    static const double scales[] = {1e-3, 1.0, 1e3};
    uint64_t seed = 77;
    for (size_t a = 0; a < sizeof ds / sizeof *ds; a++) {
        size_t d = ds[a];
        float *c = random_rows(L, d, 1.0, seed++);
        for (size_t l = 0; l < L; l++) c[l * d] = 0.0f;     /* an all-zero dimension */
        for (size_t j = 1; j < d; j++) c[3 * d + j] *= 1e-4f; /* a tiny center */
        c[7 * d + d - 1] = 40.0f;                             /* one large coordinate */
        avq_center_sketch *s = NULL;
        cr_assert_eq(avq_center_sketch_make(c, NULL, L, d, &s), AVQ_OK);
        cr_assert_not_null(s);
        int8_t *qc = calloc(s->dim4, 1);
        int32_t *dots = malloc(16 * s->blocks * sizeof *dots);
        float *exact = malloc(L * sizeof *exact);
        cr_assert(qc && dots && exact);
        for (size_t b = 0; b < sizeof scales / sizeof *scales; b++)
            for (int trial = 0; trial < 20; trial++) {
                float *q = random_rows(1, d, scales[b], seed++);
                if (trial % 4 == 1) q[d - 1] *= 1000.0f; /* one dominant coordinate */
                avq_sketch_query sq;
                avq_center_sketch_query(s, q, qc, &sq);
                cr_assert(sq.tau > 0.0 && sq.dot_bound > 0.0);
                for (int i = 0; i < N_ISAS; i++) {
                    const avq_kernels *k = avq_kernels_for(ISAS[i]);
                    if (!k) continue;
                    k->sketch_dots(qc, s->codes, s->code_sums, s->blocks, s->dim4, dots);
                    k->dot_rows(q, c, L, d, exact);
                    for (size_t l = 0; l < L; l++) {
                        double err = fabs(sq.tau * dots[l] - (double)exact[l]);
                        cr_assert(err <= sq.dot_bound,
                                  "%s d=%zu scale %g center %zu: error %g > %g", ISAS[i], d,
                                  scales[b], l, err, sq.dot_bound);
                    }
                }
                free(q);
            }
        /* a zero query has nothing to scale: tau 0, codes 0 */
        float *zero = calloc(d, sizeof *zero);
        avq_sketch_query sq;
        avq_center_sketch_query(s, zero, qc, &sq);
        cr_assert_eq(sq.tau, 0.0);
        for (size_t j = 0; j < s->dim4; j++) cr_assert_eq(qc[j], 0);
        free(zero);
        free(qc);
        free(dots);
        free(exact);
        free(c);
        avq_center_sketch_free(s);
    }
}

/* ---- selection ------------------------------------------------------------ */

enum { N = 12000, DIM = 20, LEAVES = 100, NQ = 50, K = 10, PRE = 40 };

static int by_leaf_approx_id(const void *pa, const void *pb) {
    const avq_candidate *a = pa, *b = pb;
    if (a->leaf != b->leaf) return a->leaf < b->leaf ? -1 : 1;
    if (a->approx != b->approx) return a->approx < b->approx ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* Every query's candidates, sorted, and its results: the whole observable
 * outcome of the leaves a search chose and the biases it gave them. */
typedef struct {
    avq_candidate *cand;
    size_t counts[NQ], width;
    lv_results res;
} outcome;

static outcome search_all(const avq_index *index, const float *queries, size_t leaves,
                          size_t batch) {
    outcome o;
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.k = K;
    sp.leaves_to_search = leaves;
    sp.pre_reorder = PRE;
    cr_assert_eq(avq_index_candidate_count(index, &sp, &o.width), AVQ_OK, "%s", avq_last_error());
    o.cand = calloc(NQ * o.width, sizeof *o.cand);
    float offsets[NQ];
    cr_assert_not_null(o.cand);
    for (size_t q = 0; q < NQ; q += batch) {
        size_t m = NQ - q < batch ? NQ - q : batch;
        int st = avq_index_search_candidates(index, queries + q * DIM, m, &sp, NULL, 1,
                                             o.cand + q * o.width, o.counts + q, offsets + q);
        cr_assert_eq(st, AVQ_OK, "%s", avq_last_error());
    }
    for (size_t q = 0; q < NQ; q++)
        qsort(o.cand + q * o.width, o.counts[q], sizeof *o.cand, by_leaf_approx_id);
    o.res = lv_search(index, queries, NQ, &sp, "search");
    return o;
}

static void expect_same_outcome(const outcome *a, const outcome *b, const char *what) {
    cr_assert_eq(a->width, b->width);
    for (size_t q = 0; q < NQ; q++) {
        cr_assert_eq(a->counts[q], b->counts[q], "%s query %zu: %zu vs %zu candidates", what, q,
                     a->counts[q], b->counts[q]);
        for (size_t i = 0; i < a->counts[q]; i++) {
            const avq_candidate *x = &a->cand[q * a->width + i], *y = &b->cand[q * b->width + i];
            cr_assert(x->id == y->id && x->leaf == y->leaf &&
                          memcmp(&x->approx, &y->approx, sizeof x->approx) == 0,
                      "%s query %zu candidate %zu: (id %lld, leaf %u, %.9g) vs (%lld, %u, %.9g)",
                      what, q, i, (long long)x->id, x->leaf, (double)x->approx, (long long)y->id,
                      y->leaf, (double)y->approx);
        }
    }
    lv_expect_same(&a->res, &b->res, what);
}

static void outcome_free(outcome *o) {
    free(o->cand);
    lv_results_free(&o->res);
}

/* An index of LEAVES leaves whose first `tied` centers are made identical
 * (copies of center 0) before any vector is added: their leaves then tie
 * exactly in every query's ranking. */
static avq_index *selection_index(avq_metric metric, float spread_z, size_t tied,
                                  const float *x) {
    avq_build_params p = lv_params(metric, 4, AVQ_REORDER_FLOAT, LEAVES, 100);
    if (spread_z > 0.0f) p.leaf_spread_z = spread_z;
    avq_quantizer *qz = NULL;
    cr_assert_eq(avq_quantizer_train(x, N, DIM, &p, &qz), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(avq_quantizer_num_leaves(qz), LEAVES);
    cr_assert_not_null(qz->sketch);
    for (size_t l = 1; l < tied; l++) {
        memcpy(qz->centers + l * DIM, qz->centers, DIM * sizeof(float));
        qz->center_norms[l] = qz->center_norms[0];
        if (qz->leaf_spread) qz->leaf_spread[l] = qz->leaf_spread[0];
    }
    if (tied > 1) cr_assert_eq(avq_quantizer_make_sketch(qz), AVQ_OK);
    avq_index *index = NULL;
    cr_assert_eq(avq_index_create(qz, &index), AVQ_OK, "%s", avq_last_error());
    avq_quantizer_free(qz);
    cr_assert_eq(avq_index_add(index, x, N, NULL, 2, NULL), AVQ_OK, "%s", avq_last_error());
    return index;
}

static void expect_sketch_changes_nothing(avq_metric metric, float spread_z, size_t tied) {
    float *x = lv_clustered(N, DIM, 4242);
    if (metric == AVQ_METRIC_COSINE) lv_normalize(x, N, DIM);
    avq_index *index = selection_index(metric, spread_z, tied, x);
    cr_assert_eq(index->q->leaf_spread != NULL, spread_z > 0.0f);
    /* fresh queries, and copies of the tied center (every tied leaf then
     * ranks first, by id) */
    float *queries = lv_clustered(NQ, DIM, 4343);
    for (size_t q = 0; q < NQ; q += 5) memcpy(queries + q * DIM, index->q->centers, DIM * 4);
    if (metric == AVQ_METRIC_COSINE) lv_normalize(queries, NQ, DIM);
    static const size_t leaves[] = {1, 3, 8, 25}; /* the sketch serves up to L / 4 */
    for (size_t a = 0; a < sizeof leaves / sizeof *leaves; a++)
        for (size_t batch = 1; batch <= NQ; batch += NQ - 1) {
            outcome with = search_all(index, queries, leaves[a], batch);
            avq_center_sketch *sketch = index->q->sketch;
            index->q->sketch = NULL;
            outcome without = search_all(index, queries, leaves[a], batch);
            index->q->sketch = sketch;
            char what[96];
            snprintf(what, sizeof what, "metric %d spread %g tied %zu leaves %zu batch %zu",
                     (int)metric, (double)spread_z, tied, leaves[a], batch);
            expect_same_outcome(&with, &without, what);
            outcome_free(&with);
            outcome_free(&without);
        }
    avq_index_free(index);
    free(queries);
    free(x);
}

Test(centers, selection_equals_float_cosine) {
    expect_sketch_changes_nothing(AVQ_METRIC_COSINE, 0, 1);
}
Test(centers, selection_equals_float_dot_spread) {
    expect_sketch_changes_nothing(AVQ_METRIC_DOT, 2.0f, 1);
}
Test(centers, selection_equals_float_l2) { expect_sketch_changes_nothing(AVQ_METRIC_L2, 0, 1); }
Test(centers, selection_equals_float_tied_centers) {
    expect_sketch_changes_nothing(AVQ_METRIC_COSINE, 0, 6);
    expect_sketch_changes_nothing(AVQ_METRIC_L2, 0, 6);
}

/* The sketch is derived on load too (it is not in the file). */
Test(centers, loaded_index_has_a_sketch) {
    float *x = lv_clustered(N, DIM, 11);
    avq_index *index = selection_index(AVQ_METRIC_DOT, 0, 1, x);
    char path[128];
    snprintf(path, sizeof path, "%s/sketch.avq", lv_tmpdir());
    cr_assert_eq(avq_index_save(index, path), AVQ_OK, "%s", avq_last_error());
    for (unsigned flags = 0; flags < 2; flags++) {
        avq_index *loaded = NULL;
        cr_assert_eq(avq_index_load(path, flags, &loaded), AVQ_OK, "%s", avq_last_error());
        cr_assert_not_null(loaded->q->sketch);
        cr_assert_eq(memcmp(loaded->q->sketch->codes, index->q->sketch->codes,
                            16 * index->q->sketch->blocks * index->q->sketch->dim4),
                     0);
        avq_index_free(loaded);
    }
    avq_index_free(index);
    free(x);
    lv_tmpdir_remove();
}

/* A filtered scan that runs out of its first helping of leaves ranks all of
 * them by the scores of the first pass: those must be every leaf's, not
 * only the sketch's survivors' (regression: the sketched selection left the
 * other leaves' scores unset, and the filtered scan ranked and biased them
 * by whatever the scratch held). */
Test(centers, filtered_scan_past_the_first_leaves_equals_float) {
    float *x = lv_clustered(N, DIM, 777);
    lv_normalize(x, N, DIM);
    avq_index *index = selection_index(AVQ_METRIC_COSINE, 0, 1, x);
    int64_t allowed[N / 97 + 1];
    size_t na = 0;
    for (size_t i = 0; i < N; i += 97) allowed[na++] = (int64_t)i;
    avq_filter *filter = NULL;
    cr_assert_eq(avq_filter_allow_ids(allowed, na, &filter), AVQ_OK);
    float *queries = lv_clustered(NQ, DIM, 778);
    lv_normalize(queries, NQ, DIM);
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.k = K;
    sp.leaves_to_search = 2; /* a first helping of 4 x 2 + 16 = 24 <= L / 4 leaves */
    sp.pre_reorder = PRE;
    sp.filter = filter;
    sp.filter_exact_below = 1; /* scan, never score the allow set directly */
    lv_results with = lv_search(index, queries, NQ, &sp, "filtered, sketch");
    avq_center_sketch *sketch = index->q->sketch;
    index->q->sketch = NULL;
    lv_results without = lv_search(index, queries, NQ, &sp, "filtered, float");
    index->q->sketch = sketch;
    lv_expect_same(&with, &without, "filtered scan");
    lv_results_free(&with);
    lv_results_free(&without);
    avq_filter_free(filter);
    avq_index_free(index);
    free(queries);
    free(x);
}
