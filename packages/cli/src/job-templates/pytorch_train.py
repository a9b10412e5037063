"""The training script of a FLARE-TS PyTorch job, run by each site as an external learner.

The site's local/components.json names it (see this job's README): the site decides which programs run; the
job only names the learner and gives it the arguments in meta.json (learner.args). This script:
  python3 train.py --init model.safetensors   writes the initial global model (the job's model.safetensors)
  python3 train.py                            is the learner: it trains and validates what the site sends

Edit `Net` and `data.py` for your own model and data; keep the tensor names of `Net` and model.safetensors
the same (`flare job check` compares them).
"""

import argparse
import os
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402


class Net(nn.Module):
    """A small multilayer perceptron: 64 inputs, 32 hidden units, 10 classes."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(data.FEATURES, 32)
        self.out = nn.Linear(32, data.CLASSES)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))


def initial_weights(path):
    """Writes the initial global model: the network's own initial weights, seeded."""
    import flare_ts

    torch.manual_seed(0)
    flare_ts.save({k: v.detach().numpy() for k, v in Net().state_dict().items()}, path)


def job_settings(args):
    """The job's learner args, checked: they come from outside the site."""
    epochs, lr, batch = int(args.get("epochs", 1)), float(args.get("lr", 0.1)), int(args.get("batch_size", 32))
    if not (1 <= epochs <= 100 and 0 < lr <= 10 and 1 <= batch <= 65536):
        raise ValueError("learner args out of range: epochs 1..100, lr in (0, 10], batch_size 1..65536")
    return epochs, lr, batch


def accuracy(net, x, y):
    if len(y) == 0:
        return 0.0
    with torch.no_grad():
        return float((net(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--init", metavar="FILE", help="write the initial global model to FILE and exit")
    a = p.parse_args()
    if a.init:
        initial_weights(a.init)
        return
    import flare_ts as flare

    torch.set_num_threads(1)  # several sites may share a machine (flare simulate): one thread each
    x, y, x_test, y_test = data.site_share()
    flare.init()
    epochs, lr, batch = job_settings(flare.get_job_args())
    print(f"site {flare.get_site_name()}: {len(y)} training rows, {len(y_test)} test rows", flush=True)
    net = Net()
    loss_fn = nn.CrossEntropyLoss()
    while flare.is_running():
        params = flare.receive()  # torch tensors: torch was imported first
        task = flare.get_task()
        net.load_state_dict(params)
        if flare.is_evaluate():
            with torch.no_grad():
                loss = float(loss_fn(net(torch.from_numpy(x_test)), torch.from_numpy(y_test))) if len(y_test) else 0.0
            flare.send(metrics={"accuracy": accuracy(net, x_test, y_test), "loss": loss, "n": float(len(y_test))})
            continue
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(1000 * task.round + 1)
        steps, total = 0, 0.0
        for _ in range(epochs):
            order = torch.randperm(len(y), generator=gen).numpy()
            for i in range(0, len(y), batch):
                rows = order[i : i + batch]
                opt.zero_grad()
                loss = loss_fn(net(torch.from_numpy(x[rows])), torch.from_numpy(y[rows]))
                loss.backward()
                opt.step()
                steps, total = steps + 1, total + float(loss)
        # A weight difference (FLARE's WEIGHT_DIFF): what the site's DP filters clip and noise, and FedAvg averages.
        diff = {k: v - params[k] for k, v in net.state_dict().items()}
        flare.send(diff, metrics={"train_loss": total / max(steps, 1)}, steps=steps, kind="diff")


if __name__ == "__main__":
    main()
