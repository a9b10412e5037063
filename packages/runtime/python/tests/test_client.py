import io
import json
import math
import struct

import numpy as np
import pytest

from flare_ts import protocol
from flare_ts.client import Client
from flare_ts.safetensors import dumps, loads


def record(header, payload=b""):
    out = io.BytesIO()
    protocol.write_record(out, header, [payload] if payload else [])
    return out.getvalue()


def site_stream(*records):
    welcome = {"t": "welcome", "protocol": 1, "site": "site-1", "job": "j1", "learner": "py", "args": {"lr": 0.1}}
    return io.BytesIO(record(welcome) + b"".join(records))


def task(id, kind, params, round=0):
    header = {"t": "task", "id": id, "kind": kind, "task": kind, "site": "site-1", "job": "j1", "round": round, "total_rounds": 3, "meta": {"x": 1}}
    return record(header, dumps(params))


def sent(writer):
    """Every record the client wrote: [(header, payload)]."""
    r = io.BytesIO(writer.getvalue())
    out = []
    while (rec := protocol.read_record(r, 1 << 30)) is not None:
        out.append(rec)
    return out


def connect(*records, framework="numpy"):
    w = io.BytesIO()
    c = Client(site_stream(*records), w, framework)
    c.handshake()
    return c, w


def test_says_hello_with_its_protocol_version_and_reads_the_welcome():
    c, w = connect()
    (hello, _), = sent(w)
    assert hello == {"t": "hello", "protocol": 1, "client": "flare-ts-python/0.1.0"}
    assert c.welcome["args"] == {"lr": 0.1}


def test_refuses_a_site_of_another_protocol_version():
    welcome = record({"t": "welcome", "protocol": 2, "site": "s", "job": "j", "learner": "l", "args": {}})
    c = Client(io.BytesIO(welcome), io.BytesIO(), "numpy")
    with pytest.raises(protocol.ProtocolError, match="protocol 2"):
        c.handshake()


def test_a_train_round_returns_the_same_names_with_kind_steps_and_metrics():
    w0 = np.arange(6, dtype=np.float32).reshape(2, 3)
    c, w = connect(task(0, "train", {"w": w0, "b": np.zeros(2, np.float32)}), record({"t": "stop"}))
    assert c.is_running()
    params = c.receive()
    assert c.task.kind == "train" and c.task.round == 0 and c.task.total_rounds == 3 and c.task.meta == {"x": 1}
    assert np.array_equal(params["w"], w0)
    # Training in float64 is common: the client sends the received dtype back.
    c.send({k: v.astype(np.float64) + 1 for k, v in params.items()}, metrics={"loss": 0.5}, steps=7)
    assert not c.is_running()
    (_, _), (result, payload) = sent(w)
    assert result == {"t": "result", "id": 0, "metrics": {"loss": 0.5}, "kind": "full", "steps": 7}
    back, _, dtypes = loads(payload)
    assert dtypes == {"w": "F32", "b": "F32"}
    assert np.array_equal(back["w"], w0 + 1)


def test_a_validate_round_answers_with_metrics_only():
    c, w = connect(task(4, "validate", {"w": np.zeros(2, np.float32)}))
    c.receive()
    with pytest.raises(ValueError, match="metrics only"):
        c.send({"w": np.zeros(2)})
    c.send(metrics={"accuracy": 0.9})
    assert sent(w)[-1] == ({"t": "result", "id": 4, "metrics": {"accuracy": 0.9}}, bytearray())


def test_non_finite_metrics_are_named_so_that_the_site_can_refuse_them():
    c, w = connect(task(0, "validate", {"w": np.zeros(1, np.float32)}))
    c.receive()
    c.send(metrics={"a": math.nan, "b": math.inf, "c": -math.inf})
    assert sent(w)[-1][0]["metrics"] == {"a": "NaN", "b": "Infinity", "c": "-Infinity"}


def test_train_needs_params_and_a_whole_number_of_steps():
    c, _ = connect(task(0, "train", {"w": np.zeros(1, np.float32)}))
    c.receive()
    with pytest.raises(ValueError, match="params"):
        c.send(steps=1)
    with pytest.raises(ValueError, match="NUM_STEPS_CURRENT_ROUND"):
        c.send({"w": np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match="kind"):
        c.send({"w": np.zeros(1, np.float32)}, steps=1, kind="delta")


def test_receive_before_send_and_send_without_a_task_are_usage_errors():
    c, _ = connect(task(0, "train", {"w": np.zeros(1, np.float32)}), task(1, "train", {"w": np.zeros(1, np.float32)}))
    with pytest.raises(RuntimeError, match="receive"):
        c.send(metrics={})
    c.receive()
    with pytest.raises(RuntimeError, match="send"):
        c.receive()


def test_send_error_reports_the_current_task():
    c, w = connect(task(9, "train", {"w": np.zeros(1, np.float32)}))
    c.receive()
    c.send_error("ValueError: bad batch")
    assert sent(w)[-1][0] == {"t": "error", "id": 9, "message": "ValueError: bad batch"}


def test_end_of_channel_stops_the_loop():
    c, _ = connect()
    assert not c.is_running()
    assert c.receive() is None


def test_a_payload_starts_8_byte_aligned_in_the_record():
    raw = record({"t": "result", "id": 1}, b"x" * 8)
    hlen = struct.unpack_from("<I", raw, 13)[0]
    assert (9 + hlen) % 8 == 0
    assert json.loads(raw[17 : 17 + hlen]) == {"t": "result", "id": 1}


@pytest.mark.parametrize(
    "raw, message",
    [
        (struct.pack("<Q4sBI", 20, b"XXXX", 1, 2), "magic"),
        (struct.pack("<Q4sBI", 20, b"FLTS", 9, 2), "version"),
        (struct.pack("<Q4sBI", 5, b"FLTS", 1, 2), "cannot hold"),
        (struct.pack("<Q4sBI", 20, b"FLTS", 1, 11) + b"{}", "ended inside a header"),
        (b"\x01\x02", "prefix"),
    ],
)
def test_refuses_records_that_are_not_the_protocol(raw, message):
    with pytest.raises(protocol.ProtocolError, match=message):
        protocol.read_record(io.BytesIO(raw), 1 << 20)


def test_torch_tensors_when_asked():
    torch = pytest.importorskip("torch", reason="python3-torch is not installed here")
    c, w = connect(task(0, "train", {"w": np.ones(3, np.float32)}), framework="torch")
    params = c.receive()
    assert isinstance(params["w"], torch.Tensor)
    c.send({"w": params["w"] * 2}, steps=1)
    back, _, _ = loads(sent(w)[-1][1])
    assert back["w"].tolist() == [2, 2, 2]
