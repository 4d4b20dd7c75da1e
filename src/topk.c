/*
 * topk.c -- selection for the top-k buffer (see topk.h for the why).
 *
 * Quickselect with a median-of-three pivot: candidates arrive in scan order,
 * which is arbitrary but not adversarial, so expected linear time is safe.
 */
#include "topk.h"

#include <math.h>
#include <stdlib.h>

static inline int less(const avq_neighbor *a, const avq_neighbor *b) {
    return a->dist < b->dist || (a->dist == b->dist && a->id < b->id);
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

void avq_neighbors_select(avq_neighbor *v, size_t n, size_t k) {
    size_t lo = 0, hi = n; /* the k-th smallest lies in [lo, hi) */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        /* median of three to the front as pivot */
        if (less(&v[mid], &v[lo])) swap(&v[mid], &v[lo]);
        if (less(&v[hi - 1], &v[lo])) swap(&v[hi - 1], &v[lo]);
        if (less(&v[hi - 1], &v[mid])) swap(&v[hi - 1], &v[mid]);
        swap(&v[lo], &v[mid]);
        avq_neighbor pivot = v[lo];
        size_t store = lo + 1;
        for (size_t i = lo + 1; i < hi; i++)
            if (less(&v[i], &pivot)) swap(&v[i], &v[store++]);
        swap(&v[lo], &v[store - 1]);
        size_t p = store - 1; /* pivot's final position */
        if (p == k) return;
        if (p < k) lo = p + 1;
        else hi = p;
    }
}

void avq_topk_compact(avq_topk *t) {
    if (t->size <= t->k) return;
    avq_neighbors_select(t->items, t->size, t->k);
    t->size = t->k;
    /* the new threshold is the worst of the k kept */
    avq_neighbor *worst = &t->items[0];
    for (size_t i = 1; i < t->k; i++)
        if (less(worst, &t->items[i])) worst = &t->items[i];
    t->worst_dist = worst->dist;
    t->worst_id = worst->id;
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

size_t avq_topk_finish(avq_topk *t) {
    if (t->size > t->k) {
        avq_neighbors_select(t->items, t->size, t->k);
        t->size = t->k;
    }
    avq_neighbors_sort(t->items, t->size);
    if (t->size == t->k && t->k > 0) {
        t->worst_dist = t->items[t->k - 1].dist;
        t->worst_id = t->items[t->k - 1].id;
    }
    return t->size;
}

/* Max-heap on (dist, id): the root is the worst of the kept. */
static void sift_down(avq_neighbor *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, worst = i;
        if (l < n && less(&h[worst], &h[l])) worst = l;
        if (l + 1 < n && less(&h[worst], &h[l + 1])) worst = l + 1;
        if (worst == i) return;
        swap(&h[i], &h[worst]);
        i = worst;
    }
}

size_t avq_smallest_of(const float *dist, size_t n, size_t m, avq_neighbor *out) {
    if (m > n) m = n;
    if (m == 0) return 0;
    for (size_t i = 0; i < m; i++) out[i] = (avq_neighbor){dist[i], (int64_t)i};
    for (size_t i = m / 2; i-- > 0;) sift_down(out, m, i);
    for (size_t i = m; i < n; i++) {
        /* ids grow with i, so an equal distance never displaces the root */
        if (dist[i] < out[0].dist) {
            out[0] = (avq_neighbor){dist[i], (int64_t)i};
            sift_down(out, m, 0);
        }
    }
    avq_neighbors_sort(out, m);
    return m;
}
