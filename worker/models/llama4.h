/* llama4.h - the Llama 4 text decoder's configuration (llama4_config.c) and
 * model state (llama4.c) and its fast trial path (llama4_fast.c), shared by
 * those files, its tests and bench_llama_experts only.
 *
 * Config rules: /work/shared/reference/llama4.md section 1 (text fields at
 * the top level or under "text_config", schedules derived as HF does). */
#ifndef PVF_LLAMA4_H
#define PVF_LLAMA4_H

#include "config.h"
#include "kernels_llm.h"
#include "model.h"

#include <stdint.h>

#define L4_MAX_LAYERS  1024
#define L4_MAX_EXPERTS 512

typedef struct l4_config {
    int64_t vocab, hidden, inter, inter_mlp, layers, heads, kv_heads, head_dim;
    int64_t experts, top_k;
    int64_t chunk;       /* attention_chunk_size; 0: RoPE layers full causal */
    int64_t floor_scale; /* temperature tuning */
    int64_t max_positions;
    double attn_scale, eps, theta;
    int qk_norm, temp_tuning;
    pvf_rope_llama3 scaling;     /* factor 0: none */
    uint8_t moe[L4_MAX_LAYERS];  /* 1: MoE layer, 0: dense */
    uint8_t rope[L4_MAX_LAYERS]; /* 1: RoPE + chunked attention, 0: NoPE + full */
} l4_config;

/* Reads and checks the text config of cfg (top level or "text_config"). */
int l4_config_read(l4_config *c, const pvf_config *cfg, pvf_err *err);

/* Parameter indices of one decoder layer. */
typedef struct l4_layer {
    int in_norm, q, k, v, o, post_norm;
    int router, sh_gate, sh_up, sh_down; /* MoE */
    int *gate_up, *down;                 /* MoE: [E] per-expert params */
    int gate, up, mlp_down;              /* dense */
} l4_layer;

typedef struct llama4 {
    l4_config c;
    float *inv_freq; /* [head_dim / 2] */
    l4_layer *layer;
    int embed, norm, lm_head;
    int64_t T;           /* tokens per eval input, fitted to the eval set */
    int64_t scored_from; /* first scored position */
} llama4;

/* Stage pieces on part of the tokens (llama4.c), same arithmetic as the
 * stages, workspace ex->scratch. Layer L's FFN (post-attention norm, MLP or
 * MoE, residual) of R token rows: */
void l4_ffn_rows(pvf_exec *ex, int64_t L, int64_t R, const float *in, float *out);
/* A SwiGLU MLP of R rows f [R, H]: down (silu(f gate^T) * (f up^T)), out
 * [R, H]; g and u [R, I] workspace. */
void l4_swiglu_rows(int64_t R, int64_t H, int64_t I, const float *f, const float *wg,
                    const float *wu, const float *wd, float *g, float *u, float *out);
/* Layer L's attention heads of n sequences (in [n T, hidden]) with the
 * given weights, as its stage computes them: the queries q [n T, heads *
 * head_dim] and keys k [n T, kv_heads * head_dim] as the attention reads
 * them (see l4_qkv), the values v [n T, kv_heads * head_dim] and the head
 * outputs o [n T, heads * head_dim], before the output projection.
 * Workspace work, l4_attn_heads_floats(c, n T, T) of it. */
void l4_attn_heads(const llama4 *l, int64_t L, int64_t n, const float *in, const float *w_in,
                   const float *wq, const float *wk, const float *wv, float *work, float *q,
                   float *k, float *v, float *o);
int64_t l4_attn_heads_floats(const l4_config *c, int64_t rows, int64_t T);
/* Final norm and lm_head of R token rows: */
void l4_head_rows(pvf_exec *ex, int64_t R, const float *in, float *out);
/* One sequence's golden input rows of an attention stage [T, hidden] and
 * their projections: queries [T, heads * head_dim] and keys [T, kv_heads *
 * head_dim] as the attention reads them (RoPE and QK-norm, or the NoPE
 * temperature, applied), values [T, kv_heads * head_dim]. */
typedef struct l4_qkv {
    const float *in, *q, *k, *v;
} l4_qkv;
/* Layer L's attention block of one sequence (in, out [T, hidden]) for the
 * positions first..end-1 only: out rows first..end-1 (rows before are not
 * written; they do not change when in's rows before first did not; causal
 * attention reads no row from end on). With gold (not NULL), the rows of in
 * equal to gold->in take their golden projections and only the others are
 * projected (when ex->scratch holds l4_attn_span_floats; else all are). */
void l4_attn_span(pvf_exec *ex, int64_t L, const float *in, int64_t first, int64_t end,
                  const l4_qkv *gold, float *out);
int64_t l4_attn_span_floats(const pvf_model *m); /* its workspace, of ex->scratch */

/* Layer L's attention block of one sequence (in [T, hidden]) for the query
 * positions pos[0] < ... < pos[nq-1] only, the same arithmetic per query
 * as the stage: out[nq, hidden] (compact). Keys and values come from in's
 * rows the queries see (before pos[nq-1] + 1). Workspace ex->scratch,
 * l4_attn_queries_floats of it. */
void l4_attn_queries(pvf_exec *ex, int64_t L, const float *in, const int64_t *pos, int64_t nq,
                     float *out);
int64_t l4_attn_queries_floats(const pvf_model *m, int64_t nq);

/* The fast trial path (llama4_fast.c; model.h's fast hooks). */
int l4_fast_prepare(const pvf_model *m, const struct pvf_golden *g, void **state, pvf_err *err);
void l4_fast_free(void *state);
int l4_fast_trial(pvf_exec *ex, const struct pvf_golden *g, int param,
                  const struct pvf_fault_effect *eff, struct pvf_trial_result *r, pvf_err *err);

/* The sound bound of the fast path (llama4_bound.c): golden statistics
 * made once per golden pass, then per sequence whether a change of the
 * residual stream at some positions can flip any scored prediction. */
typedef struct l4_bound l4_bound;
int l4_bound_prepare(const pvf_model *m, const struct pvf_golden *g, l4_bound **out);
void l4_bound_free(l4_bound *b);
/* Doubles of workspace l4_bound_clears needs. */
int64_t l4_bound_work(const pvf_model *m);
/* 1 when sequence seq, whose input to stage s (s > the faulty stage)
 * differs from golden by at most d[t] (2-norm) at each position t, judges
 * every scored position as golden does; 0 when it cannot tell. d[T] is
 * overwritten. */
int l4_bound_clears(const l4_bound *b, const pvf_model *m, int s, int64_t seq, double *d,
                    double *work);
/* The same per position, for positions 0..n-1 of the sequence (those
 * from n on are not asked about; causal attention makes positions before
 * n independent of them): the number of leading positions whose scored
 * predictions must still be computed, i.e. one past the last position the
 * bound cannot clear (0: every one cleared). A position whose change is
 * unbounded (NaN, Inf, overflow, a routing that might change) is not
 * cleared, nor is any later position whose attention window holds it.
 * On return d[t] (t < n) bounds position t's change at the head input
 * (INFINITY: unbounded); l4_bound_head_clears(d[t]) tells it apart. */
int64_t l4_bound_needed(const l4_bound *b, const pvf_model *m, int s, int64_t seq, int64_t n,
                        double *d, double *work);
/* One stage s (1 <= s < the head's stage) of that bound: d[t] (t < n) bounds
 * position t's change at stage s's input on entry, at stage s + 1's input
 * on return (INFINITY: unbounded). 0, or -1 for a stage it does not cover. */
int l4_bound_stage(const l4_bound *b, const pvf_model *m, int s, int64_t seq, int64_t n, double *d,
                   double *work);
/* The same for one token (sequence * T + position) whose head input alone
 * differs, by at most d. */
int l4_bound_head_clears(const l4_bound *b, const pvf_model *m, int64_t token, double d);
/* 1 when every stage from s on works token by token (FFNs and the head: no
 * attention left), so a token's change reaches only its own logits. */
int l4_bound_tokenwise(const pvf_model *m, int s);
/* For such a stage s: 1 when token (sequence * T + position), whose input to
 * stage s alone differs from golden, by at most d, judges as golden. */
int l4_bound_token_clears(const l4_bound *b, const pvf_model *m, int s, int64_t token, double d);
/* Second-order remainders, for the linearized bound (llama4_linear.c). The
 * unit-weight RMSNorm over dim features, input change <= d, golden rms:
 * |a(x + dx) - a(x) - J_a dx| (INFINITY when the segment may reach rms 0). */
double l4_norm_remainder(double d, double rms, int64_t dim);
/* FFN stage s at token tt, input change <= d, its MoE routing (if any) held
 * at golden's (the caller shows that it holds): the bound of its output's
 * change, and in *rem of that change less its golden Jacobian times the
 * input's (float rounding included, as the other stage bounds). */
double l4_bound_ffn_held(const l4_bound *b, const pvf_model *m, int s, int64_t tt, double d,
                         double *rem);
/* Attention stage s, query position q of sequence seq whose input rows
 * 0..q change by at most d[0..q]: its output row's change less its golden
 * Jacobian times the input's (INFINITY when not bounded). */
double l4_bound_attn_remainder(const l4_bound *b, const pvf_model *m, int s, int64_t seq, int64_t q,
                               const double *d);
/* Golden rms of a token's head input; of FFN stage s's input; the largest
 * router row norm of MoE stage s (norm weight folded) and the rounding
 * allowance on a router logit gap. */
double l4_bound_head_rms(const l4_bound *b, int64_t token);
double l4_bound_ffn_rms(const l4_bound *b, const pvf_model *m, int s, int64_t token);
double l4_bound_router_rmax(const l4_bound *b, const pvf_model *m, int s);
double l4_bound_router_slack(const l4_bound *b, const pvf_model *m, int s);
/* Token's golden top-1 margin over class v less the rounding and near-tie
 * allowances the head bound keeps, and in *rownorm |(row_top - row_v) w|
 * (w the final norm's weight). */
double l4_bound_head_margin(const pvf_model *m, const struct pvf_golden *g, int64_t token,
                            int64_t v, double *rownorm);

/* The linearized bound (llama4_linear.c): at the input of the dense MLP
 * stage before the last attention, each scored position's top-1 margins
 * over its nearest classes, and the last MoE layer's router gap, as their
 * golden gradients times the change plus bounded remainders. NULL state
 * when the model's layout is not covered or it would not fit its budget. */
typedef struct l4_linear l4_linear;
/* route: the last layer's golden top expert per token (NULL for a dense
 * one); qkv: its attention's golden queries, keys and values, every token's
 * (as l4_qkv; qkv->in unused). */
int l4_linear_prepare(const pvf_model *m, const struct pvf_golden *g, const l4_bound *b,
                      const int32_t *route, const l4_qkv *qkv, l4_linear **out);
void l4_linear_free(l4_linear *lin);
/* The stage it answers at. */
int l4_linear_stage(const l4_linear *lin);
/* Doubles of workspace l4_linear_needed takes. */
int64_t l4_linear_work(const pvf_model *m);
/* Sequence seq whose input to the stage is x[end, H] (golden before
 * position p0; positions from end on are cleared already): one past the
 * last position that neither this bound nor l4_bound's can clear (0: all). */
int64_t l4_linear_needed(const l4_linear *lin, const l4_bound *b, const pvf_model *m,
                         const struct pvf_golden *g, int64_t seq, int64_t p0, int64_t end,
                         const float *x, double *work);

/* For tests: the functionals per position; functional f of position q of
 * sequence seq to first order, sum over rows t = p0..q of its golden
 * gradient times dx[t] (dx [T, hidden]), and in *cls its class (the top-1
 * margin over class *cls; -1: the router gap). */
int64_t l4_linear_functionals(const l4_linear *lin);
double l4_linear_first_order(const l4_linear *lin, int64_t seq, int64_t q, int64_t f, int64_t p0,
                             const float *dx, int32_t *cls);
/* Its golden gradient rows, into G[q + 1, hidden] (as stored); returns its
 * clearance. */
double l4_linear_gradient(const l4_linear *lin, int64_t seq, int64_t q, int64_t f, float *G);
/* The linearized bound of a golden pass (NULL when it does not apply). */
const l4_linear *l4_fast_linear(const struct pvf_golden *g);

/* The bound's statistics of a golden pass (NULL without fast-path state). */
const l4_bound *l4_fast_bound(const struct pvf_golden *g);

/* Eval tokens (sequence positions) the golden routing sends to the routed
 * expert whose parameter is `param`; -1 when param is no routed expert's or
 * g has no fast-path state. */
int64_t pvf_llama4_expert_tokens(const pvf_model *m, const struct pvf_golden *g, int param);

#endif
