/*
 * search.c -- answering queries with an index.
 *
 * One query goes through five steps:
 *   1. prepare    copy (normalise for cosine), check it is finite
 *   2. leaves     score every leaf center with one dot-product kernel call,
 *                 keep the best `leaves_to_search`, visit best first -- the
 *                 top-k threshold then tightens as early as possible, which
 *                 lets the scan reject more candidates in later leaves
 *   3. LUT        one float LUT for the whole query (the leaf only adds a
 *                 bias -<q, c_leaf>), quantized to uint8 once
 *   4. scan       the SIMD fast scan of each leaf's packed codes pushes only
 *                 candidates below the running threshold into ONE top-k
 *                 buffer shared by all leaves
 *   5. reorder    the best `pre_reorder` candidates are re-scored exactly
 *                 (float, float16 or int8 vectors) and the final top-k is taken, with
 *                 ties to the lower caller id
 *
 * All memory a query needs lives in a scratch block allocated once per call
 * (single query) or once per worker (batch), so the hot loops never
 * allocate.  The index is only read: any number of threads may search it
 * while a writer changes it.  A search holds a reader slot (leaf.c) from
 * start to end, takes one snapshot of the leaf versions it will read into
 * `snap` (consistent across leaves: a writer's change is in all of them or
 * in none), and reads those versions only -- the scan and the reorder of a
 * leaf see the same slots even if the writer publishes meanwhile.
 */
#include "avq_internal.h"
#include "centers.h"
#include "cpu.h"
#include "filter.h"
#include "index.h"
#include "lut.h"
#include "pack.h"
#include "scan.h"
#include "topk.h"
#include "vecmath.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t k, leaves, pre_reorder; /* resolved parameters */
    size_t copies;                 /* slots per vector: 2 in a spilled index */
    const avq_filter *filter;      /* NULL: none */
    size_t min_scanned, exact_below;
    float spread_z;                /* leaf ranking bonus weight; 0 = off */
} resolved_params;


typedef struct {
    float *q;               /* dim: the query as searched (normalised)      */
    float *q_i8;            /* dim: q scaled for int8 re-ranking            */
    float *lut;             /* K x C                                        */
    uint8_t *lut8;          /* K x C                                        */
    float *scores;          /* max(L, brute n) center / point scores        */
    avq_neighbor *leaves;   /* L                                            */
    avq_neighbor *cand;     /* candidate buffer, cand_capacity              */
    size_t cand_capacity;
    const void **rows;      /* pre_reorder: the candidates' re-ranking rows  */
    float *exact;           /* pre_reorder                                  */
    avq_neighbor *final;    /* 2k + 1                                       */
    const avq_leaf **snap;  /* L: the version of each leaf this query reads */
    void *block;            /* the one allocation all of the above live in  */
    uint32_t *mask;         /* a leaf's allow mask (filtered searches): grown
                               to the largest leaf seen, then reused        */
    size_t mask_words;
    const avq_tag_leaves **tag_lists; /* AVQ_MAX_FILTER_TAGS: a tag filter's
                                         leaf lists (exact plan)            */
    uint32_t *leaf_mark;    /* L: the query serial that last visited a leaf  */
    uint32_t serial;
    float *leaf_keys;       /* L: ranking keys when spread_z > 0            */
    float spread_z;         /* resolved_params.spread_z                     */
    /* spilled index: the id table that finds a vector's second copy among
     * a query's candidates (dedup_mask + 1 entries, a power of two; an
     * entry is in use when its stamp is dedup_serial) */
    int64_t *dedup_key;
    uint32_t *dedup_pos, *dedup_stamp;
    uint8_t *dedup_drop;    /* max(cand_capacity, final): 1 = a duplicate   */
    int64_t *dedup_ids;     /* max(cand_capacity, final): the items' ids    */
    size_t dedup_mask;
    uint32_t dedup_serial;
    /* leaf selection through the center sketch (centers.h); unused (no
     * room) when the index has none */
    int8_t *sk_q;           /* dim4: the query's codes                       */
    int32_t *sk_dots;       /* 16 x blocks: integer inner products           */
    float *sk_keys;         /* L: estimates of the leaves' ranking keys      */
    const float **sk_rows;  /* L: the surviving centers' rows                */
    float *sk_exact;        /* L: their float inner products                 */
    avq_neighbor *sk_cand;  /* L: the survivors by key                       */
} search_scratch;

/* The fields every avq_search_params has had since struct_size (0.2). */
#define SEARCH_PARAMS_MIN_SIZE (offsetof(avq_search_params, pre_reorder) + sizeof(size_t))
/* ... and the filter fields (0.3). */
#define SEARCH_PARAMS_FILTER_SIZE \
    (offsetof(avq_search_params, filter_exact_below) + sizeof(size_t))
/* ... and the leaf ranking weight (0.4). */
#define SEARCH_PARAMS_SPREAD_SIZE (offsetof(avq_search_params, leaf_spread_z) + sizeof(float))

static int resolve_params(const avq_index *idx, const avq_search_params *p,
                          resolved_params *r) {
    if (!p) return avq_fail(AVQ_ERR_INVALID, "search: NULL params");
    if (p->struct_size < SEARCH_PARAMS_MIN_SIZE)
        return avq_fail(AVQ_ERR_INVALID,
                        "search: params.struct_size is %zu: initialise the struct with "
                        "avq_search_params_init()", p->struct_size);
    const avq_quantizer *q = idx->q;
    if (p->k == 0) return avq_fail(AVQ_ERR_INVALID, "search: k must be >= 1");
    if (p->k > (1u << 20))
        return avq_fail(AVQ_ERR_INVALID, "search: k = %zu is unreasonably large (max 1048576)",
                        p->k);
    if (p->pre_reorder > (1u << 22))
        return avq_fail(AVQ_ERR_INVALID, "search: pre_reorder = %zu is unreasonably large",
                        p->pre_reorder);
    r->k = p->k;
    r->leaves = p->leaves_to_search ? p->leaves_to_search : q->default_leaves_to_search;
    /* more leaves than the index has means all of them (as FAISS clamps
     * nprobe); the exact tier (no leaves) ignores the number */
    if (idx->num_leaves > 0 && r->leaves > idx->num_leaves) r->leaves = idx->num_leaves;
    size_t pre = p->pre_reorder ? p->pre_reorder : q->default_pre_reorder;
    /* a spilled index may list a vector twice among the candidates: without
     * re-ranking, 2k of them still name at least k distinct vectors */
    r->copies = AVQ_COPIES(q);
    r->pre_reorder = q->reorder == AVQ_REORDER_NONE ? r->k * r->copies
                                                    : (pre < r->k ? r->k : pre);
    r->filter = NULL;
    r->min_scanned = AVQ_FILTER_MIN_SCANNED_PER_CANDIDATE * r->pre_reorder;
    r->exact_below = AVQ_FILTER_EXACT_BELOW;
    if (p->struct_size >= SEARCH_PARAMS_FILTER_SIZE) {
        r->filter = p->filter;
        if (p->filter_min_scanned) r->min_scanned = p->filter_min_scanned;
        if (p->filter_exact_below) r->exact_below = p->filter_exact_below;
    }
    /* leaf ranking: the index's weight unless overridden; only a
     * partitioned index has leaves to rank */
    r->spread_z = q->leaf_spread ? q->params.leaf_spread_z : 0.0f;
    if (p->struct_size >= SEARCH_PARAMS_SPREAD_SIZE && p->leaf_spread_z != 0.0f) {
        float z = p->leaf_spread_z;
        if (isnan(z) || isinf(z))
            return avq_fail(AVQ_ERR_INVALID, "search: leaf_spread_z must be a finite number, got %g",
                            (double)z);
        if (z > 0.0f && !q->leaf_spread && q->mode == AVQ_MODE_PQ)
            return avq_fail(AVQ_ERR_INVALID,
                            "search: leaf_spread_z = %g, but this index keeps no leaf spreads "
                            "(built with leaf_spread_z = 0): rebuild it with a weight to use one",
                            (double)z);
        r->spread_z = z > 0.0f && q->leaf_spread ? z : 0.0f;
    }
    return AVQ_OK;
}

/* Carve one 64-byte aligned allocation into `count` arrays of sizes[i] bytes,
 * storing each array's address through slots[i]; returns the block (free it
 * with avq_free_aligned) or NULL after recording the error. */
static void *carve_block(const size_t *sizes, void **const *slots, size_t count,
                         const char *what) {
    size_t total = 0;
    for (size_t i = 0; i < count; i++) total += avq_align64(sizes[i]);
    char *p = avq_alloc_aligned(total);
    if (!p) {
        avq_fail_nomem(what, total);
        return NULL;
    }
    void *block = p;
    for (size_t i = 0; i < count; i++) {
        *slots[i] = p;
        p += avq_align64(sizes[i]);
    }
    return block;
}

/* The exact tier scores a leaf in pieces of this many rows. */
enum { BRUTE_PIECE = 1024 };

static int scratch_init(search_scratch *s, const avq_index *idx, const resolved_params *r) {
    size_t d = idx->dim, KC = idx->q->num_blocks * idx->q->num_centers;
    size_t nscores = idx->num_leaves > BRUTE_PIECE ? idx->num_leaves : BRUTE_PIECE;
    s->cand_capacity = 2 * r->pre_reorder + 1;
    size_t nfinal = 2 * r->k * r->copies + 1;
    size_t ndedup = r->copies > 1 ? (s->cand_capacity > nfinal ? s->cand_capacity : nfinal) : 0;
    size_t table = 0;
    while (ndedup && table < 2 * ndedup) table = table ? 2 * table : 16;
    s->dedup_mask = table ? table - 1 : 0;
    s->dedup_serial = 0;
    const avq_center_sketch *sk = idx->q->sketch;
    size_t sk_L = sk ? idx->num_leaves : 0;
    const size_t sizes[] = {
        sk ? sk->dim4 : 0,           sk ? 16 * sk->blocks * sizeof(int32_t) : 0,
        sk_L * sizeof(float),
        sk_L * sizeof(float *),      sk_L * sizeof(float),
        sk_L * sizeof(avq_neighbor),
        d * sizeof(float),           d * sizeof(float),
        KC * sizeof(float),          KC,
        nscores * sizeof(float),     idx->num_leaves * sizeof(avq_neighbor),
        s->cand_capacity * sizeof(avq_neighbor), r->pre_reorder * sizeof(void *),
        r->pre_reorder * sizeof(float), nfinal * sizeof(avq_neighbor),
        idx->num_leaves * sizeof(avq_leaf *),
        r->spread_z > 0.0f ? idx->num_leaves * sizeof(float) : 0,
        table * sizeof(int64_t),     table * sizeof(uint32_t),
        table * sizeof(uint32_t),    ndedup,
        ndedup * sizeof(int64_t),
    };
    void **const slots[] = {(void **)&s->sk_q,   (void **)&s->sk_dots,
                            (void **)&s->sk_keys,
                            (void **)&s->sk_rows, (void **)&s->sk_exact,
                            (void **)&s->sk_cand,
                            (void **)&s->q,      (void **)&s->q_i8,   (void **)&s->lut,
                            (void **)&s->lut8,   (void **)&s->scores, (void **)&s->leaves,
                            (void **)&s->cand,   (void **)&s->rows, (void **)&s->exact,
                            (void **)&s->final,  (void **)&s->snap,   (void **)&s->leaf_keys,
                            (void **)&s->dedup_key, (void **)&s->dedup_pos,
                            (void **)&s->dedup_stamp, (void **)&s->dedup_drop,
                            (void **)&s->dedup_ids};
    s->spread_z = r->spread_z;
    s->mask = NULL;
    s->mask_words = 0;
    s->tag_lists = NULL;
    s->leaf_mark = NULL;
    s->serial = 0;
    s->block = carve_block(sizes, slots, sizeof sizes / sizeof sizes[0], "search scratch");
    if (s->block && table) memset(s->dedup_stamp, 0, table * sizeof(uint32_t));
    return s->block ? AVQ_OK : AVQ_ERR_NOMEM;
}

/* A candidate's id during the scan: (leaf << 32 | slot), see index.h. */
#define CAND_LEAF(id) ((size_t)((uint64_t)(id) >> 32))
#define CAND_SLOT(id) ((size_t)((uint64_t)(id) & 0xFFFFFFFFu))

/* ---- spilled copies -------------------------------------------------------
 *
 * A spilled index (avq_build_params.spill) keeps every vector in two leaves,
 * so a query that scans both may list it twice.  Duplicates are dropped
 * before re-ranking -- re-scoring a row twice is wasted work, and the
 * pre_reorder budget should buy distinct vectors -- keeping the copy with
 * the better approximate distance; and once more in the output, for the
 * paths that score rows directly (the exact plan of a filtered search).
 * A hash table in the scratch, stamped per call so it is never cleared.
 */

/* Which of the n items (ids[i]) are repeats of an earlier-or-better one:
 * drop[i] = 1 for all but the copy with the smallest dist (ties: the
 * first).  Returns the number dropped. */
static size_t mark_duplicates(search_scratch *s, const int64_t *ids, const avq_neighbor *items,
                              size_t n) {
    if (++s->dedup_serial == 0) { /* wrapped: forget every stamp */
        memset(s->dedup_stamp, 0, (s->dedup_mask + 1) * sizeof(uint32_t));
        s->dedup_serial = 1;
    }
    size_t dropped = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t z = (uint64_t)ids[i] * 0x9E3779B97F4A7C15ull;
        size_t h = (size_t)(z >> 32) & s->dedup_mask;
        s->dedup_drop[i] = 0;
        for (;; h = (h + 1) & s->dedup_mask) {
            if (s->dedup_stamp[h] != s->dedup_serial) {
                s->dedup_stamp[h] = s->dedup_serial;
                s->dedup_key[h] = ids[i];
                s->dedup_pos[h] = (uint32_t)i;
                break;
            }
            if (s->dedup_key[h] != ids[i]) continue;
            size_t j = s->dedup_pos[h];
            if (items[i].dist < items[j].dist) {
                s->dedup_drop[j] = 1;
                s->dedup_pos[h] = (uint32_t)i;
            } else {
                s->dedup_drop[i] = 1;
            }
            dropped++;
            break;
        }
    }
    return dropped;
}

/* Remove the marked items, keeping the order; returns the new count. */
static size_t drop_marked(const search_scratch *s, avq_neighbor *items, size_t n) {
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (!s->dedup_drop[i]) items[kept++] = items[i];
    return kept;
}

/* Candidates ((leaf, slot) of the versions in s->snap) naming one vector
 * twice: keep each once.  No-op without spilling. */
static size_t dedupe_candidates(const avq_index *idx, search_scratch *s, avq_neighbor *c,
                                size_t count) {
    if (AVQ_COPIES(idx->q) == 1 || count < 2) return count;
    int64_t *ids = s->dedup_ids;
    for (size_t i = 0; i < count; i++) ids[i] = s->snap[CAND_LEAF(c[i].id)]->store->ids[CAND_SLOT(c[i].id)];
    return mark_duplicates(s, ids, c, count) ? drop_marked(s, c, count) : count;
}

static void scratch_free(search_scratch *s) {
    avq_free_aligned(s->block);
    free(s->mask);
    free(s->tag_lists);
    free(s->leaf_mark);
}

/* The exact plan's arrays, made on its first use (unfiltered searches
 * never pay for them). */
static int exact_scratch(search_scratch *s, size_t num_leaves) {
    if (s->leaf_mark) return AVQ_OK;
    s->tag_lists = malloc(AVQ_MAX_FILTER_TAGS * sizeof *s->tag_lists);
    s->leaf_mark = calloc(num_leaves, sizeof *s->leaf_mark);
    if (!s->tag_lists || !s->leaf_mark) {
        free(s->tag_lists);
        free(s->leaf_mark);
        s->tag_lists = NULL;
        s->leaf_mark = NULL;
        return avq_fail_nomem("exact plan scratch", num_leaves * sizeof(uint32_t));
    }
    return AVQ_OK;
}

/* Room in s->mask for a leaf of n slots.  Leaves only grow between
 * compactions, so after the first few queries this never allocates. */
static int mask_reserve(search_scratch *s, size_t n) {
    size_t words = (n + 31) / 32;
    if (words <= s->mask_words) return AVQ_OK;
    size_t grown = words + words / 2 + 16;
    uint32_t *m = realloc(s->mask, grown * sizeof *m);
    if (!m) return avq_fail_nomem("filter mask", grown * sizeof *m);
    s->mask = m;
    s->mask_words = grown;
    return AVQ_OK;
}

/* Step 1: the query as searched into q (and q_i8 for int8 re-ranking).
 * Returns |q|² (needed to report L2 distances). */
static int prepare_query(const avq_index *idx, const float *query, float *q, float *q_i8,
                         double *qnorm2) {
    size_t d = idx->dim;
    /* finite, and small enough that every LUT entry and score stays finite
     * (vecmath.h: the same rule as for the indexed vectors) */
    int st = avq_check_query(query, d, idx->q->params.metric, "search");
    if (st != AVQ_OK) return st;
    memcpy(q, query, d * sizeof(float));
    if (idx->q->params.metric == AVQ_METRIC_COSINE) avq_normalize_rows(q, 1, d);
    *qnorm2 = avq_norm2_f64(q, d);
    if (avq_keeps_int8(idx->q))
        for (size_t j = 0; j < d; j++) q_i8[j] = q[j] * idx->q->i8_scale[j];
    return AVQ_OK;
}

/* Distance (smaller is better) from an inner product with a stored point. */
static inline float point_distance(const avq_index *idx, float dot, const avq_leaf *leaf,
                                   size_t slot) {
    return idx->q->params.metric == AVQ_METRIC_L2 ? leaf->store->norms2[slot] - 2.0f * dot : -dot;
}

/* Exact scores of every live point the filter allows: the brute-force
 * tier (one leaf). */
static int score_all_points(const avq_index *idx, const avq_kernels *kern, search_scratch *s,
                            const avq_filter *filter, avq_topk *out) {
    const avq_leaf *leaf = avq_leaf_load(idx, 0);
    size_t d = idx->dim, allowed = 0;
    const uint32_t *keep = leaf->alive;
    if (filter) {
        int st = mask_reserve(s, leaf->n);
        if (st == AVQ_OK) st = avq_filter_leaf_mask(filter, leaf, s->mask, &allowed);
        if (st != AVQ_OK) return st;
        if (allowed == 0) return AVQ_OK;
        keep = s->mask;
    }
    for (size_t first = 0; first < leaf->n; first += BRUTE_PIECE) {
        size_t count = leaf->n - first < BRUTE_PIECE ? leaf->n - first : BRUTE_PIECE;
        kern->dot_rows(s->q, leaf->store->vectors + first * d, count, d, s->scores);
        for (size_t i = 0; i < count; i++) {
            size_t slot = first + i;
            if (!keep || (keep[slot >> 5] >> (slot & 31)) & 1u)
                avq_topk_push(out, point_distance(idx, s->scores[i], leaf, slot),
                              leaf->store->ids[slot]);
        }
    }
    return AVQ_OK;
}

/* The best `count` leaves by the distances select_leaves left in
 * s->scores, ranked by s->leaf_keys when leaf spreads are on; each
 * neighbor's dist is the leaf's center distance (its scan bias) either way. */
static void rank_leaves(const avq_index *idx, search_scratch *s, size_t count) {
    size_t L = idx->num_leaves;
    if (s->spread_z <= 0.0f) {
        avq_smallest_of(s->scores, L, count, s->leaves);
        return;
    }
    count = avq_smallest_of(s->leaf_keys, L, count, s->leaves);
    for (size_t i = 0; i < count; i++) s->leaves[i].dist = s->scores[s->leaves[i].id];
}

/* Step 2: the best `count` leaves of query q, best first, into s->leaves
 * (dist = the leaf's center distance, which is also its scan bias).  With
 * leaf spreads (dot and cosine only) a leaf is ranked by
 * -<q, c> - z |q| spread: see leaf_spreads in quantizer.c. */
static void leaves_from_dots(const avq_index *idx, const float *q, search_scratch *s,
                             size_t count);

static bool select_leaves_sketched(const avq_index *idx, const avq_kernels *kern,
                                   const float *q, search_scratch *s, size_t count);

/* Every leaf's distance in s->scores (and ranking key in s->leaf_keys),
 * the best `count` in s->leaves: for callers that may rank all leaves
 * later (rank_leaves). */
static void select_leaves_scoring_all(const avq_index *idx, const avq_kernels *kern,
                                      const float *q, search_scratch *s, size_t count) {
    kern->dot_rows(q, idx->q->centers, idx->num_leaves, idx->dim, s->scores);
    leaves_from_dots(idx, q, s, count);
}

/* The best `count` leaves in s->leaves; s->scores holds only theirs. */
static void select_leaves(const avq_index *idx, const avq_kernels *kern, const float *q,
                          search_scratch *s, size_t count) {
    if (select_leaves_sketched(idx, kern, q, s, count)) return;
    select_leaves_scoring_all(idx, kern, q, s, count);
}

/* A leaf's distance from <q, c>, and the weight of its spread in the
 * ranking key (dist - w spread): one definition for the float selection
 * and the sketched one, which must agree bit for bit. */
static inline float leaf_distance(const avq_index *idx, size_t l, float dot) {
    if (idx->q->params.metric == AVQ_METRIC_L2) {
        float cn = idx->q->center_norms[l];
        return cn * cn - 2.0f * dot;
    }
    return -dot;
}

static inline float spread_weight(const search_scratch *s, const float *q, size_t d) {
    return s->spread_z > 0.0f ? s->spread_z * (float)sqrt(avq_norm2_f64(q, d)) : 0.0f;
}

/* select_leaves after its kernel call: from the inner products <q, c> in
 * s->scores (the batch computes them for many queries at a time). */
static void leaves_from_dots(const avq_index *idx, const float *q, search_scratch *s,
                             size_t count) {
    size_t L = idx->num_leaves;
    float *dist = s->scores;
    for (size_t l = 0; l < L; l++) dist[l] = leaf_distance(idx, l, dist[l]);
    if (s->spread_z > 0.0f) {
        float w = spread_weight(s, q, idx->dim);
        const float *spread = idx->q->leaf_spread;
        for (size_t l = 0; l < L; l++) s->leaf_keys[l] = dist[l] - w * spread[l];
    }
    rank_leaves(idx, s, count);
}

/* select_leaves through the center sketch (centers.h).  The integer inner
 * products give every leaf an estimate of its ranking key within +-E of the
 * float key (E from the sketch's bound, for all leaves at once): a leaf
 * whose estimate is more than 2E above the count-th smallest estimate
 * cannot be among the best count (count leaves have float keys below that
 * estimate + E), so only the others are scored in float -- by the same
 * kernel and formulas as select_leaves, so the leaves, their order and
 * their distances are exactly its.  Returns false (nothing done) when there
 * is no sketch, when most leaves are wanted anyway, or when the bound
 * leaves too many. */
static bool select_leaves_sketched(const avq_index *idx, const avq_kernels *kern,
                                   const float *q, search_scratch *s, size_t count) {
    const avq_center_sketch *sk = idx->q->sketch;
    size_t L = idx->num_leaves, d = idx->dim;
    if (!sk || count == 0 || 4 * count > L) return false;
    avq_sketch_query sq;
    avq_center_sketch_query(sk, q, s->sk_q, &sq);
    if (sq.tau == 0.0) return false;
    kern->sketch_dots(s->sk_q, sk->codes, sk->code_sums, sk->blocks, sk->dim4, s->sk_dots);
    bool l2 = idx->q->params.metric == AVQ_METRIC_L2;
    float w = spread_weight(s, q, d);
    const float *spread = idx->q->leaf_spread, *cnorm = idx->q->center_norms;
    /* estimates in float, in simple loops the compiler vectorizes */
    float *est = s->sk_keys;
    float step = (float)(sq.tau * (l2 ? 2.0 : 1.0));
    for (size_t l = 0; l < L; l++) est[l] = -step * (float)s->sk_dots[l];
    if (l2)
        for (size_t l = 0; l < L; l++) est[l] += cnorm[l] * cnorm[l];
    if (w > 0.0f)
        for (size_t l = 0; l < L; l++) est[l] -= w * spread[l];
    /* every key and estimate is at most `mag` in size (|c|^2 for L2, plus
     * the inner product's share, plus the spread's); 2^-20 of it covers the
     * rounding of both (a few float operations each) */
    double cn2 = l2 ? sk->max_norm * sk->max_norm : 0.0;
    double mag = cn2 + (l2 ? 2.0 : 1.0) * (sq.q_norm * sk->max_norm + sq.dot_bound) +
                 (double)w * sk->max_spread;
    double E = (l2 ? 2.0 : 1.0) * sq.dot_bound + 0x1p-20 * mag;
    float mth = avq_floats_smallest(est, L, count, s->sk_exact);
    float limit = (float)((double)mth + 2.0 * E + 0x1p-20 * mag);
    size_t n = 0;
    for (size_t l = 0; l < L; l++) {
        s->sk_cand[n].id = (int64_t)l;
        s->sk_rows[n] = idx->q->centers + l * d;
        n += (size_t)(est[l] <= limit);
    }
    if (4 * n > 3 * L) return false; /* hardly narrowed: score them all */
    kern->dot_gather(q, s->sk_rows, d, n, s->sk_exact);
    for (size_t i = 0; i < n; i++) {
        size_t l = (size_t)s->sk_cand[i].id;
        float dist = leaf_distance(idx, l, s->sk_exact[i]);
        s->scores[l] = dist;
        s->sk_cand[i].dist = w > 0.0f ? dist - w * spread[l] : dist;
    }
    if (n > count) avq_neighbors_select(s->sk_cand, n, count);
    avq_neighbors_sort(s->sk_cand, count);
    for (size_t i = 0; i < count; i++) {
        int64_t l = s->sk_cand[i].id;
        s->leaves[i] = (avq_neighbor){s->scores[l], l};
    }
    return true;
}

/* Bias a leaf adds to every point's LUT distance: dot/cosine score
 * <q, c> + <q, r>, so the leaf adds -<q, c>, exactly its selection distance;
 * L2 (codes of raw vectors) has none. */
static inline double leaf_bias(const avq_index *idx, const avq_neighbor *leaf) {
    return idx->q->params.metric == AVQ_METRIC_L2 ? 0.0 : (double)leaf->dist;
}

/* A leaf version as the kernels see it: its complete groups (part 0) and,
 * for a 4-bit leaf that is filling up, its tail group (part 1).  Candidate
 * ids are (leaf << 32 | slot). */
static inline int scan_parts_of(const avq_index *idx, size_t l, const avq_leaf *v,
                                avq_scan_leaf parts[2]) {
    int64_t base = (int64_t)((uint64_t)l << 32);
    size_t K = idx->q->num_blocks;
    int count = 0;
    if (v->full > 0)
        parts[count++] = (avq_scan_leaf){v->store->codes, v->full, K, NULL, base, v->alive};
    if (v->n > v->full)
        parts[count++] = (avq_scan_leaf){v->tail, v->n - v->full, K, NULL,
                                         base + (int64_t)v->full,
                                         v->alive ? v->alive + v->full / 32 : NULL};
    return count;
}

/* Step 3: the query's float LUT (in s->lut) quantized into lut8. */
static int build_lut8(const avq_index *idx, const float *q, search_scratch *s, uint8_t *lut8,
                      avq_lut8_info *info) {
    const avq_quantizer *qz = idx->q;
    int st = avq_lut_build(q, idx->dim, qz->dims_per_block, qz->codebook, qz->num_centers,
                           qz->params.metric, s->lut);
    if (st != AVQ_OK) return st;
    return avq_lut_quantize(s->lut, qz->num_blocks, qz->num_centers, AVQ_LUT8_BLOCK_MIN,
                            lut8, info);
}

static inline avq_topk_scan_fn topk_kernel(const avq_index *idx, const avq_kernels *kern) {
    return idx->q->bits == 4 ? kern->lut16_topk : kern->lut256_topk;
}

/* The most queries that kernel scans in one call. */
static inline size_t topk_batch(const avq_index *idx, const avq_kernels *kern) {
    return idx->q->bits == 4 ? kern->lut16_topk_batch : AVQ_SCAN_MAX_BATCH;
}

/* Seeding a fresh candidate list.  A query's first leaf is scanned with an
 * open threshold: every one of its points enters the buffer, which fills
 * and compacts several times before the threshold means anything -- on
 * GloVe at 20 leaves and 80 candidates, 72% of a query's pushes and most
 * of its compactions happened in its first leaf.  Instead, the sums of a
 * sample of that leaf's points (SEED_GROUPS groups of 32 spread over it)
 * give a limit that about 1.5 k of its points should pass, and the leaf is
 * scanned with the buffer's threshold preset to the limit's distance: the
 * scan pushes exactly the points at or below it.  If k live points were
 * pushed, every point left out is worse than k pushed ones, so the
 * candidate list (and every answer) is exactly the one of the plain scan.
 * If fewer were (an unlucky sample: 1.2% of first leaves on GloVe at 20
 * leaves : 80 candidates, 2.0% at 25 : 50), the buffer is emptied and the
 * leaf scanned again with an open threshold. */
enum { SEED_GROUPS = 4 };

/* Is seeding worth it for these queries on a part of n points?  All must be
 * fresh (an empty buffer with an open threshold), the codes 4-bit with int16
 * sums, and the part large enough to leave most points out. */
static bool seedable(const avq_index *idx, const avq_scan_leaf *part, size_t nq,
                     const avq_scan_query *queries) {
    if (idx->q->bits != 4 || part->K > AVQ_SCAN_CHUNK_BLOCKS) return false;
    for (size_t j = 0; j < nq; j++) {
        const avq_topk *t = queries[j].topk;
        if (t->size != 0 || t->worst_dist != INFINITY || part->n < 4 * t->k) return false;
    }
    return true;
}

/* Presets the thresholds of nq fresh queries from a sample of part. */
static void seed_thresholds(const avq_kernels *kern, const avq_scan_leaf *part, size_t nq,
                            const avq_scan_query *queries) {
    size_t groups = (part->n + 31) / 32, group_bytes = avq_pack_group_bytes(4, part->K);
    for (size_t first = 0; first < nq; first += AVQ_SCAN_MAX_BATCH) {
        size_t count = nq - first < AVQ_SCAN_MAX_BATCH ? nq - first : AVQ_SCAN_MAX_BATCH;
        int16_t sums[AVQ_SCAN_MAX_BATCH][32 * SEED_GROUPS];
        const uint8_t *luts[AVQ_SCAN_MAX_BATCH];
        for (size_t j = 0; j < count; j++) luts[j] = queries[first + j].lut8;
        /* on a leaf of fewer than SEED_GROUPS groups some are sampled twice:
         * the limit is only an estimate, the count after the scan decides */
        size_t sampled = 0;
        for (size_t i = 0; i < SEED_GROUPS; i++) {
            size_t g = i * groups / SEED_GROUPS, n = part->n - 32 * g < 32 ? part->n - 32 * g : 32;
            int16_t *out[AVQ_SCAN_MAX_BATCH];
            for (size_t j = 0; j < count; j++) out[j] = sums[j] + sampled;
            kern->lut16_sums16(part->codes + g * group_bytes, n, part->K, count, luts, out);
            sampled += n;
        }
        for (size_t j = 0; j < count; j++) {
            const avq_scan_query *query = &queries[first + j];
            size_t k = query->topk->k;
            size_t rank = ((k + k / 2) * sampled + part->n - 1) / part->n;
            if (rank >= sampled) rank = sampled - 1;
            float sample[32 * SEED_GROUPS];
            for (size_t i = 0; i < sampled; i++) sample[i] = sums[j][i];
            int32_t limit = (int32_t)avq_floats_nth(sample, sampled, rank);
            avq_topk_bound(query->topk, avq_lut8_dist(query->base, query->scale, limit));
        }
    }
}

/* The thresholded scan of a leaf's parts for nq queries; fresh candidate
 * lists are seeded first. */
static void scan_parts(const avq_index *idx, const avq_kernels *kern, const avq_scan_leaf *parts,
                       int np, size_t nq, const avq_scan_query *queries) {
    avq_topk_scan_fn scan = topk_kernel(idx, kern);
    if (np > 0 && seedable(idx, &parts[0], nq, queries)) {
        seed_thresholds(kern, &parts[0], nq, queries);
        scan(&parts[0], nq, queries);
        for (size_t j = 0; j < nq; j++) {
            avq_topk *t = queries[j].topk;
            if (t->size >= t->k) continue; /* k pushed (a compaction keeps k) */
            avq_topk_reset(t);
            scan(&parts[0], 1, &queries[j]);
        }
        parts++, np--;
    }
    for (int part = 0; part < np; part++) scan(&parts[part], nq, queries);
}

/* The next leaf's first code groups are requested while this leaf is
 * scanned: a leaf is only a few KB, so the hardware prefetcher, which needs a
 * few misses to detect a stream, would otherwise start every leaf cold. */
enum { LEAF_PREFETCH_BYTES = 1024 };

static void prefetch_leaf_start(const avq_index *idx, const avq_leaf *v) {
    if (v->full == 0) return;
    const char *p = (const char *)v->store->codes;
    size_t K = idx->q->num_blocks;
    size_t bytes = (v->full + 31) / 32 * avq_pack_group_bytes(idx->q->bits, K);
    if (bytes > LEAF_PREFETCH_BYTES) bytes = LEAF_PREFETCH_BYTES;
    for (size_t b = 0; b < bytes; b += 64) AVQ_PREFETCH(p + b);
}

/* Steps 3-4: quantized LUT and the fast scan of the chosen leaves, best
 * first, into `cand`. */
static void scan_until_k(const avq_index *idx, const avq_kernels *kern, search_scratch *s,
                         const float *q, const avq_leaf *const *snap, const uint8_t *lut8,
                         const avq_lut8_info *info, size_t min_leaves, size_t k,
                         const size_t *leaf_live, avq_topk *cand);
static size_t live_in(const avq_leaf *const *snap, const size_t *leaf_live,
                      const avq_neighbor *chosen, size_t count);

static int scan_leaves(const avq_index *idx, const avq_kernels *kern, search_scratch *s,
                       size_t count, size_t k, avq_topk *cand) {
    avq_lut8_info info;
    int st = build_lut8(idx, s->q, s, s->lut8, &info);
    if (st != AVQ_OK) return st;
    avq_snapshot_leaves(idx, s->snap, s->leaves, count);
    for (size_t i = 0; i < count; i++) {
        size_t l = (size_t)s->leaves[i].id;
        avq_scan_leaf parts[2];
        int np = scan_parts_of(idx, l, s->snap[l], parts);
        if (i + 1 < count) prefetch_leaf_start(idx, s->snap[s->leaves[i + 1].id]);
        avq_scan_query query = {s->lut8, leaf_bias(idx, &s->leaves[i]) + info.offset,
                                info.scale, cand};
        scan_parts(idx, kern, parts, np, 1, &query);
    }
    if (count < idx->num_leaves && live_in(s->snap, NULL, s->leaves, count) < k) {
        avq_snapshot_leaves(idx, s->snap, NULL, 0);
        scan_until_k(idx, kern, s, s->q, s->snap, s->lut8, &info, count, k, NULL, cand);
    }
    return AVQ_OK;
}

/* Live points of the first `count` leaves of `chosen` (versions in snap,
 * or the counts of a whole sharded index in leaf_live when not NULL). */
static size_t live_in(const avq_leaf *const *snap, const size_t *leaf_live,
                      const avq_neighbor *chosen, size_t count) {
    size_t live = 0;
    for (size_t i = 0; i < count; i++)
        live += leaf_live ? leaf_live[chosen[i].id] : snap[chosen[i].id]->live;
    return live;
}

/* When the chosen leaves hold fewer than k live points (empty leaves after
 * removals, or duplicate-heavy data whose k-means left leaves empty), the
 * query is scanned again over the leaves in order until they hold k live
 * points: a search of an index with at least k points always returns k
 * results.  snap must hold every leaf (a full snapshot); cand is reset.
 * leaf_live (NULL: snap's): the live counts that decide where to stop. */
static void scan_until_k(const avq_index *idx, const avq_kernels *kern, search_scratch *s,
                         const float *q, const avq_leaf *const *snap, const uint8_t *lut8,
                         const avq_lut8_info *info, size_t min_leaves, size_t k,
                         const size_t *leaf_live, avq_topk *cand) {
    size_t L = idx->num_leaves, live = 0;
    avq_topk_init(cand, cand->k, cand->items, cand->capacity);
    select_leaves_scoring_all(idx, kern, q, s, L);
    for (size_t i = 0; i < L; i++) {
        size_t l = (size_t)s->leaves[i].id;
        avq_scan_leaf parts[2];
        int np = scan_parts_of(idx, l, snap[l], parts);
        avq_scan_query query = {lut8, leaf_bias(idx, &s->leaves[i]) + info->offset, info->scale,
                                cand};
        scan_parts(idx, kern, parts, np, 1, &query);
        live += leaf_live ? leaf_live[l] : snap[l]->live;
        if (i + 1 >= min_leaves && live >= k) break;
    }
}


/* The re-ranking inner products of the candidates ((leaf, slot) of the
 * versions in s->snap) into s->exact (index with reorder data). */
/* The kind of re-ranking rows an index keeps (reorder 'none' keeps none:
 * its callers never ask). */
typedef enum { ROWS_F32, ROWS_F16, ROWS_I8 } row_kind;

static inline row_kind rows_kept(const avq_index *idx) {
    return avq_keeps_float(idx->q) ? ROWS_F32 : avq_keeps_half(idx->q) ? ROWS_F16 : ROWS_I8;
}

static inline size_t row_bytes(const avq_index *idx, row_kind kind) {
    return idx->dim * (kind == ROWS_F32 ? sizeof(float) : kind == ROWS_F16 ? sizeof(uint16_t) : 1);
}

static inline const void *row_at(const avq_leaf_store *st, row_kind kind, size_t slot, size_t d) {
    return kind == ROWS_F32   ? (const void *)(st->vectors + slot * d)
           : kind == ROWS_F16 ? (const void *)(st->vectors_f16 + slot * d)
                              : (const void *)(st->vectors_i8 + slot * d);
}

/* out[i] = <q, rows[i]> for count stored rows of this kind (q_i8: the query
 * with the int8 scales folded in). */
static void dot_stored_rows(const avq_index *idx, const avq_kernels *kern, row_kind kind,
                            const float *q, const float *q_i8, const void *const *rows,
                            size_t count, float *out) {
    size_t d = idx->dim;
    if (kind == ROWS_F32)
        kern->dot_gather(q, (const float *const *)rows, d, count, out);
    else if (kind == ROWS_F16)
        kern->dot_gather_f16(q, (const uint16_t *const *)rows, d, count, out);
    else
        kern->dot_gather_i8(q_i8, (const int8_t *const *)rows, d, count, out);
}

/* Requests the re-ranking rows (and ids) of candidates c[0..count) (versions
 * in snap) and stores where each row is in rows[0..count).  The rows
 * are scattered over the whole index (one cache miss per line); requesting
 * all of them before the first dot product lets the misses overlap instead
 * of being paid one row at a time. */
static void request_rows(const avq_index *idx, const avq_leaf *const *snap, const avq_neighbor *c,
                         size_t count, const void **rows) {
    row_kind kind = rows_kept(idx);
    size_t d = idx->dim, bytes = row_bytes(idx, kind);
    for (size_t i = 0; i < count; i++) {
        const avq_leaf_store *st = snap[CAND_LEAF(c[i].id)]->store;
        size_t slot = CAND_SLOT(c[i].id);
        const char *row = row_at(st, kind, slot, d);
        for (size_t b = 0; b < bytes; b += 64) AVQ_PREFETCH(row + b);
        AVQ_PREFETCH(row + bytes - 1);
        AVQ_PREFETCH(&st->ids[slot]);
        rows[i] = row;
    }
}

static void score_candidates(const avq_index *idx, const avq_kernels *kern, const float *q,
                             const float *q_i8, search_scratch *s, const avq_neighbor *c,
                             size_t count) {
    request_rows(idx, s->snap, c, count, s->rows);
    dot_stored_rows(idx, kern, rows_kept(idx), q, q_i8, s->rows, count, s->exact);
}

/* Step 5: exact re-scoring of the candidates ((leaf, slot) of the versions
 * in s->snap) into `out`. */
static void reorder_candidates(const avq_index *idx, const avq_kernels *kern, const float *q,
                               const float *q_i8, search_scratch *s, const avq_neighbor *c,
                               size_t count, avq_topk *out) {
    const avq_leaf *const *snap = s->snap;
    if (idx->q->reorder == AVQ_REORDER_NONE) {
        for (size_t i = 0; i < count; i++)
            avq_topk_push(out, c[i].dist, snap[CAND_LEAF(c[i].id)]->store->ids[CAND_SLOT(c[i].id)]);
        return;
    }
    score_candidates(idx, kern, q, q_i8, s, c, count);
    for (size_t i = 0; i < count; i++) {
        const avq_leaf *leaf = snap[CAND_LEAF(c[i].id)];
        size_t slot = CAND_SLOT(c[i].id);
        avq_topk_push(out, point_distance(idx, s->exact[i], leaf, slot), leaf->store->ids[slot]);
    }
}

/* ---- filtered search -----------------------------------------------------
 *
 * A filter changes two things (doc/DESIGN.md, "Filtered search").
 *
 * The plan.  When the filter is known to allow at most exact_below vectors
 * (a tag filter by the index's tag counts, an allow set by its size), they
 * are scored exactly from their re-ranking rows: the allow mask of every
 * leaf that can hold one (for tags, the leaves their leaf lists name; for
 * an allow set, every leaf) is made and its allowed rows go through the
 * same gather kernel as the reorder.  That costs about one row read per
 * allowed vector plus a little per leaf, and is exact.  Otherwise the
 * index is scanned:
 *
 * The scan.  Leaves are visited best first as usual, but each through its
 * allow mask, which the kernels take in place of the liveness bitmap: only
 * allowed points can enter the candidate list, so it fills with allowed
 * points however rare they are.  A leaf with no allowed point is not
 * scanned, and runs of 32-point groups without one are skipped.  And the
 * search does not stop after leaves_to_search leaves: those count only
 * leaves that had allowed points, and it goes on until min_scanned allowed
 * points were scanned -- a rare condition spreads the allowed neighbours
 * of a query over more leaves, and a condition anti-correlated with the
 * query puts them in leaves far away.
 */

/* Exact scores of `count` slots of leaf version v (slot numbers in
 * s->cand[i].id, rows in s->rows) into out. */
static void score_slots(const avq_index *idx, const avq_kernels *kern, search_scratch *s,
                        const avq_leaf *v, row_kind kind, size_t count, avq_topk *out) {
    size_t bytes = row_bytes(idx, kind);
    for (size_t i = 0; i < count; i++)
        for (size_t b = 0; b < bytes; b += 64) AVQ_PREFETCH((const char *)s->rows[i] + b);
    dot_stored_rows(idx, kern, kind, s->q, s->q_i8, s->rows, count, s->exact);
    for (size_t i = 0; i < count; i++) {
        size_t slot = (size_t)s->cand[i].id;
        avq_topk_push(out, point_distance(idx, s->exact[i], v, slot), v->store->ids[slot]);
    }
}

/* Score the allowed slots of leaf version v (mask) exactly into out,
 * `piece` (<= pre_reorder, the size of s->rows) at a time. */
static void score_allowed(const avq_index *idx, const avq_kernels *kern, search_scratch *s,
                          const avq_leaf *v, const uint32_t *mask, size_t piece, avq_topk *out) {
    row_kind kind = rows_kept(idx);
    size_t d = idx->dim, words = (v->n + 31) / 32, count = 0;
    for (size_t w = 0; w < words; w++)
        for (uint32_t m = mask[w]; m; m &= m - 1) {
            size_t slot = 32 * w + (size_t)__builtin_ctz(m);
            s->rows[count] = row_at(v->store, kind, slot, d);
            s->cand[count++].id = (int64_t)slot;
            if (count == piece) {
                score_slots(idx, kern, s, v, kind, count, out);
                count = 0;
            }
        }
    if (count) score_slots(idx, kern, s, v, kind, count, out);
}

/* The exact plan for leaf l (version in s->snap), once per query. */
static int exact_leaf(const avq_index *idx, const avq_kernels *kern, const resolved_params *r,
                      search_scratch *s, size_t l, avq_topk *out) {
    const avq_leaf *v = s->snap[l];
    if (v->live == 0 || s->leaf_mark[l] == s->serial) return AVQ_OK;
    s->leaf_mark[l] = s->serial;
    size_t allowed = 0;
    int st = mask_reserve(s, v->n);
    if (st == AVQ_OK) st = avq_filter_leaf_mask(r->filter, v, s->mask, &allowed);
    if (st == AVQ_OK && allowed) score_allowed(idx, kern, s, v, s->mask, r->pre_reorder, out);
    return st;
}

/* What a tag filter's exact plan reads with the leaf snapshot. */
typedef struct {
    const avq_index *idx;
    const uint32_t *tags;
    size_t ntags;
    const avq_tag_leaves **lists;
} list_reader;

static void read_lists(void *ctx) {
    list_reader *lr = ctx;
    for (size_t i = 0; i < lr->ntags; i++) lr->lists[i] = avq_tag_leaves_of(lr->idx, lr->tags[i]);
}

/* The exact plan: every allowed vector.  A tag filter visits the leaves
 * its tags' lists name (ALL: the shortest list); other filters visit every
 * leaf.  The leaf snapshot is taken here. */
static int filtered_exact(const avq_index *idx, const avq_kernels *kern, const resolved_params *r,
                          search_scratch *s, avq_topk *out) {
    int st = exact_scratch(s, idx->num_leaves);
    if (st != AVQ_OK) return st;
    if (++s->serial == 0) { /* wrapped: forget every mark */
        memset(s->leaf_mark, 0, idx->num_leaves * sizeof(uint32_t));
        s->serial = 1;
    }
    const uint32_t *tags;
    bool all;
    size_t ntags = avq_filter_tag_list(r->filter, &tags, &all);
    if (ntags == 0) {
        avq_snapshot_all(idx, s->snap, NULL, NULL);
        for (size_t l = 0; l < idx->num_leaves && st == AVQ_OK; l++)
            st = exact_leaf(idx, kern, r, s, l, out);
        return st;
    }
    list_reader lr = {idx, tags, ntags, s->tag_lists};
    avq_snapshot_all(idx, s->snap, read_lists, &lr);
    size_t first = 0, end = ntags;
    if (all) { /* every allowed vector is in each list's leaves: take the shortest */
        for (size_t i = 0; i < ntags; i++) {
            if (!s->tag_lists[i]) return AVQ_OK;
            if (s->tag_lists[i]->count < s->tag_lists[first]->count) first = i;
        }
        end = first + 1;
    }
    for (size_t i = first; i < end; i++) {
        const avq_tag_leaves *list = s->tag_lists[i];
        for (uint32_t j = 0; list && j < list->count && st == AVQ_OK; j++)
            st = exact_leaf(idx, kern, r, s, list->leaves[j], out);
    }
    return st;
}

/* Scan the allowed points of leaf l (version v, allow mask) for one query:
 * one kernel call per run of groups that hold an allowed point. */
static void scan_masked(const avq_index *idx, avq_topk_scan_fn scan, size_t l, const avq_leaf *v,
                        const uint32_t *mask, const avq_scan_query *query) {
    int64_t base = (int64_t)((uint64_t)l << 32);
    size_t K = idx->q->num_blocks, groups = (v->full + 31) / 32;
    size_t group_bytes = avq_pack_group_bytes(idx->q->bits, K);
    for (size_t g = 0; g < groups;) {
        if (!mask[g]) {
            g++;
            continue;
        }
        size_t end = g + 1;
        while (end < groups && mask[end]) end++;
        size_t first = 32 * g, last = 32 * end < v->full ? 32 * end : v->full;
        const uint8_t *codes = v->store->codes + g * group_bytes;
        avq_scan_leaf part = {codes, last - first, K, NULL, base + (int64_t)first, mask + g};
        scan(&part, 1, query);
        g = end;
    }
    if (v->n > v->full && mask[v->full / 32]) {
        avq_scan_leaf part = {v->tail, v->n - v->full, K, NULL, base + (int64_t)v->full,
                              mask + v->full / 32};
        scan(&part, 1, query);
    }
}

/* The scan plan, into cand. */
static int filtered_scan(const avq_index *idx, const avq_kernels *kern, const resolved_params *r,
                         search_scratch *s, avq_topk *cand) {
    size_t L = idx->num_leaves;
    avq_lut8_info info;
    int st = build_lut8(idx, s->q, s, s->lut8, &info);
    if (st != AVQ_OK) return st;
    avq_topk_scan_fn scan = topk_kernel(idx, kern);
    /* leaves in order: a first helping, all of them if it runs out */
    size_t ordered = 4 * r->leaves + 16 < L ? 4 * r->leaves + 16 : L;
    select_leaves_scoring_all(idx, kern, s->q, s, ordered); /* rank_leaves(L) may follow */
    size_t visited = 0, scanned = 0;
    for (size_t i = 0; i < L; i++) {
        if (i == ordered) {
            rank_leaves(idx, s, L);
            ordered = L;
        }
        size_t l = (size_t)s->leaves[i].id;
        const avq_leaf *v = s->snap[l];
        if (v->live == 0) continue;
        size_t allowed = 0;
        st = mask_reserve(s, v->n);
        if (st == AVQ_OK) st = avq_filter_leaf_mask(r->filter, v, s->mask, &allowed);
        if (st != AVQ_OK) return st;
        if (allowed == 0) continue;
        avq_scan_query query = {s->lut8, leaf_bias(idx, &s->leaves[i]) + info.offset, info.scale,
                                cand};
        scan_masked(idx, scan, l, v, s->mask, &query);
        scanned += allowed;
        if (++visited >= r->leaves && scanned >= r->min_scanned) break;
    }
    return AVQ_OK;
}

/* A filtered query, from the prepared query in s->q. */
static int filtered_search(const avq_index *idx, const avq_kernels *kern, const resolved_params *r,
                           search_scratch *s, avq_topk *out) {
    size_t bound = avq_filter_bound(r->filter, idx);
    if (bound == 0 && avq_filter_bound_is_known(r->filter)) return AVQ_OK;
    /* only a known bound: a deny set or callback that happens to face a
     * small index is scanned like any other, so "allow everything" gives
     * the unfiltered answer */
    if (avq_filter_bound_is_known(r->filter) && bound <= r->exact_below &&
        idx->q->reorder != AVQ_REORDER_NONE)
        return filtered_exact(idx, kern, r, s, out);
    avq_snapshot_all(idx, s->snap, NULL, NULL);
    avq_topk cand;
    avq_topk_init(&cand, r->pre_reorder, s->cand, s->cand_capacity);
    int st = filtered_scan(idx, kern, r, s, &cand);
    if (st != AVQ_OK) return st;
    size_t count = dedupe_candidates(idx, s, cand.items, avq_topk_take(&cand));
    reorder_candidates(idx, kern, s->q, s->q_i8, s, cand.items, count, out);
    return AVQ_OK;
}

/* The final top list: k results, or 2k in a spilled index, whose output
 * may still name a vector twice (write_output keeps the better copy). */
static void output_init(avq_topk *out, size_t k, size_t copies, avq_neighbor *final) {
    avq_topk_init(out, k * copies, final, 2 * k * copies + 1);
}

static void write_output(const avq_index *idx, search_scratch *s, avq_topk *out, double qnorm2,
                         size_t k, int64_t *ids, float *scores) {
    size_t found = avq_topk_finish(out);
    if (AVQ_COPIES(idx->q) > 1 && found > 1) {
        for (size_t i = 0; i < found; i++) s->dedup_ids[i] = out->items[i].id;
        /* sorted by (dist, id): the first copy of each id is its best */
        if (mark_duplicates(s, s->dedup_ids, out->items, found))
            found = drop_marked(s, out->items, found);
    }
    for (size_t j = 0; j < k; j++) {
        int64_t id = -1;
        float score = NAN;
        if (j < found) {
            id = out->items[j].id;
            float d = out->items[j].dist;
            score = idx->q->params.metric == AVQ_METRIC_L2 ? fmaxf(d + (float)qnorm2, 0.0f) : -d;
        }
        ids[j] = id;
        if (scores) scores[j] = score;
    }
}

static int search_with_scratch(const avq_index *idx, const avq_kernels *kern,
                               const resolved_params *r, search_scratch *s,
                               const float *query, int64_t *ids, float *scores) {
    double qnorm2 = 0.0;
    int st = prepare_query(idx, query, s->q, s->q_i8, &qnorm2);
    if (st != AVQ_OK) return st;
    avq_topk out;
    output_init(&out, r->k, r->copies, s->final);
    if (idx->q->mode == AVQ_MODE_BRUTE) {
        st = score_all_points(idx, kern, s, r->filter, &out);
        if (st != AVQ_OK) return st;
    } else if (r->filter) {
        st = filtered_search(idx, kern, r, s, &out);
        if (st != AVQ_OK) return st;
    } else {
        avq_topk cand;
        avq_topk_init(&cand, r->pre_reorder, s->cand, s->cand_capacity);
        select_leaves(idx, kern, s->q, s, r->leaves);
        st = scan_leaves(idx, kern, s, r->leaves, r->k * r->copies, &cand);
        if (st != AVQ_OK) return st;
        size_t count = dedupe_candidates(idx, s, cand.items, avq_topk_take(&cand));
        reorder_candidates(idx, kern, s->q, s->q_i8, s, cand.items, count, &out);
    }
    write_output(idx, s, &out, qnorm2, r->k, ids, scores);
    return AVQ_OK;
}

int avq_index_search(const avq_index *idx, const float *query, const avq_search_params *p,
                     int64_t *ids, float *scores) {
    if (!idx || !query || !ids)
        return avq_fail(AVQ_ERR_INVALID, "search: NULL index, query or ids");
    resolved_params r;
    int st = resolve_params(idx, p, &r);
    if (st != AVQ_OK) return st;
    search_scratch s;
    st = scratch_init(&s, idx, &r);
    if (st != AVQ_OK) return st;
    int slot = avq_read_begin((avq_index *)idx);
    st = search_with_scratch(idx, avq_kernels_get(), &r, &s, query, ids, scores);
    avq_read_end((avq_index *)idx, slot);
    scratch_free(&s);
    return st;
}

/* ---- batched search -------------------------------------------------------
 *
 * Queries are handed to the workers in chunks of up to BATCH_CHUNK.  Within a
 * chunk every query first gets its leaves -- the center scores computed a
 * block of centers at a time for all its queries, so that the block stays in
 * L1 instead of every query streaming all centers from L2 -- and its LUT; the
 * (leaf, query) pairs are then bucketed by leaf, and each leaf's codes are
 * read once for up to the kernel's batch of queries at a time (the batched
 * kernels load a code byte once and look it up in 2-3 LUTs).
 *
 * Visiting order.  First every query's own best leaf, for the queries that
 * ranked it first only: a query's first leaf is scanned with an empty top
 * list, so everything in it is pushed, and only its best leaf leaves a
 * threshold as tight as the single search's.  (Sharing that first scan with
 * the queries that ranked the leaf lower made each of them start on a
 * worse leaf: about 20% more time spent compacting candidate lists.)  Then
 * the leaves in order of their best rank in any query's list, each once for
 * all its remaining queries -- every query's own second choice comes before
 * anyone's third -- so the thresholds keep tightening early.
 *
 * The candidate top-k keeps "the best pre_reorder by (distance, position)",
 * which does not depend on the order in which leaves are scanned (the scan's
 * integer threshold never rejects a point that would be kept), so a batch
 * returns exactly what one-at-a-time searches return.
 */
enum { BATCH_CHUNK = 96, BATCH_SCRATCH_BUDGET = 32 << 20 };

/* Queries per chunk: BATCH_CHUNK, fewer if their per-query state would
 * exceed BATCH_SCRATCH_BUDGET bytes per worker (huge leaves_to_search or
 * pre_reorder), at least 1. */
static size_t batch_chunk_size(const avq_index *idx, const resolved_params *r) {
    size_t per_query = r->leaves * (sizeof(avq_neighbor) + sizeof(uint32_t)) +
                       (2 * r->pre_reorder + 1) * sizeof(avq_neighbor) +
                       idx->q->num_blocks * idx->q->num_centers + 2 * idx->dim * sizeof(float) +
                       idx->num_leaves * sizeof(float) + 64;
    size_t chunk = BATCH_SCRATCH_BUDGET / per_query;
    return chunk < 1 ? 1 : (chunk > BATCH_CHUNK ? BATCH_CHUNK : chunk);
}

typedef struct {
    search_scratch s;       /* LUT floats, leaf scores, reorder buffers      */
    float *q, *q_i8;        /* chunk x dim                                   */
    double *qnorm2;         /* chunk                                         */
    uint8_t *lut8;          /* chunk x K x C                                 */
    avq_lut8_info *info;    /* chunk                                         */
    avq_neighbor *leaves;   /* chunk x leaves: each query's leaves, best first */
    avq_neighbor *cand_items; /* chunk x cand_capacity                       */
    avq_topk *cand;         /* chunk                                         */
    uint32_t *bucket;       /* num_leaves + 1: start of each leaf's pairs    */
    uint32_t *pairs;        /* chunk x leaves: j * leaves + rank, by leaf    */
    uint32_t *visited;      /* num_leaves: serial of the pass that last scanned it */
    uint32_t serial;
    float *dots;            /* chunk x num_leaves: <q, c> of every center    */
    void *block;
} chunk_scratch;

static int chunk_scratch_init(chunk_scratch *c, const avq_index *idx, const resolved_params *r) {
    memset(c, 0, sizeof *c);
    int st = scratch_init(&c->s, idx, r);
    if (st != AVQ_OK || idx->q->mode == AVQ_MODE_BRUTE) return st;
    size_t B = batch_chunk_size(idx, r), d = idx->dim, L = idx->num_leaves, m = r->leaves;
    size_t KC = idx->q->num_blocks * idx->q->num_centers;
    const size_t sizes[] = {
        B * d * sizeof(float),      B * d * sizeof(float),
        B * sizeof(double),         B * KC,
        B * sizeof(avq_lut8_info),  B * m * sizeof(avq_neighbor),
        B * c->s.cand_capacity * sizeof(avq_neighbor), B * sizeof(avq_topk),
        (L + 1) * sizeof(uint32_t), B * m * sizeof(uint32_t),
        L * sizeof(uint32_t),       B * L * sizeof(float),
    };
    void **const slots[] = {(void **)&c->q,      (void **)&c->q_i8,   (void **)&c->qnorm2,
                            (void **)&c->lut8,   (void **)&c->info,   (void **)&c->leaves,
                            (void **)&c->cand_items, (void **)&c->cand, (void **)&c->bucket,
                            (void **)&c->pairs,  (void **)&c->visited, (void **)&c->dots};
    c->block = carve_block(sizes, slots, sizeof sizes / sizeof sizes[0], "batch scratch");
    if (!c->block) return AVQ_ERR_NOMEM; /* the caller frees c->s */
    memset(c->visited, 0, L * sizeof(uint32_t));
    return AVQ_OK;
}

static void chunk_scratch_free(chunk_scratch *c) {
    if (c->block) avq_free_aligned(c->block);
    scratch_free(&c->s);
}

/* Where avq_index_search_candidates writes (avq.h, "Merging results from
 * shards"): the candidate lists instead of the top k. */
typedef struct {
    avq_candidate *cand;    /* nq x width                                    */
    size_t *counts;         /* nq                                            */
    float *offsets;         /* nq                                            */
    const size_t *leaf_live;/* the whole sharded index's counts, or NULL     */
    size_t width;           /* R: pre_reorder (k for the exact tier)         */
} candidate_out;

typedef struct {
    const avq_index *idx;
    const avq_kernels *kern;
    resolved_params r;
    chunk_scratch *scratch; /* one per worker */
    const float *queries;
    const avq_filter *const *filters; /* per query, or NULL */
    int64_t *ids;
    float *scores;
    const candidate_out *co; /* NULL: write the top k to ids/scores */
} batch_job;

/* Query q's candidates (c[0..count), versions in s->snap) with their
 * re-ranked distances into the candidate output. */
static void export_candidates(const batch_job *job, search_scratch *s, const float *q,
                              const float *q_i8, const avq_neighbor *c, size_t count,
                              double qnorm2, size_t query) {
    const avq_index *idx = job->idx;
    const candidate_out *co = job->co;
    bool rescore = idx->q->reorder != AVQ_REORDER_NONE;
    if (rescore) score_candidates(idx, job->kern, q, q_i8, s, c, count);
    avq_candidate *dst = co->cand + query * co->width;
    for (size_t i = 0; i < count; i++) {
        const avq_leaf *leaf = s->snap[CAND_LEAF(c[i].id)];
        size_t slot = CAND_SLOT(c[i].id);
        dst[i] = (avq_candidate){leaf->store->ids[slot], c[i].dist,
                                 rescore ? point_distance(idx, s->exact[i], leaf, slot)
                                         : c[i].dist,
                                 (uint32_t)CAND_LEAF(c[i].id), 0};
    }
    co->counts[query] = count;
    co->offsets[query] = idx->q->params.metric == AVQ_METRIC_L2 ? (float)qnorm2 : 0.0f;
}

/* The exact tier's candidates: its top k by exact distance. */
static int brute_candidates(const batch_job *job, search_scratch *s, size_t query) {
    const avq_index *idx = job->idx;
    double qnorm2 = 0.0;
    int st = prepare_query(idx, job->queries + query * idx->dim, s->q, s->q_i8, &qnorm2);
    if (st != AVQ_OK) return st;
    avq_topk out;
    avq_topk_init(&out, job->r.k, s->final, 2 * job->r.k + 1);
    st = score_all_points(idx, job->kern, s, NULL, &out);
    if (st != AVQ_OK) return st;
    size_t found = avq_topk_take(&out);
    avq_candidate *dst = job->co->cand + query * job->co->width;
    for (size_t i = 0; i < found; i++)
        dst[i] = (avq_candidate){out.items[i].id, out.items[i].dist, out.items[i].dist, 0, 0};
    job->co->counts[query] = found;
    job->co->offsets[query] = idx->q->params.metric == AVQ_METRIC_L2 ? (float)qnorm2 : 0.0f;
    return AVQ_OK;
}

static int query_failed(int st, size_t q) {
    char why[256];
    snprintf(why, sizeof why, "%s", avq_last_error());
    return avq_fail(st, "query %zu: %s", q, why);
}

/* Centers per block of the batched center scoring: a block (a dozen KB at
 * d = 100) stays in L1 while every query of the chunk is scored against it. */
enum { CENTER_BLOCK = 32 };

/* Per query of the chunk: prepare, choose leaves, build the LUT.  Leaves
 * come from the center sketch as in the single search; without one, the
 * center scores are the single search's kernel calls on blocks of centers
 * (the kernels score every row on its own, whatever the rows around it).
 * Either way the leaves and their biases are the same bit for bit. */
static int chunk_prepare(const batch_job *job, chunk_scratch *c, size_t begin, size_t count) {
    const avq_index *idx = job->idx;
    size_t d = idx->dim, m = job->r.leaves, KC = idx->q->num_blocks * idx->q->num_centers;
    size_t L = idx->num_leaves;
    for (size_t j = 0; j < count; j++) {
        int st = prepare_query(idx, job->queries + (begin + j) * d, c->q + j * d,
                               c->q_i8 + j * d, &c->qnorm2[j]);
        if (st != AVQ_OK) return query_failed(st, begin + j);
    }
    bool sketched = idx->q->sketch && 4 * m <= L;
    for (size_t first = 0; !sketched && first < L; first += CENTER_BLOCK) {
        size_t n = L - first < CENTER_BLOCK ? L - first : CENTER_BLOCK;
        for (size_t j = 0; j < count; j++)
            job->kern->dot_rows(c->q + j * d, idx->q->centers + first * d, n, d,
                                c->dots + j * L + first);
    }
    for (size_t j = 0; j < count; j++) {
        const float *q = c->q + j * d;
        if (sketched) {
            select_leaves(idx, job->kern, q, &c->s, m);
        } else {
            memcpy(c->s.scores, c->dots + j * L, L * sizeof(float));
            leaves_from_dots(idx, q, &c->s, m);
        }
        memcpy(c->leaves + j * m, c->s.leaves, m * sizeof(avq_neighbor));
        int st = build_lut8(idx, q, &c->s, c->lut8 + j * KC, &c->info[j]);
        if (st != AVQ_OK) return query_failed(st, begin + j);
        avq_topk_init(&c->cand[j], job->r.pre_reorder, c->cand_items + j * c->s.cand_capacity,
                      c->s.cand_capacity);
    }
    return AVQ_OK;
}

/* Counting sort of the chunk's (query, rank) pairs by leaf into c->pairs,
 * with c->bucket[l] .. c->bucket[l+1] the pairs of leaf l. */
static void chunk_bucket_by_leaf(const avq_index *idx, chunk_scratch *c, size_t count,
                                 size_t m) {
    size_t L = idx->num_leaves;
    memset(c->bucket, 0, (L + 1) * sizeof(uint32_t));
    for (size_t p = 0; p < count * m; p++) c->bucket[c->leaves[p].id + 1]++;
    for (size_t l = 0; l < L; l++) c->bucket[l + 1] += c->bucket[l];
    /* bucket[l + 1] is the end of leaf l's pairs; filling each bucket from
     * its end (pairs in descending order, so each bucket ends up ascending)
     * leaves bucket[l + 1] at the start of leaf l: shift down by one */
    for (size_t p = count * m; p-- > 0;) {
        size_t l = (size_t)c->leaves[p].id;
        c->pairs[--c->bucket[l + 1]] = (uint32_t)p;
    }
    memmove(c->bucket, c->bucket + 1, L * sizeof(uint32_t));
    c->bucket[L] = (uint32_t)(count * m);
}

/* Scan leaf l once for the queries of the chunk that chose it: those that
 * ranked it first if `firsts`, else all the others. */
static void chunk_scan_leaf(const batch_job *job, chunk_scratch *c, size_t l, bool firsts) {
    const avq_index *idx = job->idx;
    const avq_leaf *v = c->s.snap[l]; /* the chunk's snapshot */
    avq_scan_leaf parts[2];
    int np = scan_parts_of(idx, l, v, parts);
    if (np == 0) return;
    size_t m = job->r.leaves, KC = idx->q->num_blocks * idx->q->num_centers;
    size_t batch = topk_batch(idx, job->kern);
    avq_scan_query group[AVQ_SCAN_WIDE_BATCH];
    size_t g = 0;
    for (uint32_t i = c->bucket[l]; i < c->bucket[l + 1]; i++) {
        size_t p = c->pairs[i], j = p / m;
        if ((p == j * m) != firsts) continue; /* rank 0 or not */
        group[g++] = (avq_scan_query){c->lut8 + j * KC,
                                      leaf_bias(idx, &c->leaves[p]) + c->info[j].offset,
                                      c->info[j].scale, &c->cand[j]};
        if (g == batch) {
            scan_parts(idx, job->kern, parts, np, g, group);
            g = 0;
        }
    }
    if (g) scan_parts(idx, job->kern, parts, np, g, group);
}

/* A fresh mark for c->visited: one per pass over the chunk's leaves. */
static uint32_t next_serial(const avq_index *idx, chunk_scratch *c) {
    if (++c->serial == 0) { /* wrapped: forget every mark */
        memset(c->visited, 0, idx->num_leaves * sizeof(uint32_t));
        c->serial = 1;
    }
    return c->serial;
}

static int chunk_search(void *ctx, size_t begin, size_t end, int worker) {
    batch_job *job = ctx;
    const avq_index *idx = job->idx;
    chunk_scratch *c = &job->scratch[worker];
    size_t count = end - begin, m = job->r.leaves, d = idx->dim, k = job->r.k;
    int st = chunk_prepare(job, c, begin, count);
    if (st != AVQ_OK) return st;
    chunk_bucket_by_leaf(idx, c, count, m);
    /* one snapshot of every leaf for the whole chunk: its queries see each
     * writer's change everywhere or nowhere */
    avq_snapshot_leaves(idx, c->s.snap, NULL, 0);
    /* every query's best leaf first, for the queries that ranked it first */
    uint32_t mark = next_serial(idx, c);
    for (size_t j = 0; j < count; j++) {
        size_t l = (size_t)c->leaves[j * m].id;
        if (c->visited[l] == mark) continue;
        c->visited[l] = mark;
        chunk_scan_leaf(job, c, l, true);
    }
    /* then every leaf once for the rest, by best rank */
    mark = next_serial(idx, c);
    for (size_t rank = 0; rank < m; rank++)
        for (size_t j = 0; j < count; j++) {
            size_t l = (size_t)c->leaves[j * m + rank].id;
            if (c->visited[l] == mark) continue;
            c->visited[l] = mark;
            chunk_scan_leaf(job, c, l, false);
        }
    const size_t *leaf_live = job->co ? job->co->leaf_live : NULL;
    for (size_t j = 0; j < count; j++) {
        size_t kc = k * job->r.copies; /* live slots that hold k vectors */
        if (m < idx->num_leaves && live_in(c->s.snap, leaf_live, c->leaves + j * m, m) < kc)
            scan_until_k(idx, job->kern, &c->s, c->q + j * d, c->s.snap,
                         c->lut8 + j * idx->q->num_blocks * idx->q->num_centers, &c->info[j], m,
                         kc, leaf_live, &c->cand[j]);
        size_t found = dedupe_candidates(idx, &c->s, c->cand[j].items, avq_topk_take(&c->cand[j]));
        if (job->co) {
            export_candidates(job, &c->s, c->q + j * d, c->q_i8 + j * d, c->cand[j].items, found,
                              c->qnorm2[j], begin + j);
            continue;
        }
        avq_topk out;
        output_init(&out, k, job->r.copies, c->s.final);
        reorder_candidates(idx, job->kern, c->q + j * d, c->q_i8 + j * d, &c->s,
                           c->cand[j].items, found, &out);
        size_t q = begin + j;
        write_output(idx, &c->s, &out, c->qnorm2[j], k, job->ids + q * k,
                     job->scores ? job->scores + q * k : NULL);
    }
    return AVQ_OK;
}

/* The brute-force tier has no leaves to share, and filtered queries scan
 * each leaf through their own masks: one query at a time. */
static int single_search(void *ctx, size_t begin, size_t end, int worker) {
    batch_job *job = ctx;
    size_t d = job->idx->dim, k = job->r.k;
    resolved_params r = job->r;
    for (size_t q = begin; q < end; q++) {
        if (job->co) {
            int st = brute_candidates(job, &job->scratch[worker].s, q);
            if (st != AVQ_OK) return query_failed(st, q);
            continue;
        }
        if (job->filters) r.filter = job->filters[q];
        int st = search_with_scratch(job->idx, job->kern, &r, &job->scratch[worker].s,
                                     job->queries + q * d, job->ids + q * k,
                                     job->scores ? job->scores + q * k : NULL);
        if (st != AVQ_OK) return query_failed(st, q);
    }
    return AVQ_OK;
}

static int search_batch(const avq_index *idx, const float *queries, size_t nq,
                        const avq_search_params *p, const avq_filter *const *filters,
                        int threads, int64_t *ids, float *scores, const candidate_out *co) {
    if (!idx || !queries || (!ids && !co))
        return avq_fail(AVQ_ERR_INVALID, "search: NULL index, queries or ids");
    if (nq == 0) return AVQ_OK;
    batch_job job;
    memset(&job, 0, sizeof job);
    job.idx = idx;
    job.kern = avq_kernels_get();
    job.queries = queries;
    job.filters = filters;
    job.ids = ids;
    job.scores = scores;
    job.co = co;
    int st = resolve_params(idx, p, &job.r);
    if (st != AVQ_OK) return st;
    if (filters) job.r.filter = NULL;
    bool one_by_one = idx->q->mode == AVQ_MODE_BRUTE || job.r.filter || filters;
    threads = avq_resolve_threads(threads);
    /* chunks: as large as BATCH_CHUNK allows while every worker gets work */
    size_t chunk = (nq + (size_t)threads - 1) / (size_t)threads;
    size_t max_chunk = batch_chunk_size(idx, &job.r); /* what chunk_scratch_init sizes for */
    if (chunk > max_chunk) chunk = max_chunk;
    if ((size_t)threads > (nq + chunk - 1) / chunk) threads = (int)((nq + chunk - 1) / chunk);
    job.scratch = calloc((size_t)threads, sizeof *job.scratch);
    if (!job.scratch) return avq_fail_nomem("batch scratch", (size_t)threads * sizeof *job.scratch);
    int made = 0;
    for (; made < threads && st == AVQ_OK; made++)
        st = chunk_scratch_init(&job.scratch[made], idx, &job.r);
    if (st == AVQ_OK) {
        /* one reader slot for the whole call: the workers read under it */
        int slot = avq_read_begin((avq_index *)idx);
        st = avq_parallel_for(nq, chunk, threads, one_by_one ? single_search : chunk_search, &job,
                              NULL, NULL, "search");
        avq_read_end((avq_index *)idx, slot);
    }
    for (int w = 0; w < made; w++) chunk_scratch_free(&job.scratch[w]);
    free(job.scratch);
    return st;
}

int avq_index_search_batch(const avq_index *idx, const float *queries, size_t nq,
                           const avq_search_params *p, int threads, int64_t *ids,
                           float *scores) {
    return search_batch(idx, queries, nq, p, NULL, threads, ids, scores, NULL);
}

int avq_index_search_batch_filtered(const avq_index *idx, const float *queries, size_t nq,
                                    const avq_search_params *p,
                                    const avq_filter *const *filters, int threads, int64_t *ids,
                                    float *scores) {
    return search_batch(idx, queries, nq, p, filters, threads, ids, scores, NULL);
}

/* ---- candidates for a sharded search (avq.h, "Merging results from
 * shards"): the batch path above, writing each query's candidate list with
 * re-ranked distances instead of its top k ---- */

int avq_index_candidate_count(const avq_index *idx, const avq_search_params *p, size_t *out) {
    if (!idx || !out) return avq_fail(AVQ_ERR_INVALID, "search: NULL index or out");
    resolved_params r;
    int st = resolve_params(idx, p, &r);
    if (st != AVQ_OK) return st;
    if (r.filter)
        return avq_fail(AVQ_ERR_UNSUPPORTED,
                        "search candidates: filters are not supported (shards would plan a "
                        "filtered search by their own counts)");
    *out = idx->q->mode == AVQ_MODE_BRUTE ? r.k : r.pre_reorder;
    return AVQ_OK;
}

int avq_index_leaf_live(const avq_index *idx, size_t *counts) {
    if (!idx || !counts) return avq_fail(AVQ_ERR_INVALID, "leaf_live: NULL index or counts");
    int slot = avq_read_begin((avq_index *)idx);
    for (size_t l = 0; l < idx->num_leaves; l++) counts[l] = avq_leaf_load(idx, l)->live;
    avq_read_end((avq_index *)idx, slot);
    return AVQ_OK;
}

int avq_index_search_candidates(const avq_index *idx, const float *queries, size_t nq,
                                const avq_search_params *p, const size_t *leaf_live, int threads,
                                avq_candidate *candidates, size_t *counts, float *offsets) {
    size_t width;
    int st = avq_index_candidate_count(idx, p, &width);
    if (st != AVQ_OK) return st;
    if (!queries || !candidates || !counts || !offsets)
        return avq_fail(AVQ_ERR_INVALID,
                        "search candidates: NULL queries, candidates, counts or offsets");
    candidate_out co = {candidates, counts, offsets, leaf_live, width};
    return search_batch(idx, queries, nq, p, NULL, threads, NULL, NULL, &co);
}
