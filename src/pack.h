/*
 * pack.h -- the blocked 4-bit code layout the fast-scan kernels read.
 *
 * A leaf's n x K codes (one 4-bit code per byte, row-major, as the encoder
 * writes them) are regrouped into groups of 32 points.  A group is 16*K
 * bytes; byte g*16K + m*16 + s holds the code of point 32g+s for block m in
 * its low nibble and that of point 32g+s+16 in its high nibble
 * (doc/DESIGN.md §3).  So one 16-byte row is "block m for 32 points",
 * exactly what one pshufb lane looks up, and two (AVX2) or four (AVX-512)
 * consecutive blocks fill one vector register.  A partial last group is
 * padded by repeating the last point; the kernels mask the padded lanes,
 * the padding only has to be valid codes (and deterministic, so that
 * packing is reproducible).
 */
#ifndef AVQ_PACK_H
#define AVQ_PACK_H

#include <stddef.h>
#include <stdint.h>

enum { AVQ_PACK4_GROUP = 32 };

/* Bytes of one packed group of 32 points with K blocks of `bits`-bit codes:
 * 16K for 4 bits, 32K for 8 bits. */
static inline size_t avq_pack_group_bytes(int bits, size_t K) {
    return bits == 4 ? 16 * K : 32 * K;
}

/* Bytes of the packed form of n points with K blocks: ceil(n/32) * 16K.
 * 0 for n = 0; SIZE_MAX if the size does not fit a size_t. */
size_t avq_pack4_size(size_t n, size_t K);

/* Pack n x K codes (each < 16) into `packed` (avq_pack4_size(n, K) bytes).
 * AVQ_ERR_INVALID for K = 0, NULL pointers or a code >= 16 (message names
 * the row and block). */
int avq_pack4(const uint8_t *codes, size_t n, size_t K, uint8_t *packed);

/* The inverse: n x K codes, one per byte. */
int avq_unpack4(const uint8_t *packed, size_t n, size_t K, uint8_t *codes);

/* The code of point i, block m (no checks: for tests and slow paths). */
static inline uint8_t avq_pack4_get(const uint8_t *packed, size_t K, size_t i, size_t m) {
    size_t g = i / AVQ_PACK4_GROUP, s = i % AVQ_PACK4_GROUP;
    uint8_t byte = packed[g * 16 * K + m * 16 + (s & 15)];
    return s < 16 ? (uint8_t)(byte & 15) : (uint8_t)(byte >> 4);
}

/* Append one point (K codes) to a packed leaf that holds n points, in place:
 * the result is byte-identical to packing the n+1 points from scratch
 * (including the padding).  `capacity` is the size of the buffer at
 * `packed`, which must be at least avq_pack4_size(n + 1, K). */
int avq_pack4_append(uint8_t *packed, size_t capacity, size_t n, size_t K,
                     const uint8_t *code);

#endif
