/*
 * test_search_input.c -- a query the index cannot score is refused with a
 * message that says why (issue 16 item 1): a value that is not finite, or
 * one so large that the query's inner products overflow float (its LUT
 * would hold infinities) for dot and L2.  Cosine normalises the query, so
 * any finite query is fine there.  Single and batched search alike.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "avq.h"

enum { N = 2000, DIM = 8, K = 5 };

static avq_index *small_index(avq_metric m) {
    float *x = malloc((size_t)N * DIM * sizeof *x);
    uint64_t s = 3;
    for (size_t i = 0; i < (size_t)N * DIM; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((s >> 33) % 2000) / 1000.0f - 1.0f;
    }
    avq_build_params p;
    avq_build_params_init(&p, m);
    p.num_leaves = 8;
    p.brute_force_below = 100;
    p.threads = 1;
    avq_index *ix = NULL;
    cr_assert_eq(avq_index_build(x, N, DIM, &p, &ix), AVQ_OK, "%s", avq_last_error());
    free(x);
    return ix;
}

Test(search_input, huge_queries_are_refused_or_answered) {
    avq_metric metrics[] = {AVQ_METRIC_DOT, AVQ_METRIC_L2, AVQ_METRIC_COSINE};
    for (int mi = 0; mi < 3; mi++) {
        avq_index *ix = small_index(metrics[mi]);
        avq_search_params sp;
        avq_search_params_init(&sp);
        sp.k = K;
        float q[DIM];
        for (int j = 0; j < DIM; j++) q[j] = 0.5f;
        q[3] = 1e19f; /* its square overflows float */
        int64_t ids[K];
        float scores[K];
        int st = avq_index_search(ix, q, &sp, ids, scores);
        int stb = avq_index_search_batch(ix, q, 1, &sp, 1, ids, scores);
        if (metrics[mi] == AVQ_METRIC_COSINE) {
            cr_assert_eq(st, AVQ_OK, "cosine: %s", avq_last_error());
            cr_assert_eq(stb, AVQ_OK, "cosine batch: %s", avq_last_error());
            for (int j = 0; j < K; j++) cr_assert(ids[j] >= 0 && isfinite(scores[j]));
        } else {
            cr_assert_eq(st, AVQ_ERR_INVALID, "%s: status %d", avq_metric_name(metrics[mi]), st);
            cr_assert_eq(stb, AVQ_ERR_INVALID);
            cr_assert(strstr(avq_last_error(), "too large"), "%s", avq_last_error());
        }
        q[3] = NAN;
        cr_assert_eq(avq_index_search(ix, q, &sp, ids, scores), AVQ_ERR_INVALID);
        cr_assert(strstr(avq_last_error(), "not a finite number"), "%s", avq_last_error());
        avq_index_free(ix);
    }
}
