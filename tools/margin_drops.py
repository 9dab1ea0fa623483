"""How far the bundled CNN's faults actually move each eval image's margin.

    /usr/bin/python3 tools/margin_drops.py MODEL_DIR TARGET BITS [--weights N] [--seed S]

For N elements of TARGET (a weight tensor of models/fmnist-lenet, drawn
without replacement with seed S) and each bit of BITS (e.g. 18,21,24), flips
the bit of the fp32 weight, runs the full forward pass over the eval set in
float64, and measures per image how much of its golden margin the fault
takes: max over classes c of the gain of c on the golden top-1 class t,
((z'_c - z'_t) - (z_c - z_t)) / (z_t - z_c), clipped at 0; at 1 or more
the top-1 changes. Prints per bit the mean number of images per fault in
each decade of that share, and the images whose top-1 changed.

What it is for: the fast path settles an image when a bound of this drop
stays below the margin, and computes it otherwise. An image whose drop is
a tenth of its margin is settled only by a bound within 10x of the truth;
one past its margin must be computed. So the histogram tells what any bound
could settle at best, and how tight it must be (bench/README.md).
Faults that make a weight non-finite or beyond 1e30 are skipped (their
images are computed, as the full pass computes them).
"""

import argparse
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io  # noqa: E402
from train_fmnist_lenet import LeNet  # noqa: E402

EDGES = [0.0, 1e-3, 1e-2, 1e-1, 0.3, 1.0, 10.0, 100.0, np.inf]
LABELS = ["0", "<1e-3", "<1e-2", "<0.1", "<0.3", "<1", "<10", "<100", ">=100"]


def flipped(value, bit):
    word = np.array([value], dtype=np.float32).view(np.uint32) ^ np.uint32(1 << bit)
    return float(word.view(np.float32)[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("target")
    ap.add_argument("bits")
    ap.add_argument("--weights", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    try:
        bits = [int(b) for b in a.bits.split(",")]
    except ValueError:
        sys.exit(f"margin_drops: bits '{a.bits}': not a comma-separated list of integers")
    if any(b < 0 or b > 31 for b in bits):
        sys.exit(f"margin_drops: bits '{a.bits}': each must be 0 to 31")
    state, _ = safetensors_io.load(os.path.join(a.model_dir, "model.safetensors"))
    ev, _ = safetensors_io.load(os.path.join(a.model_dir, "eval.safetensors"))
    if a.target not in state:
        sys.exit(f"margin_drops: target '{a.target}': no such tensor in {a.model_dir}")
    torch.set_num_threads(1)
    model = LeNet().double().eval()
    model.load_state_dict({k: torch.from_numpy(v.astype(np.float64)) for k, v in state.items()})
    x = torch.from_numpy(ev["pixel_values"].astype(np.float64))
    param = dict(model.named_parameters())[a.target].data.view(-1)
    with torch.no_grad():
        golden = model(x)
    top = golden.argmax(1, keepdim=True)
    margin = (golden.gather(1, top) - golden).scatter(1, top, np.inf)  # z_top - z_c, per class
    w32 = state[a.target].reshape(-1)
    rng = np.random.default_rng(a.seed)
    elements = rng.choice(w32.size, size=min(a.weights, w32.size), replace=False)
    print(f"{a.model_dir} {a.target}: {len(elements)} elements, {x.shape[0]} images; "
          "images per fault by the share of their golden margin the fault takes")
    print("bit  faults  " + " ".join(f"{s:>6}" for s in LABELS) + "  top-1 changed")
    for bit in bits:
        hist = np.zeros(len(LABELS))
        changed = 0
        faults = 0
        for e in elements:
            old = float(w32[e])
            new = flipped(w32[e], bit)
            if not np.isfinite(new) or abs(new) > 1e30:
                continue
            param[e] = new
            with torch.no_grad():
                out = model(x)
            param[e] = old
            gain = (out - out.gather(1, top)) - (golden - golden.gather(1, top))  # c's on top-1
            share = (gain / margin).max(1).values.clamp(min=0).numpy()
            hist[0] += np.count_nonzero(share == 0)
            hist[1:] += np.histogram(share[share > 0], bins=EDGES)[0]
            changed += int((out.argmax(1, keepdim=True) != top).sum())
            faults += 1
        if faults == 0:
            print(f"{bit:>3}  {0:>6}  (every flip non-finite or beyond 1e30)")
            continue
        print(f"{bit:>3}  {faults:>6}  " + " ".join(f"{h / faults:>6.0f}" for h in hist)
              + f"  {changed / faults:>13.1f}")


if __name__ == "__main__":
    main()
