/* estimator.c - confidence sequences per stratum, the stopping rule, and the
 * model-level combination (reference/statistics.md §4 B and D, §6).
 *
 * BETA (0/1 values, §4 B). With k ones in t trials and prior Beta(a,b),
 *   M_t(p) = [B(a+k, b+t-k) / B(a,b)] / [p^k (1-p)^(t-k)]
 * is a mean-1 martingale under the true p, so by Ville's inequality
 * C_t = { p : ln M_t(p) < ln(1/alpha) } holds for all t at once with
 * probability >= 1 - alpha. Writing
 *   f(p) = k ln p + (t-k) ln(1-p) - thr,  thr = ln B(a+k, b+t-k) - ln B(a,b) - ln(1/alpha),
 * C_t = { f > 0 }. f is concave with its maximum at k/t, where
 * f(k/t) >= ln(1/alpha) > 0 (the maximum likelihood is at least the mixture
 * likelihood), so C_t is an interval around k/t; its ends are found by
 * bisection, keeping the outer point (a slightly wider interval, never a
 * narrower one).
 *
 * EB (values in [0,1], §4 D). Lower bound at level alpha/2:
 *   L_t = sum l_i X_i / sum l_i - (ln(2/alpha) + sum v_i psi(l_i)) / sum l_i,
 *   v_i = (X_i - mu^_{i-1})^2, psi(l) = -ln(1-l) - l,
 *   l_i = min(1/2, sqrt(2 ln(2/alpha) / (s2_{i-1} i ln(1+i)))),
 * with the regularised variance s2 of §4 D (prior mean 1/2, variance 1/4).
 * The upper bound is 1 - L_t computed on 1 - X. Every ingredient is the same
 * for 1 - X: s2 is built from (X_j - mu~_j)^2, and mu~ of 1 - X is 1 - mu~;
 * v_i too, because mu^_0 (the plug-in mean before any value) is taken as 1/2
 * rather than confseq's 0 (any predictable plug-in keeps the CS valid, and
 * 1/2 keeps it symmetric). Hence U_t = centre + margin with the same sums:
 * one set of running sums serves both sides. */
#include "pvf_estimator.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

/* ---- BETA: the likelihood-ratio function f ------------------------------ */

typedef struct beta_fn {
    double t, k;      /* trials and ones, exact as doubles below 2^53 */
    double thr;       /* f(p) = k ln p + (t-k) ln(1-p) - thr */
    double thr_scale; /* sum of the magnitudes thr was computed from */
} beta_fn;

static double lgamma_pos(double x) {
    int sign; /* lgamma_r: lgamma's global signgam would be a data race */
    return lgamma_r(x, &sign);
}

static beta_fn beta_fn_make(double t, double k, double a, double b, double lnb_prior,
                            double log_inv_alpha) {
    double g1 = lgamma_pos(a + k), g2 = lgamma_pos(b + t - k), g3 = lgamma_pos(a + b + t);
    beta_fn f = {t, k, g1 + g2 - g3 - lnb_prior - log_inv_alpha, 0};
    f.thr_scale = fabs(g1) + fabs(g2) + fabs(g3) + fabs(lnb_prior) + log_inv_alpha;
    return f;
}

/* f(p) for 0 < p < 1; *scale gets the magnitude of the terms summed, which
 * bounds the rounding error of the result (see "Fast check" below). */
static double beta_fn_eval(const beta_fn *f, double p, double *scale) {
    double lp = f->k > 0 ? f->k * log(p) : 0.0;
    double lq = f->t > f->k ? (f->t - f->k) * log1p(-p) : 0.0;
    *scale = fabs(lp) + fabs(lq) + f->thr_scale;
    return lp + lq - f->thr;
}

static int beta_fn_inside(const beta_fn *f, double p) {
    double scale;
    return beta_fn_eval(f, p, &scale) > 0.0;
}

/* Bisection stops at this relative precision (of the bound, or of its
 * distance to 1), or when no double lies strictly between the brackets. */
#define BISECT_REL 1e-14
#define BISECT_MAX 400

static int bisect_done(double l, double r) {
    double m = 0.5 * (l + r);
    return m <= l || m >= r || r - l <= BISECT_REL * fmin(r, 1.0 - l);
}

/* Lower end: the largest point found with f <= 0 below k/t (0 when k = 0). */
static double beta_lower(const beta_fn *f) {
    if (f->k <= 0)
        return 0.0;
    double l = 0.0, r = f->k / f->t; /* f(l) <= 0 (or l = 0) < f(r) */
    for (int i = 0; i < BISECT_MAX && !bisect_done(l, r); i++) {
        double m = 0.5 * (l + r);
        if (beta_fn_inside(f, m))
            r = m;
        else
            l = m;
    }
    return l;
}

/* Upper end: the smallest point found with f <= 0 above k/t (1 when k = t). */
static double beta_upper(const beta_fn *f) {
    if (f->k >= f->t)
        return 1.0;
    double l = f->k / f->t, r = 1.0; /* f(l) > 0 >= f(r) (or r = 1) */
    for (int i = 0; i < BISECT_MAX && !bisect_done(l, r); i++) {
        double m = 0.5 * (l + r);
        if (beta_fn_inside(f, m))
            l = m;
        else
            r = m;
    }
    return r;
}

void pvf_beta_cs_bounds(uint64_t t, uint64_t k, double a, double b, double alpha, double *lo,
                        double *hi) {
    if (t == 0 || k > t) {
        *lo = 0.0;
        *hi = 1.0;
        return;
    }
    double lnb = lgamma_pos(a) + lgamma_pos(b) - lgamma_pos(a + b);
    beta_fn f = beta_fn_make((double)t, (double)k, a, b, lnb, -log(alpha));
    *lo = beta_lower(&f);
    *hi = beta_upper(&f);
}

/* ---- state --------------------------------------------------------------- */

int pvf_cs_init_beta(pvf_cs *cs, double alpha, double a, double b, pvf_err *err) {
    if (!(alpha > 0.0 && alpha < 1.0))
        return pvf_err_set(err, "confidence sequence: alpha %g is not in (0, 1)", alpha);
    if (!(a > 0.0 && b > 0.0 && isfinite(a) && isfinite(b)))
        return pvf_err_set(err, "confidence sequence: Beta prior (%g, %g) needs a, b > 0", a, b);
    memset(cs, 0, sizeof *cs);
    cs->kind = PVF_CS_BETA;
    cs->alpha = alpha;
    cs->log_level = -log(alpha);
    cs->a = a;
    cs->b = b;
    cs->lnb_prior = lgamma_pos(a) + lgamma_pos(b) - lgamma_pos(a + b);
    return 0;
}

int pvf_cs_init(pvf_cs *cs, pvf_cs_kind kind, double alpha, pvf_err *err) {
    if (kind == PVF_CS_BETA)
        return pvf_cs_init_beta(cs, alpha, 1.0, 1.0, err);
    if (kind != PVF_CS_EB)
        return pvf_err_set(err, "confidence sequence: unknown kind %d", (int)kind);
    if (!(alpha > 0.0 && alpha < 1.0))
        return pvf_err_set(err, "confidence sequence: alpha %g is not in (0, 1)", alpha);
    memset(cs, 0, sizeof *cs);
    cs->kind = PVF_CS_EB;
    cs->alpha = alpha;
    cs->log_level = log(2.0 / alpha);
    cs->eb_lo = 0.0;
    cs->eb_hi = 1.0;
    return 0;
}

/* One EB step (§4 D); i is the 1-based index of x. */
static void eb_push(pvf_cs *cs, double x) {
    double i = (double)(cs->t + 1);
    double s2_prev = (0.25 + cs->sq_dev) / i; /* s2_{i-1}; 1/4 before any value */
    double lambda = fmin(0.5, sqrt(2.0 * cs->log_level / (s2_prev * i * log1p(i))));
    double mu_prev = cs->t ? cs->sum / (double)cs->t : 0.5;
    double dev = x - mu_prev;
    cs->sum_lambda += lambda;
    cs->sum_lx += lambda * x;
    cs->sum_vpsi += dev * dev * (-log1p(-lambda) - lambda);
    cs->sum += x;
    cs->t++;
    double mu_reg = (0.5 + cs->sum) / (i + 1.0); /* mu~_i, includes x */
    cs->sq_dev += (x - mu_reg) * (x - mu_reg);
    double centre = cs->sum_lx / cs->sum_lambda;
    double margin = (cs->log_level + cs->sum_vpsi) / cs->sum_lambda;
    cs->eb_lo = fmax(cs->eb_lo, fmax(0.0, centre - margin));
    cs->eb_hi = fmin(cs->eb_hi, fmin(1.0, centre + margin));
    /* An empty intersection means the CS has already failed (probability
     * <= alpha); keep a point interval so lo <= hi still holds downstream. */
    if (cs->eb_lo > cs->eb_hi)
        cs->eb_lo = cs->eb_hi = 0.5 * (cs->eb_lo + cs->eb_hi);
}

int pvf_cs_push(pvf_cs *cs, double x, pvf_err *err) {
    if (!(x >= 0.0 && x <= 1.0))
        return pvf_err_set(err, "trial %" PRIu64 ": value %g is outside [0, 1]", cs->t, x);
    if (cs->kind == PVF_CS_BETA) {
        if (x != 0.0 && x != 1.0)
            return pvf_err_set(err,
                               "trial %" PRIu64 ": value %g is not 0 or 1 (the Beta confidence "
                               "sequence takes 0/1 outcomes; use the EB kind for fractions)",
                               cs->t, x);
        cs->sum += x;
        cs->t++;
        return 0;
    }
    eb_push(cs, x);
    return 0;
}

uint64_t pvf_cs_t(const pvf_cs *cs) {
    return cs->t;
}

double pvf_cs_mean(const pvf_cs *cs) {
    return cs->t ? cs->sum / (double)cs->t : 0.0;
}

static beta_fn beta_fn_of(const pvf_cs *cs) {
    return beta_fn_make((double)cs->t, cs->sum, cs->a, cs->b, cs->lnb_prior, cs->log_level);
}

void pvf_cs_bounds(const pvf_cs *cs, double *lo, double *hi) {
    if (cs->t == 0) {
        *lo = 0.0;
        *hi = 1.0;
    } else if (cs->kind == PVF_CS_BETA) {
        beta_fn f = beta_fn_of(cs);
        *lo = beta_lower(&f);
        *hi = beta_upper(&f);
    } else {
        *lo = cs->eb_lo;
        *hi = cs->eb_hi;
    }
}

int pvf_bonferroni_alpha(double confidence, uint64_t strata, double *alpha, pvf_err *err) {
    if (!(confidence > 0.0 && confidence < 1.0))
        return pvf_err_set(err, "confidence %g is not in (0, 1)", confidence);
    if (strata == 0)
        return pvf_err_set(err, "Bonferroni split over 0 strata");
    *alpha = (1.0 - confidence) / (double)strata;
    return 0;
}

/* ---- stopping rule ------------------------------------------------------- */

int pvf_stop_rule_validate(const pvf_stop_rule *rule, pvf_err *err) {
    if (!(rule->margin >= 0.0 && rule->margin < 1.0))
        return pvf_err_set(err, "stop rule: margin %g is not in [0, 1)", rule->margin);
    if (!(rule->rel_margin >= 0.0 && isfinite(rule->rel_margin)))
        return pvf_err_set(err, "stop rule: relative margin %g is negative or not finite",
                           rule->rel_margin);
    if (rule->margin == 0.0 && rule->rel_margin == 0.0 && rule->max_trials == 0)
        return pvf_err_set(err, "stop rule: no margin, relative margin or trial cap: it would "
                                "never stop");
    if (rule->max_trials && rule->min_trials > rule->max_trials)
        return pvf_err_set(err, "stop rule: min trials %" PRIu64 " above max trials %" PRIu64,
                           rule->min_trials, rule->max_trials);
    return 0;
}

const char *pvf_stop_name(pvf_stop s) {
    switch (s) {
    case PVF_CONTINUE:
        return "continue";
    case PVF_STOP_MARGIN:
        return "margin";
    case PVF_STOP_REL:
        return "relative margin";
    case PVF_STOP_CAP:
        return "trial cap";
    }
    return "?";
}

/* The margin part of the rule on given bounds. */
static pvf_stop margin_reached(const pvf_stop_rule *rule, double mean, double lo, double hi) {
    double half = (hi - lo) * 0.5;
    if (rule->margin > 0.0 && half <= rule->margin)
        return PVF_STOP_MARGIN;
    if (rule->rel_margin > 0.0 && mean > 0.0 && half <= rule->rel_margin * mean)
        return PVF_STOP_REL;
    return PVF_CONTINUE;
}

/* ---- Fast check (BETA) ----------------------------------------------------
 *
 * Bisecting both ends costs ~2 x 50 evaluations of f (~5 us); most checks
 * are far from stopping. A certificate is two points q1 < q2 with f robustly
 * positive at both: then the exact bounds satisfy lo <= q1 and hi >= q2, so
 * the exact half-width (hi - lo)/2 >= (q2 - q1)/2, and if that exceeds
 * T = max(margin, rel_margin * mean) no margin can stop, which the exact
 * check would also find. Whenever the certificate does not prove it, the
 * exact check runs, so the decision at every t, and hence the stopping time,
 * is exactly that of pvf_cs_check_exact.
 *
 * Proof that lo <= q1 (hi >= q2 is symmetric). "Robustly positive" means the
 * computed f(q1) > DELTA_REL * scale(q1) + DELTA_ABS. Assume each computed f
 * has an absolute error below EPS_F * scale with EPS_F = 1e-14 (~45 ulps of
 * the largest term: a dozen operations and libm calls of a few ulps each).
 * If q1 > k/t: bisection keeps lo < k/t < q1. Otherwise the exact f satisfies
 * f(q1) > (DELTA_REL - EPS_F) scale(q1) + DELTA_ABS, and for m in [q1, k/t],
 * by concavity, f(m) >= min(f(q1), f(k/t)) with f(k/t) >= ln(1/alpha).
 * Bisection moves its left bracket to m only when the computed f(m) <= 0,
 * i.e. exact f(m) <= EPS_F scale(m). On [q1, k/t], |k ln m| <= |k ln q1|
 * and (t-k)|ln(1-m)| <= (t-k) ln(t/(t-k)) <= t/e, so scale(m) <=
 * scale(q1) + t/e; for t >= 10, t/e <= lgamma(a+b+t) <= scale(q1), and for
 * t < 10, EPS_F t/e < DELTA_ABS / 100. So EPS_F scale(m) < 2 EPS_F scale(q1)
 * + DELTA_ABS / 100 < exact f(m) (f(k/t) >= ln(1/alpha) exceeds that bound
 * too while scale < ~1e13 ln(1/alpha), i.e. t up to ~1e11 trials per
 * stratum): no such m exists, every left bracket (and the returned lo) is
 * < q1 (or lo = 0 <= q1 when k = 0).
 * The rounded (q2 - q1)/2 is <= the rounded (hi - lo)/2 (rounding is
 * monotone), and T is computed by the same expressions as in the exact
 * rule, so "rounded (q2 - q1)/2 > T" implies the exact check continues.
 *
 * The certificate is placed after an exact check that continued, a quarter
 * of the slack inside each bound, and re-verified at the current (t, k) on
 * every use, so it may be stale or absent (then the exact check runs) but
 * never wrong. Checks cost 3 lgamma + 2 (log, log1p) while it holds. */
#define DELTA_REL 1e-12
#define DELTA_ABS 1e-10

static int robustly_inside(const beta_fn *f, double p) {
    if (!(p > 0.0 && p < 1.0))
        return 0;
    double scale, v = beta_fn_eval(f, p, &scale);
    return v > DELTA_REL * scale + DELTA_ABS;
}

/* T: the half-width above which no margin stops (0: no margin applies). */
static double margin_target(const pvf_stop_rule *rule, double mean) {
    double rel = rule->rel_margin > 0.0 && mean > 0.0 ? rule->rel_margin * mean : 0.0;
    return fmax(rule->margin > 0.0 ? rule->margin : 0.0, rel);
}

static int cert_proves_continue(const pvf_cs *cs, const beta_fn *f, double target) {
    if (!(cs->cert_hi > cs->cert_lo) || !((cs->cert_hi - cs->cert_lo) * 0.5 > target))
        return 0;
    return robustly_inside(f, cs->cert_lo) && robustly_inside(f, cs->cert_hi);
}

static void cert_place(pvf_cs *cs, const beta_fn *f, double lo, double hi, double target) {
    double w = hi - lo;
    double eta = 0.25 * (1.0 - 2.0 * target / w); /* in (0, 1/4]: w > 2 target */
    double q1 = lo + eta * w, q2 = hi - eta * w;
    if (q2 > q1 && robustly_inside(f, q1) && robustly_inside(f, q2)) {
        cs->cert_lo = q1;
        cs->cert_hi = q2;
    } else {
        cs->cert_lo = cs->cert_hi = 0.0;
    }
}

/* The rule; with owner non-NULL (a BETA state) the certificate is used and
 * refreshed. */
static pvf_stop check(const pvf_cs *cs, const pvf_stop_rule *rule, pvf_cs *owner) {
    if (cs->t == 0)
        return PVF_CONTINUE;
    int capped = rule->max_trials > 0 && cs->t >= rule->max_trials;
    double mean = pvf_cs_mean(cs);
    double target = margin_target(rule, mean);
    if (cs->t < rule->min_trials || target <= 0.0)
        return capped ? PVF_STOP_CAP : PVF_CONTINUE;
    double lo, hi;
    if (cs->kind == PVF_CS_BETA) {
        beta_fn f = beta_fn_of(cs);
        if (owner && !capped && cert_proves_continue(cs, &f, target))
            return PVF_CONTINUE;
        lo = beta_lower(&f);
        hi = beta_upper(&f);
        pvf_stop s = margin_reached(rule, mean, lo, hi);
        if (s != PVF_CONTINUE)
            return s;
        if (owner && !capped)
            cert_place(owner, &f, lo, hi, target);
    } else {
        lo = cs->eb_lo;
        hi = cs->eb_hi;
        pvf_stop s = margin_reached(rule, mean, lo, hi);
        if (s != PVF_CONTINUE)
            return s;
    }
    return capped ? PVF_STOP_CAP : PVF_CONTINUE;
}

pvf_stop pvf_cs_check(pvf_cs *cs, const pvf_stop_rule *rule) {
    return check(cs, rule, cs);
}

pvf_stop pvf_cs_check_exact(const pvf_cs *cs, const pvf_stop_rule *rule) {
    return check(cs, rule, NULL);
}

/* ---- model level --------------------------------------------------------- */

int pvf_combine(const pvf_estimate *strata, size_t n, pvf_estimate *out, pvf_err *err) {
    double wsum = 0.0;
    for (size_t i = 0; i < n; i++) {
        const pvf_estimate *s = &strata[i];
        if (!(s->weight >= 0.0 && isfinite(s->weight)))
            return pvf_err_set(err, "stratum %zu: weight %g is negative or not finite", i,
                               s->weight);
        if (!(s->lo >= 0.0 && s->lo <= s->hi && s->hi <= 1.0 && s->mean >= 0.0 && s->mean <= 1.0))
            return pvf_err_set(err, "stratum %zu: interval [%g, %g] or mean %g is not in [0, 1]", i,
                               s->lo, s->hi, s->mean);
        wsum += s->weight;
    }
    if (!(wsum > 0.0))
        return pvf_err_set(err, "model estimate: %zu strata with no positive weight", n);
    *out = (pvf_estimate){.weight = 1.0};
    for (size_t i = 0; i < n; i++) {
        double w = strata[i].weight / wsum;
        out->mean += w * strata[i].mean;
        out->lo += w * strata[i].lo;
        out->hi += w * strata[i].hi;
    }
    /* rounding must not push the sums outside [0, 1] */
    out->mean = fmin(1.0, out->mean);
    out->lo = fmin(1.0, out->lo);
    out->hi = fmin(1.0, out->hi);
    return 0;
}
