/*
 * topk.c -- selection for the top-k buffer (see topk.h for the why).
 *
 * Quickselect with a median-of-three pivot: candidates arrive in scan order,
 * which is arbitrary but not adversarial, so expected linear time is safe.
 */
#include "topk.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Bitwise rather than short-circuit operators: the comparison feeds the
 * branch-free partition below, and scan order makes its outcome random. */
static inline int less(const avq_neighbor *a, const avq_neighbor *b) {
    return (a->dist < b->dist) | ((a->dist == b->dist) & (a->id < b->id));
}

static inline void swap(avq_neighbor *a, avq_neighbor *b) {
    avq_neighbor t = *a;
    *a = *b;
    *b = t;
}

void avq_topk_init(avq_topk *t, size_t k, avq_neighbor *storage, size_t capacity) {
    t->items = storage;
    t->k = k;
    t->capacity = capacity;
    avq_topk_reset(t);
}

void avq_topk_reset(avq_topk *t) {
    t->size = 0;
    t->worst_dist = INFINITY;
    t->worst_id = INT64_MAX;
}

/* Lomuto partition of v[lo+1..hi) around `pivot` without a data-dependent
 * branch: every element is swapped with the first not-smaller one and the
 * boundary advances by the comparison's 0/1.  (An element that is not
 * smaller swaps with another not-smaller one, so the invariant holds.)  The
 * branchy version mispredicted about half its comparisons: candidates from a
 * scan arrive in no useful order.  Returns the boundary. */
static size_t partition_lomuto(avq_neighbor *v, size_t lo, size_t hi, avq_neighbor pivot) {
    /* Elements move as two 8-byte words: the element stored at v[store] is
     * often loaded again by the next iteration, and a 16-byte load of data
     * written by narrower stores (what the compiler makes of a struct copy)
     * defeats store-to-load forwarding, which tripled the cost of this loop. */
    uint64_t(*w)[2] = (uint64_t(*)[2])(void *)v;
    size_t store = lo + 1;
    for (size_t i = lo + 1; i < hi; i++) {
        uint64_t x0 = w[i][0], x1 = w[i][1];
        avq_neighbor x;
        memcpy(&x, &w[i], sizeof x);
        size_t smaller = (size_t)less(&x, &pivot);
        w[i][0] = w[store][0];
        w[i][1] = w[store][1];
        w[store][0] = x0;
        w[store][1] = x1;
        store += smaller;
    }
    return store;
}

void avq_neighbors_select(avq_neighbor *v, size_t n, size_t k) {
    size_t lo = 0, hi = n; /* the k-th smallest lies in [lo, hi) */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        /* median of three to the front as pivot */
        if (less(&v[mid], &v[lo])) swap(&v[mid], &v[lo]);
        if (less(&v[hi - 1], &v[lo])) swap(&v[hi - 1], &v[lo]);
        if (less(&v[hi - 1], &v[mid])) swap(&v[hi - 1], &v[mid]);
        swap(&v[lo], &v[mid]);
        size_t store = partition_lomuto(v, lo, hi, v[lo]);
        swap(&v[lo], &v[store - 1]);
        size_t p = store - 1; /* pivot's final position */
        if (p == k) return;
        if (p < k) lo = p + 1;
        else hi = p;
    }
}

/* Exact compaction: keep the best k, threshold = the k-th best. */
static void compact_exact(avq_topk *t) {
    avq_neighbors_select(t->items, t->size, t->k);
    t->size = t->k;
    /* the new threshold is the worst of the k kept */
    avq_neighbor *worst = &t->items[0];
    for (size_t i = 1; i < t->k; i++)
        if (less(worst, &t->items[i])) worst = &t->items[i];
    t->worst_dist = worst->dist;
    t->worst_id = worst->id;
}


/* Sampled compaction.  A search pushes a few hundred candidates per query
 * into a buffer of 2k; exact selection at every fill was a fifth of a whole
 * query.  The buffer only has to keep everything that can still be in the
 * best k, and any value `limit` with at least k items <= limit is a valid
 * threshold.  A strided sample of 32 distances estimates a limit that keeps
 * about k + (size - k) / 3; one branch-free pass counts, a second keeps.  If
 * the estimate keeps fewer than k or frees too little room, the caller falls
 * back to the exact selection.  Items equal to the limit are kept and ties
 * at the limit stay admitted (worst_id = INT64_MAX), so the final answer is
 * exactly the one of the exact compaction. */
enum { COMPACT_SAMPLE = 32, COMPACT_MIN_SIZE = 3 * COMPACT_SAMPLE };

static bool compact_sampled(avq_topk *t) {
    size_t n = t->size, k = t->k, stride = n / COMPACT_SAMPLE;
    float sample[COMPACT_SAMPLE];
    for (size_t j = 0; j < COMPACT_SAMPLE; j++) sample[j] = t->items[j * stride].dist;
    size_t target = k + (n - k) / 3;
    size_t rank = target * COMPACT_SAMPLE / n;
    if (rank >= COMPACT_SAMPLE) rank = COMPACT_SAMPLE - 1;
    float limit = avq_floats_nth(sample, COMPACT_SAMPLE, rank);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) kept += (size_t)(t->items[i].dist <= limit);
    if (kept < k || kept > n - (n - k) / 4) return false;
    kept = 0;
    for (size_t i = 0; i < n; i++) {
        t->items[kept] = t->items[i];
        kept += (size_t)(t->items[i].dist <= limit);
    }
    t->size = kept;
    t->worst_dist = limit;
    t->worst_id = INT64_MAX;
    return true;
}

void avq_topk_compact(avq_topk *t) {
    if (t->size <= t->k) return;
    if (t->size >= COMPACT_MIN_SIZE && t->size >= t->k + t->k / 4 && compact_sampled(t)) return;
    compact_exact(t);
}

static void insertion_sort(avq_neighbor *v, size_t n) {
    for (size_t i = 1; i < n; i++) {
        avq_neighbor x = v[i];
        size_t j = i;
        for (; j > 0 && less(&x, &v[j - 1]); j--) v[j] = v[j - 1];
        v[j] = x;
    }
}

/* In-place quicksort (glibc's qsort allocates a merge buffer and calls a
 * comparator through a pointer: both are out of place on the query path).
 * Recurse on the smaller side so the stack stays O(log n). */
void avq_neighbors_sort(avq_neighbor *v, size_t n) {
    while (n > 24) {
        size_t mid = n / 2;
        if (less(&v[mid], &v[0])) swap(&v[mid], &v[0]);
        if (less(&v[n - 1], &v[0])) swap(&v[n - 1], &v[0]);
        if (less(&v[n - 1], &v[mid])) swap(&v[n - 1], &v[mid]);
        avq_neighbor pivot = v[mid];
        size_t i = 0, j = n - 1;
        for (;;) { /* Hoare partition */
            while (less(&v[i], &pivot)) i++;
            while (less(&pivot, &v[j])) j--;
            if (i >= j) break;
            swap(&v[i], &v[j]);
            i++;
            j--;
        }
        size_t left = j + 1; /* [0, left) <= pivot <= [left, n) */
        if (left < n - left) {
            avq_neighbors_sort(v, left);
            v += left;
            n -= left;
        } else {
            avq_neighbors_sort(v + left, n - left);
            n = left;
        }
    }
    insertion_sort(v, n);
}

size_t avq_topk_take(avq_topk *t) {
    if (t->size > t->k) {
        avq_neighbors_select(t->items, t->size, t->k);
        t->size = t->k;
    }
    return t->size;
}

size_t avq_topk_finish(avq_topk *t) {
    avq_neighbors_sort(t->items, avq_topk_take(t));
    if (t->size == t->k && t->k > 0) {
        t->worst_dist = t->items[t->k - 1].dist;
        t->worst_id = t->items[t->k - 1].id;
    }
    return t->size;
}

/* Select the m smallest of all n, sorted (the general path). */
static size_t smallest_by_select(const float *dist, size_t n, size_t m, avq_neighbor *work) {
    for (size_t i = 0; i < n; i++) work[i] = (avq_neighbor){dist[i], (int64_t)i};
    if (m < n) avq_neighbors_select(work, n, m);
    avq_neighbors_sort(work, m);
    return m;
}

/* The m-th smallest of few floats, by repeated branch-free selection. */
float avq_floats_nth(float *v, size_t n, size_t rank) {
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        float pivot = v[lo + (hi - lo) / 2];
        v[lo + (hi - lo) / 2] = v[lo];
        v[lo] = pivot;
        size_t store = lo + 1;
        for (size_t i = lo + 1; i < hi; i++) {
            float x = v[i];
            size_t smaller = (size_t)(x < pivot);
            v[i] = v[store];
            v[store] = x;
            store += smaller;
        }
        v[lo] = v[store - 1];
        v[store - 1] = pivot;
        size_t p = store - 1;
        if (p == rank) break;
        if (p < rank) lo = p + 1;
        else hi = p;
    }
    return v[rank];
}

/* Leaf selection picks a few (tens) of thousands of scores.  A strided
 * sample of 128 scores gives a threshold that about 2m + 4 * n / 128 of them
 * pass; one branch-free pass keeps those, and only they are selected and
 * sorted.  Leaf scores are in k-means order, which is unrelated to any query,
 * so the stride is as good as a random sample; if too few pass anyway (a
 * skewed distribution, ties, NaN), the general path runs. */
enum { SMALLEST_SAMPLE = 128 };

/* The sampled limit of n scores for the m smallest: false when the sample
 * cannot give one (few scores, many wanted), and the general path runs. */
static bool sampled_limit(const float *v, size_t n, size_t m, float *limit) {
    if (n < 4 * SMALLEST_SAMPLE || m * 8 > n) return false;
    float sample[SMALLEST_SAMPLE];
    size_t stride = n / SMALLEST_SAMPLE;
    for (size_t j = 0; j < SMALLEST_SAMPLE; j++) sample[j] = v[j * stride];
    size_t rank = 2 * ((m * SMALLEST_SAMPLE + n - 1) / n) + 4;
    if (rank >= SMALLEST_SAMPLE) return false;
    *limit = avq_floats_nth(sample, SMALLEST_SAMPLE, rank);
    return true;
}

float avq_floats_smallest(const float *v, size_t n, size_t m, float *work) {
    float limit;
    if (sampled_limit(v, n, m, &limit)) {
        size_t kept = 0;
        for (size_t i = 0; i < n; i++) {
            work[kept] = v[i];
            kept += (size_t)(v[i] <= limit);
        }
        /* the m-th smallest of those <= limit is the m-th of all */
        if (kept >= m) return avq_floats_nth(work, kept, m - 1);
    }
    memcpy(work, v, n * sizeof *v);
    return avq_floats_nth(work, n, m - 1);
}

size_t avq_smallest_of(const float *dist, size_t n, size_t m, avq_neighbor *work) {
    if (m > n) m = n;
    if (m == 0) return 0;
    float limit;
    if (!sampled_limit(dist, n, m, &limit)) return smallest_by_select(dist, n, m, work);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        work[kept] = (avq_neighbor){dist[i], (int64_t)i};
        kept += (size_t)(dist[i] <= limit);
    }
    if (kept < m) return smallest_by_select(dist, n, m, work);
    if (kept > m) avq_neighbors_select(work, kept, m);
    avq_neighbors_sort(work, m);
    return m;
}
