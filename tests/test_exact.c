/*
 * test_exact.c -- brute-force search against a naive double-precision
 * reference, for every metric; batch equals single; error cases.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "avq.h"
#include "avq_internal.h"

static float *random_matrix(size_t rows, size_t dim, uint64_t seed) {
    float *x = malloc(rows * dim * sizeof *x);
    for (size_t i = 0; i < rows * dim; i++) x[i] = (float)(avq_rng_uniform(&seed) * 2.0 - 1.0);
    return x;
}

/* Naive reference: distance in double, smaller is better, ties to lower id.
 * Returns the true score (similarity or squared distance) of each rank. */
static double ref_score(const float *q, const float *x, size_t dim, avq_metric m) {
    double dot = 0, qq = 0, xx = 0, l2 = 0;
    for (size_t j = 0; j < dim; j++) {
        dot += (double)q[j] * x[j];
        qq += (double)q[j] * q[j];
        xx += (double)x[j] * x[j];
        l2 += ((double)q[j] - x[j]) * ((double)q[j] - x[j]);
    }
    if (m == AVQ_METRIC_DOT) return dot;
    if (m == AVQ_METRIC_L2) return l2;
    return (qq > 0 && xx > 0) ? dot / sqrt(qq * xx) : 0.0;
}

static void check_against_reference(avq_metric metric, size_t n, size_t dim, size_t nq,
                                     size_t k, int threads) {
    float *base = random_matrix(n, dim, 1), *queries = random_matrix(nq, dim, 2);
    int64_t *ids = malloc(nq * k * sizeof *ids);
    float *scores = malloc(nq * k * sizeof *scores);
    cr_assert_eq(avq_exact_search(base, n, dim, queries, nq, metric, k, threads, ids, scores,
                                  NULL, NULL), AVQ_OK, "%s", avq_last_error());
    double sign = metric == AVQ_METRIC_L2 ? 1.0 : -1.0;
    double *d = malloc(n * sizeof *d);
    for (size_t q = 0; q < nq; q++) {
        for (size_t i = 0; i < n; i++) d[i] = sign * ref_score(queries + q * dim, base + i * dim, dim, metric);
        for (size_t r = 0; r < k; r++) {
            int64_t id = ids[q * k + r];
            cr_assert(id >= 0 && (size_t)id < n);
            /* the returned score is the true score (float tolerance) */
            cr_assert_float_eq(scores[q * k + r], sign * d[id], 1e-4 * (1 + fabs(d[id])));
            /* nothing outside the result beats the r-th result by more than rounding */
            if (r > 0) cr_assert(sign * scores[q * k + r - 1] <= sign * scores[q * k + r] + 1e-5);
        }
        /* the k-th result is at least as good as every non-returned point */
        double kth = d[ids[q * k + k - 1]];
        for (size_t i = 0; i < n; i++) {
            int returned = 0;
            for (size_t r = 0; r < k; r++) returned |= ids[q * k + r] == (int64_t)i;
            if (!returned) cr_assert(d[i] >= kth - 1e-5, "point %zu (%g) beats the k-th (%g)", i, d[i], kth);
        }
    }
    free(d);
    free(base);
    free(queries);
    free(ids);
    free(scores);
}

Test(exact, dot_matches_reference) { check_against_reference(AVQ_METRIC_DOT, 777, 13, 37, 10, 2); }
Test(exact, l2_matches_reference) { check_against_reference(AVQ_METRIC_L2, 777, 13, 37, 10, 2); }
Test(exact, cosine_matches_reference) { check_against_reference(AVQ_METRIC_COSINE, 777, 13, 37, 10, 1); }
Test(exact, spans_several_tiles) { check_against_reference(AVQ_METRIC_DOT, 9000, 8, 1100, 5, 2); }

Test(exact, batch_equals_single_and_threads_do_not_matter) {
    size_t n = 3000, dim = 20, nq = 50, k = 7;
    float *base = random_matrix(n, dim, 3), *queries = random_matrix(nq, dim, 4);
    int64_t *batch = malloc(nq * k * sizeof *batch), *one = malloc(k * sizeof *one),
            *batch1 = malloc(nq * k * sizeof *batch1);
    for (int m = 0; m < 3; m++) {
        cr_assert_eq(avq_exact_search(base, n, dim, queries, nq, (avq_metric)m, k, 2, batch, NULL, NULL, NULL), AVQ_OK);
        cr_assert_eq(avq_exact_search(base, n, dim, queries, nq, (avq_metric)m, k, 1, batch1, NULL, NULL, NULL), AVQ_OK);
        for (size_t q = 0; q < nq; q++) {
            cr_assert_eq(avq_exact_search(base, n, dim, queries + q * dim, 1, (avq_metric)m, k, 1, one, NULL, NULL, NULL), AVQ_OK);
            for (size_t r = 0; r < k; r++) {
                cr_assert_eq(one[r], batch[q * k + r]);
                cr_assert_eq(batch1[q * k + r], batch[q * k + r]);
            }
        }
    }
    free(base); free(queries); free(batch); free(one); free(batch1);
}

Test(exact, ties_go_to_lower_id) {
    /* every base row identical: the answer must be ids 0..k-1 in order */
    size_t n = 100, dim = 4, k = 5;
    float base[400], q[4] = {1, 2, 3, 4};
    for (size_t i = 0; i < n * dim; i++) base[i] = (float)(i % dim);
    int64_t ids[5];
    for (int m = 0; m < 3; m++) {
        cr_assert_eq(avq_exact_search(base, n, dim, q, 1, (avq_metric)m, k, 2, ids, NULL, NULL, NULL), AVQ_OK);
        for (size_t r = 0; r < k; r++) cr_assert_eq(ids[r], (int64_t)r);
    }
}

Test(exact, k_larger_than_n_pads) {
    float base[6] = {1, 0, 0, 1, 1, 1}, q[2] = {1, 0};
    int64_t ids[5];
    float scores[5];
    cr_assert_eq(avq_exact_search(base, 3, 2, q, 1, AVQ_METRIC_DOT, 5, 1, ids, scores, NULL, NULL), AVQ_OK);
    cr_assert_eq(ids[0], 0);
    cr_assert_eq(ids[1], 2);
    cr_assert_eq(ids[2], 1);
    cr_assert_eq(ids[3], -1);
    cr_assert(isnan(scores[4]));
}

Test(exact, rejects_bad_input) {
    float base[4] = {1, 2, 3, 4}, q[2] = {1, 2};
    int64_t ids[2];
    cr_assert_eq(avq_exact_search(base, 2, 2, q, 1, AVQ_METRIC_DOT, 0, 1, ids, NULL, NULL, NULL), AVQ_ERR_INVALID);
    cr_assert_eq(avq_exact_search(NULL, 2, 2, q, 1, AVQ_METRIC_DOT, 1, 1, ids, NULL, NULL, NULL), AVQ_ERR_INVALID);
    cr_assert_eq(avq_exact_search(base, 2, 2, q, 1, (avq_metric)7, 1, 1, ids, NULL, NULL, NULL), AVQ_ERR_INVALID);
    q[1] = NAN;
    cr_assert_eq(avq_exact_search(base, 2, 2, q, 1, AVQ_METRIC_DOT, 1, 1, ids, NULL, NULL, NULL), AVQ_ERR_INVALID);
    cr_assert(strstr(avq_last_error(), "query row 0, column 1") != NULL, "%s", avq_last_error());
    q[1] = 2;
    base[2] = INFINITY;
    cr_assert_eq(avq_exact_search(base, 2, 2, q, 1, AVQ_METRIC_DOT, 1, 1, ids, NULL, NULL, NULL), AVQ_ERR_INVALID);
}

static int cancel_now(void *user, const char *stage, size_t done, size_t total) {
    (void)user; (void)stage; (void)done; (void)total;
    return 1;
}

Test(exact, progress_can_cancel) {
    float *base = random_matrix(100, 4, 5);
    int64_t ids[3];
    cr_assert_eq(avq_exact_search(base, 100, 4, base, 1, AVQ_METRIC_L2, 3, 1, ids, NULL, cancel_now, NULL), AVQ_ERR_CANCELLED);
    free(base);
}

Test(errors, strerror_and_metric_names) {
    cr_assert_str_eq(avq_strerror(AVQ_OK), "success");
    cr_assert_str_eq(avq_strerror(12345), "unknown error");
    avq_metric m;
    cr_assert_eq(avq_metric_parse("cos", &m), AVQ_OK);
    cr_assert_eq(m, AVQ_METRIC_COSINE);
    cr_assert_eq(avq_metric_parse("hamming", &m), AVQ_ERR_INVALID);
    cr_assert(strstr(avq_last_error(), "hamming") != NULL);
    cr_assert_str_eq(avq_metric_name(AVQ_METRIC_L2), "squared_l2");
    cr_assert_eq(avq_version_number(), AVQ_VERSION_NUMBER);
}
