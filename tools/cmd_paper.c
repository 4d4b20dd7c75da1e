/*
 * cmd_paper.c -- `avq-paper`: the quantization experiment of Guo et al. 2020
 * (Figure 3): does choosing PQ codes by the anisotropic loss instead of the
 * reconstruction error find the true maximum-inner-product neighbour more
 * often, at the same bit rate?
 *
 * Protocol.  Normalise base and queries (GloVe is an angular data set).  For
 * each bit rate (100 bits = 25 blocks x 4 bits, 200 bits = 50 x 4; 4-bit
 * codes, dims_per_block 4 or 2) train ONE k-means codebook on a sample of
 * the base, then encode the whole base with (a) reconstruction loss and
 * (b) anisotropic loss at each threshold T.  Sharing the codebook isolates
 * the one thing the paper changes: the choice of codes.  There is no
 * partition (a single leaf with a zero center), so the residual is x itself.
 *
 * Scoring.  The float LUT estimate of <q, x> is exactly <q, decode(code)>,
 * so we decode the base and let the exact search (an SGEMM) rank every code
 * for every query: no approximation beyond the quantization being measured.
 * Metrics: Recall1@N (is the true top-1 among the N best estimates), N = 1,
 * 10, 100 and the whole curve for the plot; recall@10 against the exact
 * top-10; the mean relative error of the estimated inner product of each
 * query's true top-1 (the paper's point: the parallel error dominates it).
 *
 * --int8-aware (issue 19) adds rows where the base vectors themselves are
 * int8 rows at 8 x d bits: per-dimension scales as an index computes its
 * i8_scale (the library's own avq_int8_scales), each row
 * rounded (a) to nearest and (b) by the anisotropic loss at every variant's
 * per-point eta (avq_aniso_round_i8_rows, as an index with int8_aware
 * does).  They are scored exactly like the PQ rows: <q, decoded row> for
 * every row, against the same queries and ground truth.
 */
#include "aniso.h"
#include "avq.h"
#include "cli.h"
#include "cmd_common.h"
#include "dataset.h"
#include "index.h"
#include "pq.h"
#include "vecmath.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { MAX_THRESHOLDS = 16, CURVE = 100, GT_K = 10, MAX_CONFIGS = 4, MAX_SPECS = 64,
       MAX_GRID = 12 };

/* One way of choosing the codes: reconstruction, or the anisotropic loss
 * under a weight w(t) (issue 19: --weights). */
typedef struct {
    int recon;
    avq_weight w; /* kind, T (step, logistic), param (P, L, S) */
} code_spec;

typedef struct {
    char name[48];
    size_t bits, dims_per_block;
    code_spec spec;
    double threshold; /* NaN = reconstruction (or no T) */
    double eta;       /* eta of a point of the base's median norm (1 when normalised) */
    double eta_p1, eta_p99;    /* ... at the 1st and 99th percentile norms */
    double recall1[CURVE + 1]; /* recall1[N], N = 1..CURVE */
    double recall10, rel_err, encode_s, total_s;
    double part_r1_10[2], part_err[2]; /* --weights: tuning (even) / held-out (odd) queries */
    int int8;                  /* 1: int8 rows of the base (--int8-aware), not PQ codes */
} variant;

typedef struct {
    const char *base_path, *query_path, *plot_path, *csv_path;
    size_t queries, sample, iters, cb_rounds;
    size_t dpb[MAX_CONFIGS], nconfigs;
    double thresholds[MAX_THRESHOLDS];
    size_t nthresholds;
    avq_eta_mode eta_mode;
    code_spec specs[MAX_SPECS]; /* --weights: what each bit rate runs */
    size_t nspecs;
    const char *weights_arg;
    int relative;               /* --threshold-kind relative */
    int int8;                   /* --int8-aware: add the int8 rows */
    double norm_p[3];           /* base norms: 1st, 50th, 99th percentile */
    int normalize, first;
    long threads;
    unsigned long seed;
} paper_opts;

static void usage(FILE *out) {
    fprintf(out,
            "usage: avq-paper [--base B] [--query Q] [--queries N] [--plot FILE.png]\n"
            "                 [--csv FILE] [--thresholds 0.1,0.2,0.3,0.5] [--dims-per-block 4,2]\n"
            "                 [--eta-mode asymptotic|exact] [--sample S] [--iters I]\n"
            "                 [--seed S] [--threads T] [--no-normalize] [--first]\n"
            "                 [--codebook-update R] [--weights LIST]\n"
            "                 [--threshold-kind absolute|relative] [--int8-aware]\n\n"
            "Reproduce the quantization experiment of Guo et al. 2020 (Figure 3): 4-bit PQ\n"
            "of the whole base, codes chosen by reconstruction loss vs anisotropic loss at\n"
            "each threshold T, every query scored exactly against every code.\n"
            "  --base B           base vectors (default data/glove-100/base.fvecs)\n"
            "  --query Q          queries (default data/glove-100/query.fvecs)\n"
            "  --queries N        use N queries spread evenly over the file (default 2000,\n"
            "                     0 = all): GloVe's query file is in word-frequency order,\n"
            "                     so its first rows are the easiest (frequent words)\n"
            "  --first            take the first N queries instead\n"
            "  --dims-per-block L one bit rate per value: d/L blocks x 4 bits (default 4,2:\n"
            "                     100 and 200 bits at d = 100)\n"
            "  --thresholds LIST  anisotropic thresholds T (default 0.1,0.2,0.3,0.5)\n"
            "  --eta-mode M       asymptotic (ScaNN, default) or exact (finite-d integral)\n"
            "  --sample S         codebook training sample (default 100000)\n"
            "  --iters I          k-means iterations per block (default 10)\n"
            "  --codebook-update R  also run each threshold with R rounds of the paper's\n"
            "                     anisotropic codebook update (re-solve codebook, re-encode)\n"
            "  --plot FILE.png    Recall1@N curves (needs /usr/bin/python3 + matplotlib;\n"
            "                     script: $AVQ_PAPER_PLOT or scripts/paper_plot.py)\n"
            "  --csv FILE         write the table as CSV\n"
            "  --weights LIST     score weights instead of --thresholds (issue 19): items\n"
            "                     step, pow, exp, logistic, each optionally with its own\n"
            "                     grid: step:T1:T2, pow:P1:P2, exp:L1:L2,\n"
            "                     logistic:T1/S1:T2/S2 (default grids, scaled by the\n"
            "                     median norm under an absolute threshold kind).  The\n"
            "                     queries split into tuning (even) and held-out (odd)\n"
            "                     halves; a summary picks each weight's best value on\n"
            "                     the tuning half and reports the held-out half\n"
            "  --threshold-kind K absolute (default: the weight sees |x|'s own scores) or\n"
            "                     relative (every point weighted as its unit vector)\n"
            "  --int8-aware       also encode the base as int8 rows (8 x d bits; per-dimension\n"
            "                     scales as an index's int8 reorder rows): one row rounded\n"
            "                     to nearest, and one rounded by the anisotropic loss at the\n"
            "                     eta of each threshold or weight (as build --int8-aware);\n"
            "                     scored like the codes.  Not with --codebook-update\n"
            "  --no-normalize     keep the vectors as they are (default: unit length)\n"
            "  --threads T        worker threads (default: all CPUs)\n");
}

/* "a,b,c" -> up to cap doubles; false on a malformed or empty list. */
static bool parse_list(const char *s, double *out, size_t cap, size_t *count) {
    char buf[256];
    if (!s || strlen(s) >= sizeof buf) return false;
    strcpy(buf, s);
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        float v;
        if (n == cap || !cli_parse_float(tok, &v)) return false;
        out[n++] = v;
    }
    *count = n;
    return n > 0;
}

static int parse_opts(int argc, char **argv, paper_opts *o) {
    static const struct option opts[] = {
        {"base", required_argument, 0, 'b'},       {"query", required_argument, 0, 'q'},
        {"queries", required_argument, 0, 'n'},    {"plot", required_argument, 0, 'p'},
        {"csv", required_argument, 0, 'c'},        {"thresholds", required_argument, 0, 'T'},
        {"dims-per-block", required_argument, 0, 'L'}, {"eta-mode", required_argument, 0, 'e'},
        {"sample", required_argument, 0, 's'},     {"iters", required_argument, 0, 'i'},
        {"seed", required_argument, 0, 'S'},       {"threads", required_argument, 0, 't'},
        {"no-normalize", no_argument, 0, 'N'},     {"first", no_argument, 0, 'F'},
        {"codebook-update", required_argument, 0, 'U'}, {"help", no_argument, 0, 'h'},
        {"weights", required_argument, 0, 'W'},    {"threshold-kind", required_argument, 0, 'K'},
        {"int8-aware", no_argument, 0, 'I'},
        {0, 0, 0, 0}};
    *o = (paper_opts){.base_path = "data/glove-100/base.fvecs",
                      .query_path = "data/glove-100/query.fvecs",
                      .queries = 2000, .sample = 100000, .iters = 10,
                      .dpb = {4, 2}, .nconfigs = 2,
                      .thresholds = {0.1, 0.2, 0.3, 0.5}, .nthresholds = 4,
                      .eta_mode = AVQ_ETA_ASYMPTOTIC, .normalize = 1, .seed = 7};
    double list[MAX_THRESHOLDS];
    size_t count;
    long v;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'b': o->base_path = optarg; break;
        case 'q': o->query_path = optarg; break;
        case 'p': o->plot_path = optarg; break;
        case 'c': o->csv_path = optarg; break;
        case 'N': o->normalize = 0; break;
        case 'F': o->first = 1; break;
        case 'W': o->weights_arg = optarg; break;
        case 'I': o->int8 = 1; break;
        case 'K':
            if (!strcmp(optarg, "absolute")) o->relative = 0;
            else if (!strcmp(optarg, "relative")) o->relative = 1;
            else return cli_usage_error("paper", "--threshold-kind must be absolute or relative");
            break;
        case 'U':
            if (!cli_parse_size(optarg, &o->cb_rounds) || o->cb_rounds > 100)
                return cli_usage_error("paper", "--codebook-update must be 0..100, got '%s'", optarg);
            break;
        case 'n':
            if (!cli_parse_size(optarg, &o->queries))
                return cli_usage_error("paper", "--queries must be a count, got '%s'", optarg);
            break;
        case 's':
            if (!cli_parse_size(optarg, &o->sample))
                return cli_usage_error("paper", "--sample must be a count, got '%s'", optarg);
            break;
        case 'i':
            if (!cli_parse_size(optarg, &o->iters) || o->iters == 0)
                return cli_usage_error("paper", "--iters must be >= 1, got '%s'", optarg);
            break;
        case 'S':
            if (!cli_parse_int(optarg, 0, 2147483647L, &v))
                return cli_usage_error("paper", "--seed must be a non-negative integer");
            o->seed = (unsigned long)v;
            break;
        case 't':
            if (!cli_parse_int(optarg, 0, 256, &o->threads))
                return cli_usage_error("paper", "--threads must be 0..256, got '%s'", optarg);
            break;
        case 'T':
            if (!parse_list(optarg, o->thresholds, MAX_THRESHOLDS, &o->nthresholds))
                return cli_usage_error("paper", "--thresholds: up to %d comma-separated numbers",
                                       MAX_THRESHOLDS);
            for (size_t i = 0; i < o->nthresholds; i++)
                if (!(o->thresholds[i] > 0.0))
                    return cli_usage_error("paper", "--thresholds must be > 0");
            break;
        case 'L':
            if (!parse_list(optarg, list, MAX_CONFIGS, &count))
                return cli_usage_error("paper", "--dims-per-block: up to %d comma-separated integers",
                                       MAX_CONFIGS);
            for (size_t i = 0; i < count; i++) {
                if (!(list[i] >= 1.0) || list[i] != floor(list[i]))
                    return cli_usage_error("paper", "--dims-per-block values must be integers >= 1");
                o->dpb[i] = (size_t)list[i];
            }
            o->nconfigs = count;
            break;
        case 'e':
            if (!strcmp(optarg, "asymptotic")) o->eta_mode = AVQ_ETA_ASYMPTOTIC;
            else if (!strcmp(optarg, "exact")) o->eta_mode = AVQ_ETA_EXACT;
            else return cli_usage_error("paper", "--eta-mode must be asymptotic or exact");
            break;
        case 'h': usage(stdout); return -1;
        default: return cli_bad_option("paper", argv);
        }
    }
    if (optind < argc) return cli_usage_error("paper", "unexpected argument '%s'", argv[optind]);
    if (o->weights_arg && o->cb_rounds)
        return cli_usage_error("paper", "--weights and --codebook-update do not combine");
    /* the codebook update is a PQ experiment: an int8 row has no codebook,
     * so its rows would pair with only half of the table's anisotropic rows */
    if (o->int8 && o->cb_rounds)
        return cli_usage_error("paper", "--int8-aware and --codebook-update do not combine "
                               "(int8 rows have no codebook)");
    return 0;
}

/* ---- --weights --------------------------------------------------------- */

static const char *const WEIGHT_NAMES[] = {"step", "pow", "exp", "logistic"};

/* The grid of one weight kind; scale = the median norm (absolute) or 1. */
static size_t default_grid(avq_weight_kind k, double scale, avq_weight *out) {
    static const double step_T[] = {0.1, 0.15, 0.2, 0.25, 0.3};
    static const double pow_P[] = {1, 2, 3, 5, 8};
    static const double exp_L[] = {5, 10, 15, 20, 30};
    static const double log_T[] = {0.15, 0.2, 0.25}, log_S[] = {0.02, 0.05};
    size_t n = 0;
    switch (k) {
    case AVQ_WEIGHT_STEP:
        for (size_t i = 0; i < 5; i++) out[n++] = (avq_weight){k, step_T[i] * scale, 0.0};
        break;
    case AVQ_WEIGHT_POW:
        for (size_t i = 0; i < 5; i++) out[n++] = (avq_weight){k, NAN, pow_P[i]};
        break;
    case AVQ_WEIGHT_EXP:
        for (size_t i = 0; i < 5; i++) out[n++] = (avq_weight){k, NAN, exp_L[i] / scale};
        break;
    case AVQ_WEIGHT_LOGISTIC:
        for (size_t i = 0; i < 3; i++)
            for (size_t j = 0; j < 2; j++)
                out[n++] = (avq_weight){k, log_T[i] * scale, log_S[j] * scale};
        break;
    }
    return n;
}

/* "step,pow:1:2,logistic:0.2/0.05" -> o->specs (reconstruction first). */
static int parse_weights(paper_opts *o, double scale) {
    char buf[512];
    if (strlen(o->weights_arg) >= sizeof buf)
        return cli_usage_error("paper", "--weights: the list is too long");
    strcpy(buf, o->weights_arg);
    o->specs[0] = (code_spec){.recon = 1};
    o->nspecs = 1;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *vals = strchr(tok, ':');
        if (vals) *vals++ = '\0';
        int kind = -1;
        for (int k = 0; k < 4; k++)
            if (!strcmp(tok, WEIGHT_NAMES[k])) kind = k;
        if (kind < 0)
            return cli_usage_error("paper", "--weights: unknown weight '%s' (step, pow, exp, "
                                   "logistic)", tok);
        avq_weight grid[MAX_GRID];
        size_t n = 0;
        if (!vals) {
            n = default_grid((avq_weight_kind)kind, scale, grid);
        } else {
            char *save2 = NULL;
            for (char *v = strtok_r(vals, ":", &save2); v; v = strtok_r(NULL, ":", &save2)) {
                float a, b = 0.0f;
                char *slash = strchr(v, '/');
                if (slash) *slash++ = '\0';
                if (n == MAX_GRID || !cli_parse_float(v, &a) ||
                    (slash && !cli_parse_float(slash, &b)) ||
                    ((kind == AVQ_WEIGHT_LOGISTIC) != (slash != NULL)))
                    return cli_usage_error("paper", "--weights: bad values for %s (up to %d; "
                                           "logistic takes T/S pairs)", WEIGHT_NAMES[kind],
                                           MAX_GRID);
                avq_weight w = {(avq_weight_kind)kind, NAN, 0.0};
                if (kind == AVQ_WEIGHT_STEP || kind == AVQ_WEIGHT_LOGISTIC) w.T = a;
                if (kind == AVQ_WEIGHT_LOGISTIC) w.param = b;
                else if (kind != AVQ_WEIGHT_STEP) w.param = a;
                grid[n++] = w;
            }
        }
        for (size_t i = 0; i < n; i++) {
            const char *why = avq_weight_check(&grid[i]);
            if (why) return cli_usage_error("paper", "--weights: %s", why);
            if (o->nspecs == MAX_SPECS)
                return cli_usage_error("paper", "--weights: more than %d variants", MAX_SPECS - 1);
            o->specs[o->nspecs++] = (code_spec){.recon = 0, .w = grid[i]};
        }
    }
    return 0;
}

/* The specs of the classic run: reconstruction + the step at each threshold. */
static void threshold_specs(paper_opts *o) {
    o->specs[0] = (code_spec){.recon = 1};
    o->nspecs = 1;
    for (size_t i = 0; i < o->nthresholds; i++)
        o->specs[o->nspecs++] =
            (code_spec){.recon = 0, .w = {AVQ_WEIGHT_STEP, o->thresholds[i], 0.0}};
}

static double spec_eta(const paper_opts *o, const code_spec *c, double norm, size_t d) {
    if (c->recon) return 1.0;
    if (o->relative) norm = 1.0;
    if (c->w.kind == AVQ_WEIGHT_STEP) return avq_eta(norm * norm, d, c->w.T, o->eta_mode);
    return avq_weight_eta(&c->w, norm, d);
}

/* How spec c weighs the error: the parameters its PQ codes are encoded with,
 * and the per-point etas its int8 rows are rounded with. */
static void spec_params(const paper_opts *o, const code_spec *c, int threads,
                        avq_aniso_params *ap) {
    avq_aniso_default_params(ap);
    ap->threshold = c->recon ? NAN : c->w.T;
    ap->eta_mode = o->eta_mode;
    ap->relative = o->relative;
    if (!c->recon && c->w.kind != AVQ_WEIGHT_STEP) {
        ap->weight = c->w.kind;
        ap->weight_param = c->w.param;
    }
    ap->threads = threads;
}

static void spec_name(const paper_opts *o, const code_spec *c, size_t rounds, char *out,
                      size_t cap) {
    if (c->recon) snprintf(out, cap, "reconstruction");
    else if (!o->weights_arg && !rounds) snprintf(out, cap, "anisotropic T=%.2g", c->w.T);
    else if (!o->weights_arg) snprintf(out, cap, "aniso T=%.2g +cb x%zu", c->w.T, rounds);
    else if (c->w.kind == AVQ_WEIGHT_STEP) snprintf(out, cap, "step T=%.3g", c->w.T);
    else if (c->w.kind == AVQ_WEIGHT_POW) snprintf(out, cap, "pow P=%.3g", c->w.param);
    else if (c->w.kind == AVQ_WEIGHT_EXP) snprintf(out, cap, "exp L=%.3g", c->w.param);
    else snprintf(out, cap, "logistic T=%.3g S=%.3g", c->w.T, c->w.param);
}

/* ---- scoring ----------------------------------------------------------- */

typedef struct {
    const float *base, *queries;
    size_t n, d, nq, k_eval, k_gt;
    const int64_t *gt;  /* nq x k_gt exact ids */
    int threads;
} eval_setup;

/* Rank every decoded vector for every query and fill the metrics of v. */
static int evaluate(const eval_setup *e, const float *decoded, variant *v) {
    int64_t *ids = malloc(e->nq * e->k_eval * sizeof *ids);
    if (!ids) return cli_error("paper", "out of memory for %zu x %zu ids", e->nq, e->k_eval);
    int st = avq_exact_search(decoded, e->n, e->d, e->queries, e->nq, AVQ_METRIC_DOT, e->k_eval,
                              e->threads, ids, NULL, cli_progress, NULL);
    if (st != AVQ_OK) {
        free(ids);
        return cli_fail("paper", st);
    }
    size_t hits_at[CURVE + 2] = {0}, part_hits[2] = {0}, part_n[2] = {0};
    double overlap = 0.0, rel = 0.0, part_rel[2] = {0.0, 0.0};
    for (size_t q = 0; q < e->nq; q++) {
        const int64_t *row = ids + q * e->k_eval, *truth = e->gt + q * e->k_gt;
        size_t rank = CURVE + 1;
        for (size_t j = 0; j < e->k_eval; j++)
            if (row[j] == truth[0]) { rank = j + 1; break; }
        if (rank <= CURVE) hits_at[rank]++;
        for (size_t a = 0; a < e->k_gt && a < e->k_eval; a++)
            for (size_t b = 0; b < e->k_gt; b++)
                if (row[a] == truth[b]) { overlap += 1.0; break; }
        const float *qv = e->queries + q * e->d;
        double exact = avq_dot_f64(qv, e->base + (size_t)truth[0] * e->d, e->d);
        double est = avq_dot_f64(qv, decoded + (size_t)truth[0] * e->d, e->d);
        double err = fabs(exact) > 1e-12 ? fabs(est - exact) / fabs(exact) : 0.0;
        rel += err;
        part_n[q % 2]++;
        part_hits[q % 2] += rank <= 10;
        part_rel[q % 2] += err;
    }
    for (int h = 0; h < 2; h++) {
        v->part_r1_10[h] = part_n[h] ? (double)part_hits[h] / (double)part_n[h] : 0.0;
        v->part_err[h] = part_n[h] ? part_rel[h] / (double)part_n[h] : 0.0;
    }
    size_t cum = 0;
    for (size_t N = 1; N <= CURVE; N++) {
        cum += hits_at[N];
        v->recall1[N] = (double)cum / (double)e->nq;
    }
    v->recall10 = overlap / (double)(e->nq * e->k_gt);
    v->rel_err = rel / (double)e->nq;
    free(ids);
    return 0;
}

/* evaluate(), then the variant's total time since `start` and its line of
 * progress on stderr. */
static int evaluate_timed(const eval_setup *e, const float *decoded, variant *v, double start) {
    int rc = evaluate(e, decoded, v);
    v->total_s = cli_now() - start;
    if (!rc)
        fprintf(stderr, "avq-paper:   %-24s R1@10 %.4f  (%.1f s)\n", v->name, v->recall1[10],
                v->total_s);
    return rc;
}

/* ---- one bit rate ------------------------------------------------------ */

static int run_config(const paper_opts *o, const eval_setup *e, size_t dpb, variant *out,
                      size_t *nout) {
    avq_pq_shape shape = {e->d, dpb, 16};
    if (avq_pq_check_shape(&shape, "paper") != AVQ_OK) return cli_fail("paper", AVQ_ERR_INVALID);
    size_t K = avq_pq_num_blocks(&shape);
    float *codebook = malloc(16 * e->d * sizeof(float));
    float *cb_work = malloc(16 * e->d * sizeof(float));
    float *decoded = malloc(e->n * e->d * sizeof(float));
    uint8_t *codes = malloc(e->n * K);
    int rc = 0;
    if (!codebook || !cb_work || !decoded || !codes) {
        rc = cli_error("paper", "out of memory for %zu decoded vectors", e->n);
        goto out;
    }
    avq_pq_train_params tp;
    avq_pq_default_train_params(&tp);
    tp.training_sample = o->sample;
    tp.max_iter = o->iters;
    tp.seed = o->seed;
    tp.threads = e->threads;
    double t0 = cli_now();
    int st = avq_pq_train(e->base, e->n, &shape, &tp, codebook, cli_progress, NULL);
    if (st != AVQ_OK) {
        rc = cli_fail("paper", st);
        goto out;
    }
    fprintf(stderr, "avq-paper: %zu bits (%zu blocks x 4 bits, %zu dims/block): codebook in %.1f s\n",
            4 * K, K, dpb, cli_now() - t0);
    size_t runs = 1 + (o->nspecs - 1) * (o->cb_rounds ? 2 : 1);
    for (size_t r = 0; r < runs && !rc; r++) {
        /* run 0: reconstruction; then per spec: plain, [+ codebook update] */
        size_t t = r == 0 ? 0 : 1 + (r - 1) / (o->cb_rounds ? 2 : 1);
        size_t rounds = r > 0 && o->cb_rounds && (r - 1) % 2 == 1 ? o->cb_rounds : 0;
        const code_spec *cs = &o->specs[t];
        variant *v = &out[(*nout)++];
        memset(v, 0, sizeof *v);
        v->bits = 4 * K;
        v->dims_per_block = dpb;
        v->spec = *cs;
        v->threshold = cs->recon ? NAN : cs->w.T;
        v->eta = spec_eta(o, cs, o->norm_p[1], e->d);
        v->eta_p1 = spec_eta(o, cs, o->norm_p[0], e->d);
        v->eta_p99 = spec_eta(o, cs, o->norm_p[2], e->d);
        spec_name(o, cs, rounds, v->name, sizeof v->name);
        avq_aniso_params ap;
        spec_params(o, cs, e->threads, &ap);
        memcpy(cb_work, codebook, 16 * e->d * sizeof(float));
        double start = cli_now();
        st = avq_aniso_encode(e->base, e->base, e->n, &shape, cb_work, &ap, codes,
                              cli_progress, NULL);
        for (size_t u = 0; u < rounds && st == AVQ_OK; u++) {
            st = avq_aniso_update_codebook(e->base, e->base, e->n, &shape, codes, &ap, cb_work);
            if (st == AVQ_OK)
                st = avq_aniso_encode(e->base, e->base, e->n, &shape, cb_work, &ap, codes,
                                      cli_progress, NULL);
        }
        v->encode_s = cli_now() - start;
        if (st == AVQ_OK) st = avq_pq_decode(codes, e->n, &shape, cb_work, decoded);
        if (st != AVQ_OK) {
            rc = cli_fail("paper", st);
            break;
        }
        rc = evaluate_timed(e, decoded, v, start);
    }
out:
    free(codebook);
    free(cb_work);
    free(decoded);
    free(codes);
    return rc;
}

/* ---- --int8-aware: the base as int8 rows --------------------------------- */

/* One int8 variant per spec (the reconstruction spec = round to nearest:
 * every eta is 1), appended to out.  Bits: 8 per dimension. */
static int run_int8(const paper_opts *o, const eval_setup *e, variant *out, size_t *nout) {
    size_t n = e->n, d = e->d;
    float *scale = malloc(d * sizeof *scale);
    float *decoded = malloc(n * d * sizeof *decoded);
    int8_t *rows = malloc(n * d);
    double *eta = malloc(n * sizeof *eta);
    int rc = 0;
    if (!scale || !decoded || !rows || !eta) {
        rc = cli_error("paper", "out of memory for %zu int8 rows", n);
        goto out;
    }
    avq_int8_scales(e->base, n, d, scale);
    for (size_t t = 0; t < o->nspecs && !rc; t++) {
        const code_spec *cs = &o->specs[t];
        variant *v = &out[(*nout)++];
        memset(v, 0, sizeof *v);
        v->int8 = 1;
        v->bits = 8 * d;
        v->spec = *cs;
        v->threshold = cs->recon ? NAN : cs->w.T;
        v->eta = spec_eta(o, cs, o->norm_p[1], d);
        v->eta_p1 = spec_eta(o, cs, o->norm_p[0], d);
        v->eta_p99 = spec_eta(o, cs, o->norm_p[2], d);
        char name[sizeof v->name - 5]; /* room for the "int8 " prefix */
        spec_name(o, cs, 0, name, sizeof name);
        snprintf(v->name, sizeof v->name, "int8 %s", cs->recon ? "nearest" : name);
        avq_aniso_params ap;
        spec_params(o, cs, e->threads, &ap);
        double start = cli_now();
        int st = avq_aniso_point_etas(e->base, n, d, &ap, eta);
        if (st == AVQ_OK) st = avq_aniso_round_i8_rows(e->base, n, d, scale, eta, e->threads, rows);
        if (st != AVQ_OK) {
            rc = cli_fail("paper", st);
            break;
        }
        v->encode_s = cli_now() - start;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < d; j++)
                decoded[i * d + j] = (float)rows[i * d + j] * scale[j];
        rc = evaluate_timed(e, decoded, v, start);
    }
out:
    free(scale);
    free(decoded);
    free(rows);
    free(eta);
    return rc;
}

/* ---- output ------------------------------------------------------------ */

/* The width of the name column: the classic widths unless a name is longer
 * (int8 rows under --weights). */
static int name_width(const variant *v, size_t nv, int least) {
    int w = least;
    for (size_t i = 0; i < nv; i++)
        if ((int)strlen(v[i].name) > w) w = (int)strlen(v[i].name);
    return w;
}

static void print_table(FILE *f, const variant *v, size_t nv, int weights) {
    int w = name_width(v, nv, weights ? 24 : 22);
    fprintf(f, "%-*s %4s %6s %7s %7s %8s %8s %9s %9s %8s", w, "variant", "bits", "eta",
            "R1@1", "R1@10", "R1@100", "R@10", "top1_err", "encode_s", "total_s");
    if (weights) fprintf(f, " %13s %9s %9s", "eta_p1..p99", "tuneR1@10", "heldR1@10");
    fprintf(f, "\n");
    for (size_t i = 0; i < nv; i++) {
        fprintf(f, "%-*s %4zu %6.3f %7.4f %7.4f %8.4f %8.4f %9.5f %9.2f %8.2f", w, v[i].name,
                v[i].bits, v[i].eta, v[i].recall1[1], v[i].recall1[10], v[i].recall1[100],
                v[i].recall10, v[i].rel_err, v[i].encode_s, v[i].total_s);
        if (weights)
            fprintf(f, " %6.2f..%-6.2f %9.4f %9.4f", v[i].eta_p1, v[i].eta_p99,
                    v[i].part_r1_10[0], v[i].part_r1_10[1]);
        fprintf(f, "\n");
    }
}

/* Per bit rate and weight kind: the variant with the best tuning-half
 * Recall1@10 (the first on ties), reported on the held-out half. */
static void print_summary(FILE *f, const variant *v, size_t nv) {
    int w = name_width(v, nv, 24);
    fprintf(f, "\n# best value per weight, chosen on the tuning half (even queries), "
               "reported on the held-out half (odd)\n");
    fprintf(f, "%4s %-14s %-*s %6s %13s %9s %9s %9s %9s\n", "bits", "weight", w, "chosen", "eta",
            "eta_p1..p99", "tuneR1@10", "heldR1@10", "held_err", "vs_step");
    for (size_t i = 0; i < nv; i++) {
        if (i > 0 && v[i].bits == v[i - 1].bits) continue; /* once per bit rate */
        double step_held = NAN;
        for (int k = -1; k < 4; k++) {
            const variant *best = NULL;
            for (size_t j = i; j < nv && v[j].bits == v[i].bits; j++) {
                int kind = v[j].spec.recon ? -1 : (int)v[j].spec.w.kind;
                if (kind == k && (!best || v[j].part_r1_10[0] > best->part_r1_10[0]))
                    best = &v[j];
            }
            if (!best) continue;
            if (k == AVQ_WEIGHT_STEP) step_held = best->part_r1_10[1];
            char diff[16] = "-";
            if (k > AVQ_WEIGHT_STEP && !isnan(step_held))
                snprintf(diff, sizeof diff, "%+.4f", best->part_r1_10[1] - step_held);
            const char *kind = k >= 0 ? WEIGHT_NAMES[k] : best->int8 ? "nearest" : "reconstruction";
            fprintf(f, "%4zu %-14s %-*s %6.3f %6.2f..%-6.2f %9.4f %9.4f %9.5f %9s\n",
                    best->bits, kind, w, best->name,
                    best->eta, best->eta_p1, best->eta_p99, best->part_r1_10[0],
                    best->part_r1_10[1], best->part_err[1], diff);
        }
    }
}

static int write_csv(const char *path, const variant *v, size_t nv) {
    FILE *f = fopen(path, "w");
    if (!f) return cli_error("paper", "cannot write %s", path);
    fprintf(f, "variant,bits,dims_per_block,threshold,eta,recall1_at_1,recall1_at_10,"
               "recall1_at_100,recall_at_10,top1_rel_err,encode_s,total_s,"
               "weight,weight_param,eta_p1,eta_p99,tune_r1_at_10,held_r1_at_10,"
               "tune_top1_err,held_top1_err,codes\n");
    for (size_t i = 0; i < nv; i++)
        fprintf(f, "%s,%zu,%zu,%g,%.6g,%.6f,%.6f,%.6f,%.6f,%.6g,%.3f,%.3f,%s,%g,%.6g,%.6g,"
                   "%.6f,%.6f,%.6g,%.6g,%s\n",
                v[i].name, v[i].bits, v[i].dims_per_block, v[i].threshold, v[i].eta,
                v[i].recall1[1], v[i].recall1[10], v[i].recall1[100], v[i].recall10,
                v[i].rel_err, v[i].encode_s, v[i].total_s,
                v[i].spec.recon ? "reconstruction" : WEIGHT_NAMES[v[i].spec.w.kind],
                v[i].spec.w.param, v[i].eta_p1, v[i].eta_p99, v[i].part_r1_10[0],
                v[i].part_r1_10[1], v[i].part_err[0], v[i].part_err[1],
                v[i].int8 ? "int8" : "pq4");
    return fclose(f) == 0 ? 0 : cli_error("paper", "error writing %s", path);
}

/* Curves to a temporary CSV (N, one column per variant), then the plot
 * script.  fork/exec rather than system(): no shell, no quoting issues. */
static int write_plot(const char *png, const variant *v, size_t nv) {
    char csv[] = "/tmp/avq-paper-XXXXXX";
    int fd = mkstemp(csv);
    if (fd < 0) return cli_error("paper", "cannot create a temporary file for the plot");
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(csv);
        return cli_error("paper", "cannot write the plot data");
    }
    fprintf(f, "N");
    for (size_t i = 0; i < nv; i++) fprintf(f, ",%s (%zu bits)", v[i].name, v[i].bits);
    fprintf(f, "\n");
    for (size_t N = 1; N <= CURVE; N++) {
        fprintf(f, "%zu", N);
        for (size_t i = 0; i < nv; i++) fprintf(f, ",%.6f", v[i].recall1[N]);
        fprintf(f, "\n");
    }
    int rc = fclose(f) == 0 ? 0 : cli_error("paper", "error writing the plot data");
    const char *script = getenv("AVQ_PAPER_PLOT");
    if (!script) script = "scripts/paper_plot.py";
    const char *python = getenv("AVQ_PYTHON");
    if (!python) python = "/usr/bin/python3";
    if (!rc) {
        pid_t pid = fork();
        if (pid == 0) {
            execl(python, python, script, csv, png, (char *)NULL);
            _exit(127);
        }
        int status = 0;
        if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0)
            rc = cli_error("paper", "plot script %s failed (python %s)", script, python);
        else
            fprintf(stderr, "avq-paper: wrote %s\n", png);
    }
    unlink(csv);
    return rc;
}

/* ---- main -------------------------------------------------------------- */

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Move nq rows spread evenly over the matrix (row i*rows/nq) to its front,
 * in order: a representative subset of a file sorted by anything. */
static void spread_rows(float_matrix *m, size_t nq) {
    for (size_t i = 0; i < nq; i++) {
        size_t src = (size_t)((double)i * (double)m->rows / (double)nq);
        if (src != i) memmove(m->data + i * m->cols, m->data + src * m->cols, m->cols * sizeof(float));
    }
}

int cmd_paper(int argc, char **argv) {
    paper_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    float_matrix base, query;
    rc = cli_load_base_query("paper", o.base_path, o.query_path, &base, &query);
    if (rc) return rc;
    size_t nq = o.queries && o.queries < query.rows ? o.queries : query.rows;
    if (!o.first) spread_rows(&query, nq);
    if (o.normalize) {
        avq_normalize_rows(base.data, base.rows, base.cols);
        avq_normalize_rows(query.data, nq, query.cols);
    }
    eval_setup e = {base.data, query.data, base.rows, base.cols, nq,
                    base.rows < CURVE ? base.rows : CURVE, base.rows < GT_K ? base.rows : GT_K,
                    NULL, (int)o.threads};
    /* base norms (percentiles): the default --weights grids scale with them,
     * and the table shows each variant's eta range */
    {
        float *nr = malloc(base.rows * sizeof *nr);
        if (!nr) {
            rc = cli_error("paper", "out of memory");
            float_matrix_free(&base);
            float_matrix_free(&query);
            return rc;
        }
        for (size_t i = 0; i < base.rows; i++)
            nr[i] = (float)sqrt(avq_norm2_f64(base.data + i * base.cols, base.cols));
        qsort(nr, base.rows, sizeof *nr, cmp_float);
        double pct[3] = {0.01, 0.5, 0.99};
        for (int k = 0; k < 3; k++) o.norm_p[k] = nr[(size_t)(pct[k] * (double)(base.rows - 1))];
        free(nr);
    }
    if (o.weights_arg) rc = parse_weights(&o, o.relative ? 1.0 : o.norm_p[1]);
    else threshold_specs(&o);
    if (rc) {
        float_matrix_free(&base);
        float_matrix_free(&query);
        return rc;
    }
    /* per bit rate: reconstruction + up to 2 rows per spec; then the int8 rows */
    variant *vars = calloc(MAX_CONFIGS * (2 * MAX_SPECS + 1) + MAX_SPECS, sizeof *vars);
    int64_t *gt = malloc(nq * e.k_gt * sizeof *gt);
    if (!vars || !gt) {
        rc = cli_error("paper", "out of memory");
        goto out;
    }
    double t0 = cli_now();
    int st = avq_exact_search(base.data, base.rows, base.cols, query.data, nq, AVQ_METRIC_DOT,
                              e.k_gt, e.threads, gt, NULL, cli_progress, NULL);
    if (st != AVQ_OK) {
        rc = cli_fail("paper", st);
        goto out;
    }
    e.gt = gt;
    fprintf(stderr, "avq-paper: %zu x %zu base, %zu queries, exact top-%zu in %.1f s\n",
            base.rows, base.cols, nq, e.k_gt, cli_now() - t0);
    size_t nv = 0;
    for (size_t c = 0; c < o.nconfigs && !rc; c++) rc = run_config(&o, &e, o.dpb[c], vars, &nv);
    if (!rc && o.int8) rc = run_int8(&o, &e, vars, &nv);
    if (!rc) {
        printf("# avq-paper: %s, %zu %s queries, eta mode %s, total %.1f s\n", o.base_path, nq,
               nq == query.rows ? "(all)" : o.first ? "first" : "evenly spread",
               o.eta_mode == AVQ_ETA_EXACT ? "exact" : "asymptotic", cli_now() - t0);
        if (o.weights_arg)
            printf("# %s, threshold kind %s, base norms p1/p50/p99 %.3f/%.3f/%.3f\n",
                   o.normalize ? "normalised" : "raw", o.relative ? "relative" : "absolute",
                   o.norm_p[0], o.norm_p[1], o.norm_p[2]);
        if (o.int8)
            printf("# int8 rows: %zu bits, per-dimension scales max|x_j|/127 of the base, "
                   "rounded to nearest or score-aware at each variant's eta\n", 8 * base.cols);
        print_table(stdout, vars, nv, o.weights_arg != NULL);
        if (o.weights_arg) print_summary(stdout, vars, nv);
    }
    if (!rc && o.csv_path) rc = write_csv(o.csv_path, vars, nv);
    if (!rc && o.plot_path) rc = write_plot(o.plot_path, vars, nv);
out:
    free(vars);
    free(gt);
    float_matrix_free(&base);
    float_matrix_free(&query);
    return rc;
}
