/*
 * avq_paper.c -- the program avq-paper: the research experiment of
 * tools/cmd_paper.c (the paper's Figure 3).
 *
 * It drives the library's internal PQ and anisotropic encoders (src/pq.h,
 * src/aniso.h), which are not part of the public API, so it is linked with
 * the static libavq.a and built on demand ('make paper'), apart from the
 * stable avq CLI, which is a client of include/avq.h and libavq.so only.
 */
#include "avq.h"
#include "cli.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    cli_set_program("avq-paper");
    if (argc >= 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))) {
        printf("avq-paper %s (SIMD: %s)\n", avq_version(), avq_isa());
        return 0;
    }
    return cmd_paper(argc, argv);
}
