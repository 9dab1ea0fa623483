/* pvf inject: one trial at a fault site the user names. */
#include "cli.h"
#include "runner.h"

#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD "inject"

/* "3,7,12" -> bit positions. */
static int parse_bits(const char *s, int *bits, int cap, int *n) {
    *n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long b = strtol(p, &end, 10);
        if (end == p || b < 0 || b > 31 || *n == cap || (*end != ',' && *end != '\0'))
            return -1;
        bits[(*n)++] = (int)b;
        p = *end == ',' ? end + 1 : end;
        if (*end == ',' && *p == '\0')
            return -1;
    }
    return *n ? 0 : -1;
}

/* The bit mask the fault model acts on, from the --bit positions. */
static int site_mask(const pvf_fault_model *fm, const int *bits, int nbits, int width,
                     uint32_t *mask) {
    *mask = 0;
    if (fm->kind == PVF_FAULT_BURST) {
        if (nbits != 1)
            return cli_fail(CMD, 2, "--bit: a burst takes its first bit only");
        if (bits[0] + fm->k > width)
            return cli_fail(CMD, 2, "--bit: a burst of %d from bit %d leaves the %d-bit word",
                            fm->k, bits[0], width);
        *mask = (fm->k == 32 ? 0xFFFFFFFFu : ((1u << fm->k) - 1u)) << bits[0];
        return 0;
    }
    if (fm->kind == PVF_FAULT_KBIT && nbits != fm->k)
        return cli_fail(CMD, 2, "--bit: kbit:%d needs %d distinct bits", fm->k, fm->k);
    if (fm->kind != PVF_FAULT_KBIT && nbits != 1)
        return cli_fail(CMD, 2, "--bit: this fault model takes one bit (use kbit:K for more)");
    for (int i = 0; i < nbits; i++) {
        if (bits[i] >= width)
            return cli_fail(CMD, 2, "--bit: bit %d outside the %d-bit word", bits[i], width);
        if (*mask & (1u << bits[i]))
            return cli_fail(CMD, 2, "--bit: bit %d given twice", bits[i]);
        *mask |= 1u << bits[i];
    }
    return 0;
}

/* A JSON number, or the string "nan", "inf", "-inf" (JSON has no such numbers). */
static json_t *json_number(float v) {
    if (isnan(v))
        return json_string("nan");
    if (isinf(v))
        return json_string(v > 0 ? "inf" : "-inf");
    return json_real((double)v);
}

typedef struct inject_args {
    const char *tensor, *bits;
    int64_t index;
} inject_args;

static int inject_flag(const char *cmd, int opt, const char *arg, void *ctx) {
    inject_args *a = ctx;
    switch (opt) {
    case 't':
        a->tensor = arg;
        return 1;
    case 'b':
        a->bits = arg;
        return 1;
    case 'i':
        return cli_int64(cmd, "--index", arg, 0, INT64_MAX, &a->index) ? -1 : 1;
    default:
        return 0;
    }
}

int pvf_cmd_inject(int argc, char **argv) {
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         CLI_FAULT_OPTION,
                                         CLI_THRESHOLD_OPTION,
                                         CLI_NAIVE_OPTION,
                                         {"tensor", required_argument, 0, 't'},
                                         {"index", required_argument, 0, 'i'},
                                         {"bit", required_argument, 0, 'b'},
                                         {0, 0, 0, 0}};
    cli_common c;
    inject_args a = {.index = -1};
    int bits[32], nbits = 0;
    if (cli_parse(CMD, argc, argv, opts, &c, inject_flag, &a))
        return 2;
    if (!a.tensor || a.index < 0)
        return cli_fail(CMD, 2, "--tensor and --index are required");
    if (a.bits && parse_bits(a.bits, bits, 32, &nbits))
        return cli_fail(CMD, 2, "--bit: '%s' is not a list of bit positions 0..31", a.bits);
    if (!a.bits) {
        if (c.fault.bit < 0)
            return cli_fail(CMD, 2, "--bit is required (or a fault model with a fixed bit)");
        bits[nbits++] = c.fault.bit;
    } else if (c.fault.bit >= 0 && (nbits != 1 || bits[0] != c.fault.bit)) {
        return cli_fail(CMD, 2, "--bit %s contradicts --fault fixing bit %d", a.bits, c.fault.bit);
    }

    pvf_err err;
    pvf_runner r;
    if (pvf_runner_open(&r, c.model, c.data, c.format, &err))
        return cli_fail(CMD, 1, "%s", err.msg);
    r.exec.naive = c.naive;
    int rc = 0;
    if (cli_apply_threshold(CMD, &c, &r.model)) {
        rc = 2;
        goto done;
    }
    const pvf_model *m = &r.model;
    pvf_fault_site site = {.target = pvf_model_find_target(m, a.tensor), .element = a.index};
    if (site.target < 0) {
        rc = cli_fail(CMD, 2, "--tensor: '%s' is not a fault target of %s in %s (see pvf sweep)",
                      a.tensor, c.model, pvf_format_name(c.format));
        goto done;
    }
    const pvf_target *t = &m->targets[site.target];
    if (a.index >= t->numel) {
        rc = cli_fail(CMD, 2, "--index: %" PRId64 " outside '%s' (%" PRId64 " elements)", a.index,
                      a.tensor, t->numel);
        goto done;
    }
    if (site_mask(&c.fault, bits, nbits, t->bits, &site.mask)) {
        rc = 2;
        goto done;
    }
    pvf_trial_result res;
    if (pvf_trial_run(&r.exec, &r.golden, c.fault.kind, &site, r.out, &res, &err)) {
        rc = cli_fail(CMD, 1, "%s", err.msg);
        goto done;
    }
    char fault[32];
    pvf_fault_model_format(&c.fault, fault, sizeof fault);
    const pvf_fault_effect *e = &res.effect;
    int hex = (t->bits + 3) / 4;
    if (c.json) {
        char ow[16], nw[16];
        snprintf(ow, sizeof ow, "0x%0*" PRIx32, hex, e->old_word);
        snprintf(nw, sizeof nw, "0x%0*" PRIx32, hex, e->new_word);
        json_t *o = json_pack(
            "{s:s, s:s, s:s, s:I, s:I, s:i, s:s, s:s, s:o, s:o, s:I, s:I, s:I, s:f, s:b, s:b, "
            "s:b, s:b, s:I}",
            "tensor", a.tensor, "format", pvf_format_name(c.format), "fault", fault, "index",
            (json_int_t)a.index, "mask", (json_int_t)site.mask, "bits", t->bits, "old_word", ow,
            "new_word", nw, "old_value", json_number(e->old_value), "new_value",
            json_number(e->new_value), "inputs", (json_int_t)r.golden.n, "incorrect",
            (json_int_t)res.incorrect, "nonfinite", (json_int_t)res.nonfinite, "value", res.value,
            "masked", (res.flags & PVF_TRIAL_MASKED) != 0, "nonfinite_flag",
            (res.flags & PVF_TRIAL_NONFINITE) != 0, "unchanged",
            (res.flags & PVF_TRIAL_UNCHANGED) != 0, "settled", (res.flags & PVF_TRIAL_SETTLED) != 0,
            "stage_rows", (json_int_t)res.stage_rows);
        json_object_set_new(o, "judged", json_integer(res.judged ? res.judged : r.golden.n));
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
        puts(s);
        free(s);
        json_decref(o);
    } else {
        printf("site        %s[%" PRId64 "], %d-bit word, mask 0x%0*" PRIx32
               ", fault %s, format %s\n",
               a.tensor, a.index, t->bits, hex, site.mask, fault, pvf_format_name(c.format));
        printf("stored      0x%0*" PRIx32 " -> 0x%0*" PRIx32 "\n", hex, e->old_word, hex,
               e->new_word);
        printf("value       %.9g -> %.9g%s\n", (double)e->old_value, (double)e->new_value,
               t->is_scale ? " (scale)" : "");
        const char *unit = r.model.out_positions > 1 ? "scored positions" : "eval inputs";
        printf("incorrect   %" PRId64 "/%" PRId64 " %s (value %.6f)\n", res.incorrect,
               res.judged ? res.judged : r.golden.n, unit, res.value);
        printf("flags      %s%s%s%s%s\n", res.flags & PVF_TRIAL_MASKED ? " masked" : "",
               res.flags & PVF_TRIAL_NONFINITE ? " nonfinite" : "",
               res.flags & PVF_TRIAL_UNCHANGED ? " unchanged" : "",
               res.flags & PVF_TRIAL_SETTLED ? " settled" : "", res.flags ? "" : " -");
        printf("work        %" PRId64 " (eval input, stage) evaluations%s\n", res.stage_rows,
               c.naive ? " (naive)" : "");
        if (res.nonfinite)
            printf("nonfinite   %" PRId64 " %s with NaN/Inf outputs\n", res.nonfinite, unit);
    }
done:
    pvf_runner_close(&r);
    return rc;
}
