/*
 * test_params_l2.c -- the build refuses, for AVQ_METRIC_L2, every
 * anisotropic setting L2 would silently ignore (issue 17, item 3).
 *
 * Why: L2 codes minimise the plain reconstruction error and its leaf centers
 * are plain k-means (src/mutate.c quantizer_aniso_params, src/quantizer.c
 * partition_points), so a threshold, eta, threshold kind, anisotropic center
 * eta, score weight or int8-aware rounding given for L2 had no effect and
 * the build returned AVQ_OK.  The CLI refused them; the library now does
 * too, naming the parameter.  What must still pass: the defaults of
 * avq_build_params_init(L2) and the explicit values that mean "default"
 * (NaN threshold, eta 0, AUTO, weight_param 0, int8_aware 0), and the same
 * settings for dot and cosine, where they do take effect.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "avq.h"

/* Small enough for the exact tier: validation runs before the tier is
 * chosen, so the refusal cannot depend on it.  PQ_N trains codes. */
enum { N = 300, PQ_N = 2000, D = 8 };

static float *rows(size_t n) {
    float *x = malloc(n * D * sizeof *x);
    cr_assert_not_null(x);
    uint64_t s = 12345;
    for (size_t i = 0; i < n * D; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 11) * 0x1.0p-53 - 0.5) + (i % D == 0 ? 1.0f : 0.0f);
    }
    return x;
}

/* One setting L2 ignores, and the name the error message must carry. */
typedef struct {
    const char *name;
    void (*set)(avq_build_params *p);
} setting;

static void set_threshold(avq_build_params *p) { p->threshold = 0.2f; }
static void set_threshold_zero(avq_build_params *p) { p->threshold = 0.0f; }
static void set_eta(avq_build_params *p) { p->eta = 4.0f; }
static void set_kind_rel(avq_build_params *p) { p->threshold_kind = AVQ_THRESHOLD_RELATIVE; }
static void set_kind_abs(avq_build_params *p) { p->threshold_kind = AVQ_THRESHOLD_ABSOLUTE; }
static void set_center_eta(avq_build_params *p) { p->avq_center_eta = 2.5f; }
static void set_weight(avq_build_params *p) {
    p->weight = AVQ_WEIGHT_POW;
    p->weight_param = 2.0f;
}
static void set_weight_param(avq_build_params *p) { p->weight_param = 3.0f; }
static void set_int8_aware(avq_build_params *p) {
    p->reorder = AVQ_REORDER_INT8;
    p->int8_aware = 1;
}

static const setting ignored_by_l2[] = {
    {"threshold", set_threshold},           {"threshold", set_threshold_zero},
    {"eta", set_eta},                       {"threshold_kind", set_kind_rel},
    {"threshold_kind", set_kind_abs},       {"avq_center_eta", set_center_eta},
    {"weight", set_weight},                 {"weight_param", set_weight_param},
    {"int8_aware", set_int8_aware},
};
enum { NSET = sizeof ignored_by_l2 / sizeof ignored_by_l2[0] };

Test(params_l2, ignored_settings_are_refused_by_name) {
    float *x = rows(PQ_N);
    for (size_t k = 0; k < NSET; k++) {
        const size_t sizes[] = {N, PQ_N}; /* exact tier and trained codes */
        for (size_t t = 0; t < 2; t++) {
            avq_build_params p;
            avq_build_params_init(&p, AVQ_METRIC_L2);
            p.brute_force_below = 1000;
            p.threads = 1;
            ignored_by_l2[k].set(&p);
            avq_index *index = (avq_index *)1;
            cr_assert_eq(avq_index_build(x, sizes[t], D, &p, &index), AVQ_ERR_INVALID,
                         "%s (setting %zu), n = %zu: accepted", ignored_by_l2[k].name, k,
                         sizes[t]);
            cr_assert_null(index);
            const char *msg = avq_last_error();
            cr_assert_not_null(strstr(msg, ignored_by_l2[k].name), "%s", msg);
            cr_assert_not_null(strstr(msg, "L2"), "%s", msg);
            /* the quantizer-only entry point validates the same way */
            avq_quantizer *q = (avq_quantizer *)1;
            cr_assert_eq(avq_quantizer_train(x, sizes[t], D, &p, &q), AVQ_ERR_INVALID, "%s",
                         ignored_by_l2[k].name);
            cr_assert_null(q);
        }
    }
    free(x);
}

Test(params_l2, defaults_and_explicit_defaults_pass) {
    float *x = rows(PQ_N);
    avq_build_params p;
    avq_build_params_init(&p, AVQ_METRIC_L2);
    cr_assert(isnan(p.threshold), "L2's default threshold is NaN");
    p.brute_force_below = 1000;
    p.threads = 1;
    /* each written out as a caller might, all meaning "the default" */
    p.threshold = NAN;
    p.eta = 0.0f;
    p.threshold_kind = AVQ_THRESHOLD_AUTO;
    p.avq_center_eta = 0.0f;
    p.weight = AVQ_WEIGHT_STEP;
    p.weight_param = 0.0f;
    p.int8_aware = 0;
    p.leaf_spread_z = -1.0f; /* auto resolves to 0 for L2 */
    p.reorder = AVQ_REORDER_INT8;
    avq_index *index = NULL;
    cr_assert_eq(avq_index_build(x, PQ_N, D, &p, &index), AVQ_OK, "%s", avq_last_error());
    avq_build_params got;
    avq_build_params_init(&got, AVQ_METRIC_L2);
    avq_index_build_params(index, &got);
    avq_index_free(index);
    /* what the index reports it was built with builds again (retrain's path) */
    index = NULL;
    cr_assert_eq(avq_index_build(x, PQ_N, D, &got, &index), AVQ_OK, "%s", avq_last_error());
    avq_index_free(index);
    free(x);
}

/* The same settings take effect for the inner-product metrics, so they stay
 * accepted there (int8_aware needs the int8 reorder, set with it). */
Test(params_l2, same_settings_pass_for_dot_and_cosine) {
    float *x = rows(PQ_N);
    const avq_metric metrics[] = {AVQ_METRIC_DOT, AVQ_METRIC_COSINE};
    for (size_t m = 0; m < 2; m++)
        for (size_t k = 0; k < NSET; k++) {
            /* weight_param alone with the step weight is ignored for every
             * metric (not an L2 question) and eta excludes a weight */
            if (ignored_by_l2[k].set == set_weight_param) continue;
            avq_build_params p;
            avq_build_params_init(&p, metrics[m]);
            p.brute_force_below = 1000;
            p.threads = 1;
            ignored_by_l2[k].set(&p);
            avq_index *index = NULL;
            cr_assert_eq(avq_index_build(x, PQ_N, D, &p, &index), AVQ_OK, "metric %d, %s: %s",
                         (int)metrics[m], ignored_by_l2[k].name, avq_last_error());
            avq_index_free(index);
        }
    free(x);
}
