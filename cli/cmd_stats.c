/* pvf stats simulate: the stopping rule on simulated strata of known PVF.
 * Runs R streams of Bernoulli(P) trial values (or fractions of M eval inputs
 * wrong, each input wrong with probability P) through the confidence
 * sequence, checked after every trial, and reports how often the final
 * interval holds P (the coverage the confidence promises), how many trials
 * the stop took, and Leveugle's fixed n for the same margin and confidence.
 * Streams come from the counter-based pvf_rng keyed by (seed, run, trial),
 * so the same flags print the same figures. */
#include "cli.h"
#include "pvf_estimator.h"
#include "pvf_stats.h"
#include "sampler.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD "stats simulate"

typedef struct sim_args {
    double p, margin, confidence;
    int64_t runs, max_trials, inputs;
    uint64_t seed;
    int fraction; /* --values fraction: EB on fractions; else BETA on 0/1 */
    int json;
} sim_args;

/* A real flag value in [min, max] (open ends when the flag says so). */
static int parse_real(const char *flag, const char *s, double min, double max, int open,
                      double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    int in = open ? v > min && v < max : v >= min && v <= max;
    if (*s == '\0' || *end != '\0' || errno || !isfinite(v) || !in) {
        cli_fail(CMD, 2, "%s: '%s' is not a number in %s%g, %g%s", flag, s, open ? "(" : "[", min,
                 max, open ? ")" : "]");
        return -1;
    }
    *out = v;
    return 0;
}

static int sim_flag(const char *cmd, int opt, const char *arg, void *ctx) {
    sim_args *a = ctx;
    switch (opt) {
    case 'p':
        return parse_real("--p", arg, 0.0, 1.0, 0, &a->p) ? -1 : 1;
    case 'e':
        return parse_real("--margin", arg, 0.0, 1.0, 1, &a->margin) ? -1 : 1;
    case 'c':
        return parse_real("--confidence", arg, 0.0, 1.0, 1, &a->confidence) ? -1 : 1;
    case 'r':
        return cli_int64(cmd, "--runs", arg, 1, 10000000, &a->runs) ? -1 : 1;
    case 'n':
        return cli_int64(cmd, "--max-trials", arg, 1, INT64_C(1) << 40, &a->max_trials) ? -1 : 1;
    case 'm':
        return cli_int64(cmd, "--inputs", arg, 1, 1000000, &a->inputs) ? -1 : 1;
    case 's':
        return cli_uint64(cmd, "--seed", arg, &a->seed) ? -1 : 1;
    case 'j':
        a->json = 1;
        return 1;
    case 'v':
        if (strcmp(arg, "binary") == 0 || strcmp(arg, "fraction") == 0) {
            a->fraction = arg[0] == 'f';
            return 1;
        }
        cli_fail(cmd, 2, "--values: unknown kind '%s' (expected binary or fraction)", arg);
        return -1;
    default:
        return 0;
    }
}

/* Trial `trial` of run `run`: 0/1 with P(1) = p, or the share of `inputs`
 * eval inputs wrong, each with probability p. */
static double trial_value(const sim_args *a, uint64_t run, uint64_t trial) {
    int m = a->fraction ? (int)a->inputs : 1, wrong = 0;
    for (int j = 0; j < m; j++)
        wrong += (double)(pvf_rng(a->seed, run, trial, (uint64_t)j) >> 11) * 0x1p-53 < a->p;
    return a->fraction ? (double)wrong / (double)m : (double)wrong;
}

static int cmp_u64(const void *x, const void *y) {
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

typedef struct sim_result {
    double coverage, mean_trials, median_trials, share_capped, mean_half;
    uint64_t leveugle_half, leveugle_p; /* fixed n at p = 0.5 and p = P */
} sim_result;

static int simulate(const sim_args *a, sim_result *res) {
    uint64_t *trials = malloc((size_t)a->runs * sizeof *trials);
    if (!trials)
        return cli_fail(CMD, 1, "out of memory for %" PRId64 " runs", a->runs);
    pvf_stop_rule rule = {a->margin, 0, (uint64_t)a->max_trials, 0};
    pvf_cs_kind kind = a->fraction ? PVF_CS_EB : PVF_CS_BETA;
    double alpha = 1.0 - a->confidence, sum_trials = 0, sum_half = 0;
    int64_t covered = 0, capped = 0;
    pvf_err err;
    for (int64_t r = 0; r < a->runs; r++) {
        pvf_cs cs;
        if (pvf_cs_init(&cs, kind, alpha, &err)) {
            free(trials);
            return cli_fail(CMD, 2, "%s", err.msg);
        }
        pvf_stop s = PVF_CONTINUE;
        for (uint64_t i = 0; s == PVF_CONTINUE; i++) {
            if (pvf_cs_push(&cs, trial_value(a, (uint64_t)r, i), &err)) {
                free(trials);
                return cli_fail(CMD, 1, "%s", err.msg);
            }
            s = pvf_cs_check(&cs, &rule);
        }
        double lo, hi;
        pvf_cs_bounds(&cs, &lo, &hi);
        covered += lo <= a->p && a->p <= hi;
        capped += s == PVF_STOP_CAP;
        trials[r] = pvf_cs_t(&cs);
        sum_trials += (double)trials[r];
        sum_half += 0.5 * (hi - lo);
    }
    qsort(trials, (size_t)a->runs, sizeof *trials, cmp_u64);
    size_t mid = (size_t)a->runs / 2;
    res->median_trials =
        a->runs % 2 ? (double)trials[mid] : 0.5 * ((double)trials[mid - 1] + (double)trials[mid]);
    free(trials);
    res->coverage = (double)covered / (double)a->runs;
    res->mean_trials = sum_trials / (double)a->runs;
    res->share_capped = (double)capped / (double)a->runs;
    res->mean_half = sum_half / (double)a->runs;
    if (pvf_leveugle_n(0, a->margin, a->confidence, 0.5, &res->leveugle_half, &err) ||
        pvf_leveugle_n(0, a->margin, a->confidence, a->p, &res->leveugle_p, &err))
        return cli_fail(CMD, 2, "%s", err.msg);
    return 0;
}

static void print_text(const sim_args *a, const sim_result *r, double secs) {
    if (a->fraction)
        printf("pvf stats simulate: %" PRId64 " runs, trial value = share of %" PRId64
               " inputs wrong (each with P = %g), empirical-Bernstein CS\n",
               a->runs, a->inputs, a->p);
    else
        printf("pvf stats simulate: %" PRId64 " runs, Bernoulli(P = %g) trials, Beta(1,1) CS\n",
               a->runs, a->p);
    printf("stop at half-width <= %g, confidence %g, checked after every trial, cap %" PRId64
           " trials, seed %" PRIu64 "\n\n",
           a->margin, a->confidence, a->max_trials, a->seed);
    printf("coverage (final interval holds P)  %.4f\n", r->coverage);
    printf("trials at stop, mean               %.1f\n", r->mean_trials);
    printf("trials at stop, median             %.1f\n", r->median_trials);
    printf("stopped by the cap                 %.4f\n", r->share_capped);
    printf("mean half-width at stop            %.6f\n", r->mean_half);
    printf("Leveugle fixed n, p = 0.5          %" PRIu64 "\n", r->leveugle_half);
    printf("Leveugle fixed n, p = P            %" PRIu64 "\n", r->leveugle_p);
    printf("\n%.2f s\n", secs);
}

static void print_json(const sim_args *a, const sim_result *r, double secs) {
    json_t *o = json_pack(
        "{s:f, s:f, s:f, s:I, s:I, s:I, s:s, s:s, s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:f}", "p",
        a->p, "margin", a->margin, "confidence", a->confidence, "runs", (json_int_t)a->runs, "seed",
        (json_int_t)a->seed, "max_trials", (json_int_t)a->max_trials, "values",
        a->fraction ? "fraction" : "binary", "cs", a->fraction ? "empirical-bernstein" : "beta",
        "coverage", r->coverage, "mean_trials", r->mean_trials, "median_trials", r->median_trials,
        "share_capped", r->share_capped, "mean_half_width", r->mean_half, "leveugle_n_p_half",
        (json_int_t)r->leveugle_half, "leveugle_n_p", (json_int_t)r->leveugle_p, "seconds", secs);
    if (a->fraction)
        json_object_set_new(o, "inputs", json_integer(a->inputs));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
    puts(s);
    free(s);
    json_decref(o);
}

static int cmd_simulate(int argc, char **argv) {
    static const struct option opts[] = {{"p", required_argument, 0, 'p'},
                                         {"margin", required_argument, 0, 'e'},
                                         {"confidence", required_argument, 0, 'c'},
                                         {"runs", required_argument, 0, 'r'},
                                         {"seed", required_argument, 0, 's'},
                                         {"max-trials", required_argument, 0, 'n'},
                                         {"values", required_argument, 0, 'v'},
                                         {"inputs", required_argument, 0, 'm'},
                                         {"json", no_argument, 0, 'j'},
                                         {0, 0, 0, 0}};
    sim_args a = {.p = -1,
                  .margin = -1,
                  .confidence = -1,
                  .runs = -1,
                  .seed = 1,
                  .max_trials = 10000000,
                  .inputs = -1};
    if (cli_parse(CMD, argc, argv, opts, NULL, sim_flag, &a))
        return 2;
    if (a.p < 0)
        return cli_fail(CMD, 2, "--p P is required (the simulated PVF)");
    if (a.margin < 0)
        return cli_fail(CMD, 2, "--margin E is required (stop at half-width <= E)");
    if (a.confidence < 0)
        return cli_fail(CMD, 2, "--confidence C is required (e.g. 0.95)");
    if (a.runs < 0)
        return cli_fail(CMD, 2, "--runs R is required");
    if (a.inputs > 0 && !a.fraction)
        return cli_fail(CMD, 2, "--inputs M needs --values fraction");
    if (a.inputs < 0)
        a.inputs = 10;
    double t0 = pvf_now();
    sim_result r;
    int rc = simulate(&a, &r);
    if (rc)
        return rc;
    double secs = pvf_now() - t0;
    if (a.json)
        print_json(&a, &r, secs);
    else
        print_text(&a, &r, secs);
    return 0;
}

int pvf_cmd_stats(int argc, char **argv) {
    if (argc < 2)
        return cli_fail("stats", 2, "missing subcommand (expected: simulate)");
    if (strcmp(argv[1], "simulate") == 0)
        return cmd_simulate(argc - 1, argv + 1);
    return cli_fail("stats", 2, "unknown subcommand '%s' (expected: simulate)", argv[1]);
}
