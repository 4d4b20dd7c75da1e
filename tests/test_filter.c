/*
 * test_filter.c -- filtered search and tags, through include/avq.h only.
 *
 * Every search result here is compared with a reference the test computes
 * itself: the exact filtered top-k, by scoring every allowed vector in
 * double precision.  The data are random floats (a fixed-seed Gaussian
 * mixture, living_common.h), so exact ties do not occur; a returned id may
 * differ from the reference's at a rank only when the two scores agree to
 * float rounding (a near tie), and the test counts those.
 *
 * What is checked:
 *   - every filter kind (allow ids, deny ids, callback, tags ANY, tags ALL)
 *     and every metric: with every leaf and a full re-rank the filtered scan
 *     is the exact filtered answer; with the default settings its recall
 *     against that answer stays above a floor at 50 %, 10 % and 1 %
 *     selectivity, with the planner's exact path allowed or not;
 *   - the exact path (filter_exact_below) is exact even with one leaf;
 *   - the brute-force tier filters too;
 *   - batched search (one filter, per-query filters) equals single search,
 *     bit for bit, with 1 and 2 threads;
 *   - an empty allow set gives only -1 / NaN; a filter that allows
 *     everything gives the unfiltered results bit for bit;
 *   - removed vectors are never returned; tags follow add_tagged, remove,
 *     upsert (keeps), upsert_tagged (replaces), set_tags and compact,
 *     against a model, and survive save/load (bytes, copy, mmap);
 *   - bad input is refused with the right code and a message, and changes
 *     nothing.
 *
 * Set AVQ_FILTER_VERBOSE=1 to print the measured recalls.
 */
#include <stdatomic.h>
#include <stddef.h>

#include "living_common.h"

enum { N = 3000, DIM = 16, NQ = 100, K = 10, LEAVES = 40, BRUTE = 500 };
/* A larger fixture (its first N rows are the small one), where the
 * planner's default threshold (filter_exact_below of
 * avq_index_default_search_params) separates the exact path from the
 * scan. */
enum { NBIG = 20000, LEAVES_BIG = 100 };

static float *base, *queries;
static int64_t *iota; /* ids 0..N-1: the fixture's ids */

/* The fixture's tags: what is passed to the index (with duplicates) and
 * the sorted, distinct reference. */
static size_t *in_off;
static uint32_t *in_tags;
static size_t *ref_off;
static uint32_t *ref_tags;

#define TAG_EVERY 7u          /* every vector                               */
#define TAG_BUCKET 1000u      /* + b, b uniform in 0..99                    */
#define TAG_HALF 3000u        /* probability 1/2                            */
#define TAG_FIFTH 3001u       /* 1/5, independent                           */
#define TAG_TENTH 3002u       /* 1/10, independent                          */
#define TAG_TWENTIETH 3003u   /* 1/20, independent                          */
#define TAG_FINE 10000u       /* + f, f uniform in 0..999                   */
#define TAG_NOISE 5000u       /* + 0..49, 0-3 per vector                    */
#define TAG_NOBODY 4000000u   /* carried by no vector                       */

static const double LEVELS[3] = {0.5, 0.1, 0.01};

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Sort and remove duplicates in place; returns the new length. */
static size_t sort_unique(uint32_t *t, size_t n) {
    if (n == 0) return 0;
    qsort(t, n, sizeof *t, cmp_u32);
    size_t w = 1;
    for (size_t i = 1; i < n; i++)
        if (t[i] != t[w - 1]) t[w++] = t[i];
    return w;
}

static void make_fixture_tags(uint64_t seed) {
    uint64_t rng = seed;
    size_t cap = (size_t)NBIG * 12;
    in_off = malloc((NBIG + 1) * sizeof *in_off);
    ref_off = malloc((NBIG + 1) * sizeof *ref_off);
    in_tags = malloc(cap * sizeof *in_tags);
    ref_tags = malloc(cap * sizeof *ref_tags);
    cr_assert(in_off && ref_off && in_tags && ref_tags);
    size_t w = 0, r = 0;
    in_off[0] = ref_off[0] = 0;
    for (size_t i = 0; i < NBIG; i++) {
        uint32_t t[12];
        size_t c = 0;
        uint32_t bucket = TAG_BUCKET + (uint32_t)(lv_rng(&rng) % 100);
        t[c++] = bucket;
        t[c++] = TAG_EVERY;
        if (lv_unit(&rng) < 0.5) t[c++] = TAG_HALF;
        if (lv_unit(&rng) < 0.2) t[c++] = TAG_FIFTH;
        if (lv_unit(&rng) < 0.1) t[c++] = TAG_TENTH;
        if (lv_unit(&rng) < 0.05) t[c++] = TAG_TWENTIETH;
        t[c++] = TAG_FINE + (uint32_t)(lv_rng(&rng) % 1000);
        size_t noise = lv_rng(&rng) % 4;
        for (size_t j = 0; j < noise; j++) t[c++] = TAG_NOISE + (uint32_t)(lv_rng(&rng) % 50);
        if (lv_unit(&rng) < 0.3) t[c++] = UINT32_MAX; /* any value is a tag */
        if (lv_unit(&rng) < 0.3) t[c++] = 0u;
        if (lv_unit(&rng) < 0.2) t[c++] = bucket; /* listed twice: counts once */
        for (size_t j = c; j > 1; j--) { /* the order given must not matter */
            size_t k = lv_rng(&rng) % j;
            uint32_t x = t[j - 1];
            t[j - 1] = t[k];
            t[k] = x;
        }
        memcpy(in_tags + w, t, c * sizeof *t);
        w += c;
        in_off[i + 1] = w;
        size_t d = sort_unique(t, c);
        memcpy(ref_tags + r, t, d * sizeof *t);
        r += d;
        ref_off[i + 1] = r;
    }
}

static bool has_tag(size_t row, uint32_t tag) {
    const uint32_t *t = ref_tags + ref_off[row];
    size_t lo = 0, hi = ref_off[row + 1] - ref_off[row];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t[mid] < tag) lo = mid + 1;
        else hi = mid;
    }
    return lo < ref_off[row + 1] - ref_off[row] && t[lo] == tag;
}

static void setup(void) {
    base = lv_clustered(NBIG, DIM, 91);
    queries = lv_clustered(NQ, DIM, 92);
    iota = malloc(NBIG * sizeof *iota);
    for (size_t i = 0; i < NBIG; i++) iota[i] = (int64_t)i;
    make_fixture_tags(93);
}

static void teardown(void) {
    free(base);
    free(queries);
    free(iota);
    free(in_off);
    free(in_tags);
    free(ref_off);
    free(ref_tags);
    lv_tmpdir_remove();
}

TestSuite(filter, .init = setup, .fini = teardown, .timeout = 120);

static bool verbose(void) {
    const char *v = getenv("AVQ_FILTER_VERBOSE");
    return v && v[0] && v[0] != '0';
}

/* ---- the reference ------------------------------------------------------------ */

/* Smaller is better: squared distance for L2, minus the similarity
 * otherwise (double precision, as avq's scores should be to rounding). */
static double ref_key(const float *q, const float *x, avq_metric m) {
    double dot = 0, qq = 0, xx = 0, l2 = 0;
    for (size_t j = 0; j < DIM; j++) {
        dot += (double)q[j] * x[j];
        qq += (double)q[j] * q[j];
        xx += (double)x[j] * x[j];
        l2 += ((double)q[j] - x[j]) * ((double)q[j] - x[j]);
    }
    if (m == AVQ_METRIC_L2) return l2;
    if (m == AVQ_METRIC_DOT) return -dot;
    return (qq > 0 && xx > 0) ? -dot / sqrt(qq * xx) : 0.0;
}

static double key_to_score(double key, avq_metric m) { return m == AVQ_METRIC_L2 ? key : -key; }

static double score_tol(double s) { return 2e-4 * (1.0 + fabs(s)); }

/* NQ x n keys of the first n fixture rows for one metric. */
static double *fixture_keys_n(avq_metric m, size_t n) {
    double *keys = malloc((size_t)NQ * n * sizeof *keys);
    cr_assert_not_null(keys);
    for (size_t q = 0; q < NQ; q++)
        for (size_t i = 0; i < n; i++) keys[q * n + i] = ref_key(queries + q * DIM, base + i * DIM, m);
    return keys;
}
#define fixture_keys(m) fixture_keys_n((m), N)

/* The candidates of a reference search: n vectors with their ids, keys for
 * one query, and which of them the filter allows (mask NULL = all). */
typedef struct {
    size_t n;
    const int64_t *ids;
    const double *keys;
    const bool *mask;
} ref_set;

/* Exact filtered top-k: ids (AVQ_NO_ID past the allowed count) and keys. */
static void ref_topk(const ref_set *rs, size_t k, int64_t *ids, double *keys) {
    size_t c = 0;
    for (size_t i = 0; i < rs->n; i++) {
        if (rs->mask && !rs->mask[i]) continue;
        double key = rs->keys[i];
        int64_t id = rs->ids[i];
        if (c == k && (key > keys[k - 1] || (key == keys[k - 1] && id > ids[k - 1]))) continue;
        size_t at = c < k ? c++ : k - 1;
        while (at > 0 && (keys[at - 1] > key || (keys[at - 1] == key && ids[at - 1] > id))) {
            keys[at] = keys[at - 1];
            ids[at] = ids[at - 1];
            at--;
        }
        keys[at] = key;
        ids[at] = id;
    }
    for (size_t i = c; i < k; i++) {
        ids[i] = AVQ_NO_ID;
        keys[i] = NAN;
    }
}

/* Position of id among the candidates, or -1. */
static ptrdiff_t ref_find(const ref_set *rs, int64_t id) {
    if (rs->ids == iota) return id >= 0 && (size_t)id < rs->n ? (ptrdiff_t)id : -1;
    for (size_t i = 0; i < rs->n; i++)
        if (rs->ids[i] == id) return (ptrdiff_t)i;
    return -1;
}

/* One result row is the exact filtered answer: the same ids in the same
 * order, except at near ties; every returned id allowed, with its true
 * score; -1 / NaN exactly where fewer than k are allowed.  Returns the
 * number of ranks where a near tie put another id. */
static size_t expect_exact_row(const ref_set *rs, avq_metric m, const int64_t *got,
                               const float *gs, size_t k, const char *what, size_t q) {
    int64_t rid[64];
    double rkey[64];
    cr_assert(k <= 64);
    ref_topk(rs, k, rid, rkey);
    size_t ties = 0;
    for (size_t i = 0; i < k; i++) {
        if (rid[i] == AVQ_NO_ID) {
            cr_assert_eq(got[i], AVQ_NO_ID, "%s: query %zu rank %zu: id %lld where only %zu are allowed",
                         what, q, i, (long long)got[i], i);
            cr_assert(isnan(gs[i]), "%s: query %zu rank %zu: score %g for no result", what, q, i,
                      (double)gs[i]);
            continue;
        }
        cr_assert_neq(got[i], AVQ_NO_ID, "%s: query %zu rank %zu: -1, expected id %lld", what, q, i,
                      (long long)rid[i]);
        ptrdiff_t at = ref_find(rs, got[i]);
        cr_assert(at >= 0, "%s: query %zu rank %zu: id %lld is not in the index", what, q, i,
                  (long long)got[i]);
        cr_assert(!rs->mask || rs->mask[at], "%s: query %zu rank %zu: id %lld is not allowed", what,
                  q, i, (long long)got[i]);
        double want = key_to_score(rkey[i], m), own = key_to_score(rs->keys[at], m);
        cr_assert(fabs((double)gs[i] - want) <= score_tol(want),
                  "%s: query %zu rank %zu: score %.7g, exact %.7g (id %lld, exact id %lld)", what, q,
                  i, (double)gs[i], want, (long long)got[i], (long long)rid[i]);
        if (got[i] != rid[i]) {
            cr_assert(fabs(own - want) <= score_tol(want),
                      "%s: query %zu rank %zu: id %lld (score %.7g), exact id %lld (score %.7g)",
                      what, q, i, (long long)got[i], own, (long long)rid[i], want);
            ties++;
        }
        for (size_t j = 0; j < i; j++)
            cr_assert_neq(got[i], got[j], "%s: query %zu: id %lld twice", what, q, (long long)got[i]);
    }
    return ties;
}

/* Every returned id allowed, present and not repeated; returns the hits
 * against the exact answer (and adds the exact answer's size to *out_of). */
static size_t count_hits(const ref_set *rs, const int64_t *got, size_t k, size_t *out_of,
                         const char *what, size_t q) {
    int64_t rid[64];
    double rkey[64];
    ref_topk(rs, k, rid, rkey);
    size_t hits = 0;
    for (size_t i = 0; i < k; i++) {
        if (rid[i] != AVQ_NO_ID) (*out_of)++;
        if (got[i] == AVQ_NO_ID) continue;
        ptrdiff_t at = ref_find(rs, got[i]);
        cr_assert(at >= 0, "%s: query %zu: id %lld is not in the index", what, q, (long long)got[i]);
        cr_assert(!rs->mask || rs->mask[at], "%s: query %zu rank %zu: id %lld is not allowed", what,
                  q, i, (long long)got[i]);
        for (size_t j = 0; j < k; j++) hits += got[i] == rid[j];
    }
    return hits;
}

/* ---- filters and their masks ---------------------------------------------------- */

enum { F_ALLOW, F_DENY, F_CALLBACK, F_ANY, F_ALL, F_KINDS };
static const char *const KIND_NAME[F_KINDS] = {"allow ids", "deny ids", "callback", "tags any",
                                              "tags all"};

/* What a callback filter reads: the mask over the fixture's ids (or a
 * predicate on the id), an id at which to fail, and what it saw. */
typedef struct {
    const bool *mask;   /* n entries (ids 0..n-1), or NULL: keep_mod */
    int64_t n;
    int64_t keep_mod;   /* with mask NULL: keep ids with id % keep_mod == 0 */
    int64_t fail_id;    /* return fail_value for this id (-1: never) */
    int fail_value;
    const bool *removed;/* N entries or NULL: ids the callback must not see */
    atomic_long calls;
    atomic_int saw_unknown, saw_removed;
} cb_user;

static int keep_cb(void *user, int64_t id) {
    cb_user *u = user;
    atomic_fetch_add(&u->calls, 1);
    if (u->fail_id != AVQ_NO_ID && id == u->fail_id) return u->fail_value;
    if (!u->mask) return u->keep_mod > 0 && id % u->keep_mod == 0;
    if (id < 0 || id >= u->n) {
        atomic_store(&u->saw_unknown, 1);
        return 0;
    }
    if (u->removed && u->removed[id]) atomic_store(&u->saw_removed, 1);
    return u->mask[id] ? 1 : 0;
}

static int keep_all(void *user, int64_t id) {
    (void)user;
    (void)id;
    return 1;
}

typedef struct {
    int kind;
    double level;
    avq_filter *f;
    bool *mask; /* n entries over ids 0..n-1 */
    size_t allowed;
    cb_user *cb;
    char name[80];
} fcase;

/* A filter of `kind` allowing about `level` of the first n fixture rows,
 * with its mask. */
static fcase make_case_n(size_t n_rows, int kind, double level, uint64_t seed) {
    fcase c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.level = level;
    c.mask = calloc(n_rows, sizeof *c.mask);
    uint64_t rng = seed;
    int st = AVQ_OK;
    if (kind == F_ALLOW || kind == F_DENY || kind == F_CALLBACK) {
        for (size_t i = 0; i < n_rows; i++) c.mask[i] = lv_unit(&rng) < level;
    }
    if (kind == F_ALLOW || kind == F_DENY) {
        /* the listed ids, shuffled, with duplicates and ids never held */
        int64_t *list = malloc((n_rows + 8) * sizeof *list);
        size_t n = 0;
        for (size_t i = 0; i < n_rows; i++)
            if (c.mask[i] == (kind == F_ALLOW)) list[n++] = (int64_t)i;
        for (size_t j = n; j > 1; j--) {
            size_t x = lv_rng(&rng) % j;
            int64_t t = list[j - 1];
            list[j - 1] = list[x];
            list[x] = t;
        }
        if (n > 0) list[n++] = list[0];
        list[n++] = NBIG + 17;
        list[n++] = (int64_t)1 << 50;
        st = kind == F_ALLOW ? avq_filter_allow_ids(list, n, &c.f) : avq_filter_deny_ids(list, n, &c.f);
        free(list);
    } else if (kind == F_CALLBACK) {
        c.cb = calloc(1, sizeof *c.cb);
        c.cb->mask = c.mask;
        c.cb->n = (int64_t)n_rows;
        c.cb->fail_id = AVQ_NO_ID;
        st = avq_filter_callback(keep_cb, c.cb, &c.f);
    } else {
        /* ANY: m buckets (+ a tag nobody has); ALL: independent tags */
        uint32_t tags[128];
        size_t n = 0;
        if (kind == F_ANY && level >= 0.01) { /* m of the 100 buckets */
            size_t m = (size_t)(level * 100 + 0.5);
            for (size_t j = 0; j < m; j++) tags[n++] = TAG_BUCKET + (uint32_t)(j * 7 % 100);
            tags[n++] = TAG_NOBODY;
        } else if (kind == F_ANY) { /* m of the 1000 fine buckets */
            size_t m = (size_t)(level * 1000 + 0.5);
            for (size_t j = 0; j < m; j++) tags[n++] = TAG_FINE + (uint32_t)(j * 13 % 1000);
            tags[n++] = TAG_NOBODY;
        } else if (level < 0.005) {
            tags[n++] = TAG_FIFTH;
            tags[n++] = TAG_TENTH;
            tags[n++] = TAG_TWENTIETH;
        } else {
            tags[n++] = TAG_HALF;
            if (level < 0.4) tags[n++] = TAG_FIFTH;
            if (level < 0.05) tags[n++] = TAG_TENTH;
            if (level > 0.4) tags[n++] = TAG_EVERY;
        }
        for (size_t i = 0; i < n_rows; i++) {
            bool any = false, all = true;
            for (size_t j = 0; j < n; j++) {
                bool h = has_tag(i, tags[j]);
                any |= h;
                all &= h;
            }
            c.mask[i] = kind == F_ANY ? any : all;
        }
        st = kind == F_ANY ? avq_filter_tags_any(tags, n, &c.f) : avq_filter_tags_all(tags, n, &c.f);
    }
    cr_assert_eq(st, AVQ_OK, "making a %s filter: %s", KIND_NAME[kind], avq_last_error());
    cr_assert_not_null(c.f);
    for (size_t i = 0; i < n_rows; i++) c.allowed += c.mask[i];
    snprintf(c.name, sizeof c.name, "%s %g%% (%zu allowed)", KIND_NAME[kind], level * 100, c.allowed);
    return c;
}

#define make_case(kind, level, seed) make_case_n(N, (kind), (level), (seed))

static void free_case(fcase *c) {
    avq_filter_free(c->f);
    free(c->mask);
    free(c->cb);
    memset(c, 0, sizeof *c);
}

/* ---- indexes --------------------------------------------------------------------- */

static void tag_fixture(avq_index *index, size_t n) {
    cr_assert_eq(avq_index_set_tags(index, iota, n, in_off, in_tags), AVQ_OK, "set_tags: %s",
                 avq_last_error());
}

/* The first n fixture rows in `leaves` leaves, 4-bit codes, `reorder`,
 * tagged. */
static avq_index *fixture_n(avq_metric m, avq_reorder reorder, size_t n, size_t leaves) {
    avq_build_params p = lv_params(m, 4, reorder, leaves, BRUTE);
    avq_index *index = lv_build(base, n, DIM, &p);
    cr_assert_eq(avq_index_num_leaves(index), leaves);
    tag_fixture(index, n);
    return index;
}
#define fixture(m, reorder) fixture_n((m), (reorder), N, LEAVES)

/* The brute-force tier: the first n < BRUTE vectors. */
static avq_index *tiny(avq_metric m, size_t n) {
    avq_build_params p = lv_params(m, 4, AVQ_REORDER_FLOAT, 0, BRUTE);
    avq_index *index = lv_build(base, n, DIM, &p);
    tag_fixture(index, n);
    return index;
}

static const avq_metric METRICS[3] = {AVQ_METRIC_DOT, AVQ_METRIC_L2, AVQ_METRIC_COSINE};

/* Search every query with sp and compare each row with the exact filtered
 * answer over the first n fixture rows; returns the near ties. */
static size_t expect_exact_all(const avq_index *index, avq_metric m, const double *keys, size_t n,
                               const bool *mask, const avq_search_params *sp, const char *what) {
    size_t ties = 0, k = sp->k;
    int64_t *ids = malloc(k * sizeof *ids);
    float *sc = malloc(k * sizeof *sc);
    for (size_t q = 0; q < NQ; q++) {
        int st = avq_index_search(index, queries + q * DIM, sp, ids, sc);
        cr_assert_eq(st, AVQ_OK, "%s: query %zu: %s", what, q, avq_last_error());
        ref_set rs = {n, iota, keys + q * n, mask};
        ties += expect_exact_row(&rs, m, ids, sc, k, what, q);
    }
    free(ids);
    free(sc);
    return ties;
}

/* ---- 1. every leaf and a full re-rank: the exact filtered answer ------------------- */

static void exhaustive_is_exact(avq_metric m) {
    avq_index *index = fixture(m, AVQ_REORDER_FLOAT);
    double *keys = fixture_keys(m);
    size_t ties = 0;
    for (int kind = 0; kind < F_KINDS; kind++)
        for (int l = 0; l < 3; l++) {
            fcase c = make_case(kind, LEVELS[l], 100 + 10 * kind + l);
            avq_search_params sp = lv_exhaustive(index, K, N);
            sp.filter = c.f;
            char what[160];
            /* the scan (exact path off), then as the planner likes */
            sp.filter_exact_below = 1;
            snprintf(what, sizeof what, "%s, %s, exhaustive scan", avq_metric_name(m), c.name);
            ties += expect_exact_all(index, m, keys, N, c.mask, &sp, what);
            sp.filter_exact_below = 0;
            snprintf(what, sizeof what, "%s, %s, exhaustive", avq_metric_name(m), c.name);
            ties += expect_exact_all(index, m, keys, N, c.mask, &sp, what);
            if (c.cb) cr_expect(!atomic_load(&c.cb->saw_unknown), "callback called with an unknown id");
            free_case(&c);
        }
    if (verbose()) fprintf(stderr, "%-11s exhaustive: %zu near ties\n", avq_metric_name(m), ties);
    cr_expect(ties <= 3, "%s: %zu near ties (expected almost none with random data)",
              avq_metric_name(m), ties);
    free(keys);
    avq_index_free(index);
}

Test(filter, exhaustive_is_exact_dot) { exhaustive_is_exact(AVQ_METRIC_DOT); }
Test(filter, exhaustive_is_exact_l2) { exhaustive_is_exact(AVQ_METRIC_L2); }
Test(filter, exhaustive_is_exact_cosine) { exhaustive_is_exact(AVQ_METRIC_COSINE); }

/* ---- 2. default settings: recall against the exact filtered answer ------------------ */

/* Floors from measurement: over 3 metrics x 5 kinds x 3 levels the
 * lowest recall seen was 0.976 (tags all 50 %, cosine, exact path off);
 * with all defaults the allow sets and tag filters (at most N = 3000
 * allowed) are scored exactly when below the default threshold: 1.000. */
#define FLOOR_DEFAULT 0.95
#define FLOOR_SCAN 0.95

static void default_recall(avq_metric m) {
    avq_index *index = fixture(m, AVQ_REORDER_FLOAT);
    double *keys = fixture_keys(m);
    avq_search_params dp = lv_default(index, K);
    /* unfiltered, for scale */
    size_t hits = 0, out_of = 0;
    int64_t ids[K];
    float sc[K];
    for (size_t q = 0; q < NQ; q++) {
        cr_assert_eq(avq_index_search(index, queries + q * DIM, &dp, ids, sc), AVQ_OK);
        ref_set rs = {N, iota, keys + q * N, NULL};
        hits += count_hits(&rs, ids, K, &out_of, "unfiltered", q);
    }
    if (verbose())
        fprintf(stderr, "%-11s unfiltered default recall %.3f (leaves %zu of %d, pre_reorder %zu)\n",
                avq_metric_name(m), (double)hits / (double)out_of, dp.leaves_to_search, LEAVES,
                dp.pre_reorder);
    for (int kind = 0; kind < F_KINDS; kind++)
        for (int l = 0; l < 3; l++) {
            fcase c = make_case(kind, LEVELS[l], 200 + 10 * kind + l);
            double rec[2];
            for (int pass = 0; pass < 2; pass++) {
                avq_search_params sp = dp;
                sp.filter = c.f;
                sp.filter_exact_below = pass == 0 ? 0 : 1; /* default planner, then scan only */
                hits = out_of = 0;
                char what[160];
                snprintf(what, sizeof what, "%s, %s, %s", avq_metric_name(m), c.name,
                         pass ? "default, scan only" : "default");
                for (size_t q = 0; q < NQ; q++) {
                    int st = avq_index_search(index, queries + q * DIM, &sp, ids, sc);
                    cr_assert_eq(st, AVQ_OK, "%s: %s", what, avq_last_error());
                    lv_check_row(ids, sc, K, m, what, q);
                    ref_set rs = {N, iota, keys + q * N, c.mask};
                    hits += count_hits(&rs, ids, K, &out_of, what, q);
                }
                rec[pass] = (double)hits / (double)out_of;
                cr_expect(rec[pass] >= (pass ? FLOOR_SCAN : FLOOR_DEFAULT),
                          "%s: recall@%d %.3f below %.2f", what, K, rec[pass],
                          pass ? FLOOR_SCAN : FLOOR_DEFAULT);
            }
            if (verbose())
                fprintf(stderr, "%-11s %-32s recall default %.3f  scan only %.3f\n", avq_metric_name(m),
                        c.name, rec[0], rec[1]);
            free_case(&c);
        }
    free(keys);
    avq_index_free(index);
}

Test(filter, default_recall_dot) { default_recall(AVQ_METRIC_DOT); }
Test(filter, default_recall_l2) { default_recall(AVQ_METRIC_L2); }
Test(filter, default_recall_cosine) { default_recall(AVQ_METRIC_COSINE); }

/* NBIG vectors in LEAVES_BIG leaves: the default planner scores the rare
 * filters exactly and scans for the common ones (50 % down to 0.1 %).
 * Floor: the unfiltered default recall minus 0.02, at most 0.95 -- a
 * filter must not make recall worse.  Measured: unfiltered 0.965 (dot),
 * 0.949 (cosine), 0.774 (l2: 4 leaves of 100 and 80 candidates are few for
 * this data); filtered minimum 0.986 (dot), 0.986 (cosine), 0.834 (l2, 50 %
 * deny), 0.969 (l2, 10 %), 1.000 at 1 % and 0.1 %.  The "region" filters
 * allow the points with the smallest first coordinate: for most queries
 * their allowed neighbours lie in leaves far from the query's own. */

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* An allow set of the rows whose first coordinate is below `cut`. */
static fcase region_case(size_t n_rows, float cut) {
    fcase c;
    memset(&c, 0, sizeof c);
    c.kind = F_ALLOW;
    c.mask = calloc(n_rows, sizeof *c.mask);
    int64_t *list = malloc(n_rows * sizeof *list);
    for (size_t i = 0; i < n_rows; i++)
        if (base[i * DIM] < cut) {
            c.mask[i] = true;
            list[c.allowed++] = (int64_t)i;
        }
    cr_assert_eq(avq_filter_allow_ids(list, c.allowed, &c.f), AVQ_OK);
    free(list);
    c.level = (double)c.allowed / (double)n_rows;
    snprintf(c.name, sizeof c.name, "region %.0f%% (%zu allowed)", c.level * 100, c.allowed);
    return c;
}

static void default_recall_big(avq_metric m) {
    const double levels[4] = {0.5, 0.1, 0.01, 0.001};
    avq_index *index = fixture_n(m, AVQ_REORDER_FLOAT, NBIG, LEAVES_BIG);
    double *keys = fixture_keys_n(m, NBIG);
    avq_search_params dp = lv_default(index, K);
    int64_t ids[K];
    float sc[K];
    size_t hits = 0, out_of = 0;
    for (size_t q = 0; q < NQ; q++) {
        cr_assert_eq(avq_index_search(index, queries + q * DIM, &dp, ids, sc), AVQ_OK);
        ref_set rs = {NBIG, iota, keys + q * NBIG, NULL};
        hits += count_hits(&rs, ids, K, &out_of, "unfiltered", q);
    }
    double unfiltered = (double)hits / (double)out_of;
    double min_recall = unfiltered - 0.02 < 0.95 ? unfiltered - 0.02 : 0.95;
    if (verbose())
        fprintf(stderr, "%-11s %d rows: unfiltered default recall %.3f (leaves %zu of %d, pre_reorder %zu)\n",
                avq_metric_name(m), NBIG, unfiltered, dp.leaves_to_search, LEAVES_BIG, dp.pre_reorder);
    /* the region filters' threshold: the 2 % and 30 % quantiles of x[0] */
    float *first = malloc(NBIG * sizeof *first);
    for (size_t i = 0; i < NBIG; i++) first[i] = base[i * DIM];
    qsort(first, NBIG, sizeof *first, cmp_float);
    const float cut[2] = {first[NBIG / 50], first[NBIG * 3 / 10]};
    free(first);
    for (int kind = 0; kind <= F_KINDS; kind++)
        for (int l = 0; l < (kind == F_KINDS ? 2 : 4); l++) {
            fcase c;
            if (kind < F_KINDS) c = make_case_n(NBIG, kind, levels[l], 250 + 10 * kind + l);
            else c = region_case(NBIG, cut[l]);
            double rec[2];
            for (int pass = 0; pass < 2; pass++) {
                avq_search_params sp = dp;
                sp.filter = c.f;
                sp.filter_exact_below = pass == 0 ? 0 : 1;
                hits = out_of = 0;
                char what[160];
                snprintf(what, sizeof what, "%s %d rows, %s, %s", avq_metric_name(m), NBIG, c.name,
                         pass ? "default, scan only" : "default");
                for (size_t q = 0; q < NQ; q++) {
                    int st = avq_index_search(index, queries + q * DIM, &sp, ids, sc);
                    cr_assert_eq(st, AVQ_OK, "%s: %s", what, avq_last_error());
                    lv_check_row(ids, sc, K, m, what, q);
                    ref_set rs = {NBIG, iota, keys + q * NBIG, c.mask};
                    hits += count_hits(&rs, ids, K, &out_of, what, q);
                }
                rec[pass] = (double)hits / (double)out_of;
                cr_expect(rec[pass] >= min_recall, "%s: recall@%d %.3f below %.3f", what, K, rec[pass], min_recall);
            }
            if (verbose())
                fprintf(stderr, "%-11s %d rows %-34s recall default %.3f  scan only %.3f\n", avq_metric_name(m),
                        NBIG, c.name, rec[0], rec[1]);
            free_case(&c);
        }
    free(keys);
    avq_index_free(index);
}

Test(filter, default_recall_big_dot) { default_recall_big(AVQ_METRIC_DOT); }
Test(filter, default_recall_big_l2) { default_recall_big(AVQ_METRIC_L2); }
Test(filter, default_recall_big_cosine) { default_recall_big(AVQ_METRIC_COSINE); }

/* ---- 3. the exact path ------------------------------------------------------------- */

/* With filter_exact_below above what the filter allows, an allow set or a
 * tag filter is scored exactly: one leaf and pre_reorder = k do not
 * matter.  With the default threshold (from avq_index_default_search_params)
 * the same holds for allow sets and ANY filters it covers (their bound is
 * what they allow, plus the 2 ids never held that an allow list names; an
 * ALL filter's bound is its rarest tag's count, not known here). */
Test(filter, exact_path_is_exact) {
    const int kinds[3] = {F_ALLOW, F_ANY, F_ALL};
    size_t ties = 0;
    for (int mi = 0; mi < 3; mi++) {
        avq_metric m = METRICS[mi];
        avq_index *index = fixture(m, AVQ_REORDER_FLOAT);
        double *keys = fixture_keys(m);
        for (int ki = 0; ki < 3; ki++)
            for (int l = 0; l < 3; l++) {
                fcase c = make_case(kinds[ki], LEVELS[l], 300 + 10 * ki + l);
                avq_search_params sp;
                avq_search_params_init(&sp);
                sp.k = K;
                sp.leaves_to_search = 1;
                sp.pre_reorder = K;
                sp.filter = c.f;
                sp.filter_exact_below = N + 1;
                char what[160];
                snprintf(what, sizeof what, "%s, %s, exact path", avq_metric_name(m), c.name);
                ties += expect_exact_all(index, m, keys, N, c.mask, &sp, what);
                avq_search_params dp = lv_default(index, K);
                if (kinds[ki] != F_ALL && c.allowed + 2 <= dp.filter_exact_below) {
                    dp.filter = c.f;
                    snprintf(what, sizeof what, "%s, %s, default threshold", avq_metric_name(m), c.name);
                    ties += expect_exact_all(index, m, keys, N, c.mask, &dp, what);
                }
                free_case(&c);
            }
        free(keys);
        avq_index_free(index);
    }
    if (verbose()) fprintf(stderr, "exact path: %zu near ties\n", ties);
    cr_expect(ties <= 3, "%zu near ties", ties);
}

/* Tag values at both ends of the range (0, UINT32_MAX: 30 % of the
 * vectors each) on both plans: any 32-bit value is a tag. */
Test(filter, extreme_tag_values) {
    avq_index *index = fixture(AVQ_METRIC_L2, AVQ_REORDER_FLOAT);
    double *keys = fixture_keys(AVQ_METRIC_L2);
    const uint32_t lists[4][2] = {{UINT32_MAX, 0}, {0, 0}, {UINT32_MAX, 0}, {0x80000000u, UINT32_MAX}};
    const size_t lens[4] = {1, 1, 2, 2};
    const bool all[4] = {false, false, true, false};
    bool *mask = malloc(N * sizeof *mask);
    for (int c = 0; c < 4; c++) {
        size_t allowed = 0;
        for (size_t i = 0; i < N; i++) {
            bool any = false, every = true;
            for (size_t j = 0; j < lens[c]; j++) {
                bool h = has_tag(i, lists[c][j]);
                any |= h;
                every &= h;
            }
            mask[i] = all[c] ? every : any;
            allowed += mask[i];
        }
        cr_assert_gt(allowed, 0);
        if (c == 0) cr_assert_eq(avq_index_tag_count(index, UINT32_MAX), allowed);
        avq_filter *f = NULL;
        cr_assert_eq((all[c] ? avq_filter_tags_all : avq_filter_tags_any)(lists[c], lens[c], &f), AVQ_OK);
        for (int plan = 0; plan < 2; plan++) {
            avq_search_params sp = lv_exhaustive(index, K, N);
            sp.filter = f;
            if (plan == 0) { /* exact plan: one leaf would not do */
                sp.leaves_to_search = 1;
                sp.pre_reorder = K;
                sp.filter_exact_below = N + 1;
            } else {
                sp.filter_exact_below = 1;
            }
            char what[120];
            snprintf(what, sizeof what, "tags %s {%#x%s}, %s plan (%zu allowed)", all[c] ? "all" : "any",
                     lists[c][0], lens[c] > 1 ? ", ..." : "", plan ? "scan" : "exact", allowed);
            expect_exact_all(index, AVQ_METRIC_L2, keys, N, mask, &sp, what);
        }
        avq_filter_free(f);
    }
    free(mask);
    free(keys);
    avq_index_free(index);
}

/* Fewer allowed than k: the allowed ones, then -1 / NaN (both paths). */
Test(filter, fewer_allowed_than_k) {
    avq_index *index = fixture(AVQ_METRIC_L2, AVQ_REORDER_FLOAT);
    double *keys = fixture_keys(AVQ_METRIC_L2);
    int64_t five[5] = {11, 1500, 2999, 42, 777};
    bool *mask = calloc(N, sizeof *mask);
    for (int i = 0; i < 5; i++) mask[five[i]] = true;
    avq_filter *f = NULL;
    cr_assert_eq(avq_filter_allow_ids(five, 5, &f), AVQ_OK);
    for (int pass = 0; pass < 3; pass++) {
        avq_search_params sp = pass == 0 ? lv_default(index, K) : lv_exhaustive(index, K, N);
        sp.filter = f;
        if (pass == 2) sp.filter_exact_below = 1;
        expect_exact_all(index, AVQ_METRIC_L2, keys, N, mask, &sp,
                         pass == 0 ? "5 allowed, default" : pass == 1 ? "5 allowed, exhaustive"
                                                                      : "5 allowed, scan");
    }
    /* the same 5 through their tags: bucket tags are not unique, so tag
     * them with a fresh one */
    uint32_t fresh = 123456u;
    size_t off[6] = {0};
    uint32_t tags[5 * 40];
    size_t w = 0;
    for (int i = 0; i < 5; i++) {
        size_t r = (size_t)five[i];
        for (size_t j = ref_off[r]; j < ref_off[r + 1]; j++) tags[w++] = ref_tags[j];
        tags[w++] = fresh;
        off[i + 1] = w;
    }
    cr_assert_eq(avq_index_set_tags(index, five, 5, off, tags), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(avq_index_tag_count(index, fresh), 5);
    avq_filter *t = NULL;
    cr_assert_eq(avq_filter_tags_any(&fresh, 1, &t), AVQ_OK);
    for (int pass = 0; pass < 2; pass++) {
        avq_search_params sp = lv_default(index, K);
        sp.filter = t;
        if (pass) sp.filter_exact_below = 1;
        expect_exact_all(index, AVQ_METRIC_L2, keys, N, mask, &sp,
                         pass ? "5 tagged, scan" : "5 tagged, default");
    }
    avq_filter_free(f);
    avq_filter_free(t);
    free(mask);
    free(keys);
    avq_index_free(index);
}

/* ---- 4. the brute-force tier --------------------------------------------------------- */

Test(filter, brute_force_tier_filters) {
    size_t n = BRUTE - 100;
    for (int mi = 0; mi < 3; mi++) {
        avq_metric m = METRICS[mi];
        avq_index *index = tiny(m, n);
        double *keys = fixture_keys_n(m, n);
        for (int kind = 0; kind < F_KINDS; kind++)
            for (int l = 0; l < 3; l++) {
                fcase c = make_case(kind, LEVELS[l], 400 + 10 * kind + l);
                for (int pass = 0; pass < 2; pass++) {
                    avq_search_params sp = lv_default(index, K);
                    sp.filter = c.f;
                    if (pass) sp.filter_exact_below = 1;
                    char what[160];
                    snprintf(what, sizeof what, "%s, brute-force tier (%zu), %s%s", avq_metric_name(m),
                             n, c.name, pass ? ", exact path off" : "");
                    expect_exact_all(index, m, keys, n, c.mask, &sp, what);
                }
                free_case(&c);
            }
        free(keys);
        avq_index_free(index);
    }
}

/* ---- 5. batched search equals single search --------------------------------------- */

static lv_results single_filtered(const avq_index *index, const avq_search_params *sp,
                                  avq_filter *const *per_query, const char *what) {
    lv_results r = {NQ, sp->k, malloc(NQ * sp->k * sizeof(int64_t)), malloc(NQ * sp->k * sizeof(float))};
    avq_search_params one = *sp;
    for (size_t q = 0; q < NQ; q++) {
        if (per_query) one.filter = per_query[q];
        int st = avq_index_search(index, queries + q * DIM, &one, r.ids + q * r.k, r.scores + q * r.k);
        cr_assert_eq(st, AVQ_OK, "%s: query %zu: %s", what, q, avq_last_error());
    }
    return r;
}

static lv_results batch_of(const avq_index *index, const avq_search_params *sp,
                           avq_filter *const *per_query, bool filtered_api, int threads,
                           const char *what) {
    lv_results r = {NQ, sp->k, malloc(NQ * sp->k * sizeof(int64_t)), malloc(NQ * sp->k * sizeof(float))};
    int st = filtered_api
                 ? avq_index_search_batch_filtered(index, queries, NQ, sp,
                                                   (const avq_filter *const *)per_query, threads,
                                                   r.ids, r.scores)
                 : avq_index_search_batch(index, queries, NQ, sp, threads, r.ids, r.scores);
    cr_assert_eq(st, AVQ_OK, "%s: %s", what, avq_last_error());
    return r;
}

static void batch_equals_single(avq_metric m, bool tiny_tier) {
    avq_index *index = tiny_tier ? tiny(m, BRUTE - 100) : fixture(m, AVQ_REORDER_FLOAT);
    fcase c[F_KINDS];
    for (int kind = 0; kind < F_KINDS; kind++) c[kind] = make_case(kind, kind % 2 ? 0.1 : 0.01, 500 + kind);
    /* per-query filters: every kind, and none, in turn */
    avq_filter *per_query[NQ];
    for (size_t q = 0; q < NQ; q++) per_query[q] = q % (F_KINDS + 1) == F_KINDS ? NULL : c[q % (F_KINDS + 1)].f;
    avq_filter *empty = NULL;
    cr_assert_eq(avq_filter_allow_ids(NULL, 0, &empty), AVQ_OK);
    for (int setting = 0; setting < 3; setting++) {
        avq_search_params sp = setting == 0 ? lv_default(index, K) : lv_exhaustive(index, K, N);
        if (setting == 2) sp.filter_exact_below = 1;
        const char *sname = setting == 0 ? "default" : setting == 1 ? "exhaustive" : "exhaustive scan";
        char what[160];
        for (int kind = 0; kind < F_KINDS; kind++) {
            avq_search_params one = sp;
            one.filter = c[kind].f;
            snprintf(what, sizeof what, "%s %s, %s", avq_metric_name(m), sname, c[kind].name);
            lv_results s = single_filtered(index, &one, NULL, what);
            for (int threads = 1; threads <= 2; threads++) {
                lv_results b = batch_of(index, &one, NULL, false, threads, what);
                char w2[256];
                snprintf(w2, sizeof w2, "%s: search_batch, %d threads", what, threads);
                lv_expect_same(&s, &b, w2);
                lv_results_free(&b);
                /* batch_filtered with filters NULL: params->filter for all */
                b = batch_of(index, &one, NULL, true, threads, what);
                snprintf(w2, sizeof w2, "%s: batch_filtered(NULL), %d threads", what, threads);
                lv_expect_same(&s, &b, w2);
                lv_results_free(&b);
            }
            lv_results_free(&s);
        }
        /* one filter per query; params->filter is ignored (set it to
         * allow nothing to prove it) */
        snprintf(what, sizeof what, "%s %s, per-query filters", avq_metric_name(m), sname);
        lv_results s = single_filtered(index, &sp, per_query, what);
        avq_search_params ignored = sp;
        ignored.filter = empty;
        for (int threads = 1; threads <= 2; threads++) {
            lv_results b = batch_of(index, &ignored, per_query, true, threads, what);
            char w2[256];
            snprintf(w2, sizeof w2, "%s, %d threads", what, threads);
            lv_expect_same(&s, &b, w2);
            lv_results_free(&b);
        }
        lv_results_free(&s);
    }
    for (int kind = 0; kind < F_KINDS; kind++) {
        if (c[kind].cb) cr_expect(!atomic_load(&c[kind].cb->saw_unknown));
        free_case(&c[kind]);
    }
    avq_filter_free(empty);
    avq_index_free(index);
}

Test(filter, batch_equals_single_dot) { batch_equals_single(AVQ_METRIC_DOT, false); }
Test(filter, batch_equals_single_l2) { batch_equals_single(AVQ_METRIC_L2, false); }
Test(filter, batch_equals_single_cosine) { batch_equals_single(AVQ_METRIC_COSINE, false); }
Test(filter, batch_equals_single_brute_force_tier) { batch_equals_single(AVQ_METRIC_L2, true); }

/* ---- 6. nothing allowed, everything allowed ------------------------------------------ */

static void expect_no_results(const avq_index *index, const avq_filter *f, const char *what) {
    int64_t *ids = malloc(NQ * K * sizeof *ids);
    float *sc = malloc(NQ * K * sizeof *sc);
    for (int setting = 0; setting < 3; setting++) {
        avq_search_params sp = setting == 0 ? lv_default(index, K) : lv_exhaustive(index, K, N);
        if (setting == 2) sp.filter_exact_below = 1;
        sp.filter = f;
        for (size_t q = 0; q < NQ; q++) {
            cr_assert_eq(avq_index_search(index, queries + q * DIM, &sp, ids + q * K, sc + q * K),
                         AVQ_OK, "%s: %s", what, avq_last_error());
        }
        for (size_t i = 0; i < NQ * K; i++)
            cr_assert(ids[i] == AVQ_NO_ID && isnan(sc[i]), "%s, setting %d: query %zu rank %zu: id %lld score %g",
                      what, setting, i / K, i % K, (long long)ids[i], (double)sc[i]);
        for (int threads = 1; threads <= 2; threads++) {
            for (size_t i = 0; i < NQ * K; i++) ids[i] = 5;
            cr_assert_eq(avq_index_search_batch(index, queries, NQ, &sp, threads, ids, sc), AVQ_OK,
                         "%s batch: %s", what, avq_last_error());
            for (size_t i = 0; i < NQ * K; i++)
                cr_assert(ids[i] == AVQ_NO_ID && isnan(sc[i]), "%s batch: id %lld", what, (long long)ids[i]);
        }
    }
    free(ids);
    free(sc);
}

Test(filter, nothing_allowed_gives_no_results) {
    for (int tier = 0; tier < 2; tier++) {
        avq_index *index = tier ? tiny(AVQ_METRIC_DOT, BRUTE - 100) : fixture(AVQ_METRIC_DOT, AVQ_REORDER_FLOAT);
        avq_filter *f = NULL;
        cr_assert_eq(avq_filter_allow_ids(NULL, 0, &f), AVQ_OK, "%s", avq_last_error());
        expect_no_results(index, f, "empty allow set");
        avq_filter_free(f);
        int64_t absent[3] = {N + 1, -5, (int64_t)1 << 60};
        cr_assert_eq(avq_filter_allow_ids(absent, 3, &f), AVQ_OK);
        expect_no_results(index, f, "allow set of absent ids");
        avq_filter_free(f);
        uint32_t nobody = TAG_NOBODY;
        cr_assert_eq(avq_filter_tags_any(&nobody, 1, &f), AVQ_OK);
        expect_no_results(index, f, "a tag nobody has");
        avq_filter_free(f);
        uint32_t two_buckets[2] = {TAG_BUCKET, TAG_BUCKET + 1};
        cr_assert_eq(avq_filter_tags_all(two_buckets, 2, &f), AVQ_OK);
        expect_no_results(index, f, "all of two exclusive tags");
        avq_filter_free(f);
        cb_user u;
        memset(&u, 0, sizeof u);
        u.fail_id = AVQ_NO_ID; /* mask NULL, keep_mod 0: keeps nothing */
        cr_assert_eq(avq_filter_callback(keep_cb, &u, &f), AVQ_OK);
        expect_no_results(index, f, "callback keeping nothing");
        avq_filter_free(f);
        avq_index_free(index);
    }
}

/* Rows of a and b that differ in any id or any score bit. */
static size_t rows_differ(const lv_results *a, const lv_results *b) {
    size_t rows = 0;
    for (size_t q = 0; q < a->nq; q++) {
        bool same = true;
        for (size_t i = 0; i < a->k; i++) {
            size_t at = q * a->k + i;
            same &= a->ids[at] == b->ids[at] &&
                    (memcmp(&a->scores[at], &b->scores[at], sizeof(float)) == 0 ||
                     (isnan(a->scores[at]) && isnan(b->scores[at])));
        }
        rows += !same;
    }
    return rows;
}

/* A filter that allows every vector changes nothing where the header says
 * the filtered search does what the unfiltered one does: every leaf and a
 * full re-rank (exact path or not); the default leaves and re-rank with
 * filter_min_scanned = 1 (no extra leaves) and the scan plan.  With all
 * defaults the filtered scan goes on to further leaves until 8 x pre_reorder
 * allowed points were scanned, and a filter bounded below the default
 * filter_exact_below is scored
 * exactly: the answer may differ, but only by being better -- its recall
 * against the unfiltered exact answer is at least the unfiltered one's. */
static void allow_all_is_unfiltered(avq_metric m, bool tiny_tier) {
    size_t n = tiny_tier ? BRUTE - 100 : N;
    avq_index *index = tiny_tier ? tiny(m, n) : fixture(m, AVQ_REORDER_FLOAT);
    avq_filter *f[6] = {NULL};
    const char *names[6] = {"allow every id", "deny nothing", "deny absent ids", "callback 1",
                            "tags any (every vector's)", "tags all (every vector's)"};
    int64_t absent[2] = {N + 3, (int64_t)1 << 45};
    uint32_t every[2] = {TAG_EVERY, TAG_NOBODY};
    cr_assert_eq(avq_filter_allow_ids(iota, n, &f[0]), AVQ_OK);
    cr_assert_eq(avq_filter_deny_ids(NULL, 0, &f[1]), AVQ_OK);
    cr_assert_eq(avq_filter_deny_ids(absent, 2, &f[2]), AVQ_OK);
    cr_assert_eq(avq_filter_callback(keep_all, NULL, &f[3]), AVQ_OK);
    cr_assert_eq(avq_filter_tags_any(every, 2, &f[4]), AVQ_OK);
    cr_assert_eq(avq_filter_tags_all(every, 1, &f[5]), AVQ_OK);
    int64_t *truth = lv_truth(base, NULL, n, DIM, queries, NQ, m, K);
    /* settings: 0 exhaustive, 1 exhaustive + scan plan, 2 default leaves
     * without extra ones + scan plan, 3 all defaults */
    const char *snames[4] = {"exhaustive", "exhaustive, scan plan", "default, min_scanned 1, scan plan",
                             "all defaults"};
    for (int setting = 0; setting < 4; setting++) {
        avq_search_params sp = setting < 2 ? lv_exhaustive(index, K, N) : lv_default(index, K);
        lv_results plain = lv_search(index, queries, NQ, &sp, "unfiltered");
        double plain_recall = lv_recall(plain.ids, truth, NQ, K);
        for (int i = 0; i < 6; i++) {
            avq_search_params fp = sp;
            fp.filter = f[i];
            if (setting == 1 || setting == 2) fp.filter_exact_below = 1;
            if (setting == 2) fp.filter_min_scanned = 1;
            char what[160];
            snprintf(what, sizeof what, "%s%s, %s, %s", avq_metric_name(m), tiny_tier ? " tiny" : "",
                     snames[setting], names[i]);
            lv_results r = lv_search(index, queries, NQ, &fp, what);
            lv_results b = batch_of(index, &fp, NULL, false, 2, what);
            size_t d = rows_differ(&plain, &r), db = rows_differ(&plain, &b);
            double rec = lv_recall(r.ids, truth, NQ, K);
            if (verbose() && (d || db))
                fprintf(stderr, "%s: %zu / %d rows differ (batch %zu); recall %.3f, unfiltered %.3f\n", what, d,
                        NQ, db, rec, plain_recall);
            if (setting < 3 || tiny_tier) {
                lv_expect_same(&plain, &r, what);
                lv_expect_same(&plain, &b, what);
            } else {
                lv_expect_same(&r, &b, what);
                cr_expect(rec >= plain_recall, "%s: recall %.3f below the unfiltered %.3f", what, rec,
                          plain_recall);
            }
            lv_results_free(&r);
            lv_results_free(&b);
        }
        lv_results_free(&plain);
    }
    free(truth);
    for (int i = 0; i < 6; i++) avq_filter_free(f[i]);
    avq_index_free(index);
}

Test(filter, allow_all_is_unfiltered_dot) { allow_all_is_unfiltered(AVQ_METRIC_DOT, false); }
Test(filter, allow_all_is_unfiltered_l2) { allow_all_is_unfiltered(AVQ_METRIC_L2, false); }
Test(filter, allow_all_is_unfiltered_cosine) { allow_all_is_unfiltered(AVQ_METRIC_COSINE, false); }
Test(filter, allow_all_is_unfiltered_brute_force_tier) { allow_all_is_unfiltered(AVQ_METRIC_DOT, true); }

/* ---- 7. removed vectors, compaction -------------------------------------------------- */

Test(filter, removed_vectors_are_never_returned) {
    avq_metric m = AVQ_METRIC_DOT;
    avq_index *index = fixture(m, AVQ_REORDER_FLOAT);
    cr_assert_eq(avq_index_set_compact_threshold(index, 0), AVQ_OK);
    double *keys = fixture_keys(m);
    bool *removed = calloc(N, sizeof *removed);
    uint64_t rng = 700;
    int64_t *rm = malloc(N * sizeof *rm);
    size_t nrm = 0;
    for (size_t i = 0; i < N; i++)
        if (lv_unit(&rng) < 0.3) {
            removed[i] = true;
            rm[nrm++] = (int64_t)i;
        }
    /* tag counts before, to check they drop by exactly the removed ones */
    size_t every_before = avq_index_tag_count(index, TAG_EVERY);
    cr_assert_eq(every_before, (size_t)N);
    size_t removed_count = 0;
    cr_assert_eq(avq_index_remove(index, rm, nrm, &removed_count), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(removed_count, nrm);
    cr_assert_eq(avq_index_tag_count(index, TAG_EVERY), N - nrm);
    for (uint32_t b = 0; b < 100; b++) {
        size_t want = 0;
        for (size_t i = 0; i < N; i++) want += !removed[i] && has_tag(i, TAG_BUCKET + b);
        cr_assert_eq(avq_index_tag_count(index, TAG_BUCKET + b), want, "bucket %u", b);
    }
    for (int round = 0; round < 2; round++) {
        for (int kind = 0; kind < F_KINDS; kind++)
            for (int l = 0; l < 3; l++) {
                fcase c = make_case(kind, LEVELS[l], 710 + 10 * kind + l);
                if (c.cb) c.cb->removed = removed;
                /* the reference: allowed and live */
                bool *live_mask = malloc(N * sizeof *live_mask);
                for (size_t i = 0; i < N; i++) live_mask[i] = c.mask[i] && !removed[i];
                char what[200];
                for (int setting = 0; setting < 3; setting++) {
                    avq_search_params sp = setting == 0 ? lv_default(index, 50) : lv_exhaustive(index, K, N);
                    if (setting == 2) sp.filter_exact_below = 1;
                    sp.filter = c.f;
                    snprintf(what, sizeof what, "%s, %s, %s", round ? "compacted" : "30 %% removed", c.name,
                             setting == 0 ? "default k 50" : setting == 1 ? "exhaustive" : "exhaustive scan");
                    if (setting == 0) {
                        int64_t ids[50];
                        float sc[50];
                        for (size_t q = 0; q < NQ; q++) {
                            cr_assert_eq(avq_index_search(index, queries + q * DIM, &sp, ids, sc), AVQ_OK,
                                         "%s", avq_last_error());
                            lv_check_row(ids, sc, 50, m, what, q);
                            for (size_t i = 0; i < 50; i++)
                                cr_assert(ids[i] == AVQ_NO_ID || (ids[i] >= 0 && ids[i] < N && live_mask[ids[i]]),
                                          "%s: query %zu returned id %lld (removed %d)", what, q,
                                          (long long)ids[i], ids[i] >= 0 && ids[i] < N ? removed[ids[i]] : -1);
                        }
                    } else {
                        expect_exact_all(index, m, keys, N, live_mask, &sp, what);
                    }
                }
                if (c.cb) cr_expect(!atomic_load(&c.cb->saw_removed), "%s: the callback was asked about a removed id", what);
                free(live_mask);
                free_case(&c);
            }
        if (round == 0) {
            /* compaction changes no filtered result and no count */
            size_t compacted = 0;
            cr_assert_eq(avq_index_compact(index, 0, &compacted), AVQ_OK, "%s", avq_last_error());
            cr_assert_gt(compacted, 0);
            cr_assert_eq(lv_stats(index).dead, 0);
            cr_assert_eq(avq_index_tag_count(index, TAG_EVERY), N - nrm);
        }
    }
    free(rm);
    free(removed);
    free(keys);
    avq_index_free(index);
}

Test(filter, compaction_changes_no_filtered_result) {
    avq_index *index = fixture(AVQ_METRIC_L2, AVQ_REORDER_FLOAT);
    cr_assert_eq(avq_index_set_compact_threshold(index, 0), AVQ_OK);
    int64_t rm[900];
    for (int i = 0; i < 900; i++) rm[i] = (int64_t)((i * 7919) % N);
    cr_assert_eq(avq_index_remove(index, rm, 900, NULL), AVQ_OK);
    fcase c[F_KINDS];
    lv_results before[F_KINDS][2];
    for (int kind = 0; kind < F_KINDS; kind++) {
        c[kind] = make_case(kind, 0.1, 800 + kind);
        for (int s = 0; s < 2; s++) {
            avq_search_params sp = s ? lv_exhaustive(index, K, N) : lv_default(index, K);
            sp.filter = c[kind].f;
            before[kind][s] = lv_search(index, queries, NQ, &sp, c[kind].name);
        }
    }
    avq_index_stats st0 = lv_stats(index);
    cr_assert_eq(avq_index_compact(index, 0, NULL), AVQ_OK);
    avq_index_stats st1 = lv_stats(index);
    cr_assert_eq(st1.tagged, st0.tagged);
    cr_assert_eq(st1.tag_postings, st0.tag_postings);
    cr_assert_eq(st1.distinct_tags, st0.distinct_tags);
    for (int kind = 0; kind < F_KINDS; kind++) {
        for (int s = 0; s < 2; s++) {
            avq_search_params sp = s ? lv_exhaustive(index, K, N) : lv_default(index, K);
            sp.filter = c[kind].f;
            lv_results after = lv_search(index, queries, NQ, &sp, c[kind].name);
            char what[160];
            snprintf(what, sizeof what, "compaction, %s, %s", c[kind].name, s ? "exhaustive" : "default");
            lv_expect_same(&before[kind][s], &after, what);
            lv_results_free(&after);
            lv_results_free(&before[kind][s]);
        }
        free_case(&c[kind]);
    }
    avq_index_free(index);
}

/* ---- 8. tags follow the writers: a model ---------------------------------------------- */

#define MODEL_CAP 6000
#define MODEL_MAXT 8

typedef struct {
    int64_t id;
    bool alive;
    float vec[DIM];
    uint32_t ntags;
    uint32_t tags[MODEL_MAXT]; /* sorted, distinct */
} mentry;

typedef struct {
    mentry *e;
    size_t n;  /* entries used (alive or not) */
    int64_t next_auto;
} model;

static ptrdiff_t model_find(const model *md, int64_t id) {
    for (size_t i = 0; i < md->n; i++)
        if (md->e[i].id == id) return (ptrdiff_t)i;
    return -1;
}

static size_t model_live(const model *md) {
    size_t c = 0;
    for (size_t i = 0; i < md->n; i++) c += md->e[i].alive;
    return c;
}

/* The universe of model tags: 0..19 and four large ones. */
#define MODEL_NT 24
static uint32_t model_tag_value(size_t i) { return i < 20 ? (uint32_t)i : 0xFFFFFFF0u + (uint32_t)(i - 20); }

/* n random tag lists in CSR form (with duplicates and empty lists). */
static void random_tags(uint64_t *rng, size_t n, size_t *off, uint32_t *tags) {
    off[0] = 0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        size_t c = lv_rng(rng) % 5; /* 0..4 */
        for (size_t j = 0; j < c; j++) tags[w++] = model_tag_value(lv_rng(rng) % MODEL_NT);
        if (c > 0 && lv_unit(rng) < 0.2) {
            tags[w] = tags[w - 1];
            w++;
        }
        off[i + 1] = w;
    }
}

static void model_set_tags(mentry *e, const size_t *off, const uint32_t *tags, size_t i) {
    uint32_t t[16];
    size_t c = off[i + 1] - off[i];
    cr_assert(c <= 16);
    memcpy(t, tags + off[i], c * sizeof *t);
    c = sort_unique(t, c);
    cr_assert(c <= MODEL_MAXT);
    memcpy(e->tags, t, c * sizeof *t);
    e->ntags = (uint32_t)c;
}

static bool mentry_has(const mentry *e, uint32_t tag) {
    for (uint32_t i = 0; i < e->ntags; i++)
        if (e->tags[i] == tag) return true;
    return false;
}

/* Counts, stats and (when `full`) every id's tags and filtered searches. */
static void model_check(const avq_index *index, const model *md, bool full, const char *what) {
    size_t live = model_live(md);
    cr_assert_eq(avq_index_size(index), live, "%s: size %zu, model %zu", what, avq_index_size(index), live);
    size_t tagged = 0, postings = 0, distinct = 0;
    for (size_t t = 0; t < MODEL_NT; t++) {
        uint32_t tag = model_tag_value(t);
        size_t c = 0;
        for (size_t i = 0; i < md->n; i++) c += md->e[i].alive && mentry_has(&md->e[i], tag);
        cr_assert_eq(avq_index_tag_count(index, tag), c, "%s: tag %u counted %zu, model %zu", what, tag,
                     avq_index_tag_count(index, tag), c);
        distinct += c > 0;
    }
    cr_assert_eq(avq_index_tag_count(index, 777777u), 0, "%s: a tag never given", what);
    for (size_t i = 0; i < md->n; i++)
        if (md->e[i].alive) {
            tagged += md->e[i].ntags > 0;
            postings += md->e[i].ntags;
        }
    avq_index_stats st = lv_stats(index);
    cr_assert_eq(st.live, live, "%s", what);
    cr_assert_eq(st.tagged, tagged, "%s: stats.tagged %zu, model %zu", what, st.tagged, tagged);
    cr_assert_eq(st.tag_postings, postings, "%s: stats.tag_postings %zu, model %zu", what, st.tag_postings,
                 postings);
    cr_assert_eq(st.distinct_tags, distinct, "%s: stats.distinct_tags %zu, model %zu", what,
                 st.distinct_tags, distinct);
    if (!full) return;
    for (size_t i = 0; i < md->n; i++) {
        const mentry *e = &md->e[i];
        size_t count = 999;
        uint32_t got[MODEL_MAXT + 4];
        int st2 = avq_index_get_tags(index, e->id, got, MODEL_MAXT + 4, &count);
        if (!e->alive) {
            cr_assert_eq(st2, AVQ_ERR_INVALID, "%s: get_tags of removed id %lld: %d", what, (long long)e->id, st2);
            cr_assert(avq_last_error()[0]);
            continue;
        }
        cr_assert_eq(st2, AVQ_OK, "%s: get_tags(%lld): %s", what, (long long)e->id, avq_last_error());
        cr_assert_eq(count, e->ntags, "%s: id %lld has %zu tags, model %u", what, (long long)e->id, count,
                     e->ntags);
        for (size_t j = 0; j < count; j++)
            cr_assert_eq(got[j], e->tags[j], "%s: id %lld tag %zu: %u, model %u", what, (long long)e->id, j,
                         got[j], e->tags[j]);
    }
    /* filtered exhaustive searches against the model */
    int64_t *ids = malloc(md->n * sizeof *ids);
    double *keys = malloc(md->n * sizeof *keys);
    bool *mask = malloc(md->n * sizeof *mask);
    for (size_t i = 0; i < md->n; i++) ids[i] = md->e[i].id;
    const uint32_t fa[2] = {3, 0xFFFFFFF1u}, fl[2] = {5, 6};
    avq_filter *any = NULL, *all = NULL, *allow = NULL;
    cr_assert_eq(avq_filter_tags_any(fa, 2, &any), AVQ_OK);
    cr_assert_eq(avq_filter_tags_all(fl, 2, &all), AVQ_OK);
    /* allow: every third entry's id, alive or not */
    int64_t *al = malloc(md->n * sizeof *al);
    size_t nal = 0;
    for (size_t i = 0; i < md->n; i += 3) al[nal++] = md->e[i].id;
    cr_assert_eq(avq_filter_allow_ids(al, nal, &allow), AVQ_OK);
    avq_search_params sp = lv_exhaustive(index, K, md->n);
    for (int f = 0; f < 4; f++) {
        for (size_t i = 0; i < md->n; i++) {
            const mentry *e = &md->e[i];
            bool ok = e->alive;
            if (f == 0) ok = ok && (mentry_has(e, fa[0]) || mentry_has(e, fa[1]));
            if (f == 1) ok = ok && mentry_has(e, fl[0]) && mentry_has(e, fl[1]);
            if (f == 2) ok = ok && i % 3 == 0;
            mask[i] = ok;
        }
        sp.filter = f == 0 ? any : f == 1 ? all : f == 2 ? allow : NULL;
        for (int exact_off = 0; exact_off < 2; exact_off++) {
            sp.filter_exact_below = exact_off ? 1 : 0;
            for (size_t q = 0; q < 20; q++) {
                for (size_t i = 0; i < md->n; i++)
                    keys[i] = ref_key(queries + q * DIM, md->e[i].vec, AVQ_METRIC_L2);
                int64_t got[K];
                float sc[K];
                cr_assert_eq(avq_index_search(index, queries + q * DIM, &sp, got, sc), AVQ_OK, "%s: %s", what,
                             avq_last_error());
                ref_set rs = {md->n, ids, keys, mask};
                char w2[160];
                snprintf(w2, sizeof w2, "%s: model filter %d%s", what, f, exact_off ? " (scan)" : "");
                expect_exact_row(&rs, AVQ_METRIC_L2, got, sc, K, w2, q);
            }
        }
    }
    avq_filter_free(any);
    avq_filter_free(all);
    avq_filter_free(allow);
    free(al);
    free(ids);
    free(keys);
    free(mask);
}

/* Fresh vectors for the model: points of the fixture's distribution. */
static float *pool;
static size_t pool_next;
static const float *next_vec(void) {
    const float *v = pool + (pool_next % 20000) * DIM;
    pool_next++;
    return v;
}

static void expect_same_tags_and_results(const avq_index *a, const avq_index *b, const model *md,
                                         const char *what) {
    model_check(b, md, true, what);
    uint32_t tag = 3;
    avq_filter *f = NULL;
    cr_assert_eq(avq_filter_tags_any(&tag, 1, &f), AVQ_OK);
    avq_search_params sp = lv_default(a, K);
    sp.filter = f;
    lv_results ra = lv_search(a, queries, NQ, &sp, what), rb = lv_search(b, queries, NQ, &sp, what);
    lv_expect_same(&ra, &rb, what);
    lv_results_free(&ra);
    lv_results_free(&rb);
    avq_filter_free(f);
}

Test(filter, tags_follow_every_writer) {
    avq_build_params p = lv_params(AVQ_METRIC_L2, 4, AVQ_REORDER_FLOAT, LEAVES, BRUTE);
    avq_quantizer *qz = NULL;
    cr_assert_eq(avq_quantizer_train(base, N, DIM, &p, &qz), AVQ_OK, "%s", avq_last_error());
    avq_index *index = NULL;
    cr_assert_eq(avq_index_create(qz, &index), AVQ_OK);
    avq_quantizer_free(qz);
    pool = lv_clustered(20000, DIM, 95);
    pool_next = 0;
    model md = {calloc(MODEL_CAP, sizeof(mentry)), 0, 0};
    cr_assert_not_null(md.e);
    uint64_t rng = 96;
    enum { B = 60 };
    float *rows = malloc(B * 20 * DIM * sizeof *rows);
    int64_t ids[B * 20], out[B * 20];
    size_t off[B * 20 + 1];
    uint32_t tags[B * 20 * 6];

    /* start: 1000 rows under scattered caller ids */
    size_t n0 = 1000;
    for (size_t i = 0; i < n0; i++) {
        ids[i] = 1000000 + (int64_t)i * 977;
        memcpy(rows + i * DIM, next_vec(), DIM * sizeof *rows);
    }
    random_tags(&rng, n0, off, tags);
    cr_assert_eq(avq_index_add_tagged(index, rows, n0, ids, off, tags, 2, out), AVQ_OK, "%s", avq_last_error());
    for (size_t i = 0; i < n0; i++) {
        mentry *e = &md.e[md.n++];
        e->id = ids[i];
        e->alive = true;
        memcpy(e->vec, rows + i * DIM, sizeof e->vec);
        model_set_tags(e, off, tags, i);
    }
    md.next_auto = ids[n0 - 1] + 1;
    model_check(index, &md, true, "after the first add");

    size_t counts[6] = {0};
    for (int step = 0; step < 80; step++) {
        int op = (int)(lv_rng(&rng) % 6);
        counts[op]++;
        char what[96];
        size_t n = 10 + lv_rng(&rng) % B;
        if (op == 0) { /* add_tagged: new ids (or automatic), tags or none */
            bool automatic = lv_unit(&rng) < 0.3, untagged = lv_unit(&rng) < 0.2;
            snprintf(what, sizeof what, "step %d: add_tagged %zu%s%s", step, n, automatic ? " auto ids" : "",
                     untagged ? " no tags" : "");
            for (size_t i = 0; i < n; i++) {
                ids[i] = automatic ? md.next_auto + (int64_t)i : md.next_auto + 5 + (int64_t)(i * 3);
                memcpy(rows + i * DIM, next_vec(), DIM * sizeof *rows);
            }
            random_tags(&rng, n, off, tags);
            int st = avq_index_add_tagged(index, rows, n, automatic ? NULL : ids, untagged ? NULL : off,
                                          untagged ? NULL : tags, 2, out);
            cr_assert_eq(st, AVQ_OK, "%s: %s", what, avq_last_error());
            if (automatic)
                for (size_t i = 0; i < n; i++) cr_assert_eq(out[i], ids[i], "%s: automatic id %zu", what, i);
            for (size_t i = 0; i < n; i++) {
                cr_assert_lt(md.n, (size_t)MODEL_CAP);
                mentry *e = &md.e[md.n++];
                e->id = out[i];
                e->alive = true;
                memcpy(e->vec, rows + i * DIM, sizeof e->vec);
                e->ntags = 0;
                if (!untagged) model_set_tags(e, off, tags, i);
            }
            md.next_auto = out[n - 1] + 1;
        } else if (op == 1) { /* remove: some present, some not */
            snprintf(what, sizeof what, "step %d: remove %zu", step, n);
            size_t want = 0;
            for (size_t i = 0; i < n; i++) {
                const mentry *e = &md.e[lv_rng(&rng) % md.n];
                ids[i] = lv_unit(&rng) < 0.1 ? e->id + 1 : e->id;
                for (size_t j = 0; j < i; j++)
                    if (ids[j] == ids[i]) ids[i] = md.next_auto + 1000000 + (int64_t)i; /* never held */
            }
            for (size_t i = 0; i < n; i++) {
                ptrdiff_t at = model_find(&md, ids[i]);
                if (at >= 0 && md.e[at].alive) {
                    md.e[at].alive = false;
                    want++;
                }
            }
            size_t removed = 0;
            cr_assert_eq(avq_index_remove(index, ids, n, &removed), AVQ_OK, "%s: %s", what, avq_last_error());
            cr_assert_eq(removed, want, "%s: removed %zu, model %zu", what, removed, want);
        } else if (op == 2 || op == 3) { /* upsert (keeps tags) / upsert_tagged (sets them) */
            bool tagged = op == 3, null_tags = tagged && lv_unit(&rng) < 0.15;
            snprintf(what, sizeof what, "step %d: %s %zu%s", step, tagged ? "upsert_tagged" : "upsert", n,
                     null_tags ? " (NULL tags)" : "");
            size_t m = 0;
            for (size_t i = 0; i < n; i++) {
                int64_t id;
                if (lv_unit(&rng) < 0.7) id = md.e[lv_rng(&rng) % md.n].id; /* present or removed */
                else id = md.next_auto + 7 + (int64_t)i * 5;                /* new */
                bool dup = false;
                for (size_t j = 0; j < m; j++) dup |= ids[j] == id;
                if (dup) continue;
                ids[m] = id;
                memcpy(rows + m * DIM, next_vec(), DIM * sizeof *rows);
                m++;
            }
            random_tags(&rng, m, off, tags);
            size_t replaced = 0, want = 0;
            int st = tagged ? avq_index_upsert_tagged(index, rows, m, ids, null_tags ? NULL : off,
                                                      null_tags ? NULL : tags, 2, &replaced)
                            : avq_index_upsert(index, rows, m, ids, 2, &replaced);
            cr_assert_eq(st, AVQ_OK, "%s: %s", what, avq_last_error());
            for (size_t i = 0; i < m; i++) {
                ptrdiff_t at = model_find(&md, ids[i]);
                mentry *e;
                if (at >= 0 && md.e[at].alive) {
                    e = &md.e[at];
                    want++;
                } else {
                    if (at >= 0) e = &md.e[at]; /* a removed id comes back: as new */
                    else {
                        cr_assert_lt(md.n, (size_t)MODEL_CAP);
                        e = &md.e[md.n++];
                        e->id = ids[i];
                    }
                    e->alive = true;
                    e->ntags = 0;
                }
                memcpy(e->vec, rows + i * DIM, sizeof e->vec);
                if (tagged && !null_tags) model_set_tags(e, off, tags, i);
                if (ids[i] >= md.next_auto) md.next_auto = ids[i] + 1;
            }
            cr_assert_eq(replaced, want, "%s: replaced %zu, model %zu", what, replaced, want);
        } else if (op == 4) { /* set_tags of present ids */
            snprintf(what, sizeof what, "step %d: set_tags %zu", step, n);
            size_t m = 0;
            for (size_t i = 0; i < n * 3 && m < n; i++) {
                const mentry *e = &md.e[lv_rng(&rng) % md.n];
                if (!e->alive) continue;
                bool dup = false;
                for (size_t j = 0; j < m; j++) dup |= ids[j] == e->id;
                if (!dup) ids[m++] = e->id;
            }
            random_tags(&rng, m, off, tags);
            cr_assert_eq(avq_index_set_tags(index, ids, m, off, tags), AVQ_OK, "%s: %s", what, avq_last_error());
            for (size_t i = 0; i < m; i++) model_set_tags(&md.e[model_find(&md, ids[i])], off, tags, i);
        } else { /* compact */
            snprintf(what, sizeof what, "step %d: compact", step);
            cr_assert_eq(avq_index_compact(index, lv_unit(&rng) < 0.5 ? 0 : 0.2, NULL), AVQ_OK, "%s: %s", what,
                         avq_last_error());
        }
        model_check(index, &md, step % 10 == 9, what);
    }
    for (int op = 0; op < 6; op++) cr_assert_gt(counts[op], 0, "operation %d never drawn", op);
    model_check(index, &md, true, "after the sequence");

    /* get_tags: sizing call, short buffer, errors */
    for (size_t i = 0; i < md.n; i++) {
        const mentry *e = &md.e[i];
        if (!e->alive || e->ntags < 2) continue;
        size_t count = 0;
        cr_assert_eq(avq_index_get_tags(index, e->id, NULL, 0, &count), AVQ_OK, "%s", avq_last_error());
        cr_assert_eq(count, e->ntags);
        uint32_t one[2] = {0, 0xABCDu};
        cr_assert_eq(avq_index_get_tags(index, e->id, one, 1, &count), AVQ_OK);
        cr_assert_eq(count, e->ntags, "a short buffer still reports the total");
        cr_assert_eq(one[0], e->tags[0]);
        cr_assert_eq(one[1], 0xABCDu, "get_tags wrote past capacity");
        cr_assert_eq(avq_index_get_tags(index, e->id, one, 1, NULL), AVQ_ERR_INVALID, "NULL count");
        break;
    }
    size_t count = 5;
    cr_assert_eq(avq_index_get_tags(index, md.next_auto + 123, NULL, 0, &count), AVQ_ERR_INVALID);
    cr_assert(avq_last_error()[0]);

    /* save and load: bytes, file (copy, mmap) */
    avq_index *copy = NULL;
    size_t size;
    uint8_t *bytes = lv_bytes(index, &size);
    cr_assert_eq(avq_index_load_bytes(bytes, size, &copy), AVQ_OK, "%s", avq_last_error());
    expect_same_tags_and_results(index, copy, &md, "load_bytes");
    avq_index_free(copy);
    const char *path = lv_path("tagged.avq");
    cr_assert_eq(avq_index_save(index, path), AVQ_OK, "%s", avq_last_error());
    for (unsigned flags = 0; flags < 2; flags++) {
        cr_assert_eq(avq_index_load(path, flags, &copy), AVQ_OK, "%s", avq_last_error());
        expect_same_tags_and_results(index, copy, &md, flags ? "load mmap" : "load copy");
        avq_index_free(copy);
    }
    /* retrain keeps every vector's tags (and its vectors: FLOAT reorder) */
    avq_index *retrained = NULL;
    cr_assert_eq(avq_index_retrain(index, NULL, &retrained), AVQ_OK, "%s", avq_last_error());
    model_check(retrained, &md, true, "retrained");
    avq_index_free(retrained);
    free(bytes);
    free(rows);
    free(pool);
    free(md.e);
    avq_index_free(index);
}

/* The rules one by one, on a few ids (the model above draws them at random). */
Test(filter, upsert_keeps_tags_upsert_tagged_replaces) {
    avq_index *index = fixture(AVQ_METRIC_DOT, AVQ_REORDER_FLOAT);
    float *rows = lv_clustered(3, DIM, 97);
    int64_t ids[3] = {5, 6, N + 50}; /* two present, one new */
    uint32_t got[64];
    size_t count;
    /* plain upsert: 5 and 6 keep theirs, the new one has none */
    size_t replaced = 0;
    cr_assert_eq(avq_index_upsert(index, rows, 3, ids, 1, &replaced), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(replaced, 2);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(avq_index_get_tags(index, ids[i], got, 64, &count), AVQ_OK);
        cr_assert_eq(count, ref_off[ids[i] + 1] - ref_off[ids[i]], "upsert changed the tags of %lld",
                     (long long)ids[i]);
        cr_assert_arr_eq(got, ref_tags + ref_off[ids[i]], count * sizeof *got);
    }
    cr_assert_eq(avq_index_get_tags(index, N + 50, got, 64, &count), AVQ_OK);
    cr_assert_eq(count, 0);
    cr_assert_eq(avq_index_tag_count(index, TAG_EVERY), N, "the new row has no tag");
    /* upsert_tagged with NULL tags: as upsert */
    cr_assert_eq(avq_index_upsert_tagged(index, rows, 2, ids, NULL, NULL, 1, &replaced), AVQ_OK);
    cr_assert_eq(avq_index_get_tags(index, 5, got, 64, &count), AVQ_OK);
    cr_assert_eq(count, ref_off[6] - ref_off[5]);
    /* upsert_tagged: exactly the tags given (the empty list clears) */
    size_t off[4] = {0, 2, 2, 5};
    uint32_t t[5] = {42, 41, 9, 9, 8};
    cr_assert_eq(avq_index_upsert_tagged(index, rows, 3, ids, off, t, 2, &replaced), AVQ_OK, "%s",
                 avq_last_error());
    cr_assert_eq(replaced, 3);
    cr_assert_eq(avq_index_get_tags(index, 5, got, 64, &count), AVQ_OK);
    cr_assert(count == 2 && got[0] == 41 && got[1] == 42, "id 5: %zu tags", count);
    cr_assert_eq(avq_index_get_tags(index, 6, got, 64, &count), AVQ_OK);
    cr_assert_eq(count, 0);
    cr_assert_eq(avq_index_get_tags(index, N + 50, got, 64, &count), AVQ_OK);
    cr_assert(count == 2 && got[0] == 8 && got[1] == 9, "new id: %zu tags", count);
    cr_assert_eq(avq_index_tag_count(index, TAG_EVERY), N - 2);
    cr_assert_eq(avq_index_tag_count(index, 9), 1);
    cr_assert_eq(avq_index_tag_count(index, 41), 1);
    /* a search for 41 finds exactly 5 */
    avq_filter *f = NULL;
    uint32_t t41 = 41;
    cr_assert_eq(avq_filter_tags_any(&t41, 1, &f), AVQ_OK);
    avq_search_params sp = lv_default(index, K);
    sp.filter = f;
    int64_t r[K];
    float sc[K];
    for (int pass = 0; pass < 2; pass++) {
        sp.filter_exact_below = pass ? 1 : 0;
        cr_assert_eq(avq_index_search(index, queries, &sp, r, sc), AVQ_OK, "%s", avq_last_error());
        cr_assert_eq(r[0], 5, "pass %d: %lld", pass, (long long)r[0]);
        for (int i = 1; i < K; i++) cr_assert_eq(r[i], AVQ_NO_ID);
    }
    /* set_tags then remove: counts drop, the search finds nothing */
    int64_t five = 5;
    cr_assert_eq(avq_index_remove(index, &five, 1, NULL), AVQ_OK);
    cr_assert_eq(avq_index_tag_count(index, 41), 0);
    cr_assert_eq(avq_index_search(index, queries, &sp, r, sc), AVQ_OK);
    cr_assert_eq(r[0], AVQ_NO_ID);
    avq_filter_free(f);
    free(rows);
    avq_index_free(index);
}

/* ---- 9. bad input -------------------------------------------------------------------- */

typedef struct {
    uint8_t *bytes;
    size_t size;
    avq_index_stats st;
} snap;

static snap take_snap(const avq_index *index) {
    snap s;
    s.bytes = lv_bytes(index, &s.size);
    s.st = lv_stats(index);
    return s;
}

static void expect_unchanged(const avq_index *index, snap *s, const char *what) {
    snap t = take_snap(index);
    cr_assert_eq(t.st.live, s->st.live, "%s", what);
    cr_assert_eq(t.st.tagged, s->st.tagged, "%s: tagged %zu -> %zu", what, s->st.tagged, t.st.tagged);
    cr_assert_eq(t.st.tag_postings, s->st.tag_postings, "%s", what);
    cr_assert_eq(t.st.distinct_tags, s->st.distinct_tags, "%s", what);
    cr_assert(t.size == s->size && memcmp(t.bytes, s->bytes, s->size) == 0, "%s: the saved index differs", what);
    free(t.bytes);
}

static void expect_error(int st, int code, const char *what, const char *needle) {
    cr_assert_eq(st, code, "%s: status %d, expected %d (%s)", what, st, code, st ? avq_last_error() : "accepted");
    cr_assert(avq_last_error()[0], "%s: no message", what);
    if (needle)
        cr_expect(strstr(avq_last_error(), needle) != NULL, "%s: message does not name %s: %s", what, needle,
                  avq_last_error());
}

Test(filter, bad_tags_are_refused_and_change_nothing) {
    avq_index *index = fixture(AVQ_METRIC_L2, AVQ_REORDER_FLOAT);
    snap s = take_snap(index);
    enum { R = 30 };
    float *rows = lv_clustered(R, DIM, 98);
    int64_t ids[R], present[R], out[R];
    for (int i = 0; i < R; i++) {
        ids[i] = N + 100 + i;
        present[i] = i * 11;
        out[i] = -77;
    }
    size_t off[R + 1];
    uint32_t *tags = malloc((R * 2 + 2 * AVQ_MAX_TAGS_PER_VECTOR) * sizeof *tags);
    for (int i = 0; i <= R; i++) off[i] = (size_t)i * 2;
    for (int i = 0; i < R * 2; i++) tags[i] = (uint32_t)(i % 9);
    size_t replaced = 999;

    /* offsets not starting at 0 */
    off[0] = 1;
    expect_error(avq_index_add_tagged(index, rows, R, ids, off, tags, 2, out), AVQ_ERR_INVALID,
                 "add_tagged, offsets[0] = 1", NULL);
    expect_error(avq_index_upsert_tagged(index, rows, R, present, off, tags, 2, &replaced), AVQ_ERR_INVALID,
                 "upsert_tagged, offsets[0] = 1", NULL);
    expect_error(avq_index_set_tags(index, present, R, off, tags), AVQ_ERR_INVALID, "set_tags, offsets[0] = 1",
                 NULL);
    off[0] = 0;
    /* decreasing at row 17 */
    off[18] = off[17] - 1;
    expect_error(avq_index_add_tagged(index, rows, R, ids, off, tags, 2, out), AVQ_ERR_INVALID,
                 "add_tagged, decreasing offsets", "17");
    expect_error(avq_index_upsert_tagged(index, rows, R, present, off, tags, 2, &replaced), AVQ_ERR_INVALID,
                 "upsert_tagged, decreasing offsets", "17");
    expect_error(avq_index_set_tags(index, present, R, off, tags), AVQ_ERR_INVALID, "set_tags, decreasing offsets",
                 "17");
    off[18] = 36;
    /* offsets without tags, tags without offsets */
    expect_error(avq_index_add_tagged(index, rows, R, ids, off, NULL, 2, out), AVQ_ERR_INVALID,
                 "add_tagged, offsets but NULL tags", NULL);
    /* row 23 with AVQ_MAX_TAGS_PER_VECTOR + 1 distinct tags */
    size_t big_off[R + 1];
    uint32_t *big = malloc((R + AVQ_MAX_TAGS_PER_VECTOR + 1) * sizeof *big);
    size_t w = 0;
    big_off[0] = 0;
    for (int i = 0; i < R; i++) {
        size_t c = i == 23 ? AVQ_MAX_TAGS_PER_VECTOR + 1 : 1;
        for (size_t j = 0; j < c; j++) big[w++] = (uint32_t)(j * 3 + 1);
        big_off[i + 1] = w;
    }
    expect_error(avq_index_add_tagged(index, rows, R, ids, big_off, big, 2, out), AVQ_ERR_INVALID,
                 "add_tagged, too many tags", "23");
    expect_error(avq_index_upsert_tagged(index, rows, R, present, big_off, big, 2, &replaced), AVQ_ERR_INVALID,
                 "upsert_tagged, too many tags", "23");
    expect_error(avq_index_set_tags(index, present, R, big_off, big), AVQ_ERR_INVALID, "set_tags, too many tags",
                 "23");
    /* set_tags: an id not present, an id twice */
    off[0] = 0;
    present[12] = N + 999;
    expect_error(avq_index_set_tags(index, present, R, off, tags), AVQ_ERR_INVALID, "set_tags, absent id", "3999");
    expect_unchanged(index, &s, "after refused tag writes");
    int64_t gone = 3;
    cr_assert_eq(avq_index_remove(index, &gone, 1, NULL), AVQ_OK);
    snap s2 = take_snap(index);
    present[12] = 3; /* removed: not present either */
    expect_error(avq_index_set_tags(index, present, R, off, tags), AVQ_ERR_INVALID, "set_tags, removed id", NULL);
    present[12] = present[4];
    expect_error(avq_index_set_tags(index, present, R, off, tags), AVQ_ERR_INVALID, "set_tags, id twice", NULL);
    present[12] = 12 * 11;
    expect_error(avq_index_set_tags(index, present, R, off, NULL), AVQ_ERR_INVALID, "set_tags, NULL tags", NULL);
    expect_error(avq_index_set_tags(index, NULL, R, off, tags), AVQ_ERR_INVALID, "set_tags, NULL ids", NULL);
    for (int i = 0; i < R; i++) cr_assert_eq(out[i], -77, "ids_out written by a failed add");
    cr_assert_eq(replaced, 999, "*replaced written by a failed upsert");
    for (int i = 0; i < R; i++) cr_assert_eq(avq_index_contains(index, N + 100 + i), 0);
    expect_unchanged(index, &s2, "after refused tag writes (one removed)");
    cr_assert_eq(s2.st.live, s.st.live - 1);

    /* the limit counts entries: AVQ_MAX_TAGS_PER_VECTOR + 1 of them are
     * refused even when duplicates leave fewer distinct tags */
    size_t dup_off[2] = {0, AVQ_MAX_TAGS_PER_VECTOR + 1};
    for (size_t j = 0; j <= AVQ_MAX_TAGS_PER_VECTOR; j++) tags[j] = (uint32_t)(j % 7);
    int64_t ten = 10;
    expect_error(avq_index_set_tags(index, &ten, 1, dup_off, tags), AVQ_ERR_INVALID,
                 "set_tags, 1025 entries, 7 distinct", NULL);
    expect_unchanged(index, &s2, "after a refused set_tags of 1025 entries");
    /* the boundary: exactly AVQ_MAX_TAGS_PER_VECTOR tags are accepted */
    size_t ok_off[2] = {0, AVQ_MAX_TAGS_PER_VECTOR};
    for (size_t j = 0; j < AVQ_MAX_TAGS_PER_VECTOR; j++) tags[j] = (uint32_t)(100000 + j);
    int64_t one = 10;
    cr_assert_eq(avq_index_set_tags(index, &one, 1, ok_off, tags), AVQ_OK, "%s", avq_last_error());
    size_t count = 0;
    cr_assert_eq(avq_index_get_tags(index, 10, NULL, 0, &count), AVQ_OK);
    cr_assert_eq(count, AVQ_MAX_TAGS_PER_VECTOR);
    free(s.bytes);
    free(s2.bytes);
    free(tags);
    free(big);
    free(rows);
    avq_index_free(index);
}

Test(filter, bad_filters_are_refused) {
    uint32_t *tags = malloc((AVQ_MAX_FILTER_TAGS + 1) * sizeof *tags);
    for (size_t i = 0; i <= AVQ_MAX_FILTER_TAGS; i++) tags[i] = (uint32_t)i;
    int64_t id = 1;
    for (int all = 0; all < 2; all++) {
        int (*make)(const uint32_t *, size_t, avq_filter **) = all ? avq_filter_tags_all : avq_filter_tags_any;
        avq_filter *f = (avq_filter *)&id; /* must be set to NULL on failure */
        expect_error(make(tags, 0, &f), AVQ_ERR_INVALID, "no tags", NULL);
        cr_assert_null(f, "*out not cleared by a failed call");
        f = (avq_filter *)&id;
        expect_error(make(tags, AVQ_MAX_FILTER_TAGS + 1, &f), AVQ_ERR_INVALID, "too many tags", NULL);
        cr_assert_null(f);
        expect_error(make(NULL, 3, &f), AVQ_ERR_INVALID, "NULL tags", NULL);
        expect_error(make(tags, 3, NULL), AVQ_ERR_INVALID, "NULL out", NULL);
        cr_assert_eq(make(tags, AVQ_MAX_FILTER_TAGS, &f), AVQ_OK, "%s", avq_last_error());
        avq_filter_free(f);
    }
    avq_filter *f = NULL;
    expect_error(avq_filter_allow_ids(NULL, 4, &f), AVQ_ERR_INVALID, "allow, NULL ids", NULL);
    expect_error(avq_filter_deny_ids(NULL, 4, &f), AVQ_ERR_INVALID, "deny, NULL ids", NULL);
    expect_error(avq_filter_allow_ids(&id, 1, NULL), AVQ_ERR_INVALID, "allow, NULL out", NULL);
    expect_error(avq_filter_callback(NULL, NULL, &f), AVQ_ERR_INVALID, "callback, NULL function", NULL);
    avq_filter_free(NULL);
    free(tags);
}

/* A callback that fails stops the search with AVQ_ERR_CANCELLED naming
 * the id, on both tiers, single and batched. */
Test(filter, failing_callback_cancels_the_search) {
    for (int tier = 0; tier < 2; tier++) {
        avq_index *index = tier ? tiny(AVQ_METRIC_L2, BRUTE - 100) : fixture(AVQ_METRIC_L2, AVQ_REORDER_FLOAT);
        cb_user u;
        memset(&u, 0, sizeof u);
        u.keep_mod = 1;
        u.fail_id = 271;
        u.fail_value = -1;
        avq_filter *f = NULL;
        cr_assert_eq(avq_filter_callback(keep_cb, &u, &f), AVQ_OK);
        avq_search_params sp = lv_exhaustive(index, K, N);
        sp.filter = f;
        int64_t ids[NQ * K];
        float sc[NQ * K];
        expect_error(avq_index_search(index, queries, &sp, ids, sc), AVQ_ERR_CANCELLED, "failing callback", "271");
        for (int threads = 1; threads <= 2; threads++) {
            expect_error(avq_index_search_batch(index, queries, NQ, &sp, threads, ids, sc), AVQ_ERR_CANCELLED,
                         "failing callback, batch", "271");
            const avq_filter *per[NQ];
            for (size_t q = 0; q < NQ; q++) per[q] = q == NQ / 2 ? f : NULL;
            expect_error(avq_index_search_batch_filtered(index, queries, NQ, &sp, per, threads, ids, sc),
                         AVQ_ERR_CANCELLED, "failing callback, batch_filtered", "271");
        }
        u.fail_value = -7;
        expect_error(avq_index_search(index, queries, &sp, ids, sc), AVQ_ERR_CANCELLED, "callback returning -7",
                     "-7");
        /* a failed search leaves the index usable */
        u.fail_id = AVQ_NO_ID;
        cr_assert_eq(avq_index_search(index, queries, &sp, ids, sc), AVQ_OK, "%s", avq_last_error());
        avq_filter_free(f);
        avq_index_free(index);
    }
}

/* Int8 and no reorder: no exact path with FLOAT rows, but the filter
 * holds: only allowed, live ids come back. */
Test(filter, other_reorders_return_allowed_ids_only) {
    const avq_reorder reorders[2] = {AVQ_REORDER_INT8, AVQ_REORDER_NONE};
    for (int r = 0; r < 2; r++) {
        avq_index *index = fixture(AVQ_METRIC_DOT, reorders[r]);
        double *keys = fixture_keys(AVQ_METRIC_DOT);
        for (int kind = 0; kind < F_KINDS; kind++)
            for (int l = 0; l < 3; l++) {
                fcase c = make_case(kind, LEVELS[l], 900 + 10 * kind + l);
                for (int setting = 0; setting < 2; setting++) {
                    avq_search_params sp = setting ? lv_exhaustive(index, K, N) : lv_default(index, K);
                    sp.filter = c.f;
                    size_t hits = 0, out_of = 0;
                    char what[160];
                    snprintf(what, sizeof what, "%s reorder, %s, %s", r ? "no" : "int8", c.name,
                             setting ? "exhaustive" : "default");
                    int64_t ids[K];
                    float sc[K];
                    for (size_t q = 0; q < NQ; q++) {
                        cr_assert_eq(avq_index_search(index, queries + q * DIM, &sp, ids, sc), AVQ_OK, "%s: %s", what,
                                     avq_last_error());
                        lv_check_row(ids, sc, K, AVQ_METRIC_DOT, what, q);
                        ref_set rs = {N, iota, keys + q * N, c.mask};
                        hits += count_hits(&rs, ids, K, &out_of, what, q);
                    }
                    if (verbose())
                        fprintf(stderr, "%-30s recall %.3f\n", what, (double)hits / (double)out_of);
                    /* a sanity floor only: approximate scores */
                    cr_expect((double)hits / (double)out_of >= 0.5, "%s: recall %.3f", what,
                              (double)hits / (double)out_of);
                }
                free_case(&c);
            }
        free(keys);
        avq_index_free(index);
    }
}
