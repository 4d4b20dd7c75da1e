/*
 * cli_util.h -- the few helpers the tools share with no dependency beyond
 * the public header: an error buffer for failures detected in tools/ (the
 * dataset readers), overflow-checked multiplication, a finiteness scan.
 *
 * The tools are clients of include/avq.h only, so they cannot record a
 * message in the library's own buffer (avq_last_error).  They keep theirs
 * here, with the same convention: a function that fails returns a negative
 * avq_status and leaves a message naming the file and the problem, in
 * thread-local storage, for cli_last_error().
 */
#ifndef AVQ_CLI_UTIL_H
#define AVQ_CLI_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Record a failure for cli_last_error() (printf-style) and return status,
 * so a failing path reads `return cli_set_error(AVQ_ERR_FORMAT, ...)`. */
int cli_set_error(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Shorthand for an allocation failure of `bytes` while doing `what`. */
int cli_set_nomem(const char *what, size_t bytes);

/* The message of the most recent failure in this thread, whether the
 * library (avq_last_error) or the tools (cli_set_error) reported it.  A
 * tools message counts as the most recent until the library's message
 * changes, i.e. until a library call fails after it.  "" if nothing failed.
 * The string stays valid until the next failing call in this thread. */
const char *cli_last_error(void);

/* a * b without overflow; false (and *out untouched) if it would. */
static inline bool cli_mul_ok(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}

/* Index of the first NaN or infinite value of x[0..n), or n if none. */
size_t cli_first_non_finite(const float *x, size_t n);

#endif
