"""Writes the Llama 4 test fixtures, computed in PyTorch from the spec's
formulas (tools/llama4_ref.py):

    tests/fixtures/llama4_kernels.safetensors  inputs and outputs of the LLM
        kernels: RoPE with llama3 scaling (three bands, and the empty middle
        band of high == low), the chunked and causal masks with GQA, NoPE
        temperature tuning, QK-norm and RMSNorm, top-k sigmoid routing, fused
        experts, SwiGLU
    tests/fixtures/llama4-mm/                  a second, differently shaped
        checkpoint: multimodal-style (language_model. prefix, text_config
        nesting, a vision tensor the text model ignores), explicit moe_layers
        and no_rope_layers, top-2 routing, "type" spelling of rope_scaling,
        F32 weights; eval.safetensors with PyTorch's logits in fp32 and both
        Meta packagings

    /usr/bin/python3 tools/make_llama4_fixtures.py

Deterministic: fixed seeds, one thread.
"""

import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama4_ref as ref  # noqa: E402
import safetensors_io  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def randn(g, *shape):
    return torch.randn(*shape, generator=g, dtype=torch.float32)


def kernels():
    g = torch.Generator().manual_seed(4)
    out = {}
    # RoPE: d 16, theta 10000, llama3 factor 8, low 1, high 4, orig 64:
    # wavelengths 6.3 (kept), 19.9 and 62.8 (smoothed), 199 and up (scaled).
    three = {"head_dim": 16, "rope_theta": 10000.0,
             "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}
    empty = {"head_dim": 16, "rope_theta": 500000.0,
             "rope_scaling": {"rope_type": "llama3", "factor": 16.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 1.0, "original_max_position_embeddings": 64}}
    plain = {"head_dim": 16, "rope_theta": 10000.0, "rope_scaling": None}
    inv3, inv_e, inv_p = ref.rope_inv_freq(three), ref.rope_inv_freq(empty), ref.rope_inv_freq(plain)
    x = randn(g, 40, 3, 16)
    out.update(rope_inv_freq_llama3=inv3, rope_inv_freq_empty_band=inv_e, rope_inv_freq_plain=inv_p,
               rope_x=x, rope_y=ref.rope(x, torch.arange(40), inv3))
    # Temperature tuning at positions 0..39, floor_scale 4, attn_scale 0.1.
    out["temperature_s"] = ref.attn_temperature(torch.arange(40), 4, 0.1)
    # Attention of one sequence: T 11, 4 query heads, 2 KV heads, d 8.
    q, k, v = randn(g, 1, 11, 4, 8), randn(g, 1, 11, 2, 8), randn(g, 1, 11, 2, 8)
    out.update(attn_q=q[0], attn_k=k[0], attn_v=v[0],
               attn_chunk4=ref.attention(q, k, v, ref.attn_mask(11, 4))[0],
               attn_causal=ref.attention(q, k, v, ref.attn_mask(11, None))[0])
    # RMSNorm with a weight, and the weightless QK-norm.
    nx, nw = randn(g, 6, 8) * 3, randn(g, 8)
    out.update(norm_x=nx, norm_w=nw, norm_y=ref.rms_norm(nx, 1e-5, nw), qknorm_y=ref.rms_norm(nx, 1e-5))
    # Routing over 8 experts, top-1 and top-2; fused experts (E 4, in 8, I 6, out 8).
    logits = randn(g, 20, 8)
    _, i1, s1 = ref.route(logits, torch.eye(8), 1)  # identity router: these logits
    _, i2, s2 = ref.route(logits, torch.eye(8), 2)
    out.update(router_logits=logits, router_idx1=i1.to(torch.int64), router_score1=s1,
               router_idx2=i2.to(torch.int64), router_score2=s2)
    ex_x, gu, dn = randn(g, 20, 8), randn(g, 4, 8, 12) * 0.5, randn(g, 4, 6, 8) * 0.5
    rl = randn(g, 20, 4)
    _, ei, es = ref.route(rl, torch.eye(4), 2)
    out.update(experts_x=ex_x, experts_gate_up=gu, experts_down=dn, experts_idx=ei.to(torch.int64),
               experts_score=es, experts_y=ref.experts(ex_x, ei, es, gu, dn))
    gux = randn(g, 5, 12)
    out.update(swiglu_gu=gux, swiglu_h=gux[:, 6:] * torch.nn.functional.silu(gux[:, :6]))
    tensors = {k: v.detach().numpy() for k, v in out.items()}
    safetensors_io.save(os.path.join(FIXTURES, "llama4_kernels.safetensors"), tensors,
                        {"source": "tools/make_llama4_fixtures.py"})


MM_TEXT = {
    "model_type": "llama4_text",
    "vocab_size": 50,
    "hidden_size": 32,
    "intermediate_size": 24,
    "intermediate_size_mlp": 40,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": None,
    "num_local_experts": 4,
    "num_experts_per_tok": 2,
    "moe_layers": [0, 1, 3],
    "no_rope_layers": [1, 1, 0, 1],
    "attention_chunk_size": 5,
    "use_qk_norm": False,
    "attn_temperature_tuning": 4,
    "floor_scale": 3,
    "attn_scale": 0.25,
    "rope_theta": 500000.0,
    "rope_scaling": {"type": "llama3", "factor": 16.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 1.0, "original_max_position_embeddings": 16},
    "rms_norm_eps": 1e-5,
    "max_position_embeddings": 64,
}


def multimodal():
    g = torch.Generator().manual_seed(5)
    cfg = {"architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4",
           "tie_word_embeddings": False, "text_config": MM_TEXT,
           "vision_config": {"model_type": "llama4_vision_model", "hidden_size": 8}}
    t = ref.text_config(cfg)
    H, I, Im, E, V = 32, 24, 40, 4, 50
    d, nh, nkv = t["head_dim"], 4, 1
    p = {"model.embed_tokens.weight": randn(g, V, H), "model.norm.weight": 1 + 0.1 * randn(g, H),
         "lm_head.weight": randn(g, V, H) / H ** 0.5}
    for L in range(4):
        pre = f"model.layers.{L}."
        p[pre + "input_layernorm.weight"] = 1 + 0.1 * randn(g, H)
        p[pre + "post_attention_layernorm.weight"] = 1 + 0.1 * randn(g, H)
        p[pre + "self_attn.q_proj.weight"] = randn(g, nh * d, H) / H ** 0.5
        p[pre + "self_attn.k_proj.weight"] = randn(g, nkv * d, H) / H ** 0.5
        p[pre + "self_attn.v_proj.weight"] = randn(g, nkv * d, H) / H ** 0.5
        p[pre + "self_attn.o_proj.weight"] = randn(g, H, nh * d) / H ** 0.5
        ff = pre + "feed_forward."
        if L in t["moe_layers"]:
            p[ff + "router.weight"] = randn(g, E, H) / H ** 0.5
            p[ff + "experts.gate_up_proj"] = randn(g, E, H, 2 * I) / H ** 0.5
            p[ff + "experts.down_proj"] = randn(g, E, I, H) / I ** 0.5
            p[ff + "shared_expert.gate_proj.weight"] = randn(g, I, H) / H ** 0.5
            p[ff + "shared_expert.up_proj.weight"] = randn(g, I, H) / H ** 0.5
            p[ff + "shared_expert.down_proj.weight"] = randn(g, H, I) / I ** 0.5
        else:
            p[ff + "gate_proj.weight"] = randn(g, Im, H) / H ** 0.5
            p[ff + "up_proj.weight"] = randn(g, Im, H) / H ** 0.5
            p[ff + "down_proj.weight"] = randn(g, H, Im) / Im ** 0.5
    ids = torch.randint(0, V, (5, 13), generator=g)
    ev = {"input_ids": ids.numpy()}
    for pk in ("fp32", "llama4-fp8", "llama4-int4"):
        qp = ref.quantize_params(p, t, pk) if pk != "fp32" else p
        with torch.no_grad():
            logits = ref.forward(qp, t, ids)
        ev["logits" if pk == "fp32" else "logits_" + pk.replace("-", "_")] = logits.numpy()
    d = os.path.join(FIXTURES, "llama4-mm")
    os.makedirs(d, exist_ok=True)
    weights = {"language_model." + k: v.numpy() for k, v in p.items()}
    weights["vision_model.patch_embedding.linear.weight"] = randn(g, 8, 12).numpy()
    safetensors_io.save(os.path.join(d, "model.safetensors"), weights, {"format": "pt"})
    safetensors_io.save(os.path.join(d, "eval.safetensors"), ev,
                        {"task": "text-generation", "model": "llama4-mm test checkpoint"})
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


def main():
    torch.set_num_threads(1)
    os.makedirs(FIXTURES, exist_ok=True)
    kernels()
    multimodal()
    print("wrote", FIXTURES)


if __name__ == "__main__":
    main()
