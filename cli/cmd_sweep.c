/* pvf sweep: N trials on every fault target (tensor or scale) in one
 * process; per-target PVF with 95% Wilson intervals and the whole-model PVF
 * weighted by each target's share of the stored bits. */
#include "cli.h"
#include "pool.h"
#include "pvf_stats.h"
#include "runner.h"
#include "sampler.h"

#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CMD        "sweep"
#define MAX_FILTER 64

/* A stratum: one target (--by tensor), or the selected targets of one
 * component or one layer (the stage that reads them). */
typedef struct sweep_row {
    char name[112];
    int *targets;
    int ntargets;
    int64_t elements;
    int bits;            /* word width, 0 when the targets differ */
    int is_scale;        /* --by tensor: the target is a scale */
    uint64_t stratum;    /* sampler stream of the row */
    uint64_t population; /* fault sites of the row under the fault model */
    int64_t trials, any_wrong, nonfinite, unchanged;
    double sum;                /* of trial values */
    double pvf, lo, hi;        /* mean trial value and its Wilson interval */
    double p_any, p_nonfinite; /* shares of trials with any wrong / non-finite output */
} sweep_row;

static int selected(const char *name, char *const *filter, int nfilter) {
    if (nfilter == 0)
        return 1;
    for (int i = 0; i < nfilter; i++)
        if (strcmp(filter[i], name) == 0)
            return 1;
    return 0;
}

static void print_table(const pvf_runner *r, const sweep_row *rows, int nrows,
                        const sweep_row *total, const char *fault, int64_t trials, uint64_t seed,
                        double secs, int executors, const char *by) {
    const pvf_model *m = &r->model;
    printf("pvf sweep: %s, format %s, fault %s, %" PRId64 " trials per %s, seed %" PRIu64
           ", %" PRId64 " eval inputs\n\n",
           m->dir, pvf_format_name(m->format), fault, trials, by, seed, r->golden.n);
    printf("%-22s %10s %4s %7s %9s %21s %9s %8s\n", by, "elements", "bits", "trials", "PVF",
           "95% Wilson", "P(wrong)", "NaN/Inf");
    int64_t elements = 0;
    int ntargets = 0;
    for (int i = 0; i < nrows; i++) {
        const sweep_row *w = &rows[i];
        char bits[8] = "mix";
        if (w->bits)
            snprintf(bits, sizeof bits, "%d", w->bits);
        printf("%-22s %10" PRId64 " %4s %7" PRId64 " %9.5f  [%8.5f, %8.5f] %9.4f %8.4f\n", w->name,
               w->elements, bits, w->trials, w->pvf, w->lo, w->hi, w->p_any, w->p_nonfinite);
        elements += w->elements;
        ntargets += w->ntargets;
    }
    printf("%-22s %10" PRId64 " %4s %7" PRId64 " %9.5f  [%8.5f, %8.5f] %9.4f %8.4f\n",
           ntargets == m->ntargets ? "model (site-weighted)" : "selected (site-weighted)", elements,
           "", total->trials, total->pvf, total->lo, total->hi, total->p_any, total->p_nonfinite);
    printf("\n%" PRId64 " trials in %.2f s: %.1f trials/s on %d executor%s (%s)\n", total->trials,
           secs, (double)total->trials / secs, executors, executors > 1 ? "s" : "",
           r->exec.naive ? "naive: a full forward pass per trial" : "fast path");
}

static void print_json(const pvf_runner *r, const sweep_row *rows, int nrows,
                       const sweep_row *total, const char *fault, int64_t trials, uint64_t seed,
                       double secs, int executors, const char *by) {
    const pvf_model *m = &r->model;
    json_t *targets = json_array();
    for (int i = 0; i < nrows; i++) {
        const sweep_row *w = &rows[i];
        json_t *members = json_array();
        for (int t = 0; t < w->ntargets; t++)
            json_array_append_new(members, json_string(m->targets[w->targets[t]].name));
        json_array_append_new(
            targets,
            json_pack("{s:s, s:o, s:b, s:I, s:i, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:I}", "name",
                      w->name, "members", members, "scale", w->is_scale, "elements",
                      (json_int_t)w->elements, "bits", w->bits, "population",
                      (json_int_t)w->population, "trials", (json_int_t)w->trials, "pvf", w->pvf,
                      "low", w->lo, "high", w->hi, "p_any_wrong", w->p_any, "p_nonfinite",
                      w->p_nonfinite, "unchanged", (json_int_t)w->unchanged));
    }
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:I, s:I, s:I, s:o, s:{s:f, s:f, s:f, s:f, s:f}, s:I, "
        "s:f, s:f}",
        "model", m->dir, "format", pvf_format_name(m->format), "fault", fault, "trials_per_target",
        (json_int_t)trials, "seed", (json_int_t)seed, "inputs", (json_int_t)r->golden.n, "targets",
        targets, "model_pvf", "pvf", total->pvf, "low", total->lo, "high", total->hi, "p_any_wrong",
        total->p_any, "p_nonfinite", total->p_nonfinite, "trials", (json_int_t)total->trials,
        "seconds", secs, "trials_per_second", (double)total->trials / secs);
    json_object_set_new(o, "executors", json_integer(executors));
    json_object_set_new(o, "by", json_string(by));
    if (m->outcome_threshold > 0)
        json_object_set_new(o, "threshold", json_real(m->outcome_threshold));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
    puts(s);
    free(s);
    json_decref(o);
}

/* Per-target figures from the results (rows x trials, row-major), and the
 * whole-model ones: targets weighted by their share of fault sites (every
 * stored bit equally likely to be hit). Weighting each target's interval
 * bounds gives an interval that holds whenever all of the per-target ones do. */
static void summarize(sweep_row *rows, int nrows, const pvf_trial_result *results, int64_t trials,
                      sweep_row *total) {
    *total = (sweep_row){0};
    for (int k = 0; k < nrows; k++) {
        sweep_row *w = &rows[k];
        for (int64_t i = 0; i < trials; i++) {
            const pvf_trial_result *res = &results[(size_t)k * (size_t)trials + (size_t)i];
            w->sum += res->value;
            w->any_wrong += res->incorrect > 0;
            w->nonfinite += res->nonfinite > 0;
            w->unchanged += (res->flags & PVF_TRIAL_UNCHANGED) != 0;
        }
        w->trials = trials;
        w->pvf = w->sum / (double)trials;
        w->p_any = (double)w->any_wrong / (double)trials;
        w->p_nonfinite = (double)w->nonfinite / (double)trials;
        pvf_wilson(w->pvf, trials, PVF_Z95, &w->lo, &w->hi);
        double pop = (double)w->population;
        total->population += w->population;
        total->trials += trials;
        total->pvf += pop * w->pvf;
        total->lo += pop * w->lo;
        total->hi += pop * w->hi;
        total->p_any += pop * w->p_any;
        total->p_nonfinite += pop * w->p_nonfinite;
    }
    double all = (double)total->population;
    total->pvf /= all;
    total->lo /= all;
    total->hi /= all;
    total->p_any /= all;
    total->p_nonfinite /= all;
}

typedef enum { BY_TENSOR, BY_COMPONENT, BY_LAYER, BY_LAYER_COMPONENT, BY_COUNT } sweep_by;
static const char *const by_names[] = {"tensor", "component", "layer", "layer.component"};

typedef struct sweep_args {
    int64_t trials, executors;
    uint64_t seed;
    char *filter[MAX_FILTER]; /* --tensor, repeatable */
    int nfilter;
    sweep_by by;
} sweep_args;

/* The group a target belongs to under --by: its name, its component, its
 * layer (the stage that reads it), or both ("layer.1.attention.q"). */
static void group_of(const pvf_model *m, int target, sweep_by by, char *out, size_t n) {
    const pvf_param *p = &m->params[m->targets[target].param];
    const char *stage = m->stages[p->stage].name;
    if (by == BY_COMPONENT)
        snprintf(out, n, "%s", p->component);
    else if (by == BY_LAYER || (by == BY_LAYER_COMPONENT && strcmp(stage, p->component) == 0))
        snprintf(out, n, "%s", stage);
    else if (by == BY_LAYER_COMPONENT)
        snprintf(out, n, "%s.%s", stage, p->component);
    else
        snprintf(out, n, "%s", m->targets[target].name);
}

/* Rows for the selected targets the fault model can hit, in model order:
 * one per target, or one per group. Returns the number of rows. */
static int make_rows(const pvf_model *m, const sweep_args *a, const pvf_fault_model *fm,
                     sweep_row *rows, int *members) {
    int nrows = 0;
    for (int t = 0; t < m->ntargets; t++) {
        if (!selected(m->targets[t].name, a->filter, a->nfilter) ||
            pvf_stratum_population(m, &t, 1, fm) == 0)
            continue; /* the fault model cannot hit this target (e.g. bit 20 of an int8 code) */
        char g[sizeof rows->name];
        group_of(m, t, a->by, g, sizeof g);
        int k = 0;
        while (k < nrows && strcmp(rows[k].name, g) != 0)
            k++;
        if (k == nrows) {
            rows[nrows++] = (sweep_row){.bits = m->targets[t].bits};
            snprintf(rows[k].name, sizeof rows[k].name, "%s", g);
            /* the same seed draws the same sites: stratum = target index per
             * tensor, a stream of its own per group kind */
            rows[k].stratum =
                a->by == BY_TENSOR ? (uint64_t)t : ((uint64_t)a->by << 32) | (uint64_t)k;
        }
        sweep_row *w = &rows[k];
        if (w->bits != m->targets[t].bits)
            w->bits = 0;
        w->is_scale = a->by == BY_TENSOR && m->targets[t].is_scale;
        w->elements += m->targets[t].numel;
        w->ntargets++;
    }
    /* members laid out row after row */
    int at = 0;
    for (int k = 0; k < nrows; k++) {
        rows[k].targets = members + at;
        at += rows[k].ntargets;
        rows[k].ntargets = 0;
    }
    for (int t = 0; t < m->ntargets; t++) {
        if (!selected(m->targets[t].name, a->filter, a->nfilter) ||
            pvf_stratum_population(m, &t, 1, fm) == 0)
            continue;
        char g[sizeof rows->name];
        group_of(m, t, a->by, g, sizeof g);
        for (int k = 0; k < nrows; k++)
            if (strcmp(rows[k].name, g) == 0) {
                rows[k].targets[rows[k].ntargets++] = t;
                break;
            }
    }
    for (int k = 0; k < nrows; k++)
        rows[k].population = pvf_stratum_population(m, rows[k].targets, rows[k].ntargets, fm);
    return nrows;
}

static int sweep_flag(const char *cmd, int opt, const char *arg, void *ctx) {
    sweep_args *a = ctx;
    switch (opt) {
    case 'n':
        return cli_int64(cmd, "--trials", arg, 1, INT64_C(1) << 40, &a->trials) ? -1 : 1;
    case 's':
        return cli_uint64(cmd, "--seed", arg, &a->seed) ? -1 : 1;
    case 'e':
        return cli_int64(cmd, "--executors", arg, 1, 256, &a->executors) ? -1 : 1;
    case 't':
        if (a->nfilter == MAX_FILTER) {
            cli_fail(cmd, 2, "--tensor: at most %d", MAX_FILTER);
            return -1;
        }
        a->filter[a->nfilter++] = (char *)arg;
        return 1;
    case 'B':
        for (int i = 0; i < BY_COUNT; i++)
            if (strcmp(arg, by_names[i]) == 0) {
                a->by = (sweep_by)i;
                return 1;
            }
        cli_fail(cmd, 2, "--by: '%s' is not tensor, component, layer or layer.component", arg);
        return -1;
    default:
        return 0;
    }
}

int pvf_cmd_sweep(int argc, char **argv) {
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         CLI_FAULT_OPTION,
                                         CLI_THRESHOLD_OPTION,
                                         CLI_NAIVE_OPTION,
                                         {"by", required_argument, 0, 'B'},
                                         {"trials", required_argument, 0, 'n'},
                                         {"seed", required_argument, 0, 's'},
                                         {"tensor", required_argument, 0, 't'},
                                         {"executors", required_argument, 0, 'e'},
                                         {0, 0, 0, 0}};
    cli_common c;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    sweep_args a = {.trials = -1, .executors = cores > 0 ? cores : 1, .seed = 1};
    if (cli_parse(CMD, argc, argv, opts, &c, sweep_flag, &a))
        return 2;
    if (a.trials < 0)
        return cli_fail(CMD, 2, "--trials N is required");
    pvf_err err;
    pvf_runner r;
    if (pvf_runner_open(&r, c.model, c.data, c.format, &err))
        return cli_fail(CMD, 1, "%s", err.msg);
    r.exec.naive = c.naive;
    pvf_model *m = &r.model;
    int rc = 0;
    sweep_row *rows = NULL;
    int *members = NULL;
    pvf_trial_spec *specs = NULL;
    pvf_trial_result *results = NULL;
    if (cli_apply_threshold(CMD, &c, m)) {
        rc = 2;
        goto done;
    }
    for (int i = 0; i < a.nfilter; i++)
        if (pvf_model_find_target(m, a.filter[i]) < 0) {
            rc = cli_fail(CMD, 2, "--tensor: '%s' is not a fault target of %s in %s", a.filter[i],
                          c.model, pvf_format_name(c.format));
            goto done;
        }
    rows = calloc((size_t)m->ntargets, sizeof *rows);
    members = calloc((size_t)m->ntargets, sizeof *members);
    if (!rows || !members) {
        rc = cli_fail(CMD, 1, "out of memory");
        goto done;
    }
    int nrows = make_rows(m, &a, &c.fault, rows, members);
    if (nrows == 0) {
        rc = cli_fail(CMD, 2, "--fault: the fault model fits no selected target");
        goto done;
    }
    size_t ntrials = (size_t)nrows * (size_t)a.trials;
    specs = calloc(ntrials, sizeof *specs);
    results = calloc(ntrials, sizeof *results);
    if (!specs || !results) {
        rc = cli_fail(CMD, 1, "out of memory for %zu trials", ntrials);
        goto done;
    }
    for (int k = 0; k < nrows; k++)
        for (int64_t i = 0; i < a.trials; i++)
            specs[(size_t)k * (size_t)a.trials + (size_t)i] =
                (pvf_trial_spec){rows[k].targets, rows[k].ntargets, rows[k].stratum, (uint64_t)i};
    double t0 = pvf_now();
    if (pvf_pool_run(&r, &c.fault, a.seed, specs, ntrials, (int)a.executors, results, &err)) {
        rc = cli_fail(CMD, 1, "%s", err.msg);
        goto done;
    }
    double secs = pvf_now() - t0;
    sweep_row total;
    summarize(rows, nrows, results, a.trials, &total);
    char fault[32];
    pvf_fault_model_format(&c.fault, fault, sizeof fault);
    if (c.json)
        print_json(&r, rows, nrows, &total, fault, a.trials, a.seed, secs, (int)a.executors,
                   by_names[a.by]);
    else
        print_table(&r, rows, nrows, &total, fault, a.trials, a.seed, secs, (int)a.executors,
                    by_names[a.by]);
done:
    free(specs);
    free(results);
    free(rows);
    free(members);
    pvf_runner_close(&r);
    return rc;
}
