/*
 * avq.c -- the command-line tool: a table of subcommands, each a thin client
 * of the public API (include/avq.h) plus the dataset readers in tools/.
 */
#include "avq.h"
#include "cli.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    cli_command_fn run;
    const char *summary;
} command;

static const command commands[] = {
    {"build", cmd_build, "build an index from vectors and save it"},
    {"info", cmd_info, "describe an index file"},
    {"add", cmd_add, "add vectors to an index file (automatic or given ids)"},
    {"remove", cmd_remove, "remove vectors from an index file by id"},
    {"upsert", cmd_upsert, "insert or replace vectors of an index file by id"},
    {"compact", cmd_compact, "reclaim the space of removed vectors"},
    {"tag", cmd_tag, "replace the tags of vectors of an index file"},
    {"get-tags", cmd_get_tags, "print the tags of vectors of an index file"},
    {"gt", cmd_gt, "exact top-k ground truth of queries against a base set"},
    {"search", cmd_search, "search queries (exact brute force, or an index)"},
    {"eval", cmd_eval, "recall of search results against ground truth"},
    {"tune", cmd_tune, "fastest search settings for a target recall"},
};

/* The paper's experiment needs the library's internals (its PQ and
 * anisotropic encoders), so it is a separate program linked with the static
 * library, not part of this stable CLI, which uses only include/avq.h. */
static int paper_moved(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "avq paper: moved to the separate program avq-paper ('make paper' builds "
                    "build/avq-paper; run 'avq-paper --help')\n");
    return 2;
}

static void print_help(FILE *out) {
    fprintf(out,
            "avq %s -- fast maximum-inner-product and nearest-neighbour search\n"
            "with anisotropic vector quantization (Guo et al., ICML 2020).\n\n"
            "usage: avq COMMAND [options]     (avq COMMAND --help for details)\n\n"
            "commands:\n",
            avq_version());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\nvector files: .fvecs .ivecs .bvecs .npy, or HDF5 as FILE.hdf5:DATASET\n"
            "metrics (any case): ");
    char choices[256];
    fprintf(out, "%s\n", cli_metric_choices(choices, sizeof choices));
    fprintf(out,
            "tags and filters: build/add/upsert --tags, tag, get-tags; search --allow-ids,\n"
            "  --deny-ids, --tags-any, --tags-all (see avq search --help)\n"
            "environment: AVQ_ISA=scalar|avx2|avx512 forces a SIMD kernel set\n"
            "the paper's experiment (Fig. 3) is the separate program avq-paper (make paper)\n");
}

/* The file the dynamic loader took libavq from, or "?" (dladdr on a
 * function of the library). */
static const char *library_path(void) {
    Dl_info info;
    if (dladdr((void *)avq_version, &info) && info.dli_fname) return info.dli_fname;
    return "?";
}

int main(int argc, char **argv) {
    /* The CLI links libavq.so with an rpath to its own directory; if a
     * different library was loaded anyway, say so rather than run on it. */
    if (avq_version_number() != AVQ_VERSION_NUMBER) {
        fprintf(stderr, "avq: built for libavq %d.%d.%d but loaded libavq %s from %s\n",
                AVQ_VERSION_MAJOR, AVQ_VERSION_MINOR, AVQ_VERSION_PATCH, avq_version(),
                library_path());
        return 1;
    }
    if (argc < 2) {
        print_help(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
        print_help(stdout);
        return 0;
    }
    if (!strcmp(name, "--version") || !strcmp(name, "-V")) {
        int threads = avq_default_threads();
        printf("avq %s (SIMD: %s, %d worker thread%s by default: the CPUs this process may "
               "use, library %s)\n", avq_version(), avq_isa(), threads, threads == 1 ? "" : "s",
               library_path());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(name, commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    if (!strcmp(name, "paper")) return paper_moved(argc - 1, argv + 1);
    fprintf(stderr, "avq: unknown command '%s' (try 'avq --help')\n", name);
    return 2;
}
