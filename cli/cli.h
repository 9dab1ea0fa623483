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
int pvf_cmd_run(int argc, char **argv);
int pvf_cmd_coordinator(int argc, char **argv);
int pvf_cmd_worker(int argc, char **argv);
int pvf_cmd_keygen(int argc, char **argv);
int pvf_cmd_db(int argc, char **argv);
int pvf_cmd_report(int argc, char **argv);
int pvf_cmd_campaign(int argc, char **argv);
int pvf_cmd_campaign_create(int argc, char **argv); /* argv[0] = "create" */
int pvf_cmd_stats(int argc, char **argv);

/* The flags every model command shares. */
typedef struct cli_common {
    const char *model;     /* --model DIR */
    const char *data;      /* --data FILE, NULL: DIR/eval.safetensors */
    pvf_format format;     /* --format */
    pvf_fault_model fault; /* --fault (commands that inject) */
    int json;              /* --json */
    double threshold;      /* --threshold (outcome rule |Δ output| > it), 0: the default rule */
    int naive;             /* --naive */
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
/* --naive: every trial a plain full forward pass (the fast path off). */
#define CLI_OPT_NAIVE 256 /* not a letter: commands' own letters stay free */
#define CLI_NAIVE_OPTION                                                                           \
    { "naive", no_argument, 0, CLI_OPT_NAIVE }

/* A command's own flag: 1 taken, 0 not one of its flags, -1 bad value
 * (already printed). */
typedef int (*cli_flag_fn)(const char *cmd, int opt, const char *arg, void *ctx);

/* Parses argv with getopt_long: the shared flags into *c, the others through
 * own(ctx) (NULL when the command has none). Returns 0, or 2 after printing
 * the usage error (unknown flag, bad value, positional argument, no --model).
 * c NULL: a command without a model (no shared flags, no --model needed). */
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

/* The database a command uses: --db DSN (flag, may be NULL), else $PVF_DB,
 * else the private server under the default pvf home, started if it is
 * stopped (and created first when `create`: pvf run). Returns 0, or the
 * exit code after printing the error (no server yet: "no database: pass
 * --db, set PVF_DB or run pvf run first"). */
int cli_db_dsn(const char *cmd, const char *flag, int create, char *dsn, size_t len);

/* Output formats of the database commands (--format table|csv|json). */
typedef enum cli_out { CLI_OUT_TABLE, CLI_OUT_CSV, CLI_OUT_JSON } cli_out;
int cli_out_parse(const char *cmd, const char *s, cli_out *out);

/* Query results (pvf_sql.h) printed in an output format: table (aligned,
 * floats to 4 significant digits), csv (full precision; `level`, if not
 * NULL, is a first column with that value on every row), json (an array of
 * objects). cli_row_json: one row as a new JSON object (NaN/Inf as null). */
struct pvf_table;
struct json_t;
void cli_print_rows(const struct pvf_table *t, cli_out out, const char *level);
struct json_t *cli_row_json(const struct pvf_table *t, int r);

/* Puts --threshold into the loaded model; a usage error (printed, -1) when
 * its architecture's outcome rule has no threshold. */
struct pvf_model;
int cli_apply_threshold(const char *cmd, const cli_common *c, struct pvf_model *m);

#endif
