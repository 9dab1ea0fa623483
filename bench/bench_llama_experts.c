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
 * fast us): cost in proportion to the tokens has a small intercept. The
 * same per bit band: flips of stored bits below SPLIT (default 18: fp32
 * mantissa bits 0-17, which in the bundled model rarely change a prediction,
 * 16 top-1 changes in 300 trials of bits 14-17, and are for the sound bound
 * to settle) and from SPLIT up.
 *
 *   bench_llama_experts [MODEL_DIR] [FORMAT] [TRIALS] [REPEATS] [INPUTS] [SPLIT] */
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

/* CPU seconds and trials of one bit band: [0] bits below the split, [1] the others. */
typedef struct band_time {
    double seconds[2];
    int64_t trials[2];
} band_time;

/* Median microseconds per trial over `repeats` runs of `trials` trials on
 * target t; adds the stage rows and settled trials of all runs, and each
 * trial's time to its bit band (bits below `split` or not) in *bands. */
static int time_trials(pvf_runner *r, int t, int naive, int trials, int repeats, int split,
                       double *us, int64_t *rows, int64_t *settled, band_time *bands,
                       pvf_err *err) {
    pvf_fault_model fm = {PVF_FAULT_BITFLIP, -1, 1};
    double per[100];
    r->exec.naive = naive;
    for (int rep = 0; rep < repeats; rep++) {
        double t0 = now();
        for (int i = 0; i < trials; i++) {
            pvf_fault_site site;
            pvf_trial_result res;
            uint64_t index = (uint64_t)rep * (uint64_t)trials + (uint64_t)i;
            const double t1 = now();
            if (pvf_sample_site(&r->model, &t, 1, &fm, 11, (uint64_t)t, index, &site, err) ||
                pvf_trial_run(&r->exec, &r->golden, fm.kind, &site, r->out, &res, err))
                return -1;
            const int high = site.mask >= (1u << split);
            bands->seconds[high] += now() - t1;
            bands->trials[high]++;
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
    int split = argc > 6 ? atoi(argv[6]) : 18;
    pvf_format fmt;
    if (pvf_format_parse(fname, &fmt) || trials < 1 || repeats < 1 || repeats > 100 || inputs < 0 ||
        split < 1 || split > 31) {
        fprintf(stderr, "usage: bench_llama_experts [MODEL_DIR] [FORMAT] [TRIALS>0] "
                        "[REPEATS 1..100] [INPUTS>=0] [SPLIT 1..31]\n");
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
           "repeats per expert parameter, bit flips uniform over its stored bits; bit bands "
           "0-%d and %d-\n",
           dir, pvf_format_name(fmt), r.golden.n, trials, naive_trials, repeats, split - 1, split);
    printf("%-58s %7s %10s %10s %10s %10s %8s %11s %8s %9s\n", "parameter", "tokens", "fast us",
           "low us", "high us", "naive us", "speedup", "rows/trial", "settled", "us/token");
    /* per layer sums for the least-squares lines us = a + b tokens of all
     * trials and of each bit band: n, sum x, sum x^2, then (sum y, sum xy) x 3 */
    enum { FIT = 9 };
    double *fit = calloc((size_t)r.model.nstages * FIT, sizeof *fit);
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
        band_time bands = {{0.0, 0.0}, {0, 0}}, naive_bands = bands;
        if (time_trials(&r, t, 0, trials, repeats, split, &fast_us, &rows, &settled, &bands,
                        &err) ||
            time_trials(&r, t, 1, naive_trials, repeats, split, &naive_us, &naive_rows,
                        &naive_settled, &naive_bands, &err)) {
            fprintf(stderr, "bench_llama_experts: %s\n", err.msg);
            free(fit);
            pvf_runner_close(&r);
            return 1;
        }
        const double n = (double)trials * repeats;
        double band_us[2];
        for (int i = 0; i < 2; i++)
            band_us[i] = bands.trials[i] ? bands.seconds[i] * 1e6 / (double)bands.trials[i] : 0.0;
        printf("%-58s %7" PRId64 " %10.1f %10.1f %10.1f %10.1f %7.0fx %11.1f %7.1f%% %9.2f\n",
               tg->name, tokens, fast_us, band_us[0], band_us[1], naive_us, naive_us / fast_us,
               (double)rows / n, 100.0 * (double)settled / n,
               tokens ? fast_us / (double)tokens : 0.0);
        double *f = fit + FIT * r.model.params[tg->param].stage;
        const double x = (double)tokens, y[3] = {fast_us, band_us[0], band_us[1]};
        f[0] += 1.0;
        f[1] += x;
        f[2] += x * x;
        for (int i = 0; i < 3; i++) {
            f[3 + 2 * i] += y[i];
            f[4 + 2 * i] += x * y[i];
        }
    }
    for (int s = 0; s < r.model.nstages; s++) {
        const double *f = fit + FIT * s;
        const double den = f[0] * f[2] - f[1] * f[1];
        if (f[0] < 2 || den <= 0)
            continue;
        static const char *what[3] = {"all bits", "low bits", "high bits"};
        for (int i = 0; i < 3; i++) {
            const double sy = f[3 + 2 * i], sxy = f[4 + 2 * i];
            const double slope = (f[0] * sxy - f[1] * sy) / den;
            const double icept = (sy - slope * f[1]) / f[0];
            printf("%s experts, %-9s: fast us = %.1f + %.3f x tokens (%d parameters, mean %.0f "
                   "tokens, mean %.1f us)\n",
                   r.model.stages[s].name, what[i], icept, slope, (int)f[0], f[1] / f[0],
                   sy / f[0]);
        }
    }
    free(fit);
    pvf_runner_close(&r);
    return 0;
}
