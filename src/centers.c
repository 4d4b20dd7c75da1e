/*
 * centers.c -- the int8 sketch of the leaf centers (see centers.h).
 */
#include "centers.h"

#include "avq_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Below this many centers the float scores cost little, and the bound's
 * survivors would be most of them anyway. */
enum { SKETCH_MIN_LEAVES = 64 };
/* The kernels add up to 255 x 127 per dimension (AVX-512 adds 128 to the
 * query's codes) in int32: exact for dim4 < 2^31 / 32385 = 66,311. */
enum { SKETCH_MAX_DIM = 65536 };

/* Round to the nearest code without a branch or a libm call (baseline
 * x86-64 has no rounding instruction): adding and removing 1.5 x 2^23
 * rounds any |v| < 2^22 to the nearest integer.  The error is measured from
 * the code actually chosen, so the rounding mode does not matter. */
static inline float round_near(float v) {
    volatile float big = 12582912.0f; /* kept out of constant folding */
    return (v + big) - big;
}

static int8_t code_of(float v) {
    v = v > 127.0f ? 127.0f : v;
    v = v < -127.0f ? -127.0f : v;
    return (int8_t)(int)round_near(v);
}

int avq_center_sketch_make(const float *centers, const float *spread, size_t L, size_t d,
                           avq_center_sketch **out) {
    *out = NULL;
    if (L < SKETCH_MIN_LEAVES || d == 0 || d > SKETCH_MAX_DIM) return AVQ_OK;
    avq_center_sketch *s = calloc(1, sizeof *s);
    if (!s) return avq_fail_nomem("center sketch", sizeof *s);
    s->num_leaves = L;
    s->dim = d;
    s->dim4 = (d + 3) / 4 * 4;
    s->blocks = (L + AVQ_SKETCH_BLOCK - 1) / AVQ_SKETCH_BLOCK;
    size_t padded = s->blocks * AVQ_SKETCH_BLOCK;
    size_t code_bytes = avq_align64(padded * s->dim4), sums = avq_align64(padded * sizeof(int32_t));
    size_t total = code_bytes + sums + avq_align64(d * sizeof(float));
    char *p = avq_alloc_aligned(total);
    if (!p) {
        free(s);
        return avq_fail_nomem("center sketch", total);
    }
    s->block = p;
    s->codes = (int8_t *)p;
    s->code_sums = (int32_t *)(p + code_bytes);
    s->scale = (float *)(p + code_bytes + sums);
    memset(s->codes, 0, code_bytes);
    memset(s->code_sums, 0, sums);
    /* per dimension: the largest |c_j| maps to 127 (an all-zero dimension
     * keeps scale 0 and codes 0, and contributes nothing either way) */
    for (size_t j = 0; j < d; j++) {
        float m = 0.0f;
        for (size_t l = 0; l < L; l++) m = fmaxf(m, fabsf(centers[l * d + j]));
        s->scale[j] = m / 127.0f;
    }
    size_t groups = s->dim4 / 4;
    for (size_t l = 0; l < L; l++) {
        const float *c = centers + l * d;
        size_t b = l / AVQ_SKETCH_BLOCK, i = l % AVQ_SKETCH_BLOCK;
        double err2 = 0.0, code2 = 0.0, norm2 = 0.0;
        int32_t sum = 0;
        for (size_t j = 0; j < d; j++) {
            /* the rounding error is measured against the scale as stored,
             * which is the one the query is multiplied by */
            double v = s->scale[j] > 0.0f ? (double)c[j] / (double)s->scale[j] : 0.0;
            int8_t code = code_of((float)v);
            s->codes[64 * (b * groups + j / 4) + 4 * i + j % 4] = code;
            sum += code;
            err2 += (v - code) * (v - code);
            code2 += (double)code * code;
            norm2 += (double)c[j] * c[j];
        }
        s->code_sums[l] = sum;
        s->max_err_norm = fmax(s->max_err_norm, sqrt(err2));
        s->max_code_norm = fmax(s->max_code_norm, sqrt(code2));
        s->max_norm = fmax(s->max_norm, sqrt(norm2));
        if (spread) s->max_spread = fmax(s->max_spread, fabs((double)spread[l]));
    }
    *out = s;
    return AVQ_OK;
}

void avq_center_sketch_free(avq_center_sketch *s) {
    if (!s) return;
    avq_free_aligned(s->block);
    free(s);
}

size_t avq_center_sketch_bytes(const avq_center_sketch *s) {
    if (!s) return 0;
    size_t padded = s->blocks * AVQ_SKETCH_BLOCK;
    return sizeof *s + padded * (s->dim4 + sizeof(int32_t)) + s->dim * sizeof(float);
}

void avq_center_sketch_query(const avq_center_sketch *s, const float *q, int8_t *qc,
                             avq_sketch_query *out) {
    /* float arithmetic in four-way sums (this runs for every query); its
     * rounding is a few parts in 2^24 of terms the bound already covers
     * with wide margins */
    size_t d = s->dim;
    float top = 0.0f, qs2[4] = {0}, q2[4] = {0};
    for (size_t j = 0; j < d; j++) {
        float v = q[j] * s->scale[j], a = v < 0.0f ? -v : v;
        top = a > top ? a : top;
        qs2[j % 4] += v * v;
        q2[j % 4] += q[j] * q[j];
    }
    memset(qc + d, 0, s->dim4 - d);
    out->q_norm = sqrt((double)q2[0] + q2[1] + q2[2] + q2[3]);
    out->tau = (double)top / 127.0;
    out->dot_bound = 0.0;
    if (top == 0.0f) {
        memset(qc, 0, d);
        return;
    }
    float inv = 127.0f / top, err2[4] = {0};
    for (size_t j = 0; j < d; j++) {
        /* |v| <= 127 up to rounding, which round_near keeps at 127 */
        float v = q[j] * s->scale[j] * inv, r = round_near(v);
        qc[j] = (int8_t)(int)r;
        err2[j % 4] += (v - r) * (v - r);
    }
    double qs_norm = sqrt((double)qs2[0] + qs2[1] + qs2[2] + qs2[3]);
    double f2 = (double)err2[0] + err2[1] + err2[2] + err2[3];
    /* <q, c> = sum q'_j (code_j + e_j) with q'_j = q_j scale_j
     *        = tau <qc, code> + tau <f, code> + <q', e>,  f = q'/tau - qc
     * where v above is q'_j / tau to within a few float roundings of 127,
     * under 1e-4 per dimension; any float summation of d products errs by
     * at most about d 2^-24 of sum |q_j c_j| <= |q| |c|, and 2^-20 d leaves a
     * wide margin */
    double f_norm = sqrt(f2) + 1e-4 * sqrt((double)d);
    double quant = qs_norm * s->max_err_norm + out->tau * f_norm * s->max_code_norm;
    double rounding = (double)d * 0x1p-20 * out->q_norm * s->max_norm;
    out->dot_bound = quant * (1.0 + 1e-4) + rounding;
}
