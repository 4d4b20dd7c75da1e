/*
 * pack.c -- converting between row-major codes and the blocked layouts of
 * the fast-scan kernels (see pack.h for the layouts and doc/DESIGN.md §3).
 *
 * Packing is done once per leaf at build time, so clarity wins over speed:
 * every point is written through one helper, write_slot(), and the padding
 * of a partial group is produced by the same code path as a real point (the
 * last point is simply written again into each padded slot).  That is also
 * what makes append exact: appending point n writes its slot and re-pads the
 * rest of its group, which is precisely what packing n+1 points would do.
 */
#include "pack.h"

#include "avq_internal.h"

#include <string.h>

size_t avq_pack_size(int bits, size_t n, size_t K) {
    if (bits != 4 && bits != 8) return SIZE_MAX;
    size_t groups = n / AVQ_PACK_GROUP + (n % AVQ_PACK_GROUP != 0);
    size_t group_bytes, total;
    if (!avq_mul_ok(bits == 4 ? 16 : 32, K, &group_bytes) ||
        !avq_mul_ok(groups, group_bytes, &total))
        return SIZE_MAX;
    return total;
}

/* Write point slot s (0..31) of the group at `group` for all K blocks. */
static void write_slot(int bits, uint8_t *group, size_t K, size_t s, const uint8_t *code) {
    if (bits == 8) {
        for (size_t m = 0; m < K; m++) group[m * 32 + 2 * (s & 15) + (s >> 4)] = code[m];
        return;
    }
    size_t lane = s & 15;
    int high = s >= 16;
    for (size_t m = 0; m < K; m++) {
        uint8_t *byte = &group[m * 16 + lane];
        *byte = high ? (uint8_t)((*byte & 0x0F) | (code[m] << 4))
                     : (uint8_t)((*byte & 0xF0) | code[m]);
    }
}

static int check_codes(int bits, const uint8_t *code, size_t K, size_t row) {
    if (bits == 8) return AVQ_OK; /* every byte is an 8-bit code */
    for (size_t m = 0; m < K; m++)
        if (code[m] > 15)
            return avq_fail(AVQ_ERR_INVALID,
                            "pack4: code %u at row %zu, block %zu does not fit 4 bits",
                            (unsigned)code[m], row, m);
    return AVQ_OK;
}

/* Fill slots [first, 32) of a group with `code` (the padding rule). */
static void pad_group(int bits, uint8_t *group, size_t K, size_t first, const uint8_t *code) {
    for (size_t s = first; s < AVQ_PACK_GROUP; s++) write_slot(bits, group, K, s, code);
}

/* The checks every entry point shares: a known width, K, the pointers and
 * a size that fits. */
static int check_call(const char *what, int bits, size_t n, size_t K, const void *a,
                      const void *b) {
    if ((bits != 4 && bits != 8) || K == 0 || (n > 0 && (!a || !b)))
        return avq_fail(AVQ_ERR_INVALID, "%s: bits=%d, K=%zu, buffers %p and %p", what, bits,
                        K, a, b);
    if (avq_pack_size(bits, n, K) == SIZE_MAX)
        return avq_fail(AVQ_ERR_INVALID, "%s: n=%zu x K=%zu is too large", what, n, K);
    return AVQ_OK;
}

int avq_pack(int bits, const uint8_t *codes, size_t n, size_t K, uint8_t *packed) {
    int st = check_call(bits == 4 ? "pack4" : "pack", bits, n, K, codes, packed);
    if (st != AVQ_OK || n == 0) return st;
    for (size_t i = 0; i < n; i++)
        if ((st = check_codes(bits, codes + i * K, K, i)) != AVQ_OK) return st;
    size_t group = avq_pack_group_bytes(bits, K);
    memset(packed, 0, avq_pack_size(bits, n, K));
    for (size_t i = 0; i < n; i++)
        write_slot(bits, packed + (i / AVQ_PACK_GROUP) * group, K, i % AVQ_PACK_GROUP,
                   codes + i * K);
    if (n % AVQ_PACK_GROUP != 0)
        pad_group(bits, packed + (n / AVQ_PACK_GROUP) * group, K, n % AVQ_PACK_GROUP,
                  codes + (n - 1) * K);
    return AVQ_OK;
}

int avq_unpack(int bits, const uint8_t *packed, size_t n, size_t K, uint8_t *codes) {
    int st = check_call(bits == 4 ? "unpack4" : "unpack", bits, n, K, packed, codes);
    if (st != AVQ_OK) return st;
    for (size_t i = 0; i < n; i++)
        for (size_t m = 0; m < K; m++) codes[i * K + m] = avq_pack_get(bits, packed, K, i, m);
    return AVQ_OK;
}

int avq_pack_append(int bits, uint8_t *packed, size_t capacity, size_t n, size_t K,
                    const uint8_t *code) {
    const char *what = bits == 4 ? "pack4 append" : "pack append";
    if ((bits != 4 && bits != 8) || K == 0 || !packed || !code)
        return avq_fail(AVQ_ERR_INVALID, "%s: bits=%d, K=%zu, packed=%p, code=%p", what, bits,
                        K, (void *)packed, (const void *)code);
    if (n == SIZE_MAX || avq_pack_size(bits, n + 1, K) == SIZE_MAX)
        return avq_fail(AVQ_ERR_INVALID, "%s: leaf of %zu points is full", what, n);
    size_t need = avq_pack_size(bits, n + 1, K);
    if (capacity < need)
        return avq_fail(AVQ_ERR_INVALID, "%s: buffer of %zu bytes, point %zu needs %zu", what,
                        capacity, n, need);
    int st = check_codes(bits, code, K, n);
    if (st != AVQ_OK) return st;
    uint8_t *group = packed + (n / AVQ_PACK_GROUP) * avq_pack_group_bytes(bits, K);
    /* the point itself, then its padding (for a fresh group: all 32 slots, so
     * whatever the buffer held before is overwritten) */
    pad_group(bits, group, K, n % AVQ_PACK_GROUP, code);
    return AVQ_OK;
}
