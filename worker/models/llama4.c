/* llama4.c - Llama 4 text decoder (Llama4ForCausalLM, and the text model of
 * Llama4ForConditionalGeneration under "language_model."), as in
 * /work/shared/reference/llama4.md section 3.
 *
 * An eval input is one sequence of T tokens (input_ids [N, T], positions
 * 0..T-1); the outputs are its logits [T, vocab]. Stages: embed, then per
 * layer L "layers.L.attn" (input norm, attention, residual) and
 * "layers.L.ffn" (post-attention norm, MoE or dense MLP, residual), then
 * "head" (final norm, lm_head), so a fault in layer L's experts reruns from
 * layer L's FFN only. A chunk of sequences runs as one batch of rows.
 *
 * Routed experts: the checkpoint's fused tensors experts.gate_up_proj
 * [E, in, 2I] and experts.down_proj [E, I, out] are split on load into one
 * parameter per expert, transposed to Linear layout [out, in] (so storage
 * formats scale output rows, as Meta's row-wise FP8 does), named
 * "<fused name>[e]": e.g. model.layers.1.feed_forward.experts.gate_up_proj[3]
 * is expert 3's [2I, in] matrix, gate rows first; its target element r*in + c
 * is the checkpoint's [3, c, r]. Only the experts a token is routed to run
 * (as Meta, vLLM and llama.cpp; HF's all-experts loop would also turn a NaN
 * weight of an unselected expert into NaN through 0 * NaN).
 *
 * Components: embed_tokens, attention.rope, attention.nope, router,
 * shared_expert, layers.L.expert.e, dense_mlp, norms, lm_head. */
#include "llama4.h"

#include "kernels.h"
#include "model.h"
#include "trial.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void llama4_free(void *p) {
    llama4 *l = p;
    if (!l)
        return;
    for (int64_t L = 0; l->layer && L < l->c.layers; L++) {
        free(l->layer[L].gate_up);
        free(l->layer[L].down);
    }
    free(l->layer);
    free(l->inv_freq);
    free(l);
}

/* ---- stages ---- */

static int embed_stage(const pvf_model *m, int stage, pvf_exec *ex, int64_t first, int64_t n,
                       const float *in, float *out) {
    (void)stage;
    (void)in;
    const llama4 *l = m->arch_state;
    const int64_t H = l->c.hidden, T = l->T;
    pvf_tensor ids;
    pvf_err err;
    if (pvf_evalset_get(ex->eval, "input_ids", 1, &ids, &err) != 1 ||
        pvf_tensor_numel(&ids) != ex->eval->n * T)
        return -1;
    const float *w = pvf_exec_weights(ex, l->embed);
    for (int64_t r = 0; r < n * T; r++) {
        int64_t id = pvf_tensor_get_i64(&ids, first * T + r);
        if (id < 0 || id >= l->c.vocab)
            return -1; /* fit_eval checked every id: another eval set */
        memcpy(out + r * H, w + id * H, (size_t)H * sizeof *out);
    }
    return 0;
}

/* The query and key transforms of layer L at position pos (q or k NULL:
 * not that one), as attend applies them to its rows: RoPE then QK-norm, or
 * the NoPE temperature on the query. */
static void qk_transform(const llama4 *l, int64_t L, int64_t pos, float *q, float *k) {
    const l4_config *c = &l->c;
    const int64_t hd = c->head_dim;
    if (c->rope[L]) {
        if (q)
            pvf_rope_apply_from(q, pos, 1, c->heads, hd, l->inv_freq);
        if (k)
            pvf_rope_apply_from(k, pos, 1, c->kv_heads, hd, l->inv_freq);
        if (c->qk_norm && q)
            pvf_rms_norm(q, c->heads, hd, NULL, (float)c->eps, q);
        if (c->qk_norm && k)
            pvf_rms_norm(k, c->kv_heads, hd, NULL, (float)c->eps, k);
    } else if (c->temp_tuning && q) {
        const float t = pvf_attn_temperature(pos, c->floor_scale, (float)c->attn_scale);
        for (int64_t j = 0; j < c->heads * hd; j++)
            q[j] *= t;
    }
}

/* Layer L's attention of one sequence for query positions first..T-1
 * (T <= the sequence length: causal, they read no later position): the
 * transforms on the queries first..T-1 (q rows) and keys kv_lo..T-1 (k rows
 * by position), then attention; o rows first..T-1. */
static void attend(const llama4 *l, int64_t L, int64_t first, int64_t kv_lo, int64_t T, float *q,
                   float *k, const float *v, float *o, float *scores) {
    const l4_config *c = &l->c;
    const int64_t qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim;
    for (int64_t t = first; t < T; t++)
        qk_transform(l, L, t, q + (t - first) * qd, NULL);
    for (int64_t t = kv_lo; t < T; t++)
        qk_transform(l, L, t, NULL, k + t * kd);
    pvf_causal_attention_from(q, k, v, T, first, c->heads, c->kv_heads, c->head_dim,
                              c->rope[L] ? c->chunk : 0, o, scores);
}

void l4_attn_heads(const llama4 *l, int64_t L, int64_t n, const float *in, const float *w_in,
                   const float *wq, const float *wk, const float *wv, float *work, float *q,
                   float *k, float *v, float *o) {
    const l4_config *c = &l->c;
    const int64_t T = l->T, R = n * T, H = c->hidden;
    const int64_t qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim;
    float *a = work, *scores = a + R * H;
    pvf_rms_norm(in, R, H, w_in, (float)c->eps, a);
    pvf_linear(a, R, H, wq, NULL, qd, q);
    pvf_linear(a, R, H, wk, NULL, kd, k);
    pvf_linear(a, R, H, wv, NULL, kd, v);
    for (int64_t i = 0; i < n; i++)
        attend(l, L, 0, 0, T, q + i * T * qd, k + i * T * kd, v + i * T * kd, o + i * T * qd,
               scores);
}

int64_t l4_attn_heads_floats(const l4_config *c, int64_t rows, int64_t T) {
    return rows * c->hidden + T;
}

static int attn_stage(const pvf_model *m, int stage, pvf_exec *ex, int64_t first, int64_t n,
                      const float *in, float *out) {
    (void)first;
    const llama4 *l = m->arch_state;
    const int64_t L = m->stages[stage].layer, R = n * l->T, H = l->c.hidden;
    const int64_t qd = l->c.heads * l->c.head_dim, kd = l->c.kv_heads * l->c.head_dim;
    const l4_layer *y = &l->layer[L];
    float *o = ex->scratch, *q = o + R * qd, *k = q + R * qd, *v = k + R * kd;
    l4_attn_heads(l, L, n, in, pvf_exec_weights(ex, y->in_norm), pvf_exec_weights(ex, y->q),
                  pvf_exec_weights(ex, y->k), pvf_exec_weights(ex, y->v), v + R * kd, q, k, v, o);
    pvf_linear(o, R, qd, pvf_exec_weights(ex, y->o), NULL, H, out);
    for (int64_t j = 0; j < R * H; j++)
        out[j] = in[j] + out[j];
    return 0;
}

void l4_attn_span(pvf_exec *ex, int64_t L, const float *in, int64_t first, int64_t end,
                  const l4_qkv *gold, float *out) {
    const pvf_model *m = ex->m;
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const int64_t T = end, H = c->hidden; /* the sequence as far as it is read */
    const int64_t qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim;
    const l4_layer *y = &l->layer[L];
    /* the keys the queries first..T-1 see: from first's chunk, or all */
    const int64_t kv_lo = c->rope[L] && c->chunk > 0 ? first / c->chunk * c->chunk : 0;
    const int64_t nk = T - kv_lo, nq = T - first;
    float *a = ex->scratch, *q = a + T * H, *k = q + T * qd, *v = k + T * kd, *o = v + T * kd;
    float *scores = o + T * qd;
    const float *w_in = pvf_exec_weights(ex, y->in_norm);
    if (gold && l4_attn_span_floats(m) > m->scratch_floats)
        gold = NULL; /* no room for the rows' own products: all of them, as before */
    if (!gold) {
        pvf_rms_norm(in + kv_lo * H, nk, H, w_in, (float)c->eps, a);
        pvf_linear(a + (first - kv_lo) * H, nq, H, pvf_exec_weights(ex, y->q), NULL, qd, q);
        pvf_linear(a, nk, H, pvf_exec_weights(ex, y->k), NULL, kd, k + kv_lo * kd);
        pvf_linear(a, nk, H, pvf_exec_weights(ex, y->v), NULL, kd, v + kv_lo * kd);
        attend(l, L, first, kv_lo, T, q, k, v, o, scores);
    } else {
        /* the rows equal to golden's keep golden's projections; the others
         * are projected (one product each; pq in o, pk and pv past the
         * row list: l4_attn_span_floats) and transformed */
        int32_t *rows = (int32_t *)(void *)(scores + T); /* malloc'd: any 4-byte type */
        float *pq = o, *pk = scores + 2 * T, *pv = pk + T * kd;
        int64_t nr = 0;
        for (int64_t r = kv_lo; r < T; r++) {
            if (memcmp(in + r * H, gold->in + r * H, (size_t)H * sizeof *in)) {
                pvf_rms_norm(in + r * H, 1, H, w_in, (float)c->eps, a + nr * H);
                rows[nr++] = (int32_t)r;
                continue;
            }
            if (r >= first)
                memcpy(q + (r - first) * qd, gold->q + r * qd, (size_t)qd * sizeof *q);
            memcpy(k + r * kd, gold->k + r * kd, (size_t)kd * sizeof *k);
            memcpy(v + r * kd, gold->v + r * kd, (size_t)kd * sizeof *v);
        }
        pvf_linear(a, nr, H, pvf_exec_weights(ex, y->q), NULL, qd, pq);
        pvf_linear(a, nr, H, pvf_exec_weights(ex, y->k), NULL, kd, pk);
        pvf_linear(a, nr, H, pvf_exec_weights(ex, y->v), NULL, kd, pv);
        for (int64_t i = 0; i < nr; i++) {
            const int64_t r = rows[i];
            float *qr = r >= first ? q + (r - first) * qd : NULL;
            if (qr)
                memcpy(qr, pq + i * qd, (size_t)qd * sizeof *qr);
            memcpy(k + r * kd, pk + i * kd, (size_t)kd * sizeof *k);
            memcpy(v + r * kd, pv + i * kd, (size_t)kd * sizeof *v);
            qk_transform(l, L, r, qr, k + r * kd);
        }
        pvf_causal_attention_from(q, k, v, T, first, c->heads, c->kv_heads, c->head_dim,
                                  c->rope[L] ? c->chunk : 0, o, scores);
    }
    pvf_linear(o, nq, qd, pvf_exec_weights(ex, y->o), NULL, H, out + first * H);
    for (int64_t j = first * H; j < T * H; j++)
        out[j] = in[j] + out[j];
}

int64_t l4_attn_span_floats(const pvf_model *m) {
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const int64_t T = l->T, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim;
    return T * (c->hidden + 2 * qd + 4 * kd + 3);
}

int64_t l4_attn_queries_floats(const pvf_model *m, int64_t nq) {
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const int64_t T = l->T, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim;
    return T * (c->hidden + 2 * kd + 1) + nq * (c->hidden + 2 * qd);
}

void l4_attn_queries(pvf_exec *ex, int64_t L, const float *in, const int64_t *pos, int64_t nq,
                     float *out) {
    const pvf_model *m = ex->m;
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const int64_t H = c->hidden, hd = c->head_dim, nh = c->heads, nkv = c->kv_heads;
    const int64_t qd = nh * hd, kd = nkv * hd, T = pos[nq - 1] + 1;
    const l4_layer *y = &l->layer[L];
    /* the keys the queries see: from the first query's chunk, or all */
    const int64_t kv_lo = c->rope[L] && c->chunk > 0 ? pos[0] / c->chunk * c->chunk : 0;
    const int64_t nk = T - kv_lo;
    float *a = ex->scratch, *k = a + l->T * H, *v = k + l->T * kd, *scores = v + l->T * kd;
    float *aq = scores + l->T, *q = aq + nq * H, *o = q + nq * qd;
    const float *w_in = pvf_exec_weights(ex, y->in_norm);
    pvf_rms_norm(in + kv_lo * H, nk, H, w_in, (float)c->eps, a);
    for (int64_t i = 0; i < nq; i++)
        memcpy(aq + i * H, a + (pos[i] - kv_lo) * H, (size_t)H * sizeof *aq);
    pvf_linear(aq, nq, H, pvf_exec_weights(ex, y->q), NULL, qd, q);
    pvf_linear(a, nk, H, pvf_exec_weights(ex, y->k), NULL, kd, k + kv_lo * kd);
    pvf_linear(a, nk, H, pvf_exec_weights(ex, y->v), NULL, kd, v + kv_lo * kd);
    if (c->rope[L]) {
        pvf_rope_apply_from(k + kv_lo * kd, kv_lo, nk, nkv, hd, l->inv_freq);
        if (c->qk_norm)
            pvf_rms_norm(k + kv_lo * kd, nk * nkv, hd, NULL, (float)c->eps, k + kv_lo * kd);
    }
    for (int64_t i = 0; i < nq; i++) { /* each query as attend treats its row */
        float *qi = q + i * qd;
        qk_transform(l, L, pos[i], qi, NULL);
        pvf_causal_attention_from(qi, k, v, pos[i] + 1, pos[i], nh, nkv, hd,
                                  c->rope[L] ? c->chunk : 0, o + i * qd, scores);
    }
    pvf_linear(o, nq, qd, pvf_exec_weights(ex, y->o), NULL, H, out);
    for (int64_t i = 0; i < nq; i++)
        for (int64_t j = 0; j < H; j++)
            out[i * H + j] = in[pos[i] * H + j] + out[i * H + j];
}

void l4_swiglu_rows(int64_t R, int64_t H, int64_t I, const float *f, const float *wg,
                    const float *wu, const float *wd, float *g, float *u, float *out) {
    pvf_linear(f, R, H, wg, NULL, I, g);
    pvf_linear(f, R, H, wu, NULL, I, u);
    pvf_silu_mul(g, u, R * I, g);
    pvf_linear(g, R, I, wd, NULL, H, out);
}

void l4_ffn_rows(pvf_exec *ex, int64_t L, int64_t R, const float *in, float *out) {
    const pvf_model *m = ex->m;
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const int64_t H = c->hidden;
    const l4_layer *y = &l->layer[L];
    float *f = ex->scratch;
    pvf_rms_norm(in, R, H, pvf_exec_weights(ex, y->post_norm), (float)c->eps, f);
    if (!c->moe[L]) {
        const int64_t I = c->inter_mlp;
        float *g = f + R * H, *u = g + R * I;
        l4_swiglu_rows(R, H, I, f, pvf_exec_weights(ex, y->gate), pvf_exec_weights(ex, y->up),
                       pvf_exec_weights(ex, y->mlp_down), g, u, out);
        for (int64_t j = 0; j < R * H; j++)
            out[j] = in[j] + out[j];
        return;
    }
    const int64_t I = c->inter, E = c->experts;
    const int k = (int)c->top_k;
    float *logits = f + R * H, *score = logits + R * E, *g = score + R * k, *u = g + R * I;
    float *routed = u + R * I;
    void *ints = routed + R * H; /* malloc'd workspace: int32 routing, then floats */
    int32_t *idx = ints;
    float *work = routed + R * H + R * k;
    pvf_linear(f, R, H, pvf_exec_weights(ex, y->router), NULL, E, logits);
    pvf_router_topk(logits, R, E, k, idx, score);
    /* shared expert on the unscaled input */
    l4_swiglu_rows(R, H, I, f, pvf_exec_weights(ex, y->sh_gate), pvf_exec_weights(ex, y->sh_up),
                   pvf_exec_weights(ex, y->sh_down), g, u, out);
    const float *gate_up[L4_MAX_EXPERTS], *down[L4_MAX_EXPERTS];
    for (int64_t e = 0; e < E; e++) {
        gate_up[e] = pvf_exec_weights(ex, y->gate_up[e]);
        down[e] = pvf_exec_weights(ex, y->down[e]);
    }
    pvf_experts xp = {E, H, I, H, gate_up, down};
    memset(routed, 0, (size_t)(R * H) * sizeof *routed);
    pvf_experts_run(&xp, f, R, idx, score, k, routed, work);
    for (int64_t j = 0; j < R * H; j++)
        out[j] = in[j] + (out[j] + routed[j]);
}

static int ffn_stage(const pvf_model *m, int stage, pvf_exec *ex, int64_t first, int64_t n,
                     const float *in, float *out) {
    (void)first;
    const llama4 *l = m->arch_state;
    l4_ffn_rows(ex, m->stages[stage].layer, n * l->T, in, out);
    return 0;
}

void l4_head_rows(pvf_exec *ex, int64_t R, const float *in, float *out) {
    const llama4 *l = ex->m->arch_state;
    const int64_t H = l->c.hidden;
    float *f = ex->scratch;
    pvf_rms_norm(in, R, H, pvf_exec_weights(ex, l->norm), (float)l->c.eps, f);
    pvf_linear(f, R, H, pvf_exec_weights(ex, l->lm_head), NULL, l->c.vocab, out);
}

static int head_stage(const pvf_model *m, int stage, pvf_exec *ex, int64_t first, int64_t n,
                      const float *in, float *out) {
    (void)stage;
    (void)first;
    const llama4 *l = m->arch_state;
    l4_head_rows(ex, n * l->T, in, out);
    return 0;
}

/* Workspace of the stages for `rows` token rows. */
static int64_t scratch_floats(const l4_config *c, int64_t rows) {
    const int64_t qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim;
    int64_t need = rows * (c->hidden + 2 * qd + 2 * kd) + rows; /* attention (+ scores) */
    int64_t dense = rows * (c->hidden + 2 * c->inter_mlp);
    int64_t moe = 0;
    if (c->experts) {
        pvf_experts xp = {c->experts, c->hidden, c->inter, c->hidden, NULL, NULL};
        moe = rows * (c->hidden + c->experts + 2 * c->top_k + 2 * c->inter + c->hidden) +
              pvf_experts_scratch(&xp, rows);
    }
    if (dense > need)
        need = dense;
    if (moe > need)
        need = moe;
    return need;
}

/* ---- loading ---- */

static int add(pvf_model *m, const pvf_st_set *w, const char *prefix, const char *name, int ndim,
               int64_t d0, int64_t d1, int stage, const char *component, pvf_err *err) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    int64_t shape[2] = {d0, d1};
    int p = pvf_model_add_param(m, w, full, ndim, shape, stage, err);
    if (p >= 0)
        pvf_model_set_component(m, p, component);
    return p;
}

/* Splits a fused expert tensor [E, in, out] into E parameters [out, in]. */
static int add_experts(pvf_model *m, const pvf_st_set *w, const char *name, int64_t E, int64_t in,
                       int64_t outd, int stage, int64_t layer, int *params, pvf_err *err) {
    pvf_tensor t;
    if (pvf_st_set_get(w, name, &t, err))
        return -1;
    int64_t want[3] = {E, in, outd};
    char ws[96], gs[96];
    pvf_shape_format(want, 3, ws, sizeof ws);
    pvf_shape_format(t.shape, t.ndim, gs, sizeof gs);
    if (t.ndim != 3 || memcmp(t.shape, want, sizeof want) != 0)
        return pvf_err_set(err, "%s: tensor '%s' has shape %s, config.json implies %s", m->dir,
                           name, gs, ws);
    float *all = malloc((size_t)(in * outd) * sizeof *all);
    float *tr = malloc((size_t)(in * outd) * sizeof *tr);
    int rc = 0;
    if (!all || !tr) {
        rc = pvf_err_set(err, "%s: tensor '%s': out of memory", m->dir, name);
        goto out;
    }
    size_t esize = t.nbytes / (size_t)E;
    for (int64_t e = 0; e < E && rc == 0; e++) {
        pvf_tensor te = t;
        te.data = (const uint8_t *)t.data + (size_t)e * esize;
        if (pvf_tensor_to_f32(&te, all, in * outd)) {
            rc = pvf_err_set(err, "%s: tensor '%s' has dtype %s; weights must be F32, F16 or BF16",
                             m->dir, name, pvf_dtype_name(t.dtype));
            break;
        }
        for (int64_t i = 0; i < in; i++)
            for (int64_t o = 0; o < outd; o++)
                tr[o * in + i] = all[i * outd + o];
        char pname[300], comp[48];
        snprintf(pname, sizeof pname, "%s[%" PRId64 "]", name, e);
        snprintf(comp, sizeof comp, "layers.%d.expert.%d", (int)layer, (int)e); /* < 1024, 512 */
        int64_t shape[2] = {outd, in};
        params[e] = pvf_model_add_param_values(m, pname, 2, shape, tr, stage, err);
        if (params[e] < 0)
            rc = -1;
        else
            pvf_model_set_component(m, params[e], comp);
    }
out:
    free(all);
    free(tr);
    return rc;
}

/* The fast path's per-executor workspace (doubles): the bound's, or the
 * linearized bound's. */
static int64_t fast_scratch_doubles(const pvf_model *m) {
    const llama4 *l = m->arch_state;
    const int64_t plain = l->T + l4_bound_work(m), lin = l4_linear_work(m);
    return plain > lin ? plain : lin;
}

static int llama4_build(pvf_model *m, const pvf_config *cfg, const pvf_st_set *w, pvf_err *err) {
    llama4 *l = calloc(1, sizeof *l);
    if (!l)
        return pvf_err_set(err, "out of memory");
    m->arch_state = l;
    m->arch_free = llama4_free;
    if (l4_config_read(&l->c, cfg, err))
        return -1;
    const l4_config *c = &l->c;
    const int64_t H = c->hidden, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim;
    l->inv_freq = malloc((size_t)(c->head_dim / 2) * sizeof *l->inv_freq);
    l->layer = calloc((size_t)c->layers, sizeof *l->layer);
    if (!l->inv_freq || !l->layer)
        return pvf_err_set(err, "out of memory");
    pvf_rope_inv_freq(c->head_dim, c->theta, &c->scaling, l->inv_freq);
    l->T = 1; /* until fit_eval */

    /* multimodal checkpoints keep the text model under language_model. */
    pvf_tensor probe;
    pvf_err ignore;
    const char *pre =
        pvf_st_set_get(w, "language_model.model.embed_tokens.weight", &probe, &ignore) == 0
            ? "language_model."
            : "";
    int s = pvf_model_add_stage(m, "embed", 1, H, embed_stage, -1, err);
    if (s < 0 || (l->embed = add(m, w, pre, "model.embed_tokens.weight", 2, c->vocab, H, s,
                                 "embed_tokens", err)) < 0)
        return -1;
    for (int64_t L = 0; L < c->layers; L++) {
        l4_layer *y = &l->layer[L];
        char sn[48], pn[160];
        const char *attn = c->rope[L] ? "attention.rope" : "attention.nope";
        snprintf(sn, sizeof sn, "layers.%" PRId64 ".attn", L);
        s = pvf_model_add_stage(m, sn, H, H, attn_stage, (int)L, err);
#define P(field, suffix, nd, d0, d1, comp)                                                         \
    (snprintf(pn, sizeof pn, "model.layers.%" PRId64 ".%s", L, suffix),                            \
     (y->field = add(m, w, pre, pn, nd, d0, d1, s, comp, err)) < 0)
        if (s < 0 || P(in_norm, "input_layernorm.weight", 1, H, 0, "norms") ||
            P(q, "self_attn.q_proj.weight", 2, qd, H, attn) ||
            P(k, "self_attn.k_proj.weight", 2, kd, H, attn) ||
            P(v, "self_attn.v_proj.weight", 2, kd, H, attn) ||
            P(o, "self_attn.o_proj.weight", 2, H, qd, attn))
            return -1;
        snprintf(sn, sizeof sn, "layers.%" PRId64 ".ffn", L);
        s = pvf_model_add_stage(m, sn, H, H, ffn_stage, (int)L, err);
        if (s < 0 || P(post_norm, "post_attention_layernorm.weight", 1, H, 0, "norms"))
            return -1;
        if (!c->moe[L]) {
            if (P(gate, "feed_forward.gate_proj.weight", 2, c->inter_mlp, H, "dense_mlp") ||
                P(up, "feed_forward.up_proj.weight", 2, c->inter_mlp, H, "dense_mlp") ||
                P(mlp_down, "feed_forward.down_proj.weight", 2, H, c->inter_mlp, "dense_mlp"))
                return -1;
            continue;
        }
        const int64_t I = c->inter, E = c->experts;
        if (P(router, "feed_forward.router.weight", 2, E, H, "router") ||
            P(sh_gate, "feed_forward.shared_expert.gate_proj.weight", 2, I, H, "shared_expert") ||
            P(sh_up, "feed_forward.shared_expert.up_proj.weight", 2, I, H, "shared_expert") ||
            P(sh_down, "feed_forward.shared_expert.down_proj.weight", 2, H, I, "shared_expert"))
            return -1;
#undef P
        y->gate_up = malloc((size_t)E * sizeof *y->gate_up);
        y->down = malloc((size_t)E * sizeof *y->down);
        if (!y->gate_up || !y->down)
            return pvf_err_set(err, "out of memory");
        snprintf(pn, sizeof pn, "%smodel.layers.%" PRId64 ".feed_forward.experts.gate_up_proj", pre,
                 L);
        if (add_experts(m, w, pn, E, H, 2 * I, s, L, y->gate_up, err))
            return -1;
        snprintf(pn, sizeof pn, "%smodel.layers.%" PRId64 ".feed_forward.experts.down_proj", pre,
                 L);
        if (add_experts(m, w, pn, E, I, H, s, L, y->down, err))
            return -1;
    }
    s = pvf_model_add_stage(m, "head", H, c->vocab, head_stage, -1, err);
    if (s < 0 || (l->norm = add(m, w, pre, "model.norm.weight", 1, H, 0, s, "norms", err)) < 0 ||
        (l->lm_head = add(m, w, pre, "lm_head.weight", 2, c->vocab, H, s, "lm_head", err)) < 0)
        return -1;
    m->out_positions = 1;
    m->scratch_floats = scratch_floats(c, PVF_CHUNK);
    m->fast_scratch_floats = 2 * fast_scratch_doubles(m); /* refitted by fit_eval */
    return 0;
}

/* ---- eval set ---- */

static int llama4_fit_eval(pvf_model *m, const pvf_evalset *e, pvf_err *err) {
    llama4 *l = m->arch_state;
    pvf_tensor ids;
    if (pvf_evalset_get(e, "input_ids", 1, &ids, err) < 0)
        return -1;
    char got[128];
    pvf_shape_format(ids.shape, ids.ndim, got, sizeof got);
    if ((ids.dtype != PVF_DT_I64 && ids.dtype != PVF_DT_I32) || ids.ndim != 2 || ids.shape[1] < 1)
        return pvf_err_set(err, "%s: 'input_ids' is %s %s, the model takes I64 or I32 [N, tokens]",
                           e->file.path, pvf_dtype_name(ids.dtype), got);
    const int64_t T = ids.shape[1];
    if (T > l->c.max_positions)
        return pvf_err_set(err,
                           "%s: 'input_ids' has %" PRId64
                           " tokens per sequence, more than max_position_embeddings %" PRId64,
                           e->file.path, T, l->c.max_positions);
    for (int64_t i = 0; i < pvf_tensor_numel(&ids); i++) {
        int64_t id = pvf_tensor_get_i64(&ids, i);
        if (id < 0 || id >= l->c.vocab)
            return pvf_err_set(err,
                               "%s: 'input_ids' holds token %" PRId64 " at [%" PRId64 ", %" PRId64
                               "], outside the vocabulary 0..%" PRId64,
                               e->file.path, id, i / T, i % T, l->c.vocab - 1);
    }
    int64_t from = 0;
    const char *sf = pvf_st_meta_get(&e->file, "scored_from");
    if (sf) {
        char *end;
        from = strtoll(sf, &end, 10);
        if (*sf == '\0' || *end != '\0' || from < 0 || from >= T)
            return pvf_err_set(
                err, "%s: metadata 'scored_from' is '%s', expected 0..%" PRId64 " (a position)",
                e->file.path, sf, T - 1);
    }
    l->T = T;
    l->scored_from = from;
    m->fast_scratch_floats = 2 * fast_scratch_doubles(m);
    const int64_t H = l->c.hidden;
    for (int s = 0; s < m->nstages; s++) {
        m->stages[s].in_size = s == 0 ? T : T * H;
        m->stages[s].out_size = T * H;
    }
    m->stages[m->nstages - 1].out_size = T * l->c.vocab;
    m->out_size = T * l->c.vocab;
    m->out_positions = T;
    m->scratch_floats = scratch_floats(&l->c, PVF_CHUNK * T);
    return 0;
}

static int llama4_bind_eval(const pvf_model *m, const pvf_evalset *e, const float **input,
                            pvf_err *err) {
    const llama4 *l = m->arch_state;
    pvf_tensor ids;
    if (pvf_evalset_get(e, "input_ids", 1, &ids, err) < 0)
        return -1;
    if (ids.ndim != 2 || ids.shape[1] != l->T)
        return pvf_err_set(err,
                           "%s: 'input_ids' does not have the %" PRId64 " tokens per sequence "
                           "the model was fitted to",
                           e->file.path, l->T);
    *input = NULL; /* the embed stage reads input_ids */
    return 0;
}

/* LLM outcome rule: a scored position is incorrect when its greedy next
 * token differs from golden, or when any of its logits is NaN/Inf; the
 * trial's value is the fraction of scored positions (all sequences) that
 * are incorrect, and incorrect/nonfinite count positions. */
static void llama4_judge(const pvf_model *m, const pvf_golden *g, const float *out,
                         pvf_trial_result *r) {
    const llama4 *l = m->arch_state;
    const int64_t T = l->T, V = l->c.vocab;
    r->incorrect = 0;
    r->nonfinite = 0;
    for (int64_t i = 0; i < g->n; i++)
        for (int64_t p = l->scored_from; p < T; p++) {
            const float *row = out + (i * T + p) * V;
            if (!pvf_all_finite(row, V)) {
                r->nonfinite++;
                r->incorrect++;
            } else if (pvf_argmax(row, V) != g->top1[i * T + p]) {
                r->incorrect++;
            }
        }
    int64_t scored = g->n * (T - l->scored_from);
    r->judged = scored;
    r->value = scored ? (double)r->incorrect / (double)scored : 0.0;
    r->flags &= ~(unsigned)(PVF_TRIAL_MASKED | PVF_TRIAL_NONFINITE);
    if (r->incorrect == 0)
        r->flags |= PVF_TRIAL_MASKED;
    if (r->nonfinite)
        r->flags |= PVF_TRIAL_NONFINITE;
}

/* Meta's packagings (reference/llama4.md section 6): FP8 e4m3 row-wise for
 * the routed experts of MoE layers but the first and last layer (Maverick
 * FP8); int4 in groups of 128 for routed and shared experts (Scout int4);
 * bf16 for everything else. */
static int llama4_packaging(const pvf_model *m, const char *name, pvf_format *storage) {
    const llama4 *l = m->arch_state;
    const int routed = strstr(name, ".feed_forward.experts.") != NULL;
    const int shared = strstr(name, ".feed_forward.shared_expert.") != NULL;
    *storage = PVF_FMT_BF16;
    if (m->format == PVF_FMT_LLAMA4_FP8) {
        const char *at = strstr(name, "model.layers.");
        long layer = at ? strtol(at + strlen("model.layers."), NULL, 10) : -1;
        if (routed && layer > 0 && layer < l->c.layers - 1)
            *storage = PVF_FMT_FP8_E4M3;
        return 0;
    }
    if (m->format == PVF_FMT_LLAMA4_INT4) {
        if (routed || shared)
            *storage = PVF_FMT_INT4;
        return 0;
    }
    return -1;
}

const pvf_arch pvf_arch_llama4_text = {
    .name = "llama4_text",
    .hf_class = "Llama4ForCausalLM",
    .build = llama4_build,
    .bind_eval = llama4_bind_eval,
    .judge = llama4_judge,
    .packaging = llama4_packaging,
    .fit_eval = llama4_fit_eval,
    .fast_prepare = l4_fast_prepare,
    .fast_free = l4_fast_free,
    .fast_trial = l4_fast_trial,
};

/* The multimodal checkpoint's text decoder (the vision tower is not loaded). */
const pvf_arch pvf_arch_llama4 = {
    .name = "llama4",
    .hf_class = "Llama4ForConditionalGeneration",
    .build = llama4_build,
    .bind_eval = llama4_bind_eval,
    .judge = llama4_judge,
    .packaging = llama4_packaging,
    .fit_eval = llama4_fit_eval,
    .fast_prepare = l4_fast_prepare,
    .fast_free = l4_fast_free,
    .fast_trial = l4_fast_trial,
};
