/* llama4_config.c - Llama 4 text config: fields, defaults of HF's
 * Llama4TextConfig, and the derived per-layer schedules. */
#include "llama4.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Optional boolean: true/false, or an integer (old Scout configs say
 * "attn_temperature_tuning": 4, truthy). */
static int bool_or(const pvf_config *c, const char *key, int def, int *out, pvf_err *err) {
    json_t *v = json_object_get(c->root, key);
    if (!v || json_is_null(v))
        *out = def;
    else if (json_is_boolean(v))
        *out = json_is_true(v);
    else if (json_is_integer(v))
        *out = json_integer_value(v) != 0;
    else
        return pvf_err_set(err, "%s: '%s' must be true or false", c->path, key);
    return 0;
}

/* A list of layer indices or flags, or absent/null (*n = -1). */
static int int_list(const pvf_config *c, const char *key, int64_t min, int64_t max, int64_t *out,
                    int cap, int *n, pvf_err *err) {
    json_t *a = json_object_get(c->root, key);
    *n = -1;
    if (!a || json_is_null(a))
        return 0;
    if (!json_is_array(a) || json_array_size(a) > (size_t)cap)
        return pvf_err_set(err, "%s: '%s' must be a list of at most %d integers", c->path, key,
                           cap);
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
            return pvf_err_set(err, "%s: '%s'[%zu] must be an integer in %" PRId64 "..%" PRId64,
                               c->path, key, i, min, max);
        out[i] = json_integer_value(v);
    }
    *n = (int)json_array_size(a);
    return 0;
}

static int positive(const char *path, json_t *obj, const char *name, const char *key, double *out,
                    pvf_err *err) {
    json_t *v = json_object_get(obj, key);
    if (!json_is_number(v) || !(json_number_value(v) > 0) || !isfinite(json_number_value(v)))
        return pvf_err_set(err, "%s: '%s.%s' must be a positive number", path, name, key);
    *out = json_number_value(v);
    return 0;
}

/* rope_theta and llama3 rope_scaling, in any of the three spellings
 * (rope_scaling.rope_type, rope_scaling.type, transformers v5's
 * rope_parameters). */
static int read_rope(l4_config *c, const pvf_config *t, pvf_err *err) {
    json_t *params = json_object_get(t->root, "rope_parameters");
    if (params && !json_is_null(params) && !json_is_object(params))
        return pvf_err_set(err, "%s: 'rope_parameters' must be an object", t->path);
    pvf_config pv = {t->path, params};
    json_t *theta = json_object_get(t->root, "rope_theta");
    if (params && json_object_get(params, "rope_theta") && (!theta || json_is_null(theta))) {
        if (pvf_config_double_or(&pv, "rope_theta", 500000.0, &c->theta, err))
            return -1;
    } else if (pvf_config_double_or(t, "rope_theta", 500000.0, &c->theta, err)) {
        return -1;
    }
    if (!(c->theta > 1.0) || !isfinite(c->theta))
        return pvf_err_set(err, "%s: 'rope_theta' must be a number above 1", t->path);
    const char *obj = "rope_scaling";
    json_t *s = json_object_get(t->root, obj);
    if (!s || json_is_null(s)) {
        obj = "rope_parameters";
        s = params;
    }
    memset(&c->scaling, 0, sizeof c->scaling);
    if (!s || json_is_null(s))
        return 0;
    if (!json_is_object(s))
        return pvf_err_set(err, "%s: '%s' must be an object or null", t->path, obj);
    json_t *type = json_object_get(s, "rope_type");
    if (!type)
        type = json_object_get(s, "type");
    const char *ty = json_string_value(type);
    if (!ty || strcmp(ty, "default") == 0)
        return 0;
    if (strcmp(ty, "llama3") != 0)
        return pvf_err_set(err, "%s: %s type '%s' is not supported (llama3 or default)", t->path,
                           obj, ty);
    if (positive(t->path, s, obj, "factor", &c->scaling.factor, err) ||
        positive(t->path, s, obj, "low_freq_factor", &c->scaling.low_freq_factor, err) ||
        positive(t->path, s, obj, "high_freq_factor", &c->scaling.high_freq_factor, err) ||
        positive(t->path, s, obj, "original_max_position_embeddings",
                 &c->scaling.original_max_position, err))
        return -1;
    if (c->scaling.high_freq_factor < c->scaling.low_freq_factor)
        return pvf_err_set(err, "%s: %s high_freq_factor must not be below low_freq_factor",
                           t->path, obj);
    return 0;
}

int l4_config_read(l4_config *c, const pvf_config *cfg, pvf_err *err) {
    memset(c, 0, sizeof *c);
    pvf_config t = *cfg;
    json_t *tc = json_object_get(cfg->root, "text_config");
    if (tc && !json_is_null(tc)) {
        if (!json_is_object(tc))
            return pvf_err_set(err, "%s: 'text_config' must be an object", cfg->path);
        t.root = tc;
    }
    const int64_t big = INT64_C(1) << 31;
    if (pvf_config_int(&t, "vocab_size", 1, big, &c->vocab, err) ||
        pvf_config_int(&t, "hidden_size", 1, 1 << 20, &c->hidden, err) ||
        pvf_config_int(&t, "num_hidden_layers", 1, L4_MAX_LAYERS, &c->layers, err) ||
        pvf_config_int(&t, "num_attention_heads", 1, 4096, &c->heads, err) ||
        pvf_config_int(&t, "num_key_value_heads", 1, 4096, &c->kv_heads, err) ||
        pvf_config_int_or(&t, "head_dim", c->hidden / c->heads, 2, 1 << 16, &c->head_dim, err) ||
        pvf_config_int_or(&t, "max_position_embeddings", 131072, 1, big, &c->max_positions, err) ||
        pvf_config_double_or(&t, "rms_norm_eps", 1e-5, &c->eps, err) ||
        bool_or(&t, "use_qk_norm", 1, &c->qk_norm, err) ||
        bool_or(&t, "attn_temperature_tuning", 1, &c->temp_tuning, err) ||
        pvf_config_int_or(&t, "floor_scale", 8192, 1, big, &c->floor_scale, err) ||
        pvf_config_double_or(&t, "attn_scale", 0.1, &c->attn_scale, err) || read_rope(c, &t, err))
        return -1;
    /* absent: HF's 8192; null: RoPE layers attend full causal too */
    json_t *chunk = json_object_get(t.root, "attention_chunk_size");
    if (json_is_null(chunk))
        c->chunk = 0;
    else if (pvf_config_int_or(&t, "attention_chunk_size", 8192, 1, big, &c->chunk, err))
        return -1;
    if (c->head_dim < 2 || c->head_dim % 2)
        return pvf_err_set(err, "%s: 'head_dim' is %" PRId64 ", RoPE needs an even head size",
                           t.path, c->head_dim);
    if (c->heads % c->kv_heads)
        return pvf_err_set(err,
                           "%s: 'num_attention_heads' (%" PRId64
                           ") must be a multiple of 'num_key_value_heads' (%" PRId64 ")",
                           t.path, c->heads, c->kv_heads);
    if (!(c->eps > 0) || !isfinite(c->eps) || !isfinite(c->attn_scale))
        return pvf_err_set(err, "%s: 'rms_norm_eps' and 'attn_scale' must be finite, eps > 0",
                           t.path);
    json_t *tie = json_object_get(cfg->root, "tie_word_embeddings");
    if (!tie)
        tie = json_object_get(t.root, "tie_word_embeddings");
    if (json_is_true(tie))
        return pvf_err_set(err,
                           "%s: 'tie_word_embeddings' true is not supported (Llama 4 stores "
                           "an untied lm_head)",
                           t.path);

    /* MoE schedule: missing/null -> every step-th layer; [] -> no MoE layer. */
    int64_t list[L4_MAX_LAYERS], step;
    int n;
    if (pvf_config_int_or(&t, "interleave_moe_layer_step", 1, 1, L4_MAX_LAYERS, &step, err) ||
        int_list(&t, "moe_layers", 0, c->layers - 1, list, L4_MAX_LAYERS, &n, err))
        return -1;
    int any_moe = 0, any_dense = 0;
    for (int64_t L = 0; L < c->layers; L++)
        c->moe[L] = n < 0 ? (L + 1) % step == 0 : 0;
    for (int i = 0; i < n; i++)
        c->moe[list[i]] = 1;
    for (int64_t L = 0; L < c->layers; L++) {
        any_moe |= c->moe[L];
        any_dense |= !c->moe[L];
    }
    /* RoPE schedule: missing or [] -> NoPE every interval-th layer. */
    int64_t interval;
    if (pvf_config_int_or(&t, "no_rope_layer_interval", 4, 1, L4_MAX_LAYERS, &interval, err) ||
        int_list(&t, "no_rope_layers", 0, 1, list, L4_MAX_LAYERS, &n, err))
        return -1;
    if (n > 0 && n != c->layers)
        return pvf_err_set(err, "%s: 'no_rope_layers' has %d entries for %" PRId64 " layers",
                           t.path, n, c->layers);
    for (int64_t L = 0; L < c->layers; L++)
        c->rope[L] = n > 0 ? (uint8_t)list[L] : (L + 1) % interval != 0;

    if (any_moe) {
        if (pvf_config_int(&t, "num_local_experts", 1, L4_MAX_EXPERTS, &c->experts, err) ||
            pvf_config_int(&t, "intermediate_size", 1, 1 << 24, &c->inter, err) ||
            pvf_config_int_or(&t, "num_experts_per_tok", 1, 1, c->experts, &c->top_k, err))
            return -1;
    }
    if (any_dense && pvf_config_int(&t, "intermediate_size_mlp", 1, 1 << 24, &c->inter_mlp, err))
        return -1;
    return 0;
}
