/*
 * io.c -- one index, one file: save atomically (or into memory), load by
 * copy or by mmap, and refuse every malformed file with a precise message.
 *
 * Layout (doc/FORMAT.md has the full specification):
 *   header   64 bytes: magic "AVQINDEX", format version, endianness mark,
 *            section count, file size, CRC32C of header + table
 *   table    one 32-byte entry per section: tag, flags, offset, length, CRC32C
 *   sections each starting on a 64-byte boundary, so that mmap'ed arrays
 *            are aligned for the SIMD kernels
 * Every section is a flat array of little-endian numbers.  The leaves are
 * written one after the other into flat arrays (codes, ids, re-ranking rows,
 * liveness), exactly the "leaf order" layout of format version 1, so a
 * loaded leaf simply points into the file's bytes: a read-only mapping of
 * the file (AVQ_LOAD_MMAP) or of an anonymous copy of it (AVQ_LOAD_COPY).
 * Such a leaf is never written; its first change copies it (leaf.c).
 *
 * Version 2 adds to version 1: slots may be dead (section LIVE, one bit per
 * slot, present when any is), ids are any int64 but -1 (not a permutation of
 * row numbers), an index may be empty (a quantizer file), and CONF carries
 * the live count, the next automatic id and the training size.  Version 1
 * files load with ids = their stored row numbers, all live.
 *
 * Version 3 adds to version 2 the vectors' tags: five sections (TKOF, TSOF,
 * TKEY, TPOS, TSLT) holding every leaf's inverted tag list exactly as the
 * leaf keeps it (avq_leaf_tags in index.h), so a loaded leaf's tags point
 * into the bytes like its codes.  A version-3 file has all five; an index
 * without any tag is written as version 2, byte for byte what a writer
 * without tags wrote, so avq 0.2 still reads it.
 *
 * Validation order matters: (1) header fields and table entries against the
 * file size, (2) checksums, (3) the configuration's counts against every
 * section length, (4) the contents that later code indexes with (leaf, code
 * and tag offsets monotone and in range, liveness bits within their leaves,
 * every leaf's tag list against the leaf -- always, since its slot numbers
 * index memory -- and ids distinct unless the caller declared the data
 * trusted).  Only then is the index handed out, so search code never meets
 * an out-of-range offset.
 *
 * Forward compatibility: a reader skips sections it does not know unless
 * their REQUIRED flag is set, in which case it refuses the file and says so.
 */
#include "avq_internal.h"
#include "index.h"
#include "pack.h"

#include <stdatomic.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define AVQ_FORMAT_UNTAGGED 2u /* written for an index without tags        */
#define AVQ_FORMAT_TAGGED 3u   /* written when some vector has a tag        */
#define AVQ_FORMAT_NEWEST 3u   /* 1 .. this are read                        */
#define ENDIAN_MARK 0x01020304u
#define HEADER_BYTES 64u
#define ENTRY_BYTES 32u
#define SECTION_ALIGN 64u
#define MAX_SECTIONS 64u
#define FLAG_REQUIRED 1u

static const char MAGIC[8] = {'A', 'V', 'Q', 'I', 'N', 'D', 'E', 'X'};

/* ---- CRC32C (Castagnoli), slicing-by-8 in portable C --------------------- */

/* Verifying a large index is CRC-bound, and one slicing-by-8 stream is
 * bound by the latency of its table lookups (each 8-byte step needs the
 * previous register).  So a long buffer is cut into three equal parts that
 * are processed in one loop by three independent streams (~2.7x the
 * throughput of one stream on x86-64), and the three CRCs are joined with
 * the usual GF(2) algebra: crc(A || B) = crc(A) * x^(8|B|) mod P  xor  crc(B)
 * for registers started at 0, which is what streams 2 and 3 are. */

#define CRC_POLY 0x82F63B78u /* reflected Castagnoli polynomial */

static uint32_t crc_table[8][256];
static uint32_t crc_x2n[64]; /* x^(2^k) mod P, reflected */
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

/* a(x) * b(x) mod P, both reflected (bit 31 is the x^0 coefficient). */
static uint32_t crc_mulmod(uint32_t a, uint32_t b) {
    uint32_t prod = 0;
    for (uint32_t m = 1u << 31; m; m >>= 1) {
        if (a & m) prod ^= b;
        b = (b >> 1) ^ (CRC_POLY & (0u - (b & 1u)));
    }
    return prod;
}

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (CRC_POLY & (0u - (c & 1u)));
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
    uint32_t p = 1u << 30; /* x^1 */
    for (int k = 0; k < 64; k++) {
        crc_x2n[k] = p;
        p = crc_mulmod(p, p);
    }
}

/* x^(8 * bytes) mod P: the operator that moves a register past `bytes`. */
static uint32_t crc_shift(uint64_t bytes) {
    uint32_t p = 1u << 31; /* x^0 */
    for (int k = 3; bytes; bytes >>= 1, k++)
        if (bytes & 1) p = crc_mulmod(crc_x2n[k & 63], p);
    return p;
}

static inline uint32_t crc_step8(uint32_t c, const uint8_t *p) {
    uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                       (uint32_t)p[3] << 24);
    return crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^
           crc_table[5][(lo >> 16) & 0xFF] ^ crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^
           crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
}

/* Advance the raw CRC register `c` over `len` bytes. */
static uint32_t crc32c_update(uint32_t c, const void *data, size_t len) {
    pthread_once(&crc_once, crc_init);
    const uint8_t *p = data;
    size_t part = (len / 3) & ~(size_t)7;
    if (part >= 4096) {
        const uint8_t *p1 = p + part, *p2 = p + 2 * part;
        uint32_t c1 = 0, c2 = 0;
        for (size_t i = 0; i < part; i += 8) {
            c = crc_step8(c, p + i);
            c1 = crc_step8(c1, p1 + i);
            c2 = crc_step8(c2, p2 + i);
        }
        uint32_t shift = crc_shift(part);
        c = crc_mulmod(shift, c) ^ c1;
        c = crc_mulmod(shift, c) ^ c2;
        p += 3 * part;
        len -= 3 * part;
    }
    while (len >= 8) {
        c = crc_step8(c, p);
        p += 8;
        len -= 8;
    }
    while (len--) c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xFF];
    return c;
}

static uint32_t crc32c(const void *data, size_t len) {
    return crc32c_update(0xFFFFFFFFu, data, len) ^ 0xFFFFFFFFu;
}

/* ---- little-endian fields ------------------------------------------------ */

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}
static uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bits_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#define TAG(a, b, c, d) ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)

/* ---- what a file holds ----------------------------------------------------- */

/* The flat view of an index file: its configuration and its arrays, leaves
 * one after another.  Saving fills it from an index (the per-leaf arrays as
 * pieces, see gather_leaf_piece), loading from the file's bytes. */
typedef struct {
    unsigned version;
    avq_build_params params;
    avq_index_mode mode;
    size_t n, live, dim, num_leaves, bits, dims_per_block, num_blocks, num_centers;
    avq_reorder reorder;
    size_t default_leaves, default_reorder, trained_n;
    int64_t next_id;
    float *centers, *center_norms, *codebook, *i8_scale, *leaf_spread;
    float *spill_lambda;     /* SPIL: 1 float, or NULL (not spilled)         */
    uint32_t *pack8;         /* PAK8: 1 word, the group size (32), or NULL   */
    bool codes8_packed;      /* 8-bit codes in the packed layout (0.6 on)    */
    uint64_t *leaf_offsets, *code_offsets;
    int64_t *ids;
    uint8_t *codes;
    float *vectors;
    int8_t *vectors_i8;
    uint16_t *vectors_f16;   /* VECH: float16 rows (0.7 on), or NULL         */
    float *norms2;
    uint32_t *live_bits;
    /* tags (version 3): leaf l's keys are tag_keys[tag_key_offsets[l] ..
     * tag_key_offsets[l+1]), its per-key posting starts the nkeys_l + 1
     * words tag_pos[tag_key_offsets[l] + l ..], its postings
     * tag_slots[tag_slot_offsets[l] .. tag_slot_offsets[l+1]) */
    uint64_t *tag_key_offsets, *tag_slot_offsets;
    uint32_t *tag_keys, *tag_pos, *tag_slots;
} file_view;

/* Field order of the CONF section: 8-byte little-endian slots.  Version 2
 * appends CF_LIVE .. CF_TRAINED_N; version 1 files end at CF_BRUTE_BELOW. */
enum {
    CF_METRIC, CF_MODE, CF_N, CF_DIM, CF_LEAVES, CF_BITS, CF_DPB, CF_BLOCKS, CF_CENTERS,
    CF_REORDER, CF_DEF_LEAVES, CF_DEF_REORDER, CF_KM_ITERS, CF_SPHERICAL, CF_THRESHOLD,
    CF_ETA, CF_CENTER_ETA, CF_SEED, CF_SAMPLE, CF_BRUTE_BELOW, CF_V1_COUNT = CF_BRUTE_BELOW + 1,
    CF_LIVE = CF_V1_COUNT, CF_NEXT_ID, CF_TRAINED_N, CF_V2_0_COUNT,
    /* appended within version 2; absent in v1 and the first v2 files, which
     * encoded with an absolute T: read as AVQ_THRESHOLD_ABSOLUTE */
    CF_THRESHOLD_KIND = CF_V2_0_COUNT,
    /* appended in avq 0.4 (older files: 0, no leaf spreads); readers before
     * 0.4 ignore it and the LSPR section, and rank leaves by center score */
    CF_LEAF_SPREAD_Z,
    /* appended in avq 0.4 (issue 19; older files: the step weight, nearest
     * int8 rounding); readers without them encode added rows with the step */
    CF_WEIGHT, CF_WEIGHT_PARAM, CF_INT8_AWARE,
    /* appended in avq 0.5 (SOAR spilling; older files: 0).  A spilled file
     * also has the REQUIRED section SPIL, so a reader before 0.5 -- which
     * would take the second copies for damage or return them twice --
     * refuses it instead */
    CF_SPILL,
    /* appended in avq 0.6: 1 = the 8-bit codes are in the packed 8-bit
     * layout (pack.h), 0 = row-major n x K bytes, what every 8-bit file
     * before 0.6 holds (converted on load).  A packed file also has the
     * REQUIRED section PAK8, so a reader before 0.6 -- which would read the
     * packed bytes as row-major codes -- refuses it instead */
    CF_CODES8_PACKED, CF_COUNT
};

static void encode_conf(const file_view *x, uint8_t *out) {
    const avq_build_params *p = &x->params;
    uint64_t v[CF_COUNT] = {
        [CF_METRIC] = (uint64_t)p->metric, [CF_MODE] = (uint64_t)x->mode, [CF_N] = x->n,
        [CF_DIM] = x->dim, [CF_LEAVES] = x->num_leaves, [CF_BITS] = (uint64_t)x->bits,
        [CF_DPB] = x->dims_per_block, [CF_BLOCKS] = x->num_blocks,
        [CF_CENTERS] = x->num_centers, [CF_REORDER] = (uint64_t)x->reorder,
        [CF_DEF_LEAVES] = x->default_leaves, [CF_DEF_REORDER] = x->default_reorder,
        [CF_KM_ITERS] = (uint64_t)p->kmeans_iterations,
        [CF_SPHERICAL] = (uint64_t)(int64_t)p->spherical,
        [CF_THRESHOLD] = float_bits(p->threshold), [CF_ETA] = float_bits(p->eta),
        [CF_CENTER_ETA] = float_bits(p->avq_center_eta), [CF_SEED] = p->seed,
        [CF_SAMPLE] = p->training_sample, [CF_BRUTE_BELOW] = p->brute_force_below,
        [CF_LIVE] = x->live, [CF_NEXT_ID] = (uint64_t)x->next_id, [CF_TRAINED_N] = x->trained_n,
        [CF_THRESHOLD_KIND] = (uint64_t)p->threshold_kind,
        [CF_LEAF_SPREAD_Z] = float_bits(p->leaf_spread_z),
        [CF_WEIGHT] = (uint64_t)p->weight, [CF_WEIGHT_PARAM] = float_bits(p->weight_param),
        [CF_INT8_AWARE] = (uint64_t)p->int8_aware, [CF_SPILL] = (uint64_t)p->spill,
        [CF_CODES8_PACKED] = (uint64_t)x->codes8_packed,
    };
    for (int i = 0; i < CF_COUNT; i++) put_u64(out + 8 * i, v[i]);
}

static int decode_conf(const uint8_t *in, size_t len, unsigned version, file_view *x,
                       const char *path) {
    /* version 3 came after slot 23 (the threshold kind): its CONF always
     * has it; slots appended later are read when present */
    int count = version == 1 ? CF_V1_COUNT : version == 2 ? CF_V2_0_COUNT : CF_THRESHOLD_KIND + 1;
    if (len < 8 * (size_t)count)
        return avq_fail(AVQ_ERR_FORMAT, "%s: section CONF: %zu bytes, expected at least %d", path, len,
                        8 * count);
    if (version >= 2) count = len / 8 < (size_t)CF_COUNT ? (int)(len / 8) : CF_COUNT;
    uint64_t v[CF_COUNT] = {0};
    for (int i = 0; i < count; i++) v[i] = get_u64(in + 8 * i);
    /* files without the slot (v1, early v2) encoded with an absolute T */
    if (count <= CF_THRESHOLD_KIND) v[CF_THRESHOLD_KIND] = AVQ_THRESHOLD_ABSOLUTE;
    float spread_z = count > CF_LEAF_SPREAD_Z ? bits_float((uint32_t)v[CF_LEAF_SPREAD_Z]) : 0.0f;
    if (!(spread_z >= 0.0f) || !isfinite(spread_z))
        return avq_fail(AVQ_ERR_FORMAT, "%s: section CONF: leaf spread weight %g out of range", path,
                        (double)spread_z);
    if (v[CF_THRESHOLD_KIND] > AVQ_THRESHOLD_ABSOLUTE)
        return avq_fail(AVQ_ERR_FORMAT, "%s: section CONF: unknown threshold kind", path);
    /* files without the weight slots: the step weight, nearest int8 rounding
     * (all zero, as v[] starts) */
    float weight_param = bits_float((uint32_t)v[CF_WEIGHT_PARAM]);
    if (v[CF_WEIGHT] > AVQ_WEIGHT_LOGISTIC || v[CF_INT8_AWARE] > 1 || !isfinite(weight_param))
        return avq_fail(AVQ_ERR_FORMAT, "%s: section CONF: unknown score weight or int8 rounding",
                        path);
    if (v[CF_SPILL] > 1 || (v[CF_SPILL] && (v[CF_LEAVES] < 2 || v[CF_MODE] != AVQ_MODE_PQ ||
                                            v[CF_LIVE] % 2)))
        return avq_fail(AVQ_ERR_FORMAT,
                        "%s: section CONF: spill %llu does not fit the index (it needs 2 or more "
                        "leaves, codes and an even live count)", path,
                        (unsigned long long)v[CF_SPILL]);
    if (v[CF_CODES8_PACKED] > 1 ||
        (v[CF_CODES8_PACKED] && (v[CF_BITS] != 8 || v[CF_MODE] != AVQ_MODE_PQ)))
        return avq_fail(AVQ_ERR_FORMAT,
                        "%s: section CONF: packed 8-bit codes flag %llu in an index without "
                        "8-bit codes", path, (unsigned long long)v[CF_CODES8_PACKED]);
    if (v[CF_METRIC] > AVQ_METRIC_COSINE || v[CF_MODE] > AVQ_MODE_PQ ||
        v[CF_REORDER] > AVQ_REORDER_FLOAT16 || (v[CF_BITS] != 4 && v[CF_BITS] != 8))
        return avq_fail(AVQ_ERR_FORMAT, "%s: section CONF: unknown metric, mode, reorder or bits", path);
    bool v1 = version == 1;
    if (version == 1) {
        v[CF_LIVE] = v[CF_N];
        v[CF_NEXT_ID] = v[CF_N];
        v[CF_TRAINED_N] = v[CF_N];
    }
    if ((v1 && v[CF_N] == 0) || v[CF_N] > ((uint64_t)1 << 40) || v[CF_DIM] == 0 ||
        v[CF_DIM] > (1u << 20) || v[CF_LEAVES] == 0 || v[CF_LEAVES] > (1u << 24) ||
        (v1 && v[CF_LEAVES] > v[CF_N]) || v[CF_DPB] == 0 || v[CF_DPB] > v[CF_DIM] ||
        v[CF_LIVE] > v[CF_N] || v[CF_NEXT_ID] > (uint64_t)INT64_MAX)
        return avq_fail(AVQ_ERR_FORMAT, "%s: section CONF: sizes out of range (n=%llu dim=%llu leaves=%llu)",
                        path, (unsigned long long)v[CF_N], (unsigned long long)v[CF_DIM],
                        (unsigned long long)v[CF_LEAVES]);
    if (v[CF_MODE] == AVQ_MODE_BRUTE && v[CF_LEAVES] != 1)
        return avq_fail(AVQ_ERR_FORMAT, "%s: section CONF: the exact tier has one leaf", path);
    if (v[CF_BLOCKS] != (v[CF_DIM] + v[CF_DPB] - 1) / v[CF_DPB] ||
        v[CF_CENTERS] != (v[CF_BITS] == 4 ? 16u : 256u))
        return avq_fail(AVQ_ERR_FORMAT, "%s: section CONF: block or center count inconsistent", path);
    if (v[CF_DEF_LEAVES] == 0 || v[CF_DEF_LEAVES] > v[CF_LEAVES] || v[CF_DEF_REORDER] > (1u << 22))
        return avq_fail(AVQ_ERR_FORMAT, "%s: section CONF: default search parameters out of range", path);
    avq_build_params *p = &x->params;
    avq_build_params_init(p, (avq_metric)v[CF_METRIC]);
    p->num_leaves = v[CF_LEAVES];
    p->kmeans_iterations = (int)v[CF_KM_ITERS];
    p->spherical = (int)(int64_t)v[CF_SPHERICAL];
    p->dims_per_block = (int)v[CF_DPB];
    p->bits = (int)v[CF_BITS];
    p->threshold = bits_float((uint32_t)v[CF_THRESHOLD]);
    p->eta = bits_float((uint32_t)v[CF_ETA]);
    p->avq_center_eta = bits_float((uint32_t)v[CF_CENTER_ETA]);
    p->reorder = (avq_reorder)v[CF_REORDER];
    p->seed = v[CF_SEED];
    p->training_sample = v[CF_SAMPLE];
    p->brute_force_below = v[CF_BRUTE_BELOW];
    p->threshold_kind = (avq_threshold_kind)v[CF_THRESHOLD_KIND];
    p->leaf_spread_z = spread_z;
    p->weight = (avq_weight_kind)v[CF_WEIGHT];
    p->weight_param = weight_param;
    p->int8_aware = (int)v[CF_INT8_AWARE];
    p->spill = (int)v[CF_SPILL]; /* its lambda is in section SPIL */
    x->codes8_packed = v[CF_CODES8_PACKED] != 0;
    x->version = version;
    x->mode = (avq_index_mode)v[CF_MODE];
    x->n = v[CF_N];
    x->live = v[CF_LIVE];
    x->dim = v[CF_DIM];
    x->num_leaves = v[CF_LEAVES];
    x->bits = v[CF_BITS];
    x->dims_per_block = v[CF_DPB];
    x->num_blocks = v[CF_BLOCKS];
    x->num_centers = v[CF_CENTERS];
    x->reorder = (avq_reorder)v[CF_REORDER];
    x->default_leaves = v[CF_DEF_LEAVES];
    x->default_reorder = v[CF_DEF_REORDER];
    x->next_id = (int64_t)v[CF_NEXT_ID];
    x->trained_n = v[CF_TRAINED_N];
    return AVQ_OK;
}

/* ---- the array sections: one table drives save, load and the checks ---- */

typedef enum { PART_QUANTIZER, PART_LEAVES } array_part;

typedef struct {
    uint32_t tag;
    const char *name;
    size_t elem;        /* bytes per element                                */
    size_t offset;      /* offsetof the pointer field in file_view          */
    array_part part;    /* quantizer array, or one piece per leaf           */
} array_section;

#define ARRAY(a, b, c, d, field, type, part) \
    {TAG(a, b, c, d), #field, sizeof(type), offsetof(file_view, field), part}

enum {
    A_CENT, A_CNRM, A_LOFF, A_IDS, A_CBOK, A_CODE, A_COFF, A_VECF, A_VEC8, A_I8SC, A_NRM2, A_LIVE,
    A_TKOF, A_TSOF, A_TKEY, A_TPOS, A_TSLT, A_LSPR, A_SPIL, A_PAK8, A_VECH
};

static const array_section ARRAYS[] = {
    [A_CENT] = ARRAY('C', 'E', 'N', 'T', centers, float, PART_QUANTIZER),
    [A_CNRM] = ARRAY('C', 'N', 'R', 'M', center_norms, float, PART_QUANTIZER),
    [A_LOFF] = ARRAY('L', 'O', 'F', 'F', leaf_offsets, uint64_t, PART_LEAVES),
    [A_IDS] = ARRAY('I', 'D', 'S', '_', ids, int64_t, PART_LEAVES),
    [A_CBOK] = ARRAY('C', 'B', 'O', 'K', codebook, float, PART_QUANTIZER),
    [A_CODE] = ARRAY('C', 'O', 'D', 'E', codes, uint8_t, PART_LEAVES),
    [A_COFF] = ARRAY('C', 'O', 'F', 'F', code_offsets, uint64_t, PART_LEAVES),
    [A_VECF] = ARRAY('V', 'E', 'C', 'F', vectors, float, PART_LEAVES),
    [A_VEC8] = ARRAY('V', 'E', 'C', '8', vectors_i8, int8_t, PART_LEAVES),
    [A_I8SC] = ARRAY('I', '8', 'S', 'C', i8_scale, float, PART_QUANTIZER),
    [A_NRM2] = ARRAY('N', 'R', 'M', '2', norms2, float, PART_LEAVES),
    [A_LIVE] = ARRAY('L', 'I', 'V', 'E', live_bits, uint32_t, PART_LEAVES),
    [A_TKOF] = ARRAY('T', 'K', 'O', 'F', tag_key_offsets, uint64_t, PART_LEAVES),
    [A_TSOF] = ARRAY('T', 'S', 'O', 'F', tag_slot_offsets, uint64_t, PART_LEAVES),
    [A_TKEY] = ARRAY('T', 'K', 'E', 'Y', tag_keys, uint32_t, PART_LEAVES),
    [A_TPOS] = ARRAY('T', 'P', 'O', 'S', tag_pos, uint32_t, PART_LEAVES),
    [A_TSLT] = ARRAY('T', 'S', 'L', 'T', tag_slots, uint32_t, PART_LEAVES),
    /* 0.4, not REQUIRED: an older reader ranks leaves without it */
    [A_LSPR] = ARRAY('L', 'S', 'P', 'R', leaf_spread, float, PART_QUANTIZER),
    /* 0.5, REQUIRED: the spill loss's lambda (one float) of a spilled index */
    [A_SPIL] = ARRAY('S', 'P', 'I', 'L', spill_lambda, float, PART_QUANTIZER),
    /* 0.6, REQUIRED: the 8-bit codes are packed in groups of (one word) 32 */
    [A_PAK8] = ARRAY('P', 'A', 'K', '8', pack8, uint32_t, PART_QUANTIZER),
    /* 0.7, REQUIRED (and reorder 3 in CONF, which readers before 0.7
     * refuse): the float16 re-ranking rows */
    [A_VECH] = ARRAY('V', 'E', 'C', 'H', vectors_f16, uint16_t, PART_LEAVES),
};
#define NUM_ARRAYS (sizeof ARRAYS / sizeof ARRAYS[0])
#define CONF_TAG TAG('C', 'O', 'N', 'F')

static void **field_ptr(file_view *x, const array_section *a) {
    return (void **)((char *)x + a->offset);
}

static size_t leaf_slots(const file_view *x, size_t l) {
    return (size_t)(x->leaf_offsets[l + 1] - x->leaf_offsets[l]);
}

/* A leaf's code bytes: its packed groups, or, in an 8-bit file before 0.6,
 * its row-major codes. */
static size_t leaf_code_bytes(const file_view *x, size_t slots) {
    if (x->bits == 8 && !x->codes8_packed) return slots * x->num_blocks;
    return avq_pack_size((int)x->bits, slots, x->num_blocks);
}

/* Words of the LIVE section: each leaf's bits start on a word. */
static size_t live_words(const file_view *x) {
    size_t w = 0;
    for (size_t l = 0; l < x->num_leaves; l++) w += (leaf_slots(x, l) + 31) / 32;
    return w;
}

/* Element count a section must have, derived from the configuration (and
 * from LOFF/COFF, which are attached first).  0 means "must be absent". */
static size_t expected_count(const file_view *x, size_t which) {
    size_t L = x->num_leaves, n = x->n, d = x->dim;
    bool pq = x->mode == AVQ_MODE_PQ;
    switch (which) {
    case A_CENT: return L * d;
    case A_CNRM: return L;
    case A_LOFF: return L + 1;
    case A_IDS: return n;
    case A_CBOK: return pq ? x->num_centers * d : 0;
    case A_CODE: return pq && x->code_offsets ? (size_t)x->code_offsets[L] : 0;
    case A_COFF: return pq ? L + 1 : 0;
    case A_VECF: return (!pq || x->reorder == AVQ_REORDER_FLOAT) ? n * d : 0;
    case A_VEC8: return (pq && x->reorder == AVQ_REORDER_INT8) ? n * d : 0;
    case A_I8SC: return (pq && x->reorder == AVQ_REORDER_INT8) ? d : 0;
    case A_VECH: return (pq && x->reorder == AVQ_REORDER_FLOAT16) ? n * d : 0;
    case A_NRM2: return x->params.metric == AVQ_METRIC_L2 ? n : 0;
    case A_LIVE: return x->version >= 2 && x->live < n && x->leaf_offsets ? live_words(x) : 0;
    /* version 3: always all five (an index without tags is written as v2) */
    case A_TKOF: return x->version >= 3 ? L + 1 : 0;
    case A_TSOF: return x->version >= 3 ? L + 1 : 0;
    case A_TKEY: return x->version >= 3 && x->tag_key_offsets ? (size_t)x->tag_key_offsets[L] : 0;
    case A_TPOS: return x->version >= 3 && x->tag_key_offsets ? (size_t)x->tag_key_offsets[L] + L : 0;
    case A_TSLT: return x->version >= 3 && x->tag_slot_offsets ? (size_t)x->tag_slot_offsets[L] : 0;
    case A_LSPR: return pq && x->params.leaf_spread_z > 0.0f ? L : 0;
    case A_SPIL: return x->params.spill > 0 ? 1 : 0;
    case A_PAK8: return pq && x->codes8_packed ? 1 : 0;
    default: return 0;
    }
}

/* ---- output: a file or a memory buffer ----------------------------------- */

typedef struct {
    int fd;              /* >= 0: write here                               */
    uint8_t *mem;        /* else: into this buffer of `cap` bytes          */
    size_t at, cap;
    const char *path;
} sink;

static int sink_write(sink *s, const void *buf, size_t len) {
    if (s->fd < 0) {
        if (len > s->cap - s->at) return avq_fail(AVQ_ERR_INTERNAL, "save: buffer overrun");
        if (len) memcpy(s->mem + s->at, buf, len);
        s->at += len;
        return AVQ_OK;
    }
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(s->fd, p, len > (1u << 30) ? (1u << 30) : len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return avq_fail(AVQ_ERR_IO, "%s: write failed: %s", s->path,
                            w < 0 ? strerror(errno) : "no progress");
        p += w;
        len -= (size_t)w;
    }
    return AVQ_OK;
}

typedef struct {
    const void *data;
    size_t len;
} piece;

typedef struct {
    uint32_t tag, flags;
    piece *pieces;       /* the section's bytes, in order                  */
    size_t npieces;
    uint64_t length, offset;
    uint32_t crc;
} out_section;

static size_t align_up(size_t v) { return (v + SECTION_ALIGN - 1) & ~(size_t)(SECTION_ALIGN - 1); }

/* Offsets and checksums; returns the file size. */
static size_t layout_sections(out_section *secs, size_t count) {
    size_t pos = align_up(HEADER_BYTES + count * ENTRY_BYTES);
    for (size_t i = 0; i < count; i++) {
        secs[i].offset = pos;
        uint32_t c = 0xFFFFFFFFu;
        secs[i].length = 0;
        for (size_t k = 0; k < secs[i].npieces; k++) {
            c = crc32c_update(c, secs[i].pieces[k].data, secs[i].pieces[k].len);
            secs[i].length += secs[i].pieces[k].len;
        }
        secs[i].crc = c ^ 0xFFFFFFFFu;
        pos = align_up(pos + secs[i].length);
    }
    return pos;
}

static int write_sections(sink *out, unsigned version, out_section *secs, size_t count,
                          size_t file_size) {
    size_t table_end = HEADER_BYTES + count * ENTRY_BYTES;
    uint8_t head[HEADER_BYTES + MAX_SECTIONS * ENTRY_BYTES];
    memset(head, 0, sizeof head);
    memcpy(head, MAGIC, 8);
    put_u32(head + 8, version);
    put_u32(head + 12, ENDIAN_MARK);
    put_u32(head + 16, (uint32_t)count);
    put_u64(head + 24, file_size);
    for (size_t i = 0; i < count; i++) {
        uint8_t *e = head + HEADER_BYTES + i * ENTRY_BYTES;
        put_u32(e, secs[i].tag);
        put_u32(e + 4, secs[i].flags);
        put_u64(e + 8, secs[i].offset);
        put_u64(e + 16, secs[i].length);
        put_u32(e + 24, secs[i].crc);
    }
    put_u32(head + 20, crc32c(head, table_end)); /* computed with this field 0 */
    static const uint8_t zeros[SECTION_ALIGN];
    int st = sink_write(out, head, table_end);
    size_t at = table_end;
    for (size_t i = 0; i < count && st == AVQ_OK; i++) {
        st = sink_write(out, zeros, secs[i].offset - at);
        for (size_t k = 0; k < secs[i].npieces && st == AVQ_OK; k++)
            st = sink_write(out, secs[i].pieces[k].data, secs[i].pieces[k].len);
        at = secs[i].offset + secs[i].length;
    }
    if (st == AVQ_OK) st = sink_write(out, zeros, file_size - at);
    return st;
}

/* ---- save ------------------------------------------------------------------ */

/* Everything one save needs, gathered from the index under its write lock:
 * the view (configuration, quantizer arrays, the offsets arrays it derives),
 * the sections as pieces. */
typedef struct {
    file_view view;
    uint8_t conf[8 * CF_COUNT];
    out_section secs[1 + NUM_ARRAYS];
    size_t count;
    piece *pieces;       /* one allocation for all sections' pieces        */
    uint32_t *live_all;  /* LIVE words of leaves without a bitmap of their own */
} save_plan;

static void plan_free(save_plan *p) {
    free(p->view.leaf_offsets);
    free(p->view.code_offsets);
    free(p->view.tag_key_offsets);
    free(p->view.tag_slot_offsets);
    free(p->pieces);
    free(p->live_all);
}

static const void *leaf_array(const avq_leaf *v, size_t which, size_t d, size_t *elem_count) {
    const avq_leaf_store *s = v->store;
    *elem_count = v->n;
    switch (which) {
    case A_IDS: return s->ids;
    case A_VECF: *elem_count = v->n * d; return s->vectors;
    case A_VEC8: *elem_count = v->n * d; return s->vectors_i8;
    case A_VECH: *elem_count = v->n * d; return s->vectors_f16;
    case A_NRM2: return s->norms2;
    default: return NULL;
    }
}

/* The tags a leaf version saves: NULL for none (also for an empty list). */
static const avq_leaf_tags *saved_tags(const avq_leaf *v) {
    return v->tags && v->tags->nkeys > 0 ? v->tags : NULL;
}

/* A plan for quantizer q with these leaf versions (NULL: no vectors). */
static int plan_save(const avq_quantizer *q, const avq_leaf *const *leaves, int64_t next_id,
                     save_plan *p) {
    memset(p, 0, sizeof *p);
    file_view *v = &p->view;
    size_t L = q->num_leaves, d = q->dim, K = q->num_blocks;
    bool tagged = false;
    for (size_t l = 0; leaves && l < L; l++) tagged |= saved_tags(leaves[l]) != NULL;
    v->version = tagged ? AVQ_FORMAT_TAGGED : AVQ_FORMAT_UNTAGGED;
    v->params = q->params;
    v->mode = q->mode;
    v->dim = d;
    v->num_leaves = L;
    v->bits = (size_t)q->bits;
    v->dims_per_block = q->dims_per_block;
    v->num_blocks = K;
    v->num_centers = q->num_centers;
    v->reorder = q->reorder;
    v->default_leaves = q->default_leaves_to_search;
    v->default_reorder = q->default_pre_reorder;
    v->trained_n = q->trained_n;
    v->next_id = next_id;
    v->centers = q->centers;
    v->center_norms = q->center_norms;
    v->codebook = q->codebook;
    v->i8_scale = q->i8_scale;
    v->leaf_spread = q->leaf_spread;
    v->spill_lambda = (float *)&q->params.spill_lambda;
    static const uint32_t pack_group = AVQ_PACK_GROUP;
    v->codes8_packed = q->mode == AVQ_MODE_PQ && q->bits == 8;
    v->pack8 = (uint32_t *)&pack_group;
    v->leaf_offsets = calloc(L + 1, sizeof *v->leaf_offsets);
    v->code_offsets = calloc(L + 1, sizeof *v->code_offsets);
    /* at most 2 pieces per leaf per section, 1 for quantizer arrays */
    p->pieces = malloc((NUM_ARRAYS * (2 * L + 1)) * sizeof *p->pieces);
    if (tagged) {
        v->tag_key_offsets = calloc(L + 1, sizeof *v->tag_key_offsets);
        v->tag_slot_offsets = calloc(L + 1, sizeof *v->tag_slot_offsets);
    }
    if (!v->leaf_offsets || !v->code_offsets || !p->pieces ||
        (tagged && (!v->tag_key_offsets || !v->tag_slot_offsets))) {
        plan_free(p);
        return avq_fail_nomem("save plan", NUM_ARRAYS * (2 * L + 1) * sizeof *p->pieces);
    }
    size_t words = 0;
    for (size_t l = 0; l < L; l++) {
        size_t n = leaves ? leaves[l]->n : 0;
        v->leaf_offsets[l + 1] = v->leaf_offsets[l] + n;
        v->code_offsets[l + 1] = v->code_offsets[l] + leaf_code_bytes(v, n);
        v->live += leaves ? leaves[l]->live : 0;
        words += (n + 31) / 32;
        if (tagged) {
            const avq_leaf_tags *t = saved_tags(leaves[l]);
            v->tag_key_offsets[l + 1] = v->tag_key_offsets[l] + (t ? t->nkeys : 0);
            v->tag_slot_offsets[l + 1] = v->tag_slot_offsets[l] + (t ? t->npost : 0);
        }
    }
    v->n = v->leaf_offsets[L];
    if (v->mode != AVQ_MODE_PQ) memset(v->code_offsets, 0, (L + 1) * sizeof *v->code_offsets);
    if (v->live < v->n) {
        /* the liveness of leaves with every slot live, written from here */
        p->live_all = calloc(words ? words : 1, sizeof *p->live_all);
        if (!p->live_all) {
            plan_free(p);
            return avq_fail_nomem("liveness", words * 4);
        }
    }
    encode_conf(v, p->conf);
    piece *next = p->pieces;
    p->secs[p->count++] = (out_section){CONF_TAG, FLAG_REQUIRED, next, 1, 0, 0, 0};
    *next++ = (piece){p->conf, sizeof p->conf};
    size_t word_at = 0;
    for (size_t i = 0; i < NUM_ARRAYS; i++) {
        const array_section *a = &ARRAYS[i];
        size_t want = expected_count(v, i);
        if (want == 0) continue;
        out_section *sec = &p->secs[p->count++];
        *sec = (out_section){a->tag, i == A_LSPR ? 0u : FLAG_REQUIRED, next, 0, 0, 0, 0};
        if (a->part == PART_QUANTIZER || i == A_LOFF || i == A_COFF || i == A_TKOF ||
            i == A_TSOF) {
            *next++ = (piece){*field_ptr(v, a), want * a->elem};
        } else if (i == A_TKEY || i == A_TPOS || i == A_TSLT) {
            /* every leaf has nkeys + 1 TPOS words (one zero word when it has
             * no tags, empty leaves included); TKEY and TSLT have nothing of
             * a leaf without tags */
            static const uint32_t zero_word = 0;
            for (size_t l = 0; l < L; l++) {
                const avq_leaf_tags *t = saved_tags(leaves[l]);
                if (i == A_TPOS)
                    *next++ = t ? (piece){t->off, ((size_t)t->nkeys + 1) * 4} : (piece){&zero_word, 4};
                else if (t && i == A_TKEY && t->nkeys)
                    *next++ = (piece){t->keys, (size_t)t->nkeys * 4};
                else if (t && i == A_TSLT && t->npost)
                    *next++ = (piece){t->slots, (size_t)t->npost * 4};
            }
        } else {
            for (size_t l = 0; l < L; l++) {
                const avq_leaf *lv = leaves[l];
                if (lv->n == 0) continue;
                if (i == A_CODE) {
                    size_t head = avq_pack_size(q->bits, lv->full, K);
                    if (head) *next++ = (piece){lv->store->codes, head};
                    if (lv->n > lv->full)
                        *next++ = (piece){lv->tail, avq_pack_group_bytes(q->bits, K)};
                } else if (i == A_LIVE) {
                    size_t w = (lv->n + 31) / 32;
                    if (lv->alive) {
                        *next++ = (piece){lv->alive, w * 4};
                    } else {
                        for (size_t k = 0; k < w; k++) {
                            size_t left = lv->n - 32 * k;
                            p->live_all[word_at + k] =
                                left >= 32 ? 0xFFFFFFFFu : (1u << left) - 1u;
                        }
                        *next++ = (piece){p->live_all + word_at, w * 4};
                    }
                    word_at += w;
                } else {
                    size_t cnt;
                    const void *data = leaf_array(lv, i, d, &cnt);
                    *next++ = (piece){data, cnt * a->elem};
                }
            }
        }
        sec->npieces = (size_t)(next - sec->pieces);
    }
    return AVQ_OK;
}

/* ---- output files: what cp and install users expect ------------------------ */

/* Test hooks (tests/test_files.c): force the named-temporary path, as on a
 * filesystem without O_TMPFILE, and pretend to be a big-endian host. */
int avq_io_test_no_tmpfile = 0;
int avq_io_test_big_endian = 0;

/* Whether this host stores numbers little-endian (the byte order of every
 * avq file).  Asked at run time: the answer decides the refusal below, and
 * tests/test_files.c checks it against the compiler's __BYTE_ORDER__. */
int avq_io_host_little_endian(void) {
    const uint32_t probe = ENDIAN_MARK;
    uint8_t first;
    memcpy(&first, &probe, 1);
    return first == 0x04 && !avq_io_test_big_endian;
}

/* The arrays of a file are used in place (mmap), so they must be in the
 * host's order: a big-endian host neither reads nor writes avq files. */
static int refuse_big_endian_host(const char *path) {
    if (avq_io_host_little_endian()) return AVQ_OK;
    return avq_fail(AVQ_ERR_UNSUPPORTED,
                    "%s: this host is big-endian; avq index files are little-endian and are read "
                    "and written only on little-endian hosts", path);
}

/* Where a save goes.  `path` is followed like cp follows a destination:
 *   - missing: a new file, mode 0666 & ~umask;
 *   - a regular file, or a symbolic link (chain) to one: the target -- the
 *     link's target, in its own directory -- is replaced atomically, keeping
 *     its permission bits (and its owner and group where allowed);
 *   - a character device or FIFO (/dev/null, a pipe): written through, in
 *     place and not atomically, as cp and shell redirection do; no rename;
 *   - a directory, block device, socket or dangling symlink: refused.
 * A replacement is written to an unnamed file (O_TMPFILE) in the target's
 * directory, so a process killed mid-save leaves nothing behind; it gets a
 * name only once written and synced, just before the rename.  Without
 * O_TMPFILE (or /proc/self/fd) a named temporary TARGET.tmp.XXXXXX is used
 * and removed on every failure that returns. */
typedef struct {
    char *target;   /* the file replaced (symlinks resolved) or written through */
    char *tmp;      /* the named temporary, once it exists */
    int fd;
    bool through;   /* writing through to a device or FIFO */
    bool anon;      /* fd is an O_TMPFILE file */
} out_file;

static void out_discard(out_file *o) {
    if (o->fd >= 0) close(o->fd);
    if (o->tmp) unlink(o->tmp);
    free(o->tmp);
    free(o->target);
    o->fd = -1;
    o->tmp = o->target = NULL;
}

static _Atomic uint64_t temp_counter;

/* Create TARGET.tmp.XXXXXX exclusively (mode 0666 & ~umask) as o->fd, or
 * with fd_link >= 0 give that O_TMPFILE file such a name (linkat). */
static int named_temp(out_file *o, int fd_link, const char *path) {
    size_t len = strlen(o->target) + 16;
    char *name = malloc(len);
    if (!name) return avq_fail_nomem("temporary path", len);
    static const char digits[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    int err = EEXIST;
    for (int attempt = 0; attempt < 100 && err == EEXIST; attempt++) {
        uint64_t r = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^
                     atomic_fetch_add(&temp_counter, 1) * 0xBF58476D1CE4E5B9ull ^
                     (uint64_t)(uintptr_t)name;
        char suffix[7];
        for (int i = 0; i < 6; i++, r /= 36) suffix[i] = digits[r % 36];
        suffix[6] = 0;
        snprintf(name, len, "%s.tmp.%s", o->target, suffix);
        if (fd_link >= 0) {
            char proc[40];
            snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd_link);
            err = linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW) == 0 ? 0 : errno;
        } else {
            o->fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
            err = o->fd >= 0 ? 0 : errno;
        }
    }
    if (err) {
        free(name);
        return avq_fail(AVQ_ERR_IO, "%s: cannot create a temporary file beside %s: %s", path,
                        o->target, strerror(err));
    }
    o->tmp = name;
    return AVQ_OK;
}

static int out_open(out_file *o, const char *path) {
    memset(o, 0, sizeof *o);
    o->fd = -1;
    struct stat sb, lsb;
    bool exists = stat(path, &sb) == 0;
    if (!exists && errno != ENOENT)
        return avq_fail(AVQ_ERR_IO, "%s: cannot save there: %s", path, strerror(errno));
    if (!exists && lstat(path, &lsb) == 0)
        return avq_fail(AVQ_ERR_IO, "%s: is a symbolic link to a missing file; not writing "
                                    "through it (remove it, or create its target)", path);
    if (exists && S_ISDIR(sb.st_mode))
        return avq_fail(AVQ_ERR_IO, "%s: is a directory", path);
    if (exists && !S_ISREG(sb.st_mode) && !S_ISCHR(sb.st_mode) && !S_ISFIFO(sb.st_mode))
        return avq_fail(AVQ_ERR_IO, "%s: is a %s; avq saves to regular files, character "
                                    "devices and FIFOs only", path,
                        S_ISBLK(sb.st_mode) ? "block device" : S_ISSOCK(sb.st_mode) ? "socket"
                                                                                  : "special file");
    if (exists && !S_ISREG(sb.st_mode)) {
        /* written through, like cp: a FIFO waits for its reader here */
        o->through = true;
        o->fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        if (o->fd < 0) return avq_fail(AVQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return AVQ_OK;
    }
    bool link = exists && lstat(path, &lsb) == 0 && S_ISLNK(lsb.st_mode);
    o->target = link ? realpath(path, NULL) : strdup(path);
    if (!o->target)
        return link ? avq_fail(AVQ_ERR_IO, "%s: cannot resolve the symbolic link: %s", path,
                               strerror(errno))
                    : avq_fail_nomem("path", strlen(path) + 1);
    char *dir_copy = strdup(o->target);
    if (!dir_copy) {
        out_discard(o);
        return avq_fail_nomem("path", strlen(path) + 1);
    }
    const char *dir = dirname(dir_copy);
#ifdef O_TMPFILE
    if (!avq_io_test_no_tmpfile && access("/proc/self/fd", X_OK) == 0) {
        o->fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
        o->anon = o->fd >= 0;
    }
#endif
    free(dir_copy);
    int st = o->fd >= 0 ? AVQ_OK : named_temp(o, -1, path);
    if (st != AVQ_OK) {
        out_discard(o);
        return st;
    }
    if (exists) {
        /* what cp keeps when it overwrites: the permission bits, and the
         * owner and group where we may set them (root; a group of ours) */
        if ((sb.st_uid != geteuid() || sb.st_gid != getegid()) &&
            fchown(o->fd, sb.st_uid, sb.st_gid) != 0)
            (void)!fchown(o->fd, (uid_t)-1, sb.st_gid); /* else the group alone, or ours */
        if (fchmod(o->fd, sb.st_mode & 07777 & ~(mode_t)(S_ISUID | S_ISGID)) != 0) {
            st = avq_fail(AVQ_ERR_IO, "%s: cannot set the mode: %s", path, strerror(errno));
            out_discard(o);
        }
    }
    return st;
}

/* Finish a written file: sync, give it its name (rename over the target),
 * sync the directory.  On failure nothing is left and the old file is
 * whole. */
static int out_commit(out_file *o, const char *path) {
    int st = AVQ_OK;
    if (fsync(o->fd) != 0 && !(o->through && (errno == EINVAL || errno == EROFS ||
                                              errno == ENOTSUP)))
        st = avq_fail(AVQ_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    if (st == AVQ_OK && o->anon) st = named_temp(o, o->fd, path);
    int fd = o->fd;
    o->fd = -1;
    if (close(fd) != 0 && st == AVQ_OK)
        st = avq_fail(AVQ_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    if (st == AVQ_OK && !o->through && rename(o->tmp, o->target) != 0)
        st = avq_fail(AVQ_ERR_IO, "%s: rename from %s failed: %s", path, o->tmp, strerror(errno));
    if (st == AVQ_OK && !o->through) {
        free(o->tmp); /* renamed: nothing to remove */
        o->tmp = NULL;
        /* make the rename itself durable */
        char *dir = strdup(o->target);
        if (dir) {
            int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                fsync(dfd);
                close(dfd);
            }
            free(dir);
        }
    }
    out_discard(o);
    return st;
}

/* Write the plan to `path` (see out_file: atomically for a regular file). */
static int save_plan_to_file(save_plan *plan, const char *path) {
    int st = refuse_big_endian_host(path);
    if (st != AVQ_OK) return st;
    size_t size = layout_sections(plan->secs, plan->count);
    out_file o;
    if ((st = out_open(&o, path)) != AVQ_OK) return st;
    sink out = {o.fd, NULL, 0, 0, path};
    st = write_sections(&out, plan->view.version, plan->secs, plan->count, size);
    if (st != AVQ_OK) {
        out_discard(&o);
        return st;
    }
    return out_commit(&o, path);
}

/* The index's plan, made and used under its write lock (a consistent state;
 * searches go on, and nothing is reclaimed while the lock is held). */
static int with_index_plan(const avq_index *cx, const char *path, void **bytes, size_t *size) {
    avq_index *x = (avq_index *)cx;
    pthread_mutex_lock(&x->write_lock);
    int st = AVQ_OK;
    const avq_leaf **leaves = malloc(x->num_leaves * sizeof *leaves);
    if (!leaves) st = avq_fail_nomem("save", x->num_leaves * sizeof *leaves);
    save_plan plan;
    if (st == AVQ_OK) {
        for (size_t l = 0; l < x->num_leaves; l++) leaves[l] = avq_leaf_load(x, l);
        st = plan_save(x->q, leaves, x->next_id, &plan);
    }
    if (st == AVQ_OK) {
        if (path) {
            st = save_plan_to_file(&plan, path);
        } else {
            size_t total = layout_sections(plan.secs, plan.count);
            uint8_t *mem = malloc(total ? total : 1);
            if (!mem) {
                st = avq_fail_nomem("index bytes", total);
            } else {
                sink out = {-1, mem, 0, total, "<memory>"};
                st = write_sections(&out, plan.view.version, plan.secs, plan.count, total);
                if (st == AVQ_OK) {
                    *bytes = mem;
                    *size = total;
                } else {
                    free(mem);
                }
            }
        }
        plan_free(&plan);
    }
    free(leaves);
    pthread_mutex_unlock(&x->write_lock);
    return st;
}

int avq_index_save(const avq_index *x, const char *path) {
    if (!x || !path) return avq_fail(AVQ_ERR_INVALID, "save: NULL index or path");
    return with_index_plan(x, path, NULL, NULL);
}

int avq_index_save_bytes(const avq_index *x, void **bytes, size_t *size) {
    if (!x || !bytes || !size) return avq_fail(AVQ_ERR_INVALID, "save: NULL argument");
    *bytes = NULL;
    *size = 0;
    int st = refuse_big_endian_host("<memory>");
    if (st != AVQ_OK) return st;
    return with_index_plan(x, NULL, bytes, size);
}

void avq_free(void *p) { free(p); }

int avq_quantizer_save(const avq_quantizer *q, const char *path) {
    if (!q || !path) return avq_fail(AVQ_ERR_INVALID, "save: NULL quantizer or path");
    save_plan plan;
    int st = plan_save(q, NULL, 0, &plan);
    if (st != AVQ_OK) return st;
    st = save_plan_to_file(&plan, path);
    plan_free(&plan);
    return st;
}

/* ---- load ------------------------------------------------------------------ */

typedef struct {
    uint32_t tag, flags, crc;
    uint64_t offset, length;
} in_section;

static void tag_name(uint32_t tag, char out[5]) {
    for (int i = 0; i < 4; i++) {
        char c = (char)(tag >> (8 * i));
        out[i] = (c >= 32 && c < 127) ? c : '?';
    }
    out[4] = 0;
}

static int parse_header(const uint8_t *file, size_t size, in_section *secs, size_t *count,
                        unsigned *version_out, const char *path) {
    if (size < HEADER_BYTES)
        return avq_fail(AVQ_ERR_FORMAT, "%s: %zu bytes is too short for an avq index", path, size);
    if (memcmp(file, MAGIC, 8) != 0)
        return avq_fail(AVQ_ERR_FORMAT, "%s: not an avq index (bad magic)", path);
    uint32_t version = get_u32(file + 8);
    if (version < 1 || version > AVQ_FORMAT_NEWEST)
        return avq_fail(AVQ_ERR_FORMAT, "%s: format version %u, this library reads versions 1 to %u",
                        path, version, AVQ_FORMAT_NEWEST);
    /* the mark is written in the writer's byte order -- always little-endian,
     * since big-endian hosts refuse to save (and to load, before this) */
    uint32_t mark;
    memcpy(&mark, file + 12, 4);
    if (mark == __builtin_bswap32(ENDIAN_MARK))
        return avq_fail(AVQ_ERR_FORMAT,
                        "%s: big-endian byte order (endianness mark %02x %02x %02x %02x): avq "
                        "files are little-endian; this one was not written by avq on a "
                        "little-endian host", path, file[12], file[13], file[14], file[15]);
    if (mark != ENDIAN_MARK)
        return avq_fail(AVQ_ERR_FORMAT, "%s: bad endianness mark %02x %02x %02x %02x (expected "
                        "04 03 02 01)", path, file[12], file[13], file[14], file[15]);
    uint32_t n = get_u32(file + 16);
    if (n == 0 || n > MAX_SECTIONS)
        return avq_fail(AVQ_ERR_FORMAT, "%s: section count %u out of range", path, n);
    size_t table_end = HEADER_BYTES + (size_t)n * ENTRY_BYTES;
    if (table_end > size)
        return avq_fail(AVQ_ERR_FORMAT, "%s: truncated section table", path);
    if (get_u64(file + 24) != size)
        return avq_fail(AVQ_ERR_FORMAT, "%s: file is %zu bytes but its header says %llu (truncated or extended)",
                        path, size, (unsigned long long)get_u64(file + 24));
    uint8_t head[HEADER_BYTES + MAX_SECTIONS * ENTRY_BYTES];
    memcpy(head, file, table_end);
    uint32_t stored = get_u32(head + 20);
    put_u32(head + 20, 0);
    if (crc32c(head, table_end) != stored)
        return avq_fail(AVQ_ERR_FORMAT, "%s: header checksum mismatch (corrupt header)", path);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = file + HEADER_BYTES + (size_t)i * ENTRY_BYTES;
        in_section *s = &secs[i];
        s->tag = get_u32(e);
        s->flags = get_u32(e + 4);
        s->offset = get_u64(e + 8);
        s->length = get_u64(e + 16);
        s->crc = get_u32(e + 24);
        char name[5];
        tag_name(s->tag, name);
        if (s->offset % SECTION_ALIGN || s->offset < table_end || s->offset > size ||
            s->length > size - s->offset)
            return avq_fail(AVQ_ERR_FORMAT, "%s: section %s lies outside the file", path, name);
    }
    *count = n;
    *version_out = version;
    return AVQ_OK;
}

static const in_section *find_section(const in_section *secs, size_t count, uint32_t tag) {
    for (size_t i = 0; i < count; i++)
        if (secs[i].tag == tag) return &secs[i];
    return NULL;
}

/* Contents checks: everything search will use as an index into memory
 * (LOFF, COFF, LIVE: O(leaves + n/32)), and for version 1 the ids (O(n):
 * a permutation of 0..n-1).  Version-2 ids are checked for repeats when the
 * id map is built (at load for a verified load, else at the first call
 * that needs it).  Search never addresses memory with an id, so a bad id
 * can give wrong ids, never a crash (doc/FORMAT.md). */
static int check_contents(const file_view *x, bool check_ids, const char *path) {
    size_t L = x->num_leaves;
    if (x->leaf_offsets[0] != 0 || x->leaf_offsets[L] != x->n)
        return avq_fail(AVQ_ERR_FORMAT, "%s: section LOFF: offsets do not span the %zu points",
                        path, x->n);
    for (size_t l = 0; l < L; l++)
        if (x->leaf_offsets[l + 1] < x->leaf_offsets[l] ||
            x->leaf_offsets[l + 1] - x->leaf_offsets[l] > UINT32_MAX)
            return avq_fail(AVQ_ERR_FORMAT, "%s: section LOFF: offsets decrease at leaf %zu", path, l);
    if (x->mode == AVQ_MODE_PQ) {
        if (x->code_offsets[0] != 0)
            return avq_fail(AVQ_ERR_FORMAT, "%s: section COFF: first offset not 0", path);
        for (size_t l = 0; l < L; l++) {
            size_t bytes = leaf_code_bytes(x, leaf_slots(x, l));
            if (x->code_offsets[l + 1] < x->code_offsets[l] ||
                x->code_offsets[l + 1] - x->code_offsets[l] != bytes)
                return avq_fail(AVQ_ERR_FORMAT, "%s: section COFF: leaf %zu has the wrong code size", path, l);
        }
    }
    /* the quantizer's numbers feed float-to-integer conversions (LUT and
     * int8 quantization): NaN, infinity or a zero scale would be undefined
     * behaviour there, so they are refused (O(leaves * dim)) */
    struct { const float *v; size_t n; const char *tag; } floats[] = {
        {x->centers, x->num_leaves * x->dim, "CENT"},
        {x->center_norms, x->num_leaves, "CNRM"},
        {x->codebook, x->codebook ? x->num_centers * x->dim : 0, "CBOK"},
        {x->i8_scale, x->i8_scale ? x->dim : 0, "I8SC"},
        {x->leaf_spread, x->leaf_spread ? x->num_leaves : 0, "LSPR"},
    };
    for (size_t k = 0; k < sizeof floats / sizeof floats[0]; k++) {
        size_t bad = avq_first_non_finite(floats[k].v, floats[k].n);
        if (bad < floats[k].n)
            return avq_fail(AVQ_ERR_FORMAT, "%s: section %s: value %zu is not a finite number",
                            path, floats[k].tag, bad);
    }
    if (x->i8_scale)
        for (size_t j = 0; j < x->dim; j++)
            if (!(x->i8_scale[j] > 0.0f))
                return avq_fail(AVQ_ERR_FORMAT, "%s: section I8SC: scale %zu is not positive",
                                path, j);
    if (x->spill_lambda && (!(x->spill_lambda[0] >= 0.0f) || isinf(x->spill_lambda[0])))
        return avq_fail(AVQ_ERR_FORMAT, "%s: section SPIL: lambda %g is not a number >= 0", path,
                        (double)x->spill_lambda[0]);
    if (x->pack8 && x->pack8[0] != AVQ_PACK_GROUP)
        return avq_fail(AVQ_ERR_FORMAT,
                        "%s: section PAK8: groups of %u points, this library packs %d", path,
                        (unsigned)x->pack8[0], AVQ_PACK_GROUP);
    if (x->leaf_spread)
        for (size_t l = 0; l < x->num_leaves; l++)
            if (!(x->leaf_spread[l] >= 0.0f))
                return avq_fail(AVQ_ERR_FORMAT, "%s: section LSPR: leaf %zu has a negative spread",
                                path, l);
    if (x->live_bits) {
        size_t live = 0, w = 0;
        for (size_t l = 0; l < L; l++) {
            size_t n = leaf_slots(x, l), words = (n + 31) / 32;
            for (size_t k = 0; k < words; k++) {
                uint32_t bits = x->live_bits[w + k];
                size_t left = n - 32 * k;
                if (left < 32 && (bits >> left) != 0)
                    return avq_fail(AVQ_ERR_FORMAT, "%s: section LIVE: bits set past leaf %zu", path, l);
                live += (size_t)__builtin_popcount(bits);
            }
            w += words;
        }
        if (live != x->live)
            return avq_fail(AVQ_ERR_FORMAT, "%s: section LIVE: %zu live slots, CONF says %zu", path,
                            live, x->live);
    } else if (x->live != x->n) {
        return avq_fail(AVQ_ERR_FORMAT, "%s: CONF: %zu of %zu slots live but no section LIVE", path,
                        x->live, x->n);
    }
    if (x->tag_key_offsets) {
        /* the frame of every leaf's tag list (O(L)); its contents -- keys
         * ascending, starts increasing, slots ascending, in range and
         * live -- are checked against the leaf by avq_leaf_tags_validate
         * when the leaf is made (index_from_view) */
        for (size_t l = 0; l < L; l++) {
            uint64_t nkeys = x->tag_key_offsets[l + 1] - x->tag_key_offsets[l];
            uint64_t npost = x->tag_slot_offsets[l + 1] - x->tag_slot_offsets[l];
            const uint32_t *pos = x->tag_pos + x->tag_key_offsets[l] + l;
            if ((nkeys == 0) != (npost == 0) || nkeys > npost ||
                (nkeys > 0 && leaf_slots(x, l) == 0))
                return avq_fail(AVQ_ERR_FORMAT,
                                "%s: sections TKOF/TSOF: leaf %zu (%zu slots) has %llu tags and "
                                "%llu postings", path, l, leaf_slots(x, l),
                                (unsigned long long)nkeys, (unsigned long long)npost);
            if (pos[0] != 0 || pos[nkeys] != npost)
                return avq_fail(AVQ_ERR_FORMAT,
                                "%s: section TPOS: leaf %zu's starts run from %u to %u, expected 0 "
                                "to %llu", path, l, pos[0], pos[nkeys], (unsigned long long)npost);
        }
    }
    if (!check_ids || x->version != 1) return AVQ_OK;
    /* a bitmap: n/8 bytes, so the random accesses stay in cache */
    uint64_t *seen = calloc((x->n + 63) / 64, sizeof *seen);
    if (!seen) return avq_fail_nomem("id check", (x->n + 63) / 64 * sizeof *seen);
    int st = AVQ_OK;
    for (size_t i = 0; i < x->n; i++) {
        uint64_t id = (uint64_t)x->ids[i], bit = 1ull << (id & 63);
        if (id >= x->n || (seen[id >> 6] & bit)) {
            st = avq_fail(AVQ_ERR_FORMAT, "%s: section IDS_: entry %zu (%lld) is out of range or repeated",
                          path, i, (long long)x->ids[i]);
            break;
        }
        seen[id >> 6] |= bit;
    }
    free(seen);
    return st;
}

/* Point every array section into the loaded bytes. */
static int attach_arrays(file_view *x, const uint8_t *file, const in_section *secs, size_t count,
                         const char *path) {
    /* the offsets first: CODE's, LIVE's and the tag arrays' expected sizes
     * depend on them */
    static const size_t order[] = {A_COFF, A_LOFF, A_TKOF, A_TSOF, A_CENT, A_CNRM,
                                   A_IDS,  A_CBOK, A_CODE, A_VECF, A_VEC8, A_I8SC,
                                   A_NRM2, A_LIVE, A_TKEY, A_TPOS, A_TSLT, A_LSPR,
                                   A_SPIL, A_PAK8, A_VECH};
    _Static_assert(sizeof order / sizeof order[0] == NUM_ARRAYS, "every array is attached");
    for (size_t k = 0; k < NUM_ARRAYS; k++) {
        size_t i = order[k];
        const array_section *a = &ARRAYS[i];
        size_t want = expected_count(x, i);
        const in_section *s = find_section(secs, count, a->tag);
        char name[5];
        tag_name(a->tag, name);
        if (want == 0 && !s) continue;
        if (want == 0 || !s) {
            if ((i == A_TKOF || i == A_TSOF) && want)
                return avq_fail(AVQ_ERR_FORMAT,
                                "%s: section %s is missing: a format version %u file has the tag "
                                "sections", path, name, x->version);
            if (i == A_TKOF || i == A_TSOF)
                return avq_fail(AVQ_ERR_FORMAT,
                                "%s: section %s is unexpected: tag sections need format version "
                                "%u, this file is version %u", path, name, AVQ_FORMAT_TAGGED,
                                x->version);
            return avq_fail(AVQ_ERR_FORMAT, "%s: section %s is %s for this configuration", path, name,
                            want ? "missing" : "unexpected");
        }
        if (s->length / a->elem != want || s->length % a->elem)
            return avq_fail(AVQ_ERR_FORMAT, "%s: section %s has %llu bytes, expected %zu", path, name,
                            (unsigned long long)s->length, want * a->elem);
        *field_ptr(x, a) = (void *)(file + s->offset);
        if (i == A_LOFF) {
            /* LIVE's size is derived from LOFF: check LOFF before using it */
            const uint64_t *lo = x->leaf_offsets;
            for (size_t l = 0; l < x->num_leaves; l++)
                if (lo[l + 1] < lo[l] || lo[l + 1] > x->n)
                    return avq_fail(AVQ_ERR_FORMAT, "%s: section LOFF: offsets decrease at leaf %zu",
                                    path, l);
        }
        if (i == A_COFF) {
            const uint64_t *co = x->code_offsets;
            for (size_t l = 0; l < x->num_leaves; l++)
                if (co[l + 1] < co[l] || co[l + 1] > (uint64_t)1 << 48)
                    return avq_fail(AVQ_ERR_FORMAT, "%s: section COFF: offsets decrease at leaf %zu",
                                    path, l);
        }
        if (i == A_TKOF || i == A_TSOF) {
            /* TKEY's, TPOS's and TSLT's sizes derive from these: from 0,
             * non-decreasing, bounded, and < 2^32 per leaf (the counts of
             * a leaf's list are 32-bit) */
            const uint64_t *o = *field_ptr(x, a);
            if (o[0] != 0)
                return avq_fail(AVQ_ERR_FORMAT, "%s: section %s: first offset not 0", path, name);
            for (size_t l = 0; l < x->num_leaves; l++)
                if (o[l + 1] < o[l] || o[l + 1] > (uint64_t)1 << 48 || o[l + 1] - o[l] > UINT32_MAX)
                    return avq_fail(AVQ_ERR_FORMAT,
                                    "%s: section %s: offsets decrease or jump at leaf %zu", path,
                                    name, l);
        }
    }
    return AVQ_OK;
}

static int checksum_mismatch(const in_section *s, const char *path) {
    char name[5];
    tag_name(s->tag, name);
    return avq_fail(AVQ_ERR_FORMAT, "%s: section %s: checksum mismatch (corrupt data)", path, name);
}

/* From memory (COPY mode: the copy is what the index will use). */
static int verify_checksums(const uint8_t *file, const in_section *secs, size_t count,
                            const char *path) {
    for (size_t i = 0; i < count; i++)
        if (crc32c(file + secs[i].offset, secs[i].length) != secs[i].crc)
            return checksum_mismatch(&secs[i], path);
    return AVQ_OK;
}

/* From the file descriptor (MMAP mode): streaming the file through a small
 * buffer with pread is about twice as fast as touching every page of the
 * mapping (no page-table work), and leaves the mapping lazy -- pages come in
 * when search first needs them, as without verification. */
static int verify_checksums_fd(int fd, const in_section *secs, size_t count, const char *path) {
    size_t chunk = 0; /* 256 KiB (stays in L2), or less for small files */
    for (size_t i = 0; i < count; i++)
        if (secs[i].length > chunk) chunk = secs[i].length > (256u << 10) ? 256u << 10 : secs[i].length;
    uint8_t *buf = malloc(chunk ? chunk : 1);
    if (!buf) return avq_fail_nomem("checksum buffer", chunk);
    int st = AVQ_OK;
    for (size_t i = 0; i < count && st == AVQ_OK; i++) {
        uint32_t c = 0xFFFFFFFFu;
        uint64_t at = secs[i].offset, left = secs[i].length;
        while (left > 0) {
            size_t want = left < chunk ? (size_t)left : chunk;
            ssize_t got = pread(fd, buf, want, (off_t)at);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                st = got < 0 ? avq_fail(AVQ_ERR_IO, "%s: read failed: %s", path, strerror(errno))
                             : avq_fail(AVQ_ERR_FORMAT, "%s: file shrank while being read", path);
                break;
            }
            c = crc32c_update(c, buf, (size_t)got);
            at += (uint64_t)got;
            left -= (uint64_t)got;
        }
        if (st == AVQ_OK && (c ^ 0xFFFFFFFFu) != secs[i].crc) st = checksum_mismatch(&secs[i], path);
    }
    free(buf);
    return st;
}

static int check_known_sections(const in_section *secs, size_t count, unsigned version,
                                const char *path) {
    for (size_t i = 0; i < count; i++) {
        bool known = secs[i].tag == CONF_TAG;
        for (size_t a = 0; a < NUM_ARRAYS; a++) known |= secs[i].tag == ARRAYS[a].tag;
        for (size_t j = 0; j < i; j++)
            if (secs[j].tag == secs[i].tag)
                return avq_fail(AVQ_ERR_FORMAT, "%s: a section appears twice", path);
        if (!known && (secs[i].flags & FLAG_REQUIRED)) {
            char name[5];
            tag_name(secs[i].tag, name);
            return avq_fail(AVQ_ERR_FORMAT,
                            "%s: required section %s is unknown to this library (file format %u, "
                            "this library reads formats 1 to %u): written by a newer avq?",
                            path, name, version, AVQ_FORMAT_NEWEST);
        }
    }
    return AVQ_OK;
}

/* Whether the data sections' checksums are verified: always, except for
 * mmap loads that ask to skip them. */
static bool verifies(unsigned flags) {
    return !(flags & AVQ_LOAD_SKIP_CHECKSUMS) || !(flags & AVQ_LOAD_MMAP);
}

/* `fd` is the file (MMAP mode, checksums read through it) or -1 (COPY mode,
 * checksums computed over the copy). */
static int parse_file(file_view *x, const uint8_t *file, size_t size, unsigned flags, int fd,
                      const char *path) {
    in_section secs[MAX_SECTIONS];
    size_t count = 0;
    unsigned version = 0;
    memset(x, 0, sizeof *x);
    int st = parse_header(file, size, secs, &count, &version, path);
    if (st == AVQ_OK) st = check_known_sections(secs, count, version, path);
    const in_section *conf = st == AVQ_OK ? find_section(secs, count, CONF_TAG) : NULL;
    if (st == AVQ_OK && !conf) st = avq_fail(AVQ_ERR_FORMAT, "%s: no CONF section", path);
    if (st == AVQ_OK && verifies(flags))
        st = fd >= 0 ? verify_checksums_fd(fd, secs, count, path)
                     : verify_checksums(file, secs, count, path);
    if (st == AVQ_OK) st = decode_conf(file + conf->offset, conf->length, version, x, path);
    if (st == AVQ_OK) st = attach_arrays(x, file, secs, count, path);
    if (st == AVQ_OK) st = check_contents(x, verifies(flags), path);
    return st;
}

/* A quantizer whose arrays point into the mapping. */
static int quantizer_from_view(const file_view *v, avq_mapping *map, avq_quantizer **out) {
    avq_quantizer *q = calloc(1, sizeof *q);
    if (!q) return avq_fail_nomem("quantizer", sizeof *q);
    atomic_init(&q->refs, 1);
    q->params = v->params;
    q->mode = v->mode;
    q->dim = v->dim;
    q->trained_n = v->trained_n;
    q->num_leaves = v->num_leaves;
    q->centers = v->centers;
    q->center_norms = v->center_norms;
    q->bits = (int)v->bits;
    q->dims_per_block = v->dims_per_block;
    q->num_blocks = v->num_blocks;
    q->num_centers = v->num_centers;
    q->codebook = v->codebook;
    q->reorder = v->reorder;
    q->i8_scale = v->i8_scale;
    q->leaf_spread = v->leaf_spread;
    if (v->spill_lambda) q->params.spill_lambda = v->spill_lambda[0];
    q->default_leaves_to_search = v->default_leaves;
    q->default_pre_reorder = v->default_reorder;
    avq_mapping_ref(map);
    q->mapping = map;
    if (q->mode == AVQ_MODE_PQ) {
        int st = avq_quantizer_make_sketch(q);
        if (st != AVQ_OK) {
            avq_quantizer_free(q);
            return st;
        }
    }
    *out = q;
    return AVQ_OK;
}

/* An 8-bit file from before avq 0.6 stores each leaf's codes row-major;
 * the kernels read the packed layout.  Repack every leaf once, into one
 * read-only anonymous mapping the index owns (x->codes_mapping), and give
 * the offset of leaf l's groups in offsets[l]. */
static int repack_legacy_codes8(const file_view *v, avq_index *x, size_t *offsets,
                                uint8_t **base, const char *path) {
    size_t K = v->num_blocks, total = 0;
    for (size_t l = 0; l < v->num_leaves; l++) {
        offsets[l] = total;
        /* at most 32x the leaf's row-major bytes, which the file holds: no overflow */
        total += avq_pack_size(8, leaf_slots(v, l), K);
    }
    size_t bytes = total ? total : 1;
    void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return avq_fail_nomem("repacked 8-bit codes", bytes);
    x->codes_mapping = avq_mapping_new(mem, bytes);
    if (!x->codes_mapping) {
        munmap(mem, bytes);
        return avq_fail_nomem("mapping", sizeof(avq_mapping));
    }
    for (size_t l = 0; l < v->num_leaves; l++) {
        size_t n = leaf_slots(v, l);
        if (n == 0) continue;
        int st = avq_pack(8, v->codes + v->code_offsets[l], n, K, (uint8_t *)mem + offsets[l]);
        if (st != AVQ_OK) return avq_fail(st, "%s: section CODE: leaf %zu: cannot repack", path, l);
    }
    mprotect(mem, bytes, PROT_READ); /* like the file's bytes: never written */
    *base = mem;
    return AVQ_OK;
}

/* The index over a parsed file: every leaf a frozen version pointing into
 * the mapping. */
static int index_from_view(const file_view *v, avq_mapping *map, bool build_ids,
                           const char *path, avq_index **out) {
    avq_quantizer *q = NULL;
    int st = quantizer_from_view(v, map, &q);
    if (st != AVQ_OK) return st;
    avq_index *x = NULL;
    st = avq_index_alloc(q, &x);
    avq_quantizer_free(q);
    if (st != AVQ_OK) return st;
    avq_mapping_ref(map);
    x->mapping = map;
    size_t d = v->dim, K = v->num_blocks, word = 0;
    bool tagged = false;
    /* where each leaf's packed codes start: the file's, or a repacked copy */
    uint8_t *codes = v->codes;
    size_t *code_at = NULL;
    if (v->mode == AVQ_MODE_PQ && v->bits == 8 && !v->codes8_packed) {
        code_at = malloc((v->num_leaves ? v->num_leaves : 1) * sizeof *code_at);
        st = code_at ? repack_legacy_codes8(v, x, code_at, &codes, path)
                     : avq_fail_nomem("code offsets", v->num_leaves * sizeof *code_at);
    }
    for (size_t l = 0; l < v->num_leaves && st == AVQ_OK; l++) {
        size_t first = v->leaf_offsets[l], n = leaf_slots(v, l);
        avq_leaf *lv = avq_leaf_load(x, l);
        if (n == 0) continue;
        avq_leaf_store *s = calloc(1, sizeof *s);
        if (!s) {
            st = avq_fail_nomem("leaf store", sizeof *s);
            break;
        }
        s->capacity = n;
        s->owned = false;
        s->bytes = sizeof *s + n * sizeof(int64_t) + (v->vectors ? n * d * sizeof(float) : 0) +
                   (v->vectors_i8 ? n * d : 0) + (v->vectors_f16 ? n * d * sizeof(uint16_t) : 0) +
                   (v->norms2 ? n * sizeof(float) : 0) +
                   (v->mode == AVQ_MODE_PQ ? avq_pack_size((int)v->bits, n, K) : 0);
        s->codes = v->mode != AVQ_MODE_PQ ? NULL
                   : code_at              ? codes + code_at[l]
                                          : codes + v->code_offsets[l];
        s->ids = v->ids + first;
        s->vectors = v->vectors ? v->vectors + first * d : NULL;
        s->vectors_i8 = v->vectors_i8 ? v->vectors_i8 + first * d : NULL;
        s->vectors_f16 = v->vectors_f16 ? v->vectors_f16 + first * d : NULL;
        s->norms2 = v->norms2 ? v->norms2 + first : NULL;
        lv->store = s;
        lv->n = n;
        lv->full = n;
        lv->tail = NULL;
        lv->live = n;
        if (v->live_bits) {
            size_t words = (n + 31) / 32, live = 0;
            lv->alive = v->live_bits + word;
            for (size_t k = 0; k < words; k++) live += (size_t)__builtin_popcount(lv->alive[k]);
            lv->live = live;
            word += words;
        }
        size_t nkeys = v->tag_key_offsets
                           ? (size_t)(v->tag_key_offsets[l + 1] - v->tag_key_offsets[l]) : 0;
        if (nkeys > 0) {
            /* the list as the leaf keeps it, pointing into the bytes */
            avq_leaf_tags *t = calloc(1, sizeof *t);
            if (!t) {
                st = avq_fail_nomem("leaf tags", sizeof *t);
                break;
            }
            t->nkeys = (uint32_t)nkeys;
            t->npost = (uint32_t)(v->tag_slot_offsets[l + 1] - v->tag_slot_offsets[l]);
            t->keys = v->tag_keys + v->tag_key_offsets[l];
            t->off = v->tag_pos + v->tag_key_offsets[l] + l;
            t->slots = v->tag_slots + v->tag_slot_offsets[l];
            t->own = NULL;
            lv->tags = t;
            tagged = true;
            if ((st = avq_leaf_tags_validate(t, lv, l)) != AVQ_OK) {
                char why[256];
                snprintf(why, sizeof why, "%s", avq_last_error());
                st = avq_fail(st, "%s: tag sections: %s", path, why);
            }
        }
    }
    free(code_at);
    if (st == AVQ_OK && tagged) st = avq_tag_counts_rebuild(x);
    if (st == AVQ_OK) {
        atomic_store(&x->live, v->live);
        x->next_id = v->next_id;
        x->ids_ready = false;
        if (build_ids && (st = avq_index_ensure_ids(x)) != AVQ_OK) {
            char why[256];
            snprintf(why, sizeof why, "%s", avq_last_error());
            st = avq_fail(st, "%s: section IDS_: %s", path, why);
        }
    }
    if (st != AVQ_OK) {
        avq_index_free(x);
        return st;
    }
    *out = x;
    return AVQ_OK;
}

/* COPY mode: the file's bytes in private anonymous memory, read-only once
 * filled.  One mapping rather than a malloc per section: the index then
 * owns it exactly like a file mapping, the sections keep their 64-byte
 * alignment, and the pages can be huge pages.  `fd` < 0: copy from `src`. */
static void *read_copy(int fd, const void *src, size_t size, const char *path, int *status) {
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        *status = avq_fail_nomem("index copy", size);
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    if (size >= (4u << 20)) madvise(mem, size, MADV_HUGEPAGE); /* a hint: failure is fine */
#endif
    if (fd < 0) {
        memcpy(mem, src, size);
    } else {
        size_t done = 0;
        while (done < size) {
            size_t want = size - done > (1u << 30) ? (1u << 30) : size - done;
            ssize_t got = pread(fd, (char *)mem + done, want, (off_t)done);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                *status = got < 0 ? avq_fail(AVQ_ERR_IO, "%s: read failed: %s", path, strerror(errno))
                                  : avq_fail(AVQ_ERR_FORMAT, "%s: file shrank to %zu bytes while being read",
                                             path, done);
                munmap(mem, size);
                return NULL;
            }
            done += (size_t)got;
        }
    }
    mprotect(mem, size, PROT_READ); /* immutable from here on, like a file mapping */
    return mem;
}

/* Open, map (or copy) and parse; on success *map_out holds the bytes. */
static int open_file(const char *path, unsigned flags, file_view *view, avq_mapping **map_out) {
    *map_out = NULL;
    if (flags & ~(AVQ_LOAD_MMAP | AVQ_LOAD_SKIP_CHECKSUMS))
        return avq_fail(AVQ_ERR_INVALID, "load: unknown flags 0x%x", flags);
    int st = refuse_big_endian_host(path);
    if (st != AVQ_OK) return st;
    /* O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer;
     * it is refused below, and for a regular file the flag does nothing */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return avq_fail(AVQ_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int err = errno;
        close(fd);
        return avq_fail(AVQ_ERR_IO, "%s: cannot stat: %s", path, strerror(err));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return avq_fail(AVQ_ERR_IO, "%s: not a regular file (a %s): an index is loaded from a "
                                    "regular file", path,
                        S_ISDIR(sb.st_mode) ? "directory" : S_ISFIFO(sb.st_mode) ? "FIFO"
                        : S_ISCHR(sb.st_mode) ? "character device"
                        : S_ISBLK(sb.st_mode) ? "block device"
                        : S_ISSOCK(sb.st_mode) ? "socket" : "special file");
    }
    size_t size = (size_t)sb.st_size;
    if (size < HEADER_BYTES) {
        close(fd);
        return avq_fail(AVQ_ERR_FORMAT, "%s: %zu bytes is too short for an avq index", path, size);
    }
    void *mem;
    if (flags & AVQ_LOAD_MMAP) {
        mem = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (mem == MAP_FAILED) {
            mem = NULL;
            st = avq_fail(AVQ_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
        }
    } else {
        mem = read_copy(fd, NULL, size, path, &st);
    }
    if (!mem) {
        close(fd);
        return st;
    }
    avq_mapping *map = avq_mapping_new(mem, size);
    if (!map) {
        munmap(mem, size);
        close(fd);
        return avq_fail_nomem("mapping", sizeof *map);
    }
    st = parse_file(view, mem, size, flags, (flags & AVQ_LOAD_MMAP) ? fd : -1, path);
    close(fd);
    if (st != AVQ_OK) {
        avq_mapping_unref(map);
        return st;
    }
    *map_out = map;
    return AVQ_OK;
}

int avq_index_load(const char *path, unsigned flags, avq_index **out) {
    if (out) *out = NULL;
    if (!path || !out) return avq_fail(AVQ_ERR_INVALID, "load: NULL path or out");
    file_view view;
    avq_mapping *map = NULL;
    int st = open_file(path, flags, &view, &map);
    if (st != AVQ_OK) return st;
    st = index_from_view(&view, map, verifies(flags), path, out);
    avq_mapping_unref(map); /* the index holds its own references */
    return st;
}

int avq_index_load_bytes(const void *bytes, size_t size, avq_index **out) {
    if (out) *out = NULL;
    if (!bytes || !out) return avq_fail(AVQ_ERR_INVALID, "load: NULL bytes or out");
    const char *path = "<bytes>";
    int st = refuse_big_endian_host(path);
    if (st != AVQ_OK) return st;
    if (size < HEADER_BYTES)
        return avq_fail(AVQ_ERR_FORMAT, "%s: %zu bytes is too short for an avq index", path, size);
    void *mem = read_copy(-1, bytes, size, path, &st);
    if (!mem) return st;
    avq_mapping *map = avq_mapping_new(mem, size);
    if (!map) {
        munmap(mem, size);
        return avq_fail_nomem("mapping", sizeof *map);
    }
    file_view view;
    st = parse_file(&view, mem, size, AVQ_LOAD_COPY, -1, path);
    if (st == AVQ_OK) st = index_from_view(&view, map, true, path, out);
    avq_mapping_unref(map);
    return st;
}

int avq_quantizer_load(const char *path, avq_quantizer **out) {
    if (out) *out = NULL;
    if (!path || !out) return avq_fail(AVQ_ERR_INVALID, "load: NULL path or out");
    file_view view;
    avq_mapping *map = NULL;
    int st = open_file(path, AVQ_LOAD_COPY, &view, &map);
    if (st != AVQ_OK) return st;
    st = quantizer_from_view(&view, map, out);
    avq_mapping_unref(map);
    return st;
}
