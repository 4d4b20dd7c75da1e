/*
 * filter.c -- what a filter allows, one leaf at a time.
 *
 * A search asks a filter two things.  Before it starts: at most how many
 * vectors do you allow (avq_filter_bound)?  That number picks the plan
 * (search.c): exact scoring of every allowed vector when it is small, a
 * filtered scan otherwise.  Then, for each leaf it visits: which of this
 * version's slots do you allow (avq_filter_leaf_mask)?  The answer is a
 * bitmap in the layout of the leaf's liveness bitmap, so the scan kernels
 * take it in place of liveness and never see a disallowed point; its
 * population count lets the search skip the leaf or whole 32-point groups.
 *
 *   allow / deny set   a hash set of ids, probed once per live slot of a
 *                      visited leaf (the ids array is contiguous, the set
 *                      small enough to stay in cache for typical uses)
 *   callback           called once per live slot of a visited leaf
 *   tags ANY / ALL     the leaf's posting lists (tags.c): a union or an
 *                      intersection of a few sorted lists, independent of
 *                      the leaf's size -- the fast path
 */
#include "filter.h"

#include "avq_internal.h"

#include <stdlib.h>
#include <string.h>

enum { FILTER_ALLOW, FILTER_DENY, FILTER_CALLBACK, FILTER_ANY, FILTER_ALL };

struct avq_filter {
    int kind;
    /* id sets: open addressing, AVQ_NO_ID marks an empty slot */
    int64_t *set;
    size_t set_mask, set_count;
    /* callback */
    avq_keep_fn keep;
    void *user;
    /* tags, ascending and distinct */
    uint32_t *tags;
    size_t ntags;
};

static size_t id_slot(int64_t id, size_t mask) {
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (size_t)(h ^ (h >> 29)) & mask;
}

static bool set_has(const avq_filter *f, int64_t id) {
    for (size_t i = id_slot(id, f->set_mask);; i = (i + 1) & f->set_mask) {
        int64_t k = f->set[i];
        if (k == id) return true;
        if (k == AVQ_NO_ID) return false;
    }
}

static int make_id_set(const int64_t *ids, size_t n, int kind, avq_filter **out) {
    if (out) *out = NULL;
    if (!out || (n > 0 && !ids))
        return avq_fail(AVQ_ERR_INVALID, "filter: NULL ids or out");
    if (n > ((size_t)1 << 40)) return avq_fail(AVQ_ERR_INVALID, "filter: %zu ids is too many", n);
    avq_filter *f = calloc(1, sizeof *f);
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    if (f) f->set = malloc(cap * sizeof *f->set);
    if (!f || !f->set) {
        free(f);
        return avq_fail_nomem("filter id set", cap * sizeof(int64_t));
    }
    f->kind = kind;
    f->set_mask = cap - 1;
    for (size_t i = 0; i < cap; i++) f->set[i] = AVQ_NO_ID;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] == AVQ_NO_ID) continue; /* never a vector's id */
        size_t s = id_slot(ids[i], f->set_mask);
        while (f->set[s] != AVQ_NO_ID && f->set[s] != ids[i]) s = (s + 1) & f->set_mask;
        if (f->set[s] == AVQ_NO_ID) {
            f->set[s] = ids[i];
            f->set_count++;
        }
    }
    *out = f;
    return AVQ_OK;
}

int avq_filter_allow_ids(const int64_t *ids, size_t n, avq_filter **out) {
    return make_id_set(ids, n, FILTER_ALLOW, out);
}

int avq_filter_deny_ids(const int64_t *ids, size_t n, avq_filter **out) {
    return make_id_set(ids, n, FILTER_DENY, out);
}

int avq_filter_callback(avq_keep_fn keep, void *user, avq_filter **out) {
    if (out) *out = NULL;
    if (!keep || !out) return avq_fail(AVQ_ERR_INVALID, "filter: NULL callback or out");
    avq_filter *f = calloc(1, sizeof *f);
    if (!f) return avq_fail_nomem("filter", sizeof *f);
    f->kind = FILTER_CALLBACK;
    f->keep = keep;
    f->user = user;
    *out = f;
    return AVQ_OK;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int make_tags(const uint32_t *tags, size_t n, int kind, avq_filter **out) {
    if (out) *out = NULL;
    if (!out || (n > 0 && !tags)) return avq_fail(AVQ_ERR_INVALID, "filter: NULL tags or out");
    if (n == 0) return avq_fail(AVQ_ERR_INVALID, "filter: a tag filter needs at least one tag");
    if (n > AVQ_MAX_FILTER_TAGS)
        return avq_fail(AVQ_ERR_INVALID, "filter: %zu tags exceed the limit of %d", n,
                        AVQ_MAX_FILTER_TAGS);
    avq_filter *f = calloc(1, sizeof *f);
    if (f) f->tags = malloc(n * sizeof *f->tags);
    if (!f || !f->tags) {
        free(f);
        return avq_fail_nomem("filter tags", n * sizeof(uint32_t));
    }
    memcpy(f->tags, tags, n * sizeof *tags);
    qsort(f->tags, n, sizeof *f->tags, cmp_u32);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || f->tags[i] != f->tags[u - 1]) f->tags[u++] = f->tags[i];
    f->ntags = u;
    f->kind = kind;
    *out = f;
    return AVQ_OK;
}

int avq_filter_tags_any(const uint32_t *tags, size_t n, avq_filter **out) {
    return make_tags(tags, n, FILTER_ANY, out);
}

int avq_filter_tags_all(const uint32_t *tags, size_t n, avq_filter **out) {
    return make_tags(tags, n, FILTER_ALL, out);
}

void avq_filter_free(avq_filter *f) {
    if (!f) return;
    free(f->set);
    free(f->tags);
    free(f);
}

/* ---- planning ------------------------------------------------------------------ */

size_t avq_filter_bound(const avq_filter *f, const avq_index *x) {
    size_t live = avq_index_size(x);
    switch (f->kind) {
    case FILTER_ALLOW: return f->set_count < live ? f->set_count : live;
    case FILTER_ANY: {
        size_t sum = 0;
        for (size_t i = 0; i < f->ntags && sum < live; i++) sum += (size_t)avq_tag_count(x, f->tags[i]);
        return sum < live ? sum : live;
    }
    case FILTER_ALL: {
        size_t least = live;
        for (size_t i = 0; i < f->ntags; i++) {
            size_t c = (size_t)avq_tag_count(x, f->tags[i]);
            if (c < least) least = c;
        }
        return least;
    }
    default: return live; /* deny sets and callbacks: unknown */
    }
}

size_t avq_filter_tag_list(const avq_filter *f, const uint32_t **tags, bool *all) {
    if (f->kind != FILTER_ANY && f->kind != FILTER_ALL) return 0;
    *tags = f->tags;
    *all = f->kind == FILTER_ALL;
    return f->ntags;
}

bool avq_filter_bound_is_known(const avq_filter *f) {
    return f->kind == FILTER_ALLOW || f->kind == FILTER_ANY || f->kind == FILTER_ALL;
}

/* ---- one leaf ------------------------------------------------------------------- */

/* Liveness word w of v (all-ones where v has no bitmap, valid lanes only). */
static inline uint32_t live_word(const avq_leaf *v, size_t w) {
    if (v->alive) return v->alive[w];
    size_t left = v->n - 32 * w;
    return left >= 32 ? 0xFFFFFFFFu : (1u << left) - 1u;
}

/* Bits set in x.  The library is built for any x86-64 (no -mpopcnt), where
 * __builtin_popcount is a call into libgcc. */
static inline size_t popcount32(uint32_t x) {
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    x = (x + (x >> 4)) & 0x0F0F0F0Fu;
    return (size_t)((x * 0x01010101u) >> 24);
}

static void set_list(uint32_t *mask, const avq_leaf_tags *t, long key) {
    for (uint32_t j = t->off[key]; j < t->off[key + 1]; j++)
        mask[t->slots[j] >> 5] |= 1u << (t->slots[j] & 31);
}

/* The union of the lists of f's tags in t, into the zeroed mask; returns
 * how many slots it sets when that is known without counting (one list:
 * its length), SIZE_MAX otherwise. */
static size_t mask_any(const avq_filter *f, const avq_leaf_tags *t, uint32_t *mask) {
    if (!t) return 0;
    size_t lists = 0, set = 0, nf = f->ntags, nk = t->nkeys;
#define TAKE(key)                                  \
    do {                                           \
        set_list(mask, t, (long)(key));            \
        lists++;                                   \
        set = t->off[(key) + 1] - t->off[(key)];   \
    } while (0)
    /* both lists are sorted: look the shorter one up in the longer when it
     * is much shorter, else walk the two together (a filter of hundreds of
     * tags against a leaf's few hundred keys: one pass, not a binary search
     * per tag) */
    if (8 * nf < nk) {
        for (size_t i = 0; i < nf; i++) {
            long key = avq_leaf_tags_find(t, f->tags[i]);
            if (key >= 0) TAKE(key);
        }
    } else if (8 * nk < nf) {
        for (uint32_t key = 0; key < nk; key++)
            if (avq_sorted_u32_has(f->tags, nf, t->keys[key])) TAKE(key);
    } else {
        for (size_t i = 0, key = 0; i < nf && key < nk;) {
            if (f->tags[i] < t->keys[key]) {
                i++;
            } else if (t->keys[key] < f->tags[i]) {
                key++;
            } else {
                TAKE(key);
                i++;
                key++;
            }
        }
    }
#undef TAKE
    return lists <= 1 ? (lists ? set : 0) : SIZE_MAX;
}

/* The length of posting list `key` of t. */
static inline uint32_t list_len(const avq_leaf_tags *t, long key) {
    return t->off[key + 1] - t->off[key];
}

/* The intersection, into the zeroed mask; returns the slots set. */
static size_t mask_all(const avq_filter *f, const avq_leaf_tags *t, uint32_t *mask) {
    size_t set = 0;
    if (!t || f->ntags > t->nkeys) return 0;
    long keys[AVQ_MAX_FILTER_TAGS];
    size_t shortest = 0;
    for (size_t i = 0; i < f->ntags; i++) {
        keys[i] = avq_leaf_tags_find(t, f->tags[i]);
        if (keys[i] < 0) return 0; /* a tag the leaf lacks: nothing allowed */
        if (list_len(t, keys[i]) < list_len(t, keys[shortest])) shortest = i;
    }
    /* each slot of the shortest list that is in every other list */
    long s = keys[shortest];
    for (uint32_t j = t->off[s]; j < t->off[s + 1]; j++) {
        uint32_t slot = t->slots[j];
        bool all = true;
        for (size_t i = 0; i < f->ntags && all; i++)
            if (i != shortest)
                all = avq_sorted_u32_has(t->slots + t->off[keys[i]], list_len(t, keys[i]), slot);
        if (all) {
            mask[slot >> 5] |= 1u << (slot & 31);
            set++;
        }
    }
    return set;
}

int avq_filter_leaf_mask(const avq_filter *f, const avq_leaf *v, uint32_t *mask,
                         size_t *allowed) {
    size_t words = (v->n + 31) / 32, count = 0;
    const int64_t *ids = v->store ? v->store->ids : NULL;
    switch (f->kind) {
    case FILTER_ANY:
    case FILTER_ALL:
        /* the lists hold live slots only (tags.c keeps them so, loading
         * validates it): no AND with the liveness bitmap */
        memset(mask, 0, words * sizeof *mask);
        count = f->kind == FILTER_ANY ? mask_any(f, v->tags, mask) : mask_all(f, v->tags, mask);
        if (count == SIZE_MAX) {
            count = 0;
            for (size_t w = 0; w < words; w++) count += popcount32(mask[w]);
        }
        break;
    default:
        for (size_t w = 0; w < words; w++) {
            uint32_t live = live_word(v, w), keep = 0;
            while (live) {
                unsigned b = (unsigned)__builtin_ctz(live);
                live &= live - 1;
                int64_t id = ids[32 * w + b];
                int ok;
                if (f->kind == FILTER_CALLBACK) {
                    ok = f->keep(f->user, id);
                    if (ok < 0)
                        return avq_fail(AVQ_ERR_CANCELLED,
                                        "search: the filter callback returned %d for id %lld", ok,
                                        (long long)id);
                } else {
                    ok = set_has(f, id) == (f->kind == FILTER_ALLOW);
                }
                if (ok) keep |= 1u << b;
            }
            mask[w] = keep;
            count += popcount32(keep);
        }
        break;
    }
    *allowed = count;
    return AVQ_OK;
}
