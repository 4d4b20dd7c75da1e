/*
 * index.h -- the in-memory shape of a quantizer and of a living index,
 * shared by quantizer.c, leaf.c, mutate.c, search.c and io.c.
 *
 * A quantizer is everything training produces (leaf centers, PQ codebook,
 * int8 scales, the settings codes are made with); it never changes and may
 * be shared by several indexes.  An index is a quantizer plus one *leaf* per
 * partition cell.  A leaf is reached through one atomic pointer to its
 * current *version*; a version is immutable once published, so a search
 * that loaded the pointer reads a consistent leaf however the writer goes on
 * (doc/DESIGN.md §8, "Concurrency").
 *
 * A version's slots [0, n) live in a *store*: arrays of `capacity` slots of
 * codes, ids and re-ranking data.  A writer appends by writing slots
 * [n, n + m) of the store -- no search reads them, they are beyond every
 * published n -- and publishing a version with the larger n.  Two things
 * cannot be written in place because searches read them whole: the packed
 * code group that is still filling up (the fast-scan kernels read all 32
 * lanes of a group), and the liveness bitmap.  So each version owns a copy
 * of both: `tail` holds the codes of slots [full, n) as one packed group,
 * and `alive` one bit per slot.  Both are small (16K or 32K bytes for 4- or
 * 8-bit codes, and n/8 bytes).
 *
 * Stores made by a load (pointing into a file mapping) or by compaction are
 * exact-size; a store loaded from a file keeps its partial last group in
 * `codes` (full = n, tail = NULL) and is never written: the first append
 * copies the leaf into a new, larger store ("copy on first write").
 *
 * Candidates of the scan are (leaf << 32 | slot), which orders like the
 * leaf-order positions of a frozen index, so ties break the same way.
 */
#ifndef AVQ_INDEX_H
#define AVQ_INDEX_H

#include "avq.h"
#include "topk.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    AVQ_MODE_BRUTE = 0,   /* exact scoring of all points, no codes         */
    AVQ_MODE_PQ = 1       /* leaves + product quantization (+ reorder)     */
} avq_index_mode;

/* A read-only byte range (a file mapping or an anonymous copy of a file)
 * that arrays of a quantizer and of leaves point into; unmapped when the
 * last of them lets go. */
typedef struct {
    void *addr;
    size_t bytes;
    atomic_int refs;
} avq_mapping;

avq_mapping *avq_mapping_new(void *addr, size_t bytes);
void avq_mapping_ref(avq_mapping *m);
void avq_mapping_unref(avq_mapping *m);

/* Slots each vector takes: 2 in a spilled index (build param spill). */
#define AVQ_COPIES(q) ((size_t)1 + (size_t)((q)->params.spill > 0))

struct avq_quantizer {
    atomic_int refs;         /* handles + indexes using it                  */
    avq_build_params params; /* as trained, progress callback cleared      */
    avq_index_mode mode;
    size_t dim, trained_n;
    /* partition: num_leaves centers.  For L2 the codes quantize raw vectors
     * and the leaf bias is 0; for dot/cosine they quantize x - c. */
    size_t num_leaves;
    float *centers;          /* num_leaves x dim                            */
    float *center_norms;     /* |c| per leaf                                */
    struct avq_center_sketch *sketch; /* int8 copy of the centers for leaf
                                selection (centers.h), derived, never stored;
                                NULL: few leaves; always malloc'ed        */
    float *leaf_spread;      /* per leaf: RMS residual / sqrt(dim) of the
                                rows it was trained with, for leaf ranking
                                (params.leaf_spread_z); NULL when z = 0     */
    /* product quantizer */
    int bits;                /* 4 or 8                                      */
    size_t dims_per_block, num_blocks, num_centers;
    float *codebook;         /* num_centers x dim (layout in pq.h); PQ only */
    /* re-ranking */
    avq_reorder reorder;     /* BRUTE mode always keeps float vectors       */
    float *i8_scale;         /* dim: x_j ~ i8[j] * i8_scale[j] (INT8)       */
    size_t default_leaves_to_search, default_pre_reorder;
    avq_mapping *mapping;    /* NULL: the arrays are malloc'ed             */
};

void avq_quantizer_ref(const avq_quantizer *q);
/* The per-dimension int8 scales of the rows x (n x d; as trained: normalised
 * for cosine): scale[j] = max_i |x_ij| / 127, 1 for an all-zero dimension.
 * What a quantizer with int8 reorder rows keeps as i8_scale (also used by
 * avq-paper --int8-aware). */
void avq_int8_scales(const float *x, size_t n, size_t d, float *scale);
/* Derives q->sketch from q->centers (after training or loading). */
int avq_quantizer_make_sketch(avq_quantizer *q);
/* Bytes the quantizer's arrays take. */
size_t avq_quantizer_memory_bytes(const avq_quantizer *q);
/* Whether a quantizer keeps float / int8 re-ranking rows, and codes. */
static inline bool avq_keeps_float(const avq_quantizer *q) {
    return q->mode == AVQ_MODE_BRUTE || q->reorder == AVQ_REORDER_FLOAT;
}
static inline bool avq_keeps_int8(const avq_quantizer *q) {
    return q->mode == AVQ_MODE_PQ && q->reorder == AVQ_REORDER_INT8;
}
static inline bool avq_keeps_half(const avq_quantizer *q) {
    return q->mode == AVQ_MODE_PQ && q->reorder == AVQ_REORDER_FLOAT16;
}
/* Any re-ranking rows at all (everything but reorder 'none'). */
static inline bool avq_keeps_rows(const avq_quantizer *q) {
    return avq_keeps_float(q) || avq_keeps_int8(q) || avq_keeps_half(q);
}
static inline bool avq_keeps_norms(const avq_quantizer *q) {
    return q->params.metric == AVQ_METRIC_L2;
}
/* Train, also returning the leaf of every training row (malloc'ed; NULL
 * leaf_of_out to skip).  quantizer.c. */
int avq_quantizer_train_assign(const float *data, size_t n, size_t dim,
                               const avq_build_params *params, avq_quantizer **out,
                               int32_t **leaf_of_out);
/* Validate and widen a caller's build params to this library's struct. */
int avq_build_params_resolve(const avq_build_params *in, avq_build_params *out);

/* ---- deferred reclamation (leaf.c) ------------------------------------- */

/* Objects a writer replaced are put on a list with the epoch of their
 * retirement and freed once no search that could have loaded them is still
 * running (epoch-based reclamation; doc/DESIGN.md §8). */
typedef struct avq_retired {
    struct avq_retired *next;
    uint64_t epoch;
    int kind;                /* RETIRED_LEAF or RETIRED_STORE               */
} avq_retired;

enum { AVQ_READER_SLOTS = 64 };

typedef struct {
    _Alignas(64) _Atomic uint64_t epoch; /* 0 = idle, else the epoch seen  */
} avq_reader_slot;

/* ---- leaves --------------------------------------------------------------- */

typedef struct avq_leaf_store {
    avq_retired node;        /* first: the retire list links stores         */
    size_t capacity;         /* slots                                       */
    bool owned;              /* false: arrays point into a mapping          */
    uint8_t *codes;          /* 4-bit: packed groups; 8-bit: capacity x K   */
    int64_t *ids;            /* capacity                                    */
    float *vectors;          /* capacity x dim (float re-ranking, brute)    */
    int8_t *vectors_i8;      /* capacity x dim (int8 re-ranking)            */
    uint16_t *vectors_f16;   /* capacity x dim (float16 re-ranking)         */
    float *norms2;           /* capacity: |x|² (L2)                         */
    size_t bytes;            /* allocated bytes, for memory accounting      */
} avq_leaf_store;

/* ---- tags (tags.c) ---------------------------------------------------------
 *
 * A leaf version's tags are an inverted list over its live slots: for each
 * distinct tag (ascending) the slots carrying it (ascending).  That is what
 * a tag filter needs -- the allowed slots of a leaf are the union or the
 * intersection of a few posting lists, found by binary search -- and it is
 * immutable like the rest of the version (a change makes a new one).
 * Dead slots never appear in it, so posting lengths are exact live counts.
 */
typedef struct avq_leaf_tags {
    uint32_t nkeys;          /* distinct tags of the leaf's live slots      */
    uint32_t npost;          /* (tag, slot) pairs                           */
    const uint32_t *keys;    /* nkeys, strictly ascending                   */
    const uint32_t *off;     /* nkeys + 1: off[0] = 0, off[nkeys] = npost;
                                keys[i]'s slots are slots[off[i] .. off[i+1]) */
    const uint32_t *slots;   /* npost: strictly ascending within each key   */
    void *own;               /* the allocation holding the arrays, or NULL
                                when they point into a mapping (a load)     */
} avq_leaf_tags;

typedef struct avq_leaf {
    avq_retired node;        /* first: the retire list links versions       */
    size_t n;                /* slots, live and dead                        */
    size_t live;
    size_t full;             /* 4-bit: slots whose codes are in store->codes
                                (a multiple of 32, or n in a frozen store);
                                8-bit and brute: n                         */
    const uint8_t *tail;     /* packed group of slots [full, n), or NULL    */
    const uint32_t *alive;   /* (n + 31) / 32 words, bit = live; NULL = all */
    avq_leaf_store *store;
    uint8_t *own_tail;       /* what this version allocated itself          */
    uint32_t *own_alive;
    avq_leaf_tags *tags;     /* NULL = no live slot has a tag; malloc'ed,
                                freed with the version (arrays: see own)    */
} avq_leaf;

static inline bool avq_leaf_slot_alive(const avq_leaf *v, size_t slot) {
    return !v->alive || (v->alive[slot >> 5] >> (slot & 31)) & 1u;
}

/* ---- the id map (idmap.c) ------------------------------------------------ */

/* id -> location (leaf << 32 | slot) of the live vector with that id.
 * Open addressing with linear probing; only the writer changes it.  In a
 * spilled index (two) every id has two places, in two different leaves,
 * kept unordered: nothing needs to know which copy is the primary -- both
 * hold the same row, tags and id, and a change kills or moves both. */
typedef struct {
    int64_t *keys;
    uint64_t *vals;          /* AVQ_IDMAP_EMPTY / AVQ_IDMAP_TOMB / a place  */
    uint64_t *vals2;         /* two: the second place (or AVQ_IDMAP_EMPTY
                                while only one is known); else NULL        */
    size_t capacity;         /* a power of two, or 0                        */
    size_t used, tombs;
    bool two;                /* set before the first reserve               */
} avq_idmap;

#define AVQ_IDMAP_EMPTY UINT64_MAX
#define AVQ_IDMAP_TOMB (UINT64_MAX - 1)

void avq_idmap_free(avq_idmap *m);
/* Make room for `more` insertions without further allocation. */
int avq_idmap_reserve(avq_idmap *m, size_t more);
/* Lookup: the place, or AVQ_IDMAP_EMPTY. */
uint64_t avq_idmap_get(const avq_idmap *m, int64_t id);
/* Insert or overwrite (needs room: avq_idmap_reserve first). */
void avq_idmap_put(avq_idmap *m, int64_t id, uint64_t place);
/* Remove; returns whether it was there. */
bool avq_idmap_del(avq_idmap *m, int64_t id);
/* Lookup of both places: the first (AVQ_IDMAP_EMPTY when absent), and the
 * second in *second (AVQ_IDMAP_EMPTY if none; may be NULL). */
uint64_t avq_idmap_get2(const avq_idmap *m, int64_t id, uint64_t *second);
/* Record one copy's place (needs room): a new id gets it as its first
 * place; a known id has the place it holds in the same leaf replaced (a
 * copy renumbered by compaction), else it becomes the second place.
 * Without `two` this is avq_idmap_put.  Returns false (and changes
 * nothing) when the id has two places in other leaves already. */
bool avq_idmap_put_copy(avq_idmap *m, int64_t id, uint64_t place);

/* The leaves holding a tag: immutable, replaced as a whole (and retired)
 * when a leaf gains its first or loses its last vector with the tag. */
typedef struct avq_tag_leaves {
    avq_retired node;        /* first: the retire list links them           */
    uint32_t count;
    uint32_t leaves[];       /* ascending                                   */
} avq_tag_leaves;

/* Per-index live count of every tag, and the leaves holding it: what the
 * filter planner reads to know how many vectors a tag filter allows, and
 * where they are, without visiting every leaf.  An open-addressing table
 * the writer updates in place (atomic counts and list pointers; a key once
 * inserted stays) and replaces by a larger copy when it fills (the old one
 * is retired, so searches may go on reading it; the lists are shared). */
typedef struct avq_tag_table {
    avq_retired node;        /* first: the retire list links tables         */
    size_t capacity;         /* a power of two                              */
    size_t used;             /* keys inserted                               */
    _Atomic uint64_t *keys;  /* tag + 1, 0 = empty                           */
    _Atomic int64_t *counts; /* live vectors carrying the tag               */
    avq_tag_leaves *_Atomic *lists; /* leaves holding it, or NULL           */
} avq_tag_table;

/* ---- the index ------------------------------------------------------------ */

struct avq_index {
    avq_quantizer *q;
    size_t dim, num_leaves;
    avq_leaf *_Atomic *leaves;  /* num_leaves current versions              */
    avq_mapping *mapping;       /* what loaded leaves point into, or NULL   */
    avq_mapping *codes_mapping; /* the repacked codes of an 8-bit file from
                                   before avq 0.6 (io.c), or NULL           */
    atomic_size_t live;         /* live slots over all leaves: the vectors
                                   times AVQ_COPIES(q) (every vector of a
                                   spilled index has exactly two)           */

    /* writer side: everything below only under write_lock */
    pthread_mutex_t write_lock;
    avq_idmap ids;
    bool ids_ready;             /* built lazily after a load                */
    int64_t next_id;
    double compact_threshold;

    /* odd while a writer publishes the versions of one change: searches
     * take their leaf snapshot between two equal even readings, so they see
     * a change in all its leaves or in none (avq_snapshot_leaves) */
    _Atomic uint64_t commit_seq;

    /* tag counts (NULL until the first tag; replaced under write_lock) */
    avq_tag_table *_Atomic tag_table;

    /* reclamation */
    _Atomic uint64_t epoch;     /* starts at 1                              */
    avq_reader_slot readers[AVQ_READER_SLOTS];
    avq_retired *retired;       /* writer-owned list                        */
};

/* Search side: announce / end a read (returns the slot to pass to
 * avq_read_end).  Between the two, leaf versions loaded from the index stay
 * valid. */
int avq_read_begin(avq_index *x);
void avq_read_end(avq_index *x, int slot);
static inline avq_leaf *avq_leaf_load(const avq_index *x, size_t l) {
    return atomic_load(&x->leaves[l]);
}
/* snap[l] = the current version of leaf l = which[i].id, for i < count (or
 * of every leaf when which is NULL), all from the same side of every
 * writer's commit.  Waits only while a commit publishes (a few pointer
 * stores), never for encoding or copying. */
void avq_snapshot_leaves(const avq_index *x, const avq_leaf **snap, const avq_neighbor *which,
                         size_t count);
/* Every leaf's version into snap, and also(ctx) called in the same window
 * (it reads what a commit publishes with the versions: tag leaf lists). */
void avq_snapshot_all(const avq_index *x, const avq_leaf **snap, void (*also)(void *ctx),
                      void *ctx);
/* Writer: bracket the publication of one change's versions. */
void avq_commit_begin(avq_index *x);
void avq_commit_end(avq_index *x);

/* Writer side (with write_lock held). */
void avq_retire_leaf(avq_index *x, avq_leaf *v);
void avq_retire_store(avq_index *x, avq_leaf_store *s);
void avq_reclaim(avq_index *x);
/* Publish a new version of leaf l and retire the old one (and its store if
 * the new version does not use it). */
void avq_leaf_publish(avq_index *x, size_t l, avq_leaf *v);
/* Build the id map from the leaves if it is not built yet (after a load);
 * AVQ_ERR_FORMAT if two live slots share an id. */
int avq_index_ensure_ids(avq_index *x);

/* Leaf versions and stores (leaf.c). */
avq_leaf *avq_leaf_new_empty(void);
void avq_leaf_free(avq_leaf *v);
void avq_leaf_store_free(avq_leaf_store *s);
/* Bytes of a store / of a version's own arrays. */
size_t avq_leaf_bytes(const avq_index *x, const avq_leaf *v);
/* An empty index over q (refs q); leaves all empty. */
int avq_index_alloc(avq_quantizer *q, avq_index **out);

/* The encoded form of points about to be added (mutate.c -> leaf.c). */
typedef struct {
    size_t count;
    const uint8_t *codes;     /* count x K unpacked (PQ), or NULL          */
    const int64_t *ids;
    const float *vectors;     /* count x dim, or NULL                      */
    const int8_t *vectors_i8; /* count x dim, or NULL                      */
    const uint16_t *vectors_f16; /* count x dim, or NULL                   */
    const float *norms2;      /* count, or NULL                            */
    const size_t *tag_off;    /* count + 1 (absolute into tags), or NULL    */
    const uint32_t *tags;     /* point i: tags[tag_off[i] .. tag_off[i+1])  */
} avq_new_points;

/* New tags for slots of an existing version (avq_index_set_tags, and
 * upserts that keep tags).  slots ascending, distinct, live. */
typedef struct {
    size_t count;
    const uint32_t *slots;
    const size_t *tag_off;    /* count + 1, absolute into tags             */
    const uint32_t *tags;
} avq_tag_edit;

/* Tags of a changed leaf (tags.c): old's postings without dead slots
 * (alive = the new liveness of old's slots, NULL = all live) and without
 * the edited slots, renumbered by remap (compaction: remap[s] = new slot
 * of old slot s; NULL = unchanged), plus the edits, plus the added points'
 * tags at slots first_new, first_new + 1, ...  *out = NULL when no slot
 * has a tag.  Tag lists need not be sorted or distinct. */
int avq_leaf_tags_change(const avq_leaf_tags *old, const uint32_t *alive, const uint32_t *remap,
                         const avq_tag_edit *edit, const avq_new_points *add, size_t first_new,
                         avq_leaf_tags **out);
void avq_leaf_tags_free(avq_leaf_tags *t);
size_t avq_leaf_tags_bytes(const avq_leaf_tags *t);
/* Whether v is in the ascending list p[0..n) (binary search). */
bool avq_sorted_u32_has(const uint32_t *p, size_t n, uint32_t v);
/* Index of `tag` in t->keys, or -1. */
long avq_leaf_tags_find(const avq_leaf_tags *t, uint32_t tag);
/* The tags of one slot, ascending, into out (at most cap); returns their
 * number (O(postings)). */
size_t avq_leaf_tags_of_slot(const avq_leaf_tags *t, uint32_t slot, uint32_t *out, size_t cap);
/* Check a leaf's tags against its version (n, alive): keys ascending,
 * offsets consistent, slots ascending per key, in range and live.  For
 * loading; the message names `leaf`. */
int avq_leaf_tags_validate(const avq_leaf_tags *t, const avq_leaf *v, size_t leaf);

/* Tag counts (tags.c).  Reader side: the live count of tag, 0 if unknown;
 * the leaves holding it (NULL: none).  The caller holds a read slot. */
int64_t avq_tag_count(const avq_index *x, uint32_t tag);
const avq_tag_leaves *avq_tag_leaves_of(const avq_index *x, uint32_t tag);

/* The new leaf lists of the tags whose set of leaves a change alters:
 * made in prepare (can fail), published in commit (cannot). */
typedef struct {
    size_t count;
    uint32_t *tags;
    avq_tag_leaves **lists;  /* NULL entries: no leaf holds the tag any more */
} avq_tag_list_change;

/* Writer side: the lists after leaf l changes from its current version to
 * fresh[l] (NULL = unchanged), for every l; from_empty: as if every leaf
 * had no tags before (a rebuild).  Needs the table's room reserved. */
int avq_tag_lists_prepare(const avq_index *x, avq_leaf *const *fresh, bool from_empty,
                          avq_tag_list_change *out);
void avq_tag_lists_commit(avq_index *x, avq_tag_list_change *c);
void avq_tag_lists_abandon(avq_tag_list_change *c);
/* Writer side: make room for `more` new keys (may allocate a new table,
 * published at once: the old one is retired). */
int avq_tag_table_reserve(avq_index *x, size_t more);
/* Writer side: apply the change of one leaf's tags (old -> new) to the
 * counts.  Needs the room reserved. */
void avq_tag_counts_update(avq_index *x, const avq_leaf_tags *old_tags,
                           const avq_leaf_tags *new_tags);
/* Recount every tag from the leaves (after a load).  Writer side. */
int avq_tag_counts_rebuild(avq_index *x);
void avq_tag_table_free(avq_tag_table *t);      /* a retired table         */
void avq_tag_table_free_all(avq_tag_table *t);  /* the last: with its lists */
void avq_retire_tag_table(avq_index *x, avq_tag_table *t); /* leaf.c */
void avq_retire_tag_leaves(avq_index *x, avq_tag_leaves *t); /* leaf.c */
size_t avq_tag_table_bytes(const avq_index *x);
/* Tags with a live count above 0. */
size_t avq_tag_table_distinct(const avq_index *x);

/* A new version of `old` without the slots in kill[0..nkill) (live slots,
 * any order), with `add` appended; compact = drop every dead slot (a new
 * exact-size store).  Writes only slots beyond old->n of a shared store, so
 * old stays valid for searches.  On success *out is unpublished. */
int avq_leaf_change(const avq_index *x, const avq_leaf *old, const uint32_t *kill, size_t nkill,
                    const avq_new_points *add, const avq_tag_edit *edit, bool compact,
                    avq_leaf **out);

/* The internal add used by build: rows already leaf-assigned (leaf_of may
 * be NULL to assign here), ids given or NULL for automatic, tags as CSR
 * (tag_off NULL = none).  mutate.c. */
int avq_index_add_assigned(avq_index *x, const float *vectors, size_t n, const int64_t *ids,
                           const size_t *tag_off, const uint32_t *tags, const int32_t *leaf_of,
                           int threads, int64_t *ids_out, bool replace, size_t *replaced,
                           avq_progress_fn progress, void *progress_user);

#endif
