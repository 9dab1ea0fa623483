/* pvf report: a campaign's estimates per stratum, tensor, component or bit
 * position, and its model-level PVF, from the reporting views; and the
 * result printers the database commands share. */
#include "cli.h"
#include "pvf_sql.h"

#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD "report"

/* ---- printers ------------------------------------------------------------- */

static json_t *cell_json(const pvf_table *t, int r, int c) {
    const char *v = pvf_table_get(t, r, c);
    if (!v)
        return json_null();
    switch (t->kinds[c]) {
    case 'i':
        return json_integer(strtoll(v, NULL, 10));
    case 'f': {
        double x = strtod(v, NULL);
        return isfinite(x) ? json_real(x) : json_null();
    }
    case 'b':
        return json_boolean(*v == 't');
    case 'j': {
        json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
        return j ? j : json_string(v);
    }
    default:
        return json_string(v);
    }
}

json_t *cli_row_json(const pvf_table *t, int r) {
    json_t *o = json_object();
    for (int c = 0; c < t->ncols; c++)
        json_object_set_new(o, t->names[c], cell_json(t, r, c));
    return o;
}

static void csv_field(const char *s) {
    if (!s)
        return;
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, stdout);
        return;
    }
    putchar('"');
    for (; *s; s++) {
        if (*s == '"')
            putchar('"');
        putchar(*s);
    }
    putchar('"');
}

/* A cell as the table shows it. */
static const char *cell_text(const pvf_table *t, int r, int c, char *buf, size_t len) {
    const char *v = pvf_table_get(t, r, c);
    if (!v)
        return "-";
    if (t->kinds[c] == 'b')
        return *v == 't' ? "yes" : "no";
    if (t->kinds[c] == 'f') {
        snprintf(buf, len, "%.4g", strtod(v, NULL));
        return buf;
    }
    return v;
}

void cli_print_rows(const pvf_table *t, cli_out out, const char *level) {
    if (out == CLI_OUT_JSON) {
        json_t *a = json_array();
        for (int r = 0; r < t->nrows; r++)
            json_array_append_new(a, cli_row_json(t, r));
        json_dumpf(a, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
        putchar('\n');
        json_decref(a);
        return;
    }
    if (out == CLI_OUT_CSV) {
        if (level)
            fputs("level,", stdout);
        for (int c = 0; c < t->ncols; c++) {
            csv_field(t->names[c]);
            putchar(c + 1 < t->ncols ? ',' : '\n');
        }
        for (int r = 0; r < t->nrows; r++) {
            if (level)
                printf("%s,", level);
            for (int c = 0; c < t->ncols; c++) {
                csv_field(pvf_table_get(t, r, c));
                putchar(c + 1 < t->ncols ? ',' : '\n');
            }
        }
        return;
    }
    /* table: columns as wide as their widest cell, numbers right-aligned;
     * columns with nothing in them left out (w = -1) */
    int *w = calloc((size_t)t->ncols + 1, sizeof *w);
    if (!w)
        return;
    char buf[64];
    int last = -1;
    for (int c = 0; c < t->ncols; c++) {
        int any = t->nrows == 0;
        w[c] = (int)strlen(t->names[c]);
        for (int r = 0; r < t->nrows; r++) {
            any |= pvf_table_get(t, r, c) != NULL;
            int n = (int)strlen(cell_text(t, r, c, buf, sizeof buf));
            if (n > w[c])
                w[c] = n;
        }
        if (!any)
            w[c] = -1;
        else
            last = c;
    }
    for (int c = 0; c <= last; c++)
        if (w[c] >= 0)
            printf("%-*s%s", c < last ? w[c] : 0, t->names[c], c < last ? "  " : "\n");
    for (int r = 0; r < t->nrows; r++)
        for (int c = 0; c <= last; c++) {
            if (w[c] < 0)
                continue;
            int right = t->kinds[c] == 'i' || t->kinds[c] == 'f';
            const char *s = cell_text(t, r, c, buf, sizeof buf);
            if (c == last)
                printf("%*s\n", right ? w[c] : 0, s);
            else
                printf(right ? "%*s  " : "%-*s  ", w[c], s);
        }
    free(w);
}

/* ---- pvf report ----------------------------------------------------------- */

typedef struct report_flags {
    const char *db;
    int64_t campaign;
    int have_campaign;
    pvf_report_by by;
    cli_out out;
} report_flags;

static int report_flag(const char *cmd, int opt, const char *arg, void *ctx) {
    report_flags *f = ctx;
    switch (opt) {
    case 'D':
        f->db = arg;
        return 1;
    case 'c':
        f->have_campaign = 1;
        return cli_int64(cmd, "--campaign", arg, 1, INT64_MAX, &f->campaign) ? -1 : 1;
    case 'o':
        return cli_out_parse(cmd, arg, &f->out) ? -1 : 1;
    case 'b':
        if (pvf_report_by_parse(arg, &f->by) == 0)
            return 1;
        cli_fail(cmd, 2, "--by: unknown grouping '%s' (expected stratum, tensor, component, bit)",
                 arg);
        return -1;
    default:
        return 0;
    }
}

/* Column of t named name, or -1. */
static int col(const pvf_table *t, const char *name) {
    for (int c = 0; c < t->ncols; c++)
        if (strcmp(t->names[c], name) == 0)
            return c;
    return -1;
}

static const char *get(const pvf_table *t, const char *name) {
    return pvf_table_get(t, 0, col(t, name));
}

static const char *or_dash(const char *s) {
    return s ? s : "-";
}

/* The model-level figures of a progress row, as JSON. */
static json_t *model_json(const pvf_table *p) {
    static const char *const keys[] = {"strata",      "strata_stopped", "trials_done",
                                       "trials_used", "estimate",       "lo",
                                       "hi",          "stopped",        "converged"};
    json_t *o = json_object();
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        json_object_set_new(o, keys[i], cell_json(p, 0, col(p, keys[i])));
    return o;
}

static void print_report(const report_flags *f, const pvf_table *p, const pvf_table *rows) {
    static const char *const by_names[] = {"stratum", "tensor", "component", "bit"};
    if (f->out == CLI_OUT_JSON) {
        json_t *o = json_object();
        json_object_set_new(o, "campaign", json_integer(f->campaign));
        json_object_set_new(o, "state", cell_json(p, 0, col(p, "state")));
        json_object_set_new(o, "by", json_string(by_names[f->by]));
        json_t *a = json_array();
        for (int r = 0; r < rows->nrows; r++)
            json_array_append_new(a, cli_row_json(rows, r));
        json_object_set_new(o, "rows", a);
        json_object_set_new(o, "model", model_json(p));
        json_dumpf(o, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
        putchar('\n');
        json_decref(o);
        return;
    }
    if (f->out == CLI_OUT_CSV) {
        /* one header; the model-level row last, under the same columns */
        cli_print_rows(rows, CLI_OUT_CSV, by_names[f->by]);
        printf("model");
        for (int c = 0; c < rows->ncols; c++) {
            int pc = col(p, rows->names[c]);
            putchar(',');
            csv_field(pc >= 0 && strcmp(rows->names[c], "interval_kind") != 0
                          ? pvf_table_get(p, 0, pc)
                          : NULL);
        }
        putchar('\n');
        return;
    }
    printf("campaign %" PRId64 " (%s): model %s, format %s, fault %s, %s strata\n", f->campaign,
           get(p, "state"), or_dash(get(p, "model_dir")), or_dash(get(p, "format")),
           or_dash(get(p, "fault")), or_dash(get(p, "strata_kind")));
    cli_print_rows(rows, CLI_OUT_TABLE, NULL);
    const char *est = get(p, "estimate"), *lo = get(p, "lo"), *hi = get(p, "hi");
    printf("model-level PVF %s%.4g [%.4g, %.4g], %s trials used, %s of %s strata stopped, %s\n",
           est ? "" : "(not estimated yet) ", est ? strtod(est, NULL) : NAN,
           lo ? strtod(lo, NULL) : 0.0, hi ? strtod(hi, NULL) : 1.0, get(p, "trials_used"),
           get(p, "strata_stopped"), get(p, "strata"),
           *get(p, "converged") == 't' ? "converged" : "not converged");
}

int pvf_cmd_report(int argc, char **argv) {
    static const struct option opts[] = {{"db", required_argument, 0, 'D'},
                                         {"campaign", required_argument, 0, 'c'},
                                         {"format", required_argument, 0, 'o'},
                                         {"by", required_argument, 0, 'b'},
                                         {0, 0, 0, 0}};
    cli_common c;
    report_flags f = {.by = PVF_BY_STRATUM, .out = CLI_OUT_TABLE};
    if (cli_parse(CMD, argc, argv, opts, &c, report_flag, &f))
        return 2;
    if (!f.have_campaign)
        return cli_fail(CMD, 2, "--campaign ID is required");
    char dsn[2 * PATH_MAX + 128];
    int rc = cli_db_dsn(CMD, f.db, 0, dsn, sizeof dsn);
    if (rc)
        return rc;
    pvf_err err;
    pvf_db *db;
    if (pvf_db_open(&db, dsn, &err))
        return cli_fail(CMD, 1, "%s", err.msg);
    pvf_table p = {0}, rows = {0};
    int found = pvf_report_campaign(db, f.campaign, &p, &err);
    if (found > 0)
        found = pvf_report_rows(db, f.campaign, f.by, &rows, &err);
    pvf_db_close(db);
    if (found < 0)
        rc = cli_fail(CMD, 1, "%s", err.msg);
    else if (found == 0)
        rc = cli_fail(CMD, 1, "no campaign %" PRId64, f.campaign);
    else
        print_report(&f, &p, &rows);
    pvf_table_free(&p);
    pvf_table_free(&rows);
    return rc;
}
