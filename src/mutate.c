/*
 * mutate.c -- changing an index: add, upsert, remove, compact, and the
 * read-side questions that need the id map (contains, get, stats).
 *
 * Every writer call has two phases.  *Prepare* checks the input, encodes the
 * new rows (leaf assignment, residuals, anisotropic codes, int8 rows) and
 * makes the new version of every leaf it touches, beside the published one;
 * anything can fail here and the index is untouched (new versions are
 * freed).  *Commit* publishes the versions, updates the id map (room for it
 * was reserved in prepare) and retires what was replaced; nothing in it can
 * fail.  So a call adds all of its rows or none.
 *
 * Encoding a new row is what training did to the training rows: nearest
 * center (squared L2, as k-means assigned), residual against it (not for
 * L2), score-aware encoding with the quantizer's T or eta, int8 rows with the
 * quantizer's scales (values beyond them are clamped).
 */
#include "aniso.h"
#include "avq_internal.h"
#include "filter.h"
#include "index.h"
#include "kmeans.h"
#include "pq.h"
#include "spill.h"
#include "vecmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PLACE(l, s) ((uint64_t)(l) << 32 | (uint64_t)(s))
#define PLACE_LEAF(p) ((size_t)((p) >> 32))
#define PLACE_SLOT(p) ((uint32_t)((p) & 0xFFFFFFFFu))

/* Live vectors (x->live counts slots: two per vector in a spilled index). */
static int64_t live_total(const avq_index *x) {
    return (int64_t)(atomic_load(&x->live) / AVQ_COPIES(x->q));
}

/* ---- checking the rows and ids -------------------------------------------- */

static int check_rows(const avq_index *x, const float *v, size_t n, const char *who) {
    size_t d = x->dim;
    int st = avq_check_rows(v, n, d, x->q->params.metric, who, "row");
    if (st != AVQ_OK) return st;
    if (x->q->params.metric == AVQ_METRIC_COSINE)
        for (size_t i = 0; i < n; i++)
            if (avq_norm2_f64(v + i * d, d) == 0.0)
                return avq_fail(AVQ_ERR_INVALID,
                                "%s: row %zu is a zero vector, which has no cosine similarity",
                                who, i);
    return AVQ_OK;
}

/* Ids of one call: not the reserved id, no id twice.  With must_be_new,
 * none may be in the index either. */
static int check_ids(const avq_index *x, const int64_t *ids, size_t n, bool must_be_new,
                     const char *who) {
    avq_idmap seen = {0};
    int st = avq_idmap_reserve(&seen, n);
    for (size_t i = 0; i < n && st == AVQ_OK; i++) {
        if (ids[i] == AVQ_NO_ID) {
            st = avq_fail(AVQ_ERR_INVALID, "%s: row %zu: id -1 is reserved (it marks 'no result')",
                          who, i);
            break;
        }
        uint64_t first = avq_idmap_get(&seen, ids[i]);
        if (first != AVQ_IDMAP_EMPTY) {
            st = avq_fail(AVQ_ERR_INVALID, "%s: id %lld appears twice (rows %llu and %zu)", who,
                          (long long)ids[i], (unsigned long long)first, i);
            break;
        }
        if (must_be_new && avq_idmap_get(&x->ids, ids[i]) != AVQ_IDMAP_EMPTY) {
            st = avq_fail(AVQ_ERR_INVALID,
                          "%s: row %zu: id %lld is already in the index (use upsert to replace it)",
                          who, i, (long long)ids[i]);
            break;
        }
        avq_idmap_put(&seen, ids[i], i);
    }
    avq_idmap_free(&seen);
    return st;
}

/* Tag lists of one call: offsets from 0, non-decreasing, at most
 * AVQ_MAX_TAGS_PER_VECTOR per row. */
static int check_tags(size_t n, const size_t *off, const uint32_t *tags, const char *who) {
    if (!off) return AVQ_OK;
    if (off[0] != 0)
        return avq_fail(AVQ_ERR_INVALID, "%s: tag_offsets[0] is %zu, must be 0", who, off[0]);
    for (size_t i = 0; i < n; i++) {
        if (off[i + 1] < off[i])
            return avq_fail(AVQ_ERR_INVALID,
                            "%s: tag_offsets decrease at row %zu (%zu after %zu)", who, i,
                            off[i + 1], off[i]);
        if (off[i + 1] - off[i] > AVQ_MAX_TAGS_PER_VECTOR)
            return avq_fail(AVQ_ERR_INVALID, "%s: row %zu has %zu tags (the limit is %d)", who, i,
                            off[i + 1] - off[i], AVQ_MAX_TAGS_PER_VECTOR);
    }
    if (off[n] > 0 && !tags)
        return avq_fail(AVQ_ERR_INVALID, "%s: tag_offsets given with NULL tags", who);
    return AVQ_OK;
}

/* ---- encoding --------------------------------------------------------------- */

/* The rows as the index keeps them, in leaf order, with everything a leaf
 * needs. */
typedef struct {
    size_t n;
    size_t *leaf_start;  /* num_leaves + 1: rows of leaf l are [start[l], start[l+1]) */
    size_t *order;       /* n: row order[i] of the call is row i here      */
    int64_t *ids;
    uint8_t *codes;      /* n x K (PQ)            */
    float *vectors;      /* n x d (float rows)    */
    int8_t *vectors_i8;  /* n x d (int8 rows)     */
    uint16_t *vectors_f16; /* n x d (float16 rows) */
    float *norms2;       /* n (L2)                */
    size_t *tag_off;     /* n + 1, or NULL (no tags) */
    uint32_t *tags;
} encoded_rows;

static void encoded_free(encoded_rows *e) {
    free(e->leaf_start);
    free(e->order);
    free(e->ids);
    free(e->codes);
    free(e->vectors);
    free(e->vectors_i8);
    free(e->vectors_f16);
    free(e->norms2);
    free(e->tag_off);
    free(e->tags);
    memset(e, 0, sizeof *e);
}


/* The call's ids, in the encoded (leaf) order. */
static void set_encoded_ids(encoded_rows *e, const int64_t *ids) {
    for (size_t i = 0; i < e->n; i++) e->ids[i] = ids[e->order[i]];
}

/* The rows' tags in the encoded order: tags_of(user, row, &count) gives the
 * list of call row `row`. */
typedef const uint32_t *(*tags_of_row_fn)(void *user, size_t row, size_t *count);

static int set_encoded_tags(encoded_rows *e, tags_of_row_fn tags_of, void *user) {
    size_t total = 0, count;
    for (size_t i = 0; i < e->n; i++) {
        tags_of(user, e->order[i], &count);
        total += count;
    }
    free(e->tag_off);
    free(e->tags);
    e->tag_off = malloc((e->n + 1) * sizeof *e->tag_off);
    e->tags = malloc((total ? total : 1) * sizeof *e->tags);
    if (!e->tag_off || !e->tags) return avq_fail_nomem("tags", total * sizeof *e->tags);
    e->tag_off[0] = 0;
    for (size_t i = 0; i < e->n; i++) {
        const uint32_t *t = tags_of(user, e->order[i], &count);
        if (count) memcpy(e->tags + e->tag_off[i], t, count * sizeof *t);
        e->tag_off[i + 1] = e->tag_off[i] + count;
    }
    return AVQ_OK;
}

typedef struct {
    const size_t *off;
    const uint32_t *tags;
} csr_tags;

static const uint32_t *csr_tags_of(void *user, size_t row, size_t *count) {
    const csr_tags *c = user;
    *count = c->off[row + 1] - c->off[row];
    return c->tags + c->off[row];
}

/* How the quantizer's codes (and score-aware int8 rows) weigh the error:
 * its T or eta, threshold kind and weight; reconstruction for L2. */
static void quantizer_aniso_params(const avq_quantizer *q, int threads, avq_aniso_params *ap) {
    avq_aniso_default_params(ap);
    ap->threads = threads;
    ap->threshold = NAN;
    ap->eta = NAN;
    if (q->params.metric != AVQ_METRIC_L2) {
        if (q->params.eta > 0.0f) ap->eta = q->params.eta;
        else ap->threshold = q->params.threshold;
        avq_threshold_kind kind = q->params.threshold_kind;
        ap->relative = kind == AVQ_THRESHOLD_RELATIVE ||
                       (kind == AVQ_THRESHOLD_AUTO && q->params.metric == AVQ_METRIC_DOT);
        if (q->params.weight != AVQ_WEIGHT_STEP) { /* issue 19 */
            ap->weight = q->params.weight;
            ap->threshold = q->params.threshold;
            ap->weight_param = q->params.weight_param;
        }
    }
}

/* Rows n x d rearranged in place so that row i becomes the old row
 * order[i] (order a permutation of [0, n)): each cycle of the permutation
 * is followed once with one row of scratch, a bit per row marking the
 * rows already placed. */
static int permute_rows(float *rows, size_t n, size_t d, const size_t *order) {
    uint64_t *placed = calloc((n + 63) / 64 ? (n + 63) / 64 : 1, sizeof *placed);
    float *held = malloc((d ? d : 1) * sizeof *held);
    if (!placed || !held) {
        free(placed);
        free(held);
        return avq_fail_nomem("row permutation", (n + 63) / 64 * 8 + d * sizeof *held);
    }
    for (size_t start = 0; start < n; start++) {
        if (placed[start / 64] >> (start % 64) & 1) continue;
        memcpy(held, rows + start * d, d * sizeof *held);
        size_t i = start;
        for (;;) {
            placed[i / 64] |= 1ull << (i % 64);
            size_t from = order[i];
            if (from == start) {
                memcpy(rows + i * d, held, d * sizeof *held);
                break;
            }
            memcpy(rows + i * d, rows + from * d, d * sizeof *held);
            i = from;
        }
    }
    free(placed);
    free(held);
    return AVQ_OK;
}

/* Encode the rows (ids may be NULL: set_encoded_ids later).  Reads only the
 * quantizer, which never changes: runs without the write lock. */
static int encode_rows(const avq_index *x, const float *vectors, size_t n, const int64_t *ids,
                       const int32_t *leaf_of_in, int threads, avq_progress_fn progress,
                       void *progress_user, encoded_rows *e) {
    const avq_quantizer *q = x->q;
    size_t d = x->dim, L = x->num_leaves, K = q->num_blocks;
    int st = AVQ_OK;
    float *xs = NULL;
    int32_t *leaf_of = NULL;
    size_t *order = NULL;
    uint8_t *codes = NULL;
    memset(e, 0, sizeof *e);
    AVQ_ALLOC(xs, n * d);
    memcpy(xs, vectors, n * d * sizeof(float));
    if (q->params.metric == AVQ_METRIC_COSINE) avq_normalize_rows(xs, n, d);
    if (avq_keeps_half(q)) { /* before any work, in the caller's row numbers */
        st = avq_check_half_range(xs, n, d, "add");
        if (st != AVQ_OK) goto fail;
    }
    /* a spilled index stores every row twice: encoded row i < n is call
     * row i in its nearest leaf, row n + i the same call row in the leaf
     * SOAR chooses (spill.c); from here on the m encoded rows are handled
     * alike, each coded against its own leaf's center */
    size_t copies = AVQ_COPIES(q), m = n * copies;
    e->n = m;
    AVQ_ALLOC(leaf_of, m);
    if (leaf_of_in) {
        memcpy(leaf_of, leaf_of_in, n * sizeof *leaf_of);
    } else if (L > 1) {
        st = avq_assign_nearest(xs, n, d, q->centers, L, AVQ_NEAREST_L2, threads, leaf_of, NULL,
                                NULL, NULL, "assign");
        if (st != AVQ_OK) goto fail;
    } else {
        memset(leaf_of, 0, n * sizeof *leaf_of);
    }
    if (copies == 2) {
        st = avq_spill_assign(xs, n, d, q->centers, L, leaf_of, q->params.spill_lambda, threads,
                              leaf_of + n);
        if (st != AVQ_OK) goto fail;
    }
    /* leaf order, stable */
    AVQ_ALLOC(e->leaf_start, L + 1);
    AVQ_ALLOC(order, m);
    memset(e->leaf_start, 0, (L + 1) * sizeof *e->leaf_start);
    for (size_t i = 0; i < m; i++) e->leaf_start[leaf_of[i] + 1]++;
    for (size_t l = 0; l < L; l++) e->leaf_start[l + 1] += e->leaf_start[l];
    {
        size_t *fill = malloc(L * sizeof *fill);
        if (!fill) {
            st = avq_fail_nomem("leaf fill", L * sizeof *fill);
            goto fail;
        }
        memcpy(fill, e->leaf_start, L * sizeof *fill);
        for (size_t i = 0; i < m; i++) order[fill[leaf_of[i]]++] = i % n;
        free(fill);
    }
    AVQ_ALLOC(e->ids, m);
    if (ids)
        for (size_t i = 0; i < m; i++) e->ids[i] = ids[order[i]];
    /* the rows in leaf order replace xs: in place when each row appears once
     * (a second copy of the rows would be the build's peak memory), else
     * (spilled: rows twice) into a new array */
    if (m == n) {
        st = permute_rows(xs, n, d, order);
        if (st != AVQ_OK) goto fail;
    } else {
        float *sorted = malloc(m * d * sizeof *sorted);
        if (!sorted) {
            st = avq_fail_nomem("rows", m * d * sizeof *sorted);
            goto fail;
        }
        for (size_t i = 0; i < m; i++)
            memcpy(sorted + i * d, xs + order[i] * d, d * sizeof(float));
        free(xs);
        xs = sorted;
        n = m; /* below: the encoded rows */
    }
    if (q->mode == AVQ_MODE_PQ) {
        /* dot and cosine code x - center, L2 codes x itself; the residuals
         * are made row by row inside the encoder, not as an n x d array */
        AVQ_ALLOC(codes, n * K);
        avq_pq_shape shape = {d, q->dims_per_block, q->num_centers};
        avq_aniso_params ap;
        quantizer_aniso_params(q, threads, &ap);
        if (q->params.metric != AVQ_METRIC_L2)
            st = avq_aniso_encode_residuals(xs, n, &shape, q->centers, e->leaf_start, L,
                                            q->codebook, &ap, codes, progress, progress_user);
        else
            st = avq_aniso_encode(xs, xs, n, &shape, q->codebook, &ap, codes, progress,
                                  progress_user);
        if (st != AVQ_OK) goto fail;
        e->codes = codes;
        codes = NULL;
    }
    if (avq_keeps_norms(q)) {
        AVQ_ALLOC(e->norms2, n);
        avq_row_norms2(xs, n, d, e->norms2);
    }
    if (avq_keeps_int8(q) && q->params.int8_aware && q->params.metric != AVQ_METRIC_L2) {
        /* score-aware int8 rows (issue 19): each row rounded by the
         * anisotropic loss at its eta, the one its codes are chosen with */
        AVQ_ALLOC(e->vectors_i8, n * d);
        avq_aniso_params ap;
        quantizer_aniso_params(q, threads, &ap);
        double *eta = malloc(n * sizeof *eta);
        st = eta ? avq_aniso_point_etas(xs, n, d, &ap, eta)
                 : avq_fail_nomem("int8 rounding", n * sizeof *eta);
        if (st == AVQ_OK)
            st = avq_aniso_round_i8_rows(xs, n, d, q->i8_scale, eta, threads, e->vectors_i8);
        free(eta);
        if (st != AVQ_OK) goto fail;
    } else if (avq_keeps_int8(q)) {
        AVQ_ALLOC(e->vectors_i8, n * d);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < d; j++) {
                float v = roundf(xs[i * d + j] / q->i8_scale[j]);
                e->vectors_i8[i * d + j] = (int8_t)(v > 127 ? 127 : (v < -127 ? -127 : v));
            }
    }
    if (avq_keeps_half(q)) { /* every component is in range: checked on entry */
        AVQ_ALLOC(e->vectors_f16, n * d);
        for (size_t i = 0; i < n * d; i++) e->vectors_f16[i] = avq_half_from_float(xs[i]);
    }
    if (avq_keeps_float(q)) {
        e->vectors = xs;
        xs = NULL;
    }
fail:
    free(xs);
    free(codes);
    free(leaf_of);
    if (st != AVQ_OK) {
        free(order);
        encoded_free(e);
    } else {
        e->order = order;
    }
    return st;
}

/* ---- prepare / commit ----------------------------------------------------- */

/* The pending change of every leaf of one writer call. */
/* The pending change of every leaf of one writer call.  Its versions are
 * published between avq_commit_begin and avq_commit_end, so a search sees
 * all of them or none (leaf.c): an upsert that moves a vector from one leaf
 * to another is never seen twice or missed. */
typedef struct {
    avq_leaf **fresh;    /* num_leaves: the new version, or NULL (unchanged) */
    bool *compacted;     /* num_leaves: slots renumbered                     */
    avq_tag_list_change lists; /* the tags' new leaf lists                  */
} pending;

static int pending_init(const avq_index *x, pending *p) {
    memset(&p->lists, 0, sizeof p->lists);
    p->fresh = calloc(x->num_leaves, sizeof *p->fresh);
    p->compacted = calloc(x->num_leaves, sizeof *p->compacted);
    if (!p->fresh || !p->compacted) {
        free(p->fresh);
        free(p->compacted);
        return avq_fail_nomem("pending leaves", x->num_leaves * 9);
    }
    return AVQ_OK;
}

/* Abandon: free the new versions (and stores they alone use). */
static void pending_abandon(avq_index *x, pending *p) {
    for (size_t l = 0; l < x->num_leaves; l++) {
        avq_leaf *v = p->fresh[l];
        if (!v) continue;
        if (v->store != avq_leaf_load(x, l)->store) avq_leaf_store_free(v->store);
        avq_leaf_free(v);
    }
    avq_tag_lists_abandon(&p->lists);
    free(p->fresh);
    free(p->compacted);
}

/* Room in the tag count table for every tag the new versions carry, and
 * the tags' new leaf lists (the last step of a prepare that can fail). */
static int pending_reserve_tags(avq_index *x, pending *p) {
    size_t keys = 0;
    bool tags = false;
    for (size_t l = 0; l < x->num_leaves; l++) {
        if (!p->fresh[l]) continue;
        if (p->fresh[l]->tags) keys += p->fresh[l]->tags->nkeys;
        tags |= p->fresh[l]->tags || avq_leaf_load(x, l)->tags;
    }
    int st = keys ? avq_tag_table_reserve(x, keys) : AVQ_OK;
    if (st == AVQ_OK && tags) st = avq_tag_lists_prepare(x, p->fresh, false, &p->lists);
    return st;
}

/* Publish every new version as one commit; renumbered leaves get their ids
 * re-pointed. */
static void pending_commit(avq_index *x, pending *p) {
    for (size_t l = 0; l < x->num_leaves; l++)
        if (p->fresh[l]) avq_tag_counts_update(x, avq_leaf_load(x, l)->tags, p->fresh[l]->tags);
    avq_commit_begin(x);
    avq_tag_lists_commit(x, &p->lists); /* with the versions: see tags.c */
    for (size_t l = 0; l < x->num_leaves; l++)
        if (p->fresh[l]) avq_leaf_publish(x, l, p->fresh[l]);
    avq_commit_end(x);
    for (size_t l = 0; l < x->num_leaves; l++) {
        avq_leaf *v = p->fresh[l];
        if (v && p->compacted[l])
            for (size_t s = 0; s < v->n; s++)
                avq_idmap_put_copy(&x->ids, v->store->ids[s], PLACE(l, s));
    }
    free(p->fresh);
    free(p->compacted);
    avq_reclaim(x);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorted, distinct places -> per-leaf kill lists (slots) in `kills`, with
 * kill_start[l] .. kill_start[l+1] those of leaf l. */
static int group_kills(const avq_index *x, uint64_t *places, size_t count, uint32_t **kills,
                       size_t **kill_start, size_t *distinct) {
    size_t L = x->num_leaves, u = 0;
    qsort(places, count, sizeof *places, cmp_u64);
    for (size_t i = 0; i < count; i++)
        if (i == 0 || places[i] != places[i - 1]) places[u++] = places[i];
    *distinct = u;
    *kills = malloc((u ? u : 1) * sizeof **kills);
    *kill_start = calloc(L + 1, sizeof **kill_start);
    if (!*kills || !*kill_start) {
        free(*kills);
        free(*kill_start);
        return avq_fail_nomem("kill lists", u * 4 + L * 8);
    }
    for (size_t i = 0; i < u; i++) {
        (*kills)[i] = PLACE_SLOT(places[i]);
        (*kill_start)[PLACE_LEAF(places[i]) + 1]++;
    }
    for (size_t l = 0; l < L; l++) (*kill_start)[l + 1] += (*kill_start)[l];
    return AVQ_OK;
}

static bool wants_compaction(const avq_index *x, const avq_leaf *v, size_t nkill) {
    if (x->compact_threshold <= 0.0 || v->n == 0) return false;
    size_t dead = v->n - v->live + nkill;
    return dead > 0 && (double)dead >= x->compact_threshold * (double)v->n;
}

/* ---- add / upsert --------------------------------------------------------- */

/* The places of id's copies (one, or two in a spilled index) appended to
 * out; returns how many (0: not in the index). */
static size_t copy_places(const avq_index *x, int64_t id, uint64_t *out) {
    uint64_t second, first = id == AVQ_NO_ID ? AVQ_IDMAP_EMPTY : avq_idmap_get2(&x->ids, id, &second);
    if (first == AVQ_IDMAP_EMPTY) return 0;
    out[0] = first;
    if (second == AVQ_IDMAP_EMPTY) return 1;
    out[1] = second;
    return 2;
}

/* Plain upsert: a replaced vector keeps its tags.  Rows get the tags of
 * the vector their id has now (none for new ids). */
typedef struct {
    const avq_index *x;
    const int64_t *ids;
    uint32_t buf[AVQ_MAX_TAGS_PER_VECTOR];
} kept_tags;

static const uint32_t *kept_tags_of(void *user, size_t row, size_t *count) {
    kept_tags *k = user;
    uint64_t at = avq_idmap_get(&k->x->ids, k->ids[row]);
    *count = 0;
    if (at == AVQ_IDMAP_EMPTY) return k->buf;
    const avq_leaf *v = avq_leaf_load(k->x, PLACE_LEAF(at));
    *count = avq_leaf_tags_of_slot(v->tags, PLACE_SLOT(at), k->buf, AVQ_MAX_TAGS_PER_VECTOR);
    return k->buf;
}

int avq_index_add_assigned(avq_index *x, const float *vectors, size_t n, const int64_t *ids,
                           const size_t *tag_off, const uint32_t *tags, const int32_t *leaf_of,
                           int threads, int64_t *ids_out, bool replace, size_t *replaced_out,
                           avq_progress_fn progress, void *progress_user) {
    const char *who = replace ? "upsert" : "add";
    if (!x) return avq_fail(AVQ_ERR_INVALID, "%s: NULL index", who);
    if (n == 0) {
        if (replaced_out) *replaced_out = 0;
        return AVQ_OK;
    }
    if (!vectors || (replace && !ids))
        return avq_fail(AVQ_ERR_INVALID, "%s: NULL vectors%s", who, replace ? " or ids" : "");
    if (n > (size_t)INT32_MAX)
        return avq_fail(AVQ_ERR_INVALID, "%s: %zu rows in one call exceed the limit of %d", who, n,
                        INT32_MAX);
    int st = check_rows(x, vectors, n, who);
    if (st == AVQ_OK && ids) st = check_ids(x, ids, n, false, who);
    if (st == AVQ_OK) st = check_tags(n, tag_off, tags, who);
    if (st != AVQ_OK) return st;
    /* the long part, encoding, needs only the quantizer: searches, readers
     * of the id map and other writers do not wait for it */
    encoded_rows e = {0};
    st = encode_rows(x, vectors, n, ids, leaf_of, threads, progress, progress_user, &e);
    if (st == AVQ_OK && tag_off) {
        csr_tags given = {tag_off, tags};
        st = set_encoded_tags(&e, csr_tags_of, &given);
    }
    if (st != AVQ_OK) {
        encoded_free(&e);
        return st;
    }

    pthread_mutex_lock(&x->write_lock);
    int64_t *auto_ids = NULL;
    uint64_t *places = NULL;
    uint32_t *kills = NULL;
    size_t *kill_start = NULL, nreplaced = 0;
    pending p = {0};
    bool have_pending = false;
    st = avq_index_ensure_ids(x);
    if (st != AVQ_OK) goto out;
    if (ids) {
        if (!replace) st = check_ids(x, ids, n, true, who);
        if (st != AVQ_OK) goto out;
    } else {
        if (x->next_id > INT64_MAX - (int64_t)n) {
            st = avq_fail(AVQ_ERR_INVALID, "%s: automatic ids would pass INT64_MAX", who);
            goto out;
        }
        AVQ_ALLOC(auto_ids, n);
        for (size_t i = 0; i < n; i++) auto_ids[i] = x->next_id + (int64_t)i;
        ids = auto_ids;
        /* next_id is above every id the index has held, but the last one
         * (INT64_MAX) cannot be passed: refuse rather than collide */
        st = check_ids(x, ids, n, true, who);
        if (st != AVQ_OK) goto out;
        set_encoded_ids(&e, ids);
    }
    if (atomic_load(&x->live) / AVQ_COPIES(x->q) + n > ((size_t)1 << 40)) {
        st = avq_fail(AVQ_ERR_INVALID, "%s: the index would exceed 2^40 vectors", who);
        goto out;
    }

    /* replaced ids: their slots (both copies of a spilled vector) die in
     * the same change */
    size_t L = x->num_leaves, K = x->q->num_blocks, d = x->dim, nplaces = 0;
    AVQ_ALLOC(places, 2 * n);
    for (size_t i = 0; i < n && replace; i++) {
        size_t c = copy_places(x, ids[i], places + nplaces);
        nplaces += c;
        nreplaced += c > 0;
    }
    size_t distinct = 0;
    if (nreplaced && !tag_off && atomic_load(&x->tag_table)) {
        kept_tags *keep = malloc(sizeof *keep);
        if (!keep) {
            st = avq_fail_nomem("tags", sizeof *keep);
            goto out;
        }
        keep->x = x;
        keep->ids = ids;
        st = set_encoded_tags(&e, kept_tags_of, keep);
        free(keep);
        if (st != AVQ_OK) goto out;
    }
    st = group_kills(x, places, nplaces, &kills, &kill_start, &distinct);
    if (st != AVQ_OK) goto out;
    st = avq_idmap_reserve(&x->ids, n);
    if (st != AVQ_OK) goto out;
    st = pending_init(x, &p);
    if (st != AVQ_OK) goto out;
    have_pending = true;
    for (size_t l = 0; l < L && st == AVQ_OK; l++) {
        size_t first = e.leaf_start[l], count = e.leaf_start[l + 1] - first;
        size_t nk = kill_start[l + 1] - kill_start[l];
        if (count == 0 && nk == 0) continue;
        avq_new_points add = {count,
                              e.codes ? e.codes + first * K : NULL,
                              e.ids + first,
                              e.vectors ? e.vectors + first * d : NULL,
                              e.vectors_i8 ? e.vectors_i8 + first * d : NULL,
                              e.vectors_f16 ? e.vectors_f16 + first * d : NULL,
                              e.norms2 ? e.norms2 + first : NULL,
                              e.tag_off ? e.tag_off + first : NULL,
                              e.tags};
        const avq_leaf *old = avq_leaf_load(x, l);
        p.compacted[l] = nk > 0 && wants_compaction(x, old, nk);
        st = avq_leaf_change(x, old, kills + kill_start[l], nk, &add, NULL, p.compacted[l],
                             &p.fresh[l]);
        /* the leaf holds its own copy now, and these rows are not read again
         * (on failure nothing is): a big add's peak stays one copy */
        if (e.vectors) avq_release_pages(e.vectors + first * d, count * d * sizeof(float));
        if (e.vectors_i8) avq_release_pages(e.vectors_i8 + first * d, count * d);
        if (e.vectors_f16)
            avq_release_pages(e.vectors_f16 + first * d, count * d * sizeof(uint16_t));
        if (e.codes) avq_release_pages(e.codes + first * K, count * K);
    }
    if (st == AVQ_OK) st = pending_reserve_tags(x, &p);
    if (st != AVQ_OK) goto out;

    /* commit: nothing below fails.  A replaced id forgets its old places
     * first, so its new copies are recorded afresh (a spilled vector's two
     * places are matched to copies by leaf: see avq_idmap_put_copy). */
    for (size_t i = 0; i < n && nreplaced; i++) avq_idmap_del(&x->ids, ids[i]);
    for (size_t l = 0; l < L; l++) {
        size_t first = e.leaf_start[l], count = e.leaf_start[l + 1] - first;
        if (!p.fresh[l] || p.compacted[l]) continue; /* compacted: re-pointed below */
        size_t n_old = avq_leaf_load(x, l)->n;
        for (size_t i = 0; i < count; i++)
            avq_idmap_put_copy(&x->ids, e.ids[first + i], PLACE(l, n_old + i));
    }
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= x->next_id) x->next_id = ids[i] == INT64_MAX ? INT64_MAX : ids[i] + 1;
    atomic_fetch_add(&x->live, e.n - distinct);
    pending_commit(x, &p);
    have_pending = false;
    if (ids_out) memcpy(ids_out, ids, n * sizeof *ids_out);
    if (replaced_out) *replaced_out = nreplaced;
out:
fail:
    if (have_pending) pending_abandon(x, &p);
    pthread_mutex_unlock(&x->write_lock);
    encoded_free(&e);
    free(auto_ids);
    free(places);
    free(kills);
    free(kill_start);
    return st;
}

int avq_index_add(avq_index *x, const float *vectors, size_t n, const int64_t *ids, int threads,
                  int64_t *ids_out) {
    return avq_index_add_assigned(x, vectors, n, ids, NULL, NULL, NULL, threads, ids_out, false,
                                  NULL, NULL, NULL);
}

int avq_index_upsert(avq_index *x, const float *vectors, size_t n, const int64_t *ids,
                     int threads, size_t *replaced) {
    return avq_index_add_assigned(x, vectors, n, ids, NULL, NULL, NULL, threads, NULL, true,
                                  replaced, NULL, NULL);
}

int avq_index_add_tagged(avq_index *x, const float *vectors, size_t n, const int64_t *ids,
                         const size_t *tag_offsets, const uint32_t *tags, int threads,
                         int64_t *ids_out) {
    return avq_index_add_assigned(x, vectors, n, ids, tag_offsets, tags, NULL, threads, ids_out,
                                  false, NULL, NULL, NULL);
}

int avq_index_upsert_tagged(avq_index *x, const float *vectors, size_t n, const int64_t *ids,
                            const size_t *tag_offsets, const uint32_t *tags, int threads,
                            size_t *replaced) {
    return avq_index_add_assigned(x, vectors, n, ids, tag_offsets, tags, NULL, threads, NULL, true,
                                  replaced, NULL, NULL);
}

/* ---- remove / compact ------------------------------------------------------ */

int avq_index_remove(avq_index *x, const int64_t *ids, size_t n, size_t *removed) {
    if (!x || (!ids && n > 0)) return avq_fail(AVQ_ERR_INVALID, "remove: NULL index or ids");
    if (removed) *removed = 0;
    if (n == 0) return AVQ_OK;
    pthread_mutex_lock(&x->write_lock);
    uint64_t *places = NULL;
    uint32_t *kills = NULL;
    size_t *kill_start = NULL, found = 0, distinct = 0;
    pending p = {0};
    bool have_pending = false;
    int st = avq_index_ensure_ids(x);
    if (st != AVQ_OK) goto out;
    AVQ_ALLOC(places, 2 * n);
    for (size_t i = 0; i < n; i++) found += copy_places(x, ids[i], places + found);
    st = group_kills(x, places, found, &kills, &kill_start, &distinct);
    if (st != AVQ_OK) goto out;
    st = pending_init(x, &p);
    if (st != AVQ_OK) goto out;
    have_pending = true;
    for (size_t l = 0; l < x->num_leaves && st == AVQ_OK; l++) {
        size_t nk = kill_start[l + 1] - kill_start[l];
        if (nk == 0) continue;
        const avq_leaf *old = avq_leaf_load(x, l);
        p.compacted[l] = wants_compaction(x, old, nk);
        st = avq_leaf_change(x, old, kills + kill_start[l], nk, NULL, NULL, p.compacted[l],
                             &p.fresh[l]);
    }
    if (st == AVQ_OK) st = pending_reserve_tags(x, &p);
    if (st != AVQ_OK) goto out;
    /* commit */
    for (size_t i = 0; i < n; i++)
        if (ids[i] != AVQ_NO_ID) avq_idmap_del(&x->ids, ids[i]);
    atomic_fetch_sub(&x->live, distinct);
    pending_commit(x, &p);
    have_pending = false;
    if (removed) *removed = distinct / AVQ_COPIES(x->q); /* slots -> vectors */
out:
fail:
    if (have_pending) pending_abandon(x, &p);
    pthread_mutex_unlock(&x->write_lock);
    free(places);
    free(kills);
    free(kill_start);
    return st;
}

int avq_index_compact(avq_index *x, double min_dead_fraction, size_t *compacted) {
    if (!x) return avq_fail(AVQ_ERR_INVALID, "compact: NULL index");
    if (!(min_dead_fraction >= 0.0 && min_dead_fraction <= 1.0))
        return avq_fail(AVQ_ERR_INVALID, "compact: min_dead_fraction must be in [0, 1], got %g",
                        min_dead_fraction);
    if (compacted) *compacted = 0;
    pthread_mutex_lock(&x->write_lock);
    pending p = {0};
    size_t count = 0;
    int st = avq_index_ensure_ids(x);
    if (st == AVQ_OK) st = pending_init(x, &p);
    if (st != AVQ_OK) {
        pthread_mutex_unlock(&x->write_lock);
        return st;
    }
    for (size_t l = 0; l < x->num_leaves && st == AVQ_OK; l++) {
        const avq_leaf *old = avq_leaf_load(x, l);
        size_t dead = old->n - old->live;
        if (dead == 0 || (double)dead < min_dead_fraction * (double)old->n) continue;
        p.compacted[l] = true;
        st = avq_leaf_change(x, old, NULL, 0, NULL, NULL, true, &p.fresh[l]);
        count++;
    }
    if (st == AVQ_OK) st = pending_reserve_tags(x, &p);
    if (st != AVQ_OK) pending_abandon(x, &p);
    else pending_commit(x, &p);
    pthread_mutex_unlock(&x->write_lock);
    if (st == AVQ_OK && compacted) *compacted = count;
    return st;
}

int avq_index_set_compact_threshold(avq_index *x, double fraction) {
    if (!x) return avq_fail(AVQ_ERR_INVALID, "compact threshold: NULL index");
    if (!(fraction >= 0.0 && fraction <= 1.0))
        return avq_fail(AVQ_ERR_INVALID, "compact threshold must be in [0, 1], got %g", fraction);
    pthread_mutex_lock(&x->write_lock);
    x->compact_threshold = fraction;
    pthread_mutex_unlock(&x->write_lock);
    return AVQ_OK;
}

/* ---- questions by id --------------------------------------------------------- */

int avq_index_contains(const avq_index *cx, int64_t id) {
    avq_index *x = (avq_index *)cx; /* the lazily built id map is a cache */
    if (!x || id == AVQ_NO_ID) return 0;
    pthread_mutex_lock(&x->write_lock);
    int found = avq_index_ensure_ids(x) == AVQ_OK &&
                avq_idmap_get(&x->ids, id) != AVQ_IDMAP_EMPTY;
    pthread_mutex_unlock(&x->write_lock);
    return found;
}

/* Row `slot` of a leaf as a float vector (dequantized for int8, converted
 * for float16). */
static void slot_vector(const avq_index *x, const avq_leaf *v, size_t slot, float *out) {
    size_t d = x->dim;
    if (v->store->vectors) {
        memcpy(out, v->store->vectors + slot * d, d * sizeof(float));
    } else if (v->store->vectors_f16) {
        for (size_t j = 0; j < d; j++) out[j] = avq_float_from_half(v->store->vectors_f16[slot * d + j]);
    } else {
        for (size_t j = 0; j < d; j++)
            out[j] = (float)v->store->vectors_i8[slot * d + j] * x->q->i8_scale[j];
    }
}

int avq_index_get(const avq_index *cx, const int64_t *ids, size_t n, float *out) {
    avq_index *x = (avq_index *)cx;
    if (!x || (n > 0 && (!ids || !out))) return avq_fail(AVQ_ERR_INVALID, "get: NULL argument");
    if (!avq_keeps_rows(x->q))
        return avq_fail(AVQ_ERR_UNSUPPORTED,
                        "get: this index keeps no vectors (built with reorder 'none')");
    pthread_mutex_lock(&x->write_lock);
    int st = avq_index_ensure_ids(x);
    for (size_t i = 0; i < n && st == AVQ_OK; i++) {
        uint64_t at = ids[i] == AVQ_NO_ID ? AVQ_IDMAP_EMPTY : avq_idmap_get(&x->ids, ids[i]);
        if (at == AVQ_IDMAP_EMPTY) {
            st = avq_fail(AVQ_ERR_INVALID, "get: id %lld (entry %zu) is not in the index",
                          (long long)ids[i], i);
            break;
        }
        slot_vector(x, avq_leaf_load(x, PLACE_LEAF(at)), PLACE_SLOT(at), out + i * x->dim);
    }
    pthread_mutex_unlock(&x->write_lock);
    return st;
}

/* ---- statistics --------------------------------------------------------------- */

/* Slots of v carrying at least one tag. */
static size_t tagged_slots(const avq_leaf *v) {
    size_t words = (v->n + 31) / 32, count = 0;
    uint32_t *seen = calloc(words ? words : 1, sizeof *seen);
    if (!seen) return 0; /* statistics only */
    for (uint32_t j = 0; j < v->tags->npost; j++) {
        uint32_t s = v->tags->slots[j];
        if (!((seen[s >> 5] >> (s & 31)) & 1u)) count++;
        seen[s >> 5] |= 1u << (s & 31);
    }
    free(seen);
    return count;
}

static void collect_stats(const avq_index *cx, avq_index_stats *s) {
    avq_index *x = (avq_index *)cx;
    memset(s, 0, sizeof *s);
    s->struct_size = sizeof *s;
    s->leaves = x->num_leaves;
    s->min_leaf = SIZE_MAX;
    size_t bytes = sizeof *x + x->num_leaves * sizeof *x->leaves + avq_quantizer_memory_bytes(x->q);
    double sum2 = 0.0;
    int slot = avq_read_begin(x);
    for (size_t l = 0; l < x->num_leaves; l++) {
        const avq_leaf *v = avq_leaf_load(x, l);
        s->live += v->live;
        s->dead += v->n - v->live;
        s->empty_leaves += v->live == 0;
        if (v->live < s->min_leaf) s->min_leaf = v->live;
        if (v->live > s->max_leaf) s->max_leaf = v->live;
        sum2 += (double)v->live * (double)v->live;
        if (v->n && (double)(v->n - v->live) / (double)v->n > s->max_leaf_dead)
            s->max_leaf_dead = (double)(v->n - v->live) / (double)v->n;
        bytes += avq_leaf_bytes(x, v);
        if (v->tags) {
            s->tag_postings += v->tags->npost;
            s->tagged += tagged_slots(v);
        }
    }
    s->distinct_tags = avq_tag_table_distinct(x);
    bytes += avq_tag_table_bytes(x);
    avq_read_end(x, slot);
    s->mean_leaf = (double)s->live / (double)s->leaves;
    /* vectors, not slots: a spilled vector's two copies count once */
    size_t copies = AVQ_COPIES(x->q);
    s->spilled = s->live - s->live / copies;
    s->live /= copies;
    s->tagged /= copies;
    s->tag_postings /= copies;
    double var = sum2 / (double)s->leaves - s->mean_leaf * s->mean_leaf;
    s->leaf_cv = s->mean_leaf > 0 ? sqrt(var > 0 ? var : 0) / s->mean_leaf : 0.0;
    /* the id map belongs to the writer: read it under the lock */
    pthread_mutex_lock(&x->write_lock);
    s->memory_bytes = bytes + x->ids.capacity * (sizeof(int64_t) + sizeof(uint64_t) *
                                                 (x->ids.two ? 2 : 1));
    s->next_id = x->next_id;
    pthread_mutex_unlock(&x->write_lock);
}

int avq_index_stats_sized(const avq_index *x, avq_index_stats *out, size_t struct_size) {
    if (!x || !out) return avq_fail(AVQ_ERR_INVALID, "stats: NULL argument");
    if (struct_size < offsetof(avq_index_stats, next_id) + sizeof(int64_t))
        return avq_fail(AVQ_ERR_INVALID, "stats: struct_size %zu is too small", struct_size);
    avq_index_stats s;
    collect_stats(x, &s);
    s.struct_size = struct_size;
    memcpy(out, &s, struct_size < sizeof s ? struct_size : sizeof s);
    return AVQ_OK;
}

size_t avq_index_memory_bytes(const avq_index *x) {
    avq_index_stats s;
    collect_stats(x, &s);
    return s.memory_bytes;
}

size_t avq_index_size(const avq_index *x) { return (size_t)live_total(x); }
size_t avq_index_dim(const avq_index *x) { return x->dim; }
avq_metric avq_index_metric(const avq_index *x) { return x->q->params.metric; }
size_t avq_index_num_leaves(const avq_index *x) { return x->num_leaves; }
const avq_quantizer *avq_index_quantizer(const avq_index *x) { return x->q; }

void avq_index_build_params(const avq_index *x, avq_build_params *out) {
    size_t size = out->struct_size ? out->struct_size : sizeof *out;
    avq_build_params p = x->q->params;
    p.struct_size = size;
    memcpy(out, &p, size < sizeof p ? size : sizeof p);
}

void avq_index_default_search_params(const avq_index *x, avq_search_params *out) {
    size_t size = out->struct_size ? out->struct_size : sizeof *out;
    avq_search_params p;
    avq_search_params_init(&p);
    p.struct_size = size;
    p.leaves_to_search = x->q->default_leaves_to_search;
    p.pre_reorder = x->q->default_pre_reorder;
    p.filter_min_scanned = AVQ_FILTER_MIN_SCANNED_PER_CANDIDATE *
                           (p.pre_reorder > p.k ? p.pre_reorder : p.k);
    p.filter_exact_below = AVQ_FILTER_EXACT_BELOW;
    memcpy(out, &p, size < sizeof p ? size : sizeof p);
}

int avq_index_create(const avq_quantizer *q, avq_index **out) {
    if (out) *out = NULL;
    if (!q || !out) return avq_fail(AVQ_ERR_INVALID, "create: NULL quantizer or out");
    return avq_index_alloc((avq_quantizer *)q, out);
}

/* ---- retraining -------------------------------------------------------------- */

int avq_index_retrain(const avq_index *cx, const avq_build_params *params, avq_index **out) {
    avq_index *x = (avq_index *)cx;
    if (out) *out = NULL;
    if (!x || !out) return avq_fail(AVQ_ERR_INVALID, "retrain: NULL index or out");
    if (!avq_keeps_rows(x->q))
        return avq_fail(AVQ_ERR_UNSUPPORTED,
                        "retrain: this index keeps no vectors (built with reorder 'none')");
    avq_build_params p;
    int st = avq_build_params_resolve(params ? params : &x->q->params, &p);
    if (st != AVQ_OK) return st;
    size_t d = x->dim, n = 0;
    float *rows = NULL;
    int64_t *ids = NULL;
    size_t *tag_off = NULL;
    uint32_t *tags = NULL;
    int32_t *leaf_of = NULL;
    avq_quantizer *q = NULL;
    avq_index *y = NULL;
    /* a consistent snapshot: no writer while copying */
    pthread_mutex_lock(&x->write_lock);
    size_t live = (size_t)live_total(x), copies = AVQ_COPIES(x->q);
    /* a spilled vector is copied once: from the copy the id map names first */
    st = copies > 1 ? avq_index_ensure_ids(x) : AVQ_OK;
    if (st != AVQ_OK) {
        pthread_mutex_unlock(&x->write_lock);
        goto done;
    }
    rows = malloc((live ? live : 1) * d * sizeof *rows);
    ids = malloc((live ? live : 1) * sizeof *ids);
    if (!rows || !ids) {
        pthread_mutex_unlock(&x->write_lock);
        st = avq_fail_nomem("retrain copy", live * (d * 4 + 8));
        goto done;
    }
    size_t postings = 0;
    for (size_t l = 0; l < x->num_leaves; l++) {
        const avq_leaf *v = avq_leaf_load(x, l);
        if (v->tags) postings += v->tags->npost;
    }
    if (postings) {
        tag_off = malloc((live + 1) * sizeof *tag_off);
        tags = malloc(postings * sizeof *tags);
        if (!tag_off || !tags) {
            pthread_mutex_unlock(&x->write_lock);
            st = avq_fail_nomem("retrain tags", postings * sizeof *tags);
            goto done;
        }
        tag_off[0] = 0;
    }
    for (size_t l = 0; l < x->num_leaves; l++) {
        const avq_leaf *v = avq_leaf_load(x, l);
        for (size_t s = 0; s < v->n; s++) {
            if (!avq_leaf_slot_alive(v, s)) continue;
            if (copies > 1 && avq_idmap_get(&x->ids, v->store->ids[s]) != PLACE(l, s)) continue;
            slot_vector(x, v, s, rows + n * d);
            if (tag_off)
                tag_off[n + 1] = tag_off[n] + avq_leaf_tags_of_slot(v->tags, (uint32_t)s,
                                                                    tags + tag_off[n],
                                                                    postings - tag_off[n]);
            ids[n++] = v->store->ids[s];
        }
    }
    pthread_mutex_unlock(&x->write_lock);
    if (n == 0) {
        st = avq_fail(AVQ_ERR_INVALID, "retrain: the index is empty");
        goto done;
    }
    st = avq_quantizer_train_assign(rows, n, d, &p, &q, &leaf_of);
    if (st == AVQ_OK) st = avq_index_alloc(q, &y);
    if (st == AVQ_OK)
        st = avq_index_add_assigned(y, rows, n, ids, tag_off, tags, leaf_of, p.threads, NULL,
                                    false, NULL,
                                    p.progress, p.progress_user);
    if (st == AVQ_OK) {
        y->next_id = x->next_id > y->next_id ? x->next_id : y->next_id;
        *out = y;
        y = NULL;
    }
done:
    avq_index_free(y);
    avq_quantizer_free(q);
    free(leaf_of);
    free(rows);
    free(ids);
    free(tag_off);
    free(tags);
    return st;
}

/* ---- tags by id ------------------------------------------------------------- */

int avq_index_set_tags(avq_index *x, const int64_t *ids, size_t n, const size_t *tag_off,
                       const uint32_t *tags) {
    if (!x || (n > 0 && (!ids || !tag_off)))
        return avq_fail(AVQ_ERR_INVALID, "set_tags: NULL index, ids or tag_offsets");
    if (n == 0) return AVQ_OK;
    int st = check_ids(x, ids, n, false, "set_tags");
    if (st == AVQ_OK) st = check_tags(n, tag_off, tags, "set_tags");
    if (st != AVQ_OK) return st;
    pthread_mutex_lock(&x->write_lock);
    uint64_t *order = NULL; /* place << 0 sorted with the row: (place, row) pairs */
    uint32_t *slots = NULL;
    size_t *off = NULL;
    uint32_t *lists = NULL;
    pending p = {0};
    bool have_pending = false;
    st = avq_index_ensure_ids(x);
    if (st != AVQ_OK) goto out;
    /* one edit per copy: a spilled vector's two copies carry the same tags */
    size_t np = 0;
    AVQ_ALLOC(order, 4 * n);
    for (size_t i = 0; i < n; i++) {
        uint64_t at[2];
        size_t c = copy_places(x, ids[i], at);
        if (c == 0) {
            st = avq_fail(AVQ_ERR_INVALID, "set_tags: row %zu: id %lld is not in the index", i,
                          (long long)ids[i]);
            goto out;
        }
        for (size_t k = 0; k < c; k++, np++) {
            order[2 * np] = at[k];
            order[2 * np + 1] = i;
        }
    }
    /* by place: rows of one leaf together, slots ascending */
    qsort(order, np, 2 * sizeof *order, cmp_u64);
    size_t total = 0;
    for (size_t j = 0; j < np; j++) {
        size_t row = (size_t)order[2 * j + 1];
        total += tag_off[row + 1] - tag_off[row];
    }
    AVQ_ALLOC(slots, np);
    AVQ_ALLOC(off, np + 1);
    AVQ_ALLOC(lists, total ? total : 1);
    off[0] = 0;
    n = np; /* below: the edits */
    for (size_t j = 0; j < n; j++) {
        size_t row = (size_t)order[2 * j + 1], c = tag_off[row + 1] - tag_off[row];
        slots[j] = PLACE_SLOT(order[2 * j]);
        if (c) memcpy(lists + off[j], tags + tag_off[row], c * sizeof *lists);
        off[j + 1] = off[j] + c;
    }
    st = pending_init(x, &p);
    if (st != AVQ_OK) goto out;
    have_pending = true;
    for (size_t j = 0; j < n && st == AVQ_OK;) {
        size_t l = PLACE_LEAF(order[2 * j]), e = j;
        while (e < n && PLACE_LEAF(order[2 * e]) == l) e++;
        avq_tag_edit edit = {e - j, slots + j, off + j, lists};
        st = avq_leaf_change(x, avq_leaf_load(x, l), NULL, 0, NULL, &edit, false, &p.fresh[l]);
        j = e;
    }
    if (st == AVQ_OK) st = pending_reserve_tags(x, &p);
    if (st != AVQ_OK) goto out;
    pending_commit(x, &p);
    have_pending = false;
out:
fail:
    if (have_pending) pending_abandon(x, &p);
    pthread_mutex_unlock(&x->write_lock);
    free(order);
    free(slots);
    free(off);
    free(lists);
    return st;
}

int avq_index_get_tags(const avq_index *cx, int64_t id, uint32_t *tags, size_t capacity,
                       size_t *count) {
    avq_index *x = (avq_index *)cx;
    if (!x || !count || (capacity > 0 && !tags))
        return avq_fail(AVQ_ERR_INVALID, "get_tags: NULL index, count or tags");
    pthread_mutex_lock(&x->write_lock);
    int st = avq_index_ensure_ids(x);
    uint64_t at = st == AVQ_OK && id != AVQ_NO_ID ? avq_idmap_get(&x->ids, id) : AVQ_IDMAP_EMPTY;
    if (st == AVQ_OK && at == AVQ_IDMAP_EMPTY)
        st = avq_fail(AVQ_ERR_INVALID, "get_tags: id %lld is not in the index", (long long)id);
    if (st == AVQ_OK)
        *count = avq_leaf_tags_of_slot(avq_leaf_load(x, PLACE_LEAF(at))->tags, PLACE_SLOT(at),
                                       tags, capacity);
    pthread_mutex_unlock(&x->write_lock);
    return st;
}

size_t avq_index_tag_count(const avq_index *cx, uint32_t tag) {
    avq_index *x = (avq_index *)cx;
    if (!x) return 0;
    int slot = avq_read_begin(x);
    int64_t c = avq_tag_count(x, tag);
    avq_read_end(x, slot);
    return (size_t)c / AVQ_COPIES(x->q); /* counts are of slots */
}
