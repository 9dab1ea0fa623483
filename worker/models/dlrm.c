/* dlrm.c - DLRM as facebookresearch/dlrm's DLRM_Net: a bottom MLP over the
 * dense features, one EmbeddingBag (sum) per sparse feature, the feature
 * interaction ("dot": pairwise dot products with the bottom output
 * concatenated; "cat"), a top MLP and a sigmoid: the click probability.
 *
 * Tensor names as that state dict has them: emb_l.{k}.weight,
 * bot_l.{2i}.weight/.bias, top_l.{2i}.weight/.bias (the MLPs are Sequentials
 * of Linear, ReLU pairs). config.json uses dlrm's --arch-* flag names;
 * arch_mlp_top starts with the interaction's width (dlrm's ln_top, which
 * dlrm_s_pytorch.py builds by prepending it to the flag's sizes).
 *
 * Stages: bot_l.0, bot_l.2, ... (stage 0 reads dense_x), "embeddings" (the
 * bottom output followed by the 26 pooled embeddings, read from the eval set's
 * sparse_offsets/sparse_indices), then top_l.0 (interaction + first layer),
 * top_l.2, ... The eval-set layout is documented in tools/pvf_dlrm.py. */
#include "dlrm.h"
#include "kernels.h"
#include "kernels_nn.h"
#include "model.h"
#include "trial.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int mlp_stage(const pvf_model *m, int stage, pvf_exec *ex, int64_t first, int64_t n,
                     const float *in, float *out) {
    (void)first;
    const pvf_dlrm *d = m->arch_state;
    const int j = m->stages[stage].layer; /* layer within its MLP */
    const int is_top = stage >= d->first_top;
    const int64_t *sizes = is_top ? d->top : d->bot;
    const float *x = in;
    if (is_top && j == 0 && d->dot) { /* the interaction feeds the first top layer */
        pvf_interaction_dot(in, n, d->ntables + 1, d->dim, d->itself, ex->scratch);
        x = ex->scratch;
    }
    pvf_linear(x, n, sizes[j], pvf_exec_weights(ex, d->w[stage]), pvf_exec_weights(ex, d->b[stage]),
               sizes[j + 1], out);
    if (stage == m->nstages - 1)
        pvf_sigmoid(out, n * sizes[j + 1]);
    else
        pvf_relu(out, n * sizes[j + 1]);
    return 0;
}

/* Reads bag (input i, table k) bounds from the eval set (checked by bind_eval). */
static void bag_bounds(const pvf_tensor *off, int64_t total, int64_t ntables, int64_t i, int64_t k,
                       int64_t *lo, int64_t *hi) {
    int64_t at = i * ntables + k, n = off->shape[0] * ntables;
    *lo = pvf_tensor_get_i64(off, at);
    *hi = at + 1 < n ? pvf_tensor_get_i64(off, at + 1) : total;
}

static int sparse_tensors(const pvf_evalset *e, pvf_tensor *off, pvf_tensor *idx) {
    long i = pvf_st_find(&e->file, "sparse_offsets"), j = pvf_st_find(&e->file, "sparse_indices");
    if (i < 0 || j < 0)
        return -1;
    pvf_st_view(&e->file, (size_t)i, off);
    pvf_st_view(&e->file, (size_t)j, idx);
    return 0;
}

static int embeddings_stage(const pvf_model *m, int stage, pvf_exec *ex, int64_t first, int64_t n,
                            const float *in, float *out) {
    (void)stage;
    const pvf_dlrm *d = m->arch_state;
    pvf_tensor off, idx;
    if (sparse_tensors(ex->eval, &off, &idx))
        return -1;
    const int64_t total = idx.shape[0], width = d->dim * (d->ntables + 1);
    int64_t lo, hi, end;
    bag_bounds(&off, total, d->ntables, first, 0, &lo, &hi);
    bag_bounds(&off, total, d->ntables, first + n - 1, d->ntables - 1, &hi, &end);
    /* the chunk's indices as int64 (the file's may be I32 or unaligned) */
    int64_t *ids = malloc((size_t)(end - lo + 1) * sizeof *ids);
    if (!ids)
        return -1;
    for (int64_t t = lo; t < end; t++)
        ids[t - lo] = pvf_tensor_get_i64(&idx, t);
    for (int64_t i = 0; i < n; i++) {
        float *row = out + i * width;
        memcpy(row, in + i * d->dim, (size_t)d->dim * sizeof *row);
        for (int k = 0; k < d->ntables; k++) {
            int64_t b, e;
            bag_bounds(&off, total, d->ntables, first + i, k, &b, &e);
            int64_t zero = 0;
            pvf_embedding_bag_sum(pvf_exec_weights(ex, d->emb[k]), d->dim, ids + (b - lo), e - b,
                                  &zero, 1, row + (int64_t)(k + 1) * d->dim, d->dim);
        }
    }
    free(ids);
    return 0;
}

/* A required integer array field; copies at most cap. */
static int mlp_sizes(const pvf_config *cfg, const char *key, int64_t *out, int *n, pvf_err *err) {
    if (pvf_config_int_array(cfg, key, 1, 1 << 24, out, PVF_DLRM_MAX_LAYERS + 1, n, err))
        return -1;
    if (*n < 2)
        return pvf_err_set(err, "%s: '%s' needs an input and at least one layer size", cfg->path,
                           key);
    return 0;
}

static int add_mlp(pvf_model *m, const pvf_st_set *weights, pvf_dlrm *d, const char *prefix,
                   const int64_t *sizes, int nlayers, int64_t first_in, pvf_err *err) {
    for (int j = 0; j < nlayers; j++) {
        char name[64], wn[80], bn[80];
        snprintf(name, sizeof name, "%s.%d", prefix, 2 * j);
        snprintf(wn, sizeof wn, "%s.%d.weight", prefix, 2 * j);
        snprintf(bn, sizeof bn, "%s.%d.bias", prefix, 2 * j);
        int64_t in = j == 0 ? first_in : sizes[j];
        int s = pvf_model_add_stage(m, name, in, sizes[j + 1], mlp_stage, j, err);
        int64_t wshape[2] = {sizes[j + 1], sizes[j]}, bshape[1] = {sizes[j + 1]};
        if (s < 0 || (d->w[s] = pvf_model_add_param(m, weights, wn, 2, wshape, s, err)) < 0 ||
            (d->b[s] = pvf_model_add_param(m, weights, bn, 1, bshape, s, err)) < 0)
            return -1;
        const char *component = prefix[0] == 'b' ? "bottom_mlp" : "top_mlp";
        pvf_model_set_component(m, d->w[s], component);
        pvf_model_set_component(m, d->b[s], component);
    }
    return 0;
}

static int dlrm_build(pvf_model *m, const pvf_config *cfg, const pvf_st_set *weights,
                      pvf_err *err) {
    pvf_dlrm *d = calloc(1, sizeof *d);
    if (!d)
        return pvf_err_set(err, "out of memory");
    m->arch_state = d;
    m->arch_free = free;
    int nbot, ntop;
    if (pvf_config_int(cfg, "arch_sparse_feature_size", 1, 1 << 16, &d->dim, err) ||
        pvf_config_int_array(cfg, "arch_embedding_size", 1, INT64_C(1) << 40, d->rows,
                             PVF_DLRM_MAX_TABLES, &d->ntables, err) ||
        mlp_sizes(cfg, "arch_mlp_bot", d->bot, &nbot, err) ||
        mlp_sizes(cfg, "arch_mlp_top", d->top, &ntop, err))
        return -1;
    d->nbot = nbot - 1;
    d->ntop = ntop - 1;
    json_t *op = json_object_get(cfg->root, "arch_interaction_op");
    json_t *itself = json_object_get(cfg->root, "arch_interaction_itself");
    const char *ops = op ? json_string_value(op) : "dot";
    if (!ops || (strcmp(ops, "dot") != 0 && strcmp(ops, "cat") != 0))
        return pvf_err_set(err, "%s: 'arch_interaction_op' must be \"dot\" or \"cat\"", cfg->path);
    if (itself && !json_is_boolean(itself))
        return pvf_err_set(err, "%s: 'arch_interaction_itself' must be true or false", cfg->path);
    d->dot = strcmp(ops, "dot") == 0;
    d->itself = itself && json_is_true(itself);
    if (d->bot[d->nbot] != d->dim)
        return pvf_err_set(err,
                           "%s: 'arch_mlp_bot' ends with %" PRId64
                           " but 'arch_sparse_feature_size' is %" PRId64,
                           cfg->path, d->bot[d->nbot], d->dim);
    const int64_t f = d->ntables + 1;
    const int64_t want = d->dot ? pvf_interaction_dot_size(f, d->dim, d->itself) : f * d->dim;
    if (d->top[0] != want)
        return pvf_err_set(err,
                           "%s: 'arch_mlp_top' starts with %" PRId64 " but the %s interaction of "
                           "%" PRId64 " features of %" PRId64 " gives %" PRId64,
                           cfg->path, d->top[0], ops, f, d->dim, want);
    if (d->top[d->ntop] != 1)
        return pvf_err_set(err, "%s: 'arch_mlp_top' must end with 1 (the click probability)",
                           cfg->path);
    if (add_mlp(m, weights, d, "bot_l", d->bot, d->nbot, d->bot[0], err))
        return -1;
    int s = pvf_model_add_stage(m, "embeddings", d->dim, f * d->dim, embeddings_stage, 0, err);
    if (s < 0)
        return -1;
    d->emb_stage = s;
    for (int k = 0; k < d->ntables; k++) {
        char name[64];
        snprintf(name, sizeof name, "emb_l.%d.weight", k);
        int64_t shape[2] = {d->rows[k], d->dim};
        if ((d->emb[k] = pvf_model_add_param(m, weights, name, 2, shape, s, err)) < 0)
            return -1;
    }
    d->first_top = m->nstages;
    if (add_mlp(m, weights, d, "top_l", d->top, d->ntop, f * d->dim, err))
        return -1;
    /* the interaction's output, then the rows the fast path carries (dlrm_fast.c) */
    d->stage_scratch = d->dot ? PVF_CHUNK * want : 0;
    int64_t widest = 1;
    for (int t = 0; t < m->nstages; t++)
        widest = m->stages[t].in_size > widest ? m->stages[t].in_size : widest;
    m->scratch_floats = d->stage_scratch + PVF_CHUNK * widest;
    return 0;
}

static int int_tensor(const pvf_evalset *e, const pvf_tensor *t, const char *name, int ndim,
                      pvf_err *err) {
    if ((t->dtype != PVF_DT_I64 && t->dtype != PVF_DT_I32) || t->ndim != ndim) {
        char got[128];
        pvf_shape_format(t->shape, t->ndim, got, sizeof got);
        return pvf_err_set(err, "%s: '%s' is %s %s; it must be a %d-D I64 or I32 tensor",
                           e->file.path, name, pvf_dtype_name(t->dtype), got, ndim);
    }
    return 0;
}

static int dlrm_bind_eval(const pvf_model *m, const pvf_evalset *e, const float **input,
                          pvf_err *err) {
    const pvf_dlrm *d = m->arch_state;
    pvf_tensor dense, off, idx;
    if (pvf_evalset_get(e, "dense_x", 1, &dense, err) < 0 ||
        pvf_evalset_get(e, "sparse_offsets", 1, &off, err) < 0)
        return -1;
    char got[128];
    pvf_shape_format(dense.shape, dense.ndim, got, sizeof got);
    if (dense.dtype != PVF_DT_F32 || dense.ndim != 2 || dense.shape[1] != d->bot[0])
        return pvf_err_set(err, "%s: 'dense_x' is %s %s, the model takes F32 [N, %" PRId64 "]",
                           e->file.path, pvf_dtype_name(dense.dtype), got, d->bot[0]);
    if (int_tensor(e, &off, "sparse_offsets", 2, err))
        return -1;
    if (off.shape[1] != d->ntables)
        return pvf_err_set(err,
                           "%s: 'sparse_offsets' has %" PRId64 " columns, the model has %d "
                           "embedding tables",
                           e->file.path, off.shape[1], d->ntables);
    long j = pvf_st_find(&e->file, "sparse_indices");
    if (j < 0)
        return pvf_err_set(err, "%s: missing tensor 'sparse_indices'", e->file.path);
    pvf_st_view(&e->file, (size_t)j, &idx);
    if (int_tensor(e, &idx, "sparse_indices", 1, err))
        return -1;
    const int64_t total = idx.shape[0], nbags = e->n * d->ntables;
    int64_t prev = 0;
    for (int64_t at = 0; at < nbags; at++) {
        int64_t o = pvf_tensor_get_i64(&off, at);
        if (o < prev || o > total || (at == 0 && o != 0))
            return pvf_err_set(err,
                               "%s: 'sparse_offsets'[%" PRId64 "][%" PRId64 "] = %" PRId64
                               " is out of range (offsets start at 0, never decrease and stay "
                               "<= %" PRId64 ", the length of 'sparse_indices')",
                               e->file.path, at / d->ntables, at % d->ntables, o, total);
        prev = o;
    }
    for (int64_t at = 0; at < nbags; at++) {
        int64_t lo, hi, k = at % d->ntables;
        bag_bounds(&off, total, d->ntables, at / d->ntables, k, &lo, &hi);
        for (int64_t t = lo; t < hi; t++) {
            int64_t id = pvf_tensor_get_i64(&idx, t);
            if (id < 0 || id >= d->rows[k])
                return pvf_err_set(err,
                                   "%s: 'sparse_indices'[%" PRId64 "] = %" PRId64 " (input %" PRId64
                                   ", table %" PRId64 ") is outside emb_l.%" PRId64
                                   ".weight's %" PRId64 " rows",
                                   e->file.path, t, id, at / d->ntables, k, k, d->rows[k]);
        }
    }
    *input = dense.data;
    return 0;
}

/* The click decision: p > 0.5 (NaN: no click, but judged non-finite anyway). */
static int64_t dlrm_decide(const pvf_model *m, const float *row) {
    (void)m;
    return row[0] > 0.5f;
}

/* Outcome rule: an eval input is incorrect when its output is not finite, or
 * (default) its click decision at 0.5 differs from golden's, or (with
 * outcome_threshold tau > 0) |p - p_golden| > tau. The decision is the
 * default because it is what a served recommender acts on. */
static void dlrm_judge(const pvf_model *m, const pvf_golden *g, const float *out,
                       pvf_trial_result *r) {
    const double tau = m->outcome_threshold;
    r->incorrect = 0;
    r->nonfinite = 0;
    for (int64_t i = 0; i < g->n; i++) {
        float p = out[i], p0 = g->out[i];
        if (!isfinite(p)) {
            r->nonfinite++;
            r->incorrect++;
        } else if (tau > 0 ? fabs((double)p - (double)p0) > tau : (p > 0.5f) != (p0 > 0.5f)) {
            r->incorrect++;
        }
    }
    r->value = g->n ? (double)r->incorrect / (double)g->n : 0.0;
    r->flags &= ~(unsigned)(PVF_TRIAL_MASKED | PVF_TRIAL_NONFINITE);
    if (r->incorrect == 0)
        r->flags |= PVF_TRIAL_MASKED;
    if (r->nonfinite)
        r->flags |= PVF_TRIAL_NONFINITE;
}

typedef struct scored {
    float p;
    int y;
} scored;

static int by_p(const void *a, const void *b) {
    float x = ((const scored *)a)->p, y = ((const scored *)b)->p;
    return (x > y) - (x < y);
}

/* ROC AUC (ties count half) and mean log-loss (p clipped to [1e-7, 1 - 1e-7]). */
static int dlrm_metrics(const pvf_model *m, const float *out, const pvf_tensor *labels, int64_t n,
                        pvf_metric *mt, int cap) {
    (void)m;
    if (cap < 2 || n < 1)
        return 0;
    scored *s = malloc((size_t)n * sizeof *s);
    if (!s)
        return 0;
    double loss = 0.0;
    int64_t pos = 0;
    for (int64_t i = 0; i < n; i++) {
        s[i].p = out[i];
        s[i].y = pvf_tensor_get_i64(labels, i) == 1;
        pos += s[i].y;
        double p = fmin(fmax((double)out[i], 1e-7), 1 - 1e-7);
        loss -= s[i].y ? log(p) : log(1 - p);
    }
    qsort(s, (size_t)n, sizeof *s, by_p);
    double rank_sum = 0.0; /* of the positives, ranks from 1, ties averaged */
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j + 1 < n && s[j + 1].p == s[i].p)
            j++;
        double rank = (double)(i + j) / 2.0 + 1.0;
        for (int64_t t = i; t <= j; t++)
            rank_sum += s[t].y ? rank : 0.0;
        i = j + 1;
    }
    free(s);
    int64_t neg = n - pos;
    int k = 0;
    if (pos > 0 && neg > 0)
        mt[k++] = (pvf_metric){"auc", (rank_sum - (double)pos * (double)(pos + 1) / 2.0) /
                                          ((double)pos * (double)neg)};
    mt[k++] = (pvf_metric){"log_loss", loss / (double)n};
    return k;
}

const pvf_arch pvf_arch_dlrm = {
    .name = "dlrm",
    .hf_class = "DLRM_Net",
    .build = dlrm_build,
    .bind_eval = dlrm_bind_eval,
    .judge = dlrm_judge,
    .decide = dlrm_decide,
    .metrics = dlrm_metrics,
    .has_threshold = 1,
    .fast_prepare = pvf_dlrm_fast_prepare,
    .fast_free = pvf_dlrm_fast_free,
    .fast_trial = pvf_dlrm_fast_trial,
    .fast_bound = pvf_dlrm_fast_bound,
};
