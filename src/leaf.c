/*
 * leaf.c -- the storage of a living index: leaf versions and their stores,
 * the id map, and the reclamation that lets searches run without locks.
 *
 * Concurrency, and why it is done this way.  Searches must never wait for a
 * writer and never see a torn leaf.  The two usual answers are a
 * reader-writer lock per leaf and read-copy-update; we use the second:
 *
 *   - every leaf is one atomic pointer to an immutable version (index.h);
 *   - a writer makes the new version beside the old one -- appending into
 *     slots no published version covers, copying only the small parts that
 *     searches read whole (the filling code group, the liveness bitmap) --
 *     and swaps the pointer: one store, so a search sees the leaf before or
 *     after the change, and a search that starts after the writer returns
 *     sees the change (removed ids are never returned again);
 *   - one writer call publishes all its leaves between two increments of a
 *     commit sequence, and a search snapshots the leaves it reads between
 *     two equal even readings of it, so a call is seen in all its leaves or
 *     in none (an upsert moving a vector between leaves is seen once);
 *   - the old version (and a store the new one no longer uses) is retired
 *     with the current epoch and freed once every search running at that
 *     moment has finished (epoch-based reclamation: each search holds one of
 *     AVQ_READER_SLOTS slots with the epoch it started in).
 *
 * A reader pays one compare-and-swap and one store per search (not per
 * leaf), on a cache line of its own, instead of two atomic read-modify-
 * writes per leaf on lines that every searcher shares (a rwlock's counter):
 * with 20 leaves per query that is 40 contended atomics saved per query.
 * The writer pays a copy of the tail group (16K or 32K bytes) and of the liveness
 * bitmap per changed leaf and change, which is small next to encoding.
 * doc/RESULTS.md ("Living index", part c) has the measured cost with and
 * without a writer.
 *
 * All functions but avq_read_begin/avq_read_end run with the index's write
 * lock held.
 */
#include "avq_internal.h"
#include "index.h"
#include "pack.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum { RETIRED_LEAF = 1, RETIRED_STORE = 2, RETIRED_TAG_TABLE = 3, RETIRED_TAG_LEAVES = 4 };

/* ---- mappings --------------------------------------------------------------- */

avq_mapping *avq_mapping_new(void *addr, size_t bytes) {
    avq_mapping *m = malloc(sizeof *m);
    if (!m) return NULL;
    m->addr = addr;
    m->bytes = bytes;
    atomic_init(&m->refs, 1);
    return m;
}

void avq_mapping_ref(avq_mapping *m) { atomic_fetch_add(&m->refs, 1); }

void avq_mapping_unref(avq_mapping *m) {
    if (m && atomic_fetch_sub(&m->refs, 1) == 1) {
        munmap(m->addr, m->bytes);
        free(m);
    }
}

/* ---- readers and reclamation ------------------------------------------------ */

int avq_read_begin(avq_index *x) {
    /* Threads start at different slots (their stacks differ), so two
     * searchers rarely compete for one. */
    uintptr_t here = (uintptr_t)&here;
    size_t start = (size_t)((here >> 12) * 0x9E3779B97F4A7C15ull >> 58) % AVQ_READER_SLOTS;
    for (;;) {
        for (size_t i = 0; i < AVQ_READER_SLOTS; i++) {
            avq_reader_slot *s = &x->readers[(start + i) % AVQ_READER_SLOTS];
            if (atomic_load_explicit(&s->epoch, memory_order_relaxed) != 0) continue;
            uint64_t idle = 0, now = atomic_load(&x->epoch);
            if (atomic_compare_exchange_strong(&s->epoch, &idle, now))
                return (int)((start + i) % AVQ_READER_SLOTS);
        }
        sched_yield(); /* more than AVQ_READER_SLOTS searches at once */
    }
}

void avq_read_end(avq_index *x, int slot) { atomic_store(&x->readers[slot].epoch, 0); }

static void retire(avq_index *x, avq_retired *node, int kind) {
    node->kind = kind;
    node->epoch = atomic_fetch_add(&x->epoch, 1);
    node->next = x->retired;
    x->retired = node;
}

void avq_retire_leaf(avq_index *x, avq_leaf *v) { retire(x, &v->node, RETIRED_LEAF); }
void avq_retire_store(avq_index *x, avq_leaf_store *s) { retire(x, &s->node, RETIRED_STORE); }
void avq_retire_tag_table(avq_index *x, avq_tag_table *t) { retire(x, &t->node, RETIRED_TAG_TABLE); }
void avq_retire_tag_leaves(avq_index *x, avq_tag_leaves *t) { retire(x, &t->node, RETIRED_TAG_LEAVES); }

static void free_retired(avq_retired *r) {
    if (r->kind == RETIRED_LEAF) avq_leaf_free((avq_leaf *)r);
    else if (r->kind == RETIRED_TAG_TABLE) avq_tag_table_free((avq_tag_table *)r);
    else if (r->kind == RETIRED_TAG_LEAVES) free(r);
    else avq_leaf_store_free((avq_leaf_store *)r);
}

void avq_reclaim(avq_index *x) {
    uint64_t oldest = UINT64_MAX;
    for (size_t i = 0; i < AVQ_READER_SLOTS; i++) {
        uint64_t e = atomic_load(&x->readers[i].epoch);
        if (e != 0 && e < oldest) oldest = e;
    }
    /* a search that started in epoch e may hold anything retired at e or
     * later; what was retired before every running search began is free */
    avq_retired **link = &x->retired;
    while (*link) {
        avq_retired *r = *link;
        if (r->epoch < oldest) {
            *link = r->next;
            free_retired(r);
        } else {
            link = &r->next;
        }
    }
}

void avq_commit_begin(avq_index *x) { atomic_fetch_add(&x->commit_seq, 1); }
void avq_commit_end(avq_index *x) { atomic_fetch_add(&x->commit_seq, 1); }

void avq_snapshot_leaves(const avq_index *x, const avq_leaf **snap, const avq_neighbor *which,
                         size_t count) {
    avq_index *mx = (avq_index *)x;
    size_t n = which ? count : x->num_leaves;
    for (;;) {
        uint64_t before = atomic_load(&mx->commit_seq);
        if (before & 1) { /* a commit is publishing: it is a few stores */
            sched_yield();
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            size_t l = which ? (size_t)which[i].id : i;
            snap[l] = atomic_load(&mx->leaves[l]);
        }
        if (atomic_load(&mx->commit_seq) == before) return;
    }
}

void avq_snapshot_all(const avq_index *x, const avq_leaf **snap, void (*also)(void *ctx),
                      void *ctx) {
    avq_index *mx = (avq_index *)x;
    for (;;) {
        uint64_t before = atomic_load(&mx->commit_seq);
        if (before & 1) {
            sched_yield();
            continue;
        }
        for (size_t l = 0; l < x->num_leaves; l++) snap[l] = atomic_load(&mx->leaves[l]);
        if (also) also(ctx);
        if (atomic_load(&mx->commit_seq) == before) return;
    }
}

void avq_leaf_publish(avq_index *x, size_t l, avq_leaf *v) {
    avq_leaf *old = atomic_load(&x->leaves[l]);
    atomic_store(&x->leaves[l], v);
    if (old->store && old->store != v->store) avq_retire_store(x, old->store);
    avq_retire_leaf(x, old);
}

/* ---- versions and stores ------------------------------------------------------ */

avq_leaf *avq_leaf_new_empty(void) { return calloc(1, sizeof(avq_leaf)); }

void avq_leaf_free(avq_leaf *v) {
    if (!v) return;
    avq_free_aligned(v->own_tail);
    free(v->own_alive);
    avq_leaf_tags_free(v->tags);
    free(v);
}

void avq_leaf_store_free(avq_leaf_store *s) {
    if (!s) return;
    if (s->owned) {
        avq_free_aligned(s->codes);
        free(s->ids);
        free(s->vectors);
        free(s->vectors_i8);
        free(s->vectors_f16);
        free(s->norms2);
    }
    free(s);
}

size_t avq_leaf_bytes(const avq_index *x, const avq_leaf *v) {
    size_t b = sizeof *v;
    if (v->own_tail) b += avq_pack_group_bytes(x->q->bits, x->q->num_blocks);
    if (v->own_alive) b += (v->n + 31) / 32 * sizeof(uint32_t);
    if (v->store) b += v->store->bytes;
    return b + avq_leaf_tags_bytes(v->tags);
}

int avq_index_alloc(avq_quantizer *q, avq_index **out) {
    *out = NULL;
    avq_index *x = calloc(1, sizeof *x);
    if (!x) return avq_fail_nomem("index", sizeof *x);
    x->leaves = calloc(q->num_leaves, sizeof *x->leaves);
    if (!x->leaves) {
        free(x);
        return avq_fail_nomem("leaf table", q->num_leaves * sizeof *x->leaves);
    }
    x->q = q;
    x->dim = q->dim;
    x->num_leaves = q->num_leaves;
    atomic_init(&x->live, 0);
    atomic_init(&x->epoch, 1);
    atomic_init(&x->commit_seq, 0);
    atomic_init(&x->tag_table, NULL);
    for (size_t i = 0; i < AVQ_READER_SLOTS; i++) atomic_init(&x->readers[i].epoch, 0);
    pthread_mutex_init(&x->write_lock, NULL);
    x->ids_ready = true;
    x->ids.two = AVQ_COPIES(q) == 2;
    x->compact_threshold = 0.5;
    avq_quantizer_ref(q);
    for (size_t l = 0; l < q->num_leaves; l++) {
        avq_leaf *v = avq_leaf_new_empty();
        if (!v) {
            avq_index_free(x);
            return avq_fail_nomem("leaf", sizeof *v);
        }
        atomic_init(&x->leaves[l], v);
    }
    *out = x;
    return AVQ_OK;
}

void avq_index_free(avq_index *x) {
    if (!x) return;
    if (x->leaves) {
        for (size_t l = 0; l < x->num_leaves; l++) {
            avq_leaf *v = atomic_load(&x->leaves[l]);
            if (!v) continue;
            avq_leaf_store_free(v->store);
            avq_leaf_free(v);
        }
        free(x->leaves);
    }
    while (x->retired) {
        avq_retired *r = x->retired;
        x->retired = r->next;
        free_retired(r);
    }
    avq_idmap_free(&x->ids);
    avq_tag_table_free_all(atomic_load(&x->tag_table));
    avq_mapping_unref(x->mapping);
    avq_mapping_unref(x->codes_mapping);
    avq_quantizer_free(x->q);
    pthread_mutex_destroy(&x->write_lock);
    free(x);
}

/* ---- making a new version --------------------------------------------------- */

static size_t round32(size_t n) { return (n + 31) & ~(size_t)31; }

/* The unpacked codes of slot s of version v (K bytes into out). */
static void slot_codes(const avq_leaf *v, int bits, size_t K, size_t s, uint8_t *out) {
    const uint8_t *packed = s < v->full ? v->store->codes : v->tail;
    size_t i = s < v->full ? s : s - v->full;
    for (size_t m = 0; m < K; m++) out[m] = avq_pack_get(bits, packed, K, i, m);
}

/* A store of `capacity` slots.  whole = an exact-size store (a first fill,
 * a compaction) whose codes are all its slots packed, partial last group
 * included, exactly like a loaded leaf: it is never appended to in place
 * (it has no room), so its last group never changes under a search.  Else
 * the codes region holds complete groups only (the filling group is each
 * version's tail). */
static int store_new(const avq_index *x, size_t capacity, bool whole, avq_leaf_store **out) {
    const avq_quantizer *q = x->q;
    size_t d = x->dim, K = q->num_blocks;
    avq_leaf_store *s = calloc(1, sizeof *s);
    if (!s) return avq_fail_nomem("leaf store", sizeof *s);
    s->owned = true;
    s->capacity = capacity;
    size_t cap = capacity ? capacity : 1, code_bytes = 0;
    bool ok = true;
    if (q->mode == AVQ_MODE_PQ) {
        code_bytes = whole ? avq_pack_size(q->bits, capacity, K)
                           : capacity / 32 * avq_pack_group_bytes(q->bits, K);
        s->codes = avq_alloc_aligned(code_bytes ? code_bytes : 64);
        ok &= s->codes != NULL;
    }
    s->ids = malloc(cap * sizeof *s->ids);
    ok &= s->ids != NULL;
    if (avq_keeps_float(q)) ok &= (s->vectors = malloc(cap * d * sizeof(float))) != NULL;
    if (avq_keeps_int8(q)) ok &= (s->vectors_i8 = malloc(cap * d)) != NULL;
    if (avq_keeps_half(q)) ok &= (s->vectors_f16 = malloc(cap * d * sizeof(uint16_t))) != NULL;
    if (avq_keeps_norms(q)) ok &= (s->norms2 = malloc(cap * sizeof(float))) != NULL;
    s->bytes = sizeof *s + code_bytes + cap * sizeof(int64_t) +
               (s->vectors ? cap * d * sizeof(float) : 0) + (s->vectors_i8 ? cap * d : 0) +
               (s->vectors_f16 ? cap * d * sizeof(uint16_t) : 0) +
               (s->norms2 ? cap * sizeof(float) : 0);
    if (!ok) {
        avq_leaf_store_free(s);
        return avq_fail_nomem("leaf store", capacity * (d * 4 + K + 8));
    }
    *out = s;
    return AVQ_OK;
}

/* Copy the per-slot data (not codes) of slot `from` of src to slot `to`. */
static void copy_slot_data(const avq_index *x, avq_leaf_store *dst, size_t to,
                           const avq_leaf_store *src, size_t from) {
    size_t d = x->dim;
    dst->ids[to] = src->ids[from];
    if (dst->vectors) memcpy(dst->vectors + to * d, src->vectors + from * d, d * sizeof(float));
    if (dst->vectors_i8) memcpy(dst->vectors_i8 + to * d, src->vectors_i8 + from * d, d);
    if (dst->vectors_f16)
        memcpy(dst->vectors_f16 + to * d, src->vectors_f16 + from * d, d * sizeof(uint16_t));
    if (dst->norms2) dst->norms2[to] = src->norms2[from];
}

static void put_new_data(const avq_index *x, avq_leaf_store *dst, size_t to,
                         const avq_new_points *add, size_t i) {
    size_t d = x->dim;
    dst->ids[to] = add->ids[i];
    if (dst->vectors) memcpy(dst->vectors + to * d, add->vectors + i * d, d * sizeof(float));
    if (dst->vectors_i8) memcpy(dst->vectors_i8 + to * d, add->vectors_i8 + i * d, d);
    if (dst->vectors_f16)
        memcpy(dst->vectors_f16 + to * d, add->vectors_f16 + i * d, d * sizeof(uint16_t));
    if (dst->norms2) dst->norms2[to] = add->norms2[i];
}

/* Pack the `t` unpacked codes into complete groups written to the store
 * from group first_group on, and the rest into a new tail -- or, for a
 * whole store (first_group 0), all of them into the store. */
static int pack_tail(const avq_index *x, avq_leaf_store *s, size_t first_group,
                     const uint8_t *codes, size_t t, bool whole, avq_leaf *v) {
    int bits = x->q->bits;
    size_t K = x->q->num_blocks, group = avq_pack_group_bytes(bits, K), groups = t / 32;
    if (t == 0) return AVQ_OK;
    if (whole) {
        v->full = t;
        return avq_pack(bits, codes, t, K, s->codes);
    }
    uint8_t *packed = malloc(avq_pack_size(bits, t, K));
    if (!packed) return avq_fail_nomem("packed codes", avq_pack_size(bits, t, K));
    int st = avq_pack(bits, codes, t, K, packed);
    if (st == AVQ_OK) {
        memcpy(s->codes + first_group * group, packed, groups * group);
        if (t % 32) {
            v->own_tail = avq_alloc_aligned(group);
            if (!v->own_tail) st = avq_fail_nomem("tail group", group);
            else memcpy(v->own_tail, packed + groups * group, group);
            v->tail = v->own_tail;
        }
    }
    v->full = (first_group + groups) * 32;
    free(packed);
    return st;
}

int avq_leaf_change(const avq_index *x, const avq_leaf *old, const uint32_t *kill, size_t nkill,
                    const avq_new_points *add, const avq_tag_edit *edit, bool compact,
                    avq_leaf **out) {
    const avq_quantizer *q = x->q;
    size_t K = q->num_blocks, m = add ? add->count : 0, n_old = old->n;
    bool pq = q->mode == AVQ_MODE_PQ;
    int bits = q->bits;
    int st = AVQ_OK;
    *out = NULL;
    /* candidates and the id map address a slot with 32 bits */
    if (n_old + m > UINT32_MAX)
        return avq_fail(AVQ_ERR_INVALID,
                        "a leaf would pass 2^32 slots (%zu + %zu): compact or retrain with more leaves",
                        n_old, m);
    avq_leaf *v = calloc(1, sizeof *v);
    uint32_t *alive = NULL; /* old liveness with the kills applied */
    uint8_t *codes = NULL;  /* unpacked codes of the points that form the tail */
    uint32_t *remap = NULL; /* compaction: new slot of each kept old slot */
    avq_leaf_store *fresh = NULL;
    bool tagged = old->tags || (add && add->tag_off) || (edit && edit->count);
    if (!v) return avq_fail_nomem("leaf", sizeof *v);

    size_t words_old = (n_old + 31) / 32;
    if (old->alive || nkill) {
        alive = malloc((words_old ? words_old : 1) * sizeof *alive);
        if (!alive) {
            st = avq_fail_nomem("liveness", words_old * sizeof *alive);
            goto fail;
        }
        if (old->alive) memcpy(alive, old->alive, words_old * sizeof *alive);
        else
            for (size_t w = 0; w < words_old; w++)
                alive[w] = n_old - 32 * w >= 32 ? 0xFFFFFFFFu : (1u << (n_old - 32 * w)) - 1u;
        for (size_t i = 0; i < nkill; i++) alive[kill[i] >> 5] &= ~(1u << (kill[i] & 31));
    }
#define ALIVE(s) (!alive || (alive[(s) >> 5] >> ((s) & 31)) & 1u)

    if (compact) {
        size_t keep = 0;
        for (size_t s = 0; s < n_old; s++) keep += ALIVE(s);
        size_t n_new = keep + m;
        /* exact size: the codes region gets the complete groups of n_new,
         * the data arrays all n_new slots */
        st = store_new(x, n_new, true, &fresh);
        if (st != AVQ_OK) goto fail;
        if (pq) {
            codes = malloc((n_new ? n_new : 1) * K);
            if (!codes) {
                st = avq_fail_nomem("codes", n_new * K);
                goto fail;
            }
        }
        if (tagged) {
            remap = malloc((n_old ? n_old : 1) * sizeof *remap);
            if (!remap) {
                st = avq_fail_nomem("slot map", n_old * sizeof *remap);
                goto fail;
            }
        }
        size_t at = 0;
        for (size_t s = 0; s < n_old; s++) {
            if (!ALIVE(s)) continue;
            if (remap) remap[s] = (uint32_t)at;
            copy_slot_data(x, fresh, at, old->store, s);
            if (pq) slot_codes(old, bits, K, s, codes + at * K);
            at++;
        }
        for (size_t i = 0; i < m; i++, at++) {
            put_new_data(x, fresh, at, add, i);
            if (pq) memcpy(codes + at * K, add->codes + i * K, K);
        }
        v->n = v->live = n_new;
        v->full = n_new;
        v->store = fresh;
        if (pq) {
            st = pack_tail(x, fresh, 0, codes, n_new, true, v);
            if (st != AVQ_OK) goto fail;
        }
        if (tagged) {
            st = avq_leaf_tags_change(old->tags, alive, remap, edit, add, keep, &v->tags);
            if (st != AVQ_OK) goto fail;
        }
        free(alive);
        free(codes);
        free(remap);
        *out = v;
        return AVQ_OK;
    }

    size_t n_new = n_old + m;
    avq_leaf_store *s = old->store;
    size_t f; /* slots kept in the store's complete groups */
    if (s && (m == 0 || (s->owned && s->capacity >= n_new))) {
        /* in place: slots beyond old->n (none when only removing) */
        f = old->full;
    } else {
        /* grow: a quarter more than needed, so a leaf that keeps growing
         * is copied O(log n) times; a first fill (a build) is exact */
        bool whole = n_old == 0;
        size_t cap = whole ? n_new : round32(n_new + n_new / 4);
        st = store_new(x, cap, whole, &fresh);
        if (st != AVQ_OK) goto fail;
        f = (old->full / 32) * 32;
        for (size_t i = 0; i < n_old; i++) copy_slot_data(x, fresh, i, s, i);
        if (pq && f) memcpy(fresh->codes, s->codes, f / 32 * avq_pack_group_bytes(bits, K));
        s = fresh;
    }
    for (size_t i = 0; i < m; i++) put_new_data(x, s, n_old + i, add, i);
    v->n = n_new;
    v->live = old->live - nkill + m;
    v->store = s;
    v->full = n_new;
    if (pq) {
        size_t t = n_new - f;
        codes = malloc((t ? t : 1) * K);
        if (!codes) {
            st = avq_fail_nomem("codes", t * K);
            goto fail;
        }
        for (size_t i = f; i < n_old; i++) slot_codes(old, bits, K, i, codes + (i - f) * K);
        if (m) memcpy(codes + (n_old - f) * K, add->codes, m * K);
        st = pack_tail(x, s, f / 32, codes, t, fresh && fresh->capacity == n_new && n_old == 0, v);
        if (st != AVQ_OK) goto fail;
    }
    if (alive || (old->alive && m)) {
        size_t words = (n_new + 31) / 32;
        v->own_alive = calloc(words ? words : 1, sizeof *v->own_alive);
        if (!v->own_alive) {
            st = avq_fail_nomem("liveness", words * sizeof *v->own_alive);
            goto fail;
        }
        if (alive) memcpy(v->own_alive, alive, words_old * sizeof *alive);
        for (size_t i = n_old; i < n_new; i++) v->own_alive[i >> 5] |= 1u << (i & 31);
        v->alive = v->own_alive;
    }
#undef ALIVE
    if (tagged) {
        st = avq_leaf_tags_change(old->tags, alive, NULL, edit, add, n_old, &v->tags);
        if (st != AVQ_OK) goto fail;
    }
    free(alive);
    free(codes);
    *out = v;
    return AVQ_OK;
fail:
    free(alive);
    free(codes);
    free(remap);
    avq_leaf_store_free(fresh);
    if (v) {
        v->store = NULL;
        avq_leaf_free(v);
    }
    return st;
}

/* ---- the id map -------------------------------------------------------------- */

static size_t id_hash(int64_t id, size_t mask) {
    uint64_t z = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    z ^= z >> 29;
    return (size_t)(z & mask);
}

void avq_idmap_free(avq_idmap *m) {
    bool two = m->two;
    free(m->keys);
    free(m->vals);
    free(m->vals2);
    memset(m, 0, sizeof *m);
    m->two = two;
}

int avq_idmap_reserve(avq_idmap *m, size_t more) {
    size_t need = m->used + m->tombs + more;
    if (m->capacity && need * 10 <= m->capacity * 7) return AVQ_OK;
    size_t cap = 16;
    while (cap * 7 < (m->used + more) * 10) cap *= 2;
    int64_t *keys = malloc(cap * sizeof *keys);
    uint64_t *vals = malloc(cap * sizeof *vals);
    uint64_t *vals2 = m->two ? malloc(cap * sizeof *vals2) : NULL;
    if (!keys || !vals || (m->two && !vals2)) {
        free(keys);
        free(vals);
        free(vals2);
        return avq_fail_nomem("id map", cap * (m->two ? 24 : 16));
    }
    for (size_t i = 0; i < cap; i++) vals[i] = AVQ_IDMAP_EMPTY;
    for (size_t i = 0; i < m->capacity; i++) {
        if (m->vals[i] >= AVQ_IDMAP_TOMB) continue;
        size_t h = id_hash(m->keys[i], cap - 1);
        while (vals[h] != AVQ_IDMAP_EMPTY) h = (h + 1) & (cap - 1);
        keys[h] = m->keys[i];
        vals[h] = m->vals[i];
        if (vals2) vals2[h] = m->vals2[i];
    }
    free(m->keys);
    free(m->vals);
    free(m->vals2);
    m->keys = keys;
    m->vals = vals;
    m->vals2 = vals2;
    m->capacity = cap;
    m->tombs = 0;
    return AVQ_OK;
}

uint64_t avq_idmap_get(const avq_idmap *m, int64_t id) {
    if (!m->capacity) return AVQ_IDMAP_EMPTY;
    for (size_t h = id_hash(id, m->capacity - 1);; h = (h + 1) & (m->capacity - 1)) {
        if (m->vals[h] == AVQ_IDMAP_EMPTY) return AVQ_IDMAP_EMPTY;
        if (m->vals[h] != AVQ_IDMAP_TOMB && m->keys[h] == id) return m->vals[h];
    }
}

/* The table position of id, inserting it (first place EMPTY for now) if
 * absent; *fresh tells which. */
static size_t idmap_slot(avq_idmap *m, int64_t id, bool *fresh) {
    size_t tomb = SIZE_MAX;
    for (size_t h = id_hash(id, m->capacity - 1);; h = (h + 1) & (m->capacity - 1)) {
        if (m->vals[h] == AVQ_IDMAP_EMPTY) {
            if (tomb != SIZE_MAX) {
                h = tomb;
                m->tombs--;
            }
            m->keys[h] = id;
            if (m->vals2) m->vals2[h] = AVQ_IDMAP_EMPTY;
            m->used++;
            *fresh = true;
            return h;
        }
        if (m->vals[h] == AVQ_IDMAP_TOMB) {
            if (tomb == SIZE_MAX) tomb = h;
        } else if (m->keys[h] == id) {
            *fresh = false;
            return h;
        }
    }
}

void avq_idmap_put(avq_idmap *m, int64_t id, uint64_t place) {
    bool fresh;
    m->vals[idmap_slot(m, id, &fresh)] = place;
}

bool avq_idmap_put_copy(avq_idmap *m, int64_t id, uint64_t place) {
    bool fresh;
    size_t h = idmap_slot(m, id, &fresh);
    if (fresh || !m->two || m->vals[h] >> 32 == place >> 32) {
        m->vals[h] = place;
        return true;
    }
    if (m->vals2[h] == AVQ_IDMAP_EMPTY || m->vals2[h] >> 32 == place >> 32) {
        m->vals2[h] = place;
        return true;
    }
    return false;
}

uint64_t avq_idmap_get2(const avq_idmap *m, int64_t id, uint64_t *second) {
    if (second) *second = AVQ_IDMAP_EMPTY;
    if (!m->capacity) return AVQ_IDMAP_EMPTY;
    for (size_t h = id_hash(id, m->capacity - 1);; h = (h + 1) & (m->capacity - 1)) {
        if (m->vals[h] == AVQ_IDMAP_EMPTY) return AVQ_IDMAP_EMPTY;
        if (m->vals[h] != AVQ_IDMAP_TOMB && m->keys[h] == id) {
            if (second && m->vals2) *second = m->vals2[h];
            return m->vals[h];
        }
    }
}

bool avq_idmap_del(avq_idmap *m, int64_t id) {
    if (!m->capacity) return false;
    for (size_t h = id_hash(id, m->capacity - 1);; h = (h + 1) & (m->capacity - 1)) {
        if (m->vals[h] == AVQ_IDMAP_EMPTY) return false;
        if (m->vals[h] != AVQ_IDMAP_TOMB && m->keys[h] == id) {
            m->vals[h] = AVQ_IDMAP_TOMB;
            m->used--;
            m->tombs++;
            return true;
        }
    }
}

int avq_index_ensure_ids(avq_index *x) {
    if (x->ids_ready) return AVQ_OK;
    size_t copies = AVQ_COPIES(x->q);
    x->ids.two = copies == 2;
    int st = avq_idmap_reserve(&x->ids, atomic_load(&x->live) / copies);
    if (st != AVQ_OK) return st;
    for (size_t l = 0; l < x->num_leaves; l++) {
        const avq_leaf *v = atomic_load(&x->leaves[l]);
        for (size_t s = 0; s < v->n; s++) {
            if (!avq_leaf_slot_alive(v, s)) continue;
            int64_t id = v->store->ids[s];
            uint64_t second, first = id == AVQ_NO_ID ? AVQ_IDMAP_EMPTY
                                                     : avq_idmap_get2(&x->ids, id, &second);
            /* a spilled index holds each id twice, in two leaves; any other
             * repetition is a damaged file */
            bool bad = id == AVQ_NO_ID ||
                       (first != AVQ_IDMAP_EMPTY &&
                        (copies == 1 || second != AVQ_IDMAP_EMPTY || first >> 32 == l));
            if (bad) {
                avq_idmap_free(&x->ids);
                return avq_fail(AVQ_ERR_FORMAT, "id %lld is stored %s (or is the reserved -1)",
                                (long long)id, copies == 1 ? "twice" : "more than twice or twice in one leaf");
            }
            /* a next id at or below a stored one (a damaged file) would make
             * the next automatic add collide */
            if (id >= x->next_id && id != INT64_MAX) {
                avq_idmap_free(&x->ids);
                return avq_fail(AVQ_ERR_FORMAT,
                                "the next automatic id %lld is not above the stored id %lld",
                                (long long)x->next_id, (long long)id);
            }
            avq_idmap_put_copy(&x->ids, id, (uint64_t)l << 32 | s);
        }
    }
    if (copies == 2 && x->ids.used * 2 != atomic_load(&x->live)) {
        /* some id has one copy: removing it would leave the counts wrong */
        size_t used = x->ids.used;
        avq_idmap_free(&x->ids);
        return avq_fail(AVQ_ERR_FORMAT,
                        "a spilled index keeps every vector twice, but its %zu live slots hold "
                        "%zu distinct ids", (size_t)atomic_load(&x->live), used);
    }
    x->ids_ready = true;
    return AVQ_OK;
}
