/*
 * pack.h -- the blocked code layouts the fast-scan kernels read.
 *
 * A leaf's n x K codes (one code per byte, row-major, as the encoder writes
 * them) are regrouped into groups of 32 points, so that one row of a group
 * is "block m for 32 points", what one SIMD table lookup consumes
 * (doc/DESIGN.md §3).
 *
 * 4-bit codes: a group is 16*K bytes; byte g*16K + m*16 + s holds the code
 * of point 32g+s for block m in its low nibble and that of point 32g+s+16 in
 * its high nibble.  One 16-byte row is exactly what one pshufb lane looks
 * up, and two (AVX2) or four (AVX-512) consecutive blocks fill a register.
 *
 * 8-bit codes: a group is 32*K bytes; row m (bytes g*32K + m*32 ..) holds
 * block m of the 32 points, point s (s < 16) at byte 2s and point s+16 at
 * byte 2s+1 -- the order of the 4-bit layout's low and high nibbles.  The
 * AVX-512 kernel puts the same row of two consecutive groups into one
 * register, looks up 64 points with two 128-entry byte permutes, and
 * widens the bytes to 16 bits by even and odd byte: the even ones are then
 * points 0..15, the odd ones 16..31, in order.
 *
 * A partial last group is padded by repeating the last point; the kernels
 * mask the padded lanes, the padding only has to be valid codes (and
 * deterministic, so that packing is reproducible).
 */
#ifndef AVQ_PACK_H
#define AVQ_PACK_H

#include <stddef.h>
#include <stdint.h>

enum { AVQ_PACK_GROUP = 32 };

/* Bytes of one packed group of 32 points with K blocks of `bits`-bit codes
 * (bits 4 or 8): 16K for 4 bits, 32K for 8 bits. */
static inline size_t avq_pack_group_bytes(int bits, size_t K) {
    return bits == 4 ? 16 * K : 32 * K;
}

/* Bytes of the packed form of n points with K blocks of `bits`-bit codes:
 * ceil(n/32) groups.  0 for n = 0; SIZE_MAX if the size does not fit a
 * size_t or bits is neither 4 nor 8. */
size_t avq_pack_size(int bits, size_t n, size_t K);

/* Pack n x K codes (each < 2^bits) into `packed` (avq_pack_size bytes).
 * AVQ_ERR_INVALID for bits other than 4 and 8, K = 0, NULL pointers or a
 * code that does not fit (message names the row and block). */
int avq_pack(int bits, const uint8_t *codes, size_t n, size_t K, uint8_t *packed);

/* The inverse: n x K codes, one per byte. */
int avq_unpack(int bits, const uint8_t *packed, size_t n, size_t K, uint8_t *codes);

/* The code of point i, block m (no checks: for tests and slow paths). */
static inline uint8_t avq_pack_get(int bits, const uint8_t *packed, size_t K, size_t i,
                                   size_t m) {
    size_t g = i / AVQ_PACK_GROUP, s = i % AVQ_PACK_GROUP;
    if (bits == 8) return packed[g * 32 * K + m * 32 + 2 * (s & 15) + (s >> 4)];
    uint8_t byte = packed[g * 16 * K + m * 16 + (s & 15)];
    return s < 16 ? (uint8_t)(byte & 15) : (uint8_t)(byte >> 4);
}

/* Append one point (K codes) to a packed leaf that holds n points, in place:
 * the result is byte-identical to packing the n+1 points from scratch
 * (including the padding).  `capacity` is the size of the buffer at
 * `packed`, which must be at least avq_pack_size(bits, n + 1, K). */
int avq_pack_append(int bits, uint8_t *packed, size_t capacity, size_t n, size_t K,
                    const uint8_t *code);

#endif
