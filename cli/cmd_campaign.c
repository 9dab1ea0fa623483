/* pvf campaign list | show ID | cancel ID | extend ID --max-trials N
 * (create: cmd_campaign_create.c). */
#include "cli.h"
#include "pvf_sql.h"

#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct campaign_flags {
    const char *db;
    cli_out out;
    int64_t max_trials;
    int have_max;
} campaign_flags;

static int campaign_flag(const char *cmd, int opt, const char *arg, void *ctx) {
    campaign_flags *f = ctx;
    switch (opt) {
    case 'D':
        f->db = arg;
        return 1;
    case 'o':
        return cli_out_parse(cmd, arg, &f->out) ? -1 : 1;
    case 'n':
        f->have_max = 1;
        return cli_int64(cmd, "--max-trials", arg, 1, INT64_MAX, &f->max_trials) ? -1 : 1;
    default:
        return 0;
    }
}

/* show: one campaign, vertically (table), or as one object (json). */
static void print_show(const pvf_table *t, cli_out out) {
    if (out != CLI_OUT_TABLE) {
        if (out == CLI_OUT_CSV) {
            cli_print_rows(t, out, NULL);
            return;
        }
        json_t *o = cli_row_json(t, 0);
        json_dumpf(o, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
        putchar('\n');
        json_decref(o);
        return;
    }
    int w = 0;
    for (int c = 0; c < t->ncols; c++)
        if ((int)strlen(t->names[c]) > w)
            w = (int)strlen(t->names[c]);
    for (int c = 0; c < t->ncols; c++) {
        const char *v = pvf_table_get(t, 0, c);
        if (t->kinds[c] == 'b' && v)
            v = *v == 't' ? "yes" : "no";
        printf("%-*s  %s\n", w, t->names[c], v ? v : "-");
    }
}

int pvf_cmd_campaign(int argc, char **argv) {
    static const struct option opts[] = {{"db", required_argument, 0, 'D'},
                                         {"format", required_argument, 0, 'o'},
                                         {"max-trials", required_argument, 0, 'n'},
                                         {0, 0, 0, 0}};
    if (argc < 2)
        return cli_fail("campaign", 2,
                        "expected list, show ID, cancel ID, extend ID or create (see pvf help)");
    const char *sub = argv[1];
    if (strcmp(sub, "create") == 0)
        return pvf_cmd_campaign_create(argc - 1, argv + 1);
    char cmd[32];
    snprintf(cmd, sizeof cmd, "campaign %.16s", sub);
    int list = strcmp(sub, "list") == 0;
    if (!list && strcmp(sub, "show") != 0 && strcmp(sub, "cancel") != 0 &&
        strcmp(sub, "extend") != 0)
        return cli_fail("campaign", 2,
                        "unknown subcommand '%s' (expected list, show, cancel, extend, create)",
                        sub);
    int64_t id = 0;
    if (!list) {
        if (argc < 3 || argv[2][0] == '-')
            return cli_fail(cmd, 2, "expected a campaign ID after '%s'", sub);
        if (cli_int64(cmd, "ID", argv[2], 1, INT64_MAX, &id))
            return 2;
    }
    /* flags after the subcommand (and ID): getopt skips its argv[0] */
    int skip = list ? 1 : 2;
    cli_common c;
    campaign_flags f = {.out = CLI_OUT_TABLE};
    if (cli_parse(cmd, argc - skip, argv + skip, opts, &c, campaign_flag, &f))
        return 2;
    if (f.have_max && strcmp(sub, "extend") != 0)
        return cli_fail(cmd, 2, "--max-trials is a flag of campaign extend");
    if (strcmp(sub, "extend") == 0 && !f.have_max)
        return cli_fail(cmd, 2, "--max-trials N is required");
    if (f.out != CLI_OUT_TABLE && (strcmp(sub, "cancel") == 0 || strcmp(sub, "extend") == 0))
        return cli_fail(cmd, 2, "--format is a flag of campaign list and show");

    char dsn[2 * PATH_MAX + 128];
    int rc = cli_db_dsn(cmd, f.db, 0, dsn, sizeof dsn);
    if (rc)
        return rc;
    pvf_err err;
    pvf_db *db;
    if (pvf_db_open(&db, dsn, &err))
        return cli_fail(cmd, 1, "%s", err.msg);
    pvf_table t = {0};
    int found;
    if (list) {
        found = pvf_report_campaign_list(db, &t, &err) ? -1 : 1;
        if (found > 0)
            cli_print_rows(&t, f.out, NULL);
    } else if (strcmp(sub, "show") == 0) {
        found = pvf_report_campaign(db, id, &t, &err);
        if (found > 0)
            print_show(&t, f.out);
    } else if (strcmp(sub, "cancel") == 0) {
        found = pvf_campaign_cancel(db, id, &err);
        if (found > 0)
            printf("campaign %" PRId64 " cancelled\n", id);
    } else {
        found = pvf_campaign_extend(db, id, f.max_trials, &err);
        if (found > 0)
            printf("campaign %" PRId64 " extended to %" PRId64 " trials per stratum\n", id,
                   f.max_trials);
    }
    pvf_db_close(db);
    pvf_table_free(&t);
    if (found < 0)
        return cli_fail(cmd, 1, "%s", err.msg);
    if (found == 0)
        return cli_fail(cmd, 1, "no campaign %" PRId64, id);
    return 0;
}
