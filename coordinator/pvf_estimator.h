/* pvf_estimator.h - anytime-valid estimation of one stratum's PVF and the
 * rule that stops it (reference/statistics.md §4, §6).
 *
 * A stratum's trial values are pushed in trial-index order (the contiguous
 * prefix of completed trials); after every push the coordinator asks whether
 * the stratum stops. The state is a handful of numbers updated in O(1), and
 * a pure function of the values pushed: a coordinator that restarts and
 * replays the stored prefix reaches the same bits and the same stopping point.
 * Pure computation: no I/O, no allocation.
 *
 * Confidence sequences (CS): P(for all t: PVF in [lo_t, hi_t]) >= 1 - alpha,
 * so checking after every trial and stopping on a data-dependent condition
 * keeps the promised coverage (a Wilson interval checked that way does not).
 *   PVF_CS_BETA  Beta(a,b)-mixture likelihood-ratio CS for 0/1 trial values
 *                (§4 B): exact for Bernoulli outcomes, variance-adaptive.
 *   PVF_CS_EB    predictable plug-in empirical Bernstein CS for any value in
 *                [0,1] (§4 D), e.g. the fraction of eval inputs wrong:
 *                lower bound at alpha/2 from X, upper at alpha/2 from 1 - X,
 *                running intersection. */
#ifndef PVF_ESTIMATOR_H
#define PVF_ESTIMATOR_H

#include "pvf_common.h"

#include <stddef.h>
#include <stdint.h>

typedef enum pvf_cs_kind { PVF_CS_BETA = 1, PVF_CS_EB = 2 } pvf_cs_kind;

/* One stratum's confidence-sequence state. Fields are private to
 * estimator.c; read them through the functions below. */
typedef struct pvf_cs {
    int64_t kind; /* pvf_cs_kind (64-bit: no padding, so states compare byte-wise) */
    double alpha;
    uint64_t t;       /* values pushed */
    double sum;       /* of the values (BETA: the count k, exact below 2^53) */
    double log_level; /* BETA: ln(1/alpha); EB: ln(2/alpha), each side at alpha/2 */
    /* BETA: prior Beta(a,b) and ln B(a,b); a certificate (two points robustly
     * inside the CS, see estimator.c) that lets most checks skip the
     * bisection, 0/0 when there is none */
    double a, b, lnb_prior;
    double cert_lo, cert_hi;
    /* EB: running sums of §6 (both sides share them, see estimator.c) and the
     * running intersection */
    double sq_dev;     /* sum (X_j - mu~_j)^2 for the bets' variance */
    double sum_lambda; /* sum lambda_i */
    double sum_lx;     /* sum lambda_i X_i */
    double sum_vpsi;   /* sum (X_i - mu^_{i-1})^2 psi(lambda_i) */
    double eb_lo, eb_hi;
} pvf_cs;

/* Beta(1,1) for BETA. alpha in (0, 1): the CS holds with probability
 * >= 1 - alpha (use pvf_bonferroni_alpha for one of H strata). */
int pvf_cs_init(pvf_cs *cs, pvf_cs_kind kind, double alpha, pvf_err *err);
/* BETA with prior Beta(a, b), a, b > 0 (statistics.md §5.3: keep 1,1 or
 * 1/2,1/2 unless a reliable prior PVF is known). */
int pvf_cs_init_beta(pvf_cs *cs, double alpha, double a, double b, pvf_err *err);

/* Adds the next trial value. Rejects a value outside [0,1] (or NaN), and a
 * fraction pushed to a BETA state; the state is unchanged on error. */
int pvf_cs_push(pvf_cs *cs, double x, pvf_err *err);

uint64_t pvf_cs_t(const pvf_cs *cs);
/* Mean of the values pushed (0 before the first). */
double pvf_cs_mean(const pvf_cs *cs);
/* The current interval ([0,1] before the first value). BETA solves for the
 * bounds by bisection (a few microseconds): call it to report, not per trial
 * (pvf_cs_check is the per-trial test). */
void pvf_cs_bounds(const pvf_cs *cs, double *lo, double *hi);

/* Beta(a,b) CS bounds after k ones in t trials at level alpha, by bisection
 * on the likelihood-ratio condition. What pvf_cs_bounds computes for BETA. */
void pvf_beta_cs_bounds(uint64_t t, uint64_t k, double a, double b, double alpha, double *lo,
                        double *hi);

/* Per-stratum alpha for H strata so that all H intervals hold at once with
 * probability >= confidence: (1 - confidence) / H. */
int pvf_bonferroni_alpha(double confidence, uint64_t strata, double *alpha, pvf_err *err);

/* When a stratum stops. Unset (0) fields are ignored; at least one of
 * margin, rel_margin, max_trials must be set. */
typedef struct pvf_stop_rule {
    double margin;       /* stop when (hi - lo)/2 <= margin */
    double rel_margin;   /* stop when (hi - lo)/2 <= rel_margin * mean, mean > 0 */
    uint64_t max_trials; /* stop, not converged, when t >= max_trials */
    uint64_t min_trials; /* never stop on a margin before t >= min_trials */
} pvf_stop_rule;

typedef enum pvf_stop {
    PVF_CONTINUE = 0,
    PVF_STOP_MARGIN = 1, /* converged: absolute margin reached */
    PVF_STOP_REL = 2,    /* converged: relative margin reached */
    PVF_STOP_CAP = 3,    /* trial cap reached: not converged */
} pvf_stop;

int pvf_stop_rule_validate(const pvf_stop_rule *rule, pvf_err *err);
const char *pvf_stop_name(pvf_stop s);

/* Whether the stratum stops now (call after every push: the stopping count
 * then never depends on how results were batched). Margins are tested before
 * the cap, so a stratum that converges on its last allowed trial reports
 * converged. Returns exactly what pvf_cs_check_exact returns (proof in
 * estimator.c) at a small fraction of its cost for BETA; updates only the
 * certificate, which affects speed, never the answer. */
pvf_stop pvf_cs_check(pvf_cs *cs, const pvf_stop_rule *rule);
/* The same rule evaluated on freshly computed bounds: the reference. */
pvf_stop pvf_cs_check_exact(const pvf_cs *cs, const pvf_stop_rule *rule);

/* One stratum's result for the model-level combination. */
typedef struct pvf_estimate {
    double weight; /* the stratum's share of the fault population (N_h / N) */
    double mean, lo, hi;
} pvf_estimate;

/* PVF = sum w_h mean_h, interval [sum w_h lo_h, sum w_h hi_h]: holds whenever
 * every stratum's interval does (so at the Bonferroni-combined confidence).
 * Weights must be >= 0 with a positive sum; they are divided by their sum, so
 * population counts may be passed as they are. out->weight is 1. */
int pvf_combine(const pvf_estimate *strata, size_t n, pvf_estimate *out, pvf_err *err);

#endif
