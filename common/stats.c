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
