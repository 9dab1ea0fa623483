#include "runner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pvf_runner_open(pvf_runner *r, const char *model_dir, const char *data, pvf_format format,
                    pvf_err *err) {
    return pvf_runner_open_limit(r, model_dir, data, format, 0, err);
}

int pvf_runner_open_limit(pvf_runner *r, const char *model_dir, const char *data, pvf_format format,
                          int64_t limit, pvf_err *err) {
    memset(r, 0, sizeof *r);
    char path[4096];
    if (!data) {
        snprintf(path, sizeof path, "%s/eval.safetensors", model_dir);
        data = path;
    }
    if (pvf_model_load(&r->model, model_dir, format, err))
        return -1;
    if (pvf_evalset_open(&r->eval, data, err) || pvf_model_fit_eval(&r->model, &r->eval, err))
        goto fail;
    if (pvf_exec_init(&r->exec, &r->model, &r->eval, err))
        goto fail;
    if (limit > 0 && limit < r->exec.n_inputs)
        r->exec.n_inputs = limit;
    if (pvf_golden_compute(&r->golden, &r->exec, err))
        goto fail;
    r->out = malloc((size_t)(r->golden.n * r->model.out_size) * sizeof *r->out);
    if (!r->out) {
        pvf_err_set(err, "out of memory");
        goto fail;
    }
    return 0;
fail:
    pvf_runner_close(r);
    return -1;
}

void pvf_runner_close(pvf_runner *r) {
    free(r->out);
    if (r->golden.stage_in)
        pvf_golden_free(&r->golden, &r->model);
    if (r->exec.m)
        pvf_exec_free(&r->exec);
    if (r->eval.file.path)
        pvf_evalset_close(&r->eval);
    if (r->model.dir)
        pvf_model_free(&r->model);
    memset(r, 0, sizeof *r);
}
