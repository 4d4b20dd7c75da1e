/*
 * test_files.c -- files that behave like files (issue 16, items 2, 3, 6):
 *
 *   - loading a FIFO (index, quantizer, vectors) is refused at once, never
 *     blocks (the suite's timeout catches a hang);
 *   - saves (avq_index_save, avq_quantizer_save, the tools' writers) follow
 *     the path like cp: a new file gets 0666 & ~umask, a replaced file keeps
 *     its permission bits, a symlink is written through (its target replaced
 *     in the target's directory), a character device or FIFO is written
 *     through and stays what it is, a directory or dangling symlink is
 *     refused;
 *   - a save killed by SIGKILL mid-write leaves no temporary file (O_TMPFILE)
 *     and the previous file whole; a save that fails (file size limit)
 *     leaves nothing either, on the O_TMPFILE path and on the named-temporary
 *     fallback;
 *   - HDF5 outputs keep an existing dataset when asked (avq search);
 *   - the endianness mark: the host detection agrees with the compiler, a
 *     (simulated) big-endian host refuses to load and save with a clear
 *     message, and a file with a byte-swapped mark is refused as big-endian.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "avq.h"
#include "../tools/dataset.h" /* tests/ is not on the include path */
#include "../fuzz/avq_file.h"

/* test hooks of src/io.c and tools/dataset.c */
extern int avq_io_test_no_tmpfile, avq_io_test_big_endian, dataset_test_no_tmpfile;
int avq_io_host_little_endian(void);

#define N 3000
#define DIM 16

static char dir[64];
static float *base;

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/avq_files_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    base = malloc(sizeof *base * N * DIM);
    uint64_t s = 7;
    for (size_t i = 0; i < (size_t)N * DIM; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        base[i] = (float)((s >> 40) & 0xFFFF) / 65536.0f - 0.5f;
    }
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    free(base);
}

TestSuite(files, .init = setup, .fini = teardown, .timeout = 60);

static const char *at(const char *name) {
    static char buf[4][256];
    static int next;
    char *p = buf[next++ & 3];
    snprintf(p, 256, "%s/%s", dir, name);
    return p;
}

static avq_index *build(size_t n) {
    avq_build_params p;
    avq_build_params_init(&p, AVQ_METRIC_L2);
    p.num_leaves = 4;
    avq_index *x = NULL;
    cr_assert_eq(avq_index_build(base, n, DIM, &p, &x), AVQ_OK, "%s", avq_last_error());
    return x;
}

/* The names in the test directory, sorted, joined by spaces. */
static void listing(char *out, size_t cap) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    char names[32][64];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 32)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            snprintf(names[n++], 64, "%.63s", e->d_name);
    closedir(d);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(names[j], names[i]) < 0) {
                char t[64];
                memcpy(t, names[i], 64);
                memcpy(names[i], names[j], 64);
                memcpy(names[j], t, 64);
            }
    out[0] = 0;
    for (int i = 0; i < n; i++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? " " : "", names[i]);
}

static mode_t mode_of(const char *path) {
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0, "%s: %s", path, strerror(errno));
    return sb.st_mode & 07777;
}

static size_t loaded_size(const char *path) {
    avq_index *y = NULL;
    cr_assert_eq(avq_index_load(path, AVQ_LOAD_COPY, &y), AVQ_OK, "%s", avq_last_error());
    size_t n = avq_index_size(y);
    avq_index_free(y);
    return n;
}

/* ---- item 2: a FIFO is refused, not waited on ---------------------------- */

Test(files, loading_a_fifo_is_refused_without_blocking) {
    const char *fifo = at("f.avq");
    cr_assert_eq(mkfifo(fifo, 0644), 0);
    static const unsigned modes[] = {AVQ_LOAD_COPY, AVQ_LOAD_MMAP,
                                     AVQ_LOAD_MMAP | AVQ_LOAD_SKIP_CHECKSUMS};
    for (int m = 0; m < 3; m++) {
        avq_index *x = NULL;
        cr_assert_eq(avq_index_load(fifo, modes[m], &x), AVQ_ERR_IO);
        cr_assert_null(x);
        cr_assert(strstr(avq_last_error(), "FIFO") && strstr(avq_last_error(), "f.avq"), "%s",
                  avq_last_error());
    }
    avq_quantizer *q = NULL;
    cr_assert_eq(avq_quantizer_load(fifo, &q), AVQ_ERR_IO);
    cr_assert(strstr(avq_last_error(), "not a regular file"), "%s", avq_last_error());
    /* a character device too */
    cr_assert_eq(avq_index_load("/dev/null", AVQ_LOAD_COPY, &(avq_index *){NULL}), AVQ_ERR_IO);
    cr_assert(strstr(avq_last_error(), "character device"), "%s", avq_last_error());
}

Test(files, reading_vectors_from_a_fifo_is_refused_without_blocking) {
    const char *names[] = {"q.fvecs", "q.npy", "ids.txt"};
    for (int i = 0; i < 3; i++) {
        const char *fifo = at(names[i]);
        cr_assert_eq(mkfifo(fifo, 0644), 0);
        float_matrix m;
        id_list ids;
        int st = i < 2 ? dataset_read_float(fifo, &m) : dataset_read_ids(fifo, &ids);
        cr_assert_eq(st, AVQ_ERR_IO, "%s", names[i]);
        cr_assert(strstr(cli_last_error(), "FIFO"), "%s", cli_last_error());
    }
}

/* ---- item 3: modes ---------------------------------------------------------- */

static void expect_new_file_mode(int named) {
    avq_io_test_no_tmpfile = named;
    avq_index *x = build(500);
    static const mode_t masks[] = {022, 077, 0, 027};
    for (int i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof name, "m%d.avq", i);
        mode_t old = umask(masks[i]);
        cr_assert_eq(avq_index_save(x, at(name)), AVQ_OK, "%s", avq_last_error());
        umask(old);
        cr_assert_eq(mode_of(at(name)), 0666 & ~masks[i], "umask %03o: mode %03o", masks[i],
                     mode_of(at(name)));
    }
    /* a replaced file keeps its permission bits, whatever the umask */
    const char *keep = at("keep.avq");
    cr_assert_eq(avq_index_save(x, keep), AVQ_OK);
    cr_assert_eq(chmod(keep, 0640), 0);
    mode_t old = umask(077);
    cr_assert_eq(avq_index_save(x, keep), AVQ_OK, "%s", avq_last_error());
    umask(old);
    cr_assert_eq(mode_of(keep), 0640, "mode %03o", mode_of(keep));
    /* the quantizer file too */
    old = umask(022);
    cr_assert_eq(avq_quantizer_save(avq_index_quantizer(x), at("q.avq")), AVQ_OK, "%s",
                 avq_last_error());
    umask(old);
    cr_assert_eq(mode_of(at("q.avq")), 0644);
    avq_index_free(x);
    char names[512];
    listing(names, sizeof names);
    cr_assert_str_eq(names, "keep.avq m0.avq m1.avq m2.avq m3.avq q.avq");
}

Test(files, saved_index_mode_follows_umask) { expect_new_file_mode(0); }
Test(files, saved_index_mode_follows_umask_named_temporary) { expect_new_file_mode(1); }

/* ---- item 3: symlinks, devices, FIFOs, directories ---------------------- */

static void expect_symlink_written_through(int named) {
    avq_io_test_no_tmpfile = named;
    cr_assert_eq(mkdir(at("sub"), 0755), 0);
    avq_index *small = build(500), *big = build(900);
    cr_assert_eq(avq_index_save(small, at("sub/real.avq")), AVQ_OK);
    cr_assert_eq(symlink("sub/real.avq", at("link.avq")), 0); /* relative */
    cr_assert_eq(symlink("link.avq", at("link2.avq")), 0);    /* a chain */
    cr_assert_eq(avq_index_save(big, at("link2.avq")), AVQ_OK, "%s", avq_last_error());
    struct stat sb;
    cr_assert_eq(lstat(at("link2.avq"), &sb), 0);
    cr_assert(S_ISLNK(sb.st_mode), "the symlink was replaced by a file");
    cr_assert_eq(lstat(at("link.avq"), &sb), 0);
    cr_assert(S_ISLNK(sb.st_mode));
    cr_assert_eq(loaded_size(at("sub/real.avq")), 900);
    char names[512];
    listing(names, sizeof names);
    cr_assert_str_eq(names, "link.avq link2.avq sub");
    /* nothing but the target in its directory */
    DIR *d = opendir(at("sub"));
    int count = 0;
    for (struct dirent *e; (e = readdir(d));) count += e->d_name[0] != '.';
    closedir(d);
    cr_assert_eq(count, 1);
    /* a dangling symlink is refused and left alone */
    cr_assert_eq(symlink("missing/x.avq", at("dangling.avq")), 0);
    cr_assert_eq(avq_index_save(big, at("dangling.avq")), AVQ_ERR_IO);
    cr_assert(strstr(avq_last_error(), "symbolic link to a missing file"), "%s", avq_last_error());
    cr_assert_eq(lstat(at("dangling.avq"), &sb), 0);
    cr_assert(S_ISLNK(sb.st_mode));
    avq_index_free(small);
    avq_index_free(big);
}

Test(files, symlink_is_written_through) { expect_symlink_written_through(0); }
Test(files, symlink_is_written_through_named_temporary) { expect_symlink_written_through(1); }

Test(files, directory_is_refused) {
    avq_index *x = build(500);
    cr_assert_eq(mkdir(at("d.avq"), 0755), 0);
    cr_assert_eq(avq_index_save(x, at("d.avq")), AVQ_ERR_IO);
    cr_assert(strstr(avq_last_error(), "is a directory"), "%s", avq_last_error());
    avq_index_free(x);
}

Test(files, character_device_is_written_through_not_replaced) {
    avq_index *x = build(500);
    /* a private null device where we may make one (root); /dev/null else */
    const char *dev = at("null");
    bool own = mknod(dev, S_IFCHR | 0666, makedev(1, 3)) == 0;
    if (!own) dev = "/dev/null";
    cr_assert_eq(avq_index_save(x, dev), AVQ_OK, "%s", avq_last_error());
    struct stat sb;
    cr_assert_eq(stat(dev, &sb), 0);
    cr_assert(S_ISCHR(sb.st_mode), "%s is no longer a character device", dev);
    cr_assert_eq(major(sb.st_rdev), 1);
    cr_assert_eq(minor(sb.st_rdev), 3);
    cr_assert_eq(dataset_write_float(dev, base, 10, DIM), AVQ_ERR_INVALID); /* no extension */
    char npy[256];
    snprintf(npy, sizeof npy, "%s.npy", at("null"));
    if (own) cr_assert_eq(mknod(npy, S_IFCHR | 0666, makedev(1, 3)), 0);
    if (own) cr_assert_eq(dataset_write_float(npy, base, 10, DIM), AVQ_OK, "%s", cli_last_error());
    if (own) cr_assert_eq(stat(npy, &sb), 0);
    if (own) cr_assert(S_ISCHR(sb.st_mode));
    char names[512];
    listing(names, sizeof names);
    cr_assert_str_eq(names, own ? "null null.npy" : "");
    avq_index_free(x);
}

typedef struct {
    const char *path;
    uint8_t *data;
    size_t size;
} fifo_reader;

static void *read_fifo(void *arg) {
    fifo_reader *r = arg;
    int fd = open(r->path, O_RDONLY);
    size_t cap = 1 << 16;
    r->data = malloc(cap);
    for (ssize_t got; fd >= 0 && (got = read(fd, r->data + r->size, cap - r->size)) > 0;) {
        r->size += (size_t)got;
        if (r->size == cap) r->data = realloc(r->data, cap *= 2);
    }
    if (fd >= 0) close(fd);
    return NULL;
}

Test(files, fifo_is_written_through_not_replaced) {
    avq_index *x = build(500);
    const char *fifo = at("out.avq");
    cr_assert_eq(mkfifo(fifo, 0644), 0);
    fifo_reader r = {fifo, NULL, 0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, read_fifo, &r), 0);
    cr_assert_eq(avq_index_save(x, fifo), AVQ_OK, "%s", avq_last_error());
    pthread_join(t, NULL);
    struct stat sb;
    cr_assert_eq(lstat(fifo, &sb), 0);
    cr_assert(S_ISFIFO(sb.st_mode), "the FIFO was replaced");
    void *bytes;
    size_t size;
    cr_assert_eq(avq_index_save_bytes(x, &bytes, &size), AVQ_OK);
    cr_assert_eq(r.size, size);
    cr_assert_eq(memcmp(r.data, bytes, size), 0, "the FIFO got other bytes than a save");
    avq_free(bytes);
    free(r.data);
    char names[512];
    listing(names, sizeof names);
    cr_assert_str_eq(names, "out.avq");
    avq_index_free(x);
}

/* ---- item 3: a save that dies or fails leaves nothing ------------------- */

static volatile sig_atomic_t dummy;
static void kill_self(int sig) {
    (void)sig;
    dummy = 1;
    kill(getpid(), SIGKILL); /* dies in the middle of the save's writes */
}

/* In a child: cap the file size below the new index's so that a write in
 * the middle of the save hits the limit; the SIGXFSZ then kills the child
 * with SIGKILL (how = 0), or is ignored so that the save fails (how = 1). */
static void save_under_size_limit(const char *path, int how, int named, int dataset) {
    avq_index *big = build(N);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        avq_io_test_no_tmpfile = dataset_test_no_tmpfile = named;
        struct rlimit lim = {64 << 10, 64 << 10};
        signal(SIGXFSZ, how == 0 ? kill_self : SIG_IGN);
        setrlimit(RLIMIT_FSIZE, &lim);
        int st = dataset ? dataset_write_float(path, base, N, DIM) : avq_index_save(big, path);
        _exit(st == AVQ_OK ? 0 : st == AVQ_ERR_IO ? 3 : 4);
    }
    int status;
    cr_assert_eq(waitpid(child, &status, 0), child);
    if (how == 0)
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "status 0x%x", status);
    else
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 3, "status 0x%x", status);
    avq_index_free(big);
}

Test(files, killed_save_leaves_no_temporary_file) {
    avq_index *small = build(500);
    cr_assert_eq(avq_index_save(small, at("x.avq")), AVQ_OK);
    save_under_size_limit(at("x.avq"), 0, 0, 0);
    char names[512];
    listing(names, sizeof names);
    cr_assert_str_eq(names, "x.avq", "left behind: %s", names);
    cr_assert_eq(loaded_size(at("x.avq")), 500);
    avq_index_free(small);
}

Test(files, killed_dataset_write_leaves_no_temporary_file) {
    cr_assert_eq(dataset_write_float(at("v.fvecs"), base, 10, DIM), AVQ_OK);
    save_under_size_limit(at("v.fvecs"), 0, 0, 1);
    char names[512];
    listing(names, sizeof names);
    cr_assert_str_eq(names, "v.fvecs", "left behind: %s", names);
    float_matrix m;
    cr_assert_eq(dataset_read_float(at("v.fvecs"), &m), AVQ_OK);
    cr_assert_eq(m.rows, 10);
    float_matrix_free(&m);
}

static void expect_failed_save_leaves_nothing(int named, int dataset) {
    const char *path = at(dataset ? "v.fvecs" : "x.avq");
    avq_index *small = build(500);
    cr_assert_eq(dataset ? dataset_write_float(path, base, 10, DIM) : avq_index_save(small, path),
                 AVQ_OK);
    save_under_size_limit(path, 1, named, dataset);
    char names[512];
    listing(names, sizeof names);
    cr_assert_str_eq(names, dataset ? "v.fvecs" : "x.avq", "left behind: %s", names);
    if (!dataset) cr_assert_eq(loaded_size(path), 500);
    avq_index_free(small);
}

Test(files, failed_save_leaves_nothing) { expect_failed_save_leaves_nothing(0, 0); }
Test(files, failed_save_leaves_nothing_named_temporary) { expect_failed_save_leaves_nothing(1, 0); }
Test(files, failed_dataset_write_leaves_nothing) { expect_failed_save_leaves_nothing(0, 1); }
Test(files, failed_dataset_write_leaves_nothing_named_temporary) {
    expect_failed_save_leaves_nothing(1, 1);
}

/* ---- item 3: the tools' writers follow the same rules ------------------- */

Test(files, dataset_outputs_follow_symlinks_and_umask) {
    static const int named[] = {0, 1};
    for (int k = 0; k < 2; k++) {
        dataset_test_no_tmpfile = named[k];
        char real[32], link[32];
        snprintf(real, sizeof real, "real%d.npy", k);
        snprintf(link, sizeof link, "link%d.npy", k);
        mode_t old = umask(022);
        cr_assert_eq(dataset_write_float(at(real), base, 5, DIM), AVQ_OK, "%s", cli_last_error());
        umask(old);
        cr_assert_eq(mode_of(at(real)), 0644, "mode %03o", mode_of(at(real)));
        cr_assert_eq(symlink(real, at(link)), 0);
        cr_assert_eq(dataset_write_float(at(link), base, 7, DIM), AVQ_OK, "%s", cli_last_error());
        struct stat sb;
        cr_assert_eq(lstat(at(link), &sb), 0);
        cr_assert(S_ISLNK(sb.st_mode), "the symlink was replaced");
        float_matrix m;
        cr_assert_eq(dataset_read_float(at(real), &m), AVQ_OK);
        cr_assert_eq(m.rows, 7);
        float_matrix_free(&m);
    }
    char names[512];
    listing(names, sizeof names);
    cr_assert_str_eq(names, "link0.npy link1.npy real0.npy real1.npy");
}

Test(files, hdf5_output_keeps_an_existing_dataset_when_asked) {
    const char *h5 = at("d.hdf5");
    char train[256], other[256];
    snprintf(train, sizeof train, "%s:train", h5);
    snprintf(other, sizeof other, "%s:other", h5);
    const unsigned keep = DATASET_KEEP_EXISTING;
    cr_assert_eq(dataset_write_float_flags(train, base, 20, DIM, keep), AVQ_OK, "%s",
                 cli_last_error());
    cr_assert_eq(dataset_check_output(train, false, keep), AVQ_ERR_INVALID);
    cr_assert(strstr(cli_last_error(), "already has a dataset 'train'"), "%s", cli_last_error());
    cr_assert_eq(dataset_write_float_flags(train, base + DIM, 3, DIM, keep), AVQ_ERR_INVALID);
    cr_assert(strstr(cli_last_error(), "not replacing it"), "%s", cli_last_error());
    float_matrix m;
    cr_assert_eq(dataset_read_float(train, &m), AVQ_OK);
    cr_assert_eq(m.rows, 20, "the dataset was replaced");
    float_matrix_free(&m);
    /* a new dataset in the same file is fine; without the flag it replaces */
    cr_assert_eq(dataset_check_output(other, false, keep), AVQ_OK, "%s", cli_last_error());
    cr_assert_eq(dataset_write_float_flags(other, base, 2, DIM, keep), AVQ_OK, "%s",
                 cli_last_error());
    cr_assert_eq(dataset_check_output(train, false, 0), AVQ_OK);
    cr_assert_eq(dataset_write_float(train, base, 3, DIM), AVQ_OK);
    cr_assert_eq(dataset_read_float(train, &m), AVQ_OK);
    cr_assert_eq(m.rows, 3);
    float_matrix_free(&m);
    /* HDF5 into a FIFO (or a device) is refused */
    cr_assert_eq(mkfifo(at("p.hdf5"), 0644), 0);
    cr_assert_eq(dataset_write_float(at("p.hdf5"), base, 2, DIM), AVQ_ERR_IO);
    cr_assert(strstr(cli_last_error(), "must be a regular file"), "%s", cli_last_error());
    cr_assert(dataset_same_file(train, other));
    cr_assert(!dataset_same_file(train, at("p.hdf5")));
}

/* ---- item 6: byte order ------------------------------------------------------ */

Test(files, host_byte_order_detection) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    cr_assert_eq(avq_io_host_little_endian(), 1);
#elif defined(__BYTE_ORDER__)
    cr_assert_eq(avq_io_host_little_endian(), 0);
#endif
    avq_io_test_big_endian = 1;
    cr_assert_eq(avq_io_host_little_endian(), 0);
    avq_io_test_big_endian = 0;
}

Test(files, big_endian_host_refuses_files) {
    avq_index *x = build(500);
    cr_assert_eq(avq_index_save(x, at("x.avq")), AVQ_OK);
    void *bytes;
    size_t size;
    cr_assert_eq(avq_index_save_bytes(x, &bytes, &size), AVQ_OK);
    avq_io_test_big_endian = 1;
    avq_index *y = NULL;
    for (unsigned mode = 0; mode < 2; mode++) {
        cr_assert_eq(avq_index_load(at("x.avq"), mode, &y), AVQ_ERR_UNSUPPORTED);
        cr_assert(strstr(avq_last_error(), "big-endian") && strstr(avq_last_error(), "x.avq"),
                  "%s", avq_last_error());
    }
    cr_assert_eq(avq_index_load_bytes(bytes, size, &y), AVQ_ERR_UNSUPPORTED);
    avq_quantizer *q = NULL;
    cr_assert_eq(avq_quantizer_load(at("x.avq"), &q), AVQ_ERR_UNSUPPORTED);
    cr_assert_eq(avq_index_save(x, at("y.avq")), AVQ_ERR_UNSUPPORTED);
    cr_assert(strstr(avq_last_error(), "big-endian"), "%s", avq_last_error());
    void *b2;
    size_t s2;
    cr_assert_eq(avq_index_save_bytes(x, &b2, &s2), AVQ_ERR_UNSUPPORTED);
    avq_io_test_big_endian = 0;
    char names[512];
    listing(names, sizeof names);
    cr_assert_str_eq(names, "x.avq");
    avq_free(bytes);
    avq_index_free(x);
}

Test(files, byte_swapped_mark_is_refused_as_big_endian) {
    avq_index *x = build(500);
    void *bytes;
    size_t size;
    cr_assert_eq(avq_index_save_bytes(x, &bytes, &size), AVQ_OK);
    uint8_t *b = bytes;
    cr_assert(b[12] == 4 && b[13] == 3 && b[14] == 2 && b[15] == 1, "mark on disk");
    b[12] = 1, b[13] = 2, b[14] = 3, b[15] = 4;
    for (int repair = 0; repair < 2; repair++) {
        if (repair) avqf_fix(b, size, AVQF_FIX_HEADER_CRC);
        avq_index *y = NULL;
        cr_assert_eq(avq_index_load_bytes(bytes, size, &y), AVQ_ERR_FORMAT);
        cr_assert(strstr(avq_last_error(), "big-endian byte order"), "%s", avq_last_error());
        FILE *f = fopen(at("swapped.avq"), "wb");
        cr_assert_eq(fwrite(bytes, 1, size, f), size);
        fclose(f);
        for (unsigned mode = 0; mode < 2; mode++) {
            cr_assert_eq(avq_index_load(at("swapped.avq"), mode, &y), AVQ_ERR_FORMAT);
            cr_assert(strstr(avq_last_error(), "big-endian byte order"), "%s", avq_last_error());
        }
    }
    /* any other mark is still "bad", naming the bytes */
    b[12] = 9;
    avq_index *y = NULL;
    cr_assert_eq(avq_index_load_bytes(bytes, size, &y), AVQ_ERR_FORMAT);
    cr_assert(strstr(avq_last_error(), "bad endianness mark 09 02 03 04"), "%s", avq_last_error());
    avq_free(bytes);
    avq_index_free(x);
}
