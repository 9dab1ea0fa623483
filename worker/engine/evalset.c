#include "evalset.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int pvf_evalset_open(pvf_evalset *e, const char *path, pvf_err *err) {
    memset(e, 0, sizeof *e);
    if (pvf_st_open(&e->file, path, err))
        return -1;
    /* The number of inputs: dim 0 of labels, else of logits, else of the first tensor. */
    static const char *const anchors[] = {"labels", "logits"};
    long idx = -1;
    for (size_t i = 0; i < sizeof anchors / sizeof *anchors && idx < 0; i++)
        idx = pvf_st_find(&e->file, anchors[i]);
    if (idx < 0 && e->file.hdr.n > 0)
        idx = 0;
    if (idx < 0) {
        pvf_st_close(&e->file);
        return pvf_err_set(err, "%s: eval set holds no tensors", path);
    }
    const pvf_st_entry *a = &e->file.hdr.entries[idx];
    if (a->ndim < 1 || a->shape[0] < 1) {
        pvf_err_set(err, "%s: tensor '%s' must have a first dimension of 1 or more eval inputs",
                    path, a->name);
        pvf_st_close(&e->file); /* after the message: it names a tensor of the file */
        return -1;
    }
    e->n = a->shape[0];
    e->anchor = a->name;
    return 0;
}

void pvf_evalset_close(pvf_evalset *e) {
    pvf_st_close(&e->file);
    memset(e, 0, sizeof *e);
}

int pvf_evalset_get(const pvf_evalset *e, const char *name, int required, pvf_tensor *out,
                    pvf_err *err) {
    long i = pvf_st_find(&e->file, name);
    if (i < 0) {
        if (required)
            return pvf_err_set(err, "%s: missing tensor '%s'", e->file.path, name);
        return 0;
    }
    pvf_st_view(&e->file, (size_t)i, out);
    if (out->ndim < 1 || out->shape[0] != e->n)
        return pvf_err_set(err,
                           "%s: tensor '%s' has %" PRId64 " rows but '%s' has %" PRId64
                           " (one row per eval input)",
                           e->file.path, name, out->ndim < 1 ? 0 : out->shape[0], e->anchor, e->n);
    return 1;
}

int pvf_evalset_reference(const pvf_evalset *e, const char *format_name, pvf_tensor *out,
                          char *name, size_t name_size, pvf_err *err) {
    if (strcmp(format_name, "fp32") == 0) {
        snprintf(name, name_size, "logits");
    } else {
        snprintf(name, name_size, "logits_%s", format_name);
        for (char *p = name; *p; p++)
            if (*p == '-')
                *p = '_';
    }
    return pvf_evalset_get(e, name, 0, out, err);
}
