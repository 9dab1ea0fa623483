"""Writes the test fixtures computed by PyTorch / numpy:

    tests/fixtures/kernels.safetensors   inputs and outputs of the engine's
                                         kernels (conv, pool, linear, relu,
                                         softmax) and of a random-weight LeNet
    tests/fixtures/formats.safetensors   codes, scales and compute values of
                                         every storage format (pvf_formats.py)

    /usr/bin/python3 tools/make_fixtures.py

Deterministic: fixed seeds, outputs computed with one thread.
"""

import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pvf_formats as pf  # noqa: E402
import safetensors_io  # noqa: E402
from train_fmnist_lenet import LeNet  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
F32 = np.float32


def t2n(t):
    return t.detach().cpu().numpy().astype(F32)


def randn(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float32)


# ---------------------------------------------------------------- kernels

def kernels():
    g = torch.Generator().manual_seed(20240501)
    out = {}

    x, w, b = randn(g, 2, 3, 9, 9), randn(g, 4, 3, 3, 3), randn(g, 4)
    out.update(conv_x=x, conv_w=w, conv_b=b,
               conv_y_p1=F.conv2d(x, w, b, padding=1),
               conv_y_p0=F.conv2d(x, w, b, padding=0),
               conv_y_s2=F.conv2d(x, w, b, stride=2, padding=1))

    px, px7 = randn(g, 2, 4, 8, 8), randn(g, 1, 2, 7, 7)
    out.update(pool_x=px, pool_y=F.max_pool2d(px, 2),
               pool_x7=px7, pool_y7=F.max_pool2d(px7, 2))

    lx, lw, lb = randn(g, 5, 7), randn(g, 3, 7), randn(g, 3)
    out.update(lin_x=lx, lin_w=lw, lin_b=lb, lin_y=F.linear(lx, lw, lb))

    rx = randn(g, 64)
    rx[::7] = 0.0  # exact (positive) zeros among both signs
    out.update(relu_x=rx, relu_y=F.relu(rx))

    sx = randn(g, 4, 10)
    sx[1] += 1000.0  # overflows exp() without max subtraction
    sx[2] -= 1000.0  # underflows exp() without max subtraction
    sx[3, 4] = float("-inf")
    out.update(softmax_x=sx, softmax_y=F.softmax(sx, dim=-1))

    torch.manual_seed(7)  # LeNet's default init draws from the global RNG
    net = LeNet().eval()
    lenet_x = randn(g, 3, 1, 28, 28)
    with torch.no_grad():
        out.update(lenet_x=lenet_x, lenet_y=net(lenet_x))
    out.update(net.state_dict())

    assert torch.isfinite(out["softmax_y"]).all()
    return {k: t2n(v) for k, v in out.items()}


# ---------------------------------------------------------------- formats

ROWS, COLS = 6, 300


def format_weights():
    """[6, 300] weights with varied per-row scales and exact rounding ties."""
    rng = np.random.default_rng(20240502)
    w = rng.standard_normal((ROWS, COLS)).astype(F32)
    w[0] = 0.0                                   # all zero: scale 1
    w[1] *= F32(1e-6)                            # tiny
    # Row 2: max 127 -> int8 scale exactly 1, so x.5 values are int8 ties.
    w[2] = np.clip(w[2] * 30, -120, 120)
    w[2, :10] = [127, 0.5, 1.5, 2.5, -2.5, -3.5, 100.5, -126.5, 64.5, -0.5]
    # Row 3: every int4 group has max 7 * 0.25 -> scale 0.25, ties at odd
    # multiples of 0.125; fp8 scale is 1.75 / 448 = 2^-8 as well.
    w[3] = rng.integers(-14, 15, COLS) * F32(0.125)
    for lo in range(0, COLS, pf.INT4_GROUP):
        w[3, lo] = 1.75
        w[3, lo + 1:lo + 6] = [0.125, -0.375, 0.625, -0.875, 1.625]
    # Row 4: max 448 -> fp8 scale 1, values at e4m3 midpoints, plus fp16 and
    # bf16 ties and a negative zero.
    w[4] *= 30
    w[4, :22] = [448, 1.0625, 1.1875, 3.125, 17, 19, 272, 304, 432,
                 2.5 * 2 ** -9, 3.5 * 2 ** -9, 7.5 * 2 ** -9, 0.5 * 2 ** -9, 1.5 * 2 ** -9,
                 -1.0625, -19,
                 1 + 2 ** -11, 1 + 3 * 2 ** -11,   # fp16 ties
                 1 + 2 ** -8, 1 + 3 * 2 ** -8,     # bf16 ties
                 -0.0, 2 ** -7]
    w[5] *= F32(1e3)                             # large
    return w.astype(F32)


def specials():
    vals = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-8, 5.96e-8, 65504, 65519, 65520,
            1e5, -3.4e38, 1.0000001, 2 ** -9, 2 ** -10, 3 * 2 ** -11, 448, 464, 465,
            1e-3, 2 ** -24, 2 ** -25, 3 * 2 ** -25, 2 ** -14, 6.1e-5, -1.5, 0.1, -0.3,
            1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8,
            3.3895314e38, 3.4028235e38, 2 ** -6, 2 ** -7, 7.5 * 2 ** -9, 4.5 * 2 ** -9,
            1.0625, 1.1875, 17, 19, 240, 432, 500, 1e30, -1e-30, -448, -2.5]
    x = np.array(vals, dtype=F32)
    extra = pf.bits_f32(np.array([
        0x00000001,  # smallest fp32 subnormal
        0x80000001,  # its negative
        0x007FFFFF,  # largest fp32 subnormal
        0xFFC00000,  # negative quiet NaN
        0x7F800001,  # signalling NaN
        0x7F7FFFFF,  # largest finite fp32
    ], dtype=np.uint32))
    return np.concatenate([x, extra]).astype(F32)


def torch_bf16_bits(x):
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=F32)).to(torch.bfloat16)
    return t.view(torch.int16).numpy().view(np.uint16)


def cross_check(x):
    """fp16 against numpy, bf16 against torch (NaN patterns checked apart:
    torch makes every NaN +0x7FC0, pvf keeps the sign)."""
    ok = ~np.isnan(x)
    with np.errstate(over="ignore"):
        assert np.array_equal(pf.f32_to_f16(x[ok]), x[ok].astype(np.float16).view(np.uint16))
    assert np.array_equal(pf.f32_to_bf16(x[ok]), torch_bf16_bits(x[ok]))
    nan = x[~ok]
    sign16 = np.where(np.signbit(nan), 0x8000, 0)
    assert np.all(pf.f32_to_f16(nan) == sign16 | 0x7E00)
    assert np.all(pf.f32_to_bf16(nan) & 0x0040)


def formats():
    w = format_weights()
    s = specials()

    # Random vectors for the cross-checks, including values rounding to inf.
    rng = np.random.default_rng(20240503)
    rnd = np.concatenate([
        (rng.standard_normal(100000) * 10.0 ** rng.uniform(-40, 38, 100000)).astype(F32),
        pf.bits_f32(rng.integers(0, 2 ** 32, 100000, dtype=np.uint64).astype(np.uint32)),
        pf.bits_f32(np.arange(0x7F7F0000, 0x7F800000, 7, dtype=np.uint32)),  # near max
        pf.bits_f32(np.arange(0x477FE000, 0x47800000, 1, dtype=np.uint32)),  # near 65520
    ])
    for x in (w.reshape(-1), s, rnd):
        cross_check(x)
    assert pf.selftest()

    out = {"w": w}
    enc = {f: pf.encode(f, w) for f in ("fp16", "bf16", "fp8-e4m3", "int8", "int4")}
    for fmt, e in enc.items():
        key = fmt.split("-")[0]
        out[f"{key}_codes"] = e["codes"].reshape(-1).astype(np.int32)
        out[f"{key}_values"] = e["values"].reshape(-1).astype(F32)
        if e["scales"] is not None:
            out[f"{key}_scales"] = e["scales"].astype(F32)
    out["int4_packed"] = enc["int4"]["packed"]

    # Consistency: packed nibbles, scale counts, ties really hit.
    p = out["int4_packed"]
    assert p.shape == (ROWS * COLS // 2,)
    assert np.array_equal(np.stack([p & 0xF, p >> 4], 1).reshape(-1), out["int4_codes"])
    assert out["int4_scales"].shape == (ROWS * 3,)
    assert out["fp8_scales"].shape == out["int8_scales"].shape == (ROWS,)
    assert out["int8_scales"][2] == 1 and np.all(out["int4_scales"][9:12] == 0.25)
    assert out["fp8_scales"][4] == 1 and out["int8_scales"][0] == 1
    assert list(out["int8_codes"][600:610]) == [127, 0, 2, 2, 254, 252, 100, 130, 64, 0]
    for fmt in ("fp16", "bf16", "fp8", "int8", "int4"):
        assert np.all(np.isfinite(out[f"{fmt}_values"]))

    out["specials"] = s
    out["specials_f16"] = pf.f32_to_f16(s).astype(np.int32)
    out["specials_bf16"] = pf.f32_to_bf16(s).astype(np.int32)
    out["specials_e4m3"] = pf.f32_to_e4m3(s).astype(np.int32)
    return out


def main():
    torch.set_num_threads(1)
    os.makedirs(FIXTURES, exist_ok=True)
    files = {
        "kernels.safetensors": (kernels(), {"source": "tools/make_fixtures.py",
                                            "torch": torch.__version__}),
        "formats.safetensors": (formats(), {"source": "tools/make_fixtures.py",
                                            "int4_group": str(pf.INT4_GROUP)}),
    }
    for name, (tensors, meta) in files.items():
        path = os.path.join(FIXTURES, name)
        safetensors_io.save(path, tensors, meta)
        back, _ = safetensors_io.load(path)  # round trip through the reader
        assert back.keys() == tensors.keys()
        for k in tensors:
            assert np.array_equal(back[k], tensors[k], equal_nan=True), k
        print(f"{path}: {os.path.getsize(path)} bytes, {len(tensors)} tensors")


if __name__ == "__main__":
    main()
