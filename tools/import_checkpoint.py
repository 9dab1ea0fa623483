"""Brings a user's DLRM or BERT checkpoint and eval inputs into the layout pvf
loads: OUT/config.json, OUT/model.safetensors and OUT/eval.safetensors with
PyTorch's reference outputs for fp32 and every storage format.

DLRM (facebookresearch/dlrm): the state dict as dlrm_s_pytorch.py saves it
(torch.save of a dict with "state_dict", or the state dict itself), the same
--arch-* values as the training run (--arch-mlp-top without the interaction's
width, which dlrm and this tool prepend), and eval inputs as a torch.save'd dict
or .npz with dense_x [N, 13], lS_o (per-table offsets, [T, N] or a list),
lS_i (per-table indices, a list of 1-D tensors or [T, N] for one-hot) and
optionally labels [N]:

    /usr/bin/python3 tools/import_checkpoint.py dlrm --state-dict model.pt \\
        --arch-sparse-feature-size 16 --arch-embedding-size 1000-2000-... \\
        --arch-mlp-bot 13-512-256-64-16 --arch-mlp-top 512-256-1 \\
        --arch-interaction-op dot --inputs batch.pt --out models/my-dlrm

BERT (Hugging Face BertForSequenceClassification): the checkpoint directory
(config.json + model.safetensors, or pytorch_model.bin, which is converted;
old LayerNorm names gamma/beta are renamed weight/bias) and eval inputs
tokenized by the model's own tokenizer, as a torch.save'd dict or .npz with
input_ids [N, S], optionally attention_mask, token_type_ids and labels:

    /usr/bin/python3 tools/import_checkpoint.py bert --checkpoint ./my-bert \\
        --inputs tokens.npz --out models/my-bert

Then `pvf infer --model OUT` checks pvf against these references.
"""

import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pvf_bert  # noqa: E402
import pvf_dlrm  # noqa: E402
import pvf_formats  # noqa: E402
import safetensors_io  # noqa: E402

F32 = np.float32


def load_inputs(path):
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    obj = torch.load(path, map_location="cpu")
    if not isinstance(obj, dict):
        sys.exit(f"{path}: expected a dict of tensors")
    return obj


def as_np(x, dtype=None):
    a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    return a.astype(dtype) if dtype else a


def references(make_model, state, run, eval_tensors):
    """logits (fp32) and logits_<format>: the model with the weights replaced
    by their compute values in each storage format."""
    for fmt in pvf_formats.FORMATS:
        values = state if fmt == "fp32" else pvf_formats.quantize_state_dict(state, fmt)
        m = make_model()
        m.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in values.items()})
        m.eval()
        with torch.no_grad():
            out = run(m).numpy().astype(F32)
        eval_tensors["logits" if fmt == "fp32" else "logits_" + fmt.replace("-", "_")] = out
        print(f"{fmt:9s} reference outputs {out.shape}")


def sizes(s):
    return [int(v) for v in s.split("-")]


def import_dlrm(args):
    ck = torch.load(args.state_dict, map_location="cpu")
    sd = ck.get("state_dict", ck) if isinstance(ck, dict) else ck
    state = {k: as_np(v, F32) for k, v in sd.items()}
    # dlrm_s_pytorch.py prepends the interaction's width to --arch-mlp-top; so does config.json
    emb = sizes(args.arch_embedding_size)
    top = [pvf_dlrm.interaction_size(args.arch_sparse_feature_size, len(emb),
                                     args.arch_interaction_op, args.arch_interaction_itself)]
    cfg = pvf_dlrm.config_of(args.arch_sparse_feature_size, emb, sizes(args.arch_mlp_bot),
                             top + sizes(args.arch_mlp_top), args.arch_interaction_op,
                             args.arch_interaction_itself)
    inp = load_inputs(args.inputs)
    dense = as_np(inp.get("dense_x", inp.get("X")), F32)
    lS_o = [torch.as_tensor(as_np(o, np.int64)) for o in inp["lS_o"]]
    lS_i = [torch.as_tensor(as_np(i, np.int64)) for i in inp["lS_i"]]
    off, idx = pvf_dlrm.to_eval_layout(lS_o, lS_i)
    ev = {"dense_x": dense, "sparse_offsets": off, "sparse_indices": idx}
    if "labels" in inp or "T" in inp:
        ev["labels"] = as_np(inp.get("labels", inp.get("T")), np.int64).reshape(-1)
    references(lambda: pvf_dlrm.net_from_config(cfg), state,
               lambda m: m(torch.from_numpy(dense), lS_o, lS_i), ev)
    write(args.out, cfg, state, ev, "click-through-rate")


def import_bert(args):
    with open(os.path.join(args.checkpoint, "config.json")) as f:
        cfg = json.load(f)
    st_path = os.path.join(args.checkpoint, "model.safetensors")
    if os.path.exists(st_path):
        tensors, _ = safetensors_io.load(st_path)
    else:
        tensors = torch.load(os.path.join(args.checkpoint, "pytorch_model.bin"), map_location="cpu")
    state = {}
    for k, v in tensors.items():
        k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if k.endswith("position_ids"):
            continue  # a buffer, not a weight
        state[k] = as_np(v, F32)
    if "id2label" not in cfg:
        n = cfg.get("num_labels", state["classifier.weight"].shape[0])
        cfg["id2label"] = {str(i): f"LABEL_{i}" for i in range(n)}
    cfg.setdefault("type_vocab_size", 2)
    cfg.setdefault("layer_norm_eps", 1e-12)
    inp = load_inputs(args.inputs)
    ids = torch.as_tensor(as_np(inp["input_ids"], np.int64))
    mask = torch.as_tensor(as_np(inp.get("attention_mask", np.ones(ids.shape)), np.int64))
    types = torch.as_tensor(as_np(inp.get("token_type_ids", np.zeros(ids.shape)), np.int64))
    ev = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()}
    if "labels" in inp:
        ev["labels"] = as_np(inp["labels"], np.int64).reshape(-1)
    references(lambda: pvf_bert.BertForSequenceClassification(cfg), state,
               lambda m: m(ids, mask, types), ev)
    write(args.out, cfg, state, ev, "text-classification")
    for extra in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if os.path.exists(os.path.join(args.checkpoint, extra)):
            shutil.copy(os.path.join(args.checkpoint, extra), args.out)


def write(out, cfg, state, ev, task):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    safetensors_io.save(os.path.join(out, "model.safetensors"), state, {"format": "pt"})
    safetensors_io.save(os.path.join(out, "eval.safetensors"), ev,
                        {"task": task, "source": "tools/import_checkpoint.py"})
    print(f"wrote {out}: check it with  pvf infer --model {out}")


def main():
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="kind", required=True)
    d = sub.add_parser("dlrm")
    d.add_argument("--state-dict", required=True)
    d.add_argument("--arch-sparse-feature-size", type=int, required=True)
    d.add_argument("--arch-embedding-size", required=True)
    d.add_argument("--arch-mlp-bot", required=True)
    d.add_argument("--arch-mlp-top", required=True)
    d.add_argument("--arch-interaction-op", default="dot", choices=["dot", "cat"])
    d.add_argument("--arch-interaction-itself", action="store_true")
    d.add_argument("--inputs", required=True)
    d.add_argument("--out", required=True)
    b = sub.add_parser("bert")
    b.add_argument("--checkpoint", required=True)
    b.add_argument("--inputs", required=True)
    b.add_argument("--out", required=True)
    args = ap.parse_args()
    (import_dlrm if args.kind == "dlrm" else import_bert)(args)


if __name__ == "__main__":
    main()
