"""The training program of a FLARE-TS job, run by each site as an external learner (numpy only).

Any program that speaks the learner protocol can be a site's learner (docs/learners.md); this one is Python
with the flare_ts client and numpy: softmax regression on the site's share of the data. The site's
local/components.json names it (see this job's README). This program:
  python3 learner.py --init model.safetensors   writes the initial global model (the job's model.safetensors)
  python3 learner.py                            is the learner: it trains and validates what the site sends
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402


def initial_weights():
    rng = np.random.default_rng(0)
    return {"weight": (rng.normal(0.0, 0.01, size=(data.CLASSES, data.FEATURES))).astype(np.float32), "bias": np.zeros(data.CLASSES, np.float32)}


def probabilities(w, x):
    z = x @ w["weight"].T + w["bias"]
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def evaluate(w, x, y):
    if len(y) == 0:
        return {"accuracy": 0.0, "loss": 0.0, "n": 0.0}
    p = probabilities(w, x)
    return {"accuracy": float((p.argmax(1) == y).mean()), "loss": float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean()), "n": float(len(y))}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--init", metavar="FILE", help="write the initial global model to FILE and exit")
    a = p.parse_args()
    import flare_ts as flare

    if a.init:
        flare.save(initial_weights(), a.init)
        return
    x, y, x_test, y_test = data.site_share()
    flare.init()
    args = flare.get_job_args()
    epochs, lr, batch = int(args.get("epochs", 1)), float(args.get("lr", 0.5)), int(args.get("batch_size", 32))
    if not (1 <= epochs <= 100 and 0 < lr <= 10 and 1 <= batch <= 65536):
        raise ValueError("learner args out of range: epochs 1..100, lr in (0, 10], batch_size 1..65536")
    while flare.is_running():
        g = {k: np.asarray(v, np.float32) for k, v in flare.receive().items()}
        if flare.is_evaluate():
            flare.send(metrics=evaluate(g, x_test, y_test))
            continue
        w = {k: v.copy() for k, v in g.items()}
        rng = np.random.default_rng(1000 * flare.current_round() + 1)
        steps, total = 0, 0.0
        for _ in range(epochs):
            order = rng.permutation(len(y))
            for i in range(0, len(y), batch):
                rows = order[i : i + batch]
                p_ = probabilities(w, x[rows])
                total += float(-np.log(p_[np.arange(len(rows)), y[rows]] + 1e-12).mean())
                p_[np.arange(len(rows)), y[rows]] -= 1.0
                w["weight"] -= lr * (p_.T @ x[rows]) / len(rows)
                w["bias"] -= lr * p_.mean(axis=0)
                steps += 1
        flare.send({k: w[k] - g[k] for k in w}, metrics={"train_loss": total / max(steps, 1)}, steps=steps, kind="diff")


if __name__ == "__main__":
    main()
