/*
 * cli_tags.c -- tag files, tag lists and search filters for the CLI (see
 * cli_tags.h for the formats).
 */
#include "cli_tags.h"

#include "cli.h"
#include "dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char tags_file_help[] =
    "  tag file: text, one line per vector in row order; a line lists its tags,\n"
    "            integers 0..4294967295 separated by commas or blanks (\"3,17\");\n"
    "            an empty line = no tags (end every line with a newline); lines\n"
    "            starting with '#' are comments (not a vector); at most 1024\n"
    "            distinct tags per vector\n";

const char tags_filter_help[] =
    "filters (at most one per search; they work inside the scan, not after it):\n"
    "  --allow-ids F   return only vectors whose id is listed in F\n"
    "  --deny-ids F    never return vectors whose id is listed in F\n"
    "                  F: text with one id per line ('#' comments and blank lines\n"
    "                  skipped; an empty file is the empty set), .npy (int64/int32),\n"
    "                  .ivecs or FILE.hdf5:DATASET\n"
    "  --tags-any L    only vectors carrying at least one of the tags L\n"
    "  --tags-all L    only vectors carrying all of the tags L\n"
    "                  L: tags 0..4294967295 separated by commas (\"3,17\"), or\n"
    "                  @FILE to read them from a file (commas, blanks or one per\n"
    "                  line); 1..4096 distinct tags\n"
    "  --filter-min-scanned N  filtered scan: after --leaves-to-search leaves,\n"
    "                  visit more until N allowed vectors were scanned (default\n"
    "                  8 x --reorder)\n"
    "  --filter-exact-below N  score every allowed vector exactly when the filter\n"
    "                  allows at most N (known for tag filters and allow sets;\n"
    "                  default 1500; 1 = (almost) never)\n"
    "  Fewer than K allowed vectors: the missing results are id -1, score NaN.\n";

void tag_table_free(tag_table *t) {
    if (!t) return;
    free(t->offsets);
    free(t->tags);
    memset(t, 0, sizeof *t);
}

/* A growable array of tags. */
typedef struct {
    uint32_t *data;
    size_t n, cap;
} tag_vec;

static int tag_vec_push(tag_vec *v, uint32_t tag) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 256;
        if (cap > SIZE_MAX / sizeof *v->data) return cli_set_nomem("tags", SIZE_MAX);
        uint32_t *p = realloc(v->data, cap * sizeof *p);
        if (!p) return cli_set_nomem("tags", cap * sizeof *p);
        v->data = p;
        v->cap = cap;
    }
    v->data[v->n++] = tag;
    return AVQ_OK;
}

static int compare_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Sort t[0..n) and drop repeats; returns the new length. */
static size_t sort_unique(uint32_t *t, size_t n) {
    if (n < 2) return n;
    qsort(t, n, sizeof *t, compare_u32);
    size_t m = 1;
    for (size_t i = 1; i < n; i++)
        if (t[i] != t[m - 1]) t[m++] = t[i];
    return m;
}

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

/* A printable copy of p[0..len) (at most 40 characters) for a message. */
static const char *shown(char *buf, const char *p, size_t len) {
    size_t m = len < 40 ? len : 40, j = 0;
    for (size_t i = 0; i < m; i++) {
        unsigned char ch = (unsigned char)p[i];
        buf[j++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    if (len > m) buf[j++] = '.', buf[j++] = '.', buf[j++] = '.';
    buf[j] = '\0';
    return buf;
}

/* Append the tags of p[0..len) (commas and/or blanks between them) to v.
 * `where` starts any message ("tags.txt: line 3", "--tags-any"). */
static int parse_tags(const char *where, const char *p, size_t len, tag_vec *v) {
    size_t i = 0, on_line = 0;
    int after_comma = 0;
    char buf[48];
    for (;;) {
        while (i < len && is_blank(p[i])) i++;
        if (i == len) {
            if (after_comma)
                return cli_set_error(AVQ_ERR_FORMAT, "%s: a tag is missing after the last ','",
                                     where);
            return AVQ_OK;
        }
        if (p[i] == ',') {
            if (after_comma || on_line == 0)
                return cli_set_error(AVQ_ERR_FORMAT, "%s: a tag is missing before a ','", where);
            after_comma = 1;
            i++;
            continue;
        }
        size_t j = i;
        while (j < len && !is_blank(p[j]) && p[j] != ',') j++;
        uint64_t value = 0;
        int ok = 1;
        for (size_t t = i; t < j && ok; t++) {
            if (p[t] < '0' || p[t] > '9') ok = 0;
            else {
                value = value * 10 + (uint64_t)(p[t] - '0');
                if (value > UINT32_MAX) ok = 0;
            }
        }
        if (!ok)
            return cli_set_error(AVQ_ERR_FORMAT,
                                 "%s: '%s' is not a tag (tags are integers 0..4294967295)", where,
                                 shown(buf, p + i, j - i));
        int st = tag_vec_push(v, (uint32_t)value);
        if (st) return st;
        on_line++;
        after_comma = 0;
        i = j;
    }
}

/* The whole of a (text) file into *buf (NUL-terminated, malloc'ed). */
static int read_text_file(const char *path, char **buf, size_t *len) {
    /* O_NONBLOCK: opening a FIFO for reading would wait for a writer; it is
     * refused below instead (no effect on reading a regular file) */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return cli_set_error(AVQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return cli_set_error(AVQ_ERR_IO, "%s: not a regular file", path);
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return cli_set_error(AVQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    size_t size = (size_t)sb.st_size;
    char *p = malloc(size + 1);
    if (!p) {
        fclose(f);
        return cli_set_nomem(path, size + 1);
    }
    size_t got = fread(p, 1, size, f);
    int err = ferror(f);
    fclose(f);
    if (err || got != size) {
        free(p);
        return cli_set_error(AVQ_ERR_IO, "%s: read failed (file changed while reading?)", path);
    }
    p[size] = '\0';
    *buf = p;
    *len = size;
    return AVQ_OK;
}

/* Calls line(ctx, number, start, length) for every line of text (a final
 * newline ends the last line; it does not start an empty one).  Stops at
 * the first non-zero return. */
typedef int (*line_fn)(void *ctx, size_t number, const char *p, size_t len);

static int each_line(const char *text, size_t len, line_fn fn, void *ctx) {
    size_t number = 0;
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && text[end] != '\n') end++;
        int st = fn(ctx, ++number, text + i, end - i);
        if (st) return st;
        i = end + 1;
    }
    return AVQ_OK;
}

static int is_comment(const char *p, size_t len) {
    size_t i = 0;
    while (i < len && is_blank(p[i])) i++;
    return i < len && p[i] == '#';
}

typedef struct {
    const char *path, *what;
    size_t expected, rows, cap_rows, last_line;
    size_t *offsets;
    tag_vec tags;
    size_t tagged;
} table_reader;

static int table_line(void *ctx, size_t number, const char *p, size_t len) {
    table_reader *r = ctx;
    if (is_comment(p, len)) return AVQ_OK;
    if (r->expected != (size_t)-1 && r->rows == r->expected)
        return cli_set_error(AVQ_ERR_INVALID,
                             "%s: line %zu: more lines of tags than the %zu rows of %s (one "
                             "line per row, in order; '#' lines are comments)",
                             r->path, number, r->expected, r->what);
    char where[256];
    snprintf(where, sizeof where, "%s: line %zu", r->path, number);
    size_t start = r->tags.n;
    int st = parse_tags(where, p, len, &r->tags);
    if (st) return st;
    size_t m = sort_unique(r->tags.data + start, r->tags.n - start);
    if (m > AVQ_MAX_TAGS_PER_VECTOR)
        return cli_set_error(AVQ_ERR_INVALID, "%s: %zu distinct tags, at most %d per vector",
                             where, m, AVQ_MAX_TAGS_PER_VECTOR);
    r->tags.n = start + m;
    r->tagged += m > 0;
    r->offsets[++r->rows] = r->tags.n;
    r->last_line = number;
    return AVQ_OK;
}

int tags_read_file(const char *path, size_t rows_expected, const char *what, tag_table *out) {
    memset(out, 0, sizeof *out);
    char *text = NULL;
    size_t len = 0;
    int st = read_text_file(path, &text, &len);
    if (st) return st;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    table_reader r = {path, what ? what : "the input", rows_expected, 0, lines, 0, NULL,
                      {NULL, 0, 0}, 0};
    r.offsets = malloc((lines + 1) * sizeof *r.offsets);
    if (!r.offsets) {
        free(text);
        return cli_set_nomem("tag offsets", (lines + 1) * sizeof *r.offsets);
    }
    r.offsets[0] = 0;
    st = each_line(text, len, table_line, &r);
    free(text);
    if (!st && rows_expected != (size_t)-1 && r.rows < rows_expected) {
        if (r.rows == 0)
            st = cli_set_error(AVQ_ERR_INVALID,
                               "%s: no lines of tags, but %s has %zu rows: one line per row "
                               "is needed (an empty line = no tags)",
                               path, r.what, rows_expected);
        else
            st = cli_set_error(AVQ_ERR_INVALID,
                               "%s: %zu lines of tags (the last at line %zu), but %s has %zu "
                               "rows: one line per row is needed (an empty line = no tags)",
                               path, r.rows, r.last_line, r.what, rows_expected);
    }
    if (st) {
        free(r.offsets);
        free(r.tags.data);
        return st;
    }
    out->n = r.rows;
    out->offsets = r.offsets;
    out->tags = r.tags.data;
    out->tagged = r.tagged;
    return AVQ_OK;
}

typedef struct {
    const char *path;
    tag_vec *tags;
} list_reader;

static int list_line(void *ctx, size_t number, const char *p, size_t len) {
    list_reader *r = ctx;
    if (is_comment(p, len)) return AVQ_OK;
    char where[256];
    snprintf(where, sizeof where, "%s: line %zu", r->path, number);
    return parse_tags(where, p, len, r->tags);
}

int tags_parse_list(const char *option, const char *value, uint32_t **tags, size_t *n) {
    tag_vec v = {NULL, 0, 0};
    int st;
    if (value[0] == '@') {
        if (!value[1])
            return cli_set_error(AVQ_ERR_INVALID, "%s: '@' needs a file name (@FILE)", option);
        char *text = NULL;
        size_t len = 0;
        st = read_text_file(value + 1, &text, &len);
        if (!st) {
            list_reader r = {value + 1, &v};
            st = each_line(text, len, list_line, &r);
            free(text);
        }
    } else {
        st = parse_tags(option, value, strlen(value), &v);
    }
    if (!st) {
        v.n = sort_unique(v.data, v.n);
        if (v.n == 0)
            st = cli_set_error(AVQ_ERR_INVALID, "%s: no tags given (expected a list like 3,17)",
                               option);
        else if (v.n > AVQ_MAX_FILTER_TAGS)
            st = cli_set_error(AVQ_ERR_INVALID, "%s: %zu distinct tags, at most %d per filter",
                               option, v.n, AVQ_MAX_FILTER_TAGS);
    }
    if (st) {
        free(v.data);
        return st;
    }
    *tags = v.data;
    *n = v.n;
    return AVQ_OK;
}

int filter_options_count(const filter_options *o) {
    return !!o->allow_ids + !!o->deny_ids + !!o->tags_any + !!o->tags_all;
}

int filter_make(const char *cmd, const filter_options *o, avq_filter **out, char *desc,
                size_t desc_size) {
    *out = NULL;
    if (desc_size) desc[0] = '\0';
    int st = AVQ_OK;
    if (o->allow_ids || o->deny_ids) {
        const char *path = o->allow_ids ? o->allow_ids : o->deny_ids;
        id_list ids = {0, NULL};
        st = dataset_read_id_set(path, &ids);
        if (st) return cli_fail(cmd, st);
        st = o->allow_ids ? avq_filter_allow_ids(ids.data, ids.n, out)
                          : avq_filter_deny_ids(ids.data, ids.n, out);
        snprintf(desc, desc_size, "%s %zu ids", o->allow_ids ? "allow" : "deny", ids.n);
        id_list_free(&ids);
    } else if (o->tags_any || o->tags_all) {
        const char *option = o->tags_any ? "--tags-any" : "--tags-all";
        uint32_t *tags = NULL;
        size_t n = 0;
        st = tags_parse_list(option, o->tags_any ? o->tags_any : o->tags_all, &tags, &n);
        if (st) return cli_fail(cmd, st);
        st = o->tags_any ? avq_filter_tags_any(tags, n, out) : avq_filter_tags_all(tags, n, out);
        snprintf(desc, desc_size, "%s of %zu tag%s", o->tags_any ? "tags-any" : "tags-all", n,
                 n == 1 ? "" : "s");
        free(tags);
    }
    if (st) {
        *out = NULL;
        return cli_fail(cmd, st);
    }
    return 0;
}
