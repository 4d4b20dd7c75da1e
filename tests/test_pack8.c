/*
 * test_pack8.c -- the packed 8-bit code layout (pack.h) and the files that
 * carry it (suite pack8).
 *
 * Since avq 0.6 an 8-bit index keeps its codes in groups of 32 points, block
 * rows of 32 bytes, like the 4-bit layout, so that a SIMD kernel can look up
 * 64 points with two byte permutes.  Files written before 0.6 hold 8-bit
 * codes row-major; they must still load (repacked at load) and answer
 * exactly as the index that wrote them, and a file written now must carry
 * the REQUIRED section PAK8 so that an older reader refuses it.  The legacy
 * files here are made from a current file by rewriting its code section
 * row-major, dropping PAK8 and cutting CONF to the 29 slots avq 0.5 wrote.
 */
#include <criterion/criterion.h>

#include "avq_internal.h"
#include "pack.h"
#include "living_common.h"
#include "../fuzz/avq_file.h" /* fuzz/ is not on the include path */

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the layout ----------------------------------------------------------- */

Test(pack8, sizes) {
    cr_assert_eq(avq_pack_size(8, 0, 5), 0);
    cr_assert_eq(avq_pack_size(8, 1, 5), 160);
    cr_assert_eq(avq_pack_size(8, 32, 5), 160);
    cr_assert_eq(avq_pack_size(8, 33, 5), 320);
    cr_assert_eq(avq_pack_size(8, SIZE_MAX / 2, SIZE_MAX / 2), SIZE_MAX);
    cr_assert_eq(avq_pack_size(5, 10, 5), SIZE_MAX); /* no such width */
    cr_assert_eq(avq_pack_group_bytes(8, 7), 224);
    cr_assert_eq(avq_pack_group_bytes(4, 7), 112);
}

Test(pack8, round_trip_layout_and_padding) {
    static const size_t ns[] = {1, 5, 31, 32, 33, 64, 100};
    static const size_t Ks[] = {1, 2, 3, 25, 64};
    uint64_t seed = 9;
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (size_t b = 0; b < sizeof Ks / sizeof *Ks; b++) {
            size_t n = ns[a], K = Ks[b];
            uint8_t *codes = malloc(n * K), *back = malloc(n * K);
            uint8_t *packed = malloc(avq_pack_size(8, n, K));
            for (size_t i = 0; i < n * K; i++) codes[i] = (uint8_t)lv_rng(&seed);
            cr_assert_eq(avq_pack(8, codes, n, K, packed), AVQ_OK);
            /* the documented byte address: g*32K + m*32 + 2(s mod 16) + s/16 */
            for (size_t i = 0; i < n; i++)
                for (size_t m = 0; m < K; m++)
                    cr_assert_eq(packed[(i / 32) * 32 * K + m * 32 + 2 * (i % 16) + i % 32 / 16],
                                 codes[i * K + m],
                                 "n=%zu K=%zu i=%zu m=%zu", n, K, i, m);
            /* padding repeats the last point */
            for (size_t i = n; i < (n + 31) / 32 * 32; i++)
                for (size_t m = 0; m < K; m++)
                    cr_assert_eq(avq_pack_get(8, packed, K, i, m), codes[(n - 1) * K + m]);
            cr_assert_eq(avq_unpack(8, packed, n, K, back), AVQ_OK);
            cr_assert_eq(memcmp(codes, back, n * K), 0, "n=%zu K=%zu", n, K);
            free(codes);
            free(back);
            free(packed);
        }
}

Test(pack8, append_equals_packing_from_scratch) {
    size_t K = 7, n_max = 70, cap = avq_pack_size(8, n_max, K);
    uint64_t seed = 3;
    uint8_t *codes = malloc(n_max * K), *grown = malloc(cap), *fresh = malloc(cap);
    for (size_t i = 0; i < n_max * K; i++) codes[i] = (uint8_t)lv_rng(&seed);
    memset(grown, 0xEE, cap); /* whatever the buffer held before */
    for (size_t n = 0; n < n_max; n++) {
        cr_assert_eq(avq_pack_append(8, grown, cap, n, K, codes + n * K), AVQ_OK);
        cr_assert_eq(avq_pack(8, codes, n + 1, K, fresh), AVQ_OK);
        cr_assert_eq(memcmp(grown, fresh, avq_pack_size(8, n + 1, K)), 0, "after %zu", n + 1);
    }
    cr_assert_eq(avq_pack_append(8, grown, 32 * K - 1, 0, K, codes), AVQ_ERR_INVALID);
    cr_assert_eq(avq_pack(3, codes, 2, K, fresh), AVQ_ERR_INVALID);
    cr_assert_eq(avq_unpack(9, fresh, 2, K, codes), AVQ_ERR_INVALID);
    free(codes);
    free(grown);
    free(fresh);
}

/* ---- files ---------------------------------------------------------------- */

enum { N = 700, DIM = 12, NQ = 20, TOPK = 10, CONF_SLOTS_0_5 = 29 };

static float *data, *queries;
static void setup(void) {
    data = lv_clustered(N, DIM, 41);
    queries = lv_clustered(NQ, DIM, 42);
}
static void teardown(void) {
    free(data);
    free(queries);
}
TestSuite(pack8, .init = setup, .fini = teardown, .timeout = 300);

/* An 8-bit index whose scores come from the codes alone (no re-ranking), so
 * that a wrong code anywhere changes some answer. */
static avq_index *build_8bit(void) {
    avq_build_params p = lv_params(AVQ_METRIC_DOT, 8, AVQ_REORDER_NONE, 5, 0);
    p.dims_per_block = 2;
    return lv_build(data, N, DIM, &p);
}

typedef struct {
    int64_t ids[NQ * TOPK];
    float scores[NQ * TOPK];
} answers;

static void search_all(const avq_index *index, answers *out) {
    avq_search_params sp = lv_exhaustive(index, TOPK, N);
    for (size_t q = 0; q < NQ; q++)
        cr_assert_eq(avq_index_search(index, queries + q * DIM, &sp, out->ids + q * TOPK,
                                      out->scores + q * TOPK),
                     AVQ_OK, "search: %s", avq_last_error());
}

static void expect_same(const answers *a, const answers *b, const char *what) {
    for (size_t i = 0; i < NQ * TOPK; i++) {
        cr_assert_eq(a->ids[i], b->ids[i], "%s: result %zu", what, i);
        cr_assert_eq(a->scores[i], b->scores[i], "%s: score %zu", what, i);
    }
}

static size_t find(const avqf_section *secs, size_t count, char a, char b, char c, char d) {
    int s = avqf_find(secs, count, AVQF_TAG(a, b, c, d));
    cr_assert(s >= 0, "section %c%c%c%c missing", a, b, c, d);
    return (size_t)s;
}

/* The file an avq 0.5 writer made of the same index: CODE row-major (and
 * COFF to match), no PAK8, CONF without the layout slot. */
static uint8_t *as_legacy(const uint8_t *file, size_t size, size_t *out_size) {
    avqf_section secs[AVQF_MAX_SECTIONS];
    size_t count = avqf_sections(file, size, secs, AVQF_MAX_SECTIONS);
    cr_assert(count > 0);
    const avqf_section *conf = &secs[find(secs, count, 'C', 'O', 'N', 'F')];
    const avqf_section *loff = &secs[find(secs, count, 'L', 'O', 'F', 'F')];
    const avqf_section *coff = &secs[find(secs, count, 'C', 'O', 'F', 'F')];
    const avqf_section *code = &secs[find(secs, count, 'C', 'O', 'D', 'E')];
    cr_assert(conf->length > CONF_SLOTS_0_5 * 8, "a 0.6 CONF has the layout slot");
    size_t K = (size_t)avqf_get64(file + conf->offset + 8 * 7); /* CF_BLOCKS */
    size_t L = loff->length / 8 - 1;
    uint8_t *rows = malloc(N * K), *new_coff = malloc(coff->length);
    size_t at = 0;
    for (size_t l = 0; l < L; l++) {
        size_t first = (size_t)avqf_get64(file + loff->offset + 8 * l);
        size_t n = (size_t)avqf_get64(file + loff->offset + 8 * (l + 1)) - first;
        size_t from = (size_t)avqf_get64(file + coff->offset + 8 * l);
        avqf_put64(new_coff + 8 * l, at);
        cr_assert(from + avq_pack_size(8, n, K) <= code->length);
        cr_assert_eq(avq_unpack(8, file + code->offset + from, n, K, rows + at), AVQ_OK);
        at += n * K;
    }
    avqf_put64(new_coff + 8 * L, at);
    avqf_out out[AVQF_MAX_SECTIONS];
    size_t m = 0;
    for (size_t s = 0; s < count; s++) {
        const avqf_section *x = &secs[s];
        avqf_out o = {x->tag, x->flags, file + x->offset, (size_t)x->length};
        if (x->tag == AVQF_TAG('P', 'A', 'K', '8')) continue;
        if (x == conf) o.length = CONF_SLOTS_0_5 * 8;
        if (x == code) o = (avqf_out){x->tag, x->flags, rows, at};
        if (x == coff) o.data = new_coff;
        out[m++] = o;
    }
    uint8_t *legacy = avqf_write_version(out, m, avqf_get32(file + 8), out_size);
    cr_assert_not_null(legacy);
    free(rows);
    free(new_coff);
    return legacy;
}

static avq_index *load_bytes_as(const uint8_t *bytes, size_t size, unsigned flags) {
    avq_index *index = NULL;
    if (flags == AVQ_LOAD_COPY) {
        cr_assert_eq(avq_index_load_bytes(bytes, size, &index), AVQ_OK, "load: %s",
                     avq_last_error());
        return index;
    }
    char path[] = "/tmp/avq_pack8_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, bytes, size), (ssize_t)size);
    close(fd);
    cr_assert_eq(avq_index_load(path, flags, &index), AVQ_OK, "load: %s", avq_last_error());
    unlink(path);
    return index;
}

Test(pack8, file_carries_required_pak8) {
    avq_index *index = build_8bit();
    void *bytes = NULL;
    size_t size = 0;
    cr_assert_eq(avq_index_save_bytes(index, &bytes, &size), AVQ_OK);
    avqf_section secs[AVQF_MAX_SECTIONS];
    size_t count = avqf_sections(bytes, size, secs, AVQF_MAX_SECTIONS);
    const avqf_section *pak8 = &secs[find(secs, count, 'P', 'A', 'K', '8')];
    cr_assert_eq(pak8->flags & 1u, 1u, "PAK8 must be REQUIRED");
    cr_assert_eq(pak8->length, 4);
    cr_assert_eq(avqf_get32((const uint8_t *)bytes + pak8->offset), 32);
    /* a group size this library does not pack is refused, not misread */
    uint8_t *bad = malloc(size);
    memcpy(bad, bytes, size);
    avqf_put32(bad + pak8->offset, 64);
    avqf_fix(bad, size, AVQF_FIX_ALL);
    avq_index *loaded = NULL;
    cr_assert_eq(avq_index_load_bytes(bad, size, &loaded), AVQ_ERR_FORMAT);
    cr_assert(strstr(avq_last_error(), "PAK8"), "message: %s", avq_last_error());
    free(bad);
    free(bytes);
    avq_index_free(index);
}

Test(pack8, legacy_row_major_file_loads_and_answers_the_same) {
    avq_index *index = build_8bit();
    answers want, got;
    search_all(index, &want);
    void *bytes = NULL;
    size_t size = 0, legacy_size = 0;
    cr_assert_eq(avq_index_save_bytes(index, &bytes, &size), AVQ_OK);
    uint8_t *legacy = as_legacy(bytes, size, &legacy_size);
    static const unsigned modes[] = {AVQ_LOAD_COPY, AVQ_LOAD_MMAP,
                                     AVQ_LOAD_MMAP | AVQ_LOAD_SKIP_CHECKSUMS};
    for (size_t m = 0; m < 3; m++) {
        avq_index *loaded = load_bytes_as(legacy, legacy_size, modes[m]);
        search_all(loaded, &got);
        expect_same(&want, &got, "legacy load");
        /* saved again, it is the file the index itself writes: packed, PAK8 */
        void *again = NULL;
        size_t again_size = 0;
        cr_assert_eq(avq_index_save_bytes(loaded, &again, &again_size), AVQ_OK);
        cr_assert_eq(again_size, size);
        cr_assert_eq(memcmp(again, bytes, size), 0, "re-saved legacy file, mode %u", modes[m]);
        free(again);
        avq_index_free(loaded);
    }
    free(legacy);
    free(bytes);
    avq_index_free(index);
}

Test(pack8, legacy_file_changes_like_the_original) {
    /* a loaded leaf is copied on its first change: from repacked codes too */
    avq_index *index = build_8bit();
    void *bytes = NULL;
    size_t size = 0, legacy_size = 0;
    cr_assert_eq(avq_index_save_bytes(index, &bytes, &size), AVQ_OK);
    uint8_t *legacy = as_legacy(bytes, size, &legacy_size);
    avq_index *loaded = load_bytes_as(legacy, legacy_size, AVQ_LOAD_MMAP);
    float *more = lv_clustered(90, DIM, 43);
    int64_t ids[90], gone[] = {3, 77, 250, 251, 699};
    for (size_t i = 0; i < 90; i++) ids[i] = 10000 + (int64_t)i;
    avq_index *both[2] = {index, loaded};
    answers a[2];
    for (int w = 0; w < 2; w++) {
        cr_assert_eq(avq_index_add(both[w], more, 90, ids, 1, NULL), AVQ_OK, "%s",
                     avq_last_error());
        cr_assert_eq(avq_index_remove(both[w], gone, 5, NULL), AVQ_OK);
        search_all(both[w], &a[w]);
    }
    expect_same(&a[0], &a[1], "after add and remove");
    free(more);
    free(legacy);
    free(bytes);
    avq_index_free(loaded);
    avq_index_free(index);
}
