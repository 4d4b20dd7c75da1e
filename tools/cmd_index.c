/*
 * cmd_index.c -- `avq build` and `avq info`: create an index file from a
 * vector file, and describe one.
 */
#include "avq.h"
#include "cli.h"
#include "dataset.h"
#include "cli_tags.h"
#include "cmd_common.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* "0.2" or "none" (NaN: reconstruction loss). */
static const char *threshold_text(char *buf, size_t cap, float t) {
    if (isnan(t)) snprintf(buf, cap, "none");
    else snprintf(buf, cap, "%g", (double)t);
    return buf;
}

static bool parse_reorder(const char *s, avq_reorder *out) {
    if (!strcmp(s, "float")) *out = AVQ_REORDER_FLOAT;
    else if (!strcmp(s, "float16")) *out = AVQ_REORDER_FLOAT16;
    else if (!strcmp(s, "int8")) *out = AVQ_REORDER_INT8;
    else if (!strcmp(s, "none")) *out = AVQ_REORDER_NONE;
    else return false;
    return true;
}

static const char *reorder_name(avq_reorder r) {
    return r == AVQ_REORDER_FLOAT     ? "float"
           : r == AVQ_REORDER_FLOAT16 ? "float16"
           : r == AVQ_REORDER_INT8    ? "int8"
                                      : "none";
}

/* The defaults shown come from avq_build_params_init and the constants of
 * avq.h, i.e. from what the library does. */
static void build_usage(FILE *out) {
    avq_build_params ip, cs, l2;
    avq_build_params_init(&ip, AVQ_METRIC_DOT);
    avq_build_params_init(&cs, AVQ_METRIC_COSINE);
    avq_build_params_init(&l2, AVQ_METRIC_L2);
    char t_ip[16], t_cs[16];
    fprintf(out,
            "usage: avq build --base B [--metric M] --out INDEX [options]\n\n"
            "Train an index (k-means leaves + anisotropic 4-bit PQ + reorder data) and save it.\n"
            "  --base B               vectors (.fvecs .bvecs .npy FILE.hdf5:train)\n"
            "  --metric M             required unless B is an HDF5 file declaring its\n"
            "                         'distance' (ann-benchmarks files do); cos normalises\n"
            "                         the vectors:\n");
    cli_metric_help(out, "                         ");
    fprintf(out,
            "  --out INDEX            index file to write (atomically)\n"
            "Tiers (by the number of rows n): below --brute-force-below (default %zu) the\n"
            "index is exact (no training: the options from --leaves to --eta have no\n"
            "effect, and saying one is a warning); below %d one leaf; else k-means leaves.\n"
            "  --leaves N             k-means leaves (default: 1 below %d rows, else\n"
            "                         round(sqrt(n)), at most n/16; 1 = no partition)\n"
            "  --training-sample N    rows used to train (default %d, or all if fewer)\n"
            "  --iterations N         k-means iterations (default %d)\n"
            "  --spherical 0|1        unit-norm k-means centers (default: %d for cos and ip,\n"
            "                         %d for l2)\n"
            "  --center-eta E         anisotropic leaf centers with weight eta (ip/cos;\n"
            "                         default %g for ip, %g for cos; 0 = off)\n"
            "  --leaf-spread Z|auto   rank leaves by <q,c> + Z |q| (the leaf's spread), for\n"
            "                         raw inner products (ip/cos; default auto for ip: %g\n"
            "                         if the norms vary, else 0; 0 for cos; 0 = off)\n"
            "  --dims-per-block N     dimensions per PQ code (default %d)\n"
            "  --bits 4|8             bits per code (default %d; 8 = 256 centers per\n"
            "                         block, SIMD-scanned on AVX-512 CPUs only)\n"
            "  --threshold T|none     anisotropic threshold T (ip/cos; default %s; 'none' =\n"
            "                         reconstruction loss, plain PQ; l2 always uses that)\n"
            "  --threshold-kind K     relative (T scales with each point's norm: the\n"
            "                         weighting of unit vectors for any norm), absolute\n"
            "                         (ScaNN's T, meant for norms ~1) or auto (default:\n"
            "                         relative for ip, absolute for cos)\n"
            "  --eta E                fixed anisotropic weight eta instead of deriving it\n"
            "                         from T (ip/cos; excludes --threshold)\n"
            "  --weight W             score weight of the loss (ip/cos): step (default, the\n"
            "                         paper's 1[t >= T]), pow:P (t^P: eta = P+1), exp:L\n"
            "                         (e^{L t}) or logistic:S (a soft step at T, width S);\n"
            "                         see doc/RESULTS.md, 'Score-aware weights'\n"
            "  --reorder float|float16|int8|none   re-ranking data kept (default %s):\n"
            "                         float16 halves float's memory, scores within ~0.05%%\n"
            "  --int8-aware           with --reorder int8: round the rows by the anisotropic\n"
            "                         loss instead of to nearest (ip/cos)\n"
            "  --spill                store every vector in a second leaf too, chosen by\n"
            "                         SOAR's spilled-residual loss (about 2x memory and\n"
            "                         add time; see doc/RESULTS.md, 'Spilling')\n"
            "  --spill-lambda L       with --spill: the loss's weight on the second\n"
            "                         residual's part along the first (default %g; 0 =\n"
            "                         the second-nearest leaf)\n"
            "  --brute-force-below N  exact tier below N points (default %zu)\n"
            "  --threads N            worker threads (default: all %d CPUs this process\n"
            "                         may use)\n"
            "  --seed N               random seed (default %llu)\n"
            "  --tags TAGS            tags of the vectors (ids 0..n-1): a tag file with one\n"
            "                         line per row of B, checked before training\n",
            ip.brute_force_below, AVQ_SINGLE_LEAF_BELOW, AVQ_SINGLE_LEAF_BELOW,
            AVQ_DEFAULT_TRAINING_SAMPLE, ip.kmeans_iterations,
            cs.spherical < 0 ? 1 : cs.spherical, l2.spherical < 0 ? 0 : l2.spherical,
            (double)ip.avq_center_eta, (double)cs.avq_center_eta,
            (double)AVQ_DEFAULT_LEAF_SPREAD_Z, ip.dims_per_block, ip.bits,
            strcmp(threshold_text(t_ip, sizeof t_ip, ip.threshold),
                   threshold_text(t_cs, sizeof t_cs, cs.threshold)) == 0 ? t_ip : "see avq.h",
            reorder_name(ip.reorder),
            (double)ip.spill_lambda, ip.brute_force_below, avq_default_threads(),
            (unsigned long long)ip.seed);
    fputs(tags_file_help, out);
}

/* Prints each stage's duration when it ends, and the progress bar. */
typedef struct {
    char stage[32];
    double started, build_start;
} stage_timer;

static int timed_progress(void *user, const char *stage, size_t done, size_t total) {
    stage_timer *t = user;
    double now = cli_now();
    if (strncmp(t->stage, stage, sizeof t->stage - 1) != 0) {
        if (t->stage[0]) fprintf(stderr, "avq build: %-10s %7.2f s\n", t->stage, now - t->started);
        snprintf(t->stage, sizeof t->stage, "%s", stage);
        t->started = now;
    }
    return cli_progress(NULL, stage, done, total);
}


/* The anisotropic weight a row gets, as the library computes it
 * (asymptotic form): (d-1) T² / (|x|² - T²), with |x| = 1 for a relative
 * threshold; below 1 it is clamped to 1, i.e. plain reconstruction. */
static bool eta_is_flat(double norm2, size_t d, double T, bool relative) {
    double n2 = relative ? 1.0 : norm2, T2 = T * T;
    if (!(n2 > 0.0)) return true;
    if (n2 <= T2) return false; /* the largest weight */
    return (double)(d - 1) * T2 / (n2 - T2) < 1.0;
}

/* Warn when the score-aware loss would be off for most rows: an absolute T
 * on un-normalised data, or a T too small for the dimension (below
 * 1/sqrt(d) even unit vectors get eta < 1). */
static void warn_flat_eta(const avq_build_params *p, const float_matrix *base) {
    if (p->metric == AVQ_METRIC_L2 || isnan(p->threshold) || p->eta > 0.0f) return;
    if (base->rows < p->brute_force_below) return; /* the exact tier has no codes */
    bool relative = p->threshold_kind == AVQ_THRESHOLD_RELATIVE ||
                    (p->threshold_kind == AVQ_THRESHOLD_AUTO && p->metric == AVQ_METRIC_DOT) ||
                    p->metric == AVQ_METRIC_COSINE;
    size_t d = base->cols, flat = 0, rows = base->rows < 100000 ? base->rows : 100000;
    for (size_t i = 0; i < rows; i++) {
        const float *x = base->data + i * d;
        double n2 = 0.0;
        for (size_t j = 0; j < d; j++) n2 += (double)x[j] * x[j];
        flat += eta_is_flat(n2, d, p->threshold, relative);
    }
    if (rows && flat * 2 > rows)
        fprintf(stderr,
                "avq build: warning: with threshold %g (%s) the anisotropic weight is 1 for %.0f%% "
                "of the rows: their codes are plain reconstruction codes.  %s\n",
                (double)p->threshold, relative ? "relative" : "absolute",
                100.0 * (double)flat / (double)rows,
                relative ? "At this dimension T must exceed 1/sqrt(d) to matter: raise --threshold."
                         : "For un-normalised vectors use --threshold-kind relative.");
}

/* Warn about options the data's tier makes pointless: the exact tier
 * trains nothing, a single leaf runs no k-means. */
static void warn_no_effect(const avq_build_params *p, size_t n, const char *const *val) {
    static const struct { int ch; const char *name; bool kmeans_only; } opts[] = {
        {'L', "--leaves", false},         {'S', "--training-sample", false},
        {'I', "--iterations", true},      {'P', "--spherical", true},
        {'C', "--center-eta", true},      {'D', "--dims-per-block", false},
        {'B', "--bits", false},           {'T', "--threshold", false},
        {'K', "--threshold-kind", false}, {'E', "--eta", false},
        {'Z', "--leaf-spread", true},     {'R', "--reorder", false},
        {'X', "--spill", true},           {'Y', "--spill-lambda", true},
        {'s', "--seed", false}};
    char names[256] = "";
    size_t used = 0;
    bool exact = n < p->brute_force_below || n < (p->bits == 8 ? 256u : 16u);
    size_t leaves = p->num_leaves ? p->num_leaves : n < AVQ_SINGLE_LEAF_BELOW ? 1 : 2;
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        if (!val[opts[i].ch] || !(exact || (opts[i].kmeans_only && leaves == 1))) continue;
        /* the exact tier keeps the float vectors whatever --reorder says, and
         * trains nothing to seed (with one leaf the seed still samples) */
        if (opts[i].ch == 'R' && (!exact || !strcmp(val['R'], "float"))) continue;
        if (opts[i].ch == 's' && !exact) continue;
        int w = snprintf(names + used, sizeof names - used, "%s%s", used ? ", " : "", opts[i].name);
        if (w > 0 && (size_t)w < sizeof names - used) used += (size_t)w;
    }
    if (!used) return;
    if (exact)
        fprintf(stderr, "avq build: warning: %zu rows are below --brute-force-below %zu: the index "
                        "is the exact tier (every vector scored exactly, nothing trained), so %s "
                        "%s no effect (lower --brute-force-below to train codes)\n",
                n, p->brute_force_below, names, strchr(names, ',') ? "have" : "has");
    else
        fprintf(stderr, "avq build: warning: one leaf (%s), so no k-means runs and %s %s no "
                        "effect\n",
                p->num_leaves ? "--leaves 1" : "fewer rows than the auto partition needs", names,
                strchr(names, ',') ? "have" : "has");
}

/* Give the rows of a new index (ids 0..n-1) their tags. */
static int set_build_tags(avq_index *index, const tag_table *tags) {
    int64_t *ids = malloc(tags->n * sizeof *ids);
    if (!ids) return cli_set_nomem("ids", tags->n * sizeof *ids);
    for (size_t i = 0; i < tags->n; i++) ids[i] = (int64_t)i;
    int st = avq_index_set_tags(index, ids, tags->n, tags->offsets, tags->tags);
    free(ids);
    return st;
}

int cmd_build(int argc, char **argv) {
    static const struct option opts[] = {
        {"base", required_argument, 0, 'b'},  {"metric", required_argument, 0, 'm'},
        {"out", required_argument, 0, 'o'},   {"leaves", required_argument, 0, 'L'},
        {"training-sample", required_argument, 0, 'S'},
        {"iterations", required_argument, 0, 'I'},
        {"spherical", required_argument, 0, 'P'},
        {"dims-per-block", required_argument, 0, 'D'},
        {"bits", required_argument, 0, 'B'},  {"threshold", required_argument, 0, 'T'},
        {"eta", required_argument, 0, 'E'},   {"reorder", required_argument, 0, 'R'},
        {"center-eta", required_argument, 0, 'C'},
        {"threshold-kind", required_argument, 0, 'K'},
        {"leaf-spread", required_argument, 0, 'Z'},
        {"brute-force-below", required_argument, 0, 'F'},
        {"threads", required_argument, 0, 't'}, {"seed", required_argument, 0, 's'},
        {"tags", required_argument, 0, 'g'},
        {"weight", required_argument, 0, 'W'}, {"int8-aware", no_argument, 0, 'A'},
        {"spill", no_argument, 0, 'X'},       {"spill-lambda", required_argument, 0, 'Y'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    const char *base_path = NULL, *out_path = NULL, *metric_name = NULL, *tags_path = NULL;
    /* options are applied after the metric is known (its defaults differ) */
    const char *val[128] = {0};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'b': base_path = optarg; break;
        case 'o': out_path = optarg; break;
        case 'm': metric_name = optarg; break;
        case 'g': tags_path = optarg; break;
        case 'A': val['A'] = "1"; break;
        case 'X': val['X'] = "1"; break;
        case 'h': build_usage(stdout); return 0;
        case '?': return cli_bad_option("build", argv);
        default: val[c] = optarg; break;
        }
    }
    if (optind < argc) return cli_usage_error("build", "unexpected argument '%s'", argv[optind]);
    if (!base_path || !out_path)
        return cli_usage_error("build", "--base and --out are required");
    if (tags_path && !*tags_path) return cli_usage_error("build", "--tags needs a file name");
    avq_metric metric;
    int mrc = cli_resolve_metric("build", metric_name, &base_path, 1, &metric);
    if (mrc) return mrc;
    /* options that would have no effect with this metric are refused */
    if (metric == AVQ_METRIC_L2) {
        const char *aniso = val['T'] && strcmp(val['T'], "none") ? "--threshold"
                            : val['K'] ? "--threshold-kind" : val['E'] ? "--eta"
                            : val['C'] ? "--center-eta"
                            : val['Z'] && strcmp(val['Z'], "0") ? "--leaf-spread"
                            : val['W'] && strcmp(val['W'], "step") ? "--weight"
                            : val['A'] ? "--int8-aware" : NULL;
        if (aniso)
            return cli_usage_error("build", "%s applies to ip and cos: l2 has no anisotropic "
                                            "loss (its codes minimise the reconstruction error)",
                                   aniso);
    }
    if (val['E'] && val['T'])
        return cli_usage_error("build", "--eta and --threshold exclude each other (a fixed eta "
                                        "replaces the one derived from T)");
    avq_build_params p;
    avq_build_params_init(&p, metric);
    long v;
    size_t z;
    float f;
#define SIZE_OPT(ch, name, field)                                                   \
    if (val[ch]) {                                                                  \
        if (!cli_parse_size(val[ch], &z))                                           \
            return cli_usage_error("build", "--" name " must be a non-negative integer, got '%s'", val[ch]); \
        field = z;                                                                  \
    }
#define INT_OPT(ch, name, lo, hi, field)                                            \
    if (val[ch]) {                                                                  \
        if (!cli_parse_int(val[ch], lo, hi, &v))                                    \
            return cli_usage_error("build", "--" name " must be an integer in [%d, %d], got '%s'", lo, hi, val[ch]); \
        field = (int)v;                                                             \
    }
    SIZE_OPT('L', "leaves", p.num_leaves);
    SIZE_OPT('S', "training-sample", p.training_sample);
    SIZE_OPT('F', "brute-force-below", p.brute_force_below);
    INT_OPT('I', "iterations", 1, 1000, p.kmeans_iterations);
    INT_OPT('P', "spherical", 0, 1, p.spherical);
    INT_OPT('D', "dims-per-block", 1, 1 << 20, p.dims_per_block);
    INT_OPT('B', "bits", 4, 8, p.bits);
    INT_OPT('t', "threads", 0, 256, p.threads);
    if (val['s']) {
        if (!cli_parse_size(val['s'], &z))
            return cli_usage_error("build", "--seed must be a non-negative integer");
        p.seed = z;
    }
    if (val['T']) {
        if (!strcmp(val['T'], "none")) p.threshold = NAN;
        else if (!cli_parse_float(val['T'], &f) || f < 0)
            return cli_usage_error("build", "--threshold must be a number >= 0 or 'none', got '%s'", val['T']);
        else p.threshold = f;
    }
    if (val['K']) {
        if (!strcmp(val['K'], "auto")) p.threshold_kind = AVQ_THRESHOLD_AUTO;
        else if (!strcmp(val['K'], "relative")) p.threshold_kind = AVQ_THRESHOLD_RELATIVE;
        else if (!strcmp(val['K'], "absolute")) p.threshold_kind = AVQ_THRESHOLD_ABSOLUTE;
        else
            return cli_usage_error("build", "--threshold-kind must be auto, relative or absolute, got '%s'",
                                   val['K']);
    }
    if (val['E']) {
        if (!cli_parse_float(val['E'], &f) || f <= 0)
            return cli_usage_error("build", "--eta must be a positive number, got '%s'", val['E']);
        p.eta = f;
    }
    if (val['C']) {
        if (!cli_parse_float(val['C'], &f) || f < 0)
            return cli_usage_error("build", "--center-eta must be a number >= 0, got '%s'", val['C']);
        p.avq_center_eta = f;
    }
    if (val['Z']) {
        if (!strcmp(val['Z'], "auto")) p.leaf_spread_z = -1.0f;
        else if (!cli_parse_float(val['Z'], &f) || f < 0)
            return cli_usage_error("build", "--leaf-spread must be 'auto' or a number >= 0, got '%s'",
                                   val['Z']);
        else p.leaf_spread_z = f;
    }
    if (val['R'] && !parse_reorder(val['R'], &p.reorder))
        return cli_usage_error("build", "--reorder must be float, float16, int8 or none, got '%s'", val['R']);
    /* score-aware weights and int8 rows (issue 19) */
    if (val['W']) {
        const char *w = val['W'], *colon = strchr(w, ':');
        size_t len = colon ? (size_t)(colon - w) : strlen(w);
        static const char *const kinds[] = {"step", "pow", "exp", "logistic"};
        int kind = -1;
        for (int k = 0; k < 4; k++)
            if (strlen(kinds[k]) == len && !strncmp(w, kinds[k], len)) kind = k;
        if (kind < 0 || (kind == 0) != (colon == NULL) ||
            (colon && (!cli_parse_float(colon + 1, &f) || !(f >= 0.0f) ||
                       (kind == AVQ_WEIGHT_LOGISTIC && !(f > 0.0f)))))
            return cli_usage_error("build", "--weight must be step, pow:P, exp:L (P, L >= 0) or "
                                            "logistic:S (S > 0; T from --threshold), got '%s'", w);
        p.weight = (avq_weight_kind)kind;
        p.weight_param = colon ? f : 0.0f;
        if (kind != AVQ_WEIGHT_STEP && val['E'])
            return cli_usage_error("build", "--eta and --weight exclude each other (a fixed eta "
                                            "replaces the one the weight gives)");
        if (kind == AVQ_WEIGHT_LOGISTIC && isnan(p.threshold))
            return cli_usage_error("build", "--weight logistic:S needs a threshold T (not none)");
    }
    if (val['Y'] && !val['X'])
        return cli_usage_error("build", "--spill-lambda sets the loss of --spill: give --spill too");
    if (val['X']) p.spill = 1;
    if (val['Y']) {
        float lambda;
        if (!cli_parse_float(val['Y'], &lambda) || !(lambda >= 0.0f) || isinf(lambda))
            return cli_usage_error("build", "--spill-lambda must be a number >= 0, got '%s'",
                                   val['Y']);
        p.spill_lambda = lambda;
    }
    if (val['A']) {
        if (p.reorder != AVQ_REORDER_INT8)
            return cli_usage_error("build", "--int8-aware rounds int8 reorder rows: it needs "
                                            "--reorder int8");
        p.int8_aware = 1;
    }

    float_matrix base;
    int st = dataset_read_float(base_path, &base);
    if (st) return cli_fail("build", st);
    tag_table tags = {0};
    if (tags_path && (st = tags_read_file(tags_path, base.rows, base_path, &tags))) {
        float_matrix_free(&base);
        return cli_fail("build", st);
    }
    warn_flat_eta(&p, &base);
    warn_no_effect(&p, base.rows, val);
    stage_timer timer = {{0}, 0, cli_now()};
    p.progress = timed_progress;
    p.progress_user = &timer;
    avq_index *index = NULL;
    st = avq_index_build(base.data, base.rows, base.cols, &p, &index);
    float_matrix_free(&base);
    if (!st && tags.tagged) st = set_build_tags(index, &tags);
    tag_table_free(&tags);
    if (st) {
        avq_index_free(index);
        return cli_fail("build", st);
    }
    timed_progress(&timer, "save", 0, 1);
    st = avq_index_save(index, out_path);
    timed_progress(&timer, "done", 1, 1);
    if (st) {
        avq_index_free(index);
        return cli_fail("build", st);
    }
    avq_index_stats stats;
    if (avq_index_get_stats(index, &stats)) stats.tagged = 0;
    char tagged[64] = "";
    if (stats.tagged)
        snprintf(tagged, sizeof tagged, ", %zu tagged (%zu distinct tags)", stats.tagged,
                 stats.distinct_tags);
    fprintf(stderr, "avq build: %zu vectors of dimension %zu, %zu leaves%s, %.1f s in all, "
                    "wrote %s\n",
            avq_index_size(index), avq_index_dim(index), avq_index_num_leaves(index), tagged,
            cli_now() - timer.build_start, out_path);
    avq_index_free(index);
    return 0;
}

static void info_usage(FILE *out) {
    fprintf(out, "usage: avq info INDEX\n\n"
                 "Describe an index file: sizes, parameters, live and removed (dead) vectors,\n"
                 "how even the leaves still are, tags, the filter planner's thresholds,\n"
                 "memory, load time.\n"
                 "  --help   this text\n");
}

/* The encoding loss, with eta as the library derives it when not fixed:
 * (d - 1) T^2 / (|x|^2 - T^2) (at least 1), at |x| = 1 for a relative
 * threshold or cosine; per point for an absolute one on dot products. */
static void describe_loss(const avq_build_params *p, size_t d, const char *kind, char *out,
                          size_t cap) {
    if (p->metric == AVQ_METRIC_L2 || isnan(p->threshold)) {
        snprintf(out, cap, "reconstruction loss (plain PQ%s)",
                 p->metric == AVQ_METRIC_L2 ? ": l2 has no anisotropic loss" : ", threshold none");
        return;
    }
    if (p->eta > 0.0f) {
        snprintf(out, cap, "anisotropic loss, eta %g (fixed)", (double)p->eta);
        return;
    }
    if (p->weight != AVQ_WEIGHT_STEP) { /* issue 19 */
        static const char *const names[] = {"step", "pow", "exp", "logistic"};
        char at[32] = "";
        if (p->weight == AVQ_WEIGHT_LOGISTIC)
            snprintf(at, sizeof at, " at T %g", (double)p->threshold);
        snprintf(out, cap, "anisotropic loss, weight %s:%g%s (%s): eta from the weight, "
                           "numerically%s", names[p->weight], (double)p->weight_param, at, kind,
                 p->int8_aware ? "; score-aware int8 rows" : "");
        return;
    }
    bool unit = p->metric == AVQ_METRIC_COSINE || p->threshold_kind == AVQ_THRESHOLD_RELATIVE ||
                (p->threshold_kind == AVQ_THRESHOLD_AUTO && p->metric == AVQ_METRIC_DOT);
    double T2 = (double)p->threshold * (double)p->threshold;
    if (!unit) {
        snprintf(out, cap, "anisotropic loss, threshold %g (%s): eta per point, "
                           "(d-1) T^2 / (|x|^2 - T^2)", (double)p->threshold, kind);
    } else if (T2 >= 1.0) {
        snprintf(out, cap, "anisotropic loss, threshold %g (%s): eta at its maximum (T >= 1)",
                 (double)p->threshold, kind);
    } else {
        double eta = (double)(d - 1) * T2 / (1.0 - T2);
        snprintf(out, cap, "anisotropic loss, threshold %g (%s): eta %.4g (derived from T%s)",
                 (double)p->threshold, kind, eta < 1.0 ? 1.0 : eta,
                 eta < 1.0 ? ": below 1, i.e. plain reconstruction" : "");
    }
}

/* "12.3" or "-" when there is nothing to divide by. */
static const char *per_vector(char *buf, size_t cap, size_t bytes, size_t n) {
    if (n == 0) snprintf(buf, cap, "-");
    else snprintf(buf, cap, "%.1f", (double)bytes / (double)n);
    return buf;
}

int cmd_info(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        info_usage(stdout);
        return 0;
    }
    if (argc != 2) return cli_usage_error("info", "expected exactly one index file");
    double t0 = cli_now();
    avq_index *index = NULL;
    int st = avq_index_load(argv[1], AVQ_LOAD_MMAP, &index);
    if (st) return cli_fail("info", st);
    double load_ms = 1e3 * (cli_now() - t0);
    avq_index_stats stats;
    st = avq_index_get_stats(index, &stats);
    if (st) {
        avq_index_free(index);
        return cli_fail("info", st);
    }
    avq_build_params p;
    avq_build_params_init(&p, avq_index_metric(index));
    avq_index_build_params(index, &p);
    avq_search_params sp;
    avq_search_params_init(&sp);
    avq_index_default_search_params(index, &sp);
    struct stat sb;
    size_t file_bytes = stat(argv[1], &sb) == 0 ? (size_t)sb.st_size : 0;
    size_t n = avq_index_size(index), memory = avq_index_memory_bytes(index);
    char b1[32], b2[32];
    printf("file              %s (%zu bytes, %s bytes/vector)\n", argv[1], file_bytes,
           per_vector(b1, sizeof b1, file_bytes, n));
    printf("vectors           %zu x %zu\n", n, avq_index_dim(index));
    printf("live              %zu\n", stats.live);
    printf("dead              %zu (removed, not yet compacted)\n", stats.dead);
    printf("next id           %lld\n", (long long)stats.next_id);
    printf("metric            %s\n", avq_metric_name(avq_index_metric(index)));
    printf("leaves            %zu%s\n", avq_index_num_leaves(index),
           p.avq_center_eta > 0 ? " (anisotropic centers)" : "");
    printf("leaf sizes        min %zu, max %zu, mean %.1f live %s\n", stats.min_leaf,
           stats.max_leaf, stats.mean_leaf,
           stats.spilled ? "slots (spilled copies included)" : "vectors");
    printf("leaf balance      cv %.3f (std/mean of live leaf sizes), %zu empty leaves, "
           "max dead share %.3f\n",
           stats.leaf_cv, stats.empty_leaves, stats.max_leaf_dead);
    const char *kind = p.threshold_kind == AVQ_THRESHOLD_RELATIVE   ? "relative"
                       : p.threshold_kind == AVQ_THRESHOLD_ABSOLUTE ? "absolute"
                       : p.metric == AVQ_METRIC_DOT                 ? "auto: relative"
                       : p.metric == AVQ_METRIC_COSINE              ? "auto: absolute"
                                                                    : "auto";
    bool exact = avq_index_is_exact(index), one_leaf = avq_index_num_leaves(index) == 1;
    if (exact) {
        printf("quantizer         none: the exact tier (built from fewer than %zu vectors): "
               "every search scores every vector exactly\n",
               p.brute_force_below);
        printf("partition         none\n");
        printf("reorder           float (the vectors themselves)\n");
        printf("search defaults   exact (leaves_to_search and pre_reorder do not apply)\n");
    } else {
        char loss[160];
        describe_loss(&p, avq_index_dim(index), kind, loss, sizeof loss);
        printf("quantizer         %d-bit codes, %d dims per block, %s\n", p.bits,
               p.dims_per_block, loss);
        char centers[32] = "off";
        if (p.avq_center_eta > 0 && p.metric != AVQ_METRIC_L2)
            snprintf(centers, sizeof centers, "eta %g", (double)p.avq_center_eta);
        bool spherical = p.spherical > 0 || (p.spherical < 0 && p.metric != AVQ_METRIC_L2);
        char ranking[64] = "by center score";
        if (p.leaf_spread_z > 0 && p.metric != AVQ_METRIC_L2)
            snprintf(ranking, sizeof ranking, "by center score + %g |q| spread",
                     (double)p.leaf_spread_z);
        if (one_leaf)
            printf("partition         one leaf (no k-means)\n");
        else
            printf("partition         %s k-means, anisotropic centers %s, leaves ranked %s\n",
                   spherical ? "spherical" : "plain", centers, ranking);
        if (p.spill)
            printf("spilling          every vector in 2 leaves (SOAR, lambda %g): %zu copies\n",
                   (double)p.spill_lambda, stats.spilled);
        printf("reorder           %s\n", reorder_name(p.reorder));
        printf("search defaults   leaves_to_search %zu, pre_reorder %zu\n", sp.leaves_to_search,
               sp.pre_reorder);
    }
    printf("tags              %zu of %zu live vectors tagged, %zu distinct tags, %zu postings "
           "((vector, tag) pairs)\n",
           stats.tagged, stats.live, stats.distinct_tags, stats.tag_postings);
    /* avq_index_default_search_params resolves the planner's defaults */
    size_t exact_below = sp.filter_exact_below, min_scanned = sp.filter_min_scanned;
    if (p.reorder == AVQ_REORDER_NONE)
        printf("filter planner    filtered scan going on until >= %zu allowed were scanned "
               "(no exact scoring: reorder none)\n",
               min_scanned);
    else
        printf("filter planner    exact scoring if a filter allows <= %zu vectors, else a "
               "filtered scan going on until >= %zu allowed were scanned (doc/DESIGN.md, "
               "\"Filtered search\")\n",
               exact_below, min_scanned);
    printf("memory            %zu bytes (%s bytes/vector)\n", memory,
           per_vector(b2, sizeof b2, memory, n));
    printf("load (mmap)       %.2f ms (checksums verified)\n", load_ms);
    printf("SIMD              %s\n", avq_isa());
    avq_index_free(index);
    return 0;
}
