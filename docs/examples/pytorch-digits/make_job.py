"""Writes the job folder: meta.json and model.safetensors with the network's initial weights."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import digits  # noqa: E402
import flare_ts  # noqa: E402

out = sys.argv[1] if len(sys.argv) > 1 else "job"
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
os.makedirs(out, exist_ok=True)
flare_ts.save({k: v.numpy() for k, v in digits.initial_model(0).state_dict().items()}, os.path.join(out, "model.safetensors"))
meta = {
    "name": "pytorch-digits",
    "rounds": rounds,
    "min_clients": 3,
    "deploy": ["@ALL"],
    "learner": {"name": "pytorch-digits", "args": {"epochs": 1, "lr": 0.05}},
}
with open(os.path.join(out, "meta.json"), "w") as f:
    json.dump(meta, f, indent=2)
print(out)
