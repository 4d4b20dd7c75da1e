/*
 * spill.c -- SOAR: the second leaf of a spilled vector.
 *
 * Sun, Guo and Kumar, "SOAR: improved indexing for approximate nearest
 * neighbor search" (NeurIPS 2023).  With spilling every vector is stored in
 * two leaves: its nearest center c (the primary, as without spilling) and a
 * second one c'.  A query misses a vector when the leaf it is in ranks too
 * low, i.e. when <q, r> (r = x - c, the primary residual) is very negative.
 * If the second residual r' = x - c' points the same way as r, the second
 * leaf ranks low for the same queries and the copy buys little; so c' is
 * chosen by the spilled-residual loss
 *
 *     L(c') = |r'|^2 + lambda * <r, r'>^2 / |r|^2
 *
 * -- the squared distance, plus lambda times the squared component of r'
 * along r ("orthogonality amplification"; lambda = 1 is the paper's
 * default, lambda = 0 gives the plain second-nearest center).
 *
 * Everything the loss needs for every center comes from two GEMMs over a
 * tile of rows, g = x C^T (the one nearest-center assignment computes) and
 * h = r C^T:
 *     |r'|^2   = |x|^2 - 2 g + |c'|^2
 *     <r, r'>  = <r, x> - h
 * (Not <r, c'> = g - <c, c'> from the centers' Gram matrix: that matrix is
 * L^2 floats, 400 MB at 10,000 leaves, for a saving of one GEMM.)
 */
#include "avq_internal.h"
#include "kmeans.h"
#include "spill.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Rows per GEMM tile: the tile (rows x L floats) stays a few MB. */
enum { SPILL_TILE_FLOATS = 1 << 20, SPILL_ROW_CHUNK = 64 };

typedef struct {
    const float *x;        /* rows of the tile                                */
    size_t d, L;
    const float *tile;     /* rows x L: <x, c'>                               */
    const float *rtile;    /* rows x L: <r, c'>                               */
    const float *cnorm2;   /* L                                               */
    const int32_t *primary;/* rows                                            */
    float lambda;
    int32_t *out;          /* rows                                            */
} spill_job;

static int spill_rows(void *ctx, size_t begin, size_t end, int worker) {
    (void)worker;
    const spill_job *j = ctx;
    size_t L = j->L;
    for (size_t r = begin; r < end; r++) {
        const float *g = j->tile + r * L;
        size_t p = (size_t)j->primary[r];
        const float *h = j->rtile + r * L;
        double x2 = avq_norm2_f64(j->x + r * j->d, j->d);
        float xx = (float)x2;
        float rx = (float)(x2 - (double)g[p]);                               /* <r, x> */
        float r2 = (float)(x2 - 2.0 * (double)g[p] + (double)j->cnorm2[p]);  /* |r|^2  */
        /* a point on its center has no residual direction to avoid: the
         * loss is the distance alone */
        float w = r2 > 1e-12f * (xx > 1.0f ? xx : 1.0f) ? j->lambda / r2 : 0.0f;
        float best = INFINITY;
        int32_t arg = -1;
        for (size_t c = 0; c < L; c++) {
            if (c == p) continue;
            float dist = xx - 2.0f * g[c] + j->cnorm2[c];
            float par = rx - h[c];
            float loss = dist + w * par * par;
            if (loss < best) { /* strict: ties go to the lower center */
                best = loss;
                arg = (int32_t)c;
            }
        }
        /* NaN losses never win; fall back to any other leaf (finite input
         * makes this unreachable, but a leaf must always be named) */
        j->out[r] = arg >= 0 ? arg : (int32_t)(p == 0 ? 1 : 0);
    }
    return AVQ_OK;
}

int avq_spill_assign(const float *x, size_t n, size_t d, const float *centers, size_t L,
                     const int32_t *primary, float lambda, int threads, int32_t *out) {
    if (!x || !centers || !primary || !out)
        return avq_fail(AVQ_ERR_INVALID, "spill: NULL argument");
    if (L < 2) return avq_fail(AVQ_ERR_INVALID, "spill: needs at least 2 leaves, got %zu", L);
    if (!(lambda >= 0.0f) || isinf(lambda))
        return avq_fail(AVQ_ERR_INVALID, "spill: lambda must be finite and >= 0, got %g",
                        (double)lambda);
    if (n == 0) return AVQ_OK;
    if (n > INT32_MAX || L > INT32_MAX || d > INT32_MAX)
        return avq_fail(AVQ_ERR_INVALID, "spill: n=%zu, L=%zu or d=%zu too large", n, L, d);
    for (size_t i = 0; i < n; i++)
        if (primary[i] < 0 || (size_t)primary[i] >= L)
            return avq_fail(AVQ_ERR_INVALID, "spill: row %zu has primary leaf %d of %zu", i,
                            (int)primary[i], L);
    size_t rt = SPILL_TILE_FLOATS / L;
    if (rt < 1) rt = 1;
    if (rt > n) rt = n;
    float *tile = avq_alloc_aligned(rt * L * sizeof(float));
    float *rtile = avq_alloc_aligned(rt * L * sizeof(float));
    float *resid = malloc(rt * d * sizeof(float));
    float *cnorm2 = malloc(L * sizeof(float));
    int st = AVQ_OK;
    if (!tile || !rtile || !resid || !cnorm2) {
        st = avq_fail_nomem("spill buffers", (2 * rt * L + rt * d + L) * sizeof(float));
        goto done;
    }
    avq_center_norms2(centers, L, d, cnorm2);
    for (size_t r0 = 0; r0 < n && st == AVQ_OK; r0 += rt) {
        size_t rows = n - r0 < rt ? n - r0 : rt;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)L, (int)d, 1.0f,
                    x + r0 * d, (int)d, centers, (int)d, 0.0f, tile, (int)L);
        for (size_t i = 0; i < rows; i++) {
            const float *xi = x + (r0 + i) * d, *c = centers + (size_t)primary[r0 + i] * d;
            for (size_t k = 0; k < d; k++) resid[i * d + k] = xi[k] - c[k];
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)L, (int)d, 1.0f,
                    resid, (int)d, centers, (int)d, 0.0f, rtile, (int)L);
        spill_job job = {x + r0 * d, d, L, tile, rtile, cnorm2, primary + r0, lambda, out + r0};
        st = avq_parallel_for(rows, SPILL_ROW_CHUNK, threads, spill_rows, &job, NULL, NULL,
                              "spill");
    }
done:
    avq_free_aligned(tile);
    avq_free_aligned(rtile);
    free(resid);
    free(cnorm2);
    return st;
}
