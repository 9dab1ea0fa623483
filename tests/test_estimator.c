/* The anytime-valid estimator: widths against reference/statistics.md §5,
 * the fast stopping check against the exact one, reproducibility, the
 * model-level combination, Bonferroni, and the fixed-n figures reported
 * beside (Leveugle, Clopper-Pearson). Random streams come from the
 * counter-based pvf_rng with fixed seeds. */
#include "pvf_estimator.h"
#include "pvf_stats.h"
#include "sampler.h"
#include "test.h"

#include <string.h>

static double uniform01(uint64_t seed, uint64_t stream, uint64_t i, uint64_t j) {
    return (double)(pvf_rng(seed, stream, i, j) >> 11) * 0x1p-53;
}

static double half_width(const pvf_cs *cs) {
    double lo, hi;
    pvf_cs_bounds(cs, &lo, &hi);
    return 0.5 * (hi - lo);
}

static void push_counts(pvf_cs *cs, uint64_t n, uint64_t k) {
    pvf_err err;
    for (uint64_t i = 0; i < n; i++)
        CHECK(pvf_cs_push(cs, i < k ? 1.0 : 0.0, &err) == 0);
}

/* §5.1 half-widths (alpha = 0.05, p^ = p); `unit` is the last printed digit,
 * so the tolerance is 2 % or half a unit, whichever is larger. */
static void test_width_table(void) {
    static const struct {
        double n, p, beta11, beta_half, unit;
    } rows[] = {
        {1e3, 0.5, 0.0556, 0.0576, 1e-4},     {1e3, 0.05, 0.0260, 0.0253, 1e-4},
        {1e3, 0.01, 0.0129, 0.0119, 1e-4},    {1e3, 0.001, 0.0062, 0.0050, 1e-4},
        {1e4, 0.5, 0.0192, 0.0198, 1e-4},     {1e4, 0.05, 0.0088, 0.0086, 1e-4},
        {1e4, 0.01, 0.0042, 0.0040, 1e-4},    {1e4, 0.001, 0.00150, 0.00131, 1e-5},
        {1e5, 0.5, 0.0065, 0.0067, 1e-4},     {1e5, 0.01, 0.00142, 0.00133, 1e-5},
        {1e5, 0.001, 0.00048, 0.00043, 1e-5}, {1e6, 0.5, 0.00220, 0.00225, 1e-5},
        {1e6, 0.01, 0.00047, 0.00045, 1e-5},  {1e6, 0.001, 0.00016, 0.00014, 1e-5},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint64_t n = (uint64_t)rows[i].n, k = (uint64_t)(rows[i].p * rows[i].n + 0.5);
        double lo, hi;
        pvf_beta_cs_bounds(n, k, 1.0, 1.0, 0.05, &lo, &hi);
        double tol = fmax(0.02 * rows[i].beta11, 0.5 * rows[i].unit);
        CHECK_NEAR(0.5 * (hi - lo), rows[i].beta11, tol);
        CHECK(lo < rows[i].p && rows[i].p < hi);
        pvf_beta_cs_bounds(n, k, 0.5, 0.5, 0.05, &lo, &hi);
        tol = fmax(0.02 * rows[i].beta_half, 0.5 * rows[i].unit);
        CHECK_NEAR(0.5 * (hi - lo), rows[i].beta_half, tol);
    }
    /* the state gives the same bounds as the free function */
    pvf_cs cs;
    pvf_err err;
    CHECK(pvf_cs_init(&cs, PVF_CS_BETA, 0.05, &err) == 0);
    push_counts(&cs, 1000, 10);
    CHECK(pvf_cs_t(&cs) == 1000);
    CHECK_NEAR(pvf_cs_mean(&cs), 0.01, 1e-15);
    CHECK_NEAR(half_width(&cs), 0.0129, 0.02 * 0.0129);
}

/* §5.5 zero failures, and the k = 0, Beta(1,1) closed form
 * p_hi = 1 - (alpha / (t+1))^(1/t) against the bisection. */
static void test_zero_failures(void) {
    static const double t_ref[][3] = {
        {1e3, 9.9e-3, 1e-4}, {1e4, 1.2e-3, 1e-4}, {1e5, 1.45e-4, 1e-6}, {1e6, 1.7e-5, 1e-6}};
    for (int i = 0; i < 4; i++) {
        double lo, hi;
        pvf_beta_cs_bounds((uint64_t)t_ref[i][0], 0, 1, 1, 0.05, &lo, &hi);
        CHECK(lo == 0.0);
        CHECK_NEAR(hi, t_ref[i][1], fmax(0.02 * t_ref[i][1], 0.5 * t_ref[i][2] * t_ref[i][1]));
    }
    static const double alphas[] = {0.05, 0.01, 1e-4, 0.3};
    for (int ai = 0; ai < 4; ai++)
        for (uint64_t t = 1; t <= 10000000; t = t * 3 + 1) {
            double a = alphas[ai], lo, hi, lo1, hi1;
            pvf_beta_cs_bounds(t, 0, 1, 1, a, &lo, &hi);
            double closed = -expm1(log(a / (double)(t + 1)) / (double)t);
            CHECK_NEAR(hi, closed, 1e-8 * closed); /* lgamma cancellation at large t */
            /* all ones: the mirror image */
            pvf_beta_cs_bounds(t, t, 1, 1, a, &lo1, &hi1);
            CHECK(hi1 == 1.0);
            CHECK_NEAR(1.0 - lo1, closed, 1e-8 * closed + 1e-15);
        }
}

/* §5.4: PrPl-EB on a simulated p = 0.01 path gives half-widths of order
 * 0.0115 / 0.0041 / 0.0015 at t = 1e3 / 1e4 / 1e5 (one path: within 35 %),
 * close to Beta(1,1)'s on the same 0/1 values, and its interval holds p. */
static void test_eb_path(void) {
    pvf_cs eb, beta;
    pvf_err err;
    CHECK(pvf_cs_init(&eb, PVF_CS_EB, 0.05, &err) == 0);
    CHECK(pvf_cs_init(&beta, PVF_CS_BETA, 0.05, &err) == 0);
    static const double at[] = {1e3, 1e4, 1e5}, ref[] = {0.0115, 0.0041, 0.0015};
    int next = 0;
    for (uint64_t i = 0; i < 100000; i++) {
        double x = uniform01(7, 0, i, 0) < 0.01 ? 1.0 : 0.0;
        CHECK(pvf_cs_push(&eb, x, &err) == 0);
        CHECK(pvf_cs_push(&beta, x, &err) == 0);
        if ((double)(i + 1) == at[next]) {
            double lo, hi, h = half_width(&eb), hb = half_width(&beta);
            pvf_cs_bounds(&eb, &lo, &hi);
            fprintf(stderr, "    EB t=%.0f: [%.5f, %.5f] half %.5f, Beta(1,1) half %.5f\n",
                    at[next], lo, hi, h, hb);
            CHECK(h > ref[next] / 1.35 && h < ref[next] * 1.35);
            CHECK(h > hb / 1.5 && h < hb * 1.5);
            CHECK(lo <= 0.01 && 0.01 <= hi);
            next++;
        }
    }
    CHECK(next == 3);
    /* fractions: mean of 20 Bernoulli(0.2) per trial; the EB interval
     * narrows like 1/sqrt(t) and holds the mean */
    CHECK(pvf_cs_init(&eb, PVF_CS_EB, 0.05, &err) == 0);
    double h1 = 0;
    for (uint64_t i = 0; i < 40000; i++) {
        int c = 0;
        for (uint64_t j = 0; j < 20; j++)
            c += uniform01(8, 0, i, j) < 0.2;
        CHECK(pvf_cs_push(&eb, c / 20.0, &err) == 0);
        if (i + 1 == 10000)
            h1 = half_width(&eb);
    }
    double lo, hi;
    pvf_cs_bounds(&eb, &lo, &hi);
    CHECK(lo <= 0.2 && 0.2 <= hi);
    CHECK(half_width(&eb) < 0.6 * h1); /* 4x the trials: about half the width */
    /* the variance is 0.2*0.8/20 = 0.008: far narrower than a 0/1 variable
     * of the same mean (Beta(1,1) at p = 0.2, t = 4e4: ~0.009) */
    CHECK(half_width(&eb) < 0.004);
}

/* One side of §4 D written out directly, at level a: the lower bound after
 * each of the n values (mu^_0 = 1/2, see estimator.c). */
static void eb_lower_direct(const double *x, int n, double a, double *out) {
    double sum = 0, sq = 0, sl = 0, slx = 0, svp = 0;
    for (int i = 1; i <= n; i++) {
        double s2_prev = (0.25 + sq) / i;
        double lam = fmin(0.5, sqrt(2 * log(1 / a) / (s2_prev * i * log(1.0 + i))));
        double mu_prev = i == 1 ? 0.5 : sum / (i - 1);
        double xi = x[i - 1];
        sl += lam;
        slx += lam * xi;
        svp += (xi - mu_prev) * (xi - mu_prev) * (-log(1 - lam) - lam);
        sum += xi;
        double mu_tilde = (0.5 + sum) / (i + 1);
        sq += (xi - mu_tilde) * (xi - mu_tilde);
        out[i - 1] = slx / sl - (log(1 / a) + svp) / sl;
    }
}

/* The EB state (one set of sums for both sides) against both sides computed
 * separately, the upper one on 1 - X, with the running intersection. */
static void test_eb_matches_direct(void) {
    enum { N = 5000 };
    static double xs[N], ys[N], low[N], low_y[N];
    for (int i = 0; i < N; i++) {
        int c = 0;
        for (uint64_t j = 0; j < 5; j++)
            c += uniform01(16, 0, (uint64_t)i, j) < 0.07;
        xs[i] = c / 5.0;
        ys[i] = 1.0 - xs[i];
    }
    eb_lower_direct(xs, N, 0.025, low);
    eb_lower_direct(ys, N, 0.025, low_y);
    pvf_cs cs;
    pvf_err err;
    CHECK(pvf_cs_init(&cs, PVF_CS_EB, 0.05, &err) == 0);
    double run_lo = 0, run_hi = 1, worst = 0;
    for (int i = 0; i < N; i++) {
        CHECK(pvf_cs_push(&cs, xs[i], &err) == 0);
        run_lo = fmax(run_lo, fmax(0, low[i]));
        run_hi = fmin(run_hi, fmin(1, 1 - low_y[i]));
        double lo, hi;
        pvf_cs_bounds(&cs, &lo, &hi);
        worst = fmax(worst, fmax(fabs(lo - run_lo), fabs(hi - run_hi)));
    }
    CHECK(worst < 1e-12);
    CHECK(run_lo > 0.05 && run_hi < 0.09); /* narrowed around 0.07 */
}

/* Time-uniform coverage (statistics.md §3): the share of streams whose
 * interval ever excludes the true p, looking every 10 trials up to 3,000,
 * stays below alpha = 0.05 (expected ~0.02-0.035; 400 streams, so the bar
 * is 0.07), while a 95 % Wilson interval looked at the same way misses far
 * more often (so this test can tell a CS from a fixed-n interval). */
static void test_time_uniform_coverage(void) {
    enum { STREAMS = 400, T = 3000, EVERY = 10 };
    pvf_err err;
    int beta_miss = 0, eb_miss = 0, wilson_miss = 0;
    for (uint64_t s = 0; s < STREAMS; s++) {
        pvf_cs beta, eb;
        CHECK(pvf_cs_init(&beta, PVF_CS_BETA, 0.05, &err) == 0);
        CHECK(pvf_cs_init(&eb, PVF_CS_EB, 0.05, &err) == 0);
        int bm = 0, em = 0, wm = 0;
        for (uint64_t i = 0; i < T; i++) {
            double b = uniform01(17, s, i, 0) < 0.1 ? 1.0 : 0.0;
            int c = 0; /* a fraction of 4 inputs, each wrong with p = 0.1 */
            for (uint64_t j = 1; j <= 4; j++)
                c += uniform01(17, s, i, j) < 0.1;
            CHECK(pvf_cs_push(&beta, b, &err) == 0);
            CHECK(pvf_cs_push(&eb, c / 4.0, &err) == 0);
            double lo, hi;
            pvf_cs_bounds(&eb, &lo, &hi);
            em |= lo > 0.1 || hi < 0.1;
            if ((i + 1) % EVERY)
                continue;
            pvf_cs_bounds(&beta, &lo, &hi);
            bm |= lo > 0.1 || hi < 0.1;
            pvf_wilson(pvf_cs_mean(&beta), (int64_t)(i + 1), PVF_Z95, &lo, &hi);
            wm |= i + 1 >= 30 && (lo > 0.1 || hi < 0.1);
        }
        beta_miss += bm;
        eb_miss += em;
        wilson_miss += wm;
    }
    fprintf(stderr, "    ever excluded p: Beta %d, EB %d, Wilson %d of %d streams\n", beta_miss,
            eb_miss, wilson_miss, STREAMS);
    CHECK(beta_miss < 0.07 * STREAMS);
    CHECK(eb_miss < 0.07 * STREAMS);
    CHECK(wilson_miss > 0.2 * STREAMS);
}

/* The fast check returns what the exact one returns at every trial, on many
 * random streams and rules, so the stopping times agree exactly. */
static void test_fast_check_equals_exact(void) {
    static const double margins[] = {0, 0.05, 0.02, 0.01, 0.005, 0.002};
    static const double rels[] = {0, 0.5, 0.3, 0.2};
    int streams = 0, stops[4] = {0};
    uint64_t steps = 0, certified = 0; /* checks after which a certificate stands */
    pvf_err err;
    for (uint64_t s = 0; s < 160; s++) {
        /* p log-uniform in [1e-3, 0.5], sometimes exactly 0 or 1 */
        double p = exp(log(1e-3) + uniform01(11, s, 0, 1) * (log(0.5) - log(1e-3)));
        if (s % 23 == 5)
            p = 0.0;
        if (s % 29 == 7)
            p = 1.0;
        if (s % 2)
            p = 1.0 - p;
        pvf_stop_rule rule = {margins[pvf_rng(11, s, 0, 2) % 6], rels[pvf_rng(11, s, 0, 3) % 4], 0,
                              0};
        if (rule.margin == 0 && rule.rel_margin == 0)
            rule.margin = 0.03;
        if (s % 3 == 0)
            rule.max_trials = 200 + pvf_rng(11, s, 0, 4) % 3000;
        if (s % 5 == 0)
            rule.min_trials = pvf_rng(11, s, 0, 5) % 500;
        if (rule.max_trials && rule.min_trials > rule.max_trials)
            rule.min_trials = rule.max_trials;
        if (rule.margin < 0.005 && !rule.max_trials)
            rule.max_trials = 6000; /* keep the exact reference affordable */
        CHECK(pvf_stop_rule_validate(&rule, &err) == 0);
        pvf_cs cs;
        CHECK(pvf_cs_init(&cs, PVF_CS_BETA, s % 4 ? 0.05 : 0.005, &err) == 0);
        pvf_stop fast = PVF_CONTINUE, exact = PVF_CONTINUE;
        int mismatches = 0;
        /* a third of the streams are not i.i.d. but sticky (long runs of 0s
         * and 1s): the mean, and with it rel_margin * mean, swings while a
         * certificate stands */
        int sticky = s % 3 == 1;
        double x = 0.0;
        for (uint64_t i = 0; i < 20000000 && fast == PVF_CONTINUE && exact == PVF_CONTINUE; i++) {
            double u = uniform01(11, s, i + 1, 0);
            if (!sticky)
                x = u < p ? 1.0 : 0.0;
            else if (u < 0.002)
                x = 1.0 - x;
            CHECK(pvf_cs_push(&cs, x, &err) == 0);
            exact = pvf_cs_check_exact(&cs, &rule);
            fast = pvf_cs_check(&cs, &rule);
            mismatches += fast != exact;
            steps++;
            certified += cs.cert_hi > cs.cert_lo;
        }
        CHECK(mismatches == 0);
        CHECK(fast != PVF_CONTINUE);
        stops[fast]++;
        streams++;
    }
    fprintf(stderr, "    %d streams: stopped by margin %d, relative margin %d, cap %d\n", streams,
            stops[PVF_STOP_MARGIN], stops[PVF_STOP_REL], stops[PVF_STOP_CAP]);
    fprintf(stderr, "    %" PRIu64 " checks, %.1f %% with a certificate standing\n", steps,
            100.0 * (double)certified / (double)steps);
    /* the fast path was taken (most checks skip the bisection) */
    CHECK(certified > steps / 2);
    /* every way of stopping was exercised */
    CHECK(stops[PVF_STOP_MARGIN] > 10 && stops[PVF_STOP_REL] > 5 && stops[PVF_STOP_CAP] > 5);
}

/* Stale certificates and skipped checks never change the answer: the fast
 * state checked only now and then still agrees with the exact rule. */
static void test_fast_check_sparse(void) {
    pvf_stop_rule rule = {0.01, 0, 0, 0};
    pvf_cs cs;
    pvf_err err;
    CHECK(pvf_cs_init(&cs, PVF_CS_BETA, 0.05, &err) == 0);
    int mismatches = 0, checks = 0;
    for (uint64_t i = 0; i < 30000; i++) {
        CHECK(pvf_cs_push(&cs, uniform01(12, 0, i, 0) < 0.3 ? 1.0 : 0.0, &err) == 0);
        if (pvf_rng(12, 1, i, 0) % 7 == 0) {
            pvf_stop f = pvf_cs_check(&cs, &rule), e = pvf_cs_check_exact(&cs, &rule);
            mismatches += f != e;
            checks++;
        }
    }
    CHECK(checks > 1000);
    CHECK(mismatches == 0);
}

/* The rule may change between checks (a campaign's margin edited while it
 * runs): a certificate placed under one rule must not answer for another. */
static void test_fast_check_rule_change(void) {
    pvf_err err;
    int mismatches = 0, stops = 0;
    for (uint64_t s = 0; s < 40; s++) {
        pvf_cs cs;
        CHECK(pvf_cs_init(&cs, PVF_CS_BETA, 0.05, &err) == 0);
        pvf_stop_rule tight = {0.001, 0, 0, 0};
        for (uint64_t i = 0; i < 3000; i++) {
            CHECK(pvf_cs_push(&cs, uniform01(15, s, i, 0) < 0.2 ? 1.0 : 0.0, &err) == 0);
            CHECK(pvf_cs_check(&cs, &tight) == PVF_CONTINUE);
        }
        double lo, hi;
        pvf_cs_bounds(&cs, &lo, &hi);
        double half = 0.5 * (hi - lo);
        /* margins from just below to just above the current half-width, as
         * absolute and as relative margins */
        for (int j = 0; j < 8; j++) {
            double m = half * (0.9 + 0.03 * j);
            pvf_stop_rule abs_r = {m, 0, 0, 0}, rel_r = {0, m / pvf_cs_mean(&cs), 0, 0};
            pvf_stop e1 = pvf_cs_check_exact(&cs, &abs_r), f1 = pvf_cs_check(&cs, &abs_r);
            pvf_stop e2 = pvf_cs_check_exact(&cs, &rel_r), f2 = pvf_cs_check(&cs, &rel_r);
            mismatches += (e1 != f1) + (e2 != f2);
            stops += (e1 != PVF_CONTINUE) + (e2 != PVF_CONTINUE);
            CHECK(pvf_cs_check(&cs, &tight) == PVF_CONTINUE); /* back to the tight rule */
        }
    }
    CHECK(mismatches == 0);
    CHECK(stops > 100 && stops < 40 * 16 - 100); /* both answers were exercised */
}

static void test_stop_rule(void) {
    pvf_err err;
    pvf_stop_rule none = {0}, bad_margin = {-0.1, 0, 0, 0}, bad_minmax = {0.1, 0, 10, 20};
    CHECK(pvf_stop_rule_validate(&none, &err) == -1 && strstr(err.msg, "never stop"));
    CHECK(pvf_stop_rule_validate(&bad_margin, &err) == -1 && strstr(err.msg, "margin"));
    CHECK(pvf_stop_rule_validate(&bad_minmax, &err) == -1 && strstr(err.msg, "min trials"));
    /* cap only: stops at exactly max_trials, as not converged */
    pvf_stop_rule cap = {0, 0, 50, 0};
    pvf_cs cs;
    CHECK(pvf_cs_init(&cs, PVF_CS_BETA, 0.05, &err) == 0);
    CHECK(pvf_cs_check(&cs, &cap) == PVF_CONTINUE);
    uint64_t t = 0;
    pvf_stop s = PVF_CONTINUE;
    while (s == PVF_CONTINUE) {
        CHECK(pvf_cs_push(&cs, 0.0, &err) == 0);
        s = pvf_cs_check(&cs, &cap);
        t++;
    }
    CHECK(s == PVF_STOP_CAP && t == 50);
    /* all zeros with a relative margin never converge (mean 0): the cap
     * stops it; with an absolute margin the first t whose upper bound is
     * <= 2 margin stops it, at the closed-form time */
    pvf_stop_rule rel = {0, 0.1, 5000, 0}, abs_m = {0.005, 0, 0, 0};
    CHECK(pvf_cs_init(&cs, PVF_CS_BETA, 0.05, &err) == 0);
    for (s = PVF_CONTINUE, t = 0; s == PVF_CONTINUE; t++) {
        CHECK(pvf_cs_push(&cs, 0.0, &err) == 0);
        s = pvf_cs_check(&cs, &rel);
    }
    CHECK(s == PVF_STOP_CAP && t == 5000);
    CHECK(pvf_cs_init(&cs, PVF_CS_BETA, 0.05, &err) == 0);
    for (s = PVF_CONTINUE, t = 0; s == PVF_CONTINUE; t++) {
        CHECK(pvf_cs_push(&cs, 0.0, &err) == 0);
        s = pvf_cs_check(&cs, &abs_m);
    }
    uint64_t first = 1;
    while (-expm1(log(0.05 / (double)(first + 1)) / (double)first) > 2 * 0.005)
        first++;
    CHECK(s == PVF_STOP_MARGIN);
    CHECK(t == first || t == first + 1); /* the bisection's outer point may add one */
    /* min_trials holds back a stop the margin would allow */
    pvf_stop_rule held = {0.4, 0, 0, 100};
    CHECK(pvf_cs_init(&cs, PVF_CS_BETA, 0.05, &err) == 0);
    for (s = PVF_CONTINUE, t = 0; s == PVF_CONTINUE; t++) {
        CHECK(pvf_cs_push(&cs, (double)(t % 2), &err) == 0);
        s = pvf_cs_check(&cs, &held);
    }
    CHECK(s == PVF_STOP_MARGIN && t == 100);
    /* EB stops too, and only once its running interval is narrow enough */
    pvf_stop_rule m = {0.05, 0, 0, 0};
    CHECK(pvf_cs_init(&cs, PVF_CS_EB, 0.05, &err) == 0);
    for (s = PVF_CONTINUE, t = 0; s == PVF_CONTINUE; t++) {
        CHECK(pvf_cs_push(&cs, uniform01(13, 0, t, 0) * 0.5, &err) == 0);
        s = pvf_cs_check(&cs, &m);
        CHECK(s == pvf_cs_check_exact(&cs, &m));
    }
    CHECK(s == PVF_STOP_MARGIN && half_width(&cs) <= 0.05 && t > 50);
    CHECK(strcmp(pvf_stop_name(PVF_STOP_CAP), "trial cap") == 0);
}

/* Same pushes (and checks) -> the same bits, whatever else happened before
 * (a coordinator restarting and replaying the stored prefix). */
static void test_reproducible(void) {
    pvf_err err;
    for (int kind = PVF_CS_BETA; kind <= PVF_CS_EB; kind++) {
        pvf_cs a, b;
        CHECK(pvf_cs_init(&a, (pvf_cs_kind)kind, 0.01, &err) == 0);
        /* b: stack garbage first, so init must set every byte */
        memset(&b, 0xA5, sizeof b);
        CHECK(pvf_cs_init(&b, (pvf_cs_kind)kind, 0.01, &err) == 0);
        pvf_stop_rule rule = {0.01, 0.2, 0, 0};
        for (uint64_t i = 0; i < 5000; i++) {
            double x = uniform01(14, 0, i, 0);
            if (kind == PVF_CS_BETA)
                x = x < 0.1 ? 1.0 : 0.0;
            CHECK(pvf_cs_push(&a, x, &err) == 0);
            CHECK(pvf_cs_push(&b, x, &err) == 0);
            CHECK(pvf_cs_check(&a, &rule) == pvf_cs_check(&b, &rule));
        }
        CHECK(memcmp(&a, &b, sizeof a) == 0);
        double la, ha, lb, hb;
        pvf_cs_bounds(&a, &la, &ha);
        pvf_cs_bounds(&b, &lb, &hb);
        CHECK(memcmp(&la, &lb, sizeof la) == 0 && memcmp(&ha, &hb, sizeof ha) == 0);
        /* a replay that never ran checks: the same bounds and decision */
        pvf_cs c;
        CHECK(pvf_cs_init(&c, (pvf_cs_kind)kind, 0.01, &err) == 0);
        for (uint64_t i = 0; i < 5000; i++) {
            double x = uniform01(14, 0, i, 0);
            CHECK(pvf_cs_push(&c, kind == PVF_CS_BETA ? (x < 0.1 ? 1.0 : 0.0) : x, &err) == 0);
        }
        double lc, hc;
        pvf_cs_bounds(&c, &lc, &hc);
        CHECK(memcmp(&la, &lc, sizeof la) == 0 && memcmp(&ha, &hc, sizeof ha) == 0);
        CHECK(pvf_cs_check(&c, &rule) == pvf_cs_check(&a, &rule));
    }
}

static void test_rejects(void) {
    pvf_cs cs, before;
    pvf_err err;
    CHECK(pvf_cs_init(&cs, PVF_CS_BETA, 0.0, &err) == -1 && strstr(err.msg, "alpha"));
    CHECK(pvf_cs_init(&cs, PVF_CS_EB, 1.0, &err) == -1 && strstr(err.msg, "alpha"));
    CHECK(pvf_cs_init(&cs, (pvf_cs_kind)9, 0.05, &err) == -1 && strstr(err.msg, "kind"));
    CHECK(pvf_cs_init_beta(&cs, 0.05, 0.0, 1.0, &err) == -1 && strstr(err.msg, "prior"));
    CHECK(pvf_cs_init(&cs, PVF_CS_BETA, 0.05, &err) == 0);
    CHECK(pvf_cs_push(&cs, 1.0, &err) == 0);
    before = cs;
    CHECK(pvf_cs_push(&cs, 0.5, &err) == -1 && strstr(err.msg, "0 or 1"));
    CHECK(pvf_cs_push(&cs, 1.5, &err) == -1 && strstr(err.msg, "outside"));
    CHECK(pvf_cs_push(&cs, -0.0001, &err) == -1 && strstr(err.msg, "outside"));
    CHECK(pvf_cs_push(&cs, NAN, &err) == -1);
    CHECK(memcmp(&cs, &before, sizeof cs) == 0);
    CHECK(pvf_cs_init(&cs, PVF_CS_EB, 0.05, &err) == 0);
    CHECK(pvf_cs_push(&cs, 0.25, &err) == 0);
    CHECK(pvf_cs_push(&cs, 1.0001, &err) == -1 && strstr(err.msg, "trial 1"));
    CHECK(pvf_cs_push(&cs, INFINITY, &err) == -1);
    CHECK(pvf_cs_t(&cs) == 1 && pvf_cs_mean(&cs) == 0.25);
}

static void test_bonferroni(void) {
    double a;
    pvf_err err;
    CHECK(pvf_bonferroni_alpha(0.95, 10, &a, &err) == 0);
    CHECK_NEAR(a, 0.005, 1e-15);
    CHECK(pvf_bonferroni_alpha(0.99, 1, &a, &err) == 0);
    CHECK_NEAR(a, 0.01, 1e-15);
    CHECK(pvf_bonferroni_alpha(0.95, 0, &a, &err) == -1 && strstr(err.msg, "0 strata"));
    CHECK(pvf_bonferroni_alpha(1.0, 3, &a, &err) == -1 && strstr(err.msg, "confidence"));
    /* a smaller alpha widens the interval */
    double lo1, hi1, lo2, hi2;
    pvf_beta_cs_bounds(1000, 50, 1, 1, 0.05, &lo1, &hi1);
    pvf_beta_cs_bounds(1000, 50, 1, 1, 0.005, &lo2, &hi2);
    CHECK(lo2 < lo1 && hi2 > hi1);
}

static void test_combine(void) {
    pvf_estimate s[3] = {{0.5, 0.10, 0.08, 0.12}, {0.3, 0.02, 0.01, 0.04}, {0.2, 0.5, 0.4, 0.6}};
    pvf_estimate m;
    pvf_err err;
    CHECK(pvf_combine(s, 3, &m, &err) == 0);
    CHECK_NEAR(m.mean, 0.5 * 0.10 + 0.3 * 0.02 + 0.2 * 0.5, 1e-15);
    CHECK_NEAR(m.lo, 0.5 * 0.08 + 0.3 * 0.01 + 0.2 * 0.4, 1e-15);
    CHECK_NEAR(m.hi, 0.5 * 0.12 + 0.3 * 0.04 + 0.2 * 0.6, 1e-15);
    CHECK(m.weight == 1.0);
    /* population counts instead of shares: the same result */
    pvf_estimate c[3] = {{5e9, 0.10, 0.08, 0.12}, {3e9, 0.02, 0.01, 0.04}, {2e9, 0.5, 0.4, 0.6}};
    pvf_estimate m2;
    CHECK(pvf_combine(c, 3, &m2, &err) == 0);
    CHECK_NEAR(m2.mean, m.mean, 1e-15);
    CHECK_NEAR(m2.hi, m.hi, 1e-15);
    s[1].weight = -1;
    CHECK(pvf_combine(s, 3, &m, &err) == -1 && strstr(err.msg, "stratum 1"));
    s[1].weight = 0.3;
    s[2].hi = 1.5;
    CHECK(pvf_combine(s, 3, &m, &err) == -1 && strstr(err.msg, "stratum 2"));
    CHECK(pvf_combine(s, 0, &m, &err) == -1 && strstr(err.msg, "weight"));
}

/* §2 worked values (t rounded to three decimals as in the tables). */
static void test_leveugle(void) {
    static const struct {
        uint64_t population;
        double e, conf, p;
        uint64_t n;
    } rows[] = {
        {1000000000, 0.01, 0.95, 0.5, 9604},     {1000000000, 0.01, 0.99, 0.5, 16590},
        {100000, 0.01, 0.95, 0.5, 8763},         {1000000000, 0.01, 0.95, 0.1, 3458},
        {1000000000, 0.01, 0.95, 0.01, 381},     {1000000000, 0.005, 0.95, 0.5, 38415},
        {1000000000, 0.001, 0.99, 0.5, 1656197}, {1000000000, 0.001, 0.99, 0.01, 65690},
        {100000, 0.001, 0.95, 0.5, 90570},       {1000000, 0.001, 0.95, 0.5, 489901},
        {1000000, 0.005, 0.95, 0.5, 36995},      {1000000000, 0.005, 0.99, 0.1, 23889},
    };
    pvf_err err;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint64_t n = 0;
        CHECK(pvf_leveugle_n(rows[i].population, rows[i].e, rows[i].conf, rows[i].p, &n, &err) ==
              0);
        CHECK_EQ_U64(n, rows[i].n);
    }
    uint64_t n;
    CHECK(pvf_leveugle_n(0, 0.01, 0.95, 0.5, &n, &err) == 0 && n == 9604); /* infinite N */
    CHECK(pvf_leveugle_n(50, 0.01, 0.95, 0.5, &n, &err) == 0 && n <= 50);
    CHECK(pvf_leveugle_n(0, 0.0, 0.95, 0.5, &n, &err) == -1 && strstr(err.msg, "margin"));
    CHECK(pvf_leveugle_n(0, 0.01, 1.5, 0.5, &n, &err) == -1 && strstr(err.msg, "confidence"));
    CHECK_NEAR(pvf_normal_quantile(0.95), 1.959963984540054, 1e-12);
    CHECK_NEAR(pvf_normal_quantile(0.99), 2.5758293035489, 1e-10);
}

/* Clopper-Pearson bounds satisfy their defining binomial tail equations. */
static double binom_cdf(int n, int k, double p) {
    double s = 0;
    for (int i = 0; i <= k; i++)
        s += exp(lgamma(n + 1.0) - lgamma(i + 1.0) - lgamma(n - i + 1.0) + i * log(p) +
                 (n - i) * log1p(-p));
    return s;
}

static void test_clopper_pearson(void) {
    static const int cases[][2] = {{20, 3}, {50, 0}, {50, 50}, {100, 1}, {200, 37}, {7, 6}};
    for (int c = 0; c < 6; c++) {
        int n = cases[c][0], k = cases[c][1];
        double lo, hi;
        pvf_clopper_pearson(k, n, 0.95, &lo, &hi);
        if (k > 0)
            CHECK_NEAR(1.0 - binom_cdf(n, k - 1, lo), 0.025, 1e-9); /* P(X >= k | lo) */
        else
            CHECK(lo == 0.0);
        if (k < n)
            CHECK_NEAR(binom_cdf(n, k, hi), 0.025, 1e-9); /* P(X <= k | hi) */
        else
            CHECK(hi == 1.0);
        CHECK(lo <= (double)k / n && (double)k / n <= hi);
    }
    /* large n: symmetric case against the normal approximation */
    double lo, hi;
    pvf_clopper_pearson(50000, 100000, 0.95, &lo, &hi);
    CHECK_NEAR(hi - 0.5, 1.96 * sqrt(0.25 / 1e5), 2e-5);
    CHECK_NEAR(0.5 - lo, hi - 0.5, 1e-9);
    CHECK_NEAR(pvf_beta_inc(2, 3, 0.4), 0.5248, 1e-12); /* 1 - (0.6^4 + 4 0.4 0.6^3) */
}

int main(void) {
    RUN(test_width_table);
    RUN(test_zero_failures);
    RUN(test_eb_path);
    RUN(test_eb_matches_direct);
    RUN(test_time_uniform_coverage);
    RUN(test_fast_check_equals_exact);
    RUN(test_fast_check_sparse);
    RUN(test_fast_check_rule_change);
    RUN(test_stop_rule);
    RUN(test_reproducible);
    RUN(test_rejects);
    RUN(test_bonferroni);
    RUN(test_combine);
    RUN(test_leveugle);
    RUN(test_clopper_pearson);
    return test_summary();
}
