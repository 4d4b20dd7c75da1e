/*
 * cli_util.c -- the tools' error buffer and small helpers (see cli_util.h).
 *
 * Not to include dataset.h here: that header maps avq_last_error to
 * cli_last_error for its callers, and this file needs the library's own.
 */
#include "cli_util.h"

#include "avq.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The library's buffer is 512 bytes; messages are truncated alike. */
#define CLI_ERROR_CAPACITY 1024

static _Thread_local char tool_error[CLI_ERROR_CAPACITY];
/* What avq_last_error() said when tool_error was written: while it still
 * says so, no library call has failed since, and tool_error is the newer. */
static _Thread_local char library_then[CLI_ERROR_CAPACITY];
static _Thread_local bool tool_error_set;

int cli_set_error(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tool_error, sizeof tool_error, fmt, ap);
    va_end(ap);
    snprintf(library_then, sizeof library_then, "%s", avq_last_error());
    tool_error_set = true;
    return status;
}

int cli_set_nomem(const char *what, size_t bytes) {
    return cli_set_error(AVQ_ERR_NOMEM, "out of memory allocating %zu bytes for %s", bytes,
                         what);
}

const char *cli_last_error(void) {
    const char *lib = avq_last_error();
    if (!lib) lib = "";
    if (tool_error_set && strncmp(lib, library_then, sizeof library_then - 1) == 0)
        return tool_error;
    return lib;
}

size_t cli_first_non_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return n;
}
