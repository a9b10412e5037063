"""FLARE-TS's Python client: run an existing training script as a site's external learner.

    import flare_ts as flare

    flare.init()
    while flare.is_running():
        params = flare.receive()            # {name: numpy array}, or torch tensors when torch is imported
        if flare.is_evaluate():
            flare.send(metrics={"accuracy": evaluate(params)})
            continue
        new_params, steps, loss = train(params)
        flare.send(new_params, metrics={"loss": loss}, steps=steps)

Shaped like NVIDIA FLARE's Client API (``nvflare.client``). Only the standard library and numpy are needed.
"""

from .client import (
    CLIENT,
    Client,
    Task,
    current_round,
    get_job_args,
    get_job_id,
    get_site_name,
    get_task,
    init,
    is_evaluate,
    is_running,
    is_train,
    receive,
    send,
    send_error,
    system_info,
)
from .protocol import PROTOCOL, ProtocolError
from .safetensors import SafetensorsError, dumps, load, loads, save

__all__ = [
    "CLIENT",
    "Client",
    "PROTOCOL",
    "ProtocolError",
    "SafetensorsError",
    "Task",
    "current_round",
    "dumps",
    "get_job_args",
    "get_job_id",
    "get_site_name",
    "get_task",
    "init",
    "is_evaluate",
    "is_running",
    "is_train",
    "load",
    "loads",
    "receive",
    "save",
    "send",
    "send_error",
    "system_info",
]
