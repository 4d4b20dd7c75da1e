/*
 * dataset.c -- vector files in and out: TEXMEX .fvecs/.ivecs/.bvecs, NumPy
 * .npy and ann-benchmarks HDF5 (see dataset.h for the contract).
 *
 * Every reader treats the file as hostile.  The only numbers taken from a
 * file before validation are bounded by the file's size: a vecs file's row
 * count is its size divided by the row length of row 0, an .npy file's data
 * must fill the file exactly, an HDF5 dataset's extent is compared with the
 * storage the library reports.  Only then is the output allocated.
 *
 * Files are read with read() through a bounded buffer rather than mmap():
 * the speed is the same for one sequential pass (the copy out of the page
 * cache is needed anyway because vecs rows carry a 4-byte header), and a
 * file that shrinks while we read it becomes a "truncated" error instead of
 * a SIGBUS.
 *
 * Writers produce a complete file or nothing: vecs and .npy output goes to
 * a temporary file in the target's directory (unnamed, O_TMPFILE, where the
 * filesystem allows, so even a killed process leaves nothing) that is
 * renamed over the target only after the last byte was written and closed
 * successfully, so a full disk never leaves a plausible-looking short file
 * behind.  Paths are followed like cp follows them (see sink): symlinks are
 * written through, devices and FIFOs written in place.  HDF5 output is the
 * exception: it adds a dataset to a possibly existing file, in place.
 *
 * All multi-byte values on disk are little-endian (TEXMEX convention, and
 * what we write into .npy headers); big-endian .npy data is converted.
 */
#include "dataset.h"

#include "avq.h"
#include "cli_util.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* A dimension above this is certainly a corrupt header, not data: refuse
 * it before allocating a row of that size. */
#define DATASET_MAX_DIM 1000000

/* Read buffer for streaming conversions (grown to one row if rows are
 * larger). */
#define READ_CHUNK ((size_t)4 << 20)

/* An .npy header longer than this is not one numpy wrote. */
#define NPY_MAX_HEADER ((size_t)1 << 20)

/* ======================================================================= */
/* Byte order                                                               */
/* ======================================================================= */

static bool host_is_little_endian(void) {
    const uint16_t probe = 1;
    unsigned char first;
    memcpy(&first, &probe, 1);
    return first == 1;
}

static uint32_t load_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void store_le32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/* Copy n elements of `size` bytes, reversing each element's bytes when the
 * stored order differs from the host's. */
static void copy_elements(void *dst, const unsigned char *src, size_t n, size_t size,
                          bool src_little) {
    if (size == 1 || src_little == host_is_little_endian()) {
        memcpy(dst, src, n * size);
        return;
    }
    unsigned char *d = dst;
    for (size_t i = 0; i < n; i++)
        for (size_t b = 0; b < size; b++) d[i * size + b] = src[i * size + size - 1 - b];
}

/* ======================================================================= */
/* Paths                                                                    */
/* ======================================================================= */

typedef enum { FMT_FVECS, FMT_IVECS, FMT_BVECS, FMT_NPY, FMT_HDF5 } file_format;

typedef struct {
    char *file;          /* owned copy of the file part */
    const char *dataset; /* HDF5 dataset name inside `file`, or NULL */
    file_format format;
} parsed_path;

static bool ends_with_nocase(const char *s, size_t len, const char *suffix) {
    size_t n = strlen(suffix);
    return len >= n && strncasecmp(s + len - n, suffix, n) == 0;
}

static bool is_hdf5_name(const char *s, size_t len) {
    return ends_with_nocase(s, len, ".hdf5") || ends_with_nocase(s, len, ".h5");
}

/* The format a file name's extension names; false if none. */
static bool path_format(const char *file, size_t len, file_format *out) {
    if (ends_with_nocase(file, len, ".fvecs")) *out = FMT_FVECS;
    else if (ends_with_nocase(file, len, ".ivecs")) *out = FMT_IVECS;
    else if (ends_with_nocase(file, len, ".bvecs")) *out = FMT_BVECS;
    else if (ends_with_nocase(file, len, ".npy")) *out = FMT_NPY;
    else if (is_hdf5_name(file, len)) *out = FMT_HDF5;
    else return false;
    return true;
}

/* Split "file.hdf5:name" and pick the format from the extension.  Only a
 * colon after an HDF5 file name separates a dataset, so other paths may
 * contain colons. */
static int parse_path(const char *path, parsed_path *pp) {
    if (!path || !*path) return cli_set_error(AVQ_ERR_INVALID, "empty file name");
    pp->file = strdup(path);
    if (!pp->file) return cli_set_nomem("a file name", strlen(path) + 1);
    pp->dataset = NULL;
    char *colon = strrchr(pp->file, ':');
    if (colon && is_hdf5_name(pp->file, (size_t)(colon - pp->file))) {
        *colon = '\0';
        pp->dataset = colon + 1;
        if (!*pp->dataset) {
            free(pp->file);
            return cli_set_error(AVQ_ERR_INVALID, "%s: empty HDF5 dataset name after ':'", path);
        }
    }
    if (!path_format(pp->file, strlen(pp->file), &pp->format)) {
        free(pp->file);
        return cli_set_error(AVQ_ERR_INVALID,
                             "%s: unknown file type (use .fvecs, .ivecs, .bvecs, .npy, "
                             ".hdf5 or .h5)",
                             path);
    }
    return AVQ_OK;
}

/* ======================================================================= */
/* Buffered sequential reading                                              */
/* ======================================================================= */

typedef struct {
    const char *name;   /* for messages */
    int fd;
    size_t file_size;   /* from fstat at open */
    size_t offset;      /* file offset of buf[start] */
    unsigned char *buf;
    size_t cap, start, end;
    bool eof;
} source;

static const char *file_kind(mode_t m) {
    return S_ISDIR(m) ? "directory" : S_ISFIFO(m) ? "FIFO" : S_ISCHR(m) ? "character device"
         : S_ISBLK(m) ? "block device" : S_ISSOCK(m) ? "socket" : S_ISREG(m) ? "regular file"
         : "special file";
}

static int source_open(source *s, const char *name) {
    memset(s, 0, sizeof *s);
    s->name = name;
    /* O_NONBLOCK: a FIFO (or a device) is refused below instead of waiting
     * for a writer; on a regular file the flag changes nothing */
    s->fd = open(name, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (s->fd < 0) return cli_set_error(AVQ_ERR_IO, "%s: cannot open: %s", name, strerror(errno));
    struct stat st;
    if (fstat(s->fd, &st) != 0) {
        int err = errno;
        close(s->fd);
        return cli_set_error(AVQ_ERR_IO, "%s: cannot stat: %s", name, strerror(err));
    }
    if (S_ISDIR(st.st_mode)) {
        close(s->fd);
        return cli_set_error(AVQ_ERR_IO, "%s: is a directory, not a vector file", name);
    }
    if (!S_ISREG(st.st_mode)) {
        close(s->fd);
        return cli_set_error(AVQ_ERR_IO, "%s: not a regular file (a %s): vectors and ids are "
                                         "read from regular files", name, file_kind(st.st_mode));
    }
    if (st.st_size == 0) {
        close(s->fd);
        return cli_set_error(AVQ_ERR_FORMAT, "%s: empty file", name);
    }
    s->file_size = (size_t)st.st_size;
    s->cap = READ_CHUNK;
    s->buf = malloc(s->cap);
    if (!s->buf) {
        close(s->fd);
        return cli_set_nomem("a read buffer", s->cap);
    }
    return AVQ_OK;
}

static void source_close(source *s) {
    if (s->fd >= 0) close(s->fd);
    free(s->buf);
    s->fd = -1;
    s->buf = NULL;
}

/* Make sure `cap` is at least n bytes (n is bounded by the file size). */
static int source_reserve(source *s, size_t n) {
    if (n <= s->cap) return AVQ_OK;
    unsigned char *nb = malloc(n);
    if (!nb) return cli_set_nomem("a read buffer", n);
    memcpy(nb, s->buf + s->start, s->end - s->start);
    free(s->buf);
    s->buf = nb;
    s->end -= s->start;
    s->start = 0;
    s->cap = n;
    return AVQ_OK;
}

/* Buffer up to n bytes (n <= cap); fewer only at end of file. */
static int source_fill(source *s, size_t n) {
    if (s->end - s->start >= n || s->eof) return AVQ_OK;
    if (s->start > 0) {
        memmove(s->buf, s->buf + s->start, s->end - s->start);
        s->end -= s->start;
        s->start = 0;
    }
    while (s->end < n && !s->eof) {
        ssize_t got = read(s->fd, s->buf + s->end, s->cap - s->end);
        if (got < 0) {
            if (errno == EINTR) continue;
            return cli_set_error(AVQ_ERR_IO, "%s: read error at offset %zu: %s", s->name,
                                 s->offset + s->end, strerror(errno));
        }
        if (got == 0) s->eof = true;
        s->end += (size_t)got;
    }
    return AVQ_OK;
}

/* Point *p at the next n bytes and consume them; *got < n means the file
 * ended first (the bytes are consumed all the same). */
static int source_take(source *s, size_t n, const unsigned char **p, size_t *got) {
    int st = source_reserve(s, n);
    if (st) return st;
    st = source_fill(s, n);
    if (st) return st;
    size_t avail = s->end - s->start;
    *got = avail < n ? avail : n;
    *p = s->buf + s->start;
    s->start += *got;
    s->offset += *got;
    return AVQ_OK;
}

/* ======================================================================= */
/* Validation helpers                                                       */
/* ======================================================================= */

static int check_row_finite(const char *name, const float *row, size_t r, size_t cols) {
    size_t j = cli_first_non_finite(row, cols);
    if (j == cols) return AVQ_OK;
    return cli_set_error(AVQ_ERR_FORMAT, "%s: row %zu column %zu is %s", name, r, j,
                         isnan(row[j]) ? "NaN" : "infinite (or out of float32 range)");
}

static int alloc_elements(const char *name, size_t rows, size_t cols, size_t elem, void **out) {
    size_t n, bytes;
    if (!cli_mul_ok(rows, cols, &n) || !cli_mul_ok(n, elem, &bytes))
        return cli_set_error(AVQ_ERR_FORMAT, "%s: %zu x %zu elements overflow the address space",
                             name, rows, cols);
    *out = malloc(bytes ? bytes : 1);
    if (!*out) return cli_set_nomem(name, bytes);
    return AVQ_OK;
}

/* ======================================================================= */
/* TEXMEX .fvecs / .ivecs / .bvecs                                          */
/* ======================================================================= */

/* What a vecs payload element is, and where it goes. */
typedef enum { VECS_F32, VECS_I32, VECS_U8 } vecs_kind;

static size_t vecs_elem_size(vecs_kind kind) { return kind == VECS_U8 ? 1 : 4; }

/* Convert one row's payload into the output row (float or int32). */
static void vecs_convert_row(vecs_kind kind, const unsigned char *src, size_t dim, void *dst) {
    if (kind == VECS_U8) {
        float *f = dst;
        for (size_t j = 0; j < dim; j++) f[j] = (float)src[j];
    } else {
        copy_elements(dst, src, dim, 4, true);
    }
}

/* Read a whole vecs file.  Row 0's header fixes the dimension and, with the
 * file size, the row count; every later header must repeat it.  Output rows
 * are float for F32/U8 and int32 for I32. */
static int vecs_read(const char *name, vecs_kind kind, size_t *rows_out, size_t *dim_out,
                     void **data_out) {
    source s;
    int st = source_open(&s, name);
    if (st) return st;
    const unsigned char *p;
    size_t got;
    void *data = NULL;
    st = source_take(&s, 4, &p, &got);
    if (st) goto fail;
    if (got < 4) {
        st = cli_set_error(AVQ_ERR_FORMAT,
                           "%s: truncated: row 0 needs a 4-byte dimension header, file has %zu bytes",
                           name, s.file_size);
        goto fail;
    }
    int32_t dim32 = (int32_t)load_le32(p);
    if (dim32 <= 0 || dim32 > DATASET_MAX_DIM) {
        st = cli_set_error(AVQ_ERR_FORMAT,
                           "%s: row 0 declares dimension %d (must be 1..%d): not a vecs file or "
                           "corrupt",
                           name, (int)dim32, DATASET_MAX_DIM);
        goto fail;
    }
    const size_t dim = (size_t)dim32, esize = vecs_elem_size(kind);
    const size_t payload = dim * esize, row_bytes = 4 + payload;
    const size_t rows = s.file_size / row_bytes;
    if (rows == 0) {
        st = cli_set_error(AVQ_ERR_FORMAT,
                           "%s: truncated: row 0 needs %zu bytes at offset 0, file has %zu", name,
                           row_bytes, s.file_size);
        goto fail;
    }
    const size_t out_elem = kind == VECS_I32 ? sizeof(int32_t) : sizeof(float);
    st = alloc_elements(name, rows, dim, out_elem, &data);
    if (st) goto fail;

    for (size_t r = 0;; r++) {
        size_t offset = r * row_bytes;
        if (r > 0) { /* row 0's header was consumed above */
            st = source_take(&s, 4, &p, &got);
            if (st) goto fail;
            if (got == 0 && r == rows) break;
            if (got < 4) {
                st = cli_set_error(AVQ_ERR_FORMAT,
                                   "%s: truncated: row %zu needs %zu bytes at offset %zu, file has %zu",
                                   name, r, row_bytes, offset, s.file_size);
                goto fail;
            }
            int32_t d = (int32_t)load_le32(p);
            if (d != dim32) {
                st = cli_set_error(AVQ_ERR_FORMAT,
                                   "%s: row %zu has dimension %d, expected %zu (from row 0): "
                                   "ragged or corrupt file",
                                   name, r, (int)d, dim);
                goto fail;
            }
        }
        st = source_take(&s, payload, &p, &got);
        if (st) goto fail;
        if (got < payload || r >= rows) {
            st = cli_set_error(AVQ_ERR_FORMAT,
                               got < payload
                                   ? "%s: truncated: row %zu needs %zu bytes at offset %zu, file has %zu"
                                   : "%s: row %zu (%zu bytes at offset %zu) lies beyond the size "
                                     "%zu the file had when opened: file changed while reading",
                               name, r, row_bytes, offset, s.file_size);
            goto fail;
        }
        void *dst = (unsigned char *)data + r * dim * out_elem;
        vecs_convert_row(kind, p, dim, dst);
        if (kind == VECS_F32 && (st = check_row_finite(name, dst, r, dim))) goto fail;
    }
    source_close(&s);
    *rows_out = rows;
    *dim_out = dim;
    *data_out = data;
    return AVQ_OK;
fail:
    free(data);
    source_close(&s);
    return st;
}

/* ======================================================================= */
/* Writing: temporary file, then rename                                     */
/* ======================================================================= */

/* Where an output goes, following `name` like cp follows a destination
 * (the same rules as the library's saves, src/io.c):
 *   - missing: a new file, mode 0666 & ~umask;
 *   - a regular file, or a symbolic link (chain) to one: the target (the
 *     link's target, in its own directory) is replaced atomically, keeping
 *     its permission bits (and owner and group where allowed);
 *   - a character device or a FIFO (/dev/null, a pipe): written through, in
 *     place, as cp and shell redirection do;
 *   - a directory, block device, socket or dangling symlink: refused.
 * A replacement is written to an unnamed file (O_TMPFILE) in the target's
 * directory, so a killed process leaves nothing behind, and is named
 * NAME.tmp.XXXXXX only once complete, just before the rename.  Without
 * O_TMPFILE a named temporary is created at once (and removed on failure). */
typedef struct {
    const char *name;   /* the path given, for messages */
    char *target;       /* the file replaced (symlinks resolved) */
    char *tmp;          /* the named temporary, once it exists */
    int fd;
    bool through, anon;
    unsigned char *buf;
    size_t len, cap;
} sink;

/* Test hook (tests/test_files.c): as on a filesystem without O_TMPFILE. */
int dataset_test_no_tmpfile = 0;

static unsigned temp_counter;

/* Create TARGET.tmp.XXXXXX exclusively, or (fd_link >= 0) give that
 * O_TMPFILE file such a name. */
static int sink_named_temp(sink *k, int fd_link) {
    size_t len = strlen(k->target) + 16;
    char *name = malloc(len);
    if (!name) return cli_set_nomem("a file name", len);
    static const char digits[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    int err = EEXIST;
    for (int attempt = 0; attempt < 100 && err == EEXIST; attempt++) {
        uint64_t r = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^
                     (uint64_t)__atomic_fetch_add(&temp_counter, 1, __ATOMIC_RELAXED) *
                         0xBF58476D1CE4E5B9ull ^ (uint64_t)(uintptr_t)name;
        char suffix[7];
        for (int i = 0; i < 6; i++, r /= 36) suffix[i] = digits[r % 36];
        suffix[6] = 0;
        snprintf(name, len, "%s.tmp.%s", k->target, suffix);
        if (fd_link >= 0) {
            char proc[40];
            snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd_link);
            err = linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW) == 0 ? 0 : errno;
        } else {
            k->fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
            err = k->fd >= 0 ? 0 : errno;
        }
    }
    if (err) {
        free(name);
        return cli_set_error(AVQ_ERR_IO, "%s: cannot create a temporary file beside %s: %s",
                             k->name, k->target, strerror(err));
    }
    k->tmp = name;
    return AVQ_OK;
}

static void sink_discard(sink *k) {
    if (k->fd >= 0) close(k->fd);
    if (k->tmp) unlink(k->tmp);
    free(k->tmp);
    free(k->target);
    free(k->buf);
    k->fd = -1;
    k->tmp = k->target = NULL;
    k->buf = NULL;
}

/* What an output path is, before anything is written: AVQ_OK for a missing
 * file or a regular one (through symlinks) -- *is_special false -- or a
 * character device or FIFO (*is_special true); else the refusal. */
static int output_kind(const char *name, bool *exists, bool *is_special, struct stat *sb) {
    struct stat lsb;
    *exists = stat(name, sb) == 0;
    *is_special = false;
    if (!*exists && errno != ENOENT)
        return cli_set_error(AVQ_ERR_IO, "%s: cannot write there: %s", name, strerror(errno));
    if (!*exists && lstat(name, &lsb) == 0)
        return cli_set_error(AVQ_ERR_IO, "%s: is a symbolic link to a missing file; not "
                                         "writing through it (remove it, or create its target)",
                             name);
    if (!*exists) return AVQ_OK;
    if (S_ISDIR(sb->st_mode)) return cli_set_error(AVQ_ERR_IO, "%s: is a directory", name);
    if (!S_ISREG(sb->st_mode) && !S_ISCHR(sb->st_mode) && !S_ISFIFO(sb->st_mode))
        return cli_set_error(AVQ_ERR_IO, "%s: is a %s; outputs go to regular files, character "
                                         "devices and FIFOs only", name, file_kind(sb->st_mode));
    *is_special = !S_ISREG(sb->st_mode);
    return AVQ_OK;
}

static int sink_open(sink *k, const char *name) {
    memset(k, 0, sizeof *k);
    k->name = name;
    k->fd = -1;
    k->cap = (size_t)1 << 20;
    k->buf = malloc(k->cap);
    if (!k->buf) return cli_set_nomem("a write buffer", k->cap);
    bool exists, special;
    struct stat sb, lsb;
    int st = output_kind(name, &exists, &special, &sb);
    if (st) {
        sink_discard(k);
        return st;
    }
    if (special) {
        k->through = true;
        k->fd = open(name, O_WRONLY | O_TRUNC | O_CLOEXEC);
        if (k->fd < 0) {
            int err = errno;
            sink_discard(k);
            return cli_set_error(AVQ_ERR_IO, "%s: cannot open: %s", name, strerror(err));
        }
        return AVQ_OK;
    }
    bool link = exists && lstat(name, &lsb) == 0 && S_ISLNK(lsb.st_mode);
    k->target = link ? realpath(name, NULL) : strdup(name);
    if (!k->target) {
        int err = errno;
        sink_discard(k);
        return link ? cli_set_error(AVQ_ERR_IO, "%s: cannot resolve the symbolic link: %s", name,
                                    strerror(err))
                    : cli_set_nomem("a file name", strlen(name) + 1);
    }
#ifdef O_TMPFILE
    char *dir = strdup(k->target);
    if (dir && !dataset_test_no_tmpfile && access("/proc/self/fd", X_OK) == 0) {
        k->fd = open(dirname(dir), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
        k->anon = k->fd >= 0;
    }
    free(dir);
#endif
    if (k->fd < 0 && (st = sink_named_temp(k, -1)) != AVQ_OK) {
        sink_discard(k);
        return st;
    }
    if (exists) { /* what cp keeps when it overwrites a file */
        if ((sb.st_uid != geteuid() || sb.st_gid != getegid()) &&
            fchown(k->fd, sb.st_uid, sb.st_gid) != 0)
            (void)!fchown(k->fd, (uid_t)-1, sb.st_gid); /* else the group alone, or ours */
        if (fchmod(k->fd, sb.st_mode & 07777 & ~(mode_t)(S_ISUID | S_ISGID)) != 0) {
            int err = errno;
            sink_discard(k);
            return cli_set_error(AVQ_ERR_IO, "%s: cannot set the mode: %s", name, strerror(err));
        }
    }
    return AVQ_OK;
}

static int write_all(int fd, const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int sink_flush(sink *k) {
    if (write_all(k->fd, k->buf, k->len) != 0)
        return cli_set_error(AVQ_ERR_IO, "%s: write failed: %s", k->name, strerror(errno));
    k->len = 0;
    return AVQ_OK;
}

static int sink_put(sink *k, const void *p, size_t n) {
    const unsigned char *b = p;
    while (n > 0) {
        if (k->len == k->cap) {
            int st = sink_flush(k);
            if (st) return st;
        }
        size_t room = k->cap - k->len, step = n < room ? n : room;
        memcpy(k->buf + k->len, b, step);
        k->len += step;
        b += step;
        n -= step;
    }
    return AVQ_OK;
}

/* Put n little-endian elements of `size` bytes. */
static int sink_put_le(sink *k, const void *p, size_t n, size_t size) {
    if (host_is_little_endian()) return sink_put(k, p, n * size);
    const unsigned char *src = p;
    for (size_t i = 0; i < n; i++) {
        unsigned char tmp[8];
        copy_elements(tmp, src + i * size, 1, size, false);
        int st = sink_put(k, tmp, size);
        if (st) return st;
    }
    return AVQ_OK;
}

/* Finish (st == AVQ_OK: flush, name, rename over the target) or
 * abandon (nothing is left).  Returns the final status. */
static int sink_close(sink *k, int st) {
    if (st == AVQ_OK) st = sink_flush(k);
    if (st == AVQ_OK && k->anon) st = sink_named_temp(k, k->fd);
    int fd = k->fd;
    k->fd = -1;
    if (close(fd) != 0 && st == AVQ_OK)
        st = cli_set_error(AVQ_ERR_IO, "%s: write failed on close: %s", k->name, strerror(errno));
    if (st == AVQ_OK && !k->through && rename(k->tmp, k->target) != 0)
        st = cli_set_error(AVQ_ERR_IO, "%s: cannot rename %s into place: %s", k->name, k->tmp,
                           strerror(errno));
    if (st == AVQ_OK && !k->through) {
        free(k->tmp); /* renamed: nothing to remove */
        k->tmp = NULL;
    }
    sink_discard(k);
    return st;
}

static int check_write_shape(const char *name, const void *data, size_t rows, size_t cols) {
    if (!data) return cli_set_error(AVQ_ERR_INVALID, "%s: no data to write (NULL)", name);
    if (rows == 0 || cols == 0)
        return cli_set_error(AVQ_ERR_INVALID,
                             "%s: refusing to write an empty %zu x %zu matrix (readers reject it)",
                             name, rows, cols);
    if (cols > DATASET_MAX_DIM)
        return cli_set_error(AVQ_ERR_INVALID, "%s: %zu columns exceed the maximum dimension %d",
                             name, cols, DATASET_MAX_DIM);
    size_t n;
    if (!cli_mul_ok(rows, cols, &n) || !cli_mul_ok(n, 8, &n))
        return cli_set_error(AVQ_ERR_INVALID, "%s: %zu x %zu is too large", name, rows, cols);
    return AVQ_OK;
}

/* Rows of 4-byte elements, each preceded by its dimension. */
static int vecs_write(const char *name, const void *data, size_t rows, size_t cols) {
    sink k;
    int st = sink_open(&k, name);
    if (st) return st;
    unsigned char header[4];
    store_le32(header, (uint32_t)cols);
    const unsigned char *bytes = data;
    for (size_t r = 0; r < rows && st == AVQ_OK; r++) {
        st = sink_put(&k, header, 4);
        if (!st) st = sink_put_le(&k, bytes + r * cols * 4, cols, 4);
    }
    return sink_close(&k, st);
}

/* ======================================================================= */
/* NumPy .npy                                                               */
/* ======================================================================= */

typedef enum { NPY_F2, NPY_F4, NPY_F8, NPY_I4, NPY_I8, NPY_U1 } npy_dtype;

typedef struct {
    npy_dtype dtype;
    size_t itemsize;
    bool little;        /* stored byte order */
    bool fortran;
    int ndim;
    uint64_t shape[8];
} npy_header;

/* A cursor over the header's Python dict literal. */
typedef struct {
    const char *p, *end;
} cursor;

static void skip_space(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool accept_char(cursor *c, char ch) {
    skip_space(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* A quoted Python string without escapes, copied into out (NUL-terminated). */
static bool parse_quoted(cursor *c, char *out, size_t cap) {
    skip_space(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return false;
    char quote = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != quote) {
        if (*c->p == '\\' || n + 1 >= cap) return false;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end) return false;
    c->p++;
    out[n] = '\0';
    return true;
}

static bool accept_word(cursor *c, const char *word) {
    skip_space(c);
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, word, n) == 0) {
        c->p += n;
        return true;
    }
    return false;
}

static bool parse_shape(cursor *c, npy_header *h) {
    if (!accept_char(c, '(')) return false;
    h->ndim = 0;
    for (;;) {
        if (accept_char(c, ')')) return true;
        if (h->ndim == 8) return false;
        skip_space(c);
        if (c->p >= c->end || *c->p < '0' || *c->p > '9') return false;
        uint64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            if (v > (UINT64_MAX - 9) / 10) return false;
            v = v * 10 + (uint64_t)(*c->p++ - '0');
        }
        if (c->p < c->end && *c->p == 'L') c->p++; /* Python 2's long suffix */
        h->shape[h->ndim++] = v;
        if (!accept_char(c, ',')) return accept_char(c, ')');
    }
}

/* '<f4' etc.  '=' means native order; 1-byte types have no order. */
static int parse_descr(const char *name, const char *descr, npy_header *h) {
    static const struct {
        char kind;
        size_t size;
        npy_dtype dtype;
    } known[] = {{'f', 2, NPY_F2}, {'f', 4, NPY_F4}, {'f', 8, NPY_F8}, {'i', 4, NPY_I4},
                 {'i', 8, NPY_I8}, {'u', 1, NPY_U1}};
    char order = descr[0];
    bool digits = descr[0] && descr[1] && descr[2] >= '0' && descr[2] <= '9';
    char *end = NULL;
    unsigned long size = digits ? strtoul(descr + 2, &end, 10) : 0;
    if (strchr("<>|=", order) && order && digits && *end == '\0') {
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
            if (known[i].kind == descr[1] && known[i].size == size) {
                h->dtype = known[i].dtype;
                h->itemsize = size;
                h->little = order == '<' || order == '|' ||
                            (order == '=' && host_is_little_endian());
                return AVQ_OK;
            }
        }
    }
    return cli_set_error(AVQ_ERR_FORMAT,
                         "%s: unsupported dtype '%s' (supported: float16 '<f2', float32 '<f4', "
                         "float64 '<f8', int32 '<i4', int64 '<i8', uint8 '|u1')",
                         name, descr);
}

static int npy_parse_dict(const char *name, const char *text, size_t len, npy_header *h) {
    cursor c = {text, text + len};
    bool have_descr = false, have_order = false, have_shape = false;
    char key[32], descr[64];
    if (!accept_char(&c, '{')) goto bad;
    while (!accept_char(&c, '}')) {
        if (!parse_quoted(&c, key, sizeof key) || !accept_char(&c, ':')) goto bad;
        if (!strcmp(key, "descr")) {
            skip_space(&c);
            if (c.p < c.end && *c.p == '[')
                return cli_set_error(AVQ_ERR_FORMAT,
                                     "%s: structured (record) dtype is not supported: store a plain "
                                     "2-D numeric array",
                                     name);
            if (!parse_quoted(&c, descr, sizeof descr)) goto bad;
            int st = parse_descr(name, descr, h);
            if (st) return st;
            have_descr = true;
        } else if (!strcmp(key, "fortran_order")) {
            if (accept_word(&c, "True")) h->fortran = true;
            else if (accept_word(&c, "False")) h->fortran = false;
            else goto bad;
            have_order = true;
        } else if (!strcmp(key, "shape")) {
            if (!parse_shape(&c, h)) goto bad;
            have_shape = true;
        } else {
            return cli_set_error(AVQ_ERR_FORMAT, "%s: .npy header has an unexpected key '%s'", name,
                                 key);
        }
        if (!accept_char(&c, ',')) {
            if (!accept_char(&c, '}')) goto bad;
            break;
        }
    }
    skip_space(&c);
    if (c.p != c.end) goto bad;
    if (!have_descr || !have_order || !have_shape)
        return cli_set_error(AVQ_ERR_FORMAT,
                             "%s: .npy header lacks %s (it needs 'descr', 'fortran_order' and "
                             "'shape')",
                             name, !have_descr ? "'descr'" : !have_order ? "'fortran_order'" : "'shape'");
    return AVQ_OK;
bad:
    return cli_set_error(AVQ_ERR_FORMAT, "%s: malformed .npy header near byte %zu of: %.*s", name,
                         (size_t)(c.p - text), (int)(len < 80 ? len : 80), text);
}

/* Read and validate the preamble; on success the source is positioned at
 * the data and rows, cols describe it (a 1-D array is one row). */
static int npy_read_header(source *s, npy_header *h, size_t *rows, size_t *cols) {
    const char *name = s->name;
    const unsigned char *p;
    size_t got;
    int st = source_take(s, 10, &p, &got);
    if (st) return st;
    if (got < 8 || memcmp(p, "\x93NUMPY", 6) != 0)
        return cli_set_error(AVQ_ERR_FORMAT, "%s: not a NumPy .npy file (bad magic)", name);
    unsigned major = p[6], minor = p[7];
    if (major < 1 || major > 3)
        return cli_set_error(AVQ_ERR_FORMAT, "%s: unsupported .npy format version %u.%u", name, major,
                             minor);
    size_t prefix = major == 1 ? 10 : 12, header_len;
    if (major == 1) {
        if (got < 10) goto truncated;
        header_len = (size_t)p[8] | (size_t)p[9] << 8;
    } else {
        unsigned char lenbuf[4];
        if (got < 10) goto truncated;
        memcpy(lenbuf, p + 8, 2);
        st = source_take(s, 2, &p, &got);
        if (st) return st;
        if (got < 2) goto truncated;
        memcpy(lenbuf + 2, p, 2);
        header_len = load_le32(lenbuf);
    }
    if (header_len > NPY_MAX_HEADER)
        return cli_set_error(AVQ_ERR_FORMAT, "%s: .npy header length %zu is implausible", name,
                             header_len);
    if (header_len > s->file_size - prefix)
        return cli_set_error(AVQ_ERR_FORMAT,
                             "%s: truncated: .npy header needs %zu bytes at offset %zu, file has %zu",
                             name, header_len, prefix, s->file_size);
    st = source_take(s, header_len, &p, &got);
    if (st) return st;
    if (got < header_len) goto truncated;
    memset(h, 0, sizeof *h);
    st = npy_parse_dict(name, (const char *)p, header_len, h);
    if (st) return st;

    if (h->ndim == 0)
        return cli_set_error(AVQ_ERR_FORMAT, "%s: 0-dimensional (scalar) array; need 1-D or 2-D",
                             name);
    if (h->ndim > 2)
        return cli_set_error(AVQ_ERR_FORMAT, "%s: %d-dimensional array; need 1-D or 2-D", name,
                             h->ndim);
    if (h->fortran && h->ndim == 2)
        return cli_set_error(AVQ_ERR_FORMAT,
                             "%s: fortran_order is True; only C-order arrays are supported (save "
                             "np.ascontiguousarray(x))",
                             name);
    uint64_t r = h->ndim == 2 ? h->shape[0] : 1, c = h->shape[h->ndim - 1];
    if (r == 0 || c == 0)
        return cli_set_error(AVQ_ERR_FORMAT, "%s: empty array (shape %llu x %llu)", name,
                             (unsigned long long)r, (unsigned long long)c);
    if (c > DATASET_MAX_DIM)
        return cli_set_error(AVQ_ERR_FORMAT, "%s: %llu columns exceed the maximum dimension %d", name,
                             (unsigned long long)c, DATASET_MAX_DIM);
    size_t data_offset = prefix + header_len, have = s->file_size - data_offset;
    /* r * c * itemsize must equal what is left, and cannot exceed the
     * file size; check without overflowing. */
    if (r > have / c / h->itemsize)
        return cli_set_error(AVQ_ERR_FORMAT,
                             "%s: truncated: shape %llu x %llu of %zu-byte items needs more than the "
                             "%zu bytes at offset %zu",
                             name, (unsigned long long)r, (unsigned long long)c, h->itemsize, have,
                             data_offset);
    size_t need = (size_t)r * (size_t)c * h->itemsize;
    if (need != have)
        return cli_set_error(AVQ_ERR_FORMAT,
                             "%s: shape %llu x %llu of %zu-byte items is %zu bytes, but %zu follow "
                             "the header (%zu extra)",
                             name, (unsigned long long)r, (unsigned long long)c, h->itemsize, need, have,
                             have - need);
    *rows = (size_t)r;
    *cols = (size_t)c;
    return AVQ_OK;
truncated:
    return cli_set_error(AVQ_ERR_FORMAT, "%s: truncated .npy preamble (file has %zu bytes)", name,
                         s->file_size);
}

/* IEEE 754 binary16 bits as a double (exact: every half is a double).
 * Infinities and NaNs decode as such and are refused like any other. */
static double half_to_double(uint16_t bits) {
    int sign = bits >> 15, exp = (bits >> 10) & 0x1f, frac = bits & 0x3ff;
    double v;
    if (exp == 0) v = ldexp((double)frac, -24);                    /* subnormal, zero */
    else if (exp == 31) v = frac ? NAN : INFINITY;
    else v = ldexp((double)(frac | 0x400), exp - 25);
    return sign ? -v : v;
}

/* Decode one stored element as double (exact for every supported type
 * except int64 beyond 2^53, which is only used through decode_int). */
static double npy_decode_double(const npy_header *h, const unsigned char *p) {
    switch (h->dtype) {
    case NPY_F2: { uint16_t v; copy_elements(&v, p, 1, 2, h->little); return half_to_double(v); }
    case NPY_F4: { float v; copy_elements(&v, p, 1, 4, h->little); return v; }
    case NPY_F8: { double v; copy_elements(&v, p, 1, 8, h->little); return v; }
    case NPY_I4: { int32_t v; copy_elements(&v, p, 1, 4, h->little); return v; }
    case NPY_I8: { int64_t v; copy_elements(&v, p, 1, 8, h->little); return (double)v; }
    case NPY_U1: return p[0];
    }
    return 0;
}

static int64_t npy_decode_int(const npy_header *h, const unsigned char *p) {
    switch (h->dtype) {
    case NPY_I4: { int32_t v; copy_elements(&v, p, 1, 4, h->little); return v; }
    case NPY_I8: { int64_t v; copy_elements(&v, p, 1, 8, h->little); return v; }
    case NPY_U1: return p[0];
    default: return 0;
    }
}

static const char *npy_dtype_name(npy_dtype d) {
    switch (d) {
    case NPY_F2: return "float16";
    case NPY_F4: return "float32";
    case NPY_F8: return "float64";
    case NPY_I4: return "int32";
    case NPY_I8: return "int64";
    case NPY_U1: return "uint8";
    }
    return "?";
}

/* What a reader produces: float32 vectors, int32 ids (ground truth,
 * results) or int64 ids (the index's 64-bit ids). */
typedef enum { ELEM_F32, ELEM_I32, ELEM_I64 } elem_kind;

static size_t elem_size(elem_kind kind) { return kind == ELEM_I64 ? 8 : 4; }

/* Stream the data row by row through the source buffer, converting. */
static int npy_read(const char *name, elem_kind kind, size_t *rows_out, size_t *cols_out,
                    void **data_out) {
    source s;
    int st = source_open(&s, name);
    if (st) return st;
    npy_header h;
    size_t rows = 0, cols = 0;
    void *data = NULL;
    st = npy_read_header(&s, &h, &rows, &cols);
    if (st) goto done;
    if (kind != ELEM_F32 && (h.dtype == NPY_F2 || h.dtype == NPY_F4 || h.dtype == NPY_F8)) {
        st = cli_set_error(AVQ_ERR_FORMAT, "%s: holds %s values, expected integers (ids)", name,
                           npy_dtype_name(h.dtype));
        goto done;
    }
    st = alloc_elements(name, rows, cols, elem_size(kind), &data);
    if (st) goto done;
    const size_t row_bytes = cols * h.itemsize;
    for (size_t r = 0; r < rows; r++) {
        const unsigned char *p;
        size_t got;
        st = source_take(&s, row_bytes, &p, &got);
        if (st) goto done;
        if (got < row_bytes) {
            st = cli_set_error(AVQ_ERR_FORMAT,
                               "%s: truncated while reading row %zu (file changed?)", name, r);
            goto done;
        }
        if (kind == ELEM_I64) {
            int64_t *dst = (int64_t *)data + r * cols;
            for (size_t j = 0; j < cols; j++) dst[j] = npy_decode_int(&h, p + j * h.itemsize);
        } else if (kind == ELEM_I32) {
            int32_t *dst = (int32_t *)data + r * cols;
            for (size_t j = 0; j < cols; j++) {
                int64_t v = npy_decode_int(&h, p + j * h.itemsize);
                if (v < INT32_MIN || v > INT32_MAX) {
                    st = cli_set_error(AVQ_ERR_FORMAT,
                                       "%s: row %zu column %zu: %lld does not fit in int32", name,
                                       r, j, (long long)v);
                    goto done;
                }
                dst[j] = (int32_t)v;
            }
        } else {
            float *dst = (float *)data + r * cols;
            if (h.dtype == NPY_F4) copy_elements(dst, p, cols, 4, h.little);
            else
                for (size_t j = 0; j < cols; j++)
                    dst[j] = (float)npy_decode_double(&h, p + j * h.itemsize);
            if ((st = check_row_finite(name, dst, r, cols))) goto done;
        }
    }
done:
    source_close(&s);
    if (st) {
        free(data);
        return st;
    }
    *rows_out = rows;
    *cols_out = cols;
    *data_out = data;
    return AVQ_OK;
}

/* Version 1.0 header, padded so the data starts at a multiple of 64. */
static int npy_write(const char *name, const char *descr, size_t itemsize, const void *data,
                     size_t rows, size_t cols) {
    char header[256];
    int n = snprintf(header, sizeof header,
                     "{'descr': '%s', 'fortran_order': False, 'shape': (%zu, %zu), }", descr,
                     rows, cols);
    if (n < 0 || (size_t)n + 1 >= sizeof header - 64)
        return cli_set_error(AVQ_ERR_INVALID, "%s: shape too large for an .npy header", name);
    size_t len = (size_t)n;
    size_t total = (10 + len + 1 + 63) / 64 * 64;
    while (10 + len + 1 < total) header[len++] = ' ';
    header[len++] = '\n';
    unsigned char preamble[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                                  (unsigned char)(len & 0xff), (unsigned char)(len >> 8)};
    sink k;
    int st = sink_open(&k, name);
    if (st) return st;
    st = sink_put(&k, preamble, sizeof preamble);
    if (!st) st = sink_put(&k, header, len);
    if (!st) st = sink_put_le(&k, data, rows * cols, itemsize);
    return sink_close(&k, st);
}

/* ======================================================================= */
/* HDF5 (ann-benchmarks layout)                                             */
/* ======================================================================= */

/* libhdf5 prints its error stack to stderr by default; we report errors
 * ourselves, so switch that off (cheap, and per thread in thread-safe
 * builds, hence on every entry rather than once). */
static void hdf5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* The innermost message of libhdf5's error stack: the most specific one. */
static herr_t innermost_error(unsigned n, const H5E_error2_t *err, void *user) {
    (void)n;
    const char **desc = user;
    if (err && err->desc) *desc = err->desc;
    return 0;
}

static int hdf5_fail(int status, const char *file, const char *what) {
    const char *desc = NULL;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, innermost_error, &desc);
    if (desc && *desc)
        return cli_set_error(status, "%s: %s (libhdf5: %s)", file, what, desc);
    return cli_set_error(status, "%s: %s", file, what);
}

/* The names in the root group, comma-separated, for "no such dataset"
 * messages. */
static void hdf5_list_root(hid_t fid, char *out, size_t cap) {
    out[0] = '\0';
    H5G_info_t info;
    if (H5Gget_info(fid, &info) < 0) return;
    size_t used = 0;
    for (hsize_t i = 0; i < info.nlinks && i < 20; i++) {
        char item[64];
        if (H5Lget_name_by_idx(fid, ".", H5_INDEX_NAME, H5_ITER_INC, i, item, sizeof item,
                               H5P_DEFAULT) < 0)
            break;
        int n = snprintf(out + used, cap - used, "%s%s", used ? ", " : "", item);
        if (n < 0 || (size_t)n >= cap - used) break;
        used += (size_t)n;
    }
}

/* Stat first so that a missing file is an I/O error with errno's words
 * rather than a generic HDF5 failure. */
static int hdf5_check_exists(const char *file) {
    struct stat st;
    if (stat(file, &st) != 0) return cli_set_error(AVQ_ERR_IO, "%s: cannot open: %s", file, strerror(errno));
    if (!S_ISREG(st.st_mode)) return cli_set_error(AVQ_ERR_IO, "%s: not a regular file", file);
    if (st.st_size == 0) return cli_set_error(AVQ_ERR_FORMAT, "%s: empty file", file);
    return AVQ_OK;
}

/* Open `file`'s dataset `dset` and validate its shape and storage; returns
 * the dataset id (>= 0) with rows/cols set, or a negative status. */
static int hdf5_open_dataset(const char *file, const char *dset, hid_t fid, bool want_int,
                             hid_t *did_out, size_t *rows, size_t *cols) {
    if (H5Lexists(fid, dset, H5P_DEFAULT) <= 0) {
        char names[512];
        hdf5_list_root(fid, names, sizeof names);
        return cli_set_error(AVQ_ERR_FORMAT, "%s: no dataset '%s' (the file has: %s)", file, dset,
                             *names ? names : "nothing");
    }
    hid_t did = H5Dopen2(fid, dset, H5P_DEFAULT);
    if (did < 0) return hdf5_fail(AVQ_ERR_FORMAT, file, "cannot open the dataset (is it a group?)");
    int st = AVQ_OK;
    hid_t space = H5Dget_space(did), type = H5Dget_type(did), dcpl = H5Dget_create_plist(did);
    if (space < 0 || type < 0 || dcpl < 0) {
        st = hdf5_fail(AVQ_ERR_FORMAT, file, "cannot read the dataset's description");
        goto out;
    }
    H5T_class_t cls = H5Tget_class(type);
    if (cls != H5T_INTEGER && (want_int || cls != H5T_FLOAT)) {
        st = cli_set_error(AVQ_ERR_FORMAT, "%s: dataset '%s' holds %s, expected %s", file, dset,
                           cls == H5T_FLOAT ? "floats" : "non-numeric data",
                           want_int ? "integers (ids)" : "numbers");
        goto out;
    }
    int ndims = H5Sget_simple_extent_ndims(space);
    hsize_t dims[2] = {0, 0};
    if (ndims < 1 || ndims > 2) {
        st = cli_set_error(AVQ_ERR_FORMAT, "%s: dataset '%s' has %d dimensions; need 1-D or 2-D", file,
                           dset, ndims);
        goto out;
    }
    H5Sget_simple_extent_dims(space, dims, NULL);
    hsize_t r = ndims == 2 ? dims[0] : 1, c = dims[ndims - 1];
    if (r == 0 || c == 0) {
        st = cli_set_error(AVQ_ERR_FORMAT, "%s: dataset '%s' is empty (%llu x %llu)", file, dset,
                           (unsigned long long)r, (unsigned long long)c);
        goto out;
    }
    if (c > DATASET_MAX_DIM) {
        st = cli_set_error(AVQ_ERR_FORMAT, "%s: dataset '%s' has %llu columns, more than %d", file,
                           dset, (unsigned long long)c, DATASET_MAX_DIM);
        goto out;
    }
    /* The extent is only a claim: compare it with the bytes actually
     * stored.  Uncompressed data must be all there; compressed data gets
     * a generous 1024:1 allowance. */
    size_t elem = H5Tget_size(type), raw;
    if (r > SIZE_MAX / c || !cli_mul_ok((size_t)(r * c), elem ? elem : 1, &raw)) {
        st = cli_set_error(AVQ_ERR_FORMAT, "%s: dataset '%s' extent overflows", file, dset);
        goto out;
    }
    hsize_t stored = H5Dget_storage_size(did);
    int filters = H5Pget_nfilters(dcpl);
    bool plausible = filters > 0 ? raw / 1024 <= stored : raw <= stored;
    if (!plausible) {
        st = cli_set_error(AVQ_ERR_FORMAT,
                           "%s: dataset '%s' claims %llu x %llu values (%zu bytes) but stores only "
                           "%llu bytes: truncated or corrupt",
                           file, dset, (unsigned long long)r, (unsigned long long)c, raw,
                           (unsigned long long)stored);
        goto out;
    }
    *rows = (size_t)r;
    *cols = (size_t)c;
out:
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (st) {
        H5Dclose(did);
        return st;
    }
    *did_out = did;
    return AVQ_OK;
}

static int hdf5_read(const char *file, const char *dset, elem_kind kind, size_t *rows_out,
                     size_t *cols_out, void **data_out) {
    hdf5_quiet();
    int st = hdf5_check_exists(file);
    if (st) return st;
    hid_t fid = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (fid < 0) return hdf5_fail(AVQ_ERR_FORMAT, file, "not an HDF5 file or unreadable");
    hid_t did = -1;
    size_t rows = 0, cols = 0;
    void *data = NULL;
    int64_t *wide = NULL;
    st = hdf5_open_dataset(file, dset, fid, kind != ELEM_F32, &did, &rows, &cols);
    if (st) goto out;
    if (kind != ELEM_F32) {
        /* Read as int64 whatever the stored width, then narrow with a range
         * check: libhdf5 would otherwise clip out-of-range values silently. */
        st = alloc_elements(file, rows, cols, sizeof(int64_t), (void **)&wide);
        if (st) goto out;
        if (H5Dread(did, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, wide) < 0) {
            st = hdf5_fail(AVQ_ERR_FORMAT, file, "cannot read the dataset");
            goto out;
        }
        if (kind == ELEM_I64) {
            data = wide;
            wide = NULL;
            goto out;
        }
        st = alloc_elements(file, rows, cols, 4, &data);
        if (st) goto out;
        int32_t *dst = data;
        for (size_t i = 0; i < rows * cols; i++) {
            if (wide[i] < INT32_MIN || wide[i] > INT32_MAX) {
                st = cli_set_error(AVQ_ERR_FORMAT,
                                   "%s: dataset '%s' row %zu column %zu: %lld does not fit in "
                                   "int32",
                                   file, dset, i / cols, i % cols, (long long)wide[i]);
                goto out;
            }
            dst[i] = (int32_t)wide[i];
        }
    } else {
        st = alloc_elements(file, rows, cols, 4, &data);
        if (st) goto out;
        if (H5Dread(did, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
            st = hdf5_fail(AVQ_ERR_FORMAT, file, "cannot read the dataset");
            goto out;
        }
        for (size_t r = 0; r < rows && !st; r++)
            st = check_row_finite(file, (float *)data + r * cols, r, cols);
    }
out:
    free(wide);
    if (did >= 0) H5Dclose(did);
    H5Fclose(fid);
    if (st) {
        free(data);
        return st;
    }
    *rows_out = rows;
    *cols_out = cols;
    *data_out = data;
    return AVQ_OK;
}

/* The root attribute `distance` of an ann-benchmarks file, as a string. */
static int hdf5_distance(const char *file, char *out, size_t cap) {
    hdf5_quiet();
    int st = hdf5_check_exists(file);
    if (st) return st;
    hid_t fid = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (fid < 0) return hdf5_fail(AVQ_ERR_FORMAT, file, "not an HDF5 file or unreadable");
    int found = 0;
    if (H5Aexists(fid, "distance") > 0) {
        hid_t aid = H5Aopen(fid, "distance", H5P_DEFAULT);
        hid_t type = aid >= 0 ? H5Aget_type(aid) : -1;
        st = AVQ_ERR_FORMAT;
        if (type >= 0 && H5Tget_class(type) == H5T_STRING) {
            if (H5Tis_variable_str(type) > 0) {
                char *value = NULL;
                hid_t mem = H5Tcopy(H5T_C_S1);
                H5Tset_size(mem, H5T_VARIABLE);
                H5Tset_cset(mem, H5Tget_cset(type));
                if (H5Aread(aid, mem, &value) >= 0 && value) {
                    snprintf(out, cap, "%s", value);
                    st = AVQ_OK;
                }
                if (value) H5free_memory(value);
                H5Tclose(mem);
            } else {
                size_t size = H5Tget_size(type);
                char *value = calloc(size + 1, 1);
                if (value && H5Aread(aid, type, value) >= 0) {
                    snprintf(out, cap, "%s", value);
                    st = AVQ_OK;
                }
                free(value);
            }
        }
        if (type >= 0) H5Tclose(type);
        if (aid >= 0) H5Aclose(aid);
        if (st) st = cli_set_error(AVQ_ERR_FORMAT, "%s: its 'distance' attribute is not a string",
                                   file);
        else found = 1;
    }
    H5Fclose(fid);
    return st ? st : found;
}

int dataset_distance(const char *path, char *out, size_t cap) {
    if (!path || !out || cap == 0)
        return cli_set_error(AVQ_ERR_INVALID, "dataset_distance: NULL argument");
    out[0] = '\0';
    parsed_path pp;
    int st = parse_path(path, &pp);
    if (st) return st;
    int r = pp.format == FMT_HDF5 ? hdf5_distance(pp.file, out, cap) : 0;
    free(pp.file);
    return r;
}

/* Open for writing: an existing HDF5 file is extended (through a symbolic
 * link: its target), a missing one created; an existing file of another
 * kind is left alone, and anything but a regular file refused. */
static int hdf5_open_for_write(const char *file, hid_t *fid) {
    bool exists, special;
    struct stat sb;
    int st = output_kind(file, &exists, &special, &sb);
    if (st) return st;
    if (special)
        return cli_set_error(AVQ_ERR_IO, "%s: is a %s; an HDF5 output must be a regular file",
                             file, file_kind(sb.st_mode));
    if (exists) {
        *fid = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
        if (*fid < 0)
            return hdf5_fail(AVQ_ERR_IO, file,
                             "exists but cannot be opened as HDF5 for writing; not overwriting it");
        return AVQ_OK;
    }
    *fid = H5Fcreate(file, H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
    if (*fid < 0) return hdf5_fail(AVQ_ERR_IO, file, "cannot create the file");
    return AVQ_OK;
}

#define HDF5_EXISTS_MESSAGE                                                                   \
    "%s: already has a dataset '%s'; not replacing it (write to another dataset or file, or "  \
    "ask for the replacement: avq search --replace)"

static int hdf5_write(const char *file, const char *dset, elem_kind kind, const void *data,
                      size_t rows, size_t cols, unsigned flags) {
    hdf5_quiet();
    if (strchr(dset, '/'))
        return cli_set_error(AVQ_ERR_INVALID,
                             "%s: dataset name '%s' contains '/': only top-level datasets are written",
                             file, dset);
    hid_t fid = -1;
    int st = hdf5_open_for_write(file, &fid);
    if (st) return st;
    hid_t space = -1, did = -1;
    if (H5Lexists(fid, dset, H5P_DEFAULT) > 0) {
        if (flags & DATASET_KEEP_EXISTING) {
            st = cli_set_error(AVQ_ERR_INVALID, HDF5_EXISTS_MESSAGE, file, dset);
            goto out;
        }
        if (H5Ldelete(fid, dset, H5P_DEFAULT) < 0) {
            st = hdf5_fail(AVQ_ERR_IO, file, "cannot replace the existing dataset");
            goto out;
        }
    }
    hsize_t dims[2] = {rows, cols};
    space = H5Screate_simple(2, dims, NULL);
    if (space < 0) {
        st = hdf5_fail(AVQ_ERR_IO, file, "cannot describe the dataset's shape");
        goto out;
    }
    hid_t file_type = kind == ELEM_I64   ? H5T_STD_I64LE
                      : kind == ELEM_I32 ? H5T_STD_I32LE
                                         : H5T_IEEE_F32LE;
    hid_t mem_type = kind == ELEM_I64   ? H5T_NATIVE_INT64
                     : kind == ELEM_I32 ? H5T_NATIVE_INT32
                                        : H5T_NATIVE_FLOAT;
    did = H5Dcreate2(fid, dset, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (did < 0) {
        st = hdf5_fail(AVQ_ERR_IO, file, "cannot create the dataset");
        goto out;
    }
    if (H5Dwrite(did, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        st = hdf5_fail(AVQ_ERR_IO, file, "cannot write the dataset");
out:
    if (did >= 0 && H5Dclose(did) < 0 && !st) st = hdf5_fail(AVQ_ERR_IO, file, "write failed");
    if (space >= 0) H5Sclose(space);
    if (H5Fclose(fid) < 0 && !st) st = hdf5_fail(AVQ_ERR_IO, file, "write failed on close");
    return st;
}

/* ======================================================================= */
/* Public entry points                                                      */
/* ======================================================================= */

void float_matrix_free(float_matrix *m) {
    if (!m) return;
    free(m->data);
    m->data = NULL;
    m->rows = m->cols = 0;
}

void int_matrix_free(int_matrix *m) {
    if (!m) return;
    free(m->data);
    m->data = NULL;
    m->rows = m->cols = 0;
}

int dataset_read_float(const char *path, float_matrix *out) {
    if (!out) return cli_set_error(AVQ_ERR_INVALID, "dataset_read_float: NULL output");
    parsed_path pp;
    int st = parse_path(path, &pp);
    if (st) return st;
    size_t rows = 0, cols = 0;
    void *data = NULL;
    switch (pp.format) {
    case FMT_FVECS: st = vecs_read(pp.file, VECS_F32, &rows, &cols, &data); break;
    case FMT_BVECS: st = vecs_read(pp.file, VECS_U8, &rows, &cols, &data); break;
    case FMT_NPY: st = npy_read(pp.file, ELEM_F32, &rows, &cols, &data); break;
    case FMT_HDF5:
        st = hdf5_read(pp.file, pp.dataset ? pp.dataset : "train", ELEM_F32, &rows, &cols, &data);
        break;
    case FMT_IVECS:
        st = cli_set_error(AVQ_ERR_INVALID,
                           "%s: .ivecs holds integer ids, not vectors (use .fvecs, .bvecs, .npy or "
                           "HDF5)",
                           path);
        break;
    }
    free(pp.file);
    if (st) return st;
    out->rows = rows;
    out->cols = cols;
    out->data = data;
    return AVQ_OK;
}

int dataset_read_int(const char *path, int_matrix *out) {
    if (!out) return cli_set_error(AVQ_ERR_INVALID, "dataset_read_int: NULL output");
    parsed_path pp;
    int st = parse_path(path, &pp);
    if (st) return st;
    size_t rows = 0, cols = 0;
    void *data = NULL;
    switch (pp.format) {
    case FMT_IVECS: st = vecs_read(pp.file, VECS_I32, &rows, &cols, &data); break;
    case FMT_NPY: st = npy_read(pp.file, ELEM_I32, &rows, &cols, &data); break;
    case FMT_HDF5:
        st = hdf5_read(pp.file, pp.dataset ? pp.dataset : "neighbors", ELEM_I32, &rows, &cols,
                       &data);
        break;
    case FMT_FVECS:
    case FMT_BVECS:
        st = cli_set_error(AVQ_ERR_INVALID,
                           "%s: expected integer ids (.ivecs, .npy or HDF5), not a vector file", path);
        break;
    }
    free(pp.file);
    if (st) return st;
    out->rows = rows;
    out->cols = cols;
    out->data = data;
    return AVQ_OK;
}

/* The writers of every element type: one dispatch on the path's format.
 * Integers: ids (.ivecs as int32, HDF5 "neighbors"), floats: vectors
 * (.fvecs, HDF5 "train"); .npy takes either, .bvecs neither.  int64 ids
 * that all fit in int32 are written as int32 (what readers of ground truth
 * expect); others go to .npy and HDF5 as int64, never to .ivecs. */
static int dataset_write(const char *path, const void *data, size_t rows, size_t cols,
                         elem_kind kind, unsigned flags) {
    parsed_path pp;
    int st = parse_path(path, &pp);
    if (st) return st;
    st = check_write_shape(path, data, rows, cols);
    bool ints = kind != ELEM_F32;
    file_format native = ints ? FMT_IVECS : FMT_FVECS;
    int32_t *narrow = NULL;
    if (!st && kind == ELEM_I64) {
        const int64_t *wide = data;
        size_t i = 0;
        while (i < rows * cols && wide[i] >= INT32_MIN && wide[i] <= INT32_MAX) i++;
        if (i == rows * cols) {
            st = alloc_elements(path, rows, cols, sizeof *narrow, (void **)&narrow);
            if (!st) {
                for (i = 0; i < rows * cols; i++) narrow[i] = (int32_t)wide[i];
                data = narrow;
                kind = ELEM_I32;
            }
        } else if (pp.format == FMT_IVECS) {
            st = cli_set_error(AVQ_ERR_INVALID,
                               "%s: id %lld (row %zu) does not fit in the int32 of .ivecs: "
                               "write .npy or HDF5 (int64) instead",
                               path, (long long)wide[i], i / cols);
        }
    }
    if (!st) {
        if (pp.format == native) {
            st = vecs_write(pp.file, data, rows, cols);
        } else if (pp.format == FMT_NPY) {
            st = npy_write(pp.file, kind == ELEM_I64 ? "<i8" : ints ? "<i4" : "<f4",
                           elem_size(kind), data, rows, cols);
        } else if (pp.format == FMT_HDF5) {
            const char *dset = pp.dataset ? pp.dataset : (ints ? "neighbors" : "train");
            st = hdf5_write(pp.file, dset, kind, data, rows, cols, flags);
        } else {
            st = cli_set_error(AVQ_ERR_INVALID,
                               ints ? "%s: cannot write integer ids in this format (use .ivecs, "
                                      ".npy or HDF5)"
                                    : "%s: cannot write float vectors in this format (use "
                                      ".fvecs, .npy or HDF5)",
                               path);
        }
    }
    free(narrow);
    free(pp.file);
    return st;
}

int dataset_write_float(const char *path, const float *data, size_t rows, size_t cols) {
    return dataset_write(path, data, rows, cols, ELEM_F32, 0);
}

int dataset_write_int(const char *path, const int32_t *data, size_t rows, size_t cols) {
    return dataset_write(path, data, rows, cols, ELEM_I32, 0);
}

int dataset_write_int64(const char *path, const int64_t *data, size_t rows, size_t cols) {
    return dataset_write(path, data, rows, cols, ELEM_I64, 0);
}

int dataset_write_float_flags(const char *path, const float *data, size_t rows, size_t cols,
                              unsigned flags) {
    return dataset_write(path, data, rows, cols, ELEM_F32, flags);
}

int dataset_write_int64_flags(const char *path, const int64_t *data, size_t rows, size_t cols,
                              unsigned flags) {
    return dataset_write(path, data, rows, cols, ELEM_I64, flags);
}

int dataset_check_output(const char *path, bool ints, unsigned flags) {
    parsed_path pp;
    int st = parse_path(path, &pp);
    if (st) return st;
    bool exists, special;
    struct stat sb;
    st = output_kind(pp.file, &exists, &special, &sb);
    if (!st && pp.format == FMT_HDF5 && special)
        st = cli_set_error(AVQ_ERR_IO, "%s: is a %s; an HDF5 output must be a regular file",
                           pp.file, file_kind(sb.st_mode));
    if (!st && pp.format == FMT_HDF5 && exists && (flags & DATASET_KEEP_EXISTING)) {
        const char *dset = pp.dataset ? pp.dataset : (ints ? "neighbors" : "train");
        hdf5_quiet();
        hid_t fid = H5Fopen(pp.file, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (fid < 0) {
            st = hdf5_fail(AVQ_ERR_IO, pp.file,
                           "exists but cannot be opened as HDF5; not overwriting it");
        } else {
            if (H5Lexists(fid, dset, H5P_DEFAULT) > 0)
                st = cli_set_error(AVQ_ERR_INVALID, HDF5_EXISTS_MESSAGE, pp.file, dset);
            H5Fclose(fid);
        }
    }
    free(pp.file);
    return st;
}

int dataset_hdf5_name(const char *path, const char **dataset) {
    parsed_path pp;
    *dataset = NULL;
    if (!path || !*path) return 0;
    const char *colon = strrchr(path, ':');
    bool named = colon && is_hdf5_name(path, (size_t)(colon - path));
    if (parse_path(path, &pp)) return 0;
    int h5 = pp.format == FMT_HDF5;
    free(pp.file);
    if (h5 && named) *dataset = colon + 1;
    return h5;
}

/* The file part of a path: before the dataset's colon of an HDF5 path. */
static char *file_part(const char *path) {
    const char *colon = strrchr(path, ':');
    size_t len = colon && is_hdf5_name(path, (size_t)(colon - path)) ? (size_t)(colon - path)
                                                                       : strlen(path);
    return strndup(path, len);
}

int dataset_same_file(const char *a, const char *b) {
    if (!a || !b) return 0;
    char *fa = file_part(a), *fb = file_part(b);
    struct stat sa, sb;
    int same = 0;
    if (fa && fb) {
        bool ea = stat(fa, &sa) == 0, eb = stat(fb, &sb) == 0;
        same = ea && eb ? sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
                        : !ea && !eb && strcmp(fa, fb) == 0; /* both to be made */
    }
    free(fa);
    free(fb);
    return same;
}

/* ======================================================================= */
/* Id lists                                                                 */
/* ======================================================================= */

void id_list_free(id_list *l) {
    if (!l) return;
    free(l->data);
    l->data = NULL;
    l->n = 0;
}

/* One id per line, decimal, optionally signed; blank lines and lines
 * starting with '#' are skipped; spaces, tabs and a CR around the number
 * are allowed, nothing else. */
static int text_ids_read(const char *name, bool allow_empty, id_list *out) {
    if (allow_empty) { /* an empty file is the empty set, not an error */
        struct stat sb;
        if (stat(name, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size == 0) {
            out->n = 0;
            out->data = NULL;
            return AVQ_OK;
        }
    }
    source s;
    int st = source_open(&s, name);
    if (st) return st;
    const unsigned char *p;
    size_t got;
    int64_t *ids = NULL;
    st = source_take(&s, s.file_size, &p, &got);
    if (st) goto done;
    if (got < s.file_size) {
        st = cli_set_error(AVQ_ERR_FORMAT, "%s: truncated while reading (file changed?)", name);
        goto done;
    }
    size_t lines = 1;
    for (size_t i = 0; i < got; i++) lines += p[i] == '\n';
    st = alloc_elements(name, lines, 1, sizeof *ids, (void **)&ids);
    if (st) goto done;
    size_t n = 0, line = 0;
    for (size_t i = 0; i < got;) {
        line++;
        size_t end = i;
        while (end < got && p[end] != '\n') end++;
        size_t a = i, b = end;
        while (a < b && (p[a] == ' ' || p[a] == '\t' || p[a] == '\r')) a++;
        while (b > a && (p[b - 1] == ' ' || p[b - 1] == '\t' || p[b - 1] == '\r')) b--;
        i = end + 1;
        if (a == b || p[a] == '#') continue;
        char tok[32];
        bool okay = b - a < sizeof tok;
        if (okay) {
            memcpy(tok, p + a, b - a);
            tok[b - a] = '\0';
            okay = (tok[0] >= '0' && tok[0] <= '9') ||
                   ((tok[0] == '-' || tok[0] == '+') && tok[1] >= '0' && tok[1] <= '9');
        }
        if (okay) {
            char *stop;
            errno = 0;
            long long v = strtoll(tok, &stop, 10);
            okay = errno == 0 && *stop == '\0';
            ids[n] = (int64_t)v;
        }
        if (!okay) {
            int shown = (int)(b - a < 40 ? b - a : 40);
            char show[41];
            for (int j = 0; j < shown; j++) {
                unsigned char ch = p[a + (size_t)j];
                show[j] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
            }
            show[shown] = '\0';
            st = cli_set_error(AVQ_ERR_FORMAT,
                               "%s: line %zu: '%s%s' is not an integer id (a text id file has "
                               "one signed 64-bit decimal number per line)",
                               name, line, show, b - a > 40 ? "..." : "");
            goto done;
        }
        n++;
    }
    if (n == 0 && !allow_empty) {
        st = cli_set_error(AVQ_ERR_FORMAT, "%s: holds no ids (only blank or '#' lines)", name);
        goto done;
    }
    out->n = n;
    out->data = ids;
    ids = NULL;
done:
    free(ids);
    source_close(&s);
    return st;
}

static int read_ids(const char *path, bool allow_empty, id_list *out) {
    if (!out) return cli_set_error(AVQ_ERR_INVALID, "dataset_read_ids: NULL output");
    if (!path || !*path) return cli_set_error(AVQ_ERR_INVALID, "empty file name");
    file_format format;
    size_t len = strlen(path);
    const char *colon = strrchr(path, ':');
    bool h5 = colon && is_hdf5_name(path, (size_t)(colon - path));
    if (!h5 && !path_format(path, len, &format)) return text_ids_read(path, allow_empty, out);
    parsed_path pp;
    int st = parse_path(path, &pp);
    if (st) return st;
    size_t rows = 0, cols = 0;
    void *data = NULL;
    switch (pp.format) {
    case FMT_IVECS: st = vecs_read(pp.file, VECS_I32, &rows, &cols, &data); break;
    case FMT_NPY: st = npy_read(pp.file, ELEM_I64, &rows, &cols, &data); break;
    case FMT_HDF5:
        st = hdf5_read(pp.file, pp.dataset ? pp.dataset : "ids", ELEM_I64, &rows, &cols, &data);
        break;
    case FMT_FVECS:
    case FMT_BVECS:
        st = cli_set_error(AVQ_ERR_INVALID,
                           "%s: expected integer ids (.ivecs, .npy, HDF5 or a text file with "
                           "one id per line), not a vector file",
                           path);
        break;
    }
    if (!st && rows > 1 && cols > 1)
        st = cli_set_error(AVQ_ERR_FORMAT,
                           "%s: holds %zu x %zu integers; ids must be one column (one id per "
                           "row) or a 1-D array",
                           path, rows, cols);
    if (!st && pp.format == FMT_IVECS) { /* widen the int32 ids in place */
        int64_t *wide = NULL;
        st = alloc_elements(path, rows, cols, sizeof *wide, (void **)&wide);
        if (!st) {
            for (size_t i = 0; i < rows * cols; i++) wide[i] = ((int32_t *)data)[i];
            free(data);
            data = wide;
        }
    }
    free(pp.file);
    if (st) {
        free(data);
        return st;
    }
    out->n = rows * cols;
    out->data = data;
    return AVQ_OK;
}

int dataset_read_ids(const char *path, id_list *out) { return read_ids(path, false, out); }

int dataset_read_id_set(const char *path, id_list *out) { return read_ids(path, true, out); }
