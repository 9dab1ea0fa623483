"""Minimal reader and writer for Hugging Face safetensors files (numpy only).

Layout: 8-byte little-endian header length N, N bytes of JSON (padded with
spaces to a multiple of 8), then one contiguous data buffer. The JSON maps each
tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets into
the data buffer) and may hold a "__metadata__" object of string values.

The writer stores tensors ordered by element size (largest first), then by
name, so every tensor starts at an offset aligned to its element size and the
buffer has no holes.

bfloat16 (no numpy dtype): save bf16(x) to store float32 x as "BF16" (rounded
to nearest even); load returns BF16 tensors widened to float32.
"""

import json
import struct

import numpy as np

# safetensors dtype tag <-> little-endian numpy dtype.
_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_TAGS = {dt: tag for tag, dt in _DTYPES.items()}


class bf16:
    """Marks a float32 array to be stored as BF16 (round to nearest even)."""

    def __init__(self, x):
        import pvf_formats  # noqa: F401  (same directory)

        self.bits = pvf_formats.f32_to_bf16(np.asarray(x, dtype=np.float32))


def _tag_of(arr):
    dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    for tag, d in _DTYPES.items():
        if d == dt:
            return tag
    raise TypeError(f"dtype {arr.dtype} has no safetensors tag")


def save(path, tensors, metadata=None):
    """Writes a dict name -> numpy array (dtype must have a tag above)."""
    arrays = {}
    for name, value in tensors.items():
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved")
        if isinstance(value, bf16):
            arrays[name] = ("BF16", np.ascontiguousarray(value.bits, dtype="<u2"))
            continue
        arr = np.asarray(value)
        tag = _tag_of(arr)
        arrays[name] = (tag, np.ascontiguousarray(arr, dtype=_DTYPES[tag]))
    order = sorted(arrays, key=lambda n: (-arrays[n][1].dtype.itemsize, n))

    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name in order:
        tag, arr = arrays[name]
        header[name] = {
            "dtype": tag,
            "shape": [int(d) for d in arr.shape],
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)

    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name in order:
            f.write(arrays[name][1].tobytes())


def load(path):
    """Returns (dict name -> numpy array, metadata dict) in file order."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    data = memoryview(blob)[8 + n :]
    metadata = header.pop("__metadata__", {}) or {}
    entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    tensors = {}
    expect = 0
    for name, e in entries:
        begin, end = e["data_offsets"]
        if begin != expect:
            raise ValueError(f"{path}: hole or overlap before {name}")
        dt = np.dtype("<u2") if e["dtype"] == "BF16" else _DTYPES[e["dtype"]]
        count = int(np.prod(e["shape"], dtype=np.int64))
        if end - begin != count * dt.itemsize:
            raise ValueError(f"{path}: {name} size does not match its shape")
        arr = np.frombuffer(data[begin:end], dtype=dt).reshape(e["shape"])
        if e["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = arr.copy()
        expect = end
    if expect != len(data):
        raise ValueError(f"{path}: trailing bytes after the data buffer")
    return tensors, metadata
