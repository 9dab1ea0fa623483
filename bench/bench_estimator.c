/* bench_estimator - cost of one push + stopping check per trial, as the
 * coordinator pays it: streams of simulated trials run until the stratum
 * stops, the check after every trial. Prints the median over repeats of the
 * mean ns per trial, for the fast check and for the exact (bisection every
 * trial) reference, for BETA on 0/1 values and EB on fractions.
 *
 *   bench_estimator [RUNS_PER_REPEAT] [REPEATS] */
#include "pvf_estimator.h"
#include "sampler.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Trial values are drawn before timing, so only the estimator is measured. */
static double *draw(uint64_t n, double p, int fraction, uint64_t seed) {
    double *x = malloc(n * sizeof *x);
    if (!x)
        return NULL;
    for (uint64_t i = 0; i < n; i++) {
        if (!fraction) {
            x[i] = (double)(pvf_rng(seed, 0, i, 0) >> 11) * 0x1p-53 < p;
            continue;
        }
        int c = 0; /* fraction of 10 eval inputs wrong */
        for (uint64_t j = 0; j < 10; j++)
            c += (double)(pvf_rng(seed, 0, i, j) >> 11) * 0x1p-53 < p;
        x[i] = c / 10.0;
    }
    return x;
}

typedef struct config {
    const char *name;
    pvf_cs_kind kind;
    double p, margin;
    int exact;
} config;

/* ns per trial for `runs` streams (consecutive windows of x) run to a stop. */
static double run(const config *c, const double *x, uint64_t nx, int runs, uint64_t *trials_out) {
    pvf_stop_rule rule = {c->margin, 0, nx / (uint64_t)runs, 0};
    uint64_t trials = 0;
    double t0 = now();
    for (int r = 0; r < runs; r++) {
        pvf_cs cs;
        pvf_err err;
        if (pvf_cs_init(&cs, c->kind, 0.05, &err))
            return -1;
        const double *v = x + (uint64_t)r * rule.max_trials;
        pvf_stop s = PVF_CONTINUE;
        for (uint64_t i = 0; s == PVF_CONTINUE; i++) {
            if (pvf_cs_push(&cs, v[i], &err))
                return -1;
            s = c->exact ? pvf_cs_check_exact(&cs, &rule) : pvf_cs_check(&cs, &rule);
        }
        trials += pvf_cs_t(&cs);
    }
    double secs = now() - t0;
    *trials_out = trials;
    return secs * 1e9 / (double)trials;
}

int main(int argc, char **argv) {
    int runs = argc > 1 ? atoi(argv[1]) : 20;
    int repeats = argc > 2 ? atoi(argv[2]) : 5;
    if (runs < 1 || repeats < 1 || repeats > 100) {
        fprintf(stderr, "usage: bench_estimator [RUNS>0] [REPEATS 1..100]\n");
        return 2;
    }
    static const config configs[] = {
        {"beta p=0.5 margin=0.01", PVF_CS_BETA, 0.5, 0.01, 0},
        {"beta p=0.5 margin=0.01 exact", PVF_CS_BETA, 0.5, 0.01, 1},
        {"beta p=0.05 margin=0.005", PVF_CS_BETA, 0.05, 0.005, 0},
        {"beta p=0.05 margin=0.005 exact", PVF_CS_BETA, 0.05, 0.005, 1},
        {"beta p=0.005 margin=0.001", PVF_CS_BETA, 0.005, 0.001, 0},
        {"beta p=0.005 margin=0.001 exact", PVF_CS_BETA, 0.005, 0.001, 1},
        {"eb frac p=0.05 margin=0.005", PVF_CS_EB, 0.05, 0.005, 0},
    };
    printf("%d streams to a stop per repeat, %d repeats, alpha 0.05, check after every trial\n",
           runs, repeats);
    printf("%-34s %14s %14s %12s\n", "config", "ns/trial (med)", "trials/stream", "trials/s");
    const uint64_t cap = 300000; /* per stream; never reached by these margins */
    for (size_t ci = 0; ci < sizeof configs / sizeof configs[0]; ci++) {
        const config *c = &configs[ci];
        int n = c->exact ? (runs + 9) / 10 : runs; /* the reference is slow */
        double *x = draw(cap * (uint64_t)n, c->p, c->kind == PVF_CS_EB, 1 + ci / 2);
        if (!x) {
            fprintf(stderr, "bench_estimator: out of memory\n");
            return 1;
        }
        double ns[100];
        uint64_t trials = 0;
        for (int r = 0; r < repeats; r++)
            if ((ns[r] = run(c, x, cap * (uint64_t)n, n, &trials)) < 0) {
                fprintf(stderr, "bench_estimator: %s failed\n", c->name);
                free(x);
                return 1;
            }
        qsort(ns, (size_t)repeats, sizeof ns[0], cmp_double);
        double med = ns[repeats / 2];
        printf("%-34s %14.1f %14.0f %12.3g\n", c->name, med, (double)trials / n, 1e9 / med);
        free(x);
    }
    return 0;
}
