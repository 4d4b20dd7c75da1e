/*
 * test_pack.c -- the 4-bit packed layout: exact byte positions (the layout is
 * shared with the training side and the file format, so it is pinned down
 * here, not just round-tripped), padding, append, and bad input.
 */
#include <criterion/criterion.h>

#include "avq_internal.h"
#include "pack.h"

#include <stdlib.h>
#include <string.h>

static uint8_t *random_codes(size_t n, size_t K, uint64_t seed) {
    uint8_t *codes = malloc(n * K + 1);
    cr_assert(codes);
    for (size_t i = 0; i < n * K; i++) codes[i] = (uint8_t)(avq_rng_next(&seed) & 15);
    return codes;
}

Test(pack, size) {
    cr_assert_eq(avq_pack_size(4, 0, 5), 0);
    cr_assert_eq(avq_pack_size(4, 1, 5), 80);
    cr_assert_eq(avq_pack_size(4, 32, 5), 80);
    cr_assert_eq(avq_pack_size(4, 33, 5), 160);
    cr_assert_eq(avq_pack_size(4, 100, 50), 4 * 800);
    cr_assert_eq(avq_pack_size(4, SIZE_MAX / 2, SIZE_MAX / 2), SIZE_MAX);
}

Test(pack, byte_layout_matches_design) {
    /* 40 points, K = 3: point i, block m has code (i + 3m) % 16 */
    size_t n = 40, K = 3;
    uint8_t codes[40 * 3];
    for (size_t i = 0; i < n; i++)
        for (size_t m = 0; m < K; m++) codes[i * K + m] = (uint8_t)((i + 3 * m) % 16);
    uint8_t packed[2 * 16 * 3];
    cr_assert_eq(avq_pack(4, codes, n, K, packed), AVQ_OK);
    for (size_t g = 0; g < 2; g++)
        for (size_t m = 0; m < K; m++)
            for (size_t s = 0; s < 16; s++) {
                size_t lo_pt = 32 * g + s, hi_pt = 32 * g + s + 16;
                if (lo_pt >= n) lo_pt = n - 1; /* padding repeats the last point */
                if (hi_pt >= n) hi_pt = n - 1;
                uint8_t want = (uint8_t)(codes[lo_pt * K + m] | codes[hi_pt * K + m] << 4);
                cr_assert_eq(packed[g * 16 * K + m * 16 + s], want, "g=%zu m=%zu s=%zu", g, m, s);
            }
}

Test(pack, round_trip_many_shapes) {
    static const size_t ns[] = {1, 2, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 1000};
    static const size_t Ks[] = {1, 2, 3, 7, 16, 25, 50, 257};
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (size_t b = 0; b < sizeof Ks / sizeof *Ks; b++) {
            size_t n = ns[a], K = Ks[b];
            uint8_t *codes = random_codes(n, K, n * 1000 + K);
            uint8_t *packed = malloc(avq_pack_size(4, n, K));
            uint8_t *back = malloc(n * K);
            cr_assert_eq(avq_pack(4, codes, n, K, packed), AVQ_OK);
            cr_assert_eq(avq_unpack(4, packed, n, K, back), AVQ_OK);
            cr_assert_eq(memcmp(codes, back, n * K), 0, "n=%zu K=%zu", n, K);
            /* padded slots of the last group hold the last point */
            for (size_t i = n; i % 32 != 0; i++)
                for (size_t m = 0; m < K; m++)
                    cr_assert_eq(avq_pack_get(4, packed, K, i, m), codes[(n - 1) * K + m]);
            free(codes);
            free(packed);
            free(back);
        }
}

Test(pack, append_equals_packing_from_scratch) {
    size_t K = 5, n_max = 70;
    uint8_t *codes = random_codes(n_max, K, 7);
    size_t cap = avq_pack_size(4, n_max, K);
    uint8_t *grown = malloc(cap), *fresh = malloc(cap);
    memset(grown, 0xAB, cap); /* garbage the append must overwrite */
    for (size_t n = 0; n < n_max; n++) {
        cr_assert_eq(avq_pack_append(4, grown, cap, n, K, codes + n * K), AVQ_OK);
        cr_assert_eq(avq_pack(4, codes, n + 1, K, fresh), AVQ_OK);
        cr_assert_eq(memcmp(grown, fresh, avq_pack_size(4, n + 1, K)), 0, "after %zu", n + 1);
    }
    free(codes);
    free(grown);
    free(fresh);
}

Test(pack, rejects_bad_input) {
    uint8_t codes[4] = {1, 2, 16, 3}, packed[64] = {0};
    cr_assert_eq(avq_pack(4, codes, 2, 2, packed), AVQ_ERR_INVALID);
    cr_assert(strstr(avq_last_error(), "row 1"), "message: %s", avq_last_error());
    cr_assert_eq(avq_pack(4, codes, 1, 0, packed), AVQ_ERR_INVALID);
    cr_assert_eq(avq_pack(4, NULL, 1, 2, packed), AVQ_ERR_INVALID);
    cr_assert_eq(avq_unpack(4, NULL, 1, 2, codes), AVQ_ERR_INVALID);
    cr_assert_eq(avq_pack(4, codes, 0, 2, NULL), AVQ_OK); /* nothing to do */
    uint8_t ok[2] = {1, 2};
    cr_assert_eq(avq_pack_append(4, packed, 31, 0, 2, ok), AVQ_ERR_INVALID); /* needs 32 */
    cr_assert_eq(avq_pack_append(4, packed, 32, 32, 2, ok), AVQ_ERR_INVALID); /* needs 64 */
    cr_assert_eq(avq_pack_append(4, packed, 64, 32, 2, ok), AVQ_OK);
    cr_assert_eq(avq_pack_append(4, packed, 64, 33, 2, codes + 1), AVQ_ERR_INVALID); /* 16 */
}
