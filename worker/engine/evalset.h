/* evalset.h - an eval set: one safetensors file whose tensor names follow
 * the Hugging Face forward arguments (pixel_values, input_ids, ...), with
 * `labels` and the training framework's reference outputs `logits` (and
 * `logits_<format>` for the quantized storage formats). */
#ifndef PVF_EVALSET_H
#define PVF_EVALSET_H

#include "pvf_common.h"
#include "safetensors.h"
#include "tensor.h"

typedef struct pvf_evalset {
    pvf_st_file file;
    int64_t n;          /* eval inputs (dim 0 of every per-input tensor) */
    const char *anchor; /* the tensor n was read from: labels, logits or the first */
} pvf_evalset;

int pvf_evalset_open(pvf_evalset *e, const char *path, pvf_err *err);
void pvf_evalset_close(pvf_evalset *e);

/* Looks up a tensor; when required and absent, an error names the file. The
 * tensor's dim 0 must be e->n. Returns 1 found, 0 absent (optional), -1 error. */
int pvf_evalset_get(const pvf_evalset *e, const char *name, int required, pvf_tensor *out,
                    pvf_err *err);

/* The reference outputs for a storage format: logits_<fmt> (dashes as
 * underscores), falling back to logits for fp32. Sets *name. 1/0/-1 as above. */
int pvf_evalset_reference(const pvf_evalset *e, const char *format_name, pvf_tensor *out,
                          char *name, size_t name_size, pvf_err *err);

#endif
