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

/* The one table of metric names: avq_metric_parse, the CLI's --metric,
 * HDF5 'distance' attributes and Python all read it (avq_metric_alias).
 * The first name of each metric is its canonical one (avq_metric_name). */
static const struct {
    const char *name;
    avq_metric metric;
} metric_names[] = {
    {"dot_product", AVQ_METRIC_DOT}, {"dot", AVQ_METRIC_DOT},     {"ip", AVQ_METRIC_DOT},
    {"inner_product", AVQ_METRIC_DOT}, {"mips", AVQ_METRIC_DOT},
    {"squared_l2", AVQ_METRIC_L2},   {"l2", AVQ_METRIC_L2},       {"euclidean", AVQ_METRIC_L2},
    {"sqeuclidean", AVQ_METRIC_L2},
    {"cosine", AVQ_METRIC_COSINE},   {"cos", AVQ_METRIC_COSINE},  {"angular", AVQ_METRIC_COSINE},
};
#define METRIC_NAMES (sizeof metric_names / sizeof metric_names[0])

const char *avq_metric_alias(size_t i, avq_metric *metric) {
    if (i >= METRIC_NAMES) return NULL;
    if (metric) *metric = metric_names[i].metric;
    return metric_names[i].name;
}

/* ASCII case-insensitive equality (locale-independent, unlike strcasecmp). */
static bool same_name(const char *a, const char *b) {
    for (;; a++, b++) {
        unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
        if (x >= 'A' && x <= 'Z') x = (unsigned char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = (unsigned char)(y - 'A' + 'a');
        if (x != y) return false;
        if (x == 0) return true;
    }
}

int avq_metric_parse(const char *name, avq_metric *out) {
    if (name != NULL && out != NULL) {
        for (size_t i = 0; i < METRIC_NAMES; i++) {
            if (same_name(name, metric_names[i].name)) {
                *out = metric_names[i].metric;
                return AVQ_OK;
            }
        }
    }
    /* "unknown metric 'x' (expected dot_product|dot|ip|..., squared_l2|...)" */
    char list[256];
    size_t used = 0;
    for (size_t i = 0; i < METRIC_NAMES && used < sizeof list; i++) {
        bool first = i == 0 || metric_names[i - 1].metric != metric_names[i].metric;
        int w = snprintf(list + used, sizeof list - used, "%s%s", i == 0 ? "" : first ? ", " : "|",
                         metric_names[i].name);
        if (w < 0) break;
        used += (size_t)w;
    }
    return avq_fail(AVQ_ERR_INVALID, "unknown metric '%s' (expected %s; case does not matter)",
                    name ? name : "(null)", list);
}

const char *avq_metric_name(avq_metric metric) {
    switch (metric) {
    case AVQ_METRIC_DOT: return "dot_product";
    case AVQ_METRIC_L2: return "squared_l2";
    case AVQ_METRIC_COSINE: return "cosine";
    default: return "unknown";
    }
}
