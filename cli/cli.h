/* cli.h - the pvf subcommands and the flag parsing they share. Errors are
 * printed here, at the top: one line "pvf CMD: what is wrong", exit 2 for a
 * usage error, 1 for a failure. */
#ifndef PVF_CLI_H
#define PVF_CLI_H

#include "fault.h"
#include "format.h"

#include <getopt.h>

#include <stdint.h>

int pvf_cmd_infer(int argc, char **argv);
int pvf_cmd_inject(int argc, char **argv);
int pvf_cmd_sweep(int argc, char **argv);

/* The flags every model command shares. */
typedef struct cli_common {
    const char *model;     /* --model DIR */
    const char *data;      /* --data FILE, NULL: DIR/eval.safetensors */
    pvf_format format;     /* --format */
    pvf_fault_model fault; /* --fault (commands that inject) */
    int json;              /* --json */
    double threshold;      /* --threshold (outcome rule |Δ output| > it), 0: the default rule */
} cli_common;

#define CLI_COMMON_OPTIONS                                                                         \
    {"model", required_argument, 0, 'm'}, {"data", required_argument, 0, 'd'},                     \
        {"format", required_argument, 0, 'f'}, {                                                   \
        "json", no_argument, 0, 'j'                                                                \
    }
#define CLI_FAULT_OPTION                                                                           \
    { "fault", required_argument, 0, 'F' }
#define CLI_THRESHOLD_OPTION                                                                       \
    { "threshold", required_argument, 0, 'T' }

/* A command's own flag: 1 taken, 0 not one of its flags, -1 bad value
 * (already printed). */
typedef int (*cli_flag_fn)(const char *cmd, int opt, const char *arg, void *ctx);

/* Parses argv with getopt_long: the shared flags into *c, the others through
 * own(ctx) (NULL when the command has none). Returns 0, or 2 after printing
 * the usage error (unknown flag, bad value, positional argument, no --model). */
int cli_parse(const char *cmd, int argc, char **argv, const struct option *opts, cli_common *c,
              cli_flag_fn own, void *ctx);

/* Prints "pvf CMD: message" to stderr; returns the exit code given. */
int cli_fail(const char *cmd, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Flag values: 0 on success, else prints the error and returns -1. */
int cli_int64(const char *cmd, const char *flag, const char *s, int64_t min, int64_t max,
              int64_t *out);
int cli_uint64(const char *cmd, const char *flag, const char *s, uint64_t *out);
int cli_format(const char *cmd, const char *s, pvf_format *out);
int cli_fault(const char *cmd, const char *s, pvf_fault_model *out);

/* Puts --threshold into the loaded model; a usage error (printed, -1) when
 * its architecture's outcome rule has no threshold. */
struct pvf_model;
int cli_apply_threshold(const char *cmd, const cli_common *c, struct pvf_model *m);

/* Monotonic seconds. */
double cli_now(void);

#endif
