/* test_fast - the fast trial path against the plain one, trial by trial.
 *
 *   test_fast MODEL_DIR INPUTS FORMAT:TRIALS...
 *
 * For every trial (single bit flips uniform over every stored bit of the
 * model) the fast path (with its outputs materialized) and the naive full
 * forward pass must reach the same outcome on every eval input (every scored
 * position of a language model), a non-finite output included. An input
 * whose golden decision margin is below 1e-5 relative may differ by rounding
 * alone: such differences are counted and reported, not failed. Uses the
 * first INPUTS eval inputs, so that the naive side stays affordable.
 * PVF_TEST_SANITIZED divides the trials by 10; PVF_TEST_TARGET=NAME[,NAME...]
 * samples those fault targets only.
 */
#include "fast.h"
#include "kernels.h"
#include "runner.h"
#include "sampler.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* Relative margin of the decision at position p of row i: top-1 minus
 * top-2 over the larger magnitude; a one-output model decides at 0.5. */
static double golden_margin(const pvf_model *m, const pvf_golden *g, int64_t i, int64_t p) {
    const int64_t positions = m->out_positions > 0 ? m->out_positions : 1;
    const int64_t classes = m->out_size / positions;
    const float *row = g->out + i * m->out_size + p * classes;
    if (classes == 1)
        return fabs((double)row[0] - 0.5) / 0.5;
    double a = -INFINITY, b = -INFINITY;
    for (int64_t c = 0; c < classes; c++) {
        double v = row[c];
        if (v > a) {
            b = a;
            a = v;
        } else if (v > b) {
            b = v;
        }
    }
    double scale = fmax(fabs(a), fabs(b));
    return scale > 0 ? (a - b) / scale : 0.0;
}

/* 1 when every position of row i where the fast and naive outputs decide
 * differently is a near-tie of the faulty (naive) output itself, a top-2
 * margin below 1e-5 relative with both outputs finite: two exact
 * computations in different batch shapes (OpenBLAS sgemm rounds differently
 * for different M) may differ there by rounding alone, as at a golden one. */
static int faulty_near_tie(const pvf_model *m, int64_t i, const float *fast, const float *naive) {
    const int64_t positions = m->out_positions > 0 ? m->out_positions : 1;
    const int64_t classes = m->out_size / positions;
    if (classes == 1)
        return 0;
    for (int64_t p = 0; p < positions; p++) {
        const float *a = fast + i * m->out_size + p * classes;
        const float *b = naive + i * m->out_size + p * classes;
        if (!pvf_all_finite(a, classes) || !pvf_all_finite(b, classes))
            return 0;
        if (pvf_argmax(a, classes) == pvf_argmax(b, classes))
            continue;
        double x = -INFINITY, y = -INFINITY;
        for (int64_t c = 0; c < classes; c++) {
            if (b[c] > x) {
                y = x;
                x = b[c];
            } else if (b[c] > y) {
                y = b[c];
            }
        }
        const double scale = fmax(fabs(x), fabs(y));
        if (!(scale > 0 && (x - y) / scale < 1e-5))
            return 0;
    }
    return 1;
}

/* Incorrect outputs of row i of out (the architecture's outcome rule). */
static int64_t row_incorrect(const pvf_model *m, const pvf_golden *g, int64_t i, const float *out) {
    const int64_t positions = m->out_positions > 0 ? m->out_positions : 1;
    pvf_golden view = *g;
    view.n = 1;
    view.out = g->out + i * m->out_size;
    view.top1 = g->top1 + i * positions;
    pvf_trial_result r;
    memset(&r, 0, sizeof r);
    pvf_judge(m, &view, out + i * m->out_size, &r);
    return r.incorrect;
}

static void compare_model(const char *dir, int64_t inputs, pvf_format fmt, int64_t trials) {
    pvf_runner r;
    pvf_err err;
    int rc = pvf_runner_open_limit(&r, dir, NULL, fmt, inputs, &err);
    CHECK(rc == 0);
    if (rc) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    const pvf_model *m = &r.model;
    const int64_t n = r.golden.n, positions = m->out_positions > 0 ? m->out_positions : 1;
    float *naive = malloc((size_t)(n * m->out_size) * sizeof *naive);
    int *all = malloc((size_t)m->ntargets * sizeof *all);
    unsigned char *tiny = calloc((size_t)n, 1); /* rows with a sub-1e-5 golden margin */
    CHECK(naive && all && tiny);
    int ntargets = m->ntargets;
    for (int t = 0; t < m->ntargets; t++)
        all[t] = t;
    /* these targets' bits only, e.g. conv1.weight or conv1.weight,conv2.bias */
    const char *only = getenv("PVF_TEST_TARGET");
    if (only && *only) {
        ntargets = 0;
        for (const char *at = only; *at && ntargets < m->ntargets;) {
            const size_t len = strcspn(at, ",");
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)len, at);
            all[ntargets] = pvf_model_find_target(m, name);
            CHECK(all[ntargets] >= 0);
            ntargets += all[ntargets] >= 0;
            at += len + (at[len] == ',');
        }
        CHECK(ntargets > 0);
    }
    int64_t tiny_rows = 0;
    if (ntargets == 0) /* no such target: failed above */
        trials = 0;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t p = 0; p < positions; p++)
            if (golden_margin(m, &r.golden, i, p) < 1e-5)
                tiny[i] = 1;
        tiny_rows += tiny[i];
    }
    pvf_fault_model fm = {PVF_FAULT_BITFLIP, -1, 1};
    int64_t settled = 0, differ = 0, excused = 0, failed = 0, work_fast = 0, work_naive = 0;
    int64_t faulty_ties = 0; /* differences at near-ties of the faulty output */
    r.exec.want_outputs = 1;
    for (int64_t t = 0; t < trials; t++) {
        pvf_fault_site site;
        pvf_trial_result fast, plain;
        if (pvf_sample_site(m, all, ntargets, &fm, 7, 0, (uint64_t)t, &site, &err)) {
            CHECK(!"sample");
            break;
        }
        r.exec.naive = 0;
        int a = pvf_trial_run(&r.exec, &r.golden, fm.kind, &site, r.out, &fast, &err);
        r.exec.naive = 1;
        int b = pvf_trial_run(&r.exec, &r.golden, fm.kind, &site, naive, &plain, &err);
        CHECK(a == 0 && b == 0);
        if (a || b) {
            fprintf(stderr, "%s\n", err.msg);
            break;
        }
        settled += (fast.flags & PVF_TRIAL_SETTLED) != 0;
        work_fast += fast.stage_rows;
        work_naive += plain.stage_rows;
        /* A settled trial's outputs are golden's, so this also tests the bounds. */
        int bad = 0, tie = 0;
        for (int64_t i = 0; i < n; i++) {
            /* a non-finite output is a detectable error: its own outcome */
            if (pvf_all_finite(r.out + i * m->out_size, m->out_size) !=
                pvf_all_finite(naive + i * m->out_size, m->out_size)) {
                if (!bad++)
                    fprintf(stderr,
                            "%s %s trial %" PRId64 ": %s[%" PRId64 "] mask 0x%x: input %" PRId64
                            " finite %d fast, %d naive\n",
                            dir, pvf_format_name(fmt), t, m->targets[site.target].name,
                            site.element, site.mask, i,
                            pvf_all_finite(r.out + i * m->out_size, m->out_size),
                            pvf_all_finite(naive + i * m->out_size, m->out_size));
                continue;
            }
            if (row_incorrect(m, &r.golden, i, r.out) == row_incorrect(m, &r.golden, i, naive))
                continue;
            differ++;
            if (tiny[i]) {
                excused++;
            } else if (faulty_near_tie(m, i, r.out, naive)) {
                faulty_ties++;
                tie = 1;
            } else if (!bad++) {
                fprintf(stderr,
                        "%s %s trial %" PRId64 ": %s[%" PRId64 "] mask 0x%x: input %" PRId64
                        " differs (fast %" PRId64 ", naive %" PRId64 " incorrect)\n",
                        dir, pvf_format_name(fmt), t, m->targets[site.target].name, site.element,
                        site.mask, i, row_incorrect(m, &r.golden, i, r.out),
                        row_incorrect(m, &r.golden, i, naive));
            }
        }
        failed += bad != 0;
        if (!bad && (fast.nonfinite != plain.nonfinite ||
                     (fast.incorrect != plain.incorrect && !excused && !tie)))
            failed++;
    }
    CHECK(failed == 0);
    fprintf(stderr,
            "%s %s: %" PRId64 " trials x %" PRId64 " inputs both ways; %" PRId64
            " failed; settled without inference %.1f%%; work fast/naive %.2e; inputs with a "
            "golden margin < 1e-5: %" PRId64 ", outcome differences on them: %" PRId64
            "; at faulty near-ties: %" PRId64 "\n",
            dir, pvf_format_name(fmt), trials, n, failed, 100.0 * (double)settled / (double)trials,
            work_naive ? (double)work_fast / (double)work_naive : 0.0, tiny_rows, excused,
            faulty_ties);
    (void)differ;
    free(naive);
    free(all);
    free(tiny);
    pvf_runner_close(&r);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: test_fast MODEL_DIR INPUTS FORMAT:TRIALS...\n");
        return 2;
    }
    const int sanitized = getenv("PVF_TEST_SANITIZED") != NULL;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/models/%s", PVF_SOURCE_DIR, argv[1]);
    for (int a = 3; a < argc; a++) {
        char name[64];
        snprintf(name, sizeof name, "%s", argv[a]);
        char *colon = strchr(name, ':');
        pvf_format fmt;
        CHECK(colon != NULL);
        if (!colon)
            continue;
        *colon = '\0';
        CHECK(pvf_format_parse(name, &fmt) == 0);
        int64_t trials = atoll(colon + 1);
        compare_model(dir, atoll(argv[2]), fmt, sanitized ? trials / 10 : trials);
    }
    return test_summary();
}
