"""The centralized baseline: the same network trained on the union of the sites' training data (the whole
training split), for as many epochs as the federation runs rounds. Prints one JSON line."""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import digits  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=20)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--lr", type=float, default=0.05)
a = p.parse_args()
torch.set_num_threads(1)
x, y, x_test, y_test = digits.load(a.seed)
model = digits.initial_model(a.seed)
digits.train_epochs(model, x, y, epochs=a.epochs, lr=a.lr, seed=a.seed)
print(json.dumps({"accuracy": digits.accuracy(model, x_test, y_test), "train": len(y), "test": len(y_test)}))
