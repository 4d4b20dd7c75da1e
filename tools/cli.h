/*
 * cli.h -- what the avq subcommands share: error reporting, a progress bar,
 * number parsing and timing.  The CLI is a thin client of include/avq.h.
 */
#ifndef AVQ_CLI_H
#define AVQ_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Every subcommand: parses its own options, returns the process exit code
 * (0 success, 1 failure, 2 usage error). */
typedef int (*cli_command_fn)(int argc, char **argv);

int cmd_gt(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_build(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_paper(int argc, char **argv); /* avq-paper only (tools/avq_paper.c) */
int cmd_tune(int argc, char **argv);
int cmd_add(int argc, char **argv);
int cmd_remove(int argc, char **argv);
int cmd_upsert(int argc, char **argv);
int cmd_compact(int argc, char **argv);
int cmd_tag(int argc, char **argv);
int cmd_get_tags(int argc, char **argv);

/* Name messages after this program instead of "avq CMD" (avq-paper). */
void cli_set_program(const char *name);

/* Print "avq CMD: error: <message>" to stderr; returns 1. */
int cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Report a failed library or dataset call: the message from
 * cli_last_error() (cli_util.h), else the status's description. */
int cli_fail(const char *cmd, int status);

/* Print a usage error and a hint to use --help; returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The usage error for getopt_long's '?' (call right after it, with
 * opterr = 0 so getopt prints nothing itself): names the offending
 * argument.  Returns 2. */
int cli_bad_option(const char *cmd, char **argv);

/* Strict number parsing: the whole string must be a number in range.
 * Return false (with no output written) otherwise. */
bool cli_parse_size(const char *s, size_t *out);
bool cli_parse_int(const char *s, long min, long max, long *out);
bool cli_parse_float(const char *s, float *out);

/* An avq_progress_fn drawing a bar on stderr, only if stderr is a terminal
 * and the operation has lasted more than a second.  `user` is ignored. */
int cli_progress(void *user, const char *stage, size_t done, size_t total);

/* The metric names avq_metric_parse accepts, from the library's one table
 * (avq_metric_alias): "dot_product|dot|ip|..., squared_l2|..., cosine|..."
 * into buf (cap bytes); returns buf. */
const char *cli_metric_choices(char *buf, size_t cap);

/* Print the metric line of a help text: "  --metric M   <choices> ...". */
void cli_metric_help(FILE *out, const char *lead);

/* Monotonic wall-clock seconds. */
double cli_now(void);

#endif
