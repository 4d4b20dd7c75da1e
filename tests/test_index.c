/*
 * test_index.c -- the assembled index: recall floors for every metric and
 * code width, batch == single, concurrent searches, parameter errors, and
 * save/load round trips with corrupt files rejected.
 *
 * Data: a fixed-seed mixture of Gaussian clusters (real embeddings are
 * clustered; uniform noise would make every method look equally bad).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "avq.h"
#include "avq_internal.h"
#include "vecmath.h"
#include "../fuzz/avq_file.h" /* the container's layout, re-implemented independently */

enum { N = 24000, DIM = 32, NQ = 200, K = 10 };

static float *clustered(size_t n, size_t dim, uint64_t seed) {
    uint64_t rng = seed;
    size_t nc = 64;
    float *centers = malloc(nc * dim * sizeof *centers), *x = malloc(n * dim * sizeof *x);
    for (size_t i = 0; i < nc * dim; i++) centers[i] = (float)(avq_rng_uniform(&rng) * 2 - 1);
    for (size_t i = 0; i < n; i++) {
        size_t c = avq_rng_next(&rng) % nc;
        for (size_t j = 0; j < dim; j++) {
            /* sum of uniforms ~ Gaussian */
            double g = avq_rng_uniform(&rng) + avq_rng_uniform(&rng) + avq_rng_uniform(&rng) - 1.5;
            x[i * dim + j] = centers[c * dim + j] + (float)(0.35 * g);
        }
    }
    free(centers);
    return x;
}

static double recall(const int64_t *got, const int64_t *truth, size_t nq, size_t k) {
    size_t hits = 0;
    for (size_t q = 0; q < nq; q++)
        for (size_t i = 0; i < k; i++)
            for (size_t j = 0; j < k; j++) hits += got[q * k + i] == truth[q * k + j];
    return (double)hits / (double)(nq * k);
}

static float *base, *queries;
static void setup(void) {
    base = clustered(N, DIM, 11);
    queries = clustered(NQ, DIM, 11 + 1);
}
static void teardown(void) {
    free(base);
    free(queries);
}

static avq_index *build(avq_metric metric, int bits, avq_reorder reorder, size_t leaves) {
    avq_build_params p;
    avq_build_params_init(&p, metric);
    p.bits = bits;
    p.reorder = reorder;
    p.num_leaves = leaves;
    p.brute_force_below = 1000;
    p.threads = 2;
    avq_index *index = NULL;
    cr_assert_eq(avq_index_build(base, N, DIM, &p, &index), AVQ_OK, "%s", avq_last_error());
    return index;
}

static double index_recall(avq_index *index, avq_metric metric, size_t leaves, size_t pre) {
    int64_t *truth = malloc(NQ * K * sizeof *truth), *got = malloc(NQ * K * sizeof *got);
    cr_assert_eq(avq_exact_search(base, N, DIM, queries, NQ, metric, K, 2, truth, NULL, NULL, NULL),
                 AVQ_OK);
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.k = K;
    sp.leaves_to_search = leaves;
    sp.pre_reorder = pre;
    for (size_t q = 0; q < NQ; q++)
        cr_assert_eq(avq_index_search(index, queries + q * DIM, &sp, got + q * K, NULL), AVQ_OK,
                     "%s", avq_last_error());
    double r = recall(got, truth, NQ, K);
    free(truth);
    free(got);
    return r;
}

static void expect_recall(avq_metric metric, int bits, avq_reorder reorder, double floor) {
    avq_index *index = build(metric, bits, reorder, 40);
    double r = index_recall(index, metric, 16, 200);
    cr_expect(r >= floor, "%s %d-bit reorder %d: recall@10 %.4f below %.3f",
              avq_metric_name(metric), bits, (int)reorder, r, floor);
    avq_index_free(index);
}

TestSuite(index, .init = setup, .fini = teardown, .timeout = 120);

/* Recall floors sit just under what the code reaches on this fixed-seed
 * data (measured: 40 leaves, 16 searched, 200 re-ranked; 200 queries x 10
 * neighbours, so one neighbour is 0.0005; the same value for AVQ_ISA=scalar,
 * avx2 and avx512, -O2 and the sanitizer build): a loss of more than ~10
 * neighbours in 2,000 fails.  8-bit codes must stay above every 4-bit floor
 * of the same metric. */
/* measured 0.9885 */
Test(index, recall_dot_4bit_float) { expect_recall(AVQ_METRIC_DOT, 4, AVQ_REORDER_FLOAT, 0.980); }
/* measured 0.9805 (avx512, avx2 and scalar, 2026-12-03) */
Test(index, recall_cos_4bit_float) {
    expect_recall(AVQ_METRIC_COSINE, 4, AVQ_REORDER_FLOAT, 0.965);
}
/* measured 0.9035 */
Test(index, recall_l2_4bit_float) { expect_recall(AVQ_METRIC_L2, 4, AVQ_REORDER_FLOAT, 0.895); }
/* measured 0.9475 */
Test(index, recall_cos_4bit_int8) { expect_recall(AVQ_METRIC_COSINE, 4, AVQ_REORDER_INT8, 0.940); }
/* measured 0.9765 */
Test(index, recall_l2_8bit_int8) { expect_recall(AVQ_METRIC_L2, 8, AVQ_REORDER_INT8, 0.970); }
/* measured 1.0000 */
Test(index, recall_dot_8bit_float) { expect_recall(AVQ_METRIC_DOT, 8, AVQ_REORDER_FLOAT, 0.995); }
/* float16 rows: measured 0.9800 on every ISA (float rows measured 0.9805
 * in the same build: the rounding moved one neighbour of 2,000) */
Test(index, recall_cos_4bit_float16) {
    expect_recall(AVQ_METRIC_COSINE, 4, AVQ_REORDER_FLOAT16, 0.975);
}
/* no re-ranking: measured 0.3680 */
Test(index, recall_cos_4bit_none) { expect_recall(AVQ_METRIC_COSINE, 4, AVQ_REORDER_NONE, 0.360); }

/* Anisotropic leaf centers change the partition's centers (and so the
 * search) but must keep recall at the level of plain k-means centers. */
Test(index, anisotropic_centers) {
    avq_build_params p;
    avq_build_params_init(&p, AVQ_METRIC_DOT);
    p.num_leaves = 40;
    p.threads = 2;
    avq_index *plain = NULL, *aniso = NULL;
    cr_assert_eq(avq_index_build(base, N, DIM, &p, &plain), AVQ_OK, "%s", avq_last_error());
    p.avq_center_eta = 4.0f;
    cr_assert_eq(avq_index_build(base, N, DIM, &p, &aniso), AVQ_OK, "%s", avq_last_error());
    avq_build_params got;
    avq_build_params_init(&got, AVQ_METRIC_DOT); /* its struct_size is kept */
    avq_index_build_params(aniso, &got);
    cr_assert_eq(got.avq_center_eta, 4.0f);
    /* measured: plain 0.9885, anisotropic 0.9815 */
    double r_plain = index_recall(plain, AVQ_METRIC_DOT, 16, 200);
    double r_aniso = index_recall(aniso, AVQ_METRIC_DOT, 16, 200);
    cr_expect(r_plain >= 0.980 && r_aniso >= 0.975 && r_aniso >= r_plain - 0.02,
              "recall %.4f (plain centers %.4f)", r_aniso, r_plain);
    /* the centers really differ: some query's results or scores change */
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.leaves_to_search = 2;
    sp.pre_reorder = 10;
    int differ = 0;
    for (size_t q = 0; q < NQ && !differ; q++) {
        int64_t a[K], b[K];
        cr_assert_eq(avq_index_search(plain, queries + q * DIM, &sp, a, NULL), AVQ_OK);
        cr_assert_eq(avq_index_search(aniso, queries + q * DIM, &sp, b, NULL), AVQ_OK);
        differ = memcmp(a, b, sizeof a) != 0;
    }
    cr_expect(differ, "avq_center_eta had no effect on any result");
    avq_index_free(plain);
    avq_index_free(aniso);
}

Test(index, all_leaves_with_full_reorder_is_nearly_exact) {
    avq_index *index = build(AVQ_METRIC_DOT, 4, AVQ_REORDER_FLOAT, 40);
    double r = index_recall(index, AVQ_METRIC_DOT, 40, 2000);
    cr_expect(r >= 0.998, "recall %.4f", r); /* measured 1.0000 */
    avq_index_free(index);
}

Test(index, brute_force_tier_is_exact) {
    avq_build_params p;
    avq_build_params_init(&p, AVQ_METRIC_L2);
    avq_index *index = NULL;
    cr_assert_eq(avq_index_build(base, 5000, DIM, &p, &index), AVQ_OK);
    int64_t truth[K], got[K];
    float ts[K], gs[K];
    avq_search_params sp;
    avq_search_params_init(&sp);
    for (size_t q = 0; q < 20; q++) {
        cr_assert_eq(avq_exact_search(base, 5000, DIM, queries + q * DIM, 1, AVQ_METRIC_L2, K, 1,
                                      truth, ts, NULL, NULL),
                     AVQ_OK);
        cr_assert_eq(avq_index_search(index, queries + q * DIM, &sp, got, gs), AVQ_OK);
        for (int i = 0; i < K; i++) {
            cr_assert_eq(got[i], truth[i]);
            cr_assert_float_eq(gs[i], ts[i], 1e-3f * (1 + ts[i]));
        }
    }
    avq_index_free(index);
}

/* The batched path groups queries by leaf (and scans a leaf once for up to
 * three of them); the answer must still be exactly the one-at-a-time one,
 * ids and scores, for every code width, metric and reorder kind, any thread
 * count and partial chunks. */
static void check_batch_equals_single(avq_metric metric, int bits, avq_reorder reorder,
                                      size_t leaves_to_search, int threads, size_t nq) {
    avq_index *index = build(metric, bits, reorder, 40);
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.leaves_to_search = leaves_to_search;
    int64_t *batch = malloc(nq * K * sizeof *batch), one[K];
    float *bs = malloc(nq * K * sizeof *bs), os[K];
    cr_assert_eq(avq_index_search_batch(index, queries, nq, &sp, threads, batch, bs), AVQ_OK);
    for (size_t q = 0; q < nq; q++) {
        cr_assert_eq(avq_index_search(index, queries + q * DIM, &sp, one, os), AVQ_OK);
        for (int i = 0; i < K; i++) {
            cr_assert_eq(one[i], batch[q * K + i], "metric %d bits %d query %zu rank %d",
                         (int)metric, bits, q, i);
            cr_assert_eq(os[i], bs[q * K + i]);
        }
    }
    free(batch);
    free(bs);
    avq_index_free(index);
}

Test(index, batch_equals_single) {
    check_batch_equals_single(AVQ_METRIC_COSINE, 4, AVQ_REORDER_FLOAT, 7, 2, NQ);
    check_batch_equals_single(AVQ_METRIC_DOT, 4, AVQ_REORDER_NONE, 12, 3, NQ - 3);
    check_batch_equals_single(AVQ_METRIC_L2, 8, AVQ_REORDER_INT8, 5, 1, NQ);
    check_batch_equals_single(AVQ_METRIC_COSINE, 4, AVQ_REORDER_INT8, 40, 2, 1);
    check_batch_equals_single(AVQ_METRIC_L2, 4, AVQ_REORDER_FLOAT16, 9, 2, NQ);
}

typedef struct {
    avq_index *index;
    int64_t *out;
} thread_arg;

static void *search_all(void *p) {
    thread_arg *a = p;
    avq_search_params sp;
    avq_search_params_init(&sp);
    for (size_t q = 0; q < NQ; q++)
        if (avq_index_search(a->index, queries + q * DIM, &sp, a->out + q * K, NULL) != AVQ_OK)
            return p;
    return NULL;
}

Test(index, concurrent_searches_match_sequential) {
    avq_index *index = build(AVQ_METRIC_DOT, 4, AVQ_REORDER_FLOAT, 40);
    enum { T = 4 };
    pthread_t tid[T];
    thread_arg args[T];
    int64_t *seq = malloc(NQ * K * sizeof *seq);
    thread_arg s = {index, seq};
    cr_assert_null(search_all(&s));
    for (int t = 0; t < T; t++) {
        args[t] = (thread_arg){index, malloc(NQ * K * sizeof(int64_t))};
        pthread_create(&tid[t], NULL, search_all, &args[t]);
    }
    for (int t = 0; t < T; t++) {
        void *ret;
        pthread_join(tid[t], &ret);
        cr_assert_null(ret);
        cr_assert_arr_eq(args[t].out, seq, NQ * K * sizeof *seq);
        free(args[t].out);
    }
    free(seq);
    avq_index_free(index);
}

Test(index, invalid_parameters) {
    avq_index *index = build(AVQ_METRIC_DOT, 4, AVQ_REORDER_FLOAT, 40);
    avq_search_params sp;
    avq_search_params_init(&sp);
    int64_t ids[K];
    sp.k = 0;
    cr_assert_eq(avq_index_search(index, queries, &sp, ids, NULL), AVQ_ERR_INVALID);
    sp.k = K;
    /* more leaves than there are: all of them (clamped, as FAISS clamps
     * nprobe), not an error */
    int64_t all[K];
    sp.leaves_to_search = 40;
    cr_assert_eq(avq_index_search(index, queries, &sp, all, NULL), AVQ_OK);
    sp.leaves_to_search = 41;
    cr_assert_eq(avq_index_search(index, queries, &sp, ids, NULL), AVQ_OK, "%s", avq_last_error());
    cr_assert_arr_eq(ids, all, sizeof ids);
    sp.leaves_to_search = 0;
    float q[DIM] = {0};
    q[3] = NAN;
    cr_assert_eq(avq_index_search(index, q, &sp, ids, NULL), AVQ_ERR_INVALID);
    /* in a batch the bad query is found by whichever worker takes it; the
     * caller must still get the message naming it (messages are per thread) */
    float *many = malloc(NQ * DIM * sizeof *many);
    int64_t *many_ids = malloc(NQ * K * sizeof *many_ids);
    memcpy(many, queries, NQ * DIM * sizeof *many);
    many[(NQ - 7) * DIM + 5] = NAN;
    avq_fail(AVQ_ERR_IO, "stale message");
    for (int threads = 1; threads <= 3; threads++) {
        cr_assert_eq(avq_index_search_batch(index, many, NQ, &sp, threads, many_ids, NULL),
                     AVQ_ERR_INVALID);
        char want[32];
        snprintf(want, sizeof want, "query %d", NQ - 7);
        cr_assert(strstr(avq_last_error(), want) != NULL, "threads %d: %s", threads,
                  avq_last_error());
        cr_assert(strstr(avq_last_error(), "finite") != NULL, "%s", avq_last_error());
    }
    free(many);
    free(many_ids);
    avq_index_free(index);

    avq_build_params p;
    avq_build_params_init(&p, AVQ_METRIC_DOT);
    p.bits = 5;
    cr_assert_eq(avq_index_build(base, N, DIM, &p, &index), AVQ_ERR_INVALID);
    cr_assert_null(index);
    avq_build_params_init(&p, AVQ_METRIC_DOT);
    p.dims_per_block = DIM + 1;
    cr_assert_eq(avq_index_build(base, N, DIM, &p, &index), AVQ_ERR_INVALID);
    avq_build_params_init(&p, AVQ_METRIC_DOT);
    p.num_leaves = N + 1;
    cr_assert_eq(avq_index_build(base, N, DIM, &p, &index), AVQ_ERR_INVALID);
}

/* ---- persistence ---- */

static char *temp_path(const char *name) {
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/avq-test-XXXXXX");
        cr_assert_not_null(mkdtemp(dir));
    }
    char *p = malloc(128);
    snprintf(p, 128, "%s/%s", dir, name);
    return p;
}

static void expect_same_results(avq_index *a, avq_index *b) {
    avq_search_params sp;
    avq_search_params_init(&sp);
    int64_t ia[K], ib[K];
    float sa[K], sb[K];
    for (size_t q = 0; q < NQ; q++) {
        cr_assert_eq(avq_index_search(a, queries + q * DIM, &sp, ia, sa), AVQ_OK);
        cr_assert_eq(avq_index_search(b, queries + q * DIM, &sp, ib, sb), AVQ_OK, "%s",
                     avq_last_error());
        cr_assert_arr_eq(ia, ib, sizeof ia);
        cr_assert_arr_eq(sa, sb, sizeof sa);
    }
}

static void round_trip(avq_metric metric, int bits, avq_reorder reorder) {
    avq_index *index = build(metric, bits, reorder, 40), *loaded = NULL;
    char *path = temp_path("rt.avq");
    cr_assert_eq(avq_index_save(index, path), AVQ_OK, "%s", avq_last_error());
    unsigned modes[] = {AVQ_LOAD_COPY, AVQ_LOAD_MMAP, AVQ_LOAD_MMAP | AVQ_LOAD_SKIP_CHECKSUMS};
    for (int m = 0; m < 3; m++) {
        cr_assert_eq(avq_index_load(path, modes[m], &loaded), AVQ_OK, "%s", avq_last_error());
        cr_assert_eq(avq_index_size(loaded), (size_t)N);
        /* a trusted mmap load builds the id map on first need, not at load */
        if (modes[m] & AVQ_LOAD_SKIP_CHECKSUMS)
            cr_assert_lt(avq_index_memory_bytes(loaded), avq_index_memory_bytes(index));
        else cr_assert_eq(avq_index_memory_bytes(loaded), avq_index_memory_bytes(index));
        expect_same_results(index, loaded);
        avq_index_free(loaded);
    }
    unlink(path);
    free(path);
    avq_index_free(index);
}

Test(index, save_load_round_trip_cos_4bit) { round_trip(AVQ_METRIC_COSINE, 4, AVQ_REORDER_FLOAT); }
Test(index, save_load_round_trip_l2_8bit_int8) { round_trip(AVQ_METRIC_L2, 8, AVQ_REORDER_INT8); }
Test(index, save_load_round_trip_dot_4bit_float16) {
    round_trip(AVQ_METRIC_DOT, 4, AVQ_REORDER_FLOAT16);
}

/* A float16 index keeps each vector rounded to the nearest half: get
 * returns exactly that, a search scores it (the float kernel's arithmetic
 * on the rounded rows), and a vector with a component beyond the half
 * range is refused with the index unchanged -- never stored as infinity. */
Test(index, float16_rows_are_the_rounded_vectors) {
    avq_index *index = build(AVQ_METRIC_DOT, 4, AVQ_REORDER_FLOAT16, 40);
    int64_t ids[3] = {0, 517, N - 1};
    float got[3 * DIM];
    cr_assert_eq(avq_index_get(index, ids, 3, got), AVQ_OK, "%s", avq_last_error());
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < DIM; j++) {
            float x = base[(size_t)ids[i] * DIM + j];
            float want = avq_float_from_half(avq_half_from_float(x));
            cr_assert(got[i * DIM + j] == want, "id %lld dim %zu: %a, want %a (from %a)",
                      (long long)ids[i], j, (double)got[i * DIM + j], (double)want, (double)x);
        }
    /* the best score of a query is its inner product with a rounded row */
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.k = 1;
    int64_t best;
    float score;
    cr_assert_eq(avq_index_search(index, queries, &sp, &best, &score), AVQ_OK);
    float row[DIM];
    cr_assert_eq(avq_index_get(index, &best, 1, row), AVQ_OK);
    double dot = 0, mag = 0;
    for (size_t j = 0; j < DIM; j++) {
        dot += (double)queries[j] * row[j];
        mag += fabs((double)queries[j] * row[j]);
    }
    cr_assert(fabs(score - dot) <= 1e-5 * mag, "score %g, <q, rounded row> %g", (double)score, dot);
    /* out of range: refused, nothing added */
    float big[DIM];
    memcpy(big, base, sizeof big);
    big[5] = 70000.0f;
    size_t before = avq_index_size(index);
    int64_t id = 900000;
    cr_assert_eq(avq_index_add(index, big, 1, &id, 1, NULL), AVQ_ERR_INVALID);
    cr_assert(strstr(avq_last_error(), "row 0: component 5") && strstr(avq_last_error(), "float16"),
              "%s", avq_last_error());
    cr_assert_eq(avq_index_size(index), before);
    big[5] = 65504.0f; /* the largest half is fine */
    cr_assert_eq(avq_index_add(index, big, 1, &id, 1, NULL), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(avq_index_get(index, &id, 1, row), AVQ_OK);
    cr_assert(row[5] == 65504.0f);
    avq_index_free(index);
    /* and at build time */
    float *x = malloc((size_t)N * DIM * sizeof *x);
    memcpy(x, base, (size_t)N * DIM * sizeof *x);
    x[123 * DIM + 7] = -1e6f;
    avq_build_params p;
    avq_build_params_init(&p, AVQ_METRIC_DOT);
    p.reorder = AVQ_REORDER_FLOAT16;
    p.num_leaves = 40;
    p.threads = 2;
    avq_index *bad = NULL;
    cr_assert_eq(avq_index_build(x, N, DIM, &p, &bad), AVQ_ERR_INVALID);
    cr_assert_null(bad);
    /* refused before the training, naming the row */
    cr_assert(strstr(avq_last_error(), "build: row 123: component 7") != NULL, "%s",
              avq_last_error());
    /* the exact tier keeps float rows: the same data is fine there */
    p.brute_force_below = 100000;
    cr_assert_eq(avq_index_build(x, N, DIM, &p, &bad), AVQ_OK, "%s", avq_last_error());
    avq_index_free(bad);
    free(x);
}

static void write_bytes(const char *path, const unsigned char *data, size_t len) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

Test(index, corrupt_files_are_rejected) {
    avq_build_params p;
    avq_build_params_init(&p, AVQ_METRIC_DOT);
    p.brute_force_below = 100;
    p.num_leaves = 4;
    avq_index *index = NULL, *loaded = NULL;
    cr_assert_eq(avq_index_build(base, 600, DIM, &p, &index), AVQ_OK, "%s", avq_last_error());
    char *path = temp_path("good.avq"), *bad = temp_path("bad.avq");
    cr_assert_eq(avq_index_save(index, path), AVQ_OK);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    size_t size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc(size), *copy = malloc(size);
    cr_assert_eq(fread(data, 1, size, f), size);
    fclose(f);
    /* truncation anywhere */
    for (size_t cut = 0; cut < size; cut += 1 + cut / 3) {
        write_bytes(bad, data, cut);
        int st = avq_index_load(bad, AVQ_LOAD_COPY, &loaded);
        cr_assert(st == AVQ_ERR_FORMAT, "truncated at %zu: status %d", cut, st);
        cr_assert_null(loaded);
    }
    /* a flipped bit anywhere in the header, the section table or a section
     * is caught (header checksum or section CRC); only a flip in the zero
     * padding between sections (which no checksum covers) loads, and it
     * must then load.  Where the sections lie comes from fuzz/avq_file.h. */
    avqf_section secs[AVQF_MAX_SECTIONS];
    size_t count = avqf_sections(data, size, secs, AVQF_MAX_SECTIONS);
    cr_assert_geq(count, 5, "section table not understood");
    size_t covered = 0, padding = 0;
    for (size_t at = 0; at < size; at += 1 + at / 5) {
        bool checked = at < AVQF_HEADER + count * AVQF_ENTRY;
        for (size_t s = 0; s < count && !checked; s++)
            checked = at >= secs[s].offset && at - secs[s].offset < secs[s].length;
        memcpy(copy, data, size);
        copy[at] ^= (unsigned char)(1u << (at % 8));
        write_bytes(bad, copy, size);
        loaded = NULL;
        int st = avq_index_load(bad, AVQ_LOAD_COPY, &loaded);
        if (checked) {
            cr_assert_eq(st, AVQ_ERR_FORMAT, "flip at %zu (checksummed): status %d", at, st);
            cr_assert_null(loaded);
            covered++;
        } else {
            cr_assert_eq(st, AVQ_OK, "flip at %zu (padding): status %d: %s", at, st,
                         avq_last_error());
            avq_index_free(loaded);
            padding++;
        }
    }
    cr_assert_gt(covered, 20, "only %zu flips landed in checksummed bytes (%zu in padding)",
                 covered, padding);
    char *missing = temp_path("missing.avq");
    cr_assert_eq(avq_index_load(missing, 0, &loaded), AVQ_ERR_IO);
    free(missing);
    unlink(bad);
    unlink(path);
    free(data);
    free(copy);
    free(path);
    free(bad);
    avq_index_free(index);
}
