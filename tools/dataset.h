/*
 * dataset.h -- reading and writing vector files for the CLI, tests and
 * benchmarks: TEXMEX .fvecs/.ivecs/.bvecs, NumPy .npy, ann-benchmarks HDF5.
 *
 * This lives beside the CLI rather than in libavq on purpose: the library
 * takes plain arrays and should not drag libhdf5 into every program that
 * embeds it.
 *
 * Paths.  The format is chosen by the file name's extension: .fvecs, .ivecs,
 * .bvecs, .npy, .hdf5/.h5.  An HDF5 path names a dataset after a colon,
 * "glove.hdf5:train"; without one the reader takes the conventional name for
 * what is asked (see each function).
 *
 * Errors follow the library's convention: a negative avq_status, and a
 * message naming the file and the problem ("q.fvecs: truncated: row 7 needs
 * 404 bytes at offset 2828, file has 3000") in cli_last_error().  No reader
 * ever crashes or over-reads on a malformed file; every size is checked
 * against the file size before memory is allocated.
 *
 * This code uses only the public header include/avq.h, so it cannot write
 * the library's own error buffer; it keeps its messages in tools/ (see
 * cli_util.h).  For the code written when it could (tests, benchmarks, the
 * CLI), which reads every message with avq_last_error(), this header maps
 * that name to cli_last_error(): the most recent message of either kind, a
 * library failure or a dataset one.  avq.h is included first, so its own
 * declaration is never renamed.
 */
#ifndef AVQ_DATASET_H
#define AVQ_DATASET_H

#include "avq.h"
#include "cli_util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define avq_last_error cli_last_error

/* A dense row-major matrix owned by the struct (free with matrix_free). */
typedef struct {
    size_t rows, cols;
    float *data;
} float_matrix;

typedef struct {
    size_t rows, cols;
    int32_t *data;
} int_matrix;

void float_matrix_free(float_matrix *m);
void int_matrix_free(int_matrix *m);

/* Read float vectors: .fvecs, .bvecs (uint8 converted to float), .npy
 * (float32, or float64/int32/uint8 converted; C order, 1-D or 2-D),
 * HDF5 (default dataset "train").  Rejects ragged files (rows of different
 * dimension), truncated files, zero rows/columns, and NaN/infinite values
 * (the message gives row and column). */
int dataset_read_float(const char *path, float_matrix *out);

/* Read integer vectors: .ivecs, .npy (int32 or int64 in range), HDF5
 * (default dataset "neighbors"). */
int dataset_read_int(const char *path, int_matrix *out);

/* The metric an ann-benchmarks HDF5 file declares: its root attribute
 * `distance` ("angular", "euclidean", ...) into out (cap bytes).  Returns
 * 1 if the file has one, 0 if it has none or is not HDF5 (out ""), or a
 * negative status (a missing or unreadable file, an attribute that is not
 * a string). */
int dataset_distance(const char *path, char *out, size_t cap);

/* Outputs.  Every writer follows the path like cp follows a destination:
 * a missing file is created with mode 0666 & ~umask; an existing regular
 * file, or the target of a symbolic link to one, is replaced atomically
 * (a temporary file in the target's directory renamed over it: unnamed,
 * O_TMPFILE, until complete, so a killed process leaves nothing behind),
 * keeping its permission bits; a character device or a FIFO (/dev/null, a
 * pipe) is written through in place; a directory, block device, socket or
 * dangling symlink is refused.  HDF5 outputs are written in place into a
 * regular file (created if missing); an existing dataset of that name is
 * replaced -- unless DATASET_KEEP_EXISTING is given (avq search without
 * --replace): then that is AVQ_ERR_INVALID naming the file and the
 * dataset, and nothing is written. */
#define DATASET_KEEP_EXISTING 1u

/* Write float vectors as .fvecs or .npy (float32), or an HDF5 dataset
 * ("out.hdf5:train"; the file is created if missing, the dataset replaced
 * if present). */
int dataset_write_float(const char *path, const float *data, size_t rows, size_t cols);

/* Write int32 vectors as .ivecs or .npy (int32) or an HDF5 dataset. */
int dataset_write_int(const char *path, const int32_t *data, size_t rows, size_t cols);

/* Write int64 ids (search results under 64-bit ids).  If every value fits
 * in int32 the file is exactly what dataset_write_int writes (.ivecs, .npy
 * int32, HDF5 int32).  Otherwise .npy and HDF5 get int64, and .ivecs is
 * refused (AVQ_ERR_INVALID naming the first wide id; nothing written). */
int dataset_write_int64(const char *path, const int64_t *data, size_t rows, size_t cols);

/* The same with flags (DATASET_KEEP_EXISTING). */
int dataset_write_float_flags(const char *path, const float *data, size_t rows, size_t cols,
                              unsigned flags);
int dataset_write_int64_flags(const char *path, const int64_t *data, size_t rows, size_t cols,
                              unsigned flags);

/* Whether an output could be written, checked before the work that makes
 * it (a search): the path's format, the kind of file there (see Outputs),
 * and for HDF5 with DATASET_KEEP_EXISTING that the dataset -- for ints the
 * default "neighbors", else "train" -- does not exist yet. */
int dataset_check_output(const char *path, bool ints, unsigned flags);

/* 1 if the path names an HDF5 file (*dataset: the name after its colon,
 * or NULL for none), else 0 (*dataset NULL). */
int dataset_hdf5_name(const char *path, const char **dataset);

/* 1 if the files of two paths (HDF5 dataset names stripped) are the same
 * file: both exist with one device and inode (links and symlinks
 * included), or neither exists and the names are equal; else 0. */
int dataset_same_file(const char *a, const char *b);

/* A list of 64-bit ids owned by the struct (free with id_list_free). */
typedef struct {
    size_t n;
    int64_t *data;
} id_list;

void id_list_free(id_list *l);

/* Read ids, one per vector: .ivecs (n rows of 1, or 1 row of n), .npy
 * (int64, int32 or uint8; 1-D, or 2-D with one column), HDF5 (integer;
 * default dataset "ids"), or -- for any other file name (ids.txt) -- text
 * with one decimal id per line (blank lines and lines starting with '#'
 * skipped; the message names the first bad line).  Values are not checked
 * here beyond fitting in int64: the index refuses the reserved id -1 and
 * duplicates itself. */
int dataset_read_ids(const char *path, id_list *out);

/* As dataset_read_ids, for a set of ids that may be empty (a search's
 * allow/deny list): a text file that is empty or holds only blank and '#'
 * lines gives n = 0 instead of an error. */
int dataset_read_id_set(const char *path, id_list *out);

#endif
