/* fast.h - the fast trial path: a trial computes only what its fault changes.
 *
 * An architecture's fast_trial (model.h) computes the faulty stage's output
 * for the eval inputs ("rows") whose output the fault changes, exactly (the
 * faulty dot products, not golden + delta), and hands those rows to
 * pvf_fast_rows. That carries each row through the later stages and drops it
 * as soon as its activations equal golden again, or the architecture's
 * fast_bound proves its outcome is golden's. Rows never handed over are
 * golden by construction and judged correct without any work. A trial that
 * runs no stage at all is "settled" (PVF_TRIAL_SETTLED). */
#ifndef PVF_FAST_H
#define PVF_FAST_H

#include "model.h"
#include "trial.h"

/* Part of the golden pass: the outputs judged per eval input, then the
 * architecture's fast_prepare. */
int pvf_fast_golden_init(pvf_golden *g, const pvf_model *m, pvf_err *err);

/* Starts a fast trial's counts; with ex->want_outputs, copies the golden
 * outputs to out, where pvf_fast_rows then writes every changed row. */
void pvf_fast_begin(pvf_exec *ex, const pvf_golden *g, float *out, pvf_trial_result *r);

/* Carries k rows (eval input indices rows[], ascending), whose inputs to
 * stage `stage` are in[k x stages[stage].in_size] (NULL: their golden
 * inputs, for a rerun of the faulty stage), through the stages from
 * `stage` to the last and judges them into r. stage == m->nstages: in holds
 * final outputs [k x out_size], judged directly. Rows whose input to a stage
 * after the faulty one equals golden are dropped there. */
int pvf_fast_rows(pvf_exec *ex, const pvf_golden *g, int stage, const int64_t *rows, int64_t k,
                  const float *in, pvf_trial_result *r, pvf_err *err);

/* Drops from rows[0..n), whose inputs to stage s are in[n x in_size], the
 * rows equal to golden bit for bit or cleared by the architecture's
 * fast_bound, compacting both; returns how many remain. */
int64_t pvf_fast_drop_golden(const pvf_exec *ex, const pvf_golden *g, int s, int64_t *rows,
                             float *in, int64_t n);

/* 1 when v[0..n) holds two or more finite values of magnitude >= 1e30: a
 * sum of them may overflow or not depending on its order, so it must run as
 * the full pass runs it. */
int pvf_fast_overflow_prone(const float *v, int64_t n);

/* An upper bound of the largest singular value of rows r0..r0+nr of
 * w[*, cols], column j scaled by colscale[j] (NULL: 1), for the sound bounds:
 * lambda_max(G) <= ||G^(2^k)||_F^(2^-k) for the Gram matrix G of the smaller
 * side, normalized squarings in double. -1 when out of memory. */
double pvf_fast_spectral_bound(const float *w, int64_t cols, int64_t r0, int64_t nr,
                               const float *colscale);

/* Likewise for a[rows, cols] in double, with `squarings` squarings: within
 * dim^(2^-(squarings+1)) of the norm. -1 when out of memory. */
double pvf_fast_spectral_bound_d(const double *a, int64_t rows, int64_t cols, int squarings);

/* Judges one row's final outputs into r (for a fast_trial that computed
 * them itself). */
void pvf_fast_judge_row(pvf_exec *ex, const pvf_golden *g, int64_t row, const float *out,
                        pvf_trial_result *r);

/* The trial's value, judged count and flags from the counts. */
void pvf_fast_finish(const pvf_golden *g, pvf_trial_result *r);

#endif
