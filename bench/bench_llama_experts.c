/* bench_llama_experts - what a routed-expert fault costs on the Llama 4
 * fast path, per expert: the eval tokens the golden routing sends to it,
 * fast and naive microseconds per trial (single bit flips uniform over that
 * expert's stored bits; median of REPEATS), the stage rows a fast trial runs
 * (token rows inside the faulty layer and the head, whole sequences through
 * the carried stages) and the share of fast trials settled without
 * inference. A fault in an expert no eval token visits should cost nothing,
 * and the others in proportion to the tokens they serve.
 *
 *   bench_llama_experts [MODEL_DIR] [FORMAT] [TRIALS_PER_REPEAT] [REPEATS] [INPUTS]
 *
 * INPUTS: the first eval sequences only (0: all); the naive side runs
 * TRIALS / 10 (at least 2) per repeat.
 *
 * Per MoE layer it ends with a least-squares line through (tokens served,
 * fast us): cost in proportion to the tokens has a small intercept. */
#include "llama4.h"
#include "runner.h"
#include "sampler.h"

#include <inttypes.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); /* one thread: CPU time, not the neighbours' */
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median microseconds per trial over `repeats` runs of `trials` trials on
 * target t; adds the stage rows and settled trials of all runs. */
static int time_trials(pvf_runner *r, int t, int naive, int trials, int repeats, double *us,
                       int64_t *rows, int64_t *settled, pvf_err *err) {
    pvf_fault_model fm = {PVF_FAULT_BITFLIP, -1, 1};
    double per[100];
    r->exec.naive = naive;
    for (int rep = 0; rep < repeats; rep++) {
        double t0 = now();
        for (int i = 0; i < trials; i++) {
            pvf_fault_site site;
            pvf_trial_result res;
            uint64_t index = (uint64_t)rep * (uint64_t)trials + (uint64_t)i;
            if (pvf_sample_site(&r->model, &t, 1, &fm, 11, (uint64_t)t, index, &site, err) ||
                pvf_trial_run(&r->exec, &r->golden, fm.kind, &site, r->out, &res, err))
                return -1;
            *rows += res.stage_rows;
            *settled += (res.flags & PVF_TRIAL_SETTLED) != 0;
        }
        per[rep] = (now() - t0) * 1e6 / trials;
    }
    qsort(per, (size_t)repeats, sizeof *per, cmp_double);
    *us = per[repeats / 2];
    r->exec.naive = 0;
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "models/fortunes-llama4";
    const char *fname = argc > 2 ? argv[2] : "fp32";
    int trials = argc > 3 ? atoi(argv[3]) : 100;
    int repeats = argc > 4 ? atoi(argv[4]) : 3;
    int64_t inputs = argc > 5 ? atoll(argv[5]) : 0;
    pvf_format fmt;
    if (pvf_format_parse(fname, &fmt) || trials < 1 || repeats < 1 || repeats > 100 || inputs < 0) {
        fprintf(stderr, "usage: bench_llama_experts [MODEL_DIR] [FORMAT] [TRIALS>0] "
                        "[REPEATS 1..100] [INPUTS>=0]\n");
        return 2;
    }
    pvf_runner r;
    pvf_err err;
    if (pvf_runner_open_limit(&r, dir, NULL, fmt, inputs, &err)) {
        fprintf(stderr, "bench_llama_experts: %s\n", err.msg);
        return 1;
    }
    const int naive_trials = trials / 10 > 2 ? trials / 10 : 2;
    printf("model %s, format %s, %" PRId64 " sequences; %d fast / %d naive trials x %d "
           "repeats per expert parameter, bit flips uniform over its stored bits\n",
           dir, pvf_format_name(fmt), r.golden.n, trials, naive_trials, repeats);
    printf("%-58s %7s %11s %11s %9s %12s %8s %9s\n", "parameter", "tokens", "fast us", "naive us",
           "speedup", "rows/trial", "settled", "us/token");
    /* per layer sums for the least-squares line us = a + b tokens */
    double *fit = calloc((size_t)r.model.nstages * 5, sizeof *fit);
    if (!fit) {
        fprintf(stderr, "bench_llama_experts: out of memory\n");
        pvf_runner_close(&r);
        return 1;
    }
    for (int t = 0; t < r.model.ntargets; t++) {
        const pvf_target *tg = &r.model.targets[t];
        const int64_t tokens = pvf_llama4_expert_tokens(&r.model, &r.golden, tg->param);
        if (tokens < 0 || tg->is_scale)
            continue;
        double fast_us, naive_us;
        int64_t rows = 0, settled = 0, naive_rows = 0, naive_settled = 0;
        if (time_trials(&r, t, 0, trials, repeats, &fast_us, &rows, &settled, &err) ||
            time_trials(&r, t, 1, naive_trials, repeats, &naive_us, &naive_rows, &naive_settled,
                        &err)) {
            fprintf(stderr, "bench_llama_experts: %s\n", err.msg);
            free(fit);
            pvf_runner_close(&r);
            return 1;
        }
        const double n = (double)trials * repeats;
        printf("%-58s %7" PRId64 " %11.1f %11.1f %8.0fx %12.1f %7.1f%% %9.2f\n", tg->name, tokens,
               fast_us, naive_us, naive_us / fast_us, (double)rows / n, 100.0 * (double)settled / n,
               tokens ? fast_us / (double)tokens : 0.0);
        double *f = fit + 5 * r.model.params[tg->param].stage;
        f[0] += 1.0;
        f[1] += (double)tokens;
        f[2] += fast_us;
        f[3] += (double)tokens * (double)tokens;
        f[4] += (double)tokens * fast_us;
    }
    for (int s = 0; s < r.model.nstages; s++) {
        const double *f = fit + 5 * s;
        const double den = f[0] * f[3] - f[1] * f[1];
        if (f[0] < 2 || den <= 0)
            continue;
        const double slope = (f[0] * f[4] - f[1] * f[2]) / den;
        const double icept = (f[2] - slope * f[1]) / f[0];
        printf("%s experts: fast us = %.1f + %.3f x tokens (%d parameters, mean %.0f tokens, "
               "mean %.1f us)\n",
               r.model.stages[s].name, icept, slope, (int)f[0], f[1] / f[0], f[2] / f[0]);
    }
    free(fit);
    pvf_runner_close(&r);
    return 0;
}
