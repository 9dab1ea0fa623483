#include "cli.h"

#include "model.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int cli_fail(const char *cmd, int code, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "pvf %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

int cli_int64(const char *cmd, const char *flag, const char *s, int64_t min, int64_t max,
              int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno || v < min || v > max) {
        cli_fail(cmd, 2, "%s: '%s' is not an integer in %" PRId64 "..%" PRId64, flag, s, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_uint64(const char *cmd, const char *flag, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (*s == '\0' || *s == '-' || *end != '\0' || errno) {
        cli_fail(cmd, 2, "%s: '%s' is not a non-negative integer", flag, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_format(const char *cmd, const char *s, pvf_format *out) {
    if (pvf_format_parse(s, out) == 0)
        return 0;
    cli_fail(cmd, 2,
             "--format: unknown format '%s' (expected fp32, fp16, bf16, fp8-e4m3, int8, "
             "int4, or a packaging: llama4-fp8, llama4-int4)",
             s);
    return -1;
}

int cli_fault(const char *cmd, const char *s, pvf_fault_model *out) {
    pvf_err err;
    if (pvf_fault_model_parse(s, out, &err) == 0)
        return 0;
    cli_fail(cmd, 2, "--fault: %s", err.msg);
    return -1;
}

int cli_apply_threshold(const char *cmd, const cli_common *c, pvf_model *m) {
    if (c->threshold <= 0.0)
        return 0;
    if (!m->arch->has_threshold) {
        cli_fail(cmd, 2,
                 "--threshold: architecture '%s' judges the top-1 class; a probability "
                 "threshold applies to dlrm only",
                 m->arch->name);
        return -1;
    }
    m->outcome_threshold = c->threshold;
    return 0;
}

/* A shared flag: 1 taken, 0 not shared, -1 bad value (printed). */
static int common_flag(const char *cmd, int opt, const char *arg, cli_common *c) {
    switch (opt) {
    case 'm':
        c->model = arg;
        return 1;
    case 'd':
        c->data = arg;
        return 1;
    case 'j':
        c->json = 1;
        return 1;
    case 'f':
        return cli_format(cmd, arg, &c->format) ? -1 : 1;
    case 'F':
        return cli_fault(cmd, arg, &c->fault) ? -1 : 1;
    case CLI_OPT_NAIVE:
        c->naive = 1;
        return 1;
    case 'T': {
        char *end;
        errno = 0;
        double t = strtod(arg, &end);
        if (*arg == '\0' || *end != '\0' || errno || !(t > 0.0 && t < 1.0)) {
            cli_fail(cmd, 2, "--threshold: '%s' is not a number in (0, 1)", arg);
            return -1;
        }
        c->threshold = t;
        return 1;
    }
    default:
        return 0;
    }
}

static int has_flag(const struct option *opts, int val) {
    for (; opts->name; opts++)
        if (opts->val == val)
            return 1;
    return 0;
}

int cli_parse(const char *cmd, int argc, char **argv, const struct option *opts, cli_common *c,
              cli_flag_fn own, void *ctx) {
    if (c)
        *c = (cli_common){.format = PVF_FMT_FP32, .fault = {PVF_FAULT_BITFLIP, -1, 1}};
    /* Only the model commands take the shared flags (c may be NULL otherwise). */
    const int model_cmd = c && has_flag(opts, 'm');
    int opt;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (opt == ':')
            return cli_fail(cmd, 2, "%s needs a value", argv[optind - 1]);
        int taken = opt == '?' || !model_cmd ? 0 : common_flag(cmd, opt, optarg, c);
        if (taken == 0 && opt != '?' && own)
            taken = own(cmd, opt, optarg, ctx);
        if (taken < 0)
            return 2;
        if (taken == 0)
            return cli_fail(cmd, 2, "unknown flag '%s' (see pvf help)", argv[optind - 1]);
    }
    if (optind < argc)
        return cli_fail(cmd, 2, "unexpected argument '%s'", argv[optind]);
    if (model_cmd && !c->model)
        return cli_fail(cmd, 2, "--model DIR is required");
    return 0;
}
