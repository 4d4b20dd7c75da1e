/*
 * pq.h -- product quantization: block layout, codebook training, the
 * reconstruction encoder and the decoder.
 *
 * Layout (shared with the fast-scan LUT builder; do not change lightly):
 *   - dimension d splits into K = ceil(d / dims_per_block) blocks; block m
 *     covers dims [m*dpb, min((m+1)*dpb, d)), length len_m (the last block
 *     may be shorter);
 *   - a codebook with C centers per block is ONE array of C*d floats; block
 *     m's centers start at codebook + C*m*dpb, and center j of block m is the
 *     len_m floats at codebook + C*m*dpb + j*len_m;
 *   - codes are n x K uint8, row-major, one code per byte (C <= 256).
 * Then <q, decode(code)> = sum_m <q_m, C_m[code_m]>, which is what a float
 * LUT sums.
 *
 * Every function takes plain arrays, so the index builder, the paper
 * experiment and the tests use the same code.
 */
#ifndef AVQ_PQ_H
#define AVQ_PQ_H

#include "avq_internal.h"

#include <stddef.h>
#include <stdint.h>

/* The geometry of a product quantizer. */
typedef struct {
    size_t dim;            /* full dimension d */
    size_t dims_per_block; /* dpb >= 1 */
    size_t num_centers;    /* C per block: 2..256 (16 = 4-bit, 256 = 8-bit) */
} avq_pq_shape;

/* K = ceil(d / dpb). */
static inline size_t avq_pq_num_blocks(const avq_pq_shape *s) {
    return (s->dim + s->dims_per_block - 1) / s->dims_per_block;
}
/* First dimension of block m. */
static inline size_t avq_pq_block_start(const avq_pq_shape *s, size_t m) {
    return m * s->dims_per_block;
}
/* len_m. */
static inline size_t avq_pq_block_len(const avq_pq_shape *s, size_t m) {
    size_t start = m * s->dims_per_block;
    size_t rest = s->dim - start;
    return rest < s->dims_per_block ? rest : s->dims_per_block;
}
/* Block m's C x len_m centers inside the codebook. */
static inline const float *avq_pq_block_centers(const avq_pq_shape *s, const float *codebook,
                                                size_t m) {
    return codebook + s->num_centers * m * s->dims_per_block;
}

/* AVQ_OK, or AVQ_ERR_INVALID with a message naming `who`. */
int avq_pq_check_shape(const avq_pq_shape *s, const char *who);

typedef struct {
    size_t training_sample; /* Bernoulli sample of the rows, 0 = all (default 100000) */
    size_t max_iter;        /* k-means iterations per block (default 10) */
    uint64_t seed;          /* default 7; block m uses a stream derived from it */
    int threads;            /* 0 = one per CPU */
} avq_pq_train_params;

void avq_pq_default_train_params(avq_pq_train_params *p);

/* Train the codebook (C*d floats, layout above) with plain L2 k-means per
 * block on a sample of the n x d rows (typically residuals x - c_leaf).
 * Needs at least C rows.  Calls OpenBLAS: not from inside a worker.
 * Progress stage "codebooks", counted in blocks. */
int avq_pq_train(const float *rows, size_t n, const avq_pq_shape *shape,
                 const avq_pq_train_params *p, float *codebook, avq_progress_fn progress,
                 void *progress_user);

/* The rows avq_pq_train(rows, n, shape, p, ...) trains on: *idx (malloc'ed,
 * *count increasing row numbers) is the Bernoulli sample it draws from
 * p->seed.  A caller that makes its rows on demand (quantizer.c: residuals)
 * makes only these, in this order, and trains on them with
 * training_sample = 0: the same codebook bit for bit. */
int avq_pq_train_sample(size_t n, const avq_pq_shape *shape, const avq_pq_train_params *p,
                        size_t **idx, size_t *count);

/* Reconstruction encoder: per block the nearest center (squared L2 in
 * double, ties to the lower index).  rows: n x d; codes: n x K output.
 * Multi-threaded (no BLAS), so it may be used from any thread.  Progress
 * stage "encode".  Identical to avq_aniso_encode with no threshold. */
int avq_pq_encode(const float *rows, size_t n, const avq_pq_shape *shape,
                  const float *codebook, int threads, uint8_t *codes,
                  avq_progress_fn progress, void *progress_user);

/* out (n x d) = the codebook vectors the codes select.  Codes >= C are an
 * error (AVQ_ERR_INVALID). */
int avq_pq_decode(const uint8_t *codes, size_t n, const avq_pq_shape *shape,
                  const float *codebook, float *out);

/* Mean over the rows of |row - decode(code)|² (double), for diagnostics. */
double avq_pq_mean_sq_error(const float *rows, const uint8_t *codes, size_t n,
                            const avq_pq_shape *shape, const float *codebook);

#endif
