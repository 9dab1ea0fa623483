/* lenet.h - the LeNet architecture's state, shared by its stages (lenet.c)
 * and its fast trial path (lenet_fast.c). */
#ifndef PVF_LENET_H
#define PVF_LENET_H

#include "fast.h"
#include "kernels.h"
#include "model.h"

#define LENET_MAX_LAYERS 8

typedef struct lenet {
    int nconv, nfc;
    pvf_conv2d conv[LENET_MAX_LAYERS];
    int64_t pool;
    int64_t fc_in[LENET_MAX_LAYERS + 1], fc_out[LENET_MAX_LAYERS + 1];
    int w[2 * LENET_MAX_LAYERS + 2], b[2 * LENET_MAX_LAYERS + 2]; /* param index per stage */
    int64_t channels, image;
    int64_t widest;    /* the widest stage output */
    int64_t fast_tail; /* lenet_fast.c: offset of its row buffers in fast_scratch */
} lenet;

int lenet_fast_prepare(const pvf_model *m, const pvf_golden *g, void **state, pvf_err *err);
void lenet_fast_free(void *state);
int lenet_fast_bound(const pvf_exec *ex, const pvf_golden *g, int stage, int64_t row,
                     const float *in);
int lenet_fast_trial(pvf_exec *ex, const pvf_golden *g, int param, const pvf_fault_effect *eff,
                     pvf_trial_result *r, pvf_err *err);

#endif
