/*
 * error.c -- the one error convention of avq.
 *
 * Every fallible function returns a negative avq_status and leaves a message
 * with context in a thread-local buffer.  Thread-local (not global) because an
 * index is searched by many threads at once and one thread's failure must not
 * overwrite another's explanation.  The buffer is fixed-size so that
 * reporting an out-of-memory condition never needs memory.
 */
#include "avq_internal.h"

#include <stdio.h>
#include <string.h>

#define AVQ_ERROR_CAPACITY 512

static _Thread_local char last_error[AVQ_ERROR_CAPACITY];

const char *avq_version(void) {
#define AVQ_STR2(x) #x
#define AVQ_STR(x) AVQ_STR2(x)
    return AVQ_STR(AVQ_VERSION_MAJOR) "." AVQ_STR(AVQ_VERSION_MINOR) "." AVQ_STR(
        AVQ_VERSION_PATCH);
}

unsigned avq_version_number(void) { return AVQ_VERSION_NUMBER; }

const char *avq_strerror(int status) {
    switch (status) {
    case AVQ_OK: return "success";
    case AVQ_ERR_INVALID: return "invalid argument";
    case AVQ_ERR_NOMEM: return "out of memory";
    case AVQ_ERR_IO: return "input/output error";
    case AVQ_ERR_FORMAT: return "corrupt or unsupported file";
    case AVQ_ERR_CANCELLED: return "cancelled";
    case AVQ_ERR_UNSUPPORTED: return "unsupported";
    case AVQ_ERR_INTERNAL: return "internal error";
    default: return "unknown error";
    }
}

const char *avq_last_error(void) { return last_error; }

int avq_fail(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

int avq_fail_nomem(const char *what, size_t bytes) {
    return avq_fail(AVQ_ERR_NOMEM, "out of memory allocating %zu bytes for %s",
                    bytes, what);
}

int avq_metric_parse(const char *name, avq_metric *out) {
    static const struct { const char *name; avq_metric metric; } names[] = {
        {"ip", AVQ_METRIC_DOT},         {"dot", AVQ_METRIC_DOT},
        {"dot_product", AVQ_METRIC_DOT}, {"l2", AVQ_METRIC_L2},
        {"squared_l2", AVQ_METRIC_L2},  {"euclidean", AVQ_METRIC_L2},
        {"cos", AVQ_METRIC_COSINE},     {"cosine", AVQ_METRIC_COSINE},
        {"angular", AVQ_METRIC_COSINE},
    };
    if (name != NULL && out != NULL) {
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            if (strcmp(name, names[i].name) == 0) {
                *out = names[i].metric;
                return AVQ_OK;
            }
        }
    }
    return avq_fail(AVQ_ERR_INVALID,
                    "unknown metric '%s' (expected ip|dot_product, l2|squared_l2, "
                    "cos|cosine|angular)",
                    name ? name : "(null)");
}

const char *avq_metric_name(avq_metric metric) {
    switch (metric) {
    case AVQ_METRIC_DOT: return "dot_product";
    case AVQ_METRIC_L2: return "squared_l2";
    case AVQ_METRIC_COSINE: return "cosine";
    default: return "unknown";
    }
}
