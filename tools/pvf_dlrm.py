"""DLRM as facebookresearch/dlrm's DLRM_Net (dlrm_s_pytorch.py), in PyTorch.

The module keeps that repository's state-dict names, so a user's checkpoint
loads as it is:

    emb_l.{k}.weight            EmbeddingBag(rows_k, d, mode="sum") per sparse feature
    bot_l.{2i}.weight / .bias   bottom MLP: Linear, ReLU, Linear, ReLU, ...
    top_l.{2i}.weight / .bias   top MLP: Linear, ReLU, ..., Linear, Sigmoid

config.json carries dlrm_s_pytorch.py's own flag names (--arch-sparse-feature-
size, --arch-embedding-size, --arch-mlp-bot, --arch-mlp-top,
--arch-interaction-op, --arch-interaction-itself) as lists and values;
arch_mlp_top starts with the interaction's width, as dlrm's ln_top does once
it has prepended it to the flag's sizes.

pvf's eval-set layout for the sparse features (one row per eval input):

    dense_x         F32 [N, 13]        bottom-MLP input
    sparse_offsets  I64 [N, T]         start of the bag of (input i, table k) in
                                       sparse_indices; the bag ends where the
                                       next one (row-major) starts, the last
                                       one at the end of sparse_indices
    sparse_indices  I64 [total]        row ids into emb_l.{k}.weight

to_eval_layout() converts dlrm's per-table (lS_o[k], lS_i[k]) to it.
"""

import numpy as np
import torch
import torch.nn as nn


def create_mlp(ln, sigmoid_layer):
    """dlrm's create_mlp: Linear + ReLU per layer, Sigmoid after layer sigmoid_layer."""
    layers = []
    for i in range(len(ln) - 1):
        n, m = int(ln[i]), int(ln[i + 1])
        lin = nn.Linear(n, m, bias=True)
        # dlrm's initialisation
        w = np.random.normal(0.0, np.sqrt(2 / (m + n)), size=(m, n)).astype(np.float32)
        b = np.random.normal(0.0, np.sqrt(1 / m), size=m).astype(np.float32)
        lin.weight.data = torch.tensor(w, requires_grad=True)
        lin.bias.data = torch.tensor(b, requires_grad=True)
        layers.append(lin)
        layers.append(nn.Sigmoid() if i == sigmoid_layer else nn.ReLU())
    return nn.Sequential(*layers)


class DLRM_Net(nn.Module):
    def __init__(self, m_spa, ln_emb, ln_bot, ln_top, arch_interaction_op="dot",
                 arch_interaction_itself=False):
        super().__init__()
        self.m_spa = m_spa
        self.op = arch_interaction_op
        self.itself = arch_interaction_itself
        self.emb_l = nn.ModuleList()
        for n in ln_emb:
            e = nn.EmbeddingBag(int(n), m_spa, mode="sum", sparse=True)
            w = np.random.uniform(-np.sqrt(1 / n), np.sqrt(1 / n), size=(n, m_spa)).astype(np.float32)
            e.weight.data = torch.tensor(w, requires_grad=True)
            self.emb_l.append(e)
        self.bot_l = create_mlp(ln_bot, -1)
        self.top_l = create_mlp(ln_top, len(ln_top) - 2)

    def interact_features(self, x, ly):
        if self.op == "dot":
            (batch_size, d) = x.shape
            T = torch.cat([x] + ly, dim=1).view((batch_size, -1, d))
            Z = torch.bmm(T, torch.transpose(T, 1, 2))
            _, ni, nj = Z.shape
            offset = 1 if self.itself else 0
            li = torch.tensor([i for i in range(ni) for j in range(i + offset)], dtype=torch.long)
            lj = torch.tensor([j for i in range(nj) for j in range(i + offset)], dtype=torch.long)
            Zflat = Z[:, li, lj]
            return torch.cat([x] + [Zflat], dim=1)
        if self.op == "cat":
            return torch.cat([x] + ly, dim=1)
        raise ValueError(f"unknown interaction op {self.op!r}")

    def forward(self, dense_x, lS_o, lS_i):
        x = self.bot_l(dense_x)
        ly = [self.emb_l[k](lS_i[k], lS_o[k]) for k in range(len(self.emb_l))]
        return self.top_l(self.interact_features(x, ly))


def interaction_size(m_spa, ntables, op, itself):
    n = ntables + 1
    if op == "dot":
        return m_spa + (n * (n + 1) // 2 if itself else n * (n - 1) // 2)
    return m_spa * n


def config_of(m_spa, ln_emb, ln_bot, ln_top, op="dot", itself=False, **extra):
    cfg = {
        "architectures": ["DLRM_Net"],
        "model_type": "dlrm",
        "arch_sparse_feature_size": int(m_spa),
        "arch_embedding_size": [int(n) for n in ln_emb],
        "arch_mlp_bot": [int(n) for n in ln_bot],
        "arch_mlp_top": [int(n) for n in ln_top],
        "arch_interaction_op": op,
        "arch_interaction_itself": bool(itself),
    }
    cfg.update(extra)
    return cfg


def net_from_config(cfg):
    return DLRM_Net(cfg["arch_sparse_feature_size"], cfg["arch_embedding_size"],
                    cfg["arch_mlp_bot"], cfg["arch_mlp_top"], cfg["arch_interaction_op"],
                    cfg.get("arch_interaction_itself", False))


def to_eval_layout(lS_o, lS_i):
    """dlrm's per-table offsets/indices (lists of 1-D tensors or arrays) ->
    (sparse_offsets [N, T], sparse_indices [total]) in pvf's input-major layout."""
    T = len(lS_o)
    offs = [np.asarray(o, dtype=np.int64) for o in lS_o]
    idxs = [np.asarray(i, dtype=np.int64) for i in lS_i]
    N = len(offs[0])
    bags = []
    for k in range(T):
        ends = np.append(offs[k][1:], len(idxs[k]))
        bags.append([idxs[k][offs[k][i]:ends[i]] for i in range(N)])
    sparse_offsets = np.zeros((N, T), dtype=np.int64)
    flat, pos = [], 0
    for i in range(N):
        for k in range(T):
            sparse_offsets[i, k] = pos
            flat.append(bags[k][i])
            pos += len(bags[k][i])
    sparse_indices = np.concatenate(flat).astype(np.int64) if flat else np.zeros(0, np.int64)
    return sparse_offsets, sparse_indices


def from_eval_layout(sparse_offsets, sparse_indices):
    """Inverse of to_eval_layout: per-table (lS_o, lS_i) torch tensors."""
    N, T = sparse_offsets.shape
    flat_off = sparse_offsets.reshape(-1)
    ends = np.append(flat_off[1:], len(sparse_indices))
    lS_o, lS_i = [], []
    for k in range(T):
        bags = [sparse_indices[flat_off[i * T + k]:ends[i * T + k]] for i in range(N)]
        lens = np.array([len(b) for b in bags], dtype=np.int64)
        lS_o.append(torch.from_numpy(np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)))
        lS_i.append(torch.from_numpy(np.concatenate(bags).astype(np.int64) if len(bags) else
                                     np.zeros(0, np.int64)))
    return lS_o, lS_i
