/* bert.c - BERT for sequence classification as Hugging Face's
 * BertForSequenceClassification (eager attention, inference): word +
 * position + token-type embeddings and LayerNorm; post-LN encoder layers
 * (multi-head self-attention with the padding mask, GELU (erf) feed-forward);
 * tanh pooler on the first token; linear classifier.
 *
 * Tensor names and config.json fields exactly as Hugging Face writes them.
 * Stages: "embeddings" (reads input_ids, token_type_ids and attention_mask
 * from the eval set), "layer.{i}" per encoder layer, "pooler", "classifier".
 * Activations hold max_position_embeddings x hidden_size floats per input,
 * of which the eval set's sequence length is used. The last encoder layer
 * computes only what the pooler reads, the first token: keys and values of
 * every token, the rest for [CLS] alone. */
#include "bert_internal.h"
#include "kernels.h"
#include "kernels_nn.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Floats of layer workspace to aim for; sets how many inputs a layer stage
 * multiplies at once. */
#define BERT_WORKSPACE (1 << 22)

int64_t pvf_bert_seq_len(const pvf_evalset *e) {
    long i = pvf_st_find(&e->file, "input_ids");
    return i < 0 ? 0 : e->file.hdr.entries[i].shape[1];
}

static int64_t seq_len(const pvf_exec *ex) {
    return pvf_bert_seq_len(ex->eval);
}

int pvf_bert_eval_int(const pvf_evalset *e, const char *name, pvf_tensor *t) {
    long i = pvf_st_find(&e->file, name);
    if (i < 0)
        return 0;
    pvf_st_view(&e->file, (size_t)i, t);
    return 1;
}

static int embeddings_stage(const pvf_model *m, int stage, pvf_exec *ex, int64_t first, int64_t n,
                            const float *in, float *out) {
    (void)stage;
    (void)in;
    const bert *b = m->arch_state;
    const int64_t h = b->hidden, s = seq_len(ex), width = b->maxpos * h;
    pvf_tensor ids, types;
    pvf_bert_eval_int(ex->eval, "input_ids", &ids);
    int has_types = pvf_bert_eval_int(ex->eval, "token_type_ids", &types);
    const float *word = pvf_exec_weights(ex, b->word), *pos = pvf_exec_weights(ex, b->pos),
                *type = pvf_exec_weights(ex, b->type);
    for (int64_t i = 0; i < n; i++) {
        float *x = out + i * width;
        for (int64_t t = 0; t < s; t++) {
            int64_t at = (first + i) * s + t;
            const float *w = word + pvf_tensor_get_i64(&ids, at) * h;
            const float *ty = type + (has_types ? pvf_tensor_get_i64(&types, at) : 0) * h;
            float *row = x + t * h;
            for (int64_t j = 0; j < h; j++) /* (word + type) + position, Hugging Face's order */
                row[j] = (w[j] + ty[j]) + pos[t * h + j];
        }
        pvf_layernorm(x, s, h, pvf_exec_weights(ex, b->ln_w), pvf_exec_weights(ex, b->ln_b),
                      b->eps);
        memset(x + s * h, 0, (size_t)(width - s * h) * sizeof *x);
    }
    return 0;
}

static void add_in_place(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

void pvf_bert_encoder_layer(const bert *b, const pvf_exec *ex, const int *p, const float *xs,
                            int64_t g, int64_t s, int last, const float *mask_add, float *ws,
                            float *res) {
    const int64_t h = b->hidden, rows = g * s, qrows = last ? g : rows, d = h / b->heads;
    float *q = ws, *k = q + rows * h, *v = k + rows * h, *ctx = v + rows * h, *a = ctx + rows * h,
          *inter = a + rows * h, *scores = inter + rows * b->inter, *xq = scores + s * s;
#define W(i) pvf_exec_weights(ex, p[i])
    const float *xin = xs;
    if (last) { /* the [CLS] rows */
        for (int64_t i = 0; i < g; i++)
            memcpy(xq + i * h, xs + i * s * h, (size_t)h * sizeof *xq);
        xin = xq;
    }
    pvf_linear(xin, qrows, h, W(Q), W(Q_B), h, q);
    pvf_linear(xs, rows, h, W(K), W(K_B), h, k);
    pvf_linear(xs, rows, h, W(V), W(V_B), h, v);
    const int64_t sq = last ? 1 : s;
    for (int64_t i = 0; i < g; i++)
        pvf_attention(q + i * sq * h, sq, k + i * s * h, v + i * s * h, s, b->heads, d,
                      mask_add + i * s, ctx + i * sq * h, scores);
    pvf_linear(ctx, qrows, h, W(O), W(O_B), h, a);
    add_in_place(a, xin, qrows * h);
    pvf_layernorm(a, qrows, h, W(LN1_W), W(LN1_B), b->eps);
    pvf_linear(a, qrows, h, W(FF1), W(FF1_B), b->inter, inter);
    pvf_gelu_erf(inter, qrows * b->inter);
    pvf_linear(inter, qrows, b->inter, W(FF2), W(FF2_B), h, res);
    add_in_place(res, a, qrows * h);
    pvf_layernorm(res, qrows, h, W(LN2_W), W(LN2_B), b->eps);
#undef W
}

static int layer_stage(const pvf_model *m, int stage, pvf_exec *ex, int64_t first, int64_t n,
                       const float *in, float *out) {
    const bert *b = m->arch_state;
    const int li = m->stages[stage].layer, last = li == b->layers - 1;
    const int64_t h = b->hidden, s = seq_len(ex), width = b->maxpos * h;
    pvf_tensor mask;
    int has_mask = pvf_bert_eval_int(ex->eval, "attention_mask", &mask);
    /* workspace: packed input, mask, layer buffers */
    float *xs = ex->scratch, *madd = xs + b->group * b->maxpos * h,
          *ws = madd + b->group * b->maxpos;
    float *res = ws + b->group * b->maxpos * (5 * h + b->inter) + b->maxpos * b->maxpos +
                 b->group * h; /* after encoder_layer's buffers */
    for (int64_t i0 = 0; i0 < n; i0 += b->group) {
        int64_t g = n - i0 < b->group ? n - i0 : b->group;
        for (int64_t i = 0; i < g; i++) {
            memcpy(xs + i * s * h, in + (i0 + i) * width, (size_t)(s * h) * sizeof *xs);
            for (int64_t t = 0; t < s; t++)
                madd[i * s + t] = pvf_attention_mask_add(
                    has_mask ? pvf_tensor_get_i64(&mask, (first + i0 + i) * s + t) : 1);
        }
        pvf_bert_encoder_layer(b, ex, b->lp[li], xs, g, s, last, madd, ws, res);
        for (int64_t i = 0; i < g; i++) {
            if (last) {
                memcpy(out + (i0 + i) * h, res + i * h, (size_t)h * sizeof *out);
            } else {
                float *o = out + (i0 + i) * width;
                memcpy(o, res + i * s * h, (size_t)(s * h) * sizeof *o);
                memset(o + s * h, 0, (size_t)(width - s * h) * sizeof *o);
            }
        }
    }
    return 0;
}

static int pooler_stage(const pvf_model *m, int stage, pvf_exec *ex, int64_t first, int64_t n,
                        const float *in, float *out) {
    (void)stage;
    (void)first;
    const bert *b = m->arch_state;
    pvf_linear(in, n, b->hidden, pvf_exec_weights(ex, b->pool_w), pvf_exec_weights(ex, b->pool_b),
               b->hidden, out);
    pvf_tanh(out, n * b->hidden);
    return 0;
}

static int classifier_stage(const pvf_model *m, int stage, pvf_exec *ex, int64_t first, int64_t n,
                            const float *in, float *out) {
    (void)stage;
    (void)first;
    const bert *b = m->arch_state;
    pvf_linear(in, n, b->hidden, pvf_exec_weights(ex, b->cls_w), pvf_exec_weights(ex, b->cls_b),
               b->labels, out);
    return 0;
}

/* Adds a parameter and puts it in a component; the index, or -1. */
static int param(pvf_model *m, const pvf_st_set *w, const char *name, int64_t d0, int64_t d1,
                 int stage, const char *component, pvf_err *err) {
    int64_t shape[2] = {d0, d1};
    int i = pvf_model_add_param(m, w, name, d1 ? 2 : 1, shape, stage, err);
    if (i >= 0)
        pvf_model_set_component(m, i, component);
    return i;
}

static int read_config(bert *b, const pvf_config *cfg, pvf_err *err) {
    double eps;
    if (pvf_config_int(cfg, "vocab_size", 1, INT64_C(1) << 32, &b->vocab, err) ||
        pvf_config_int(cfg, "hidden_size", 1, 1 << 16, &b->hidden, err) ||
        pvf_config_int(cfg, "num_hidden_layers", 1, BERT_MAX_LAYERS, &b->layers, err) ||
        pvf_config_int(cfg, "num_attention_heads", 1, 1 << 10, &b->heads, err) ||
        pvf_config_int(cfg, "intermediate_size", 1, 1 << 18, &b->inter, err) ||
        pvf_config_int(cfg, "max_position_embeddings", 1, 1 << 16, &b->maxpos, err) ||
        pvf_config_int_or(cfg, "type_vocab_size", 2, 1, 1 << 16, &b->types, err) ||
        pvf_config_double_or(cfg, "layer_norm_eps", 1e-12, &eps, err))
        return -1;
    if (!(eps > 0 && eps < 1))
        return pvf_err_set(err, "%s: 'layer_norm_eps' must be in (0, 1)", cfg->path);
    b->eps = (float)eps;
    if (b->hidden % b->heads)
        return pvf_err_set(err,
                           "%s: 'hidden_size' %" PRId64
                           " is not a multiple of 'num_attention_heads' %" PRId64,
                           cfg->path, b->hidden, b->heads);
    json_t *act = json_object_get(cfg->root, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "gelu") != 0))
        return pvf_err_set(err,
                           "%s: 'hidden_act' must be \"gelu\" (the erf form); other "
                           "activations are not supported",
                           cfg->path);
    json_t *pe = json_object_get(cfg->root, "position_embedding_type");
    if (pe && (!json_is_string(pe) || strcmp(json_string_value(pe), "absolute") != 0))
        return pvf_err_set(err, "%s: 'position_embedding_type' must be \"absolute\"", cfg->path);
    json_t *labels = json_object_get(cfg->root, "id2label");
    if (labels && (!json_is_object(labels) || json_object_size(labels) < 1))
        return pvf_err_set(err, "%s: 'id2label' must be an object with one entry per label",
                           cfg->path);
    if (labels)
        b->labels = (int64_t)json_object_size(labels);
    else if (pvf_config_int_or(cfg, "num_labels", 2, 1, 1 << 20, &b->labels, err))
        return -1;
    return 0;
}

static int bert_build(pvf_model *m, const pvf_config *cfg, const pvf_st_set *weights,
                      pvf_err *err) {
    bert *b = calloc(1, sizeof *b);
    if (!b)
        return pvf_err_set(err, "out of memory");
    m->arch_state = b;
    m->arch_free = free;
    if (read_config(b, cfg, err))
        return -1;
    const int64_t h = b->hidden, width = b->maxpos * h;
    int s = pvf_model_add_stage(m, "embeddings", 0, width, embeddings_stage, 0, err);
    if (s < 0 ||
        (b->word = param(m, weights, "bert.embeddings.word_embeddings.weight", b->vocab, h, s,
                         "embeddings", err)) < 0 ||
        (b->pos = param(m, weights, "bert.embeddings.position_embeddings.weight", b->maxpos, h, s,
                        "embeddings", err)) < 0 ||
        (b->type = param(m, weights, "bert.embeddings.token_type_embeddings.weight", b->types, h, s,
                         "embeddings", err)) < 0 ||
        (b->ln_w = param(m, weights, "bert.embeddings.LayerNorm.weight", h, 0, s, "layernorm",
                         err)) < 0 ||
        (b->ln_b = param(m, weights, "bert.embeddings.LayerNorm.bias", h, 0, s, "layernorm", err)) <
            0)
        return -1;
    static const struct {
        const char *suffix;
        int rows_inter, cols_inter, vector;
        const char *component;
    } lt[NLP] = {
        [Q] = {"attention.self.query.weight", 0, 0, 0, "attention.q"},
        [K] = {"attention.self.key.weight", 0, 0, 0, "attention.k"},
        [V] = {"attention.self.value.weight", 0, 0, 0, "attention.v"},
        [O] = {"attention.output.dense.weight", 0, 0, 0, "attention.o"},
        [Q_B] = {"attention.self.query.bias", 0, 0, 1, "attention.q"},
        [K_B] = {"attention.self.key.bias", 0, 0, 1, "attention.k"},
        [V_B] = {"attention.self.value.bias", 0, 0, 1, "attention.v"},
        [O_B] = {"attention.output.dense.bias", 0, 0, 1, "attention.o"},
        [LN1_W] = {"attention.output.LayerNorm.weight", 0, 0, 1, "layernorm"},
        [LN1_B] = {"attention.output.LayerNorm.bias", 0, 0, 1, "layernorm"},
        [FF1] = {"intermediate.dense.weight", 1, 0, 0, "ffn"},
        [FF1_B] = {"intermediate.dense.bias", 1, 0, 1, "ffn"},
        [FF2] = {"output.dense.weight", 0, 1, 0, "ffn"},
        [FF2_B] = {"output.dense.bias", 0, 0, 1, "ffn"},
        [LN2_W] = {"output.LayerNorm.weight", 0, 0, 1, "layernorm"},
        [LN2_B] = {"output.LayerNorm.bias", 0, 0, 1, "layernorm"},
    };
    b->first_layer = m->nstages;
    for (int li = 0; li < b->layers; li++) {
        char sname[48];
        snprintf(sname, sizeof sname, "layer.%d", li);
        s = pvf_model_add_stage(m, sname, width, li == b->layers - 1 ? h : width, layer_stage, li,
                                err);
        if (s < 0)
            return -1;
        for (int k = 0; k < NLP; k++) {
            char name[128];
            snprintf(name, sizeof name, "bert.encoder.layer.%d.%s", li, lt[k].suffix);
            int64_t rows = lt[k].rows_inter ? b->inter : h;
            int64_t cols = lt[k].vector ? 0 : lt[k].cols_inter ? b->inter : h;
            if ((b->lp[li][k] = param(m, weights, name, rows, cols, s, lt[k].component, err)) < 0)
                return -1;
        }
    }
    s = pvf_model_add_stage(m, "pooler", h, h, pooler_stage, 0, err);
    if (s < 0 ||
        (b->pool_w = param(m, weights, "bert.pooler.dense.weight", h, h, s, "pooler", err)) < 0 ||
        (b->pool_b = param(m, weights, "bert.pooler.dense.bias", h, 0, s, "pooler", err)) < 0)
        return -1;
    s = pvf_model_add_stage(m, "classifier", h, b->labels, classifier_stage, 0, err);
    if (s < 0 ||
        (b->cls_w = param(m, weights, "classifier.weight", b->labels, h, s, "classifier", err)) <
            0 ||
        (b->cls_b = param(m, weights, "classifier.bias", b->labels, 0, s, "classifier", err)) < 0)
        return -1;
    /* layer workspace per input: packed input, mask, q k v ctx a (5h), ffn (inter), result */
    const int64_t per_input = b->maxpos * (h + 1 + 5 * h + b->inter + h) + h;
    b->group = BERT_WORKSPACE / per_input;
    if (b->group < 1)
        b->group = 1;
    if (b->group > PVF_CHUNK)
        b->group = PVF_CHUNK;
    m->scratch_floats = b->group * per_input + b->maxpos * b->maxpos + b->group * h;
    return 0;
}

/* Checks an optional (or required) integer tensor [N, S] and its values. */
static int check_tokens(const pvf_evalset *e, const char *name, int required, int64_t s, int64_t lo,
                        int64_t hi, const char *what, pvf_err *err) {
    pvf_tensor t;
    int found = pvf_evalset_get(e, name, required, &t, err);
    if (found <= 0)
        return found;
    char got[128];
    pvf_shape_format(t.shape, t.ndim, got, sizeof got);
    if ((t.dtype != PVF_DT_I64 && t.dtype != PVF_DT_I32) || t.ndim != 2 ||
        (s > 0 && t.shape[1] != s))
        return pvf_err_set(err, "%s: '%s' is %s %s; it must be I64 or I32 [N, %s]", e->file.path,
                           name, pvf_dtype_name(t.dtype), got,
                           s > 0 ? "the length of input_ids" : "sequence length");
    int64_t n = pvf_tensor_numel(&t);
    for (int64_t i = 0; i < n; i++) {
        int64_t v = pvf_tensor_get_i64(&t, i);
        if (v < lo || v >= hi)
            return pvf_err_set(err,
                               "%s: '%s'[%" PRId64 "][%" PRId64 "] = %" PRId64
                               " is outside %s [%" PRId64 ", %" PRId64 ")",
                               e->file.path, name, i / t.shape[1], i % t.shape[1], v, what, lo, hi);
    }
    return 1;
}

static int bert_bind_eval(const pvf_model *m, const pvf_evalset *e, const float **input,
                          pvf_err *err) {
    const bert *b = m->arch_state;
    if (check_tokens(e, "input_ids", 1, 0, 0, b->vocab, "the vocabulary", err) < 0)
        return -1;
    pvf_tensor ids;
    pvf_bert_eval_int(e, "input_ids", &ids);
    if (ids.shape[1] < 1 || ids.shape[1] > b->maxpos)
        return pvf_err_set(err,
                           "%s: 'input_ids' has sequences of %" PRId64
                           " tokens; the model takes 1 to %" PRId64 " (max_position_embeddings)",
                           e->file.path, ids.shape[1], b->maxpos);
    if (check_tokens(e, "attention_mask", 0, ids.shape[1], 0, 2, "the mask values", err) < 0 ||
        check_tokens(e, "token_type_ids", 0, ids.shape[1], 0, b->types, "type_vocab_size", err) < 0)
        return -1;
    *input = NULL;
    return 0;
}

const pvf_arch pvf_arch_bert = {
    .name = "bert",
    .hf_class = "BertForSequenceClassification",
    .build = bert_build,
    .bind_eval = bert_bind_eval,
    .fast_prepare = pvf_bert_fast_prepare,
    .fast_free = pvf_bert_fast_free,
    .fast_trial = pvf_bert_fast_trial,
    .fast_bound = pvf_bert_fast_bound,
};
