/*
 * avq_mpi.c -- avq-mpi, the sharded index on Open MPI (issue 14; doc/DESIGN.md,
 * "Sharding"; doc/SCALE.md).
 *
 *   mpirun -np N avq-mpi build  --base B --metric cos --out DIR [--shards S]
 *   mpirun -np N avq-mpi search --index DIR --query Q --k 10 --out R.ivecs
 *   mpirun -np N avq-mpi add    --index DIR --base B
 *   mpirun -np N avq-mpi remove --index DIR --ids I
 *   mpirun -np N avq-mpi info   --index DIR [--verify]
 *
 * A sharded index is a directory: `manifest` (text, below), `quantizer.avq`
 * (avq_quantizer_save) and `shard-NNNN.avq` (avq_index_save, one per shard,
 * every one created from that quantizer).  Vector id x lives in shard
 * avq_mpi_shard_of(x, S) = splitmix64(x) mod S -- the finaliser of
 * splitmix64 (Steele et al.) applied to the id as an unsigned 64-bit
 * number -- so add and remove route without a lookup table.  Shard s is
 * served by rank s mod N: with fewer ranks than shards a rank serves
 * several, with more some ranks serve none (and take part in the
 * collectives with nothing), so no result is ever counted twice.
 *
 * The manifest, one "key value..." line each:
 *   avq-sharded-index 1                    format version
 *   shards S
 *   dim D
 *   metric cosine|dot_product|squared_l2
 *   hash splitmix64-mod
 *   next-id X                              one more than the largest id ever
 *   quantizer quantizer.avq SIZE CRC FP    file bytes, CRC32C of the file,
 *                                          fingerprint of the quantizer
 *   shard I shard-IIII.avq SIZE CRC VECTORS
 * FP is the CRC32C of avq_index_save_bytes of an empty index created from
 * the quantizer: a shard whose own quantizer has another fingerprint was
 * built from another quantizer and is refused.
 *
 * Failures: every rank checks its part (its shards' size, loading with
 * checksums, quantizer fingerprint, the input's shape); the statuses are
 * combined (MPI_Allreduce) and, if any failed, rank 0 prints one message
 * naming the shard(s) and every rank exits 1 -- before any output is
 * written.  search --allow-partial goes on without the failed shards and
 * says which they are.
 *
 * Only avq.h and MPI are used: the core library never links MPI.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "avq.h"

#include <mpi.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MANIFEST_VERSION 1

_Static_assert(sizeof(size_t) == sizeof(uint64_t), "avq-mpi sends size_t counts as 64-bit");
#define MSG 1024
/* messages are cut at MSG bytes on purpose (a path can be longer) */
#pragma GCC diagnostic ignored "-Wformat-truncation"

static int g_rank, g_size;

/* ---- small helpers ------------------------------------------------------- */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Peak resident set of this process in MB (VmHWM). */
static double peak_rss_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0.0;
    char line[256];
    double mb = 0.0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) mb = atof(line + 6) / 1024.0;
    fclose(f);
    return mb;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
    if (g_rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "avq-mpi: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* A rank's error: the first message wins. */
typedef struct {
    char msg[MSG];
    int failed;
} err_t;

static int fail(err_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(err_t *e, const char *fmt, ...) {
    if (!e->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->failed = 1;
    }
    return -1;
}

/* Collective: 0 if no rank failed; otherwise rank 0 prints every failing
 * rank's message (one line each, the lowest rank first) and all return 1. */
static int any_failed(err_t *e, const char *what) {
    int mine = e->failed, any = 0;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (!any) return 0;
    char *all = g_rank == 0 ? malloc((size_t)g_size * sizeof(err_t)) : NULL;
    MPI_Gather(e, (int)sizeof(err_t), MPI_BYTE, all, (int)sizeof(err_t), MPI_BYTE, 0,
               MPI_COMM_WORLD);
    if (g_rank == 0) {
        for (int r = 0; r < g_size; r++) {
            err_t *x = (err_t *)(all + (size_t)r * sizeof(err_t));
            if (x->failed) fprintf(stderr, "avq-mpi %s: error: %s\n", what, x->msg);
        }
        free(all);
    }
    return 1;
}

/* Wait for every rank without spinning: MPI's blocking collectives poll
 * the network at full speed, so while rank 0 trains alone the other ranks
 * would burn their cores -- on a shared or oversubscribed node, rank 0's.
 * A non-blocking barrier tested every millisecond costs nothing instead. */
static void quiet_barrier(void) {
    MPI_Request req;
    MPI_Ibarrier(MPI_COMM_WORLD, &req);
    int done = 0;
    struct timespec pause = {0, 1000000};
    for (;;) {
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (done) return;
        nanosleep(&pause, NULL);
    }
}

/* ---- the id -> shard hash (documented above and in doc/DESIGN.md) --------- */

static inline uint64_t splitmix64_mix(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline size_t avq_mpi_shard_of(int64_t id, size_t shards) {
    return (size_t)(splitmix64_mix((uint64_t)id) % shards);
}

static inline int owner_of(size_t shard) { return (int)(shard % (size_t)g_size); }

/* ---- CRC32C (Castagnoli), bytewise table --------------------------------- */

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int j = 0; j < 8; j++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32c(uint32_t crc, const void *p, size_t n) {
    const unsigned char *b = p;
    crc = ~crc;
    while (n--) crc = crc_table[(crc ^ *b++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

static int file_crc(const char *path, uint32_t *crc, uint64_t *size, err_t *e) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fail(e, "%s: %s", path, strerror(errno));
    enum { BUF = 1 << 20 };
    unsigned char *buf = malloc(BUF);
    uint32_t c = 0;
    uint64_t total = 0;
    ssize_t got;
    while (buf && (got = read(fd, buf, BUF)) > 0) {
        c = crc32c(c, buf, (size_t)got);
        total += (uint64_t)got;
    }
    int bad = !buf || got < 0;
    free(buf);
    close(fd);
    if (bad) return fail(e, "%s: read failed: %s", path, strerror(errno));
    *crc = c;
    *size = total;
    return 0;
}

static uint64_t file_size_or(const char *path, uint64_t missing) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : missing;
}

/* The fingerprint of a quantizer (see the top). */
static int quantizer_fingerprint(const avq_quantizer *q, uint32_t *fp, err_t *e) {
    avq_index *empty = NULL;
    void *bytes = NULL;
    size_t n = 0;
    if (avq_index_create(q, &empty) != AVQ_OK || avq_index_save_bytes(empty, &bytes, &n) != AVQ_OK) {
        avq_index_free(empty);
        return fail(e, "quantizer fingerprint: %s", avq_last_error());
    }
    *fp = crc32c(0, bytes, n);
    avq_free(bytes);
    avq_index_free(empty);
    return 0;
}

/* ---- input files: the rows [first, first + count) only ------------------- */

typedef struct {
    char path[4096];
    int fd;
    size_t rows, cols;
    uint64_t data_offset, row_bytes;
    int kind;      /* 0 fvecs, 1 npy */
    char dtype;    /* npy: 'f' float32, 'd' float64, 'q' int64, 'i' int32 */
    size_t item;   /* bytes per element */
} input_file;

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int read_at(int fd, void *buf, size_t n, uint64_t off, const char *path, err_t *e) {
    unsigned char *p = buf;
    while (n) {
        ssize_t got = pread(fd, p, n, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return fail(e, "%s: read failed: %s", path, strerror(errno));
        if (got == 0) return fail(e, "%s: truncated at byte %" PRIu64, path, off);
        p += got;
        n -= (size_t)got;
        off += (uint64_t)got;
    }
    return 0;
}

/* Open an .fvecs or .npy file and learn its shape from its header (and, for
 * .fvecs, the first row's dimension and the file size). */
static int input_open(input_file *f, const char *path, bool want_ints, err_t *e) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    f->fd = open(path, O_RDONLY);
    if (f->fd < 0) return fail(e, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(f->fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        return fail(e, "%s: not a regular file", path);
    uint64_t size = (uint64_t)sb.st_size;
    if (ends_with(path, ".fvecs") && !want_ints) {
        int32_t d;
        if (read_at(f->fd, &d, 4, 0, path, e)) return -1;
        if (d <= 0 || d > (1 << 20)) return fail(e, "%s: bad dimension %d in row 0", path, d);
        f->cols = (size_t)d;
        f->row_bytes = 4 + 4 * (uint64_t)d;
        if (size % f->row_bytes)
            return fail(e, "%s: %" PRIu64 " bytes is not a whole number of rows of %" PRIu64
                           " bytes (truncated?)", path, size, f->row_bytes);
        f->rows = (size_t)(size / f->row_bytes);
        f->data_offset = 0;
        f->kind = 0;
        f->dtype = 'f';
        f->item = 4;
        return 0;
    }
    if (!ends_with(path, ".npy"))
        return fail(e, "%s: unsupported format (avq-mpi reads %s)", path,
                    want_ints ? ".npy (int64/int32) or a text file of ids" : ".fvecs and .npy");
    unsigned char head[10];
    if (read_at(f->fd, head, 10, 0, path, e)) return -1;
    if (memcmp(head, "\x93NUMPY", 6) != 0) return fail(e, "%s: not a .npy file", path);
    uint64_t hlen, hstart;
    if (head[6] == 1) {
        hlen = head[8] | (uint64_t)head[9] << 8;
        hstart = 10;
    } else {
        unsigned char l4[4];
        if (read_at(f->fd, l4, 4, 8, path, e)) return -1;
        hlen = l4[0] | (uint64_t)l4[1] << 8 | (uint64_t)l4[2] << 16 | (uint64_t)l4[3] << 24;
        hstart = 12;
    }
    if (hlen > 65536) return fail(e, "%s: .npy header too long", path);
    char *h = calloc(1, hlen + 1);
    if (!h || read_at(f->fd, h, hlen, hstart, path, e)) {
        free(h);
        return fail(e, "%s: cannot read the .npy header", path);
    }
    const char *descr = strstr(h, "'descr':");
    const char *fo = strstr(h, "'fortran_order':");
    const char *shape = strstr(h, "'shape':");
    int st = 0;
    if (!descr || !fo || !shape) {
        st = fail(e, "%s: malformed .npy header", path);
    } else if (strstr(fo, "True") == fo + strlen("'fortran_order': ")) {
        st = fail(e, "%s: Fortran-order arrays are not supported", path);
    } else {
        const char *q = strchr(descr + 8, '\'');
        if (!q) st = fail(e, "%s: malformed descr", path);
        else if (strncmp(q, "'<f4'", 5) == 0) f->dtype = 'f', f->item = 4;
        else if (strncmp(q, "'<f8'", 5) == 0) f->dtype = 'd', f->item = 8;
        else if (strncmp(q, "'<i8'", 5) == 0) f->dtype = 'q', f->item = 8;
        else if (strncmp(q, "'<i4'", 5) == 0) f->dtype = 'i', f->item = 4;
        else st = fail(e, "%s: dtype %.8s is not supported (float32/float64/int64/int32)", path, q);
        if (!st && want_ints != (f->dtype == 'q' || f->dtype == 'i'))
            st = fail(e, "%s: expected %s, got dtype %c", path, want_ints ? "integers" : "floats",
                      f->dtype);
        unsigned long long a = 0, b = 0;
        const char *paren = strchr(shape, '(');
        int got = paren ? sscanf(paren, "(%llu, %llu)", &a, &b) : 0;
        if (!st && got == 2) {
            f->rows = (size_t)a;
            f->cols = (size_t)b;
        } else if (!st && paren && sscanf(paren, "(%llu,)", &a) == 1) {
            f->rows = (size_t)a;
            f->cols = 1;
        } else if (!st) {
            st = fail(e, "%s: unsupported shape (want 1-D or 2-D)", path);
        }
    }
    free(h);
    if (st) return -1;
    f->kind = 1;
    f->data_offset = hstart + hlen;
    f->row_bytes = (uint64_t)f->cols * f->item;
    if (f->rows == 0 || f->cols == 0) return fail(e, "%s: empty array", path);
    if (size < f->data_offset + (uint64_t)f->rows * f->row_bytes)
        return fail(e, "%s: truncated: %zu rows of %" PRIu64 " bytes need %" PRIu64
                       " bytes, file has %" PRIu64, path, f->rows, f->row_bytes,
                    f->data_offset + (uint64_t)f->rows * f->row_bytes, size);
    return 0;
}

static void input_close(input_file *f) {
    if (f->fd > 0) close(f->fd);
    f->fd = -1;
}

/* Rows [first, first + count) as floats into out (count x cols). */
static int input_rows_float(input_file *f, size_t first, size_t count, float *out, err_t *e) {
    enum { PIECE = 4096 };
    size_t d = f->cols;
    unsigned char *buf = malloc(PIECE * f->row_bytes);
    if (!buf) return fail(e, "out of memory reading %s", f->path);
    for (size_t done = 0; done < count;) {
        size_t m = count - done < PIECE ? count - done : PIECE;
        uint64_t off = f->data_offset + (uint64_t)(first + done) * f->row_bytes;
        if (read_at(f->fd, buf, m * f->row_bytes, off, f->path, e)) {
            free(buf);
            return -1;
        }
        for (size_t i = 0; i < m; i++) {
            const unsigned char *row = buf + i * f->row_bytes;
            float *dst = out + (done + i) * d;
            if (f->kind == 0) {
                int32_t rd;
                memcpy(&rd, row, 4);
                if ((size_t)rd != d) {
                    free(buf);
                    return fail(e, "%s: row %zu has dimension %d, expected %zu", f->path,
                                first + done + i, rd, d);
                }
                memcpy(dst, row + 4, d * 4);
            } else if (f->dtype == 'f') {
                memcpy(dst, row, d * 4);
            } else {
                for (size_t j = 0; j < d; j++) {
                    double v;
                    memcpy(&v, row + 8 * j, 8);
                    dst[j] = (float)v;
                }
            }
            for (size_t j = 0; j < d; j++)
                if (!isfinite(dst[j])) {
                    free(buf);
                    return fail(e, "%s: row %zu, column %zu is not finite", f->path,
                                first + done + i, j);
                }
        }
        done += m;
    }
    free(buf);
    return 0;
}

/* Ids: a 1-D integer .npy, or a text file with one id per line. */
static int read_ids(const char *path, int64_t **out, size_t *n, err_t *e) {
    *out = NULL;
    *n = 0;
    if (ends_with(path, ".npy")) {
        input_file f;
        if (input_open(&f, path, true, e)) {
            input_close(&f);
            return -1;
        }
        size_t total = f.rows * f.cols;
        int64_t *ids = malloc((total ? total : 1) * sizeof *ids);
        unsigned char *raw = malloc(total * f.item + 1);
        int st = !ids || !raw ? fail(e, "out of memory reading %s", path)
                              : read_at(f.fd, raw, total * f.item, f.data_offset, path, e);
        for (size_t i = 0; !st && i < total; i++) {
            if (f.dtype == 'q') {
                memcpy(&ids[i], raw + 8 * i, 8);
            } else {
                int32_t v;
                memcpy(&v, raw + 4 * i, 4);
                ids[i] = v;
            }
        }
        free(raw);
        input_close(&f);
        if (st) {
            free(ids);
            return -1;
        }
        *out = ids;
        *n = total;
        return 0;
    }
    FILE *fp = fopen(path, "r");
    if (!fp) return fail(e, "%s: %s", path, strerror(errno));
    size_t cap = 1024, m = 0;
    int64_t *ids = malloc(cap * sizeof *ids);
    char line[128];
    size_t lineno = 0;
    while (ids && fgets(line, sizeof line, fp)) {
        lineno++;
        char *end;
        errno = 0;
        long long v = strtoll(line, &end, 10);
        while (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t') end++;
        if (end == line || *end || errno) {
            fclose(fp);
            free(ids);
            return fail(e, "%s: line %zu is not an id", path, lineno);
        }
        if (m == cap) {
            int64_t *g = realloc(ids, 2 * cap * sizeof *ids);
            if (!g) break;
            ids = g;
            cap *= 2;
        }
        ids[m++] = v;
    }
    fclose(fp);
    if (!ids) return fail(e, "out of memory reading %s", path);
    *out = ids;
    *n = m;
    return 0;
}

/* ---- output files (rank 0 only; written whole, through a temporary) ------ */

static int write_matrix(const char *path, const void *data, size_t rows, size_t cols, bool ints64,
                        err_t *e) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *fp = fopen(tmp, "wb");
    if (!fp) return fail(e, "%s: %s", tmp, strerror(errno));
    int ok = 1;
    if (ends_with(path, ".npy")) {
        char header[128];
        int len = snprintf(header, sizeof header,
                           "{'descr': '%s', 'fortran_order': False, 'shape': (%zu, %zu), }",
                           ints64 ? "<i8" : "<f4", rows, cols);
        int total = 10 + len + 1;
        int pad = (64 - total % 64) % 64;
        unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
        uint16_t hl = (uint16_t)(len + pad + 1);
        pre[8] = (unsigned char)(hl & 0xFF);
        pre[9] = (unsigned char)(hl >> 8);
        ok &= fwrite(pre, 1, 10, fp) == 10;
        ok &= fwrite(header, 1, (size_t)len, fp) == (size_t)len;
        for (int i = 0; i < pad; i++) ok &= fputc(' ', fp) != EOF;
        ok &= fputc('\n', fp) != EOF;
        ok &= fwrite(data, ints64 ? 8 : 4, rows * cols, fp) == rows * cols;
    } else if (ends_with(path, ".ivecs") || ends_with(path, ".fvecs")) {
        bool iv = ends_with(path, ".ivecs");
        if (iv != ints64) {
            fclose(fp);
            unlink(tmp);
            return fail(e, "%s: ids go to .ivecs or .npy, scores to .fvecs or .npy", path);
        }
        int32_t d = (int32_t)cols;
        for (size_t r = 0; r < rows && ok; r++) {
            ok &= fwrite(&d, 4, 1, fp) == 1;
            if (iv) {
                const int64_t *src = (const int64_t *)data + r * cols;
                for (size_t j = 0; j < cols && ok; j++) {
                    if (src[j] < -1 || src[j] > INT32_MAX) {
                        fclose(fp);
                        unlink(tmp);
                        return fail(e, "%s: id %" PRId64 " does not fit .ivecs (int32): write .npy",
                                    path, src[j]);
                    }
                    int32_t v = (int32_t)src[j];
                    ok &= fwrite(&v, 4, 1, fp) == 1;
                }
            } else {
                ok &= fwrite((const float *)data + r * cols, 4, cols, fp) == cols;
            }
        }
    } else {
        fclose(fp);
        unlink(tmp);
        return fail(e, "%s: unsupported output format (.ivecs/.fvecs/.npy)", path);
    }
    ok &= fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    ok &= fclose(fp) == 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return fail(e, "%s: write failed: %s", path, strerror(errno));
    }
    return 0;
}

/* ---- the manifest ------------------------------------------------------- */

typedef struct {
    uint64_t size;
    uint32_t crc;
    uint64_t vectors;
} part_info;

typedef struct {
    size_t shards, dim;
    avq_metric metric;
    int64_t next_id;
    part_info quantizer;
    uint32_t fingerprint;
    part_info *shard; /* shards */
} manifest;

static void shard_path(char *out, size_t cap, const char *dir, size_t s) {
    snprintf(out, cap, "%s/shard-%04zu.avq", dir, s);
}

static int manifest_write(const char *dir, const manifest *m, err_t *e) {
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/manifest", dir);
    snprintf(tmp, sizeof tmp, "%s/manifest.tmp.%d", dir, (int)getpid());
    FILE *fp = fopen(tmp, "w");
    if (!fp) return fail(e, "%s: %s", tmp, strerror(errno));
    fprintf(fp, "avq-sharded-index %d\nshards %zu\ndim %zu\nmetric %s\nhash splitmix64-mod\n",
            MANIFEST_VERSION, m->shards, m->dim, avq_metric_name(m->metric));
    fprintf(fp, "next-id %" PRId64 "\n", m->next_id);
    fprintf(fp, "quantizer quantizer.avq %" PRIu64 " %08x %08x\n", m->quantizer.size,
            m->quantizer.crc, m->fingerprint);
    for (size_t s = 0; s < m->shards; s++)
        fprintf(fp, "shard %zu shard-%04zu.avq %" PRIu64 " %08x %" PRIu64 "\n", s, s,
                m->shard[s].size, m->shard[s].crc, m->shard[s].vectors);
    int ok = fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    ok &= fclose(fp) == 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return fail(e, "%s: write failed: %s", path, strerror(errno));
    }
    return 0;
}

static int manifest_read(const char *dir, manifest *m, err_t *e) {
    memset(m, 0, sizeof *m);
    char path[4200];
    snprintf(path, sizeof path, "%s/manifest", dir);
    FILE *fp = fopen(path, "r");
    if (!fp) return fail(e, "%s: %s (not a sharded index directory?)", path, strerror(errno));
    char line[512];
    size_t lineno = 0, seen = 0;
    int version = -1, st = 0;
    bool have_q = false;
    while (!st && fgets(line, sizeof line, fp)) {
        lineno++;
        char name[64], metric[64];
        unsigned long long a, b, c;
        unsigned crc, fp32;
        long long id;
        if (lineno == 1) {
            if (sscanf(line, "avq-sharded-index %d", &version) != 1)
                st = fail(e, "%s: not an avq-mpi manifest (line 1)", path);
            else if (version != MANIFEST_VERSION)
                st = fail(e, "%s: format version %d, this avq-mpi reads version %d", path,
                          version, MANIFEST_VERSION);
        } else if (sscanf(line, "shards %llu", &a) == 1) {
            if (a == 0 || a > 1000000 || m->shard) {
                st = fail(e, "%s: line %zu: bad shard count", path, lineno);
            } else {
                m->shards = (size_t)a;
                m->shard = calloc(m->shards, sizeof *m->shard);
                for (size_t s = 0; m->shard && s < m->shards; s++) m->shard[s].size = UINT64_MAX;
            }
        } else if (sscanf(line, "dim %llu", &a) == 1) {
            m->dim = (size_t)a;
        } else if (sscanf(line, "metric %63s", metric) == 1) {
            if (avq_metric_parse(metric, &m->metric) != AVQ_OK)
                st = fail(e, "%s: line %zu: unknown metric %s", path, lineno, metric);
        } else if (strncmp(line, "hash ", 5) == 0) {
            if (strncmp(line, "hash splitmix64-mod", 19) != 0)
                st = fail(e, "%s: line %zu: unknown id hash", path, lineno);
        } else if (sscanf(line, "next-id %lld", &id) == 1) {
            m->next_id = id;
        } else if (sscanf(line, "quantizer %63s %llu %x %x", name, &a, &crc, &fp32) == 4) {
            m->quantizer = (part_info){a, crc, 0};
            m->fingerprint = fp32;
            have_q = true;
        } else if (sscanf(line, "shard %llu %63s %llu %x %llu", &a, name, &b, &crc, &c) == 5) {
            if (!m->shard || a >= m->shards) {
                st = fail(e, "%s: line %zu: shard %llu outside 0..%zu", path, lineno, a,
                          m->shards ? m->shards - 1 : 0);
            } else {
                m->shard[a] = (part_info){b, crc, c};
                seen++;
            }
        } else {
            st = fail(e, "%s: line %zu is not understood: %.60s", path, lineno, line);
        }
    }
    fclose(fp);
    if (st) return -1;
    if (!m->shard || !have_q || m->dim == 0)
        return fail(e, "%s: incomplete manifest (shards, dim and quantizer lines are required)",
                    path);
    for (size_t s = 0; s < m->shards; s++)
        if (m->shard[s].size == UINT64_MAX)
            return fail(e, "%s: shard %zu is not listed", path, s);
    return 0;
}

/* ---- loading this rank's shards ------------------------------------------ */

typedef struct {
    size_t shard;
    avq_index *index; /* NULL: failed (message in why) */
    char why[MSG];
} loaded_shard;

/* Load shard s with every check: size against the manifest (missing or
 * truncated), the library's own checks (format, checksums), the quantizer
 * fingerprint (built from another quantizer), dimension and metric. */
static void load_one(const char *dir, const manifest *m, size_t s, unsigned flags, bool verify_crc,
                     loaded_shard *out) {
    char path[4200];
    shard_path(path, sizeof path, dir, s);
    out->shard = s;
    out->index = NULL;
    out->why[0] = 0;
    uint64_t size = file_size_or(path, UINT64_MAX);
    if (size == UINT64_MAX) {
        snprintf(out->why, MSG, "shard %zu (%s): missing: %s", s, path, strerror(errno));
        return;
    }
    if (size != m->shard[s].size) {
        snprintf(out->why, MSG,
                 "shard %zu (%s): %" PRIu64 " bytes, the manifest says %" PRIu64
                 " (truncated or replaced)", s, path, size, m->shard[s].size);
        return;
    }
    if (verify_crc) {
        err_t e = {{0}, 0};
        uint32_t crc;
        uint64_t sz;
        if (file_crc(path, &crc, &sz, &e)) {
            snprintf(out->why, MSG, "shard %zu: %s", s, e.msg);
            return;
        }
        if (crc != m->shard[s].crc) {
            snprintf(out->why, MSG, "shard %zu (%s): CRC32C %08x, the manifest says %08x", s,
                     path, crc, m->shard[s].crc);
            return;
        }
    }
    avq_index *x = NULL;
    if (avq_index_load(path, flags, &x) != AVQ_OK) {
        snprintf(out->why, MSG, "shard %zu (%s): %s", s, path, avq_last_error());
        return;
    }
    err_t e = {{0}, 0};
    uint32_t fp;
    if (quantizer_fingerprint(avq_index_quantizer(x), &fp, &e)) {
        snprintf(out->why, MSG, "shard %zu: %s", s, e.msg);
    } else if (fp != m->fingerprint) {
        snprintf(out->why, MSG,
                 "shard %zu (%s) was built with a different quantizer (fingerprint %08x, the "
                 "index's is %08x): its scores would not merge", s, path, fp, m->fingerprint);
    } else if (avq_index_dim(x) != m->dim || avq_index_metric(x) != m->metric) {
        snprintf(out->why, MSG, "shard %zu (%s): dimension/metric differ from the manifest", s,
                 path);
    } else if (avq_index_size(x) != m->shard[s].vectors) {
        snprintf(out->why, MSG, "shard %zu (%s): holds %zu vectors, the manifest says %" PRIu64,
                 s, path, avq_index_size(x), m->shard[s].vectors);
    } else {
        out->index = x;
        return;
    }
    avq_index_free(x);
}

/* The shards this rank serves, loaded; returns how many. */
static size_t load_mine(const char *dir, const manifest *m, unsigned flags, bool verify_crc,
                        loaded_shard **out) {
    size_t mine = 0;
    for (size_t s = 0; s < m->shards; s++) mine += owner_of(s) == g_rank;
    loaded_shard *v = calloc(mine ? mine : 1, sizeof *v);
    size_t j = 0;
    for (size_t s = 0; s < m->shards; s++)
        if (owner_of(s) == g_rank) load_one(dir, m, s, flags, verify_crc, &v[j++]);
    *out = v;
    return mine;
}

/* Collective: every rank's shard failures to rank 0.  Returns how many
 * shards failed in all; rank 0 fills missing[] (shards) when not NULL. */
static size_t shard_failures(const loaded_shard *v, size_t n, const char *what, bool print,
                             bool *missing, size_t shards) {
    size_t mine = 0;
    for (size_t i = 0; i < n; i++) mine += v[i].index == NULL;
    unsigned long long m = mine, total = 0;
    MPI_Allreduce(&m, &total, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (total == 0) return 0;
    /* messages: each rank sends its failures' lines, gathered at rank 0 */
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        if (!v[i].index) len += strlen(v[i].why) + 1;
    char *buf = malloc(len + 1), *p = buf;
    int *flag = calloc(shards, sizeof *flag);
    for (size_t i = 0; i < n; i++)
        if (!v[i].index) {
            p += sprintf(p, "%s\n", v[i].why);
            flag[v[i].shard] = 1;
        }
    int mylen = (int)len, *lens = g_rank == 0 ? malloc((size_t)g_size * sizeof(int)) : NULL;
    MPI_Gather(&mylen, 1, MPI_INT, lens, 1, MPI_INT, 0, MPI_COMM_WORLD);
    int *displs = NULL, all_len = 0;
    char *all = NULL;
    if (g_rank == 0) {
        displs = malloc((size_t)g_size * sizeof(int));
        for (int r = 0; r < g_size; r++) {
            displs[r] = all_len;
            all_len += lens[r];
        }
        all = malloc((size_t)all_len + 1);
    }
    MPI_Gatherv(buf, mylen, MPI_CHAR, all, lens, displs, MPI_CHAR, 0, MPI_COMM_WORLD);
    int *allflag = g_rank == 0 ? calloc(shards, sizeof *allflag) : NULL;
    MPI_Reduce(flag, allflag, (int)shards, MPI_INT, MPI_MAX, 0, MPI_COMM_WORLD);
    if (g_rank == 0) {
        all[all_len] = 0;
        if (print) {
            char *line = all, *nl;
            while ((nl = strchr(line, '\n'))) {
                *nl = 0;
                fprintf(stderr, "avq-mpi %s: %s: %s\n", what, missing ? "warning" : "error", line);
                line = nl + 1;
            }
        }
        if (missing)
            for (size_t s = 0; s < shards; s++) missing[s] = allflag[s] != 0;
    }
    free(buf);
    free(flag);
    free(lens);
    free(displs);
    free(all);
    free(allflag);
    return (size_t)total;
}

/* ---- options ---------------------------------------------------------------- */

typedef struct {
    const char *base, *out, *index, *query, *scores, *ids, *metric, *reorder, *merge;
    size_t shards, k, leaves, pre_reorder, batch, num_leaves, training_sample, brute_below;
    long long first_id;
    int threads;
    uint64_t seed;
    bool allow_partial, verify, help, mmap_off, have_first_id;
} options;

static const char *HELP_BUILD =
    "usage: mpirun -np N avq-mpi build --base B.fvecs|B.npy --metric cos|ip|l2 --out DIR\n"
    "         [--shards S (default N)] [--leaves L] [--training-sample T] [--seed X]\n"
    "         [--reorder float|float16|int8|none] [--brute-force-below M (default 20000)]\n"
    "         [--threads T] [--first-id X]\n"
    "Trains one quantizer (rank 0, on a sample every rank draws from its own rows),\n"
    "broadcasts it, and writes S shards: rank r reads only rows [r n/N, (r+1) n/N) of B;\n"
    "row i gets id first-id + i (default 0) and goes to shard splitmix64(id) mod S.\n"
    "DIR gets manifest, quantizer.avq and shard-NNNN.avq; it must be on a file system\n"
    "every rank sees.  --threads: encoding threads per rank (0 = every CPU the rank may\n"
    "use: with several ranks per node, give each its share).  Progress on rank 0 (stderr).\n";
static const char *HELP_SEARCH =
    "usage: mpirun -np N avq-mpi search --index DIR --query Q.fvecs|Q.npy --out R.ivecs|R.npy\n"
    "         [--k 10] [--leaves-to-search L] [--reorder R (pre_reorder)] [--scores S.fvecs]\n"
    "         [--batch 10000] [--threads T] [--merge candidates|topk] [--allow-partial]\n"
    "         [--verify] [--no-mmap]\n"
    "Every rank maps its shards (shard s is served by rank s mod N), queries go to all\n"
    "ranks in batches and rank 0 merges.  --merge candidates (default): every shard sends\n"
    "its best R quantized candidates with exact scores: ids and scores equal one index\n"
    "over all the data.  --merge topk: every shard sends its own top k (less traffic, at\n"
    "least as good as, but not always equal to, one index).  A missing, corrupt or\n"
    "foreign shard fails the job before anything is written; --allow-partial answers\n"
    "from the shards that loaded and lists the others.  --verify also checks every\n"
    "shard's CRC32C against the manifest.\n";
static const char *HELP_ADD =
    "usage: mpirun -np N avq-mpi add --index DIR --base B.fvecs|B.npy [--ids I.npy] [--threads T]\n"
    "Adds the rows of B under ids from I (1-D int64/int32 .npy, or one per line), or\n"
    "under the next free ids (the manifest's next-id).  Each rank reads its rows, routes\n"
    "them by the id hash to the shards' ranks, which add and save; then the manifest.\n";
static const char *HELP_REMOVE =
    "usage: mpirun -np N avq-mpi remove --index DIR --ids I.npy|I.txt\n"
    "Removes these ids from the shards their hash names; prints how many were present.\n";
static const char *HELP_INFO =
    "usage: mpirun -np N avq-mpi info --index DIR [--verify]\n"
    "Prints the manifest and checks every shard (size, load, quantizer); --verify also\n"
    "compares each part's CRC32C with the manifest.\n";

static int parse_options(int argc, char **argv, options *o, err_t *e) {
    memset(o, 0, sizeof *o);
    o->k = 10;
    o->batch = 10000;
    o->seed = 42;
    o->metric = "cos";
    o->merge = "candidates";
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            o->help = true;
            continue;
        }
        if (!strcmp(a, "--allow-partial")) {
            o->allow_partial = true;
            continue;
        }
        if (!strcmp(a, "--verify")) {
            o->verify = true;
            continue;
        }
        if (!strcmp(a, "--no-mmap")) {
            o->mmap_off = true;
            continue;
        }
        if (i + 1 >= argc) return fail(e, "%s needs a value (see --help)", a);
        const char *v = argv[++i];
        char *end = NULL;
        unsigned long long num = strtoull(v, &end, 10);
        bool isnum = end && *end == 0 && *v != '-';
#define NUM(field)                                                             \
    do {                                                                       \
        if (!isnum) return fail(e, "%s: '%s' is not a non-negative number", a, v); \
        o->field = (size_t)num;                                                \
    } while (0)
        if (!strcmp(a, "--base")) o->base = v;
        else if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--index")) o->index = v;
        else if (!strcmp(a, "--query")) o->query = v;
        else if (!strcmp(a, "--scores")) o->scores = v;
        else if (!strcmp(a, "--ids")) o->ids = v;
        else if (!strcmp(a, "--metric")) o->metric = v;
        else if (!strcmp(a, "--merge")) o->merge = v;
        else if (!strcmp(a, "--shards")) NUM(shards);
        else if (!strcmp(a, "--k")) NUM(k);
        else if (!strcmp(a, "--leaves-to-search")) NUM(leaves);
        else if (!strcmp(a, "--reorder")) {
            if (isnum) o->pre_reorder = (size_t)num;
            else o->reorder = v; /* build: the reorder kind */
        }
        else if (!strcmp(a, "--batch")) NUM(batch);
        else if (!strcmp(a, "--leaves")) NUM(num_leaves);
        else if (!strcmp(a, "--training-sample")) NUM(training_sample);
        else if (!strcmp(a, "--brute-force-below")) NUM(brute_below);
        else if (!strcmp(a, "--threads")) {
            if (!isnum) return fail(e, "--threads: '%s' is not a number", v);
            o->threads = (int)num;
        } else if (!strcmp(a, "--seed")) {
            if (!isnum) return fail(e, "--seed: '%s' is not a number", v);
            o->seed = num;
        } else if (!strcmp(a, "--first-id")) {
            o->first_id = strtoll(v, &end, 10);
            if (!end || *end) return fail(e, "--first-id: '%s' is not a number", v);
            o->have_first_id = true;
        } else return fail(e, "unknown option %s (see --help)", a);
#undef NUM
    }
    return 0;
}

/* ---- build ----------------------------------------------------------------- */

/* Row i is in the training sample (independent of N: the quantizer does not
 * depend on the number of ranks). */
static bool in_sample(uint64_t seed, size_t row, double p) {
    if (p >= 1.0) return true;
    uint64_t h = splitmix64_mix(seed ^ splitmix64_mix((uint64_t)row));
    return (double)(h >> 11) * (1.0 / 9007199254740992.0) < p;
}

/* Rows + ids of one shard, as received. */
typedef struct {
    float *rows;
    int64_t *ids;
    size_t n, cap;
} shard_rows;

static int shard_rows_push(shard_rows *b, const float *rows, const int64_t *ids, size_t n,
                           size_t d) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n) cap *= 2;
        float *r = realloc(b->rows, cap * d * sizeof *r);
        if (!r) return -1;
        b->rows = r;
        int64_t *i = realloc(b->ids, cap * sizeof *i);
        if (!i) return -1;
        b->ids = i;
        b->cap = cap;
    }
    memcpy(b->rows + b->n * d, rows, n * d * sizeof(float));
    memcpy(b->ids + b->n, ids, n * sizeof(int64_t));
    b->n += n;
    return 0;
}

static int cmp_pair(const void *pa, const void *pb) {
    const int64_t *a = pa, *b = pb;
    return (a[0] > b[0]) - (a[0] < b[0]);
}

/* Sort a shard's rows by ascending id: the order one index over all the
 * data, built in id order, holds them in -- which is where it breaks ties
 * of quantized scores (avq.h, "Merging results from shards").  In place:
 * (id, row) pairs are sorted and the permutation is applied by following
 * its cycles, one row of scratch, so the rows are never held twice. */
static int shard_rows_sort(shard_rows *b, size_t d) {
    int64_t *pairs = malloc((b->n ? b->n : 1) * 2 * sizeof *pairs);
    float *tmp = malloc(d * sizeof *tmp);
    if (!pairs || !tmp) {
        free(pairs);
        free(tmp);
        return -1;
    }
    for (size_t i = 0; i < b->n; i++) {
        pairs[2 * i] = b->ids[i];
        pairs[2 * i + 1] = (int64_t)i;
    }
    qsort(pairs, b->n, 2 * sizeof *pairs, cmp_pair);
    /* position i must receive row src(i) = pairs[2i+1]; done positions are
     * marked by src = -1 */
    for (size_t i = 0; i < b->n; i++) {
        b->ids[i] = pairs[2 * i];
        if (pairs[2 * i + 1] < 0 || (size_t)pairs[2 * i + 1] == i) continue;
        memcpy(tmp, b->rows + i * d, d * sizeof(float));
        size_t at = i;
        for (;;) {
            size_t from = (size_t)pairs[2 * at + 1];
            pairs[2 * at + 1] = -1;
            if (from == i) {
                memcpy(b->rows + at * d, tmp, d * sizeof(float));
                break;
            }
            memcpy(b->rows + at * d, b->rows + from * d, d * sizeof(float));
            at = from;
        }
    }
    free(pairs);
    free(tmp);
    return 0;
}

/* Route (rows, ids) of this rank to the owners of their shards: an
 * MPI_Alltoallv in rounds of at most ROUND rows per rank (counts stay
 * within int), appended to mine[] (one per shard this rank serves, by
 * shard number / N). */
static int exchange_rows(const float *rows, const int64_t *ids, size_t n, size_t d, size_t shards,
                         shard_rows *mine, err_t *e) {
    /* a record: id (int64) then d floats; a round's bytes stay below INT_MAX
     * on the receiving side too (all P ranks may send to one) */
    size_t rec = sizeof(int64_t) + d * sizeof(float);
    size_t ROUND = (size_t)INT32_MAX / rec / (size_t)g_size;
    if (ROUND > (1u << 16)) ROUND = 1u << 16;
    if (ROUND == 0) return fail(e, "rows of dimension %zu are too large to exchange", d);
    unsigned long long my_rounds = (n + ROUND - 1) / ROUND, rounds = 0;
    MPI_Allreduce(&my_rounds, &rounds, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    int P = g_size, st = 0;
    /* every shard's size first, so its buffer is allocated once, exactly */
    unsigned long long *per = calloc(shards, sizeof *per), *tot = calloc(shards, sizeof *tot);
    if (!per || !tot) {
        free(per);
        free(tot);
        return fail(e, "out of memory for the exchange");
    }
    for (size_t i = 0; i < n; i++) per[avq_mpi_shard_of(ids[i], shards)]++;
    MPI_Allreduce(per, tot, (int)shards, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    for (size_t s = (size_t)g_rank; s < shards && !st; s += (size_t)P) {
        shard_rows *b = &mine[s / (size_t)P];
        b->cap = (size_t)tot[s];
        b->rows = malloc((b->cap ? b->cap : 1) * d * sizeof(float));
        b->ids = malloc((b->cap ? b->cap : 1) * sizeof(int64_t));
        if (!b->rows || !b->ids) st = fail(e, "out of memory for shard %zu (%zu rows)", s, b->cap);
    }
    free(per);
    free(tot);
    int *scount = calloc((size_t)P, sizeof(int)), *rcount = calloc((size_t)P, sizeof(int));
    int *sdisp = calloc((size_t)P, sizeof(int)), *rdisp = calloc((size_t)P, sizeof(int));
    int *sc2 = calloc((size_t)P, sizeof(int)), *rc2 = calloc((size_t)P, sizeof(int));
    int *sd2 = calloc((size_t)P, sizeof(int)), *rd2 = calloc((size_t)P, sizeof(int));
    unsigned char *sbuf = malloc((ROUND + 1) * rec), *rbuf = NULL;
    size_t *fill = calloc((size_t)P, sizeof(size_t));
    if (!scount || !rcount || !sdisp || !rdisp || !sc2 || !rc2 || !sd2 || !rd2 || !sbuf || !fill)
        st = fail(e, "out of memory for the exchange");
    for (unsigned long long r = 0; r < rounds; r++) {
        size_t first = (size_t)r * ROUND, count = 0;
        if (!st && first < n) count = n - first < ROUND ? n - first : ROUND;
        memset(scount, 0, (size_t)P * sizeof(int));
        for (size_t i = 0; i < count; i++)
            scount[owner_of(avq_mpi_shard_of(ids[first + i], shards))]++;
        sdisp[0] = 0;
        for (int p = 1; p < P; p++) sdisp[p] = sdisp[p - 1] + scount[p - 1];
        for (int p = 0; p < P; p++) fill[p] = (size_t)sdisp[p];
        for (size_t i = 0; i < count; i++) {
            int p = owner_of(avq_mpi_shard_of(ids[first + i], shards));
            unsigned char *dst = sbuf + fill[p]++ * rec;
            memcpy(dst, &ids[first + i], sizeof(int64_t));
            memcpy(dst + sizeof(int64_t), rows + (first + i) * d, d * sizeof(float));
        }
        MPI_Alltoall(scount, 1, MPI_INT, rcount, 1, MPI_INT, MPI_COMM_WORLD);
        size_t total = 0;
        for (int p = 0; p < P; p++) {
            rdisp[p] = (int)total;
            total += (size_t)rcount[p];
        }
        unsigned char *g = realloc(rbuf, (total ? total : 1) * rec);
        if (!g) {
            st = fail(e, "out of memory receiving %zu rows", total);
            total = 0;
            memset(rcount, 0, (size_t)P * sizeof(int));
        } else {
            rbuf = g;
        }
        /* in bytes (records can exceed an MPI datatype's int count otherwise) */
        for (int p = 0; p < P; p++) {
            sc2[p] = (int)((size_t)scount[p] * rec);
            sd2[p] = (int)((size_t)sdisp[p] * rec);
            rc2[p] = (int)((size_t)rcount[p] * rec);
            rd2[p] = (int)((size_t)rdisp[p] * rec);
        }
        MPI_Alltoallv(sbuf, sc2, sd2, MPI_BYTE, rbuf, rc2, rd2, MPI_BYTE, MPI_COMM_WORLD);
        for (size_t i = 0; !st && i < total; i++) {
            int64_t id;
            memcpy(&id, rbuf + i * rec, sizeof id);
            size_t s = avq_mpi_shard_of(id, shards);
            float *row = (float *)(void *)(rbuf + i * rec + sizeof(int64_t));
            float tmp[4096];
            const float *src = row;
            if (d <= 4096) { /* alignment: copy out of the packed record */
                memcpy(tmp, row, d * sizeof(float));
                src = tmp;
            }
            if (shard_rows_push(&mine[s / (size_t)P], src, &id, 1, d))
                st = fail(e, "out of memory for shard %zu", s);
        }
    }
    free(scount);
    free(rcount);
    free(sdisp);
    free(rdisp);
    free(sc2);
    free(rc2);
    free(sd2);
    free(rd2);
    free(sbuf);
    free(rbuf);
    free(fill);
    return st;
}

/* Save shard s and describe it. */
static int save_shard(const char *dir, size_t s, const avq_index *x, part_info *info, err_t *e) {
    char path[4200];
    shard_path(path, sizeof path, dir, s);
    if (avq_index_save(x, path) != AVQ_OK)
        return fail(e, "shard %zu (%s): %s", s, path, avq_last_error());
    if (file_crc(path, &info->crc, &info->size, e)) return -1;
    info->vectors = avq_index_size(x);
    return 0;
}

/* Gather every shard's part_info at rank 0 into m->shard. */
static void gather_parts(const part_info *mine_info, const size_t *mine_shard, size_t nmine,
                         manifest *m) {
    /* each rank sends (shard, size, crc, vectors) quadruples */
    unsigned long long *send = malloc((nmine ? nmine : 1) * 4 * sizeof *send);
    for (size_t i = 0; i < nmine; i++) {
        send[4 * i] = mine_shard[i];
        send[4 * i + 1] = mine_info[i].size;
        send[4 * i + 2] = mine_info[i].crc;
        send[4 * i + 3] = mine_info[i].vectors;
    }
    int cnt = (int)(4 * nmine), *cnts = NULL, *disp = NULL, total = 0;
    unsigned long long *all = NULL;
    if (g_rank == 0) {
        cnts = malloc((size_t)g_size * sizeof(int));
        disp = malloc((size_t)g_size * sizeof(int));
    }
    MPI_Gather(&cnt, 1, MPI_INT, cnts, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (g_rank == 0) {
        for (int r = 0; r < g_size; r++) {
            disp[r] = total;
            total += cnts[r];
        }
        all = malloc((size_t)(total ? total : 1) * sizeof *all);
    }
    MPI_Gatherv(send, cnt, MPI_UNSIGNED_LONG_LONG, all, cnts, disp, MPI_UNSIGNED_LONG_LONG, 0,
                MPI_COMM_WORLD);
    if (g_rank == 0)
        for (int i = 0; i < total; i += 4)
            m->shard[all[i]] = (part_info){all[i + 1], (uint32_t)all[i + 2], all[i + 3]};
    free(send);
    free(cnts);
    free(disp);
    free(all);
}

/* The quantizer to every rank: rank 0 serialises it (an empty index made
 * from it, avq_index_save_bytes), MPI_Bcast, every rank loads the bytes
 * into *holder, an empty index whose quantizer (avq_index_quantizer) the
 * shards are created from.  Needs no shared file system. */
static int broadcast_quantizer(const avq_quantizer *q, avq_index **holder, err_t *e) {
    void *bytes = NULL;
    size_t n = 0;
    if (g_rank == 0) {
        avq_index *empty = NULL;
        if (!q || avq_index_create(q, &empty) != AVQ_OK ||
            avq_index_save_bytes(empty, &bytes, &n) != AVQ_OK)
            fail(e, "quantizer: %s", avq_last_error());
        avq_index_free(empty);
    }
    unsigned long long len = n;
    MPI_Bcast(&len, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
    if (len == 0) return fail(e, "the quantizer could not be serialised on rank 0");
    if (g_rank != 0) bytes = malloc((size_t)len);
    int ok = bytes != NULL, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!all_ok) {
        if (g_rank == 0) avq_free(bytes);
        else free(bytes);
        return fail(e, "out of memory for the quantizer");
    }
    for (unsigned long long off = 0; off < len;) { /* in pieces below INT_MAX */
        unsigned long long piece = len - off < (1ull << 30) ? len - off : (1ull << 30);
        MPI_Bcast((char *)bytes + off, (int)piece, MPI_BYTE, 0, MPI_COMM_WORLD);
        off += piece;
    }
    int st = avq_index_load_bytes(bytes, (size_t)len, holder);
    if (g_rank == 0) avq_free(bytes);
    else free(bytes);
    if (st != AVQ_OK) return fail(e, "quantizer from rank 0: %s", avq_last_error());
    return 0;
}

static int cmd_build(const options *o) {
    err_t e = {{0}, 0};
    double t0 = now(), c0 = cpu_now();
    avq_metric metric = AVQ_METRIC_COSINE;
    if (!o->base || !o->out) fail(&e, "build needs --base and --out (see --help)");
    else if (avq_metric_parse(o->metric, &metric) != AVQ_OK) fail(&e, "%s", avq_last_error());
    if (any_failed(&e, "build")) return 1;
    input_file in;
    input_open(&in, o->base, false, &e);
    if (any_failed(&e, "build")) return 1;
    size_t n = in.rows, d = in.cols, S = o->shards ? o->shards : (size_t)g_size;
    size_t first = (size_t)((unsigned long long)n * (unsigned)g_rank / (unsigned)g_size);
    size_t last = (size_t)((unsigned long long)n * (unsigned)(g_rank + 1) / (unsigned)g_size);
    size_t mine = last - first;
    say("build: %s: %zu x %zu, %zu shards over %d ranks; rank 0 reads rows [%zu, %zu)", o->base,
        n, d, S, g_size, first, last);
    if (g_rank == 0 && mkdir(o->out, 0777) != 0 && errno != EEXIST)
        fail(&e, "%s: %s", o->out, strerror(errno));
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/manifest", o->out);
    if (g_rank == 0 && file_size_or(probe, UINT64_MAX) != UINT64_MAX)
        fail(&e, "%s already holds a sharded index (remove it first)", o->out);
    float *rows = malloc((mine ? mine : 1) * d * sizeof *rows);
    int64_t *ids = malloc((mine ? mine : 1) * sizeof *ids);
    if (!rows || !ids) fail(&e, "out of memory for %zu rows", mine);
    else input_rows_float(&in, first, mine, rows, &e);
    input_close(&in);
    int64_t first_id = o->have_first_id ? o->first_id : 0;
    for (size_t i = 0; i < mine && ids; i++) ids[i] = first_id + (int64_t)(first + i);
    double t_read = now() - t0;
    if (any_failed(&e, "build")) return 1;
    say("build: read %zu rows per rank in %.2f s", mine, t_read);

    /* the training sample: every rank its own rows in it, gathered at rank 0 */
    avq_build_params bp;
    avq_build_params_init(&bp, metric);
    size_t sample_target = o->training_sample ? o->training_sample : 100000;
    double p = n <= sample_target ? 1.0 : (double)sample_target / (double)n;
    size_t take = 0;
    for (size_t i = 0; i < mine; i++) take += in_sample(o->seed, first + i, p);
    float *sample = malloc((take ? take : 1) * d * sizeof *sample);
    for (size_t i = 0, j = 0; sample && i < mine; i++)
        if (in_sample(o->seed, first + i, p)) memcpy(sample + j++ * d, rows + i * d, d * sizeof(float));
    int cnt = (int)(take * d), *cnts = NULL, *disp = NULL;
    long long total = 0;
    float *all = NULL;
    if (g_rank == 0) {
        cnts = malloc((size_t)g_size * sizeof(int));
        disp = malloc((size_t)g_size * sizeof(int));
    }
    MPI_Gather(&cnt, 1, MPI_INT, cnts, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (g_rank == 0) {
        for (int r = 0; r < g_size; r++) {
            disp[r] = (int)total;
            total += cnts[r];
        }
        all = malloc((size_t)(total ? total : 1) * sizeof *all);
    }
    MPI_Gatherv(sample, cnt, MPI_FLOAT, all, cnts, disp, MPI_FLOAT, 0, MPI_COMM_WORLD);
    free(sample);
    avq_quantizer *q = NULL;
    double t1 = now(), c1 = cpu_now();
    if (g_rank == 0) {
        size_t ns = (size_t)total / d;
        /* the tiers and the leaf count follow the whole data, not the
         * sample (avq_build_params: about sqrt(n) leaves from 100k on) */
        if (o->brute_below) bp.brute_force_below = o->brute_below;
        if (o->num_leaves) bp.num_leaves = o->num_leaves;
        else if (n >= 100000) {
            size_t L = (size_t)llround(sqrt((double)n));
            bp.num_leaves = L < ns / 16 ? L : ns / 16;
        }
        if (n >= bp.brute_force_below && ns < bp.brute_force_below) bp.brute_force_below = ns;
        bp.training_sample = ns;
        bp.seed = o->seed;
        bp.threads = o->threads;
        if (o->reorder) {
            if (!strcmp(o->reorder, "float")) bp.reorder = AVQ_REORDER_FLOAT;
            else if (!strcmp(o->reorder, "float16")) bp.reorder = AVQ_REORDER_FLOAT16;
            else if (!strcmp(o->reorder, "int8")) bp.reorder = AVQ_REORDER_INT8;
            else if (!strcmp(o->reorder, "none")) bp.reorder = AVQ_REORDER_NONE;
            else fail(&e, "--reorder: '%s' is not float, float16, int8 or none", o->reorder);
        }
        say("build: training the quantizer on %zu sample rows (rank 0)", ns);
        if (!e.failed && avq_quantizer_train(all, ns, d, &bp, &q) != AVQ_OK)
            fail(&e, "training: %s", avq_last_error());
    }
    free(all);
    free(cnts);
    free(disp);
    quiet_barrier(); /* the other ranks sleep while rank 0 trains */
    double t_train = now() - t1, c_train = cpu_now() - c1;
    if (any_failed(&e, "build")) return 1;
    say("build: trained in %.2f s (%.2f s CPU): %zu leaves", t_train, c_train,
        g_rank == 0 ? avq_quantizer_num_leaves(q) : 0);
    avq_index *holder = NULL;
    broadcast_quantizer(q, &holder, &e);
    avq_quantizer_free(q);
    if (any_failed(&e, "build")) return 1;
    const avq_quantizer *shared = avq_index_quantizer(holder);

    /* route rows to their shards' ranks */
    double t2 = now();
    size_t nmine = 0;
    for (size_t s = 0; s < S; s++) nmine += owner_of(s) == g_rank;
    shard_rows *buf = calloc(nmine ? nmine : 1, sizeof *buf);
    exchange_rows(rows, ids, mine, d, S, buf, &e);
    free(rows);
    free(ids);
    double t_x = now() - t2;
    if (any_failed(&e, "build")) return 1;
    say("build: rows routed to their shards in %.2f s", t_x);

    /* encode and save my shards */
    double t3 = now(), c3 = cpu_now();
    part_info *info = calloc(nmine ? nmine : 1, sizeof *info);
    size_t *which = calloc(nmine ? nmine : 1, sizeof *which);
    size_t encoded = 0;
    for (size_t j = 0; j < nmine && !e.failed; j++) {
        size_t s = (size_t)g_rank + j * (size_t)g_size;
        which[j] = s;
        avq_index *x = NULL;
        if (shard_rows_sort(&buf[j], d)) fail(&e, "out of memory sorting shard %zu", s);
        else if (avq_index_create(shared, &x) != AVQ_OK ||
                 avq_index_add(x, buf[j].rows, buf[j].n, buf[j].ids, o->threads, NULL) != AVQ_OK)
            fail(&e, "shard %zu: %s", s, avq_last_error());
        else
            save_shard(o->out, s, x, &info[j], &e);
        encoded += buf[j].n;
        avq_index_free(x);
        free(buf[j].rows);
        free(buf[j].ids);
        buf[j].rows = NULL;
        buf[j].ids = NULL;
    }
    free(buf);
    double t_enc = now() - t3, c_enc = cpu_now() - c3;
    if (any_failed(&e, "build")) return 1;
    double max_enc = 0, sum_cpu = 0, peak = peak_rss_mb(), max_peak = 0;
    MPI_Reduce(&t_enc, &max_enc, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    MPI_Reduce(&c_enc, &sum_cpu, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Reduce(&peak, &max_peak, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    manifest m;
    memset(&m, 0, sizeof m);
    m.shards = S;
    m.dim = d;
    m.metric = metric;
    m.next_id = first_id + (int64_t)n;
    m.shard = g_rank == 0 ? calloc(S, sizeof *m.shard) : NULL;
    gather_parts(info, which, nmine, &m);
    free(info);
    free(which);
    if (g_rank == 0) {
        char qpath[4200];
        snprintf(qpath, sizeof qpath, "%s/quantizer.avq", o->out);
        avq_quantizer *loaded = NULL;
        if (avq_quantizer_save(shared, qpath) != AVQ_OK)
            fail(&e, "%s: %s", qpath, avq_last_error());
        else if (file_crc(qpath, &m.quantizer.crc, &m.quantizer.size, &e) == 0) {
            if (avq_quantizer_load(qpath, &loaded) != AVQ_OK)
                fail(&e, "%s: %s", qpath, avq_last_error());
            else if (quantizer_fingerprint(loaded, &m.fingerprint, &e) == 0)
                manifest_write(o->out, &m, &e);
            avq_quantizer_free(loaded);
        }
    }
    free(m.shard);
    avq_index_free(holder);
    if (any_failed(&e, "build")) return 1;
    say("build: encoded %zu vectors per rank (rank 0) in %.2f s (slowest rank %.2f s), "
        "%.0f vectors/s per CPU second", encoded, t_enc, max_enc,
        sum_cpu > 0 ? (double)n / sum_cpu : 0.0);
    say("build: done in %.2f s wall (read %.2f, train %.2f, route %.2f, encode+save %.2f); "
        "peak RSS per rank %.0f MB; CPU rank 0 %.2f s", now() - t0, t_read, t_train, t_x, max_enc,
        max_peak, cpu_now() - c0);
    if (g_rank == 0) printf("%s: %zu vectors in %zu shards\n", o->out, n, S);
    return 0;
}

/* ---- search ---------------------------------------------------------------- */

static int cmd_search(const options *o) {
    err_t e = {{0}, 0};
    double t0 = now();
    bool topk_mode = false;
    if (!o->index || !o->query || !o->out) fail(&e, "search needs --index, --query and --out");
    else if (!strcmp(o->merge, "topk")) topk_mode = true;
    else if (strcmp(o->merge, "candidates")) fail(&e, "--merge: '%s' is not candidates or topk", o->merge);
    if (o->k == 0) fail(&e, "--k must be at least 1");
    if (o->batch == 0) fail(&e, "--batch must be at least 1");
    if (any_failed(&e, "search")) return 1;
    manifest m;
    manifest_read(o->index, &m, &e);
    if (any_failed(&e, "search")) return 1;
    loaded_shard *sh = NULL;
    unsigned flags = o->mmap_off ? AVQ_LOAD_COPY : AVQ_LOAD_MMAP;
    size_t nmine = load_mine(o->index, &m, flags, o->verify, &sh);
    bool *missing = g_rank == 0 ? calloc(m.shards, sizeof *missing) : NULL;
    size_t failed = shard_failures(sh, nmine, "search", true, o->allow_partial ? missing : NULL,
                                   m.shards);
    if (failed && !o->allow_partial) {
        say("search: %zu of %zu shards cannot be read: nothing written (--allow-partial "
            "answers from the others)", failed, m.shards);
        return 1;
    }
    if (failed == m.shards) {
        say("search: no shard could be read: nothing written");
        return 1;
    }
    double t_load = now() - t0, peak_load = peak_rss_mb();

    /* the queries: rank 0 reads them, every rank gets them batch by batch */
    input_file qf;
    unsigned long long shape[2] = {0, 0};
    float *queries = NULL;
    if (g_rank == 0 && input_open(&qf, o->query, false, &e) == 0) {
        if (qf.cols != m.dim)
            fail(&e, "%s: dimension %zu, the index has %zu", o->query, qf.cols, m.dim);
        else if (!(queries = malloc(qf.rows * qf.cols * sizeof *queries)))
            fail(&e, "out of memory for the queries");
        else if (input_rows_float(&qf, 0, qf.rows, queries, &e) == 0) {
            shape[0] = qf.rows;
            shape[1] = qf.cols;
        }
        input_close(&qf);
    }
    if (any_failed(&e, "search")) return 1;
    MPI_Bcast(shape, 2, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
    size_t nq = (size_t)shape[0], d = m.dim, k = o->k;

    avq_search_params sp;
    avq_search_params_init(&sp);
    sp.k = k;
    sp.leaves_to_search = o->leaves;
    sp.pre_reorder = o->pre_reorder;
    /* R and the whole index's leaf counts (summed over the shards that loaded) */
    unsigned long long R = 0, myR = 0, L = 0, myL = 0, lts = 0, my_lts = 0;
    for (size_t i = 0; i < nmine; i++)
        if (sh[i].index) {
            avq_search_params def;
            avq_search_params_init(&def);
            avq_index_default_search_params(sh[i].index, &def);
            my_lts = o->leaves ? o->leaves : def.leaves_to_search;
            size_t r;
            if (avq_index_candidate_count(sh[i].index, &sp, &r) != AVQ_OK)
                fail(&e, "shard %zu: %s", sh[i].shard, avq_last_error());
            else
                myR = r;
            myL = avq_index_num_leaves(sh[i].index);
        }
    if (any_failed(&e, "search")) return 1;
    MPI_Allreduce(&myR, &R, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(&myL, &L, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(&my_lts, &lts, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    if (topk_mode) R = k;
    unsigned long long *live_mine = calloc((size_t)L, sizeof *live_mine);
    unsigned long long *live_all = calloc((size_t)L, sizeof *live_all);
    size_t *leaf_live = calloc((size_t)L, sizeof *leaf_live), *tmp = calloc((size_t)L, sizeof *tmp);
    for (size_t i = 0; i < nmine; i++)
        if (sh[i].index) {
            avq_index_leaf_live(sh[i].index, tmp);
            for (size_t l = 0; l < L; l++) live_mine[l] += tmp[l];
        }
    MPI_Allreduce(live_mine, live_all, (int)L, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    for (size_t l = 0; l < L; l++) leaf_live[l] = (size_t)live_all[l];
    free(live_mine);
    free(live_all);
    free(tmp);

    /* per batch: every rank searches its shards, rank 0 gathers and merges */
    size_t B = o->batch < nq ? o->batch : nq;
    size_t per_shard = B * (size_t)R; /* candidate records per shard per batch */
    size_t rec = topk_mode ? sizeof(int64_t) + sizeof(float) : sizeof(avq_candidate);
    /* a shard's block per batch: counts (B size_t) | offsets (B floats) | records */
    size_t block = B * sizeof(uint64_t) + B * sizeof(float) + per_shard * rec;
    unsigned char *send = malloc((nmine ? nmine : 1) * block);
    float *batchq = malloc(B * d * sizeof *batchq);
    int *cnts = NULL, *disp = NULL;
    unsigned char *recv = NULL;
    int64_t *out_ids = NULL;
    float *out_scores = NULL;
    size_t *shard_of_block = NULL;
    if (!send || !batchq) fail(&e, "out of memory for the batch buffers");
    if (g_rank == 0) {
        cnts = malloc((size_t)g_size * sizeof(int));
        disp = malloc((size_t)g_size * sizeof(int));
        recv = malloc(m.shards * block);
        out_ids = malloc(nq * k * sizeof *out_ids);
        out_scores = malloc(nq * k * sizeof *out_scores);
        shard_of_block = malloc(m.shards * sizeof *shard_of_block);
        if (!cnts || !disp || !recv || !out_ids || !out_scores || !shard_of_block)
            fail(&e, "out of memory for the results");
        int total = 0;
        size_t b = 0;
        for (int r = 0; r < g_size; r++) {
            size_t served = 0;
            for (size_t s = (size_t)r; s < m.shards; s += (size_t)g_size) {
                shard_of_block[b++] = s;
                served++;
            }
            if (served * block > (size_t)INT32_MAX) fail(&e, "--batch is too large for one gather");
            cnts[r] = (int)(served * block);
            disp[r] = total;
            total += cnts[r];
        }
    }
    if (any_failed(&e, "search")) return 1;
    /* pointers into recv for the merge */
    const avq_candidate **lists = calloc(m.shards, sizeof *lists);
    const size_t **counts = calloc(m.shards, sizeof *counts);
    const int64_t **tk_ids = calloc(m.shards, sizeof *tk_ids);
    const float **tk_scores = calloc(m.shards, sizeof *tk_scores);
    size_t *widths = calloc(m.shards, sizeof *widths);
    double t_search = 0, t_gather = 0, t_merge = 0, c_search = 0;
    size_t batches = 0;
    for (size_t first = 0; first < nq; first += B) {
        size_t nb = nq - first < B ? nq - first : B;
        if (g_rank == 0) memcpy(batchq, queries + first * d, nb * d * sizeof(float));
        MPI_Bcast(batchq, (int)(nb * d), MPI_FLOAT, 0, MPI_COMM_WORLD);
        double ts = now(), cs = cpu_now();
        for (size_t i = 0; i < nmine && !e.failed; i++) {
            unsigned char *blk = send + i * block;
            uint64_t *cnt = (uint64_t *)(void *)blk;
            float *off = (float *)(void *)(blk + B * sizeof(uint64_t));
            unsigned char *recs = blk + B * sizeof(uint64_t) + B * sizeof(float);
            if (!sh[i].index) { /* --allow-partial: an empty answer */
                memset(blk, 0, block);
                continue;
            }
            int st;
            if (topk_mode) {
                int64_t *ids = (int64_t *)(void *)recs;
                float *sc = (float *)(void *)(recs + per_shard * sizeof(int64_t));
                st = avq_index_search_batch(sh[i].index, batchq, nb, &sp, o->threads, ids, sc);
                for (size_t j = 0; j < nb; j++) cnt[j] = k;
            } else {
                size_t *c64 = (size_t *)(void *)cnt; /* size_t is 64-bit here */
                st = avq_index_search_candidates(sh[i].index, batchq, nb, &sp, leaf_live,
                                                 o->threads, (avq_candidate *)(void *)recs, c64, off);
            }
            if (st != AVQ_OK) fail(&e, "shard %zu: %s", sh[i].shard, avq_last_error());
        }
        t_search += now() - ts;
        c_search += cpu_now() - cs;
        double tg = now();
        MPI_Gatherv(send, (int)(nmine * block), MPI_BYTE, recv, cnts, disp, MPI_BYTE, 0,
                    MPI_COMM_WORLD);
        t_gather += now() - tg;
        if (any_failed(&e, "search")) return 1;
        if (g_rank == 0) {
            double tm = now();
            const float *offsets = NULL;
            for (size_t b = 0; b < m.shards; b++) {
                size_t s = shard_of_block[b];
                unsigned char *blk = recv + b * block;
                bool gone = missing && missing[s];
                unsigned char *recs = blk + B * sizeof(uint64_t) + B * sizeof(float);
                counts[b] = (const size_t *)(void *)blk;
                lists[b] = gone ? NULL : (const avq_candidate *)(void *)recs;
                if (!gone && !offsets) offsets = (const float *)(void *)(blk + B * sizeof(uint64_t));
                tk_ids[b] = (const int64_t *)(void *)recs;
                tk_scores[b] = (const float *)(void *)(recs + per_shard * sizeof(int64_t));
                widths[b] = gone ? 0 : k;
            }
            int st = topk_mode ? avq_merge_topk(m.metric, nb, m.shards, tk_ids, tk_scores, widths,
                                                k, out_ids + first * k, out_scores + first * k)
                               : avq_merge_candidates(m.metric, nb, m.shards, lists, counts,
                                                      (size_t)R, k, offsets,
                                                      out_ids + first * k, out_scores + first * k);
            if (st != AVQ_OK) fail(&e, "merge: %s", avq_last_error());
            t_merge += now() - tm;
        }
        batches++;
        if (g_rank == 0 && nq > B)
            fprintf(stderr, "avq-mpi: search: %zu / %zu queries\r", first + nb, nq);
    }
    if (g_rank == 0 && nq > B) fprintf(stderr, "\n");
    double max_search = 0, sum_cpu = 0, peak = peak_rss_mb(), max_peak = 0, max_peak_load = 0;
    MPI_Reduce(&t_search, &max_search, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    MPI_Reduce(&c_search, &sum_cpu, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Reduce(&peak, &max_peak, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    MPI_Reduce(&peak_load, &max_peak_load, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (g_rank == 0) {
        write_matrix(o->out, out_ids, nq, k, true, &e);
        if (!e.failed && o->scores) write_matrix(o->scores, out_scores, nq, k, false, &e);
    }
    if (any_failed(&e, "search")) return 1;
    if (g_rank == 0 && failed) {
        fprintf(stderr, "avq-mpi search: warning: partial results from %zu of %zu shards; "
                        "missing shards:", m.shards - failed, m.shards);
        for (size_t s = 0; s < m.shards; s++)
            if (missing[s]) fprintf(stderr, " %zu", s);
        fprintf(stderr, "\n");
    }
    say("search: %zu queries, k %zu, %llu of %llu leaves, R %llu, %zu shards on %d ranks, "
        "%zu batches of <= %zu: "
        "load %.2f s; search %.3f s (slowest rank), gather %.3f s, merge %.3f s (%.3f ms per "
        "batch); %.0f QPS wall, %.0f queries per CPU second (all ranks); peak RSS per rank %.0f "
        "MB (after load %.0f MB)", nq, k, lts, L, R, m.shards, g_size, batches, B, t_load, max_search,
        t_gather, t_merge, batches ? 1e3 * t_merge / (double)batches : 0.0,
        (double)nq / (max_search + t_gather + t_merge), sum_cpu > 0 ? (double)nq / sum_cpu : 0.0,
        max_peak, max_peak_load);
    for (size_t i = 0; i < nmine; i++) avq_index_free(sh[i].index);
    free(sh);
    free(missing);
    free(queries);
    free(send);
    free(batchq);
    free(cnts);
    free(disp);
    free(recv);
    free(out_ids);
    free(out_scores);
    free(shard_of_block);
    free(lists);
    free(counts);
    free(tk_ids);
    free(tk_scores);
    free(widths);
    free(leaf_live);
    free(m.shard);
    return 0;
}

/* ---- add / remove ------------------------------------------------------------ */

/* Save the changed shards, gather their descriptions, rewrite the manifest. */
static int save_changed(const options *o, manifest *m, loaded_shard *sh, size_t nmine,
                        const char *what, err_t *e) {
    part_info *info = calloc(nmine ? nmine : 1, sizeof *info);
    size_t *which = calloc(nmine ? nmine : 1, sizeof *which);
    for (size_t i = 0; i < nmine && !e->failed; i++) {
        which[i] = sh[i].shard;
        save_shard(o->index, sh[i].shard, sh[i].index, &info[i], e);
    }
    if (any_failed(e, what)) return 1;
    gather_parts(info, which, nmine, m);
    free(info);
    free(which);
    if (g_rank == 0) manifest_write(o->index, m, e);
    return any_failed(e, what);
}

/* The end of add and remove: only rank 0 keeps the manifest's shard table
 * (it alone rewrites the manifest), the changed shards are saved, and the
 * ranks' counts are summed into *total at rank 0.  The shards are freed
 * once saved; the caller frees m->shard. */
static int finish_change(const options *o, manifest *m, loaded_shard *sh, size_t nmine,
                         const char *what, size_t count, unsigned long long *total, err_t *e) {
    if (g_rank != 0) {
        free(m->shard);
        m->shard = NULL;
    }
    if (save_changed(o, m, sh, nmine, what, e)) return 1;
    unsigned long long mine = count;
    MPI_Reduce(&mine, total, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    for (size_t i = 0; i < nmine; i++) avq_index_free(sh[i].index);
    free(sh);
    return 0;
}

static int cmd_add(const options *o) {
    err_t e = {{0}, 0};
    if (!o->index || !o->base) fail(&e, "add needs --index and --base (see --help)");
    if (any_failed(&e, "add")) return 1;
    manifest m;
    manifest_read(o->index, &m, &e);
    input_file in;
    if (!e.failed && input_open(&in, o->base, false, &e) == 0 && in.cols != m.dim)
        fail(&e, "%s: dimension %zu, the index has %zu", o->base, in.cols, m.dim);
    if (any_failed(&e, "add")) return 1;
    size_t n = in.rows, d = m.dim;
    size_t first = (size_t)((unsigned long long)n * (unsigned)g_rank / (unsigned)g_size);
    size_t last = (size_t)((unsigned long long)n * (unsigned)(g_rank + 1) / (unsigned)g_size);
    size_t mine = last - first;
    float *rows = malloc((mine ? mine : 1) * d * sizeof *rows);
    int64_t *ids = malloc((mine ? mine : 1) * sizeof *ids);
    if (!rows || !ids) fail(&e, "out of memory");
    else input_rows_float(&in, first, mine, rows, &e);
    input_close(&in);
    int64_t next = m.next_id;
    if (!e.failed && o->ids) {
        int64_t *all = NULL;
        size_t nids = 0;
        if (read_ids(o->ids, &all, &nids, &e) == 0) {
            if (nids != n) fail(&e, "%s: %zu ids for %zu rows", o->ids, nids, n);
            else memcpy(ids, all + first, mine * sizeof *ids);
            for (size_t i = 0; i < nids && !e.failed; i++) {
                if (all[i] == AVQ_NO_ID) fail(&e, "%s: id -1 is reserved (row %zu)", o->ids, i);
                if (all[i] >= next) next = all[i] + 1;
            }
        }
        free(all);
    } else {
        for (size_t i = 0; i < mine && ids; i++) ids[i] = m.next_id + (int64_t)(first + i);
        next = m.next_id + (int64_t)n;
    }
    if (any_failed(&e, "add")) return 1;
    loaded_shard *sh = NULL;
    size_t nmine = load_mine(o->index, &m, AVQ_LOAD_COPY, false, &sh);
    if (shard_failures(sh, nmine, "add", true, NULL, m.shards)) {
        say("add: nothing changed");
        return 1;
    }
    shard_rows *buf = calloc(nmine ? nmine : 1, sizeof *buf);
    exchange_rows(rows, ids, mine, d, m.shards, buf, &e);
    free(rows);
    free(ids);
    if (any_failed(&e, "add")) return 1;
    /* every shard checks its additions first: all shards or none change */
    size_t added = 0;
    for (size_t i = 0; i < nmine && !e.failed; i++) {
        if (shard_rows_sort(&buf[i], d)) fail(&e, "out of memory");
        for (size_t j = 0; j < buf[i].n && !e.failed; j++)
            if (avq_index_contains(sh[i].index, buf[i].ids[j]))
                fail(&e, "id %" PRId64 " is already in shard %zu: nothing added", buf[i].ids[j],
                     sh[i].shard);
            else if (j && buf[i].ids[j] == buf[i].ids[j - 1])
                fail(&e, "id %" PRId64 " appears twice: nothing added", buf[i].ids[j]);
    }
    if (any_failed(&e, "add")) return 1;
    for (size_t i = 0; i < nmine && !e.failed; i++) {
        if (avq_index_add(sh[i].index, buf[i].rows, buf[i].n, buf[i].ids, o->threads, NULL) !=
            AVQ_OK)
            fail(&e, "shard %zu: %s", sh[i].shard, avq_last_error());
        added += buf[i].n;
        free(buf[i].rows);
        free(buf[i].ids);
    }
    free(buf);
    if (any_failed(&e, "add")) return 1;
    if (next > m.next_id) m.next_id = next;
    unsigned long long total = 0;
    if (finish_change(o, &m, sh, nmine, "add", added, &total, &e)) return 1;
    if (g_rank == 0) printf("added %llu vectors; next id %" PRId64 "\n", total, m.next_id);
    free(m.shard);
    return 0;
}

static int cmd_remove(const options *o) {
    err_t e = {{0}, 0};
    if (!o->index || !o->ids) fail(&e, "remove needs --index and --ids (see --help)");
    if (any_failed(&e, "remove")) return 1;
    manifest m;
    manifest_read(o->index, &m, &e);
    int64_t *ids = NULL;
    size_t n = 0;
    if (!e.failed) read_ids(o->ids, &ids, &n, &e);
    if (any_failed(&e, "remove")) return 1;
    loaded_shard *sh = NULL;
    size_t nmine = load_mine(o->index, &m, AVQ_LOAD_COPY, false, &sh);
    if (shard_failures(sh, nmine, "remove", true, NULL, m.shards)) {
        say("remove: nothing changed");
        return 1;
    }
    int64_t *part = malloc((n ? n : 1) * sizeof *part);
    size_t removed = 0;
    for (size_t i = 0; i < nmine && !e.failed; i++) {
        size_t c = 0, r = 0;
        for (size_t j = 0; j < n; j++)
            if (avq_mpi_shard_of(ids[j], m.shards) == sh[i].shard) part[c++] = ids[j];
        if (avq_index_remove(sh[i].index, part, c, &r) != AVQ_OK)
            fail(&e, "shard %zu: %s", sh[i].shard, avq_last_error());
        removed += r;
    }
    free(part);
    free(ids);
    if (any_failed(&e, "remove")) return 1;
    unsigned long long total = 0;
    if (finish_change(o, &m, sh, nmine, "remove", removed, &total, &e)) return 1;
    if (g_rank == 0) printf("removed %llu of %zu ids\n", total, n);
    free(m.shard);
    return 0;
}

static int cmd_info(const options *o) {
    err_t e = {{0}, 0};
    if (!o->index) fail(&e, "info needs --index (see --help)");
    if (any_failed(&e, "info")) return 1;
    manifest m;
    manifest_read(o->index, &m, &e);
    if (!e.failed && o->verify && g_rank == 0) {
        char qpath[4200];
        snprintf(qpath, sizeof qpath, "%s/quantizer.avq", o->index);
        uint32_t crc;
        uint64_t size;
        if (file_crc(qpath, &crc, &size, &e) == 0 &&
            (crc != m.quantizer.crc || size != m.quantizer.size))
            fail(&e, "%s: size %" PRIu64 " / CRC32C %08x, the manifest says %" PRIu64 " / %08x",
                 qpath, size, crc, m.quantizer.size, m.quantizer.crc);
    }
    if (any_failed(&e, "info")) return 1;
    loaded_shard *sh = NULL;
    size_t nmine = load_mine(o->index, &m, AVQ_LOAD_MMAP, o->verify, &sh);
    size_t failed = shard_failures(sh, nmine, "info", true, NULL, m.shards);
    if (g_rank == 0) {
        uint64_t vectors = 0, bytes = 0;
        for (size_t s = 0; s < m.shards; s++) {
            vectors += m.shard[s].vectors;
            bytes += m.shard[s].size;
        }
        printf("sharded index %s: format %d, %zu shards, dim %zu, metric %s, hash "
               "splitmix64(id) mod %zu, next id %" PRId64 "\n", o->index, MANIFEST_VERSION,
               m.shards, m.dim, avq_metric_name(m.metric), m.shards, m.next_id);
        printf("quantizer: quantizer.avq, %" PRIu64 " bytes, CRC32C %08x, fingerprint %08x\n",
               m.quantizer.size, m.quantizer.crc, m.fingerprint);
        for (size_t s = 0; s < m.shards; s++)
            printf("shard %zu: shard-%04zu.avq, %" PRIu64 " vectors, %" PRIu64
                   " bytes, CRC32C %08x, rank %d\n", s, s, m.shard[s].vectors, m.shard[s].size,
                   m.shard[s].crc, owner_of(s));
        printf("total: %" PRIu64 " vectors, %" PRIu64 " bytes; %s\n", vectors, bytes,
               failed ? "SOME SHARDS FAILED THE CHECKS (above)" :
               o->verify ? "every shard checked (size, CRC32C, load, quantizer)"
                         : "every shard checked (size, load, quantizer)");
    }
    for (size_t i = 0; i < nmine; i++) avq_index_free(sh[i].index);
    free(sh);
    free(m.shard);
    return failed ? 1 : 0;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    crc_init();
    const char *cmd = argc > 1 ? argv[1] : "--help";
    static const struct {
        const char *name, *help;
        int (*fn)(const options *);
    } cmds[] = {{"build", NULL, cmd_build}, {"search", NULL, cmd_search}, {"add", NULL, cmd_add},
                {"remove", NULL, cmd_remove}, {"info", NULL, cmd_info}};
    const char *helps[] = {HELP_BUILD, HELP_SEARCH, HELP_ADD, HELP_REMOVE, HELP_INFO};
    int rc = 2;
    int which = -1;
    for (int i = 0; i < 5; i++)
        if (!strcmp(cmd, cmds[i].name)) which = i;
    if (which < 0) {
        if (g_rank == 0) {
            FILE *to = strcmp(cmd, "--help") && strcmp(cmd, "-h") ? stderr : stdout;
            if (to == stderr) fprintf(stderr, "avq-mpi: unknown command '%s'\n", cmd);
            fprintf(to, "usage: mpirun -np N avq-mpi build|search|add|remove|info [options]\n"
                        "       avq-mpi COMMAND --help\n(avq %s)\n", avq_version());
            rc = to == stdout ? 0 : 2;
        }
        MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
        MPI_Finalize();
        return rc;
    }
    options o;
    err_t e = {{0}, 0};
    parse_options(argc, argv, &o, &e);
    if (o.help) {
        if (g_rank == 0) fputs(helps[which], stdout);
        MPI_Finalize();
        return 0;
    }
    if (any_failed(&e, cmd)) {
        MPI_Finalize();
        return 2;
    }
    rc = cmds[which].fn(&o);
    MPI_Finalize();
    return rc;
}
