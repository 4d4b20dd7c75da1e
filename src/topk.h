/*
 * topk.h -- a bounded "k best so far" buffer with a rising threshold.
 *
 * Internally every score is a distance: smaller is better (a similarity s is
 * stored as -s).  Order is lexicographic on (dist, id), so ties always go to
 * the lower id and results are deterministic whatever the visiting order.
 */
#ifndef AVQ_TOPK_H
#define AVQ_TOPK_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float dist;
    int64_t id;
} avq_neighbor;

/* The buffer appends candidates that beat the threshold; when it is full it
 * drops candidates that can no longer be among the best k and lowers the
 * threshold: exactly to the k-th best (quickselect, O(capacity)), or, for
 * larger buffers, to a sampled estimate that keeps a little more than k
 * (cheaper: two branch-free passes; see topk.c).  With capacity = 2k a push
 * costs O(1) amortised, and the threshold is tight enough to let a scan skip
 * most candidates without ever pushing them.  Either way the final answer is
 * the exact best k.  No allocation: the caller provides `storage` of
 * `capacity` entries (capacity > k). */
typedef struct {
    avq_neighbor *items;
    size_t size, capacity, k;
    float worst_dist; /* threshold: only (d, id) < (worst_dist, worst_id) */
    int64_t worst_id; /* can still enter the final top-k                  */
} avq_topk;

void avq_topk_init(avq_topk *t, size_t k, avq_neighbor *storage, size_t capacity);

/* Forget all candidates, keep k and storage. */
void avq_topk_reset(avq_topk *t);

/* Compact to the best k and raise the threshold (called when full). */
void avq_topk_compact(avq_topk *t);

/* Would (dist, id) be accepted right now? */
static inline int avq_topk_admits(const avq_topk *t, float dist, int64_t id) {
    return dist < t->worst_dist || (dist == t->worst_dist && id < t->worst_id);
}

/* Offer a candidate; ignored unless it beats the current threshold. */
static inline void avq_topk_push(avq_topk *t, float dist, int64_t id) {
    if (!avq_topk_admits(t, dist, id)) return;
    t->items[t->size].dist = dist;
    t->items[t->size].id = id;
    if (++t->size == t->capacity) avq_topk_compact(t);
}

/* The caller knows that at least k of the held items have dist <= `dist`:
 * nothing worse can still enter the best k, so the threshold drops to
 * `dist` (ties at it stay admitted) when that is lower. */
static inline void avq_topk_bound(avq_topk *t, float dist) {
    if (dist < t->worst_dist) {
        t->worst_dist = dist;
        t->worst_id = INT64_MAX;
    }
}

/* Sort the best min(k, size) candidates into ascending (dist, id) order at
 * t->items[0..] and return how many there are.  The buffer may be pushed to
 * again afterwards. */
size_t avq_topk_finish(avq_topk *t);

/* Sort any array of neighbours by (dist, id). */
void avq_neighbors_sort(avq_neighbor *v, size_t n);

/* Partially order v so that v[0..k) are the k smallest by (dist, id), in no
 * particular order (k < n). */
void avq_neighbors_select(avq_neighbor *v, size_t n, size_t k);

/* Like avq_topk_finish, but the best min(k, size) are left in no particular
 * order (for candidate lists whose order does not matter: cheaper). */
size_t avq_topk_take(avq_topk *t);

/* The m smallest of dist[0..n) as (dist, index) pairs in ascending (dist,
 * index) order at work[0..m); returns min(m, n).  `work` must have room for
 * n entries (it is scratch beyond the first m).  Linear time: a sampled
 * threshold keeps the candidates, so selecting 40 leaves of 2000 costs
 * little more than reading the scores. */
size_t avq_smallest_of(const float *dist, size_t n, size_t m, avq_neighbor *work);

/* The value of rank `rank` (0 = smallest) among v[0..n), rank < n; v is
 * reordered.  For small n (tens): repeated branch-free partitions. */
float avq_floats_nth(float *v, size_t n, size_t rank);
/* The m-th smallest (1 <= m <= n) of v[0..n), which is left as it is:
 * avq_smallest_of's sampling without its sort.  work: n floats. */
float avq_floats_smallest(const float *v, size_t n, size_t m, float *work);

#endif
