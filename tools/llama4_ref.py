"""PyTorch reference of the Llama 4 text decoder (Llama4ForCausalLM), written
from the formulas of /work/shared/reference/llama4.md (no transformers package).

It is both the training model of tools/train_fortunes_llama4.py and the
reference pvf's C engine (worker/models/llama4.c) is checked against. All
arithmetic is float32. Routed experts run only on the tokens routed to them
(select-only, as Meta's, vLLM's and llama.cpp's implementations do).

    cfg = text_config(json.load(open("config.json")))
    logits, routes = forward(params, cfg, ids)   # params: HF name -> tensor

Tensor names are Hugging Face's (`model.layers.{L}.self_attn.q_proj.weight`,
`model.layers.{L}.feed_forward.experts.gate_up_proj` [E, in, 2I], ...), with
the optional `language_model.` prefix of multimodal checkpoints.
"""

import math

import numpy as np
import torch

F32 = torch.float32


def text_config(cfg):
    """The text fields with the per-layer schedules derived (spec section 1.3):
    text_config nesting, head_dim, moe_layers, no_rope_layers, rope spellings."""
    t = dict(cfg.get("text_config") or cfg)
    n = t["num_hidden_layers"]
    if t.get("head_dim") is None:
        t["head_dim"] = t["hidden_size"] // t["num_attention_heads"]
    step = t.get("interleave_moe_layer_step", 1)
    if t.get("moe_layers") is None:  # missing/null: derived; [] means no MoE layer
        t["moe_layers"] = list(range(step - 1, n, step))
    if not t.get("no_rope_layers"):  # missing or empty: the interval pattern
        k = t.get("no_rope_layer_interval", 4)
        t["no_rope_layers"] = [int((i + 1) % k != 0) for i in range(n)]
    rp = t.get("rope_parameters") or {}
    t.setdefault("rope_theta", rp.get("rope_theta", 500000.0))
    if t.get("rope_scaling") is None and rp.get("rope_type", rp.get("type")) == "llama3":
        t["rope_scaling"] = rp
    t.setdefault("rms_norm_eps", 1e-5)
    t.setdefault("attention_chunk_size", 8192)
    t.setdefault("use_qk_norm", True)
    t.setdefault("attn_temperature_tuning", True)
    t.setdefault("floor_scale", 8192)
    t.setdefault("attn_scale", 0.1)
    t.setdefault("num_experts_per_tok", 1)
    return t


def rope_inv_freq(cfg):
    """theta_i = rope_theta^(-2i/d) in float32, with llama3 frequency scaling."""
    d = cfg["head_dim"]
    base = float(cfg["rope_theta"])
    inv = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.int64).to(F32) / d))
    rs = cfg.get("rope_scaling")
    if not rs or rs.get("rope_type", rs.get("type")) != "llama3":
        return inv
    factor = float(rs["factor"])
    low, high = float(rs["low_freq_factor"]), float(rs["high_freq_factor"])
    orig = float(rs["original_max_position_embeddings"])
    low_w, high_w = orig / low, orig / high
    out = []
    for th in inv.tolist():
        wavelen = 2 * math.pi / th
        if wavelen < high_w:
            out.append(th)
        elif wavelen > low_w:
            out.append(th / factor)
        else:  # the band between: only reached when high > low
            smooth = (orig / wavelen - low) / (high - low)
            out.append((1 - smooth) * th / factor + smooth * th)
    return torch.tensor(out, dtype=F32)


def rope(x, pos, inv_freq):
    """Rotates adjacent pairs (2i, 2i+1) of x [..., T, heads, d] by pos*theta_i."""
    ang = pos.to(F32)[:, None] * inv_freq[None, :]  # [T, d/2], float32 products
    cos, sin = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = a * cos - b * sin
    out[..., 1::2] = a * sin + b * cos
    return out


def rms_norm(x, eps, w=None):
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * w if w is not None else y


def attn_temperature(pos, floor_scale, attn_scale):
    """s(p) = log(floor((p+1)/floor_scale) + 1) * attn_scale + 1 (NoPE layers)."""
    return torch.log1p(torch.floor((pos.to(F32) + 1.0) / floor_scale)) * attn_scale + 1.0


def attn_mask(T, chunk):
    """[T, T] bool, True where query p may see key j: j <= p, and on chunked
    (RoPE) layers also floor(j/C) == floor(p/C)."""
    p = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    ok = j <= p
    if chunk:
        ok = ok & (torch.div(j, chunk, rounding_mode="floor") == torch.div(p, chunk, rounding_mode="floor"))
    return ok


def attention(q, k, v, mask):
    """q [N, T, nh, d], k/v [N, T, nkv, d]; GQA: query head h uses KV head h // (nh/nkv)."""
    nh, nkv, d = q.shape[2], k.shape[2], q.shape[3]
    rep = nh // nkv
    k = k.repeat_interleave(rep, dim=2)
    v = v.repeat_interleave(rep, dim=2)
    s = torch.einsum("nphd,njhd->nhpj", q, k) / math.sqrt(d)
    s = s.masked_fill(~mask, float("-inf"))
    a = torch.softmax(s, dim=-1)
    return torch.einsum("nhpj,njhd->nphd", a, v)


def swiglu_mlp(f, gate_w, up_w, down_w):
    """down . (silu(gate . f) * (up . f)) with Linear [out, in] weights."""
    return (torch.nn.functional.silu(f @ gate_w.T) * (f @ up_w.T)) @ down_w.T


def route(f, router_w, k):
    """Top-k by raw router logits; scores sigmoid(logit) of the chosen ones."""
    logits = f @ router_w.T
    top = torch.topk(logits, k, dim=-1)
    return logits, top.indices, torch.sigmoid(top.values)


def experts(f, idx, score, gate_up, down):
    """Routed experts, fused layout: gate_up [E, in, 2I] (gate columns first,
    then up), down [E, I, out]. The sigmoid score scales the expert's INPUT."""
    E = gate_up.shape[0]
    inter = down.shape[1]
    y = torch.zeros_like(f)
    for e in range(E):
        tok, slot = (idx == e).nonzero(as_tuple=True)
        if tok.numel() == 0:
            continue
        xe = f[tok] * score[tok, slot][:, None]
        gu = xe @ gate_up[e]
        h = gu[:, inter:] * torch.nn.functional.silu(gu[:, :inter])
        y.index_add_(0, tok, h @ down[e])
    return y


def layer_is_moe(cfg, L):
    return L in cfg["moe_layers"]


def layer_uses_rope(cfg, L):
    return bool(cfg["no_rope_layers"][L])


def forward(params, cfg, ids, prefix="", collect=None):
    """Logits [N, T, vocab] of input_ids [N, T] (positions 0..T-1).
    params: HF name -> float32 tensor. collect: optional dict that receives
    per MoE layer the routing `idx` [N*T, k] and router logits, and the
    auxiliary-loss terms (training)."""
    P = lambda name: params[prefix + name]  # noqa: E731
    N, T = ids.shape
    H, nh, nkv, d = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    pos = torch.arange(T)
    inv_freq = rope_inv_freq(cfg)
    chunk = cfg.get("attention_chunk_size")
    x = P("model.embed_tokens.weight")[ids]
    for L in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{L}."
        a = rms_norm(x, eps, P(pre + "input_layernorm.weight"))
        q = (a @ P(pre + "self_attn.q_proj.weight").T).view(N, T, nh, d)
        k = (a @ P(pre + "self_attn.k_proj.weight").T).view(N, T, nkv, d)
        v = (a @ P(pre + "self_attn.v_proj.weight").T).view(N, T, nkv, d)
        if layer_uses_rope(cfg, L):
            q, k = rope(q, pos, inv_freq), rope(k, pos, inv_freq)
            if cfg["use_qk_norm"]:
                q, k = rms_norm(q, eps), rms_norm(k, eps)
            mask = attn_mask(T, chunk)
        else:
            if cfg["attn_temperature_tuning"]:
                q = q * attn_temperature(pos, cfg["floor_scale"], cfg["attn_scale"])[None, :, None, None]
            mask = attn_mask(T, None)
        o = attention(q, k, v, mask).reshape(N, T, nh * d)
        x = x + o @ P(pre + "self_attn.o_proj.weight").T
        f = rms_norm(x, eps, P(pre + "post_attention_layernorm.weight"))
        ff = pre + "feed_forward."
        if layer_is_moe(cfg, L):
            flat = f.reshape(N * T, H)
            logits, idx, score = route(flat, P(ff + "router.weight"), cfg["num_experts_per_tok"])
            y = swiglu_mlp(flat, P(ff + "shared_expert.gate_proj.weight"),
                           P(ff + "shared_expert.up_proj.weight"), P(ff + "shared_expert.down_proj.weight"))
            y = y + experts(flat, idx, score, P(ff + "experts.gate_up_proj"), P(ff + "experts.down_proj"))
            if collect is not None:
                collect.setdefault("idx", {})[L] = idx
                collect.setdefault("router_logits", {})[L] = logits
            x = x + y.view(N, T, H)
        else:
            x = x + swiglu_mlp(f, P(ff + "gate_proj.weight"), P(ff + "up_proj.weight"), P(ff + "down_proj.weight"))
    x = rms_norm(x, eps, P("model.norm.weight"))
    return x @ P("lm_head.weight").T


# ---------------------------------------------------------------- packagings

def param_storage(cfg, name, packaging):
    """Storage format of a parameter under a campaign format: a plain pvf
    format applies to all (scaled formats to 2+-dim tensors only, see
    pvf_formats.applies); the packagings follow Meta's releases:
      llama4-fp8   routed experts of MoE layers fp8-e4m3 (row-wise), except in
                   the first and last layer; everything else bf16
      llama4-int4  routed and shared experts int4 (groups of 128); the rest bf16"""
    if packaging == "llama4-fp8":
        n = cfg["num_hidden_layers"]
        if ".feed_forward.experts." in name:
            L = int(name.split("model.layers.")[1].split(".")[0])
            if 0 < L < n - 1:
                return "fp8-e4m3"
        return "bf16"
    if packaging == "llama4-int4":
        if ".feed_forward.experts." in name or ".feed_forward.shared_expert." in name:
            return "int4"
        return "bf16"
    return packaging


def quantize_params(params, cfg, packaging):
    """Compute values (float32 tensors) of every parameter stored as pvf
    stores it under `packaging` (a plain format or a llama4-* packaging).
    Fused expert tensors [E, in, out] are stored per expert in Linear layout
    [out, in] (rows = output channels), as the C engine splits them."""
    import pvf_formats

    out = {}
    for name, t in params.items():
        a = t.detach().cpu().numpy().astype(np.float32)
        fmt = param_storage(cfg, name, packaging)
        if not pvf_formats.applies(fmt, a.ndim):
            out[name] = torch.from_numpy(a.copy())
        elif name.endswith("experts.gate_up_proj") or name.endswith("experts.down_proj"):
            per = [pvf_formats.encode(fmt, np.ascontiguousarray(a[e].T))["values"].T for e in range(a.shape[0])]
            out[name] = torch.from_numpy(np.ascontiguousarray(np.stack(per)))
        else:
            out[name] = torch.from_numpy(pvf_formats.encode(fmt, a)["values"])
    return out
