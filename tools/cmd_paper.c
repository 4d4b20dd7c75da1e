/* Placeholder until the training work lands: see issue "Training". */
#include "cli.h"

int cmd_paper(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return cli_error("paper", "not available yet in this build");
}
