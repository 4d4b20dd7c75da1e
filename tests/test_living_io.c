/*
 * test_living_io.c -- saving and loading indexes that changed (format
 * version 2): a saved index is the index (its dead slots, ids, next id),
 * whichever way it is loaded (copy, mmap, mmap without checksums, bytes),
 * and a loaded index -- mmapped too -- changes again and saves again.  The
 * quantizer alone round-trips and makes the same index.  A v1 file (avq
 * 0.1) loads, changes and saves as v2.  Corrupt v2 files (cut, flipped,
 * with and without repaired checksums) are refused with AVQ_ERR_FORMAT or
 * load cleanly, never crash, and what loads also survives writes.  A save
 * killed with SIGKILL at random moments leaves the previous file whole.
 */
#include <dirent.h>
#include <signal.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "living_common.h"

/* io.c test hook: save through named temporary files */
extern int avq_io_test_no_tmpfile;
#include "../fuzz/avq_file.h" /* fuzz/ is not on the include path */

enum { N = 5000, DIM = 16, NQ = 60, K = 10, LEAVES = 16, BRUTE = 400 };

static float *base, *queries;

static void setup(void) {
    base = lv_clustered(N, DIM, 31);
    queries = lv_clustered(NQ, DIM, 32);
}
static void teardown(void) {
    free(base);
    free(queries);
    lv_tmpdir_remove();
}

TestSuite(living_io, .init = setup, .fini = teardown, .timeout = 120);

/* One deterministic sequence of changes, applied to several indexes that
 * must stay equal: caller-id adds, automatic adds, removals (compaction
 * off, so dead slots stay), upserts.  `round` varies the rows and ids. */
static void change(avq_index *index, int round) {
    uint64_t rng = 1000 + (uint64_t)round;
    float *rows = lv_clustered(400, DIM, 500 + (uint64_t)round);
    int64_t ids[200];
    for (int i = 0; i < 200; i++) ids[i] = 100000 * (round + 1) + 3 * i;
    cr_assert_eq(avq_index_add(index, rows, 200, ids, 1, NULL), AVQ_OK, "%s", avq_last_error());
    int64_t autos[100];
    cr_assert_eq(avq_index_add(index, rows + 200 * DIM, 100, NULL, 2, autos), AVQ_OK, "%s", avq_last_error());
    int64_t rm[600];
    /* distinct ids (7919 is prime to N), a third of them already gone in
     * later rounds: counted, not an error */
    int64_t start = (int64_t)(lv_rng(&rng) % N);
    for (int i = 0; i < 600; i++) rm[i] = (start + 7919 * (int64_t)i) % N;
    rm[0] = ids[5];
    rm[1] = autos[7];
    cr_assert_eq(avq_index_remove(index, rm, 600, NULL), AVQ_OK, "%s", avq_last_error());
    int64_t up[100];
    for (int i = 0; i < 100; i++) up[i] = i < 50 ? (int64_t)(lv_rng(&rng) % N) : 900000 + 100 * round + i;
    /* distinct within the call */
    for (int i = 0; i < 50; i++)
        for (int j = 0; j < i; j++)
            if (up[j] == up[i]) up[i] = 800000 + i + 1000 * round;
    cr_assert_eq(avq_index_upsert(index, rows + 300 * DIM, 100, up, 1, NULL), AVQ_OK, "%s", avq_last_error());
    free(rows);
}

static avq_index *changed_index(avq_metric metric, int bits, avq_reorder reorder, size_t leaves) {
    avq_build_params p = lv_params(metric, bits, reorder, leaves, BRUTE);
    avq_index *index = lv_build(base, N, DIM, &p);
    cr_assert_eq(avq_index_set_compact_threshold(index, 0), AVQ_OK);
    change(index, 0);
    cr_assert_gt(lv_stats(index).dead, 0, "the changed index has no dead slot");
    return index;
}

/* Same stats, same results (default and exhaustive), same membership. */
static void expect_same_index(const avq_index *a, const avq_index *b, const char *what) {
    avq_index_stats sa = lv_stats(a), sb = lv_stats(b);
    cr_assert_eq(sb.live, sa.live, "%s: live %zu vs %zu", what, sa.live, sb.live);
    cr_assert_eq(sb.dead, sa.dead, "%s: dead %zu vs %zu", what, sa.dead, sb.dead);
    cr_assert_eq(sb.next_id, sa.next_id, "%s: next_id", what);
    cr_assert_eq(sb.leaves, sa.leaves, "%s", what);
    cr_assert_eq(sb.empty_leaves, sa.empty_leaves, "%s", what);
    cr_assert_eq(sb.min_leaf, sa.min_leaf, "%s", what);
    cr_assert_eq(sb.max_leaf, sa.max_leaf, "%s", what);
    cr_assert_eq(avq_index_size(b), avq_index_size(a));
    cr_assert_eq(avq_index_dim(b), avq_index_dim(a));
    cr_assert_eq(avq_index_metric(b), avq_index_metric(a));
    avq_search_params dp = lv_default(a, K), ep = lv_exhaustive(a, K, 4 * N);
    lv_results ra = lv_search(a, queries, NQ, &dp, what), rb = lv_search(b, queries, NQ, &dp, what);
    lv_expect_same(&ra, &rb, what);
    lv_results_free(&ra);
    lv_results_free(&rb);
    ra = lv_search(a, queries, NQ, &ep, what);
    rb = lv_search(b, queries, NQ, &ep, what);
    lv_expect_same(&ra, &rb, what);
    lv_results_free(&ra);
    lv_results_free(&rb);
    for (int64_t id = 0; id < N; id += 7)
        cr_assert_eq(avq_index_contains(b, id), avq_index_contains(a, id), "%s: contains(%lld)", what,
                     (long long)id);
    for (int64_t id = 100000; id < 100600; id += 3)
        cr_assert_eq(avq_index_contains(b, id), avq_index_contains(a, id), "%s: contains(%lld)", what,
                     (long long)id);
}

static const unsigned MODES[] = {AVQ_LOAD_COPY, AVQ_LOAD_MMAP, AVQ_LOAD_MMAP | AVQ_LOAD_SKIP_CHECKSUMS};
static const char *const MODE_NAMES[] = {"copy", "mmap", "mmap, no checksums", "bytes"};

static avq_index *load_mode(const char *path, int mode) {
    avq_index *index = NULL;
    if (mode < 3) {
        cr_assert_eq(avq_index_load(path, MODES[mode], &index), AVQ_OK, "%s (%s): %s", path,
                     MODE_NAMES[mode], avq_last_error());
    } else {
        size_t size;
        uint8_t *data = lv_read_file(path, &size);
        cr_assert_eq(avq_index_load_bytes(data, size, &index), AVQ_OK, "%s (bytes): %s", path,
                     avq_last_error());
        free(data); /* the bytes are copied */
    }
    cr_assert_not_null(index);
    return index;
}

static void changed_round_trip(avq_metric metric, int bits, avq_reorder reorder, size_t leaves) {
    avq_index *index = changed_index(metric, bits, reorder, leaves);
    size_t size;
    uint8_t *bytes = lv_bytes(index, &size);
    const char *path = lv_path("changed.avq");
    cr_assert_eq(avq_index_save(index, path), AVQ_OK, "%s", avq_last_error());
    size_t fsize;
    uint8_t *file = lv_read_file(path, &fsize);
    cr_assert(fsize == size && memcmp(file, bytes, size) == 0,
              "save_bytes and save disagree (%zu vs %zu bytes)", size, fsize);
    cr_assert_eq(avqf_get32(file + 8), 2u, "the file is not format version 2");
    free(file);
    /* the original changes once more; every loaded copy the same way */
    avq_index *loaded[4];
    for (int m = 0; m < 4; m++) {
        loaded[m] = load_mode(path, m);
        char what[80];
        snprintf(what, sizeof what, "loaded (%s)", MODE_NAMES[m]);
        expect_same_index(index, loaded[m], what);
        cr_assert_eq(avq_index_memory_bytes(loaded[m]) > 0, 1);
    }
    change(index, 1);
    for (int m = 0; m < 4; m++) {
        cr_assert_eq(avq_index_set_compact_threshold(loaded[m], 0), AVQ_OK);
        change(loaded[m], 1);
        char what[80];
        snprintf(what, sizeof what, "loaded (%s), changed again", MODE_NAMES[m]);
        expect_same_index(index, loaded[m], what);
    }
    /* a mapped index wrote nothing to its file */
    file = lv_read_file(path, &fsize);
    cr_assert(fsize == size && memcmp(file, bytes, size) == 0, "changing a mapped index changed its file");
    free(file);
    /* saved again (the mapped one over its own file: the old mapping stays
     * valid), loaded again: the same */
    for (int m = 0; m < 4; m++) {
        char name[32];
        snprintf(name, sizeof name, "again%d.avq", m);
        const char *again = m == 1 ? path : lv_path(name);
        cr_assert_eq(avq_index_save(loaded[m], again), AVQ_OK, "%s: %s", MODE_NAMES[m], avq_last_error());
        avq_index *back = load_mode(again, m == 3 ? 0 : m);
        char what[80];
        snprintf(what, sizeof what, "saved again (%s)", MODE_NAMES[m]);
        expect_same_index(index, back, what);
        expect_same_index(index, loaded[m], "after saving itself");
        /* and compacted, changed a third time, saved a third time */
        cr_assert_eq(avq_index_compact(back, 0, NULL), AVQ_OK);
        cr_assert_eq(lv_stats(back).dead, 0);
        change(back, 2);
        cr_assert_eq(avq_index_save(back, lv_path("third.avq")), AVQ_OK, "%s", avq_last_error());
        avq_index *third = load_mode(lv_path("third.avq"), 1);
        expect_same_index(back, third, "third save");
        avq_index_free(third);
        avq_index_free(back);
        if (m != 1) unlink(again);
    }
    for (int m = 0; m < 4; m++) avq_index_free(loaded[m]);
    unlink(path);
    free(bytes);
    avq_index_free(index);
}

Test(living_io, changed_index_round_trips_l2_4bit_float) {
    changed_round_trip(AVQ_METRIC_L2, 4, AVQ_REORDER_FLOAT, LEAVES);
}
Test(living_io, changed_index_round_trips_cos_8bit_int8) {
    changed_round_trip(AVQ_METRIC_COSINE, 8, AVQ_REORDER_INT8, 6);
}
Test(living_io, changed_index_round_trips_dot_4bit_float16) {
    changed_round_trip(AVQ_METRIC_DOT, 4, AVQ_REORDER_FLOAT16, LEAVES);
}
Test(living_io, changed_index_round_trips_dot_4bit_none) {
    changed_round_trip(AVQ_METRIC_DOT, 4, AVQ_REORDER_NONE, LEAVES);
}
Test(living_io, changed_index_round_trips_dot_exact_tier) {
    avq_build_params p = lv_params(AVQ_METRIC_DOT, 4, AVQ_REORDER_FLOAT, 0, BRUTE);
    avq_index *index = lv_build(base, BRUTE - 1, DIM, &p);
    cr_assert_eq(avq_index_set_compact_threshold(index, 0), AVQ_OK);
    change(index, 0);
    const char *path = lv_path("exact.avq");
    cr_assert_eq(avq_index_save(index, path), AVQ_OK, "%s", avq_last_error());
    for (int m = 0; m < 4; m++) {
        avq_index *l = load_mode(path, m);
        expect_same_index(index, l, MODE_NAMES[m]);
        cr_assert_eq(avq_index_set_compact_threshold(l, 0), AVQ_OK);
        change(l, 1);
        avq_index_free(l);
    }
    unlink(path);
    avq_index_free(index);
}

/* A saved index with every vector removed, and a never-filled one. */
Test(living_io, empty_and_emptied_indexes_round_trip) {
    avq_build_params p = lv_params(AVQ_METRIC_L2, 4, AVQ_REORDER_FLOAT, LEAVES, BRUTE);
    avq_quantizer *q = NULL;
    cr_assert_eq(avq_quantizer_train(base, N, DIM, &p, &q), AVQ_OK, "%s", avq_last_error());
    avq_index *empty = NULL, *emptied = NULL;
    cr_assert_eq(avq_index_create(q, &empty), AVQ_OK);
    cr_assert_eq(avq_index_create(q, &emptied), AVQ_OK);
    avq_quantizer_free(q);
    cr_assert_eq(avq_index_set_compact_threshold(emptied, 0), AVQ_OK);
    int64_t *ids = malloc(N * sizeof *ids);
    cr_assert_eq(avq_index_add(emptied, base, N, NULL, 2, ids), AVQ_OK);
    cr_assert_eq(avq_index_remove(emptied, ids, N, NULL), AVQ_OK);
    cr_assert_eq(avq_index_size(emptied), 0);
    cr_assert_eq(lv_stats(emptied).dead, (size_t)N);
    avq_index *both[2] = {empty, emptied};
    for (int e = 0; e < 2; e++) {
        const char *path = lv_path("empty.avq");
        cr_assert_eq(avq_index_save(both[e], path), AVQ_OK, "%s", avq_last_error());
        for (int m = 0; m < 4; m++) {
            avq_index *l = load_mode(path, m);
            expect_same_index(both[e], l, e ? "emptied" : "empty");
            cr_assert_eq(lv_stats(l).next_id, e ? N : 0);
            /* fill it again: automatic ids go on from the saved next id */
            int64_t first;
            cr_assert_eq(avq_index_add(l, base, 1, NULL, 1, &first), AVQ_OK, "%s", avq_last_error());
            cr_assert_eq(first, e ? N : 0);
            avq_search_params sp = lv_exhaustive(l, 1, 10);
            int64_t got;
            cr_assert_eq(avq_index_search(l, base, &sp, &got, NULL), AVQ_OK);
            cr_assert_eq(got, first);
            avq_index_free(l);
        }
        unlink(path);
    }
    free(ids);
    avq_index_free(empty);
    avq_index_free(emptied);
}

/* ---- the quantizer alone ---------------------------------------------------------- */

Test(living_io, quantizer_round_trip_makes_the_same_index) {
    avq_build_params p = lv_params(AVQ_METRIC_COSINE, 4, AVQ_REORDER_INT8, LEAVES, BRUTE);
    avq_quantizer *q = NULL;
    cr_assert_eq(avq_quantizer_train(base, N, DIM, &p, &q), AVQ_OK, "%s", avq_last_error());
    const char *qpath = lv_path("q.avq"), *ipath = lv_path("i.avq");
    cr_assert_eq(avq_quantizer_save(q, qpath), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(avq_quantizer_save(NULL, qpath), AVQ_ERR_INVALID);
    avq_index *a = NULL;
    cr_assert_eq(avq_index_create(q, &a), AVQ_OK);
    cr_assert_eq(avq_index_set_compact_threshold(a, 0), AVQ_OK);
    change(a, 0);
    cr_assert_eq(avq_index_save(a, ipath), AVQ_OK);
    /* from the quantizer file, from the index file, from the index */
    avq_quantizer *from_q = NULL, *from_i = NULL;
    cr_assert_eq(avq_quantizer_load(qpath, &from_q), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(avq_quantizer_load(ipath, &from_i), AVQ_OK, "%s", avq_last_error());
    const avq_quantizer *qs[3] = {from_q, from_i, avq_index_quantizer(a)};
    const char *names[3] = {"quantizer file", "index file", "avq_index_quantizer"};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(avq_quantizer_dim(qs[i]), (size_t)DIM);
        cr_assert_eq(avq_quantizer_metric(qs[i]), AVQ_METRIC_COSINE);
        cr_assert_eq(avq_quantizer_num_leaves(qs[i]), avq_quantizer_num_leaves(q));
        avq_index *b = NULL;
        cr_assert_eq(avq_index_create(qs[i], &b), AVQ_OK, "%s", avq_last_error());
        cr_assert_eq(avq_index_set_compact_threshold(b, 0), AVQ_OK);
        change(b, 0);
        expect_same_index(a, b, names[i]);
        avq_build_params pa, pb;
        avq_build_params_init(&pa, AVQ_METRIC_DOT);
        avq_build_params_init(&pb, AVQ_METRIC_DOT);
        avq_index_build_params(a, &pa);
        avq_index_build_params(b, &pb);
        cr_assert(pa.metric == pb.metric && pa.num_leaves == pb.num_leaves && pa.bits == pb.bits &&
                      pa.reorder == pb.reorder && pa.seed == pb.seed && pa.dims_per_block == pb.dims_per_block,
                  "%s: build parameters differ", names[i]);
        avq_index_free(b);
    }
    /* the quantizer file is an index file with no vectors */
    avq_index *e = NULL;
    cr_assert_eq(avq_index_load(qpath, AVQ_LOAD_MMAP, &e), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(avq_index_size(e), 0);
    cr_assert_eq(avq_index_num_leaves(e), avq_quantizer_num_leaves(q));
    cr_assert_eq(avq_index_set_compact_threshold(e, 0), AVQ_OK);
    change(e, 0);
    expect_same_index(a, e, "index loaded from the quantizer file");
    avq_index_free(e);
    /* damaged quantizer files are refused like index files */
    size_t size;
    uint8_t *data = lv_read_file(qpath, &size);
    const char *bad = lv_path("q_bad.avq");
    for (size_t cut = 0; cut < size; cut += 1 + cut / 4) {
        lv_write_file(bad, data, cut);
        avq_quantizer *x = (avq_quantizer *)&x;
        int st = avq_quantizer_load(bad, &x);
        cr_assert_eq(st, AVQ_ERR_FORMAT, "quantizer cut at %zu: %d", cut, st);
        cr_assert_null(x);
    }
    avq_quantizer *x = NULL;
    cr_assert_eq(avq_quantizer_load(lv_path("missing.avq"), &x), AVQ_ERR_IO);
    free(data);
    avq_quantizer_free(from_q);
    avq_quantizer_free(from_i);
    avq_quantizer_free(q);
    avq_index_free(a);
    unlink(qpath);
    unlink(ipath);
    unlink(bad);
}

/* ---- version 1 files --------------------------------------------------------------- */

Test(living_io, v1_file_loads_changes_and_saves_as_v2) {
    const char *dir = getenv("AVQ_GOLDEN_DIR");
    char path[512];
    snprintf(path, sizeof path, "%s/golden_v1_l2_pq4_float.avq", dir && dir[0] ? dir : "tests/golden");
    size_t size;
    uint8_t *before = lv_read_file(path, &size);
    for (int m = 0; m < 3; m++) {
        avq_index *v1 = NULL;
        cr_assert_eq(avq_index_load(path, MODES[m], &v1), AVQ_OK, "%s: %s", path, avq_last_error());
        size_t n = avq_index_size(v1), dim = avq_index_dim(v1);
        cr_assert_eq(n, 120);
        avq_index_stats st = lv_stats(v1);
        cr_assert_eq(st.next_id, (int64_t)n, "v1 ids are row numbers: next id %lld", (long long)st.next_id);
        cr_assert_eq(st.dead, 0);
        for (int64_t id = 0; id < (int64_t)n; id++) cr_assert_eq(avq_index_contains(v1, id), 1);
        cr_assert_eq(avq_index_contains(v1, (int64_t)n), 0);
        float *rows = lv_clustered(10, dim, 3);
        int64_t ids[10];
        cr_assert_eq(avq_index_set_compact_threshold(v1, 0), AVQ_OK);
        cr_assert_eq(avq_index_add(v1, rows, 10, NULL, 1, ids), AVQ_OK, "%s", avq_last_error());
        for (int i = 0; i < 10; i++) cr_assert_eq(ids[i], (int64_t)n + i);
        int64_t rm[5] = {0, 1, 2, 3, ids[9]};
        size_t removed;
        cr_assert_eq(avq_index_remove(v1, rm, 5, &removed), AVQ_OK);
        cr_assert_eq(removed, 5);
        avq_search_params sp = lv_exhaustive(v1, 3, 1000);
        for (int i = 0; i < 9; i++) {
            int64_t got[3];
            cr_assert_eq(avq_index_search(v1, rows + i * dim, &sp, got, NULL), AVQ_OK);
            cr_assert_eq(got[0], ids[i]);
        }
        const char *out = lv_path("from_v1.avq");
        cr_assert_eq(avq_index_save(v1, out), AVQ_OK, "%s", avq_last_error());
        size_t z;
        uint8_t *saved = lv_read_file(out, &z);
        cr_assert_eq(avqf_get32(saved + 8), 2u, "a changed v1 index is saved as version %u",
                     avqf_get32(saved + 8));
        free(saved);
        avq_index *v2 = load_mode(out, m);
        cr_assert_eq(avq_index_size(v2), n + 10 - 5);
        cr_assert_eq(lv_stats(v2).next_id, (int64_t)n + 10);
        for (int i = 0; i < 4; i++) cr_assert_eq(avq_index_contains(v2, i), 0);
        lv_results a = lv_search(v1, rows, 10, &sp, "v1 changed"), b = lv_search(v2, rows, 10, &sp, "as v2");
        lv_expect_same(&a, &b, "a changed v1 index saved as v2");
        lv_results_free(&a);
        lv_results_free(&b);
        avq_index_free(v2);
        unlink(out);
        free(rows);
        avq_index_free(v1);
    }
    size_t after_size;
    uint8_t *after = lv_read_file(path, &after_size);
    cr_assert(after_size == size && memcmp(before, after, size) == 0, "the golden file changed");
    free(before);
    free(after);
}

/* ---- corrupt version-2 files ---------------------------------------------------------
 * The approach of test_corrupt.c, on changed indexes: dead slots, caller
 * ids, an empty index, an emptied one, a quantizer-only file. */

typedef struct {
    const char *name;
    uint8_t *data;
    size_t size;
    avqf_section secs[AVQF_MAX_SECTIONS];
    size_t count;
} image;

enum { IMAGES = 7 };
static image images[IMAGES];
static char cpath[160];

static void keep_image(image *img, const char *name, const char *path) {
    img->name = name;
    img->data = lv_read_file(path, &img->size);
    img->count = avqf_sections(img->data, img->size, img->secs, AVQF_MAX_SECTIONS);
    cr_assert_geq(img->count, 1, "%s: no section table", name);
}

static void small_changed(image *img, const char *name, avq_metric metric, size_t n, size_t dim,
                          int bits, size_t leaves, avq_reorder reorder, bool exact, double compact) {
    float *x = lv_clustered(n + 100, dim, 900 + n);
    avq_build_params p = lv_params(metric, bits, reorder, exact ? 0 : leaves, exact ? 100000 : 1);
    p.threads = 1;
    avq_index *index = lv_build(x, n, dim, &p);
    cr_assert_eq(avq_index_set_compact_threshold(index, 0), AVQ_OK);
    int64_t ids[60];
    for (int i = 0; i < 60; i++) ids[i] = 5000 + 11 * i;
    cr_assert_eq(avq_index_add(index, x + n * dim, 60, ids, 1, NULL), AVQ_OK, "%s", avq_last_error());
    int64_t rm[40];
    for (int i = 0; i < 40; i++) rm[i] = i < 30 ? 3 * i : ids[i];
    cr_assert_eq(avq_index_remove(index, rm, 40, NULL), AVQ_OK);
    int64_t up[10];
    for (int i = 0; i < 10; i++) up[i] = i < 5 ? 3 * i + 1 : 7000 + i;
    cr_assert_eq(avq_index_upsert(index, x + (n + 60) * dim, 10, up, 1, NULL), AVQ_OK);
    if (compact > 0) cr_assert_eq(avq_index_compact(index, compact, NULL), AVQ_OK);
    cr_assert_eq(avq_index_save(index, cpath), AVQ_OK, "%s", avq_last_error());
    keep_image(img, name, cpath);
    avq_index_free(index);
    free(x);
}

static void corrupt_setup(void) {
    setup();
    snprintf(cpath, sizeof cpath, "%s", lv_path("corrupt.avq"));
    small_changed(&images[0], "l2 4-bit 4 leaves float, changed", AVQ_METRIC_L2, 200, 8, 4, 4,
                  AVQ_REORDER_FLOAT, false, 0);
    small_changed(&images[1], "dot 8-bit 2 leaves int8, changed, compacted", AVQ_METRIC_DOT, 300, 6, 8,
                  2, AVQ_REORDER_INT8, false, 0.3);
    small_changed(&images[2], "cos exact tier, changed", AVQ_METRIC_COSINE, 50, 5, 4, 1,
                  AVQ_REORDER_FLOAT, true, 0);
    /* empty, emptied, quantizer only */
    float *x = lv_clustered(200, 8, 77);
    avq_build_params p = lv_params(AVQ_METRIC_L2, 4, AVQ_REORDER_FLOAT, 3, 1);
    p.threads = 1;
    avq_quantizer *q = NULL;
    cr_assert_eq(avq_quantizer_train(x, 200, 8, &p, &q), AVQ_OK, "%s", avq_last_error());
    avq_index *e = NULL;
    cr_assert_eq(avq_index_create(q, &e), AVQ_OK);
    cr_assert_eq(avq_index_save(e, cpath), AVQ_OK);
    keep_image(&images[3], "empty", cpath);
    cr_assert_eq(avq_index_set_compact_threshold(e, 0), AVQ_OK);
    int64_t ids[40];
    cr_assert_eq(avq_index_add(e, x, 40, NULL, 1, ids), AVQ_OK);
    cr_assert_eq(avq_index_remove(e, ids, 40, NULL), AVQ_OK);
    cr_assert_eq(avq_index_save(e, cpath), AVQ_OK);
    keep_image(&images[4], "emptied (all dead)", cpath);
    cr_assert_eq(avq_quantizer_save(q, cpath), AVQ_OK);
    keep_image(&images[5], "quantizer only", cpath);
    small_changed(&images[6], "dot 4-bit 3 leaves float16, changed", AVQ_METRIC_DOT, 200, 8, 4, 3,
                  AVQ_REORDER_FLOAT16, false, 0);
    avq_index_free(e);
    avq_quantizer_free(q);
    free(x);
}

static void corrupt_teardown(void) {
    for (int i = 0; i < IMAGES; i++) free(images[i].data);
    unlink(cpath);
    teardown();
}

TestSuite(living_corrupt, .init = corrupt_setup, .fini = corrupt_teardown, .timeout = 300);

enum expect { FAILS, FAILS_IF_CHECKED, CLEAN, LOADS };

/* What a user does with a loaded index, writes included: each call
 * succeeds or fails cleanly, and the index stays usable. */
static void exercise(avq_index *index, bool trusted, bool strict, const char *label) {
    size_t dim = avq_index_dim(index), n = avq_index_size(index), leaves = avq_index_num_leaves(index);
    cr_assert(dim > 0 && leaves > 0, "%s: dim %zu leaves %zu", label, dim, leaves);
    avq_index_stats st;
    memset(&st, 0, sizeof st);
    cr_assert_eq(avq_index_get_stats(index, &st), AVQ_OK, "%s: stats: %s", label, avq_last_error());
    cr_assert_eq(st.live, n, "%s", label);
    float *q = malloc(3 * dim * sizeof *q);
    for (size_t j = 0; j < 3 * dim; j++) q[j] = (float)((int)(j * 37 % 17) - 8) / 8.0f;
    int64_t ids[12];
    float sc[12];
    avq_search_params sp = lv_default(index, 12);
    int s = avq_index_search(index, q, &sp, ids, sc);
    cr_assert(s == AVQ_OK || avq_last_error()[0], "%s: search %d without message", label, s);
    sp = lv_exhaustive(index, 12, 1000);
    s = avq_index_search(index, q, &sp, ids, sc);
    cr_assert(s == AVQ_OK || avq_last_error()[0], "%s: search %d without message", label, s);
    if (s == AVQ_OK && strict) {
        size_t found = 0;
        for (int i = 0; i < 12; i++) found += ids[i] != AVQ_NO_ID;
        cr_assert_eq(found, n < 12 ? n : 12, "%s: %zu results with %zu live", label, found, n);
        for (int i = 0; i < 12; i++)
            if (ids[i] != AVQ_NO_ID) cr_assert_eq(avq_index_contains(index, ids[i]), 1, "%s: id %lld", label, (long long)ids[i]);
    }
    /* writes */
    int64_t added[2];
    s = avq_index_add(index, q, 2, NULL, 1, added);
    cr_assert(s == AVQ_OK || avq_last_error()[0], "%s: add %d without message", label, s);
    if (s == AVQ_OK && strict)
        cr_assert_eq(added[0], st.next_id, "%s: automatic id %lld, next_id was %lld", label,
                     (long long)added[0], (long long)st.next_id);
    s = avq_index_search(index, q + dim, &sp, ids, sc);
    cr_assert(s == AVQ_OK || avq_last_error()[0], "%s", label);
    if (s == AVQ_OK) {
        size_t nrm = 0;
        for (int i = 0; i < 6; i++) nrm += ids[i] != AVQ_NO_ID;
        s = avq_index_remove(index, ids, nrm, NULL);
        cr_assert(s == AVQ_OK || avq_last_error()[0], "%s: remove %d without message", label, s);
    }
    int64_t up = 3;
    s = avq_index_upsert(index, q + 2 * dim, 1, &up, 1, NULL);
    cr_assert(s == AVQ_OK || avq_last_error()[0], "%s: upsert %d", label, s);
    s = avq_index_compact(index, 0, NULL);
    cr_assert(s == AVQ_OK || avq_last_error()[0], "%s: compact %d", label, s);
    s = avq_index_search(index, q, &sp, ids, sc);
    cr_assert(s == AVQ_OK || avq_last_error()[0], "%s", label);
    void *bytes = NULL;
    size_t size = 0;
    s = avq_index_save_bytes(index, &bytes, &size);
    cr_assert(s == AVQ_OK || avq_last_error()[0], "%s: save_bytes %d", label, s);
    if (s == AVQ_OK && !trusted) {
        /* what a loaded index saves, loads */
        avq_index *again = NULL;
        s = avq_index_load_bytes(bytes, size, &again);
        cr_assert_eq(s, AVQ_OK, "%s: its own bytes do not load: %s", label, avq_last_error());
        cr_assert_eq(avq_index_size(again), avq_index_size(index));
        avq_index_free(again);
    }
    avq_free(bytes);
    free(q);
}

/* The file judge() loads: a memfd, through /proc/self/fd (as the fuzzer
 * does) -- thousands of small files written to a disk would be slow. */
static int jfd = -1;
static char jpath[64];

static void put_judged(const uint8_t *data, size_t size) {
    if (jfd < 0) {
        jfd = memfd_create("avq-judge", 0);
        cr_assert_geq(jfd, 0, "memfd_create");
        snprintf(jpath, sizeof jpath, "/proc/self/fd/%d", jfd);
    }
    cr_assert_eq(ftruncate(jfd, 0), 0);
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(jfd, data + done, size - done, (off_t)done);
        cr_assert_gt(w, 0);
        done += (size_t)w;
    }
}

static int judge(const uint8_t *data, size_t size, enum expect want, const char *label) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("AVQ_TEST_VERBOSE") != NULL; /* which case crashed? */
    if (verbose) fprintf(stderr, "judge: %s\n", label);
    put_judged(data, size);
    int loaded = 0;
    for (int m = 0; m < 4; m++) {
        bool skip = m == 2;
        avq_index *index = (avq_index *)&index;
        int st = m < 3 ? avq_index_load(jpath, MODES[m], &index) : avq_index_load_bytes(data, size, &index);
        if (st == AVQ_OK) {
            cr_assert_not_null(index);
            cr_assert(want == CLEAN || want == LOADS || (want == FAILS_IF_CHECKED && skip),
                      "%s (%s): loaded, should have been refused", label, MODE_NAMES[m]);
            exercise(index, skip, want == LOADS, label);
            avq_index_free(index);
            loaded++;
        } else {
            cr_assert_null(index, "%s (%s): *out not reset", label, MODE_NAMES[m]);
            cr_assert_eq(st, AVQ_ERR_FORMAT, "%s (%s): status %d: %s", label, MODE_NAMES[m], st,
                         avq_last_error());
            cr_assert(want != LOADS, "%s (%s): refused: %s", label, MODE_NAMES[m], avq_last_error());
            if (m < 3)
                cr_assert(strstr(avq_last_error(), jpath) != NULL, "%s (%s): message does not name the file: %s",
                          label, MODE_NAMES[m], avq_last_error());
        }
    }
    /* the quantizer loader reads the same files */
    avq_quantizer *q = (avq_quantizer *)&q;
    int st = avq_quantizer_load(jpath, &q);
    if (st == AVQ_OK) {
        cr_assert(want != FAILS, "%s: quantizer loaded from a file the index loader refuses", label);
        avq_index *e = NULL;
        cr_assert_eq(avq_index_create(q, &e), AVQ_OK);
        avq_quantizer_free(q);
        exercise(e, false, want == LOADS, label);
        avq_index_free(e);
    } else {
        cr_assert_null(q, "%s: quantizer *out not reset", label);
        cr_assert(st == AVQ_ERR_FORMAT, "%s: quantizer load status %d: %s", label, st, avq_last_error());
    }
    return loaded;
}

static uint8_t *copy_of(const image *img) {
    uint8_t *c = malloc(img->size + 64);
    memcpy(c, img->data, img->size);
    return c;
}

Test(living_corrupt, images_are_version_2_and_load) {
    for (int i = 0; i < IMAGES; i++) {
        cr_assert_eq(avqf_get32(images[i].data + 8), 2u, "%s: format version %u", images[i].name,
                     avqf_get32(images[i].data + 8));
        cr_assert_eq(judge(images[i].data, images[i].size, LOADS, images[i].name), 4);
        /* the container is the one fuzz/avq_file.h knows: rewriting it
         * with avqf_write gives the same bytes */
        avqf_out out[AVQF_MAX_SECTIONS];
        for (size_t s = 0; s < images[i].count; s++)
            out[s] = (avqf_out){images[i].secs[s].tag, images[i].secs[s].flags,
                                images[i].data + images[i].secs[s].offset, (size_t)images[i].secs[s].length};
        size_t size;
        uint8_t *same = avqf_write(out, images[i].count, &size);
        cr_assert_not_null(same);
        cr_assert(size == images[i].size && memcmp(same, images[i].data, size) == 0,
                  "%s: avq_file.h and the library disagree on the layout", images[i].name);
        free(same);
    }
}

static void cut_at(const image *img, size_t cut) {
    if (cut >= img->size) return;
    char label[200];
    uint8_t *c = copy_of(img);
    snprintf(label, sizeof label, "%s: cut at %zu of %zu", img->name, cut, img->size);
    judge(c, cut, FAILS, label);
    if (cut >= AVQF_HEADER) {
        avqf_fix(c, cut, AVQF_FIX_ALL);
        size_t end = 0;
        for (size_t s = 0; s < img->count; s++)
            if (img->secs[s].offset + img->secs[s].length > end) end = img->secs[s].offset + img->secs[s].length;
        snprintf(label, sizeof label, "%s: cut at %zu of %zu, size and CRCs repaired", img->name, cut, img->size);
        judge(c, cut, cut >= end ? CLEAN : FAILS, label);
    }
    free(c);
}

Test(living_corrupt, truncation) {
    uint64_t rng = 99;
    for (int i = 0; i < IMAGES; i++) {
        const image *img = &images[i];
        size_t table_end = AVQF_HEADER + img->count * AVQF_ENTRY;
        size_t cuts[] = {0, 1, 8, 63, AVQF_HEADER, table_end - 1, table_end, table_end + 1, img->size - 1};
        for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) cut_at(img, cuts[k]);
        for (size_t s = 0; s < img->count; s++) {
            size_t start = img->secs[s].offset, end = start + img->secs[s].length;
            size_t at[] = {start - 1, start, start + 1, end - 1, end, end + 1};
            for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) cut_at(img, at[k]);
        }
        for (int r = 0; r < 30; r++) cut_at(img, (size_t)(lv_rng(&rng) % img->size));
        /* appended bytes are refused too */
        uint8_t *c = calloc(1, img->size + 64);
        memcpy(c, img->data, img->size);
        judge(c, img->size + 64, FAILS, "64 bytes appended");
        free(c);
    }
}

Test(living_corrupt, header_and_table_bit_flips) {
    for (int i = 0; i < IMAGES; i++) {
        const image *img = &images[i];
        size_t table_end = AVQF_HEADER + img->count * AVQF_ENTRY;
        /* every bit of the header and every 5th byte of the table of the
         * first image; of the others every 4th header byte and every 13th
         * table byte (test_corrupt.c does every bit) */
        bool full = i == 0;
        size_t hstep = full ? 1 : 4, tstep = full ? 5 : 13;
        for (size_t byte = 0; byte < table_end; byte += byte < AVQF_HEADER ? hstep : tstep) {
            for (int bit = 0; bit < 8; bit++) {
                char label[200];
                uint8_t *c = copy_of(img);
                c[byte] ^= (uint8_t)(1u << bit);
                snprintf(label, sizeof label, "%s: bit %d of byte %zu", img->name, bit, byte);
                judge(c, img->size, FAILS, label);
                avqf_fix(c, img->size, AVQF_FIX_SECTION_CRC | AVQF_FIX_HEADER_CRC);
                snprintf(label, sizeof label, "%s: bit %d of byte %zu, CRCs repaired", img->name, bit, byte);
                judge(c, img->size, CLEAN, label);
                free(c);
            }
        }
    }
}

Test(living_corrupt, data_bit_flips) {
    for (int i = 0; i < IMAGES; i++) {
        const image *img = &images[i];
        size_t data_start = AVQF_HEADER + img->count * AVQF_ENTRY;
        size_t step = img->size / 120 + 1;
        for (size_t at = data_start; at < img->size; at += step) {
            bool in_section = false;
            for (size_t s = 0; s < img->count; s++)
                in_section |= at >= img->secs[s].offset && at < img->secs[s].offset + img->secs[s].length;
            uint8_t *c = copy_of(img);
            c[at] ^= (uint8_t)(1u << (at % 8));
            char label[200];
            snprintf(label, sizeof label, "%s: data bit flip at %zu", img->name, at);
            judge(c, img->size, in_section ? FAILS_IF_CHECKED : LOADS, label);
            avqf_fix(c, img->size, AVQF_FIX_SECTION_CRC | AVQF_FIX_HEADER_CRC);
            snprintf(label, sizeof label, "%s: data bit flip at %zu, CRCs repaired", img->name, at);
            judge(c, img->size, CLEAN, label);
            free(c);
        }
    }
}

/* Extreme 64-bit (and 32-bit) values written over the words of every
 * section -- counts, offsets, ids, liveness words, whatever they are --
 * with valid checksums: the structural validation must catch what would
 * address memory, and anything it lets through must be harmless, writes
 * included. */
Test(living_corrupt, extreme_words_in_every_section) {
    static const uint64_t values[] = {0, 1, 0xFF, 1ull << 31, 0xFFFFFFFFull, 1ull << 32, UINT64_MAX,
                                      INT64_MAX};
    for (int i = 0; i < IMAGES; i++) {
        const image *img = &images[i];
        for (size_t s = 0; s < img->count; s++) {
            size_t len = (size_t)img->secs[s].length;
            if (len < 8) continue;
            size_t words = len / 8;
            bool conf = img->secs[s].tag == AVQF_TAG('C', 'O', 'N', 'F');
            size_t at[64], nat = 0;
            for (size_t w = 0; w < words && nat < 64; w++)
                /* every CONF slot; elsewhere the first words, the middle, the end */
                if (conf || w < 3 || w == words / 2 || w + 2 >= words) at[nat++] = w;
            for (size_t a = 0; a < nat; a++) {
                /* CONF's next id: next_id_must_be_free */
                if (conf && at[a] == 21) continue;
                size_t off = (size_t)img->secs[s].offset + 8 * at[a];
                uint64_t orig = avqf_get64(img->data + off);
                uint64_t mine[] = {orig + 1, orig - 1, orig ^ (1ull << 40)}; /* 3: below */
                for (size_t v = 0; v < sizeof values / sizeof values[0] + 3; v++) {
                    uint64_t value = v < sizeof values / sizeof values[0] ? values[v] : mine[v - sizeof values / sizeof values[0]];
                    if (value == orig) continue;
                    uint8_t *c = copy_of(img);
                    avqf_put64(c + off, value);
                    avqf_fix(c, img->size, AVQF_FIX_SECTION_CRC | AVQF_FIX_HEADER_CRC);
                    char label[240], tag[5] = {0};
                    memcpy(tag, &img->secs[s].tag, 4);
                    snprintf(label, sizeof label, "%s: %s word %zu = %#llx (was %#llx)", img->name, tag,
                             at[a], (unsigned long long)value, (unsigned long long)orig);
                    judge(c, img->size, CLEAN, label);
                    free(c);
                }
            }
        }
    }
}

/* CONF's next automatic id must be free: a file (checksums valid) whose
 * next id is one a live slot holds is refused when the ids are checked --
 * else the next automatic add gives a second vector that id, and the index
 * saves a file it cannot load. */
Test(living_corrupt, next_id_must_be_free) {
    for (int i = 0; i < 3; i++) {
        const image *img = &images[i];
        int conf = avqf_find(img->secs, img->count, AVQF_TAG('C', 'O', 'N', 'F'));
        int ids = avqf_find(img->secs, img->count, AVQF_TAG('I', 'D', 'S', '_'));
        cr_assert(conf >= 0 && ids >= 0);
        cr_assert_geq(img->secs[conf].length, 8 * 22, "CONF has no next-id slot");
        avq_index *index = NULL;
        cr_assert_eq(avq_index_load_bytes(img->data, img->size, &index), AVQ_OK);
        /* a held id: the largest one a search finds */
        avq_search_params sp = lv_exhaustive(index, 1, 1000);
        size_t dim = avq_index_dim(index);
        float *q = calloc(dim, sizeof *q);
        q[0] = 1;
        int64_t held;
        cr_assert_eq(avq_index_search(index, q, &sp, &held, NULL), AVQ_OK);
        cr_assert_neq(held, AVQ_NO_ID);
        free(q);
        avq_index_free(index);
        for (int v = 0; v < 2; v++) {
            uint8_t *c = copy_of(img);
            /* next id = an id a search returned; = 7005, upserted as a new
             * id by small_changed */
            avqf_put64(c + img->secs[conf].offset + 8 * 21, v == 0 ? (uint64_t)held : 7005);
            avqf_fix(c, img->size, AVQF_FIX_SECTION_CRC | AVQF_FIX_HEADER_CRC);
            char label[160];
            snprintf(label, sizeof label, "%s: CONF next id %lld, an id it holds", img->name,
                     v == 0 ? (long long)held : 7005LL);
            judge(c, img->size, FAILS_IF_CHECKED, label);
            free(c);
        }
    }
}

Test(living_corrupt, versions_and_sections) {
    for (int i = 0; i < IMAGES; i++) {
        const image *img = &images[i];
        uint32_t versions[] = {0, 1, 3, 1000, UINT32_MAX};
        for (size_t k = 0; k < sizeof versions / sizeof versions[0]; k++) {
            uint8_t *c = copy_of(img);
            avqf_put32(c + 8, versions[k]);
            avqf_fix(c, img->size, AVQF_FIX_HEADER_CRC);
            char label[120];
            snprintf(label, sizeof label, "%s: format version %u", img->name, versions[k]);
            judge(c, img->size, versions[k] == 1 ? CLEAN : FAILS, label);
            if (versions[k] > 2) {
                char want[32];
                snprintf(want, sizeof want, "%u", versions[k]);
                cr_expect(strstr(avq_last_error(), want) != NULL, "%s: message does not name the version: %s",
                          label, avq_last_error());
            }
            free(c);
        }
        /* each section left out, or written twice */
        avqf_out out[AVQF_MAX_SECTIONS + 1];
        for (size_t drop = 0; drop < img->count; drop++) {
            for (int twice = 0; twice < 2; twice++) {
                size_t count = 0;
                for (size_t s = 0; s < img->count; s++) {
                    if (s == drop && !twice) continue;
                    out[count++] = (avqf_out){img->secs[s].tag, img->secs[s].flags,
                                              img->data + img->secs[s].offset, (size_t)img->secs[s].length};
                    if (s == drop && twice) {
                        out[count] = out[count - 1];
                        count++;
                    }
                }
                if (count == 0) continue;
                size_t size;
                uint8_t *d = avqf_write(out, count, &size);
                char label[120], tag[5] = {0};
                memcpy(tag, &img->secs[drop].tag, 4);
                snprintf(label, sizeof label, "%s: %s %s", img->name, tag, twice ? "twice" : "missing");
                /* a section may be one the configuration can do without */
                judge(d, size, twice ? FAILS : CLEAN, label);
                free(d);
            }
        }
    }
}

/* ---- kill -9 during save ----------------------------------------------------------- */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

Test(living_io, sigkill_during_save_keeps_the_previous_file, .timeout = 120) {
    enum { BIG = 16000, BDIM = 32 };
    float *x = lv_clustered(BIG + 2000, BDIM, 61);
    avq_build_params p = lv_params(AVQ_METRIC_L2, 4, AVQ_REORDER_FLOAT, 8, BRUTE);
    avq_index *a = lv_build(x, BIG, BDIM, &p);
    /* state b: a, changed */
    size_t za, zb;
    uint8_t *ba = lv_bytes(a, &za);
    cr_assert_eq(avq_index_set_compact_threshold(a, 0), AVQ_OK);
    int64_t rm[2000];
    for (int i = 0; i < 2000; i++) rm[i] = 7 * i;
    cr_assert_eq(avq_index_remove(a, rm, 2000, NULL), AVQ_OK);
    cr_assert_eq(avq_index_add(a, x + (size_t)BIG * BDIM, 2000, NULL, 2, NULL), AVQ_OK);
    uint8_t *bb = lv_bytes(a, &zb);
    cr_assert(za != zb || memcmp(ba, bb, za) != 0);
    avq_index *states[2] = {NULL, a};
    cr_assert_eq(avq_index_load_bytes(ba, za, &states[0]), AVQ_OK);

    char dir[200];
    snprintf(dir, sizeof dir, "%s/kill", lv_tmpdir());
    mkdir(dir, 0700);
    char path[260];
    snprintf(path, sizeof path, "%s/index.avq", dir);
    double t0 = now();
    cr_assert_eq(avq_index_save(states[0], path), AVQ_OK, "%s", avq_last_error());
    double save_time = now() - t0;
    size_t z;
    uint8_t *f = lv_read_file(path, &z);
    cr_assert(z == za && memcmp(f, ba, za) == 0, "the saved file is not what save_bytes gives");
    free(f);

    uint64_t rng = 4242;
    int seen[2] = {0, 0}, kills = 16;
    double window = save_time * 2.5 + 0.002;
    for (int k = 0; k < kills; k++) {
        fflush(NULL);
        pid_t child = fork();
        cr_assert_geq(child, 0);
        if (child == 0) {
            /* save the two states in turn, forever -- through named
             * temporary files (the path of a filesystem without O_TMPFILE):
             * their leftovers prove below that kills landed inside saves,
             * which an O_TMPFILE save does not leave (tests/test_files.c
             * kills those deterministically) */
            avq_io_test_no_tmpfile = 1;
            for (unsigned i = (unsigned)k;; i++)
                if (avq_index_save(states[i % 2], path) != AVQ_OK) _exit(3);
        }
        struct timespec d;
        double wait = lv_unit(&rng) * window;
        d.tv_sec = (time_t)wait;
        d.tv_nsec = (long)((wait - (double)d.tv_sec) * 1e9);
        nanosleep(&d, NULL);
        kill(child, SIGKILL);
        int status;
        cr_assert_eq(waitpid(child, &status, 0), child);
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "the saving child ended by itself (status %#x): a save failed", status);
        f = lv_read_file(path, &z);
        int which = z == za && memcmp(f, ba, za) == 0 ? 0 : z == zb && memcmp(f, bb, zb) == 0 ? 1 : -1;
        cr_assert_geq(which, 0, "kill %d after %.1f ms: the file (%zu bytes) is neither state", k,
                      wait * 1e3, z);
        seen[which]++;
        free(f);
        avq_index *l = NULL;
        cr_assert_eq(avq_index_load(path, AVQ_LOAD_COPY, &l), AVQ_OK, "kill %d: %s", k, avq_last_error());
        cr_assert_eq(avq_index_size(l), avq_index_size(states[which]));
        avq_index_free(l);
    }
    cr_log_info("sigkill: save %.1f ms, %d kills, state a %d times, b %d times", save_time * 1e3, kills,
                seen[0], seen[1]);
    cr_expect(seen[0] > 0 && seen[1] > 0, "only one state was ever seen: the saves did not alternate");
    /* a kill inside a save leaves its temporary file behind: some must
     * have (else no kill hit a save and the test proved nothing) */
    size_t leftovers = 0;
    DIR *dh = opendir(dir);
    struct dirent *ent;
    while ((ent = readdir(dh)) != NULL)
        leftovers += strcmp(ent->d_name, ".") && strcmp(ent->d_name, "..") && strcmp(ent->d_name, "index.avq");
    closedir(dh);
    cr_expect_gt(leftovers, 0, "no temporary file left: did any kill land inside a save?");
    /* saves after all those kills still work */
    cr_assert_eq(avq_index_save(a, path), AVQ_OK, "%s", avq_last_error());
    f = lv_read_file(path, &z);
    cr_assert(z == zb && memcmp(f, bb, zb) == 0);
    free(f);
    dh = opendir(dir);
    while ((ent = readdir(dh)) != NULL) {
        if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, "..")) continue;
        char p2[600];
        snprintf(p2, sizeof p2, "%s/%s", dir, ent->d_name);
        unlink(p2);
    }
    closedir(dh);
    rmdir(dir);
    free(ba);
    free(bb);
    free(x);
    avq_index_free(states[0]);
    avq_index_free(a);
}

/* ---- the fuzzer's format-2 seed corpus ---------------------------------------------
 * fuzz/corpus-v2/ (fuzz/make_corpus.c) and fuzz/regressions-v2/ if present,
 * replayed with the expectations their names carry (fuzz/make_corpus.c):
 * bad_ refused in every mode, badchk_ refused when checksums are verified,
 * mut_ (and fuzzer artifacts) either way, anything else loads -- each as it
 * is and with its checksums repaired.  $AVQ_FUZZ_DIR replaces "fuzz". */

static void corpus_setup(void) { snprintf(cpath, sizeof cpath, "%s", lv_path("corpus.avq")); }
static void corpus_teardown(void) {
    unlink(cpath);
    lv_tmpdir_remove();
}

TestSuite(living_corpus, .init = corpus_setup, .fini = corpus_teardown, .timeout = 120);

static enum expect expected_of(const char *name) {
    if (!strncmp(name, "bad_", 4)) return FAILS;
    if (!strncmp(name, "badchk_", 7)) return FAILS_IF_CHECKED;
    if (!strncmp(name, "mut_", 4) || !strncmp(name, "crash-", 6) || !strncmp(name, "leak-", 5) ||
        !strncmp(name, "oom-", 4) || !strncmp(name, "timeout-", 8))
        return CLEAN;
    return LOADS;
}

static size_t replay_v2(const char *sub, bool required) {
    const char *fz = getenv("AVQ_FUZZ_DIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", fz && fz[0] ? fz : "fuzz", sub);
    DIR *d = opendir(dir);
    cr_assert(d || !required, "cannot open %s (run from the repository root or set AVQ_FUZZ_DIR)", dir);
    if (!d) return 0;
    size_t files = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.') continue;
        /* judged by its own test (living_corrupt::next_id_must_be_free), so
         * that a failure there hides nothing here */
        if (strstr(ent->d_name, "next_id_taken")) continue;
        char path[1024], label[1100];
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        size_t size;
        uint8_t *data = lv_read_file(path, &size);
        enum expect want = expected_of(ent->d_name);
        snprintf(label, sizeof label, "%s", path);
        judge(data, size, want, label);
        if (size > 0 && avqf_fix(data, size, AVQF_FIX_ALL)) {
            snprintf(label, sizeof label, "%s with checksums repaired", path);
            judge(data, size, want == LOADS ? LOADS : CLEAN, label);
        }
        free(data);
        files++;
    }
    closedir(d);
    return files;
}

Test(living_corpus, v2_seed_corpus_replays_as_named) {
    size_t files = replay_v2("corpus-v2", true);
    cr_assert_geq(files, 30, "only %zu files in corpus-v2", files);
}

Test(living_corpus, v2_regressions_replay_cleanly) { replay_v2("regressions-v2", false); }
