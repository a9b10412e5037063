import json
import struct

import numpy as np
import pytest

from flare_ts.safetensors import SafetensorsError, dumps, encode_parts, load, loads, save


def build(header, data=b""):
    js = json.dumps(header).encode()
    return struct.pack("<Q", len(js)) + js + data


def test_reads_a_file_built_byte_by_byte_from_the_format_description():
    # The example of the safetensors README: one I32 2x2 tensor and a metadata map.
    data = struct.pack("<4i", 1, 2, 3, 4)
    raw = bytearray(build({"test": {"dtype": "I32", "shape": [2, 2], "data_offsets": [0, 16]}, "__metadata__": {"foo": "bar"}}, data))
    tensors, metadata, dtypes = loads(raw)
    assert metadata == {"foo": "bar"}
    assert dtypes == {"test": "I32"}
    assert tensors["test"].tolist() == [[1, 2], [3, 4]]


def test_roundtrips_every_dtype_and_keeps_names_in_order():
    rng = np.random.default_rng(1)
    tensors = {
        "z.f64": rng.standard_normal((3, 2)),
        "a.f32": rng.standard_normal((4,)).astype(np.float32),
        "h.f16": rng.standard_normal((2, 2)).astype(np.float16),
        "i64": np.arange(5, dtype=np.int64),
        "i32": np.arange(6, dtype=np.int32).reshape(2, 3),
        "i16": np.arange(3, dtype=np.int16),
        "i8": np.array([-1, 2], dtype=np.int8),
        "u8": np.array([255, 0], dtype=np.uint8),
        "flags": np.array([True, False, True]),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    back, _, dtypes = loads(bytearray(dumps(tensors)))
    assert list(back) == list(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        assert np.array_equal(back[k], v)
    assert dtypes["flags"] == "BOOL" and dtypes["h.f16"] == "F16"


def test_lays_out_widest_elements_first_so_every_tensor_is_aligned():
    head, *parts = encode_parts({"u8": np.zeros(3, np.uint8), "f64": np.zeros(2), "f32": np.zeros(1, np.float32)})
    (n,) = struct.unpack_from("<Q", head)
    assert (8 + n) % 8 == 0
    header = json.loads(head[8:])
    assert header["f64"]["data_offsets"] == [0, 16]
    assert header["f32"]["data_offsets"] == [16, 20]
    assert header["u8"]["data_offsets"] == [20, 23]


def test_bfloat16_reads_as_float32_and_writes_back_rounded_to_nearest_even():
    values = np.array([1.0, -2.5, 3.140625, 1e-3], dtype=np.float32)
    raw = dumps({"w": values}, dtypes={"w": "BF16"})
    header = json.loads(raw[8 : 8 + struct.unpack_from("<Q", raw)[0]])
    assert header["w"]["dtype"] == "BF16"
    back, _, dtypes = loads(bytearray(raw))
    assert dtypes["w"] == "BF16" and back["w"].dtype == np.float32
    assert np.allclose(back["w"], values, rtol=1 / 128)
    assert back["w"][0] == 1.0 and back["w"][1] == -2.5


def test_files_roundtrip(tmp_path):
    p = tmp_path / "m.safetensors"
    save({"w": np.ones((2, 2), np.float32)}, p, metadata={"format": "pt"})
    tensors, metadata = load(p)
    assert metadata == {"format": "pt"} and tensors["w"].sum() == 4


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x01\x00", "shorter"),
        (struct.pack("<Q", 1 << 40), "exceeds"),
        (struct.pack("<Q", 100) + b"{}", "declares"),
        (build({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4), "outside"),
        (build({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8), "elements"),
        (build({"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8), "unsupported dtype"),
        (build({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}), "shape"),
        (build({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}}, b"\0" * 4), "exactly"),
        (build({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}, "b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}}, b"\0" * 3), "overlap"),
        (build({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}, b"\0" * 2), "cover"),
        (build({"__metadata__": {"n": 1}}), "__metadata__"),
        (struct.pack("<Q", 2) + b"[]", "object"),
        (struct.pack("<Q", 2) + b"\xff\xfe", "JSON"),
    ],
)
def test_refuses_malformed_files_before_making_arrays(raw, message):
    with pytest.raises(SafetensorsError, match=message):
        loads(bytearray(raw))


def test_refuses_a_data_section_over_the_callers_limit():
    raw = dumps({"w": np.zeros(100, np.float32)})
    with pytest.raises(SafetensorsError, match="exceeds"):
        loads(bytearray(raw), max_bytes=399)
