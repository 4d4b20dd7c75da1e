/*
 * test_stress.c -- searches while one writer changes the index, for a
 * while: 2 searcher threads (single and batch searches, contains, get,
 * stats, save_bytes of a snapshot) and 1 writer thread (add, remove,
 * upsert, compact, changing the compaction threshold, setting tags), on a
 * PQ index with float re-ranking.  Vectors added by `add` carry the tags
 * tags_of(id) = {id % 7, 100 + id % 11} (plain upserts keep them, set_tags
 * sets them again); some searches are filtered by a tag or a deny set.
 *
 * What must hold (include/avq.h, "Threads" and avq_index_remove):
 *   - no search returns an id whose removal returned before the search
 *     started (the writer publishes, after each remove() returns, a
 *     sequence number per removed id; a searcher reads the sequence before
 *     it searches and compares);
 *   - every returned id was added (or its add had begun); no id twice in
 *     one result; -1 only as a tail; scores in order;
 *   - the score of an id whose vector never changed is the exact score of
 *     that vector (a torn leaf -- an id paired with another slot's
 *     re-ranking row -- would show here);
 *   - an id whose add returned and whose removal has not begun is
 *     contained, and get returns its vector;
 *   - a search filtered by tag t returns only ids with id % 7 == t, one
 *     with the deny set returns none of its ids (the ids below DENY_BELOW
 *     divisible by 5), and the other checks hold for both;
 *   - every call succeeds.
 * Ids are never reused after a removal, so "removed" is final.
 *
 * Duration: $AVQ_STRESS_SECONDS (default 2).  Built two ways:
 *   - in the Criterion suite (build/test_avq), like every C file in tests/;
 *   - with -DAVQ_STRESS_MAIN as a standalone program (no Criterion, whose
 *     runner is not instrumented), for ThreadSanitizer: `make tsan`
 *     (tests/tsan.mk) runs it for 30 s with OPENBLAS_NUM_THREADS=1.
 * Only include/avq.h is used.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "avq.h"

#ifdef AVQ_STRESS_MAIN
#define CHECK(cond, ...)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "test_stress: %s:%d: ", __FILE__, __LINE__);                 \
            fprintf(stderr, __VA_ARGS__);                                                \
            fprintf(stderr, "\n");                                                       \
            abort();                                                                     \
        }                                                                                \
    } while (0)
#define INFO(...) (fprintf(stderr, "test_stress: " __VA_ARGS__), fprintf(stderr, "\n"))
#else
#include <criterion/criterion.h>
#include <criterion/logging.h>
#define CHECK(cond, ...) cr_assert(cond, __VA_ARGS__)
#define INFO(...) cr_log_info(__VA_ARGS__)
#endif

/* In the threads: report, flag the run as failed, stop this thread (a
 * Criterion assertion may only fail on the test's own thread). */
#define TCHECK(cond, ...)                                                                \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "test_stress: %s:%d: ", __FILE__, __LINE__);                 \
            fprintf(stderr, __VA_ARGS__);                                                \
            fprintf(stderr, "\n");                                                       \
            atomic_store(&failed, 1);                                                    \
            return NULL;                                                                 \
        }                                                                                \
    } while (0)

enum {
    DIM = 16,
    N0 = 4000,          /* initial vectors                                   */
    POOL = 8192,        /* vector of id i: pool row (i * 2654435761) % POOL  */
    NQ = 64,
    K = 20,
    MAX_IDS = 1 << 22,  /* the writer stops adding new ids past this         */
    DENY_BELOW = 1 << 16
};

/* The tags of an id (see the top). */
static size_t tags_of(int64_t id, uint32_t *out) {
    out[0] = (uint32_t)(id % 7);
    out[1] = (uint32_t)(100 + id % 11);
    return 2;
}

/* CSR tags of n ids into off (n + 1) and tags (2n). */
static void tags_csr(const int64_t *ids, size_t n, size_t *off, uint32_t *tags) {
    off[0] = 0;
    for (size_t i = 0; i < n; i++) off[i + 1] = off[i] + tags_of(ids[i], tags + off[i]);
}

static float *pool, *queries;

/* Per id: */
static _Atomic uint8_t added[MAX_IDS];     /* 1 once its add has begun          */
static _Atomic uint8_t add_done[MAX_IDS];  /* 1 once its add returned           */
static _Atomic uint8_t removing[MAX_IDS];  /* 1 once its removal has begun      */
static _Atomic uint8_t upserted[MAX_IDS];  /* 1 once its vector may have changed */
static _Atomic uint32_t removed_seq[MAX_IDS]; /* sequence at which its removal returned */
static _Atomic uint32_t seq;               /* published after each removal      */
static _Atomic int64_t next_fresh;         /* ids handed out so far             */
static atomic_int stop;
static atomic_int failed;

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double unit(uint64_t *s) { return (double)(splitmix(s) >> 11) * 0x1.0p-53; }

static const float *vector_of(int64_t id) {
    return pool + ((uint64_t)id * 2654435761u % POOL) * DIM;
}

static float *clustered(size_t n, uint64_t seed) {
    uint64_t rng = seed;
    float *c = malloc(32 * DIM * sizeof *c), *x = malloc(n * DIM * sizeof *x);
    for (size_t i = 0; i < 32 * DIM; i++) c[i] = (float)(2 * unit(&rng) - 1);
    for (size_t i = 0; i < n; i++) {
        size_t k = splitmix(&rng) % 32;
        for (size_t j = 0; j < DIM; j++)
            x[i * DIM + j] = c[k * DIM + j] + (float)(0.35 * (unit(&rng) + unit(&rng) - 1));
    }
    free(c);
    return x;
}

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- the writer ------------------------------------------------------------ */

typedef struct {
    avq_index *index;
    double seconds;
    size_t adds, removes, upserts, compacts, ops;
    int64_t *live;          /* the writer's own list of live ids            */
    size_t nlive;
} writer_state;

static void writer_fail(const char *what, int st) {
    fprintf(stderr, "test_stress: writer: %s failed (%d): %s\n", what, st, avq_last_error());
    atomic_store(&failed, 1);
}

static void *writer(void *p) {
    writer_state *w = p;
    uint64_t rng = 777;
    float *rows = malloc(256 * DIM * sizeof *rows);
    int64_t *ids = malloc(256 * sizeof *ids);
    double end = seconds_now() + w->seconds;
    while (seconds_now() < end && !atomic_load(&failed)) {
        double r = unit(&rng);
        size_t n = 1 + splitmix(&rng) % 64;
        w->ops++;
        /* keep the live count near N0 */
        double add_p = w->nlive < N0 ? 0.45 : 0.30;
        if (r < add_p && atomic_load(&next_fresh) + 256 < MAX_IDS) {
            bool automatic = splitmix(&rng) % 2;
            int64_t first = atomic_load(&next_fresh);
            /* automatic ids are next_id..: the writer's ids are always the
             * largest ever held, so both ways give first.. */
            for (size_t i = 0; i < n; i++) {
                ids[i] = first + (int64_t)i;
                memcpy(rows + i * DIM, vector_of(ids[i]), DIM * sizeof *rows);
                atomic_store(&added[ids[i]], 1);
            }
            int64_t out[256];
            size_t off[257];
            uint32_t tags[512];
            tags_csr(ids, n, off, tags);
            int st = avq_index_add_tagged(w->index, rows, n, automatic ? NULL : ids, off, tags,
                                          (int)(splitmix(&rng) % 3), out);
            if (st != AVQ_OK) {
                writer_fail("add", st);
                break;
            }
            for (size_t i = 0; i < n; i++)
                if (out[i] != ids[i]) {
                    fprintf(stderr, "test_stress: add gave id %lld, expected %lld\n",
                            (long long)out[i], (long long)ids[i]);
                    atomic_store(&failed, 1);
                }
            atomic_store(&next_fresh, first + (int64_t)n);
            for (size_t i = 0; i < n; i++) {
                atomic_store(&add_done[ids[i]], 1);
                w->live[w->nlive++] = ids[i];
            }
            w->adds += n;
        } else if (r < 0.80 && w->nlive > n && atomic_load(&next_fresh) + 256 < MAX_IDS) {
            /* (once the ids run out -- a long run outside TSan -- the live
             * set stays: upserts and compactions only) */
            /* remove n random live ids (plus, sometimes, one never held) */
            for (size_t i = 0; i < n; i++) {
                size_t at = splitmix(&rng) % w->nlive;
                ids[i] = w->live[at];
                w->live[at] = w->live[--w->nlive];
                atomic_store(&removing[ids[i]], 1);
            }
            size_t extra = splitmix(&rng) % 4 == 0;
            if (extra) ids[n] = MAX_IDS + (int64_t)(splitmix(&rng) % 1000);
            size_t removed = 0;
            int st = avq_index_remove(w->index, ids, n + extra, &removed);
            if (st != AVQ_OK) {
                writer_fail("remove", st);
                break;
            }
            if (removed != n) {
                fprintf(stderr, "test_stress: removed %zu of %zu\n", removed, n);
                atomic_store(&failed, 1);
            }
            uint32_t s = atomic_load(&seq) + 1;
            for (size_t i = 0; i < n; i++) atomic_store(&removed_seq[ids[i]], s);
            atomic_store(&seq, s); /* seq_cst: after every removed_seq store */
            w->removes += n;
        } else if (r < 0.95 && w->nlive > n) {
            /* upsert: live ids get a new vector (another pool row), and one
             * fresh id is added */
            size_t m = 0;
            for (size_t i = 0; i < n; i++) {
                int64_t id = w->live[splitmix(&rng) % w->nlive];
                bool dup = false;
                for (size_t j = 0; j < m; j++) dup |= ids[j] == id;
                if (dup) continue;
                ids[m] = id;
                atomic_store(&upserted[id], 1);
                memcpy(rows + m * DIM, vector_of(id + 1 + (int64_t)(splitmix(&rng) % 1000)),
                       DIM * sizeof *rows);
                m++;
            }
            int64_t fresh = atomic_load(&next_fresh);
            bool with_fresh = fresh + 1 < MAX_IDS;
            if (with_fresh) {
                ids[m] = fresh;
                memcpy(rows + m * DIM, vector_of(fresh), DIM * sizeof *rows);
                atomic_store(&added[fresh], 1);
                m++;
            }
            size_t replaced = 0;
            int st = avq_index_upsert(w->index, rows, m, ids, 1, &replaced);
            if (st != AVQ_OK) {
                writer_fail("upsert", st);
                break;
            }
            if (replaced != m - with_fresh) {
                fprintf(stderr, "test_stress: upsert replaced %zu of %zu\n", replaced, m - with_fresh);
                atomic_store(&failed, 1);
            }
            if (with_fresh) {
                atomic_store(&next_fresh, fresh + 1);
                atomic_store(&add_done[fresh], 1);
                w->live[w->nlive++] = fresh;
            }
            w->upserts += m;
        } else if (r < 0.97 && w->nlive > n) {
            /* set the tags of live ids again (the same ones: the searchers'
             * invariant stays) -- a new version of their leaves */
            size_t m = 0;
            for (size_t i = 0; i < n; i++) {
                int64_t id = w->live[splitmix(&rng) % w->nlive];
                bool dup = false;
                for (size_t j = 0; j < m; j++) dup |= ids[j] == id;
                if (!dup) ids[m++] = id;
            }
            size_t off[257];
            uint32_t tags[512];
            tags_csr(ids, m, off, tags);
            int st = avq_index_set_tags(w->index, ids, m, off, tags);
            if (st != AVQ_OK) {
                writer_fail("set_tags", st);
                break;
            }
        } else {
            int st;
            if (splitmix(&rng) % 2) {
                st = avq_index_compact(w->index, unit(&rng) * 0.5, NULL);
            } else {
                static const double thresholds[] = {0, 0.2, 0.5, 0.9, 1.0};
                st = avq_index_set_compact_threshold(w->index, thresholds[splitmix(&rng) % 5]);
            }
            if (st != AVQ_OK) {
                writer_fail("compact", st);
                break;
            }
            w->compacts++;
        }
    }
    atomic_store(&stop, 1);
    free(rows);
    free(ids);
    return NULL;
}

/* ---- the searchers ----------------------------------------------------------- */

typedef struct {
    const avq_index *index;
    int number;
    size_t searches, results, checked_scores, snapshots, gets, filtered;
    avq_filter *by_tag[7], *deny; /* shared by both searchers */
} searcher_state;

static double dot(const float *a, const float *b) {
    double s = 0;
    for (int j = 0; j < DIM; j++) s += (double)a[j] * b[j];
    return s;
}

static bool check_results(const int64_t *ids, const float *scores, const float *query, uint32_t s0,
                          searcher_state *st, size_t k) {
    bool tail = false;
    for (size_t i = 0; i < k; i++) {
        int64_t id = ids[i];
        if (id == AVQ_NO_ID) {
            tail = true;
            continue;
        }
        if (tail || id < 0 || id >= MAX_IDS || !atomic_load(&added[id])) {
            fprintf(stderr, "test_stress: searcher %d: id %lld at rank %zu was never added%s\n",
                    st->number, (long long)id, i, tail ? " (after a -1)" : "");
            return false;
        }
        uint32_t r = atomic_load(&removed_seq[id]);
        if (r != 0 && r <= s0) {
            fprintf(stderr,
                    "test_stress: searcher %d: id %lld returned, but its removal returned before "
                    "the search started (removal %u, search after %u)\n",
                    st->number, (long long)id, r, s0);
            return false;
        }
        for (size_t j = 0; j < i; j++)
            if (ids[j] == id) {
                fprintf(stderr, "test_stress: searcher %d: id %lld twice in one result\n", st->number,
                        (long long)id);
                return false;
            }
        if (i > 0 && ids[i - 1] != AVQ_NO_ID && scores[i] > scores[i - 1]) {
            fprintf(stderr, "test_stress: searcher %d: scores out of order at rank %zu\n", st->number, i);
            return false;
        }
        /* the vector of an id never upserted is known: FLOAT re-ranking
         * gives its exact score (the flag is set before any upsert begins;
         * an upsert in flight after the search started is harmless since
         * it is read after the search returned) */
        if (!atomic_load(&upserted[id])) {
            double want = dot(query, vector_of(id));
            if (fabs(want - scores[i]) > 1e-3 * (1 + fabs(want))) {
                fprintf(stderr,
                        "test_stress: searcher %d: id %lld scored %.6g, its vector scores %.6g\n",
                        st->number, (long long)id, (double)scores[i], want);
                return false;
            }
            st->checked_scores++;
        }
        st->results++;
    }
    return true;
}

static void *searcher(void *p) {
    searcher_state *st = p;
    uint64_t rng = 1000 + (uint64_t)st->number;
    avq_search_params sp;
    avq_search_params_init(&sp);
    avq_index_default_search_params(st->index, &sp);
    sp.k = K;
    int64_t ids[8 * K];
    float scores[8 * K];
    float got[DIM];
    double next_snapshot = seconds_now() + 0.3;
    while (!atomic_load(&stop) && !atomic_load(&failed)) {
        size_t q = splitmix(&rng) % NQ;
        uint32_t s0 = atomic_load(&seq);
        int r = (int)(splitmix(&rng) % 8);
        if (r < 4) {
            sp.leaves_to_search = r == 0 ? avq_index_num_leaves(st->index) : 0;
            int s = avq_index_search(st->index, queries + q * DIM, &sp, ids, scores);
            TCHECK(s == AVQ_OK, "search: %s", avq_last_error());
            if (!check_results(ids, scores, queries + q * DIM, s0, st, K)) {
                atomic_store(&failed, 1);
                break;
            }
            st->searches++;
        } else if (r == 4) {
            /* filtered: by a tag (scan or exact plan), or by the deny set */
            avq_search_params fp = sp;
            int kind = (int)(splitmix(&rng) % 8);
            fp.filter = kind < 7 ? st->by_tag[kind] : st->deny;
            fp.filter_exact_below = splitmix(&rng) % 2 ? 1 : 100000;
            int s = avq_index_search(st->index, queries + q * DIM, &fp, ids, scores);
            TCHECK(s == AVQ_OK, "filtered search: %s", avq_last_error());
            for (int i = 0; i < K; i++) {
                int64_t id = ids[i];
                if (id == AVQ_NO_ID) continue;
                TCHECK(kind == 7 || id % 7 == kind, "tag %d filter returned id %lld", kind,
                       (long long)id);
                TCHECK(kind < 7 || id >= DENY_BELOW || id % 5 != 0,
                       "the deny filter returned id %lld", (long long)id);
            }
            if (!check_results(ids, scores, queries + q * DIM, s0, st, K)) {
                atomic_store(&failed, 1);
                break;
            }
            st->filtered++;
            st->searches++;
        } else if (r == 5) {
            /* a batch of 8 queries (from q on, wrapping) */
            float batch[8 * DIM];
            for (int i = 0; i < 8; i++) memcpy(batch + i * DIM, queries + ((q + i) % NQ) * DIM, sizeof batch / 8);
            sp.leaves_to_search = 0;
            int s = avq_index_search_batch(st->index, batch, 8, &sp, 1 + st->number % 2, ids, scores);
            TCHECK(s == AVQ_OK, "batch search: %s", avq_last_error());
            for (int i = 0; i < 8; i++)
                if (!check_results(ids + i * K, scores + i * K, batch + i * DIM, s0, st, K)) {
                    atomic_store(&failed, 1);
                    break;
                }
            st->searches += 8;
        } else if (r == 6) {
            /* an id added and not being removed is there, with its vector */
            int64_t limit = atomic_load(&next_fresh);
            int64_t id = (int64_t)(splitmix(&rng) % (uint64_t)limit);
            if (atomic_load(&add_done[id]) && !atomic_load(&removing[id])) {
                bool in = avq_index_contains(st->index, id);
                bool still = !atomic_load(&removing[id]);
                TCHECK(in || !still, "id %lld added, never removed, not contained", (long long)id);
                if (!atomic_load(&upserted[id])) {
                    int s = avq_index_get(st->index, &id, 1, got);
                    /* both flags are set before the writer's call begins,
                     * so checked after get they cover a change that raced
                     * with it (an upsert that started after the check
                     * above was a false "wrong vector") */
                    if (!atomic_load(&removing[id]) && !atomic_load(&upserted[id])) {
                        TCHECK(s == AVQ_OK, "get(%lld): %s", (long long)id, avq_last_error());
                        TCHECK(memcmp(got, vector_of(id), sizeof got) == 0, "get(%lld): wrong vector",
                              (long long)id);
                        st->gets++;
                    }
                }
            }
            avq_index_stats stats;
            memset(&stats, 0, sizeof stats);
            TCHECK(avq_index_get_stats(st->index, &stats) == AVQ_OK, "stats: %s", avq_last_error());
            TCHECK(stats.min_leaf <= stats.max_leaf, "stats: min_leaf %zu > max_leaf %zu", stats.min_leaf,
                  stats.max_leaf);
            TCHECK(stats.max_leaf_dead >= 0 && stats.max_leaf_dead <= 1, "stats: max_leaf_dead %g",
                  stats.max_leaf_dead);
        } else if (st->number == 0 && seconds_now() > next_snapshot) {
            /* a saved snapshot is one consistent state: it loads, and holds
             * no id whose removal returned before the save began */
            next_snapshot = seconds_now() + 0.5;
            void *bytes = NULL;
            size_t size = 0;
            int s = avq_index_save_bytes(st->index, &bytes, &size);
            TCHECK(s == AVQ_OK, "save_bytes: %s", avq_last_error());
            avq_index *copy = NULL;
            s = avq_index_load_bytes(bytes, size, &copy);
            TCHECK(s == AVQ_OK, "load_bytes of a snapshot: %s", avq_last_error());
            avq_free(bytes);
            int64_t limit = atomic_load(&next_fresh);
            for (int i = 0; i < 2000; i++) {
                int64_t id = (int64_t)(splitmix(&rng) % (uint64_t)limit);
                uint32_t rs = atomic_load(&removed_seq[id]);
                if (rs != 0 && rs <= s0)
                    TCHECK(!avq_index_contains(copy, id), "snapshot holds id %lld removed before it",
                          (long long)id);
            }
            avq_index_stats cs;
            memset(&cs, 0, sizeof cs);
            TCHECK(avq_index_get_stats(copy, &cs) == AVQ_OK, "stats of the snapshot");
            TCHECK(cs.live == avq_index_size(copy), "snapshot: live %zu, size %zu", cs.live,
                  avq_index_size(copy));
            avq_index_free(copy);
            st->snapshots++;
        }
    }
    return NULL;
}

/* ---- the run --------------------------------------------------------------- */

static double stress_seconds(void) {
    const char *e = getenv("AVQ_STRESS_SECONDS");
    double s = e && e[0] ? atof(e) : 2.0;
    return s > 0 ? s : 2.0;
}

static int run_stress(double seconds) {
    pool = clustered(POOL, 5);
    queries = clustered(NQ, 6);
    atomic_store(&stop, 0);
    atomic_store(&failed, 0);
    atomic_store(&seq, 0);
    float *init = malloc((size_t)N0 * DIM * sizeof *init);
    for (int64_t i = 0; i < N0; i++) {
        memcpy(init + i * DIM, vector_of(i), DIM * sizeof *init);
        atomic_store(&added[i], 1);
        atomic_store(&add_done[i], 1);
    }
    atomic_store(&next_fresh, N0);
    avq_build_params p;
    avq_build_params_init(&p, AVQ_METRIC_DOT);
    p.num_leaves = 16;
    p.brute_force_below = 100;
    p.reorder = AVQ_REORDER_FLOAT;
    p.threads = 1;
    avq_index *index = NULL;
    int st = avq_index_build(init, N0, DIM, &p, &index);
    CHECK(st == AVQ_OK, "build: %s", avq_last_error());
    free(init);
    {
        int64_t *ids0 = malloc(N0 * sizeof *ids0);
        size_t *off = malloc((N0 + 1) * sizeof *off);
        uint32_t *tags = malloc(2 * N0 * sizeof *tags);
        for (int64_t i = 0; i < N0; i++) ids0[i] = i;
        tags_csr(ids0, N0, off, tags);
        st = avq_index_set_tags(index, ids0, N0, off, tags);
        CHECK(st == AVQ_OK, "set_tags: %s", avq_last_error());
        free(ids0);
        free(off);
        free(tags);
    }
    avq_filter *by_tag[7], *deny = NULL;
    for (uint32_t t = 0; t < 7; t++)
        CHECK(avq_filter_tags_any(&t, 1, &by_tag[t]) == AVQ_OK, "filter: %s", avq_last_error());
    {
        int64_t *d = malloc(DENY_BELOW / 5 * sizeof *d + sizeof *d);
        size_t nd = 0;
        for (int64_t id = 0; id < DENY_BELOW; id += 5) d[nd++] = id;
        CHECK(avq_filter_deny_ids(d, nd, &deny) == AVQ_OK, "filter: %s", avq_last_error());
        free(d);
    }

    writer_state w = {index, seconds, 0, 0, 0, 0, 0, malloc(MAX_IDS * sizeof(int64_t)), 0};
    for (int64_t i = 0; i < N0; i++) w.live[w.nlive++] = i;
    searcher_state s[2];
    memset(s, 0, sizeof s);
    for (int i = 0; i < 2; i++) {
        s[i].index = index;
        s[i].number = i;
        memcpy(s[i].by_tag, by_tag, sizeof by_tag);
        s[i].deny = deny;
    }
    pthread_t tw, ts[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&ts[i], NULL, searcher, &s[i]) == 0, "pthread_create");
    CHECK(pthread_create(&tw, NULL, writer, &w) == 0, "pthread_create");
    pthread_join(tw, NULL);
    for (int i = 0; i < 2; i++) pthread_join(ts[i], NULL);

    INFO("%.1f s: writer %zu ops (%zu added, %zu removed, %zu upserted, %zu compactions/thresholds); "
         "searchers %zu + %zu searches (%zu filtered), %zu results checked (%zu scores), %zu gets, "
         "%zu snapshots; %zu live at the end",
         seconds, w.ops, w.adds, w.removes, w.upserts, w.compacts, s[0].searches, s[1].searches,
         s[0].filtered + s[1].filtered,
         s[0].results + s[1].results, s[0].checked_scores + s[1].checked_scores, s[0].gets + s[1].gets,
         s[0].snapshots, w.nlive);
    int ok = !atomic_load(&failed);
    CHECK(ok, "the stress run failed (see the messages above)");
    /* the end state is exactly the writer's record */
    CHECK(avq_index_size(index) == w.nlive, "size %zu, the writer holds %zu", avq_index_size(index), w.nlive);
    for (size_t i = 0; i < w.nlive; i++)
        CHECK(avq_index_contains(index, w.live[i]), "live id %lld missing", (long long)w.live[i]);
    CHECK(w.ops > 10 && s[0].searches + s[1].searches > 10, "the run did nothing");
    for (int t = 0; t < 7; t++) avq_filter_free(by_tag[t]);
    avq_filter_free(deny);
    avq_index_free(index);
    free(w.live);
    free(pool);
    free(queries);
    return ok ? 0 : 1;
}

#ifdef AVQ_STRESS_MAIN
int main(void) {
    double s = stress_seconds();
    fprintf(stderr, "test_stress: %.0f s, %s kernels\n", s, avq_isa());
    int rc = run_stress(s);
    if (rc == 0) fprintf(stderr, "test_stress: ok\n");
    return rc;
}
#else
Test(stress, searches_during_writes, .timeout = 120) {
    cr_assert_eq(run_stress(stress_seconds()), 0);
}
#endif
