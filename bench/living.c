/*
 * living.c -- the living index (issue 12), measured against a full build in
 * the same run:
 *
 *   (a) incremental: avq_quantizer_train on the first half of the base rows
 *       (default cosine parameters), avq_index_create, avq_index_add of the
 *       first half (one call) and of the second half (100 calls), one encoding
 *       thread; against avq_index_build of all rows with the same parameters.
 *       Add throughput (vectors per CPU second), recall@k at each index's
 *       default search settings, and QPS at recall >= 0.90 (for each
 *       pre_reorder of a small grid the smallest leaves_to_search reaching
 *       0.90, then single-query timing of those settings, the two indexes
 *       interleaved, best of --runs passes).
 *   (b) removal: a random 30 % (fixed seed) of the full build's ids removed;
 *       remove throughput; recall@k against avq_exact_search over the rows
 *       left, against a fresh avq_index_build of those rows (its ids mapped
 *       back); every result of every query checked for removed ids.
 *   (c) concurrency: single-query search QPS while a writer thread adds
 *       --rate vectors/s (--writer-batch per call, rate-limited on an
 *       absolute schedule) and removes each batch again one tick later (the
 *       size stays constant), against no writer, in alternating phases.
 *
 * Clocks: every timing is reported by the wall clock and by the calling
 * thread's CPU clock (CLOCK_THREAD_CPUTIME_ID); adds and removes also by the
 * process CPU clock (which also counts any worker thread the library starts).
 * The targets are judged on the CPU clocks -- on a shared 2-core machine they
 * ignore the time a thread was descheduled -- with the wall-clock figure
 * printed beside each.  Recall is independent of the clocks.
 *
 * usage: living [--base B.fvecs] [--query Q.fvecs] [--gt GT.ivecs] [--quick]
 *               [--nbase N] [--nq N] [--k 10] [--runs 3] [--leaves 0]
 *               [--batches 100] [--remove-fraction 0.3] [--rate 5000]
 *               [--writer-batch 50] [--phases 6] [--phase-seconds 4]
 *               [--seed 12] [--exact-gt] [--shuffle] [--parts abc] [--control]
 *   --quick = --nbase 200000 --nq 1000 --runs 2 --phases 4 --phase-seconds 1.5
 *   (a random, order-keeping subsample of the base; the ground truth is then
 *   computed with avq_exact_search instead of read from --gt).
 *   --shuffle puts the base rows in random order first: GloVe's file order is
 *   word frequency, so without it the quantizer of (a) is trained on the
 *   frequent half and the rare half is added to it (a drifted distribution);
 *   with it both halves come from one distribution.
 *   --parts: any of a, b, c (default abc).  Without a, only the full build is
 *   made and swept (its 0.90 setting is what (c) searches with); (c) without
 *   b still removes the same ids first (they are its writer's vectors).
 *   --control adds a third kind of phase to (c): the writer thread on the same
 *   schedule burning the CPU time per tick its index work took, without
 *   touching the index -- what the scheduler alone costs the searcher
 *   (default then 9 phases, 6 with --quick).
 * Exit status: 0 when every part ran (PASS/FAIL lines tell the targets),
 * 1 when a library call failed, 2 on bad usage.
 */
#include "avq.h"
#include "cmd_common.h"
#include "dataset.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- clocks ------------------------------------------------------------- */

typedef struct {
    double wall, thread, process;
} clocks;

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static clocks clocks_now(void) {
    clocks c = {clock_s(CLOCK_MONOTONIC), clock_s(CLOCK_THREAD_CPUTIME_ID),
                clock_s(CLOCK_PROCESS_CPUTIME_ID)};
    return c;
}

static clocks clocks_since(clocks t0) {
    clocks t = clocks_now();
    t.wall -= t0.wall;
    t.thread -= t0.thread;
    t.process -= t0.process;
    return t;
}

static void clocks_add(clocks *sum, clocks d) {
    sum->wall += d.wall;
    sum->thread += d.thread;
    sum->process += d.process;
}

static void print_loadavg(const char *when) {
    FILE *f = fopen("/proc/loadavg", "r");
    char buf[128] = "?";
    if (f) {
        if (!fgets(buf, sizeof buf, f)) strcpy(buf, "?");
        fclose(f);
    }
    buf[strcspn(buf, "\n")] = 0;
    printf("load average at %s: %s\n", when, buf);
}

/* ---- OpenBLAS ------------------------------------------------------------ */

/* libavq calls SGEMM (leaf assignment of added vectors, k-means, exact
 * search) from the calling thread, and OpenBLAS runs it on its own pool of
 * threads: an add with threads=1 still keeps both cores busy (and its
 * pool's threads spin between calls).  For numbers that are really one core
 * the timed adds and part (c) run with the pool at one thread; builds,
 * training and exact search keep OpenBLAS's default.  Weak: a BLAS without
 * these functions leaves its threads alone (and the program says so). */
extern int openblas_get_num_threads(void) __attribute__((weak));
extern void openblas_set_num_threads(int) __attribute__((weak));

/* OpenBLAS's pool size, 0 if the BLAS cannot be asked and told. */
static int blas_get(void) {
    return openblas_get_num_threads && openblas_set_num_threads ? openblas_get_num_threads() : 0;
}

static void blas_set(int n) {
    if (n > 0 && blas_get() > 0) openblas_set_num_threads(n);
}

/* ---- errors ------------------------------------------------------------- */

static void die_avq(const char *what, int st, int line) {
    fprintf(stderr, "living: line %d: %s -> %d (%s): %s\n", line, what, st, avq_strerror(st),
            avq_last_error());
    exit(1);
}
#define CHECK(call)                                                                                \
    do {                                                                                           \
        int st_ = (call);                                                                          \
        if (st_ != AVQ_OK) die_avq(#call, st_, __LINE__);                                          \
    } while (0)

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "living: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

static const char *verdict(int ok) { return ok ? "PASS" : "FAIL"; }

/* ---- random numbers (splitmix64) ---------------------------------------- */

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* 0..n-1 in random order. */
static size_t *random_permutation(size_t n, uint64_t seed) {
    size_t *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = i;
    uint64_t s = seed;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rng_next(&s) % i);
        size_t t = p[i - 1];
        p[i - 1] = p[j];
        p[j] = t;
    }
    return p;
}

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* ---- the query set and its truth ---------------------------------------- */

typedef struct {
    const float *q; /* nq x dim */
    size_t nq, dim, k;
    int32_t *truth; /* nq x tcols, best first */
    size_t tcols;
} queries;

/* Exact top-k of the queries over base (n x dim); result ids mapped through
 * map (row -> id) when map is not NULL.  Returns an nq x k int32 array. */
static int32_t *exact_truth(const float *base, size_t n, const queries *Q, const size_t *map,
                            clocks *took) {
    int64_t *ids = xmalloc(Q->nq * Q->k * sizeof *ids);
    clocks t0 = clocks_now();
    CHECK(avq_exact_search(base, n, Q->dim, Q->q, Q->nq, AVQ_METRIC_COSINE, Q->k, 0, ids, NULL,
                           NULL, NULL));
    *took = clocks_since(t0);
    int32_t *t = xmalloc(Q->nq * Q->k * sizeof *t);
    for (size_t i = 0; i < Q->nq * Q->k; i++)
        t[i] = ids[i] < 0 ? -1 : (int32_t)(map ? map[ids[i]] : (size_t)ids[i]);
    free(ids);
    return t;
}

static double recall_of(const queries *Q, const int64_t *ids) {
    return cli_recall_at_k(ids, Q->nq, Q->k, Q->truth, Q->tcols);
}

/* One pass over all queries, one query per call. */
static clocks search_pass(const avq_index *idx, const queries *Q, const avq_search_params *sp,
                          int64_t *ids) {
    clocks t0 = clocks_now();
    for (size_t i = 0; i < Q->nq; i++)
        CHECK(avq_index_search(idx, Q->q + i * Q->dim, sp, ids + i * Q->k, NULL));
    return clocks_since(t0);
}

static avq_search_params setting(size_t k, size_t L, size_t R) {
    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.k = k;
    sp.leaves_to_search = L;
    sp.pre_reorder = R;
    return sp;
}

/* Map ids of an index whose ids are row numbers of a subset through map. */
static void map_ids(int64_t *ids, size_t count, const size_t *map) {
    for (size_t i = 0; i < count; i++)
        if (ids[i] >= 0) ids[i] = (int64_t)map[ids[i]];
}

/* How many of the count result ids are flagged; *missing gets the -1
 * entries, *invalid the ids outside [0, n). */
static size_t count_flagged(const int64_t *ids, size_t count, const unsigned char *flag, size_t n,
                            size_t *missing, size_t *invalid) {
    size_t hits = 0;
    *missing = *invalid = 0;
    for (size_t i = 0; i < count; i++) {
        if (ids[i] == AVQ_NO_ID)
            (*missing)++;
        else if (ids[i] < 0 || (uint64_t)ids[i] >= n)
            (*invalid)++;
        else if (flag && flag[ids[i]])
            hits++;
    }
    return hits;
}

static void print_stats(const char *name, const avq_index *idx) {
    avq_index_stats s;
    CHECK(avq_index_get_stats(idx, &s));
    printf("  %-12s live %zu dead %zu leaves %zu (empty %zu) leaf size min %zu mean %.1f max %zu "
           "cv %.3f max dead share %.3f memory %.1f MB\n",
           name, s.live, s.dead, s.leaves, s.empty_leaves, s.min_leaf, s.mean_leaf, s.max_leaf,
           s.leaf_cv, s.max_leaf_dead, (double)s.memory_bytes / 1e6);
}

/* ---- (a) the recall-0.90 sweep ------------------------------------------ */

#define MAX_CAND 8
static const size_t REORDERS[] = {20, 30, 40, 60, 80, 120};
#define N_REORDERS (sizeof REORDERS / sizeof REORDERS[0])

typedef struct {
    size_t L, R;
    double recall_batch, recall_single;
    double best_thread, best_wall; /* seconds of the fastest pass */
} cand;

typedef struct {
    const char *name;
    avq_index *idx;
    cand c[MAX_CAND];
    size_t nc;
} subject;

static double batch_recall(const avq_index *idx, const queries *Q, size_t L, size_t R,
                           int64_t *ids) {
    avq_search_params sp = setting(Q->k, L, R);
    CHECK(avq_index_search_batch(idx, Q->q, Q->nq, &sp, 0, ids, NULL));
    return recall_of(Q, ids);
}

/* For each pre_reorder R of the grid, the smallest leaves_to_search whose
 * recall reaches target (bisection on batched-search recall, which the
 * header promises equals single-query results). */
static void find_candidates(subject *s, const queries *Q, double target, int64_t *ids) {
    size_t leaves = avq_index_num_leaves(s->idx);
    size_t cap = leaves < 200 ? leaves : 200;
    s->nc = 0;
    for (size_t r = 0; r < N_REORDERS && s->nc < MAX_CAND; r++) {
        size_t R = REORDERS[r];
        double rec_hi = batch_recall(s->idx, Q, cap, R, ids);
        if (rec_hi < target) {
            printf("  %-12s reorder %3zu: recall %.4f at %zu leaves, never reaches %.2f\n", s->name,
                   R, rec_hi, cap, target);
            continue;
        }
        size_t lo = 1, hi = cap;
        double rec_at_hi = rec_hi;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            double rm = batch_recall(s->idx, Q, mid, R, ids);
            if (rm >= target) {
                hi = mid;
                rec_at_hi = rm;
            } else {
                lo = mid + 1;
            }
        }
        cand *c = &s->c[s->nc++];
        c->L = hi;
        c->R = R;
        c->recall_batch = rec_at_hi;
        c->recall_single = NAN;
        c->best_thread = c->best_wall = INFINITY;
        printf("  %-12s reorder %3zu: smallest leaves_to_search with recall >= %.2f is %zu "
               "(%.4f)\n",
               s->name, R, target, hi, rec_at_hi);
    }
}

/* Time every candidate of both subjects, interleaved (A, B, B, A, ...),
 * runs passes each; keep the fastest pass by each clock. */
static void time_candidates(subject *s, size_t ns, const queries *Q, int runs, int64_t *ids) {
    size_t maxc = 0;
    for (size_t i = 0; i < ns; i++)
        if (s[i].nc > maxc) maxc = s[i].nc;
    for (int run = 0; run < runs; run++)
        for (size_t j = 0; j < maxc; j++)
            for (size_t t = 0; t < ns; t++) {
                size_t w = ((size_t)run + j) % 2 ? ns - 1 - t : t;
                if (j >= s[w].nc) continue;
                cand *c = &s[w].c[j];
                avq_search_params sp = setting(Q->k, c->L, c->R);
                clocks d = search_pass(s[w].idx, Q, &sp, ids);
                c->recall_single = recall_of(Q, ids);
                if (d.thread < c->best_thread) c->best_thread = d.thread;
                if (d.wall < c->best_wall) c->best_wall = d.wall;
            }
}

/* Best QPS over the candidates whose single-query recall reached target, by
 * the thread CPU clock (*best) and by the wall clock (*best_wall); *at is
 * the candidate of the CPU-clock best (NULL if none). */
static void frontier(const subject *s, const queries *Q, double target, double *best,
                     double *best_wall, const cand **at) {
    *best = *best_wall = 0;
    *at = NULL;
    for (size_t j = 0; j < s->nc; j++) {
        const cand *c = &s->c[j];
        if (!(c->recall_single >= target)) continue;
        double qps = (double)Q->nq / c->best_thread, qw = (double)Q->nq / c->best_wall;
        if (qps > *best) {
            *best = qps;
            *at = c;
        }
        if (qw > *best_wall) *best_wall = qw;
    }
}

/* ---- (c) the writer thread ---------------------------------------------- */

enum { W_IDLE = 0, W_RUN = 1, W_QUIT = 2, W_SPIN = 3 };

typedef struct {
    avq_index *idx;
    const float *base; /* rows indexed by id */
    size_t dim;
    const int64_t *pool; /* ids not in the index, to add and remove again */
    size_t npool, batch;
    double period; /* seconds between batches */
    atomic_int cmd, state;
    /* statistics, read by the main thread only while the writer is idle */
    size_t pos, ticks, added, removed, remove_short, late;
    double add_s, add_max, rm_s, rm_max, busy_cpu;
    /* the control (--control): on the same schedule, burn spin_cpu seconds of
     * CPU per tick without touching the index */
    double spin_cpu, spin_busy, spin_wall;
    size_t spin_ticks;
    atomic_int failed;
    char err[512];
} writer;

static void sleep_until(double t) {
    struct timespec ts;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
}

static void writer_fail(writer *w, const char *what, int st) {
    if (!atomic_load(&w->failed))
        snprintf(w->err, sizeof w->err, "%s -> %s: %s", what, avq_strerror(st), avq_last_error());
    atomic_store(&w->failed, 1);
}

static void writer_remove(writer *w, const int64_t *ids, size_t n) {
    size_t removed = 0;
    double t0 = clock_s(CLOCK_MONOTONIC);
    int st = avq_index_remove(w->idx, ids, n, &removed);
    double dt = clock_s(CLOCK_MONOTONIC) - t0;
    if (st != AVQ_OK) writer_fail(w, "avq_index_remove", st);
    w->rm_s += dt;
    if (dt > w->rm_max) w->rm_max = dt;
    w->removed += removed;
    if (removed != n) w->remove_short += n - removed;
}

static void *writer_main(void *arg) {
    writer *w = arg;
    float *buf = xmalloc(w->batch * w->dim * sizeof *buf);
    int64_t *cur = xmalloc(w->batch * sizeof *cur), *prev = xmalloc(w->batch * sizeof *prev);
    for (;;) {
        int cmd = atomic_load(&w->cmd);
        if (cmd == W_QUIT) break;
        if (cmd == W_IDLE) {
            atomic_store(&w->state, W_IDLE);
            sleep_until(clock_s(CLOCK_MONOTONIC) + 0.001);
            continue;
        }
        if (cmd == W_SPIN) {
            atomic_store(&w->state, W_SPIN);
            double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
            double next = w0;
            volatile double sink = 0;
            while (atomic_load(&w->cmd) == W_SPIN) {
                double until = clock_s(CLOCK_THREAD_CPUTIME_ID) + w->spin_cpu;
                while (clock_s(CLOCK_THREAD_CPUTIME_ID) < until) sink += 1.0;
                w->spin_ticks++;
                next += w->period;
                double now = clock_s(CLOCK_MONOTONIC);
                if (now > next + w->period)
                    next = now;
                else if (now < next)
                    sleep_until(next);
            }
            w->spin_busy += clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
            w->spin_wall += clock_s(CLOCK_MONOTONIC) - w0;
            atomic_store(&w->state, W_IDLE);
            continue;
        }
        atomic_store(&w->state, W_RUN);
        double cpu0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
        double next = clock_s(CLOCK_MONOTONIC);
        int have_prev = 0;
        while (atomic_load(&w->cmd) == W_RUN && !atomic_load(&w->failed)) {
            if (w->pos + w->batch > w->npool) w->pos = 0;
            for (size_t i = 0; i < w->batch; i++) {
                cur[i] = w->pool[w->pos + i];
                memcpy(buf + i * w->dim, w->base + (size_t)cur[i] * w->dim, w->dim * sizeof *buf);
            }
            w->pos += w->batch;
            double t0 = clock_s(CLOCK_MONOTONIC);
            int st = avq_index_add(w->idx, buf, w->batch, cur, 1, NULL);
            double dt = clock_s(CLOCK_MONOTONIC) - t0;
            if (st != AVQ_OK) {
                writer_fail(w, "avq_index_add", st);
                break;
            }
            w->add_s += dt;
            if (dt > w->add_max) w->add_max = dt;
            w->added += w->batch;
            if (have_prev) writer_remove(w, prev, w->batch);
            int64_t *t = prev;
            prev = cur;
            cur = t;
            have_prev = 1;
            w->ticks++;
            next += w->period;
            double now = clock_s(CLOCK_MONOTONIC);
            if (now > next) {
                w->late++;
                if (now > next + w->period) next = now; /* do not burst to catch up */
            } else {
                sleep_until(next);
            }
        }
        if (have_prev) writer_remove(w, prev, w->batch);
        w->busy_cpu += clock_s(CLOCK_THREAD_CPUTIME_ID) - cpu0;
        atomic_store(&w->state, W_IDLE);
        while (atomic_load(&w->cmd) == W_RUN) /* failed: wait to be told */
            sleep_until(clock_s(CLOCK_MONOTONIC) + 0.001);
    }
    free(buf);
    free(cur);
    free(prev);
    return NULL;
}

/* ---- main --------------------------------------------------------------- */

typedef struct {
    size_t count;
    double wall, thread;
    float *lat_us;
    size_t nlat, cap;
} phase_acc;

static void lat_push(phase_acc *a, float us) {
    if (a->nlat == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 65536;
        a->lat_us = realloc(a->lat_us, a->cap * sizeof *a->lat_us);
        if (!a->lat_us) {
            fprintf(stderr, "living: out of memory\n");
            exit(1);
        }
    }
    a->lat_us[a->nlat++] = us;
}

static float pct(const float *sorted, size_t n, double p) {
    if (!n) return NAN;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return sorted[i];
}

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [--base B.fvecs] [--query Q.fvecs] [--gt GT.ivecs] [--quick] [--nbase N]\n"
            "          [--nq N] [--k 10] [--runs 3] [--leaves 0] [--batches 100]\n"
            "          [--remove-fraction 0.3] [--rate 5000] [--writer-batch 50] [--phases 6]\n"
            "          [--phase-seconds 4] [--seed 12] [--exact-gt] [--shuffle] [--parts abc]\n"
            "          [--control]\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv) {
    const char *base_path = "data/glove-100/base.fvecs", *query_path = "data/glove-100/query.fvecs",
               *gt_path = "data/glove-100/gt_cos.ivecs";
    size_t nbase = 0, nq_opt = 0, k = 10, leaves_opt = 0, batches = 100, wbatch = 50;
    int runs = 3, phases = 6, exact_gt = 0, quick = 0, shuffle = 0, control = 0;
    const char *parts = "abc";
    double remove_fraction = 0.3, rate = 5000, phase_s = 4.0;
    uint64_t seed = 12;
    int runs_set = 0, phases_set = 0, phase_s_set = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quick"))
            quick = 1;
        else if (!strcmp(a, "--exact-gt"))
            exact_gt = 1;
        else if (!strcmp(a, "--shuffle"))
            shuffle = 1;
        else if (!strcmp(a, "--control"))
            control = 1;
        else if (!v)
            usage(argv[0]);
        else {
            i++;
            if (!strcmp(a, "--base"))
                base_path = v;
            else if (!strcmp(a, "--query"))
                query_path = v;
            else if (!strcmp(a, "--gt"))
                gt_path = v;
            else if (!strcmp(a, "--nbase"))
                nbase = strtoul(v, NULL, 10);
            else if (!strcmp(a, "--nq"))
                nq_opt = strtoul(v, NULL, 10);
            else if (!strcmp(a, "--k"))
                k = strtoul(v, NULL, 10);
            else if (!strcmp(a, "--runs"))
                runs = atoi(v), runs_set = 1;
            else if (!strcmp(a, "--leaves"))
                leaves_opt = strtoul(v, NULL, 10);
            else if (!strcmp(a, "--batches"))
                batches = strtoul(v, NULL, 10);
            else if (!strcmp(a, "--remove-fraction"))
                remove_fraction = atof(v);
            else if (!strcmp(a, "--rate"))
                rate = atof(v);
            else if (!strcmp(a, "--writer-batch"))
                wbatch = strtoul(v, NULL, 10);
            else if (!strcmp(a, "--phases"))
                phases = atoi(v), phases_set = 1;
            else if (!strcmp(a, "--phase-seconds"))
                phase_s = atof(v), phase_s_set = 1;
            else if (!strcmp(a, "--seed"))
                seed = strtoull(v, NULL, 10);
            else if (!strcmp(a, "--parts"))
                parts = v;
            else
                usage(argv[0]);
        }
    }
    if (control && !phases_set) phases = quick ? 6 : 9;
    if (quick) {
        if (!nbase) nbase = 200000;
        if (!nq_opt) nq_opt = 1000;
        if (!runs_set) runs = 2;
        if (!phases_set) phases = 4;
        if (!phase_s_set) phase_s = 1.5;
    }
    int pa = strchr(parts, 'a') != NULL, pb = strchr(parts, 'b') != NULL,
        pc = strchr(parts, 'c') != NULL;
    if (!(pa || pb || pc) || strspn(parts, "abc") != strlen(parts)) usage(argv[0]);
    if (k == 0 || runs < 1 || phases < 2 || batches < 1 || wbatch < 1 || rate <= 0 ||
        !(remove_fraction > 0 && remove_fraction < 1))
        usage(argv[0]);

    setvbuf(stdout, NULL, _IOLBF, 0); /* progress shows through a pipe (tee) */
    clocks t_total = clocks_now();
    printf("avq %s, ISA %s\n", avq_version(), avq_isa());
    if (avq_version_number() != AVQ_VERSION_NUMBER)
        printf("SUSPICIOUS: header version %d, library %u\n", AVQ_VERSION_NUMBER,
               avq_version_number());
    print_loadavg("start");

    /* ---- data ---- */
    float_matrix bm = {0}, qm = {0};
    if (dataset_read_float(base_path, &bm) != 0 || dataset_read_float(query_path, &qm) != 0) {
        fprintf(stderr, "living: %s (run `make data`)\n", avq_last_error());
        return 1;
    }
    if (bm.cols != qm.cols) {
        fprintf(stderr, "living: base has dimension %zu, queries %zu\n", bm.cols, qm.cols);
        return 1;
    }
    size_t d = bm.cols, n = bm.rows;
    float *X = bm.data;
    int subsampled = 0;
    if (nbase && nbase < bm.rows) { /* a random subset, in file order */
        size_t *perm = random_permutation(bm.rows, seed ^ 0x5eedull);
        qsort(perm, nbase, sizeof *perm, cmp_size);
        for (size_t i = 0; i < nbase; i++)
            memmove(X + i * d, X + perm[i] * d, d * sizeof *X); /* perm[i] >= i */
        free(perm);
        n = nbase;
        subsampled = 1;
    }
    size_t *new_row = NULL; /* shuffle: new row of each original row */
    if (shuffle) {
        size_t *perm = random_permutation(n, seed ^ 0x5b0ffull);
        float *Xs = xmalloc(n * d * sizeof *Xs);
        new_row = xmalloc(bm.rows * sizeof *new_row);
        for (size_t i = 0; i < n; i++) {
            memcpy(Xs + i * d, X + perm[i] * d, d * sizeof *Xs);
            new_row[perm[i]] = i;
        }
        free(perm);
        free(bm.data);
        bm.data = X = Xs;
    }
    queries Q = {qm.data, qm.rows, d, k, NULL, 0};
    if (nq_opt && nq_opt < Q.nq) Q.nq = nq_opt;
    int_matrix gm = {0};
    clocks t_gt = {0};
    const char *truth_from;
    if (!subsampled && !exact_gt && dataset_read_int(gt_path, &gm) == 0 && gm.rows >= Q.nq &&
        gm.cols >= k) {
        Q.truth = gm.data;
        Q.tcols = gm.cols;
        truth_from = gt_path;
        if (new_row)
            for (size_t i = 0; i < gm.rows * gm.cols; i++)
                if (gm.data[i] >= 0) gm.data[i] = (int32_t)new_row[gm.data[i]];
    } else {
        Q.truth = exact_truth(X, n, &Q, NULL, &t_gt);
        Q.tcols = k;
        truth_from = "avq_exact_search";
    }
    free(new_row);
    printf("data: %zu base rows%s of %s, %zu queries, dim %zu, k %zu, truth from %s\n", n,
           shuffle      ? (subsampled ? " (random subset, shuffled)" : " (shuffled)")
           : subsampled ? " (random subset, file order)"
                        : "",
           base_path, Q.nq, d, k, truth_from);
    int blas_default = blas_get();
    if (blas_default)
        printf("OpenBLAS pool: %d threads for builds, training and exact search; 1 for the timed "
               "adds and part (c)\n",
               blas_default);
    else
        printf("BLAS thread count unknown (not OpenBLAS?): adds may use more than one core\n");
    if (t_gt.wall > 0) printf("  exact truth: %.2f s wall\n", t_gt.wall);

    int64_t *ids = xmalloc(Q.nq * k * sizeof *ids);
    avq_build_params bp;
    avq_build_params_init(&bp, AVQ_METRIC_COSINE);
    bp.num_leaves = leaves_opt;

    /* =================== (a) incremental vs full build =================== */
    size_t h = n / 2, calls2 = 0;
    clocks t0, t_add1 = {0}, t_add2 = {0}, t_add = {0};
    double add_rate1 = 0, add_rate2 = 0, add_rate = 0;
    avq_index *inc = NULL;
    if (pa) {
        printf("\n== (a) incremental: quantizer trained on the first half, then adds ==\n");
        avq_quantizer *qz = NULL;
        t0 = clocks_now();
        CHECK(avq_quantizer_train(X, h, d, &bp, &qz));
        clocks t_train = clocks_since(t0);
        printf("quantizer_train on %zu rows: %.2f s wall, %zu leaves\n", h, t_train.wall,
               avq_quantizer_num_leaves(qz));
        CHECK(avq_index_create(qz, &inc));
        avq_quantizer_free(qz); /* the index keeps its own reference */

        int64_t *got = xmalloc(n * sizeof *got);
        size_t id_mismatch = 0;
        blas_set(1);
        t0 = clocks_now();
        CHECK(avq_index_add(inc, X, h, NULL, 1, got));
        t_add1 = clocks_since(t0);
        for (size_t b = 0; b < batches; b++) {
            size_t lo = h + (n - h) * b / batches, hi = h + (n - h) * (b + 1) / batches;
            if (hi == lo) continue;
            t0 = clocks_now();
            CHECK(avq_index_add(inc, X + lo * d, hi - lo, NULL, 1, got + lo));
            clocks_add(&t_add2, clocks_since(t0));
            calls2++;
        }
        for (size_t i = 0; i < n; i++) id_mismatch += got[i] != (int64_t)i;
        free(got);
        blas_set(blas_default);
        t_add = t_add1;
        clocks_add(&t_add, t_add2);
        if (avq_index_size(inc) != n)
            printf("SUSPICIOUS: incremental index holds %zu vectors after adding %zu\n",
                   avq_index_size(inc), n);
        if (id_mismatch)
            printf("SUSPICIOUS: %zu automatic ids differ from the row numbers\n", id_mismatch);
        add_rate1 = (double)h / t_add1.process;
        add_rate2 = (double)(n - h) / t_add2.process;
        add_rate = (double)n / t_add.process;
        printf(
            "adds, threads=1 (vectors per second of CPU: process clock | thread clock | wall):\n");
        printf("  first half,  1 call      %7zu vectors: %9.0f | %9.0f | %9.0f /s\n", h, add_rate1,
               (double)h / t_add1.thread, (double)h / t_add1.wall);
        printf("  second half, %zu calls %7zu vectors: %9.0f | %9.0f | %9.0f /s\n", calls2, n - h,
               add_rate2, (double)(n - h) / t_add2.thread, (double)(n - h) / t_add2.wall);
        printf("  all                    %7zu vectors: %9.0f | %9.0f | %9.0f /s\n", n, add_rate,
               (double)n / t_add.thread, (double)n / t_add.wall);
    } else {
        printf("\n== the full build (part (a) not selected) ==\n");
    }

    avq_index *full = NULL;
    t0 = clocks_now();
    CHECK(avq_index_build(X, n, d, &bp, &full));
    clocks t_build = clocks_since(t0);
    printf("index_build of all %zu rows (threads %d): %.2f s wall, %zu leaves\n", n, bp.threads,
           t_build.wall, avq_index_num_leaves(full));
    printf("index statistics:\n");
    if (inc) print_stats("incremental", inc);
    print_stats("full build", full);

    /* default settings; subject F is the full build, 0 the incremental one
     * when part (a) runs */
    subject S[2] = {{"incremental", inc, {{0}}, 0}, {"full build", full, {{0}}, 0}};
    int ns = 2, F = 1;
    if (!pa) {
        S[0] = S[1];
        ns = 1;
        F = 0;
    }
    avq_search_params dsp[2];
    double drec[2] = {0, 0}, dqps[2] = {0, 0}, dqps_w[2] = {0, 0};
    for (int s = 0; s < ns; s++) {
        avq_search_params_init(&dsp[s]);
        avq_index_default_search_params(S[s].idx, &dsp[s]);
        dsp[s].k = k;
    }
    for (int run = 0; run < runs; run++)
        for (int t = 0; t < ns; t++) {
            int s = run % 2 ? ns - 1 - t : t;
            clocks dt = search_pass(S[s].idx, &Q, &dsp[s], ids);
            drec[s] = recall_of(&Q, ids);
            if ((double)Q.nq / dt.thread > dqps[s]) dqps[s] = (double)Q.nq / dt.thread;
            if ((double)Q.nq / dt.wall > dqps_w[s]) dqps_w[s] = (double)Q.nq / dt.wall;
        }
    printf("default search settings (one query per call, best of %d passes):\n", runs);
    for (int s = 0; s < ns; s++)
        printf("  %-12s leaves_to_search %zu pre_reorder %zu: recall@%zu %.4f, QPS %.0f (CPU) "
               "%.0f (wall)\n",
               S[s].name, dsp[s].leaves_to_search, dsp[s].pre_reorder, k, drec[s], dqps[s],
               dqps_w[s]);

    const double target = 0.90;
    printf("sweep for recall >= %.2f (bisection on batched-search recall):\n", target);
    for (int s = 0; s < ns; s++) find_candidates(&S[s], &Q, target, ids);
    time_candidates(S, (size_t)ns, &Q, runs, ids);
    double q90[2] = {0, 0}, q90w[2] = {0, 0};
    const cand *at[2] = {NULL, NULL};
    size_t recall_mismatch = 0;
    printf("timed settings (one query per call, best of %d passes, interleaved):\n", runs);
    for (int s = 0; s < ns; s++) {
        for (size_t j = 0; j < S[s].nc; j++) {
            const cand *c = &S[s].c[j];
            printf("  %-12s leaves %3zu reorder %3zu: recall %.4f, QPS %.0f (CPU) %.0f (wall)\n",
                   S[s].name, c->L, c->R, c->recall_single, (double)Q.nq / c->best_thread,
                   (double)Q.nq / c->best_wall);
            if (fabs(c->recall_single - c->recall_batch) > 1e-9) recall_mismatch++;
        }
        frontier(&S[s], &Q, target, &q90[s], &q90w[s], &at[s]);
    }
    if (recall_mismatch)
        printf("SUSPICIOUS: %zu settings gave a different recall batched and one query per call\n",
               recall_mismatch);
    for (int s = 0; s < ns; s++)
        if (at[s])
            printf(
                "  QPS at recall >= %.2f, %-12s %.0f (CPU, leaves %zu reorder %zu), %.0f (wall)\n",
                target, S[s].name, q90[s], at[s]->L, at[s]->R, q90w[s]);
        else
            printf("  QPS at recall >= %.2f, %-12s none of the settings reached it\n", target,
                   S[s].name);

    double drec_a = drec[0] - drec[1];
    double qratio = q90[1] > 0 ? q90[0] / q90[1] : 0,
           qratio_w = q90w[1] > 0 ? q90w[0] / q90w[1] : 0;
    int pass_a1 = drec_a >= -0.01, pass_a2 = q90[0] > 0 && qratio >= 0.95,
        pass_a3 = add_rate >= 50000, pass_a3b = add_rate2 >= 50000;
    size_t full_L = at[F] ? at[F]->L : dsp[F].leaves_to_search,
           full_R = at[F] ? at[F]->R : dsp[F].pre_reorder;
    avq_index_free(inc);
    inc = NULL;

    /* =================== (b) removals =================== */
    /* (c) adds back the vectors removed here, so it needs the removal too */
    printf("\n== (b) remove a random %.0f %% of the full build%s ==\n", 100 * remove_fraction,
           pb ? "" : " (the pool of part (c); part (b)'s evaluation not selected)");
    size_t nr = (size_t)llround(remove_fraction * (double)n), m = n - nr;
    size_t *perm = random_permutation(n, seed);
    int64_t *rm_ids = xmalloc(nr * sizeof *rm_ids);
    unsigned char *gone = calloc(n, 1);
    if (!gone) return 1;
    for (size_t i = 0; i < nr; i++) {
        rm_ids[i] = (int64_t)perm[i];
        gone[perm[i]] = 1;
    }
    free(perm);
    const size_t rm_batch = 1000;
    size_t removed_total = 0, rm_calls = 0;
    clocks t_rm = {0};
    for (size_t i = 0; i < nr; i += rm_batch) {
        size_t cnt = nr - i < rm_batch ? nr - i : rm_batch, removed = 0;
        t0 = clocks_now();
        CHECK(avq_index_remove(full, rm_ids + i, cnt, &removed));
        clocks_add(&t_rm, clocks_since(t0));
        removed_total += removed;
        rm_calls++;
    }
    printf("removed %zu of %zu ids in %zu calls of %zu: %.0f ids/s (process CPU) %.0f (thread CPU) "
           "%.0f (wall)\n",
           removed_total, nr, rm_calls, rm_batch, (double)nr / t_rm.process,
           (double)nr / t_rm.thread, (double)nr / t_rm.wall);
    size_t still_there = 0, kept_missing = 0;
    for (size_t i = 0; i < n; i++) {
        int c = avq_index_contains(full, (int64_t)i);
        if (gone[i] && c) still_there++;
        if (!gone[i] && !c) kept_missing++;
    }
    int size_ok = avq_index_size(full) == m && removed_total == nr && !still_there && !kept_missing;
    printf("after removal: size %zu (expected %zu), contains() true for %zu removed ids, false for "
           "%zu kept ids%s\n",
           avq_index_size(full), m, still_there, kept_missing, size_ok ? "" : "  <- SUSPICIOUS");
    print_stats("removed", full);

    avq_search_params s90 = setting(k, full_L, full_R);
    double brec[2] = {0, 0}, drec_b = 0;
    int pass_b1 = 0, pass_b2 = 0;
    size_t returned_removed = 0, checked = 0, missing = 0, invalid = 0, *keep = NULL;
    queries QB = Q;
    QB.truth = NULL;
    avq_search_params bsp[2];
    if (pb) {
        keep = xmalloc(m * sizeof *keep);
        float *Y = xmalloc(m * d * sizeof *Y);
        for (size_t i = 0, j = 0; i < n; i++)
            if (!gone[i]) {
                keep[j] = i;
                memcpy(Y + j * d, X + i * d, d * sizeof *Y);
                j++;
            }
        QB.truth = exact_truth(Y, m, &QB, keep, &t_gt);
        QB.tcols = k;
        printf("exact truth over the %zu rows left: %.2f s wall\n", m, t_gt.wall);
        avq_index *fresh = NULL;
        t0 = clocks_now();
        CHECK(avq_index_build(Y, m, d, &bp, &fresh));
        printf("fresh index_build of the %zu rows left: %.2f s wall, %zu leaves\n", m,
               clocks_since(t0).wall, avq_index_num_leaves(fresh));
        print_stats("fresh build", fresh);

        /* recall at default settings and at the full build's 0.90 setting; every
         * result of the removed-from index checked for removed ids */
        avq_search_params_init(&bsp[0]);
        avq_search_params_init(&bsp[1]);
        avq_index_default_search_params(full, &bsp[0]);
        avq_index_default_search_params(fresh, &bsp[1]);
        bsp[0].k = bsp[1].k = k;
        double brec90[2] = {0, 0}, bqps[2] = {0, 0}, bqps_w[2] = {0, 0};
        for (int run = 0; run < runs; run++)
            for (int t = 0; t < 2; t++) {
                int s = run % 2 ? 1 - t : t;
                avq_index *ix = s ? fresh : full;
                clocks dt = search_pass(ix, &QB, &bsp[s], ids);
                if (s) map_ids(ids, QB.nq * k, keep);
                brec[s] = recall_of(&QB, ids);
                if ((double)QB.nq / dt.thread > bqps[s]) bqps[s] = (double)QB.nq / dt.thread;
                if ((double)QB.nq / dt.wall > bqps_w[s]) bqps_w[s] = (double)QB.nq / dt.wall;
                if (!s) {
                    size_t mi, inv;
                    returned_removed += count_flagged(ids, QB.nq * k, gone, n, &mi, &inv);
                    missing += mi;
                    invalid += inv;
                    checked += QB.nq * k;
                }
            }
        for (int s = 0; s < 2; s++) {
            avq_index *ix = s ? fresh : full;
            search_pass(ix, &QB, &s90, ids);
            if (s) map_ids(ids, QB.nq * k, keep);
            brec90[s] = recall_of(&QB, ids);
            if (!s) {
                size_t mi, inv;
                returned_removed += count_flagged(ids, QB.nq * k, gone, n, &mi, &inv);
                missing += mi;
                invalid += inv;
                checked += QB.nq * k;
            }
        }
        /* a wide setting too: many more leaves and candidates than needed */
        {
            size_t L = avq_index_num_leaves(full), wide = 4 * bsp[0].leaves_to_search;
            avq_search_params sw = setting(k, wide < L ? wide : L, 300);
            search_pass(full, &QB, &sw, ids);
            size_t mi, inv;
            returned_removed += count_flagged(ids, QB.nq * k, gone, n, &mi, &inv);
            missing += mi;
            invalid += inv;
            checked += QB.nq * k;
            printf("wide setting on the removed-from index (leaves %zu reorder 300): recall %.4f\n",
                   sw.leaves_to_search, recall_of(&QB, ids));
        }
        printf("recall@%zu against exact search over the rows left:\n", k);
        printf("  removed-from full build, default (leaves %zu reorder %zu): %.4f   QPS %.0f (CPU) "
               "%.0f "
               "(wall)\n",
               bsp[0].leaves_to_search, bsp[0].pre_reorder, brec[0], bqps[0], bqps_w[0]);
        printf("  fresh build,             default (leaves %zu reorder %zu): %.4f   QPS %.0f (CPU) "
               "%.0f "
               "(wall)\n",
               bsp[1].leaves_to_search, bsp[1].pre_reorder, brec[1], bqps[1], bqps_w[1]);
        printf(
            "  at the full build's 0.90 setting (leaves %zu reorder %zu): removed-from %.4f, fresh "
            "%.4f\n",
            full_L, full_R, brec90[0], brec90[1]);
        printf("removed ids returned: %zu (of %zu result slots checked over %zu passes); -1 slots "
               "%zu, "
               "ids out of range %zu\n",
               returned_removed, checked, checked / (QB.nq * k), missing, invalid);

        avq_index_free(fresh);
        free(Y);
    }

    /* compaction (also before a part (c) without (b): same state); with (b),
     * the results must not change */
    size_t compacted = 0;
    t0 = clocks_now();
    CHECK(avq_index_compact(full, 0.0, &compacted));
    clocks t_compact = clocks_since(t0);
    printf("compact(0): %zu leaves rewritten in %.2f s wall\n", compacted, t_compact.wall);
    print_stats("compacted", full);
    if (pb) {
        search_pass(full, &QB, &bsp[0], ids);
        double rec_after_compact = recall_of(&QB, ids);
        {
            size_t mi, inv;
            size_t hits = count_flagged(ids, QB.nq * k, gone, n, &mi, &inv);
            returned_removed += hits;
            missing += mi;
            invalid += inv;
        }
        printf("recall at default settings after compact(0): %.4f (before %.4f)%s\n",
               rec_after_compact, brec[0],
               fabs(rec_after_compact - brec[0]) > 0.0005 ? "  <- SUSPICIOUS" : "");
        drec_b = brec[0] - brec[1];
        pass_b1 = drec_b >= -0.005;
        pass_b2 = returned_removed == 0 && invalid == 0 && size_ok;
    }

    /* =================== (c) search while one writer works =================== */
    phase_acc acc[3];
    memset(acc, 0, sizeof acc);
    double cq[3] = {0, 0, 0}, cqw[3] = {0, 0, 0}, cratio = 0, cratio_w = 0, wrate = 0;
    int pass_c = 0, pass_cw = 0, rate_ok = 0, c_ok = 0;
    if (pc) {
        printf("\n== (c) single-query search while a writer adds %.0f vectors/s (and removes them) "
               "==\n",
               rate);
        writer w;
        memset(&w, 0, sizeof w);
        w.idx = full;
        w.base = X;
        w.dim = d;
        w.pool = rm_ids;
        w.npool = nr;
        w.batch = wbatch;
        w.period = (double)wbatch / rate;
        atomic_init(&w.cmd, W_IDLE);
        atomic_init(&w.state, W_IDLE);
        atomic_init(&w.failed, 0);
        if (w.npool < 2 * w.batch) {
            fprintf(stderr, "living: too few removed vectors for the writer\n");
            return 1;
        }
        blas_set(1);
        pthread_t wt;
        if (pthread_create(&wt, NULL, writer_main, &w) != 0) {
            fprintf(stderr, "living: pthread_create failed\n");
            return 1;
        }
        avq_search_params sc = s90;
        printf(
            "searcher: leaves %zu reorder %zu (the full build's 0.90 setting), %d phases of %.1f s "
            "alternating without / with the writer (%zu vectors every %.1f ms)\n",
            sc.leaves_to_search, sc.pre_reorder, phases, phase_s, wbatch, 1e3 * w.period);
        search_pass(full, &QB, &sc, ids); /* warm-up */
        double on_wall = 0;
        size_t c_missing = 0, c_invalid = 0, c_dups = 0;
        static const char *const kind_name[3] = {"without writer", "with writer", "with spinner"};
        for (int p = 0; p < phases; p++) {
            int on = control ? p % 3 : p % 2;
            size_t added0 = w.added, count0 = acc[on].count, spin0 = w.spin_ticks;
            if (on == 2) /* the writer's CPU per tick so far (2 ms before any) */
                w.spin_cpu = w.ticks ? w.busy_cpu / (double)w.ticks : 0.002;
            if (on) {
                int cmd = on == 1 ? W_RUN : W_SPIN;
                atomic_store(&w.cmd, cmd);
                while (atomic_load(&w.state) != cmd && !atomic_load(&w.failed))
                    sleep_until(clock_s(CLOCK_MONOTONIC) + 0.0002);
            }
            clocks p0 = clocks_now();
            double end = p0.wall + phase_s, tq = p0.wall;
            size_t qi = 0;
            int64_t res[64];
            int64_t *r = k <= 64 ? res : ids;
            for (;;) {
                CHECK(avq_index_search(full, QB.q + qi * d, &sc, r, NULL));
                double t1 = clock_s(CLOCK_MONOTONIC);
                lat_push(&acc[on], (float)(1e6 * (t1 - tq)));
                tq = t1;
                acc[on].count++;
                for (size_t a = 0; a < k; a++) {
                    if (r[a] == AVQ_NO_ID) {
                        c_missing++;
                        continue;
                    }
                    if (r[a] < 0 || (uint64_t)r[a] >= n) c_invalid++;
                    for (size_t b = a + 1; b < k; b++) c_dups += r[a] == r[b];
                }
                if (++qi == QB.nq) qi = 0;
                if (t1 >= end) break;
            }
            clocks dt = clocks_since(p0);
            acc[on].wall += dt.wall;
            acc[on].thread += dt.thread;
            if (on) {
                atomic_store(&w.cmd, W_IDLE);
                while (atomic_load(&w.state) != W_IDLE)
                    sleep_until(clock_s(CLOCK_MONOTONIC) + 0.0002);
                if (on == 1) on_wall += dt.wall;
            }
            size_t cnt = acc[on].count - count0;
            printf("  phase %d %-14s %7zu queries: QPS %.0f (CPU) %.0f (wall)", p + 1,
                   kind_name[on], cnt, (double)cnt / dt.thread, (double)cnt / dt.wall);
            if (on == 1)
                printf(", writer added %zu (%.0f/s)", w.added - added0,
                       (double)(w.added - added0) / dt.wall);
            if (on == 2)
                printf(", spinner %zu ticks of %.2f ms CPU", w.spin_ticks - spin0,
                       1e3 * w.spin_cpu);
            printf("\n");
            fflush(stdout);
        }
        atomic_store(&w.cmd, W_QUIT);
        pthread_join(wt, NULL);
        blas_set(blas_default);
        if (atomic_load(&w.failed)) printf("WRITER FAILED: %s\n", w.err);
        int kinds = control ? 3 : 2;
        for (int on = 0; on < kinds; on++) {
            cq[on] = (double)acc[on].count / acc[on].thread;
            cqw[on] = (double)acc[on].count / acc[on].wall;
            qsort(acc[on].lat_us, acc[on].nlat, sizeof *acc[on].lat_us, cmp_float);
        }
        for (int on = 0; on < kinds; on++)
            printf(
                "  %-14s %8zu queries in %.1f s: QPS %.0f (CPU) %.0f (wall); latency us p50 %.1f "
                "p99 %.1f p99.9 %.1f max %.0f\n",
                kind_name[on], acc[on].count, acc[on].wall, cq[on], cqw[on],
                pct(acc[on].lat_us, acc[on].nlat, 0.5), pct(acc[on].lat_us, acc[on].nlat, 0.99),
                pct(acc[on].lat_us, acc[on].nlat, 0.999), pct(acc[on].lat_us, acc[on].nlat, 1.0));
        printf("  writer: %zu batches, %zu added, %zu removed (%zu ids not found at removal), "
               "%.0f vectors/s over %.1f s with it on, %zu ticks late;\n"
               "          add %.2f ms mean %.2f ms max, remove %.2f ms mean %.2f ms max per call; "
               "writer CPU %.1f %% of one core\n",
               w.ticks, w.added, w.removed, w.remove_short, (double)w.added / on_wall, on_wall,
               w.late, w.ticks ? 1e3 * w.add_s / (double)w.ticks : 0, 1e3 * w.add_max,
               w.ticks ? 1e3 * w.rm_s / (double)w.ticks : 0, 1e3 * w.rm_max,
               100 * w.busy_cpu / on_wall);
        if (control)
            printf("  control: a spinner on the writer's schedule burning %.2f ms CPU per tick "
                   "(%.1f %% of one core) without touching the index: QPS ratio to no writer "
                   "%.3fx (CPU) %.3fx (wall)\n",
                   1e3 * w.spin_cpu, 100 * w.spin_busy / (w.spin_wall > 0 ? w.spin_wall : 1),
                   cq[2] / cq[0], cqw[2] / cqw[0]);
        size_t c_left = 0;
        for (size_t i = 0; i < nr; i++) c_left += avq_index_contains(full, rm_ids[i]) != 0;
        c_ok = !atomic_load(&w.failed) && avq_index_size(full) == m && c_left == 0 &&
               w.removed == w.added && c_invalid == 0 && c_dups == 0 && c_missing == 0;
        printf(
            "  after: size %zu (expected %zu), writer ids still present %zu; results with -1 %zu, "
            "out-of-range ids %zu, duplicate ids %zu%s\n",
            avq_index_size(full), m, c_left, c_missing, c_invalid, c_dups,
            c_ok ? "" : "  <- SUSPICIOUS");
        print_stats("after (c)", full);
        cratio = cq[1] / cq[0];
        cratio_w = cqw[1] / cqw[0];
        wrate = (double)w.added / on_wall;
        pass_c = cratio >= 0.85;
        pass_cw = cratio_w >= 0.85;
        rate_ok = wrate >= 0.95 * rate;
    }

    /* =================== summary =================== */
    clocks t_all = clocks_since(t_total);
    printf("\n== summary (%zu base rows, %zu queries, recall@%zu; QPS one thread, one query per "
           "call) ==\n",
           n, Q.nq, k);
    if (pa) {
        printf("%s  (a) recall at default settings: incremental %.4f vs full build %.4f (%+.4f; "
               "target "
               ">= -0.01)\n",
               verdict(pass_a1), drec[0], drec[1], drec_a);
        printf("%s  (a) QPS at recall >= 0.90: incremental %.0f vs full build %.0f = %.3fx by "
               "thread CPU "
               "(wall: %.0f vs %.0f = %.3fx; target >= 0.95x)\n",
               verdict(pass_a2), q90[0], q90[1], qratio, q90w[0], q90w[1], qratio_w);
        printf("%s  (a) adds, one thread: %.0f vectors/s per core over all %zu adds (first half in "
               "one "
               "call %.0f/s; wall %.0f/s; target >= 50000)\n",
               verdict(pass_a3), add_rate, n, add_rate1, (double)n / t_add.wall);
        printf(
            "%s  (a) adds of the second half in %zu calls: %.0f vectors/s per core (wall %.0f/s; "
            "target >= 50000)\n",
            verdict(pass_a3b), calls2, add_rate2, (double)(n - h) / t_add2.wall);
    }
    printf("info  (b) remove: %.0f ids/s (process CPU), %.0f ids/s (wall), calls of %zu ids\n",
           (double)nr / t_rm.process, (double)nr / t_rm.wall, rm_batch);
    if (pb) {
        printf(
            "%s  (b) recall after removing %.0f %%: removed-from %.4f vs fresh build %.4f (%+.4f; "
            "target >= -0.005)\n",
            verdict(pass_b1), 100 * remove_fraction, brec[0], brec[1], drec_b);
        printf("%s  (b) removed ids returned: %zu in %zu result slots (target 0)\n",
               verdict(pass_b2), returned_removed, checked);
    }
    if (pc) {
        printf(
            "%s  (c) QPS with the writer / without: %.0f / %.0f = %.3fx by thread CPU (target >= "
            "0.85x)\n",
            verdict(pass_c), cq[1], cq[0], cratio);
        printf("%s  (c) the same by wall clock: %.0f / %.0f = %.3fx (target >= 0.85x)\n",
               verdict(pass_cw), cqw[1], cqw[0], cratio_w);
        printf("%s  (c) writer rate achieved: %.0f vectors/s (asked %.0f); index consistent after: "
               "%s\n",
               verdict(rate_ok && c_ok), wrate, rate, c_ok ? "yes" : "NO");
    }
    printf("whole run: %.1f s wall\n", t_all.wall);
    print_loadavg("end");

    for (int on = 0; on < 3; on++) free(acc[on].lat_us);
    avq_index_free(full);
    free(QB.truth);
    free(keep);
    free(gone);
    free(rm_ids);
    free(ids);
    if (Q.truth != gm.data) free(Q.truth);
    int_matrix_free(&gm);
    float_matrix_free(&bm);
    float_matrix_free(&qm);
    return 0;
}
