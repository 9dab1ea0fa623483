/* bench_trials - trials per second on one core for a bundled model, per
 * storage format: single bit flips uniform over every stored bit of the
 * model (all targets, one stratum), each trial a forward pass from the
 * faulty stage over the whole eval set. Prints the median of R repeats.
 *
 *   bench_trials [MODEL_DIR] [TRIALS_PER_REPEAT] [REPEATS] */
#include "runner.h"
#include "sampler.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now(void) {
    return clock_s(CLOCK_MONOTONIC);
}

/* CPU seconds of this (single-threaded) process: the cost of a trial on a
 * shared machine, where wall time also counts the other tenants. */
static double cpu_now(void) {
    return clock_s(CLOCK_PROCESS_CPUTIME_ID);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "models/fmnist-lenet";
    int trials = argc > 2 ? atoi(argv[2]) : 200;
    int repeats = argc > 3 ? atoi(argv[3]) : 5;
    if (trials < 1 || repeats < 1 || repeats > 100) {
        fprintf(stderr, "usage: bench_trials [MODEL_DIR] [TRIALS>0] [REPEATS 1..100]\n");
        return 2;
    }
    printf("model %s, %d trials x %d repeats per format, bit flips uniform over all stored bits\n",
           dir, trials, repeats);
    printf("%-9s %10s %12s %12s %12s %14s\n", "format", "trials/s", "ms/trial", "golden ms",
           "masked", "trials/cpu-s");
    for (int f = 0; f < PVF_FMT_COUNT; f++) {
        pvf_runner r;
        pvf_err err;
        if (pvf_runner_open(&r, dir, NULL, (pvf_format)f, &err)) {
            fprintf(stderr, "bench_trials: %s\n", err.msg);
            return 1;
        }
        int all[256], n = 0;
        for (int t = 0; t < r.model.ntargets && n < 256; t++)
            all[n++] = t;
        pvf_fault_model fm = {PVF_FAULT_BITFLIP, -1, 1};
        double rate[100], golden[100], cpu_rate[100];
        int64_t masked = 0, total = 0;
        for (int rep = 0; rep < repeats; rep++) {
            double t0 = now(), c0 = cpu_now();
            for (int i = 0; i < trials; i++) {
                pvf_fault_site s;
                pvf_trial_result res;
                uint64_t index = (uint64_t)rep * (uint64_t)trials + (uint64_t)i;
                if (pvf_sample_site(&r.model, all, n, &fm, 1, 0, index, &s, &err) ||
                    pvf_trial_run(&r.exec, &r.golden, fm.kind, &s, r.out, &res, &err)) {
                    fprintf(stderr, "bench_trials: %s\n", err.msg);
                    return 1;
                }
                masked += (res.flags & PVF_TRIAL_MASKED) != 0;
                total++;
            }
            rate[rep] = trials / (now() - t0);
            cpu_rate[rep] = trials / (cpu_now() - c0);
            t0 = now();
            pvf_forward_from(&r.exec, &r.golden, 0, r.out, &err);
            golden[rep] = (now() - t0) * 1e3;
        }
        qsort(rate, (size_t)repeats, sizeof *rate, cmp_double);
        qsort(golden, (size_t)repeats, sizeof *golden, cmp_double);
        qsort(cpu_rate, (size_t)repeats, sizeof *cpu_rate, cmp_double);
        printf("%-9s %10.1f %12.3f %12.2f %11.1f%% %14.1f\n", pvf_format_name((pvf_format)f),
               rate[repeats / 2], 1e3 / rate[repeats / 2], golden[repeats / 2],
               100.0 * (double)masked / (double)total, cpu_rate[repeats / 2]);
        pvf_runner_close(&r);
    }
    return 0;
}
