/*
 * tags.c -- the tags of vectors: each leaf version's inverted list, and the
 * per-index count of every tag.
 *
 * Where tags live.  A filter asks "which slots of this leaf carry tag t?",
 * so a leaf stores, per distinct tag, the ascending list of its live slots
 * that carry it (a posting list).  A search finds a tag's list by binary
 * search over the leaf's keys and turns one or a few lists into the
 * leaf's allow mask (filter.c); the length of a list is an exact count, so
 * the number of allowed slots of a leaf is known before it is scanned.
 * A leaf's lists change with the leaf: every new version gets new lists
 * (avq_leaf_tags_change), built by one merge of the old lists -- already in
 * (tag, slot) order, minus dead and edited slots -- with the sorted pairs of
 * the new points.  That costs O(postings of the leaf) per change, the same
 * order as copying its liveness bitmap.
 *
 * The count table.  The planner needs "how many vectors does this filter
 * allow?" before choosing between exact scoring and the scan, without
 * walking every leaf.  The index keeps the live count of every tag in an
 * open-addressing table.  Only the writer changes it (under write_lock):
 * counts are atomic and changed in place, a key once inserted is never
 * removed, and a full table is replaced by a larger copy, the old one
 * retired like a leaf version so a search still reading it is safe.  A
 * search may read a count a commit is about to change: the count guides
 * the plan only, never which vectors are allowed.
 *
 * The table also keeps, per tag, the ascending list of leaves holding it,
 * so the exact plan for a rare tag visits a handful of leaves instead of
 * probing every leaf's keys (that walk alone cost about 60 us a query on
 * GloVe's 576 leaves).  A list is immutable and replaced as a whole when a
 * leaf gains its first or loses its last vector with the tag; a commit
 * makes all its new lists in prepare, one per tag however many leaves
 * changed, and publishes them between avq_commit_begin and avq_commit_end
 * with the leaf versions; a search reads them in the same window as its
 * leaf snapshot (avq_snapshot_all), so lists and versions always agree.
 */
#include "avq_internal.h"
#include "index.h"

#include <stdlib.h>
#include <string.h>

/* ---- a leaf's lists -------------------------------------------------------- */

void avq_leaf_tags_free(avq_leaf_tags *t) {
    if (!t) return;
    free(t->own);
    free(t);
}

size_t avq_leaf_tags_bytes(const avq_leaf_tags *t) {
    if (!t) return 0;
    size_t b = sizeof *t;
    if (t->own) b += (2 * (size_t)t->nkeys + 1 + t->npost) * sizeof(uint32_t);
    return b;
}

long avq_leaf_tags_find(const avq_leaf_tags *t, uint32_t tag) {
    if (!t) return -1;
    size_t lo = 0, hi = t->nkeys;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->keys[mid] < tag) lo = mid + 1;
        else hi = mid;
    }
    return lo < t->nkeys && t->keys[lo] == tag ? (long)lo : -1;
}

bool avq_sorted_u32_has(const uint32_t *p, size_t n, uint32_t slot) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p[mid] < slot) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && p[lo] == slot;
}

size_t avq_leaf_tags_of_slot(const avq_leaf_tags *t, uint32_t slot, uint32_t *out, size_t cap) {
    if (!t) return 0;
    size_t found = 0;
    for (uint32_t i = 0; i < t->nkeys; i++)
        if (avq_sorted_u32_has(t->slots + t->off[i], t->off[i + 1] - t->off[i], slot)) {
            if (found < cap) out[found] = t->keys[i];
            found++;
        }
    return found;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

#define PAIR(tag, slot) ((uint64_t)(tag) << 32 | (uint64_t)(slot))

/* Append the (tag, slot) pairs of one tag list; returns the new count. */
static size_t put_pairs(uint64_t *pairs, size_t count, const size_t *off, const uint32_t *tags,
                        size_t i, uint32_t slot) {
    for (size_t j = off[i]; j < off[i + 1]; j++) pairs[count++] = PAIR(tags[j], slot);
    return count;
}

int avq_leaf_tags_change(const avq_leaf_tags *old, const uint32_t *alive, const uint32_t *remap,
                         const avq_tag_edit *edit, const avq_new_points *add, size_t first_new,
                         avq_leaf_tags **out) {
    *out = NULL;
    size_t nedit = edit ? edit->count : 0, nadd = add && add->tag_off ? add->count : 0;
    size_t fresh = 0;
    if (nedit) fresh += edit->tag_off[nedit] - edit->tag_off[0];
    if (nadd) fresh += add->tag_off[nadd] - add->tag_off[0];
    size_t kept_max = old ? old->npost : 0;
    if (kept_max + fresh == 0) return AVQ_OK;
    if (kept_max + fresh > UINT32_MAX)
        return avq_fail(AVQ_ERR_INVALID, "a leaf would hold more than 2^32 tag postings");
    uint64_t *a = malloc((kept_max ? kept_max : 1) * sizeof *a);
    uint64_t *b = malloc((fresh ? fresh : 1) * sizeof *b);
    int st = AVQ_OK;
    if (!a || !b) {
        st = avq_fail_nomem("tag pairs", (kept_max + fresh) * sizeof *a);
        goto done;
    }
    /* the old lists, still in (tag, slot) order: remap is increasing */
    size_t na = 0;
    for (uint32_t i = 0; old && i < old->nkeys; i++)
        for (uint32_t j = old->off[i]; j < old->off[i + 1]; j++) {
            uint32_t s = old->slots[j];
            if (alive && !((alive[s >> 5] >> (s & 31)) & 1u)) continue;
            if (nedit && avq_sorted_u32_has(edit->slots, nedit, s)) continue;
            a[na++] = PAIR(old->keys[i], remap ? remap[s] : s);
        }
    /* the new pairs, sorted and without repeats */
    size_t nb = 0;
    for (size_t i = 0; i < nedit; i++) {
        uint32_t s = edit->slots[i];
        nb = put_pairs(b, nb, edit->tag_off, edit->tags, i, remap ? remap[s] : s);
    }
    for (size_t i = 0; i < nadd; i++)
        nb = put_pairs(b, nb, add->tag_off, add->tags, i, (uint32_t)(first_new + i));
    qsort(b, nb, sizeof *b, cmp_u64);
    size_t u = 0;
    for (size_t i = 0; i < nb; i++)
        if (u == 0 || b[i] != b[u - 1]) b[u++] = b[i];
    nb = u;
    size_t total = na + nb;
    if (total == 0) goto done;
    /* merge, counting distinct tags */
    uint64_t *m = malloc(total * sizeof *m);
    if (!m) {
        st = avq_fail_nomem("tag pairs", total * sizeof *m);
        goto done;
    }
    size_t ia = 0, ib = 0, nkeys = 0;
    for (size_t k = 0; k < total; k++) {
        m[k] = ib >= nb || (ia < na && a[ia] < b[ib]) ? a[ia++] : b[ib++];
        if (k == 0 || m[k] >> 32 != m[k - 1] >> 32) nkeys++;
    }
    avq_leaf_tags *t = calloc(1, sizeof *t);
    uint32_t *arrays = malloc((2 * nkeys + 1 + total) * sizeof *arrays);
    if (!t || !arrays) {
        free(t);
        free(arrays);
        free(m);
        st = avq_fail_nomem("leaf tags", (2 * nkeys + 1 + total) * sizeof *arrays);
        goto done;
    }
    uint32_t *keys = arrays, *off = arrays + nkeys, *slots = arrays + 2 * nkeys + 1;
    size_t key = 0;
    for (size_t k = 0; k < total; k++) {
        if (k == 0 || m[k] >> 32 != m[k - 1] >> 32) {
            keys[key] = (uint32_t)(m[k] >> 32);
            off[key++] = (uint32_t)k;
        }
        slots[k] = (uint32_t)m[k];
    }
    off[nkeys] = (uint32_t)total;
    free(m);
    t->nkeys = (uint32_t)nkeys;
    t->npost = (uint32_t)total;
    t->keys = keys;
    t->off = off;
    t->slots = slots;
    t->own = arrays;
    *out = t;
done:
    free(a);
    free(b);
    return st;
}

int avq_leaf_tags_validate(const avq_leaf_tags *t, const avq_leaf *v, size_t leaf) {
    if (!t) return AVQ_OK;
    if (t->off[0] != 0 || t->off[t->nkeys] != t->npost)
        return avq_fail(AVQ_ERR_FORMAT, "leaf %zu: tag offsets do not span its %u postings", leaf,
                        t->npost);
    for (uint32_t i = 0; i < t->nkeys; i++) {
        if (i > 0 && t->keys[i] <= t->keys[i - 1])
            return avq_fail(AVQ_ERR_FORMAT, "leaf %zu: tags are not strictly ascending at %u",
                            leaf, i);
        if (t->off[i + 1] <= t->off[i] || t->off[i + 1] > t->npost)
            return avq_fail(AVQ_ERR_FORMAT, "leaf %zu: tag %u has a bad posting range", leaf,
                            t->keys[i]);
        for (uint32_t j = t->off[i]; j < t->off[i + 1]; j++) {
            uint32_t s = t->slots[j];
            if (s >= v->n || !avq_leaf_slot_alive(v, s) || (j > t->off[i] && s <= t->slots[j - 1]))
                return avq_fail(AVQ_ERR_FORMAT,
                                "leaf %zu: tag %u lists slot %u, which is out of order, out of "
                                "range or not live", leaf, t->keys[i], s);
        }
    }
    return AVQ_OK;
}

/* ---- the count table ------------------------------------------------------- */

static size_t tag_slot(uint32_t tag, size_t mask) {
    return (size_t)(((uint64_t)tag + 1) * 0x9E3779B97F4A7C15ull >> 20) & mask;
}

static void table_free(avq_tag_table *t) {
    if (!t) return;
    free(t->keys);
    free(t->counts);
    free(t->lists);
    free(t);
}

/* A retired table: its lists live on in the table that replaced it. */
void avq_tag_table_free(avq_tag_table *t) { table_free(t); }

void avq_tag_table_free_all(avq_tag_table *t) {
    for (size_t i = 0; t && i < t->capacity; i++) free(atomic_load(&t->lists[i]));
    table_free(t);
}

/* The entry of `tag`, or where it would go. */
static size_t table_find(const avq_tag_table *t, uint32_t tag, bool *found) {
    size_t mask = t->capacity - 1, i = tag_slot(tag, mask);
    uint64_t want = (uint64_t)tag + 1;
    for (;;) {
        uint64_t k = atomic_load_explicit(&t->keys[i], memory_order_acquire);
        if (k == want || k == 0) {
            *found = k == want;
            return i;
        }
        i = (i + 1) & mask;
    }
}

int64_t avq_tag_count(const avq_index *x, uint32_t tag) {
    avq_tag_table *t = atomic_load_explicit(&((avq_index *)x)->tag_table, memory_order_acquire);
    if (!t) return 0;
    bool found;
    size_t i = table_find(t, tag, &found);
    if (!found) return 0;
    int64_t c = atomic_load_explicit(&t->counts[i], memory_order_relaxed);
    return c > 0 ? c : 0;
}

int avq_tag_table_reserve(avq_index *x, size_t more) {
    avq_tag_table *old = atomic_load(&x->tag_table);
    size_t used = old ? old->used : 0;
    if (old && 2 * (used + more) <= old->capacity) return AVQ_OK;
    size_t cap = 64;
    while (cap < 2 * (used + more)) cap *= 2;
    avq_tag_table *t = calloc(1, sizeof *t);
    if (t) {
        t->keys = calloc(cap, sizeof *t->keys);
        t->counts = calloc(cap, sizeof *t->counts);
        t->lists = calloc(cap, sizeof *t->lists);
    }
    if (!t || !t->keys || !t->counts || !t->lists) {
        table_free(t);
        return avq_fail_nomem("tag count table", cap * 16);
    }
    t->capacity = cap;
    for (size_t i = 0; old && i < old->capacity; i++) {
        uint64_t k = atomic_load(&old->keys[i]);
        if (!k) continue;
        bool found;
        size_t j = table_find(t, (uint32_t)(k - 1), &found);
        atomic_store(&t->counts[j], atomic_load(&old->counts[i]));
        atomic_store(&t->lists[j], atomic_load(&old->lists[i]));
        atomic_store(&t->keys[j], k);
        t->used++;
    }
    atomic_store_explicit(&x->tag_table, t, memory_order_release);
    if (old) avq_retire_tag_table(x, old);
    return AVQ_OK;
}

/* The entry of tag, inserted (count 0, no list) if absent: room was
 * reserved. */
static size_t table_entry(avq_tag_table *t, uint32_t tag) {
    bool found;
    size_t i = table_find(t, tag, &found);
    if (!found) {
        atomic_store_explicit(&t->keys[i], (uint64_t)tag + 1, memory_order_release);
        t->used++;
    }
    return i;
}

/* counts[tag] += delta (only the writer writes: load + store). */
static void count_add(avq_tag_table *t, uint32_t tag, int64_t delta) {
    size_t i = table_entry(t, tag);
    atomic_store_explicit(&t->counts[i], atomic_load_explicit(&t->counts[i], memory_order_relaxed) +
                                             delta, memory_order_relaxed);
}

const avq_tag_leaves *avq_tag_leaves_of(const avq_index *x, uint32_t tag) {
    avq_tag_table *t = atomic_load_explicit(&((avq_index *)x)->tag_table, memory_order_acquire);
    if (!t) return NULL;
    bool found;
    size_t i = table_find(t, tag, &found);
    return found ? atomic_load_explicit(&t->lists[i], memory_order_acquire) : NULL;
}

/* ---- the leaf lists ---------------------------------------------------------- */

/* A presence change: bit 0 = gained (1) or lost (0), bits 1..31 the leaf
 * (fewer than 2^24 leaves), bits 32..63 the tag -- sorted, the changes of
 * one tag come together, by leaf. */
#define PRESENCE(tag, leaf, gained) \
    ((uint64_t)(tag) << 32 | (uint64_t)(leaf) << 1 | (uint64_t)(gained))
#define PRESENCE_TAG(c) ((uint32_t)((c) >> 32))
#define PRESENCE_LEAF(c) ((uint32_t)(((c) >> 1) & 0x7FFFFFFFu))

/* Append the presence changes of leaf l going from o to n (key lists). */
static size_t presence_changes(const avq_leaf_tags *o, const avq_leaf_tags *n, size_t l,
                               uint64_t *out, size_t count) {
    uint32_t io = 0, in = 0, no = o ? o->nkeys : 0, nn = n ? n->nkeys : 0;
    while (io < no || in < nn) {
        if (in >= nn || (io < no && o->keys[io] < n->keys[in])) {
            out[count++] = PRESENCE(o->keys[io++], l, 0);
        } else if (io >= no || n->keys[in] < o->keys[io]) {
            out[count++] = PRESENCE(n->keys[in++], l, 1);
        } else {
            io++;
            in++;
        }
    }
    return count;
}

void avq_tag_lists_abandon(avq_tag_list_change *c) {
    for (size_t i = 0; i < c->count; i++) free(c->lists[i]);
    free(c->tags);
    free(c->lists);
    memset(c, 0, sizeof *c);
}

/* old's leaves with the changes ch[0..n) of one tag applied (a loss drops
 * a leaf, a gain inserts it), or NULL when none is left. */
static int apply_presence(const avq_tag_leaves *old, const uint64_t *ch, size_t n,
                          avq_tag_leaves **out) {
    size_t oc = old ? old->count : 0, gained = 0;
    *out = NULL;
    for (size_t j = 0; j < n; j++) gained += ch[j] & 1u;
    if (oc + gained == 0) return AVQ_OK;
    avq_tag_leaves *nl = malloc(sizeof *nl + (oc + gained) * sizeof(uint32_t));
    if (!nl) return avq_fail_nomem("tag leaf list", (oc + gained) * sizeof(uint32_t));
    size_t a = 0, j = 0, c = 0;
    while (a < oc || j < n) {
        uint32_t leaf = j < n ? PRESENCE_LEAF(ch[j]) : UINT32_MAX;
        if (a < oc && old->leaves[a] < leaf) {
            nl->leaves[c++] = old->leaves[a++];
        } else {
            if (a < oc && old->leaves[a] == leaf) a++; /* the change decides */
            if (ch[j] & 1u) nl->leaves[c++] = leaf;
            j++;
        }
    }
    nl->count = (uint32_t)c;
    if (c == 0) free(nl);
    else *out = nl;
    return AVQ_OK;
}

int avq_tag_lists_prepare(const avq_index *x, avq_leaf *const *fresh, bool from_empty,
                          avq_tag_list_change *out) {
    memset(out, 0, sizeof *out);
    size_t bound = 0, L = x->num_leaves;
    for (size_t l = 0; l < L; l++) {
        if (!fresh[l]) continue;
        const avq_leaf_tags *o = from_empty ? NULL : avq_leaf_load(x, l)->tags;
        bound += (o ? o->nkeys : 0) + (fresh[l]->tags ? fresh[l]->tags->nkeys : 0);
    }
    if (bound == 0) return AVQ_OK;
    uint64_t *ch = malloc(bound * sizeof *ch);
    if (!ch) return avq_fail_nomem("tag leaf changes", bound * sizeof *ch);
    size_t n = 0;
    for (size_t l = 0; l < L; l++)
        if (fresh[l])
            n = presence_changes(from_empty ? NULL : avq_leaf_load(x, l)->tags, fresh[l]->tags, l,
                                 ch, n);
    qsort(ch, n, sizeof *ch, cmp_u64);
    size_t tags = 0;
    for (size_t i = 0; i < n; i++) tags += i == 0 || PRESENCE_TAG(ch[i]) != PRESENCE_TAG(ch[i - 1]);
    int st = AVQ_OK;
    out->tags = malloc((tags ? tags : 1) * sizeof *out->tags);
    out->lists = calloc(tags ? tags : 1, sizeof *out->lists);
    if (!out->tags || !out->lists) st = avq_fail_nomem("tag leaf lists", tags * 12);
    for (size_t i = 0; i < n && st == AVQ_OK;) {
        uint32_t tag = PRESENCE_TAG(ch[i]);
        size_t e = i;
        while (e < n && PRESENCE_TAG(ch[e]) == tag) e++;
        out->tags[out->count] = tag;
        st = apply_presence(from_empty ? NULL : avq_tag_leaves_of(x, tag), ch + i, e - i,
                            &out->lists[out->count]);
        out->count++;
        i = e;
    }
    free(ch);
    if (st != AVQ_OK) avq_tag_lists_abandon(out);
    return st;
}

void avq_tag_lists_commit(avq_index *x, avq_tag_list_change *c) {
    avq_tag_table *t = atomic_load(&x->tag_table);
    for (size_t i = 0; i < c->count && t; i++) {
        size_t e = table_entry(t, c->tags[i]);
        avq_tag_leaves *old = atomic_load(&t->lists[e]);
        atomic_store_explicit(&t->lists[e], c->lists[i], memory_order_release);
        if (old) avq_retire_tag_leaves(x, old);
        c->lists[i] = NULL; /* published: not freed below */
    }
    avq_tag_lists_abandon(c);
}


void avq_tag_counts_update(avq_index *x, const avq_leaf_tags *o, const avq_leaf_tags *n) {
    if (!o && !n) return;
    avq_tag_table *t = atomic_load(&x->tag_table);
    uint32_t io = 0, in = 0, no = o ? o->nkeys : 0, nn = n ? n->nkeys : 0;
    while (io < no || in < nn) {
        uint32_t tag;
        int64_t delta = 0;
        if (in >= nn || (io < no && o->keys[io] < n->keys[in])) {
            tag = o->keys[io];
            delta = -(int64_t)(o->off[io + 1] - o->off[io]);
            io++;
        } else if (io >= no || n->keys[in] < o->keys[io]) {
            tag = n->keys[in];
            delta = (int64_t)(n->off[in + 1] - n->off[in]);
            in++;
        } else {
            tag = n->keys[in];
            delta = (int64_t)(n->off[in + 1] - n->off[in]) - (int64_t)(o->off[io + 1] - o->off[io]);
            io++;
            in++;
        }
        if (delta != 0 && t) count_add(t, tag, delta);
    }
}

int avq_tag_counts_rebuild(avq_index *x) {
    size_t keys = 0;
    for (size_t l = 0; l < x->num_leaves; l++) {
        const avq_leaf *v = avq_leaf_load(x, l);
        if (v->tags) keys += v->tags->nkeys;
    }
    avq_tag_table *old = atomic_load(&x->tag_table);
    if (old) { /* start over: nothing else reads an index being loaded, so
                  the table and its lists go at once */
        atomic_store(&x->tag_table, NULL);
        avq_tag_table_free_all(old);
    }
    if (keys == 0) return AVQ_OK;
    int st = avq_tag_table_reserve(x, keys);
    if (st != AVQ_OK) return st;
    avq_leaf **all = malloc(x->num_leaves * sizeof *all);
    if (!all) return avq_fail_nomem("leaf table", x->num_leaves * sizeof *all);
    for (size_t l = 0; l < x->num_leaves; l++) all[l] = avq_leaf_load(x, l);
    avq_tag_list_change change;
    st = avq_tag_lists_prepare(x, all, true, &change);
    free(all);
    if (st != AVQ_OK) return st;
    for (size_t l = 0; l < x->num_leaves; l++)
        avq_tag_counts_update(x, NULL, avq_leaf_load(x, l)->tags);
    avq_tag_lists_commit(x, &change);
    return AVQ_OK;
}

size_t avq_tag_table_bytes(const avq_index *x) {
    avq_tag_table *t = atomic_load(&((avq_index *)x)->tag_table);
    if (!t) return 0;
    size_t b = sizeof *t + t->capacity * (sizeof *t->keys + sizeof *t->counts + sizeof *t->lists);
    for (size_t i = 0; i < t->capacity; i++) {
        avq_tag_leaves *l = atomic_load(&t->lists[i]);
        if (l) b += sizeof *l + l->count * sizeof(uint32_t);
    }
    return b;
}

size_t avq_tag_table_distinct(const avq_index *x) {
    avq_tag_table *t = atomic_load(&((avq_index *)x)->tag_table);
    size_t n = 0;
    for (size_t i = 0; t && i < t->capacity; i++)
        n += atomic_load(&t->keys[i]) != 0 && atomic_load(&t->counts[i]) > 0;
    return n;
}
