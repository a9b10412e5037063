"""Reads and writes the safetensors format with the standard library and numpy only.

The layout (https://github.com/huggingface/safetensors, "Format"): an 8-byte little-endian header length N,
N bytes of UTF-8 JSON mapping tensor names to {dtype, shape, data_offsets} plus an optional "__metadata__"
map of strings, then the data section, which the tensors' byte ranges tile exactly. Everything is checked
before an array is made; nothing in a file chooses code to run.
"""

import json
import struct

import numpy as np

# safetensors dtype -> numpy dtype (little-endian). BF16 has no numpy type: it is read as float32 and written
# back from float32 (round to nearest even), see _bf16_to_f32 / _f32_to_bf16.
_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES = {v: k for k, v in _DTYPES.items()}
_WIDTH = {"BF16": 2, **{k: v.itemsize for k, v in _DTYPES.items()}}

MAX_HEADER_BYTES = 16 * 1024 * 1024
"""The largest header accepted (the same bound as @flare/core's decoder)."""


class SafetensorsError(ValueError):
    """A byte string that is not a well-formed safetensors file."""


def _bf16_to_f32(raw):
    halves = np.frombuffer(raw, dtype="<u2").astype("<u4")
    return (halves << 16).view("<f4")


def _f32_to_bf16(a):
    bits = np.ascontiguousarray(a, dtype="<f4").view("<u4")
    # Round to nearest, ties to even; NaN keeps a quiet NaN.
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")
    nan = np.isnan(a.reshape(-1))
    if nan.any():
        rounded[nan] = 0x7FC0
    return rounded


def dtype_name(array):
    """The safetensors dtype name of a numpy array (F32, I64, ...)."""
    dt = np.dtype(array.dtype)
    for name, d in _DTYPES.items():
        if dt == d or dt == d.newbyteorder(">"):
            return name
    raise TypeError(f"dtype {dt} has no safetensors equivalent")


def loads(data, max_bytes=None):
    """Decodes a safetensors byte string into ({name: numpy array}, metadata dict, {name: dtype name}).

    Arrays are views of ``data`` when it is writable (a bytearray), so keep ``data`` alive and unchanged while
    they are used. BF16 tensors are returned as float32 copies.
    """
    view = memoryview(data)
    if len(view) < 8:
        raise SafetensorsError(f"{len(view)} bytes is shorter than the 8-byte header length")
    (n,) = struct.unpack_from("<Q", view, 0)
    if n > MAX_HEADER_BYTES:
        raise SafetensorsError(f"header of {n} bytes exceeds {MAX_HEADER_BYTES}")
    if 8 + n > len(view):
        raise SafetensorsError(f"header declares {n} bytes but only {len(view) - 8} follow")
    data_len = len(view) - 8 - n
    if max_bytes is not None and data_len > max_bytes:
        raise SafetensorsError(f"data section of {data_len} bytes exceeds {max_bytes}")
    try:
        header = json.loads(bytes(view[8 : 8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise SafetensorsError(f"header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise SafetensorsError("header must be a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SafetensorsError("__metadata__ must map strings to strings")
    entries = []
    for name, e in header.items():
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError(f'tensor "{name}": entry must have exactly dtype, shape and data_offsets')
        dt = e["dtype"]
        if dt not in _WIDTH:
            raise SafetensorsError(f'tensor "{name}": unsupported dtype {dt!r}')
        shape = e["shape"]
        if not isinstance(shape, list) or len(shape) > 16 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise SafetensorsError(f'tensor "{name}": shape must be at most 16 non-negative integers')
        off = e["data_offsets"]
        if not isinstance(off, list) or len(off) != 2 or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in off):
            raise SafetensorsError(f'tensor "{name}": data_offsets must be two non-negative integers')
        begin, end = off
        if begin > end or end > data_len:
            raise SafetensorsError(f'tensor "{name}": bytes [{begin}, {end}) lie outside the {data_len}-byte data section')
        count = 1
        for d in shape:
            count *= d
        if end - begin != count * _WIDTH[dt]:
            raise SafetensorsError(f'tensor "{name}": {end - begin} bytes for {count} elements of {dt}')
        entries.append((begin, end, name, dt, shape))
    covered = 0
    for begin, end, name, _, _ in sorted(entries):
        if begin != covered:
            raise SafetensorsError(f'tensor "{name}" starts at byte {begin}, expected {covered} (overlap or hole)')
        covered = end
    if covered != data_len:
        raise SafetensorsError(f"tensors cover {covered} of {data_len} data bytes")
    base = 8 + n
    tensors, dtypes = {}, {}
    for begin, end, name, dt, shape in entries:
        raw = view[base + begin : base + end]
        if begin == end:
            a = np.zeros(shape, dtype="<f4" if dt == "BF16" else _DTYPES[dt])
        elif dt == "BF16":
            a = _bf16_to_f32(bytes(raw)).reshape(shape)
        else:
            a = np.frombuffer(raw, dtype=_DTYPES[dt]).reshape(shape)
        tensors[name] = a
        dtypes[name] = dt
    return tensors, metadata, dtypes


def load(path):
    """Reads a .safetensors file: ({name: numpy array}, metadata)."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    tensors, metadata, _ = loads(data)
    return tensors, metadata


def encode_parts(tensors, metadata=None, dtypes=None):
    """Encodes {name: array} as a list of byte buffers whose concatenation is a safetensors file.

    Tensor data is not copied when an array is already contiguous little-endian. ``dtypes`` may force a
    safetensors dtype per name (e.g. "BF16" for float32 data). Tensors are laid out widest element first, so
    each starts aligned to its element size.
    """
    items = []
    for order, (name, a) in enumerate(tensors.items()):
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"invalid tensor name {name!r}")
        a = np.asarray(a)
        dt = (dtypes or {}).get(name) or dtype_name(a)
        if dt == "BF16":
            raw = _f32_to_bf16(a.astype("<f4", copy=False))
        else:
            raw = np.ascontiguousarray(a, dtype=_DTYPES[dt])
        items.append((-_WIDTH[dt], order, name, dt, list(a.shape), raw))
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    # The header lists the tensors in the caller's order; the data section is laid out widest first.
    for _, _, name, dt, shape, _ in items:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": None}
    offset = 0
    parts = []
    for _, _, name, _, _, raw in sorted(items, key=lambda x: (x[0], x[1])):
        size = raw.nbytes
        header[name]["data_offsets"] = [offset, offset + size]
        parts.append(memoryview(raw.reshape(-1)).cast("B"))
        offset += size
    js = json.dumps(header, separators=(",", ":")).encode("utf-8")
    js += b" " * ((-(8 + len(js))) % 8)
    return [struct.pack("<Q", len(js)) + js, *parts]


def dumps(tensors, metadata=None, dtypes=None):
    """Encodes {name: array} as one safetensors byte string."""
    return b"".join(bytes(p) for p in encode_parts(tensors, metadata, dtypes))


def save(tensors, path, metadata=None):
    """Writes {name: array} to a .safetensors file."""
    with open(path, "wb") as f:
        for p in encode_parts(tensors, metadata):
            f.write(p)
