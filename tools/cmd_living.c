/*
 * cmd_living.c -- the commands that change a saved index in place: `avq
 * add`, `avq remove`, `avq upsert`, `avq compact` and `avq tag`; and `avq
 * get-tags`, which only reads one.
 *
 * Each writer loads the index file, makes one all-or-nothing call of the
 * library's writer API (avq_index_add / _remove / _upsert / _compact /
 * _set_tags, or their _tagged forms), and
 * only if that succeeded saves the result -- back over the index file, or
 * to --out.  avq_index_save writes a temporary file and renames it into
 * place, so a failure at any step (bad input, a full disk, Ctrl-C) leaves
 * the index file exactly as it was.
 *
 * The summary goes to stdout as one line ("added 50 (ids 300..349), size
 * 350"), so scripts can read it; the name of the file written goes to
 * stderr.
 */
#include "avq.h"
#include "cli.h"
#include "dataset.h"
#include "cli_tags.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Which options a command takes. */
enum {
    OPT_BASE = 1u << 0,
    OPT_IDS = 1u << 1,
    OPT_THREADS = 1u << 2,
    OPT_MIN_DEAD = 1u << 3,
    OPT_TAGS = 1u << 4,
};

typedef struct {
    const char *index_path, *base_path, *ids_path, *out_path, *tags_path;
    long threads;
    float min_dead;
} living_opts;

static void add_usage(FILE *out) {
    fprintf(out,
            "usage: avq add --index INDEX --base NEW [--ids IDS] [--tags TAGS] [--out OUT]\n"
            "               [--threads N]\n\n"
            "Add the vectors of NEW to an index, encoded with its trained quantizer (no\n"
            "retraining), and save it back to INDEX (or to OUT).  Nothing is written if\n"
            "anything fails.  Prints 'added N ..., size M' on stdout.\n"
            "  --index INDEX   index file written by 'avq build' (changed in place)\n"
            "  --base NEW      vectors to add (.fvecs .bvecs .npy FILE.hdf5:train), of the\n"
            "                  index's dimension\n"
            "  --ids IDS       one 64-bit id per row of NEW, none already in the index:\n"
            "                  .ivecs, .npy (int64/int32), FILE.hdf5:ids, or a text file\n"
            "                  with one id per line; default: automatic ids (one more than\n"
            "                  the largest id the index ever held, counting up)\n"
            "  --tags TAGS     the tags of the new vectors: a tag file (below) with one\n"
            "                  line per row of NEW; default: no tags\n"
            "  --out OUT       write the result to OUT and leave INDEX as it is\n"
            "  --threads N     encoding threads (default: all CPUs)\n");
    fputs(tags_file_help, out);
}

static void upsert_usage(FILE *out) {
    fprintf(out,
            "usage: avq upsert --index INDEX --base NEW --ids IDS [--tags TAGS] [--out OUT]\n"
            "                  [--threads N]\n\n"
            "Insert or replace: the rows of NEW whose id is in the index replace its vector,\n"
            "the others are added.  Saved back to INDEX (or OUT) only if all succeeded.\n"
            "Prints 'replaced R, added A, size M' on stdout.\n"
            "  --index INDEX   index file (changed in place)\n"
            "  --base NEW      vectors (.fvecs .bvecs .npy FILE.hdf5:train)\n"
            "  --ids IDS       one distinct id per row of NEW (.ivecs, .npy int64/int32,\n"
            "                  FILE.hdf5:ids, or text with one id per line)\n"
            "  --tags TAGS     every row gets exactly these tags: a tag file (below) with\n"
            "                  one line per row of NEW; without --tags a replaced vector\n"
            "                  keeps its tags and an added one has none\n"
            "  --out OUT       write the result to OUT and leave INDEX as it is\n"
            "  --threads N     encoding threads (default: all CPUs)\n");
    fputs(tags_file_help, out);
}

static void tag_usage(FILE *out) {
    fprintf(out,
            "usage: avq tag --index INDEX --ids IDS --tags TAGS [--out OUT]\n\n"
            "Replace the tags of vectors already in the index (their vectors stay as they\n"
            "are); all or nothing.  To tag an index made by 'avq build' (ids 0..n-1) give\n"
            "the ids 0..n-1 (seq 0 $((n-1)) > ids.txt), or use 'avq build --tags'.\n"
            "Prints 'set the tags of N vectors (W with tags, T tags in all), size M'.\n"
            "  --index INDEX   index file (changed in place)\n"
            "  --ids IDS       the ids to tag, each in the index and listed once (.ivecs,\n"
            "                  .npy int64/int32, FILE.hdf5:ids, or text, one id per line)\n"
            "  --tags TAGS     their new tags: a tag file (below), line i for the i-th id;\n"
            "                  an empty line removes a vector's tags\n"
            "  --out OUT       write the result to OUT and leave INDEX as it is\n");
    fputs(tags_file_help, out);
}

static void remove_usage(FILE *out) {
    fprintf(out,
            "usage: avq remove --index INDEX --ids IDS [--out OUT]\n\n"
            "Remove the vectors with these ids; ids not in the index are counted, not an\n"
            "error.  Leaves whose dead share passes the index's threshold are compacted.\n"
            "Prints 'removed R, not present P, size M' on stdout.\n"
            "  --index INDEX   index file (changed in place)\n"
            "  --ids IDS       ids to remove (.ivecs, .npy int64/int32, FILE.hdf5:ids, or\n"
            "                  text with one id per line)\n"
            "  --out OUT       write the result to OUT and leave INDEX as it is\n");
}

static void compact_usage(FILE *out) {
    fprintf(out,
            "usage: avq compact --index INDEX [--min-dead F] [--out OUT]\n\n"
            "Rewrite the leaves holding removed (dead) slots without them, reclaiming their\n"
            "space.  Prints 'compacted L leaves, dead D0 -> D1, ...' on stdout.\n"
            "  --index INDEX   index file (changed in place)\n"
            "  --min-dead F    only leaves whose dead share is at least F, in [0, 1]\n"
            "                  (default 0: every leaf with a dead slot)\n"
            "  --out OUT       write the result to OUT and leave INDEX as it is\n");
}

/* Parse the options of `cmd`; returns -1 to go on, else the exit code. */
static int parse_opts(const char *cmd, int argc, char **argv, unsigned allowed,
                      void (*usage)(FILE *), living_opts *o) {
    static const struct option opts[] = {
        {"index", required_argument, 0, 'i'}, {"base", required_argument, 0, 'b'},
        {"ids", required_argument, 0, 'd'},   {"out", required_argument, 0, 'o'},
        {"threads", required_argument, 0, 't'}, {"min-dead", required_argument, 0, 'm'},
        {"tags", required_argument, 0, 'g'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    *o = (living_opts){0};
    int c, which = 0;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, &which)) != -1) {
        unsigned need = c == 'b' ? OPT_BASE : c == 'd' ? OPT_IDS : c == 't' ? OPT_THREADS
                      : c == 'm' ? OPT_MIN_DEAD : c == 'g' ? OPT_TAGS : 0;
        if (need && !(allowed & need))
            return cli_usage_error(cmd, "option '--%s' does not apply to 'avq %s'",
                                   opts[which].name, cmd);
        switch (c) {
        case 'i': o->index_path = optarg; break;
        case 'b': o->base_path = optarg; break;
        case 'd': o->ids_path = optarg; break;
        case 'o': o->out_path = optarg; break;
        case 'g': o->tags_path = optarg; break;
        case 't':
            if (!cli_parse_int(optarg, 0, 256, &o->threads))
                return cli_usage_error(cmd, "--threads must be 0..256, got '%s'", optarg);
            break;
        case 'm':
            if (!cli_parse_float(optarg, &o->min_dead) || o->min_dead < 0 || o->min_dead > 1)
                return cli_usage_error(cmd, "--min-dead must be a number in [0, 1], got '%s'",
                                       optarg);
            break;
        case 'h': usage(stdout); return 0;
        default: return cli_bad_option(cmd, argv);
        }
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!o->index_path) return cli_usage_error(cmd, "--index is required");
    if ((allowed & OPT_BASE) && !o->base_path) return cli_usage_error(cmd, "--base is required");
    if (!strcmp(cmd, "upsert") || !strcmp(cmd, "remove") || !strcmp(cmd, "tag"))
        if (!o->ids_path) return cli_usage_error(cmd, "--ids is required");
    if (!strcmp(cmd, "tag") && !o->tags_path) return cli_usage_error(cmd, "--tags is required");
    if (o->tags_path && !*o->tags_path) return cli_usage_error(cmd, "--tags needs a file name");
    if (o->out_path && !*o->out_path) return cli_usage_error(cmd, "--out needs a file name");
    return -1;
}

/* Everything a writer command works on; release with inputs_free. */
typedef struct {
    avq_index *index;
    float_matrix base; /* rows 0 if no --base */
    id_list ids;       /* n 0 if no --ids */
    tag_table tags;    /* n 0 if no --tags */
} inputs;

static void inputs_free(inputs *in) {
    avq_index_free(in->index);
    float_matrix_free(&in->base);
    id_list_free(&in->ids);
    tag_table_free(&in->tags);
    memset(in, 0, sizeof *in);
}

/* Load the index, the vectors and the ids, and check that they fit each
 * other.  Returns 0, or an exit code with the error printed and nothing
 * left allocated. */
static int load_inputs(const char *cmd, const living_opts *o, inputs *in) {
    memset(in, 0, sizeof *in);
    int st = avq_index_load(o->index_path, AVQ_LOAD_COPY, &in->index);
    if (st) return cli_fail(cmd, st);
    int rc = 0;
    if (o->base_path) {
        st = dataset_read_float(o->base_path, &in->base);
        if (st) {
            rc = cli_fail(cmd, st);
            goto fail;
        }
        size_t dim = avq_index_dim(in->index);
        if (in->base.cols != dim) {
            rc = cli_error(cmd, "dimension mismatch: index %s has dimension %zu, %s has %zu",
                           o->index_path, dim, o->base_path, in->base.cols);
            goto fail;
        }
    }
    if (o->ids_path) {
        st = dataset_read_ids(o->ids_path, &in->ids);
        if (st) {
            rc = cli_fail(cmd, st);
            goto fail;
        }
        if (o->base_path && in->ids.n != in->base.rows) {
            rc = cli_error(cmd, "row count mismatch: %s holds %zu vectors but %s holds %zu ids "
                                "(one id per vector)",
                           o->base_path, in->base.rows, o->ids_path, in->ids.n);
            goto fail;
        }
    }
    if (o->tags_path) {
        /* one line per vector of --base, or (avq tag) per id */
        size_t rows = o->base_path ? in->base.rows : in->ids.n;
        st = tags_read_file(o->tags_path, rows, o->base_path ? o->base_path : o->ids_path,
                            &in->tags);
        if (st) {
            rc = cli_fail(cmd, st);
            goto fail;
        }
    }
    return 0;
fail:
    inputs_free(in);
    return rc;
}

/* Save the changed index where --out (or --index) says. */
static int save_index(const char *cmd, const living_opts *o, const avq_index *index) {
    const char *path = o->out_path ? o->out_path : o->index_path;
    int st = avq_index_save(index, path);
    if (st) return cli_fail(cmd, st);
    fprintf(stderr, "avq %s: wrote %s\n", cmd, path);
    return 0;
}

static int compare_ids(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* How many different values ids[0..n) holds (n if out of memory: then
 * repeats are not told apart). */
static size_t distinct_ids(const int64_t *ids, size_t n) {
    int64_t *sorted = malloc(n * sizeof *sorted);
    if (!sorted) return n;
    memcpy(sorted, ids, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, compare_ids);
    size_t d = n > 0;
    for (size_t i = 1; i < n; i++) d += sorted[i] != sorted[i - 1];
    free(sorted);
    return d;
}

int cmd_add(int argc, char **argv) {
    living_opts o;
    int rc = parse_opts("add", argc, argv, OPT_BASE | OPT_IDS | OPT_THREADS | OPT_TAGS, add_usage,
                        &o);
    if (rc >= 0) return rc;
    inputs in;
    if ((rc = load_inputs("add", &o, &in))) return rc;
    size_t n = in.base.rows;
    int64_t *used = malloc(n * sizeof *used);
    if (!used) {
        inputs_free(&in);
        return cli_error("add", "out of memory for %zu ids", n);
    }
    int st = o.tags_path ? avq_index_add_tagged(in.index, in.base.data, n,
                                                o.ids_path ? in.ids.data : NULL, in.tags.offsets,
                                                in.tags.tags, (int)o.threads, used)
                         : avq_index_add(in.index, in.base.data, n,
                                         o.ids_path ? in.ids.data : NULL, (int)o.threads, used);
    if (st) {
        rc = cli_fail("add", st);
    } else {
        rc = save_index("add", &o, in.index);
        if (!rc) {
            printf("added %zu", n);
            if (!o.ids_path) printf(" (ids %lld..%lld)", (long long)used[0],
                                    (long long)used[n - 1]);
            if (o.tags_path) printf(", %zu tagged", in.tags.tagged);
            printf(", size %zu\n", avq_index_size(in.index));
        }
    }
    free(used);
    inputs_free(&in);
    return rc;
}

int cmd_upsert(int argc, char **argv) {
    living_opts o;
    int rc = parse_opts("upsert", argc, argv, OPT_BASE | OPT_IDS | OPT_THREADS | OPT_TAGS,
                        upsert_usage, &o);
    if (rc >= 0) return rc;
    inputs in;
    if ((rc = load_inputs("upsert", &o, &in))) return rc;
    size_t replaced = 0;
    int st = o.tags_path ? avq_index_upsert_tagged(in.index, in.base.data, in.base.rows,
                                                   in.ids.data, in.tags.offsets, in.tags.tags,
                                                   (int)o.threads, &replaced)
                         : avq_index_upsert(in.index, in.base.data, in.base.rows, in.ids.data,
                                            (int)o.threads, &replaced);
    if (st) rc = cli_fail("upsert", st);
    else rc = save_index("upsert", &o, in.index);
    if (!rc)
        printf("replaced %zu, added %zu, size %zu\n", replaced, in.base.rows - replaced,
               avq_index_size(in.index));
    inputs_free(&in);
    return rc;
}

int cmd_remove(int argc, char **argv) {
    living_opts o;
    int rc = parse_opts("remove", argc, argv, OPT_IDS, remove_usage, &o);
    if (rc >= 0) return rc;
    inputs in;
    if ((rc = load_inputs("remove", &o, &in))) return rc;
    /* An id listed twice is removed once: count distinct ids, so that
     * "not present" means not in the index. */
    size_t distinct = distinct_ids(in.ids.data, in.ids.n);
    size_t removed = 0;
    int st = avq_index_remove(in.index, in.ids.data, in.ids.n, &removed);
    if (st) rc = cli_fail("remove", st);
    else rc = save_index("remove", &o, in.index);
    if (!rc) {
        avq_index_stats stats;
        avq_index_get_stats(in.index, &stats); /* only for the dead count */
        printf("removed %zu, not present %zu, size %zu, dead %zu", removed,
               distinct >= removed ? distinct - removed : 0, avq_index_size(in.index),
               stats.dead);
        if (distinct < in.ids.n) printf(" (%zu repeated ids ignored)", in.ids.n - distinct);
        printf("\n");
    }
    inputs_free(&in);
    return rc;
}

int cmd_compact(int argc, char **argv) {
    living_opts o;
    int rc = parse_opts("compact", argc, argv, OPT_MIN_DEAD, compact_usage, &o);
    if (rc >= 0) return rc;
    inputs in;
    if ((rc = load_inputs("compact", &o, &in))) return rc;
    avq_index_stats before, after;
    int st = avq_index_get_stats(in.index, &before);
    size_t compacted = 0;
    if (!st) st = avq_index_compact(in.index, (double)o.min_dead, &compacted);
    if (!st) st = avq_index_get_stats(in.index, &after);
    if (st) rc = cli_fail("compact", st);
    else rc = save_index("compact", &o, in.index);
    if (!rc)
        printf("compacted %zu leaves, dead %zu -> %zu, memory %zu -> %zu bytes, size %zu\n",
               compacted, before.dead, after.dead, before.memory_bytes, after.memory_bytes,
               after.live);
    inputs_free(&in);
    return rc;
}

int cmd_tag(int argc, char **argv) {
    living_opts o;
    int rc = parse_opts("tag", argc, argv, OPT_IDS | OPT_TAGS, tag_usage, &o);
    if (rc >= 0) return rc;
    inputs in;
    if ((rc = load_inputs("tag", &o, &in))) return rc;
    int st = avq_index_set_tags(in.index, in.ids.data, in.ids.n, in.tags.offsets, in.tags.tags);
    if (st) rc = cli_fail("tag", st);
    else rc = save_index("tag", &o, in.index);
    if (!rc)
        printf("set the tags of %zu vectors (%zu with tags, %zu tags in all), size %zu\n",
               in.tags.n, in.tags.tagged, in.tags.offsets[in.tags.n],
               avq_index_size(in.index));
    inputs_free(&in);
    return rc;
}

static void get_tags_usage(FILE *out) {
    fprintf(out,
            "usage: avq get-tags INDEX ID... | avq get-tags INDEX --ids IDS\n\n"
            "Print the tags of vectors of an index: one line per id, in the order given,\n"
            "'ID<tab>TAGS' with the tags ascending and comma-separated (nothing after the\n"
            "tab for a vector without tags).  'cut -f2' of the output is a tag file for\n"
            "'avq tag' / 'avq add --tags'.  An id not in the index is an error.  Put\n"
            "'--' before negative ids (avq get-tags INDEX -- -42).\n"
            "  --ids IDS   read the ids from a file (.ivecs, .npy int64/int32,\n"
            "              FILE.hdf5:ids, or text with one id per line)\n"
            "  --mmap      map the index file instead of reading it\n");
}

/* Print the tags of one id; returns 0 or an exit code. */
static int print_tags(const avq_index *index, int64_t id, uint32_t **buf, size_t *cap) {
    size_t count = 0;
    int st = avq_index_get_tags(index, id, NULL, 0, &count);
    if (st) return cli_fail("get-tags", st);
    if (count > *cap) {
        uint32_t *p = realloc(*buf, count * sizeof *p);
        if (!p) return cli_error("get-tags", "out of memory for %zu tags", count);
        *buf = p;
        *cap = count;
    }
    if (count && (st = avq_index_get_tags(index, id, *buf, *cap, &count)))
        return cli_fail("get-tags", st);
    printf("%lld\t", (long long)id);
    for (size_t i = 0; i < count; i++) printf(i ? ",%u" : "%u", (unsigned)(*buf)[i]);
    putchar('\n');
    return 0;
}

int cmd_get_tags(int argc, char **argv) {
    static const struct option opts[] = {{"ids", required_argument, 0, 'd'},
                                         {"mmap", no_argument, 0, 'M'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *ids_path = NULL;
    int use_mmap = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd': ids_path = optarg; break;
        case 'M': use_mmap = 1; break;
        case 'h': get_tags_usage(stdout); return 0;
        default: return cli_bad_option("get-tags", argv);
        }
    }
    if (optind >= argc) return cli_usage_error("get-tags", "expected an index file");
    const char *index_path = argv[optind++];
    size_t given = (size_t)(argc - optind);
    if (ids_path && given) return cli_usage_error("get-tags", "give ids on the command line or --ids, not both");
    if (!ids_path && !given) return cli_usage_error("get-tags", "expected at least one id (or --ids FILE)");
    id_list ids = {0, NULL};
    if (ids_path) {
        int st = dataset_read_ids(ids_path, &ids);
        if (st) return cli_fail("get-tags", st);
    } else {
        ids.data = malloc(given * sizeof *ids.data);
        if (!ids.data) return cli_error("get-tags", "out of memory for %zu ids", given);
        ids.n = given;
        for (size_t i = 0; i < given; i++) {
            long v;
            if (!cli_parse_int(argv[optind + (int)i], INT64_MIN, INT64_MAX, &v)) {
                id_list_free(&ids);
                return cli_usage_error("get-tags", "'%s' is not an id (a 64-bit integer)",
                                       argv[optind + (int)i]);
            }
            ids.data[i] = (int64_t)v;
        }
    }
    avq_index *index = NULL;
    int st = avq_index_load(index_path, use_mmap ? AVQ_LOAD_MMAP : AVQ_LOAD_COPY, &index);
    if (st) {
        id_list_free(&ids);
        return cli_fail("get-tags", st);
    }
    /* check every id first: an error prints nothing on stdout */
    int rc = 0;
    for (size_t i = 0; i < ids.n && !rc; i++)
        if (!avq_index_contains(index, ids.data[i]))
            rc = cli_error("get-tags", "id %lld is not in %s", (long long)ids.data[i], index_path);
    uint32_t *buf = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < ids.n && !rc; i++) rc = print_tags(index, ids.data[i], &buf, &cap);
    free(buf);
    avq_index_free(index);
    id_list_free(&ids);
    return rc;
}
