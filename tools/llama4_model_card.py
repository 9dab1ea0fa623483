"""Writes models/fortunes-llama4/README.md (the model card) from measured
figures only: train.json (written by train_fortunes_llama4.py), `pvf infer
--json` run here for every packaging, and `pvf sweep --by component --json`
outputs given on the command line.

    /usr/bin/python3 tools/llama4_model_card.py --pvf build/cli/pvf \\
        --sweep bf16=/tmp/sweep_bf16.json --sweep llama4-fp8=/tmp/sweep_fp8.json \\
        --sweep llama4-int4=/tmp/sweep_int4.json [--notes notes.md]

--notes: a Markdown file appended as the "What it shows" section.
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama4_ref as ref  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "fortunes-llama4")
FORMATS = ("fp32", "bf16", "llama4-fp8", "llama4-int4")


def infer(pvf, fmt):
    out = subprocess.run([pvf, "infer", "--model", MODEL, "--format", fmt, "--json"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pvf", default=os.path.join(ROOT, "build", "cli", "pvf"))
    ap.add_argument("--sweep", action="append", default=[], help="PACKAGING=FILE")
    ap.add_argument("--notes")
    args = ap.parse_args()

    cfg_file = json.load(open(os.path.join(MODEL, "config.json")))
    cfg = ref.text_config(cfg_file)
    tr = json.load(open(os.path.join(MODEL, "train.json")))
    inf = {f: infer(args.pvf, f) for f in FORMATS}
    sweeps = {}
    for s in args.sweep:
        pk, path = s.split("=", 1)
        sweeps[pk] = json.load(open(path))
    n_layers, E = cfg["num_hidden_layers"], cfg["num_local_experts"]

    lines = []
    w = lines.append
    w("# fortunes-llama4\n")
    w("A tiny Llama 4 text decoder (`Llama4ForCausalLM`, Hugging Face names and config) trained as a")
    w("byte-level language model on Debian's fortunes: the bundled model for pvf's Llama 4 engine and")
    w("for per-expert PVF. It exercises every feature of the architecture: dense and MoE layers,")
    w(f"{E} routed experts with top-{cfg['num_experts_per_tok']} sigmoid routing and a shared expert,")
    w("interleaved RoPE (chunked attention, QK-norm) and NoPE layers (full causal attention, temperature")
    w("tuning), GQA, llama3 RoPE frequency scaling. Files: `config.json`, `model.safetensors` (BF16,")
    w("as Meta's release), `eval.safetensors`, `train.json` (the figures of the training run).\n")

    w("## Architecture\n")
    rs = cfg["rope_scaling"]
    w(f"vocab {cfg['vocab_size']} (bytes 0-255, 256 `<|begin_of_text|>`, 257 `<|end_of_text|>`, 258 pad,")
    w(f"259 `<|eot|>`), hidden {cfg['hidden_size']}, {cfg['num_attention_heads']} query heads and")
    w(f"{cfg['num_key_value_heads']} KV heads of {cfg['head_dim']}, routed and shared experts of width")
    w(f"{cfg['intermediate_size']}, dense MLP {cfg['intermediate_size_mlp']}, attention_chunk_size")
    w(f"{cfg['attention_chunk_size']}, floor_scale {cfg['floor_scale']} / attn_scale {cfg['attn_scale']}")
    w(f"(temperature above 1 from position {cfg['floor_scale'] - 1}), rope_theta {cfg['rope_theta']:g} with llama3")
    w(f"scaling factor {rs['factor']:g}, low/high {rs['low_freq_factor']:g}/{rs['high_freq_factor']:g},")
    w(f"original {rs['original_max_position_embeddings']}: of the {cfg['head_dim'] // 2} frequencies i = 0 is kept,")
    w("1-2 are smoothed and 3-7 divided by the factor (all three bands). RMSNorm eps 1e-5, untied lm_head.\n")
    w("| layer | attention | FFN |")
    w("|---|---|---|")
    for L in range(n_layers):
        att = ("RoPE, chunked causal, QK-norm" if cfg["use_qk_norm"] else "RoPE, chunked causal") \
            if cfg["no_rope_layers"][L] else "NoPE, full causal, temperature tuning"
        ffn = f"MoE: router, {E} experts, shared expert" if L in cfg["moe_layers"] else "dense SwiGLU MLP"
        w(f"| {L} | {att} | {ffn} |")
    w(f"\n{tr['parameters']:,} parameters.\n")

    w("## Training\n")
    w(f"PyTorch {tr['torch']} (Debian's `python3-torch`), CPU, `tools/llama4_ref.py` (the reference")
    w("written from the spec's formulas) as the model. Data: every fortune of Debian's `fortunes` and")
    w(f"`fortunes-min` ({tr['fortunes']:,} fortunes, ascii-art left out), each `<|begin_of_text|>` + bytes +")
    w(f"`<|end_of_text|>`; every 16th fortune held out ({tr['held_tokens']:,} tokens), the rest for")
    w(f"training ({tr['train_tokens']:,} tokens). AdamW (betas 0.9/0.95, weight decay 0.01), one-cycle")
    w(f"learning rate peaking at {tr['lr']:g}, {tr['steps']} steps of {tr['batch']} random windows of")
    w(f"{tr['seq']} tokens, next-token cross-entropy plus 0.01 x a Switch-style load-balancing loss on")
    w(f"the router. {tr['train_seconds']:.0f} s wall time, {tr.get('threads', 2)} thread(s) on a 2-core")
    w(f"{tr['machine']} machine shared with other jobs (so the time says little about the cost).\n")
    w("Figures of the stored (BF16) weights, next-byte prediction, all positions of 96-token windows:\n")
    w("| data | loss (nats/byte) | next-byte accuracy |")
    w("|---|---|---|")
    w(f"| training stream (every 16th window) | {tr['train_loss']:.4f} | {tr['train_acc'] * 100:.2f} % |")
    w(f"| held-out fortunes | {tr['held_loss']:.4f} | {tr['held_acc'] * 100:.2f} % |")
    bf = tr["packagings"]["bf16"]
    w(f"| eval set (24 x 96) | {bf['eval_loss']:.4f} | {bf['eval_acc'] * 100:.2f} % |\n")

    w("## Eval set\n")
    w("`eval.safetensors`: 24 windows of the held-out stream, each starting at a fortune, 96 tokens")
    w(f"(3 attention chunks of {cfg['attention_chunk_size']}; temperature tuning active from position")
    w(f"{cfg['floor_scale'] - 1}). Every position is scored (`__metadata__` `scored_from` 0).\n")
    w("| tensor | dtype | shape | content |")
    w("|---|---|---|---|")
    w("| `input_ids` | I64 | [24, 96] | tokens |")
    w("| `labels` | I64 | [24, 96] | the next token of each position |")
    w("| `logits`, `logits_bf16` | F32 | [24, 96, 260] | PyTorch reference, BF16 weights (exact in fp32) |")
    w("| `logits_llama4_fp8`, `logits_llama4_int4` | F32 | [24, 96, 260] | PyTorch reference with the weights of that packaging (`tools/pvf_formats.py`, bit-exact with pvf's formats) |\n")

    w("## Packagings\n")
    w("Campaign formats that pick a storage format per tensor, as Meta's releases do")
    w("(`--format llama4-fp8`, `--format llama4-int4`); scales are fault targets (`NAME_scale`):\n")
    w("| format | routed experts | shared expert | everything else |")
    w("|---|---|---|---|")
    w(f"| `llama4-fp8` (Maverick FP8) | fp8-e4m3, one fp32 scale per output row, MoE layers other than the first and last (here layer {', '.join(str(L) for L in cfg['moe_layers'] if 0 < L < n_layers - 1)}); bf16 in layers 0 and {n_layers - 1} | bf16 | bf16 |")
    w("| `llama4-int4` (Scout int4) | int4, one fp32 scale per group of 128 inputs of an output row | int4 | bf16 |\n")
    w("The fused expert tensors `experts.gate_up_proj` [E, in, 2I] and `experts.down_proj` [E, I, out]")
    w("are split on load into one parameter per expert in Linear layout [out, in], named")
    w("`<fused name>[e]` (element r*in + c is the checkpoint's [e, c, r]), so rows are output channels")
    w("and each expert is a component `layers.L.expert.e`. pvf's int4 is symmetric [-7, 7] with scale")
    w("max|group| / 7; Meta's `int4_mixed` uses [-8, 7] with max / 8 (one more negative code).\n")

    w("## Parity (pvf infer)\n")
    w("`build/cli/pvf infer --model models/fortunes-llama4 --format F --json`: greedy next token at")
    w("every position against PyTorch's logits of the same stored weights, and max |Δlogit|.\n")
    w("| format | reference | agreement | max \\|Δ\\| | max \\|Δ\\| / max \\|ref\\| | next-byte accuracy |")
    w("|---|---|---|---|---|---|")
    for f in FORMATS:
        o = inf[f]
        w(f"| {f} | `{o['reference']}` | {o['agreement'] * 100:.1f} % ({o['inputs'] * o['positions']:,} positions) | "
          f"{o['max_abs_diff']:.2e} | {o['max_abs_diff'] / o['max_abs_reference']:.2e} | {o['accuracy'] * 100:.2f} % |")
    w("")

    if sweeps:
        first = next(iter(sweeps.values()))
        w("## PVF per component and per expert (pvf sweep --by component)\n")
        w(f"Single bit flips ({first['fault']}), uniform over each component's stored bits (codes and")
        w(f"scales), {first['trials_per_component']} trials per component and packaging, seed {first['seed']},")
        w("judged on the eval set: a trial's value is the fraction of the 2,304 scored positions whose")
        w("greedy next byte changed (NaN/Inf counts as changed); PVF is its mean, P(wrong) the share of")
        w("trials that changed at least one position. Routing: the share of the eval set's 2,304 tokens")
        w("the golden pass sends to the expert (PyTorch, same weights, `train.json`).\n")
        pks = [pk for pk in ("bf16", "llama4-fp8", "llama4-int4") if pk in sweeps]
        comp = {pk: {c["name"]: c for c in sweeps[pk]["components"]} for pk in pks}
        short = {"bf16": "bf16", "llama4-fp8": "fp8", "llama4-int4": "int4"}
        w("| component | routed share (" + " / ".join(short[pk] for pk in pks) + ") | " +
          " | ".join(f"PVF {pk} (95 % Wilson)" for pk in pks) + " | P(wrong) (" +
          " / ".join(short[pk] for pk in pks) + ") |")
        w("|" + "---|" * (3 + len(pks)))
        order = [c["name"] for c in sweeps[pks[0]]["components"]]
        for name in order:
            routed = ""
            if ".expert." in name:
                L, e = int(name.split(".")[1]), int(name.split(".")[3])
                shares = []
                for pk in pks:
                    cnt = tr["packagings"][pk]["routing"][str(L)]
                    shares.append(f"{cnt[e] / sum(cnt) * 100:.1f}")
                routed = " / ".join(shares) + " %"
            pv = [f"{comp[pk][name]['pvf']:.4f} ({comp[pk][name]['low']:.4f}-{comp[pk][name]['high']:.4f})" for pk in pks]
            pw = " / ".join(f"{comp[pk][name]['p_any_wrong']:.2f}" for pk in pks)
            w(f"| {name} | {routed} | " + " | ".join(pv) + f" | {pw} |")
        tot = [f"**{sweeps[pk]['model_pvf']['pvf']:.4f}** ({sweeps[pk]['model_pvf']['low']:.4f}-{sweeps[pk]['model_pvf']['high']:.4f})" for pk in pks]
        w("| **whole model** (site-weighted) | | " + " | ".join(tot) + " | " +
          " / ".join(f"{sweeps[pk]['model_pvf']['p_any_wrong']:.2f}" for pk in pks) + " |")
        w("")
        w("Exposure: with every stored bit equally likely to flip per unit time, the expected fraction")
        w("of wrong positions per unit time is proportional to Σ bits x PVF over the components")
        w("(population x PVF, from the same sweeps):\n")
        w("| | " + " | ".join(pks) + " |")
        w("|---|" + "---|" * len(pks))

        def part(pk, pred):
            cs = [c for c in sweeps[pk]["components"] if pred(c["name"])]
            bits = sum(c["population"] for c in cs)
            return bits, sum(c["population"] * c["pvf"] for c in cs)

        rows = [("whole model", lambda n: True), ("routed experts", lambda n: ".expert." in n),
                ("shared experts", lambda n: n == "shared_expert"), ("routers", lambda n: n == "router")]
        for label, pred in rows:
            cells = []
            for pk in pks:
                bits, exp = part(pk, pred)
                cells.append(f"{bits / 1e6:.2f} Mbit, PVF {exp / bits:.4f}, exposure {exp / 1e3:.1f} k")
            w(f"| {label} | " + " | ".join(cells) + " |")
        w("")
        w("Reproduce: `build/cli/pvf sweep --model models/fortunes-llama4 --format F --by component "
          f"--trials {first['trials_per_component']} --seed {first['seed']} --json` for F in bf16, llama4-fp8,")
        secs = ", ".join(f"{pk} {sweeps[pk]['seconds']:.0f} s ({sweeps[pk]['trials_per_second']:.1f} trials/s)" for pk in pks)
        w(f"llama4-int4; each ran on {first['executors']} executors sharing 2 busy CPU cores: {secs}.\n")
    if args.notes:
        w("## What it shows\n")
        w(open(args.notes).read().strip() + "\n")
    w("## Reproduce\n")
    w("```")
    w("bash deploy/install-deps.sh --train")
    w("/usr/bin/python3 tools/train_fortunes_llama4.py      # config, weights, eval set, train.json")
    w("/usr/bin/python3 tools/llama4_model_card.py --sweep ...   # this card")
    w("```")
    w("Training is deterministic given the PyTorch build; the wall time depends on the load.")
    with open(os.path.join(MODEL, "README.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", os.path.join(MODEL, "README.md"))


if __name__ == "__main__":
    main()
