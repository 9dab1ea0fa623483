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

typedef struct sweep_row {
    const char *name; /* the target, or the component */
    int *targets;     /* the stratum: one target, or a component's targets */
    int ntargets;
    int64_t elements;    /* stored words */
    int bits;            /* word width, 0 when the targets differ */
    int is_scale;        /* (one target) a scale */
    uint64_t population; /* fault sites of the stratum under the fault model */
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
                        double secs, int executors, int by_component, int all) {
    const pvf_model *m = &r->model;
    const char *unit = by_component ? "component" : "target";
    printf("pvf sweep: %s, format %s, fault %s, %" PRId64 " trials per %s, seed %" PRIu64
           ", %" PRId64 " eval inputs\n\n",
           m->dir, pvf_format_name(m->format), fault, trials, unit, seed, r->golden.n);
    printf("%-22s %10s %4s %7s %9s %21s %9s %8s\n", unit, "elements", "bits", "trials", "PVF",
           "95% Wilson", "P(wrong)", "NaN/Inf");
    for (int i = 0; i < nrows; i++) {
        const sweep_row *w = &rows[i];
        char bits[8];
        snprintf(bits, sizeof bits, w->bits ? "%d" : "-", w->bits);
        printf("%-22s %10" PRId64 " %4s %7" PRId64 " %9.5f  [%8.5f, %8.5f] %9.4f %8.4f\n", w->name,
               w->elements, bits, w->trials, w->pvf, w->lo, w->hi, w->p_any, w->p_nonfinite);
    }
    int64_t elements = 0;
    for (int i = 0; i < nrows; i++)
        elements += rows[i].elements;
    printf("%-22s %10" PRId64 " %4s %7" PRId64 " %9.5f  [%8.5f, %8.5f] %9.4f %8.4f\n",
           all ? "model (site-weighted)" : "selected (site-weighted)", elements, "", total->trials,
           total->pvf, total->lo, total->hi, total->p_any, total->p_nonfinite);
    printf("\n%" PRId64 " trials in %.2f s: %.1f trials/s on %d executor%s (full forward from "
           "the faulty stage)\n",
           total->trials, secs, (double)total->trials / secs, executors, executors > 1 ? "s" : "");
}

static void print_json(const pvf_runner *r, const sweep_row *rows, int nrows,
                       const sweep_row *total, const char *fault, int64_t trials, uint64_t seed,
                       double secs, int executors, int by_component) {
    const pvf_model *m = &r->model;
    json_t *list = json_array();
    for (int i = 0; i < nrows; i++) {
        const sweep_row *w = &rows[i];
        json_t *o =
            json_pack("{s:s, s:I, s:i, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:I}", "name", w->name,
                      "elements", (json_int_t)w->elements, "bits", w->bits, "population",
                      (json_int_t)w->population, "trials", (json_int_t)w->trials, "pvf", w->pvf,
                      "low", w->lo, "high", w->hi, "p_any_wrong", w->p_any, "p_nonfinite",
                      w->p_nonfinite, "unchanged", (json_int_t)w->unchanged);
        if (by_component) {
            json_t *names = json_array();
            for (int k = 0; k < w->ntargets; k++)
                json_array_append_new(names, json_string(m->targets[w->targets[k]].name));
            json_object_set_new(o, "targets", names);
        } else {
            json_object_set_new(o, "scale", json_boolean(w->is_scale));
        }
        json_array_append_new(list, o);
    }
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:o, s:{s:f, s:f, s:f, s:f, s:f}, s:I, "
                  "s:f, s:f}",
                  "model", m->dir, "format", pvf_format_name(m->format), "fault", fault,
                  by_component ? "trials_per_component" : "trials_per_target", (json_int_t)trials,
                  "seed", (json_int_t)seed, "inputs", (json_int_t)r->golden.n,
                  by_component ? "components" : "targets", list, "model_pvf", "pvf", total->pvf,
                  "low", total->lo, "high", total->hi, "p_any_wrong", total->p_any, "p_nonfinite",
                  total->p_nonfinite, "trials", (json_int_t)total->trials, "seconds", secs,
                  "trials_per_second", (double)total->trials / secs);
    json_object_set_new(o, "executors", json_integer(executors));
    char *str = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
    puts(str);
    free(str);
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

typedef struct sweep_args {
    int64_t trials, executors;
    uint64_t seed;
    int by_component;         /* --by component: one stratum per component */
    char *filter[MAX_FILTER]; /* --tensor, repeatable */
    int nfilter;
} sweep_args;

static int sweep_flag(const char *cmd, int opt, const char *arg, void *ctx) {
    sweep_args *a = ctx;
    switch (opt) {
    case 'n':
        return cli_int64(cmd, "--trials", arg, 1, INT64_C(1) << 40, &a->trials) ? -1 : 1;
    case 's':
        return cli_uint64(cmd, "--seed", arg, &a->seed) ? -1 : 1;
    case 'e':
        return cli_int64(cmd, "--executors", arg, 1, 256, &a->executors) ? -1 : 1;
    case 'b':
        if (strcmp(arg, "target") != 0 && strcmp(arg, "component") != 0) {
            cli_fail(cmd, 2, "--by: '%s' is not target or component", arg);
            return -1;
        }
        a->by_component = strcmp(arg, "component") == 0;
        return 1;
    case 't':
        if (a->nfilter == MAX_FILTER) {
            cli_fail(cmd, 2, "--tensor: at most %d", MAX_FILTER);
            return -1;
        }
        a->filter[a->nfilter++] = (char *)arg;
        return 1;
    default:
        return 0;
    }
}

int pvf_cmd_sweep(int argc, char **argv) {
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         CLI_FAULT_OPTION,
                                         {"trials", required_argument, 0, 'n'},
                                         {"seed", required_argument, 0, 's'},
                                         {"tensor", required_argument, 0, 't'},
                                         {"executors", required_argument, 0, 'e'},
                                         {"by", required_argument, 0, 'b'},
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
    const pvf_model *m = &r.model;
    int rc = 0;
    sweep_row *rows = NULL;
    int *members = NULL;
    pvf_trial_spec *specs = NULL;
    pvf_trial_result *results = NULL;
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
    /* Strata: each selected target that the fault model can hit, or each
     * component (a parameter's group, model.h) with its targets, in model
     * order; members holds every row's targets contiguously. */
    int nrows = 0, nmembers = 0;
    for (int t = 0; t < m->ntargets; t++) {
        const pvf_target *tg = &m->targets[t];
        const char *key = a.by_component ? m->params[tg->param].component : tg->name;
        if (!selected(tg->name, a.filter, a.nfilter) ||
            pvf_stratum_population(m, &t, 1, &c.fault) == 0)
            continue; /* the fault model cannot hit this target (e.g. bit 20 of an int8 code) */
        int k = 0;
        while (k < nrows && strcmp(rows[k].name, key) != 0)
            k++;
        if (k == nrows) {
            rows[nrows++] = (sweep_row){.name = key, .bits = tg->bits, .is_scale = tg->is_scale};
        }
        if (rows[k].bits != tg->bits)
            rows[k].bits = 0;
        rows[k].elements += tg->numel;
        rows[k].ntargets++;
        nmembers++;
    }
    if (nrows == 0) {
        rc = cli_fail(CMD, 2, "--fault: the fault model fits no selected target");
        goto done;
    }
    /* lay the members out row by row (targets in model order inside a row) */
    nmembers = 0;
    for (int k = 0; k < nrows; k++) {
        rows[k].targets = members + nmembers;
        nmembers += rows[k].ntargets;
        rows[k].ntargets = 0;
    }
    for (int t = 0; t < m->ntargets; t++) {
        const pvf_target *tg = &m->targets[t];
        const char *key = a.by_component ? m->params[tg->param].component : tg->name;
        if (!selected(tg->name, a.filter, a.nfilter) ||
            pvf_stratum_population(m, &t, 1, &c.fault) == 0)
            continue;
        for (int k = 0; k < nrows; k++)
            if (strcmp(rows[k].name, key) == 0) {
                rows[k].targets[rows[k].ntargets++] = t;
                break;
            }
    }
    for (int k = 0; k < nrows; k++)
        rows[k].population = pvf_stratum_population(m, rows[k].targets, rows[k].ntargets, &c.fault);
    size_t ntrials = (size_t)nrows * (size_t)a.trials;
    specs = calloc(ntrials, sizeof *specs);
    results = calloc(ntrials, sizeof *results);
    if (!specs || !results) {
        rc = cli_fail(CMD, 1, "out of memory for %zu trials", ntrials);
        goto done;
    }
    /* stratum = target index (or 2^32 + component row): the same seed gives
     * the same sites in any run */
    for (int k = 0; k < nrows; k++) {
        uint64_t stratum =
            a.by_component ? (UINT64_C(1) << 32) + (uint64_t)k : (uint64_t)rows[k].targets[0];
        for (int64_t i = 0; i < a.trials; i++)
            specs[(size_t)k * (size_t)a.trials + (size_t)i] =
                (pvf_trial_spec){rows[k].targets, rows[k].ntargets, stratum, (uint64_t)i};
    }
    double t0 = cli_now();
    if (pvf_pool_run(&r, &c.fault, a.seed, specs, ntrials, (int)a.executors, results, &err)) {
        rc = cli_fail(CMD, 1, "%s", err.msg);
        goto done;
    }
    double secs = cli_now() - t0;
    sweep_row total;
    summarize(rows, nrows, results, a.trials, &total);
    char fault[32];
    pvf_fault_model_format(&c.fault, fault, sizeof fault);
    if (c.json)
        print_json(&r, rows, nrows, &total, fault, a.trials, a.seed, secs, (int)a.executors,
                   a.by_component);
    else
        print_table(&r, rows, nrows, &total, fault, a.trials, a.seed, secs, (int)a.executors,
                    a.by_component, nmembers == m->ntargets);
done:
    free(specs);
    free(results);
    free(rows);
    free(members);
    pvf_runner_close(&r);
    return rc;
}
