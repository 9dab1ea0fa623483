/* config.h - typed access to a model's config.json (Hugging Face layout).
 *
 * Every getter names the file and the field in its error, so a user sees
 * "models/x/config.json: 'hidden_sizes' must be an array of positive
 * integers" rather than a crash. */
#ifndef PVF_CONFIG_H
#define PVF_CONFIG_H

#include "pvf_common.h"

#include <jansson.h>
#include <stdint.h>

typedef struct pvf_config {
    char *path;
    json_t *root;
} pvf_config;

int pvf_config_load(pvf_config *c, const char *path, pvf_err *err);
void pvf_config_free(pvf_config *c);

/* The architecture: "model_type", else the first of "architectures". */
const char *pvf_config_arch(const pvf_config *c);

/* Required integer in [min, max]. */
int pvf_config_int(const pvf_config *c, const char *key, int64_t min, int64_t max, int64_t *out,
                   pvf_err *err);
/* Optional integer: def when absent, an error when present but wrong. */
int pvf_config_int_or(const pvf_config *c, const char *key, int64_t def, int64_t min, int64_t max,
                      int64_t *out, pvf_err *err);
int pvf_config_double_or(const pvf_config *c, const char *key, double def, double *out,
                         pvf_err *err);
/* Required array of integers in [min, max]; *n receives its length (<= cap). */
int pvf_config_int_array(const pvf_config *c, const char *key, int64_t min, int64_t max,
                         int64_t *out, int cap, int *n, pvf_err *err);
/* "id2label"[i] or NULL. */
const char *pvf_config_label(const pvf_config *c, int64_t i);

#endif
