/* pvf_stats.h - fixed-sample interval estimates reported beside PVF figures. */
#ifndef PVF_STATS_H
#define PVF_STATS_H

#include "pvf_common.h"

#include <stdint.h>

/* Wilson score interval for a mean p_hat of n observations in [0, 1] at
 * normal quantile z (1.959964 for 95 %). For 0/1 observations it is the
 * usual binomial Wilson interval; for fractions it is conservative, since a
 * [0,1] variable with mean p has variance at most p(1-p). */
void pvf_wilson(double p_hat, int64_t n, double z, double *lo, double *hi);

#define PVF_Z95 1.959963984540054

/* z with P(|Z| <= z) = confidence for a standard normal Z (1.959964 for
 * 0.95), confidence in (0, 1). */
double pvf_normal_quantile(double confidence);

/* Regularised incomplete beta function I_x(a, b), a, b > 0, x in [0, 1]. */
double pvf_beta_inc(double a, double b, double x);

/* Clopper-Pearson ("exact") interval for k ones in n 0/1 trials at the given
 * confidence: valid at one pre-planned n only. [0, 1] when n = 0. */
void pvf_clopper_pearson(int64_t k, int64_t n, double confidence, double *lo, double *hi);

/* Leveugle et al. (DATE 2009) sample size for a fixed-n campaign: the n
 * with margin e at the given confidence for a population of N fault sites
 * (0: infinite) and an assumed proportion p (0.5 is the worst case):
 *   n = N t^2 p(1-p) / (e^2 (N-1) + t^2 p(1-p)), rounded up,
 * t the normal quantile rounded to three decimals as in the published tables
 * (1.960, 2.576, 3.291). Valid only when n is fixed in advance. */
int pvf_leveugle_n(uint64_t population, double margin, double confidence, double p, uint64_t *n,
                   pvf_err *err);

#endif
