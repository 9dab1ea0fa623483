#include "pvf_stats.h"

#include <math.h>

void pvf_wilson(double p_hat, int64_t n, double z, double *lo, double *hi) {
    if (n <= 0) {
        *lo = 0.0;
        *hi = 1.0;
        return;
    }
    double dn = (double)n, z2 = z * z;
    double denom = 1.0 + z2 / dn;
    double centre = (p_hat + z2 / (2.0 * dn)) / denom;
    double half = z * sqrt(p_hat * (1.0 - p_hat) / dn + z2 / (4.0 * dn * dn)) / denom;
    /* rounding must not put the estimate outside its own interval (p_hat = 0 or 1) */
    *lo = fmax(0.0, fmin(p_hat, centre - half));
    *hi = fmin(1.0, fmax(p_hat, centre + half));
}

double pvf_normal_quantile(double confidence) {
    /* erfc(z / sqrt 2) = 1 - confidence, decreasing in z: bisection to the
     * last bit is plenty for a value computed once per report */
    double target = 1.0 - confidence, l = 0.0, r = 40.0;
    for (int i = 0; i < 200; i++) {
        double m = 0.5 * (l + r);
        if (m <= l || m >= r)
            break;
        if (erfc(m / sqrt(2.0)) > target)
            l = m;
        else
            r = m;
    }
    return 0.5 * (l + r);
}

/* Continued fraction of I_x(a, b) (modified Lentz), for x < (a+1)/(a+b+2)
 * where it converges quickly:
 *   I_x(a,b) = x^a (1-x)^b / (a B(a,b)) / (1 + d1/(1 + d2/(1 + ...))),
 *   d_{2m+1} = -(a+m)(a+b+m) x / ((a+2m)(a+2m+1)),
 *   d_{2m}   =  m(b-m) x / ((a+2m-1)(a+2m)). */
static double beta_inc_cf(double a, double b, double x) {
    const double tiny = 1e-300;
    double f = 1.0, c = 1.0, d = 0.0;
    for (int j = 1; j < 2000000; j++) {
        double m = (double)(j / 2), dj;
        if (j % 2)
            dj = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1));
        else
            dj = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m));
        d = 1.0 + dj * d;
        d = fabs(d) < tiny ? tiny : d;
        c = 1.0 + dj / c;
        c = fabs(c) < tiny ? tiny : c;
        d = 1.0 / d;
        double delta = c * d;
        f *= delta;
        if (fabs(delta - 1.0) < 1e-15)
            break;
    }
    int sign; /* lgamma_r: lgamma's global signgam would be a data race */
    double lnb = lgamma_r(a, &sign) + lgamma_r(b, &sign) - lgamma_r(a + b, &sign);
    return exp(a * log(x) + b * log1p(-x) - lnb) / (a * f);
}

double pvf_beta_inc(double a, double b, double x) {
    if (x <= 0.0)
        return 0.0;
    if (x >= 1.0)
        return 1.0;
    if (x < (a + 1.0) / (a + b + 2.0))
        return beta_inc_cf(a, b, x);
    return 1.0 - beta_inc_cf(b, a, 1.0 - x);
}

/* x in (0, 1) with I_x(a, b) = q (increasing in x), by bisection. */
static double beta_quantile(double a, double b, double q) {
    double l = 0.0, r = 1.0;
    for (int i = 0; i < 1100; i++) {
        double m = 0.5 * (l + r);
        if (m <= l || m >= r || r - l <= 1e-15 * fmin(r, 1.0 - l))
            break;
        if (pvf_beta_inc(a, b, m) < q)
            l = m;
        else
            r = m;
    }
    return 0.5 * (l + r);
}

void pvf_clopper_pearson(int64_t k, int64_t n, double confidence, double *lo, double *hi) {
    if (n <= 0 || k < 0 || k > n) {
        *lo = 0.0;
        *hi = 1.0;
        return;
    }
    double tail = 0.5 * (1.0 - confidence), dk = (double)k, dn = (double)n;
    *lo = k == 0 ? 0.0 : beta_quantile(dk, dn - dk + 1.0, tail);
    *hi = k == n ? 1.0 : beta_quantile(dk + 1.0, dn - dk, 1.0 - tail);
}

int pvf_leveugle_n(uint64_t population, double margin, double confidence, double p, uint64_t *n,
                   pvf_err *err) {
    if (!(margin > 0.0 && margin < 1.0))
        return pvf_err_set(err, "Leveugle sample size: margin %g is not in (0, 1)", margin);
    if (!(confidence > 0.0 && confidence < 1.0))
        return pvf_err_set(err, "Leveugle sample size: confidence %g is not in (0, 1)", confidence);
    if (!(p >= 0.0 && p <= 1.0))
        return pvf_err_set(err, "Leveugle sample size: proportion %g is not in [0, 1]", p);
    double t = round(pvf_normal_quantile(confidence) * 1000.0) / 1000.0;
    double v = t * t * p * (1.0 - p), e2 = margin * margin, x;
    if (v == 0.0) { /* p = 0 or 1: no variance, no sample needed */
        *n = 0;
        return 0;
    }
    if (population == 0) {
        x = v / e2;
    } else {
        double dn = (double)population;
        x = dn * v / (e2 * (dn - 1.0) + v);
    }
    /* a whole number computed with rounding must not round up to the next */
    *n = (uint64_t)ceil(x * (1.0 - 1e-12));
    if (population && *n > population)
        *n = population;
    return 0;
}
