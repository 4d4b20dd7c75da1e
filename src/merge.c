/*
 * merge.c -- merging per-shard results (avq.h, "Merging results from
 * shards"; doc/DESIGN.md, "Sharding").
 *
 * avq_merge_topk is a k-way merge of sorted rows: a binary heap holds the
 * head of every list, ordered by (distance, id) where the distance is the
 * score turned "smaller is better" (-s for similarities), so ties go to the
 * lower id as in every avq result.  O(k log nlists) per query.
 *
 * avq_merge_candidates is the exact merge: the candidates of all shards for
 * one query are gathered into one buffer, the best R by (approx, leaf, id)
 * are selected -- the candidate list one index over all the data would have
 * kept -- and of those the best k by (exact, id) are sorted out.  Both
 * selections are linear (quickselect) plus a sort of k.
 */
#include "avq_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { MERGE_MAX_K = 1 << 20 };

/* ---- k-way merge of sorted top-k rows ----------------------------------- */

typedef struct {
    float dist;
    int64_t id;
    size_t list, pos;
} head;

static inline bool head_less(const head *a, const head *b) {
    return a->dist < b->dist || (a->dist == b->dist && a->id < b->id);
}

static void heap_down(head *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && head_less(&h[l], &h[m])) m = l;
        if (r < n && head_less(&h[r], &h[m])) m = r;
        if (m == i) return;
        head t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static inline float to_dist(avq_metric metric, float score) {
    return metric == AVQ_METRIC_L2 ? score : -score;
}

/* Entry pos of row q of list i as a heap head; false at the row's end. */
static bool list_head(avq_metric metric, const int64_t *const *ids, const float *const *scores,
                      const size_t *widths, size_t i, size_t q, size_t pos, head *out) {
    if (pos >= widths[i]) return false;
    size_t at = q * widths[i] + pos;
    if (ids[i][at] == AVQ_NO_ID) return false;
    *out = (head){to_dist(metric, scores[i][at]), ids[i][at], i, pos};
    return true;
}

static int bad_entry(const head *e, size_t q, const char *why) {
    return avq_fail(AVQ_ERR_INVALID, "merge: list %zu, query %zu, position %zu (id %lld): %s",
                    e->list, q, e->pos, (long long)e->id, why);
}

int avq_merge_topk(avq_metric metric, size_t nq, size_t nlists, const int64_t *const *ids,
                   const float *const *scores, const size_t *widths, size_t k,
                   int64_t *out_ids, float *out_scores) {
    if ((nlists && (!ids || !scores || !widths)) || (nq && !out_ids))
        return avq_fail(AVQ_ERR_INVALID, "merge: NULL ids, scores, widths or out_ids");
    if (k == 0 || k > MERGE_MAX_K)
        return avq_fail(AVQ_ERR_INVALID, "merge: k = %zu (must be 1 .. %d)", k, MERGE_MAX_K);
    if ((unsigned)metric > AVQ_METRIC_COSINE)
        return avq_fail(AVQ_ERR_INVALID, "merge: unknown metric %d", (int)metric);
    for (size_t i = 0; i < nlists; i++)
        if (widths[i] && (!ids[i] || !scores[i]))
            return avq_fail(AVQ_ERR_INVALID, "merge: list %zu has width %zu but NULL arrays", i,
                            widths[i]);
    if (nq == 0) return AVQ_OK;
    head *heap = malloc((nlists ? nlists : 1) * sizeof *heap);
    if (!heap) return avq_fail_nomem("merge heap", nlists * sizeof *heap);
    int st = AVQ_OK;
    for (size_t q = 0; q < nq && st == AVQ_OK; q++) {
        size_t n = 0;
        for (size_t i = 0; i < nlists; i++)
            if (list_head(metric, ids, scores, widths, i, q, 0, &heap[n])) {
                if (isnan(heap[n].dist)) {
                    st = bad_entry(&heap[n], q, "NaN score");
                    break;
                }
                n++;
            }
        for (size_t i = n / 2; st == AVQ_OK && i-- > 0;) heap_down(heap, n, i);
        size_t j = 0;
        for (; st == AVQ_OK && j < k && n > 0; j++) {
            head top = heap[0];
            out_ids[q * k + j] = top.id;
            if (out_scores) out_scores[q * k + j] = scores[top.list][q * widths[top.list] + top.pos];
            head next;
            if (list_head(metric, ids, scores, widths, top.list, q, top.pos + 1, &next)) {
                if (isnan(next.dist))
                    st = bad_entry(&next, q, "NaN score");
                else if (head_less(&next, &top))
                    st = bad_entry(&next, q, "the row is not in best-first order (ties by id)");
                heap[0] = next;
            } else {
                heap[0] = heap[--n];
            }
            heap_down(heap, n, 0);
        }
        for (; st == AVQ_OK && j < k; j++) {
            out_ids[q * k + j] = AVQ_NO_ID;
            if (out_scores) out_scores[q * k + j] = NAN;
        }
    }
    free(heap);
    return st;
}

/* ---- exact merge of quantized candidates -------------------------------- */

static inline bool approx_less(const avq_candidate *a, const avq_candidate *b) {
    if (a->approx != b->approx) return a->approx < b->approx;
    if (a->leaf != b->leaf) return a->leaf < b->leaf;
    return a->id < b->id;
}

static inline bool exact_less(const avq_candidate *a, const avq_candidate *b) {
    return a->exact < b->exact || (a->exact == b->exact && a->id < b->id);
}

typedef bool (*cand_less_fn)(const avq_candidate *, const avq_candidate *);

static inline void cand_swap(avq_candidate *a, avq_candidate *b) {
    avq_candidate t = *a;
    *a = *b;
    *b = t;
}

/* Reorder v[0..n) so that v[0..m) are its m smallest by `less` (any order;
 * m < n).  Quickselect with a median of three; the order is strict (ids
 * are distinct), so it terminates. */
static void cand_select(avq_candidate *v, size_t n, size_t m, cand_less_fn less) {
    size_t lo = 0, hi = n; /* the m-th smallest lies in [lo, hi) */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2, last = hi - 1;
        if (less(&v[mid], &v[lo])) cand_swap(&v[mid], &v[lo]);
        if (less(&v[last], &v[lo])) cand_swap(&v[last], &v[lo]);
        if (less(&v[last], &v[mid])) cand_swap(&v[last], &v[mid]);
        cand_swap(&v[mid], &v[last]); /* pivot (the median) at the end */
        size_t store = lo;
        for (size_t i = lo; i < last; i++)
            if (less(&v[i], &v[last])) cand_swap(&v[i], &v[store++]);
        cand_swap(&v[store], &v[last]);
        if (store == m || store + 1 == m) return;
        if (store > m)
            hi = store;
        else
            lo = store + 1;
    }
}

static void cand_sort(avq_candidate *v, size_t n, cand_less_fn less) {
    for (size_t i = 1; i < n; i++) { /* n <= k, small: insertion sort */
        avq_candidate x = v[i];
        size_t j = i;
        while (j > 0 && less(&x, &v[j - 1])) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

static int cmp_exact(const void *pa, const void *pb) {
    const avq_candidate *a = pa, *b = pb;
    return exact_less(a, b) ? -1 : exact_less(b, a) ? 1 : 0;
}

int avq_merge_candidates(avq_metric metric, size_t nq, size_t nlists,
                         const avq_candidate *const *lists, const size_t *const *counts, size_t R,
                         size_t k, const float *offsets, int64_t *out_ids, float *out_scores) {
    if ((nlists && (!lists || !counts)) || (nq && (!offsets || !out_ids)))
        return avq_fail(AVQ_ERR_INVALID, "merge: NULL lists, counts, offsets or out_ids");
    if (k == 0 || R == 0 || k > R || R > (size_t)1 << 22)
        return avq_fail(AVQ_ERR_INVALID, "merge: k = %zu, R = %zu (need 1 <= k <= R <= 4194304)",
                        k, R);
    if ((unsigned)metric > AVQ_METRIC_COSINE)
        return avq_fail(AVQ_ERR_INVALID, "merge: unknown metric %d", (int)metric);
    if (nq == 0) return AVQ_OK;
    size_t total;
    if (!avq_mul_ok(nlists ? nlists : 1, R, &total) || total > SIZE_MAX / sizeof(avq_candidate))
        return avq_fail(AVQ_ERR_INVALID, "merge: %zu lists of %zu candidates overflow", nlists, R);
    avq_candidate *all = malloc(total * sizeof *all);
    if (!all) return avq_fail_nomem("merge buffer", total * sizeof *all);
    int st = AVQ_OK;
    for (size_t q = 0; q < nq && st == AVQ_OK; q++) {
        size_t n = 0;
        for (size_t i = 0; i < nlists && st == AVQ_OK; i++) {
            if (!lists[i]) continue;
            if (!counts[i]) {
                st = avq_fail(AVQ_ERR_INVALID, "merge: list %zu has NULL counts", i);
                break;
            }
            size_t c = counts[i][q];
            if (c > R) {
                st = avq_fail(AVQ_ERR_INVALID,
                              "merge: list %zu, query %zu: %zu candidates, more than R = %zu", i,
                              q, c, R);
                break;
            }
            const avq_candidate *src = lists[i] + q * R;
            for (size_t j = 0; j < c; j++)
                if (isnan(src[j].approx) || isnan(src[j].exact)) {
                    st = avq_fail(AVQ_ERR_INVALID,
                                  "merge: list %zu, query %zu, candidate %zu (id %lld): NaN "
                                  "distance", i, q, j, (long long)src[j].id);
                    break;
                }
            memcpy(all + n, src, c * sizeof *all);
            n += c;
        }
        if (st != AVQ_OK) break;
        /* the candidate list of one index: its best R by quantized distance */
        if (n > R) {
            cand_select(all, n, R, approx_less);
            n = R;
        }
        size_t found = n < k ? n : k;
        if (n > k) cand_select(all, n, k, exact_less);
        if (found > 64)
            qsort(all, found, sizeof *all, cmp_exact);
        else
            cand_sort(all, found, exact_less);
        for (size_t j = 0; j < k; j++) {
            int64_t id = AVQ_NO_ID;
            float score = NAN;
            if (j < found) {
                id = all[j].id;
                float d = all[j].exact;
                score = metric == AVQ_METRIC_L2 ? fmaxf(d + offsets[q], 0.0f) : -d;
            }
            out_ids[q * k + j] = id;
            if (out_scores) out_scores[q * k + j] = score;
        }
    }
    free(all);
    return st;
}
