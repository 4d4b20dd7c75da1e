/*
 * test_dataset.c -- the vector file readers and writers (tools/dataset.c).
 *
 * Two kinds of test: round trips through every format, and hand-made broken
 * files that must be rejected with the right status and a message naming
 * the problem.  Broken files are built byte by byte here rather than kept
 * as fixtures, so each test shows exactly which bytes are wrong.  Every test
 * works in its own mkdtemp() directory, removed afterwards (Criterion runs
 * each test in its own process, so the directory is per test).
 */
#include "avq.h"
#include "../tools/dataset.h" /* tests/ is not on the include path */

#include <criterion/criterion.h>
#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/avq_dataset_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir), "mkdtemp failed");
}

static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(tmpdir);
}

TestSuite(dataset, .init = make_tmpdir, .fini = remove_tmpdir);

/* A path inside the test's directory (static buffers, a few in rotation so
 * that two paths can be alive at once). */
static const char *tmp_path(const char *name) {
    static char bufs[4][512];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, 512, "%s/%s", tmpdir, name);
    return b;
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static size_t read_bytes(const char *path, unsigned char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static void fill_floats(float *x, size_t n, unsigned seed) {
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 40) / (double)(1u << 24)) * 4.0f - 2.0f;
    }
}

/* Expect failure with `status` and a message containing `needle`. */
static void expect_float_error(const char *path, int status, const char *needle) {
    float_matrix m = {7, 7, (float *)&m}; /* sentinel: must stay untouched */
    int st = dataset_read_float(path, &m);
    cr_assert_eq(st, status, "%s: status %d, expected %d (%s)", path, st, status,
                 avq_last_error());
    cr_assert_not_null(strstr(avq_last_error(), needle), "message '%s' lacks '%s'",
                       avq_last_error(), needle);
    cr_assert_eq(m.rows, 7);
    cr_assert_eq(m.data, (float *)&m);
}

static void expect_int_error(const char *path, int status, const char *needle) {
    int_matrix m = {7, 7, NULL};
    int st = dataset_read_int(path, &m);
    cr_assert_eq(st, status, "%s: status %d, expected %d (%s)", path, st, status,
                 avq_last_error());
    cr_assert_not_null(strstr(avq_last_error(), needle), "message '%s' lacks '%s'",
                       avq_last_error(), needle);
    cr_assert_eq(m.rows, 7);
}

static void put_le32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* A valid fvecs image of rows x dim into buf; returns its length. */
static size_t make_fvecs(unsigned char *buf, size_t rows, size_t dim, const float *x) {
    size_t off = 0;
    for (size_t r = 0; r < rows; r++) {
        put_le32(buf + off, (uint32_t)dim);
        memcpy(buf + off + 4, x + r * dim, dim * 4);
        off += 4 + dim * 4;
    }
    return off;
}

/* ---- round trips --------------------------------------------------------- */

static void round_trip_float(const char *name, size_t rows, size_t cols) {
    float *x = malloc(rows * cols * sizeof *x);
    fill_floats(x, rows * cols, (unsigned)(rows + cols));
    const char *path = tmp_path(name);
    cr_assert_eq(dataset_write_float(path, x, rows, cols), AVQ_OK, "%s", avq_last_error());
    float_matrix m;
    cr_assert_eq(dataset_read_float(path, &m), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(m.rows, rows);
    cr_assert_eq(m.cols, cols);
    cr_assert_eq(memcmp(m.data, x, rows * cols * sizeof *x), 0, "%s: data differs", name);
    float_matrix_free(&m);
    cr_assert_null(m.data);
    free(x);
}

static void round_trip_int(const char *name, size_t rows, size_t cols) {
    int32_t *x = malloc(rows * cols * sizeof *x);
    for (size_t i = 0; i < rows * cols; i++) x[i] = (int32_t)(i * 2654435761u);
    const char *path = tmp_path(name);
    cr_assert_eq(dataset_write_int(path, x, rows, cols), AVQ_OK, "%s", avq_last_error());
    int_matrix m;
    cr_assert_eq(dataset_read_int(path, &m), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(m.rows, rows);
    cr_assert_eq(m.cols, cols);
    cr_assert_eq(memcmp(m.data, x, rows * cols * sizeof *x), 0, "%s: data differs", name);
    int_matrix_free(&m);
    free(x);
}

Test(dataset, fvecs_round_trip) {
    round_trip_float("a.fvecs", 37, 5);
    round_trip_float("one.fvecs", 1, 1);
    /* rows larger than the 4 MiB read buffer's comfortable share */
    round_trip_float("wide.fvecs", 3, 300000);
}

Test(dataset, ivecs_round_trip) {
    round_trip_int("a.ivecs", 11, 100);
    round_trip_int("b.IVECS", 1, 3); /* extensions are case-insensitive */
}

Test(dataset, npy_round_trip) {
    round_trip_float("a.npy", 20, 7);
    round_trip_int("b.npy", 20, 7);
    /* numpy aligns the data to 64 bytes; so must we */
    unsigned char buf[16];
    read_bytes(tmp_path("a.npy"), buf, sizeof buf);
    size_t header = (size_t)buf[8] | (size_t)buf[9] << 8;
    cr_assert_eq((10 + header) % 64, 0);
}

Test(dataset, hdf5_round_trip_and_defaults) {
    round_trip_float("a.hdf5:train", 50, 8);
    round_trip_int("a.hdf5:neighbors", 5, 10);
    round_trip_float("a.hdf5:test", 5, 8);
    /* all three live side by side, and bare names use the defaults */
    float_matrix m;
    cr_assert_eq(dataset_read_float(tmp_path("a.hdf5"), &m), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(m.rows, 50);
    float_matrix_free(&m);
    int_matrix n;
    cr_assert_eq(dataset_read_int(tmp_path("a.hdf5"), &n), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(n.cols, 10);
    int_matrix_free(&n);
    round_trip_float("b.h5", 3, 3);
}

Test(dataset, hdf5_replaces_existing_dataset) {
    round_trip_float("r.hdf5:train", 10, 4);
    round_trip_float("r.hdf5:train", 6, 9); /* new shape, same name */
    float_matrix m;
    cr_assert_eq(dataset_read_float(tmp_path("r.hdf5:train"), &m), AVQ_OK);
    cr_assert_eq(m.rows, 6);
    cr_assert_eq(m.cols, 9);
    float_matrix_free(&m);
}

Test(dataset, bvecs_read) {
    unsigned char buf[2 * (4 + 3)];
    for (int r = 0; r < 2; r++) {
        put_le32(buf + r * 7, 3);
        for (int j = 0; j < 3; j++) buf[r * 7 + 4 + j] = (unsigned char)(250 + r * 3 + j - 5);
    }
    write_bytes(tmp_path("b.bvecs"), buf, sizeof buf);
    float_matrix m;
    cr_assert_eq(dataset_read_float(tmp_path("b.bvecs"), &m), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(m.rows, 2);
    cr_assert_eq(m.cols, 3);
    cr_assert_float_eq(m.data[0], 245.0f, 0);
    cr_assert_float_eq(m.data[5], 250.0f, 0);
    float_matrix_free(&m);
}

/* Build an .npy file by hand: version, header dict, raw data. */
static void write_npy(const char *path, int major, const char *dict, const void *data,
                      size_t n) {
    unsigned char buf[4096];
    size_t prefix = major == 1 ? 10 : 12, len = strlen(dict);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    if (major == 1) {
        buf[8] = (unsigned char)len;
        buf[9] = (unsigned char)(len >> 8);
    } else {
        put_le32(buf + 8, (uint32_t)len);
    }
    memcpy(buf + prefix, dict, len);
    memcpy(buf + prefix + len, data, n);
    write_bytes(path, buf, prefix + len + n);
}

Test(dataset, npy_dtypes_and_versions) {
    double d[6] = {1.5, -2, 3, 4, 5, 6e30};
    write_npy(tmp_path("d.npy"), 2, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }\n",
              d, sizeof d);
    float_matrix m;
    cr_assert_eq(dataset_read_float(tmp_path("d.npy"), &m), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(m.rows, 2);
    cr_assert_float_eq(m.data[0], 1.5f, 0);
    cr_assert_float_eq(m.data[5], 6e30f, 1e24);
    float_matrix_free(&m);

    int64_t l[4] = {0, 1, -5, 2147483647};
    write_npy(tmp_path("l.npy"), 3, "{\"descr\": \"<i8\", \"fortran_order\": False, \"shape\": (4,)}",
              l, sizeof l);
    int_matrix n;
    cr_assert_eq(dataset_read_int(tmp_path("l.npy"), &n), AVQ_OK, "%s", avq_last_error());
    cr_assert_eq(n.rows, 1); /* a 1-D array is one row */
    cr_assert_eq(n.cols, 4);
    cr_assert_eq(n.data[2], -5);
    cr_assert_eq(n.data[3], 2147483647);
    int_matrix_free(&n);

    unsigned char u[6] = {0, 1, 2, 253, 254, 255};
    write_npy(tmp_path("u.npy"), 1, "{'shape': (3, 2), 'fortran_order': False, 'descr': '|u1'}",
              u, sizeof u);
    cr_assert_eq(dataset_read_float(tmp_path("u.npy"), &m), AVQ_OK, "%s", avq_last_error());
    cr_assert_float_eq(m.data[5], 255.0f, 0);
    float_matrix_free(&m);

    int32_t i4[2] = {-7, 9};
    write_npy(tmp_path("i.npy"), 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 1), }",
              i4, sizeof i4);
    cr_assert_eq(dataset_read_float(tmp_path("i.npy"), &m), AVQ_OK, "%s", avq_last_error());
    cr_assert_float_eq(m.data[0], -7.0f, 0);
    float_matrix_free(&m);

    /* big-endian float32 is converted */
    unsigned char be[4] = {0x3f, 0xc0, 0, 0}; /* 1.5f */
    write_npy(tmp_path("be.npy"), 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (1, 1), }",
              be, sizeof be);
    cr_assert_eq(dataset_read_float(tmp_path("be.npy"), &m), AVQ_OK, "%s", avq_last_error());
    cr_assert_float_eq(m.data[0], 1.5f, 0);
    float_matrix_free(&m);
}

/* ---- broken files ---------------------------------------------------------- */

Test(dataset, missing_file) {
    expect_float_error(tmp_path("nope.fvecs"), AVQ_ERR_IO, "No such file");
    expect_float_error(tmp_path("nope.npy"), AVQ_ERR_IO, "nope.npy");
    expect_float_error(tmp_path("nope.hdf5"), AVQ_ERR_IO, "No such file");
    expect_int_error(tmp_path("nope.ivecs"), AVQ_ERR_IO, "cannot open");
    expect_float_error(tmpdir, AVQ_ERR_INVALID, "unknown file type"); /* no extension */
}

Test(dataset, unknown_or_wrong_format) {
    expect_float_error(tmp_path("x.txt"), AVQ_ERR_INVALID, "unknown file type");
    expect_float_error(tmp_path("x.ivecs"), AVQ_ERR_INVALID, "integer ids");
    expect_int_error(tmp_path("x.fvecs"), AVQ_ERR_INVALID, "integer ids");
    expect_float_error(tmp_path("x.hdf5:"), AVQ_ERR_INVALID, "empty HDF5 dataset name");
}

Test(dataset, empty_file) {
    write_bytes(tmp_path("e.fvecs"), "", 0);
    expect_float_error(tmp_path("e.fvecs"), AVQ_ERR_FORMAT, "empty file");
    write_bytes(tmp_path("e.npy"), "", 0);
    expect_float_error(tmp_path("e.npy"), AVQ_ERR_FORMAT, "empty file");
    write_bytes(tmp_path("e.hdf5"), "", 0);
    expect_float_error(tmp_path("e.hdf5"), AVQ_ERR_FORMAT, "empty file");
}

Test(dataset, fvecs_truncated_at_many_offsets) {
    enum { ROWS = 4, DIM = 5 };
    float x[ROWS * DIM];
    fill_floats(x, ROWS * DIM, 3);
    unsigned char buf[ROWS * (4 + 4 * DIM)];
    size_t len = make_fvecs(buf, ROWS, DIM, x), row = 4 + 4 * DIM;
    size_t cuts[] = {1, 3, 4, 5, row - 1, row + 1, row + 3, row + 4, 2 * row + 7, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_bytes(tmp_path("t.fvecs"), buf, cuts[i]);
        expect_float_error(tmp_path("t.fvecs"), AVQ_ERR_FORMAT, "truncated");
    }
    /* the message says which row, where, and how big the file is */
    write_bytes(tmp_path("t.fvecs"), buf, 2 * row + 7);
    expect_float_error(tmp_path("t.fvecs"), AVQ_ERR_FORMAT, "row 2 needs 24 bytes at offset 48");
}

Test(dataset, ivecs_and_bvecs_truncated) {
    unsigned char buf[64];
    put_le32(buf, 3);
    put_le32(buf + 16, 3);
    write_bytes(tmp_path("t.ivecs"), buf, 16 + 9);
    expect_int_error(tmp_path("t.ivecs"), AVQ_ERR_FORMAT, "truncated");
    put_le32(buf + 7, 3);
    write_bytes(tmp_path("t.bvecs"), buf, 7 + 5);
    expect_float_error(tmp_path("t.bvecs"), AVQ_ERR_FORMAT, "row 1");
}

Test(dataset, fvecs_ragged) {
    float x[12] = {0};
    unsigned char buf[256];
    size_t len = make_fvecs(buf, 3, 4, x);
    put_le32(buf + 2 * 20, 3); /* row 2 claims dimension 3 */
    write_bytes(tmp_path("r.fvecs"), buf, len);
    expect_float_error(tmp_path("r.fvecs"), AVQ_ERR_FORMAT, "row 2 has dimension 3, expected 4");
    /* ragged rows whose sizes happen to add up to a multiple of a row */
    unsigned char buf2[256];
    size_t off = 0;
    uint32_t dims[3] = {2, 1, 3};
    for (int r = 0; r < 3; r++) {
        put_le32(buf2 + off, dims[r]);
        memset(buf2 + off + 4, 0, dims[r] * 4);
        off += 4 + dims[r] * 4;
    }
    write_bytes(tmp_path("r2.fvecs"), buf2, off);
    expect_float_error(tmp_path("r2.fvecs"), AVQ_ERR_FORMAT, "row 1 has dimension 1");
}

Test(dataset, fvecs_absurd_dimension) {
    unsigned char buf[8] = {0};
    put_le32(buf, 0);
    write_bytes(tmp_path("z.fvecs"), buf, 8);
    expect_float_error(tmp_path("z.fvecs"), AVQ_ERR_FORMAT, "dimension 0");
    put_le32(buf, (uint32_t)-5);
    write_bytes(tmp_path("n.fvecs"), buf, 8);
    expect_float_error(tmp_path("n.fvecs"), AVQ_ERR_FORMAT, "dimension -5");
    put_le32(buf, 2000000000u);
    write_bytes(tmp_path("h.fvecs"), buf, 8);
    expect_float_error(tmp_path("h.fvecs"), AVQ_ERR_FORMAT, "dimension 2000000000");
}

Test(dataset, fvecs_nan_and_inf) {
    float x[12];
    fill_floats(x, 12, 1);
    x[1 * 4 + 2] = NAN;
    unsigned char buf[256];
    size_t len = make_fvecs(buf, 3, 4, x);
    write_bytes(tmp_path("nan.fvecs"), buf, len);
    expect_float_error(tmp_path("nan.fvecs"), AVQ_ERR_FORMAT, "row 1 column 2 is NaN");
    x[1 * 4 + 2] = 0;
    x[2 * 4 + 0] = -INFINITY;
    len = make_fvecs(buf, 3, 4, x);
    write_bytes(tmp_path("inf.fvecs"), buf, len);
    expect_float_error(tmp_path("inf.fvecs"), AVQ_ERR_FORMAT, "row 2 column 0 is infinite");
}

Test(dataset, npy_bad_magic_version_header) {
    float f[2] = {1, 2};
    write_bytes(tmp_path("m.npy"), "\x93NUMPX\x01\x00\x10\x00{}", 12);
    expect_float_error(tmp_path("m.npy"), AVQ_ERR_FORMAT, "bad magic");
    write_bytes(tmp_path("s.npy"), "\x93NUM", 4);
    expect_float_error(tmp_path("s.npy"), AVQ_ERR_FORMAT, "bad magic");
    write_npy(tmp_path("v.npy"), 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }",
              f, sizeof f);
    unsigned char buf[256];
    size_t n = read_bytes(tmp_path("v.npy"), buf, sizeof buf);
    buf[6] = 9;
    write_bytes(tmp_path("v9.npy"), buf, n);
    expect_float_error(tmp_path("v9.npy"), AVQ_ERR_FORMAT, "version 9.0");
    /* header length pointing past the end of the file */
    buf[6] = 1;
    buf[9] = 0x7f;
    write_bytes(tmp_path("hl.npy"), buf, n);
    expect_float_error(tmp_path("hl.npy"), AVQ_ERR_FORMAT, "truncated");
    /* garbage in the dict, missing keys, unknown keys */
    const char *bad[] = {
        "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1, 2), }",
        "{'descr': '<f4', 'shape': (1, 2), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), 'x': 1}",
        "['descr', '<f4']",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, two), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), } trailing",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_npy(tmp_path("g.npy"), 1, bad[i], f, sizeof f);
        expect_float_error(tmp_path("g.npy"), AVQ_ERR_FORMAT, ".npy header");
    }
}

Test(dataset, npy_fortran_order_and_dtypes) {
    float f[4] = {1, 2, 3, 4};
    write_npy(tmp_path("f.npy"), 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
              f, sizeof f);
    expect_float_error(tmp_path("f.npy"), AVQ_ERR_FORMAT, "fortran_order");
    /* (float16 '<f2' is read since 0.3: tests/test_cli_ready.py) */
    const char *dtypes[] = {"<f16", "<c8", "<U1", "|b1", ">i2", "<u4", "O"};
    char dict[128];
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++) {
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (1, 1), }",
                 dtypes[i]);
        write_npy(tmp_path("t.npy"), 1, dict, f, 16);
        expect_float_error(tmp_path("t.npy"), AVQ_ERR_FORMAT, "unsupported dtype");
    }
    write_npy(tmp_path("rec.npy"), 1,
              "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", f, 4);
    expect_float_error(tmp_path("rec.npy"), AVQ_ERR_FORMAT, "structured");
    /* floats where ids are expected */
    write_npy(tmp_path("fl.npy"), 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }",
              f, sizeof f);
    expect_int_error(tmp_path("fl.npy"), AVQ_ERR_FORMAT, "expected integers");
    int64_t big[1] = {(int64_t)1 << 40};
    write_npy(tmp_path("big.npy"), 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 1), }",
              big, sizeof big);
    expect_int_error(tmp_path("big.npy"), AVQ_ERR_FORMAT, "does not fit in int32");
}

Test(dataset, npy_shape_mismatch) {
    float f[6] = {1, 2, 3, 4, 5, 6};
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    write_npy(tmp_path("short.npy"), 1, dict, f, 5 * 4);
    expect_float_error(tmp_path("short.npy"), AVQ_ERR_FORMAT, "truncated");
    write_npy(tmp_path("short2.npy"), 1, dict, f, 0);
    expect_float_error(tmp_path("short2.npy"), AVQ_ERR_FORMAT, "truncated");
    float g[7] = {0};
    write_npy(tmp_path("long.npy"), 1, dict, g, sizeof g);
    expect_float_error(tmp_path("long.npy"), AVQ_ERR_FORMAT, "4 extra");
    write_npy(tmp_path("huge.npy"), 1,
              "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 3), }", f,
              sizeof f);
    expect_float_error(tmp_path("huge.npy"), AVQ_ERR_FORMAT, "truncated");
    write_npy(tmp_path("3d.npy"), 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }",
              f, sizeof f);
    expect_float_error(tmp_path("3d.npy"), AVQ_ERR_FORMAT, "3-dimensional");
    write_npy(tmp_path("0d.npy"), 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", f,
              4);
    expect_float_error(tmp_path("0d.npy"), AVQ_ERR_FORMAT, "scalar");
    write_npy(tmp_path("empty.npy"), 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }",
              f, 0);
    expect_float_error(tmp_path("empty.npy"), AVQ_ERR_FORMAT, "empty array");
    f[4] = NAN;
    write_npy(tmp_path("nan.npy"), 1, dict, f, sizeof f);
    expect_float_error(tmp_path("nan.npy"), AVQ_ERR_FORMAT, "row 1 column 1 is NaN");
}

Test(dataset, hdf5_errors) {
    /* not an HDF5 file at all */
    write_bytes(tmp_path("fake.hdf5"), "this is not hdf5 at all", 23);
    expect_float_error(tmp_path("fake.hdf5"), AVQ_ERR_FORMAT, "not an HDF5 file");
    /* ... and the writer refuses to clobber it */
    float f[4] = {1, 2, 3, 4};
    cr_assert_eq(dataset_write_float(tmp_path("fake.hdf5:train"), f, 2, 2), AVQ_ERR_IO);
    cr_assert_not_null(strstr(avq_last_error(), "not overwriting"), "%s", avq_last_error());
    unsigned char buf[64];
    cr_assert_eq(read_bytes(tmp_path("fake.hdf5"), buf, sizeof buf), 23);

    /* missing dataset: the message lists what is there */
    cr_assert_eq(dataset_write_float(tmp_path("h.hdf5:train"), f, 2, 2), AVQ_OK);
    expect_float_error(tmp_path("h.hdf5:test"), AVQ_ERR_FORMAT, "no dataset 'test' (the file has: train)");
    expect_int_error(tmp_path("h.hdf5"), AVQ_ERR_FORMAT, "no dataset 'neighbors'");
    expect_int_error(tmp_path("h.hdf5:train"), AVQ_ERR_FORMAT, "expected integers");

    /* NaN inside */
    f[3] = NAN;
    cr_assert_eq(dataset_write_float(tmp_path("h.hdf5:nan"), f, 2, 2), AVQ_OK);
    expect_float_error(tmp_path("h.hdf5:nan"), AVQ_ERR_FORMAT, "row 1 column 1 is NaN");

    /* a 3-D dataset and a group, made with libhdf5 directly */
    hid_t fid = H5Fopen(tmp_path("h.hdf5"), H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(fid, 0);
    hsize_t dims[3] = {2, 2, 1};
    hid_t space = H5Screate_simple(3, dims, NULL);
    hid_t did = H5Dcreate2(fid, "cube", H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT,
                           H5P_DEFAULT);
    float zeros[4] = {0};
    H5Dwrite(did, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros);
    H5Dclose(did);
    H5Sclose(space);
    hid_t gid = H5Gcreate2(fid, "grp", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(gid);
    H5Fclose(fid);
    expect_float_error(tmp_path("h.hdf5:cube"), AVQ_ERR_FORMAT, "3 dimensions");
    expect_float_error(tmp_path("h.hdf5:grp"), AVQ_ERR_FORMAT, "cannot open the dataset");
}

Test(dataset, hdf5_truncated_file) {
    float x[400];
    fill_floats(x, 400, 9);
    cr_assert_eq(dataset_write_float(tmp_path("full.hdf5:train"), x, 100, 4), AVQ_OK);
    static unsigned char buf[1 << 16];
    size_t n = read_bytes(tmp_path("full.hdf5"), buf, sizeof buf);
    cr_assert_lt(n, sizeof buf);
    write_bytes(tmp_path("cut.hdf5"), buf, n - 700);
    float_matrix m;
    int st = dataset_read_float(tmp_path("cut.hdf5:train"), &m);
    cr_assert_eq(st, AVQ_ERR_FORMAT, "status %d: %s", st, avq_last_error());
    cr_assert_not_null(strstr(avq_last_error(), "cut.hdf5"), "%s", avq_last_error());
}

Test(dataset, write_argument_errors) {
    float f[4] = {0};
    int32_t i[4] = {0};
    cr_assert_eq(dataset_write_float(tmp_path("w.fvecs"), f, 0, 4), AVQ_ERR_INVALID);
    cr_assert_eq(dataset_write_float(tmp_path("w.fvecs"), f, 4, 0), AVQ_ERR_INVALID);
    cr_assert_eq(dataset_write_float(tmp_path("w.fvecs"), NULL, 1, 1), AVQ_ERR_INVALID);
    cr_assert_eq(dataset_write_float(tmp_path("w.ivecs"), f, 1, 1), AVQ_ERR_INVALID);
    cr_assert_eq(dataset_write_int(tmp_path("w.fvecs"), i, 1, 1), AVQ_ERR_INVALID);
    cr_assert_eq(dataset_write_float(tmp_path("w.csv"), f, 1, 1), AVQ_ERR_INVALID);
    cr_assert_eq(dataset_write_float(tmp_path("no/such/dir.fvecs"), f, 1, 1), AVQ_ERR_IO);
    cr_assert_not_null(strstr(avq_last_error(), "cannot create"), "%s", avq_last_error());
    cr_assert_eq(dataset_write_float(tmp_path("no/such/dir.hdf5:x"), f, 1, 1), AVQ_ERR_IO);
    cr_assert_eq(dataset_write_float(tmp_path("w.hdf5:a/b"), f, 1, 1), AVQ_ERR_INVALID);
    /* nothing was left behind by the failed writes, temporary files included */
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) files++;
    closedir(d);
    cr_assert_eq(files, 0);
}

Test(dataset, write_replaces_atomically) {
    float a[6] = {1, 2, 3, 4, 5, 6}, b[2] = {7, 8};
    cr_assert_eq(dataset_write_float(tmp_path("x.fvecs"), a, 2, 3), AVQ_OK);
    cr_assert_eq(dataset_write_float(tmp_path("x.fvecs"), b, 1, 2), AVQ_OK);
    float_matrix m;
    cr_assert_eq(dataset_read_float(tmp_path("x.fvecs"), &m), AVQ_OK);
    cr_assert_eq(m.rows, 1);
    cr_assert_eq(m.cols, 2);
    cr_assert_float_eq(m.data[1], 8.0f, 0);
    float_matrix_free(&m);
}
