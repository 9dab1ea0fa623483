"""How far a first-order estimate, linearized at golden, would go toward
settling Llama 4 routed-expert faults without carrying their sequences.

    /usr/bin/python3 tools/llama4_first_order.py [MODEL_DIR] [--faults N]
        [--layer L | --tensor NAME] [--seed S]

For N single bit flips of the layer's routed experts (gate_up and down
alternating), or of the checkpoint tensor NAME, bit = fault index mod 32,
element uniform, finite changes below 1e6 only, in float64 with the
reference model (tools/llama4_ref.py):

- the exact change of every scored position's top-1 margins (the faulty
  forward pass against golden), and whether a position's top-1 flips;
- the first-order change: the directional derivative along the weight
  (a central difference with a step of 1e-6 |w|) times the weight's change.

Per bit band (below 18 / from 18 up) it prints the sequences, those where no
prediction flips, and those whose every position's first-order margin change
is below its golden margin with room k = 1, 2, 10 (|first order| * k <
margin): what a sound bound of that tightness could settle, since the
remainder would have to fit in the room. "wrong k" counts the sequences so
settled where a position does flip (a bound may settle none of them). The median of the relative
error |exact - first order| / |first order| over the positions a fault moves
shows how linear the faults are.
Not a bound: an estimate of what one built on the linearization could clear
(bench/README.md, 2026-11-30).
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama4_ref as ref  # noqa: E402
from bench_torch_loop import tensors_of  # noqa: E402


def flip(w, bit):
    """float32 value w with stored bit `bit` flipped."""
    i = torch.tensor([w], dtype=torch.float32).view(torch.int32)
    i ^= torch.tensor([np.int32(np.uint32(1 << bit).view(np.int32))], dtype=torch.int32)
    return float(i.view(torch.float32)[0])


def open_model(model, tool, layer=None):
    """The text config, float64 parameters, eval input ids and first scored
    position of a model directory; one error line and exit 1 when a file is
    missing or `layer` is not a MoE layer of it."""
    try:
        with open(os.path.join(model, "config.json")) as f:
            cfg = ref.text_config(json.load(f))
        params, _ = tensors_of(os.path.join(model, "model.safetensors"))
        ev, meta = tensors_of(os.path.join(model, "eval.safetensors"))
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"{tool}: {model}: not a readable model directory ({e})")
    if layer is not None and not ref.layer_is_moe(cfg, layer):
        sys.exit(f"{tool}: --layer {layer}: not a MoE layer of {model} (MoE layers: {cfg['moe_layers']})")
    p64 = {k: torch.as_tensor(np.asarray(v)).double() for k, v in params.items()}
    ids = torch.as_tensor(np.asarray(ev["input_ids"])).long()
    return cfg, p64, ids, int(meta.get("scored_from", "0"))


def faults(p64, layer, count, seed, tensor=None):
    """The fault list both tools use: `count` single bit flips of layer
    `layer`'s routed experts (gate_up and down alternating) or of `tensor`,
    element uniform, bit = index mod 32, finite changes below 1e6 only:
    (tensor name, element, bit, value, change)."""
    rng = np.random.default_rng(seed)
    pre = f"model.layers.{layer}.feed_forward.experts."
    for f in range(count):
        name = tensor or pre + ("gate_up_proj" if f % 2 == 0 else "down_proj")
        W = p64[name]
        el = tuple(int(rng.integers(s)) for s in W.shape)
        bit = f % 32
        w = float(W[el])
        dw = flip(w, bit) - w
        if np.isfinite(dw) and dw != 0.0 and abs(dw) <= 1e6:
            yield name, el, bit, w, dw


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("model", nargs="?", default=os.path.join(here, "..", "models", "fortunes-llama4"))
    ap.add_argument("--faults", type=int, default=64)
    ap.add_argument("--layer", type=int, default=1)
    ap.add_argument("--tensor", help="a checkpoint tensor instead of the layer's routed experts")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.faults < 1:
        sys.exit(f"llama4_first_order: --faults {a.faults}: must be at least 1")
    cfg, p64, ids, sf = open_model(a.model, "llama4_first_order", a.layer if a.tensor is None else None)
    if a.tensor is not None and a.tensor not in p64:
        sys.exit(f"llama4_first_order: --tensor {a.tensor}: no such tensor in {a.model}")

    def logits(p):
        with torch.no_grad():
            return ref.forward(p, cfg, ids)[:, sf:, :]

    gold = logits(p64)
    top = gold.argmax(-1)
    margin = gold.gather(-1, top[..., None]) - gold  # [N, T, V], 0 at the top class
    N = gold.shape[0]
    bands = {}
    for name, el, bit, w, dw in faults(p64, a.layer, a.faults, a.seed, a.tensor):
        W = p64[name]

        def with_value(v):
            t = W.clone()
            t[el] = v
            return {**p64, name: t}

        exact = logits(with_value(w + dw)) - gold
        h = 1e-6 * max(abs(w), 1e-3)
        first = (logits(with_value(w + h)) - logits(with_value(w - h))) * (dw / (2 * h))
        dm_exact = exact.gather(-1, top[..., None]) - exact
        dm_first = first.gather(-1, top[..., None]) - first
        flipped = ((gold + exact).argmax(-1) != top).any(-1)  # [N]
        ratio = torch.where(margin > 0, dm_first.abs() / margin.clamp_min(1e-300), torch.zeros_like(margin))
        worst = ratio.amax(dim=(1, 2))  # [N]
        moved = dm_first.abs().amax(-1)  # [N, T]
        err = ((dm_exact - dm_first).abs().amax(-1) / moved.clamp_min(1e-300))[moved > 0]
        b = bands.setdefault("bits 0-17" if bit < 18 else "bits 18-31",
                             {"faults": 0, "sequences": 0, "no flip": 0, "k=1": 0, "k=2": 0, "k=10": 0,
                              "wrong k=1": 0, "wrong k=2": 0, "wrong k=10": 0, "err": []})
        b["faults"] += 1
        b["sequences"] += N
        b["no flip"] += int((~flipped).sum())
        for k in (1, 2, 10):
            clear = worst * k < 1.0
            b[f"k={k}"] += int(clear.sum())
            b[f"wrong k={k}"] += int((clear & flipped).sum())
        if err.numel():
            b["err"].append(float(err.median()))
    for band, b in bands.items():
        err = float(np.median(b.pop("err")))
        print(f"{band}: " + ", ".join(f"{k} {v}" for k, v in b.items()) + f", first-order error median {err:.2g}")


if __name__ == "__main__":
    main()
