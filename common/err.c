#include "pvf_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int pvf_err_set(pvf_err *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int pvf_err_prefix(pvf_err *err, const char *fmt, ...) {
    if (err) {
        char prefix[PVF_ERR_MAX], old[PVF_ERR_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof old);
        /* prefix, ": ", old cause, truncated to fit */
        size_t n = strlen(prefix);
        if (n > sizeof err->msg - 3)
            n = sizeof err->msg - 3;
        memcpy(err->msg, prefix, n);
        memcpy(err->msg + n, ": ", 2);
        n += 2;
        size_t rest = sizeof err->msg - 1 - n, k = strnlen(old, sizeof old - 1);
        if (k > rest)
            k = rest;
        memcpy(err->msg + n, old, k);
        err->msg[n + k] = '\0';
    }
    return -1;
}
