"""Trains the bundled LeNet on Fashion-MNIST and exports models/fmnist-lenet/.

    /usr/bin/python3 tools/train_fmnist_lenet.py

Data: Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
Writes model.safetensors, config.json, eval.safetensors (first 1000 test
images with PyTorch reference logits for fp32 and every storage format) and
README.md (the model card, with the figures measured by this run).
"""

import argparse
import gzip
import json
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pvf_formats  # noqa: E402
import safetensors_io  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = "/usr/share/datasets/fashion-mnist"
OUT = os.path.join(ROOT, "models", "fmnist-lenet")
MEAN, STD = 0.2860, 0.3530
N_EVAL = 1000
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


class LeNet(nn.Module):
    """LeNet-5 style CNN; the parameter names are the ones pvf loads."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5, padding=0)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # 28 -> 14
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # 14 -> 10 -> 5
        x = torch.flatten(x, 1)                      # C, H, W order: 400
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def read_idx(path):
    """Parses a gzip IDX file (big-endian header: magic, dims) into numpy."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = raw[0] << 8 | raw[1], raw[2], raw[3]
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: size does not match the header")
    return data.reshape(dims)


def load_split(split):
    images = read_idx(os.path.join(DATA, f"{split}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(DATA, f"{split}-labels-idx1-ubyte.gz"))
    # Normalised pixel_values, computed in float32 exactly as documented.
    x = (images.astype(np.float32) / np.float32(255.0) - np.float32(MEAN)) / np.float32(STD)
    return torch.from_numpy(x[:, None, :, :].astype(np.float32)), torch.from_numpy(labels.astype(np.int64))


def logits_of(model, x, batch=1000):
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])


def accuracy(logits, labels):
    return float((logits.argmax(1) == labels).float().mean())


def train(model, x, y, epochs, batch, lr, flip):
    """Adam with a cosine learning-rate schedule; optional horizontal flips."""
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(x) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                pct_start=0.15)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            xb, yb = x[idx], y[idx]
            if flip:
                mask = torch.rand(len(xb), generator=gen) < 0.5
                xb = torch.where(mask[:, None, None, None], xb.flip(3), xb)
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss) * len(xb)
            correct += int((out.argmax(1) == yb).sum())
            total += len(xb)
        print(f"epoch {epoch + 1:2d}: loss {loss_sum / total:.4f} "
              f"train acc {correct / total:.4f}", flush=True)


def with_weights(model, state):
    """A copy of model whose parameters are the given numpy state dict."""
    m = LeNet()
    m.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})
    return m.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--no-flip", action="store_true", help="no horizontal-flip augmentation")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()

    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(2)

    x_train, y_train = load_split("train")
    x_test, y_test = load_split("t10k")
    model = LeNet()

    t0 = time.time()
    train(model, x_train, y_train, args.epochs, args.batch, args.lr, not args.no_flip)
    train_seconds = time.time() - t0
    print(f"training took {train_seconds:.1f} s")

    # Reference outputs are computed single-threaded (matches a pvf executor).
    torch.set_num_threads(1)
    model.eval()
    state = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    x_eval, y_eval = x_test[:N_EVAL], y_test[:N_EVAL]

    results = {}  # format -> (full test accuracy, eval accuracy)
    eval_tensors = {
        "pixel_values": x_eval.numpy(),
        "labels": y_eval.numpy(),
    }
    for fmt in pvf_formats.FORMATS:
        m = model if fmt == "fp32" else with_weights(model, pvf_formats.quantize_state_dict(state, fmt))
        full = logits_of(m, x_test)
        ev = logits_of(m, x_eval, batch=N_EVAL)
        results[fmt] = (accuracy(full, y_test), accuracy(ev, y_eval))
        key = "logits" if fmt == "fp32" else "logits_" + fmt.replace("-", "_")
        eval_tensors[key] = ev.numpy().astype(np.float32)
        print(f"{fmt:9s} test acc {results[fmt][0]:.4f}  eval acc {results[fmt][1]:.4f}")
    if results["fp32"][0] < 0.88:
        sys.exit(f"test accuracy {results['fp32'][0]:.4f} is below 0.88")

    os.makedirs(args.out, exist_ok=True)
    safetensors_io.save(os.path.join(args.out, "model.safetensors"), state,
                        {"format": "pt", "model": "fmnist-lenet"})
    safetensors_io.save(os.path.join(args.out, "eval.safetensors"), eval_tensors, {
        "task": "image-classification",
        "model": "fmnist-lenet",
        "source": "Fashion-MNIST t10k images 0-999",
        "normalization": "(x/255 - 0.2860)/0.3530",
    })
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config(), f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write(model_card(state, results, train_seconds, args))
    print(f"wrote {args.out}")


def config():
    return {
        "architectures": ["LeNetForImageClassification"],
        "model_type": "lenet",
        "num_channels": 1,
        "image_size": 28,
        "conv_channels": [6, 16],
        "conv_kernel_sizes": [5, 5],
        "conv_paddings": [2, 0],
        "pool_size": 2,
        "hidden_sizes": [120, 84],
        "num_labels": 10,
        "id2label": {str(i): c for i, c in enumerate(CLASSES)},
        "label2id": {c: i for i, c in enumerate(CLASSES)},
        "normalization": {"mean": MEAN, "std": STD},
    }


def model_card(state, results, train_seconds, args):
    params = "\n".join(f"| `{k}` | {list(v.shape)} | {v.size:,} |" for k, v in state.items())
    total = sum(v.size for v in state.values())
    accs = "\n".join(f"| {fmt} | {results[fmt][0] * 100:.2f} % | {results[fmt][1] * 100:.1f} % |"
                     for fmt in pvf_formats.FORMATS)
    aug = "none" if args.no_flip else "random horizontal flip (p = 0.5)"
    return f"""# fmnist-lenet

A LeNet-5 style CNN trained on Fashion-MNIST: the small bundled model pvf's
tests, examples and benchmarks run on. Hugging Face layout: `config.json` +
`model.safetensors` (float32), plus the eval set `eval.safetensors`.

## Architecture

Input: one 28x28 grey-scale image, normalised as `(pixel/255 - {MEAN:.4f}) / {STD:.4f}`.

```
conv1  Conv2d(1, 6, 5, padding=2)  -> ReLU -> MaxPool2d(2)   28x28 -> 28x28 -> 14x14
conv2  Conv2d(6, 16, 5, padding=0) -> ReLU -> MaxPool2d(2)   14x14 -> 10x10 -> 5x5
flatten (C, H, W order)                                      16*5*5 = 400
fc1    Linear(400, 120) -> ReLU
fc2    Linear(120, 84)  -> ReLU
fc3    Linear(84, 10)                                        logits
```

| tensor | shape | parameters |
|---|---|---|
{params}
| **total** | | **{total:,}** |

Classes (`id2label`): {", ".join(f"{i} {c}" for i, c in enumerate(CLASSES))}.

## Training

PyTorch {torch.__version__} (Debian's `python3-torch`), CPU, `torch.manual_seed(0)`.
Fashion-MNIST train split (60,000 images) from Debian's `dataset-fashion-mnist`,
Adam, one-cycle learning-rate schedule peaking at {args.lr:g}, {args.epochs} epochs,
batch {args.batch}, cross-entropy loss, augmentation: {aug}.
Training took {train_seconds:.0f} s wall time on {platform.system()} (Debian 12),
2 CPU cores ({platform.machine()}), `torch.set_num_threads(2)`.

## Accuracy

Top-1 accuracy on the full Fashion-MNIST test set (10,000 images) and on the
eval set (its first 1,000 images), with the weights stored in each of pvf's
formats (compute values from `tools/pvf_formats.py`; fp32, fp16 and bf16 apply
to every tensor, fp8-e4m3, int8 and int4 to the weight matrices and kernels
only, the biases stay fp32):

| storage format | test set (10,000) | eval set (1,000) |
|---|---|---|
{accs}

## Eval set

`eval.safetensors`: Fashion-MNIST t10k images 0-999.

| tensor | dtype | shape | content |
|---|---|---|---|
| `pixel_values` | F32 | [1000, 1, 28, 28] | normalised images |
| `labels` | I64 | [1000] | true classes |
| `logits` | F32 | [1000, 10] | PyTorch fp32 output (eval mode, no_grad, 1 thread) |
| `logits_fp16`, `logits_bf16`, `logits_fp8_e4m3`, `logits_int8`, `logits_int4` | F32 | [1000, 10] | PyTorch fp32 output with the weights replaced by their compute values in that storage format |

`__metadata__`: task `image-classification`, model `fmnist-lenet`,
source `Fashion-MNIST t10k images 0-999`, normalization `(x/255 - 0.2860)/0.3530`.

## Reproduce

```
/usr/bin/python3 tools/train_fmnist_lenet.py
```

Re-running rewrites every file in this folder (the training time will differ;
the weights are reproducible on the same machine and PyTorch build).
"""


if __name__ == "__main__":
    main()
