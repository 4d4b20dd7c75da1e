/*
 * make_corpus.c -- the loader fuzzer's seed corpus for index format
 * version 2: small valid files covering every configuration the loader
 * distinguishes, in the states a living index can be saved in, plus damaged
 * copies whose checksums are valid, so that they reach the structural
 * validation.
 *
 *   make fuzz-corpus                 (= build/fuzz/make_corpus fuzz/corpus-v2)
 *
 * Configurations: the exact tier, 1 and several leaves, 4- and 8-bit codes,
 * float / int8 / no re-ranking data, the three metrics, a partial last PQ
 * block.  States: changed (caller ids, automatic ids, upserts, removals with
 * compaction off, so dead slots and a LIVE section), compacted (changed,
 * then no dead slot left), grown (many small adds: partial 4-bit groups),
 * empty (created from a quantizer, never filled), emptied (every vector
 * removed: all slots dead) and quantizer-only (avq_quantizer_save).
 *
 * fuzz/corpus/ holds the version-1 files written by avq 0.1's generator
 * (this file's history); they are kept as they are, like tests/golden/, and
 * this program never writes there: the library writes version 2 only.
 *
 * Names say what is expected of a file as it is (tests/test_living_io.c
 * replays fuzz/corpus-v2/ with these rules; tests/test_corpus.c replays
 * fuzz/corpus/ with the same ones):
 *   bad_*      structurally invalid: AVQ_ERR_FORMAT in every mode
 *   badchk_*   corrupt under a valid table: AVQ_ERR_FORMAT when checksums
 *              are verified, anything clean when they are skipped
 *   mut_*      mutated, either outcome is fine
 *   otherwise  a valid index: loads in every mode
 *
 * Every input comes from a fixed seed; rerun only when the format changes.
 */
#include "avq.h"
#include "avq_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *out_dir;

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rng_unit(uint64_t *s) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

/* n points around 8 cluster centers in [-1, 1]^dim. */
static float *clustered(size_t n, size_t dim, uint64_t seed) {
    float *c = malloc(8 * dim * sizeof *c), *x = malloc(n * dim * sizeof *x);
    if (!c || !x) abort();
    for (size_t i = 0; i < 8 * dim; i++) c[i] = (float)(2 * rng_unit(&seed) - 1);
    for (size_t i = 0; i < n; i++) {
        size_t k = rng_next(&seed) % 8;
        for (size_t j = 0; j < dim; j++)
            x[i * dim + j] = c[k * dim + j] + (float)(0.3 * (rng_unit(&seed) - 0.5));
    }
    free(c);
    return x;
}

static void die(const char *what) {
    fprintf(stderr, "make_corpus: %s: %s\n", what, avq_last_error());
    exit(1);
}

static void write_file(const char *name, const uint8_t *data, size_t size) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        fprintf(stderr, "make_corpus: cannot write %s\n", path);
        exit(1);
    }
    printf("%-40s %6zu bytes\n", name, size);
}

static uint8_t *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) abort();
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc(*size);
    if (!data || fread(data, 1, *size, f) != *size) abort();
    fclose(f);
    return data;
}

typedef enum { ST_CHANGED, ST_COMPACTED, ST_GROWN, ST_EMPTY, ST_EMPTIED, ST_QUANTIZER } state;

typedef struct {
    const char *name;
    avq_metric metric;
    size_t n, dim, leaves;
    int bits, dpb;
    avq_reorder reorder;
    int brute;
    state st;
} spec;

static const spec SPECS[] = {
    {"v2_brute_dot_changed", AVQ_METRIC_DOT, 40, 8, 0, 4, 2, AVQ_REORDER_FLOAT, 1, ST_CHANGED},
    {"v2_brute_l2_compacted", AVQ_METRIC_L2, 30, 6, 0, 4, 2, AVQ_REORDER_FLOAT, 1, ST_COMPACTED},
    {"v2_brute_cos_none_changed", AVQ_METRIC_COSINE, 24, 5, 0, 4, 2, AVQ_REORDER_NONE, 1, ST_CHANGED},
    {"v2_pq4_cos_1leaf_float_changed", AVQ_METRIC_COSINE, 64, 8, 1, 4, 2, AVQ_REORDER_FLOAT, 0, ST_CHANGED},
    {"v2_pq4_dot_4leaves_int8_changed", AVQ_METRIC_DOT, 96, 8, 4, 4, 2, AVQ_REORDER_INT8, 0, ST_CHANGED},
    {"v2_pq4_l2_3leaves_none_changed", AVQ_METRIC_L2, 80, 6, 3, 4, 2, AVQ_REORDER_NONE, 0, ST_CHANGED},
    {"v2_pq4_l2_2leaves_float_dpb3_changed", AVQ_METRIC_L2, 70, 7, 2, 4, 3, AVQ_REORDER_FLOAT, 0, ST_CHANGED},
    {"v2_pq4_dot_5leaves_none_dpb1_compacted", AVQ_METRIC_DOT, 100, 3, 5, 4, 1, AVQ_REORDER_NONE, 0, ST_COMPACTED},
    {"v2_pq4_l2_6leaves_float_grown", AVQ_METRIC_L2, 90, 6, 6, 4, 2, AVQ_REORDER_FLOAT, 0, ST_GROWN},
    {"v2_pq8_dot_1leaf_none_changed", AVQ_METRIC_DOT, 256, 4, 1, 8, 2, AVQ_REORDER_NONE, 0, ST_CHANGED},
    {"v2_pq8_cos_2leaves_int8_changed", AVQ_METRIC_COSINE, 260, 4, 2, 8, 2, AVQ_REORDER_INT8, 0, ST_CHANGED},
    {"v2_pq8_l2_1leaf_float_compacted", AVQ_METRIC_L2, 256, 3, 1, 8, 3, AVQ_REORDER_FLOAT, 0, ST_COMPACTED},
    {"v2_pq4_l2_4leaves_float_empty", AVQ_METRIC_L2, 120, 8, 4, 4, 2, AVQ_REORDER_FLOAT, 0, ST_EMPTY},
    {"v2_brute_cos_empty", AVQ_METRIC_COSINE, 20, 5, 0, 4, 2, AVQ_REORDER_FLOAT, 1, ST_EMPTY},
    {"v2_pq4_dot_3leaves_int8_emptied", AVQ_METRIC_DOT, 90, 6, 3, 4, 2, AVQ_REORDER_INT8, 0, ST_EMPTIED},
    {"v2_pq4_cos_3leaves_int8_quantizer", AVQ_METRIC_COSINE, 120, 8, 3, 4, 2, AVQ_REORDER_INT8, 0, ST_QUANTIZER},
    {"v2_pq8_l2_2leaves_float_quantizer", AVQ_METRIC_L2, 260, 4, 2, 8, 2, AVQ_REORDER_FLOAT, 0, ST_QUANTIZER},
    {"v2_brute_l2_quantizer", AVQ_METRIC_L2, 30, 6, 0, 4, 2, AVQ_REORDER_FLOAT, 1, ST_QUANTIZER},
    /* avq 0.7: float16 re-ranking rows (section VECH) */
    {"v2_pq4_dot_3leaves_float16_changed", AVQ_METRIC_DOT, 96, 8, 3, 4, 2, AVQ_REORDER_FLOAT16, 0, ST_CHANGED},
    {"v2_pq8_cos_2leaves_float16_compacted", AVQ_METRIC_COSINE, 260, 4, 2, 8, 2, AVQ_REORDER_FLOAT16, 0, ST_COMPACTED},
};
#define NSPECS (sizeof SPECS / sizeof SPECS[0])

/* Caller ids, automatic ids, an upsert (replacing and adding), removals
 * (ids present, a few never held) with automatic compaction off. */
static void change(avq_index *index, const spec *s, uint64_t seed) {
    if (avq_index_set_compact_threshold(index, 0) != AVQ_OK) die(s->name);
    float *rows = clustered(40, s->dim, seed + 7);
    int64_t ids[12];
    for (int i = 0; i < 12; i++) ids[i] = 1000 + 37 * i;
    if (avq_index_add(index, rows, 12, ids, 1, NULL) != AVQ_OK) die(s->name);
    if (avq_index_add(index, rows + 12 * s->dim, 8, NULL, 1, NULL) != AVQ_OK) die(s->name);
    int64_t up[6] = {1, 2, ids[3], 5000, 5001, 3};
    if (avq_index_upsert(index, rows + 20 * s->dim, 6, up, 1, NULL) != AVQ_OK) die(s->name);
    int64_t rm[16];
    size_t nrm = 0;
    for (size_t i = 0; i < s->n && nrm < 12; i += 3) rm[nrm++] = (int64_t)i;
    rm[nrm++] = ids[5];
    rm[nrm++] = 999999; /* never held */
    if (avq_index_remove(index, rm, nrm, NULL) != AVQ_OK) die(s->name);
    free(rows);
}

static void save(avq_index *index, const spec *s, char *path, size_t len) {
    snprintf(path, len, "%s/%s.avq", out_dir, s->name);
    if (avq_index_save(index, path) != AVQ_OK) die(s->name);
}

/* Build, change, save; return the saved bytes. */
static uint8_t *make_index(const spec *s, uint64_t seed, size_t *size) {
    float *x = clustered(s->n, s->dim, seed);
    avq_build_params p;
    avq_build_params_init(&p, s->metric);
    p.num_leaves = s->leaves;
    p.bits = s->bits;
    p.dims_per_block = s->dpb;
    p.reorder = s->reorder;
    p.brute_force_below = s->brute ? 20000 : 1;
    p.threads = 1;
    p.seed = seed;
    char path[512];
    if (s->st == ST_QUANTIZER || s->st == ST_EMPTY) {
        avq_quantizer *q = NULL;
        if (avq_quantizer_train(x, s->n, s->dim, &p, &q) != AVQ_OK) die(s->name);
        snprintf(path, sizeof path, "%s/%s.avq", out_dir, s->name);
        if (s->st == ST_QUANTIZER) {
            if (avq_quantizer_save(q, path) != AVQ_OK) die(s->name);
        } else {
            avq_index *e = NULL;
            if (avq_index_create(q, &e) != AVQ_OK) die(s->name);
            save(e, s, path, sizeof path);
            avq_index_free(e);
        }
        avq_quantizer_free(q);
    } else {
        avq_index *index = NULL;
        if (avq_index_build(x, s->n, s->dim, &p, &index) != AVQ_OK) die(s->name);
        switch (s->st) {
        case ST_CHANGED: change(index, s, seed); break;
        case ST_COMPACTED:
            change(index, s, seed);
            if (avq_index_compact(index, 0, NULL) != AVQ_OK) die(s->name);
            break;
        case ST_GROWN: {
            float *more = clustered(75, s->dim, seed + 3);
            for (int i = 0; i < 15; i++)
                if (avq_index_add(index, more + 5 * i * s->dim, 5, NULL, 1, NULL) != AVQ_OK) die(s->name);
            free(more);
            break;
        }
        case ST_EMPTIED: {
            if (avq_index_set_compact_threshold(index, 0) != AVQ_OK) die(s->name);
            int64_t *all = malloc(s->n * sizeof *all);
            for (size_t i = 0; i < s->n; i++) all[i] = (int64_t)i;
            if (avq_index_remove(index, all, s->n, NULL) != AVQ_OK) die(s->name);
            free(all);
            break;
        }
        default: break;
        }
        save(index, s, path, sizeof path);
        avq_index_free(index);
    }
    free(x);
    uint8_t *data = read_file(path, size);
    printf("%-40s %6zu bytes\n", s->name, *size);
    return data;
}

/* ---- damaged copies ---------------------------------------------------------- */

#define T(s) AVQF_TAG((s)[0], (s)[1], (s)[2], (s)[3])
enum { CF_N = 2, CF_LEAVES = 4, CF_LIVE = 20, CF_NEXT_ID = 21 }; /* CONF slots (doc/FORMAT.md) */

static avqf_section find(const uint8_t *buf, size_t size, const char *tag) {
    avqf_section s[AVQF_MAX_SECTIONS];
    size_t count = avqf_sections(buf, size, s, AVQF_MAX_SECTIONS);
    int i = avqf_find(s, count, T(tag));
    if (i < 0) {
        fprintf(stderr, "make_corpus: no section %s where one is needed\n", tag);
        exit(1);
    }
    return s[i];
}
static uint8_t *data_of(uint8_t *buf, size_t size, const char *tag) {
    return buf + find(buf, size, tag).offset;
}
static void set_conf(uint8_t *b, size_t z, int slot, uint64_t v) {
    avqf_put64(data_of(b, z, "CONF") + 8 * slot, v);
}
static uint64_t get_conf(const uint8_t *b, size_t z, int slot) {
    return avqf_get64(b + find(b, z, "CONF").offset + 8 * slot);
}

/* Write a damaged copy: `edit` changes it, then the checksums (and the size
 * field) are made valid again as `fix` says. */
static void damaged(const char *name, const uint8_t *data, size_t size, size_t new_size,
                    void (*edit)(uint8_t *, size_t), unsigned fix) {
    uint8_t *copy = malloc(size);
    if (!copy) abort();
    memcpy(copy, data, size);
    if (edit) edit(copy, new_size);
    if (fix) avqf_fix(copy, new_size, fix);
    write_file(name, copy, new_size);
    free(copy);
}

/* The k-th live slot of leaf 0 (LIVE: one bit per slot, leaf 0's words
 * first; no LIVE section: every slot is live). */
static size_t live_slot(const uint8_t *b, size_t z, size_t k) {
    avqf_section s[AVQF_MAX_SECTIONS];
    size_t count = avqf_sections(b, z, s, AVQF_MAX_SECTIONS);
    int li = avqf_find(s, count, T("LIVE"));
    if (li < 0) return k;
    const uint8_t *loff = b + find(b, z, "LOFF").offset;
    uint64_t slots = avqf_get64(loff + 8) - avqf_get64(loff);
    for (size_t i = 0; i < slots; i++)
        if (avqf_get32(b + s[li].offset + 4 * (i / 32)) >> (i % 32) & 1)
            if (k-- == 0) return i;
    fprintf(stderr, "make_corpus: leaf 0 has too few live slots\n");
    exit(1);
}
static uint8_t *id_at(uint8_t *b, size_t z, size_t slot) { return data_of(b, z, "IDS_") + 8 * slot; }

static void live_over_n(uint8_t *b, size_t z) { set_conf(b, z, CF_LIVE, get_conf(b, z, CF_N) + 1); }
static void live_one_less(uint8_t *b, size_t z) { set_conf(b, z, CF_LIVE, get_conf(b, z, CF_LIVE) - 1); }
static void next_id_negative(uint8_t *b, size_t z) { set_conf(b, z, CF_NEXT_ID, UINT64_MAX); }
static void next_id_taken(uint8_t *b, size_t z) {
    /* the next automatic id is one a live slot holds */
    set_conf(b, z, CF_NEXT_ID, avqf_get64(id_at(b, z, live_slot(b, z, 0))));
}
static void leaves_zero(uint8_t *b, size_t z) { set_conf(b, z, CF_LEAVES, 0); }
static void n_one(uint8_t *b, size_t z) { set_conf(b, z, CF_N, 1); }
/* (a dead slot may hold any id: an upsert leaves the old slot dead under
 * the id it moved away -- so these damage live slots) */
static void ids_minus_one(uint8_t *b, size_t z) { avqf_put64(id_at(b, z, live_slot(b, z, 0)), UINT64_MAX); }
static void ids_repeated(uint8_t *b, size_t z) {
    memcpy(id_at(b, z, live_slot(b, z, 1)), id_at(b, z, live_slot(b, z, 0)), 8);
}
/* a bit past the last slot of leaf 0 (its last LIVE word is partial) */
static void live_bit_past_leaf(uint8_t *b, size_t z) {
    const uint8_t *loff = data_of(b, z, "LOFF");
    uint64_t slots = avqf_get64(loff + 8) - avqf_get64(loff);
    if (slots % 32 == 0) {
        fprintf(stderr, "make_corpus: leaf 0 fills its LIVE words exactly\n");
        exit(1);
    }
    uint8_t *w = data_of(b, z, "LIVE") + 4 * (slots / 32);
    avqf_put32(w, avqf_get32(w) | 1u << (slots % 32));
}
static void live_short(uint8_t *b, size_t z) {
    avqf_section s = find(b, z, "LIVE");
    avqf_put64(b + s.entry_at + 16, s.length - 4);
}
static void loff_decreasing(uint8_t *b, size_t z) {
    uint8_t *l = data_of(b, z, "LOFF");
    avqf_put64(l + 8, avqf_get64(l + 16) + 1);
}
static void coff_off_by_one(uint8_t *b, size_t z) {
    uint8_t *c = data_of(b, z, "COFF");
    avqf_put64(c + 8, avqf_get64(c + 8) + 1);
}
static void bit_flip_live(uint8_t *b, size_t z) { data_of(b, z, "LIVE")[0] ^= 0x04; }
static void bit_flip(uint8_t *b, size_t z) { b[z / 2] ^= 0x10; }

/* The file's sections, minus `drop` (a tag or NULL), plus an extra one. */
static void rebuilt(const char *name, const uint8_t *data, size_t size, const char *drop,
                    uint32_t extra_tag, uint32_t extra_flags, const void *extra, size_t extra_len) {
    avqf_section s[AVQF_MAX_SECTIONS];
    size_t count = avqf_sections(data, size, s, AVQF_MAX_SECTIONS), k = 0;
    avqf_out out[AVQF_MAX_SECTIONS];
    for (size_t i = 0; i < count; i++)
        if (!drop || s[i].tag != T(drop))
            out[k++] = (avqf_out){s[i].tag, s[i].flags, data + s[i].offset, (size_t)s[i].length};
    if (extra_tag) out[k++] = (avqf_out){extra_tag, extra_flags, extra, extra_len};
    size_t new_size;
    uint8_t *file = avqf_write(out, k, &new_size);
    if (!file) abort();
    write_file(name, file, new_size);
    free(file);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus OUT_DIR\n");
        return 2;
    }
    out_dir = argv[1];
    uint8_t *files[NSPECS];
    size_t sizes[NSPECS];
    for (size_t i = 0; i < NSPECS; i++) files[i] = make_index(&SPECS[i], 2000 + i, &sizes[i]);

    /* damaged copies of a changed 2-leaf 4-bit L2 index (CONF CENT CNRM
     * LOFF IDS_ CBOK COFF CODE VECF NRM2 LIVE), of the changed int8 one, of
     * a compacted one (no LIVE), of the empty index and of a quantizer */
    const uint8_t *pq = files[6], *i8 = files[4], *full = files[11], *empty = files[12], *qf = files[15];
    size_t zp = sizes[6], zi = sizes[4], zf = sizes[11], ze = sizes[12], zq = sizes[15];
    damaged("bad_v2_truncated_half.avq", pq, zp, zp / 2, NULL, 0);
    damaged("bad_v2_truncated_size_fixed.avq", pq, zp, zp - 100, NULL, AVQF_FIX_ALL);
    damaged("badchk_v2_bitflip_in_data.avq", pq, zp, zp, bit_flip, 0);
    damaged("badchk_v2_bitflip_in_live.avq", pq, zp, zp, bit_flip_live, 0);
    damaged("mut_v2_bitflip_crc_fixed.avq", i8, zi, zi, bit_flip, AVQF_FIX_ALL);
    damaged("mut_v2_live_bit_flipped_crc_fixed.avq", i8, zi, zi, bit_flip_live, AVQF_FIX_ALL);
    damaged("bad_v2_conf_live_over_n.avq", pq, zp, zp, live_over_n, AVQF_FIX_ALL);
    damaged("bad_v2_conf_live_mismatch.avq", pq, zp, zp, live_one_less, AVQF_FIX_ALL);
    damaged("bad_v2_conf_next_id_negative.avq", pq, zp, zp, next_id_negative, AVQF_FIX_ALL);
    damaged("badchk_v2_conf_next_id_taken.avq", pq, zp, zp, next_id_taken, AVQF_FIX_ALL);
    damaged("bad_v2_live_bit_past_leaf.avq", pq, zp, zp, live_bit_past_leaf, AVQF_FIX_ALL);
    damaged("bad_v2_live_short.avq", pq, zp, zp, live_short, AVQF_FIX_ALL);
    damaged("badchk_v2_ids_minus_one.avq", i8, zi, zi, ids_minus_one, AVQF_FIX_ALL);
    damaged("badchk_v2_ids_repeated.avq", pq, zp, zp, ids_repeated, AVQF_FIX_ALL);
    damaged("bad_v2_loff_decreasing.avq", pq, zp, zp, loff_decreasing, AVQF_FIX_ALL);
    damaged("bad_v2_coff_off_by_one.avq", i8, zi, zi, coff_off_by_one, AVQF_FIX_ALL);
    damaged("bad_v2_empty_n_one.avq", empty, ze, ze, n_one, AVQF_FIX_ALL);
    damaged("bad_v2_quantizer_leaves_zero.avq", qf, zq, zq, leaves_zero, AVQF_FIX_ALL);
    rebuilt("bad_v2_live_missing.avq", pq, zp, "LIVE", 0, 0, NULL, 0);
    rebuilt("bad_v2_quantizer_without_codebook.avq", qf, zq, "CBOK", 0, 0, NULL, 0);
    static const uint32_t zero_words[64];
    rebuilt("bad_v2_live_unexpected.avq", full, zf, NULL, T("LIVE"), 0, zero_words, 4 * 8);
    static const char note[] = "a section from a future version";
    rebuilt("v2_extra_optional_section.avq", pq, zp, NULL, T("XTRA"), 0, note, sizeof note);
    rebuilt("bad_v2_extra_required_section.avq", pq, zp, NULL, T("XTRA"), 1, note, sizeof note);
    for (size_t i = 0; i < NSPECS; i++) free(files[i]);
    return 0;
}
