#include "fault.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_uint(const char *s, int max, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0 || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

int pvf_fault_model_parse(const char *s, pvf_fault_model *fm, pvf_err *err) {
    static const struct {
        const char *name;
        pvf_fault_kind kind;
        int arg; /* 0 none, 1 optional bit, 2 required count */
    } kinds[] = {
        {"bit", PVF_FAULT_BITFLIP, 1},   {"kbit", PVF_FAULT_KBIT, 2},
        {"burst", PVF_FAULT_BURST, 2},   {"stuck0", PVF_FAULT_STUCK0, 1},
        {"stuck1", PVF_FAULT_STUCK1, 1},
    };
    const char *colon = strchr(s, ':');
    size_t len = colon ? (size_t)(colon - s) : strlen(s);
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
        if (strlen(kinds[i].name) != len || strncmp(s, kinds[i].name, len) != 0)
            continue;
        fm->kind = kinds[i].kind;
        fm->bit = -1;
        fm->k = 1;
        if (kinds[i].arg == 2) {
            if (!colon || parse_uint(colon + 1, 32, &fm->k) || fm->k < 2)
                return pvf_err_set(err, "fault model '%s': %s needs a bit count 2..32 (%s:N)", s,
                                   kinds[i].name, kinds[i].name);
        } else if (colon) {
            if (parse_uint(colon + 1, 31, &fm->bit))
                return pvf_err_set(err, "fault model '%s': bit must be 0..31", s);
        }
        return 0;
    }
    return pvf_err_set(err,
                       "unknown fault model '%s' (expected bit, bit:B, kbit:K, burst:B, stuck0, "
                       "stuck0:B, stuck1, stuck1:B)",
                       s);
}

void pvf_fault_model_format(const pvf_fault_model *fm, char *buf, size_t n) {
    static const char *const names[] = {"bit", "kbit", "burst", "stuck0", "stuck1"};
    if (fm->kind == PVF_FAULT_KBIT || fm->kind == PVF_FAULT_BURST)
        snprintf(buf, n, "%s:%d", names[fm->kind], fm->k);
    else if (fm->bit >= 0)
        snprintf(buf, n, "%s:%d", names[fm->kind], fm->bit);
    else
        snprintf(buf, n, "%s", names[fm->kind]);
}

int pvf_fault_model_fits(const pvf_fault_model *fm, int bits) {
    if (fm->kind == PVF_FAULT_KBIT || fm->kind == PVF_FAULT_BURST)
        return fm->k <= bits;
    return fm->bit < bits;
}

uint32_t pvf_fault_word(pvf_fault_kind kind, uint32_t word, uint32_t mask) {
    switch (kind) {
    case PVF_FAULT_STUCK0:
        return word & ~mask;
    case PVF_FAULT_STUCK1:
        return word | mask;
    default:
        return word ^ mask;
    }
}

int pvf_fault_apply(pvf_exec *ex, pvf_fault_kind kind, const pvf_fault_site *site,
                    pvf_fault_effect *eff, pvf_err *err) {
    const pvf_model *m = ex->m;
    if (site->target < 0 || site->target >= m->ntargets)
        return pvf_err_set(err, "fault site: no target %d", site->target);
    const pvf_target *t = &m->targets[site->target];
    if (site->element < 0 || site->element >= t->numel)
        return pvf_err_set(err,
                           "fault site: element %" PRId64 " outside '%s' (%" PRId64 " elements)",
                           site->element, t->name, t->numel);
    uint32_t width_mask = t->bits == 32 ? 0xFFFFFFFFu : ((1u << t->bits) - 1u);
    if (site->mask == 0 || (site->mask & ~width_mask))
        return pvf_err_set(err, "fault site: bit mask 0x%" PRIx32 " outside a %d-bit word of '%s'",
                           site->mask, t->bits, t->name);
    const pvf_param *p = &m->params[t->param];
    const pvf_qtensor *q = &p->store;
    memset(eff, 0, sizeof *eff);
    if (!t->is_scale) {
        int64_t i = site->element;
        float scale = q->scales ? q->scales[pvf_qtensor_scale_index(q, i)] : 1.0f;
        eff->old_word = pvf_qtensor_code(q, i);
        eff->new_word = pvf_fault_word(kind, eff->old_word, site->mask);
        eff->old_value = p->value[i];
        eff->new_value = pvf_qtensor_value(q, eff->new_word, scale);
        eff->lo = i;
        eff->hi = i + 1;
        if (eff->new_word == eff->old_word)
            return 0;
        float *span = pvf_exec_fault_span(ex, t->param, i, i + 1, err);
        if (!span)
            return -1;
        span[0] = eff->new_value;
        return 0;
    }
    /* A scale: every element it multiplies is re-derived from its code. */
    int64_t s = site->element;
    eff->old_word = pvf_f32_bits(q->scales[s]);
    eff->new_word = pvf_fault_word(kind, eff->old_word, site->mask);
    eff->old_value = q->scales[s];
    eff->new_value = pvf_bits_f32(eff->new_word);
    pvf_qtensor_scale_span(q, s, &eff->lo, &eff->hi);
    if (eff->new_word == eff->old_word)
        return 0;
    float *span = pvf_exec_fault_span(ex, t->param, eff->lo, eff->hi, err);
    if (!span)
        return -1;
    for (int64_t i = 0; i < eff->hi - eff->lo; i++)
        span[i] = pvf_qtensor_value(q, pvf_qtensor_code(q, eff->lo + i), eff->new_value);
    return 0;
}
