/*
 * io.c -- one index, one file: save atomically, load by copy or by mmap,
 * and refuse every malformed file with a precise message.
 *
 * Layout (doc/FORMAT.md has the full specification):
 *   header   64 bytes: magic "AVQINDEX", format version, endianness mark,
 *            section count, file size, CRC32C of header + table
 *   table    one 32-byte entry per section: tag, flags, offset, length, CRC32C
 *   sections each starting on a 64-byte boundary, so that mmap'ed arrays
 *            are aligned for the SIMD kernels
 * Every section is a flat array of little-endian numbers; the index's arrays
 * simply point into the file's bytes: a read-only mapping of the file
 * (AVQ_LOAD_MMAP) or of an anonymous copy of it (AVQ_LOAD_COPY).
 *
 * Validation order matters: (1) header fields and table entries against the
 * file size, (2) checksums, (3) the configuration's counts against every
 * section length, (4) the contents that later code indexes with (leaf and
 * code offsets monotone and in range, ids a permutation unless the caller
 * declared the data trusted).  Only then is the index handed out, so search
 * code never meets an out-of-range offset.
 *
 * Forward compatibility: a reader skips sections it does not know unless
 * their REQUIRED flag is set, in which case it refuses the file and says so.
 */
#include "avq_internal.h"
#include "index.h"
#include "pack.h"

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

#define AVQ_FORMAT_VERSION 1u
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

/* ---- the configuration section ------------------------------------------ */

/* Field order of the CONF section: 8-byte little-endian slots. */
enum {
    CF_METRIC, CF_MODE, CF_N, CF_DIM, CF_LEAVES, CF_BITS, CF_DPB, CF_BLOCKS, CF_CENTERS,
    CF_REORDER, CF_DEF_LEAVES, CF_DEF_REORDER, CF_KM_ITERS, CF_SPHERICAL, CF_THRESHOLD,
    CF_ETA, CF_CENTER_ETA, CF_SEED, CF_SAMPLE, CF_BRUTE_BELOW, CF_COUNT
};

static void encode_conf(const avq_index *x, uint8_t *out) {
    const avq_build_params *p = &x->params;
    uint64_t v[CF_COUNT] = {
        [CF_METRIC] = (uint64_t)p->metric, [CF_MODE] = (uint64_t)x->mode, [CF_N] = x->n,
        [CF_DIM] = x->dim, [CF_LEAVES] = x->num_leaves, [CF_BITS] = (uint64_t)x->bits,
        [CF_DPB] = x->dims_per_block, [CF_BLOCKS] = x->num_blocks,
        [CF_CENTERS] = x->num_centers, [CF_REORDER] = (uint64_t)x->reorder,
        [CF_DEF_LEAVES] = x->default_leaves_to_search,
        [CF_DEF_REORDER] = x->default_pre_reorder,
        [CF_KM_ITERS] = (uint64_t)p->kmeans_iterations,
        [CF_SPHERICAL] = (uint64_t)(int64_t)p->spherical,
        [CF_THRESHOLD] = float_bits(p->threshold), [CF_ETA] = float_bits(p->eta),
        [CF_CENTER_ETA] = float_bits(p->avq_center_eta), [CF_SEED] = p->seed,
        [CF_SAMPLE] = p->training_sample, [CF_BRUTE_BELOW] = p->brute_force_below,
    };
    for (int i = 0; i < CF_COUNT; i++) put_u64(out + 8 * i, v[i]);
}

static int decode_conf(const uint8_t *in, size_t len, avq_index *x, const char *path) {
    if (len < 8 * CF_COUNT)
        return avq_fail(AVQ_ERR_FORMAT, "%s: section CONF: %zu bytes, expected at least %d", path, len,
                        8 * CF_COUNT);
    uint64_t v[CF_COUNT];
    for (int i = 0; i < CF_COUNT; i++) v[i] = get_u64(in + 8 * i);
    if (v[CF_METRIC] > AVQ_METRIC_COSINE || v[CF_MODE] > AVQ_MODE_PQ ||
        v[CF_REORDER] > AVQ_REORDER_NONE || (v[CF_BITS] != 4 && v[CF_BITS] != 8))
        return avq_fail(AVQ_ERR_FORMAT, "%s: section CONF: unknown metric, mode, reorder or bits", path);
    if (v[CF_N] == 0 || v[CF_N] > INT32_MAX || v[CF_DIM] == 0 || v[CF_DIM] > (1u << 20) ||
        v[CF_LEAVES] == 0 || v[CF_LEAVES] > v[CF_N] || v[CF_DPB] == 0 || v[CF_DPB] > v[CF_DIM])
        return avq_fail(AVQ_ERR_FORMAT, "%s: section CONF: sizes out of range (n=%llu dim=%llu leaves=%llu)",
                        path, (unsigned long long)v[CF_N], (unsigned long long)v[CF_DIM],
                        (unsigned long long)v[CF_LEAVES]);
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
    x->mode = (avq_index_mode)v[CF_MODE];
    x->n = v[CF_N];
    x->dim = v[CF_DIM];
    x->num_leaves = v[CF_LEAVES];
    x->bits = (int)v[CF_BITS];
    x->dims_per_block = v[CF_DPB];
    x->num_blocks = v[CF_BLOCKS];
    x->num_centers = v[CF_CENTERS];
    x->reorder = (avq_reorder)v[CF_REORDER];
    x->default_leaves_to_search = v[CF_DEF_LEAVES];
    x->default_pre_reorder = v[CF_DEF_REORDER];
    return AVQ_OK;
}

/* ---- the array sections ------------------------------------------------- */

typedef struct {
    uint32_t tag;
    const char *name;
    size_t elem;    /* bytes per element */
    size_t offset;  /* offsetof the pointer field in avq_index */
} array_section;

#define ARRAY(a, b, c, d, field, type) \
    {TAG(a, b, c, d), #field, sizeof(type), offsetof(avq_index, field)}

static const array_section ARRAYS[] = {
    ARRAY('C', 'E', 'N', 'T', centers, float),
    ARRAY('C', 'N', 'R', 'M', center_norms, float),
    ARRAY('L', 'O', 'F', 'F', leaf_offsets, uint64_t),
    ARRAY('I', 'D', 'S', '_', ids, int64_t),
    ARRAY('C', 'B', 'O', 'K', codebook, float),
    ARRAY('C', 'O', 'D', 'E', codes, uint8_t),
    ARRAY('C', 'O', 'F', 'F', code_offsets, uint64_t),
    ARRAY('V', 'E', 'C', 'F', vectors, float),
    ARRAY('V', 'E', 'C', '8', vectors_i8, int8_t),
    ARRAY('I', '8', 'S', 'C', i8_scale, float),
    ARRAY('N', 'R', 'M', '2', norms2, float),
};
#define NUM_ARRAYS (sizeof ARRAYS / sizeof ARRAYS[0])
#define CONF_TAG TAG('C', 'O', 'N', 'F')

static void **field_ptr(avq_index *x, const array_section *a) {
    return (void **)((char *)x + a->offset);
}

/* Element count a section must have, derived from the configuration (and,
 * for CODE, from the code offsets).  0 means "must be absent". */
static size_t expected_count(const avq_index *x, size_t which) {
    size_t L = x->num_leaves, n = x->n, d = x->dim;
    bool pq = x->mode == AVQ_MODE_PQ;
    bool l2 = x->params.metric == AVQ_METRIC_L2;
    switch (which) {
    case 0: return L * d;
    case 1: return L;
    case 2: return L + 1;
    case 3: return n;
    case 4: return pq ? x->num_centers * d : 0;
    case 5: return pq && x->code_offsets ? (size_t)x->code_offsets[L] : 0;
    case 6: return pq ? L + 1 : 0;
    case 7: return (!pq || x->reorder == AVQ_REORDER_FLOAT) ? n * d : 0;
    case 8: return (pq && x->reorder == AVQ_REORDER_INT8) ? n * d : 0;
    case 9: return (pq && x->reorder == AVQ_REORDER_INT8) ? d : 0;
    case 10: return l2 ? n : 0;
    default: return 0;
    }
}

/* ---- save ------------------------------------------------------------------ */

static size_t align_up(size_t v) { return (v + SECTION_ALIGN - 1) & ~(size_t)(SECTION_ALIGN - 1); }

static int write_all(int fd, const void *buf, size_t len, const char *path) {
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len > (1u << 30) ? (1u << 30) : len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return avq_fail(AVQ_ERR_IO, "%s: write failed: %s", path,
                            w < 0 ? strerror(errno) : "no progress");
        p += w;
        len -= (size_t)w;
    }
    return AVQ_OK;
}

typedef struct {
    uint32_t tag, flags;
    const void *data;
    uint64_t length, offset;
    uint32_t crc;
} out_section;

static int write_file(int fd, const char *path, out_section *secs, size_t count) {
    size_t table_end = HEADER_BYTES + count * ENTRY_BYTES, pos = align_up(table_end);
    for (size_t i = 0; i < count; i++) {
        secs[i].offset = pos;
        secs[i].crc = crc32c(secs[i].data, secs[i].length);
        pos = align_up(pos + secs[i].length);
    }
    uint8_t head[HEADER_BYTES + MAX_SECTIONS * ENTRY_BYTES];
    memset(head, 0, sizeof head);
    memcpy(head, MAGIC, 8);
    put_u32(head + 8, AVQ_FORMAT_VERSION);
    put_u32(head + 12, ENDIAN_MARK);
    put_u32(head + 16, (uint32_t)count);
    put_u64(head + 24, pos); /* file size */
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
    int st = write_all(fd, head, table_end, path);
    size_t at = table_end;
    for (size_t i = 0; i < count && st == AVQ_OK; i++) {
        st = write_all(fd, zeros, secs[i].offset - at, path);
        if (st == AVQ_OK) st = write_all(fd, secs[i].data, secs[i].length, path);
        at = secs[i].offset + secs[i].length;
    }
    if (st == AVQ_OK) st = write_all(fd, zeros, pos - at, path);
    return st;
}

int avq_index_save(const avq_index *x, const char *path) {
    if (!x || !path) return avq_fail(AVQ_ERR_INVALID, "save: NULL index or path");
    uint8_t conf[8 * CF_COUNT];
    encode_conf(x, conf);
    out_section secs[1 + NUM_ARRAYS];
    size_t count = 0;
    secs[count++] = (out_section){CONF_TAG, FLAG_REQUIRED, conf, sizeof conf, 0, 0};
    for (size_t i = 0; i < NUM_ARRAYS; i++) {
        size_t n = expected_count(x, i);
        const void *data = *field_ptr((avq_index *)x, &ARRAYS[i]);
        if (n == 0 || !data) continue;
        secs[count++] = (out_section){ARRAYS[i].tag, FLAG_REQUIRED, data, n * ARRAYS[i].elem, 0, 0};
    }
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) return avq_fail_nomem("temporary path", plen + 16);
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int err = errno;
        free(tmp);
        return avq_fail(AVQ_ERR_IO, "%s: cannot create a temporary file beside it: %s", path,
                        strerror(err));
    }
    int st = write_file(fd, path, secs, count);
    if (st == AVQ_OK && fsync(fd) != 0)
        st = avq_fail(AVQ_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    if (close(fd) != 0 && st == AVQ_OK)
        st = avq_fail(AVQ_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    if (st == AVQ_OK && rename(tmp, path) != 0)
        st = avq_fail(AVQ_ERR_IO, "%s: rename from %s failed: %s", path, tmp, strerror(errno));
    if (st != AVQ_OK) {
        unlink(tmp);
    } else {
        /* make the rename itself durable */
        char *dir = strdup(path);
        if (dir) {
            int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
            if (dfd >= 0) {
                fsync(dfd);
                close(dfd);
            }
            free(dir);
        }
    }
    free(tmp);
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
                        const char *path) {
    if (size < HEADER_BYTES)
        return avq_fail(AVQ_ERR_FORMAT, "%s: %zu bytes is too short for an avq index", path, size);
    if (memcmp(file, MAGIC, 8) != 0)
        return avq_fail(AVQ_ERR_FORMAT, "%s: not an avq index (bad magic)", path);
    uint32_t version = get_u32(file + 8);
    if (version != AVQ_FORMAT_VERSION)
        return avq_fail(AVQ_ERR_FORMAT, "%s: format version %u, this library reads version %u",
                        path, version, AVQ_FORMAT_VERSION);
    if (get_u32(file + 12) != ENDIAN_MARK)
        return avq_fail(AVQ_ERR_FORMAT, "%s: bad endianness mark", path);
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
    return AVQ_OK;
}

static const in_section *find_section(const in_section *secs, size_t count, uint32_t tag) {
    for (size_t i = 0; i < count; i++)
        if (secs[i].tag == tag) return &secs[i];
    return NULL;
}

/* Contents checks: everything search will use as an index into memory
 * (LOFF, COFF: O(leaves)), and the ids (O(n)).  Search never addresses
 * memory with an id -- ids are only copied into the results -- so when the
 * caller trusts the data (mmap with AVQ_LOAD_SKIP_CHECKSUMS) the id check is
 * skipped too and the load stays O(leaves): a bad IDS_ can then give wrong
 * ids, never a crash (doc/FORMAT.md). */
static int check_contents(const avq_index *x, bool check_ids, const char *path) {
    size_t L = x->num_leaves;
    if (x->leaf_offsets[0] != 0 || x->leaf_offsets[L] != x->n)
        return avq_fail(AVQ_ERR_FORMAT, "%s: section LOFF: offsets do not span the %zu points",
                        path, x->n);
    for (size_t l = 0; l < L; l++)
        if (x->leaf_offsets[l + 1] < x->leaf_offsets[l])
            return avq_fail(AVQ_ERR_FORMAT, "%s: section LOFF: offsets decrease at leaf %zu", path, l);
    if (x->mode == AVQ_MODE_PQ) {
        if (x->code_offsets[0] != 0)
            return avq_fail(AVQ_ERR_FORMAT, "%s: section COFF: first offset not 0", path);
        for (size_t l = 0; l < L; l++) {
            size_t count = x->leaf_offsets[l + 1] - x->leaf_offsets[l];
            size_t bytes = x->bits == 4 ? avq_pack4_size(count, x->num_blocks) : count * x->num_blocks;
            if (x->code_offsets[l + 1] - x->code_offsets[l] != bytes || x->code_offsets[l + 1] < x->code_offsets[l])
                return avq_fail(AVQ_ERR_FORMAT, "%s: section COFF: leaf %zu has the wrong code size", path, l);
        }
    }
    if (!check_ids) return AVQ_OK;
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

/* Point every array section into the loaded bytes (a file mapping, or an
 * anonymous mapping holding a copy of the file). */
static int attach_arrays(avq_index *x, const uint8_t *file, const in_section *secs, size_t count,
                         const char *path) {
    /* COFF first: CODE's expected size depends on it */
    static const size_t order[] = {6, 0, 1, 2, 3, 4, 5, 7, 8, 9, 10};
    for (size_t k = 0; k < NUM_ARRAYS; k++) {
        size_t i = order[k];
        const array_section *a = &ARRAYS[i];
        size_t want = expected_count(x, i);
        const in_section *s = find_section(secs, count, a->tag);
        char name[5];
        tag_name(a->tag, name);
        if (want == 0 && !s) continue;
        if (want == 0 || !s)
            return avq_fail(AVQ_ERR_FORMAT, "%s: section %s is %s for this configuration", path, name,
                            want ? "missing" : "unexpected");
        if (s->length / a->elem != want || s->length % a->elem)
            return avq_fail(AVQ_ERR_FORMAT, "%s: section %s has %llu bytes, expected %zu", path, name,
                            (unsigned long long)s->length, want * a->elem);
        *field_ptr(x, a) = (void *)(file + s->offset);
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

static int check_known_sections(const in_section *secs, size_t count, const char *path) {
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
                            "%s: required section %s is unknown to this library (format %u): "
                            "written by a newer avq?", path, name, AVQ_FORMAT_VERSION);
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
static int load_from_bytes(avq_index *x, const uint8_t *file, size_t size, unsigned flags, int fd,
                           const char *path) {
    in_section secs[MAX_SECTIONS];
    size_t count = 0;
    int st = parse_header(file, size, secs, &count, path);
    if (st == AVQ_OK) st = check_known_sections(secs, count, path);
    const in_section *conf = st == AVQ_OK ? find_section(secs, count, CONF_TAG) : NULL;
    if (st == AVQ_OK && !conf) st = avq_fail(AVQ_ERR_FORMAT, "%s: no CONF section", path);
    if (st == AVQ_OK && verifies(flags))
        st = fd >= 0 ? verify_checksums_fd(fd, secs, count, path)
                     : verify_checksums(file, secs, count, path);
    if (st == AVQ_OK) st = decode_conf(file + conf->offset, conf->length, x, path);
    if (st == AVQ_OK) st = attach_arrays(x, file, secs, count, path);
    if (st == AVQ_OK) st = check_contents(x, verifies(flags), path);
    return st;
}

/* COPY mode: the file's bytes in private anonymous memory, read-only once
 * filled.  One mapping rather than a malloc per section: the index then
 * owns it exactly like a file mapping (avq_index_release_arrays unmaps), the
 * sections keep their 64-byte alignment, and the pages can be huge pages. */
static void *read_copy(int fd, size_t size, const char *path, int *status) {
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        *status = avq_fail_nomem("index copy", size);
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    if (size >= (4u << 20)) madvise(mem, size, MADV_HUGEPAGE); /* a hint: failure is fine */
#endif
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
    mprotect(mem, size, PROT_READ); /* immutable from here on, like a file mapping */
    return mem;
}

int avq_index_load(const char *path, unsigned flags, avq_index **out) {
    if (out) *out = NULL;
    if (!path || !out) return avq_fail(AVQ_ERR_INVALID, "load: NULL path or out");
    if (flags & ~(AVQ_LOAD_MMAP | AVQ_LOAD_SKIP_CHECKSUMS))
        return avq_fail(AVQ_ERR_INVALID, "load: unknown flags 0x%x", flags);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return avq_fail(AVQ_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return avq_fail(AVQ_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < HEADER_BYTES) {
        close(fd);
        return avq_fail(AVQ_ERR_FORMAT, "%s: %zu bytes is too short for an avq index", path, size);
    }
    int st = AVQ_OK;
    void *map;
    if (flags & AVQ_LOAD_MMAP) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            map = NULL;
            st = avq_fail(AVQ_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
        }
    } else {
        map = read_copy(fd, size, path, &st);
    }
    if (!map) {
        close(fd);
        return st;
    }
    avq_index *x = calloc(1, sizeof *x);
    if (!x) {
        close(fd);
        munmap(map, size);
        return avq_fail_nomem("index", sizeof *x);
    }
    x->mapping = map; /* from now on avq_index_free unmaps it */
    x->mapping_bytes = size;
    st = load_from_bytes(x, map, size, flags, (flags & AVQ_LOAD_MMAP) ? fd : -1, path);
    close(fd);
    if (st != AVQ_OK) {
        avq_index_free(x);
        return st;
    }
    *out = x;
    return AVQ_OK;
}
