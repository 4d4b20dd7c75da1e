/*
 * test_build_memory.c -- the index build's memory savers change no result.
 *
 * A build (or a big add) used to hold three copies of the rows at its peak:
 * the caller's, its own normalised copy, and a leaf-ordered copy or an n x d
 * residual array, then the leaves' copies.  Now the rows are put in leaf
 * order in place, the residuals are made row by row inside the encoder
 * (avq_aniso_encode_residuals), and the encoded arrays' pages are handed
 * back as the leaves take their copies.  Checked here:
 *   - avq_aniso_encode_residuals gives the codes avq_aniso_encode gives for
 *     a materialised residual array: leaves of every size (empty ones, ones
 *     shorter and longer than the encoder's work chunks), both threshold
 *     kinds and a weight with a per-norm eta table, 1 and 2 threads;
 *   - its arguments are checked;
 *   - a built index returns every vector exactly as it went in (the in-place
 *     permutation and the released pages lose no row), for a plain and a
 *     spilled build.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aniso.h"
#include "avq.h"
#include "avq_internal.h"
#include "pq.h"

static float *points(size_t n, size_t d, uint64_t seed) {
    float *x = malloc(n * d * sizeof *x);
    cr_assert_not_null(x);
    for (size_t i = 0; i < n; i++) {
        double scale = 0.3 + 2.0 * avq_rng_uniform(&seed); /* varied norms */
        for (size_t j = 0; j < d; j++)
            x[i * d + j] = (float)(scale * (avq_rng_uniform(&seed) * 2 - 1));
    }
    return x;
}

static void expect_residual_codes(const avq_aniso_params *p, const char *what) {
    enum { N = 2000, D = 18, L = 9 };
    /* leaf sizes: empty, 1, under and over ENCODE_CHUNK (256), empty at the end */
    const size_t sizes[L] = {0, 1, 700, 3, 0, 255, 257, 784, 0};
    size_t start[L + 1] = {0};
    for (size_t l = 0; l < L; l++) start[l + 1] = start[l] + sizes[l];
    cr_assert_eq(start[L], N);
    avq_pq_shape shape = {D, 2, 16};
    size_t K = avq_pq_num_blocks(&shape);
    float *x = points(N, D, 31), *centers = points(L, D, 32), *codebook = points(16, D, 33);
    float *resid = malloc(N * D * sizeof *resid);
    uint8_t *want = malloc(N * K), *got = malloc(N * K);
    cr_assert(resid && want && got);
    for (size_t l = 0; l < L; l++)
        for (size_t i = start[l]; i < start[l + 1]; i++)
            for (size_t j = 0; j < D; j++) resid[i * D + j] = x[i * D + j] - centers[l * D + j];
    cr_assert_eq(avq_aniso_encode(resid, x, N, &shape, codebook, p, want, NULL, NULL), AVQ_OK,
                 "%s: %s", what, avq_last_error());
    memset(got, 0xEE, N * K);
    cr_assert_eq(avq_aniso_encode_residuals(x, N, &shape, centers, start, L, codebook, p, got,
                                            NULL, NULL),
                 AVQ_OK, "%s: %s", what, avq_last_error());
    for (size_t i = 0; i < N; i++)
        cr_assert(memcmp(want + i * K, got + i * K, K) == 0, "%s: row %zu coded differently",
                  what, i);
    free(x);
    free(centers);
    free(codebook);
    free(resid);
    free(want);
    free(got);
}

Test(build_memory, residual_codes_equal_materialised_residuals) {
    for (int threads = 1; threads <= 2; threads++) {
        avq_aniso_params p;
        avq_aniso_default_params(&p);
        p.threads = threads;
        p.threshold = 0.2;
        p.relative = 1;
        expect_residual_codes(&p, "relative T");
        p.relative = 0;
        expect_residual_codes(&p, "absolute T");
        avq_aniso_default_params(&p);
        p.threads = threads;
        p.weight = AVQ_WEIGHT_EXP;
        p.threshold = 0.2;
        p.weight_param = 2.0;
        expect_residual_codes(&p, "EXP weight");
        avq_aniso_default_params(&p);
        p.threads = threads;
        expect_residual_codes(&p, "reconstruction");
    }
}

Test(build_memory, residual_encoder_checks_its_leaves) {
    avq_pq_shape shape = {4, 2, 16};
    float x[8] = {0}, centers[8] = {0}, codebook[64] = {0};
    uint8_t codes[4];
    avq_aniso_params p;
    avq_aniso_default_params(&p);
    size_t short_starts[3] = {0, 1, 1}, offset_starts[3] = {1, 1, 2}, good[3] = {0, 1, 2};
    cr_assert_eq(avq_aniso_encode_residuals(x, 2, &shape, centers, short_starts, 2, codebook, &p,
                                            codes, NULL, NULL),
                 AVQ_ERR_INVALID);
    cr_assert_eq(avq_aniso_encode_residuals(x, 2, &shape, centers, offset_starts, 2, codebook,
                                            &p, codes, NULL, NULL),
                 AVQ_ERR_INVALID);
    cr_assert_eq(avq_aniso_encode_residuals(x, 2, &shape, NULL, good, 2, codebook, &p, codes,
                                            NULL, NULL),
                 AVQ_ERR_INVALID);
    cr_assert_eq(avq_aniso_encode_residuals(x, 2, &shape, centers, good, 2, codebook, &p, codes,
                                            NULL, NULL),
                 AVQ_OK, "%s", avq_last_error());
}

/* Every vector comes back bit for bit: rows permuted in place into leaf
 * order and the encoded arrays' pages released lose nothing.  Big enough
 * for many pages per array (30000 x 40 floats = 4.8 MB). */
static void expect_rows_kept(int spill) {
    enum { N = 30000, D = 40 };
    float *x = points(N, D, 41);
    avq_build_params p;
    avq_build_params_init(&p, AVQ_METRIC_DOT);
    p.num_leaves = 50;
    p.brute_force_below = 100;
    p.threads = 2;
    p.spill = spill;
    avq_index *index = NULL;
    cr_assert_eq(avq_index_build(x, N, D, &p, &index), AVQ_OK, "%s", avq_last_error());
    int64_t *ids = malloc(N * sizeof *ids);
    float *back = malloc(N * D * sizeof *back);
    cr_assert(ids && back);
    for (size_t i = 0; i < N; i++) ids[i] = (int64_t)i;
    cr_assert_eq(avq_index_get(index, ids, N, back), AVQ_OK, "%s", avq_last_error());
    for (size_t i = 0; i < N; i++)
        cr_assert(memcmp(back + i * D, x + i * D, D * sizeof *x) == 0,
                  "spill %d: vector %zu changed", spill, i);
    /* and its codes are searched: the exact neighbour of a stored vector is
     * found by a full search (every leaf, every point re-ranked) */
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.k = 1;
    sp.leaves_to_search = avq_index_num_leaves(index);
    sp.pre_reorder = 2000;
    int64_t got, want;
    float score, best;
    for (size_t q = 0; q < N; q += 3001) {
        cr_assert_eq(avq_index_search(index, x + q * D, &sp, &got, &score), AVQ_OK);
        cr_assert_eq(avq_exact_search(x, N, D, x + q * D, 1, AVQ_METRIC_DOT, 1, 1, &want, &best,
                                      NULL, NULL),
                     AVQ_OK);
        cr_assert_eq(got, want, "spill %d: query %zu: %lld, exact %lld", spill, q,
                     (long long)got, (long long)want);
    }
    avq_index_free(index);
    free(x);
    free(ids);
    free(back);
}

Test(build_memory, build_keeps_every_row) { expect_rows_kept(0); }
Test(build_memory, spilled_build_keeps_every_row) { expect_rows_kept(1); }
