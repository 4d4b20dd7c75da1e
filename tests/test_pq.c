/*
 * test_pq.c -- the block layout shared with the LUT builder (pinned down by
 * exact offsets), codebook training, reconstruction codes against a brute
 * force, decoding, determinism and bad input.
 */
#include <criterion/criterion.h>

#include "kmeans.h"
#include "pq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *random_rows(size_t n, size_t d, uint64_t seed) {
    float *x = malloc(n * d * sizeof(float));
    cr_assert(x);
    for (size_t i = 0; i < n * d; i++) x[i] = (float)(2.0 * avq_rng_uniform(&seed) - 1.0);
    return x;
}

Test(pq, block_layout) {
    avq_pq_shape s = {10, 4, 16};
    cr_assert_eq(avq_pq_num_blocks(&s), 3);
    cr_assert_eq(avq_pq_block_start(&s, 2), 8);
    cr_assert_eq(avq_pq_block_len(&s, 0), 4);
    cr_assert_eq(avq_pq_block_len(&s, 2), 2);
    float cb[160];
    cr_assert_eq(avq_pq_block_centers(&s, cb, 0), cb);
    cr_assert_eq(avq_pq_block_centers(&s, cb, 1), cb + 64);
    cr_assert_eq(avq_pq_block_centers(&s, cb, 2), cb + 128);
    /* the last block's 16 centers of 2 floats end exactly at C*d */
    cr_assert_eq(avq_pq_block_centers(&s, cb, 2) + 16 * 2, cb + 160);
    avq_pq_shape t = {100, 2, 16};
    cr_assert_eq(avq_pq_num_blocks(&t), 50);
}

Test(pq, decode_picks_codebook_entries) {
    avq_pq_shape s = {5, 2, 4}; /* blocks of 2, 2, 1 */
    float cb[20];
    for (int i = 0; i < 20; i++) cb[i] = (float)i;
    uint8_t codes[3] = {1, 3, 2};
    float out[5];
    cr_assert_eq(avq_pq_decode(codes, 1, &s, cb, out), AVQ_OK);
    /* block 0 center 1: cb[2..3]; block 1 center 3: cb[8 + 6..7]; block 2 center 2: cb[16 + 2] */
    float want[5] = {2, 3, 14, 15, 18};
    for (int t = 0; t < 5; t++) cr_assert_eq(out[t], want[t], "dim %d", t);
    codes[2] = 4;
    cr_assert_eq(avq_pq_decode(codes, 1, &s, cb, out), AVQ_ERR_INVALID);
}

Test(pq, reconstruction_codes_are_nearest_centers) {
    size_t n = 600, d = 11;
    avq_pq_shape s = {d, 3, 16};
    size_t K = avq_pq_num_blocks(&s);
    float *x = random_rows(n, d, 1);
    float *cb = malloc(16 * d * sizeof(float));
    uint8_t *codes = malloc(n * K);
    avq_pq_train_params tp;
    avq_pq_default_train_params(&tp);
    cr_assert_eq(avq_pq_train(x, n, &s, &tp, cb, NULL, NULL), AVQ_OK);
    cr_assert(avq_all_finite(cb, 16 * d));
    cr_assert_eq(avq_pq_encode(x, n, &s, cb, 2, codes, NULL, NULL), AVQ_OK);
    for (size_t i = 0; i < n; i++)
        for (size_t m = 0; m < K; m++) {
            size_t len = avq_pq_block_len(&s, m), st = avq_pq_block_start(&s, m);
            const float *c = avq_pq_block_centers(&s, cb, m);
            double best = INFINITY;
            size_t arg = 0;
            for (size_t j = 0; j < 16; j++) {
                double e2 = 0.0;
                for (size_t t = 0; t < len; t++) {
                    double e = (double)x[i * d + st + t] - c[j * len + t];
                    e2 += e * e;
                }
                if (e2 < best) { best = e2; arg = j; }
            }
            cr_assert_eq(codes[i * K + m], arg, "row %zu block %zu", i, m);
        }
    /* trained codebooks beat random codes by far */
    uint8_t *rnd = malloc(n * K);
    uint64_t rng = 3;
    for (size_t i = 0; i < n * K; i++) rnd[i] = (uint8_t)(avq_rng_next(&rng) & 15);
    double err = avq_pq_mean_sq_error(x, codes, n, &s, cb);
    cr_assert_lt(err, 0.5 * avq_pq_mean_sq_error(x, rnd, n, &s, cb));
    free(rnd);
    free(x);
    free(cb);
    free(codes);
}

Test(pq, decode_of_encode_is_mean_sq_error) {
    size_t n = 300, d = 8;
    avq_pq_shape s = {d, 2, 16};
    float *x = random_rows(n, d, 2);
    float *cb = malloc(16 * d * sizeof(float)), *dec = malloc(n * d * sizeof(float));
    uint8_t *codes = malloc(n * 4);
    avq_pq_train_params tp;
    avq_pq_default_train_params(&tp);
    cr_assert_eq(avq_pq_train(x, n, &s, &tp, cb, NULL, NULL), AVQ_OK);
    cr_assert_eq(avq_pq_encode(x, n, &s, cb, 1, codes, NULL, NULL), AVQ_OK);
    cr_assert_eq(avq_pq_decode(codes, n, &s, cb, dec), AVQ_OK);
    double total = 0.0;
    for (size_t i = 0; i < n * d; i++) total += ((double)x[i] - dec[i]) * ((double)x[i] - dec[i]);
    cr_assert_float_eq(total / n, avq_pq_mean_sq_error(x, codes, n, &s, cb), 1e-9);
    free(x);
    free(cb);
    free(dec);
    free(codes);
}

Test(pq, training_is_deterministic_across_threads) {
    size_t n = 3000, d = 10;
    avq_pq_shape s = {d, 4, 16}; /* blocks 4, 4, 2 */
    float *x = random_rows(n, d, 4);
    float *a = malloc(16 * d * sizeof(float)), *b = malloc(16 * d * sizeof(float));
    avq_pq_train_params tp;
    avq_pq_default_train_params(&tp);
    tp.training_sample = 2000;
    tp.threads = 1;
    cr_assert_eq(avq_pq_train(x, n, &s, &tp, a, NULL, NULL), AVQ_OK);
    tp.threads = 2;
    cr_assert_eq(avq_pq_train(x, n, &s, &tp, b, NULL, NULL), AVQ_OK);
    cr_assert_eq(memcmp(a, b, 16 * d * sizeof(float)), 0);
    free(x);
    free(a);
    free(b);
}

/* Blocks are trained by the workers side by side (dims_per_block <= 8) or
 * one after another through SGEMM (wider): either way block m's codebook is
 * exactly avq_kmeans_train on the block's columns of the sample with the
 * seed derived from m, whatever the thread count. */
static void check_blocks_match_kmeans(size_t d, size_t dpb, size_t C) {
    size_t n = 1500;
    avq_pq_shape s = {d, dpb, C};
    float *x = random_rows(n, d, 11 + d + dpb);
    float *cb = malloc(C * d * sizeof(float)), *want = malloc(C * d * sizeof(float));
    avq_pq_train_params tp;
    avq_pq_default_train_params(&tp);
    tp.training_sample = 1000;
    tp.max_iter = 5;
    uint64_t rng = tp.seed;
    size_t *idx = NULL, count = 0;
    cr_assert_eq(avq_sample_rows(n, tp.training_sample, C, &rng, &idx, &count), AVQ_OK);
    float *block = malloc(count * dpb * sizeof(float));
    size_t K = avq_pq_num_blocks(&s);
    for (size_t m = 0; m < K; m++) {
        size_t start = avq_pq_block_start(&s, m), len = avq_pq_block_len(&s, m);
        for (size_t r = 0; r < count; r++)
            memcpy(block + r * len, x + idx[r] * d + start, len * sizeof(float));
        avq_kmeans_params km;
        avq_kmeans_default_params(&km, C);
        km.max_iter = tp.max_iter;
        km.training_sample = 0;
        km.threads = 1;
        km.seed = tp.seed ^ (0x9E3779B97F4A7C15ull * (m + 1));
        cr_assert_eq(avq_kmeans_train(block, count, len, &km, want + C * m * dpb, NULL, NULL,
                                      NULL),
                     AVQ_OK);
    }
    for (int threads = 1; threads <= 3; threads++) {
        tp.threads = threads;
        cr_assert_eq(avq_pq_train(x, n, &s, &tp, cb, NULL, NULL), AVQ_OK);
        cr_assert_eq(memcmp(cb, want, C * d * sizeof(float)), 0, "d=%zu dpb=%zu threads=%d", d,
                     dpb, threads);
    }
    free(x);
    free(cb);
    free(want);
    free(idx);
    free(block);
}

Test(pq, blocks_match_kmeans_at_any_thread_count) {
    check_blocks_match_kmeans(11, 2, 16);  /* 6 blocks, the last of 1 dim */
    check_blocks_match_kmeans(16, 8, 256); /* 2 blocks of 8 */
    check_blocks_match_kmeans(20, 9, 16);  /* SGEMM blocks 9, 9, 2 */
}

Test(pq, eight_bit_codebook) {
    size_t n = 2000, d = 6;
    avq_pq_shape s = {d, 3, 256};
    float *x = random_rows(n, d, 5);
    float *cb = malloc(256 * d * sizeof(float));
    uint8_t *codes = malloc(n * 2);
    avq_pq_train_params tp;
    avq_pq_default_train_params(&tp);
    tp.max_iter = 4;
    cr_assert_eq(avq_pq_train(x, n, &s, &tp, cb, NULL, NULL), AVQ_OK);
    cr_assert_eq(avq_pq_encode(x, n, &s, cb, 2, codes, NULL, NULL), AVQ_OK);
    int high = 0;
    for (size_t i = 0; i < n * 2; i++) high |= codes[i] >= 16;
    cr_assert(high, "codes use the whole byte");
    cr_assert_lt(avq_pq_mean_sq_error(x, codes, n, &s, cb), 0.25);
    free(x);
    free(cb);
    free(codes);
}

static int cancel_at_two(void *user, const char *stage, size_t done, size_t total) {
    (void)user;
    (void)stage;
    (void)total;
    return done >= 2;
}

Test(pq, training_can_be_cancelled) {
    size_t n = 200, d = 8;
    avq_pq_shape s = {d, 2, 16};
    float *x = random_rows(n, d, 6);
    float cb[16 * 8];
    avq_pq_train_params tp;
    avq_pq_default_train_params(&tp);
    cr_assert_eq(avq_pq_train(x, n, &s, &tp, cb, cancel_at_two, NULL), AVQ_ERR_CANCELLED);
    free(x);
}

Test(pq, bad_input_is_rejected) {
    float x[64] = {0}, cb[16 * 4];
    uint8_t codes[64];
    avq_pq_train_params tp;
    avq_pq_default_train_params(&tp);
    avq_pq_shape bad[] = {{4, 0, 16}, {4, 5, 16}, {4, 2, 1}, {4, 2, 300}, {0, 1, 16}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(avq_pq_check_shape(&bad[i], "test"), AVQ_ERR_INVALID, "shape %zu", i);
        cr_assert_eq(avq_pq_train(x, 16, &bad[i], &tp, cb, NULL, NULL), AVQ_ERR_INVALID);
        cr_assert_eq(avq_pq_encode(x, 16, &bad[i], cb, 1, codes, NULL, NULL), AVQ_ERR_INVALID);
    }
    avq_pq_shape s = {4, 2, 16};
    cr_assert_eq(avq_pq_train(x, 15, &s, &tp, cb, NULL, NULL), AVQ_ERR_INVALID, "n < C");
    x[3] = INFINITY;
    cr_assert_eq(avq_pq_train(x, 16, &s, &tp, cb, NULL, NULL), AVQ_ERR_INVALID);
    cr_assert_eq(avq_pq_encode(x, 16, &s, cb, 1, codes, NULL, NULL), AVQ_ERR_INVALID);
    cr_assert_eq(avq_pq_encode(NULL, 16, &s, cb, 1, codes, NULL, NULL), AVQ_ERR_INVALID);
}
