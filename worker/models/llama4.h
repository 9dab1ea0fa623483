/* llama4.h - the Llama 4 text decoder's configuration (llama4_config.c) and
 * model state (llama4.c), shared by the two files only.
 *
 * Config rules: /work/shared/reference/llama4.md section 1 (text fields at
 * the top level or under "text_config", schedules derived as HF does). */
#ifndef PVF_LLAMA4_H
#define PVF_LLAMA4_H

#include "config.h"
#include "kernels_llm.h"

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

#endif
