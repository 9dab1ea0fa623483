/* pvf_common.h - what every pvf library shares: the error record.
 *
 * Functions that can fail return 0 on success and -1 on failure, and fill a
 * caller-owned pvf_err with one line that names the thing and what is wrong.
 * Nothing below main() prints or exits. */
#ifndef PVF_COMMON_H
#define PVF_COMMON_H

#include <stddef.h>

#define PVF_ERR_MAX 512

typedef struct pvf_err {
    char msg[PVF_ERR_MAX];
} pvf_err;

/* Sets err->msg (if err is non-NULL) and returns -1, so callers can write
 * `return pvf_err_set(err, "...", ...);`. */
int pvf_err_set(pvf_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends "prefix: " to an error already set, keeping the cause. Returns -1. */
int pvf_err_prefix(pvf_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Seconds on the monotonic clock (for durations and timeouts). */
double pvf_now(void);

#endif
