"""A site's training script for the PyTorch digits example, run by the site as an external learner.

The site's components.json names it with this site's share of the data, e.g.
    "command": ["python3", "/opt/flare/pytorch-digits/train_digits.py", "--site", "0", "--sites", "3"]
The job may tune epochs, the learning rate and DP-SGD (`dp_sgd`:
noise_multiplier, clip_norm, sampling_rate) through its learner args (checked here: they are input from outside
the site).
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import digits  # noqa: E402
import flare_ts as flare  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--site", type=int, required=True, help="this site's index, from 0")
p.add_argument("--sites", type=int, required=True)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration of the non-IID split")
a = p.parse_args()

torch.set_num_threads(1)  # several sites share a machine in the example; one thread each
flare.init()
job_args = flare.get_job_args()
epochs = int(job_args.get("epochs", 1))
lr = float(job_args.get("lr", 0.05))
dp = job_args.get("dp_sgd")
if not (1 <= epochs <= 100 and 0 < lr <= 10):
    raise ValueError("job args out of range: epochs 1..100, lr (0, 10]")
if dp is not None:
    z, c, q = float(dp["noise_multiplier"]), float(dp["clip_norm"]), float(dp["sampling_rate"])
    if not (0 < z <= 100 and 0 < c <= 100 and 0 < q <= 1):
        raise ValueError("job args dp_sgd out of range: noise_multiplier (0, 100], clip_norm (0, 100], sampling_rate (0, 1]")

x, y = digits.site_share(a.site, a.sites, a.seed, a.alpha)
_, _, x_test, y_test = digits.load(a.seed)
print(f"site {flare.get_site_name()}: {len(y)} training examples, classes {sorted(set(y.tolist()))}", flush=True)
model = digits.Net()

while flare.is_running():
    params = flare.receive()  # torch tensors: torch was imported first
    task = flare.get_task()
    model.load_state_dict(params)
    if flare.is_evaluate():
        # The site's own view of the global model: its share of the test split (the site knows its index).
        share = slice(a.site, None, a.sites)
        flare.send(metrics={"accuracy": digits.accuracy(model, x_test[share], y_test[share]), "n": float(len(y_test[share]))})
        continue
    seed = a.seed * 1000 + task.round
    meta = None
    if dp is None:
        steps, loss = digits.train_epochs(model, x, y, epochs=epochs, lr=lr, seed=seed)
    else:
        # Record-level DP: the report goes in meta.dp_sgd, which the site's dp-sgd filter charges to its budget.
        steps, loss, report = digits.train_dp_sgd(model, x, y, epochs=epochs, lr=lr, noise_multiplier=z, clip_norm=c, sampling_rate=q, seed=seed)
        meta = {"dp_sgd": report}
    # A weight difference (FLARE's WEIGHT_DIFF): what the site's DP filters clip and noise, and what FedAvg averages.
    diff = {k: v - params[k] for k, v in model.state_dict().items()}
    flare.send(diff, metrics={"loss": loss}, steps=steps, kind="diff", meta=meta)
