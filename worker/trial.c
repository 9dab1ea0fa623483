#include "trial.h"

#include "kernels.h"

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

int pvf_trial_run(pvf_exec *ex, const pvf_golden *g, pvf_fault_kind kind,
                  const pvf_fault_site *site, float *out, pvf_trial_result *r, pvf_err *err) {
    memset(r, 0, sizeof *r);
    if (pvf_fault_apply(ex, kind, site, &r->effect, err))
        return -1;
    if (r->effect.new_word == r->effect.old_word) {
        /* Same stored bits, same computation: the golden outcome, exactly. */
        r->flags = PVF_TRIAL_UNCHANGED | PVF_TRIAL_MASKED;
        return 0;
    }
    const pvf_model *m = ex->m;
    int stage = m->params[m->targets[site->target].param].stage;
    int rc = pvf_forward_from(ex, g, stage, out, err);
    pvf_exec_fault_undo(ex);
    if (rc)
        return -1;
    pvf_judge(m, g, out, r);
    return 0;
}
