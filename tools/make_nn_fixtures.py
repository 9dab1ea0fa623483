"""Writes the test fixtures of the DLRM and BERT code, computed by PyTorch:

    tests/fixtures/nn.safetensors    inputs and outputs of the kernels in
                                     worker/engine/kernels_nn.c (EmbeddingBag
                                     sum with offsets, DLRM interaction,
                                     LayerNorm, GELU, tanh, sigmoid, masked
                                     multi-head attention)
    tests/fixtures/bert-l4/          a BERT of another shape than the bundled
                                     one (L=4, H=256, A=4, I=256), random
                                     weights with Hugging Face names stored as
                                     F16, an eval set with padding and two
                                     token types, PyTorch's logits
    tests/fixtures/dlrm-dot-itself/  small DLRMs: "dot" with the diagonal
    tests/fixtures/dlrm-cat/         and "cat"; multi-hot and empty bags

    /usr/bin/python3 tools/make_nn_fixtures.py

Deterministic: fixed seeds, one thread.
"""

import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pvf_bert  # noqa: E402
import pvf_dlrm  # noqa: E402
import safetensors_io  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
F32 = np.float32


def randn(g, *shape):
    return torch.randn(*shape, generator=g, dtype=torch.float32)


def kernels():
    g = torch.Generator().manual_seed(20240610)
    out = {}
    table = randn(g, 10, 5)
    idx = torch.tensor([3, 3, 0, 9, 1, 7, 7, 7, 2, 5, 4, 8], dtype=torch.long)
    offsets = torch.tensor([0, 2, 2, 5, 9], dtype=torch.long)  # bag 1 is empty
    out.update(embbag_table=table, embbag_idx=idx, embbag_offsets=offsets,
               embbag_y=F.embedding_bag(idx, table, offsets, mode="sum"))

    t = randn(g, 3, 4, 5)  # 3 inputs, 4 feature vectors of 5
    for itself in (False, True):
        net = pvf_dlrm.DLRM_Net.__new__(pvf_dlrm.DLRM_Net)
        net.op, net.itself = "dot", itself
        y = net.interact_features(t[:, 0], [t[:, j] for j in range(1, 4)])
        out["interact_y_self" if itself else "interact_y"] = y
    out["interact_t"] = t

    x = randn(g, 4, 16)
    x[1] += 1000.0
    x[2] *= 1e-3
    w, b = randn(g, 16), randn(g, 16)
    out.update(ln_x=x, ln_w=w, ln_b=b,
               ln_y=F.layer_norm(x, (16,), w, b, 1e-12),
               ln_y_eps5=F.layer_norm(x, (16,), w, b, 1e-5))
    # Faulty rows of 128: a value of 1e19 (finite in PyTorch), 1e21, 1e37 and Inf (NaN there)
    big = randn(g, 4, 128)
    for r, v in enumerate((1e19, 1e21, 1e37, float("inf"))):
        big[r, 5] = v
    wb, bb = randn(g, 128), randn(g, 128)
    out.update(ln_big_x=big, ln_big_w=wb, ln_big_b=bb, ln_big_y=F.layer_norm(big, (128,), wb, bb, 1e-12))
    assert torch.isfinite(out["ln_big_y"][0]).all() and torch.isnan(out["ln_big_y"][1:]).all()

    a = torch.cat([randn(g, 60) * 4, torch.tensor([0.0, -0.0, 30.0, -30.0, 100.0, -100.0, 1e-8, -9.0])])
    out.update(act_x=a, gelu_y=F.gelu(a), tanh_y=torch.tanh(a), sigmoid_y=torch.sigmoid(a))

    s, heads, d = 7, 2, 4
    q, k, v = randn(g, s, heads * d), randn(g, s, heads * d), randn(g, s, heads * d)
    mask = torch.tensor([1, 1, 1, 1, 1, 0, 0], dtype=torch.long)
    ext = (1.0 - mask.to(torch.float32)) * torch.finfo(torch.float32).min

    def split(m):
        return m.view(s, heads, d).permute(1, 0, 2)

    scores = torch.matmul(split(q), split(k).transpose(-1, -2)) / np.sqrt(d) + ext
    ctx = torch.matmul(F.softmax(scores, dim=-1), split(v)).permute(1, 0, 2).reshape(s, heads * d)
    out.update(attn_q=q, attn_k=k, attn_v=v, attn_mask=mask, attn_ctx=ctx)
    return {k: v.detach().numpy() for k, v in out.items()}


def bert_l4():
    torch.manual_seed(20240611)
    cfg = pvf_bert.config_of(vocab_size=120, hidden_size=256, num_hidden_layers=4,
                             num_attention_heads=4, intermediate_size=256,
                             max_position_embeddings=32, labels=["a", "b", "c"],
                             layer_norm_eps=1e-12)
    model = pvf_bert.BertForSequenceClassification(cfg)
    # Wider than Hugging Face's init (std 0.02) so every layer matters, and
    # non-trivial LayerNorm weights.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.08 * torch.randn_like(p))
    # stored as F16: the checkpoint's values are the F16 ones
    state16 = {k: v.detach().numpy().astype(np.float16) for k, v in model.state_dict().items()}
    model.load_state_dict({k: torch.from_numpy(v.astype(F32)) for k, v in state16.items()})
    model.eval()
    n, s = 6, 16
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 120, (n, s), generator=g)
    ids[:, 0] = 2
    lens = [16, 12, 9, 3, 16, 1]
    mask = torch.zeros(n, s, dtype=torch.long)
    for i, L in enumerate(lens):
        mask[i, :L] = 1
        ids[i, L:] = 0
    types = torch.zeros(n, s, dtype=torch.long)
    types[:, 8:] = 1
    with torch.no_grad():
        logits = model(ids, mask, types)
    ev = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy(),
          "labels": logits.argmax(1).numpy(), "logits": logits.numpy()}
    return cfg, state16, ev


def dlrm_small(op, itself, seed):
    np.random.seed(seed)
    torch.manual_seed(seed)
    tables, dim = [5, 7, 3, 100], 4
    bot = [6, 8, dim]
    top = [pvf_dlrm.interaction_size(dim, len(tables), op, itself), 8, 1]
    net = pvf_dlrm.DLRM_Net(dim, tables, bot, top, op, itself).eval()
    with torch.no_grad():  # embeddings of a trained scale, so the interaction matters
        for e in net.emb_l:
            e.weight.mul_(4.0)
    n = 9
    rng = np.random.default_rng(seed)
    dense = rng.standard_normal((n, bot[0])).astype(F32)
    lS_o, lS_i = [], []
    for k, rows in enumerate(tables):
        lens = rng.integers(0 if k == 3 else 1, 4, n)  # table 3: some empty bags
        lS_o.append(np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64))
        lS_i.append(rng.integers(0, rows, int(lens.sum())).astype(np.int64))
    with torch.no_grad():
        p = net(torch.from_numpy(dense), [torch.from_numpy(o) for o in lS_o],
                [torch.from_numpy(i) for i in lS_i])
    off, idx = pvf_dlrm.to_eval_layout(lS_o, lS_i)
    back_o, back_i = pvf_dlrm.from_eval_layout(off, idx)
    for a, b in zip(back_o + back_i, lS_o + lS_i):
        assert np.array_equal(a.numpy(), b)
    state = {k: v.detach().numpy().astype(F32) for k, v in net.state_dict().items()}
    ev = {"dense_x": dense, "sparse_offsets": off, "sparse_indices": idx,
          "labels": (p.numpy()[:, 0] > 0.5).astype(np.int64), "logits": p.numpy().astype(F32)}
    return pvf_dlrm.config_of(dim, tables, bot, top, op, itself), state, ev


def write_dir(name, cfg, state, ev):
    d = os.path.join(FIXTURES, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    safetensors_io.save(os.path.join(d, "model.safetensors"), state, {"format": "pt"})
    safetensors_io.save(os.path.join(d, "eval.safetensors"), ev,
                        {"source": "tools/make_nn_fixtures.py", "torch": torch.__version__})
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"{d}: {size} bytes")


def main():
    torch.set_num_threads(1)
    os.makedirs(FIXTURES, exist_ok=True)
    path = os.path.join(FIXTURES, "nn.safetensors")
    safetensors_io.save(path, kernels(), {"source": "tools/make_nn_fixtures.py",
                                          "torch": torch.__version__})
    print(f"{path}: {os.path.getsize(path)} bytes")
    write_dir("bert-l4", *bert_l4())
    write_dir("dlrm-dot-itself", *dlrm_small("dot", True, 11))
    write_dir("dlrm-cat", *dlrm_small("cat", False, 12))


if __name__ == "__main__":
    main()
