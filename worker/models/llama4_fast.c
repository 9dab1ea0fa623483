/* llama4_fast.c - the Llama 4 fast trial path: a trial computes only the
 * token rows its fault changes.
 *
 * fast_prepare replays the golden pass of every MoE layer once, chunk by
 * chunk as the stage ran it, and keeps its routing (experts and scores per
 * token), the shared expert's output and each routed slot's output per
 * token, and the tokens each expert serves; and the final norm's output per
 * token for the head.
 *
 * - A routed expert's fault changes only the tokens routed to it: none, and
 *   the trial settles without inference. Otherwise those tokens' FFN rows are
 *   recomputed: the expert over exactly the token gather the stage makes
 *   (same rows, same order, so the values equal a full recompute bit for
 *   bit), summed with the cached shared and other-slot outputs in the
 *   stage's order. In the last layer a changed token changes only its own
 *   logits (final norm + lm_head per token).
 * - An embedding row's fault changes the sequences holding that token only.
 * - An lm_head row's fault changes that one logit at every position: one
 *   dot product per position, judged against golden's top-1.
 * - A fault in a SwiGLU MLP (a dense layer's, or a MoE layer's shared
 *   expert) or in an attention output projection changes a few hidden
 *   units or output features of every token: only those are computed, per
 *   token, from golden values cached once (the MLP and attention outputs,
 *   the attention head outputs), and the stage's output sums as the stage
 *   does (linear_trial).
 * - Any other fault runs its stage over every sequence once.
 * A sequence changed before the last stages is carried from its first
 * changed position only (causal attention leaves earlier positions golden)
 * and judged position by position; a carried attention stage projects only
 * the rows that changed (the others keep their cached golden queries, keys
 * and values). Before each carried stage the sound
 * bound of llama4_bound.c is asked, position by position, whether the
 * change can still flip a scored prediction: the carry stops at one past
 * the last position it cannot clear (causal attention: the positions
 * before never read it), or altogether, and at the last attention only the
 * queries it cannot clear are computed (keys and values up to them). From
 * the last attention on (FFNs, head) stages work token by token, so each
 * changed token is bounded on its own and only those the bound cannot
 * clear run them (carry_tokens). At the dense MLP before the last
 * attention the linearized bound (llama4_linear.c) answers instead, with
 * the change's direction. A
 * last-layer expert's changed token is bounded the same way at the head, so
 * a small fault there costs only the tokens the expert serves.
 *
 * Work (r->stage_rows) counts token rows, (position, stage) pairs, as the
 * naive path does for a language model. */
#include "fast.h"
#include "kernels.h"
#include "llama4.h"
#include "trial.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Golden replay of one MoE layer over all n x T tokens. */
typedef struct l4_moe_gold {
    int32_t *idx;          /* [tokens, k] routed experts */
    float *score;          /* [tokens, k] their scores */
    float *shared;         /* [tokens, H] shared expert output */
    float *slot_out;       /* [tokens, k, H] each routed slot's output */
    int64_t *served_start; /* [E + 1] offsets into served */
    int64_t *served;       /* tokens (sequence * T + position) per expert, ascending */
} l4_moe_gold;

/* Golden replay of one attention stage over all n x T tokens. */
typedef struct l4_attn_gold {
    float *q, *k, *v; /* [tokens, heads or kv_heads * head_dim], as l4_qkv */
    float *o;         /* [tokens, heads * head_dim] head outputs */
    float *y;         /* [tokens, H] their output projection (before the residual) */
} l4_attn_gold;

typedef struct l4_fast {
    int64_t n, T, layers;
    l4_moe_gold *moe;   /* [layers]; zeroed for dense layers */
    float **mlp_out;    /* [layers]: a dense layer's MLP output [tokens, H], NULL for MoE */
    l4_attn_gold *attn; /* [layers] */
    float *head_in;     /* [tokens, H] final norm output */
    int *param_layer;   /* [nparams] routed expert parameter -> layer, or -1 */
    int *param_expert;  /* [nparams] -> expert */
    int *param_proj;    /* [nparams] a matrix linear_trial takes, of layer L: 4 L + 0 gate,
                           1 up, 2 down (dense MLP or shared expert), 3 the attention's
                           output projection; -1 for any other parameter */
    l4_bound *bound;    /* the sound bound's golden statistics */
    l4_linear *lin;     /* the linearized bound's (NULL where it does not apply) */
} l4_fast;

void l4_fast_free(void *state) {
    l4_fast *f = state;
    if (!f)
        return;
    for (int64_t L = 0; f->moe && L < f->layers; L++) {
        free(f->moe[L].idx);
        free(f->moe[L].score);
        free(f->moe[L].shared);
        free(f->moe[L].slot_out);
        free(f->moe[L].served_start);
        free(f->moe[L].served);
    }
    free(f->moe);
    for (int64_t L = 0; L < f->layers; L++) {
        free(f->mlp_out ? f->mlp_out[L] : NULL);
        if (f->attn) {
            free(f->attn[L].q);
            free(f->attn[L].k);
            free(f->attn[L].v);
            free(f->attn[L].o);
            free(f->attn[L].y);
        }
    }
    free(f->mlp_out);
    free(f->attn);
    free(f->head_in);
    free(f->param_layer);
    free(f->param_expert);
    free(f->param_proj);
    l4_bound_free(f->bound);
    l4_linear_free(f->lin);
    free(f);
}

/* Workspace of a chunk's golden MoE replay, rows = chunk tokens. */
typedef struct moe_work {
    float *f, *logits, *g, *u, *xg, *gu, *h, *yg;
    int64_t *tok, *slot;
} moe_work;

static int moe_work_alloc(moe_work *w, const l4_config *c, int64_t rows) {
    const int64_t H = c->hidden, I = c->inter;
    memset(w, 0, sizeof *w);
    w->f = malloc((size_t)(rows * H) * sizeof(float));
    w->logits = malloc((size_t)(rows * c->experts) * sizeof(float));
    w->g = malloc((size_t)(rows * I) * sizeof(float));
    w->u = malloc((size_t)(rows * I) * sizeof(float));
    w->xg = malloc((size_t)(rows * H) * sizeof(float));
    w->gu = malloc((size_t)(rows * 2 * I) * sizeof(float));
    w->h = malloc((size_t)(rows * I) * sizeof(float));
    w->yg = malloc((size_t)(rows * H) * sizeof(float));
    w->tok = malloc((size_t)rows * sizeof(int64_t));
    w->slot = malloc((size_t)rows * sizeof(int64_t));
    return w->f && w->logits && w->g && w->u && w->xg && w->gu && w->h && w->yg && w->tok && w->slot
               ? 0
               : -1;
}

static void moe_work_free(moe_work *w) {
    free(w->f);
    free(w->logits);
    free(w->g);
    free(w->u);
    free(w->xg);
    free(w->gu);
    free(w->h);
    free(w->yg);
    free(w->tok);
    free(w->slot);
}

/* Replays the golden pass of MoE layer L, chunk by chunk as the stage ran. */
static int moe_prepare(const pvf_model *m, const pvf_golden *g, int64_t L, l4_moe_gold *mg,
                       moe_work *w) {
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const l4_layer *y = &l->layer[L];
    const int64_t H = c->hidden, I = c->inter, E = c->experts, k = c->top_k, T = l->T;
    const int64_t tokens = g->n * T;
    const int s = m->params[y->router].stage;
    mg->idx = malloc((size_t)(tokens * k) * sizeof *mg->idx);
    mg->score = malloc((size_t)(tokens * k) * sizeof *mg->score);
    mg->shared = malloc((size_t)(tokens * H) * sizeof *mg->shared);
    mg->slot_out = malloc((size_t)(tokens * k * H) * sizeof *mg->slot_out);
    mg->served_start = calloc((size_t)(E + 1), sizeof *mg->served_start);
    mg->served = malloc((size_t)(tokens * k) * sizeof *mg->served);
    if (!mg->idx || !mg->score || !mg->shared || !mg->slot_out || !mg->served_start || !mg->served)
        return -1;
    for (int64_t first = 0; first < g->n; first += PVF_CHUNK) {
        const int64_t nc = g->n - first < PVF_CHUNK ? g->n - first : PVF_CHUNK;
        const int64_t R = nc * T, t0 = first * T;
        const float *in = g->stage_in[s] + t0 * H;
        pvf_rms_norm(in, R, H, m->params[y->post_norm].value, (float)c->eps, w->f);
        pvf_linear(w->f, R, H, m->params[y->router].value, NULL, E, w->logits);
        pvf_router_topk(w->logits, R, E, (int)k, mg->idx + t0 * k, mg->score + t0 * k);
        l4_swiglu_rows(R, H, I, w->f, m->params[y->sh_gate].value, m->params[y->sh_up].value,
                       m->params[y->sh_down].value, w->g, w->u, mg->shared + t0 * H);
        /* each expert over its gather, as pvf_experts_run */
        for (int32_t e = 0; e < (int32_t)E; e++) {
            int64_t cnt = 0;
            for (int64_t r = 0; r < R; r++)
                for (int64_t sl = 0; sl < k; sl++)
                    if (mg->idx[(t0 + r) * k + sl] == e) {
                        const float sc = mg->score[(t0 + r) * k + sl];
                        for (int64_t j = 0; j < H; j++)
                            w->xg[cnt * H + j] = w->f[r * H + j] * sc;
                        w->tok[cnt] = r;
                        w->slot[cnt++] = sl;
                    }
            if (cnt == 0)
                continue;
            pvf_linear(w->xg, cnt, H, m->params[y->gate_up[e]].value, NULL, 2 * I, w->gu);
            pvf_swiglu(w->gu, cnt, I, w->h);
            pvf_linear(w->h, cnt, I, m->params[y->down[e]].value, NULL, H, w->yg);
            for (int64_t i = 0; i < cnt; i++)
                memcpy(mg->slot_out + ((t0 + w->tok[i]) * k + w->slot[i]) * H, w->yg + i * H,
                       (size_t)H * sizeof(float));
        }
    }
    /* the tokens of each expert, ascending */
    for (int64_t t = 0; t < tokens * k; t++)
        mg->served_start[mg->idx[t] + 1]++;
    for (int64_t e = 0; e < E; e++)
        mg->served_start[e + 1] += mg->served_start[e];
    int64_t *fill = calloc((size_t)E, sizeof *fill);
    if (!fill)
        return -1;
    for (int64_t t = 0; t < tokens; t++)
        for (int64_t sl = 0; sl < k; sl++) {
            int32_t e = mg->idx[t * k + sl];
            mg->served[mg->served_start[e] + fill[e]++] = t;
        }
    free(fill);
    return 0;
}

/* Replays the golden pass of dense layer L's MLP (before the residual),
 * chunk by chunk as the stage ran; f, g, u: workspace of a chunk. */
static int mlp_prepare(const pvf_model *m, const pvf_golden *g, int64_t L, float **out, float *f,
                       float *gw, float *uw) {
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const l4_layer *y = &l->layer[L];
    const int64_t H = c->hidden, I = c->inter_mlp, T = l->T;
    const int s = m->params[y->post_norm].stage;
    if (!(*out = malloc((size_t)(g->n * T * H) * sizeof **out)))
        return -1;
    for (int64_t first = 0; first < g->n; first += PVF_CHUNK) {
        const int64_t R = (g->n - first < PVF_CHUNK ? g->n - first : PVF_CHUNK) * T;
        pvf_rms_norm(g->stage_in[s] + first * T * H, R, H, m->params[y->post_norm].value,
                     (float)c->eps, f);
        l4_swiglu_rows(R, H, I, f, m->params[y->gate].value, m->params[y->up].value,
                       m->params[y->mlp_down].value, gw, uw, *out + first * T * H);
    }
    return 0;
}

/* Replays the golden pass of layer L's attention, chunk by chunk as the
 * stage ran, into ag; work: l4_attn_heads_floats of a chunk. */
static int attn_prepare(const pvf_model *m, const pvf_golden *g, int64_t L, l4_attn_gold *ag,
                        float *work) {
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const l4_layer *ly = &l->layer[L];
    const int64_t H = c->hidden, qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim;
    const int64_t T = l->T, tokens = g->n * T;
    const int s = m->params[ly->q].stage;
    ag->q = malloc((size_t)(tokens * qd) * sizeof *ag->q);
    ag->k = malloc((size_t)(tokens * kd) * sizeof *ag->k);
    ag->v = malloc((size_t)(tokens * kd) * sizeof *ag->v);
    ag->o = malloc((size_t)(tokens * qd) * sizeof *ag->o);
    ag->y = malloc((size_t)(tokens * H) * sizeof *ag->y);
    if (!ag->q || !ag->k || !ag->v || !ag->o || !ag->y)
        return -1;
    for (int64_t first = 0; first < g->n; first += PVF_CHUNK) {
        const int64_t nc = g->n - first < PVF_CHUNK ? g->n - first : PVF_CHUNK, t0 = first * T;
        l4_attn_heads(l, L, nc, g->stage_in[s] + t0 * H, m->params[ly->in_norm].value,
                      m->params[ly->q].value, m->params[ly->k].value, m->params[ly->v].value, work,
                      ag->q + t0 * qd, ag->k + t0 * kd, ag->v + t0 * kd, ag->o + t0 * qd);
        pvf_linear(ag->o + t0 * qd, nc * T, qd, m->params[ly->o].value, NULL, H, ag->y + t0 * H);
    }
    return 0;
}

int l4_fast_prepare(const pvf_model *m, const pvf_golden *g, void **state, pvf_err *err) {
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const int64_t H = c->hidden, T = l->T, tokens = g->n * T;
    *state = NULL;
    l4_fast *f = calloc(1, sizeof *f);
    if (!f)
        return pvf_err_set(err, "out of memory");
    f->n = g->n;
    f->T = T;
    f->layers = c->layers;
    f->moe = calloc((size_t)c->layers, sizeof *f->moe);
    f->head_in = malloc((size_t)(tokens * H) * sizeof *f->head_in);
    f->mlp_out = calloc((size_t)c->layers, sizeof *f->mlp_out);
    f->param_layer = malloc((size_t)m->nparams * sizeof *f->param_layer);
    f->param_expert = malloc((size_t)m->nparams * sizeof *f->param_expert);
    f->attn = calloc((size_t)c->layers, sizeof *f->attn);
    f->param_proj = malloc((size_t)m->nparams * sizeof *f->param_proj);
    const int64_t rows = (g->n < PVF_CHUNK ? g->n : PVF_CHUNK) * T;
    const int64_t mlp_floats = rows * (H + 2 * c->inter_mlp);
    const int64_t attn_floats = l4_attn_heads_floats(c, rows, T);
    float *mw = malloc((size_t)(mlp_floats > attn_floats ? mlp_floats : attn_floats) * sizeof *mw);
    moe_work w;
    int rc = moe_work_alloc(&w, c, rows);
    if (rc || !f->moe || !f->mlp_out || !f->attn || !f->head_in || !f->param_layer ||
        !f->param_expert || !f->param_proj || !mw)
        goto oom;
    for (int p = 0; p < m->nparams; p++)
        f->param_layer[p] = f->param_expert[p] = f->param_proj[p] = -1;
    for (int64_t L = 0; L < c->layers; L++) {
        const l4_layer *y = &l->layer[L];
        const int dense = !c->moe[L];
        f->param_proj[dense ? y->gate : y->sh_gate] = (int)(4 * L);
        f->param_proj[dense ? y->up : y->sh_up] = (int)(4 * L + 1);
        f->param_proj[dense ? y->mlp_down : y->sh_down] = (int)(4 * L + 2);
        f->param_proj[y->o] = (int)(4 * L + 3);
        if (attn_prepare(m, g, L, &f->attn[L], mw))
            goto oom;
        if (dense) {
            if (mlp_prepare(m, g, L, &f->mlp_out[L], mw, mw + rows * H,
                            mw + rows * (H + c->inter_mlp)))
                goto oom;
            continue;
        }
        for (int64_t e = 0; e < c->experts; e++) {
            f->param_layer[y->gate_up[e]] = f->param_layer[y->down[e]] = (int)L;
            f->param_expert[y->gate_up[e]] = f->param_expert[y->down[e]] = (int)e;
        }
        if (moe_prepare(m, g, L, &f->moe[L], &w))
            goto oom;
    }
    const int head = m->params[l->lm_head].stage;
    pvf_rms_norm(g->stage_in[head], tokens, H, m->params[l->norm].value, (float)c->eps, f->head_in);
    if (l4_bound_prepare(m, g, &f->bound))
        goto oom;
    const int64_t last = c->layers - 1;
    const l4_qkv last_qkv = {NULL, f->attn[last].q, f->attn[last].k, f->attn[last].v};
    if (l4_linear_prepare(m, g, f->bound, c->moe[last] ? f->moe[last].idx : NULL, &last_qkv,
                          &f->lin))
        goto oom;
    moe_work_free(&w);
    free(mw);
    *state = f;
    return 0;
oom:
    moe_work_free(&w);
    free(mw);
    l4_fast_free(f);
    return pvf_err_set(err, "%s: fast path state: out of memory", m->dir);
}

const l4_bound *l4_fast_bound(const pvf_golden *g) {
    const l4_fast *f = g->fast;
    return f ? f->bound : NULL;
}

const l4_linear *l4_fast_linear(const pvf_golden *g) {
    const l4_fast *f = g->fast;
    return f ? f->lin : NULL;
}

int64_t pvf_llama4_expert_tokens(const pvf_model *m, const pvf_golden *g, int param) {
    const l4_fast *f = g->fast;
    if (!f || param < 0 || param >= m->nparams || f->param_layer[param] < 0)
        return -1;
    const l4_moe_gold *mg = &f->moe[f->param_layer[param]];
    const int e = f->param_expert[param];
    return mg->served_start[e + 1] - mg->served_start[e];
}

/* ---- trials ---- */

/* Judges position t (sequence * T + position) whose logits are all new, as
 * llama4_judge does. */
static void judge_position(const llama4 *l, pvf_exec *ex, const pvf_golden *g, int64_t t,
                           const float *logits, pvf_trial_result *r) {
    const int64_t V = l->c.vocab;
    if (ex->trial_out)
        memcpy(ex->trial_out + t * V, logits, (size_t)V * sizeof *logits);
    if (t % l->T < l->scored_from)
        return;
    if (!pvf_all_finite(logits, V)) {
        r->nonfinite++;
        r->incorrect++;
    } else if (pvf_argmax(logits, V) != g->top1[t]) {
        r->incorrect++;
    }
}

/* Judges the changed logits of position t (sequence * T + position):
 * new values nv[0..count) of classes v0..v0+count-1, every other logit
 * golden's. */
static void judge_logits(const llama4 *l, pvf_exec *ex, const pvf_golden *g, int64_t t, int64_t v0,
                         int64_t count, const float *nv, float *row, pvf_trial_result *r) {
    const int64_t V = l->c.vocab;
    const float *gold = g->out + t * V;
    if (ex->trial_out)
        memcpy(ex->trial_out + t * V + v0, nv, (size_t)count * sizeof *nv);
    if (t % l->T < l->scored_from)
        return;
    const int64_t top = g->top1[t];
    int rescan = top >= v0 && top < v0 + count;
    for (int64_t j = 0; j < count; j++) {
        if (!isfinite(nv[j])) {
            r->nonfinite++;
            r->incorrect++;
            return;
        }
        rescan |= nv[j] >= gold[top];
    }
    if (!rescan)
        return; /* top-1 still the first largest */
    memcpy(row, gold, (size_t)V * sizeof *row);
    memcpy(row + v0, nv, (size_t)count * sizeof *nv);
    r->incorrect += pvf_argmax(row, V) != top;
}

/* lm_head rows [v0, v1]: one logit per row and position changes. */
static int lm_head_trial(pvf_exec *ex, const pvf_golden *g, const pvf_fault_effect *eff,
                         pvf_trial_result *r) {
    const pvf_model *m = ex->m;
    const llama4 *l = m->arch_state;
    const l4_fast *f = g->fast;
    const int64_t H = l->c.hidden, V = l->c.vocab, tokens = g->n * l->T;
    const int64_t v0 = eff->lo / H, count = (eff->hi - 1) / H - v0 + 1;
    const int64_t per = PVF_CHUNK * l->T;
    if (count * per + V > m->scratch_floats)
        return 1;
    const float *w = pvf_exec_weights(ex, l->lm_head) + v0 * H;
    float *logits = ex->scratch, *row = logits + count * per;
    for (int64_t t0 = 0; t0 < tokens; t0 += per) {
        const int64_t R = tokens - t0 < per ? tokens - t0 : per;
        pvf_linear(f->head_in + t0 * H, R, H, w, NULL, count, logits);
        r->stage_rows += R;
        for (int64_t t = 0; t < R; t++)
            judge_logits(l, ex, g, t0 + t, v0, count, logits + t * count, row, r);
    }
    return 0;
}

/* Distance (2-norm) of row x[H] from golden row gold[H], in double. */
static double row_distance(const float *x, const float *gold, int64_t H) {
    double ss = 0.0;
    for (int64_t j = 0; j < H; j++) {
        const double dv = (double)x[j] - gold[j];
        ss += dv * dv;
    }
    return sqrt(ss);
}

/* Sequence seq's input to stage s is x[end, H] at positions 0..end-1
 * (golden before position p0; positions from end on are cleared already):
 * one past the last position whose prediction the bound cannot clear (0:
 * every one cleared). Only positions before it need computing. */
static int64_t seq_needed(pvf_exec *ex, const pvf_golden *g, int s, int64_t seq, int64_t p0,
                          int64_t end, const float *x) {
    const pvf_model *m = ex->m;
    const llama4 *l = m->arch_state;
    const l4_fast *f = g->fast;
    const int64_t T = l->T, H = l->c.hidden;
    const float *gold = g->stage_in[s] + seq * T * H;
    double *d = (double *)(void *)ex->fast_scratch, *work = d + T; /* malloc'd: any type */
    for (int64_t t = 0; t < end; t++)
        d[t] = t < p0 ? 0.0 : row_distance(x + t * H, gold + t * H, H);
    return l4_bound_needed(f->bound, m, s, seq, end, d, work);
}

/* Stage s and every later one work token by token (FFNs, head): carries
 * sequence seq's positions pos[0..R-1], whose inputs to stage s are the
 * rows of x[R, H], and judges them; those equal to golden or cleared by
 * the bound one by one are dropped first (x and pos are compacted in
 * place; spare[R, H] is workspace). The other positions keep golden's
 * predictions. */
static void carry_rows(pvf_exec *ex, const pvf_golden *g, int s, int64_t seq, int64_t *pos,
                       int64_t R, float *x, float *spare, pvf_trial_result *r) {
    const pvf_model *m = ex->m;
    const llama4 *l = m->arch_state;
    const l4_fast *f = g->fast;
    const int64_t T = l->T, H = l->c.hidden, V = l->c.vocab;
    const float *gold = g->stage_in[s] + seq * T * H;
    int64_t kept = 0;
    for (int64_t i = 0; i < R; i++) {
        const float *xi = x + i * H, *gi = gold + pos[i] * H;
        if (memcmp(xi, gi, (size_t)H * sizeof *xi) == 0)
            continue;
        if (l4_bound_token_clears(f->bound, m, s, seq * T + pos[i], row_distance(xi, gi, H)))
            continue; /* no prediction of it can flip */
        if (kept != i)
            memmove(x + kept * H, xi, (size_t)H * sizeof *xi);
        pos[kept++] = pos[i];
    }
    R = kept;
    if (R == 0)
        return;
    float *in = x, *out = spare;
    for (int st = s; st < m->nstages - 1; st++) {
        l4_ffn_rows(ex, m->stages[st].layer, R, in, out);
        r->stage_rows += R;
        float *t = in;
        in = out;
        out = t;
    }
    float *logits = ex->act[1];
    l4_head_rows(ex, R, in, logits);
    r->stage_rows += R;
    for (int64_t i = 0; i < R; i++)
        judge_position(l, ex, g, seq * T + pos[i], logits + i * V, r);
}

/* carry_rows for positions p0..end-1 of cur[T, H] (spare[T, H] workspace). */
static void carry_tokens(pvf_exec *ex, const pvf_golden *g, int s, int64_t seq, int64_t p0,
                         int64_t end, float *cur, float *spare, pvf_trial_result *r) {
    /* positions, in fast_scratch (sized for T + l4_bound_work doubles) */
    int64_t *pos = (int64_t *)(void *)ex->fast_scratch; /* malloc'd: any type */
    for (int64_t p = p0; p < end; p++)
        pos[p - p0] = p;
    const int64_t H = ((const llama4 *)ex->m->arch_state)->c.hidden;
    carry_rows(ex, g, s, seq, pos, end - p0, cur + p0 * H, spare, r);
}

/* The last attention stage s (then token by token), after seq_needed left
 * in fast_scratch the bounds at the head input of positions 0..end-1:
 * computes only the queries of positions p0..end-1 the bound does not clear
 * (the others judge as golden whatever their change) and carries them
 * (carry_rows), next[end, H] and cur as workspace. 1 when done, 0 when the
 * workspace is too small for it (then run the stage on p0..end-1). */
static int last_attn_queries(pvf_exec *ex, const pvf_golden *g, int s, int64_t seq, int64_t p0,
                             int64_t end, float *cur, float *next, pvf_trial_result *r) {
    const pvf_model *m = ex->m;
    const llama4 *l = m->arch_state;
    const l4_fast *f = g->fast;
    const int64_t T = l->T;
    const double *d = (const double *)(void *)ex->fast_scratch;   /* malloc'd: any type */
    int64_t *pos = (int64_t *)(void *)(ex->fast_scratch + 2 * T); /* past d: its workspace */
    int64_t nq = 0;
    for (int64_t t = p0; t < end; t++)
        if (d[t] == INFINITY || !l4_bound_head_clears(f->bound, m, seq * T + t, d[t]))
            pos[nq++] = t;
    if (nq == 0)
        return 1;
    if (l4_attn_queries_floats(m, nq) > m->scratch_floats)
        return 0;
    l4_attn_queries(ex, m->stages[s].layer, cur, pos, nq, next);
    r->stage_rows += nq;
    carry_rows(ex, g, s + 1, seq, pos, nq, next, cur, r); /* cur is read no more */
    return 1;
}

/* Carries sequence `seq`, whose input to stage s is x[T, H] and equals
 * golden's before position p0, through the later stages: causal attention
 * leaves the positions before the first changed one golden, so each stage
 * runs positions p0..end-1 only, p0 moving up while rows are golden again
 * and end moving down to one past the last position the bound cannot
 * clear (causal: the positions before end never read those after it).
 * From the last attention on, stages work token by token: carry_tokens. */
static void carry_seq(pvf_exec *ex, const pvf_golden *g, int s, int64_t seq, int64_t p0,
                      const float *x, pvf_trial_result *r) {
    const pvf_model *m = ex->m;
    const llama4 *l = m->arch_state;
    const l4_fast *f = g->fast;
    const int64_t T = l->T, H = l->c.hidden;
    const int64_t qd = l->c.heads * l->c.head_dim, kd = l->c.kv_heads * l->c.head_dim;
    float *cur = ex->fast_io[0], *next = ex->fast_io[1];
    int64_t end = T;
    memcpy(cur, x, (size_t)(T * H) * sizeof *cur);
    for (int st = s; st < m->nstages; st++) {
        const float *gold = g->stage_in[st] + seq * T * H;
        while (p0 < end && memcmp(cur + p0 * H, gold + p0 * H, (size_t)H * sizeof *cur) == 0)
            p0++;
        if (p0 == end)
            return; /* golden again */
        if (l4_bound_tokenwise(m, st)) {
            carry_tokens(ex, g, st, seq, p0, end, cur, next, r);
            return;
        }
        if (f->lin && st == l4_linear_stage(f->lin))
            end = l4_linear_needed(f->lin, f->bound, m, g, seq, p0, end, cur,
                                   (double *)(void *)ex->fast_scratch); /* malloc'd: any type */
        else if (!(f->lin && st == l4_linear_stage(f->lin) - 1))        /* see below */
            end = seq_needed(ex, g, st, seq, p0, end, cur);
        /* (Just before the linearized bound's stage the norm bound is not
         * asked: it cleared 15 % of the sequences there, for more than the
         * stage costs them; bench/README.md.) */
        if (end <= p0)
            return; /* no scored prediction can flip */
        const int64_t L = m->stages[st].layer;
        const int attn = st == m->params[l->layer[L].q].stage;
        if (attn && l4_bound_tokenwise(m, st + 1) &&
            last_attn_queries(ex, g, st, seq, p0, end, cur, next, r))
            return;
        r->stage_rows += end - p0;
        if (attn) { /* its rows still golden keep their golden projections */
            const l4_attn_gold *ag = &f->attn[L];
            const l4_qkv gq = {gold, ag->q + seq * T * qd, ag->k + seq * T * kd,
                               ag->v + seq * T * kd};
            l4_attn_span(ex, L, cur, p0, end, &gq, next);
        } else {
            l4_ffn_rows(ex, L, end - p0, cur + p0 * H, next + p0 * H);
        }
        memcpy(next, g->stage_in[st + 1] + seq * T * H, (size_t)(p0 * H) * sizeof *next);
        float *t = cur;
        cur = next;
        next = t;
    }
}

/* Embedding rows [v0, v1] changed: the sequences holding those tokens. */
static int embed_trial(pvf_exec *ex, const pvf_golden *g, const pvf_fault_effect *eff,
                       pvf_trial_result *r, pvf_err *err) {
    const pvf_model *m = ex->m;
    const llama4 *l = m->arch_state;
    const int64_t H = l->c.hidden, T = l->T, v0 = eff->lo / H, v1 = (eff->hi - 1) / H;
    pvf_tensor ids;
    if (pvf_evalset_get(ex->eval, "input_ids", 1, &ids, err) != 1)
        return -1;
    const float *w = pvf_exec_weights(ex, l->embed);
    const float *gold = g->stage_in[1];
    float *in = ex->act[0];
    for (int64_t i = 0; i < g->n; i++) {
        int64_t p0 = -1;
        for (int64_t p = 0; p < T; p++) {
            const int64_t id = pvf_tensor_get_i64(&ids, i * T + p);
            if (id < v0 || id > v1)
                continue;
            if (p0 < 0) {
                memcpy(in, gold + i * T * H, (size_t)(T * H) * sizeof *in);
                p0 = p;
            }
            memcpy(in + p * H, w + id * H, (size_t)H * sizeof *in);
        }
        if (p0 >= 0)
            carry_seq(ex, g, 1, i, p0, in, r);
    }
    return 0;
}

/* Token t's output of MoE stage (golden replay mg) as the stage sums it:
 * the routed slots in expert order from zero (expert e's slot replaced by
 * ye when ye is not NULL), plus the shared expert's output sh, plus the
 * input in: o[H]. */
static void moe_sum(const l4_moe_gold *mg, int64_t k, int64_t H, int64_t t, int32_t e,
                    const float *ye, const float *sh, const float *in, float *o) {
    for (int64_t j = 0; j < H; j++)
        o[j] = 0.0f;
    for (int32_t ex_id = 0, done = 0; done < k; ex_id++)
        for (int64_t sl = 0; sl < k; sl++) {
            if (mg->idx[t * k + sl] != ex_id)
                continue;
            const float *add = ye && ex_id == e ? ye : mg->slot_out + (t * k + sl) * H;
            for (int64_t j = 0; j < H; j++)
                o[j] += add[j];
            done++;
        }
    for (int64_t j = 0; j < H; j++)
        o[j] = in[j] + (sh[j] + o[j]);
}

/* Stage s changed its output rows of tokens tok[0..changed-1] (ascending,
 * one golden chunk of sequences) to next[changed, H]: when the next stage
 * is the head, each changed token changes only its own logits, and those
 * the bound cannot clear are computed (hn[changed, H] workspace);
 * otherwise the sequences holding a changed token are carried from their
 * first changed position (carry_seq; their inputs are copied out first, as
 * carrying uses the scratch that tok, next and hn may live in). */
static void changed_rows_on(pvf_exec *ex, const pvf_golden *g, int s, int64_t *tok, float *next,
                            int64_t changed, float *hn, pvf_trial_result *r) {
    const pvf_model *m = ex->m;
    const llama4 *l = m->arch_state;
    const l4_fast *f = g->fast;
    const int64_t H = l->c.hidden, T = l->T, V = l->c.vocab;
    const float *gold_out = g->stage_in[s + 1];
    if (s + 1 == m->nstages - 1) {
        int64_t kept = 0;
        for (int64_t i = 0; i < changed; i++) {
            const double d = row_distance(next + i * H, gold_out + tok[i] * H, H);
            if (isfinite(d) && l4_bound_head_clears(f->bound, m, tok[i], d))
                continue;
            if (kept != i) {
                tok[kept] = tok[i];
                memcpy(next + kept * H, next + i * H, (size_t)H * sizeof *next);
            }
            kept++;
        }
        if (kept == 0)
            return;
        pvf_rms_norm(next, kept, H, pvf_exec_weights(ex, l->norm), (float)l->c.eps, hn);
        float *logits = ex->act[1];
        pvf_linear(hn, kept, H, pvf_exec_weights(ex, l->lm_head), NULL, V, logits);
        r->stage_rows += kept;
        for (int64_t i = 0; i < kept; i++)
            judge_position(l, ex, g, tok[i], logits + i * V, r);
        return;
    }
    float *seq_in = ex->act[0];
    int64_t *firsts = ex->fast_rows; /* first changed token of each sequence to carry */
    int64_t nseq = 0;
    for (int64_t i = 0; i < changed;) {
        const int64_t seq = tok[i] / T;
        float *dst = seq_in + nseq * T * H;
        memcpy(dst, gold_out + seq * T * H, (size_t)(T * H) * sizeof *dst);
        firsts[nseq++] = tok[i];
        for (; i < changed && tok[i] / T == seq; i++)
            memcpy(dst + (tok[i] % T) * H, next + i * H, (size_t)H * sizeof *dst);
    }
    for (int64_t j = 0; j < nseq; j++)
        carry_seq(ex, g, s + 1, firsts[j] / T, firsts[j] % T, seq_in + j * T * H, r);
}

/* Workspace floats of expert_trial for `rows` gathered tokens. */
static int64_t expert_scratch(const l4_config *c, int64_t rows) {
    return rows * (2 + 4 * c->hidden + 3 * c->inter);
}

/* Routed expert e of MoE layer L: only the tokens routed to it change. */
static int expert_trial(pvf_exec *ex, const pvf_golden *g, int64_t L, int32_t e,
                        pvf_trial_result *r) {
    const pvf_model *m = ex->m;
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const l4_fast *f = g->fast;
    const l4_moe_gold *mg = &f->moe[L];
    const l4_layer *y = &l->layer[L];
    const int64_t H = c->hidden, I = c->inter, k = c->top_k, T = l->T;
    const int s = m->params[y->router].stage;
    const int64_t *served = mg->served + mg->served_start[e];
    const int64_t nserved = mg->served_start[e + 1] - mg->served_start[e];
    if (nserved == 0)
        return 0; /* no eval token reads this expert: golden, without inference */
    const int64_t per = PVF_CHUNK * T;
    if (expert_scratch(c, per) > m->scratch_floats)
        return 1;
    int64_t *tok = (int64_t *)(void *)ex->scratch; /* malloc'd: any type; changed tokens */
    float *xg = ex->scratch + 2 * per, *gu = xg + per * H, *h = gu + per * 2 * I;
    float *yg = h + per * I, *next = yg + per * H, *hn = next + per * H;
    const float *gate_up = pvf_exec_weights(ex, y->gate_up[e]);
    const float *down = pvf_exec_weights(ex, y->down[e]);
    const float *post = pvf_exec_weights(ex, y->post_norm);
    const float *in = g->stage_in[s], *gold_out = g->stage_in[s + 1];
    int64_t a = 0;
    for (int64_t first = 0; first < g->n; first += PVF_CHUNK) {
        /* the tokens of this golden chunk: the stage's gather for expert e */
        const int64_t t_end = (first + PVF_CHUNK < g->n ? first + PVF_CHUNK : g->n) * T;
        int64_t b = a;
        while (b < nserved && served[b] < t_end)
            b++;
        const int64_t cnt = b - a;
        if (cnt == 0)
            continue;
        for (int64_t i = 0; i < cnt; i++) {
            const int64_t t = served[a + i];
            int64_t sl = 0;
            while (mg->idx[t * k + sl] != e)
                sl++;
            pvf_rms_norm(in + t * H, 1, H, post, (float)c->eps, xg + i * H);
            const float sc = mg->score[t * k + sl];
            for (int64_t j = 0; j < H; j++)
                xg[i * H + j] *= sc;
        }
        pvf_linear(xg, cnt, H, gate_up, NULL, 2 * I, gu);
        pvf_swiglu(gu, cnt, I, h);
        pvf_linear(h, cnt, I, down, NULL, H, yg);
        r->stage_rows += cnt;
        /* each token's FFN output as the stage sums it */
        int64_t changed = 0;
        for (int64_t i = 0; i < cnt; i++) {
            const int64_t t = served[a + i];
            float *o = next + changed * H;
            moe_sum(mg, k, H, t, e, yg + i * H, mg->shared + t * H, in + t * H, o);
            if (memcmp(o, gold_out + t * H, (size_t)H * sizeof *o) == 0)
                continue; /* the change vanished */
            tok[changed++] = t;
        }
        a = b;
        if (changed)
            changed_rows_on(ex, g, s, tok, next, changed, hn, r);
    }
    return 0;
}

/* Rows of a matrix a fault may change for linear_trial to take it (a wider
 * one runs its stage whole). */
#define LINEAR_ROWS 16

/* a . b in float, one order for the golden and the faulty weights alike */
static float dot_f(const float *a, const float *b, int64_t n) {
    float sum = 0.0f;
    for (int64_t j = 0; j < n; j++)
        sum += a[j] * b[j];
    return sum;
}

/* Adds to dy[H] the change of layer L's sublayer output (MLP or attention,
 * before the residual) at token t for a fault in matrix `role` (see
 * linear_trial); xn: the post-attention norm of t's stage input (role < 3).
 * 1 when something changed. */
static int linear_change(const pvf_exec *ex, const l4_fast *f, int64_t L, int role, const int *mats,
                         int64_t I, int64_t t, const float *xn, double *dy) {
    const pvf_model *m = ex->m;
    const llama4 *l = m->arch_state;
    const int64_t H = l->c.hidden, qd = l->c.heads * l->c.head_dim;
    const int64_t lo = ex->fault_lo, hi = ex->fault_hi;
    const float *w = m->params[mats[role]].value;
    const float *wg = m->params[mats[0]].value, *wu = m->params[mats[1]].value;
    int any = 0;
    if (role == 3 || role == 2) { /* output features e / cols by (w' - w) times their input */
        const int64_t cols = role == 3 ? qd : I;
        for (int64_t e = lo; e < hi; e++) {
            const double dw = (double)ex->patch[e - lo] - (double)w[e];
            if (dw == 0.0)
                continue;
            const int64_t j = e % cols;
            float xj;
            if (role == 3) {
                xj = f->attn[L].o[t * qd + j];
            } else {
                float gv = dot_f(wg + j * H, xn, H), uv = dot_f(wu + j * H, xn, H);
                pvf_silu_mul(&gv, &uv, 1, &xj);
            }
            dy[e / cols] += dw * xj;
            any = 1;
        }
        return any;
    }
    /* gate or up rows i: h_i = silu(g_i) u_i, through the down columns i */
    const float *wd = m->params[mats[2]].value;
    for (int64_t i = lo / H; i <= (hi - 1) / H; i++) {
        float gu[2] = {dot_f(wg + i * H, xn, H), dot_f(wu + i * H, xn, H)},
              gu_f[2] = {gu[0], gu[1]};
        /* the faulty row: golden outside the fault's span */
        float row[4096];
        memcpy(row, w + i * H, (size_t)H * sizeof *row);
        for (int64_t e = (lo > i * H ? lo : i * H); e < hi && e < (i + 1) * H; e++)
            row[e - i * H] = ex->patch[e - lo];
        gu_f[role] = dot_f(row, xn, H);
        float h, h_f;
        pvf_silu_mul(&gu[0], &gu[1], 1, &h);
        pvf_silu_mul(&gu_f[0], &gu_f[1], 1, &h_f);
        if (memcmp(&h, &h_f, sizeof h) == 0)
            continue;
        const double dh = (double)h_f - (double)h;
        for (int64_t j = 0; j < H; j++)
            dy[j] += dh * wd[j * I + i];
        any = 1;
    }
    return any;
}

/* A fault in one of layer L's linear matrices `role`: 0 gate, 1 up, 2 down
 * of its SwiGLU MLP (the dense MLP, or the MoE layer's shared expert), 3
 * the attention's output projection; elements ex->fault_lo..hi-1 changed.
 * Only what changed is computed, token by token from cached golden values
 * (linear_change): a gate or up fault changes hidden units i (the faulty
 * rows): g_i and u_i are the rows' dot products (golden and faulty alike),
 * and the change of h_i = silu(g_i) u_i goes through the down projection's
 * columns i onto the golden MLP output; a down or output-projection fault
 * changes output features k by (w' - w) x_m for its elements (k, m), x_m
 * the golden hidden unit (from its rows) or head output. The stage's output
 * sums as the stage does (the MoE layer's routed outputs are cached) and
 * goes on as a routed expert's does (changed_rows_on). 1 when this does
 * not apply: a fault over more than LINEAR_ROWS rows, or a faulty value so
 * large (beyond 1e30, or not finite) that a sum's overflow depends on its
 * order. */
static int linear_trial(pvf_exec *ex, const pvf_golden *g, int64_t L, int role,
                        pvf_trial_result *r) {
    const pvf_model *m = ex->m;
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const l4_fast *f = g->fast;
    const l4_layer *y = &l->layer[L];
    const int moe = c->moe[L] && role < 3;
    const int64_t H = c->hidden, I = c->moe[L] ? c->inter : c->inter_mlp, k = c->top_k, T = l->T;
    const int mats[4] = {c->moe[L] ? y->sh_gate : y->gate, c->moe[L] ? y->sh_up : y->up,
                         c->moe[L] ? y->sh_down : y->mlp_down, y->o};
    const int s = m->params[mats[role]].stage;
    const int64_t cols = role == 3 ? c->heads * c->head_dim : role == 2 ? I : H;
    if ((ex->fault_hi - 1) / cols - ex->fault_lo / cols + 1 > LINEAR_ROWS || H > 4096)
        return 1;
    for (int64_t e = 0; e < ex->fault_hi - ex->fault_lo; e++)
        if (!(fabsf(ex->patch[e]) <= 1e30f))
            return 1;
    const int64_t per = PVF_CHUNK * T;
    if (per * (2 + 2 * H) + 2 * H > m->scratch_floats)
        return 1;
    int64_t *tok = (int64_t *)(void *)ex->scratch; /* malloc'd: any type; changed tokens */
    float *next = ex->scratch + 2 * per, *hn = next + per * H, *xn = hn + per * H, *yn = xn + H;
    double dy[4096];
    const float *in = g->stage_in[s], *gold_out = g->stage_in[s + 1];
    const float *post = m->params[y->post_norm].value;
    /* the golden sublayer output the change adds to */
    const float *base = role == 3 ? f->attn[L].y : moe ? f->moe[L].shared : f->mlp_out[L];
    for (int64_t first = 0; first < g->n; first += PVF_CHUNK) {
        const int64_t t_end = (first + PVF_CHUNK < g->n ? first + PVF_CHUNK : g->n) * T;
        int64_t changed = 0;
        for (int64_t t = first * T; t < t_end; t++) {
            if (role < 3)
                pvf_rms_norm(in + t * H, 1, H, post, (float)c->eps, xn);
            for (int64_t j = 0; j < H; j++)
                dy[j] = 0.0;
            if (!linear_change(ex, f, L, role, mats, I, t, xn, dy))
                continue; /* nothing changed at this token */
            for (int64_t j = 0; j < H; j++)
                yn[j] = (float)((double)base[t * H + j] + dy[j]);
            float *o = next + changed * H;
            if (moe)
                moe_sum(&f->moe[L], k, H, t, -1, NULL, yn, in + t * H, o);
            else
                for (int64_t j = 0; j < H; j++)
                    o[j] = in[t * H + j] + yn[j];
            if (memcmp(o, gold_out + t * H, (size_t)H * sizeof *o) == 0)
                continue; /* the change vanished */
            tok[changed++] = t;
        }
        r->stage_rows += t_end - first * T;
        if (changed)
            changed_rows_on(ex, g, s, tok, next, changed, hn, r);
    }
    return 0;
}

/* Any other fault of stage s: the stage over every sequence, then each
 * sequence from its first changed position. */
static int stage_trial(pvf_exec *ex, const pvf_golden *g, int s, pvf_trial_result *r) {
    const pvf_model *m = ex->m;
    const llama4 *l = m->arch_state;
    const pvf_stage *st = &m->stages[s];
    const int64_t T = l->T, H = l->c.hidden, V = l->c.vocab;
    const int head = s == m->nstages - 1;
    float *out = ex->act[0];
    for (int64_t first = 0; first < g->n; first += ex->chunk) {
        const int64_t n = g->n - first < ex->chunk ? g->n - first : ex->chunk;
        if (st->run(m, s, ex, first, n, g->stage_in[s] + first * st->in_size, out))
            return -1;
        r->stage_rows += n * T;
        for (int64_t i = 0; i < n; i++) {
            const int64_t seq = first + i;
            if (head) {
                for (int64_t p = 0; p < T; p++)
                    judge_position(l, ex, g, seq * T + p, out + (i * T + p) * V, r);
                continue;
            }
            const float *x = out + i * T * H, *gold = g->stage_in[s + 1] + seq * T * H;
            int64_t p0 = 0;
            while (p0 < T && memcmp(x + p0 * H, gold + p0 * H, (size_t)H * sizeof *x) == 0)
                p0++;
            if (p0 < T)
                carry_seq(ex, g, s + 1, seq, p0, x, r);
        }
    }
    return 0;
}

int l4_fast_trial(pvf_exec *ex, const pvf_golden *g, int param, const pvf_fault_effect *eff,
                  pvf_trial_result *r, pvf_err *err) {
    const pvf_model *m = ex->m;
    const llama4 *l = m->arch_state;
    const l4_fast *f = g->fast;
    if (!f || eff->hi <= eff->lo)
        return 1;
    if (f->param_layer[param] >= 0)
        return expert_trial(ex, g, f->param_layer[param], f->param_expert[param], r);
    if (param == l->embed)
        return embed_trial(ex, g, eff, r, err);
    if (param == l->lm_head)
        return lm_head_trial(ex, g, eff, r);
    const int s = m->params[param].stage;
    if (f->param_proj[param] >= 0 &&
        !linear_trial(ex, g, f->param_proj[param] / 4, f->param_proj[param] % 4, r))
        return 0;
    if (s == 0 || !g->stage_in[s])
        return 1;
    return stage_trial(ex, g, s, r) ? pvf_err_set(err, "stage '%s' failed", m->stages[s].name) : 0;
}
