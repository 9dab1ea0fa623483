/* pvf_campaign.h - creating a campaign: plan its strata from the model and
 * store it (pvf run, pvf campaign create). */
#ifndef PVF_CAMPAIGN_H
#define PVF_CAMPAIGN_H

#include "pvf_common.h"
#include "pvf_sql.h"

#include <stdint.h>

typedef struct pvf_campaign_spec {
    const char *model_dir;
    const char *eval_path; /* NULL: MODEL_DIR/eval.safetensors */
    const char *format;    /* fp32, ... */
    const char *fault;     /* bit, bit:B, ... */
    const char *strata;    /* tensor, tensor-bit, component, component-bit */
    uint64_t seed;         /* < 2^63 */
    double confidence;     /* all strata at once (Bonferroni) */
    double margin;         /* absolute half-width; 0: unused */
    double rel_margin;     /* half-width relative to the estimate; 0: unused */
    uint64_t max_trials;   /* per stratum */
    int value_any;         /* trial value = any output incorrect (0/1) instead of the fraction */
    int naive;             /* full forward pass per trial */
    double threshold;      /* outcome rule |delta output| > it (dlrm); 0: the default rule */
} pvf_campaign_spec;

/* Creates the campaign, or finds the one with the same spec: *existing is 0
 * (created), 1 (an unfinished one to resume) or 2 (a finished one). */
int pvf_campaign_create(pvf_db *db, const pvf_campaign_spec *spec, int64_t *id, int *existing,
                        pvf_err *err);

#endif
