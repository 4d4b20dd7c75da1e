/*
 * fuzz_load.c -- libFuzzer harness over avq_index_load.
 *
 * The loader takes a path, so each input is written to a memfd and loaded
 * through /proc/self/fd/N.  Every input is tried twice:
 *
 *   1. as it is, in the three load modes (copy, mmap, mmap + skipped
 *      checksums) -- the checksum and size checks are what stops it;
 *   2. with its file-size field, section CRCs and header CRC repaired
 *      (fuzz/avq_file.h), again in the three modes -- a random mutation
 *      almost never carries valid checksums, so without this step the
 *      fuzzer would never get past the CRC check to the structural
 *      validation (counts, lengths, offsets, CONF values, LOFF/COFF/IDS_
 *      contents), which is the part that must be airtight.
 *
 * The library under test is the production code: no fuzz-only define.  A
 * successful load is exercised like a user would: accessors, a search with
 * the index's default parameters, one with every leaf and a small re-rank,
 * a batch search, then free.  Any crash, sanitizer report or leak fails.
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

/* `trusted`: loaded with checksums skipped, so IDS_ was not checked and
 * ids may be out of range (doc/FORMAT.md); memory safety must hold anyway. */
static void exercise(const avq_index *index, bool trusted) {
    size_t n = avq_index_size(index), dim = avq_index_dim(index);
    size_t leaves = avq_index_num_leaves(index);
    if (n == 0 || dim == 0 || leaves == 0 || leaves > n) abort();
    (void)avq_index_memory_bytes(index);
    (void)avq_metric_name(avq_index_metric(index));
    avq_build_params bp;
    avq_index_build_params(index, &bp);
    avq_search_params sp;
    avq_index_default_search_params(index, &sp);

    float *query = malloc(2 * dim * sizeof *query);
    if (!query) abort();
    for (size_t j = 0; j < 2 * dim; j++) query[j] = (float)((int)(j * 37 % 17) - 8) / 8.0f;
    enum { K = 12 };
    int64_t ids[2 * K];
    float scores[2 * K];

    sp.k = 10;
    int st = avq_index_search(index, query, &sp, ids, scores);
    if (st != AVQ_OK) check_error(st);
    for (size_t i = 0; st == AVQ_OK && !trusted && i < sp.k; i++)
        if (ids[i] < -1 || ids[i] >= (int64_t)n) {
            fprintf(stderr, "fuzz_load: search returned id %lld of %zu\n", (long long)ids[i], n);
            abort();
        }

    avq_search_params_init(&sp);
    sp.k = K;
    sp.leaves_to_search = leaves;
    sp.pre_reorder = 20;
    st = avq_index_search(index, query + dim, &sp, ids, NULL);
    if (st != AVQ_OK) check_error(st);

    sp.k = 3;
    sp.leaves_to_search = 1;
    st = avq_index_search_batch(index, query, 2, &sp, 1, ids, scores);
    if (st != AVQ_OK) check_error(st);
    free(query);
}

static void try_load(const uint8_t *data, size_t size) {
    put_file(data, size);
    static const unsigned modes[] = {AVQ_LOAD_COPY, AVQ_LOAD_MMAP,
                                     AVQ_LOAD_MMAP | AVQ_LOAD_SKIP_CHECKSUMS};
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        avq_index *index = (avq_index *)&index; /* must be reset to NULL on failure */
        int st = avq_index_load(memfd_path, modes[m], &index);
        if (st == AVQ_OK) {
            if (!index) abort();
            exercise(index, modes[m] & AVQ_LOAD_SKIP_CHECKSUMS);
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
