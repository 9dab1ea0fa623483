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
/* The bound's statistics of a golden pass (NULL without fast-path state). */
const l4_bound *l4_fast_bound(const struct pvf_golden *g);

/* Eval tokens (sequence positions) the golden routing sends to the routed
 * expert whose parameter is `param`; -1 when param is no routed expert's or
 * g has no fast-path state. */
int64_t pvf_llama4_expert_tokens(const pvf_model *m, const struct pvf_golden *g, int param);

#endif
