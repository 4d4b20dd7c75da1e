/*
 * aniso.c -- eta and the score-aware encoder (Guo et al. 2020, §3-4;
 * doc/DESIGN.md §1 and §2, build step 5).
 *
 * Why coordinate descent: the anisotropic loss couples the blocks through
 * the parallel error par = sum_m P[m][code_m], so the per-block argmin of
 * classic PQ is no longer optimal.  Starting from that argmin and re-choosing
 * one block at a time with the others fixed converges in a few rounds, and
 * every accepted move lowers the loss strictly, so the result is never worse
 * than reconstruction coding under the anisotropic loss.  Moves that would
 * grow par² are skipped (ScaNN's rule: with eta >= 1 they can only trade
 * cheap orthogonal error for expensive parallel error).
 *
 * Everything per point is in double: R and P are sums of up to 256 products
 * and the accept test compares differences of them; float rounding there
 * would make "never worse than the start" depend on luck.  The change of
 * loss of a move is computed as (eta - 1)·dpar + dR, which is algebraically
 * eta·dpar + (dR - dpar) but exactly dR >= 0 at eta = 1: no move is ever
 * taken then, and the codes equal the reconstruction codes bit for bit.
 *
 * The exact finite-d eta.  With theta_T = acos(T/|x|), s = sin theta_T,
 * c = cos theta_T, the paper's h_par = (d-1) ∫ (sin^{d-2} - sin^d) and
 * h_perp = ∫ sin^d over [0, theta_T].  The recurrence
 * I_k = ((k-1)/k) I_{k-2} - sin^{k-1} c / k turns the ratio into
 *     eta = 1 + c / J,   J = ∫_0^theta_T sin θ (sin θ / s)^{d-1} dθ,
 * one well-scaled integral (the integrand is at most 1, no underflow) that we
 * evaluate by Simpson's rule over the window where it is not negligible
 * (log sin is concave, so the integrand decays at least like
 * exp(-(d-1) cot theta_T · u) away from the end point).  For d = 100,
 * T = 0.2, |x| = 1 this gives 5.953 (asymptotic form: 4.125).
 */
#include "aniso.h"

#include "partition.h" /* avq_cholesky */
#include "vecmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { SIMPSON_INTERVALS = 512, ENCODE_CHUNK = 256 };

static double eta_exact_ratio(double norm2, size_t d, double T) {
    double c = T / sqrt(norm2);
    double a = acos(c), s = sin(a);
    double beta = (double)(d - 1) * c / s; /* decay rate of the integrand at a */
    double lo = beta > 0.0 && 40.0 / beta < a ? a - 40.0 / beta : 0.0;
    double h = (a - lo) / SIMPSON_INTERVALS, sum = 0.0;
    double log_s = log(s);
    for (int i = 0; i <= SIMPSON_INTERVALS; i++) {
        double th = lo + h * i, st = sin(th);
        double f = st > 0.0 ? st * exp((double)(d - 1) * (log(st) - log_s)) : 0.0;
        double w = (i == 0 || i == SIMPSON_INTERVALS) ? 1.0 : (i % 2 ? 4.0 : 2.0);
        sum += w * f;
    }
    double J = sum * h / 3.0;
    return J > 0.0 ? 1.0 + c / J : AVQ_ETA_MAX;
}

double avq_eta(double norm2, size_t d, double T, avq_eta_mode mode) {
    if (!(T > 0.0) || d < 2) return 1.0; /* NaN, negative or zero threshold */
    if (!(norm2 > 0.0) || !isfinite(norm2)) return AVQ_ETA_MAX;
    double T2 = T * T;
    if (norm2 <= T2 * (1.0 + AVQ_ETA_GUARD_EPS)) return AVQ_ETA_MAX;
    double eta = mode == AVQ_ETA_EXACT ? eta_exact_ratio(norm2, d, T)
                                       : (double)(d - 1) * T2 / (norm2 - T2);
    if (!(eta >= 1.0)) return 1.0;
    return eta < AVQ_ETA_MAX ? eta : AVQ_ETA_MAX;
}

/* ---- general weights --------------------------------------------------- */

enum { WEIGHT_GRID = 8192, WEIGHT_SIMPSON = 2048 };

const char *avq_weight_check(const avq_weight *w) {
    if (!w) return "NULL weight";
    switch (w->kind) {
    case AVQ_WEIGHT_STEP:
        return isfinite(w->T) ? NULL : "the step weight needs a finite threshold T";
    case AVQ_WEIGHT_POW:
        return w->param >= 0.0 && isfinite(w->param) ? NULL : "pow: P must be >= 0";
    case AVQ_WEIGHT_EXP:
        return w->param >= 0.0 && isfinite(w->param) ? NULL : "exp: L must be >= 0";
    case AVQ_WEIGHT_LOGISTIC:
        if (!isfinite(w->T)) return "logistic: the threshold T must be finite";
        return w->param > 0.0 && isfinite(w->param) ? NULL : "logistic: S must be > 0";
    }
    return "unknown weight kind";
}

/* log w(t); -INFINITY where w is 0. */
static double log_weight(const avq_weight *w, double t) {
    switch (w->kind) {
    case AVQ_WEIGHT_STEP: return t >= w->T ? 0.0 : -INFINITY;
    case AVQ_WEIGHT_POW:
        if (!(t > 0.0)) return -INFINITY;
        return w->param > 0.0 ? w->param * log(t) : 0.0;
    case AVQ_WEIGHT_EXP: return w->param * t;
    case AVQ_WEIGHT_LOGISTIC: {
        double z = (t - w->T) / w->param; /* log sigma(z), stable both ways */
        return z >= 0.0 ? -log1p(exp(-z)) : z - log1p(exp(z));
    }
    }
    return -INFINITY;
}

/* log of w(|x| cos θ) sin^{d-2} θ, the weight times the density of the
 * angle between q and x. */
static double log_integrand(const avq_weight *w, double norm, size_t d, double th) {
    /* the step is 1 on the whole range avq_weight_eta integrates over:
     * evaluating it would drop the end point acos(T/|x|) to rounding */
    double lw = w->kind == AVQ_WEIGHT_STEP ? 0.0 : log_weight(w, norm * cos(th));
    if (lw == -INFINITY || d == 2) return lw;
    double st = sin(th);
    return st > 0.0 ? lw + (double)(d - 2) * log(st) : -INFINITY;
}

/* eta = (d-1) ∫ w cos²θ sin^{d-2}θ / ∫ w sin^dθ over [0, π]: locate where
 * the integrand is within e^-60 of its peak on a fine grid, then Simpson's
 * rule over that window (scaled by the peak, so nothing overflows). */
double avq_weight_eta(const avq_weight *w, double norm, size_t d) {
    if (d < 2 || avq_weight_check(w)) return 1.0;
    if (!(norm >= 0.0) || !isfinite(norm)) return AVQ_ETA_MAX;
    if (norm == 0.0) /* every score is 0: w is constant over q */
        return log_weight(w, 0.0) > -INFINITY ? 1.0 : AVQ_ETA_MAX;
    double a = 0.0, b = M_PI;
    if (w->kind == AVQ_WEIGHT_STEP) {
        double c = w->T / norm;
        if (c >= 1.0) return AVQ_ETA_MAX; /* no score reaches T */
        if (c > -1.0) b = acos(c);
    } else if (w->kind == AVQ_WEIGHT_POW) {
        b = M_PI / 2.0;
    }
    double step = (b - a) / WEIGHT_GRID, gmax = -INFINITY;
    for (int i = 0; i <= WEIGHT_GRID; i++) {
        double g = log_integrand(w, norm, d, a + step * i);
        if (g > gmax) gmax = g;
    }
    if (gmax == -INFINITY) return AVQ_ETA_MAX;
    int first = -1, last = -1;
    for (int i = 0; i <= WEIGHT_GRID; i++)
        if (log_integrand(w, norm, d, a + step * i) > gmax - 60.0) {
            if (first < 0) first = i;
            last = i;
        }
    double lo = a + step * (first > 2 ? first - 2 : 0);
    double hi = a + step * (last + 2 < WEIGHT_GRID ? last + 2 : WEIGHT_GRID);
    double h = (hi - lo) / WEIGHT_SIMPSON, num = 0.0, den = 0.0;
    for (int i = 0; i <= WEIGHT_SIMPSON; i++) {
        double th = lo + h * i, g = log_integrand(w, norm, d, th);
        if (g == -INFINITY) continue;
        double f = exp(g - gmax), ct = cos(th), st = sin(th);
        double sw = (i == 0 || i == WEIGHT_SIMPSON) ? 1.0 : (i % 2 ? 4.0 : 2.0);
        num += sw * f * ct * ct;
        den += sw * f * st * st;
    }
    if (!(den > 0.0)) return AVQ_ETA_MAX;
    double eta = (double)(d - 1) * num / den;
    if (!(eta >= 1.0)) return 1.0;
    return eta < AVQ_ETA_MAX ? eta : AVQ_ETA_MAX;
}

void avq_eta_table_build(avq_eta_table *t, const avq_weight *w, double lo, double hi, size_t d) {
    if (!(lo >= 0.0)) lo = 0.0;
    if (!(hi > lo)) hi = lo;
    t->lo = lo;
    t->hi = hi;
    t->knots = hi > lo ? AVQ_ETA_TABLE_KNOTS : 1;
    for (size_t k = 0; k < t->knots; k++) {
        double norm = t->knots > 1 ? lo + (hi - lo) * (double)k / (double)(t->knots - 1) : lo;
        t->eta[k] = avq_weight_eta(w, norm, d);
    }
}

double avq_eta_table_lookup(const avq_eta_table *t, double norm) {
    if (t->knots < 2 || !(norm > t->lo)) return t->eta[0];
    if (norm >= t->hi) return t->eta[t->knots - 1];
    double pos = (norm - t->lo) / (t->hi - t->lo) * (double)(t->knots - 1);
    size_t k = (size_t)pos;
    if (k >= t->knots - 1) k = t->knots - 2;
    double f = pos - (double)k;
    return t->eta[k] + f * (t->eta[k + 1] - t->eta[k]);
}

void avq_aniso_default_params(avq_aniso_params *p) {
    memset(p, 0, sizeof *p);
    p->threshold = NAN;
    p->eta = NAN;
    p->eta_mode = AVQ_ETA_ASYMPTOTIC;
    p->max_rounds = 10;
    p->threads = 0;
}

/* ---- per-point encoder ------------------------------------------------- */

typedef struct eta_source eta_source;

typedef struct {
    double r; /* initial squared error of the block */
    size_t m;
} block_order;

/* Descending error, ties to the lower block: a total order, so qsort's
 * instability cannot change the result. */
static int cmp_block_order(const void *pa, const void *pb) {
    const block_order *a = pa, *b = pb;
    if (a->r != b->r) return a->r > b->r ? -1 : 1;
    return a->m < b->m ? -1 : (a->m > b->m);
}

/* The blocks in cmp_block_order's order.  That order is total, so any
 * correct sort gives the same result; up to 64 blocks (every 4-bit code of
 * up to 128 dimensions at 2 per block) an inline insertion sort, which costs
 * a third of qsort's calls through a function pointer here (it ran once per
 * encoded point: 4.6 % of a GloVe build after the k-means work). */
static void sort_blocks(block_order *v, size_t K) {
    if (K > 64) {
        qsort(v, K, sizeof *v, cmp_block_order);
        return;
    }
    for (size_t i = 1; i < K; i++) {
        block_order x = v[i];
        size_t j = i;
        while (j > 0 && (v[j - 1].r < x.r || (v[j - 1].r == x.r && v[j - 1].m > x.m))) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

typedef struct {
    double *R, *P;       /* K x C */
    double *gap;         /* K: second-smallest minus smallest R of the block */
    block_order *order;  /* K */
    uint8_t *code;       /* K */
    float *resid;        /* d: the row's residual (avq_aniso_encode_residuals) */
    double max_abs_p;    /* max |P| over every block and center */
} encode_scratch;

/* The codebook as the encoder reads it: per block and center, each of the
 * first two dimensions as a double (exact conversions), center j of block m
 * at [m * C + j], so the loop over the centers of a 2-dimensional block
 * reads contiguous arrays (the compiler vectorises it; the float codebook
 * interleaves the two dimensions). */
typedef struct {
    double *c0, *c1; /* K x C each; NULL when dims_per_block != 2 */
} encode_codebook;

/* Block m's errors for a 2-dimensional block: the same operations, in the
 * same order, as the general loop of block_errors (r and p start at 0.0 and
 * add dimension 0, then dimension 1), one center per lane. */
static inline void block_errors_2d(double y0, double y1, double x0, double x1, double inv_norm,
                                   const double *restrict c0, const double *restrict c1,
                                   size_t C, double *restrict R, double *restrict P) {
    for (size_t j = 0; j < C; j++) {
        double e0 = y0 - c0[j], e1 = y1 - c1[j];
        R[j] = (0.0 + e0 * e0) + e1 * e1;
        P[j] = ((0.0 + e0 * x0) + e1 * x1) * inv_norm;
    }
}

static inline double min2d(double a, double b) { return b < a ? b : a; }
static inline double max2d(double a, double b) { return b > a ? b : a; }

/* block_errors' reductions for 16 centers without a chain of dependent
 * compares: the smallest and second-smallest R by a tree of (low, high)
 * pairs (min and max are exact, so any grouping gives the same values),
 * then the first center at the minimum -- the lowest j among equals, as the
 * sequential "R[j] < R[best]" scan.  The second smallest counts a repeated
 * minimum twice, so it is min over j != best, as the general loop's. */
static inline void block_min16(const double *restrict R, const double *restrict P, int want_par,
                               uint8_t *code, double *gap, double *max_abs_p) {
    double lo[8], hi[8];
    for (int i = 0; i < 8; i++) {
        lo[i] = min2d(R[i], R[i + 8]);
        hi[i] = max2d(R[i], R[i + 8]);
    }
    for (int h = 4; h >= 1; h /= 2)
        for (int i = 0; i < h; i++) {
            double l = min2d(lo[i], lo[i + h]);
            hi[i] = min2d(max2d(lo[i], lo[i + h]), min2d(hi[i], hi[i + h]));
            lo[i] = l;
        }
    unsigned best = 0; /* stays 0 only if no R equals the minimum (all NaN), as in the scan */
    for (unsigned j = 16; j-- > 0;)
        if (R[j] == lo[0]) best = j;
    *code = (uint8_t)best;
    if (!want_par) return;
    *gap = hi[0] - lo[0];
    double a[8];
    for (int i = 0; i < 8; i++) a[i] = max2d(fabs(P[i]), fabs(P[i + 8]));
    for (int h = 4; h >= 1; h /= 2)
        for (int i = 0; i < h; i++) a[i] = max2d(a[i], a[i + h]);
    *max_abs_p = max2d(*max_abs_p, a[0]);
}

/* R[m][j] = |y_m - C_m[j]|², and when want_par P[m][j] = <y_m - C_m[j], x_m>/|x|;
 * code[m] = argmin_j R[m][j] (the lowest j among equals); with want_par also
 * gap[m] = (second-smallest R) - R[code[m]] and max_abs_p, which
 * coordinate_descent uses to skip blocks that cannot move. */
static void block_errors(const float *y, const float *x, double inv_norm, int want_par,
                         const avq_pq_shape *s, const float *codebook,
                         const encode_codebook *cb, encode_scratch *w) {
    size_t K = avq_pq_num_blocks(s), C = s->num_centers;
    double max_abs_p = 0.0;
    for (size_t m = 0; m < K; m++) {
        size_t start = avq_pq_block_start(s, m), len = avq_pq_block_len(s, m);
        const float *ym = y + start, *xm = x + start;
        double *R = w->R + m * C, *P = w->P + m * C;
        if (len == 2 && cb->c0) {
            /* P is written either way (0 without want_par, unused then) */
            if (C == 16) /* a constant trip count: vectorised without a tail */
                block_errors_2d(ym[0], ym[1], xm[0], xm[1], inv_norm, cb->c0 + m * C,
                                cb->c1 + m * C, 16, R, P);
            else
                block_errors_2d(ym[0], ym[1], xm[0], xm[1], inv_norm, cb->c0 + m * C,
                                cb->c1 + m * C, C, R, P);
        } else {
            const float *cm = avq_pq_block_centers(s, codebook, m);
            for (size_t j = 0; j < C; j++) {
                const float *c = cm + j * len;
                double r = 0.0, p = 0.0;
                for (size_t t = 0; t < len; t++) {
                    double e = (double)ym[t] - c[t];
                    r += e * e;
                    p += e * xm[t];
                }
                R[j] = r;
                P[j] = p * inv_norm;
            }
        }
        if (C == 16) {
            block_min16(R, P, want_par, w->code + m, w->gap + m, &max_abs_p);
            continue;
        }
        size_t best = 0;
        for (size_t j = 1; j < C; j++)
            if (R[j] < R[best]) best = j;
        w->code[m] = (uint8_t)best;
        if (want_par) {
            double second = INFINITY;
            for (size_t j = 0; j < C; j++) {
                if (j != best && R[j] < second) second = R[j];
                double a = fabs(P[j]);
                if (a > max_abs_p) max_abs_p = a;
            }
            w->gap[m] = second - R[best];
        }
    }
    w->max_abs_p = max_abs_p;
}

/* One block's best move; returns the new code (== cur when nothing helps).
 * A candidate whose lower bound fl(-fl((eta-1) par2) + fl(R[j] - R[cur]))
 * (see coordinate_descent) is not below best_delta cannot be taken, so it
 * is passed over before its dpar is computed: the same result, and most
 * candidates of most blocks stop at that one compare. */
static size_t best_move(const double *R, const double *P, size_t C, size_t cur, double par,
                        double eta) {
    size_t best = cur;
    double best_delta = 0.0, base = par - P[cur], par2 = par * par;
    double floor_par = -((eta - 1.0) * par2), Rc = R[cur];
    for (size_t j = 0; j < C; j++) {
        if (!(floor_par + (R[j] - Rc) < best_delta)) continue;
        double np = base + P[j];
        double dpar = np * np - par2;
        if (j == cur || dpar > 0.0) continue;
        double delta = (eta - 1.0) * dpar + (R[j] - R[cur]);
        if (delta < best_delta) {
            best_delta = delta;
            best = j;
        }
    }
    return best;
}

/* Coordinate descent as described at avq_aniso_encode, with the blocks that
 * provably cannot move left out (the codes are the same bit for bit).
 *
 * Why a block can be skipped.  In best_move every candidate j != cur of a
 * block still at its argmin has, in floating point and by the monotonicity
 * of rounding, dpar = fl(np² - par2) >= -par2 and R[j] - R[cur] >= gap, so
 * delta >= fl(-fl((eta-1) par2) + gap); when that bound is >= 0 no delta is
 * < 0 and the block keeps its code.  Tested with the current par2 before
 * each visit, that is one multiply-add instead of C candidates.
 *
 * Tested with an upper bound PB2 of par2 over the whole descent, it holds
 * for every visit: the block never moves, never changes par, and neither
 * its visits nor its place in the order matter, so it is left out of the
 * order altogether (most blocks of most points: only the rest is sorted).
 * The bound: an accepted move has fl(np²) <= fl(par²), and the new par,
 * par + (P[j] - P[cur]), differs from np = (par - P[cur]) + P[j] only by
 * rounding, so |par'| <= |par| (1 + 8u) + 4u max|P| (u = 2^-53); after at
 * most max_rounds * K <= 1e5 moves |par| <= (|par0| + 1e-9 max|P|)(1 + 1e-9)
 * with a wide margin.  Beyond 1e5 possible moves every block is kept.
 *
 * The rounds end early once every block still in the order has been
 * visited without a change since the last move: the next visits would see
 * the same par and codes and change nothing either. */
static void coordinate_descent(const avq_pq_shape *s, double eta, int max_rounds,
                               encode_scratch *w) {
    size_t K = avq_pq_num_blocks(s), C = s->num_centers;
    double par = 0.0;
    for (size_t m = 0; m < K; m++) par += w->P[m * C + w->code[m]];
    double c = eta - 1.0;
    double pb = INFINITY;
    if ((double)max_rounds * (double)K <= 1e5)
        pb = (fabs(par) + 1e-9 * w->max_abs_p) * (1.0 + 1e-9);
    double never = -(c * (pb * pb)); /* the bound's -fl((eta-1) PB2) */
    size_t live = 0;
    for (size_t m = 0; m < K; m++) {
        if (never + w->gap[m] >= 0.0) continue; /* cannot move, ever */
        w->order[live].r = w->R[m * C + w->code[m]];
        w->order[live].m = m;
        live++;
    }
    if (live == 0) return;
    sort_blocks(w->order, live);
    size_t quiet = 0; /* visits without a change since the last move */
    for (int round = 0; round < max_rounds; round++) {
        int changed = 0;
        for (size_t o = 0; o < live; o++) {
            size_t m = w->order[o].m, cur = w->code[m];
            const double *R = w->R + m * C, *P = w->P + m * C;
            size_t j = cur;
            /* w->gap[m] bounds R[j] - R[cur] (j != cur) while R[cur] is the
             * block's smallest R, the order key: at the argmin, or on a tie
             * with it (then gap = 0 and every R[j] >= R[cur]) */
            if (!(R[cur] == w->order[o].r && -(c * (par * par)) + w->gap[m] >= 0.0))
                j = best_move(R, P, C, cur, par, eta);
            if (j == cur) {
                if (++quiet >= live) return;
                continue;
            }
            par += P[j] - P[cur];
            w->code[m] = (uint8_t)j;
            changed = 1;
            quiet = 0;
        }
        if (!changed) break;
    }
}

typedef struct {
    const float *y, *x;
    const avq_pq_shape *shape;
    const float *codebook;
    const avq_aniso_params *p;
    const eta_source *src;
    const encode_codebook *cb;
    encode_scratch *scratch; /* one per worker */
    uint8_t *codes;
    /* avq_aniso_encode_residuals: y is x minus its leaf's center, made per
     * row; rows [leaf_start[l], leaf_start[l + 1]) are leaf l's */
    const float *centers;
    const size_t *leaf_start;
    size_t num_leaves;
} encode_job;

/* Where a general weight's eta comes from in one encoding: one value
 * (relative: the unit vector's) or a table over the points' norms. */
struct eta_source {
    int general;         /* p->weight != STEP */
    double fixed;        /* relative */
    avq_eta_table table; /* absolute */
};

static void eta_source_init(eta_source *src, const avq_aniso_params *p, const float *x, size_t n,
                            size_t d) {
    memset(src, 0, sizeof *src);
    src->general = p->weight != AVQ_WEIGHT_STEP;
    if (!src->general) return;
    avq_weight w = {p->weight, p->threshold, p->weight_param};
    if (p->relative) {
        src->fixed = avq_weight_eta(&w, 1.0, d);
        return;
    }
    double lo = INFINITY, hi = 0.0;
    for (size_t i = 0; i < n; i++) {
        double nr = sqrt(avq_norm2_f64(x + i * d, d));
        if (nr > 0.0 && nr < lo) lo = nr;
        if (nr > hi) hi = nr;
    }
    if (!(lo <= hi)) lo = hi = 1.0; /* only zero vectors: their eta is 1 anyway */
    avq_eta_table_build(&src->table, &w, lo, hi, d);
}

static double point_eta_step(const avq_aniso_params *p, double norm2, size_t d);

/* eta for point x; 1 means plain reconstruction. */
static double point_eta(const avq_aniso_params *p, const eta_source *src, double norm2,
                        size_t d) {
    if (!src->general) return point_eta_step(p, norm2, d);
    if (!(norm2 > 0.0)) return 1.0; /* no direction to weight */
    return p->relative ? src->fixed : avq_eta_table_lookup(&src->table, sqrt(norm2));
}

static double point_eta_step(const avq_aniso_params *p, double norm2, size_t d) {
    if (!isnan(p->threshold)) {
        /* relative: the point scaled to unit norm (a zero point has no
         * direction to weight: plain reconstruction) */
        if (p->relative) return norm2 > 0.0 ? avq_eta(1.0, d, p->threshold, p->eta_mode) : 1.0;
        return avq_eta(norm2, d, p->threshold, p->eta_mode);
    }
    if (p->eta > 0.0) return p->eta < 1.0 ? 1.0 : (p->eta < AVQ_ETA_MAX ? p->eta : AVQ_ETA_MAX);
    return 1.0;
}

static int encode_range(void *ctx, size_t begin, size_t end, int worker) {
    const encode_job *job = ctx;
    const avq_pq_shape *s = job->shape;
    size_t d = s->dim, K = avq_pq_num_blocks(s);
    encode_scratch *w = &job->scratch[worker];
    double norms[8];
    size_t leaf = 0;
    if (job->centers) { /* the leaf holding row `begin`: the last l with start <= begin */
        size_t lo = 0, hi = job->num_leaves;
        while (hi - lo > 1) {
            size_t mid = lo + (hi - lo) / 2;
            if (job->leaf_start[mid] <= begin) lo = mid;
            else hi = mid;
        }
        leaf = lo;
    }
    for (size_t i = begin; i < end; i++) {
        const float *y = job->y + i * d, *x = job->x + i * d;
        if (job->centers) {
            while (job->leaf_start[leaf + 1] <= i) leaf++;
            const float *c = job->centers + leaf * d;
            for (size_t j = 0; j < d; j++) w->resid[j] = x[j] - c[j];
            y = w->resid;
        }
        if ((i - begin) % 8 == 0) /* avq_norm2_f64's sums, 8 rows at a time */
            avq_rows_norm2_f64(x, end - i < 8 ? end - i : 8, d, norms);
        double norm2 = norms[(i - begin) % 8];
        double eta = point_eta(job->p, job->src, norm2, d);
        /* a zero point has no parallel direction: reconstruction is all we can do */
        int aniso = eta > 1.0 && norm2 > 0.0 && job->p->max_rounds > 0;
        block_errors(y, x, aniso ? 1.0 / sqrt(norm2) : 0.0, aniso, s, job->codebook, job->cb, w);
        if (aniso) coordinate_descent(s, eta, job->p->max_rounds, w);
        memcpy(job->codes + i * K, w->code, K);
    }
    return AVQ_OK;
}

static int check_encode_args(const float *y, const float *x, size_t n, const avq_pq_shape *s,
                             const float *codebook, const avq_aniso_params *p,
                             const uint8_t *codes) {
    int st = avq_pq_check_shape(s, "encode");
    if (st != AVQ_OK) return st;
    if (!y || !x || !codebook || !p || !codes)
        return avq_fail(AVQ_ERR_INVALID, "encode: NULL vectors, codebook, params or codes");
    if (!isnan(p->threshold) && !(p->threshold >= 0.0 && isfinite(p->threshold)))
        return avq_fail(AVQ_ERR_INVALID, "encode: threshold T must be >= 0 or NaN, got %g",
                        p->threshold);
    if (p->eta_mode != AVQ_ETA_ASYMPTOTIC && p->eta_mode != AVQ_ETA_EXACT)
        return avq_fail(AVQ_ERR_INVALID, "encode: unknown eta_mode %d", (int)p->eta_mode);
    if (p->max_rounds < 0)
        return avq_fail(AVQ_ERR_INVALID, "encode: max_rounds must be >= 0, got %d", p->max_rounds);
    if (p->weight != AVQ_WEIGHT_STEP) {
        avq_weight w = {p->weight, p->threshold, p->weight_param};
        const char *why = avq_weight_check(&w);
        if (why) return avq_fail(AVQ_ERR_INVALID, "encode: %s", why);
    }
    size_t total;
    if (!avq_mul_ok(n, s->dim, &total))
        return avq_fail(AVQ_ERR_INVALID, "encode: %zu x %zu values overflow", n, s->dim);
    const float *arrays[2] = {y, x};
    for (int a = 0; a < 2; a++) {
        if (a == 1 && x == y) break;
        if (!avq_all_finite_wide(arrays[a], total)) {
            size_t at = avq_first_non_finite(arrays[a], total);
            return avq_fail(AVQ_ERR_INVALID, "encode: %s row %zu, column %zu is not finite",
                            a ? "original" : "residual", at / s->dim, at % s->dim);
        }
    }
    if (!avq_all_finite(codebook, s->num_centers * s->dim))
        return avq_fail(AVQ_ERR_INVALID, "encode: the codebook holds a non-finite value");
    return AVQ_OK;
}

static int encode(const float *y, const float *x, size_t n, const avq_pq_shape *shape,
                  const float *codebook, const avq_aniso_params *p, const float *centers,
                  const size_t *leaf_start, size_t num_leaves, uint8_t *codes,
                  avq_progress_fn progress, void *progress_user) {
    int st = check_encode_args(y, x, n, shape, codebook, p, codes);
    if (st != AVQ_OK || n == 0) return st;
    size_t K = avq_pq_num_blocks(shape), C = shape->num_centers;
    int threads = avq_resolve_threads(p->threads);
    size_t resid_bytes = centers ? (shape->dim * sizeof(float) + 63) & ~(size_t)63 : 0;
    size_t per_worker = (2 * K * C + K) * sizeof(double) + K * sizeof(block_order) + K;
    per_worker = (per_worker + 63) & ~(size_t)63; /* keep every worker's doubles aligned */
    per_worker += resid_bytes;
    encode_scratch *scratch = calloc((size_t)threads, sizeof *scratch);
    char *pool = malloc((size_t)threads * per_worker);
    if (!scratch || !pool) {
        free(scratch);
        free(pool);
        return avq_fail_nomem("encoder scratch", (size_t)threads * per_worker);
    }
    for (int t = 0; t < threads; t++) {
        char *base = pool + (size_t)t * per_worker; /* doubles first: aligned */
        scratch[t].R = (double *)base;
        scratch[t].P = scratch[t].R + K * C;
        scratch[t].gap = scratch[t].P + K * C;
        scratch[t].order = (block_order *)(scratch[t].gap + K);
        scratch[t].code = (uint8_t *)(scratch[t].order + K);
        scratch[t].resid = centers ? (float *)(base + per_worker - resid_bytes) : NULL;
    }
    eta_source *src = malloc(sizeof *src);
    if (!src) {
        free(pool);
        free(scratch);
        return avq_fail_nomem("eta table", sizeof *src);
    }
    eta_source_init(src, p, x, n, shape->dim);
    encode_codebook cb = {NULL, NULL};
    if (shape->dims_per_block == 2) {
        cb.c0 = malloc(2 * K * C * sizeof(double));
        if (cb.c0) { /* else the general loop: slower, the same codes */
            cb.c1 = cb.c0 + K * C;
            for (size_t m = 0; m < K; m++) {
                const float *cm = avq_pq_block_centers(shape, codebook, m);
                size_t len = avq_pq_block_len(shape, m);
                for (size_t j = 0; j < C; j++) {
                    cb.c0[m * C + j] = cm[j * len];
                    cb.c1[m * C + j] = len == 2 ? cm[j * len + 1] : 0.0;
                }
            }
        }
    }
    encode_job job = {y,     x,     shape,   codebook, p,         src,       &cb,
                      scratch, codes, centers, leaf_start, num_leaves};
    st = avq_parallel_for(n, ENCODE_CHUNK, threads, encode_range, &job, progress,
                          progress_user, "encode");
    free(cb.c0);
    free(src);
    free(pool);
    free(scratch);
    return st;
}

int avq_aniso_encode(const float *y, const float *x, size_t n, const avq_pq_shape *shape,
                     const float *codebook, const avq_aniso_params *p, uint8_t *codes,
                     avq_progress_fn progress, void *progress_user) {
    return encode(y, x, n, shape, codebook, p, NULL, NULL, 0, codes, progress, progress_user);
}

int avq_aniso_encode_residuals(const float *x, size_t n, const avq_pq_shape *shape,
                               const float *centers, const size_t *leaf_start,
                               size_t num_leaves, const float *codebook,
                               const avq_aniso_params *p, uint8_t *codes,
                               avq_progress_fn progress, void *progress_user) {
    if (!centers || !leaf_start || num_leaves == 0 || leaf_start[0] != 0 ||
        leaf_start[num_leaves] != n)
        return avq_fail(AVQ_ERR_INVALID,
                        "encode: NULL centers, or leaf starts not covering the %zu rows", n);
    return encode(x, x, n, shape, codebook, p, centers, leaf_start, num_leaves, codes, progress,
                  progress_user);
}

int avq_aniso_point_etas(const float *x, size_t n, size_t d, const avq_aniso_params *p,
                         double *eta) {
    if (!x || !p || !eta) return avq_fail(AVQ_ERR_INVALID, "point etas: NULL argument");
    if (p->weight != AVQ_WEIGHT_STEP) {
        avq_weight w = {p->weight, p->threshold, p->weight_param};
        const char *why = avq_weight_check(&w);
        if (why) return avq_fail(AVQ_ERR_INVALID, "point etas: %s", why);
    }
    eta_source *src = malloc(sizeof *src);
    if (!src) return avq_fail_nomem("eta table", sizeof *src);
    eta_source_init(src, p, x, n, d);
    for (size_t i = 0; i < n; i++) {
        double norm2 = avq_norm2_f64(x + i * d, d);
        eta[i] = norm2 > 0.0 ? point_eta(p, src, norm2, d) : 1.0;
    }
    free(src);
    return AVQ_OK;
}

static int8_t clamp_i8(double v) {
    return (int8_t)(v > 127.0 ? 127.0 : (v < -127.0 ? -127.0 : v));
}

typedef struct {
    double gain; /* loss change of flipping j alone at the start (< 0 helps) */
    size_t j;
} flip_order;

static int cmp_flip(const void *pa, const void *pb) {
    const flip_order *a = pa, *b = pb;
    if (a->gain != b->gain) return a->gain < b->gain ? -1 : 1;
    return a->j < b->j ? -1 : (a->j > b->j);
}

/* The change of loss (eta-1)(par'² - par²) + (r'² - r²) when r_j moves to
 * r_j + dr (par' = par + dr x_j/|x|); computed as in best_move. */
static double flip_delta(double par, double r, double dr, double xj_unit, double eta) {
    double np = par + dr * xj_unit;
    return (eta - 1.0) * (np * np - par * par) + ((r + dr) * (r + dr) - r * r);
}

size_t avq_aniso_round_i8_scratch(size_t d) { return (d ? d : 1) * sizeof(flip_order); }

void avq_aniso_round_i8(const float *x, size_t d, const float *scale, double eta,
                        void *scratch, int8_t *out) {
    double norm2 = avq_norm2_f64(x, d);
    for (size_t j = 0; j < d; j++) out[j] = clamp_i8(roundf(x[j] / scale[j]));
    if (!(eta > 1.0) || !(norm2 > 0.0) || d == 0) return;
    double inv = 1.0 / sqrt(norm2), par = 0.0;
    for (size_t j = 0; j < d; j++) par += ((double)x[j] - (double)out[j] * scale[j]) * x[j] * inv;
    flip_order *ord = scratch;
    size_t m = 0;
    for (size_t j = 0; j < d; j++) {
        double v = (double)x[j] / scale[j];
        /* the other side of v: the ceiling when rounded down, else the floor */
        double other = (double)out[j] <= v ? floor(v) + 1.0 : ceil(v) - 1.0;
        if (other > 127.0 || other < -127.0 || other == (double)out[j]) continue;
        double r = (double)x[j] - (double)out[j] * scale[j];
        double dr = ((double)out[j] - other) * scale[j];
        double g = flip_delta(par, r, dr, x[j] * inv, eta);
        if (g < 0.0) ord[m++] = (flip_order){g, j};
    }
    qsort(ord, m, sizeof *ord, cmp_flip);
    for (int pass = 0; pass < 2; pass++) {
        int changed = 0;
        for (size_t k = 0; k < m; k++) {
            size_t j = ord[k].j;
            double v = (double)x[j] / scale[j];
            double other = (double)out[j] <= v ? floor(v) + 1.0 : ceil(v) - 1.0;
            if (other > 127.0 || other < -127.0 || other == (double)out[j]) continue;
            double r = (double)x[j] - (double)out[j] * scale[j];
            double dr = ((double)out[j] - other) * scale[j];
            if (flip_delta(par, r, dr, x[j] * inv, eta) < 0.0) {
                par += dr * x[j] * inv;
                out[j] = (int8_t)other;
                changed = 1;
            }
        }
        if (!changed) break;
    }
}

typedef struct {
    const float *x, *scale;
    const double *eta;
    size_t d, scratch_bytes;
    char *scratch; /* one block per worker */
    int8_t *out;
} round_job;

static int round_range(void *ctx, size_t begin, size_t end, int worker) {
    const round_job *job = ctx;
    void *scratch = job->scratch + (size_t)worker * job->scratch_bytes;
    for (size_t i = begin; i < end; i++)
        avq_aniso_round_i8(job->x + i * job->d, job->d, job->scale, job->eta[i], scratch,
                           job->out + i * job->d);
    return AVQ_OK;
}

int avq_aniso_round_i8_rows(const float *x, size_t n, size_t d, const float *scale,
                            const double *eta, int threads, int8_t *out) {
    if (n == 0) return AVQ_OK;
    int t = avq_resolve_threads(threads);
    size_t bytes = (avq_aniso_round_i8_scratch(d) + 63) & ~(size_t)63;
    char *scratch = malloc((size_t)t * bytes);
    if (!scratch) return avq_fail_nomem("int8 rounding scratch", (size_t)t * bytes);
    round_job job = {x, scale, eta, d, bytes, scratch, out};
    int st = avq_parallel_for(n, 1024, t, round_range, &job, NULL, NULL, "int8 rows");
    free(scratch);
    return st;
}

double avq_aniso_loss(const float *y, const float *x, const uint8_t *code,
                      const avq_pq_shape *s, const float *codebook, double eta) {
    size_t K = avq_pq_num_blocks(s);
    double r2 = 0.0, par = 0.0, norm2 = avq_norm2_f64(x, s->dim);
    for (size_t m = 0; m < K; m++) {
        size_t start = avq_pq_block_start(s, m), len = avq_pq_block_len(s, m);
        const float *c = avq_pq_block_centers(s, codebook, m) + code[m] * len;
        for (size_t t = 0; t < len; t++) {
            double e = (double)y[start + t] - c[t];
            r2 += e * e;
            par += e * x[start + t];
        }
    }
    if (norm2 > 0.0) par /= sqrt(norm2);
    else par = 0.0;
    return eta * par * par + (r2 - par * par);
}

/* ---- anisotropic codebook update ---------------------------------------- */

enum { UPDATE_MAX_UNKNOWNS = 4096 };

typedef struct {
    const float *y, *x;
    size_t n;
    const avq_pq_shape *s;
    const uint8_t *codes;
    const double *inv_norm, *eta1; /* per point: 1/|x| (0 for x = 0), eta - 1 */
    uint16_t *index;               /* n x d: position in theta of each dimension */
    size_t P;                      /* unknowns, C*d */
    double *M, *b;                 /* P x P system (lower triangle used), rhs */
} update_job;

/* index[i][dim] = where dimension dim of point i's decoded vector sits in
 * theta (= the codebook offset).  Computed once: the accumulation below
 * reads it d times per dimension. */
static int theta_indices(void *ctx, size_t begin, size_t end, int worker) {
    (void)worker;
    const update_job *job = ctx;
    const avq_pq_shape *s = job->s;
    size_t d = s->dim, K = avq_pq_num_blocks(s);
    for (size_t i = begin; i < end; i++) {
        const uint8_t *code = job->codes + i * K;
        uint16_t *idx = job->index + i * d;
        for (size_t m = 0; m < K; m++) {
            size_t start = avq_pq_block_start(s, m), len = avq_pq_block_len(s, m);
            size_t base = s->num_centers * m * s->dims_per_block + code[m] * len;
            for (size_t t = 0; t < len; t++) idx[start + t] = (uint16_t)(base + t);
        }
    }
    return AVQ_OK;
}

/* Rows of the system that belong to blocks [begin, end): every unknown of
 * block m lives in one contiguous range of theta, so a worker owning whole
 * blocks owns whole rows and no sum is ever shared between threads (the
 * result does not depend on the thread count). */
static int update_rows(void *ctx, size_t begin, size_t end, int worker) {
    (void)worker;
    const update_job *job = ctx;
    const avq_pq_shape *s = job->s;
    size_t d = s->dim, P = job->P;
    size_t lo = avq_pq_block_start(s, begin), hi = end < avq_pq_num_blocks(s)
                                                       ? avq_pq_block_start(s, end) : d;
    for (size_t i = 0; i < job->n; i++) {
        const float *y = job->y + i * d, *x = job->x + i * d;
        const uint16_t *idx = job->index + i * d;
        double w = job->eta1[i], inv = job->inv_norm[i];
        double xy = w > 0.0 ? avq_dot_f64(x, y, d) * inv : 0.0;
        for (size_t t = lo; t < hi; t++) {
            size_t r = idx[t];
            double *row = job->M + r * P;
            row[r] += 1.0;
            job->b[r] += y[t];
            if (w <= 0.0) continue;
            double xt = w * x[t] * inv; /* (eta - 1) x^_t */
            job->b[r] += xt * xy;
            xt *= inv;
            for (size_t u = 0; u < d; u++) row[idx[u]] += xt * x[u];
        }
    }
    return AVQ_OK;
}

int avq_aniso_update_codebook(const float *y, const float *x, size_t n,
                              const avq_pq_shape *shape, const uint8_t *codes,
                              const avq_aniso_params *p, float *codebook) {
    int st = check_encode_args(y, x, n, shape, codebook, p, codes);
    if (st != AVQ_OK) return st;
    size_t P = shape->num_centers * shape->dim, K = avq_pq_num_blocks(shape), d = shape->dim;
    if (P > UPDATE_MAX_UNKNOWNS)
        return avq_fail(AVQ_ERR_UNSUPPORTED,
                        "codebook update: %zu unknowns (C=%zu x d=%zu), at most %d supported", P,
                        shape->num_centers, d, UPDATE_MAX_UNKNOWNS);
    for (size_t i = 0; i < n * K; i++)
        if (codes[i] >= shape->num_centers)
            return avq_fail(AVQ_ERR_INVALID, "codebook update: code %u >= %zu at row %zu",
                            (unsigned)codes[i], shape->num_centers, i / K);
    double *M = calloc(P * P, sizeof *M), *b = calloc(P, sizeof *b);
    double *per_point = malloc(2 * (n ? n : 1) * sizeof *per_point);
    uint16_t *index = malloc((n ? n : 1) * d * sizeof *index);
    if (!M || !b || !per_point || !index) {
        st = avq_fail_nomem("codebook update system", P * P * sizeof(double));
        goto done;
    }
    eta_source *src = malloc(sizeof *src);
    if (!src) {
        st = avq_fail_nomem("eta table", sizeof *src);
        goto done;
    }
    eta_source_init(src, p, x, n, d);
    for (size_t i = 0; i < n; i++) {
        double norm2 = avq_norm2_f64(x + i * d, d);
        per_point[i] = norm2 > 0.0 ? 1.0 / sqrt(norm2) : 0.0;
        per_point[n + i] = norm2 > 0.0 ? point_eta(p, src, norm2, d) - 1.0 : 0.0;
    }
    free(src);
    update_job job = {y, x, n, shape, codes, per_point, per_point + n, index, P, M, b};
    st = avq_parallel_for(n, 1024, p->threads, theta_indices, &job, NULL, NULL, "codebook update");
    if (st == AVQ_OK)
        st = avq_parallel_for(K, 1, p->threads, update_rows, &job, NULL, NULL, "codebook update");
    if (st != AVQ_OK) goto done;
    /* each worker filled whole rows, so M is complete and symmetric; the
     * factorisation reads its lower triangle */
    /* ridge toward the current codebook: unused centers stay put, and the
     * system is positive definite even when some center has no points */
    double trace = 0.0;
    for (size_t r = 0; r < P; r++) trace += M[r * P + r];
    double ridge = 1e-9 * (trace / (double)P) + 1e-12;
    for (size_t r = 0; r < P; r++) {
        M[r * P + r] += ridge;
        b[r] += ridge * codebook[r];
    }
    if (!avq_cholesky(M, P)) {
        st = avq_fail(AVQ_ERR_INTERNAL, "codebook update: system not positive definite");
        goto done;
    }
    avq_cholesky_solve(M, P, b);
    for (size_t r = 0; r < P; r++) codebook[r] = (float)b[r];
done:
    free(M);
    free(b);
    free(per_point);
    free(index);
    return st;
}
