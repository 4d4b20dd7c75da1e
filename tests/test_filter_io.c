/*
 * test_filter_io.c -- tags in index files (format version 3).
 *
 * Against a model kept by the test (every id's vector and tag set):
 *   - a tagged index saves as version 3 with its five tag sections, and
 *     loads (copy, mmap, mmap without checksums, bytes) with the same tags
 *     of every id, the same tag counts and statistics, and bit-identical
 *     filtered search results; saving the loaded index gives the same bytes;
 *   - filtered exhaustive searches equal a brute-force filtered search over
 *     the model (float re-ranking and the exact tier);
 *   - a loaded index (its leaves and tag lists in the mapping) changes --
 *     add_tagged, remove, set_tags, upsert, upsert_tagged, compact -- and
 *     its tags stay those of the model, through further saves and loads;
 *   - an index without tags saves as version 2, without tag sections, and
 *     an index whose tags were all cleared saves as version 2 again;
 *   - damaged tag sections (unsorted or repeated keys, slots out of range,
 *     out of order or dead, posting starts that do not span, key or posting
 *     offsets off by one, missing, repeated or unexpected sections, other
 *     versions, truncation, extreme words, bit flips) are refused with
 *     AVQ_ERR_FORMAT -- with their checksums repaired and, for the
 *     structural damage, as they are under AVQ_LOAD_SKIP_CHECKSUMS -- or, where the
 *     damage leaves a valid file, load into an index that works;
 *   - fuzz/corpus-v3/ (written by this file, see below) replays as named.
 *
 * Regenerate the v3 seed corpus: AVQ_WRITE_CORPUS_V3=fuzz/corpus-v3
 *   build/test_avq --filter 'filter_io_corpus/v3_seed_corpus_replays_as_named'
 */
#include <sys/mman.h>

#include "living_common.h"
#include "../fuzz/avq_file.h" /* fuzz/ is not on the include path */

enum { DIM = 12, N0 = 600, N_ADD = 150, MAXID = 2048, MAXT = 16, NQ = 5, K = 10 };

/* Tag values: small, large, and the extremes of uint32 (no value is
 * reserved).  The generator prefers the first ones (a skewed popularity). */
static const uint32_t UNIVERSE[] = {0, 1, 2, 3, 5, 8, 13, 100, 1000, 65536,
                                    0x7FFFFFFFu, 0xFFFFFFFEu, 0xFFFFFFFFu};
#define NU (sizeof UNIVERSE / sizeof UNIVERSE[0])
#define NOBODY 424242u /* no vector carries it */

/* ---- the model --------------------------------------------------------------- */

typedef struct {
    avq_metric metric;
    float rows[MAXID][DIM];
    bool present[MAXID];
    uint32_t tags[MAXID][MAXT]; /* ascending, distinct */
    uint8_t ntags[MAXID];
} model;

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void model_set_tags(model *m, int64_t id, const uint32_t *t, size_t nt) {
    cr_assert(nt <= MAXT);
    uint32_t tmp[MAXT];
    memcpy(tmp, t, nt * sizeof *t);
    qsort(tmp, nt, sizeof *tmp, cmp_u32);
    size_t k = 0;
    for (size_t i = 0; i < nt; i++)
        if (k == 0 || tmp[i] != tmp[k - 1]) tmp[k++] = tmp[i];
    memcpy(m->tags[id], tmp, k * sizeof *tmp);
    m->ntags[id] = (uint8_t)k;
}

static bool model_has(const model *m, int64_t id, uint32_t tag) {
    for (size_t i = 0; i < m->ntags[id]; i++)
        if (m->tags[id][i] == tag) return true;
    return false;
}

/* CSR tags for n vectors: a fifth without tags, the others 1..4 tags drawn
 * with a skew, a quarter of those with one listed twice, in draw order. */
typedef struct {
    size_t n;
    size_t *off;
    uint32_t *tags;
} csr;

static csr gen_tags(size_t n, uint64_t seed) {
    csr c = {n, malloc((n + 1) * sizeof(size_t)), malloc((n * 5 + 1) * sizeof(uint32_t))};
    cr_assert(c.off && c.tags);
    uint64_t rng = seed;
    size_t at = 0;
    c.off[0] = 0;
    for (size_t i = 0; i < n; i++) {
        size_t cnt = lv_rng(&rng) % 5 == 0 ? 0 : 1 + lv_rng(&rng) % 4;
        for (size_t j = 0; j < cnt; j++) {
            size_t a = lv_rng(&rng) % NU, b = lv_rng(&rng) % NU;
            c.tags[at++] = UNIVERSE[a < b ? a : b];
        }
        if (cnt && lv_rng(&rng) % 4 == 0) {
            uint32_t again = c.tags[at - 1];
            c.tags[at++] = again;
        }
        c.off[i + 1] = at;
    }
    return c;
}

static void csr_free(csr *c) {
    free(c->off);
    free(c->tags);
}

/* ---- writers that keep the model ------------------------------------------------ */

static void op_set_tags(avq_index *x, model *m, const int64_t *ids, const csr *c) {
    cr_assert_eq(avq_index_set_tags(x, ids, c->n, c->off, c->tags), AVQ_OK, "set_tags: %s",
                 avq_last_error());
    for (size_t i = 0; i < c->n; i++)
        model_set_tags(m, ids[i], c->tags + c->off[i], c->off[i + 1] - c->off[i]);
}

static void op_add_tagged(avq_index *x, model *m, const float *rows, const int64_t *ids,
                          const csr *c) {
    cr_assert_eq(avq_index_add_tagged(x, rows, c->n, ids, c->off, c->tags, 2, NULL), AVQ_OK,
                 "add_tagged: %s", avq_last_error());
    for (size_t i = 0; i < c->n; i++) {
        cr_assert(!m->present[ids[i]]);
        m->present[ids[i]] = true;
        memcpy(m->rows[ids[i]], rows + i * DIM, sizeof m->rows[0]);
        model_set_tags(m, ids[i], c->tags + c->off[i], c->off[i + 1] - c->off[i]);
    }
}

static void op_remove(avq_index *x, model *m, const int64_t *ids, size_t n) {
    size_t removed = 0, want = 0;
    for (size_t i = 0; i < n; i++) want += m->present[ids[i]];
    cr_assert_eq(avq_index_remove(x, ids, n, &removed), AVQ_OK, "remove: %s", avq_last_error());
    cr_assert_eq(removed, want);
    for (size_t i = 0; i < n; i++) {
        m->present[ids[i]] = false;
        m->ntags[ids[i]] = 0;
    }
}

/* Plain upsert: replaced vectors keep their tags, new ones have none. */
static void op_upsert(avq_index *x, model *m, const float *rows, const int64_t *ids, size_t n) {
    size_t replaced = 0, want = 0;
    for (size_t i = 0; i < n; i++) want += m->present[ids[i]];
    cr_assert_eq(avq_index_upsert(x, rows, n, ids, 2, &replaced), AVQ_OK, "upsert: %s",
                 avq_last_error());
    cr_assert_eq(replaced, want);
    for (size_t i = 0; i < n; i++) {
        if (!m->present[ids[i]]) m->ntags[ids[i]] = 0;
        m->present[ids[i]] = true;
        memcpy(m->rows[ids[i]], rows + i * DIM, sizeof m->rows[0]);
    }
}

static void op_upsert_tagged(avq_index *x, model *m, const float *rows, const int64_t *ids,
                             const csr *c) {
    cr_assert_eq(avq_index_upsert_tagged(x, rows, c->n, ids, c->off, c->tags, 2, NULL), AVQ_OK,
                 "upsert_tagged: %s", avq_last_error());
    for (size_t i = 0; i < c->n; i++) {
        m->present[ids[i]] = true;
        memcpy(m->rows[ids[i]], rows + i * DIM, sizeof m->rows[0]);
        model_set_tags(m, ids[i], c->tags + c->off[i], c->off[i + 1] - c->off[i]);
    }
}

/* ---- configurations ------------------------------------------------------------- */

typedef struct {
    const char *name;
    avq_metric metric;
    int bits;
    avq_reorder reorder;
    size_t leaves, brute_below;
} config;

static const config CONFIGS[] = {
    {"exact_l2", AVQ_METRIC_L2, 4, AVQ_REORDER_FLOAT, 0, 100000},
    {"pq4_dot_float", AVQ_METRIC_DOT, 4, AVQ_REORDER_FLOAT, 5, 0},
    {"pq4_cos_float", AVQ_METRIC_COSINE, 4, AVQ_REORDER_FLOAT, 4, 0},
    {"pq8_l2_int8", AVQ_METRIC_L2, 8, AVQ_REORDER_INT8, 3, 0},
    {"pq4_l2_none", AVQ_METRIC_L2, 4, AVQ_REORDER_NONE, 4, 0},
};
#define NCONFIGS (sizeof CONFIGS / sizeof CONFIGS[0])

static float *queries;

/* Built with ids 0..N0-1, then tagged, N_ADD vectors added with tags at
 * ids N0.., every fifth of the first ones removed (compaction off: dead
 * slots, a LIVE section), some tags replaced. */
static avq_index *make_tagged(const config *c, model *m, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->metric = c->metric;
    float *rows = lv_clustered(N0 + N_ADD, DIM, seed);
    avq_build_params p = lv_params(c->metric, c->bits, c->reorder, c->leaves, c->brute_below);
    avq_index *x = lv_build(rows, N0, DIM, &p);
    cr_assert_eq(avq_index_set_compact_threshold(x, 0), AVQ_OK);
    for (size_t i = 0; i < N0; i++) {
        m->present[i] = true;
        memcpy(m->rows[i], rows + i * DIM, sizeof m->rows[0]);
    }
    int64_t ids[N0];
    for (size_t i = 0; i < N0; i++) ids[i] = (int64_t)i;
    csr t = gen_tags(N0, seed + 1);
    op_set_tags(x, m, ids, &t);
    csr_free(&t);
    int64_t more[N_ADD];
    for (size_t i = 0; i < N_ADD; i++) more[i] = (int64_t)(N0 + i);
    t = gen_tags(N_ADD, seed + 2);
    op_add_tagged(x, m, rows + N0 * DIM, more, &t);
    csr_free(&t);
    int64_t rm[N0 / 5];
    for (size_t i = 0; i < N0 / 5; i++) rm[i] = (int64_t)(5 * i);
    op_remove(x, m, rm, N0 / 5);
    int64_t re[40];
    size_t nre = 0;
    for (int64_t id = 1; nre < 40; id += 7)
        if (m->present[id]) re[nre++] = id;
    t = gen_tags(40, seed + 3);
    op_set_tags(x, m, re, &t);
    csr_free(&t);
    free(rows);
    return x;
}

/* ---- checks against the model ----------------------------------------------------- */

static void check_tags(const avq_index *x, const model *m, const char *what) {
    size_t live = 0, tagged = 0, postings = 0;
    size_t carriers[NU] = {0};
    for (int64_t id = 0; id < MAXID; id++) {
        uint32_t got[AVQ_MAX_TAGS_PER_VECTOR];
        size_t count = 12345;
        int st = avq_index_get_tags(x, id, NULL, 0, &count);
        if (!m->present[id]) {
            cr_assert_eq(st, AVQ_ERR_INVALID, "%s: get_tags of absent id %lld: %d", what,
                         (long long)id, st);
            continue;
        }
        live++;
        cr_assert_eq(st, AVQ_OK, "%s: get_tags(%lld): %s", what, (long long)id, avq_last_error());
        cr_assert_eq(count, m->ntags[id], "%s: id %lld has %zu tags, expected %u", what,
                     (long long)id, count, m->ntags[id]);
        cr_assert_eq(avq_index_get_tags(x, id, got, AVQ_MAX_TAGS_PER_VECTOR, &count), AVQ_OK);
        for (size_t i = 0; i < count; i++)
            cr_assert_eq(got[i], m->tags[id][i], "%s: id %lld tag %zu: %u, expected %u", what,
                         (long long)id, i, got[i], m->tags[id][i]);
        tagged += count > 0;
        postings += count;
        for (size_t u = 0; u < NU; u++) carriers[u] += model_has(m, id, UNIVERSE[u]);
    }
    cr_assert_eq(avq_index_size(x), live, "%s: %zu live, model %zu", what, avq_index_size(x), live);
    size_t distinct = 0;
    for (size_t u = 0; u < NU; u++) {
        cr_assert_eq(avq_index_tag_count(x, UNIVERSE[u]), carriers[u],
                     "%s: tag %u counted %zu times, carried by %zu", what, UNIVERSE[u],
                     avq_index_tag_count(x, UNIVERSE[u]), carriers[u]);
        distinct += carriers[u] > 0;
    }
    cr_assert_eq(avq_index_tag_count(x, NOBODY), 0, "%s", what);
    avq_index_stats st = lv_stats(x);
    cr_assert_eq(st.tagged, tagged, "%s: stats.tagged %zu, model %zu", what, st.tagged, tagged);
    cr_assert_eq(st.tag_postings, postings, "%s: stats.tag_postings %zu, model %zu", what,
                 st.tag_postings, postings);
    cr_assert_eq(st.distinct_tags, distinct, "%s: stats.distinct_tags %zu, model %zu", what,
                 st.distinct_tags, distinct);
}

/* The tag filters every check runs. */
typedef struct {
    bool all;
    size_t n;
    uint32_t tags[3];
} filter_desc;

static const filter_desc FILTERS[] = {
    {false, 1, {0}},          {false, 1, {13}},        {false, 1, {0xFFFFFFFFu}},
    {false, 3, {1, 13, 0xFFFFFFFEu}}, {true, 2, {0, 1}}, {true, 1, {2}},
    {true, 2, {0, 0x7FFFFFFFu}}, {false, 1, {NOBODY}},
};
#define NFILTERS (sizeof FILTERS / sizeof FILTERS[0])

static avq_filter *make_filter(const filter_desc *d) {
    avq_filter *f = NULL;
    int st = d->all ? avq_filter_tags_all(d->tags, d->n, &f) : avq_filter_tags_any(d->tags, d->n, &f);
    cr_assert_eq(st, AVQ_OK, "filter: %s", avq_last_error());
    return f;
}

static bool allows(const filter_desc *d, const model *m, int64_t id) {
    size_t hits = 0;
    for (size_t i = 0; i < d->n; i++) hits += model_has(m, id, d->tags[i]);
    return d->all ? hits == d->n : hits > 0;
}

static double true_score(const model *m, const float *q, int64_t id) {
    double dot = 0, qq = 0, xx = 0, l2 = 0;
    for (size_t j = 0; j < DIM; j++) {
        double a = q[j], b = m->rows[id][j];
        dot += a * b;
        qq += a * a;
        xx += b * b;
        l2 += (a - b) * (a - b);
    }
    if (m->metric == AVQ_METRIC_L2) return l2;
    if (m->metric == AVQ_METRIC_COSINE) return dot / sqrt(qq * xx);
    return dot;
}

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Every filter, exhaustive search (all leaves, every allowed vector a
 * candidate): the results are allowed live ids, as many as there are
 * allowed vectors up to k, and with exact re-ranking data their scores are
 * those of a brute-force filtered search, rank by rank. */
static void check_filtered(const avq_index *x, const model *m, bool exact, const char *what) {
    for (size_t f = 0; f < NFILTERS; f++) {
        const filter_desc *d = &FILTERS[f];
        avq_filter *flt = make_filter(d);
        avq_search_params sp = lv_exhaustive(x, K, MAXID);
        sp.filter = flt;
        sp.filter_min_scanned = MAXID;
        double truth[MAXID];
        for (size_t qi = 0; qi < NQ; qi++) {
            const float *q = queries + qi * DIM;
            size_t allowed = 0;
            for (int64_t id = 0; id < MAXID; id++)
                if (m->present[id] && allows(d, m, id)) {
                    double s = true_score(m, q, id);
                    truth[allowed++] = m->metric == AVQ_METRIC_L2 ? -s : s;
                }
            qsort(truth, allowed, sizeof *truth, cmp_desc);
            int64_t ids[K];
            float scores[K];
            cr_assert_eq(avq_index_search(x, q, &sp, ids, scores), AVQ_OK, "%s: filter %zu: %s",
                         what, f, avq_last_error());
            lv_check_row(ids, scores, K, m->metric, what, qi);
            size_t want = allowed < K ? allowed : K;
            for (size_t r = 0; r < K; r++) {
                if (r >= want) {
                    cr_assert_eq(ids[r], AVQ_NO_ID, "%s: filter %zu query %zu rank %zu: id %lld, "
                                 "only %zu allowed", what, f, qi, r, (long long)ids[r], allowed);
                    continue;
                }
                int64_t id = ids[r];
                cr_assert(id >= 0 && id < MAXID && m->present[id], "%s: filter %zu: id %lld is "
                          "not in the index", what, f, (long long)id);
                cr_assert(allows(d, m, id), "%s: filter %zu query %zu: id %lld is not allowed",
                          what, f, qi, (long long)id);
                if (exact) {
                    double want_s = m->metric == AVQ_METRIC_L2 ? -truth[r] : truth[r];
                    double own = true_score(m, q, id);
                    cr_assert(fabs(scores[r] - want_s) <= 1e-4 * (1 + fabs(want_s)),
                              "%s: filter %zu query %zu rank %zu: score %.7g, brute force %.7g",
                              what, f, qi, r, (double)scores[r], want_s);
                    cr_assert(fabs(scores[r] - own) <= 1e-4 * (1 + fabs(own)),
                              "%s: filter %zu: id %lld scored %.7g, its score is %.7g", what, f,
                              (long long)id, (double)scores[r], own);
                }
            }
        }
        avq_filter_free(flt);
    }
}

static bool exact_config(const config *c) { return c->reorder == AVQ_REORDER_FLOAT; }

static void check_all(const avq_index *x, const model *m, const config *c, const char *what) {
    check_tags(x, m, what);
    check_filtered(x, m, exact_config(c), what);
}

/* Filtered results of every filter, default and exhaustive parameters. */
static lv_results snapshot(const avq_index *x, const char *what) {
    size_t rows = 2 * NFILTERS * NQ;
    lv_results r = {rows, K, malloc(rows * K * sizeof(int64_t)), malloc(rows * K * sizeof(float))};
    cr_assert(r.ids && r.scores);
    size_t at = 0;
    for (int e = 0; e < 2; e++)
        for (size_t f = 0; f < NFILTERS; f++) {
            avq_filter *flt = make_filter(&FILTERS[f]);
            avq_search_params sp = e ? lv_exhaustive(x, K, MAXID) : lv_default(x, K);
            sp.filter = flt;
            for (size_t qi = 0; qi < NQ; qi++, at++)
                cr_assert_eq(avq_index_search(x, queries + qi * DIM, &sp, r.ids + at * K,
                                              r.scores + at * K), AVQ_OK, "%s: %s", what,
                             avq_last_error());
            avq_filter_free(flt);
        }
    return r;
}

/* ---- saving and loading ------------------------------------------------------------ */

enum { M_COPY, M_MMAP, M_MMAP_SKIP, M_BYTES, NMODES };
static const char *const MODE_NAMES[NMODES] = {"copy", "mmap", "mmap+skip", "bytes"};
static const unsigned MODE_FLAGS[3] = {AVQ_LOAD_COPY, AVQ_LOAD_MMAP,
                                       AVQ_LOAD_MMAP | AVQ_LOAD_SKIP_CHECKSUMS};

static avq_index *reload(const avq_index *x, int mode, const char *name) {
    avq_index *y = NULL;
    if (mode == M_BYTES) {
        size_t size;
        uint8_t *b = lv_bytes(x, &size);
        cr_assert_eq(avq_index_load_bytes(b, size, &y), AVQ_OK, "load_bytes: %s", avq_last_error());
        free(b);
    } else {
        const char *path = lv_path(name);
        cr_assert_eq(avq_index_save(x, path), AVQ_OK, "save: %s", avq_last_error());
        cr_assert_eq(avq_index_load(path, MODE_FLAGS[mode], &y), AVQ_OK, "load %s: %s",
                     MODE_NAMES[mode], avq_last_error());
    }
    cr_assert_not_null(y);
    return y;
}

static const uint32_t TAG_SECTIONS[5] = {
    AVQF_TAG('T', 'K', 'O', 'F'), AVQF_TAG('T', 'S', 'O', 'F'), AVQF_TAG('T', 'K', 'E', 'Y'),
    AVQF_TAG('T', 'P', 'O', 'S'), AVQF_TAG('T', 'S', 'L', 'T'),
};

/* The format version of a saved image, and how many tag sections it has. */
static unsigned image_version(const uint8_t *b, size_t size, size_t *tag_sections) {
    avqf_section s[AVQF_MAX_SECTIONS];
    size_t count = avqf_sections(b, size, s, AVQF_MAX_SECTIONS);
    *tag_sections = 0;
    for (size_t t = 0; t < 5; t++) *tag_sections += avqf_find(s, count, TAG_SECTIONS[t]) >= 0;
    return avqf_get32(b + 8);
}

static void suite_setup(void) { queries = lv_clustered(NQ, DIM, 77); }
static void suite_teardown(void) {
    free(queries);
    lv_tmpdir_remove();
}

TestSuite(filter_io, .init = suite_setup, .fini = suite_teardown, .timeout = 300);

/* A tagged index round-trips in every mode: tags, counts, statistics,
 * results, and the bytes it saves. */
static void round_trip(const config *c) {
    static model m;
    avq_index *x = make_tagged(c, &m, 11);
    check_all(x, &m, c, c->name);
    size_t size;
    uint8_t *saved = lv_bytes(x, &size);
    size_t ts;
    cr_assert_eq(image_version(saved, size, &ts), 3u, "%s: a tagged index saved as version %u",
                 c->name, image_version(saved, size, &ts));
    cr_assert_eq(ts, 5, "%s: %zu tag sections", c->name, ts);
    lv_results before = snapshot(x, c->name);
    for (int mode = 0; mode < NMODES; mode++) {
        char what[120];
        snprintf(what, sizeof what, "%s loaded (%s)", c->name, MODE_NAMES[mode]);
        avq_index *y = reload(x, mode, "round.avq");
        check_all(y, &m, c, what);
        lv_results after = snapshot(y, what);
        lv_expect_same(&before, &after, what);
        lv_results_free(&after);
        size_t size2;
        uint8_t *again = lv_bytes(y, &size2);
        cr_assert(size2 == size && memcmp(again, saved, size) == 0,
                  "%s: the loaded index saves other bytes (%zu vs %zu)", what, size2, size);
        free(again);
        avq_index_free(y);
    }
    /* the file avq_index_save writes is the bytes avq_index_save_bytes gives */
    const char *path = lv_path("file.avq");
    cr_assert_eq(avq_index_save(x, path), AVQ_OK, "%s", avq_last_error());
    size_t fsize;
    uint8_t *file = lv_read_file(path, &fsize);
    cr_assert(fsize == size && memcmp(file, saved, size) == 0, "%s: file and bytes differ", c->name);
    free(file);
    lv_results_free(&before);
    free(saved);
    avq_index_free(x);
}

Test(filter_io, round_trip_exact_l2) { round_trip(&CONFIGS[0]); }
Test(filter_io, round_trip_pq4_dot_float) { round_trip(&CONFIGS[1]); }
Test(filter_io, round_trip_pq4_cos_float) { round_trip(&CONFIGS[2]); }
Test(filter_io, round_trip_pq8_l2_int8) { round_trip(&CONFIGS[3]); }
Test(filter_io, round_trip_pq4_l2_none) { round_trip(&CONFIGS[4]); }

/* A loaded index changes and keeps its tags right: its leaves and their tag
 * lists point into the mapping until a change copies them. */
static void loaded_changes(const config *c, int mode) {
    static model m;
    avq_index *x0 = make_tagged(c, &m, 21);
    avq_index *x = reload(x0, mode, "changes.avq");
    avq_index_free(x0);
    cr_assert_eq(avq_index_set_compact_threshold(x, 0), AVQ_OK);
    char what[160];
    float *rows = lv_clustered(400, DIM, 22);
    /* add with tags (new ids, some with none) */
    int64_t ids[100];
    for (size_t i = 0; i < 60; i++) ids[i] = (int64_t)(N0 + N_ADD + i);
    csr t = gen_tags(60, 23);
    op_add_tagged(x, &m, rows, ids, &t);
    csr_free(&t);
    snprintf(what, sizeof what, "%s/%s: after add_tagged", c->name, MODE_NAMES[mode]);
    check_all(x, &m, c, what);
    /* remove, tagged and untagged ids, in several leaves */
    for (size_t i = 0; i < 50; i++) ids[i] = (int64_t)(11 * i + 3);
    op_remove(x, &m, ids, 50);
    snprintf(what, sizeof what, "%s/%s: after remove", c->name, MODE_NAMES[mode]);
    check_all(x, &m, c, what);
    /* new tags for existing ids (some to none) */
    size_t ne = 0;
    for (int64_t id = 2; id < N0 && ne < 70; id += 9)
        if (m.present[id]) ids[ne++] = id;
    t = gen_tags(ne, 24);
    op_set_tags(x, &m, ids, &t);
    csr_free(&t);
    snprintf(what, sizeof what, "%s/%s: after set_tags", c->name, MODE_NAMES[mode]);
    check_all(x, &m, c, what);
    /* plain upsert keeps tags; new ids get none */
    size_t nu = 0;
    for (int64_t id = 4; id < N0 && nu < 30; id += 13)
        if (m.present[id]) ids[nu++] = id;
    for (size_t i = 0; i < 10; i++) ids[nu++] = (int64_t)(1500 + i);
    op_upsert(x, &m, rows + 100 * DIM, ids, nu);
    snprintf(what, sizeof what, "%s/%s: after upsert", c->name, MODE_NAMES[mode]);
    check_all(x, &m, c, what);
    /* upsert with tags sets them, on present and new ids */
    nu = 0;
    for (int64_t id = 6; id < N0 && nu < 30; id += 17)
        if (m.present[id]) ids[nu++] = id;
    for (size_t i = 0; i < 10; i++) ids[nu++] = (int64_t)(1600 + i);
    t = gen_tags(nu, 25);
    op_upsert_tagged(x, &m, rows + 200 * DIM, ids, &t);
    csr_free(&t);
    snprintf(what, sizeof what, "%s/%s: after upsert_tagged", c->name, MODE_NAMES[mode]);
    check_all(x, &m, c, what);
    /* compaction renumbers the slots the lists refer to */
    cr_assert_eq(avq_index_compact(x, 0, NULL), AVQ_OK, "compact: %s", avq_last_error());
    snprintf(what, sizeof what, "%s/%s: after compact", c->name, MODE_NAMES[mode]);
    check_all(x, &m, c, what);
    /* and once more through a file, then a change to the reloaded leaves */
    for (int again = 0; again < NMODES; again++) {
        avq_index *y = reload(x, again, "changes2.avq");
        snprintf(what, sizeof what, "%s/%s: changed, reloaded (%s)", c->name, MODE_NAMES[mode],
                 MODE_NAMES[again]);
        check_all(y, &m, c, what);
        avq_index_free(y);
    }
    for (size_t i = 0; i < 20; i++) ids[i] = (int64_t)(N0 + i);
    op_remove(x, &m, ids, 20);
    avq_index *y = reload(x, M_MMAP_SKIP, "changes3.avq");
    avq_index_free(x);
    ids[0] = 1700;
    t = gen_tags(1, 26);
    op_add_tagged(y, &m, rows + 300 * DIM, ids, &t);
    csr_free(&t);
    snprintf(what, sizeof what, "%s/%s: changed, reloaded, changed", c->name, MODE_NAMES[mode]);
    check_all(y, &m, c, what);
    avq_index_free(y);
    free(rows);
}

Test(filter_io, loaded_index_changes_mmap) {
    for (size_t c = 0; c < NCONFIGS; c++) loaded_changes(&CONFIGS[c], M_MMAP);
}
Test(filter_io, loaded_index_changes_copy_and_bytes) {
    loaded_changes(&CONFIGS[1], M_COPY);
    loaded_changes(&CONFIGS[3], M_BYTES);
    loaded_changes(&CONFIGS[0], M_MMAP_SKIP);
}

/* A loaded index's lists are the mapping's bytes: searches of the loaded
 * index, then a removal of every tagged vector of a leaf, then tags again. */
Test(filter_io, loaded_tags_cleared_and_set_again) {
    static model m;
    const config *c = &CONFIGS[1];
    avq_index *x0 = make_tagged(c, &m, 31);
    avq_index *x = reload(x0, M_MMAP, "clear.avq");
    avq_index_free(x0);
    /* every present id loses its tags: the index has none left */
    int64_t ids[MAXID];
    size_t n = 0;
    for (int64_t id = 0; id < MAXID; id++)
        if (m.present[id]) ids[n++] = id;
    size_t *zero = calloc(n + 1, sizeof *zero);
    cr_assert_eq(avq_index_set_tags(x, ids, n, zero, NULL), AVQ_OK, "%s", avq_last_error());
    for (size_t i = 0; i < n; i++) m.ntags[ids[i]] = 0;
    check_all(x, &m, c, "all tags cleared");
    size_t size;
    uint8_t *b = lv_bytes(x, &size);
    size_t ts;
    cr_assert_eq(image_version(b, size, &ts), 2u, "an index whose tags were cleared saves as v%u",
                 image_version(b, size, &ts));
    cr_assert_eq(ts, 0);
    free(b);
    avq_index *y = reload(x, M_MMAP, "clear2.avq");
    check_all(y, &m, c, "cleared, reloaded");
    /* tags again, on the reloaded v2 file's leaves */
    csr t = gen_tags(n, 32);
    op_set_tags(y, &m, ids, &t);
    csr_free(&t);
    check_all(y, &m, c, "tagged again");
    avq_index *z = reload(y, M_COPY, "clear3.avq");
    check_all(z, &m, c, "tagged again, reloaded");
    avq_index_free(z);
    avq_index_free(y);
    avq_index_free(x);
    free(zero);
}

/* Without tags the file is what format version 2 was: version 2, no tag
 * section, and the same bytes as before tags were set and cleared. */
Test(filter_io, untagged_index_saves_as_version_2) {
    for (size_t ci = 0; ci < NCONFIGS; ci++) {
        const config *c = &CONFIGS[ci];
        float *rows = lv_clustered(N0, DIM, 41);
        avq_build_params p = lv_params(c->metric, c->bits, c->reorder, c->leaves, c->brute_below);
        avq_index *x = lv_build(rows, N0, DIM, &p);
        cr_assert_eq(avq_index_set_compact_threshold(x, 0), AVQ_OK);
        int64_t rm[30];
        for (int i = 0; i < 30; i++) rm[i] = 3 * i;
        cr_assert_eq(avq_index_remove(x, rm, 30, NULL), AVQ_OK);
        size_t size, ts;
        uint8_t *b = lv_bytes(x, &size);
        cr_assert_eq(image_version(b, size, &ts), 2u, "%s: untagged index saved as version %u",
                     c->name, image_version(b, size, &ts));
        cr_assert_eq(ts, 0, "%s: %zu tag sections in an untagged file", c->name, ts);
        /* it loads as an untagged index with its vectors */
        avq_index *y = NULL;
        cr_assert_eq(avq_index_load_bytes(b, size, &y), AVQ_OK, "%s", avq_last_error());
        avq_index_stats st = lv_stats(y);
        cr_assert_eq(st.tagged + st.tag_postings + st.distinct_tags, 0);
        cr_assert_eq(avq_index_size(y), N0 - 30);
        size_t count = 1;
        cr_assert_eq(avq_index_get_tags(y, 1, NULL, 0, &count), AVQ_OK);
        cr_assert_eq(count, 0);
        avq_index_free(y);
        /* set tags on a few, clear them: the bytes are those of before */
        int64_t ids[5] = {1, 2, 4, 100, 599};
        size_t off[6] = {0, 1, 3, 3, 4, 5};
        uint32_t tags[5] = {7, 7, 8, 0xFFFFFFFFu, 0};
        cr_assert_eq(avq_index_set_tags(x, ids, 5, off, tags), AVQ_OK, "%s", avq_last_error());
        size_t size3;
        uint8_t *b3 = lv_bytes(x, &size3);
        cr_assert_eq(image_version(b3, size3, &ts), 3u, "%s", c->name);
        cr_assert_eq(ts, 5);
        free(b3);
        size_t zoff[6] = {0};
        cr_assert_eq(avq_index_set_tags(x, ids, 5, zoff, NULL), AVQ_OK, "%s", avq_last_error());
        size_t size2;
        uint8_t *b2 = lv_bytes(x, &size2);
        cr_assert_eq(image_version(b2, size2, &ts), 2u, "%s", c->name);
        cr_assert(size2 == size && memcmp(b, b2, size) == 0,
                  "%s: tags set and cleared change the untagged file", c->name);
        free(b2);
        free(b);
        avq_index_free(x);
        free(rows);
    }
}

/* Files of format 1 and 2 load untagged. */
Test(filter_io, old_files_load_without_tags) {
    const char *files[] = {"fuzz/corpus-v2/v2_pq4_l2_2leaves_float_dpb3_changed.avq",
                           "fuzz/corpus-v2/v2_brute_dot_changed.avq",
                           "fuzz/corpus/pq4_dot_4leaves_int8.avq", "fuzz/corpus/brute_l2.avq"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        for (int mode = 0; mode < 3; mode++) {
            avq_index *x = NULL;
            cr_assert_eq(avq_index_load(files[i], MODE_FLAGS[mode], &x), AVQ_OK, "%s: %s",
                         files[i], avq_last_error());
            avq_index_stats st = lv_stats(x);
            cr_assert_eq(st.tagged + st.tag_postings + st.distinct_tags, 0, "%s", files[i]);
            cr_assert_eq(avq_index_tag_count(x, 0), 0);
            /* a tag filter allows nothing */
            avq_filter *f = NULL;
            uint32_t t0 = 0;
            cr_assert_eq(avq_filter_tags_any(&t0, 1, &f), AVQ_OK);
            float q[64] = {0};
            cr_assert_leq(avq_index_dim(x), 64);
            avq_search_params sp = lv_default(x, 5);
            sp.filter = f;
            int64_t ids[5];
            float sc[5];
            cr_assert_eq(avq_index_search(x, q, &sp, ids, sc), AVQ_OK, "%s", avq_last_error());
            for (int r = 0; r < 5; r++) cr_assert_eq(ids[r], AVQ_NO_ID, "%s", files[i]);
            avq_filter_free(f);
            avq_index_free(x);
        }
    }
}

/* ---- damaged tag sections ------------------------------------------------------------ */

typedef enum { FAILS, FAILS_IF_CHECKED, CLEAN, LOADS } expect;

/* A loaded, possibly damaged index: its tags and filters agree with each
 * other, writers succeed or fail cleanly, what it saves loads. */
static void exercise(avq_index *x, bool skipped, bool strict, const char *label) {
    size_t dim = avq_index_dim(x);
    cr_assert(dim > 0 && dim <= 4096, "%s", label);
    float *q = calloc(4 * dim, sizeof *q);
    for (size_t j = 0; j < 4 * dim; j++) q[j] = (float)((int)(j * 29 % 13) - 6) / 6.0f;
    avq_index_stats st;
    memset(&st, 0, sizeof st);
    cr_assert_eq(avq_index_get_stats(x, &st), AVQ_OK, "%s: %s", label, avq_last_error());
    for (size_t f = 0; f < NFILTERS; f++) {
        avq_filter *flt = make_filter(&FILTERS[f]);
        for (int e = 0; e < 2; e++) {
            avq_search_params sp = e ? lv_exhaustive(x, K, MAXID) : lv_default(x, K);
            sp.filter = flt;
            int64_t ids[K];
            float sc[K];
            int s = avq_index_search(x, q, &sp, ids, sc);
            cr_assert(s == AVQ_OK || avq_last_error()[0], "%s: search %d without message", label, s);
            if (s != AVQ_OK) continue;
            for (size_t r = 0; r < K && ids[r] != AVQ_NO_ID; r++) {
                /* an id the filter let through carries the tags it asks for */
                uint32_t got[AVQ_MAX_TAGS_PER_VECTOR];
                size_t count = 0;
                s = avq_index_get_tags(x, ids[r], got, AVQ_MAX_TAGS_PER_VECTOR, &count);
                if (s != AVQ_OK) {
                    /* unverified ids: the id map may find them repeated */
                    cr_assert(skipped && s == AVQ_ERR_FORMAT, "%s: get_tags(%lld) of a result: %s",
                              label, (long long)ids[r], avq_last_error());
                    continue;
                }
                size_t hits = 0;
                for (size_t i = 0; i < count; i++) {
                    if (i) cr_assert_gt(got[i], got[i - 1], "%s: tags not ascending", label);
                    for (size_t k = 0; k < FILTERS[f].n; k++) hits += got[i] == FILTERS[f].tags[k];
                }
                cr_assert(FILTERS[f].all ? hits == FILTERS[f].n : hits > 0,
                              "%s: filter %zu returned id %lld, which does not match it", label,
                              f, (long long)ids[r]);
            }
        }
        avq_filter_free(flt);
    }
    size_t sum = 0;
    for (size_t u = 0; u < NU; u++) sum += avq_index_tag_count(x, UNIVERSE[u]);
    if (strict) cr_assert_leq(sum, st.tag_postings, "%s", label);
    /* writers */
    size_t off[5] = {0, 2, 2, 3, 5};
    uint32_t tags[5] = {13, 0, 0xFFFFFFFFu, 1, 1};
    int64_t added[4];
    int s = avq_index_add_tagged(x, q, 4, NULL, off, tags, 1, added);
    cr_assert(s == AVQ_OK || (s == AVQ_ERR_FORMAT && skipped) || avq_last_error()[0],
              "%s: add_tagged %d", label, s);
    if (s == AVQ_OK) {
        size_t count = 0;
        uint32_t got[4];
        cr_assert_eq(avq_index_get_tags(x, added[0], got, 4, &count), AVQ_OK, "%s", label);
        cr_assert(count == 2 && got[0] == 0 && got[1] == 13, "%s: added tags %zu", label, count);
        s = avq_index_set_tags(x, added + 1, 1, off, tags);
        cr_assert(s == AVQ_OK || avq_last_error()[0], "%s: set_tags %d", label, s);
        s = avq_index_remove(x, added + 2, 1, NULL);
        cr_assert(s == AVQ_OK || avq_last_error()[0], "%s: remove %d", label, s);
    }
    s = avq_index_compact(x, 0, NULL);
    cr_assert(s == AVQ_OK || avq_last_error()[0], "%s: compact %d", label, s);
    void *bytes = NULL;
    size_t size = 0;
    s = avq_index_save_bytes(x, &bytes, &size);
    cr_assert_eq(s, AVQ_OK, "%s: save_bytes: %s", label, avq_last_error());
    if (!skipped) {
        avq_index *again = NULL;
        s = avq_index_load_bytes(bytes, size, &again);
        cr_assert_eq(s, AVQ_OK, "%s: its own bytes do not load: %s", label, avq_last_error());
        cr_assert_eq(avq_index_size(again), avq_index_size(x), "%s", label);
        avq_index_stats a = lv_stats(again), b = lv_stats(x);
        cr_assert_eq(a.tag_postings, b.tag_postings, "%s", label);
        avq_index_free(again);
    }
    avq_free(bytes);
    free(q);
}

/* The file judge() loads in the file modes: a memfd through /proc/self/fd,
 * so that thousands of judgements write no disk. */
static int jfd = -1;
static char jpath[64];

static void put_judged(const uint8_t *data, size_t size) {
    if (jfd < 0) {
        jfd = memfd_create("avq-filter-judge", 0);
        cr_assert_geq(jfd, 0, "memfd_create");
        snprintf(jpath, sizeof jpath, "/proc/self/fd/%d", jfd);
    }
    cr_assert_eq(ftruncate(jfd, 0), 0);
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(jfd, data + done, size - done, (off_t)done);
        cr_assert_gt(w, 0);
        done += (size_t)w;
    }
}

/* Loads in every mode; returns in how many it loaded. */
static int judge(const uint8_t *data, size_t size, expect want, const char *label) {
    if (getenv("AVQ_TEST_VERBOSE")) fprintf(stderr, "judge: %s\n", label);
    put_judged(data, size);
    int loaded = 0;
    for (int mode = 0; mode < NMODES; mode++) {
        bool skipped = mode == M_MMAP_SKIP;
        avq_index *x = (avq_index *)&x; /* must come back NULL on failure */
        int st = mode == M_BYTES ? avq_index_load_bytes(data, size, &x)
                                 : avq_index_load(jpath, MODE_FLAGS[mode], &x);
        if (st == AVQ_OK) {
            cr_assert_not_null(x);
            cr_assert(want == CLEAN || want == LOADS || (want == FAILS_IF_CHECKED && skipped),
                      "%s (%s): loaded, should have been refused", label, MODE_NAMES[mode]);
            exercise(x, skipped, want == LOADS, label);
            avq_index_free(x);
            loaded++;
        } else {
            cr_assert_null(x, "%s (%s): *out not reset", label, MODE_NAMES[mode]);
            cr_assert_eq(st, AVQ_ERR_FORMAT, "%s (%s): status %d: %s", label, MODE_NAMES[mode],
                         st, avq_last_error());
            cr_assert(want != LOADS, "%s (%s): refused: %s", label, MODE_NAMES[mode],
                      avq_last_error());
            const char *name = mode == M_BYTES ? "<bytes>" : jpath;
            cr_assert(strstr(avq_last_error(), name) != NULL,
                      "%s (%s): the message does not name the file: %s", label, MODE_NAMES[mode],
                      avq_last_error());
        }
    }
    /* the quantizer loader reads the same files and ignores the tags */
    avq_quantizer *q = (avq_quantizer *)&q;
    int st = avq_quantizer_load(jpath, &q);
    if (st == AVQ_OK) {
        avq_quantizer_free(q);
    } else {
        cr_assert_null(q, "%s: quantizer *out not reset", label);
        cr_assert_eq(st, AVQ_ERR_FORMAT, "%s: quantizer load %d: %s", label, st, avq_last_error());
    }
    return loaded;
}

/* A tagged image and where its tag lists are. */
typedef struct {
    uint8_t *data;
    size_t size;
    avqf_section secs[AVQF_MAX_SECTIONS];
    size_t count;
    size_t leaves;
    const uint8_t *loff, *live, *tkof, *tsof, *tkey, *tpos, *tslt;
} image;

static image images[2];

static const uint8_t *section_data(const image *img, uint32_t tag, size_t *len) {
    int s = avqf_find(img->secs, img->count, tag);
    if (s < 0) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = (size_t)img->secs[s].length;
    return img->data + img->secs[s].offset;
}

static void image_parse(image *img) {
    img->count = avqf_sections(img->data, img->size, img->secs, AVQF_MAX_SECTIONS);
    size_t len;
    img->loff = section_data(img, AVQF_TAG('L', 'O', 'F', 'F'), &len);
    img->leaves = len / 8 - 1;
    img->live = section_data(img, AVQF_TAG('L', 'I', 'V', 'E'), NULL);
    img->tkof = section_data(img, TAG_SECTIONS[0], NULL);
    img->tsof = section_data(img, TAG_SECTIONS[1], NULL);
    img->tkey = section_data(img, TAG_SECTIONS[2], NULL);
    img->tpos = section_data(img, TAG_SECTIONS[3], NULL);
    img->tslt = section_data(img, TAG_SECTIONS[4], NULL);
    cr_assert(img->loff && img->tkof && img->tsof && img->tkey && img->tpos && img->tslt);
}

/* Leaf l's list, as byte offsets into the image. */
typedef struct {
    size_t slots;           /* n_l                                       */
    size_t first_slot;      /* LOFF[l]                                   */
    size_t live_word;       /* the leaf's first LIVE word                */
    size_t nkeys, npost;
    size_t keys, pos, post; /* byte offsets of keys[0], pos[0], slots[0]  */
} leaf_list;

static leaf_list list_of(const image *img, size_t l) {
    leaf_list r;
    uint64_t lo = avqf_get64(img->loff + 8 * l), hi = avqf_get64(img->loff + 8 * (l + 1));
    r.slots = (size_t)(hi - lo);
    r.first_slot = (size_t)lo;
    r.live_word = 0;
    for (size_t k = 0; k < l; k++)
        r.live_word += (size_t)((avqf_get64(img->loff + 8 * (k + 1)) - avqf_get64(img->loff + 8 * k) + 31) / 32);
    uint64_t k0 = avqf_get64(img->tkof + 8 * l), k1 = avqf_get64(img->tkof + 8 * (l + 1));
    uint64_t s0 = avqf_get64(img->tsof + 8 * l), s1 = avqf_get64(img->tsof + 8 * (l + 1));
    r.nkeys = (size_t)(k1 - k0);
    r.npost = (size_t)(s1 - s0);
    r.keys = (size_t)(img->tkey - img->data) + 4 * (size_t)k0;
    r.pos = (size_t)(img->tpos - img->data) + 4 * ((size_t)k0 + l);
    r.post = (size_t)(img->tslt - img->data) + 4 * (size_t)s0;
    return r;
}

static uint32_t word_at(const uint8_t *b, size_t at) { return avqf_get32(b + at); }

static bool slot_live(const image *img, const leaf_list *ll, uint32_t s) {
    if (!img->live) return true;
    return (avqf_get32(img->live + 4 * (ll->live_word + s / 32)) >> (s % 32)) & 1u;
}

static void corrupt_setup(void) {
    queries = lv_clustered(NQ, DIM, 77);
    /* 0: PQ, 5 leaves, dead slots (LIVE); 1: the exact tier, compacted */
    static model m;
    avq_index *x = make_tagged(&CONFIGS[1], &m, 51);
    images[0].data = lv_bytes(x, &images[0].size);
    avq_index_free(x);
    x = make_tagged(&CONFIGS[0], &m, 52);
    cr_assert_eq(avq_index_compact(x, 0, NULL), AVQ_OK);
    images[1].data = lv_bytes(x, &images[1].size);
    avq_index_free(x);
    for (int i = 0; i < 2; i++) image_parse(&images[i]);
}

static void corrupt_teardown(void) {
    for (int i = 0; i < 2; i++) free(images[i].data);
    free(queries);
    if (jfd >= 0) close(jfd);
    lv_tmpdir_remove();
}

TestSuite(filter_io_corrupt, .init = corrupt_setup, .fini = corrupt_teardown, .timeout = 600);

static uint8_t *copy_of(const image *img) {
    uint8_t *c = malloc(img->size + 64);
    memcpy(c, img->data, img->size);
    return c;
}

Test(filter_io_corrupt, images_are_version_3_and_load) {
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(avqf_get32(images[i].data + 8), 3u);
        cr_assert_eq(judge(images[i].data, images[i].size, LOADS, "intact"), NMODES);
        size_t nonempty = 0;
        for (size_t l = 0; l < images[i].leaves; l++) nonempty += list_of(&images[i], l).nkeys >= 2;
        cr_assert_geq(nonempty, 1, "image %d: no leaf with two tags to damage", i);
    }
    cr_assert(images[0].live, "image 0 has no dead slots");
}

/* One structural damage to the tag lists, applied by `edit` to a copy:
 * refused in every mode with its checksums repaired, and as it is (the
 * verified loads by the checksum, the unverified one by the structure). */
static void refused(const image *img, uint8_t *c, const char *label) {
    char l2[200];
    snprintf(l2, sizeof l2, "%s, as it is", label);
    judge(c, img->size, FAILS, l2);
    avqf_fix(c, img->size, AVQF_FIX_ALL);
    snprintf(l2, sizeof l2, "%s, checksums repaired", label);
    judge(c, img->size, FAILS, l2);
}

Test(filter_io_corrupt, damaged_lists_are_refused) {
    for (int i = 0; i < 2; i++) {
        const image *img = &images[i];
        size_t cases = 0, dead_cases = 0;
        for (size_t l = 0; l < img->leaves; l++) {
            leaf_list ll = list_of(img, l);
            if (ll.nkeys < 2) continue;
            char label[160];
            uint8_t *c;
#define CASE(what, ...)                                                             \
    do {                                                                            \
        c = copy_of(img);                                                           \
        __VA_ARGS__;                                                                \
        snprintf(label, sizeof label, "image %d leaf %zu: %s", i, l, what);         \
        refused(img, c, label);                                                     \
        free(c);                                                                    \
        cases++;                                                                    \
    } while (0)
            uint32_t k0 = word_at(img->data, ll.keys), k1 = word_at(img->data, ll.keys + 4);
            /* keys */
            CASE("two keys swapped", avqf_put32(c + ll.keys, k1), avqf_put32(c + ll.keys + 4, k0));
            CASE("a key repeated", avqf_put32(c + ll.keys + 4, k0));
            /* posting starts */
            CASE("first start 1", avqf_put32(c + ll.pos, 1));
            CASE("last start short", avqf_put32(c + ll.pos + 4 * ll.nkeys, (uint32_t)ll.npost - 1));
            CASE("last start long", avqf_put32(c + ll.pos + 4 * ll.nkeys, (uint32_t)ll.npost + 1));
            CASE("last start huge", avqf_put32(c + ll.pos + 4 * ll.nkeys, UINT32_MAX));
            CASE("an empty posting list",
                 avqf_put32(c + ll.pos + 4, word_at(img->data, ll.pos)));
            CASE("starts decrease", avqf_put32(c + ll.pos + 4, (uint32_t)ll.npost));
            if (ll.nkeys >= 3)
                CASE("a start past the end", avqf_put32(c + ll.pos + 8, (uint32_t)ll.npost + 5));
            /* slots */
            size_t last = ll.post + 4 * (ll.npost - 1);
            CASE("a slot = the leaf's size", avqf_put32(c + last, (uint32_t)ll.slots));
            CASE("a slot = 2^32-1", avqf_put32(c + last, UINT32_MAX));
            CASE("a slot = 2^31", avqf_put32(c + ll.post, 0x80000000u));
            /* two slots of one key swapped / repeated */
            for (size_t k = 0; k < ll.nkeys; k++) {
                uint32_t a = word_at(img->data, ll.pos + 4 * k), b = word_at(img->data, ll.pos + 4 * (k + 1));
                if (b - a < 2) continue;
                uint32_t s0 = word_at(img->data, ll.post + 4 * a), s1 = word_at(img->data, ll.post + 4 * (a + 1));
                CASE("two slots of a key swapped", avqf_put32(c + ll.post + 4 * a, s1),
                     avqf_put32(c + ll.post + 4 * (a + 1), s0));
                CASE("a slot listed twice", avqf_put32(c + ll.post + 4 * (a + 1), s0));
                break;
            }
            /* a dead slot in a list, in order */
            bool dead_done = false;
            for (size_t k = 0; k < ll.nkeys && !dead_done && img->live; k++) {
                uint32_t a = word_at(img->data, ll.pos + 4 * k), b = word_at(img->data, ll.pos + 4 * (k + 1));
                for (uint32_t j = a; j < b && !dead_done; j++) {
                    uint32_t lo = j > a ? word_at(img->data, ll.post + 4 * (j - 1)) + 1 : 0;
                    uint32_t hi = j + 1 < b ? word_at(img->data, ll.post + 4 * (j + 1)) : (uint32_t)ll.slots;
                    for (uint32_t d = lo; d < hi && !dead_done; d++) {
                        if (slot_live(img, &ll, d)) continue;
                        CASE("a dead slot in a list", avqf_put32(c + ll.post + 4 * j, d));
                        dead_done = true;
                    }
                }
            }
            dead_cases += dead_done;
            /* key and posting offsets */
            size_t tkof = (size_t)(img->tkof - img->data), tsof = (size_t)(img->tsof - img->data);
            uint64_t kl1 = avqf_get64(img->tkof + 8 * (l + 1)), sl1 = avqf_get64(img->tsof + 8 * (l + 1));
            if (l + 1 < img->leaves) {
                /* moved between two leaves: the totals stay, the frames do not */
                CASE("a key moved to the next leaf", avqf_put64(c + tkof + 8 * (l + 1), kl1 - 1));
                CASE("a posting moved to the next leaf", avqf_put64(c + tsof + 8 * (l + 1), sl1 - 1));
                CASE("key offsets decrease", avqf_put64(c + tkof + 8 * (l + 1), avqf_get64(img->tkof + 8 * (l + 2)) + 1));
            }
            CASE("key total off by one", avqf_put64(c + tkof + 8 * img->leaves, avqf_get64(img->tkof + 8 * img->leaves) + 1));
            CASE("posting total off by one", avqf_put64(c + tsof + 8 * img->leaves, avqf_get64(img->tsof + 8 * img->leaves) - 1));
            CASE("key offsets from 1", avqf_put64(c + tkof, 1));
            CASE("posting offsets from 1", avqf_put64(c + tsof, 1));
            CASE("key total huge", avqf_put64(c + tkof + 8 * img->leaves, UINT64_MAX));
            CASE("posting total 2^48+1", avqf_put64(c + tsof + 8 * img->leaves, ((uint64_t)1 << 48) + 1));
            CASE("a leaf with 2^32 keys", avqf_put64(c + tkof + 8 * (l + 1), avqf_get64(img->tkof + 8 * l) + ((uint64_t)1 << 32)));
#undef CASE
        }
        cr_assert_geq(cases, 20, "image %d: only %zu cases", i, cases);
        if (img->live) cr_assert_geq(dead_cases, 1, "image %d: no dead slot to list", i);
    }
}

/* Every word of every tag section at extreme values (checksums repaired):
 * refused, or a valid file that loads into an index whose tags and filters
 * agree. */
Test(filter_io_corrupt, extreme_words_in_tag_sections) {
    static const uint32_t values[] = {0, 1, 2, 0x7FFFFFFFu, 0xFFFFFFFFu};
    for (int i = 0; i < 2; i++) {
        const image *img = &images[i];
        for (size_t t = 0; t < 5; t++) {
            int s = avqf_find(img->secs, img->count, TAG_SECTIONS[t]);
            size_t len = (size_t)img->secs[s].length, words = len / 4;
            /* about 60 positions per section: the first and last words,
             * then a stride */
            size_t stride = words > 60 ? words / 60 : 1;
            for (size_t w = 0; w < words; w += (w < 3 || w + 3 >= words) ? 1 : stride) {
                for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
                    uint8_t *c = copy_of(img);
                    size_t at = (size_t)img->secs[s].offset + 4 * w;
                    if (avqf_get32(c + at) == values[v]) {
                        free(c);
                        continue;
                    }
                    avqf_put32(c + at, values[v]);
                    avqf_fix(c, img->size, AVQF_FIX_ALL);
                    char label[120], name[5] = {0};
                    memcpy(name, &TAG_SECTIONS[t], 4);
                    snprintf(label, sizeof label, "image %d: %s word %zu = %u", i, name, w, values[v]);
                    judge(c, img->size, CLEAN, label);
                    free(c);
                }
            }
        }
    }
}

/* A flipped bit in a tag section: refused when checksums are verified;
 * without them, refused or loaded into an index that works. */
Test(filter_io_corrupt, bit_flips_in_tag_sections) {
    uint64_t rng = 99;
    for (int i = 0; i < 2; i++) {
        const image *img = &images[i];
        for (size_t t = 0; t < 5; t++) {
            int s = avqf_find(img->secs, img->count, TAG_SECTIONS[t]);
            size_t len = (size_t)img->secs[s].length;
            for (int rep = 0; rep < 25; rep++) {
                uint8_t *c = copy_of(img);
                size_t bit = (size_t)(lv_rng(&rng) % (8 * len));
                c[img->secs[s].offset + bit / 8] ^= (uint8_t)(1u << (bit % 8));
                char label[120], name[5] = {0};
                memcpy(name, &TAG_SECTIONS[t], 4);
                snprintf(label, sizeof label, "image %d: %s bit %zu flipped", i, name, bit);
                int loaded = judge(c, img->size, FAILS_IF_CHECKED, label);
                cr_assert_leq(loaded, 1, "%s", label);
                free(c);
            }
        }
    }
}

/* The container around the tag sections: each of them missing or twice,
 * in a version-2 file, a version-3 file without them, versions 4 and up,
 * an unknown required section, truncation. */
Test(filter_io_corrupt, sections_versions_and_truncation) {
    const image *img = &images[0];
    avqf_out out[AVQF_MAX_SECTIONS + 1];
    size_t size;
    char label[160];
    for (size_t t = 0; t < 5; t++) {
        for (int twice = 0; twice < 2; twice++) {
            size_t count = 0;
            for (size_t s = 0; s < img->count; s++) {
                bool this_one = img->secs[s].tag == TAG_SECTIONS[t];
                if (this_one && !twice) continue;
                out[count++] = (avqf_out){img->secs[s].tag, img->secs[s].flags,
                                          img->data + img->secs[s].offset, (size_t)img->secs[s].length};
                if (this_one) {
                    out[count] = out[count - 1];
                    count++;
                }
            }
            uint8_t *d = avqf_write_version(out, count, 3, &size);
            char name[5] = {0};
            memcpy(name, &TAG_SECTIONS[t], 4);
            snprintf(label, sizeof label, "%s %s", name, twice ? "twice" : "missing");
            judge(d, size, FAILS, label);
            free(d);
        }
    }
    /* all five dropped: a version-3 file must have them; as version 2 it
     * is the untagged index and loads */
    size_t count = 0;
    for (size_t s = 0; s < img->count; s++) {
        bool tagsec = false;
        for (size_t t = 0; t < 5; t++) tagsec |= img->secs[s].tag == TAG_SECTIONS[t];
        if (!tagsec)
            out[count++] = (avqf_out){img->secs[s].tag, img->secs[s].flags,
                                      img->data + img->secs[s].offset, (size_t)img->secs[s].length};
    }
    uint8_t *d = avqf_write_version(out, count, 3, &size);
    judge(d, size, FAILS, "version 3 without tag sections");
    cr_assert(strstr(avq_last_error(), "TKOF") || strstr(avq_last_error(), "TSOF"), "%s",
              avq_last_error());
    free(d);
    d = avqf_write_version(out, count, 2, &size);
    cr_assert_eq(judge(d, size, LOADS, "the tag sections dropped, as version 2"), NMODES);
    free(d);
    /* the tag sections in a version-2 file: unexpected */
    d = copy_of(img);
    avqf_put32(d + 8, 2);
    avqf_fix(d, img->size, AVQF_FIX_HEADER_CRC);
    judge(d, img->size, FAILS, "tag sections in a version-2 file");
    cr_assert(strstr(avq_last_error(), "version 2") && strstr(avq_last_error(), "version 3"),
              "the message names neither version: %s", avq_last_error());
    free(d);
    /* and in a version-1 file */
    d = copy_of(img);
    avqf_put32(d + 8, 1);
    avqf_fix(d, img->size, AVQF_FIX_HEADER_CRC);
    judge(d, img->size, FAILS, "tag sections in a version-1 file");
    free(d);
    /* newer versions are refused, naming the file's and the reader's */
    uint32_t versions[] = {4, 5, 1000, UINT32_MAX, 0};
    for (size_t k = 0; k < sizeof versions / sizeof versions[0]; k++) {
        d = copy_of(img);
        avqf_put32(d + 8, versions[k]);
        avqf_fix(d, img->size, AVQF_FIX_HEADER_CRC);
        snprintf(label, sizeof label, "format version %u", versions[k]);
        judge(d, img->size, FAILS, label);
        char want[80];
        snprintf(want, sizeof want, "format version %u, this library reads versions 1 to 3",
                 versions[k]);
        cr_assert(strstr(avq_last_error(), want), "%s: %s", label, avq_last_error());
        free(d);
    }
    /* an unknown section: optional is skipped, required refused naming
     * the file's format and the reader's */
    for (int required = 0; required < 2; required++) {
        count = 0;
        for (size_t s = 0; s < img->count; s++)
            out[count++] = (avqf_out){img->secs[s].tag, img->secs[s].flags,
                                      img->data + img->secs[s].offset, (size_t)img->secs[s].length};
        static const uint32_t extra[4] = {1, 2, 3, 4};
        out[count++] = (avqf_out){AVQF_TAG('Z', 'Z', '0', '3'), (uint32_t)required, extra, sizeof extra};
        d = avqf_write_version(out, count, 3, &size);
        judge(d, size, required ? FAILS : LOADS, required ? "unknown required" : "unknown optional");
        if (required)
            cr_assert(strstr(avq_last_error(), "ZZ03") && strstr(avq_last_error(), "format 3") &&
                          strstr(avq_last_error(), "1 to 3"), "%s", avq_last_error());
        free(d);
    }
    /* truncation at and around every tag section's boundaries */
    for (size_t t = 0; t < 5; t++) {
        int s = avqf_find(img->secs, img->count, TAG_SECTIONS[t]);
        size_t start = (size_t)img->secs[s].offset, end = start + (size_t)img->secs[s].length;
        size_t cuts[] = {start, start + 1, start + 4, end - 4, end - 1, (start + end) / 2};
        for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
            if (cuts[k] >= img->size || cuts[k] == 0) continue;
            for (int fix = 0; fix < 2; fix++) {
                uint8_t *c = copy_of(img);
                if (fix) avqf_fix(c, cuts[k], AVQF_FIX_ALL);
                snprintf(label, sizeof label, "cut at %zu (section %zu)%s", cuts[k], t,
                         fix ? ", repaired" : "");
                judge(c, cuts[k], FAILS, label);
                free(c);
            }
        }
    }
}

/* ---- the format-3 seed corpus ------------------------------------------------------------
 * fuzz/corpus-v3/: small tagged files (valid, and damaged with repaired
 * checksums), named like fuzz/corpus-v2/'s files (bad_: refused in every
 * mode; badchk_: refused when verified; mut_: either way; otherwise: loads).
 * With $AVQ_WRITE_CORPUS_V3 set to a directory the test writes them there
 * first (deterministic), then replays them. */

static void corpus_put(const char *dir, const char *name, const uint8_t *data, size_t size) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    lv_write_file(path, data, size);
}

static void write_corpus(const char *dir) {
    static model m;
    static const struct {
        const char *name;
        size_t config;
        bool compact;
    } valid[] = {
        {"v3_exact_l2_changed.avq", 0, false},  {"v3_pq4_dot_float_changed.avq", 1, false},
        {"v3_pq4_cos_float_compacted.avq", 2, true}, {"v3_pq8_l2_int8_changed.avq", 3, false},
        {"v3_pq4_l2_none_compacted.avq", 4, true},
    };
    for (size_t v = 0; v < sizeof valid / sizeof valid[0]; v++) {
        avq_index *x = make_tagged(&CONFIGS[valid[v].config], &m, 60 + v);
        /* smaller files: fewer vectors (fuzz inputs stay below 64 KiB) */
        int64_t rm[N0 + N_ADD];
        size_t nrm = 0;
        for (int64_t id = 0; id < N0 + N_ADD; id++)
            if (m.present[id] && id % 5 != 1) rm[nrm++] = id;
        op_remove(x, &m, rm, nrm);
        if (valid[v].compact) cr_assert_eq(avq_index_compact(x, 0, NULL), AVQ_OK);
        size_t size;
        uint8_t *b = lv_bytes(x, &size);
        corpus_put(dir, valid[v].name, b, size);
        if (v == 1) {
            /* damaged copies of one file, checksums repaired */
            image img;
            memset(&img, 0, sizeof img);
            img.data = b;
            img.size = size;
            image_parse(&img);
            size_t l = 0;
            while (l < img.leaves && list_of(&img, l).nkeys < 2) l++;
            cr_assert_lt(l, img.leaves);
            leaf_list ll = list_of(&img, l);
            struct {
                const char *name;
                size_t at;
                uint32_t value;
            } bad[] = {
                {"bad_v3_keys_unsorted.avq", ll.keys + 4, word_at(b, ll.keys)},
                {"bad_v3_slot_out_of_range.avq", ll.post + 4 * (ll.npost - 1), (uint32_t)ll.slots},
                {"bad_v3_pos_not_spanning.avq", ll.pos + 4 * ll.nkeys, (uint32_t)ll.npost + 1},
                {"bad_v3_pos_first_not_zero.avq", ll.pos, 1},
            };
            for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
                uint8_t *c = malloc(size);
                memcpy(c, b, size);
                avqf_put32(c + bad[k].at, bad[k].value);
                avqf_fix(c, size, AVQF_FIX_ALL);
                corpus_put(dir, bad[k].name, c, size);
                free(c);
            }
            uint8_t *c = malloc(size);
            memcpy(c, b, size);
            c[ll.post + 1] ^= 0x40;
            corpus_put(dir, "badchk_v3_bitflip_in_slots.avq", c, size);
            size_t tkof = (size_t)(img.tkof - b);
            memcpy(c, b, size);
            avqf_put64(c + tkof + 8 * img.leaves, avqf_get64(img.tkof + 8 * img.leaves) + 1);
            avqf_fix(c, size, AVQF_FIX_ALL);
            corpus_put(dir, "bad_v3_tkof_total_off_by_one.avq", c, size);
            memcpy(c, b, size);
            avqf_put32(c + 8, 2);
            avqf_fix(c, size, AVQF_FIX_ALL);
            corpus_put(dir, "bad_v3_tags_in_version_2.avq", c, size);
            free(c);
        }
        free(b);
        avq_index_free(x);
    }
}

static void corpus_setup(void) { queries = lv_clustered(NQ, DIM, 77); }
static void corpus_teardown(void) {
    free(queries);
    if (jfd >= 0) close(jfd);
    lv_tmpdir_remove();
}

TestSuite(filter_io_corpus, .init = corpus_setup, .fini = corpus_teardown, .timeout = 300);

static expect expected_of(const char *name) {
    if (!strncmp(name, "bad_", 4)) return FAILS;
    if (!strncmp(name, "badchk_", 7)) return FAILS_IF_CHECKED;
    if (!strncmp(name, "mut_", 4)) return CLEAN;
    return LOADS;
}

Test(filter_io_corpus, v3_seed_corpus_replays_as_named) {
    const char *w = getenv("AVQ_WRITE_CORPUS_V3");
    if (w && w[0]) write_corpus(w);
    const char *fz = getenv("AVQ_FUZZ_DIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/corpus-v3", fz && fz[0] ? fz : "fuzz");
    if (w && w[0]) snprintf(dir, sizeof dir, "%s", w);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s (run from the repository root or set AVQ_FUZZ_DIR)", dir);
    size_t files = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.') continue;
        char path[1024], label[1100];
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        size_t size;
        uint8_t *data = lv_read_file(path, &size);
        expect want = expected_of(ent->d_name);
        judge(data, size, want, path);
        if (want == LOADS) cr_assert_eq(avqf_get32(data + 8), 3u, "%s is not version 3", path);
        if (size > 0 && avqf_fix(data, size, AVQF_FIX_ALL)) {
            snprintf(label, sizeof label, "%s with checksums repaired", path);
            judge(data, size, want == LOADS ? LOADS : want == FAILS ? FAILS : CLEAN, label);
        }
        free(data);
        files++;
    }
    closedir(d);
    cr_assert_geq(files, 10, "only %zu files in %s", files, dir);
}
