"""Trains the bundled Tiny-BERT to tell Debian's fortunes files apart and
exports models/fortunes-tinybert/.

    /usr/bin/python3 tools/train_fortunes_tinybert.py

Data: the fortune cookies of six files of Debian's `fortunes` package
(/usr/share/games/fortunes), one class per file. Tokenization happens here, at
export: lower-cased words and single punctuation marks, a vocabulary of the
training split's tokens seen at least twice (vocab.txt, BERT's one-token-a-line
layout with [PAD] [UNK] [CLS] [SEP] [MASK] first); each text becomes
[CLS] tokens [SEP], truncated and padded to 64 positions.

The model is BERT-Tiny's shape (L=2, H=128, A=2, I=512) trained from scratch
as tools/pvf_bert.py's BertForSequenceClassification (Hugging Face names).
Writes model.safetensors, config.json, vocab.txt, eval.safetensors (500 test
texts: input_ids, attention_mask, token_type_ids, labels and PyTorch's logits
for fp32 and every storage format) and the model card README.md.
"""

import argparse
import collections
import json
import os
import platform
import re
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pvf_bert  # noqa: E402
import pvf_formats  # noqa: E402
import safetensors_io  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "models", "fortunes-tinybert")
FORTUNES = "/usr/share/games/fortunes"
CLASSES = ["computers", "definitions", "politics", "science", "songs-poems", "zippy"]
SEQ = 64
N_EVAL = 500
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def read_fortunes(name):
    with open(os.path.join(FORTUNES, name), encoding="utf-8", errors="replace") as f:
        texts = [t.strip() for t in re.split(r"^%\s*$", f.read(), flags=re.M)]
    return [t for t in texts if t]


def tokenize(text):
    return TOKEN.findall(text.lower())


def encode(tokens, vocab):
    ids = [vocab["[CLS]"]] + [vocab.get(t, vocab["[UNK]"]) for t in tokens[:SEQ - 2]] + [vocab["[SEP]"]]
    mask = [1] * len(ids) + [0] * (SEQ - len(ids))
    return ids + [0] * (SEQ - len(ids)), mask


def split_data(seed=0):
    """Deduplicated texts, stratified 80/20 train/test split."""
    rng = np.random.default_rng(seed)
    train, test, seen = [], [], set()
    for c, name in enumerate(CLASSES):
        texts = []
        for t in read_fortunes(name):
            if t not in seen:
                seen.add(t)
                texts.append(t)
        order = rng.permutation(len(texts))
        cut = int(round(len(texts) * 0.8))
        train += [(texts[i], c) for i in order[:cut]]
        test += [(texts[i], c) for i in order[cut:]]
    train = [train[i] for i in rng.permutation(len(train))]
    test = [test[i] for i in rng.permutation(len(test))]
    return train, test


def tensors(data, vocab):
    enc = [encode(tokenize(t), vocab) for t, _ in data]
    ids = torch.tensor([e[0] for e in enc], dtype=torch.long)
    mask = torch.tensor([e[1] for e in enc], dtype=torch.long)
    labels = torch.tensor([c for _, c in data], dtype=torch.long)
    return ids, mask, labels


def trim(ids, mask):
    """Drops the padding columns no text of the batch uses (same outputs, less work)."""
    n = int(mask.sum(1).max())
    return ids[:, :n], mask[:, :n]


def logits_of(model, ids, mask, batch=256, trimmed=False):
    """Outputs in eval mode; the exported references use the full 64 positions."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(ids), batch):
            b_ids, b_mask = ids[i:i + batch], mask[i:i + batch]
            if trimmed:
                b_ids, b_mask = trim(b_ids, b_mask)
            out.append(model(b_ids, b_mask, torch.zeros_like(b_ids)))
    return torch.cat(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)

    train, test = split_data()
    counts = collections.Counter(tok for t, _ in train for tok in tokenize(t))
    words = sorted((w for w, n in counts.items() if n >= 2), key=lambda w: (-counts[w], w))
    vocab_list = SPECIALS + words
    vocab = {w: i for i, w in enumerate(vocab_list)}
    ids_tr, mask_tr, y_tr = tensors(train, vocab)
    ids_te, mask_te, y_te = tensors(test, vocab)
    lens = mask_tr.sum(1).float()
    print(f"{len(train)} train / {len(test)} test texts, vocab {len(vocab_list)}, "
          f"median length {lens.median():.0f}, truncated {(lens == SEQ).float().mean() * 100:.1f} %",
          flush=True)

    cfg = pvf_bert.config_of(len(vocab_list), 128, 2, 2, 512, SEQ, CLASSES)
    model = pvf_bert.BertForSequenceClassification(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    steps = args.epochs * ((len(train) + args.batch - 1) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(0)
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(train), generator=gen)
        loss_sum, correct = 0.0, 0
        for lo in range(0, len(train), args.batch):
            idx = perm[lo:lo + args.batch]
            b_ids, b_mask = trim(ids_tr[idx], mask_tr[idx])
            out = model(b_ids, b_mask, torch.zeros_like(b_ids))
            loss = F.cross_entropy(out, y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss) * len(idx)
            correct += int((out.argmax(1) == y_tr[idx]).sum())
        acc = float((logits_of(model, ids_te, mask_te, trimmed=True).argmax(1) == y_te).float().mean())
        print(f"epoch {epoch + 1:2d}: loss {loss_sum / len(train):.4f} train acc "
              f"{correct / len(train):.4f} test acc {acc:.4f}", flush=True)
    train_seconds = time.time() - t0

    torch.set_num_threads(1)
    state = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    ev = slice(0, N_EVAL)
    eval_tensors = {
        "input_ids": ids_te[ev].numpy().astype(np.int64),
        "attention_mask": mask_te[ev].numpy().astype(np.int64),
        "token_type_ids": np.zeros((N_EVAL, SEQ), dtype=np.int64),
        "labels": y_te[ev].numpy().astype(np.int64),
    }
    results = {}
    for fmt in pvf_formats.FORMATS:
        m = model
        if fmt != "fp32":
            m = pvf_bert.BertForSequenceClassification(cfg)
            q = pvf_formats.quantize_state_dict(state, fmt)
            m.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in q.items()})
        full = logits_of(m, ids_te, mask_te)
        m.eval()
        with torch.no_grad():
            e = m(ids_te[ev], mask_te[ev], torch.zeros_like(ids_te[ev]))
        key = "logits" if fmt == "fp32" else "logits_" + fmt.replace("-", "_")
        eval_tensors[key] = e.numpy().astype(np.float32)
        results[fmt] = (float((full.argmax(1) == y_te).float().mean()),
                        float((e.argmax(1) == y_te[ev]).float().mean()))
        print(f"{fmt:9s} test acc {results[fmt][0]:.4f} eval acc {results[fmt][1]:.4f}", flush=True)

    os.makedirs(args.out, exist_ok=True)
    safetensors_io.save(os.path.join(args.out, "model.safetensors"), state,
                        {"format": "pt", "model": "fortunes-tinybert"})
    safetensors_io.save(os.path.join(args.out, "eval.safetensors"), eval_tensors, {
        "task": "text-classification",
        "model": "fortunes-tinybert",
        "source": f"test split texts 0-{N_EVAL - 1} of tools/train_fortunes_tinybert.py",
        "tokenizer": "vocab.txt, lower-cased words and punctuation, [CLS] ... [SEP], 64 positions",
    })
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab_list) + "\n")
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write(model_card(state, results, len(train), len(test), len(vocab_list), train_seconds,
                           args, test))
    print(f"wrote {args.out}")


def model_card(state, results, ntrain, ntest, nvocab, train_seconds, args, test):
    total = sum(v.size for v in state.values())
    shown = [k for k in state if ".layer." not in k or ".layer.0." in k]
    params = "\n".join(f"| `{k}` | {list(state[k].shape)} | {state[k].size:,} |" for k in shown)
    accs = "\n".join(f"| {f} | {r[0] * 100:.2f} % | {r[1] * 100:.1f} % |" for f, r in results.items())
    per_class = collections.Counter(c for _, c in test)
    classes = ", ".join(f"{i} `{c}` ({per_class[i]} test texts)" for i, c in enumerate(CLASSES))
    return f"""# fortunes-tinybert

A BERT with the shape of Google's BERT-Tiny (L=2, H=128, A=2, I=512) trained
from scratch to tell six of Debian's `fortunes` files apart. Hugging Face
layout: `config.json` and `model.safetensors` (float32) with
`BertForSequenceClassification`'s names, `vocab.txt`, plus the eval set
`eval.safetensors` (already tokenized).

## Architecture

Hugging Face's `BertForSequenceClassification`: word + position + token-type
embeddings, LayerNorm (eps 1e-12); 2 post-LN encoder layers (2-head
self-attention with the padding mask, GELU (erf) feed-forward of 512); tanh
pooler on [CLS]; linear classifier over {len(CLASSES)} labels. Vocabulary
{nvocab:,} tokens, 64 positions. {total:,} parameters (encoder layer 1 has the
same tensors as layer 0):

| tensor | shape | parameters |
|---|---|---|
{params}
| **total** | | **{total:,}** |

Classes (`id2label`): {classes}.

## Data and training

The fortune cookies of `{"`, `".join(CLASSES)}` from Debian's `fortunes`
package (/usr/share/games/fortunes), deduplicated, split 80/20 per class
(seed 0): {ntrain:,} training and {ntest:,} test texts. Tokenization (at export):
lower-cased words and single punctuation marks; the vocabulary is the training
tokens seen at least twice; [CLS] tokens [SEP], truncated and padded to 64.
PyTorch {torch.__version__} (Debian's `python3-torch`), CPU, `torch.manual_seed(0)`,
AdamW (weight decay 0.01), one-cycle schedule peaking at {args.lr:g}, {args.epochs}
epochs, batch {args.batch} (each batch trimmed to its longest text), dropout 0.1,
cross-entropy. Training took
{train_seconds:.0f} s wall time on {platform.system()} (Debian 12), 2 CPU cores
({platform.machine()}) shared with other jobs, `torch.set_num_threads({args.threads})`.

## Accuracy

Top-1 accuracy on the {ntest:,} test texts and on the eval set (the first {N_EVAL}
of them), weights stored in each of pvf's formats (compute values from
`tools/pvf_formats.py`; fp8-e4m3, int8 and int4 quantize the 2-D tensors,
embedding tables included, one scale per row; biases and LayerNorm stay fp32):

| storage format | test set ({ntest:,}) | eval set ({N_EVAL}) |
|---|---|---|
{accs}

## Eval set

`eval.safetensors`: test texts 0-{N_EVAL - 1}.

| tensor | dtype | shape | content |
|---|---|---|---|
| `input_ids` | I64 | [{N_EVAL}, 64] | token ids (vocab.txt line numbers from 0) |
| `attention_mask` | I64 | [{N_EVAL}, 64] | 1 for a token, 0 for padding |
| `token_type_ids` | I64 | [{N_EVAL}, 64] | all 0 (one segment) |
| `labels` | I64 | [{N_EVAL}] | true classes |
| `logits` | F32 | [{N_EVAL}, {len(CLASSES)}] | PyTorch fp32 output (eval mode, no_grad, 1 thread) |
| `logits_fp16`, ..., `logits_int4` | F32 | [{N_EVAL}, {len(CLASSES)}] | the same with the weights replaced by their compute values in that storage format |

## Reproduce

```
bash deploy/install-deps.sh --train
/usr/bin/python3 tools/train_fortunes_tinybert.py
```
"""


if __name__ == "__main__":
    main()
