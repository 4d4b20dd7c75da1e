/*
 * test_spill.c -- SOAR spilling (avq_build_params.spill, issue 15): every
 * vector stored in a second leaf chosen by the spilled-residual loss.
 *
 * What must hold: the defaults and refusals; every vector exactly twice
 * (stats), no result naming a vector twice on any path (single, batch,
 * without re-ranking, filtered scan and exact plan); the exhaustive search
 * still equals brute force; spilling finds more true neighbours when few
 * leaves are searched; remove, upsert, compaction and set_tags act on both
 * copies; retrain copies each vector once; save/load in every mode gives
 * the same answers and the loaded index can be changed; a file readers
 * before 0.5 would misread says so (REQUIRED section SPIL), and a damaged
 * one is refused.
 */
#include "living_common.h"
#include "../fuzz/avq_file.h" /* fuzz/ is not on the include path */

enum { N = 6000, D = 24, NQ = 80, LEAVES = 40, K = 10 };

static avq_build_params spill_params(avq_metric metric, int spill, avq_reorder reorder) {
    avq_build_params p = lv_params(metric, 4, reorder, LEAVES, 100);
    p.spill = spill;
    return p;
}

static float *rows_for(avq_metric metric, size_t n, uint64_t seed) {
    float *x = lv_clustered(n, D, seed);
    if (metric == AVQ_METRIC_DOT) lv_normalize(x, n, D);
    return x;
}

static avq_search_params few_leaves(size_t leaves, size_t pre) {
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.k = K;
    sp.leaves_to_search = leaves;
    sp.pre_reorder = pre;
    return sp;
}

Test(spill, defaults_and_refusals) {
    avq_build_params p;
    avq_build_params_init(&p, AVQ_METRIC_COSINE);
    cr_assert_eq(p.spill, 0);
    cr_assert_eq(p.spill_lambda, AVQ_DEFAULT_SPILL_LAMBDA);
    cr_assert_eq(AVQ_DEFAULT_SPILL_LAMBDA, 1.0f);
    float *x = rows_for(AVQ_METRIC_COSINE, N, 1);
    avq_index *index = NULL;
    const struct { int spill; float lambda; } bad[] = {{2, 1.0f}, {-1, 1.0f}, {1, -0.5f},
                                                       {1, NAN}, {1, INFINITY}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = spill_params(AVQ_METRIC_COSINE, bad[i].spill, AVQ_REORDER_FLOAT);
        p.spill_lambda = bad[i].lambda;
        cr_assert_eq(avq_index_build(x, N, D, &p, &index), AVQ_ERR_INVALID, "case %zu", i);
        cr_assert_not_null(strstr(avq_last_error(), "spill"), "%s", avq_last_error());
    }
    /* one leaf (or the exact tier): nothing to spill into; resolved to 0 */
    p = spill_params(AVQ_METRIC_COSINE, 1, AVQ_REORDER_FLOAT);
    p.num_leaves = 1;
    index = lv_build(x, N, D, &p);
    avq_build_params got;
    avq_build_params_init(&got, AVQ_METRIC_COSINE);
    avq_index_build_params(index, &got);
    cr_assert_eq(got.spill, 0);
    cr_assert_eq(lv_stats(index).spilled, 0);
    avq_index_free(index);
    free(x);
}

/* Every vector twice; no result row names one twice; exhaustive = exact. */
static void check_index(avq_metric metric, avq_reorder reorder) {
    float *x = rows_for(metric, N, 2), *q = rows_for(metric, NQ, 3);
    avq_build_params p = spill_params(metric, 1, reorder);
    avq_index *index = lv_build(x, N, D, &p);
    avq_index_stats st = lv_stats(index);
    cr_assert_eq(st.live, N);
    cr_assert_eq(st.spilled, N, "every vector has a second copy");
    cr_assert_eq(avq_index_size(index), N);
    /* lv_search checks every row: no id twice, scores ordered */
    for (size_t leaves = 1; leaves <= 8; leaves *= 2) {
        avq_search_params sp = few_leaves(leaves, 30);
        lv_results r = lv_search(index, q, NQ, &sp, "spilled");
        lv_results_free(&r);
    }
    if (reorder == AVQ_REORDER_FLOAT) {
        avq_search_params sp = lv_exhaustive(index, K, 2 * N);
        lv_results r = lv_search(index, q, NQ, &sp, "exhaustive");
        int64_t *truth = lv_truth(x, NULL, N, D, q, NQ, metric, K);
        cr_assert_eq(lv_recall(r.ids, truth, NQ, K), 1.0, "every leaf, every candidate: exact");
        free(truth);
        lv_results_free(&r);
    }
    avq_index_free(index);
    free(x);
    free(q);
}

Test(spill, every_vector_twice_no_result_twice_cosine) { check_index(AVQ_METRIC_COSINE, AVQ_REORDER_FLOAT); }
Test(spill, every_vector_twice_no_result_twice_dot) { check_index(AVQ_METRIC_DOT, AVQ_REORDER_FLOAT); }
Test(spill, every_vector_twice_no_result_twice_l2) { check_index(AVQ_METRIC_L2, AVQ_REORDER_FLOAT); }
Test(spill, no_result_twice_int8) { check_index(AVQ_METRIC_COSINE, AVQ_REORDER_INT8); }
/* without re-ranking the candidates' approximate scores of the two copies
 * differ: the better one is kept, and k distinct results still come back */
Test(spill, no_result_twice_without_reorder) {
    check_index(AVQ_METRIC_COSINE, AVQ_REORDER_NONE);
    float *x = rows_for(AVQ_METRIC_COSINE, N, 2), *q = rows_for(AVQ_METRIC_COSINE, NQ, 3);
    avq_build_params p = spill_params(AVQ_METRIC_COSINE, 1, AVQ_REORDER_NONE);
    avq_index *index = lv_build(x, N, D, &p);
    avq_search_params sp = few_leaves(4, 0);
    lv_results r = lv_search(index, q, NQ, &sp, "no reorder");
    for (size_t i = 0; i < NQ * K; i++) cr_assert_neq(r.ids[i], AVQ_NO_ID, "k distinct results");
    lv_results_free(&r);
    avq_index_free(index);
    free(x);
    free(q);
}

Test(spill, finds_more_neighbours_in_few_leaves) {
    float *x = rows_for(AVQ_METRIC_COSINE, N, 4), *q = rows_for(AVQ_METRIC_COSINE, 200, 5);
    int64_t *truth = lv_truth(x, NULL, N, D, q, 200, AVQ_METRIC_COSINE, K);
    avq_build_params p0 = spill_params(AVQ_METRIC_COSINE, 0, AVQ_REORDER_FLOAT);
    avq_build_params p1 = spill_params(AVQ_METRIC_COSINE, 1, AVQ_REORDER_FLOAT);
    avq_index *plain = lv_build(x, N, D, &p0), *spilled = lv_build(x, N, D, &p1);
    for (size_t leaves = 1; leaves <= 2; leaves++) {
        avq_search_params sp = few_leaves(leaves, 100);
        lv_results a = lv_search(plain, q, 200, &sp, "plain");
        lv_results b = lv_search(spilled, q, 200, &sp, "spilled");
        double ra = lv_recall(a.ids, truth, 200, K), rb = lv_recall(b.ids, truth, 200, K);
        cr_log_info("%zu leaves: recall %.4f spilled vs %.4f plain", leaves, rb, ra);
        cr_assert_gt(rb, ra + 0.02, "%zu leaves: recall %.4f spilled vs %.4f plain", leaves, rb, ra);
        lv_results_free(&a);
        lv_results_free(&b);
    }
    avq_index_free(plain);
    avq_index_free(spilled);
    free(truth);
    free(x);
    free(q);
}

Test(spill, batch_equals_one_at_a_time) {
    float *x = rows_for(AVQ_METRIC_COSINE, N, 6), *q = rows_for(AVQ_METRIC_COSINE, NQ, 7);
    avq_build_params p = spill_params(AVQ_METRIC_COSINE, 1, AVQ_REORDER_FLOAT);
    avq_index *index = lv_build(x, N, D, &p);
    avq_search_params sp = few_leaves(3, 40);
    lv_results one = lv_search(index, q, NQ, &sp, "single");
    lv_results batch = {NQ, K, malloc(NQ * K * sizeof(int64_t)), malloc(NQ * K * sizeof(float))};
    cr_assert_eq(avq_index_search_batch(index, q, NQ, &sp, 2, batch.ids, batch.scores), AVQ_OK,
                 "%s", avq_last_error());
    lv_expect_same(&one, &batch, "batch vs single");
    lv_results_free(&one);
    lv_results_free(&batch);
    avq_index_free(index);
    free(x);
    free(q);
}

/* Exhaustive search over an index must equal brute force over `rows`
 * (ids[r] the id of row r). */
static void expect_exact(const avq_index *index, const float *rows, const int64_t *ids, size_t n,
                         const float *q, const char *what) {
    avq_search_params sp = lv_exhaustive(index, K, 2 * N);
    lv_results r = lv_search(index, q, NQ, &sp, what);
    int64_t *truth = lv_truth(rows, ids, n, D, q, NQ, AVQ_METRIC_COSINE, K);
    cr_assert_eq(lv_recall(r.ids, truth, NQ, K), 1.0, "%s: exhaustive search is exact", what);
    free(truth);
    lv_results_free(&r);
}

Test(spill, remove_upsert_compact_act_on_both_copies) {
    float *x = rows_for(AVQ_METRIC_COSINE, N, 8), *q = rows_for(AVQ_METRIC_COSINE, NQ, 9);
    avq_build_params p = spill_params(AVQ_METRIC_COSINE, 1, AVQ_REORDER_FLOAT);
    avq_index *index = lv_build(x, N, D, &p);
    avq_index_set_compact_threshold(index, 0.0); /* keep dead slots: test both states */
    /* remove the even ids */
    int64_t *even = malloc(N / 2 * sizeof *even);
    for (size_t i = 0; i < N / 2; i++) even[i] = (int64_t)(2 * i);
    size_t removed = 0;
    cr_assert_eq(avq_index_remove(index, even, N / 2, &removed), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(removed, N / 2, "removed counts vectors, not slots");
    avq_index_stats st = lv_stats(index);
    cr_assert_eq(st.live, N / 2);
    cr_assert_eq(st.spilled, N / 2);
    cr_assert_eq(st.dead, N, "both copies of each removed vector are dead");
    float *odd_rows = malloc(N / 2 * D * sizeof *odd_rows);
    int64_t *odd = malloc(N / 2 * sizeof *odd);
    for (size_t i = 0; i < N / 2; i++) {
        odd[i] = (int64_t)(2 * i + 1);
        memcpy(odd_rows + i * D, x + (2 * i + 1) * D, D * sizeof(float));
    }
    expect_exact(index, odd_rows, odd, N / 2, q, "after remove");
    /* upsert the odd ids with the even rows' vectors: each must move (both
     * copies), never be found twice or at its old place */
    float *moved = malloc(N / 2 * D * sizeof *moved);
    for (size_t i = 0; i < N / 2; i++) memcpy(moved + i * D, x + 2 * i * D, D * sizeof(float));
    size_t replaced = 0;
    cr_assert_eq(avq_index_upsert(index, moved, N / 2, odd, 2, &replaced), AVQ_OK, "%s",
                 avq_last_error());
    cr_assert_eq(replaced, N / 2);
    st = lv_stats(index);
    cr_assert_eq(st.live, N / 2);
    cr_assert_eq(st.spilled, N / 2);
    expect_exact(index, moved, odd, N / 2, q, "after upsert");
    size_t compacted = 0;
    cr_assert_eq(avq_index_compact(index, 0.0, &compacted), AVQ_OK, "%s", avq_last_error());
    cr_assert_gt(compacted, 0);
    cr_assert_eq(lv_stats(index).dead, 0);
    expect_exact(index, moved, odd, N / 2, q, "after compaction");
    /* the id map followed the renumbered copies: removing everything now
     * must leave nothing */
    cr_assert_eq(avq_index_remove(index, odd, N / 2, &removed), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(removed, N / 2);
    st = lv_stats(index);
    cr_assert_eq(st.live, 0);
    cr_assert_eq(st.spilled, 0);
    free(even);
    free(odd);
    free(odd_rows);
    free(moved);
    avq_index_free(index);
    free(x);
    free(q);
}

Test(spill, tags_on_both_copies) {
    float *x = rows_for(AVQ_METRIC_COSINE, N, 10), *q = rows_for(AVQ_METRIC_COSINE, NQ, 11);
    avq_build_params p = spill_params(AVQ_METRIC_COSINE, 1, AVQ_REORDER_FLOAT);
    avq_index *index = lv_build(x, N / 2, D, &p);
    /* the second half added with tags: id % 7 == 0 gets tag 5 */
    size_t half = N / 2, *off = malloc((half + 1) * sizeof *off);
    uint32_t *tags = malloc(half * sizeof *tags);
    int64_t *ids = malloc(half * sizeof *ids);
    size_t nt = 0;
    off[0] = 0;
    for (size_t i = 0; i < half; i++) {
        ids[i] = (int64_t)(half + i);
        if (ids[i] % 7 == 0) tags[nt++] = 5;
        off[i + 1] = nt;
    }
    cr_assert_eq(avq_index_add_tagged(index, x + half * D, half, ids, off, tags, 2, NULL), AVQ_OK,
                 "%s", avq_last_error());
    cr_assert_eq(avq_index_tag_count(index, 5), nt, "the count is of vectors");
    cr_assert_eq(lv_stats(index).tagged, nt);
    avq_filter *f = NULL;
    uint32_t want = 5;
    cr_assert_eq(avq_filter_tags_any(&want, 1, &f), AVQ_OK);
    /* both plans: the exact one (few allowed) and the scan */
    for (int plan = 0; plan < 2; plan++) {
        avq_search_params sp = few_leaves(4, 40);
        sp.filter = f;
        sp.filter_exact_below = plan == 0 ? 100000 : 1;
        lv_results r = lv_search(index, q, NQ, &sp, plan == 0 ? "exact plan" : "scan plan");
        for (size_t i = 0; i < NQ * K; i++)
            cr_assert(r.ids[i] == AVQ_NO_ID || r.ids[i] % 7 == 0, "id %lld has no tag 5",
                      (long long)r.ids[i]);
        lv_results_free(&r);
    }
    /* take tag 5 away from the multiples of 14: from both copies */
    size_t ne = 0;
    int64_t *edit = malloc(half * sizeof *edit);
    size_t *eoff = calloc(half + 1, sizeof *eoff);
    for (size_t i = 0; i < half; i++)
        if (ids[i] % 14 == 0) edit[ne++] = ids[i];
    cr_assert_eq(avq_index_set_tags(index, edit, ne, eoff, NULL), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(avq_index_tag_count(index, 5), nt - ne);
    for (int plan = 0; plan < 2; plan++) {
        avq_search_params sp = lv_exhaustive(index, K, 2 * N);
        sp.filter = f;
        sp.filter_exact_below = plan == 0 ? 100000 : 1;
        lv_results r = lv_search(index, q, NQ, &sp, "after set_tags");
        for (size_t i = 0; i < NQ * K; i++)
            cr_assert(r.ids[i] == AVQ_NO_ID || (r.ids[i] % 7 == 0 && r.ids[i] % 14 != 0),
                      "plan %d: id %lld should not pass the filter", plan, (long long)r.ids[i]);
        lv_results_free(&r);
    }
    avq_filter_free(f);
    free(edit);
    free(eoff);
    free(off);
    free(tags);
    free(ids);
    avq_index_free(index);
    free(x);
    free(q);
}

Test(spill, retrain_copies_each_vector_once) {
    float *x = rows_for(AVQ_METRIC_COSINE, N, 12), *q = rows_for(AVQ_METRIC_COSINE, NQ, 13);
    avq_build_params p = spill_params(AVQ_METRIC_COSINE, 1, AVQ_REORDER_FLOAT);
    avq_index *index = lv_build(x, N, D, &p), *again = NULL;
    cr_assert_eq(avq_index_retrain(index, NULL, &again), AVQ_OK, "%s", avq_last_error());
    avq_index_stats st = lv_stats(again);
    cr_assert_eq(st.live, N);
    cr_assert_eq(st.spilled, N);
    expect_exact(again, x, NULL, N, q, "retrained");
    avq_index_free(again);
    avq_index_free(index);
    free(x);
    free(q);
}

Test(spill, save_load_every_mode) {
    float *x = rows_for(AVQ_METRIC_COSINE, N, 14), *q = rows_for(AVQ_METRIC_COSINE, NQ, 15);
    avq_build_params p = spill_params(AVQ_METRIC_COSINE, 1, AVQ_REORDER_FLOAT);
    p.spill_lambda = 0.5f;
    avq_index *index = lv_build(x, N, D, &p);
    int64_t gone[] = {3, 4, 5};
    cr_assert_eq(avq_index_remove(index, gone, 3, NULL), AVQ_OK);
    avq_search_params sp = few_leaves(3, 40);
    lv_results want = lv_search(index, q, NQ, &sp, "saved");
    const char *path = lv_path("spill.avq");
    cr_assert_eq(avq_index_save(index, path), AVQ_OK, "%s", avq_last_error());
    const unsigned modes[] = {AVQ_LOAD_COPY, AVQ_LOAD_MMAP, AVQ_LOAD_MMAP | AVQ_LOAD_SKIP_CHECKSUMS};
    for (size_t m = 0; m < 3; m++) {
        avq_index *b = NULL;
        cr_assert_eq(avq_index_load(path, modes[m], &b), AVQ_OK, "%s", avq_last_error());
        avq_build_params got;
        avq_build_params_init(&got, AVQ_METRIC_COSINE);
        avq_index_build_params(b, &got);
        cr_assert_eq(got.spill, 1);
        cr_assert_eq(got.spill_lambda, 0.5f);
        avq_index_stats st = lv_stats(b);
        cr_assert_eq(st.live, N - 3);
        cr_assert_eq(st.spilled, N - 3);
        lv_results r = lv_search(b, q, NQ, &sp, "loaded");
        lv_expect_same(&want, &r, "loaded");
        lv_results_free(&r);
        /* the id map is built from the file: both copies of 7 go */
        int64_t seven = 7;
        size_t removed = 0;
        cr_assert_eq(avq_index_remove(b, &seven, 1, &removed), AVQ_OK, "%s", avq_last_error());
        cr_assert_eq(removed, 1);
        st = lv_stats(b);
        cr_assert_eq(st.live, N - 4);
        cr_assert_eq(st.spilled, N - 4);
        avq_index_free(b);
    }
    lv_results_free(&want);
    avq_index_free(index);
    lv_tmpdir_remove();
    free(x);
    free(q);
}

Test(spill, file_format) {
    float *x = rows_for(AVQ_METRIC_COSINE, N, 16);
    avq_build_params p = spill_params(AVQ_METRIC_COSINE, 1, AVQ_REORDER_FLOAT);
    avq_index *index = lv_build(x, N, D, &p);
    void *bytes = NULL;
    size_t size = 0;
    cr_assert_eq(avq_index_save_bytes(index, &bytes, &size), AVQ_OK);
    uint8_t *img = malloc(size);
    memcpy(img, bytes, size);
    avq_free(bytes);
    avqf_section secs[AVQF_MAX_SECTIONS];
    size_t count = avqf_sections(img, size, secs, AVQF_MAX_SECTIONS);
    const uint32_t SPIL = AVQF_TAG('S', 'P', 'I', 'L');
    int s = avqf_find(secs, count, SPIL);
    cr_assert_geq(s, 0, "a spilled index has section SPIL");
    cr_assert_eq(secs[s].flags & 1u, 1u, "SPIL is REQUIRED: a reader before 0.5 must refuse");
    cr_assert_eq(secs[s].length, sizeof(float));
    /* without SPIL, CONF's spill = 1 is refused */
    avqf_out out[AVQF_MAX_SECTIONS];
    size_t kept = 0;
    for (size_t i = 0; i < count; i++)
        if (secs[i].tag != SPIL)
            out[kept++] = (avqf_out){secs[i].tag, secs[i].flags, img + secs[i].offset,
                                     (size_t)secs[i].length};
    size_t dsize = 0;
    uint8_t *dropped = avqf_write_version(out, kept, avqf_get32(img + 8), &dsize);
    avq_index *b = NULL;
    cr_assert_eq(avq_index_load_bytes(dropped, dsize, &b), AVQ_ERR_FORMAT);
    cr_assert_not_null(strstr(avq_last_error(), "SPIL"), "%s", avq_last_error());
    free(dropped);
    /* a lambda that is not a number >= 0 */
    const float bad[] = {-1.0f, NAN, INFINITY};
    for (size_t k = 0; k < 3; k++) {
        uint8_t *c = malloc(size);
        memcpy(c, img, size);
        memcpy(c + secs[s].offset, &bad[k], 4);
        avqf_fix(c, size, AVQF_FIX_SECTION_CRC | AVQF_FIX_HEADER_CRC);
        cr_assert_eq(avq_index_load_bytes(c, size, &b), AVQ_ERR_FORMAT, "lambda %g", (double)bad[k]);
        cr_assert_not_null(strstr(avq_last_error(), "SPIL"), "%s", avq_last_error());
        free(c);
    }
    /* CONF's spill slot (28) at 2, or at 0 with the copies still there */
    int ci = avqf_find(secs, count, AVQF_TAG('C', 'O', 'N', 'F'));
    cr_assert_geq(ci, 0);
    cr_assert_geq(secs[ci].length, 29 * 8);
    uint64_t slot[] = {2, 0};
    for (size_t k = 0; k < 2; k++) {
        uint8_t *c = malloc(size);
        memcpy(c, img, size);
        avqf_put64(c + secs[ci].offset + 28 * 8, slot[k]);
        avqf_fix(c, size, AVQF_FIX_SECTION_CRC | AVQF_FIX_HEADER_CRC);
        /* slot 0 with SPIL present must not load either: the duplicate ids
         * would otherwise surface only at the first change */
        cr_assert_eq(avq_index_load_bytes(c, size, &b), AVQ_ERR_FORMAT, "spill slot %llu",
                     (unsigned long long)slot[k]);
        free(c);
    }
    free(img);
    avq_index_free(index);
    free(x);
}

/* The candidate lists a shard exports (avq.h, "Merging results from
 * shards") hold each vector once: the duplicate is dropped before
 * re-ranking, not only in the final answer. */
Test(spill, exported_candidates_are_distinct) {
    float *x = rows_for(AVQ_METRIC_COSINE, N, 17), *q = rows_for(AVQ_METRIC_COSINE, NQ, 18);
    avq_build_params p = spill_params(AVQ_METRIC_COSINE, 1, AVQ_REORDER_FLOAT);
    avq_index *index = lv_build(x, N, D, &p);
    avq_search_params sp = few_leaves(6, 200);
    size_t R = 0;
    cr_assert_eq(avq_index_candidate_count(index, &sp, &R), AVQ_OK);
    avq_candidate *c = malloc(NQ * R * sizeof *c);
    size_t *counts = malloc(NQ * sizeof *counts);
    float *offsets = malloc(NQ * sizeof *offsets);
    cr_assert_eq(avq_index_search_candidates(index, q, NQ, &sp, NULL, 1, c, counts, offsets),
                 AVQ_OK, "%s", avq_last_error());
    size_t total = 0;
    for (size_t i = 0; i < NQ; i++) {
        cr_assert_leq(counts[i], R);
        total += counts[i];
        for (size_t a = 0; a < counts[i]; a++)
            for (size_t b = 0; b < a; b++)
                cr_assert_neq(c[i * R + a].id, c[i * R + b].id, "query %zu: id %lld listed twice",
                              i, (long long)c[i * R + a].id);
    }
    cr_assert_gt(total, NQ * K, "the lists are not empty");
    free(c);
    free(counts);
    free(offsets);
    avq_index_free(index);
    free(x);
    free(q);
}
