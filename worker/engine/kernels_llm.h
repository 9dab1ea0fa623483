/* kernels_llm.h - fp32 kernels of decoder-only language models (Llama 4):
 * RMSNorm, RoPE with llama3 frequency scaling, chunked / causal attention
 * with grouped KV heads and NoPE temperature tuning, SwiGLU, top-k sigmoid
 * router and routed experts.
 *
 * Layouts: activations [rows, features] row-major, one row per token; Linear
 * weights [out, in] (y = x . W^T). Heads are contiguous inside a row:
 * q[t, h*d + i]. Formulas: /work/shared/reference/llama4.md section 3. */
#ifndef PVF_KERNELS_LLM_H
#define PVF_KERNELS_LLM_H

#include <stdint.h>

/* y[r] = x[r] / sqrt(mean_j x[r][j]^2 + eps) * w (w NULL: weightless, the
 * QK-norm). x and y may be the same buffer. */
void pvf_rms_norm(const float *x, int64_t rows, int64_t cols, const float *w, float eps, float *y);

/* llama3 rope_scaling; factor 0 means none. */
typedef struct pvf_rope_llama3 {
    double factor, low_freq_factor, high_freq_factor, original_max_position;
} pvf_rope_llama3;

/* inv_freq[i] = theta^(-2i/d), i < d/2, in fp32, then llama3 scaling:
 * wavelength 2 pi / inv_freq below orig/high kept, above orig/low divided by
 * factor, smoothed between (an empty band when high == low). */
void pvf_rope_inv_freq(int64_t d, double theta, const pvf_rope_llama3 *scaling, float *inv_freq);

/* Rotates the adjacent pairs (2i, 2i+1) of every head of x[T, heads * d] in
 * place; row t is at position t: angle t * inv_freq[i] in fp32. */
void pvf_rope_apply(float *x, int64_t T, int64_t heads, int64_t d, const float *inv_freq);
/* The same for rows at positions pos0..pos0+T-1 (a sequence's tail). */
void pvf_rope_apply_from(float *x, int64_t pos0, int64_t T, int64_t heads, int64_t d,
                         const float *inv_freq);

/* Attention temperature of a NoPE layer at position p:
 * log(floor((p + 1) / floor_scale) + 1) * attn_scale + 1. */
float pvf_attn_temperature(int64_t p, int64_t floor_scale, float attn_scale);

/* Causal attention of one sequence: q[T, nh*d], k and v [T, nkv*d]; query
 * head h reads KV head h / (nh / nkv); scores scaled by 1/sqrt(d). With
 * chunk > 0, query p sees keys j <= p with floor(j/chunk) == floor(p/chunk)
 * (chunks aligned to position 0); chunk 0 is full causal. out[T, nh*d];
 * scores: T floats of workspace. */
void pvf_causal_attention(const float *q, const float *k, const float *v, int64_t T, int64_t nh,
                          int64_t nkv, int64_t d, int64_t chunk, float *out, float *scores);
/* The queries of positions first..T-1 only (a sequence whose positions
 * before `first` are unchanged): q and out hold rows first..T-1, k and v all
 * T rows (only those a query sees are read). The same arithmetic per query. */
void pvf_causal_attention_from(const float *q, const float *k, const float *v, int64_t T,
                               int64_t first, int64_t nh, int64_t nkv, int64_t d, int64_t chunk,
                               float *out, float *scores);

/* h[j] = silu(gate[j]) * up[j], silu(z) = z * sigmoid(z). */
void pvf_silu_mul(const float *gate, const float *up, int64_t n, float *h);

/* h[r][j] = silu(gu[r][j]) * gu[r][inter + j]: rows of [gate | up], width
 * 2*inter, to rows of width inter. */
void pvf_swiglu(const float *gu, int64_t rows, int64_t inter, float *h);

/* Top-k experts of each row of router logits[rows, E] by raw logit (the
 * first of equal ones; NaN counts as the largest), and their scores
 * sigmoid(logit): idx[rows, k], score[rows, k]. */
void pvf_router_topk(const float *logits, int64_t rows, int64_t E, int k, int32_t *idx,
                     float *score);

/* Routed experts: each expert e has gate_up[e] [2*inter, in] ([gate | up]
 * rows, Linear layout) and down[e] [out, inter]. For every (row, slot),
 * y[row] += down[e] . swiglu(gate_up[e] . (x[row] * score)): the score scales
 * the expert's input. Rows are gathered per expert (only selected experts
 * run). scratch: pvf_experts_scratch floats. */
typedef struct pvf_experts {
    int64_t E, in, inter, out;
    const float *const *gate_up; /* [E] */
    const float *const *down;    /* [E] */
} pvf_experts;

int64_t pvf_experts_scratch(const pvf_experts *x, int64_t rows);
void pvf_experts_run(const pvf_experts *ex, const float *x, int64_t rows, const int32_t *idx,
                     const float *score, int k, float *y, float *scratch);

#endif
