"""The client side of a FLARE-TS external learner, shaped like NVIDIA FLARE's Client API."""

import os
import sys
from dataclasses import dataclass, field

import numpy as np

from . import protocol
from .safetensors import encode_parts, loads

CLIENT = "flare-ts-python/0.1.0"
_FLOAT = {"F64", "F32", "F16", "BF16"}
_NUMPY = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.float32}


@dataclass(frozen=True)
class Task:
    """The task being worked on: what the site sent with the global model."""

    id: int
    kind: str  # "train" or "validate"
    name: str
    round: int
    total_rounds: "int | None"
    job: str
    site: str
    meta: dict = field(default_factory=dict)


class Client:
    """One connection to the site. The module-level functions (flare.init(), ...) use a default instance."""

    def __init__(self, reader, writer, framework=None):
        self._r = reader
        self._w = writer
        self._framework = framework
        self._task = None
        self._dtypes = {}
        self._next = None
        self._stopped = False
        self.welcome = None

    # -- connection ------------------------------------------------------------------------------------
    def handshake(self):
        protocol.write_record(self._w, {"t": "hello", "protocol": protocol.PROTOCOL, "client": CLIENT})
        rec = protocol.read_record(self._r, protocol.MAX_HEADER_BYTES + 64)
        if rec is None:
            raise protocol.ProtocolError("the site closed the channel before its welcome")
        header, _ = rec
        if header.get("t") != "welcome":
            raise protocol.ProtocolError(f"expected the site's welcome, got {header.get('t')!r}")
        if header.get("protocol") != protocol.PROTOCOL:
            raise protocol.ProtocolError(f"the site speaks protocol {header.get('protocol')}, this client {protocol.PROTOCOL}")
        self.welcome = header

    def _use_torch(self):
        if self._framework is None:
            # Importing torch costs seconds: use it only when the training script already did.
            return "torch" in sys.modules
        return self._framework == "torch"

    # -- tasks -----------------------------------------------------------------------------------------
    def _fetch(self):
        """Reads the next task (or stop / end of channel); True when there is a task."""
        if self._next is not None:
            return True
        if self._stopped:
            return False
        # A global model can be as large as the site allows; the site bounds what it sends.
        rec = protocol.read_record(self._r, 1 << 62)
        if rec is None or rec[0].get("t") == "stop":
            self._stopped = True
            return False
        header, payload = rec
        if header.get("t") != "task":
            raise protocol.ProtocolError(f"expected a task, got {header.get('t')!r}")
        self._next = (header, payload)
        return True

    def is_running(self):
        """True while the site has work: waits for the next task; False once the site says stop."""
        return self._task is not None or self._fetch()

    def receive(self):
        """The global model of the next task as {name: array} (torch tensors when torch is in use); None at stop."""
        if self._task is not None:
            raise RuntimeError(f"task {self._task.id} has not been answered: call flare.send() first")
        if not self._fetch():
            return None
        header, payload = self._next
        self._next = None
        tensors, _, dtypes = loads(payload)
        self._dtypes = dtypes
        self._task = Task(
            id=int(header["id"]),
            kind=str(header["kind"]),
            name=str(header.get("task", header["kind"])),
            round=int(header["round"]),
            total_rounds=header.get("total_rounds"),
            job=str(header["job"]),
            site=str(header["site"]),
            meta=dict(header.get("meta") or {}),
        )
        if self._use_torch():
            import torch

            return {k: torch.from_numpy(v) for k, v in tensors.items()}
        return tensors

    def _arrays(self, params):
        out, dtypes = {}, {}
        for name, value in params.items():
            if hasattr(value, "detach"):  # a torch tensor, on any device
                value = value.detach().cpu().numpy()
            a = np.asarray(value)
            want = self._dtypes.get(name)
            # Keep the received float dtype (training in float64 is common): the site refuses another dtype.
            if want in _FLOAT and a.dtype.kind == "f" and a.dtype != _NUMPY[want]:
                a = a.astype(_NUMPY[want])
            if want == "BF16":
                dtypes[name] = "BF16"
            out[name] = a
        return out, dtypes

    def send(self, params=None, metrics=None, steps=None, kind="full", meta=None):
        """Answers the current task.

        Train tasks: ``params`` ({name: array or tensor}, the same names and shapes as received), ``steps``
        (local steps this round: NUM_STEPS_CURRENT_ROUND) and ``kind`` ("full" weights or a "diff" from the
        received model). Validate tasks: ``metrics`` only. Metrics are numbers; NaN or infinity makes the site
        refuse the result.
        """
        task = self._task
        if task is None:
            raise RuntimeError("no task to answer: call flare.receive() first")
        header = {"t": "result", "id": task.id, "metrics": protocol.clean_metrics(metrics)}
        parts = []
        if task.kind == "train":
            if params is None:
                raise ValueError("a train task needs params")
            if steps is None or int(steps) != steps or steps < 0:
                raise ValueError("a train task needs steps: the number of local training steps this round (NUM_STEPS_CURRENT_ROUND)")
            if kind not in ("full", "diff"):
                raise ValueError('kind must be "full" or "diff"')
            arrays, dtypes = self._arrays(params)
            parts = encode_parts(arrays, dtypes=dtypes)
            header.update(kind=kind, steps=int(steps))
        elif params is not None:
            raise ValueError("a validate task answers with metrics only")
        if meta:
            header["meta"] = dict(meta)
        protocol.write_record(self._w, header, parts)
        self._task = None

    def send_error(self, message):
        """Tells the site that the current task failed (the site reports E_LEARNER_FAILED with ``message``)."""
        task = self._task
        if task is None:
            return
        protocol.write_record(self._w, {"t": "error", "id": task.id, "message": str(message)[:4000]})
        self._task = None

    @property
    def task(self):
        return self._task


_client = None


def _current():
    if _client is None:
        raise RuntimeError("call flare.init() first")
    return _client


def init(framework=None):
    """Connects to the site that started this program (hello, welcome). ``framework``: "numpy", "torch" or
    None (torch when the script imported it before calling receive)."""
    global _client
    if _client is not None:
        return
    if os.environ.get("FLARE_LEARNER_PROTOCOL") is None:
        raise RuntimeError(
            "this program was not started by a FLARE-TS site: name it as an external learner in the site's "
            "local/components.json (see docs/learners.md)"
        )
    reader = os.fdopen(int(os.environ.get("FLARE_LEARNER_IN_FD", "3")), "rb")
    writer = os.fdopen(int(os.environ.get("FLARE_LEARNER_OUT_FD", "4")), "wb")
    c = Client(reader, writer, framework)
    c.handshake()
    _client = c
    previous = sys.excepthook

    def report(kind, value, tb):
        # An exception in the training code answers the task with its message before the program ends.
        try:
            c.send_error(f"{kind.__name__}: {value}")
        except Exception:
            pass
        previous(kind, value, tb)

    sys.excepthook = report


def is_running():
    """True while the site has tasks for this program (waits for the next one)."""
    return _current().is_running()


def receive():
    """The next task's global model as {name: numpy array} (torch tensors when torch is in use); None at the end."""
    return _current().receive()


def send(params=None, metrics=None, steps=None, kind="full", meta=None):
    """Answers the current task; see Client.send."""
    _current().send(params, metrics=metrics, steps=steps, kind=kind, meta=meta)


def send_error(message):
    """Reports that the current task failed."""
    _current().send_error(message)


def get_task():
    """The current task (id, kind, name, round, total_rounds, job, site, meta), or None."""
    return _current().task


def is_train():
    t = _current().task
    return t is not None and t.kind == "train"


def is_evaluate():
    t = _current().task
    return t is not None and t.kind == "validate"


def current_round():
    t = _current().task
    return None if t is None else t.round


def get_site_name():
    return _current().welcome["site"]


def get_job_id():
    return _current().welcome["job"]


def get_job_args():
    """The job's learner arguments (meta.json learner.args). Untrusted input: validate what you use."""
    return dict(_current().welcome.get("args") or {})


def system_info():
    """Site and job names, as FLARE's flare.system_info() gives them."""
    w = _current().welcome
    return {"site_name": w["site"], "job_id": w["job"], "learner": w.get("learner")}
