/*
 * fuzz_load.c -- libFuzzer harness over the loaders: avq_index_load (three
 * modes), avq_index_load_bytes and avq_quantizer_load, on files of format
 * version 1 (avq 0.1) and 2 (the living index: dead slots and the LIVE
 * bitmap, caller ids, a next automatic id, empty indexes, quantizer-only
 * files).
 *
 * The loader takes a path, so each input is written to a memfd and loaded
 * through /proc/self/fd/N.  Every input is tried twice:
 *
 *   1. as it is: copy, mmap, mmap + skipped checksums, from bytes, and as a
 *      quantizer -- the checksum and size checks are what stops it;
 *   2. with its file-size field, section CRCs and header CRC repaired
 *      (fuzz/avq_file.h), the same five ways -- a random mutation almost
 *      never carries valid checksums, so without this step the fuzzer
 *      would never get past the CRC check to the structural validation
 *      (counts, lengths, offsets, CONF values, LOFF/COFF/LIVE/IDS_
 *      contents), which is the part that must be airtight.
 *
 * The library under test is the production code: no fuzz-only define.  A
 * successful load is exercised like a user would, writes included (a
 * loaded index -- mapped or copied -- changes again): accessors and stats,
 * a search with the index's default parameters, one over every leaf, a
 * batch search, an add under automatic ids, a remove, an upsert, a
 * compaction, searches again, save to bytes and load those, then free.  Any
 * crash, sanitizer report or leak fails; so does (unless AVQ_FUZZ_LENIENT=1)
 * an inconsistency in what a verified load handed out: a returned id the
 * index does not contain, more results than live vectors, a next automatic
 * id already held, saved bytes that do not load again.
 *
 *   make fuzz FUZZ_SECONDS=600      (fuzz/fuzz.mk)
 */
#include "avq.h"
#include "avq_file.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int memfd = -1;
static char memfd_path[64];
static uint8_t *scratch;
static size_t scratch_size;

static void put_file(const uint8_t *data, size_t size) {
    if (ftruncate(memfd, 0) != 0) abort();
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(memfd, data + done, size - done, (off_t)done);
        if (w <= 0) abort();
        done += (size_t)w;
    }
}

static void check_error(int st) {
    /* every failure must explain itself */
    const char *msg = avq_last_error();
    if (st >= 0 || st < AVQ_ERR_INTERNAL || st == AVQ_ERR_INTERNAL || !msg || !msg[0]) {
        fprintf(stderr, "fuzz_load: status %d with message \"%s\"\n", st, msg ? msg : "(null)");
        abort();
    }
}

/* Semantic checks on top of memory safety (on by default): what a
 * verified load hands out is consistent -- a search returns only ids the
 * index contains, never more results than live vectors, the next automatic
 * id is free, and what the index saves loads again.  AVQ_FUZZ_LENIENT=1
 * keeps only the memory-safety part (to get past a known inconsistency). */
static bool strict = true;

static void fail(const char *what, long long a, long long b) {
    fprintf(stderr, "fuzz_load: %s (%lld, %lld)\n", what, a, b);
    abort();
}

/* The result rows a search wrote: -1 only as a tail; if `check`, every id
 * is contained.  Returns the number of ids. */
static size_t check_row(const avq_index *index, const int64_t *ids, size_t k, bool check) {
    size_t found = 0;
    bool tail = false;
    for (size_t i = 0; i < k; i++) {
        if (ids[i] == AVQ_NO_ID) {
            tail = true;
            continue;
        }
        found++;
        if (!check) continue;
        if (tail) fail("an id after a -1", (long long)ids[i], (long long)i);
        if (!avq_index_contains(index, ids[i])) fail("search returned an id the index does not contain", (long long)ids[i], (long long)i);
    }
    return found;
}

/* `trusted`: loaded with checksums skipped, so IDS_ was not checked and
 * ids may be repeated (doc/FORMAT.md); memory safety must hold anyway,
 * writes included. */
static void exercise(avq_index *index, bool trusted) {
    bool check = strict && !trusted;
    size_t n = avq_index_size(index), dim = avq_index_dim(index);
    size_t leaves = avq_index_num_leaves(index);
    if (dim == 0 || leaves == 0) abort();
    (void)avq_index_memory_bytes(index);
    (void)avq_metric_name(avq_index_metric(index));
    (void)avq_quantizer_num_leaves(avq_index_quantizer(index));
    avq_build_params bp;
    avq_build_params_init(&bp, AVQ_METRIC_DOT);
    avq_index_build_params(index, &bp);
    avq_index_stats stats;
    memset(&stats, 0, sizeof stats);
    int st = avq_index_get_stats(index, &stats);
    if (st != AVQ_OK) check_error(st);
    else if (stats.live != n) fail("stats.live differs from avq_index_size", (long long)stats.live, (long long)n);
    avq_search_params sp;
    avq_search_params_init(&sp);
    avq_index_default_search_params(index, &sp);

    float *query = malloc(4 * dim * sizeof *query); /* rows 0..3 */
    if (!query) abort();
    for (size_t j = 0; j < 4 * dim; j++) query[j] = (float)((int)(j * 37 % 17) - 8) / 8.0f;
    enum { K = 12 };
    int64_t ids[4 * K]; /* up to 3 queries of K */
    float scores[4 * K];

    sp.k = 10;
    st = avq_index_search(index, query, &sp, ids, scores);
    if (st != AVQ_OK) check_error(st);
    else if (check_row(index, ids, sp.k, check) > n && check) fail("more results than live vectors", (long long)sp.k, (long long)n);

    avq_search_params_init(&sp);
    sp.k = K;
    sp.leaves_to_search = leaves;
    sp.pre_reorder = 20;
    st = avq_index_search(index, query + dim, &sp, ids, NULL);
    if (st != AVQ_OK) check_error(st);
    else if (check_row(index, ids, sp.k, check) > n && check) fail("more results than live vectors", (long long)K, (long long)n);

    sp.k = 3;
    sp.leaves_to_search = 1;
    st = avq_index_search_batch(index, query, 2, &sp, 1, ids, scores);
    if (st != AVQ_OK) check_error(st);

    /* writes: a loaded index -- mapped or copied -- changes like any other */
    int64_t next = stats.next_id;
    if (check && next >= 0 && avq_index_contains(index, next))
        fail("the next automatic id is already held", (long long)next, (long long)n);
    int64_t added[2];
    st = avq_index_add(index, query, 2, NULL, 1, added);
    if (st != AVQ_OK) check_error(st);
    sp.k = K;
    sp.leaves_to_search = leaves;
    st = avq_index_search(index, query + dim, &sp, ids, NULL);
    if (st != AVQ_OK) check_error(st);
    else {
        size_t found = check_row(index, ids, K, check);
        st = avq_index_remove(index, ids, found < 5 ? found : 5, NULL);
        if (st != AVQ_OK) check_error(st);
    }
    int64_t up[2] = {3, next >= 0 && next < INT64_MAX - 10 ? next + 5 : 77};
    st = avq_index_upsert(index, query + 2 * dim, 2, up, 1, NULL);
    if (st != AVQ_OK) check_error(st);
    st = avq_index_compact(index, 0.25, NULL);
    if (st != AVQ_OK) check_error(st);
    st = avq_index_search_batch(index, query, 3, &sp, 2, ids, NULL);
    if (st != AVQ_OK) check_error(st);

    /* what it saves, loads (and is the same size) */
    void *bytes = NULL;
    size_t size = 0;
    st = avq_index_save_bytes(index, &bytes, &size);
    if (st != AVQ_OK) check_error(st);
    else {
        avq_index *again = NULL;
        st = avq_index_load_bytes(bytes, size, &again);
        if (st != AVQ_OK) {
            if (check) {
                fprintf(stderr, "fuzz_load: the index's own bytes do not load: %s\n", avq_last_error());
                abort();
            }
            check_error(st);
        } else if (avq_index_size(again) != avq_index_size(index)) {
            fail("a saved and loaded index changed size", (long long)avq_index_size(again),
                 (long long)avq_index_size(index));
        }
        avq_index_free(again);
        avq_free(bytes);
    }
    free(query);
}

static void try_load(const uint8_t *data, size_t size) {
    put_file(data, size);
    /* the quantizer loader reads the same files; an index made from what
     * it loads works */
    avq_quantizer *q = (avq_quantizer *)&q;
    int qst = avq_quantizer_load(memfd_path, &q);
    if (qst == AVQ_OK) {
        avq_index *e = NULL;
        if (!q) abort();
        qst = avq_index_create(q, &e);
        avq_quantizer_free(q);
        if (qst != AVQ_OK) check_error(qst);
        else {
            exercise(e, false);
            avq_index_free(e);
        }
    } else {
        if (q != NULL) abort();
        check_error(qst);
    }
    static const unsigned modes[] = {AVQ_LOAD_COPY, AVQ_LOAD_MMAP,
                                     AVQ_LOAD_MMAP | AVQ_LOAD_SKIP_CHECKSUMS};
    for (size_t m = 0; m <= sizeof modes / sizeof modes[0]; m++) {
        avq_index *index = (avq_index *)&index; /* must be reset to NULL on failure */
        bool bytes = m == sizeof modes / sizeof modes[0];
        int st = bytes ? avq_index_load_bytes(data, size, &index)
                       : avq_index_load(memfd_path, modes[m], &index);
        if (st == AVQ_OK) {
            if (!index) abort();
            exercise(index, !bytes && (modes[m] & AVQ_LOAD_SKIP_CHECKSUMS));
            avq_index_free(index);
        } else {
            if (index != NULL) abort();
            check_error(st);
        }
    }
}

/* Any UBSan report is fatal even where a check was compiled recoverable
 * (fuzz/fuzz.mk); the environment's UBSAN_OPTIONS add to this. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) { return "halt_on_error=1:print_stacktrace=1"; }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *lenient = getenv("AVQ_FUZZ_LENIENT");
    strict = !(lenient && lenient[0] == '1');
    memfd = memfd_create("avq-fuzz", 0);
    if (memfd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(memfd_path, sizeof memfd_path, "/proc/self/fd/%d", memfd);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    try_load(data, size);
    if (size > scratch_size) {
        free(scratch);
        scratch = malloc(size);
        if (!scratch) abort();
        scratch_size = size;
    }
    if (size == 0) return 0;
    memcpy(scratch, data, size);
    if (avqf_fix(scratch, size, AVQF_FIX_ALL)) try_load(scratch, size);
    return 0;
}
