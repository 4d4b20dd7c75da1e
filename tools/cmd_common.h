/*
 * cmd_common.h -- loaders/writers shared by several subcommands.
 */
#ifndef AVQ_CMD_COMMON_H
#define AVQ_CMD_COMMON_H

#include "dataset.h"

#include <stddef.h>
#include <stdint.h>

/* Load a base and a query file and check their dimensions agree.  Returns 0
 * or an exit code (the error already printed); on failure nothing is left
 * allocated. */
int cli_load_base_query(const char *cmd, const char *base_path, const char *query_path,
                        float_matrix *base, float_matrix *query);

/* The metric of a command reading vector files: `given` (--metric, may be
 * NULL) and the 'distance' attribute of any ann-benchmarks HDF5 file among
 * paths[0..n) (NULL entries skipped).  Without --metric the attribute
 * decides; with both they must name the same metric; with neither it is a
 * usage error.  Returns 0 (and *out) or the exit code (message printed). */
int cli_resolve_metric(const char *cmd, const char *given, const char *const *paths, size_t n,
                       avq_metric *out);

/* Write rows x cols ids (int64, -1 for "none"): .npy/HDF5 keep 64 bits,
 * .ivecs only takes ids that fit in int32 (else a clear error). */
int cli_write_ids(const char *cmd, const char *path, const int64_t *ids, size_t rows,
                  size_t cols);

/* recall@k of search results: ids (nq x k, -1 = none) against the true
 * neighbours truth (nq rows of truth_cols >= k ids, best first), i.e. the
 * mean over queries of |returned top-k ∩ true top-k| / k. */
double cli_recall_at_k(const int64_t *ids, size_t nq, size_t k, const int32_t *truth,
                       size_t truth_cols);

#endif
