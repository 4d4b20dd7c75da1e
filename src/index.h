/*
 * index.h -- the in-memory shape of an avq_index, shared by build.c,
 * search.c and io.c.
 *
 * Points are stored in *leaf order*: leaf 0's points first, then leaf 1's,
 * and so on; `ids` maps a position back to the caller's row number.  Keeping
 * codes and reorder vectors in the same order means a candidate is just a
 * position, and re-ranking touches rows that neighbour each other within a
 * leaf.  Every array is a flat run of plain numbers with no pointers inside,
 * so the file format (io.c) can map them straight from disk.
 */
#ifndef AVQ_INDEX_H
#define AVQ_INDEX_H

#include "avq.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    AVQ_MODE_BRUTE = 0,   /* exact scoring of all points, no codes         */
    AVQ_MODE_PQ = 1       /* leaves + product quantization (+ reorder)     */
} avq_index_mode;

struct avq_index {
    avq_build_params params; /* as built, progress callback cleared      */
    avq_index_mode mode;
    size_t n, dim;

    /* partition: num_leaves centers; leaf l holds positions
     * [leaf_offsets[l], leaf_offsets[l+1]).  For L2 the codes quantize raw
     * vectors and the leaf bias is 0; for dot/cosine they quantize x - c. */
    size_t num_leaves;
    float *centers;          /* num_leaves x dim                            */
    float *center_norms;     /* |c| per leaf: visit order for dot products  */
    uint64_t *leaf_offsets;  /* num_leaves + 1                              */
    int64_t *ids;            /* n: position -> caller's row                 */

    /* product quantizer */
    int bits;                /* 4 or 8                                      */
    size_t dims_per_block, num_blocks, num_centers;
    float *codebook;         /* num_centers x dim (layout in pq.h)           */
    uint8_t *codes;          /* 4-bit: packed per leaf; 8-bit: n x K rows   */
    uint64_t *code_offsets;  /* num_leaves + 1 byte offsets into codes      */

    /* re-ranking data, positions in leaf order */
    avq_reorder reorder;
    float *vectors;          /* n x dim float (FLOAT, and BRUTE mode)       */
    int8_t *vectors_i8;      /* n x dim int8 (INT8)                         */
    float *i8_scale;         /* dim: x_j ~ vectors_i8[j] * i8_scale[j]      */
    float *norms2;           /* n: exact |x|² (L2 with INT8 reorder)        */

    /* default search parameters */
    size_t default_leaves_to_search, default_pre_reorder;

    /* ownership: either every array above was malloc'ed, or they point
     * into one read-only mapping of a file */
    void *mapping;
    size_t mapping_bytes;
};

/* Free every owned array (not the struct). */
void avq_index_release_arrays(avq_index *index);

#endif
