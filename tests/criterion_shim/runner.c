/*
 * runner.c -- main() of the Criterion stand-in (criterion/criterion.h here
 * says why it exists).  Usage:
 *   BINARY [--jobs N | -jN] [--filter GLOB] [--skip GLOB]...
 * GLOBs are matched against "suite/name": --filter as Criterion's (only
 * matching tests run), --skip (the shim's own, repeatable) leaves matching
 * tests out -- arm64.mk's ARM64_SKIP, so CI can drop the slowest tests
 * under emulation without listing the rest.  --jobs is accepted and
 * ignored.  The tests run one after another IN this process: a failed
 * assertion longjmps back here, the test counts as failed (its memory is
 * leaked) and the next one runs.  The last line is "N passed, N failed,
 * N skipped"; the exit status is 1 if any test failed.
 */
#include "criterion/criterion.h"

#include <fnmatch.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static struct cr_shim_test *tests;
static struct cr_shim_suite *suites;

void cr_shim_register_test(struct cr_shim_test *t) {
    t->next = tests;
    tests = t;
}

void cr_shim_register_suite(struct cr_shim_suite *s) {
    s->next = suites;
    suites = s;
}

static const char *current = "?";
static jmp_buf on_failure;

void cr_shim_fail(const char *file, int line, const char *cond, const char *fmt, ...) {
    fprintf(stderr, "[FAIL] %s: %s:%d: assertion failed: %s", current, file, line, cond);
    if (fmt && *fmt) {
        va_list ap;
        va_start(ap, fmt);
        fputs(": ", stderr);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    }
    fputc('\n', stderr);
    fflush(stderr);
    longjmp(on_failure, 1);
}

static const struct cr_shim_suite *suite_of(const struct cr_shim_test *t) {
    for (const struct cr_shim_suite *s = suites; s; s = s->next)
        if (strcmp(s->name, t->suite) == 0) return s;
    return NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int main(int argc, char **argv) {
    static const char *filter; /* static: live across setjmp */
    static const char *skip[64];
    static int nskip;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc) i++; /* accepted, ignored */
        else if (strncmp(argv[i], "--jobs=", 7) == 0 || strncmp(argv[i], "-j", 2) == 0) continue;
        else if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc) filter = argv[++i];
        else if (strncmp(argv[i], "--filter=", 9) == 0) filter = argv[i] + 9;
        else if (strcmp(argv[i], "--skip") == 0 && i + 1 < argc && nskip < 64) skip[nskip++] = argv[++i];
        else if (strncmp(argv[i], "--skip=", 7) == 0 && nskip < 64) skip[nskip++] = argv[i] + 7;
        else {
            fprintf(stderr, "usage: %s [--jobs N] [--filter GLOB] [--skip GLOB]... (at most 64 --skip)\n",
                    argv[0]);
            return 2;
        }
    }
    static int passed, failed, skipped;
    for (const struct cr_shim_test *t = tests; t; t = t->next) {
        char full[256];
        snprintf(full, sizeof full, "%s/%s", t->suite, t->name);
        if (filter && fnmatch(filter, full, 0) != 0) continue;
        int skip_it = 0;
        for (int k = 0; k < nskip && !skip_it; k++) skip_it = fnmatch(skip[k], full, 0) == 0;
        if (skip_it) {
            skipped++;
            fprintf(stderr, "[SKIP] %s\n", full);
            continue;
        }
        current = full;
        static double t0;
        t0 = now();
        if (setjmp(on_failure) == 0) {
            const struct cr_shim_suite *s = suite_of(t);
            if (s && s->opts.init) s->opts.init();
            if (t->opts.init) t->opts.init();
            t->fn();
            if (t->opts.fini) t->opts.fini();
            if (s && s->opts.fini) s->opts.fini();
            passed++;
            fprintf(stderr, "[PASS] %s (%.1f s)\n", full, now() - t0);
        } else {
            failed++;
        }
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
