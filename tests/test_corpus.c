/*
 * test_corpus.c -- replays the loader fuzzer's committed inputs in the
 * regular test suite (so `make check` runs them under ASan + UBSan too):
 * every file in fuzz/corpus/ and fuzz/regressions/ is loaded in the three
 * modes (copy, mmap, mmap + skipped checksums), as it is and with its
 * checksums repaired (fuzz/avq_file.h), and each outcome must be clean:
 * either AVQ_OK and a working search, or an error code with a message.
 *
 * The file name says what is expected of the file as it is:
 *   bad_*      structurally invalid: AVQ_ERR_FORMAT in every mode
 *   badchk_*   corrupt data under a valid table (a flipped bit, bad ids):
 *              AVQ_ERR_FORMAT when the checksums are verified, anything
 *              clean when they are skipped (the data is then trusted)
 *   mut_*      mutated, either outcome is fine
 *   otherwise  a valid index: loads in every mode, searches
 *
 * $AVQ_FUZZ_DIR replaces "fuzz" (the directory holding corpus/ and
 * regressions/); $AVQ_REPLAY_DIR names one more directory whose files are
 * replayed with "either outcome" expectations, e.g. the fuzzer's working
 * corpus: AVQ_REPLAY_DIR=build-fuzz/corpus build/test_avq --filter 'corpus/extra*'
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "avq.h"
#include "../fuzz/avq_file.h" /* fuzz/ is not on the include path */

static const unsigned MODES[] = {AVQ_LOAD_COPY, AVQ_LOAD_MMAP,
                                 AVQ_LOAD_MMAP | AVQ_LOAD_SKIP_CHECKSUMS};

static char tmp_dir[64];

static const char *temp_file(void) {
    static char path[128];
    if (!tmp_dir[0]) {
        snprintf(tmp_dir, sizeof tmp_dir, "/tmp/avq-corpus-XXXXXX");
        cr_assert_not_null(mkdtemp(tmp_dir));
        snprintf(path, sizeof path, "%s/input.avq", tmp_dir);
    }
    return path;
}

static uint8_t *slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc((size_t)len + 1);
    cr_assert_eq(fread(data, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *size = (size_t)len;
    return data;
}

static void spit(const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, size, f), size);
    cr_assert_eq(fclose(f), 0);
}

/* What a user would do with a loaded index; every call must succeed or fail
 * cleanly, and ids must be in range unless the data was trusted (mmap with
 * skipped checksums does not check IDS_: doc/FORMAT.md). */
static void exercise(const avq_index *index, bool trusted, const char *what) {
    size_t n = avq_index_size(index), dim = avq_index_dim(index);
    size_t leaves = avq_index_num_leaves(index);
    cr_assert(n > 0 && dim > 0 && leaves > 0 && leaves <= n, "%s", what);
    (void)avq_index_memory_bytes(index);
    avq_build_params bp;
    avq_build_params_init(&bp, AVQ_METRIC_DOT); /* its struct_size is kept */
    avq_index_build_params(index, &bp);
    float *q = malloc(2 * dim * sizeof *q);
    for (size_t j = 0; j < 2 * dim; j++) q[j] = (float)((int)(j * 37 % 17) - 8) / 8.0f;
    int64_t ids[24];
    float scores[24];
    avq_search_params sp;
    avq_search_params_init(&sp); /* its struct_size is kept */
    avq_index_default_search_params(index, &sp);
    sp.k = 10;
    int st = avq_index_search(index, q, &sp, ids, scores);
    if (st != AVQ_OK)
        cr_assert(avq_last_error()[0], "%s: search status %d without a message", what, st);
    else if (!trusted)
        for (size_t i = 0; i < sp.k; i++)
            cr_assert(ids[i] >= -1 && ids[i] < (int64_t)n, "%s: id %lld of %zu", what,
                      (long long)ids[i], n);
    avq_search_params_init(&sp);
    sp.k = 12;
    sp.leaves_to_search = leaves;
    sp.pre_reorder = 20;
    st = avq_index_search_batch(index, q, 2, &sp, 1, ids, scores);
    cr_assert(st == AVQ_OK || avq_last_error()[0], "%s: batch status %d", what, st);
    free(q);
}

enum expect { EXPECT_OK, EXPECT_FORMAT, EXPECT_FORMAT_IF_CHECKED, EXPECT_ANY };

/* Load `path` in every mode; returns how many modes succeeded. */
static int replay(const char *path, enum expect want, const char *what) {
    int ok = 0;
    for (size_t m = 0; m < 3; m++) {
        avq_index *index = (avq_index *)&index; /* must come back NULL on failure */
        int st = avq_index_load(path, MODES[m], &index);
        char label[600];
        snprintf(label, sizeof label, "%s (mode %u)", what, MODES[m]);
        bool skip = MODES[m] & AVQ_LOAD_SKIP_CHECKSUMS;
        if (st == AVQ_OK) {
            cr_assert_not_null(index, "%s", label);
            cr_assert(want == EXPECT_OK || want == EXPECT_ANY ||
                          (want == EXPECT_FORMAT_IF_CHECKED && skip),
                      "%s: loaded, but it should have been refused", label);
            exercise(index, skip, label);
            avq_index_free(index);
            ok++;
        } else {
            cr_assert_null(index, "%s: failed (%d) but *out is not NULL", label, st);
            cr_assert(avq_last_error()[0], "%s: status %d without a message", label, st);
            cr_assert(st == AVQ_ERR_FORMAT || st == AVQ_ERR_NOMEM || st == AVQ_ERR_IO,
                      "%s: unexpected status %d (%s)", label, st, avq_last_error());
            cr_assert(want != EXPECT_OK, "%s: valid file refused: %s", label, avq_last_error());
            cr_assert(st == AVQ_ERR_FORMAT || want == EXPECT_ANY, "%s: status %d, not FORMAT: %s",
                      label, st, avq_last_error());
        }
    }
    return ok;
}

static enum expect expectation_of(const char *name) {
    if (!strncmp(name, "bad_", 4)) return EXPECT_FORMAT;
    if (!strncmp(name, "badchk_", 7)) return EXPECT_FORMAT_IF_CHECKED;
    if (!strncmp(name, "mut_", 4) || !strncmp(name, "crash-", 6) || !strncmp(name, "leak-", 5) ||
        !strncmp(name, "oom-", 4) || !strncmp(name, "timeout-", 8))
        return EXPECT_ANY;
    return EXPECT_OK;
}

/* Replays every regular file of `dir`; returns the number of files. */
static size_t replay_dir(const char *dir, bool by_name, bool required) {
    DIR *d = opendir(dir);
    if (!d) {
        cr_assert(!required,
                  "cannot open %s (run the tests from the repository root "
                  "or set AVQ_FUZZ_DIR)",
                  dir);
        return 0;
    }
    const char *tmp = temp_file();
    size_t files = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        size_t size;
        uint8_t *data = slurp(path, &size);
        enum expect want = by_name ? expectation_of(ent->d_name) : EXPECT_ANY;
        replay(path, want, path);
        /* the same bytes with valid checksums reach the structural checks */
        if (size > 0 && avqf_fix(data, size, AVQF_FIX_ALL)) {
            spit(tmp, data, size);
            char what[1100];
            snprintf(what, sizeof what, "%s with checksums repaired", path);
            replay(tmp, want == EXPECT_OK ? EXPECT_OK : EXPECT_ANY, what);
        }
        free(data);
        files++;
    }
    closedir(d);
    unlink(tmp);
    return files;
}

static const char *fuzz_dir(void) {
    const char *d = getenv("AVQ_FUZZ_DIR");
    return d && d[0] ? d : "fuzz";
}

TestSuite(corpus, .timeout = 300);

Test(corpus, seed_corpus_replays_cleanly) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/corpus", fuzz_dir());
    size_t files = replay_dir(dir, true, true);
    cr_assert_geq(files, 10, "%s: only %zu files", dir, files);
    rmdir(tmp_dir);
}

/* fuzz/regressions/ is committed (lut-scale-underflow.avq at least): a
 * missing or empty directory means the replay did not happen, which must
 * fail rather than pass with nothing tested. */
Test(corpus, regressions_replay_cleanly) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/regressions", fuzz_dir());
    size_t files = replay_dir(dir, true, true);
    cr_assert_geq(files, 1, "%s: no files replayed", dir);
    rmdir(tmp_dir);
}

/* Optional: reported as skipped (not passed), with a warning that the
 * default output shows, when $AVQ_REPLAY_DIR is unset. */
Test(corpus, extra_directory_replays_cleanly) {
    const char *dir = getenv("AVQ_REPLAY_DIR");
    if (!dir || !dir[0]) {
        /* not cr_log_warn: a warning makes Criterion 2.4 exit non-zero */
        fprintf(stderr,
                "[SKIP] corpus::extra_directory_replays_cleanly: AVQ_REPLAY_DIR is not set\n");
        cr_skip_test("AVQ_REPLAY_DIR is not set: no extra directory to replay");
    }
    size_t files = replay_dir(dir, false, true);
    cr_log_info("replayed %zu files from %s", files, dir);
    rmdir(tmp_dir);
}
