/* kernels_nn.h - fp32 kernels of the recommendation and transformer models
 * (DLRM, BERT), with PyTorch's semantics; matrix products go through
 * OpenBLAS. NaN and Inf propagate as in PyTorch, so a fault that produces
 * them is seen at the output. */
#ifndef PVF_KERNELS_NN_H
#define PVF_KERNELS_NN_H

#include <stdint.h>

/* torch.nn.functional.embedding_bag(mode="sum") with offsets: bag b sums the
 * rows idx[offsets[b]] .. idx[end - 1] of table[rows, dim], end being
 * offsets[b + 1] (nidx for the last bag); an empty bag gives zeros. Writes
 * y[b * ystride + j]. Indices and offsets must have been checked. */
void pvf_embedding_bag_sum(const float *table, int64_t dim, const int64_t *idx, int64_t nidx,
                           const int64_t *offsets, int64_t nbags, float *y, int64_t ystride);

/* DLRM's "dot" interaction: t[n, f, d] holds per input f feature vectors
 * (the bottom-MLP output first); y[n, d + pairs] = the first vector, then
 * (t_i . t_j) for i in 0..f-1, j in 0..i-1 (j = i too when itself), the
 * order of dlrm's Z[:, li, lj]. */
int64_t pvf_interaction_dot_size(int64_t f, int64_t d, int itself);
void pvf_interaction_dot(const float *t, int64_t n, int64_t f, int64_t d, int itself, float *y);

/* torch.nn.LayerNorm over the last dim, in place: (x - mean) / sqrt(var +
 * eps) * w + b with the biased variance. A row whose variance overflows fp32
 * (a value above ~1e20, Inf, NaN) becomes NaN, as PyTorch's CPU kernel makes
 * it for values from ~1e21 (between ~2e19 and ~1e20 PyTorch returns the bias,
 * depending on the row length and the CPU's vector width; pvf normalizes). */
void pvf_layernorm(float *x, int64_t rows, int64_t cols, const float *w, const float *b, float eps);
/* 1 when pvf_layernorm turns this row into NaN (its variance above FLT_MAX,
 * or a NaN or Inf in it), by the same arithmetic. */
int pvf_layernorm_overflows(const float *row, int64_t cols);

/* GELU, erf form (torch.nn.functional.gelu, approximate="none"). */
void pvf_gelu_erf(float *x, int64_t n);
void pvf_tanh(float *x, int64_t n);
void pvf_sigmoid(float *x, int64_t n);

/* Multi-head scaled dot-product attention of one sequence, as Hugging Face
 * BERT's eager path: per head h, scores = q_h k_h^T / sqrt(d) + mask_add
 * (per key: 0 for a token, (1 - mask) * finfo(float32).min for padding),
 * softmax over the keys, ctx_h = P v_h. q[sq, heads*d] holds the first sq
 * query positions (sq <= s), k and v [s, heads*d]; head h is columns
 * h*d .. h*d+d-1. scratch: sq * s floats. */
void pvf_attention(const float *q, int64_t sq, const float *k, const float *v, int64_t s,
                   int64_t heads, int64_t d, const float *mask_add, float *ctx, float *scratch);

/* pvf_attention's head hd alone: columns hd*d .. hd*d+d-1 of ctx, the others
 * untouched. */
void pvf_attention_head(const float *q, int64_t sq, const float *k, const float *v, int64_t s,
                        int64_t heads, int64_t d, int64_t hd, const float *mask_add, float *ctx,
                        float *scratch);

/* The additive attention mask of one key from its mask value, as Hugging
 * Face computes it: (1 - m) * finfo(float32).min. */
float pvf_attention_mask_add(int64_t m);

#endif
