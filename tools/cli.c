/*
 * cli.c -- shared helpers of the avq subcommands (see cli.h).
 */
#include "cli.h"

#include "avq.h"
#include "cli_util.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* NULL: messages name "avq CMD"; else this program name alone. */
static const char *program_name;

void cli_set_program(const char *name) { program_name = name; }

/* "avq CMD" or the program's own name, for messages. */
static void put_who(const char *cmd) {
    if (program_name) fputs(program_name, stderr);
    else fprintf(stderr, "avq %s", cmd);
}

int cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    put_who(cmd);
    fputs(": error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int cli_fail(const char *cmd, int status) {
    const char *msg = cli_last_error();
    return cli_error(cmd, "%s", msg && *msg ? msg : avq_strerror(status));
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    put_who(cmd);
    fputs(": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(see '", stderr);
    put_who(cmd);
    fputs(" --help')\n", stderr);
    return 2;
}

bool cli_parse_size(const char *s, size_t *out) {
    if (!s || !*s || *s == '-' || *s == '+') return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > SIZE_MAX) return false;
    *out = (size_t)v;
    return true;
}

bool cli_parse_int(const char *s, long min, long max, long *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max) return false;
    *out = v;
    return true;
}

bool cli_parse_float(const char *s, float *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return false;
    *out = (float)v;
    return true;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The bar keeps its state in statics: the CLI is single-threaded at this
 * level (callbacks come from the calling thread only, see avq.h). */
int cli_progress(void *user, const char *stage, size_t done, size_t total) {
    (void)user;
    static double start = 0.0, last_draw = 0.0;
    static char last_stage[32];
    static int tty = -1;
    if (tty < 0) tty = isatty(STDERR_FILENO);
    if (!tty) return 0;
    double now = cli_now();
    if (strncmp(last_stage, stage, sizeof last_stage - 1) != 0) {
        snprintf(last_stage, sizeof last_stage, "%s", stage);
        start = now;
        last_draw = 0.0;
    }
    bool finished = total > 0 && done >= total;
    if (now - start < 1.0 || (!finished && now - last_draw < 0.1)) return 0;
    last_draw = now;
    double frac = total ? (double)done / (double)total : 0.0;
    int width = 30, filled = (int)(frac * width + 0.5);
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = 0;
    double eta = frac > 0 ? (now - start) * (1.0 - frac) / frac : 0.0;
    fprintf(stderr, "\r%-10s [%s] %5.1f%%  %6.1fs  eta %5.1fs", stage, bar,
            100.0 * frac, now - start, eta);
    if (finished) fputc('\n', stderr);
    fflush(stderr);
    return 0;
}

int cli_bad_option(const char *cmd, char **argv) {
    const char *arg = optind > 0 ? argv[optind - 1] : "?";
    return cli_usage_error(cmd, "unknown option or missing value: '%s'", arg);
}

const char *cli_metric_choices(char *buf, size_t cap) {
    size_t used = 0;
    avq_metric m, prev = AVQ_METRIC_DOT;
    const char *name;
    buf[0] = '\0';
    for (size_t i = 0; (name = avq_metric_alias(i, &m)) != NULL && used < cap; i++) {
        const char *sep = i == 0 ? "" : m != prev ? ", " : "|";
        int w = snprintf(buf + used, cap - used, "%s%s", sep, name);
        if (w < 0) break;
        used += (size_t)w;
        prev = m;
    }
    return buf;
}

void cli_metric_help(FILE *out, const char *lead) {
    char choices[256];
    fprintf(out, "%s%s (any case)\n", lead, cli_metric_choices(choices, sizeof choices));
}
