"""Accuracy of a global model (a .safetensors file) on the example's test split. Prints one JSON line."""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import digits  # noqa: E402
import flare_ts  # noqa: E402

tensors, _ = flare_ts.load(sys.argv[1])
model = digits.Net()
model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()})
_, _, x_test, y_test = digits.load(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
print(json.dumps({"accuracy": digits.accuracy(model, x_test, y_test), "test": len(y_test)}))
