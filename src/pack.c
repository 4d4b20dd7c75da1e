/*
 * pack.c -- converting between row-major 4-bit codes and the blocked layout
 * of the fast-scan kernels (see pack.h for the layout and doc/DESIGN.md §3).
 *
 * Packing is done once per leaf at build time, so clarity wins over speed:
 * every byte is written through one helper, set_nibble(), and the padding of
 * a partial group is produced by the same code path as a real point (the
 * last point is simply written again into each padded slot).  That is also
 * what makes append exact: appending point n writes its slot and re-pads the
 * rest of its group, which is precisely what packing n+1 points would do.
 */
#include "pack.h"

#include "avq_internal.h"

#include <string.h>

size_t avq_pack4_size(size_t n, size_t K) {
    size_t groups = n / AVQ_PACK4_GROUP + (n % AVQ_PACK4_GROUP != 0);
    size_t group_bytes, total;
    if (!avq_mul_ok(16, K, &group_bytes) || !avq_mul_ok(groups, group_bytes, &total))
        return SIZE_MAX;
    return total;
}

/* Write point slot s (0..31) of the group at `group` for all K blocks. */
static void write_slot(uint8_t *group, size_t K, size_t s, const uint8_t *code) {
    size_t lane = s & 15;
    int high = s >= 16;
    for (size_t m = 0; m < K; m++) {
        uint8_t *byte = &group[m * 16 + lane];
        *byte = high ? (uint8_t)((*byte & 0x0F) | (code[m] << 4))
                     : (uint8_t)((*byte & 0xF0) | code[m]);
    }
}

static int check_codes(const uint8_t *code, size_t K, size_t row) {
    for (size_t m = 0; m < K; m++)
        if (code[m] > 15)
            return avq_fail(AVQ_ERR_INVALID,
                            "pack4: code %u at row %zu, block %zu does not fit 4 bits",
                            (unsigned)code[m], row, m);
    return AVQ_OK;
}

/* Fill slots [first, 32) of a group with `code` (the padding rule). */
static void pad_group(uint8_t *group, size_t K, size_t first, const uint8_t *code) {
    for (size_t s = first; s < AVQ_PACK4_GROUP; s++) write_slot(group, K, s, code);
}

int avq_pack4(const uint8_t *codes, size_t n, size_t K, uint8_t *packed) {
    if (K == 0 || (n > 0 && (!codes || !packed)))
        return avq_fail(AVQ_ERR_INVALID, "pack4: K=%zu, codes=%p, packed=%p", K,
                        (const void *)codes, (void *)packed);
    if (avq_pack4_size(n, K) == SIZE_MAX)
        return avq_fail(AVQ_ERR_INVALID, "pack4: n=%zu x K=%zu is too large", n, K);
    if (n == 0) return AVQ_OK;
    for (size_t i = 0; i < n; i++) {
        int st = check_codes(codes + i * K, K, i);
        if (st != AVQ_OK) return st;
    }
    memset(packed, 0, avq_pack4_size(n, K));
    for (size_t i = 0; i < n; i++)
        write_slot(packed + (i / AVQ_PACK4_GROUP) * 16 * K, K, i % AVQ_PACK4_GROUP,
                   codes + i * K);
    if (n % AVQ_PACK4_GROUP != 0)
        pad_group(packed + (n / AVQ_PACK4_GROUP) * 16 * K, K, n % AVQ_PACK4_GROUP,
                  codes + (n - 1) * K);
    return AVQ_OK;
}

int avq_unpack4(const uint8_t *packed, size_t n, size_t K, uint8_t *codes) {
    if (K == 0 || (n > 0 && (!codes || !packed)))
        return avq_fail(AVQ_ERR_INVALID, "unpack4: K=%zu, packed=%p, codes=%p", K,
                        (const void *)packed, (void *)codes);
    if (avq_pack4_size(n, K) == SIZE_MAX)
        return avq_fail(AVQ_ERR_INVALID, "unpack4: n=%zu x K=%zu is too large", n, K);
    for (size_t i = 0; i < n; i++)
        for (size_t m = 0; m < K; m++) codes[i * K + m] = avq_pack4_get(packed, K, i, m);
    return AVQ_OK;
}

int avq_pack4_append(uint8_t *packed, size_t capacity, size_t n, size_t K,
                     const uint8_t *code) {
    if (K == 0 || !packed || !code)
        return avq_fail(AVQ_ERR_INVALID, "pack4 append: K=%zu, packed=%p, code=%p", K,
                        (void *)packed, (const void *)code);
    if (n == SIZE_MAX || avq_pack4_size(n + 1, K) == SIZE_MAX)
        return avq_fail(AVQ_ERR_INVALID, "pack4 append: leaf of %zu points is full", n);
    size_t need = avq_pack4_size(n + 1, K);
    if (capacity < need)
        return avq_fail(AVQ_ERR_INVALID,
                        "pack4 append: buffer of %zu bytes, point %zu needs %zu", capacity,
                        n, need);
    int st = check_codes(code, K, n);
    if (st != AVQ_OK) return st;
    uint8_t *group = packed + (n / AVQ_PACK4_GROUP) * 16 * K;
    size_t slot = n % AVQ_PACK4_GROUP;
    /* the point itself, then its padding (for a fresh group: all 32 slots, so
     * whatever the buffer held before is overwritten) */
    pad_group(group, K, slot, code);
    return AVQ_OK;
}
