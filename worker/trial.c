#include "trial.h"

#include "fast.h"
#include "kernels.h"
#include "sampler.h"

#include <stdlib.h>
#include <string.h>

void pvf_judge(const pvf_model *m, const pvf_golden *g, const float *out, pvf_trial_result *r) {
    if (m->arch->judge) {
        m->arch->judge(m, g, out, r);
        return;
    }
    r->incorrect = 0;
    r->nonfinite = 0;
    for (int64_t i = 0; i < g->n; i++) {
        const float *row = out + i * m->out_size;
        if (!pvf_all_finite(row, m->out_size)) {
            r->nonfinite++;
            r->incorrect++;
        } else if (pvf_argmax(row, m->out_size) != g->top1[i]) {
            r->incorrect++;
        }
    }
    r->judged = g->n;
    r->value = g->n ? (double)r->incorrect / (double)g->n : 0.0;
    r->flags &= ~(unsigned)(PVF_TRIAL_MASKED | PVF_TRIAL_NONFINITE);
    if (r->incorrect == 0)
        r->flags |= PVF_TRIAL_MASKED;
    if (r->nonfinite)
        r->flags |= PVF_TRIAL_NONFINITE;
}

/* The overlay holds the shared values bit for bit: the computation is golden's. */
static int values_unchanged(const pvf_exec *ex) {
    const pvf_param *p = &ex->m->params[ex->fault_param];
    return memcmp(ex->patch, p->value + ex->fault_lo,
                  (size_t)(ex->fault_hi - ex->fault_lo) * sizeof *ex->patch) == 0;
}

int pvf_trial_run(pvf_exec *ex, const pvf_golden *g, pvf_fault_kind kind,
                  const pvf_fault_site *site, float *out, pvf_trial_result *r, pvf_err *err) {
    memset(r, 0, sizeof *r);
    if (pvf_fault_apply(ex, kind, site, &r->effect, err))
        return -1;
    const pvf_model *m = ex->m;
    const int param = m->targets[site->target].param;
    int stage = m->params[param].stage;
    int rc = 1;
    if (ex->naive) {
        stage = 0; /* the plain path: every stage, even for an unchanged word */
    } else if (r->effect.new_word == r->effect.old_word || values_unchanged(ex)) {
        /* Same values, same computation: the golden outcome, exactly. */
        pvf_fast_begin(ex, g, out, r); /* golden's outputs, when they are wanted */
        pvf_exec_fault_undo(ex);
        r->flags = (r->effect.new_word == r->effect.old_word ? PVF_TRIAL_UNCHANGED : 0) |
                   PVF_TRIAL_MASKED | PVF_TRIAL_SETTLED;
        r->judged = g->judged_per_row * g->n;
        return 0;
    } else if (m->arch->fast_trial) {
        pvf_fast_begin(ex, g, out, r);
        rc = m->arch->fast_trial(ex, g, param, &r->effect, r, err);
        if (rc == 0)
            pvf_fast_finish(g, r);
    }
    if (rc == 1) { /* every eval input through the stages from `stage` */
        rc = pvf_forward_from(ex, g, stage, out, err);
        r->stage_rows = g->n * (m->out_positions > 0 ? m->out_positions : 1) * (m->nstages - stage);
        if (rc == 0)
            pvf_judge(m, g, out, r);
    }
    pvf_exec_fault_undo(ex);
    return rc;
}

static int cmp_trial_site(const void *pa, const void *pb) {
    const pvf_trial_site *a = pa, *b = pb;
    if (a->site.target != b->site.target)
        return a->site.target < b->site.target ? -1 : 1;
    if (a->site.element != b->site.element)
        return a->site.element < b->site.element ? -1 : 1;
    if (a->site.mask != b->site.mask)
        return a->site.mask < b->site.mask ? -1 : 1;
    return (a->trial > b->trial) - (a->trial < b->trial);
}

void pvf_trial_order(pvf_trial_site *t, size_t n) {
    qsort(t, n, sizeof *t, cmp_trial_site);
}

int pvf_trial_sites(const pvf_model *m, const int *targets, int ntargets, const pvf_fault_model *fm,
                    uint64_t seed, uint64_t stratum, uint64_t lo, size_t n, pvf_trial_site *t,
                    pvf_err *err) {
    for (size_t k = 0; k < n; k++) {
        t[k].trial = lo + k;
        if (pvf_sample_site(m, targets, ntargets, fm, seed, stratum, t[k].trial, &t[k].site, err))
            return -1;
    }
    pvf_trial_order(t, n);
    return 0;
}
