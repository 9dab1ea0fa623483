"""The plain PyTorch fault-injection loop, as a baseline for pvf's trials/s.

    /usr/bin/python3 tools/bench_torch_loop.py MODEL_DIR FAULTS [--inputs N]
        [--time SECONDS] [--repeats R] [--dtype fp32|bf16]

Loads the bundled model's PyTorch module and weights (the classes in tools/:
LeNet of train_fmnist_lenet.py, pvf_dlrm.DLRM_Net, pvf_bert.
BertForSequenceClassification, llama4_ref.forward), runs the eval set (its
first N inputs) once for the golden decisions, and checks the forward pass
against the eval set's reference logits (max |delta| printed). Then, for
each fault of FAULTS (lines "target element bit [incorrect]", as
bench/bench_fast.c --faults writes them for fp32): flips the bit in place in the weight tensor
(viewed as int32, xor), runs the full forward pass over the eval set under
torch.no_grad(), compares the decisions with golden (top-1; DLRM: the click
decision p > 0.5; Llama: the greedy next token at every scored position; a
non-finite output is incorrect), and flips the bit back. When the line has
pvf's count of incorrect outputs, the faults where PyTorch's count differs
are counted (and the first few printed): in fp32 these should be none but
near-ties that float rounding order can flip (bf16 is not compared).

One thread (torch.set_num_threads(1)); trials per CPU-second
(time.process_time) of R consecutive parts of the list, median; stops early
once SECONDS of CPU are used. --dtype bf16 casts the model to bfloat16 and
flips bits of the 16-bit words (a bf16 fault list, bench_fast's FILE.bf16).

A Llama 4 routed expert's target "<fused name>[e]" element r*in + c is the
checkpoint tensor's [e, c, r] (worker/models/llama4.c splits and transposes
the fused tensors). The last line is machine-readable (RESULT key=value ...).
"""

import argparse
import json
import os
import re
import statistics
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io  # noqa: E402


def tensors_of(path):
    t, meta = safetensors_io.load(path)
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in t.items()}, meta


class Bench:
    """A model with its eval inputs: weights(name) -> tensor to flip,
    forward() -> outputs, decisions(out) -> (decision tensor, nonfinite mask),
    the same shape: one judged output each."""

    def decisions(self, out):
        flat = out.reshape(-1, out.shape[-1])
        return flat.argmax(-1), ~torch.isfinite(flat).all(-1)


class LeNetBench(Bench):
    def __init__(self, d, ev, n):
        from train_fmnist_lenet import LeNet

        state, _ = tensors_of(os.path.join(d, "model.safetensors"))
        self.model = LeNet().eval()
        self.model.load_state_dict(state)
        self.x = ev["pixel_values"][:n]

    def weights(self, name):
        return dict(self.model.named_parameters())[name].data

    def forward(self):
        return self.model(self.x)


class DlrmBench(Bench):
    def __init__(self, d, ev, n, cfg):
        import pvf_dlrm

        state, _ = tensors_of(os.path.join(d, "model.safetensors"))
        np.random.seed(0)
        self.model = pvf_dlrm.net_from_config(cfg).eval()
        self.model.load_state_dict(state)
        offsets = ev["sparse_offsets"].numpy()
        indices = ev["sparse_indices"].numpy()
        end = int(offsets[n, 0]) if n < len(offsets) else len(indices)
        self.lS_o, self.lS_i = pvf_dlrm.from_eval_layout(offsets[:n], indices[:end])
        self.dense = ev["dense_x"][:n]

    def weights(self, name):
        return dict(self.model.named_parameters())[name].data

    def forward(self):
        return self.model(self.dense, self.lS_o, self.lS_i)

    def decisions(self, out):
        p = out.reshape(-1)
        return p > 0.5, ~torch.isfinite(p)


class BertBench(Bench):
    def __init__(self, d, ev, n, cfg):
        import pvf_bert

        state, _ = tensors_of(os.path.join(d, "model.safetensors"))
        self.model = pvf_bert.BertForSequenceClassification(cfg).eval()
        self.model.load_state_dict(state)
        self.ids = ev["input_ids"][:n]
        self.mask = ev["attention_mask"][:n]
        self.types = ev["token_type_ids"][:n]

    def weights(self, name):
        return dict(self.model.named_parameters())[name].data

    def forward(self):
        return self.model(self.ids, self.mask, self.types)


class Llama4Bench(Bench):
    def __init__(self, d, ev, n, cfg, meta):
        import llama4_ref

        self.ref = llama4_ref
        self.params, _ = tensors_of(os.path.join(d, "model.safetensors"))
        self.cfg = llama4_ref.text_config(cfg)
        self.ids = ev["input_ids"][:n]
        self.scored_from = int(meta.get("scored_from", "0"))

    def weights(self, name):
        return self.params[name]

    def forward(self):
        return self.ref.forward(self.params, self.cfg, self.ids)

    def decisions(self, out):
        return super().decisions(out[:, self.scored_from:, :])


def open_bench(d, n):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    ev, meta = tensors_of(os.path.join(d, "eval.safetensors"))
    total = len(ev["logits"])  # one row per eval input
    n = min(n, total) if n > 0 else total
    kind = cfg.get("model_type") or cfg["architectures"][0]
    if kind == "lenet":
        b = LeNetBench(d, ev, n)
    elif kind == "dlrm":
        b = DlrmBench(d, ev, n, cfg)
    elif kind == "bert":
        b = BertBench(d, ev, n, cfg)
    elif kind.startswith("llama4"):
        b = Llama4Bench(d, ev, n, cfg, meta)
    else:
        sys.exit(f"{d}: no PyTorch module for model_type {kind!r}")
    b.kind, b.n = kind, n
    b.reference = ev["logits"][:n]
    return b


def word_index(bench, target, element):
    """(tensor, flat element index) of a C fault target's element."""
    m = re.fullmatch(r"(.*)\[(\d+)\]", target)
    if not m:
        return bench.weights(target), element
    fused = bench.weights(m.group(1))  # [E, in, out]; the C target is [out, in]
    e, n_in, n_out = int(m.group(2)), fused.shape[1], fused.shape[2]
    r, c = divmod(element, n_in)
    return fused, (e * n_in + c) * n_out + r


def read_faults(path, bench, word_bits):
    faults = []
    int_type = torch.int32 if word_bits == 32 else torch.int16
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            target, element, bit, *pvf = line.split()
            t, i = word_index(bench, target, int(element))
            words = t.view(-1).view(int_type)
            mask = 1 << int(bit)
            if mask >= 1 << (word_bits - 1):  # the sign bit, as a signed word
                mask -= 1 << word_bits
            # bf16 arithmetic judges differently from pvf's fp32 compute: no comparison
            expect = int(pvf[0]) if pvf and word_bits == 32 else None
            faults.append((words, i, torch.tensor(mask, dtype=int_type), expect, line.split()[:3]))
    return faults


def autocast_bf16(forward):
    """bf16 weights and bf16 arithmetic where CPU autocast has it (matmuls,
    convolutions); the models' explicit float32 constants stay float32."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return forward()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("faults")
    ap.add_argument("--inputs", type=int, default=0, help="first N eval inputs (0: all)")
    ap.add_argument("--time", type=float, default=60.0, help="CPU seconds at most")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.set_grad_enabled(False)
    bench = open_bench(args.model_dir, args.inputs)

    golden = bench.forward()
    diff = float((golden.reshape(bench.reference.shape) - bench.reference).abs().max())
    ref_top, _ = bench.decisions(bench.reference)
    gold, _ = bench.decisions(golden)
    print(f"{args.model_dir}: {bench.n} eval inputs, {gold.numel()} judged outputs; fp32 forward "
          f"vs the eval set's reference logits: max |delta| {diff:.3g}, decisions equal on "
          f"{int((gold == ref_top).sum())}/{gold.numel()}")
    if args.dtype == "bf16":
        if isinstance(bench, Llama4Bench):
            bench.params = {k: v.to(torch.bfloat16) for k, v in bench.params.items()}
        else:
            bench.model.to(torch.bfloat16)
            for name in ("x", "dense"):
                if hasattr(bench, name):
                    setattr(bench, name, getattr(bench, name).to(torch.bfloat16))
        plain = bench.forward
        bench.forward = lambda: autocast_bf16(plain)
        try:
            gold, _ = bench.decisions(bench.forward().float())
        except RuntimeError as e:  # e.g. EmbeddingBag has no bf16 CPU kernel in torch 1.13
            print(f"bf16 unsupported by this PyTorch for {bench.kind}: {str(e).splitlines()[0]}")
            print(f"RESULT model={args.model_dir} dtype=bf16 unsupported=1")
            return
        print(f"bf16 golden decisions equal the fp32 reference's on "
              f"{int((gold == ref_top).sum())}/{gold.numel()}")

    faults = read_faults(args.faults, bench, 32 if args.dtype == "fp32" else 16)
    if not faults:
        sys.exit(f"{args.faults}: no faults")
    c0 = time.process_time()
    bench.forward()
    forward_ms = (time.process_time() - c0) * 1e3

    repeats = max(1, min(args.repeats, len(faults)))
    parts = np.array_split(np.arange(len(faults)), repeats)
    rates, done, masked, differ = [], 0, 0, 0
    start = time.process_time()
    for part in parts:
        c0, k = time.process_time(), 0
        for i in part:
            words, e, mask, expect, site = faults[i]
            words[e] ^= mask
            dec, bad = bench.decisions(bench.forward().float())
            words[e] ^= mask
            wrong = int(((dec != gold) | bad).sum())
            masked += wrong == 0
            if expect is not None and expect != wrong:
                differ += 1
                if differ <= 5:
                    print(f"fault {' '.join(site)}: {wrong} incorrect outputs here, {expect} in pvf")
            k += 1
            if time.process_time() - start >= args.time:
                break
        used = time.process_time() - c0
        if k:
            rates.append(k / used)
            done += k
        if time.process_time() - start >= args.time:
            break
    rate = statistics.median(rates)
    print(f"{done} of {len(faults)} faults, {args.dtype}: {rate:.2f} trials per CPU-second (median "
          f"of {len(rates)} parts), {1e3 / rate:.1f} ms per trial, one forward pass {forward_ms:.1f} ms; "
          f"masked {100.0 * masked / done:.1f}%; incorrect-output counts differing from pvf's on "
          f"{differ} faults")
    print(f"RESULT model={args.model_dir} dtype={args.dtype} trials={done} trials_per_s={rate:.4g} "
          f"masked_pct={100.0 * masked / done:.2f} golden_max_delta={diff:.3g} "
          f"forward_ms={forward_ms:.2f} differ={differ}")


if __name__ == "__main__":
    main()
