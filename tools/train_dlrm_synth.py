"""Trains the bundled DLRM on a synthetic Criteo-shaped click log and exports
models/dlrm-synth/.

    /usr/bin/python3 tools/train_dlrm_synth.py

The click log is drawn from a documented planted model (see PLANTED below),
so there is a real signal to learn and the best achievable AUC is known:

  * 13 dense features: counts c_j = floor(exp(N(mu_j, sigma_j))), fed as
    log(1 + c_j) (Criteo's usual transform);
  * 26 categorical features with Zipf(1.1)-distributed ids over tables of
    realistic size spread (three of 100,000 rows down to 2 rows); the two
    largest tables are multi-hot (bags of 1-4 ids, e.g. a history);
  * logit = b + a . standardised(dense) + sum_k sum_{id in bag k} w_k[id]
            + u_0[id_2] . u_1[id_3] + u_2[id_4] . u_3[id_5]    (4-d latents)
    with w_k[id] ~ N(0, s_k^2) (s_k = 0 for eight uninformative tables);
    click ~ Bernoulli(sigmoid(logit)); b is set for a click rate near 25 %.

Writes model.safetensors, config.json, eval.safetensors (1,000 test rows with
PyTorch's output probabilities for fp32 and every storage format) and the
model card README.md.
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pvf_dlrm  # noqa: E402
import pvf_formats  # noqa: E402
import safetensors_io  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "models", "dlrm-synth")
N_DENSE = 13
TABLES = [100000, 100000, 100000, 20000, 10000, 5000, 3000, 2000, 1000, 1000, 500, 300, 200,
          100, 100, 50, 30, 20, 10, 10, 5, 4, 3, 3, 2, 2]
MULTI_HOT = (0, 1)   # tables with bags of 1..4 ids
MAX_BAG = 4
ZIPF_S = 1.1
M_SPA = 16
BOT = [N_DENSE, 64, M_SPA]
TOP_HIDDEN = [128, 64]
N_TRAIN, N_TEST, N_EVAL = 400000, 50000, 1000
PAIRS = ((2, 3), (4, 5))  # planted latent interactions between tables


class Planted:
    """The planted click model; seeded, so the data is reproducible."""

    def __init__(self, rng):
        self.mu = rng.uniform(0.0, 3.0, N_DENSE)
        self.sigma = rng.uniform(0.5, 1.5, N_DENSE)
        self.a = rng.normal(0.0, 0.35, N_DENSE)
        scales = rng.uniform(0.3, 1.0, len(TABLES))
        scales[rng.choice(len(TABLES), 8, replace=False)] = 0.0
        self.s = scales
        self.w = [rng.normal(0.0, s, n) if s > 0 else np.zeros(n) for s, n in zip(scales, TABLES)]
        self.u = {t: rng.normal(0.0, 0.6, (TABLES[t], 4)) for p in PAIRS for t in p}
        self.perm = [rng.permutation(n) for n in TABLES]  # Zipf rank -> id
        self.cdf = []
        for n in TABLES:
            p = 1.0 / np.arange(1, n + 1) ** ZIPF_S
            self.cdf.append(np.cumsum(p) / p.sum())
        self.b = 0.0

    def draw(self, rng, n):
        """n rows: dense_x [n, 13] f32, per-table (offsets, indices), true logits."""
        counts = np.floor(np.exp(rng.normal(self.mu, self.sigma, (n, N_DENSE))))
        dense = np.log1p(counts).astype(np.float32)
        z = (np.log1p(counts) - self.mu) / self.sigma  # roughly standardised
        logit = z @ self.a + self.b
        lS_o, lS_i, first = [], [], []
        for k, rows in enumerate(TABLES):
            lens = rng.integers(1, MAX_BAG + 1, n) if k in MULTI_HOT else np.ones(n, np.int64)
            ranks = np.searchsorted(self.cdf[k], rng.random(int(lens.sum())))
            ids = self.perm[k][np.minimum(ranks, rows - 1)]
            offs = np.concatenate([[0], np.cumsum(lens)[:-1]])
            logit += np.add.reduceat(self.w[k][ids], offs)
            lS_o.append(offs.astype(np.int64))
            lS_i.append(ids.astype(np.int64))
            first.append(ids[offs])
        for ta, tb in PAIRS:
            logit += np.sum(self.u[ta][first[ta]] * self.u[tb][first[tb]], axis=1)
        return dense, lS_o, lS_i, logit


def auc(p, y):
    """Area under the ROC curve (ties counted half), via ranks."""
    p, y = np.asarray(p, np.float64), np.asarray(y)
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    ps = p[order]
    i = 0
    while i < len(ps):  # average ranks over ties
        j = i
        while j + 1 < len(ps) and ps[j + 1] == ps[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = y == 1
    npos, nneg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def logloss(p, y):
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def batches(dense, lS_o, lS_i, y, idx):
    """A batch as dlrm's forward takes it (per-table offsets and indices)."""
    bo, bi = [], []
    for k in range(len(TABLES)):
        ends = np.append(lS_o[k][1:], len(lS_i[k]))
        starts = lS_o[k][idx]
        lens = ends[idx] - starts
        take = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lens)])
        bi.append(torch.from_numpy(lS_i[k][take]))
        bo.append(torch.from_numpy(np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)))
    return torch.from_numpy(dense[idx]), bo, bi, torch.from_numpy(y[idx].astype(np.float32))


def predict(net, dense, lS_o, lS_i, batch=10000):
    net.eval()
    out = []
    n = len(dense)
    with torch.no_grad():
        for lo in range(0, n, batch):
            idx = np.arange(lo, min(n, lo + batch))
            x, o, i, _ = batches(dense, lS_o, lS_i, np.zeros(n), idx)
            out.append(net(x, o, i).reshape(-1))
    return torch.cat(out).numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)  # dlrm's initialisation draws from numpy's global RNG
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(20240601)
    planted = Planted(rng)
    d0, _, _, l0 = planted.draw(np.random.default_rng(1), 20000)
    # click rate near 25 %: shift the planted bias to the logit quantile
    planted.b = -float(np.quantile(l0, 0.75))
    tr = planted.draw(np.random.default_rng(2), N_TRAIN)
    te = planted.draw(np.random.default_rng(3), N_TEST)
    lab_rng = np.random.default_rng(4)
    y_tr = (lab_rng.random(N_TRAIN) < 1 / (1 + np.exp(-tr[3]))).astype(np.int64)
    y_te = (lab_rng.random(N_TEST) < 1 / (1 + np.exp(-te[3]))).astype(np.int64)
    oracle_p = 1 / (1 + np.exp(-te[3]))
    print(f"click rate train {y_tr.mean():.3f} test {y_te.mean():.3f}; planted-model test AUC "
          f"{auc(oracle_p, y_te):.4f} log-loss {logloss(oracle_p, y_te):.4f}", flush=True)

    top = [pvf_dlrm.interaction_size(M_SPA, len(TABLES), "dot", False)] + TOP_HIDDEN + [1]
    net = pvf_dlrm.DLRM_Net(M_SPA, TABLES, BOT, top, "dot", False)
    emb_params = list(net.emb_l.parameters())
    mlp_params = list(net.bot_l.parameters()) + list(net.top_l.parameters())
    opt_sparse = torch.optim.SparseAdam(emb_params, lr=args.lr)
    opt_dense = torch.optim.Adam(mlp_params, lr=args.lr)
    gen = np.random.default_rng(5)
    t0 = time.time()
    for epoch in range(args.epochs):
        net.train()
        perm = gen.permutation(N_TRAIN)
        loss_sum = 0.0
        for lo in range(0, N_TRAIN, args.batch):
            x, o, i, yb = batches(tr[0], tr[1], tr[2], y_tr, perm[lo:lo + args.batch])
            p = net(x, o, i).reshape(-1)
            loss = F.binary_cross_entropy(p, yb)
            opt_sparse.zero_grad()
            opt_dense.zero_grad()
            loss.backward()
            opt_sparse.step()
            opt_dense.step()
            loss_sum += float(loss) * len(yb)
        pt = predict(net, te[0], te[1], te[2])
        print(f"epoch {epoch + 1}: train loss {loss_sum / N_TRAIN:.4f}  test AUC "
              f"{auc(pt, y_te):.4f} log-loss {logloss(pt, y_te):.4f}", flush=True)
    train_seconds = time.time() - t0

    torch.set_num_threads(1)
    state = {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    ev_idx = np.arange(N_EVAL)
    x_ev, o_ev, i_ev, _ = batches(te[0], te[1], te[2], y_te, ev_idx)
    sparse_offsets, sparse_indices = pvf_dlrm.to_eval_layout(o_ev, i_ev)
    eval_tensors = {
        "dense_x": x_ev.numpy(),
        "sparse_offsets": sparse_offsets,
        "sparse_indices": sparse_indices,
        "labels": y_te[:N_EVAL].astype(np.int64),
    }
    results = {}
    for fmt in pvf_formats.FORMATS:
        m = net
        if fmt != "fp32":
            m = pvf_dlrm.DLRM_Net(M_SPA, TABLES, BOT, top, "dot", False)
            q = pvf_formats.quantize_state_dict(state, fmt)
            m.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in q.items()})
        pt = predict(m, te[0], te[1], te[2])
        m.eval()
        with torch.no_grad():
            pe = m(x_ev, o_ev, i_ev).numpy().astype(np.float32)
        key = "logits" if fmt == "fp32" else "logits_" + fmt.replace("-", "_")
        eval_tensors[key] = pe
        ye = y_te[:N_EVAL]
        results[fmt] = (auc(pt, y_te), logloss(pt, y_te), auc(pe[:, 0], ye), logloss(pe[:, 0], ye),
                        float(((pe[:, 0] > 0.5) == ye).mean()))
        print(f"{fmt:9s} test AUC {results[fmt][0]:.4f} log-loss {results[fmt][1]:.4f}  eval AUC "
              f"{results[fmt][2]:.4f} log-loss {results[fmt][3]:.4f} acc {results[fmt][4]:.4f}",
              flush=True)
    oracle = (auc(oracle_p, y_te), logloss(oracle_p, y_te))

    os.makedirs(args.out, exist_ok=True)
    safetensors_io.save(os.path.join(args.out, "model.safetensors"), state,
                        {"format": "pt", "model": "dlrm-synth"})
    safetensors_io.save(os.path.join(args.out, "eval.safetensors"), eval_tensors, {
        "task": "click-through-rate",
        "model": "dlrm-synth",
        "source": "tools/train_dlrm_synth.py test rows 0-999",
        "logits": "DLRM_Net output: click probability after the sigmoid",
    })
    cfg = pvf_dlrm.config_of(M_SPA, TABLES, BOT, top, "dot", False,
                             id2label={"0": "no-click", "1": "click"})
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write(model_card(state, results, oracle, y_tr.mean(), train_seconds, args, top))
    print(f"wrote {args.out}")


def model_card(state, results, oracle, ctr, train_seconds, args, top):
    params = "\n".join(f"| `{k}` | {list(v.shape)} | {v.size:,} |" for k, v in state.items())
    total = sum(v.size for v in state.values())
    rows = "\n".join(
        f"| {f} | {r[0]:.4f} | {r[1]:.4f} | {r[2]:.4f} | {r[3]:.4f} | {r[4] * 100:.1f} % |"
        for f, r in results.items())
    return f"""# dlrm-synth

A DLRM (facebookresearch/dlrm's `DLRM_Net`) trained on a synthetic Criteo-shaped
click log: 13 dense and 26 categorical features, Zipf-distributed ids, tables
from 100,000 rows down to 2. Hugging Face layout: `config.json` (dlrm's own
`--arch-*` flag names) + `model.safetensors` (float32, dlrm's state-dict names),
plus the eval set `eval.safetensors`.

## Architecture

```
dense_x [13] -> bot_l: Linear(13, 64) ReLU Linear(64, 16) ReLU          x [16]
sparse feature k -> emb_l.k: EmbeddingBag(rows_k, 16, mode="sum")     ly_k [16] (26 tables)
interaction "dot": x and the pairwise dot products of (x, ly_0..ly_25),
                   lower triangle without the diagonal                 16 + 351 = {top[0]}
top_l: Linear({top[0]}, {top[1]}) ReLU Linear({top[1]}, {top[2]}) ReLU Linear({top[2]}, 1) Sigmoid   click probability
```

Table rows (`arch_embedding_size`): {", ".join(f"{n:,}" for n in TABLES)}.
Tables 0 and 1 are multi-hot (bags of 1-4 ids, summed); the others one-hot.

| tensor | shape | parameters |
|---|---|---|
{params}
| **total** | | **{total:,}** |

## Data: the planted click model

`tools/train_dlrm_synth.py` draws {N_TRAIN:,} training and {N_TEST:,} test rows from
a planted model (documented at the top of the script): dense counts
`floor(exp(N(mu_j, sigma_j)))` fed as `log(1 + c)`; ids drawn Zipf(1.1) over each
table (rank permuted to id); the true logit is a bias, a linear term in the
standardised dense features, a planted weight per id for 18 of the 26 tables
(the other 8 carry no signal), and two planted latent interactions between
tables 2-3 and 4-5; the click is a Bernoulli draw of its sigmoid. Click rate
{ctr * 100:.1f} %. The planted model itself reaches test AUC {oracle[0]:.4f},
log-loss {oracle[1]:.4f}: the best any model can do on these labels.

## Training

PyTorch {torch.__version__} (Debian's `python3-torch`), CPU, seeds fixed.
Binary cross-entropy; SparseAdam on the embedding tables, Adam on the MLPs,
learning rate {args.lr:g}, batch {args.batch}, {args.epochs} epoch{"s" if args.epochs != 1 else ""}. Training took
{train_seconds:.0f} s wall time on {platform.system()} (Debian 12), 2 CPU cores
({platform.machine()}) shared with other jobs, `torch.set_num_threads({args.threads})`.
One epoch: the test AUC peaks there (a second epoch overfits the large tables: 0.890
after one, 0.879 after two, in a first run).

## Quality

AUC and log-loss on the {N_TEST:,} test rows and on the eval set (test rows 0-999),
and the click decision (p > 0.5) against the label on the eval set, with the weights
stored in each of pvf's formats (compute values from `tools/pvf_formats.py`;
fp8-e4m3, int8 and int4 quantize the 2-D tensors, embedding tables included,
one scale per table row; biases stay fp32):

| storage format | test AUC | test log-loss | eval AUC | eval log-loss | eval decision accuracy |
|---|---|---|---|---|---|
{rows}

## Eval set

`eval.safetensors`: test rows 0-999.

| tensor | dtype | shape | content |
|---|---|---|---|
| `dense_x` | F32 | [1000, 13] | dense features, `log(1 + count)` |
| `sparse_offsets` | I64 | [1000, 26] | start of the bag (input i, table k) in `sparse_indices`; a bag ends where the next one (row-major) starts |
| `sparse_indices` | I64 | [total ids] | row ids into `emb_l.k.weight` |
| `labels` | I64 | [1000] | clicks (0/1) |
| `logits` | F32 | [1000, 1] | PyTorch's `DLRM_Net` output: the click **probability** (after the sigmoid) |
| `logits_fp16`, ..., `logits_int4` | F32 | [1000, 1] | the same with the weights replaced by their compute values in that storage format |

## Reproduce

```
/usr/bin/python3 tools/train_dlrm_synth.py
```
"""


if __name__ == "__main__":
    main()
