/*
 * avq.c -- the command-line tool: a table of subcommands, each a thin client
 * of the public API (include/avq.h) plus the dataset readers in tools/.
 */
#include "avq.h"
#include "cli.h"

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
    {"gt", cmd_gt, "exact top-k ground truth of queries against a base set"},
    {"search", cmd_search, "search queries (exact brute force, or an index)"},
    {"eval", cmd_eval, "recall of search results against ground truth"},
    {"tune", cmd_tune, "fastest search settings for a target recall"},
    {"paper", cmd_paper, "reproduce the paper's quantization experiment (Fig. 3)"},
};

static void print_help(FILE *out) {
    fprintf(out,
            "avq %s -- fast maximum-inner-product and nearest-neighbour search\n"
            "with anisotropic vector quantization (Guo et al., ICML 2020).\n\n"
            "usage: avq COMMAND [options]     (avq COMMAND --help for details)\n\n"
            "commands:\n",
            avq_version());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\nvector files: .fvecs .ivecs .bvecs .npy, or HDF5 as FILE.hdf5:DATASET\n"
            "metrics: ip (inner product), l2 (squared Euclidean), cos (cosine)\n"
            "environment: AVQ_ISA=scalar|avx2|avx512 forces a SIMD kernel set\n");
}

int main(int argc, char **argv) {
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
        printf("avq %s (SIMD: %s)\n", avq_version(), avq_isa());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(name, commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "avq: unknown command '%s' (try 'avq --help')\n", name);
    return 2;
}
