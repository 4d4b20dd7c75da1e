/*
 * make_corpus.c -- the loader fuzzer's seed corpus: small valid index files
 * covering every configuration the loader distinguishes (brute-force tier,
 * 1 and several leaves, 4- and 8-bit codes, float / int8 / no reorder data,
 * the three metrics, a partial last PQ block), plus damaged copies whose
 * checksums are valid, so that they reach the structural validation.
 *
 *   make fuzz-corpus                 (= build/fuzz/make_corpus fuzz/corpus)
 *
 * Every input comes from a fixed seed; rerun only when the format changes.
 * The same files are replayed by the unit tests (tests/test_corpus.c).
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

static void write_file(const char *name, const uint8_t *data, size_t size) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        fprintf(stderr, "make_corpus: cannot write %s\n", path);
        exit(1);
    }
    printf("%-34s %6zu bytes\n", name, size);
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

typedef struct {
    const char *name;
    avq_metric metric;
    size_t n, dim, leaves;
    int bits, dpb;
    avq_reorder reorder;
    int brute;
} spec;

static const spec SPECS[] = {
    {"brute_dot", AVQ_METRIC_DOT, 40, 8, 0, 4, 2, AVQ_REORDER_FLOAT, 1},
    {"brute_l2", AVQ_METRIC_L2, 30, 6, 0, 4, 2, AVQ_REORDER_FLOAT, 1},
    {"brute_cos", AVQ_METRIC_COSINE, 24, 5, 0, 4, 2, AVQ_REORDER_NONE, 1},
    {"pq4_cos_1leaf_float", AVQ_METRIC_COSINE, 64, 8, 1, 4, 2, AVQ_REORDER_FLOAT, 0},
    {"pq4_dot_4leaves_int8", AVQ_METRIC_DOT, 96, 8, 4, 4, 2, AVQ_REORDER_INT8, 0},
    {"pq4_l2_3leaves_none", AVQ_METRIC_L2, 80, 6, 3, 4, 2, AVQ_REORDER_NONE, 0},
    {"pq4_l2_2leaves_float_dpb3", AVQ_METRIC_L2, 70, 7, 2, 4, 3, AVQ_REORDER_FLOAT, 0},
    {"pq4_dot_5leaves_none_dpb1", AVQ_METRIC_DOT, 100, 3, 5, 4, 1, AVQ_REORDER_NONE, 0},
    {"pq8_dot_1leaf_none", AVQ_METRIC_DOT, 256, 4, 1, 8, 2, AVQ_REORDER_NONE, 0},
    {"pq8_cos_2leaves_int8", AVQ_METRIC_COSINE, 260, 4, 2, 8, 2, AVQ_REORDER_INT8, 0},
    {"pq8_l2_1leaf_float", AVQ_METRIC_L2, 256, 3, 1, 8, 3, AVQ_REORDER_FLOAT, 0},
};

/* Build, save, and return the saved bytes. */
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
    avq_index *index = NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/%s.avq", out_dir, s->name);
    if (avq_index_build(x, s->n, s->dim, &p, &index) != AVQ_OK ||
        avq_index_save(index, path) != AVQ_OK) {
        fprintf(stderr, "make_corpus: %s: %s\n", s->name, avq_last_error());
        exit(1);
    }
    avq_index_free(index);
    free(x);
    uint8_t *data = read_file(path, size);
    printf("%-34s %6zu bytes\n", s->name, *size);
    return data;
}

/* Write a damaged copy: `edit` changes it, then the checksums (and the size
 * field, if `fix_size`) are made valid again. */
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

static uint8_t *section_data(uint8_t *buf, size_t size, uint32_t tag, avqf_section *out) {
    avqf_section s[AVQF_MAX_SECTIONS];
    size_t count = avqf_sections(buf, size, s, AVQF_MAX_SECTIONS);
    int i = avqf_find(s, count, tag);
    if (i < 0) abort();
    if (out) *out = s[i];
    return buf + s[i].offset;
}

static void conf_n_huge(uint8_t *b, size_t z) { avqf_put64(section_data(b, z, AVQF_TAG('C', 'O', 'N', 'F'), NULL) + 16, UINT64_MAX); }
static void conf_leaves_over_n(uint8_t *b, size_t z) {
    uint8_t *c = section_data(b, z, AVQF_TAG('C', 'O', 'N', 'F'), NULL);
    avqf_put64(c + 32, avqf_get64(c + 16) + 1);
}
static void conf_bits_wrong(uint8_t *b, size_t z) { avqf_put64(section_data(b, z, AVQF_TAG('C', 'O', 'N', 'F'), NULL) + 40, 8); }
static void loff_decreasing(uint8_t *b, size_t z) {
    uint8_t *l = section_data(b, z, AVQF_TAG('L', 'O', 'F', 'F'), NULL);
    avqf_put64(l + 8, avqf_get64(l + 16) + 1);
}
static void coff_off_by_one(uint8_t *b, size_t z) {
    uint8_t *c = section_data(b, z, AVQF_TAG('C', 'O', 'F', 'F'), NULL);
    avqf_put64(c + 8, avqf_get64(c + 8) + 1);
}
static void ids_repeated(uint8_t *b, size_t z) {
    uint8_t *i = section_data(b, z, AVQF_TAG('I', 'D', 'S', '_'), NULL);
    memcpy(i + 8, i, 8);
}
static void ids_out_of_range(uint8_t *b, size_t z) {
    avqf_put64(section_data(b, z, AVQF_TAG('I', 'D', 'S', '_'), NULL), (uint64_t)INT64_MIN);
}
static void code_length_huge(uint8_t *b, size_t z) {
    avqf_section s;
    section_data(b, z, AVQF_TAG('C', 'O', 'D', 'E'), &s);
    avqf_put64(b + s.entry_at + 16, UINT64_MAX);
}
static void offset_wraps(uint8_t *b, size_t z) {
    avqf_section s;
    section_data(b, z, AVQF_TAG('V', 'E', 'C', 'F'), &s);
    avqf_put64(b + s.entry_at + 8, UINT64_MAX - 63); /* aligned; offset + length wraps */
}
static void tag_unknown_required(uint8_t *b, size_t z) {
    avqf_section s;
    section_data(b, z, AVQF_TAG('N', 'R', 'M', '2'), &s);
    avqf_put32(b + s.entry_at, AVQF_TAG('Z', 'Z', 'Z', 'Z'));
}
static void tag_duplicated(uint8_t *b, size_t z) {
    avqf_section s;
    section_data(b, z, AVQF_TAG('C', 'N', 'R', 'M'), &s);
    avqf_put32(b + s.entry_at, AVQF_TAG('C', 'E', 'N', 'T'));
}
static void bit_flip(uint8_t *b, size_t z) { b[z / 2] ^= 0x10; }

/* A valid file with an extra, unknown section (optional: loads fine). */
static void with_extra_section(const char *name, const uint8_t *data, size_t size, uint32_t flags) {
    avqf_section s[AVQF_MAX_SECTIONS];
    size_t count = avqf_sections(data, size, s, AVQF_MAX_SECTIONS);
    avqf_out out[AVQF_MAX_SECTIONS];
    static const char note[] = "a section from a future version";
    for (size_t i = 0; i < count; i++)
        out[i] = (avqf_out){s[i].tag, s[i].flags, data + s[i].offset, (size_t)s[i].length};
    out[count] = (avqf_out){AVQF_TAG('X', 'T', 'R', 'A'), flags, note, sizeof note};
    size_t new_size;
    uint8_t *file = avqf_write(out, count + 1, &new_size);
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
    uint8_t *files[sizeof SPECS / sizeof SPECS[0]];
    size_t sizes[sizeof SPECS / sizeof SPECS[0]];
    for (size_t i = 0; i < sizeof SPECS / sizeof SPECS[0]; i++)
        files[i] = make_index(&SPECS[i], 1000 + i, &sizes[i]);

    /* damaged copies of a multi-leaf 4-bit L2 index (it has every kind of
     * section but VEC8/I8SC) and of the int8 one */
    const uint8_t *pq = files[6], *i8 = files[4], *brute = files[1];
    size_t zp = sizes[6], zi = sizes[4], zb = sizes[1];
    damaged("bad_truncated_half.avq", pq, zp, zp / 2, NULL, 0);
    damaged("bad_truncated_size_fixed.avq", pq, zp, zp - 100, NULL, AVQF_FIX_ALL);
    damaged("badchk_bitflip_in_data.avq", pq, zp, zp, bit_flip, 0);
    damaged("mut_bitflip_crc_fixed.avq", i8, zi, zi, bit_flip, AVQF_FIX_ALL);
    damaged("bad_conf_n_huge.avq", pq, zp, zp, conf_n_huge, AVQF_FIX_ALL);
    damaged("bad_conf_leaves_over_n.avq", pq, zp, zp, conf_leaves_over_n, AVQF_FIX_ALL);
    damaged("bad_conf_bits.avq", i8, zi, zi, conf_bits_wrong, AVQF_FIX_ALL);
    damaged("bad_loff_decreasing.avq", pq, zp, zp, loff_decreasing, AVQF_FIX_ALL);
    damaged("bad_coff.avq", i8, zi, zi, coff_off_by_one, AVQF_FIX_ALL);
    damaged("badchk_ids_repeated.avq", brute, zb, zb, ids_repeated, AVQF_FIX_ALL);
    damaged("badchk_ids_out_of_range.avq", pq, zp, zp, ids_out_of_range, AVQF_FIX_ALL);
    damaged("bad_code_length_huge.avq", pq, zp, zp, code_length_huge, AVQF_FIX_ALL);
    damaged("bad_offset_wraps.avq", pq, zp, zp, offset_wraps, AVQF_FIX_ALL);
    damaged("bad_unknown_required_tag.avq", pq, zp, zp, tag_unknown_required, AVQF_FIX_ALL);
    damaged("bad_duplicate_tag.avq", pq, zp, zp, tag_duplicated, AVQF_FIX_ALL);
    with_extra_section("extra_optional_section.avq", brute, zb, 0);
    with_extra_section("bad_extra_required_section.avq", brute, zb, 1);
    for (size_t i = 0; i < sizeof SPECS / sizeof SPECS[0]; i++) free(files[i]);
    return 0;
}
