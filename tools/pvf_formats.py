"""numpy reference of pvf's weight storage formats (worker/formats/format.h).

Every code and compute value here is meant to be bit-exact with the C engine:
all arithmetic is float32 with IEEE round-to-nearest-even.

A weight tensor is viewed as [rows, cols]: rows = shape[0], cols = product of
the other dims; a 1-D tensor is one row of length numel.

encode(fmt, w) returns a dict with
  codes   unsigned stored bit patterns, shape of w (uint32 for fp32, uint16 for
          fp16/bf16, uint8 for fp8-e4m3 and int8, 0..15 nibbles for int4)
  scales  float32 [rows * groups_per_row] (row-major), or None
  values  float32 compute values, shape of w
  packed  (int4 only) uint8 [(numel + 1) // 2], element 2k in the low nibble
          of byte k, element 2k+1 in the high nibble

Run this file to execute its self-test.
"""

import numpy as np

FORMATS = ("fp32", "fp16", "bf16", "fp8-e4m3", "int8", "int4")
SCALED = ("fp8-e4m3", "int8", "int4")
INT4_GROUP = 128

F32 = np.float32
E4M3_MAX = F32(448.0)


def parse(name):
    """Canonical format name ("fp8" is accepted for fp8-e4m3)."""
    if name == "fp8":
        return "fp8-e4m3"
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}")
    return name


def applies(fmt, ndim):
    """The format plan: scaled formats apply to weights (ndim >= 2) only;
    1-D tensors (biases) stay fp32 under them."""
    return parse(fmt) not in SCALED or ndim >= 2


# ---------------------------------------------------------------- bit views

def f32_bits(x):
    return np.array(x, dtype=F32, order="C").view(np.uint32)


def bits_f32(u):
    return np.array(u, dtype=np.uint32, order="C").view(F32)


# ---------------------------------------------------------------- fp16

def f32_to_f16(x):
    """binary32 -> binary16 pattern (uint16), round to nearest even.
    Overflow gives +-inf; NaN stays NaN with its sign and top payload bits,
    made quiet: sign|0x7E00|(mantissa >> 13), as the C code does."""
    x = np.asarray(x, dtype=F32)
    shape, x = x.shape, x.reshape(-1)  # 1-d inside: avoids 0-d scalar casting
    u = f32_bits(x).astype(np.uint64)  # room for the rounding carry
    sign = (u >> 16) & 0x8000
    a = u & 0x7FFFFFFF
    # Normal range: rebias the exponent (127 -> 15) and round off 13 bits.
    t = a.astype(np.int64) - 0x38000000
    t = np.maximum(t, 0).astype(np.uint64)
    normal = (t + 0x0FFF + ((t >> 13) & 1)) >> 13
    normal = np.minimum(normal, 0x7C00)  # rounds past 65504 -> inf
    # Subnormal range (|x| < 2^-14): units of 2^-24, exact scaling then rint.
    ax = bits_f32(a.astype(np.uint32))
    with np.errstate(over="ignore", invalid="ignore"):
        sub = np.rint(ax * F32(2.0 ** 24)).astype(np.uint64)
    h = np.where(a < 0x38800000, sub, normal)
    h = np.where(a > 0x7F800000, 0x7E00 | ((a & 0x7FFFFF) >> 13), h)
    return (sign | h).astype(np.uint16).reshape(shape)


def f16_to_f32(h):
    return np.asarray(h, dtype=np.uint16).view(np.float16).astype(F32)


# ---------------------------------------------------------------- bf16

def f32_to_bf16(x):
    """binary32 -> bfloat16 pattern (uint16), round to nearest even on the
    upper 16 bits; NaN keeps its sign and top payload and is made quiet."""
    x = np.asarray(x, dtype=F32)
    shape, x = x.shape, x.reshape(-1)
    u = f32_bits(x).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, (u >> 16) | 0x0040, rounded).astype(np.uint16).reshape(shape)


def bf16_to_f32(h):
    return bits_f32(np.asarray(h, dtype=np.uint32) << 16)


# ---------------------------------------------------------------- fp8 e4m3fn

def _e4m3_table():
    """Compute value of each of the 256 codes (float32, exact)."""
    t = np.empty(256, dtype=F32)
    for c in range(256):
        e, m = (c >> 3) & 0xF, c & 7
        if e == 0xF and m == 7:
            v = np.nan
        elif e == 0:
            v = m * 2.0 ** -9
        else:
            v = (1 + m / 8) * 2.0 ** (e - 7)
        t[c] = -v if c & 0x80 else v
    return t


E4M3_VALUES = _e4m3_table()


def f32_to_e4m3(x):
    """binary32 -> e4m3fn code (uint8), round to nearest even; finite values
    and infinities beyond the range saturate to +-448 (0x7E), NaN -> 0x7F."""
    x = np.asarray(x, dtype=F32)
    shape, x = x.shape, x.reshape(-1)
    sign = np.where(np.signbit(x), 0x80, 0).astype(np.int64)
    ax = np.abs(x)
    with np.errstate(invalid="ignore", over="ignore"):
        # Subnormals: multiples of 2^-9 (m == 8 is the smallest normal, code 8).
        m_sub = np.rint(ax * F32(512.0))
        # Normals: |x| = f * 2^k, f in [0.5, 1): e = k - 1, |x| / 2^e in [1, 2).
        _, k = np.frexp(ax)
        e = k.astype(np.int64) - 1
        r = np.ldexp(ax, (-e).astype(np.int32))  # exact power-of-two scaling
        q = np.rint((r - F32(1.0)) * F32(8.0))
    fin = np.isfinite(ax)
    m_sub = np.where(ax < F32(2.0 ** -6), m_sub, 0).astype(np.int64)
    q = np.where(fin, q, 0).astype(np.int64)
    carry = q == 8
    e = np.where(carry, e + 1, e)
    q = np.where(carry, 0, q)
    normal = np.clip((e + 7) << 3 | q, 0, 0x7E)
    mag = np.where(ax < F32(2.0 ** -6), m_sub, normal)
    mag = np.where(ax >= E4M3_MAX, 0x7E, mag)
    mag = np.where(np.isnan(ax), 0x7F, mag)
    return (sign | mag).astype(np.uint8).reshape(shape)


def e4m3_to_f32(c):
    return E4M3_VALUES[np.asarray(c, dtype=np.uint8)]


# ---------------------------------------------------------------- scales

def _absmax(a, axis):
    """max |a| along axis as float32, ignoring NaN (like a C loop
    `if (fabsf(w) > m) m = fabsf(w);` starting from 0)."""
    a = np.abs(np.asarray(a, dtype=F32))
    a = np.where(np.isnan(a), F32(0.0), a)
    return np.max(a, axis=axis, initial=F32(0.0)).astype(F32)


def _scale(amax, qmax):
    """s = amax / qmax in float32, 1 where amax == 0."""
    s = (amax / F32(qmax)).astype(F32)
    return np.where(amax == 0, F32(1.0), s).astype(F32)


def _as_rows(w):
    w = np.asarray(w, dtype=F32)
    if w.ndim == 0:
        return w.reshape(1, 1)
    if w.ndim == 1:
        return w.reshape(1, -1)
    return w.reshape(w.shape[0], -1)


# ---------------------------------------------------------------- encode

def encode(fmt, w):
    """Encodes fp32 weights w in format fmt (see the module docstring)."""
    fmt = parse(fmt)
    w = np.asarray(w, dtype=F32)
    shape = w.shape
    out = {"scales": None}
    if fmt == "fp32":
        out["codes"] = f32_bits(w).copy()
        out["values"] = w.copy()
        return out
    if fmt == "fp16":
        c = f32_to_f16(w)
        out["codes"], out["values"] = c, f16_to_f32(c)
        return out
    if fmt == "bf16":
        c = f32_to_bf16(w)
        out["codes"], out["values"] = c, bf16_to_f32(c)
        return out

    rows = _as_rows(w)
    nr, nc = rows.shape
    if fmt == "fp8-e4m3":
        s = _scale(_absmax(rows, 1), 448)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            x = (rows / s[:, None]).astype(F32)
        codes = f32_to_e4m3(x)
        values = (e4m3_to_f32(codes) * s[:, None]).astype(F32)
        out["codes"], out["scales"] = codes.reshape(shape), s
        out["values"] = values.reshape(shape)
        return out
    if fmt == "int8":
        s = _scale(_absmax(rows, 1), 127)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            q = np.clip(np.rint((rows / s[:, None]).astype(F32)), -127, 127)
        q = np.nan_to_num(q).astype(np.int64)
        values = (q.astype(F32) * s[:, None]).astype(F32)
        out["codes"] = (q & 0xFF).astype(np.uint8).reshape(shape)
        out["scales"], out["values"] = s, values.reshape(shape)
        return out
    if fmt == "int4":
        gpr = max(1, -(-nc // INT4_GROUP))  # groups per row
        scales = np.ones((nr, gpr), dtype=F32)
        q = np.zeros((nr, nc), dtype=np.int64)
        values = np.zeros((nr, nc), dtype=F32)
        for g in range(gpr):
            lo, hi = g * INT4_GROUP, min(nc, (g + 1) * INT4_GROUP)
            blk = rows[:, lo:hi]
            s = _scale(_absmax(blk, 1), 7)
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                qg = np.clip(np.rint((blk / s[:, None]).astype(F32)), -7, 7)
            qg = np.nan_to_num(qg).astype(np.int64)
            scales[:, g] = s
            q[:, lo:hi] = qg
            values[:, lo:hi] = (qg.astype(F32) * s[:, None]).astype(F32)
        nib = (q & 0xF).astype(np.uint8).reshape(-1)
        if nib.size % 2:
            nib = np.append(nib, np.uint8(0))
        out["packed"] = (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8)
        out["codes"] = (q & 0xF).astype(np.uint8).reshape(shape)
        out["scales"], out["values"] = scales.reshape(-1), values.reshape(shape)
        return out
    raise AssertionError(fmt)


def quantize_state_dict(state_dict, fmt):
    """Compute values (numpy float32, same shapes) of every tensor of a state
    dict stored in format fmt under the format plan (see applies()). Values
    may be numpy arrays or torch tensors; numpy arrays are returned."""
    fmt = parse(fmt)
    out = {}
    for name, t in state_dict.items():
        a = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
        a = a.astype(F32)
        out[name] = encode(fmt, a)["values"] if applies(fmt, a.ndim) else a.copy()
    return out


# ---------------------------------------------------------------- self-test

def _e4m3_bruteforce(x):
    """Nearest e4m3 code by exhaustive search (ties to even code), saturating."""
    mags = E4M3_VALUES[:0x7F].astype(np.float64)  # codes 0..0x7E
    out = []
    for v in np.asarray(x, dtype=F32):
        s = 0x80 if np.signbit(v) else 0
        if np.isnan(v):
            out.append(s | 0x7F)
            continue
        a = abs(float(v))
        if a >= 448:
            out.append(s | 0x7E)
            continue
        d = np.abs(mags - a)
        best = np.flatnonzero(d == d.min())
        c = best[0] if len(best) == 1 else [b for b in best if b % 2 == 0][0]
        out.append(s | int(c))
    return np.array(out, dtype=np.uint8)


def selftest(seed=0):
    rng = np.random.default_rng(seed)
    # Random bit patterns and values around every binade.
    x = np.concatenate([
        bits_f32(rng.integers(0, 2 ** 32, 200000, dtype=np.uint64).astype(np.uint32)),
        (rng.standard_normal(50000) * 10.0 ** rng.uniform(-12, 12, 50000)).astype(F32),
    ])
    ok = ~np.isnan(x)
    with np.errstate(over="ignore"):
        ref16 = x[ok].astype(np.float16).view(np.uint16)
    assert np.array_equal(f32_to_f16(x[ok]), ref16), "fp16 differs from numpy"
    nan16 = f32_to_f16(x[~ok])
    assert np.all((nan16 & 0x7E00) == 0x7E00), "fp16 NaN pattern: quiet"

    # e4m3: round trip of every code, and brute-force nearest-even.
    codes = np.arange(256, dtype=np.uint8)
    finite = ~np.isnan(E4M3_VALUES)
    assert np.array_equal(f32_to_e4m3(E4M3_VALUES[finite]), codes[finite])
    mids = (E4M3_VALUES[:0x7E].astype(np.float64) + E4M3_VALUES[1:0x7F]) / 2
    y = np.concatenate([
        mids.astype(F32), -mids.astype(F32),
        (rng.standard_normal(20000) * 10.0 ** rng.uniform(-4, 3, 20000)).astype(F32),
        np.array([np.inf, -np.inf, np.nan, 448, 464, 465, 1e30, 0, -0.0], dtype=F32),
    ])
    assert np.array_equal(f32_to_e4m3(y), _e4m3_bruteforce(y)), "e4m3 rounding"

    # Integer formats reproduce their values from codes and scales.
    w = rng.standard_normal((5, 300)).astype(F32)
    for fmt in ("int8", "int4", "fp8-e4m3"):
        enc = encode(fmt, w)
        assert enc["values"].dtype == F32 and enc["values"].shape == w.shape
    return True


if __name__ == "__main__":
    selftest()
    print("pvf_formats self-test passed")
