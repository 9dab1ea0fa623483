"""Trains the bundled tiny Llama 4 on Debian's fortunes and exports
models/fortunes-llama4/.

    /usr/bin/python3 tools/train_fortunes_llama4.py [--steps N]

Data: Debian's `fortunes` and `fortunes-min` (/usr/share/games/fortunes),
byte-level: tokens 0-255 are bytes, 256 <|begin_of_text|>, 257
<|end_of_text|>, 258 <|finetune_right_pad|>, 259 <|eot|>. Every 16th fortune is
held out for evaluation. Writes config.json, model.safetensors (BF16, Hugging
Face names), eval.safetensors (input_ids, labels, PyTorch's logits for bf16
and both Meta packagings) and train.json (the figures of this run, which
tools/llama4_model_card.py puts in README.md).
"""

import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama4_ref as ref  # noqa: E402
import safetensors_io  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = "/usr/share/games/fortunes"
OUT = os.path.join(ROOT, "models", "fortunes-llama4")
BOS, EOS, PAD, EOT = 256, 257, 258, 259
SEQ = 96        # eval (and training) sequence length: 3 attention chunks of 32
N_EVAL = 24     # eval sequences
PACKAGINGS = ("bf16", "llama4-fp8", "llama4-int4")

CONFIG = {
    "architectures": ["Llama4ForCausalLM"],
    "model_type": "llama4_text",
    "vocab_size": 260,
    "hidden_size": 64,
    "intermediate_size": 128,
    "intermediate_size_mlp": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "num_local_experts": 8,
    "num_experts_per_tok": 1,
    "interleave_moe_layer_step": 2,
    "no_rope_layer_interval": 4,
    "attention_chunk_size": 32,
    "use_qk_norm": True,
    "attn_temperature_tuning": True,
    "floor_scale": 16,
    "attn_scale": 0.1,
    "rope_theta": 10000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    },
    "rms_norm_eps": 1e-05,
    "max_position_embeddings": 512,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
    "attention_bias": False,
    "bos_token_id": BOS,
    "eos_token_id": EOS,
    "pad_token_id": PAD,
    "router_aux_loss_coef": 0.01,
    "torch_dtype": "bfloat16",
}


def read_fortunes():
    """All fortunes of the installed text databases, as byte strings."""
    out = []
    for name in sorted(os.listdir(DATA)):
        path = os.path.join(DATA, name)
        if "." in name or os.path.islink(path) or not os.path.isfile(path) or name == "ascii-art":
            continue
        text = open(path, "rb").read()
        out += [f.strip(b"\n") for f in text.split(b"\n%\n") if f.strip()]
    return out


def stream(fortunes):
    toks = []
    starts = []
    for f in fortunes:
        starts.append(len(toks))
        toks += [BOS] + list(f) + [EOS]
    return np.array(toks, dtype=np.int64), np.array(starts, dtype=np.int64)


def init_params(cfg, gen):
    """HF-named float32 parameters, small random init (norms at 1)."""
    H, I, Im, E = cfg["hidden_size"], cfg["intermediate_size"], cfg["intermediate_size_mlp"], cfg["num_local_experts"]
    nh, nkv, d, V = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"], cfg["vocab_size"]
    p = {}

    def rnd(name, *shape, fan_in):
        p[name] = torch.randn(*shape, generator=gen) / math.sqrt(fan_in)

    rnd("model.embed_tokens.weight", V, H, fan_in=1)
    p["model.embed_tokens.weight"] *= 0.5
    t = ref.text_config(cfg)
    for L in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{L}."
        p[pre + "input_layernorm.weight"] = torch.ones(H)
        p[pre + "post_attention_layernorm.weight"] = torch.ones(H)
        rnd(pre + "self_attn.q_proj.weight", nh * d, H, fan_in=H)
        rnd(pre + "self_attn.k_proj.weight", nkv * d, H, fan_in=H)
        rnd(pre + "self_attn.v_proj.weight", nkv * d, H, fan_in=H)
        rnd(pre + "self_attn.o_proj.weight", H, nh * d, fan_in=2 * nh * d)
        ff = pre + "feed_forward."
        if L in t["moe_layers"]:
            rnd(ff + "router.weight", E, H, fan_in=H)
            rnd(ff + "experts.gate_up_proj", E, H, 2 * I, fan_in=H)
            rnd(ff + "experts.down_proj", E, I, H, fan_in=2 * I)
            rnd(ff + "shared_expert.gate_proj.weight", I, H, fan_in=H)
            rnd(ff + "shared_expert.up_proj.weight", I, H, fan_in=H)
            rnd(ff + "shared_expert.down_proj.weight", H, I, fan_in=2 * I)
        else:
            rnd(ff + "gate_proj.weight", Im, H, fan_in=H)
            rnd(ff + "up_proj.weight", Im, H, fan_in=H)
            rnd(ff + "down_proj.weight", H, Im, fan_in=2 * Im)
    p["model.norm.weight"] = torch.ones(H)
    rnd("lm_head.weight", V, H, fan_in=H)
    return p


def aux_loss(collect, E):
    """Switch-style load balance: E * sum_e (share of tokens routed to e) *
    (mean sigmoid-normalised router probability of e), per MoE layer."""
    total = 0.0
    for L, logits in collect["router_logits"].items():
        prob = torch.sigmoid(logits)
        prob = prob / prob.sum(-1, keepdim=True)
        share = torch.bincount(collect["idx"][L][:, 0], minlength=E).float() / logits.shape[0]
        total = total + E * (share * prob.mean(0)).sum()
    return total


def evaluate(params, cfg, windows, batch=64):
    """Mean next-token loss (nats) and accuracy over [n, SEQ+1] windows."""
    loss_sum, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, len(windows), batch):
            w = torch.from_numpy(windows[i:i + batch])
            logits = ref.forward(params, cfg, w[:, :-1])
            y = w[:, 1:]
            loss_sum += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"))
            correct += int((logits.argmax(-1) == y).sum())
            count += y.numel()
    return loss_sum / count, correct / count


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for training")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    cfg = ref.text_config(CONFIG)

    fortunes = read_fortunes()
    train_f = [f for i, f in enumerate(fortunes) if i % 16 != 0]
    held_f = [f for i, f in enumerate(fortunes) if i % 16 == 0]
    train_toks, _ = stream(train_f)
    held_toks, held_starts = stream(held_f)
    print(f"{len(fortunes)} fortunes: {len(train_toks)} training tokens, {len(held_toks)} held out", flush=True)

    params = init_params(CONFIG, gen)
    for t in params.values():
        t.requires_grad_(True)
    opt = torch.optim.AdamW(params.values(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    rng = np.random.default_rng(0)
    t0 = time.time()
    for step in range(args.steps):
        at = rng.integers(0, len(train_toks) - SEQ - 1, args.batch)
        w = torch.from_numpy(np.stack([train_toks[a:a + SEQ + 1] for a in at]))
        collect = {}
        logits = ref.forward(params, cfg, w[:, :-1], collect=collect)
        lm = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
        loss = lm + CONFIG["router_aux_loss_coef"] * aux_loss(collect, CONFIG["num_local_experts"])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {float(lm):.4f}  {time.time() - t0:.0f} s", flush=True)
    train_seconds = time.time() - t0

    # Stored as bf16: every figure below is of the bf16-rounded weights.
    torch.set_num_threads(1)
    state = {k: torch.from_numpy((safetensors_io.bf16(v.detach().numpy()).bits.astype(np.uint32) << 16).view(np.float32))
             for k, v in params.items()}
    # Held-out evaluation: non-overlapping windows of the held-out stream.
    held_windows = np.stack([held_toks[a:a + SEQ + 1] for a in range(0, len(held_toks) - SEQ - 1, SEQ)])
    held_loss, held_acc = evaluate(state, cfg, held_windows)
    train_windows = np.stack([train_toks[a:a + SEQ + 1] for a in range(0, len(train_toks) - SEQ - 1, SEQ * 16)])
    train_loss, train_acc = evaluate(state, cfg, train_windows)
    print(f"held-out loss {held_loss:.4f} acc {held_acc:.4f}; train loss {train_loss:.4f} acc {train_acc:.4f}")

    # Eval set: N_EVAL held-out windows starting at a fortune, spread out.
    ok = held_starts[held_starts + SEQ + 1 <= len(held_toks)]
    picks = ok[np.linspace(0, len(ok) - 1, N_EVAL).astype(np.int64)]
    win = np.stack([held_toks[a:a + SEQ + 1] for a in picks])
    ids = torch.from_numpy(win[:, :-1].copy())
    eval_tensors = {"input_ids": win[:, :-1].copy(), "labels": win[:, 1:].copy()}
    figures = {"packagings": {}}
    for pk in PACKAGINGS:
        qp = ref.quantize_params(state, cfg, pk)
        collect = {}
        with torch.no_grad():
            logits = ref.forward(qp, cfg, ids, collect=collect)
        key = "logits_" + pk.replace("-", "_")
        eval_tensors[key] = logits.numpy().astype(np.float32)
        if pk == "bf16":
            eval_tensors["logits"] = eval_tensors[key]  # bf16 weights are exact in fp32
        acc = float((logits.argmax(-1) == torch.from_numpy(win[:, 1:])).float().mean())
        loss = float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(win[:, 1:]).reshape(-1)))
        hl, ha = evaluate(qp, cfg, held_windows)
        counts = {str(L): torch.bincount(collect["idx"][L][:, 0], minlength=CONFIG["num_local_experts"]).tolist()
                  for L in collect["idx"]}
        figures["packagings"][pk] = {"eval_loss": loss, "eval_acc": acc, "held_loss": hl, "held_acc": ha,
                                     "routing": counts}
        print(f"{pk:12s} eval-set loss {loss:.4f} acc {acc:.4f}; held-out loss {hl:.4f} acc {ha:.4f}; routing {counts}")
    eval_tensors["logits"] = eval_tensors.pop("logits")

    os.makedirs(args.out, exist_ok=True)
    safetensors_io.save(os.path.join(args.out, "model.safetensors"),
                        {k: safetensors_io.bf16(v.numpy()) for k, v in state.items()},
                        {"format": "pt", "model": "fortunes-llama4"})
    safetensors_io.save(os.path.join(args.out, "eval.safetensors"), eval_tensors, {
        "task": "text-generation",
        "model": "fortunes-llama4",
        "source": "Debian fortunes, every 16th fortune (held out), windows starting at a fortune",
        "tokens": "bytes 0-255, 256 <|begin_of_text|>, 257 <|end_of_text|>",
        "scored_from": "0",  # every position is scored
    })
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
        f.write("\n")
    figures.update({
        "torch": torch.__version__, "machine": platform.machine(), "steps": args.steps, "batch": args.batch,
        "seq": SEQ, "lr": args.lr, "threads": args.threads, "train_seconds": train_seconds, "fortunes": len(fortunes),
        "train_tokens": int(len(train_toks)), "held_tokens": int(len(held_toks)),
        "final_train_batch_loss": float(lm), "train_loss": train_loss, "train_acc": train_acc,
        "held_loss": held_loss, "held_acc": held_acc,
        "parameters": int(sum(v.numel() for v in state.values())),
    })
    with open(os.path.join(args.out, "train.json"), "w") as f:
        json.dump(figures, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
