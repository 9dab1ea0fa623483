/* bench_fast - the fast trial path against the naive full forward pass on
 * one core: single bit flips uniform over every stored bit of the model (all
 * targets, one stratum), per storage format. Prints trials/s both ways (the
 * median of R repeats), their ratio, the share of fast trials settled
 * without inference, and where the fast path's time goes: per stage of the
 * faulty parameter, its share of the trials and of the time.
 *
 *   bench_fast MODEL_DIR FAST_TRIALS NAIVE_TRIALS REPEATS [FORMAT...] */
#include "runner.h"
#include "sampler.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define MAX_STAGES  64
#define MAX_TARGETS 512

/* Trials per second of `trials` trials from index `base`; per-stage CPU
 * seconds and counts are added to stage_s/stage_n when given. */
static int run(pvf_runner *r, const int *all, int n, int trials, uint64_t base, double *rate,
               int64_t *settled, double *stage_s, int64_t *stage_n, double *target_s,
               int64_t *target_n) {
    pvf_fault_model fm = {PVF_FAULT_BITFLIP, -1, 1};
    pvf_err err;
    double t0 = cpu_now();
    for (int i = 0; i < trials; i++) {
        pvf_fault_site s;
        pvf_trial_result res;
        if (pvf_sample_site(&r->model, all, n, &fm, 1, 0, base + (uint64_t)i, &s, &err))
            goto fail;
        double a = cpu_now();
        if (pvf_trial_run(&r->exec, &r->golden, fm.kind, &s, r->out, &res, &err))
            goto fail;
        int st = r->model.params[r->model.targets[s.target].param].stage;
        double spent = cpu_now() - a;
        if (stage_s && st < MAX_STAGES) {
            stage_s[st] += spent;
            stage_n[st]++;
        }
        if (target_s && s.target < MAX_TARGETS) {
            target_s[s.target] += spent;
            target_n[s.target]++;
        }
        if (settled)
            *settled += (res.flags & PVF_TRIAL_SETTLED) != 0;
    }
    *rate = trials / (cpu_now() - t0);
    return 0;
fail:
    fprintf(stderr, "bench_fast: %s\n", err.msg);
    return -1;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr,
                "usage: bench_fast MODEL_DIR FAST_TRIALS NAIVE_TRIALS REPEATS [FORMAT...]\n");
        return 2;
    }
    const char *dir = argv[1];
    int fast_trials = atoi(argv[2]), naive_trials = atoi(argv[3]), repeats = atoi(argv[4]);
    if (fast_trials < 1 || naive_trials < 1 || repeats < 1 || repeats > 100)
        return 2;
    printf("model %s: bit flips uniform over all stored bits; CPU time, one core; median of %d\n",
           dir, repeats);
    printf("%-9s %12s %12s %9s %9s\n", "format", "naive t/s", "fast t/s", "ratio", "settled");
    for (int a = 5; a < argc || (argc == 5 && a == 5); a++) {
        pvf_format fmt = PVF_FMT_FP32;
        if (argc > 5 && pvf_format_parse(argv[a], &fmt)) {
            fprintf(stderr, "bench_fast: unknown format '%s'\n", argv[a]);
            return 2;
        }
        pvf_runner r;
        pvf_err err;
        if (pvf_runner_open(&r, dir, NULL, fmt, &err)) {
            fprintf(stderr, "bench_fast: %s\n", err.msg);
            return 1;
        }
        int all[512], n = 0;
        for (int t = 0; t < r.model.ntargets && n < 512; t++)
            all[n++] = t;
        double fast[100], naive[100], stage_s[MAX_STAGES] = {0}, target_s[MAX_TARGETS] = {0};
        int64_t settled = 0, stage_n[MAX_STAGES] = {0}, target_n[MAX_TARGETS] = {0};
        for (int rep = 0; rep < repeats; rep++) {
            r.exec.naive = 1;
            if (run(&r, all, n, naive_trials, (uint64_t)rep * (uint64_t)fast_trials, &naive[rep],
                    NULL, NULL, NULL, NULL, NULL))
                return 1;
            r.exec.naive = 0;
            if (run(&r, all, n, fast_trials, (uint64_t)rep * (uint64_t)fast_trials, &fast[rep],
                    &settled, stage_s, stage_n, target_s, target_n))
                return 1;
        }
        qsort(fast, (size_t)repeats, sizeof *fast, cmp_double);
        qsort(naive, (size_t)repeats, sizeof *naive, cmp_double);
        double f = fast[repeats / 2], nv = naive[repeats / 2], total = 0;
        printf("%-9s %12.2f %12.1f %8.1fx %8.1f%%\n", pvf_format_name(fmt), nv, f, f / nv,
               100.0 * (double)settled / ((double)fast_trials * repeats));
        for (int s = 0; s < r.model.nstages && s < MAX_STAGES; s++)
            total += stage_s[s];
        for (int s = 0; s < r.model.nstages && s < MAX_STAGES; s++)
            printf("    %-12s %6.1f%% of trials, %6.3f ms/trial, %6.1f%% of the fast time\n",
                   r.model.stages[s].name,
                   100.0 * (double)stage_n[s] / ((double)fast_trials * repeats),
                   stage_n[s] ? 1e3 * stage_s[s] / (double)stage_n[s] : 0.0,
                   total > 0 ? 100.0 * stage_s[s] / total : 0.0);
        if (getenv("BENCH_FAST_TARGETS"))
            for (int t = 0; t < r.model.ntargets && t < MAX_TARGETS; t++)
                if (target_n[t])
                    printf("      %-56s %5lld trials %8.3f ms/trial %5.1f%% of the time\n",
                           r.model.targets[t].name, (long long)target_n[t],
                           1e3 * target_s[t] / (double)target_n[t],
                           total > 0 ? 100.0 * target_s[t] / total : 0.0);
        pvf_runner_close(&r);
    }
    return 0;
}
