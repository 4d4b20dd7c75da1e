/*
 * avq_file.h -- a tiny, independent reader/writer of the avq index container
 * (doc/FORMAT.md), for the fuzzer, the corpus generator and the corruption
 * tests.  Header-only (static functions), no dependency on libavq.
 *
 * It exists so that tests can make *structurally* bad files that still carry
 * valid checksums: a corrupted length, offset or CONF value is then rejected
 * by the loader's validation rather than by the CRC check, which is the code
 * that must never let a bad value through.  It deliberately re-implements
 * CRC32C and the layout instead of calling io.c, so a bug there cannot hide
 * itself.
 */
#ifndef AVQ_FILE_H
#define AVQ_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define AVQF_HEADER 64u
#define AVQF_ENTRY 32u
#define AVQF_ALIGN 64u
#define AVQF_MAX_SECTIONS 64u
#define AVQF_TAG(a, b, c, d) \
    ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)

/* Bitwise-table CRC32C (Castagnoli, reflected polynomial 0x82F63B78). */
static inline uint32_t avqf_crc32c(const void *data, size_t len) {
    static uint32_t table[256];
    static int ready;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
            table[i] = c;
        }
        ready = 1;
    }
    const uint8_t *p = data;
    uint32_t c = 0xFFFFFFFFu;
    while (len--) c = (c >> 8) ^ table[(c ^ *p++) & 0xFF];
    return c ^ 0xFFFFFFFFu;
}

static inline uint32_t avqf_get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t avqf_get64(const uint8_t *p) {
    return (uint64_t)avqf_get32(p) | (uint64_t)avqf_get32(p + 4) << 32;
}
static inline void avqf_put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void avqf_put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* One entry of the section table, as stored. */
typedef struct {
    uint32_t tag, flags, crc;
    uint64_t offset, length;
    size_t entry_at; /* byte offset of the table entry in the file */
} avqf_section;

/* Number of table entries that lie inside the buffer (0 if the header is
 * missing or its count is outside 1..64).  Fills up to `max` entries. */
static inline size_t avqf_sections(const uint8_t *buf, size_t size, avqf_section *out,
                                   size_t max) {
    if (size < AVQF_HEADER) return 0;
    uint32_t n = avqf_get32(buf + 16);
    if (n == 0 || n > AVQF_MAX_SECTIONS) return 0;
    size_t count = 0;
    for (uint32_t i = 0; i < n && count < max; i++) {
        size_t at = AVQF_HEADER + (size_t)i * AVQF_ENTRY;
        if (at + AVQF_ENTRY > size) break;
        const uint8_t *e = buf + at;
        out[count++] = (avqf_section){avqf_get32(e), avqf_get32(e + 4), avqf_get32(e + 24),
                                      avqf_get64(e + 8), avqf_get64(e + 16), at};
    }
    return count;
}

/* Index of the section with `tag`, or -1. */
static inline int avqf_find(const avqf_section *s, size_t count, uint32_t tag) {
    for (size_t i = 0; i < count; i++)
        if (s[i].tag == tag) return (int)i;
    return -1;
}

/* What avqf_fix repairs. */
#define AVQF_FIX_SIZE 1u        /* header's file-size field := size            */
#define AVQF_FIX_SECTION_CRC 2u /* each in-range section's CRC := its data's   */
#define AVQF_FIX_HEADER_CRC 4u  /* header CRC := CRC of header + table         */
#define AVQF_FIX_ALL 7u

/* Make a (possibly mutated) file pass the checksum and size checks wherever
 * that is possible, so that the loader's structural validation sees it.
 * Entries whose data lies outside the buffer keep their CRC.  Returns 1 if
 * anything changed.  The header CRC is fixed last (it covers the table). */
static inline int avqf_fix(uint8_t *buf, size_t size, unsigned what) {
    if (size < AVQF_HEADER) return 0;
    int changed = 0;
    if (what & AVQF_FIX_SIZE && avqf_get64(buf + 24) != size) {
        avqf_put64(buf + 24, size);
        changed = 1;
    }
    uint32_t n = avqf_get32(buf + 16);
    if (n == 0 || n > AVQF_MAX_SECTIONS) return changed;
    size_t table_end = AVQF_HEADER + (size_t)n * AVQF_ENTRY;
    if (table_end > size) return changed;
    if (what & AVQF_FIX_SECTION_CRC) {
        for (uint32_t i = 0; i < n; i++) {
            uint8_t *e = buf + AVQF_HEADER + (size_t)i * AVQF_ENTRY;
            uint64_t off = avqf_get64(e + 8), len = avqf_get64(e + 16);
            if (off > size || len > size - off) continue;
            uint32_t crc = avqf_crc32c(buf + off, (size_t)len);
            if (avqf_get32(e + 24) != crc) {
                avqf_put32(e + 24, crc);
                changed = 1;
            }
        }
    }
    if (what & AVQF_FIX_HEADER_CRC) {
        uint32_t stored = avqf_get32(buf + 20);
        avqf_put32(buf + 20, 0);
        uint32_t crc = avqf_crc32c(buf, table_end);
        avqf_put32(buf + 20, crc);
        changed |= crc != stored;
    }
    return changed;
}

/* A section to write with avqf_write. */
typedef struct {
    uint32_t tag, flags;
    const void *data;
    size_t length;
} avqf_out;

/* Lay out a complete, valid container of format `version` holding `count`
 * sections in the given order; *size receives its length.  malloc'ed; NULL
 * on failure. */
static inline uint8_t *avqf_write_version(const avqf_out *secs, size_t count, uint32_t version,
                                          size_t *size) {
    if (count == 0 || count > AVQF_MAX_SECTIONS) return NULL;
    size_t table_end = AVQF_HEADER + count * AVQF_ENTRY;
    size_t pos = (table_end + AVQF_ALIGN - 1) & ~(size_t)(AVQF_ALIGN - 1);
    size_t offsets[AVQF_MAX_SECTIONS];
    for (size_t i = 0; i < count; i++) {
        offsets[i] = pos;
        pos = (pos + secs[i].length + AVQF_ALIGN - 1) & ~(size_t)(AVQF_ALIGN - 1);
    }
    uint8_t *buf = calloc(1, pos);
    if (!buf) return NULL;
    memcpy(buf, "AVQINDEX", 8);
    avqf_put32(buf + 8, version);
    avqf_put32(buf + 12, 0x01020304u);
    avqf_put32(buf + 16, (uint32_t)count);
    for (size_t i = 0; i < count; i++) {
        uint8_t *e = buf + AVQF_HEADER + i * AVQF_ENTRY;
        avqf_put32(e, secs[i].tag);
        avqf_put32(e + 4, secs[i].flags);
        avqf_put64(e + 8, offsets[i]);
        avqf_put64(e + 16, secs[i].length);
        if (secs[i].length) memcpy(buf + offsets[i], secs[i].data, secs[i].length);
    }
    avqf_fix(buf, pos, AVQF_FIX_ALL);
    *size = pos;
    return buf;
}

/* The same in the version avq writes today (2). */
static inline uint8_t *avqf_write(const avqf_out *secs, size_t count, size_t *size) {
    return avqf_write_version(secs, count, 2, size);
}

#endif
