"""How much a bound linearized at golden could settle of a Llama 4 fault's
carried sequences, with its remainder accounted for stage by stage.

    /usr/bin/python3 tools/llama4_remainder.py [MODEL_DIR] [--faults N]
        [--layer L] [--from-stage S[,S...]] [--seed S]

The residual stream's stages are numbered 2L (layer L's attention, its
input) and 2L + 1 (its feed-forward part); 2 * layers is the head. For N
single bit flips of layer L's routed experts (gate_up and down alternating,
bit = fault index mod 32, finite changes below 1e6), in float64 with the
reference model (tools/llama4_ref.py), linearized at the input of stage S
(default 2L + 2, the next attention, where the fast path's first carried
stage starts; 2L + 3 is after that attention, computed exactly), with the
MoE routing held at golden's:

    dm = g_S . d_S + sum over stages k >= S and rows t of g_{k+1,t} . r_{k,t}
         + the head's own remainder,

exactly, where d_S is the change at stage S's input, g_k,t the gradient of a
top-1 margin (top logit less class v's) with respect to row t of stage k's
input at golden, and r_k,t = stage k's exact change of row t less its
Jacobian at golden times the change of its input. A bound keeps the first
term (a dot product per changed row) and bounds the rest by
R = sum |g_{k+1,t}| |r_{k,t}| (Cauchy-Schwarz): this tool computes R from the
true remainders; a sound bound would have to bound |r_k,t| from second
derivatives and the change's norms, looser by some factor. So it prints,
per bit band, the sequences a fault reaches, those where no prediction
flips, those whose golden routing of a later MoE layer changes (the
linearization does not hold there: carried; a sound bound would also have
to show that the routing holds, which this tool takes as given for the
others), and of the sequences reached, those settled when
|first term| + f R < margin for every scored position and class, at
looseness f = 0 (the first order alone: not a bound), 1, 10, 100, 1000.
"wrong" counts settled sequences where a prediction does flip (at f >= 1
there must be none). Gradients are taken for the NEAR nearest classes of
each position (default 3); the others take the largest of their R. "far
g" counts the sequences where nothing flips whose other classes a norm
bound of the head input's change, g times the true one, would clear.

Not a bound: an estimate of what one built this way could clear, to decide
whether to build it (bench/README.md, 2026-11-30).
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama4_ref as ref  # noqa: E402
from llama4_first_order import faults, open_model  # noqa: E402


class Model:
    """The reference forward pass cut into residual stages, routing of the
    MoE layers optionally held fixed."""

    def __init__(self, p, cfg, T):
        self.p, self.cfg, self.T = p, cfg, T
        self.layers = cfg["num_hidden_layers"]
        self.K = 2 * self.layers
        self.pos = torch.arange(T)
        self.inv_freq = ref.rope_inv_freq(cfg)

    def attn(self, L, x):
        c, P = self.cfg, self.p
        N, T = x.shape[0], x.shape[1]
        nh, nkv, d = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        pre = f"model.layers.{L}."
        a = ref.rms_norm(x, c["rms_norm_eps"], P[pre + "input_layernorm.weight"])
        q = (a @ P[pre + "self_attn.q_proj.weight"].T).view(N, T, nh, d)
        k = (a @ P[pre + "self_attn.k_proj.weight"].T).view(N, T, nkv, d)
        v = (a @ P[pre + "self_attn.v_proj.weight"].T).view(N, T, nkv, d)
        if ref.layer_uses_rope(c, L):
            q, k = ref.rope(q, self.pos, self.inv_freq), ref.rope(k, self.pos, self.inv_freq)
            if c["use_qk_norm"]:
                q, k = ref.rms_norm(q, c["rms_norm_eps"]), ref.rms_norm(k, c["rms_norm_eps"])
            mask = ref.attn_mask(T, c.get("attention_chunk_size"))
        else:
            if c["attn_temperature_tuning"]:
                temp = ref.attn_temperature(self.pos, c["floor_scale"], c["attn_scale"]).to(q.dtype)
                q = q * temp[None, :, None, None]
            mask = ref.attn_mask(T, None)
        o = ref.attention(q, k, v, mask).reshape(N, T, nh * d)
        return x + o @ P[pre + "self_attn.o_proj.weight"].T

    def ffn(self, L, x, idx=None):
        """idx: the routing to hold [N*T, k], or None to route; returns (x, idx)."""
        c, P = self.cfg, self.p
        N, T, H = x.shape
        pre = f"model.layers.{L}."
        f = ref.rms_norm(x, c["rms_norm_eps"], P[pre + "post_attention_layernorm.weight"])
        ff = pre + "feed_forward."
        if not ref.layer_is_moe(c, L):
            return x + ref.swiglu_mlp(f, P[ff + "gate_proj.weight"], P[ff + "up_proj.weight"],
                                      P[ff + "down_proj.weight"]), None
        flat = f.reshape(N * T, H)
        logits = flat @ P[ff + "router.weight"].T
        if idx is None:
            idx = torch.topk(logits, c["num_experts_per_tok"], dim=-1).indices
        score = torch.sigmoid(logits.gather(-1, idx))
        y = ref.swiglu_mlp(flat, P[ff + "shared_expert.gate_proj.weight"],
                           P[ff + "shared_expert.up_proj.weight"], P[ff + "shared_expert.down_proj.weight"])
        y = y + ref.experts(flat, idx, score, P[ff + "experts.gate_up_proj"], P[ff + "experts.down_proj"])
        return x + y.view(N, T, H), idx

    def stage(self, k, x, idx=None):
        """Stage k (k < K) of x; idx: held routing of a MoE stage. -> (x, idx)"""
        if k % 2 == 0:
            return self.attn(k // 2, x), None
        return self.ffn(k // 2, x, idx)

    def head(self, x):
        return ref.rms_norm(x, self.cfg["rms_norm_eps"], self.p["model.norm.weight"]) @ self.p["lm_head.weight"].T

    def states(self, ids):
        """Every stage's input x[0..K] and the routing per stage."""
        xs = [self.p["model.embed_tokens.weight"][ids]]
        route = {}
        for k in range(self.K):
            x, idx = self.stage(k, xs[-1])
            xs.append(x)
            if idx is not None:
                route[k] = idx
        return xs, route

    def run_from(self, S, x, route):
        """Logits from stage S's input x, routing held at route's."""
        for k in range(S, self.K):
            x, _ = self.stage(k, x, route.get(k))
        return self.head(x)


def jvp(fn, x, dx):
    """fn's derivative at x along dx, by a central difference (float64)."""
    scale = float(dx.abs().max())
    if scale == 0.0:
        return torch.zeros_like(fn(x))
    h = 1e-4 * max(float(x.abs().max()), 1e-3) / scale
    return (fn(x + h * dx) - fn(x - h * dx)) / (2 * h)


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("model", nargs="?", default=os.path.join(here, "..", "models", "fortunes-llama4"))
    ap.add_argument("--faults", type=int, default=32)
    ap.add_argument("--layer", type=int, default=1)
    ap.add_argument("--from-stage", dest="stages", default=None)
    ap.add_argument("--near", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.faults < 1 or a.near < 1:
        sys.exit("llama4_remainder: --faults and --near must be at least 1")
    cfg, p64, ids, sf = open_model(a.model, "llama4_remainder", a.layer)
    K = 2 * cfg["num_hidden_layers"]
    try:
        S_list = [int(s) for s in (a.stages or str(2 * a.layer + 2)).split(",")]
    except ValueError:
        sys.exit(f"llama4_remainder: --from-stage {a.stages}: not a list of integers")
    for S in S_list:
        if not 2 * a.layer + 2 <= S < K:
            sys.exit(f"llama4_remainder: --from-stage {S}: must be after the faulty stage "
                     f"({2 * a.layer + 1}) and before the head ({K})")
    N, T = ids.shape
    gold_m = Model(p64, cfg, T)
    with torch.no_grad():
        xs, route = gold_m.states(ids)
        logits = gold_m.head(xs[K])
    top = logits.argmax(-1)  # [N, T]
    margin = logits.gather(-1, top[..., None]) - logits  # [N, T, V]
    near = margin.clone()
    near.scatter_(-1, top[..., None], float("inf"))
    near = near.topk(a.near, dim=-1, largest=False).indices  # [N, T, near]

    # |gradient| of each scored position's margin against its near classes,
    # with respect to every row of every stage input from min(S) on, at golden.
    S0 = min(S_list)
    gnorm = torch.zeros(N, T, a.near, K + 1, T, dtype=torch.float64)
    for n in range(N):
        leaves = {}
        x = xs[S0][n:n + 1].clone().requires_grad_(True)
        leaves[S0] = x
        for k in range(S0, K):
            idx = route.get(k)
            if idx is not None:
                idx = idx.view(N, T, -1)[n]
            x, _ = gold_m.stage(k, x, idx)
            x.retain_grad()
            leaves[k + 1] = x
        out = gold_m.head(x)[0]  # [T, V]
        for q in range(sf, T):
            for j in range(a.near):
                m = out[q, top[n, q]] - out[q, near[n, q, j]]
                grads = torch.autograd.grad(m, [leaves[k] for k in range(S0, K + 1)], retain_graph=True)
                for k, g in zip(range(S0, K + 1), grads):
                    gnorm[n, q, j, k] = g[0].norm(dim=-1)

    # The classes beyond the near ones, bounded by norms at the head: class v
    # stays below the top one while |da| < margin_v / |(W_top - W_v) w|, da
    # the change of the final norm's normalized input.
    wrow = gold_m.p["lm_head.weight"] * gold_m.p["model.norm.weight"][None, :]
    diff = (wrow[top][:, :, None, :] - wrow[None, None, :, :]).norm(dim=-1)  # [N, T, V]
    clear_far = torch.where(diff > 0, margin / diff.clamp_min(1e-300), torch.full_like(margin, float("inf")))
    clear_far.scatter_(-1, top[..., None], float("inf"))
    clear_far.scatter_(-1, near, float("inf"))
    mu_far = clear_far.amin(-1)  # [N, T]
    a_gold = ref.rms_norm(xs[K], cfg["rms_norm_eps"])

    looseness = (0, 1, 10, 100, 1000)
    bands = {}
    for name, el, bit, w, dw in faults(p64, a.layer, a.faults, a.seed):
        W = p64[name]
        t = W.clone()
        t[el] = w + dw
        fm = Model({**p64, name: t}, cfg, T)
        with torch.no_grad():
            xf, route_f = fm.states(ids)
            exact = fm.head(xf[K]) - logits
        dm_exact = exact.gather(-1, top[..., None]) - exact
        flipped = ((logits + exact).argmax(-1) != top)[:, sf:].any(-1)  # [N]
        reached = (xf[2 * a.layer + 2] != xs[2 * a.layer + 2]).any(-1).any(-1)  # [N]
        rerouted = torch.zeros(N, dtype=torch.bool)
        for k, idx in route.items():
            if k > 2 * a.layer + 1:
                rerouted |= (route_f[k] != idx).view(N, T, -1).any(-1).any(-1)
        band = "bits 0-17" if bit < 18 else "bits 18-31"
        da = (ref.rms_norm(xf[K], cfg["rms_norm_eps"]) - a_gold).norm(dim=-1)  # [N, T]
        far_ratio = (da / mu_far)[:, sf:].amax(-1)  # [N]: > 1 / g: a g-times loose |da| fails
        for S in S_list:
            with torch.no_grad():
                first = jvp(lambda x: gold_m.run_from(S, x, route), xs[S], xf[S] - xs[S])
                # per-stage true remainders, weighted by the margins' gradient norms
                R = torch.zeros(N, T, a.near, dtype=torch.float64)
                for k in range(S, K):
                    idx = route.get(k)
                    d = xf[k] - xs[k]
                    lin = jvp(lambda x: gold_m.stage(k, x, idx)[0], xs[k], d)
                    r = (gold_m.stage(k, xf[k], idx)[0] - xs[k + 1] - lin).norm(dim=-1)  # [N, T]
                    R += (gnorm[:, :, :, k + 1, :] * r[:, None, None, :]).sum(-1)
                rh = gold_m.head(xf[K]) - logits - jvp(gold_m.head, xs[K], xf[K] - xs[K])
            dm_first = first.gather(-1, top[..., None]) - first  # [N, T, V]
            rh_m = (rh.gather(-1, top[..., None]) - rh).abs()
            # R per class: the near classes' own, the others the largest of them
            Rv = R.max(-1).values[..., None].expand_as(margin).clone()
            Rv.scatter_(-1, near, R)
            Rv += rh_m
            true_rem = (dm_exact - dm_first).abs()
            valid = torch.isfinite(margin) & (margin > 0)
            b = bands.setdefault((S, band), {"faults": 0, "sequences": 0, "reached": 0,
                                              "reached, no flip": 0, "rerouted": 0, "R below true": 0,
                                              **{f"far g={g}": 0 for g in (1, 10, 100)},
                                              **{f"f={f}": 0 for f in looseness},
                                              **{f"wrong f={f}": 0 for f in looseness}})
            b["faults"] += 1
            b["sequences"] += N
            b["reached"] += int(reached.sum())
            b["reached, no flip"] += int((reached & ~flipped).sum())
            b["rerouted"] += int(rerouted.sum())
            # the identity's check: the near classes' R holds the true remainder
            below = (true_rem.gather(-1, near) > (R + rh_m.gather(-1, near)) * 1.01 + 1e-9)[:, sf:]
            b["R below true"] += int((below.any(-1).any(-1) & ~rerouted).sum())
            for g in (1, 10, 100):
                b[f"far g={g}"] += int((reached & ~flipped & (far_ratio * g < 1)).sum())
            for f in looseness:
                ok = (dm_first.abs() + f * Rv < margin) | ~valid
                clear = ok[:, sf:].all(-1).all(-1) & ~rerouted & reached
                b[f"f={f}"] += int(clear.sum())
                b[f"wrong f={f}"] += int((clear & flipped).sum())
    for (S, band), b in sorted(bands.items()):
        print(f"from stage {S}, {band}: " + ", ".join(f"{k} {v}" for k, v in b.items()))


if __name__ == "__main__":
    main()
