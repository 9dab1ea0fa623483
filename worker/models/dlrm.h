/* dlrm.h - internal to the DLRM architecture: its state (dlrm.c) and its fast
 * trial path (dlrm_fast.c). */
#ifndef PVF_DLRM_H
#define PVF_DLRM_H

#include "fast.h"
#include "model.h"

#define PVF_DLRM_MAX_TABLES 1024
#define PVF_DLRM_MAX_LAYERS 32
#define PVF_DLRM_MAX_STAGES (2 * PVF_DLRM_MAX_LAYERS + 2)

typedef struct pvf_dlrm {
    int64_t dim; /* embedding dimension = bottom-MLP output */
    int ntables, nbot, ntop;
    int64_t rows[PVF_DLRM_MAX_TABLES];
    int emb[PVF_DLRM_MAX_TABLES]; /* param index of emb_l.k.weight */
    int64_t bot[PVF_DLRM_MAX_LAYERS + 1], top[PVF_DLRM_MAX_LAYERS + 1];
    int w[PVF_DLRM_MAX_STAGES], b[PVF_DLRM_MAX_STAGES]; /* per stage */
    int dot, itself;
    int emb_stage;         /* stage index of "embeddings" */
    int first_top;         /* stage index of top_l.0 */
    int64_t stage_scratch; /* floats of ex->scratch a stage uses; the fast path's follow */
} pvf_dlrm;

/* The fast trial path (model.h's fast_* hooks). */
int pvf_dlrm_fast_prepare(const pvf_model *m, const pvf_golden *g, void **state, pvf_err *err);
void pvf_dlrm_fast_free(void *state);
int pvf_dlrm_fast_trial(pvf_exec *ex, const pvf_golden *g, int param, const pvf_fault_effect *eff,
                        pvf_trial_result *r, pvf_err *err);
int pvf_dlrm_fast_bound(const pvf_exec *ex, const pvf_golden *g, int stage, int64_t row,
                        const float *in);

#endif
