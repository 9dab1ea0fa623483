/* trial.h - one fault-injection trial: corrupt the stored bits, run the
 * faulty inference over the eval set from the faulty parameter's stage,
 * judge every output against golden, undo.
 *
 * Outcome rule (classifiers): an eval input's output is incorrect when its
 * top-1 class differs from golden, or when any of its outputs is NaN/Inf
 * (counted separately too: in practice a detectable error, not a silent
 * one). The trial's value is the fraction of eval inputs that are incorrect. */
#ifndef PVF_TRIAL_H
#define PVF_TRIAL_H

#include "fault.h"
#include "model.h"

enum {
    PVF_TRIAL_MASKED = 1u << 0,    /* no eval output incorrect */
    PVF_TRIAL_NONFINITE = 1u << 1, /* some output NaN or Inf */
    PVF_TRIAL_UNCHANGED = 1u << 2, /* the stored word did not change (stuck-at) */
    PVF_TRIAL_SETTLED = 1u << 3,   /* judged without running any stage (fast path) */
    /* The trial crashed its worker (a fatal signal the worker caught, guard.h)
     * or hung past the coordinator's deadline three times: value 1. */
    PVF_TRIAL_CRASHED = 1u << 8,
};

typedef struct pvf_trial_result {
    double value;      /* fraction of eval inputs incorrect */
    int64_t incorrect; /* eval inputs whose output is incorrect */
    int64_t nonfinite; /* of which with a non-finite output */
    int64_t judged;    /* outputs judged: eval inputs (scored positions for an LLM) */
    unsigned flags;
    int64_t stage_rows; /* (eval input, stage) evaluations the trial ran; (token, stage)
                           for a language model (out_positions > 1) */
    pvf_fault_effect effect;
} pvf_trial_result;

/* Judges outputs out[n, out_size] against golden. */
void pvf_judge(const pvf_model *m, const pvf_golden *g, const float *out, pvf_trial_result *r);

/* Runs one trial; out is scratch for n x out_size outputs. Leaves ex clean.
 * With ex->naive, the plain path: a full forward pass from stage 0, out
 * holds every output. Otherwise the fast path (fast.h): out holds every
 * output only with ex->want_outputs. */
int pvf_trial_run(pvf_exec *ex, const pvf_golden *g, pvf_fault_kind kind,
                  const pvf_fault_site *site, float *out, pvf_trial_result *r, pvf_err *err);

/* One trial of a job and its fault site. */
typedef struct pvf_trial_site {
    uint64_t trial;
    pvf_fault_site site;
} pvf_trial_site;

/* Orders a job's trials by fault site: target, then element, bit mask and
 * trial index. A trial's outcome does not depend on the order; its speed
 * does: trials on one tensor, run together, find its fast-path state (the
 * per-input data a fault of that tensor reads) in cache, where trials in
 * index order would evict it between one another. */
void pvf_trial_order(pvf_trial_site *t, size_t n);

/* The sites of trials lo..lo+n-1 of one stratum (pvf_sample_site) into
 * t[n], in their order (pvf_trial_order): a worker's job, a bench block. */
int pvf_trial_sites(const pvf_model *m, const int *targets, int ntargets, const pvf_fault_model *fm,
                    uint64_t seed, uint64_t stratum, uint64_t lo, size_t n, pvf_trial_site *t,
                    pvf_err *err);

#endif
