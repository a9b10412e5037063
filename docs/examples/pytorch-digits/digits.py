"""The data and the network of the PyTorch digits example, shared by the site's training script, the
centralized baseline and the evaluation.

scikit-learn's handwritten digits (1,797 images of 8x8 pixels, 10 classes; shipped with scikit-learn, nothing is
downloaded): a fixed 20% test split, and the rest split non-IID across the sites, each class spread over the
sites by a Dirichlet draw (alpha 0.5: most sites see few examples of most classes).
"""

import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class Net(nn.Module):
    """A small CNN: conv 3x3 (16) -> max-pool -> 64 -> 10. Its state_dict names are the tensor names of the job."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, padding=1)
        self.fc1 = nn.Linear(16 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def initial_model(seed=0):
    torch.manual_seed(seed)
    return Net()


def load(seed=0):
    """(x_train, y_train, x_test, y_test) with x as float32 [n, 1, 8, 8] in [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = round(0.2 * len(y))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def site_share(site, sites, seed=0, alpha=0.5):
    """This site's training examples: every class is split across the sites by Dirichlet(alpha) proportions."""
    x, y, _, _ = load(seed)
    rng = np.random.default_rng(seed + 1)
    mine = []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        cuts = (np.cumsum(rng.dirichlet([alpha] * sites)) * len(idx)).astype(int)[:-1]
        mine.extend(np.split(idx, cuts)[site])
    mine = np.sort(np.array(mine, dtype=np.int64))
    return x[mine], y[mine]


def train_epochs(model, x, y, epochs=1, lr=0.05, batch_size=32, seed=0):
    """Plain SGD with momentum over mini-batches; returns (steps, mean loss of the last epoch)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    steps, loss_sum = 0, 0.0
    model.train()
    for _ in range(epochs):
        loss_sum, batches = 0.0, 0
        for idx in torch.randperm(len(yt), generator=gen).split(batch_size):
            opt.zero_grad()
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            steps += 1
            batches += 1
            loss_sum += float(loss)
        loss_sum /= max(1, batches)
    return steps, loss_sum


def _per_example_grads(model, params, x, y):
    """Each example's gradient, [B, ...] per parameter: vectorized with functorch where it is installed (it ships
    with torch 1.13), else one example at a time."""
    try:
        from functorch import grad, make_functional, vmap
    except ImportError:
        out = [[] for _ in params]
        for i in range(len(y)):
            model.zero_grad()
            F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
            for o, p in zip(out, params):
                o.append(p.grad.detach().clone())
        return [torch.stack(o) for o in out]
    fmodel, _ = make_functional(model)

    def loss_one(ps, xi, yi):
        return F.cross_entropy(fmodel(ps, xi[None]), yi[None])

    return list(vmap(grad(loss_one), in_dims=(None, 0, 0))(tuple(p.detach() for p in params), x, y))


def train_dp_sgd(model, x, y, epochs=1, lr=0.05, noise_multiplier=1.0, clip_norm=1.0, sampling_rate=0.1, seed=0):
    """DP-SGD (Abadi et al. 2016): each step samples every example with probability `sampling_rate` (Poisson),
    clips each example's gradient to `clip_norm`, adds N(0, (noise_multiplier * clip_norm)^2) to the sum and
    divides by the expected batch size. Returns (steps, mean loss, the report the site's dp-sgd filter charges)."""
    gen = torch.Generator().manual_seed(seed)
    # The noise must not be predictable from anything the server knows (round, seed): a fresh seed per call.
    noise_gen = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    params = [p for p in model.parameters() if p.requires_grad]
    expected = sampling_rate * len(yt)
    steps_per_epoch = max(1, round(1 / sampling_rate))
    steps, loss_sum, batches = 0, 0.0, 0
    model.train()
    for _ in range(epochs * steps_per_epoch):
        batch = torch.nonzero(torch.rand(len(yt), generator=gen) < sampling_rate).flatten()
        total = [torch.zeros_like(p) for p in params]
        if len(batch) > 0:
            xb, yb = xt[batch], yt[batch]
            grads = _per_example_grads(model, params, xb, yb)
            norms = torch.sqrt(sum((g.flatten(1) ** 2).sum(1) for g in grads))
            scale = (clip_norm / (norms + 1e-12)).clamp(max=1.0)
            total = [(g * scale.view(-1, *([1] * (g.dim() - 1)))).sum(0) for g in grads]
            with torch.no_grad():
                loss_sum += float(F.cross_entropy(model(xb), yb))
            batches += 1
        with torch.no_grad():
            for t, p in zip(total, params):
                noise = torch.normal(0.0, noise_multiplier * clip_norm, size=t.shape, generator=noise_gen)
                p.sub_((t + noise) / expected, alpha=lr)
        steps += 1
    report = {"noise_multiplier": noise_multiplier, "sampling_rate": sampling_rate, "clip_norm": clip_norm, "steps": steps}
    return steps, loss_sum / max(1, batches), report


@torch.no_grad()
def accuracy(model, x, y):
    model.eval()
    return float((model(torch.from_numpy(x)).argmax(1) == torch.from_numpy(y)).float().mean())
