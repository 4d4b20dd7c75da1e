/*
 * aniso.h -- the score-aware (anisotropic) loss of Guo et al. 2020 and the
 * encoder that minimises it (doc/DESIGN.md §1 and §2, build step 5).
 *
 * For a datapoint x coded as x~ with error r = x - x~, the loss is
 *     eta * par² + (|r|² - par²),   par = <r, x> / |x|,
 * i.e. the error parallel to x costs eta times more than the orthogonal
 * error.  eta comes from the score threshold T (for unit-norm queries):
 *   asymptotic (ScaNN's choice, the default):  eta = (d-1) T² / (|x|² - T²)
 *   exact finite-d (paper Thm 3.2 with w = 1[t >= T]): see avq_eta().
 * d is the FULL dimension and |x| the norm of the ORIGINAL point, even when
 * the vector being coded is a residual x - c_leaf.
 *
 * Absolute or relative T.  T is a score threshold for unit-norm queries, so
 * an absolute T only has its meaning for data of norm ~1: on raw MIPS data
 * (GloVe word vectors have norms 2.6-6.5) (d-1) T² / (|x|² - T²) < 1 for
 * almost every point, eta clamps to 1 and the "anisotropic" codes are the
 * reconstruction codes.  A relative T (threshold T |x| for point x) keeps the
 * loss of the normalised case for every norm: eta(|x|, T |x|) = eta(1, T).
 * It is the default for the dot-product metric (doc/RESULTS.md, "True
 * MIPS"); for cosine the two coincide.
 */
#ifndef AVQ_ANISO_H
#define AVQ_ANISO_H

#include "pq.h"

#include <stddef.h>
#include <stdint.h>

/* The largest eta we ever use.  Points with |x|² <= T²(1 + AVQ_ETA_GUARD_EPS)
 * (T at or above the point's own norm: the weight function is zero almost
 * everywhere and the formula blows up), and zero vectors, get this value;
 * larger formula values are clamped to it. */
#define AVQ_ETA_MAX 1.0e4
#define AVQ_ETA_GUARD_EPS 1.0e-6

typedef enum {
    AVQ_ETA_ASYMPTOTIC = 0, /* (d-1) T² / (|x|² - T²), as ScaNN */
    AVQ_ETA_EXACT = 1       /* the finite-d integral ratio h_par / h_perp */
} avq_eta_mode;

/* eta for a point of squared norm `norm2` in dimension d at threshold T >= 0.
 * Always finite and in [1, AVQ_ETA_MAX]:
 *   - values below 1 (large norms in the asymptotic form; the exact ratio is
 *     always > 1) are clamped to 1, i.e. plain reconstruction loss -- the
 *     encoder's rule "never grow the parallel error" only makes sense for
 *     eta >= 1;
 *   - T = 0 gives 1;  zero vectors and |x|² <= T²(1+eps) give AVQ_ETA_MAX.
 * A NaN or negative T, or d < 2, gives 1 (no anisotropy). */
double avq_eta(double norm2, size_t d, double T, avq_eta_mode mode);

/* ---- general score weights (issue 19; doc/RESULTS.md "Score-aware
 * weights") ----------------------------------------------------------------
 * For a weight w(t) of the score t = <q, x> (q uniform on the unit sphere),
 * with u = <q, x/|x|> (density ∝ (1-u²)^((d-3)/2)) the paper's decomposition
 * gives h_par ∝ E[w(|x|u) u²] and h_perp ∝ E[w(|x|u)(1-u²)] / (d-1), so
 *     eta = (d-1) E[w(|x|u) u²] / E[w(|x|u) (1-u²)].
 * avq_weight_eta evaluates it by quadrature over the angle (u = cos θ), in
 * logarithms (no overflow for steep weights).  The step weight's value is
 * the exact finite-d eta of avq_eta; its large-d limit is the asymptotic
 * form.  Closed forms for checking: POW gives eta = P + 1 at every norm and
 * d; EXP ~ 1 + L²|x|²/d for large d. */
typedef struct {
    avq_weight_kind kind; /* avq.h */
    double T;             /* STEP and LOGISTIC: the threshold */
    double param;         /* POW: P >= 0; EXP: L >= 0; LOGISTIC: S > 0 */
} avq_weight;

/* NULL when w is a usable weight, else a static message naming the fault
 * (unknown kind, T not finite for STEP/LOGISTIC, P/L < 0 or not finite,
 * S <= 0). */
const char *avq_weight_check(const avq_weight *w);

/* eta of a point of norm `norm` (not squared) in dimension d under w,
 * numerically.  Finite, in [1, AVQ_ETA_MAX]: values below 1 clamp to 1,
 * a weight with no mass on the point's scores (a step with T >= |x|) and
 * zero vectors under STEP give AVQ_ETA_MAX; d < 2 gives 1. */
double avq_weight_eta(const avq_weight *w, double norm, size_t d);

/* eta over a range of norms: n_knots values at norms evenly spaced in
 * [lo, hi], linearly interpolated (clamped outside).  Built once per
 * encoding from the points' norm range; the lookup is O(1) and thread-safe. */
enum { AVQ_ETA_TABLE_KNOTS = 257 };
typedef struct {
    double lo, hi;
    size_t knots;
    double eta[AVQ_ETA_TABLE_KNOTS];
} avq_eta_table;

void avq_eta_table_build(avq_eta_table *t, const avq_weight *w, double lo, double hi, size_t d);
double avq_eta_table_lookup(const avq_eta_table *t, double norm);

typedef struct {
    double threshold;      /* T; NaN = no threshold (see eta) */
    double eta;            /* used when threshold is NaN: > 0 fixes eta for
                              every point (clamped to [1, AVQ_ETA_MAX]);
                              NaN or <= 0 = reconstruction encoding */
    avq_eta_mode eta_mode; /* how T becomes eta */
    int relative;          /* 1: T is relative to each point's norm (eta of
                              x/|x| at T: one eta for every nonzero point,
                              the one a unit vector gets); 0: absolute T */
    int max_rounds;        /* coordinate-descent rounds (default 10) */
    int threads;           /* 0 = one per CPU */
    avq_weight_kind weight; /* STEP (default): threshold/eta as above.
                              Otherwise eta comes from the weight
                              {weight, threshold (LOGISTIC's T), weight_param}
                              numerically, per point norm (an
                              avq_eta_table over the points' norm range)
                              or, relative, at norm 1; eta and eta_mode
                              are then ignored */
    double weight_param;   /* P, L or S (avq_weight) */
} avq_aniso_params;

/* threshold NaN, eta NaN (= reconstruction), asymptotic, 10 rounds, all CPUs. */
void avq_aniso_default_params(avq_aniso_params *p);

/* Encode n vectors y (the residuals being coded, n x d) whose original
 * points are x (n x d; may be the same pointer as y when there is no
 * partition).  Per point in double precision: start from the nearest center
 * per block, then coordinate descent over blocks (visited in descending order
 * of their initial error, up to max_rounds rounds, never growing |par|)
 * taking the move that lowers the anisotropic loss most.  Without eta this is
 * exactly avq_pq_encode.  codes: n x K output.  Multi-threaded, no BLAS.
 * Progress stage "encode". */
int avq_aniso_encode(const float *y, const float *x, size_t n, const avq_pq_shape *shape,
                     const float *codebook, const avq_aniso_params *p, uint8_t *codes,
                     avq_progress_fn progress, void *progress_user);

/* avq_aniso_encode of the residuals of rows x (n x d) in leaf order, without
 * an n x d residual array: rows [leaf_start[l], leaf_start[l + 1]) belong to
 * leaf l (leaf_start[0] = 0, leaf_start[num_leaves] = n) and are coded as
 * x - centers[l] (each residual made as the float difference when its row
 * is encoded).  The codes are the ones avq_aniso_encode gives for an array
 * holding those residuals: the index build uses it to keep its peak memory
 * at the rows plus the codes. */
int avq_aniso_encode_residuals(const float *x, size_t n, const avq_pq_shape *shape,
                               const float *centers, const size_t *leaf_start,
                               size_t num_leaves, const float *codebook,
                               const avq_aniso_params *p, uint8_t *codes,
                               avq_progress_fn progress, void *progress_user);

/* The paper's anisotropic codebook update (Guo et al. §4.2; doc/DESIGN.md
 * §2, build step 4; optional, not used by index training): with the codes
 * fixed, re-solve ALL codebook entries theta (the C*d floats, in codebook
 * layout) in one least-squares problem
 *   [sum_i B_i^T B_i + sum_i (eta_i - 1) u_i u_i^T] theta
 *       = sum_i B_i^T y_i + (eta_i - 1) u_i <x^_i, y_i>,   u_i = B_i^T x^_i,
 * x^_i = x_i/|x_i|, B_i the selection matrix of code i (B_i theta = decoded
 * vector).  That is the minimiser of sum_i eta_i par_i² + |r_i|² - par_i²
 * (divided by h_perp).  A tiny ridge toward the current codebook keeps
 * unused centers where they are.  The system has C*d unknowns and is dense:
 * only C*d <= 4096 is supported (4-bit codes up to d = 256), else
 * AVQ_ERR_UNSUPPORTED.  Multi-threaded and deterministic (each worker owns
 * whole rows of the system); no BLAS.  eta per point as in
 * avq_aniso_encode (p->threshold / p->eta). */
int avq_aniso_update_codebook(const float *y, const float *x, size_t n,
                              const avq_pq_shape *shape, const uint8_t *codes,
                              const avq_aniso_params *p, float *codebook);

/* eta of each of n points x (n x d) under p, as avq_aniso_encode gives
 * it (1 = reconstruction; zero points get 1).  p is checked as there. */
int avq_aniso_point_etas(const float *x, size_t n, size_t d, const avq_aniso_params *p,
                         double *eta);

/* Score-aware int8 rounding of one row (issue 19): out[j] * scale[j]
 * approximates x[j], each out[j] the floor or the ceiling of x[j]/scale[j]
 * (clamped to [-127, 127]), chosen to lower the anisotropic loss at `eta`:
 * start from the nearest values, then flip coordinates to the other side in
 * order of their gain at the start, taking each flip that still lowers the
 * loss (two passes).  eta <= 1 or x = 0 gives plain rounding to nearest
 * (ties away from zero, as roundf).
 * The loss is never above the nearest rounding's. */
void avq_aniso_round_i8(const float *x, size_t d, const float *scale, double eta,
                        void *scratch, int8_t *out);
/* bytes of the scratch one avq_aniso_round_i8 call needs (reuse it per row) */
size_t avq_aniso_round_i8_scratch(size_t d);

/* avq_aniso_round_i8 for n rows (x, out: n x d) with their etas, on
 * `threads` workers (0 = one per CPU); rows are independent, so the result
 * does not depend on the thread count.  AVQ_OK or AVQ_ERR_NOMEM. */
int avq_aniso_round_i8_rows(const float *x, size_t n, size_t d, const float *scale,
                            const double *eta, int threads, int8_t *out);

/* The anisotropic loss of one coded vector (double): r = y - decode(code),
 * par = <r, x>/|x| (0 when x = 0).  For tests and diagnostics. */
double avq_aniso_loss(const float *y, const float *x, const uint8_t *code,
                      const avq_pq_shape *shape, const float *codebook, double eta);

#endif
