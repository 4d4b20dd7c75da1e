/*
 * test_corrupt.c -- systematic corruption of index files, in every load
 * mode (copy, mmap, mmap + skipped checksums).  test_index.c already cuts
 * and flips bits at spread-out offsets in copy mode; this file is the
 * exhaustive part:
 *
 *   - truncation at every section boundary (start, end, aligned end, +-1),
 *     at the end of the header and table, and at random offsets -- with the
 *     size field left alone and with the size field and checksums repaired;
 *   - every single-bit flip of the header and of every section-table entry,
 *     as is (the header CRC must catch it) and with the CRCs repaired (the
 *     structural validation must then cope);
 *   - offsets and lengths set to huge values (UINT64_MAX, 2^63, values
 *     whose offset + length overflows, one past the file), misaligned or
 *     inside the header;
 *   - section count 0, 65, 2^32 - 1, one more or one less;
 *   - every CONF slot set to extreme values, a short CONF;
 *   - LOFF / COFF entries out of order or out of range, bad ids;
 *   - missing, duplicated, unexpected and unknown (required / optional)
 *     sections, a newer format version.
 *
 * "Repaired" files come from fuzz/avq_file.h, an independent
 * re-implementation of the container, so that structural damage reaches
 * the loader's validation instead of stopping at a checksum.  The outcome
 * must always be clean: AVQ_ERR_FORMAT with a message naming the file, or
 * (where the damage is harmless) AVQ_OK and a working search.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "avq.h"
#include "../fuzz/avq_file.h" /* fuzz/ is not on the include path */

static const unsigned MODES[] = {AVQ_LOAD_COPY, AVQ_LOAD_MMAP,
                                 AVQ_LOAD_MMAP | AVQ_LOAD_SKIP_CHECKSUMS};
#define TAG_OF(s) AVQF_TAG((s)[0], (s)[1], (s)[2], (s)[3])

/* ---- fixtures: three small indexes covering every section kind --------- */

typedef struct {
    uint8_t *data;
    size_t size;
    avqf_section secs[AVQF_MAX_SECTIONS];
    size_t count;
} file_image;

static char dir[64], path[128];
static file_image images[3];
static const char *const IMAGE_NAMES[] = {"l2 4-bit 4 leaves float", "dot 8-bit 2 leaves int8",
                                          "cos brute force"};

static uint64_t rng_state = 12345;
static uint64_t rng(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void make_image(file_image *img, avq_metric metric, size_t n, size_t dim, int bits,
                       size_t leaves, avq_reorder reorder, bool brute) {
    float *x = malloc(n * dim * sizeof *x);
    for (size_t i = 0; i < n * dim; i++) x[i] = (float)((double)(rng() >> 11) * 0x1.0p-53 * 2 - 1);
    avq_build_params p;
    avq_build_params_init(&p, metric);
    p.bits = bits;
    p.num_leaves = leaves;
    p.reorder = reorder;
    p.brute_force_below = brute ? 100000 : 1;
    p.threads = 1;
    avq_index *index = NULL;
    cr_assert_eq(avq_index_build(x, n, dim, &p, &index), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(avq_index_save(index, path), AVQ_OK, "%s", avq_last_error());
    avq_index_free(index);
    free(x);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    img->size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    img->data = malloc(img->size);
    cr_assert_eq(fread(img->data, 1, img->size, f), img->size);
    fclose(f);
    img->count = avqf_sections(img->data, img->size, img->secs, AVQF_MAX_SECTIONS);
    cr_assert_geq(img->count, 5);
}

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/avq-corrupt-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/x.avq", dir);
    make_image(&images[0], AVQ_METRIC_L2, 200, 8, 4, 4, AVQ_REORDER_FLOAT, false);
    make_image(&images[1], AVQ_METRIC_DOT, 300, 6, 8, 2, AVQ_REORDER_INT8, false);
    make_image(&images[2], AVQ_METRIC_COSINE, 50, 5, 4, 1, AVQ_REORDER_FLOAT, true);
}

static void teardown(void) {
    for (int i = 0; i < 3; i++) free(images[i].data);
    unlink(path);
    rmdir(dir);
}

TestSuite(corrupt, .init = setup, .fini = teardown, .timeout = 600);

/* ---- loading and judging ------------------------------------------------- */

enum expect {
    FAILS,           /* AVQ_ERR_FORMAT in every mode                        */
    FAILS_IF_CHECKED, /* FORMAT unless checksums are skipped: then clean      */
    CLEAN,           /* either outcome, as long as it is clean                */
    LOADS            /* AVQ_OK in every mode                                  */
};

static void write_image(const uint8_t *data, size_t size) {
    /* a new file each time: rewriting one in place makes ext4 flush it to
     * disk on close (auto_da_alloc), which is slow and pointless here */
    unlink(path);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, size, f), size);
    cr_assert_eq(fclose(f), 0);
}

static void search_works(const avq_index *index, bool trusted, const char *label) {
    size_t dim = avq_index_dim(index), n = avq_index_size(index);
    float *q = malloc(dim * sizeof *q);
    for (size_t j = 0; j < dim; j++) q[j] = (float)(j % 5) - 2.0f;
    avq_search_params sp;
    avq_search_params_init(&sp); /* its struct_size is kept */
    avq_index_default_search_params(index, &sp);
    sp.k = 7;
    int64_t ids[7];
    float scores[7];
    int st = avq_index_search(index, q, &sp, ids, scores);
    cr_assert(st == AVQ_OK || avq_last_error()[0], "%s: search status %d without message", label, st);
    /* format 2 ids are any int64: a verified file returns ids it holds */
    if (st == AVQ_OK && !trusted)
        for (int i = 0; i < 7 && i < (int)n; i++)
            cr_assert(ids[i] != -1 && avq_index_contains(index, ids[i]), "%s: id %lld", label,
                      (long long)ids[i]);
    sp.leaves_to_search = avq_index_num_leaves(index);
    sp.pre_reorder = 50;
    st = avq_index_search(index, q, &sp, ids, NULL);
    cr_assert(st == AVQ_OK || avq_last_error()[0], "%s: search status %d without message", label, st);
    free(q);
}

/* Load the bytes in every mode and check the outcome; returns the number of
 * modes that loaded. */
static int judge(const uint8_t *data, size_t size, enum expect want, const char *label) {
    write_image(data, size);
    int loaded = 0;
    for (int m = 0; m < 3; m++) {
        bool skip = MODES[m] & AVQ_LOAD_SKIP_CHECKSUMS;
        avq_index *index = (avq_index *)&index;
        int st = avq_index_load(path, MODES[m], &index);
        if (st == AVQ_OK) {
            cr_assert_not_null(index);
            cr_assert(want == CLEAN || want == LOADS || (want == FAILS_IF_CHECKED && skip),
                      "%s (mode %u): loaded, should have been refused", label, MODES[m]);
            search_works(index, skip, label);
            avq_index_free(index);
            loaded++;
        } else {
            cr_assert_null(index, "%s (mode %u): *out not reset", label, MODES[m]);
            cr_assert_eq(st, AVQ_ERR_FORMAT, "%s (mode %u): status %d: %s", label, MODES[m], st,
                         avq_last_error());
            cr_assert(want != LOADS, "%s (mode %u): refused: %s", label, MODES[m], avq_last_error());
            cr_assert(strstr(avq_last_error(), path) != NULL,
                      "%s (mode %u): message does not name the file: %s", label, MODES[m],
                      avq_last_error());
        }
    }
    return loaded;
}

static uint8_t *copy_of(const file_image *img) {
    uint8_t *c = malloc(img->size);
    memcpy(c, img->data, img->size);
    return c;
}

/* ---- truncation ------------------------------------------------------------ */

static void truncate_at(const file_image *img, size_t cut, const char *name) {
    if (cut >= img->size) return;
    char label[160];
    uint8_t *c = copy_of(img);
    snprintf(label, sizeof label, "%s: cut at %zu of %zu", name, cut, img->size);
    judge(c, cut, FAILS, label);
    if (cut >= AVQF_HEADER) {
        /* the header's size field and every CRC made to agree with the cut */
        avqf_fix(c, cut, AVQF_FIX_ALL);
        snprintf(label, sizeof label, "%s: cut at %zu of %zu, size field and CRCs repaired", name,
                 cut, img->size);
        /* a cut in the zero padding after the last section loses nothing */
        size_t data_end = 0;
        for (size_t s = 0; s < img->count; s++)
            if (img->secs[s].offset + img->secs[s].length > data_end)
                data_end = img->secs[s].offset + img->secs[s].length;
        judge(c, cut, cut >= data_end ? LOADS : FAILS, label);
    }
    free(c);
}

Test(corrupt, truncation_at_every_section_boundary) {
    for (int i = 0; i < 3; i++) {
        const file_image *img = &images[i];
        size_t table_end = AVQF_HEADER + img->count * AVQF_ENTRY;
        size_t cuts[] = {0, 1, 8, 63, AVQF_HEADER, AVQF_HEADER + 1, table_end - 1, table_end,
                         table_end + 1};
        for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++)
            truncate_at(img, cuts[k], IMAGE_NAMES[i]);
        for (size_t s = 0; s < img->count; s++) {
            size_t start = img->secs[s].offset, end = start + img->secs[s].length;
            size_t aligned = (end + 63) & ~(size_t)63;
            size_t at[] = {start - 1, start, start + 1, end - 1, end, end + 1, aligned - 1};
            for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) truncate_at(img, at[k], IMAGE_NAMES[i]);
        }
        truncate_at(img, img->size - 1, IMAGE_NAMES[i]);
    }
}

Test(corrupt, truncation_at_random_offsets) {
    for (int i = 0; i < 3; i++)
        for (int r = 0; r < 60; r++)
            truncate_at(&images[i], (size_t)(rng() % images[i].size), IMAGE_NAMES[i]);
}

Test(corrupt, extension_is_refused) {
    for (int i = 0; i < 3; i++) {
        const file_image *img = &images[i];
        uint8_t *c = calloc(1, img->size + 64);
        memcpy(c, img->data, img->size);
        judge(c, img->size + 1, FAILS, "one byte appended");
        judge(c, img->size + 64, FAILS, "64 bytes appended");
        free(c);
    }
}

/* ---- bit flips in the header and the section table ------------------------- */

Test(corrupt, every_bit_of_header_and_table) {
    for (int i = 0; i < 3; i++) {
        const file_image *img = &images[i];
        size_t table_end = AVQF_HEADER + img->count * AVQF_ENTRY;
        uint8_t *c = copy_of(img);
        char label[160];
        int harmless = 0;
        for (size_t byte = 0; byte < table_end; byte++) {
            for (int bit = 0; bit < 8; bit++) {
                c[byte] ^= (uint8_t)(1u << bit);
                /* as is: the header CRC covers header and table */
                snprintf(label, sizeof label, "%s: bit %d of byte %zu", IMAGE_NAMES[i], bit, byte);
                judge(c, img->size, FAILS, label);
                /* with the CRCs repaired: whatever the field, the loader copes */
                uint8_t *r = copy_of(img);
                r[byte] ^= (uint8_t)(1u << bit);
                avqf_fix(r, img->size, AVQF_FIX_SECTION_CRC | AVQF_FIX_HEADER_CRC);
                snprintf(label, sizeof label, "%s: bit %d of byte %zu, CRCs repaired",
                         IMAGE_NAMES[i], bit, byte);
                harmless += judge(r, img->size, CLEAN, label) == 3;
                free(r);
                c[byte] ^= (uint8_t)(1u << bit);
            }
        }
        /* only flips in reserved zero bytes, flags and CRC fields (repaired
         * away) can be harmless: most flips must have been refused */
        cr_assert_lt(harmless, (int)(table_end * 8) / 2, "%s: %d harmless flips", IMAGE_NAMES[i],
                     harmless);
        free(c);
    }
}

/* ---- huge and overflowing offsets and lengths ------------------------------ */

static void set_entry(const file_image *img, size_t s, int field_off, uint64_t value,
                      enum expect want, const char *what) {
    uint8_t *c = copy_of(img);
    avqf_put64(c + img->secs[s].entry_at + field_off, value);
    avqf_fix(c, img->size, AVQF_FIX_SECTION_CRC | AVQF_FIX_HEADER_CRC);
    char label[200], name[5] = {0};
    memcpy(name, &img->secs[s].tag, 4);
    snprintf(label, sizeof label, "section %s: %s = %llu", name, what, (unsigned long long)value);
    judge(c, img->size, want, label);
    free(c);
}

Test(corrupt, huge_lengths_and_offsets) {
    for (int i = 0; i < 3; i++) {
        const file_image *img = &images[i];
        uint64_t size = img->size;
        for (size_t s = 0; s < img->count; s++) {
            uint64_t off = img->secs[s].offset, len = img->secs[s].length;
            uint64_t lengths[] = {UINT64_MAX, UINT64_MAX - 63, 1ull << 63, 1ull << 32,
                                  len + (1ull << 32), UINT64_MAX - off + 1 /* off+len wraps to 0 */,
                                  UINT64_MAX - off + 65, size - off + 1, size, len + 64};
            bool conf = img->secs[s].tag == TAG_OF("CONF");
            for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++)
                /* a longer CONF is allowed (slots added by later versions) */
                set_entry(img, s, 16, lengths[k], conf && lengths[k] == len + 64 ? CLEAN : FAILS,
                          "length");
            uint64_t offsets[] = {UINT64_MAX - 63, UINT64_MAX, 1ull << 63, (UINT64_MAX - len + 1) & ~63ull,
                                  size, size - 64, 0, AVQF_HEADER, off + 1, off + 8, off - 64};
            for (size_t k = 0; k < sizeof offsets / sizeof offsets[0]; k++) {
                /* moving a section back by 64 into zero padding or another
                 * section's bytes may be harmless for the container; the
                 * content checks (or CRCs, which are repaired) decide */
                bool maybe = offsets[k] == off - 64 || offsets[k] == size - 64;
                set_entry(img, s, 8, offsets[k], maybe ? CLEAN : FAILS, "offset");
            }
        }
    }
}

Test(corrupt, section_count) {
    for (int i = 0; i < 3; i++) {
        const file_image *img = &images[i];
        uint32_t counts[] = {0, 65, UINT32_MAX, 1u << 31, (uint32_t)img->count - 1,
                             (uint32_t)img->count + 1};
        for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
            uint8_t *c = copy_of(img);
            avqf_put32(c + 16, counts[k]);
            avqf_fix(c, img->size, AVQF_FIX_HEADER_CRC);
            char label[100];
            snprintf(label, sizeof label, "%s: section count %u", IMAGE_NAMES[i], counts[k]);
            judge(c, img->size, FAILS, label);
            free(c);
        }
    }
}

/* ---- CONF values ------------------------------------------------------------ */

Test(corrupt, every_conf_slot_at_extreme_values) {
    for (int i = 0; i < 3; i++) {
        const file_image *img = &images[i];
        int ci = avqf_find(img->secs, img->count, TAG_OF("CONF"));
        cr_assert_geq(ci, 0);
        size_t conf = img->secs[ci].offset;
        size_t slots = img->secs[ci].length / 8;
        uint64_t n = avqf_get64(img->data + conf + 16);
        for (size_t slot = 0; slot < slots; slot++) {
            uint64_t orig = avqf_get64(img->data + conf + 8 * slot);
            uint64_t values[] = {0, 1, 2, 3, 4, 8, 16, 255, 256, n - 1, n + 1, orig + 1, orig - 1,
                                 UINT32_MAX, 1ull << 32, INT64_MAX, (uint64_t)INT64_MIN,
                                 UINT64_MAX, 0x7FC00000 /* NaN bits */};
            for (size_t k = 0; k < sizeof values / sizeof values[0]; k++) {
                if (values[k] == orig) continue;
                uint8_t *c = copy_of(img);
                avqf_put64(c + conf + 8 * slot, values[k]);
                avqf_fix(c, img->size, AVQF_FIX_SECTION_CRC | AVQF_FIX_HEADER_CRC);
                char label[120];
                snprintf(label, sizeof label, "%s: CONF slot %zu = %llu", IMAGE_NAMES[i], slot,
                         (unsigned long long)values[k]);
                judge(c, img->size, CLEAN, label);
                free(c);
            }
        }
        /* a CONF too short for its 20 slots */
        for (uint64_t len = 0; len < 160; len += 8) set_entry(img, (size_t)ci, 16, len, FAILS, "CONF length");
    }
}

/* ---- contents that address memory -------------------------------------------- */

static void set_u64_in(const file_image *img, const char *tag, size_t index, uint64_t value,
                       enum expect want) {
    /* a section or entry that is not there would make the case vacuous:
     * the callers only ask for entries their image has */
    int s = avqf_find(img->secs, img->count, TAG_OF(tag));
    cr_assert_geq(s, 0, "no %s section: nothing to corrupt", tag);
    cr_assert_leq((index + 1) * 8, img->secs[s].length, "%s has no entry %zu", tag, index);
    uint8_t *c = copy_of(img);
    avqf_put64(c + img->secs[s].offset + 8 * index, value);
    avqf_fix(c, img->size, AVQF_FIX_SECTION_CRC | AVQF_FIX_HEADER_CRC);
    char label[120];
    snprintf(label, sizeof label, "%s[%zu] = %llu", tag, index, (unsigned long long)value);
    judge(c, img->size, want, label);
    free(c);
}

Test(corrupt, leaf_and_code_offsets) {
    for (int i = 0; i < 3; i++) {
        const file_image *img = &images[i];
        static const char *const tags[] = {"LOFF", "COFF"};
        for (int t = 0; t < 2; t++) {
            int s = avqf_find(img->secs, img->count, TAG_OF(tags[t]));
            /* which image has which table is known: LOFF everywhere (the
             * brute-force image's single leaf too), COFF (the codes) in the
             * quantized images only.  A table missing where it belongs is a
             * failure, not a silent pass */
            bool present = t == 0 || i != 2;
            if (!present) {
                cr_assert_lt(s, 0, "%s: unexpected %s", IMAGE_NAMES[i], tags[t]);
                continue;
            }
            cr_assert_geq(s, 0, "%s: no %s section", IMAGE_NAMES[i], tags[t]);
            size_t entries = img->secs[s].length / 8;
            for (size_t e = 0; e < entries; e++) {
                uint64_t v = avqf_get64(img->data + img->secs[s].offset + 8 * e);
                uint64_t bad[] = {v + 1, v - 1, UINT64_MAX, 1ull << 63, v + 32, 0xFFFFFFFFull};
                for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
                    /* moving an inner leaf boundary of a 4-bit index by a few
                     * points may keep every packed size (groups of 32) and
                     * then only changes which leaf scans a point: harmless.
                     * The ends, and any COFF change, must be refused. */
                    bool inner = t == 0 && e > 0 && e + 1 < entries;
                    set_u64_in(img, tags[t], e, bad[k], inner ? CLEAN : FAILS);
                }
            }
        }
    }
}

Test(corrupt, ids) {
    for (int i = 0; i < 3; i++) {
        const file_image *img = &images[i];
        int s = avqf_find(img->secs, img->count, TAG_OF("IDS_"));
        cr_assert_geq(s, 0);
        uint64_t n = img->secs[s].length / 8;
        uint64_t first = avqf_get64(img->data + img->secs[s].offset);
        /* format 2: ids are any int64 but the reserved -1, and distinct
         * (version-1 files, whose ids must be row numbers: test_golden.c) */
        uint64_t bad[] = {UINT64_MAX /* -1 */};
        for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
            set_u64_in(img, "IDS_", 0, bad[k], FAILS_IF_CHECKED);
            set_u64_in(img, "IDS_", n - 1, bad[k], FAILS_IF_CHECKED);
        }
        set_u64_in(img, "IDS_", 1, first, FAILS_IF_CHECKED); /* a repeated id */
    }
}

/* ---- whole sections ------------------------------------------------------------ */

/* Rebuild the image with section `drop` left out (or none: -1), `dup`
 * written twice, and an extra section. */
static uint8_t *rebuild(const file_image *img, int drop, int dup, uint32_t extra_tag,
                        uint32_t extra_flags, size_t *size) {
    avqf_out out[AVQF_MAX_SECTIONS];
    size_t count = 0;
    static const char payload[40] = "future data";
    for (size_t s = 0; s < img->count; s++) {
        if ((int)s == drop) continue;
        out[count++] = (avqf_out){img->secs[s].tag, img->secs[s].flags,
                                  img->data + img->secs[s].offset, (size_t)img->secs[s].length};
        if ((int)s == dup) {
            out[count] = out[count - 1];
            count++;
        }
    }
    if (extra_tag) out[count++] = (avqf_out){extra_tag, extra_flags, payload, sizeof payload};
    uint8_t *data = avqf_write(out, count, size);
    cr_assert_not_null(data);
    return data;
}

Test(corrupt, missing_duplicate_and_unknown_sections) {
    for (int i = 0; i < 3; i++) {
        const file_image *img = &images[i];
        size_t size;
        char label[120];
        /* the writer of the tests reproduces the library's file exactly */
        uint8_t *same = rebuild(img, -1, -1, 0, 0, &size);
        cr_assert_eq(size, img->size);
        cr_assert_arr_eq(same, img->data, size, "avq_file.h and io.c disagree on the layout");
        free(same);
        for (size_t s = 0; s < img->count; s++) {
            char name[5] = {0};
            memcpy(name, &img->secs[s].tag, 4);
            uint8_t *d = rebuild(img, (int)s, -1, 0, 0, &size);
            snprintf(label, sizeof label, "%s: without %s", IMAGE_NAMES[i], name);
            judge(d, size, FAILS, label);
            free(d);
            d = rebuild(img, -1, (int)s, 0, 0, &size);
            snprintf(label, sizeof label, "%s: %s twice", IMAGE_NAMES[i], name);
            judge(d, size, FAILS, label);
            free(d);
        }
        /* forward compatibility: unknown optional sections are skipped,
         * unknown required ones refused with the reader's version */
        uint8_t *d = rebuild(img, -1, -1, TAG_OF("ZZ01"), 0, &size);
        judge(d, size, LOADS, "unknown optional section");
        free(d);
        d = rebuild(img, -1, -1, TAG_OF("ZZ01"), 1, &size);
        judge(d, size, FAILS, "unknown required section");
        cr_assert(strstr(avq_last_error(), "ZZ01") && strstr(avq_last_error(), "format 2"), "%s",
                  avq_last_error());
        free(d);
        /* a known section this configuration does not use */
        const char *unused = i == 1 ? "VECF" : "VEC8";
        d = rebuild(img, -1, -1, TAG_OF(unused), 1, &size);
        snprintf(label, sizeof label, "%s: unexpected %s", IMAGE_NAMES[i], unused);
        judge(d, size, FAILS, label);
        free(d);
    }
}

Test(corrupt, newer_version_and_bad_marks) {
    const file_image *img = &images[0];
    uint32_t versions[] = {0, 4, 5, UINT32_MAX};
    for (size_t k = 0; k < 4; k++) {
        uint8_t *c = copy_of(img);
        avqf_put32(c + 8, versions[k]);
        avqf_fix(c, img->size, AVQF_FIX_HEADER_CRC);
        judge(c, img->size, FAILS, "format version");
        char want[64];
        snprintf(want, sizeof want, "format version %u, this library reads versions 1 to 3",
                 versions[k]);
        cr_assert(strstr(avq_last_error(), want), "%s", avq_last_error());
        free(c);
    }
    /* version 3 is read, but a version-3 file has the tag sections */
    uint8_t *c = copy_of(img);
    avqf_put32(c + 8, 3);
    avqf_fix(c, img->size, AVQF_FIX_HEADER_CRC);
    judge(c, img->size, FAILS, "format version 3 without tag sections");
    cr_assert(strstr(avq_last_error(), "TKOF is missing"), "%s", avq_last_error());
    free(c);
    c = copy_of(img);
    avqf_put32(c + 12, 0x04030201u); /* written on a big-endian machine */
    avqf_fix(c, img->size, AVQF_FIX_HEADER_CRC);
    judge(c, img->size, FAILS, "endianness mark");
    memcpy(c, "AVQINDEY", 8);
    judge(c, img->size, FAILS, "magic");
    free(c);
    judge((const uint8_t *)"", 0, FAILS, "empty file");
}

Test(corrupt, data_flips_are_caught_by_checksums_or_harmless) {
    /* one flipped bit in every 97th byte of the data sections: refused when
     * checksums are verified; with checksums skipped, still no crash */
    for (int i = 0; i < 3; i++) {
        const file_image *img = &images[i];
        size_t data_start = img->secs[0].offset;
        for (size_t at = data_start; at < img->size; at += 97) {
            bool in_section = false;
            for (size_t s = 0; s < img->count; s++)
                in_section |= at >= img->secs[s].offset && at < img->secs[s].offset + img->secs[s].length;
            uint8_t *c = copy_of(img);
            c[at] ^= (uint8_t)(1u << (at % 8));
            char label[100];
            snprintf(label, sizeof label, "%s: data bit flip at %zu", IMAGE_NAMES[i], at);
            judge(c, img->size, in_section ? FAILS_IF_CHECKED : LOADS, label);
            free(c);
        }
    }
}
