/* fixture.h - reading tensors of the checked-in fixtures in tests. */
#ifndef PVF_FIXTURE_H
#define PVF_FIXTURE_H

#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A malloc'd, aligned copy of F32 tensor `name` (NULL and a message when
 * absent); *n receives its element count. */
static inline float *fixture_f32(const pvf_st_file *f, const char *name, int64_t *n) {
    long i = pvf_st_find(f, name);
    if (i < 0) {
        fprintf(stderr, "fixture %s: no tensor '%s'\n", f->path, name);
        return NULL;
    }
    pvf_tensor t;
    pvf_st_view(f, (size_t)i, &t);
    if (t.dtype != PVF_DT_F32) {
        fprintf(stderr, "fixture %s: '%s' is not F32\n", f->path, name);
        return NULL;
    }
    float *out = malloc(t.nbytes ? t.nbytes : 1);
    if (out)
        memcpy(out, t.data, t.nbytes);
    if (n)
        *n = pvf_tensor_numel(&t);
    return out;
}

static inline int fixture_open(pvf_st_file *f, const char *rel) {
    char path[1024];
    pvf_err err;
    snprintf(path, sizeof path, "%s/%s", PVF_SOURCE_DIR, rel);
    if (pvf_st_open(f, path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

#endif
