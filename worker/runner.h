/* runner.h - what a process needs to run trials on one model: the model in
 * a storage format, its eval set, one executor and the golden pass. */
#ifndef PVF_RUNNER_H
#define PVF_RUNNER_H

#include "evalset.h"
#include "model.h"
#include "trial.h"

typedef struct pvf_runner {
    pvf_model model;
    pvf_evalset eval;
    pvf_exec exec;
    pvf_golden golden;
    float *out; /* n x out_size outputs of the last pass */
} pvf_runner;

/* data may be NULL: the model directory's eval.safetensors. */
int pvf_runner_open(pvf_runner *r, const char *model_dir, const char *data, pvf_format format,
                    pvf_err *err);
/* The same on the first `limit` eval inputs only (0: all). */
int pvf_runner_open_limit(pvf_runner *r, const char *model_dir, const char *data, pvf_format format,
                          int64_t limit, pvf_err *err);
void pvf_runner_close(pvf_runner *r);

#endif
