/* model.h - a model: named parameters in a storage format, and a sequence of
 * stages that a forward pass runs in order.
 *
 * Every stage maps a fixed number of floats per eval input to another; a
 * forward pass can start at any stage from that stage's cached golden input
 * (pvf_golden), so a fault in stage k never recomputes stages 0..k-1.
 *
 * Parameters are shared read-only by all executors. An executor (pvf_exec)
 * sees a fault through its own overlay: applying a fault writes the faulty
 * values of its span (one element, or the elements one scale multiplies) to
 * a small patch, never the shared weights. Kernels ask pvf_exec_weights() for
 * a parameter's values and get the shared ones, or for the faulted parameter
 * the executor's private copy, which is brought up to date (copied once per
 * parameter, then patched) only when a kernel actually asks: a fast trial that
 * needs only the patch never copies anything. */
#ifndef PVF_MODEL_H
#define PVF_MODEL_H

#include "config.h"
#include "evalset.h"
#include "format.h"
#include "pvf_common.h"
#include "safetensors.h"
#include "tensor.h"

#include <stdint.h>

/* Eval inputs per pass through the stages (bounds every workspace). */
#define PVF_CHUNK 64

typedef struct pvf_model pvf_model;
struct pvf_golden;
struct pvf_trial_result;
struct pvf_fault_effect;
typedef struct pvf_exec pvf_exec;

typedef struct pvf_param {
    char *name; /* Hugging Face tensor name */
    int ndim;
    int64_t shape[PVF_MAX_DIMS];
    int64_t numel;
    pvf_qtensor store;  /* stored codes and scales: what faults flip */
    float *value;       /* fp32 compute copy derived from store */
    int stage;          /* the stage that reads it */
    char component[48]; /* group for component strata; defaults to the stage name */
} pvf_param;

/* A fault target: a parameter's codes, or its scales. */
typedef struct pvf_target {
    char *name; /* the parameter name, or name + "_scale" */
    int param;
    int is_scale;
    int64_t numel; /* stored words */
    int bits;      /* width of one word */
} pvf_target;

/* A task metric for pvf infer (AUC, log-loss, ...). */
typedef struct pvf_metric {
    const char *name;
    double value;
} pvf_metric;

typedef int (*pvf_stage_fn)(const pvf_model *m, int stage, pvf_exec *ex, int64_t first, int64_t n,
                            const float *in, float *out);

typedef struct pvf_stage {
    char name[48];
    int64_t in_size, out_size; /* floats per eval input */
    pvf_stage_fn run;
    int layer;    /* the architecture's own index */
    int row_free; /* reads nothing by eval index: any set of inputs in one call */
} pvf_stage;

/* An architecture builds a model from config.json and the weights. */
typedef struct pvf_arch {
    const char *name; /* config "model_type" (or "architectures"[0]) */
    const char *hf_class;
    /* Declares parameters (pvf_model_add_param) and stages. */
    int (*build)(pvf_model *m, const pvf_config *cfg, const pvf_st_set *weights, pvf_err *err);
    /* Checks that the eval set fits and returns the stage-0 input (floats,
     * n x stages[0].in_size) through *input, or NULL when stage 0 reads the
     * eval tensors itself. */
    int (*bind_eval)(const pvf_model *m, const pvf_evalset *e, const float **input, pvf_err *err);
    /* Outcome rule; NULL: classification, top-1 against golden (trial.h). */
    void (*judge)(const pvf_model *m, const struct pvf_golden *g, const float *out,
                  struct pvf_trial_result *r);
    /* The decision an output row stands for, compared with labels and the
     * reference outputs by pvf infer; NULL: the top-1 class. */
    int64_t (*decide)(const pvf_model *m, const float *row);
    /* Task metrics of the outputs out[n, out_size] against labels (I64/I32
     * [n]) for pvf infer; writes up to cap, returns how many. NULL: none. */
    int (*metrics)(const pvf_model *m, const float *out, const pvf_tensor *labels, int64_t n,
                   pvf_metric *mt, int cap);
    /* 1 when judge honours pvf_model.outcome_threshold. */
    int has_threshold;
    /* Optional: the storage format of parameter `name` under the packaging
     * m->format (format.h); -1 when the architecture has no such packaging. */
    int (*packaging)(const pvf_model *m, const char *name, pvf_format *storage);
    /* Optional: fits the sizes that depend on the eval set (a language
     * model's sequence length: stage sizes, out_size, scratch) and checks
     * the eval set; run by pvf_model_fit_eval before executors are made. */
    int (*fit_eval)(pvf_model *m, const pvf_evalset *e, pvf_err *err);
    /* Optional, the fast trial path (fast.h). fast_prepare derives what the
     * fast path needs from the golden pass (read maps, sensitivities,
     * margins) into *state, freed by fast_free; run once per golden pass. */
    int (*fast_prepare)(const pvf_model *m, const struct pvf_golden *g, void **state, pvf_err *err);
    void (*fast_free)(void *state);
    /* Runs a trial whose fault is installed in ex's overlay (parameter
     * `param`, compute elements eff->lo..hi changed) computing only what
     * changed, and judges it through pvf_fast_rows/pvf_fast_finish. Returns
     * 0 done, 1 not handled here (the caller runs the stages from the faulty
     * one), -1 error. */
    int (*fast_trial)(pvf_exec *ex, const struct pvf_golden *g, int param,
                      const struct pvf_fault_effect *eff, struct pvf_trial_result *r, pvf_err *err);
    /* Optional: 1 when a sound bound proves that eval input `row`, whose
     * input to stage `stage` is in[stages[stage].in_size], judges as golden
     * does (the change that can still reach its outputs is below its
     * decision margin); 0 when it cannot tell. */
    int (*fast_bound)(const pvf_exec *ex, const struct pvf_golden *g, int stage, int64_t row,
                      const float *in);
} pvf_arch;

struct pvf_model {
    char *dir;
    const pvf_arch *arch;
    pvf_config config;
    pvf_format format;
    pvf_param *params;
    int nparams, cap_params;
    pvf_stage *stages;
    int nstages, cap_stages;
    pvf_target *targets;
    int ntargets;
    int64_t out_size;            /* outputs per eval input (logits) */
    int64_t out_positions;       /* rows of out_size / out_positions classes per input (a
                                    language model's positions; its arch judges them); 1 for a
                                    classifier */
    int64_t scratch_floats;      /* per-executor workspace a chunk of inputs needs */
    int64_t fast_scratch_floats; /* per-executor workspace of the arch's fast_trial */
    double outcome_threshold;    /* campaign: > 0 judges |output - golden| > it (has_threshold) */
    void *arch_state;            /* owned by the architecture */
    void (*arch_free)(void *);
};

/* Loads DIR/config.json and DIR's weights, stores every parameter in
 * `format` (fp8/int8/int4 apply to tensors of 2 or more dims; 1-D tensors
 * stay fp32) and derives the compute copies. */
int pvf_model_load(pvf_model *m, const char *dir, pvf_format format, pvf_err *err);
void pvf_model_free(pvf_model *m);

/* For architectures: fetches `name` from the weights, checks its shape,
 * stores it in the model's format. Returns the parameter index or -1. */
int pvf_model_add_param(pvf_model *m, const pvf_st_set *weights, const char *name, int ndim,
                        const int64_t *shape, int stage, pvf_err *err);
/* The same for weights the architecture has prepared itself (a slice of a
 * checkpoint tensor): w[numel] fp32 values, copied. */
int pvf_model_add_param_values(pvf_model *m, const char *name, int ndim, const int64_t *shape,
                               const float *w, int stage, pvf_err *err);
/* The storage format of parameter `name` (ndim dims) under m->format. */
int pvf_model_storage_format(const pvf_model *m, const char *name, int ndim, pvf_format *out,
                             pvf_err *err);
/* Fits the model to an eval set (arch fit_eval); a no-op for architectures
 * whose sizes do not depend on it. Before pvf_exec_init. */
int pvf_model_fit_eval(pvf_model *m, const pvf_evalset *e, pvf_err *err);
/* Appends a stage; returns its index or -1. */
int pvf_model_add_stage(pvf_model *m, const char *name, int64_t in_size, int64_t out_size,
                        pvf_stage_fn run, int layer, pvf_err *err);
int pvf_model_find_target(const pvf_model *m, const char *name);
/* Puts parameter `param` in a named component (router, shared expert, ...). */
void pvf_model_set_component(pvf_model *m, int param, const char *component);
int64_t pvf_model_param_count(const pvf_model *m);
const pvf_arch *pvf_arch_find(const char *name);
/* "lenet (LeNetForImageClassification), ..." for error messages. */
void pvf_arch_names(char *buf, size_t n);

/* Cached golden activations: the input of every stage for every eval input,
 * and the golden outputs. */
typedef struct pvf_golden {
    int64_t n;
    float **stage_in;       /* [nstages], owned; stage_in[0] NULL when stage 0 reads the eval set */
    float *out;             /* [n, out_size] */
    int64_t *top1;          /* [n * out_positions]: argmax of each position's classes */
    int64_t judged_per_row; /* outputs the outcome rule judges per eval input */
    void *fast;             /* the architecture's fast_prepare state, or NULL */
    const pvf_evalset *eval; /* the eval set it ran on (for fast_prepare's read maps) */
} pvf_golden;

/* One trial executor: its workspace and its fault overlay. */
struct pvf_exec {
    const pvf_model *m;
    const pvf_evalset *eval;
    int64_t n_inputs; /* eval inputs the golden pass uses: the first n (all by default) */
    int64_t chunk;    /* eval inputs per pass through the stages */
    float *act[2];    /* ping-pong activations, chunk x widest stage */
    float *scratch;   /* architecture workspace */
    int fault_param;  /* parameter whose values the overlay replaces, or -1 */
    int64_t fault_lo, fault_hi;
    float *patch;      /* the faulty values of [fault_lo, fault_hi) */
    int64_t patch_cap; /* the longest span: a row of the widest parameter */
    int copy_param;    /* parameter held in `copy`, or -1 */
    int copy_patched;  /* `copy` holds the patch (else it equals the shared values) */
    float *copy;       /* private copy of the faulted parameter's compute values */
    /* Who owns the copies: one buffer for one parameter at a time, or (a model
     * that fits) one for every parameter: copy_at[p] its offset, copy_made[p]
     * once copied, so switching parameters costs no copy after the first. */
    float *copy_buf;
    int64_t *copy_at;
    unsigned char *copy_made;
    int naive;           /* trials run the plain full forward pass from stage 0 */
    int want_outputs;    /* fast trials also write every output (tests) */
    float *fast_io[2];   /* pvf_fast_rows ping-pong: chunk x widest */
    int64_t *fast_rows;  /* [chunk] row indices of the rows in flight */
    float *trial_out;    /* during a fast trial with want_outputs: where outputs go */
    float *fast_scratch; /* the arch's fast_trial workspace (fast_scratch_floats) */
    /* Bound audit (tests): where a fast path computes exactly what a bound
     * could not settle, it also compares that bound with the exact change
     * (bert_fast.c: the last layer's row-by-row bound). */
    int audit_bounds;
    int64_t audit_checked, audit_violations;
    double audit_min_ratio; /* smallest bound / exact change seen (set it to INFINITY) */
    /* likewise for bounds on the margins (logit k less the top one) */
    int64_t audit_margin_checked, audit_margin_violations;
    double audit_margin_min_ratio;
    /* When set (tests, [eval inputs]): where a fast path clears an eval
     * input by a bound on how far its top-1 margins (the top logit less
     * each other) can move, it writes that bound here, for the test to
     * hold against the full pass's (lenet_fast.c). */
    double *audit_claim;
};

/* Also sets OpenBLAS to one thread (a process-wide setting): parallelism
 * comes from running one executor per core. */
int pvf_exec_init(pvf_exec *ex, const pvf_model *m, const pvf_evalset *eval, pvf_err *err);
void pvf_exec_free(pvf_exec *ex);
/* The values a kernel must use for param: the overlay when faulted (made up
 * to date on the first call; the overlay is a cache, hence the const). */
const float *pvf_exec_weights(const pvf_exec *ex, int param);
/* Activates the overlay for param and returns the patch for compute values
 * [lo, hi) (initialized to the shared ones) for the caller to overwrite: a
 * change seen by this executor only. NULL (and err) for a span outside the
 * parameter or longer than one row. */
float *pvf_exec_fault_span(pvf_exec *ex, int param, int64_t lo, int64_t hi, pvf_err *err);
/* Restores the shared values: the overlay becomes clean again. */
void pvf_exec_fault_undo(pvf_exec *ex);

int pvf_golden_compute(pvf_golden *g, pvf_exec *ex, pvf_err *err);
void pvf_golden_free(pvf_golden *g, const pvf_model *m);

/* Runs stages start..end over all eval inputs from g->stage_in[start] and
 * writes the outputs to out[n, out_size]. */
int pvf_forward_from(pvf_exec *ex, const pvf_golden *g, int start, float *out, pvf_err *err);

#endif
