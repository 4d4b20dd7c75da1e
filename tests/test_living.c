/*
 * test_living.c -- the index that changes: train once, then add, upsert,
 * remove, compact, retrain; the all-or-nothing rule of the writers; ids;
 * stats; and the struct_size convention.  Everything is checked through
 * include/avq.h only.  Saving and loading changed indexes, corrupt version-2
 * files and kill -9 during a save are in test_living_io.c; concurrent
 * writers and searchers in test_stress.c.
 *
 * Equalities here are exact where the header promises them (a removed id is
 * never returned; a failed write changes nothing; compaction and
 * save/load change no result), and recall floors where it does not (build
 * keeps the leaves training gave the rows, train + add assigns each row to
 * its nearest leaf: the two indexes need not be identical).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>

#include "living_common.h"

enum { N = 6000, DIM = 24, NQ = 100, K = 10, LEAVES = 24, BRUTE = 500 };

static float *base, *queries;

static void setup(void) {
    base = lv_clustered(N, DIM, 21);
    queries = lv_clustered(NQ, DIM, 22);
}
static void teardown(void) {
    free(base);
    free(queries);
    lv_tmpdir_remove();
}

TestSuite(living, .init = setup, .fini = teardown, .timeout = 60);

static avq_build_params pq_params(avq_metric metric) {
    return lv_params(metric, 4, AVQ_REORDER_FLOAT, LEAVES, BRUTE);
}

/* recall@K with `leaves` leaves and `pre` candidates against the exact
 * answer over rows 0..n-1 of base (ids = row numbers). */
static double recall_of(const avq_index *index, avq_metric metric, size_t n, size_t leaves,
                        size_t pre) {
    int64_t *truth = lv_truth(base, NULL, n, DIM, queries, NQ, metric, K);
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.k = K;
    sp.leaves_to_search = leaves;
    sp.pre_reorder = pre;
    lv_results r = lv_search(index, queries, NQ, &sp, "recall");
    double rec = lv_recall(r.ids, truth, NQ, K);
    lv_results_free(&r);
    free(truth);
    return rec;
}

/* ---- build and train + create + add ----------------------------------------- */

Test(living, build_is_deterministic_for_a_seed) {
    avq_build_params p = pq_params(AVQ_METRIC_DOT);
    avq_index *a = lv_build(base, N, DIM, &p), *b = lv_build(base, N, DIM, &p);
    avq_search_params sp = lv_default(a, K);
    lv_results ra = lv_search(a, queries, NQ, &sp, "first build");
    lv_results rb = lv_search(b, queries, NQ, &sp, "second build");
    lv_expect_same(&ra, &rb, "two builds with one seed");
    size_t za, zb;
    uint8_t *ba = lv_bytes(a, &za), *bb = lv_bytes(b, &zb);
    cr_expect(za == zb && memcmp(ba, bb, za) == 0, "two builds with one seed save different bytes");
    /* the thread count is no part of the result */
    p.threads = 1;
    avq_index *c = lv_build(base, N, DIM, &p);
    lv_results rc = lv_search(c, queries, NQ, &sp, "one-thread build");
    lv_expect_same(&ra, &rc, "build with 2 threads vs 1");
    free(ba);
    free(bb);
    lv_results_free(&ra);
    lv_results_free(&rb);
    lv_results_free(&rc);
    avq_index_free(a);
    avq_index_free(b);
    avq_index_free(c);
}

static void train_add_vs_build(avq_metric metric, avq_reorder reorder, double floor) {
    avq_build_params p = lv_params(metric, 4, reorder, LEAVES, BRUTE);
    avq_index *built = lv_build(base, N, DIM, &p);
    avq_quantizer *q = NULL;
    cr_assert_eq(avq_quantizer_train(base, N, DIM, &p, &q), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(avq_quantizer_dim(q), (size_t)DIM);
    cr_assert_eq(avq_quantizer_metric(q), metric);
    cr_assert_eq(avq_quantizer_num_leaves(q), (size_t)LEAVES);
    avq_index *added = NULL;
    cr_assert_eq(avq_index_create(q, &added), AVQ_OK, "%s", avq_last_error());
    avq_quantizer_free(q); /* the index keeps its own reference */
    cr_assert_eq(avq_index_size(added), 0);
    int64_t *ids = malloc(N * sizeof *ids);
    cr_assert_eq(avq_index_add(added, base, N, NULL, 2, ids), AVQ_OK, "%s", avq_last_error());
    for (size_t i = 0; i < N; i++) cr_assert_eq(ids[i], (int64_t)i, "automatic id %zu", i);
    cr_assert_eq(avq_index_size(added), (size_t)N);
    cr_assert_eq(avq_index_size(built), (size_t)N);
    cr_assert_eq(avq_index_num_leaves(added), avq_index_num_leaves(built));
    cr_assert_eq(lv_stats(added).next_id, N);
    cr_assert_eq(lv_stats(built).next_id, N);
    double rb = recall_of(built, metric, N, 8, 100), ra = recall_of(added, metric, N, 8, 100);
    cr_expect(rb >= floor, "%s build: recall@10 %.3f below %.2f", avq_metric_name(metric), rb, floor);
    cr_expect(ra >= floor, "%s train+add: recall@10 %.3f below %.2f", avq_metric_name(metric), ra,
              floor);
    cr_expect(fabs(ra - rb) <= 0.05, "%s: build %.3f vs train+add %.3f", avq_metric_name(metric), rb,
              ra);
    /* both are (nearly) exact over every leaf with a full re-rank */
    if (reorder == AVQ_REORDER_FLOAT) {
        double eb = recall_of(built, metric, N, LEAVES, N), ea = recall_of(added, metric, N, LEAVES, N);
        cr_expect(eb >= 0.999 && ea >= 0.999, "exhaustive recall: build %.4f, train+add %.4f", eb, ea);
    }
    free(ids);
    avq_index_free(built);
    avq_index_free(added);
}

Test(living, train_add_matches_build_dot) { train_add_vs_build(AVQ_METRIC_DOT, AVQ_REORDER_FLOAT, 0.85); }
Test(living, train_add_matches_build_l2_int8) { train_add_vs_build(AVQ_METRIC_L2, AVQ_REORDER_INT8, 0.80); }
Test(living, train_add_matches_build_cos) { train_add_vs_build(AVQ_METRIC_COSINE, AVQ_REORDER_FLOAT, 0.85); }

/* The exact tier has no leaves to disagree on: build and train + add are
 * the same index. */
Test(living, exact_tier_build_equals_train_add) {
    size_t n = BRUTE - 1;
    avq_build_params p = lv_params(AVQ_METRIC_L2, 4, AVQ_REORDER_FLOAT, 0, BRUTE);
    avq_index *built = lv_build(base, n, DIM, &p);
    avq_quantizer *q = NULL;
    avq_index *added = NULL;
    cr_assert_eq(avq_quantizer_train(base, n, DIM, &p, &q), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(avq_index_create(q, &added), AVQ_OK);
    cr_assert_eq(avq_index_add(added, base, n, NULL, 1, NULL), AVQ_OK, "%s", avq_last_error());
    avq_search_params sp = lv_default(built, K);
    lv_results a = lv_search(built, queries, NQ, &sp, "built"), b = lv_search(added, queries, NQ, &sp, "added");
    lv_expect_same(&a, &b, "exact tier: build vs train+add");
    int64_t *truth = lv_truth(base, NULL, n, DIM, queries, NQ, AVQ_METRIC_L2, K);
    cr_assert_arr_eq(a.ids, truth, NQ * K * sizeof *truth, "the exact tier is not exact");
    free(truth);
    lv_results_free(&a);
    lv_results_free(&b);
    avq_quantizer_free(q);
    avq_index_free(built);
    avq_index_free(added);
}

/* ---- adding under caller ids ------------------------------------------------- */

/* Train on the first half of base, add rows of the second half under
 * scattered 64-bit ids; each added row, used as the query, must come back
 * first under its own id (dot on unit vectors: nothing beats x itself;
 * l2: distance 0). */
static void finds_itself(avq_metric metric, bool exact_tier) {
    enum { M = 1500 };
    float *x = lv_copy(base, N * DIM);
    if (metric == AVQ_METRIC_DOT) lv_normalize(x, N, DIM);
    size_t train_n = exact_tier ? BRUTE - 1 : N / 2;
    avq_build_params p = lv_params(metric, 4, AVQ_REORDER_FLOAT, exact_tier ? 0 : LEAVES, BRUTE);
    avq_quantizer *q = NULL;
    avq_index *index = NULL;
    cr_assert_eq(avq_quantizer_train(x, train_n, DIM, &p, &q), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(avq_index_create(q, &index), AVQ_OK);
    avq_quantizer_free(q);
    const float *rows = x + (N / 2) * DIM;
    int64_t ids[M], out[M];
    for (size_t i = 0; i < M; i++) ids[i] = ((int64_t)1 << 40) + 7 * (int64_t)i * (int64_t)i + 3;
    /* in three calls, the last with one row */
    cr_assert_eq(avq_index_add(index, rows, 1000, ids, 2, out), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(avq_index_add(index, rows + 1000 * DIM, M - 1001, ids + 1000, 1, out + 1000), AVQ_OK,
                 "%s", avq_last_error());
    cr_assert_eq(avq_index_add(index, rows + (M - 1) * DIM, 1, ids + M - 1, 0, out + M - 1), AVQ_OK,
                 "%s", avq_last_error());
    cr_assert_arr_eq(out, ids, sizeof ids, "ids_out differs from the caller's ids");
    cr_assert_eq(avq_index_size(index), (size_t)M);
    avq_index_stats st = lv_stats(index);
    cr_assert_eq(st.live, (size_t)M);
    cr_assert_eq(st.dead, 0);
    cr_assert_eq(st.next_id, ids[M - 1] + 1, "next_id %lld", (long long)st.next_id);
    avq_search_params sp = lv_exhaustive(index, 5, 100);
    avq_search_params dp = lv_default(index, 5);
    size_t default_hits = 0;
    for (size_t i = 0; i < M; i++) {
        int64_t got[5];
        float sc[5];
        cr_assert_eq(avq_index_search(index, rows + i * DIM, &sp, got, sc), AVQ_OK, "%s", avq_last_error());
        lv_check_row(got, sc, 5, metric, "self query", i);
        cr_assert_eq(got[0], ids[i], "%s%s: row %zu found %lld first, not its id %lld",
                     avq_metric_name(metric), exact_tier ? " exact tier" : "", i, (long long)got[0],
                     (long long)ids[i]);
        if (metric == AVQ_METRIC_L2)
            cr_assert(sc[0] <= 1e-4f, "distance to itself %g", (double)sc[0]);
        else
            cr_assert(fabsf(sc[0] - 1.0f) <= 1e-4f, "score with itself %g", (double)sc[0]);
        cr_assert_eq(avq_index_contains(index, ids[i]), 1);
        cr_assert_eq(avq_index_search(index, rows + i * DIM, &dp, got, NULL), AVQ_OK);
        default_hits += got[0] == ids[i];
    }
    cr_expect(default_hits >= M * 9 / 10, "default parameters find only %zu of %d rows themselves",
              default_hits, M);
    /* ids never given are not there */
    cr_assert_eq(avq_index_contains(index, 0), 0);
    cr_assert_eq(avq_index_contains(index, ids[1] + 1), 0);
    cr_assert_eq(avq_index_contains(index, AVQ_NO_ID), 0);
    /* get returns the rows (FLOAT reorder keeps them exactly) */
    float *got = malloc(M * DIM * sizeof *got);
    cr_assert_eq(avq_index_get(index, ids, M, got), AVQ_OK, "%s", avq_last_error());
    cr_assert_arr_eq(got, rows, M * DIM * sizeof *got, "get does not return the added rows");
    free(got);
    avq_index_free(index);
    free(x);
}

Test(living, added_rows_find_themselves_dot_pq) { finds_itself(AVQ_METRIC_DOT, false); }
Test(living, added_rows_find_themselves_l2_pq) { finds_itself(AVQ_METRIC_L2, false); }
Test(living, added_rows_find_themselves_dot_exact) { finds_itself(AVQ_METRIC_DOT, true); }
Test(living, added_rows_find_themselves_l2_exact) { finds_itself(AVQ_METRIC_L2, true); }

Test(living, automatic_ids_contains_get_stats) {
    avq_build_params p = pq_params(AVQ_METRIC_L2);
    avq_quantizer *q = NULL;
    avq_index *index = NULL;
    cr_assert_eq(avq_quantizer_train(base, N, DIM, &p, &q), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(avq_index_create(q, &index), AVQ_OK);
    cr_assert_eq(lv_stats(index).next_id, 0);
    int64_t out[16];
    cr_assert_eq(avq_index_add(index, base, 10, NULL, 1, out), AVQ_OK, "%s", avq_last_error());
    for (int i = 0; i < 10; i++) cr_assert_eq(out[i], i);
    cr_assert_eq(lv_stats(index).next_id, 10);
    int64_t mine[2] = {100, 50};
    cr_assert_eq(avq_index_add(index, base + 10 * DIM, 2, mine, 1, NULL), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(lv_stats(index).next_id, 101, "next id is one more than the largest held");
    cr_assert_eq(avq_index_add(index, base + 12 * DIM, 3, NULL, 1, out), AVQ_OK);
    cr_assert(out[0] == 101 && out[1] == 102 && out[2] == 103, "%lld %lld %lld", (long long)out[0],
              (long long)out[1], (long long)out[2]);
    /* ... ever held: removing the largest does not give its id back */
    int64_t gone = 103;
    size_t removed = 99;
    cr_assert_eq(avq_index_remove(index, &gone, 1, &removed), AVQ_OK);
    cr_assert_eq(removed, 1);
    cr_assert_eq(lv_stats(index).next_id, 104);
    cr_assert_eq(avq_index_add(index, base + 15 * DIM, 1, NULL, 1, out), AVQ_OK);
    cr_assert_eq(out[0], 104);
    /* n = 0 is a no-op */
    cr_assert_eq(avq_index_add(index, base, 0, NULL, 1, NULL), AVQ_OK);
    cr_assert_eq(avq_index_size(index), 15);
    cr_assert_eq(avq_index_contains(index, 100), 1);
    cr_assert_eq(avq_index_contains(index, 50), 1);
    cr_assert_eq(avq_index_contains(index, 103), 0);
    cr_assert_eq(avq_index_contains(index, 55), 0);
    float got[2 * DIM];
    cr_assert_eq(avq_index_get(index, mine, 2, got), AVQ_OK, "%s", avq_last_error());
    cr_assert_arr_eq(got, base + 10 * DIM, sizeof got);
    int64_t missing[2] = {50, 55};
    cr_assert_eq(avq_index_get(index, missing, 2, got), AVQ_ERR_INVALID);
    cr_expect(strstr(avq_last_error(), "55") != NULL, "message does not name the id: %s", avq_last_error());
    cr_assert_eq(avq_index_get(index, &gone, 1, got), AVQ_ERR_INVALID, "get of a removed id");

    avq_index_stats st = lv_stats(index);
    cr_assert_eq(st.struct_size, sizeof st);
    cr_assert_eq(st.live, 15);
    cr_assert_eq(st.live, avq_index_size(index));
    cr_assert_eq(st.leaves, (size_t)LEAVES);
    cr_assert_leq(st.empty_leaves, st.leaves);
    cr_assert_geq(st.empty_leaves, (size_t)LEAVES - 15, "15 vectors fill at most 15 leaves");
    cr_assert_leq(st.min_leaf, st.max_leaf);
    cr_assert_eq(st.min_leaf, 0, "some leaf must be empty");
    cr_assert_float_eq(st.mean_leaf, 15.0 / LEAVES, 1e-9);
    cr_assert_leq(st.mean_leaf, (double)st.max_leaf);
    cr_assert_geq(st.leaf_cv, 0.0);
    cr_assert_eq(st.memory_bytes, avq_index_memory_bytes(index));
    cr_assert(st.max_leaf_dead >= 0 && st.max_leaf_dead <= 1);
    cr_assert_leq(st.dead, 1, "one removal leaves at most one dead slot");
    avq_index_free(index);
    avq_quantizer_free(q);
}

Test(living, stats_of_a_built_index) {
    avq_build_params p = pq_params(AVQ_METRIC_DOT);
    avq_index *index = lv_build(base, N, DIM, &p);
    avq_index_stats st = lv_stats(index);
    cr_assert_eq(st.live, (size_t)N);
    cr_assert_eq(st.dead, 0);
    cr_assert_eq(st.leaves, (size_t)LEAVES);
    cr_assert_float_eq(st.mean_leaf, (double)N / LEAVES, 1e-9);
    cr_assert(st.min_leaf <= st.mean_leaf && st.mean_leaf <= st.max_leaf);
    cr_assert(st.leaf_cv >= 0 && st.leaf_cv < 3, "leaf_cv %g", st.leaf_cv);
    cr_assert_eq(st.max_leaf_dead, 0.0);
    cr_assert_eq(st.next_id, N);
    cr_assert_eq(st.memory_bytes, avq_index_memory_bytes(index));
    /* a leaf with no live vector is an empty leaf */
    cr_assert((st.empty_leaves > 0) == (st.min_leaf == 0));
    /* drift: rows far from the training data all land in few leaves and
     * the spread of leaf sizes grows */
    float *far = lv_clustered(3000, DIM, 99);
    for (size_t i = 0; i < 3000 * DIM; i++) far[i] = far[i] * 0.1f + 5.0f;
    cr_assert_eq(avq_index_add(index, far, 3000, NULL, 2, NULL), AVQ_OK, "%s", avq_last_error());
    avq_index_stats drifted = lv_stats(index);
    cr_assert_eq(drifted.live, (size_t)N + 3000);
    cr_expect(drifted.leaf_cv > st.leaf_cv, "leaf_cv %g -> %g after a skewed add", st.leaf_cv,
              drifted.leaf_cv);
    cr_assert_geq(drifted.max_leaf, st.max_leaf);
    free(far);
    avq_index_free(index);
}

/* ---- remove and compact ---------------------------------------------------------- */

/* Random distinct ids among 0..n-1 (fraction of them), sorted by the order
 * drawn; `mark` (n entries) is set for every chosen id. */
static int64_t *pick(size_t n, double fraction, uint64_t seed, bool *mark, size_t *count) {
    uint64_t rng = seed;
    int64_t *out = malloc(n * sizeof *out);
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (!mark[i] && lv_unit(&rng) < fraction) {
            mark[i] = true;
            out[c++] = (int64_t)i;
        }
    /* shuffle: removal order must not matter */
    for (size_t i = c; i > 1; i--) {
        size_t j = lv_rng(&rng) % i;
        int64_t t = out[i - 1];
        out[i - 1] = out[j];
        out[j] = t;
    }
    *count = c;
    return out;
}

static void expect_none_removed(const avq_index *index, const bool *removed, size_t n,
                                const avq_search_params *sp, const char *what) {
    lv_results r = lv_search(index, queries, NQ, sp, what);
    bool every_leaf = sp->leaves_to_search == avq_index_num_leaves(index);
    for (size_t i = 0; i < NQ * sp->k; i++) {
        /* the leaves a default search visits may hold fewer than k */
        if (r.ids[i] == AVQ_NO_ID && !every_leaf) continue;
        cr_assert(r.ids[i] != AVQ_NO_ID, "%s: -1 at %zu with %zu live vectors", what, i,
                  avq_index_size(index));
        cr_assert(r.ids[i] >= 0 && (size_t)r.ids[i] < n, "%s: id %lld", what, (long long)r.ids[i]);
        cr_assert(!removed[r.ids[i]], "%s: query %zu returned removed id %lld", what, i / sp->k,
                  (long long)r.ids[i]);
    }
    lv_results_free(&r);
}

Test(living, removed_ids_are_never_returned) {
    avq_build_params p = pq_params(AVQ_METRIC_DOT);
    avq_index *index = lv_build(base, N, DIM, &p);
    cr_assert_eq(avq_index_set_compact_threshold(index, 0), AVQ_OK);
    bool *gone = calloc(N, 1);
    size_t count;
    int64_t *ids = pick(N, 0.4, 5, gone, &count);
    /* plus ids never held, counted as not present */
    int64_t *with_unknown = malloc((count + 50) * sizeof *with_unknown);
    memcpy(with_unknown, ids, count * sizeof *ids);
    for (size_t i = 0; i < 50; i++) with_unknown[count + i] = N + 1000 + (int64_t)i;
    size_t removed = 0;
    cr_assert_eq(avq_index_remove(index, with_unknown, count + 50, &removed), AVQ_OK, "%s",
                 avq_last_error());
    cr_assert_eq(removed, count, "removed %zu of %zu present", removed, count);
    cr_assert_eq(avq_index_size(index), N - count);
    avq_index_stats st = lv_stats(index);
    cr_assert_eq(st.live, N - count);
    cr_assert_eq(st.dead, count, "compaction is off: every removal leaves a dead slot");
    cr_assert_eq(st.next_id, N);
    cr_assert(st.max_leaf_dead > 0.2 && st.max_leaf_dead < 0.8, "max_leaf_dead %g", st.max_leaf_dead);
    for (size_t i = 0; i < N; i++) cr_assert_eq(avq_index_contains(index, (int64_t)i), !gone[i]);
    /* large k, default and exhaustive settings, single and batch */
    avq_search_params dp = lv_default(index, 100), ep = lv_exhaustive(index, 100, N);
    expect_none_removed(index, gone, N, &dp, "default, k 100");
    expect_none_removed(index, gone, N, &ep, "exhaustive, k 100");
    int64_t *batch = malloc(NQ * 100 * sizeof *batch);
    cr_assert_eq(avq_index_search_batch(index, queries, NQ, &dp, 2, batch, NULL), AVQ_OK);
    for (size_t i = 0; i < NQ * 100; i++)
        cr_assert(batch[i] == AVQ_NO_ID || (batch[i] >= 0 && batch[i] < N && !gone[batch[i]]), "batch: %lld",
                  (long long)batch[i]);
    free(batch);
    /* the live set is searched as well as before: exhaustive = exact */
    float *live = malloc(N * DIM * sizeof *live);
    int64_t *live_ids = malloc(N * sizeof *live_ids);
    size_t nl = 0;
    for (size_t i = 0; i < N; i++)
        if (!gone[i]) {
            memcpy(live + nl * DIM, base + i * DIM, DIM * sizeof *live);
            live_ids[nl++] = (int64_t)i;
        }
    int64_t *truth = lv_truth(live, live_ids, nl, DIM, queries, NQ, AVQ_METRIC_DOT, K);
    avq_search_params ek = lv_exhaustive(index, K, N);
    lv_results r = lv_search(index, queries, NQ, &ek, "exhaustive k 10");
    double rec = lv_recall(r.ids, truth, NQ, K);
    cr_expect(rec >= 0.999, "exhaustive recall over the live set %.4f", rec);
    lv_results_free(&r);
    /* removing again: nothing present, nothing changes */
    cr_assert_eq(avq_index_remove(index, ids, count, &removed), AVQ_OK);
    cr_assert_eq(removed, 0);
    cr_assert_eq(avq_index_size(index), N - count);
    cr_assert_eq(avq_index_remove(index, NULL, 0, &removed), AVQ_OK, "n = 0 with NULL ids");
    cr_assert_eq(removed, 0);
    /* remove everything: searches give -1 / NaN, stats say so */
    bool *all = calloc(N, 1);
    size_t rest_n;
    int64_t *rest = pick(N, 2.0, 6, all, &rest_n);
    cr_assert_eq(avq_index_remove(index, rest, rest_n, &removed), AVQ_OK);
    cr_assert_eq(removed, N - count);
    cr_assert_eq(avq_index_size(index), 0);
    int64_t none[K];
    float ns[K];
    avq_search_params sp = lv_default(index, K);
    cr_assert_eq(avq_index_search(index, queries, &sp, none, ns), AVQ_OK, "%s", avq_last_error());
    for (int i = 0; i < K; i++) cr_assert(none[i] == AVQ_NO_ID && isnan(ns[i]), "rank %d: %lld", i, (long long)none[i]);
    cr_assert_eq(lv_stats(index).live, 0);
    cr_assert_eq(lv_stats(index).empty_leaves, (size_t)LEAVES);
    free(rest);
    free(all);
    free(truth);
    free(live);
    free(live_ids);
    free(with_unknown);
    free(ids);
    free(gone);
    avq_index_free(index);
}

/* Three identical copies of one index (load_bytes of one build). */
static void three_copies(avq_metric metric, avq_index **c) {
    avq_build_params p = pq_params(metric);
    avq_index *index = lv_build(base, N, DIM, &p);
    size_t size;
    uint8_t *bytes = lv_bytes(index, &size);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(avq_index_load_bytes(bytes, size, &c[i]), AVQ_OK, "%s", avq_last_error());
    free(bytes);
    avq_index_free(index);
}

Test(living, compaction_changes_no_result) {
    avq_index *c[3];
    three_copies(AVQ_METRIC_L2, c);
    avq_index *off = c[0], *explicit_ = c[1], *autom = c[2];
    cr_assert_eq(avq_index_set_compact_threshold(off, 0), AVQ_OK);
    cr_assert_eq(avq_index_set_compact_threshold(explicit_, 0), AVQ_OK);
    /* default threshold 0.5 for autom */
    bool *gone = calloc(N, 1);
    size_t total = 0, removed;
    for (int round = 0; round < 7; round++) {
        size_t count;
        int64_t *ids = pick(N, 0.1 / (1 - 0.1 * round), 100 + round, gone, &count);
        for (int i = 0; i < 3; i++) {
            cr_assert_eq(avq_index_remove(c[i], ids, count, &removed), AVQ_OK, "%s", avq_last_error());
            cr_assert_eq(removed, count);
        }
        total += count;
        free(ids);
    }
    cr_assert(total > N * 6 / 10 && total < N * 8 / 10, "removed %zu", total);
    avq_index_stats so = lv_stats(off), sa = lv_stats(autom);
    cr_assert_eq(so.dead, total);
    cr_assert_eq(sa.live, N - total);
    cr_assert_lt(sa.dead, total, "automatic compaction never ran (dead %zu)", sa.dead);
    cr_assert_leq(sa.max_leaf_dead, 0.5, "a leaf past the threshold was left: %g", sa.max_leaf_dead);
    cr_expect_lt(sa.memory_bytes, so.memory_bytes, "compacted leaves hold no less memory");

    avq_search_params sp = lv_exhaustive(off, K, N);
    lv_results before = lv_search(off, queries, NQ, &sp, "compaction off");
    lv_results ra = lv_search(autom, queries, NQ, &sp, "compacted automatically");
    lv_expect_same(&before, &ra, "automatic compaction");

    /* explicit: a fraction no leaf reaches rewrites nothing */
    size_t compacted = 99;
    avq_index_stats se = lv_stats(explicit_);
    cr_assert_eq(avq_index_compact(explicit_, 1.0, &compacted), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(compacted, 0, "no leaf is all dead");
    cr_assert_eq(lv_stats(explicit_).dead, se.dead);
    cr_assert_eq(avq_index_compact(explicit_, 0.0, &compacted), AVQ_OK, "%s", avq_last_error());
    cr_assert(compacted >= 1 && compacted <= (size_t)LEAVES, "compacted %zu leaves", compacted);
    avq_index_stats after = lv_stats(explicit_);
    cr_assert_eq(after.dead, 0);
    cr_assert_eq(after.max_leaf_dead, 0.0);
    cr_assert_eq(after.live, N - total);
    cr_expect_lt(after.memory_bytes, se.memory_bytes, "compaction reclaimed nothing");
    lv_results re = lv_search(explicit_, queries, NQ, &sp, "compacted explicitly");
    lv_expect_same(&before, &re, "explicit compaction");
    /* a second compaction has nothing to do */
    cr_assert_eq(avq_index_compact(explicit_, 0.0, &compacted), AVQ_OK);
    cr_assert_eq(compacted, 0);
    /* default search settings too: same candidates, same order */
    avq_search_params dp = lv_default(off, K);
    lv_results d0 = lv_search(off, queries, NQ, &dp, "off, default");
    lv_results d1 = lv_search(explicit_, queries, NQ, &dp, "compacted, default");
    cr_expect(lv_recall(d0.ids, d1.ids, NQ, K) >= 0.98, "default settings: compaction moved results");
    /* and the compacted index keeps working: adds are found */
    int64_t fresh[3];
    cr_assert_eq(avq_index_add(explicit_, queries, 3, NULL, 1, fresh), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(fresh[0], N);
    for (int i = 0; i < 3; i++) {
        int64_t got[K];
        cr_assert_eq(avq_index_search(explicit_, queries + i * DIM, &sp, got, NULL), AVQ_OK);
        cr_assert_eq(got[0], fresh[i]);
    }
    lv_results_free(&before);
    lv_results_free(&ra);
    lv_results_free(&re);
    lv_results_free(&d0);
    lv_results_free(&d1);
    free(gone);
    for (int i = 0; i < 3; i++) avq_index_free(c[i]);
}

/* ---- upsert ------------------------------------------------------------------- */

static void upsert_replaces(avq_metric metric, bool exact_tier) {
    size_t n = exact_tier ? BRUTE - 1 : N;
    avq_build_params p = lv_params(metric, 4, AVQ_REORDER_FLOAT, exact_tier ? 0 : LEAVES, BRUTE);
    avq_index *index = lv_build(base, n, DIM, &p);
    enum { E = 20, F = 10 };
    int64_t ids[E + F];
    for (int i = 0; i < E; i++) ids[i] = (int64_t)(i * 13 % n);
    for (int i = 0; i < F; i++) ids[E + i] = (int64_t)n + 500 + i;
    /* new vectors, far from the old ones */
    float *fresh = lv_clustered(E + F, DIM, 77);
    for (size_t i = 0; i < (E + F) * DIM; i++) fresh[i] = fresh[i] * 0.5f + 2.5f;
    size_t replaced = 99;
    cr_assert_eq(avq_index_upsert(index, fresh, E + F, ids, 2, &replaced), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(replaced, E);
    cr_assert_eq(avq_index_size(index), n + F);
    cr_assert_eq(lv_stats(index).next_id, (int64_t)n + 500 + F);
    float got[(E + F) * DIM];
    cr_assert_eq(avq_index_get(index, ids, E + F, got), AVQ_OK, "%s", avq_last_error());
    cr_assert_arr_eq(got, fresh, sizeof got, "get does not return the upserted vectors");
    avq_search_params sp = lv_exhaustive(index, K, n + F);
    for (int i = 0; i < E + F; i++) {
        int64_t r[K];
        float s[K];
        cr_assert_eq(avq_index_search(index, fresh + i * DIM, &sp, r, s), AVQ_OK);
        lv_check_row(r, s, K, metric, "upserted", (size_t)i);
        cr_assert_eq(r[0], ids[i], "upserted id %lld not found first (%lld)", (long long)ids[i], (long long)r[0]);
        cr_assert(s[0] <= 1e-4f, "distance %g", (double)s[0]);
    }
    /* the old vectors are gone: searching for them finds their neighbours,
     * never the replaced id at distance 0 */
    for (int i = 0; i < E; i++) {
        int64_t r[K];
        float s[K];
        cr_assert_eq(avq_index_search(index, base + ids[i] * DIM, &sp, r, s), AVQ_OK);
        for (int j = 0; j < K; j++)
            cr_assert(!(r[j] == ids[i] && s[j] < 1.0f), "old vector of %lld still found (score %g)",
                      (long long)ids[i], (double)s[j]);
    }
    /* upsert of ids all new is an add; ids are required */
    int64_t more[2] = {(int64_t)n + 900, (int64_t)n + 901};
    cr_assert_eq(avq_index_upsert(index, fresh, 2, more, 1, &replaced), AVQ_OK);
    cr_assert_eq(replaced, 0);
    cr_assert_eq(avq_index_upsert(index, fresh, 2, NULL, 1, &replaced), AVQ_ERR_INVALID);
    cr_assert_eq(avq_index_upsert(index, fresh, 0, more, 1, &replaced), AVQ_OK);
    cr_assert_eq(replaced, 0);
    /* upserting the same vector again replaces it with itself */
    cr_assert_eq(avq_index_upsert(index, fresh, 2, more, 1, &replaced), AVQ_OK);
    cr_assert_eq(replaced, 2);
    cr_assert_eq(avq_index_size(index), n + F + 2);
    free(fresh);
    avq_index_free(index);
}

Test(living, upsert_replaces_l2_pq) { upsert_replaces(AVQ_METRIC_L2, false); }
Test(living, upsert_replaces_l2_exact) { upsert_replaces(AVQ_METRIC_L2, true); }

/* ---- all or nothing ----------------------------------------------------------- */

typedef struct {
    avq_index_stats stats;
    size_t size;
    uint8_t *bytes;
    size_t nbytes;
    lv_results def, exh;
} fingerprint;

static fingerprint take(const avq_index *index) {
    fingerprint f;
    f.stats = lv_stats(index);
    f.size = avq_index_size(index);
    f.bytes = lv_bytes(index, &f.nbytes);
    avq_search_params dp = lv_default(index, K), ep = lv_exhaustive(index, K, N);
    f.def = lv_search(index, queries, NQ, &dp, "fingerprint default");
    f.exh = lv_search(index, queries, NQ, &ep, "fingerprint exhaustive");
    return f;
}

static void expect_unchanged(const avq_index *index, const fingerprint *f, const char *what) {
    fingerprint g = take(index);
    cr_assert_eq(g.size, f->size, "%s: size %zu -> %zu", what, f->size, g.size);
    cr_assert_eq(g.stats.live, f->stats.live, "%s", what);
    cr_assert_eq(g.stats.dead, f->stats.dead, "%s", what);
    cr_assert_eq(g.stats.next_id, f->stats.next_id, "%s: next_id changed", what);
    cr_assert_eq(g.stats.min_leaf, f->stats.min_leaf, "%s", what);
    cr_assert_eq(g.stats.max_leaf, f->stats.max_leaf, "%s", what);
    cr_expect_eq(g.stats.memory_bytes, f->stats.memory_bytes, "%s: memory_bytes %zu -> %zu", what,
                 f->stats.memory_bytes, g.stats.memory_bytes);
    lv_expect_same(&f->def, &g.def, what);
    lv_expect_same(&f->exh, &g.exh, what);
    cr_assert(g.nbytes == f->nbytes && memcmp(g.bytes, f->bytes, f->nbytes) == 0,
              "%s: the saved index differs", what);
    free(g.bytes);
    lv_results_free(&g.def);
    lv_results_free(&g.exh);
}

static void expect_refused(int st, const char *what, const char *needle) {
    cr_assert_eq(st, AVQ_ERR_INVALID, "%s: status %d (%s)", what, st, st ? avq_last_error() : "accepted");
    cr_assert(avq_last_error()[0], "%s: no message", what);
    if (needle)
        cr_expect(strstr(avq_last_error(), needle) != NULL, "%s: message does not name row %s: %s",
                  what, needle, avq_last_error());
}

Test(living, failed_writes_change_nothing) {
    avq_build_params p = pq_params(AVQ_METRIC_L2);
    avq_index *index = lv_build(base, N, DIM, &p);
    cr_assert_eq(avq_index_set_compact_threshold(index, 0), AVQ_OK);
    /* a changed index: some dead slots, caller ids */
    int64_t rm[300];
    for (int i = 0; i < 300; i++) rm[i] = i * 17;
    cr_assert_eq(avq_index_remove(index, rm, 300, NULL), AVQ_OK);
    fingerprint f = take(index);

    enum { R = 50 };
    float *rows = lv_clustered(R, DIM, 55);
    int64_t ids[R], out[R], sentinel[R];
    for (int i = 0; i < R; i++) ids[i] = 100000 + i;
    for (int i = 0; i < R; i++) out[i] = sentinel[i] = -77;
    size_t replaced = 1234;

    ids[41] = ids[3]; /* a duplicate within the call */
    expect_refused(avq_index_add(index, rows, R, ids, 2, out), "duplicate id in add", "41");
    expect_refused(avq_index_upsert(index, rows, R, ids, 2, &replaced), "duplicate id in upsert", "41");
    ids[41] = 100041;
    ids[37] = 5; /* present in the index */
    expect_refused(avq_index_add(index, rows, R, ids, 2, out), "id already present", "37");
    ids[37] = AVQ_NO_ID;
    expect_refused(avq_index_add(index, rows, R, ids, 2, out), "id -1 in add", "37");
    expect_refused(avq_index_upsert(index, rows, R, ids, 2, &replaced), "id -1 in upsert", "37");
    ids[37] = 100037;
    rows[37 * DIM + 4] = NAN;
    expect_refused(avq_index_add(index, rows, R, ids, 2, out), "NaN row", "37");
    expect_refused(avq_index_add(index, rows, R, NULL, 2, out), "NaN row, automatic ids", "37");
    expect_refused(avq_index_upsert(index, rows, R, ids, 2, &replaced), "NaN row in upsert", "37");
    rows[37 * DIM + 4] = INFINITY;
    expect_refused(avq_index_add(index, rows, R, ids, 2, out), "Inf row", "37");
    rows[37 * DIM + 4] = -INFINITY;
    expect_refused(avq_index_upsert(index, rows, R, ids, 2, &replaced), "-Inf row in upsert", "37");
    rows[37 * DIM + 4] = 0.5f;
    /* upsert: a failing row after rows that would replace present ids */
    int64_t mixed[R];
    for (int i = 0; i < R; i++) mixed[i] = i < 30 ? 1000 + i : 200000 + i;
    rows[45 * DIM] = NAN;
    expect_refused(avq_index_upsert(index, rows, R, mixed, 2, &replaced), "NaN after replacements", "45");
    rows[45 * DIM] = 0.25f;
    cr_assert_eq(avq_index_add(index, NULL, 3, NULL, 1, NULL), AVQ_ERR_INVALID, "NULL vectors");
    cr_assert_eq(avq_index_remove(index, NULL, 3, NULL), AVQ_ERR_INVALID, "NULL ids with n > 0");
    cr_assert_eq(avq_index_compact(index, 1.5, NULL), AVQ_ERR_INVALID);
    cr_assert_eq(avq_index_compact(index, -0.1, NULL), AVQ_ERR_INVALID);
    cr_assert_eq(avq_index_compact(index, NAN, NULL), AVQ_ERR_INVALID);
    cr_assert_eq(avq_index_set_compact_threshold(index, 1.5), AVQ_ERR_INVALID);
    cr_assert_eq(avq_index_set_compact_threshold(index, -0.5), AVQ_ERR_INVALID);
    cr_assert_eq(avq_index_set_compact_threshold(index, NAN), AVQ_ERR_INVALID);

    cr_assert_arr_eq(out, sentinel, sizeof out, "ids_out written by a failed add");
    cr_assert_eq(replaced, 1234, "*replaced written by a failed upsert");
    for (int i = 0; i < R; i++) {
        cr_assert_eq(avq_index_contains(index, 100000 + i), 0, "row %d of a failed add is there", i);
        cr_assert_eq(avq_index_contains(index, 200000 + i), 0);
    }
    expect_unchanged(index, &f, "after refused writes");
    /* the compaction threshold was not changed by the refused calls: a
     * removal still leaves its dead slot */
    int64_t one = 1;
    cr_assert_eq(avq_index_remove(index, &one, 1, NULL), AVQ_OK);
    cr_assert_eq(lv_stats(index).dead, f.stats.dead + 1);
    /* and a good call of the same shape works */
    cr_assert_eq(avq_index_add(index, rows, R, ids, 2, out), AVQ_OK, "%s", avq_last_error());
    cr_assert_arr_eq(out, ids, sizeof ids);
    free(f.bytes);
    lv_results_free(&f.def);
    lv_results_free(&f.exh);
    free(rows);
    avq_index_free(index);
}

Test(living, cosine_zero_row_is_refused) {
    for (int exact = 0; exact < 2; exact++) {
        size_t n = exact ? BRUTE - 1 : N;
        avq_build_params p = lv_params(AVQ_METRIC_COSINE, 4, AVQ_REORDER_FLOAT, exact ? 0 : LEAVES, BRUTE);
        avq_index *index = lv_build(base, n, DIM, &p);
        fingerprint f = take(index);
        float rows[4 * DIM];
        memcpy(rows, queries, sizeof rows);
        memset(rows + 2 * DIM, 0, DIM * sizeof *rows);
        int64_t ids[4] = {90000, 90001, 90002, 90003};
        expect_refused(avq_index_add(index, rows, 4, ids, 1, NULL), "zero row, cosine", "2");
        expect_refused(avq_index_upsert(index, rows, 4, ids, 1, NULL), "zero row, cosine upsert", "2");
        int64_t present[4] = {0, 1, 2, 3};
        expect_refused(avq_index_upsert(index, rows, 4, present, 1, NULL), "zero row replacing", "2");
        expect_unchanged(index, &f, exact ? "exact tier, zero row" : "zero row");
        /* a zero row is fine for dot and l2 (checked below); cosine stores
         * unit vectors: get returns the normalised row */
        rows[2 * DIM] = 3.0f;
        cr_assert_eq(avq_index_add(index, rows, 4, ids, 1, NULL), AVQ_OK, "%s", avq_last_error());
        float got[DIM];
        cr_assert_eq(avq_index_get(index, ids + 2, 1, got), AVQ_OK);
        cr_assert_float_eq(got[0], 1.0f, 1e-6f);
        for (int j = 1; j < DIM; j++) cr_assert_float_eq(got[j], 0.0f, 1e-6f);
        free(f.bytes);
        lv_results_free(&f.def);
        lv_results_free(&f.exh);
        avq_index_free(index);
    }
    avq_build_params p = pq_params(AVQ_METRIC_L2);
    avq_index *index = lv_build(base, N, DIM, &p);
    float zero[DIM] = {0};
    cr_assert_eq(avq_index_add(index, zero, 1, NULL, 1, NULL), AVQ_OK, "l2 takes a zero row: %s",
                 avq_last_error());
    avq_index_free(index);
}

/* ---- struct_size --------------------------------------------------------------- */

Test(living, struct_size_zero_is_refused) {
    avq_build_params p = pq_params(AVQ_METRIC_DOT);
    avq_index *index = lv_build(base, N, DIM, &p);
    avq_build_params bad = p;
    bad.struct_size = 0;
    avq_index *out = (avq_index *)&out;
    cr_assert_eq(avq_index_build(base, N, DIM, &bad, &out), AVQ_ERR_INVALID);
    cr_assert_null(out);
    avq_quantizer *q = (avq_quantizer *)&q;
    cr_assert_eq(avq_quantizer_train(base, N, DIM, &bad, &q), AVQ_ERR_INVALID);
    cr_assert_null(q);
    out = (avq_index *)&out;
    cr_assert_eq(avq_index_retrain(index, &bad, &out), AVQ_ERR_INVALID);
    cr_assert_null(out);
    avq_search_params sp;
    avq_search_params_init(&sp);
    cr_assert_eq(sp.struct_size, sizeof sp);
    sp.struct_size = 0;
    int64_t ids[NQ * 10];
    cr_assert_eq(avq_index_search(index, queries, &sp, ids, NULL), AVQ_ERR_INVALID);
    cr_assert_eq(avq_index_search_batch(index, queries, NQ, &sp, 1, ids, NULL), AVQ_ERR_INVALID);
    avq_index_stats st;
    cr_assert_eq(avq_index_stats_sized(index, &st, 0), AVQ_ERR_INVALID);
    avq_index_free(index);
}

Test(living, struct_size_bounds_every_write) {
    /* _init_sized writes at most struct_size bytes */
    size_t bsize = sizeof(avq_build_params) + 64;
    unsigned char *buf = malloc(bsize);
    size_t cut = offsetof(avq_build_params, reorder);
    memset(buf, 0xA5, bsize);
    avq_build_params_init_sized((avq_build_params *)(void *)buf, cut, AVQ_METRIC_L2);
    for (size_t i = cut; i < bsize; i++) cr_assert_eq(buf[i], 0xA5, "byte %zu written", i);
    cr_assert_eq(((avq_build_params *)(void *)buf)->struct_size, cut);
    cr_assert_eq(((avq_build_params *)(void *)buf)->metric, AVQ_METRIC_L2);
    free(buf);
    size_t ssize = sizeof(avq_search_params) + 64;
    unsigned char *sbuf = malloc(ssize);
    size_t scut = offsetof(avq_search_params, pre_reorder);
    memset(sbuf, 0xA5, ssize);
    avq_search_params_init_sized((avq_search_params *)(void *)sbuf, scut);
    for (size_t i = scut; i < ssize; i++) cr_assert_eq(sbuf[i], 0xA5, "byte %zu written", i);
    cr_assert_eq(((avq_search_params *)(void *)sbuf)->k, 10);
    free(sbuf);
    /* full size: exactly the documented defaults */
    avq_search_params sp;
    avq_search_params_init(&sp);
    cr_assert(sp.struct_size == sizeof sp && sp.k == 10 && sp.leaves_to_search == 0 && sp.pre_reorder == 0);
    avq_build_params bp;
    avq_build_params_init(&bp, AVQ_METRIC_COSINE);
    cr_assert_eq(bp.struct_size, sizeof bp);
    cr_assert_eq(bp.metric, AVQ_METRIC_COSINE);

    avq_build_params p = pq_params(AVQ_METRIC_DOT);
    avq_index *index = lv_build(base, N, DIM, &p);
    /* stats into an older, shorter struct */
    size_t stsize = sizeof(avq_index_stats) + 64;
    unsigned char *st = malloc(stsize);
    size_t stcut = offsetof(avq_index_stats, memory_bytes);
    memset(st, 0xA5, stsize);
    /* (0.2 is the first version with struct_size, so a shorter struct may
     * also be refused -- but never written past) */
    int sst = avq_index_stats_sized(index, (avq_index_stats *)(void *)st, stcut);
    cr_assert(sst == AVQ_OK || sst == AVQ_ERR_INVALID, "status %d", sst);
    for (size_t i = stcut; i < stsize; i++) cr_assert_eq(st[i], 0xA5, "stats byte %zu written", i);
    if (sst == AVQ_OK) cr_assert_eq(((avq_index_stats *)(void *)st)->live, (size_t)N);
    free(st);
    /* build params read back keep the caller's struct_size */
    avq_build_params back;
    avq_build_params_init(&back, AVQ_METRIC_L2);
    avq_index_build_params(index, &back);
    cr_assert_eq(back.struct_size, sizeof back);
    cr_assert_eq(back.metric, AVQ_METRIC_DOT);
    cr_assert_eq(back.num_leaves, (size_t)LEAVES);
    cr_assert_eq(back.seed, p.seed);
    cr_assert_null(back.progress);
    avq_search_params dp;
    avq_search_params_init(&dp);
    avq_index_default_search_params(index, &dp);
    cr_assert_eq(dp.struct_size, sizeof dp);
    cr_assert(dp.leaves_to_search >= 1 && dp.leaves_to_search <= (size_t)LEAVES);
    avq_index_free(index);
}

/* ---- the empty index ------------------------------------------------------------ */

Test(living, empty_index) {
    avq_build_params p = pq_params(AVQ_METRIC_DOT);
    avq_quantizer *q = NULL;
    cr_assert_eq(avq_quantizer_train(base, N, DIM, &p, &q), AVQ_OK, "%s", avq_last_error());
    avq_index *index = NULL;
    cr_assert_eq(avq_index_create(NULL, &index), AVQ_ERR_INVALID);
    cr_assert_eq(avq_index_create(q, &index), AVQ_OK);
    cr_assert_eq(avq_index_quantizer(index) != NULL, 1);
    cr_assert_eq(avq_index_size(index), 0);
    cr_assert_eq(avq_index_dim(index), (size_t)DIM);
    cr_assert_eq(avq_index_metric(index), AVQ_METRIC_DOT);
    cr_assert_eq(avq_index_num_leaves(index), (size_t)LEAVES);
    avq_index_stats st = lv_stats(index);
    cr_assert(st.live == 0 && st.dead == 0 && st.next_id == 0 && st.empty_leaves == (size_t)LEAVES &&
              st.max_leaf == 0 && st.mean_leaf == 0.0);
    int64_t ids[K];
    float sc[K];
    avq_search_params sp = lv_default(index, K);
    cr_assert_eq(avq_index_search(index, queries, &sp, ids, sc), AVQ_OK, "%s", avq_last_error());
    for (int i = 0; i < K; i++) cr_assert(ids[i] == AVQ_NO_ID && isnan(sc[i]));
    int64_t *many = malloc(NQ * K * sizeof *many);
    cr_assert_eq(avq_index_search_batch(index, queries, NQ, &sp, 2, many, NULL), AVQ_OK);
    for (size_t i = 0; i < NQ * K; i++) cr_assert_eq(many[i], AVQ_NO_ID);
    free(many);
    int64_t x = 3;
    size_t removed = 9;
    cr_assert_eq(avq_index_remove(index, &x, 1, &removed), AVQ_OK);
    cr_assert_eq(removed, 0);
    cr_assert_eq(avq_index_compact(index, 0, NULL), AVQ_OK);
    cr_assert_eq(avq_index_contains(index, 0), 0);
    float v[DIM];
    cr_assert_eq(avq_index_get(index, &x, 1, v), AVQ_ERR_INVALID);
    /* the same quantizer makes several shards; each gets ids from 0 */
    avq_index *shard = NULL;
    cr_assert_eq(avq_index_create(avq_index_quantizer(index), &shard), AVQ_OK);
    avq_quantizer_free(q);
    int64_t a, b;
    cr_assert_eq(avq_index_add(index, base, 1, NULL, 1, &a), AVQ_OK);
    cr_assert_eq(avq_index_add(shard, base, 1, NULL, 1, &b), AVQ_OK);
    cr_assert(a == 0 && b == 0);
    avq_index_free(index);
    avq_index_free(shard);
}

/* Shards from one quantizer score alike: the k-way merge of two shards'
 * top-k equals the top-k of one index holding both halves. */
Test(living, shards_merge_exactly) {
    avq_build_params p = pq_params(AVQ_METRIC_DOT);
    avq_quantizer *q = NULL;
    cr_assert_eq(avq_quantizer_train(base, N, DIM, &p, &q), AVQ_OK, "%s", avq_last_error());
    avq_index *whole = NULL, *s0 = NULL, *s1 = NULL;
    cr_assert_eq(avq_index_create(q, &whole), AVQ_OK);
    cr_assert_eq(avq_index_create(q, &s0), AVQ_OK);
    cr_assert_eq(avq_index_create(q, &s1), AVQ_OK);
    avq_quantizer_free(q);
    int64_t *ids = malloc(N * sizeof *ids);
    for (size_t i = 0; i < N; i++) ids[i] = (int64_t)i;
    cr_assert_eq(avq_index_add(whole, base, N, ids, 2, NULL), AVQ_OK);
    /* even rows to one shard, odd to the other */
    float *half[2] = {malloc(N / 2 * DIM * sizeof(float)), malloc(N / 2 * DIM * sizeof(float))};
    int64_t *hid[2] = {malloc(N / 2 * sizeof(int64_t)), malloc(N / 2 * sizeof(int64_t))};
    for (size_t i = 0; i < N; i++) {
        memcpy(half[i % 2] + (i / 2) * DIM, base + i * DIM, DIM * sizeof(float));
        hid[i % 2][i / 2] = (int64_t)i;
    }
    cr_assert_eq(avq_index_add(s0, half[0], N / 2, hid[0], 1, NULL), AVQ_OK);
    cr_assert_eq(avq_index_add(s1, half[1], N / 2, hid[1], 1, NULL), AVQ_OK);
    avq_search_params sp = lv_exhaustive(whole, K, N);
    for (size_t qi = 0; qi < NQ; qi++) {
        int64_t w[K], a[K], b[K];
        float ws[K], as[K], bs[K];
        cr_assert_eq(avq_index_search(whole, queries + qi * DIM, &sp, w, ws), AVQ_OK);
        cr_assert_eq(avq_index_search(s0, queries + qi * DIM, &sp, a, as), AVQ_OK);
        cr_assert_eq(avq_index_search(s1, queries + qi * DIM, &sp, b, bs), AVQ_OK);
        size_t i = 0, j = 0;
        for (int r = 0; r < K; r++) {
            bool take_a = as[i] > bs[j] || (as[i] == bs[j] && a[i] < b[j]);
            int64_t id = take_a ? a[i] : b[j];
            float s = take_a ? as[i++] : bs[j++];
            cr_assert_eq(id, w[r], "query %zu rank %d: merged %lld, whole %lld", qi, r, (long long)id,
                         (long long)w[r]);
            cr_assert_eq(s, ws[r]);
        }
    }
    for (int h = 0; h < 2; h++) {
        free(half[h]);
        free(hid[h]);
    }
    free(ids);
    avq_index_free(whole);
    avq_index_free(s0);
    avq_index_free(s1);
}

/* ---- retrain ---------------------------------------------------------------------- */

Test(living, retrain_rebuilds_the_live_set) {
    avq_build_params p = pq_params(AVQ_METRIC_L2);
    avq_index *index = lv_build(base, N, DIM, &p);
    bool *gone = calloc(N, 1);
    size_t count;
    int64_t *rm = pick(N, 0.3, 8, gone, &count);
    cr_assert_eq(avq_index_remove(index, rm, count, NULL), AVQ_OK);
    float *extra = lv_clustered(500, DIM, 31);
    int64_t extra_ids[500];
    for (int i = 0; i < 500; i++) extra_ids[i] = 50000 + 2 * i;
    cr_assert_eq(avq_index_add(index, extra, 500, extra_ids, 2, NULL), AVQ_OK);
    fingerprint f = take(index);
    avq_index *fresh = (avq_index *)&fresh;
    cr_assert_eq(avq_index_retrain(index, NULL, &fresh), AVQ_OK, "%s", avq_last_error());
    cr_assert_not_null(fresh);
    expect_unchanged(index, &f, "retrain changed its source");
    cr_assert_eq(avq_index_size(fresh), N - count + 500);
    cr_assert_eq(avq_index_num_leaves(fresh), (size_t)LEAVES);
    avq_index_stats st = lv_stats(fresh);
    cr_assert_eq(st.dead, 0);
    cr_assert_geq(st.next_id, 50000 + 2 * 499 + 1);
    for (size_t i = 0; i < N; i++) cr_assert_eq(avq_index_contains(fresh, (int64_t)i), !gone[i]);
    for (int i = 0; i < 500; i++) cr_assert_eq(avq_index_contains(fresh, extra_ids[i]), 1);
    float got[DIM];
    cr_assert_eq(avq_index_get(fresh, extra_ids + 7, 1, got), AVQ_OK);
    cr_assert_arr_eq(got, extra + 7 * DIM, sizeof got);
    /* recall against the exact answer over the live set */
    size_t nl = N - count + 500;
    float *live = malloc(nl * DIM * sizeof *live);
    int64_t *lid = malloc(nl * sizeof *lid);
    size_t c = 0;
    for (size_t i = 0; i < N; i++)
        if (!gone[i]) {
            memcpy(live + c * DIM, base + i * DIM, DIM * sizeof *live);
            lid[c++] = (int64_t)i;
        }
    memcpy(live + c * DIM, extra, 500 * DIM * sizeof *live);
    memcpy(lid + c, extra_ids, sizeof extra_ids);
    int64_t *truth = lv_truth(live, lid, nl, DIM, queries, NQ, AVQ_METRIC_L2, K);
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.leaves_to_search = 8;
    sp.pre_reorder = 100;
    lv_results r = lv_search(fresh, queries, NQ, &sp, "retrained");
    double rec = lv_recall(r.ids, truth, NQ, K);
    cr_expect(rec >= 0.80, "retrained recall %.3f", rec);
    lv_results_free(&r);
    /* other parameters */
    avq_build_params p2 = lv_params(AVQ_METRIC_L2, 8, AVQ_REORDER_INT8, 10, BRUTE);
    avq_index *other = NULL;
    cr_assert_eq(avq_index_retrain(index, &p2, &other), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(avq_index_num_leaves(other), 10);
    cr_assert_eq(avq_index_size(other), nl);
    avq_index_free(other);
    /* without vectors there is nothing to retrain on */
    avq_build_params pn = lv_params(AVQ_METRIC_L2, 4, AVQ_REORDER_NONE, LEAVES, BRUTE);
    avq_index *none = lv_build(base, N, DIM, &pn);
    other = (avq_index *)&other;
    cr_assert_eq(avq_index_retrain(none, NULL, &other), AVQ_ERR_UNSUPPORTED);
    cr_assert_null(other);
    float v[DIM];
    int64_t zero = 0;
    cr_assert_eq(avq_index_get(none, &zero, 1, v), AVQ_ERR_UNSUPPORTED);
    avq_index_free(none);
    free(truth);
    free(live);
    free(lid);
    free(f.bytes);
    lv_results_free(&f.def);
    lv_results_free(&f.exh);
    free(extra);
    free(rm);
    free(gone);
    avq_index_free(fresh);
    avq_index_free(index);
}

/* INT8 reorder: get returns the dequantized rows, close to the originals. */
Test(living, get_with_int8_reorder) {
    avq_build_params p = lv_params(AVQ_METRIC_L2, 4, AVQ_REORDER_INT8, LEAVES, BRUTE);
    avq_index *index = lv_build(base, N, DIM, &p);
    int64_t ids[50];
    for (int i = 0; i < 50; i++) ids[i] = i * 101;
    float got[50 * DIM];
    cr_assert_eq(avq_index_get(index, ids, 50, got), AVQ_OK, "%s", avq_last_error());
    for (int i = 0; i < 50; i++)
        for (int j = 0; j < DIM; j++) {
            float want = base[ids[i] * DIM + j];
            cr_assert(fabsf(got[i * DIM + j] - want) <= 0.02f * (1 + fabsf(want)),
                      "row %lld dim %d: %g vs %g", (long long)ids[i], j, (double)got[i * DIM + j],
                      (double)want);
        }
    avq_index_free(index);
}

/* ---- a writer while searches run (the short version; test_stress.c is
 * the long one) ---------------------------------------------------------------- */

typedef struct {
    const avq_index *index;
    atomic_int *stop;
    atomic_size_t searches;
    size_t bad;
} reader_arg;

/* Wait until the reader has done more than `done` searches (a scheduling
 * guard: under load the reader might not run at all during the writes). */
static void wait_for_reader(reader_arg *a, size_t done) {
    while (atomic_load(&a->searches) <= done) sched_yield();
}

static void *reader(void *p) {
    reader_arg *a = p;
    avq_search_params sp = lv_default(a->index, K);
    int64_t ids[K];
    float sc[K];
    while (!atomic_load(a->stop)) {
        for (size_t q = 0; q < NQ; q++) {
            if (avq_index_search(a->index, queries + q * DIM, &sp, ids, sc) != AVQ_OK) a->bad++;
            atomic_fetch_add(&a->searches, 1);
        }
    }
    return NULL;
}

Test(living, searches_run_while_a_writer_changes_the_index) {
    avq_build_params p = pq_params(AVQ_METRIC_DOT);
    avq_index *index = lv_build(base, N, DIM, &p);
    atomic_int stop = 0;
    reader_arg ra = {index, &stop, 0, 0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, reader, &ra), 0);
    float *more = lv_clustered(2000, DIM, 41);
    wait_for_reader(&ra, 0); /* the writes happen while searches run */
    for (int round = 0; round < 20; round++) {
        int64_t ids[100];
        cr_assert_eq(avq_index_add(index, more + (round % 20) * 100 * DIM, 100, NULL, 1, ids), AVQ_OK);
        int64_t rm[100];
        for (int i = 0; i < 100; i++) rm[i] = round * 150 + i;
        cr_assert_eq(avq_index_remove(index, rm, 100, NULL), AVQ_OK);
        if (round % 5 == 4) cr_assert_eq(avq_index_compact(index, 0, NULL), AVQ_OK);
    }
    wait_for_reader(&ra, atomic_load(&ra.searches)); /* and one after them */
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    cr_assert_eq(ra.bad, 0, "%zu failed searches", ra.bad);
    cr_assert_gt(atomic_load(&ra.searches), 0);
    cr_assert_eq(avq_index_size(index), N);
    free(more);
    avq_index_free(index);
}

/* ---- cancellation ---------------------------------------------------------------
 * A build cancelled by its progress callback at any moment -- k-means,
 * encoding, adding -- returns AVQ_ERR_CANCELLED, frees what it made (make
 * check runs this under ASan) and hands out nothing. */

typedef struct {
    size_t calls, cancel_at;
    char stages[8][32];
    size_t nstages;
} progress_log;

static int progress_cb(void *user, const char *stage, size_t done, size_t total) {
    progress_log *g = user;
    bool seen = false;
    for (size_t i = 0; i < g->nstages; i++) seen |= !strcmp(g->stages[i], stage);
    if (!seen && g->nstages < 8) snprintf(g->stages[g->nstages++], 32, "%s", stage);
    return g->calls++ == g->cancel_at;
}

Test(living, cancelled_build_at_every_stage) {
    enum { CN = 2000 };
    avq_build_params p = pq_params(AVQ_METRIC_DOT);
    p.threads = 1;
    progress_log all = {0, SIZE_MAX, {{0}}, 0};
    p.progress = progress_cb;
    p.progress_user = &all;
    avq_index *index = lv_build(base, CN, DIM, &p);
    avq_index_free(index);
    cr_assert_gt(all.calls, 2, "the build reported progress %zu times", all.calls);
    char stages[256] = "";
    for (size_t i = 0; i < all.nstages; i++) {
        strcat(stages, " ");
        strcat(stages, all.stages[i]);
    }
    cr_log_info("build: %zu progress calls, stages%s", all.calls, stages);
    /* cancel at every call (at most 40, spread over the build), the last too */
    bool cancelled_in[8] = {false};
    size_t points = all.calls < 40 ? all.calls : 40;
    for (size_t k = 0; k < points; k++) {
        progress_log g = {0, k == points - 1 ? all.calls - 1 : k * all.calls / points, {{0}}, 0};
        p.progress_user = &g;
        index = (avq_index *)&index;
        int st = avq_index_build(base, CN, DIM, &p, &index);
        for (size_t i = 0; i < all.nstages; i++)
            cancelled_in[i] |= g.nstages && !strcmp(all.stages[i], g.stages[g.nstages - 1]);
        cr_assert_eq(st, AVQ_ERR_CANCELLED, "cancelled at call %zu of %zu (stage %s): status %d (%s)",
                     g.cancel_at, all.calls, g.nstages ? g.stages[g.nstages - 1] : "?", st,
                     avq_last_error());
        cr_assert_null(index);
        if (k % 3) continue; /* the quantizer alone, at a third of the points */
        avq_quantizer *q = (avq_quantizer *)&q;
        g.calls = 0;
        g.nstages = 0;
        st = avq_quantizer_train(base, CN, DIM, &p, &q);
        if (g.cancel_at < g.calls) {
            cr_assert_eq(st, AVQ_ERR_CANCELLED, "train cancelled at %zu: %d", g.cancel_at, st);
            cr_assert_null(q);
        } else {
            cr_assert_eq(st, AVQ_OK); /* training ends before the add stage */
            avq_quantizer_free(q);
        }
    }
    for (size_t i = 0; i < all.nstages; i++)
        cr_assert(cancelled_in[i], "no cancellation landed in stage %s", all.stages[i]);
}

/* Regression: upsert replaced slots but never compacted, so an index kept
 * up to date by upserts only grew dead slots without bound (remove did
 * compact).  Now a leaf passing the threshold is compacted by upsert too. */
Test(living, upsert_compacts_by_itself) {
    avq_build_params p = pq_params(AVQ_METRIC_L2);
    avq_index *index = lv_build(base, N, DIM, &p);
    enum { M = 2000 };
    int64_t ids[M];
    for (int i = 0; i < M; i++) ids[i] = i;
    /* the same rows again: each lands in its own leaf, killing its old slot */
    for (int round = 0; round < 6; round++) {
        size_t replaced = 0;
        cr_assert_eq(avq_index_upsert(index, base, M, ids, 1, &replaced), AVQ_OK, "%s",
                     avq_last_error());
        cr_assert_eq(replaced, (size_t)M);
        avq_index_stats st = lv_stats(index);
        cr_assert_eq(st.live, (size_t)N);
        cr_assert_lt(st.max_leaf_dead, 0.5, "round %d: a leaf is %.2f dead", round,
                     st.max_leaf_dead);
    }
    /* and every upserted id is still found as itself */
    avq_search_params sp = lv_exhaustive(index, 1, N);
    for (int i = 0; i < M; i += 97) {
        int64_t got;
        cr_assert_eq(avq_index_search(index, base + (size_t)i * DIM, &sp, &got, NULL), AVQ_OK);
        cr_assert_eq(got, ids[i]);
    }
    avq_index_free(index);
}

/* ---- a moved vector under concurrent searches ------------------------------
 * Regression: leaves were published one at a time, and a batched search
 * read each leaf when it reached it, so an upsert moving a vector from leaf
 * A to leaf B let one query see it in both (or in neither).  Commits are now
 * bracketed and searches snapshot their leaves inside one bracket. */
#include "index.h"

enum { MOVE_N = 20000, MOVE_D = 16, MOVE_NQ = 64, MOVE_K = 10 };
static const int64_t MOVED = 1000000;
static avq_index *move_ix;
static float move_u[MOVE_D], move_v[MOVE_D], move_q[MOVE_NQ * MOVE_D];
static atomic_int move_stop;
static atomic_long move_twice, move_missing, move_searches;

static void *move_writer(void *arg) {
    (void)arg;
    int64_t id = MOVED;
    for (long i = 0; !atomic_load(&move_stop); i++)
        if (avq_index_upsert(move_ix, (i & 1) ? move_u : move_v, 1, &id, 1, NULL) != AVQ_OK)
            atomic_fetch_add(&move_missing, 1000000); /* reported below */
    return NULL;
}

static void *move_reader(void *arg) {
    int batch = (int)(long)arg;
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.k = MOVE_K;
    sp.leaves_to_search = 64;
    sp.pre_reorder = 40;
    int64_t ids[MOVE_NQ * MOVE_K];
    float scores[MOVE_NQ * MOVE_K];
    while (!atomic_load(&move_stop)) {
        size_t nq = batch ? MOVE_NQ : 1;
        int st = batch ? avq_index_search_batch(move_ix, move_q, MOVE_NQ, &sp, 1, ids, scores)
                       : avq_index_search(move_ix, move_q, &sp, ids, scores);
        if (st != AVQ_OK) atomic_fetch_add(&move_missing, 1000000);
        for (size_t q = 0; q < nq; q++) {
            int seen = 0;
            for (int j = 0; j < MOVE_K; j++) seen += ids[q * MOVE_K + j] == MOVED;
            if (seen > 1) atomic_fetch_add(&move_twice, 1);
            if (seen == 0) atomic_fetch_add(&move_missing, 1);
        }
        atomic_fetch_add(&move_searches, 1);
    }
    return NULL;
}

Test(living, a_moved_vector_is_seen_once) {
    uint64_t rng = 5;
    float *x = malloc(sizeof *x * MOVE_N * MOVE_D);
    for (size_t i = 0; i < (size_t)MOVE_N * MOVE_D; i++) x[i] = (float)lv_unit(&rng) - 0.5f;
    avq_build_params p;
    avq_build_params_init(&p, AVQ_METRIC_DOT);
    p.num_leaves = 64;
    p.threads = 1;
    p.brute_force_below = 1000;
    cr_assert_eq(avq_index_build(x, MOVE_N, MOVE_D, &p, &move_ix), AVQ_OK, "%s", avq_last_error());
    /* two far points in different leaves; queries that rank both first */
    const float *c = move_ix->q->centers;
    for (int j = 0; j < MOVE_D; j++) {
        move_u[j] = 20 * c[j];
        move_v[j] = 20 * c[MOVE_D + j];
    }
    int64_t id = MOVED;
    cr_assert_eq(avq_index_upsert(move_ix, move_u, 1, &id, 1, NULL), AVQ_OK);
    uint64_t at_u = avq_idmap_get(&move_ix->ids, MOVED);
    cr_assert_eq(avq_index_upsert(move_ix, move_v, 1, &id, 1, NULL), AVQ_OK);
    uint64_t at_v = avq_idmap_get(&move_ix->ids, MOVED);
    cr_assert_neq(at_u >> 32, at_v >> 32, "the two points share a leaf: the test moves nothing");
    for (int q = 0; q < MOVE_NQ; q++)
        for (int j = 0; j < MOVE_D; j++)
            move_q[q * MOVE_D + j] = move_u[j] + move_v[j] + 0.01f * (float)(lv_unit(&rng) - 0.5);
    cr_assert_eq(avq_index_set_compact_threshold(move_ix, 0.0), AVQ_OK);
    pthread_t w, r1, r2;
    pthread_create(&w, NULL, move_writer, NULL);
    pthread_create(&r1, NULL, move_reader, (void *)1L);
    pthread_create(&r2, NULL, move_reader, (void *)0L);
    struct timespec ts = {1, 500000000};
    nanosleep(&ts, NULL);
    atomic_store(&move_stop, 1);
    pthread_join(w, NULL);
    pthread_join(r1, NULL);
    pthread_join(r2, NULL);
    cr_assert_gt(atomic_load(&move_searches), 10);
    cr_assert_eq(atomic_load(&move_twice), 0, "%ld results held the moved id twice",
                 atomic_load(&move_twice));
    cr_assert_eq(atomic_load(&move_missing), 0, "%ld results missed the moved id",
                 atomic_load(&move_missing));
    avq_index_free(move_ix);
    free(x);
}
