/* pvf_stats.h - fixed-sample interval estimates reported beside PVF figures. */
#ifndef PVF_STATS_H
#define PVF_STATS_H

#include <stdint.h>

/* Wilson score interval for a mean p_hat of n observations in [0, 1] at
 * normal quantile z (1.959964 for 95 %). For 0/1 observations it is the
 * usual binomial Wilson interval; for fractions it is conservative, since a
 * [0,1] variable with mean p has variance at most p(1-p). */
void pvf_wilson(double p_hat, int64_t n, double z, double *lo, double *hi);

#define PVF_Z95 1.959963984540054

#endif
