/*
 * cli_tags.h -- the CLI's side of tags and filtered search: the tag file format,
 * tag lists given on the command line, and the search filter chosen by
 * options (--allow-ids, --deny-ids, --tags-any, --tags-all).
 *
 * Tag file.  Plain text, one line per vector, in the row order of the
 * vectors (or ids) it goes with.  A line lists that vector's tags: decimal
 * integers 0..4294967295 separated by commas and/or blanks ("3,17",
 * "3 17", "3, 17").  An empty line means "no tags".  Lines whose first
 * non-blank character is '#' are comments and do not count as a vector.
 * '\r' before a newline is ignored.  A newline ends a line: a final line
 * without one still counts, but an empty last line needs its newline.
 * A tag repeated on one line counts once; at most AVQ_MAX_TAGS_PER_VECTOR
 * distinct tags per line.
 *
 * Every failure leaves a message naming the file and line in
 * cli_last_error() and returns a negative avq_status, like the dataset
 * readers.
 */
#ifndef AVQ_CLI_TAGS_H
#define AVQ_CLI_TAGS_H

#include "avq.h"

#include <stddef.h>
#include <stdint.h>

/* Tags of n vectors as the library takes them (CSR): vector i has
 * tags[offsets[i] .. offsets[i + 1]), ascending and distinct. */
typedef struct {
    size_t n;          /* vectors (non-comment lines)          */
    size_t *offsets;   /* n + 1 entries                          */
    uint32_t *tags;    /* offsets[n] entries (NULL if none)      */
    size_t tagged;     /* vectors with at least one tag          */
} tag_table;

void tag_table_free(tag_table *t);

/* Read a tag file.  If rows_expected is not (size_t)-1, the file must hold
 * exactly that many lines of tags, one per row of `what` (the file the
 * rows come from, for the message: "new.fvecs", or the ids file of 'avq
 * tag'): otherwise the error names the file, the line and both counts. */
int tags_read_file(const char *path, size_t rows_expected, const char *what, tag_table *out);

/* Parse a tag list given as an option value ("3,17", "3 17"), or read it
 * from a file when it starts with '@' ("@tags.txt": every tag on every
 * line of the file, in the tag file syntax).  The result is ascending and
 * distinct; it must hold 1..AVQ_MAX_FILTER_TAGS tags.  `option` names the
 * option in messages ("--tags-any").  On success *tags is malloc'ed. */
int tags_parse_list(const char *option, const char *value, uint32_t **tags, size_t *n);

/* The filter options of a search. */
typedef struct {
    const char *allow_ids, *deny_ids, *tags_any, *tags_all; /* at most one set */
} filter_options;

/* The number of filter kinds given (0 or 1 is valid). */
int filter_options_count(const filter_options *o);

/* Make the filter the options ask for into *out (NULL when none is given),
 * and a short description for the summary line into desc ("tags-any of 2
 * tags", "allow 120 ids").  Returns 0, or an exit code with the error
 * printed (nothing allocated then). */
int filter_make(const char *cmd, const filter_options *o, avq_filter **out, char *desc,
                size_t desc_size);

/* The help text of the filter options (for 'avq search --help'). */
extern const char tags_filter_help[];

/* The help text of the tag file format (for --tags). */
extern const char tags_file_help[];

#endif
