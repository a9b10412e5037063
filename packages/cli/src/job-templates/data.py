"""This site's share of the data, for the job templates of `flare job create`.

Replace `load()` with your own data loading: a site trains on what it holds, and nothing here leaves the site
except what its privacy scope lets through. The split below only exists to simulate several sites on one
machine (`flare simulate`); a deployed site loads its own data and keeps FLARE_NUM_SITES at 1.

Site variables (set by the site's components.json `env`, or by `flare simulate` for each virtual site):
  FLARE_SITE_INDEX  this site's index, from 0 (default 0)
  FLARE_NUM_SITES   how many sites share the data set (default 1)
  FLARE_DATA_SPLIT  iid (default) or dirichlet:ALPHA (label skew: smaller ALPHA, more skew)
  FLARE_DATA_SEED   seed of the shuffle and split (default 0)
"""

import os

import numpy as np

FEATURES = 64
CLASSES = 10


def load(seed=0):
    """(x_train, y_train, x_test, y_test): scikit-learn's handwritten digits (8x8 pixels, 10 classes) when
    scikit-learn is installed, else a synthetic 10-class problem of the same shape (so the template runs)."""
    try:
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y = d.data.astype(np.float32) / 16.0, d.target.astype(np.int64)
    except ImportError:
        rng = np.random.default_rng(1234)
        centres = rng.normal(0.0, 0.5, size=(CLASSES, FEATURES)).astype(np.float32)
        y = rng.integers(0, CLASSES, size=1800).astype(np.int64)
        x = (centres[y] + rng.normal(0.0, 2.0, size=(len(y), FEATURES))).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order], y[order]
    cut = int(len(y) * 0.8)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def site_settings():
    """(index, sites, split, seed) from the site variables, checked."""
    index = int(os.environ.get("FLARE_SITE_INDEX", "0"))
    sites = int(os.environ.get("FLARE_NUM_SITES", "1"))
    split = os.environ.get("FLARE_DATA_SPLIT", "iid")
    seed = int(os.environ.get("FLARE_DATA_SEED", "0"))
    if not (1 <= sites <= 1000 and 0 <= index < sites):
        raise ValueError(f"FLARE_SITE_INDEX {index} must be in 0..FLARE_NUM_SITES-1 ({sites})")
    if split != "iid" and not (split.startswith("dirichlet:") and float(split.split(":", 1)[1]) > 0):
        raise ValueError(f"FLARE_DATA_SPLIT must be iid or dirichlet:ALPHA with ALPHA > 0, got {split!r}")
    return index, sites, split, seed


def site_share():
    """This site's training rows and its slice of the test rows."""
    index, sites, split, seed = site_settings()
    x, y, x_test, y_test = load(seed)
    if split == "iid":
        rows = np.arange(index, len(y), sites)
    else:
        # Label skew: each class is dealt to the sites in Dirichlet(alpha) proportions (the same draw at every site).
        alpha = float(split.split(":", 1)[1])
        rng = np.random.default_rng(seed + 1)
        mine = []
        for c in range(CLASSES):
            members = np.flatnonzero(y == c)
            cuts = (np.cumsum(rng.dirichlet([alpha] * sites)) * len(members)).astype(int)[:-1]
            mine.append(np.split(members, cuts)[index])
        rows = np.sort(np.concatenate(mine))
    test = slice(index, None, sites)
    return x[rows], y[rows], x_test[test], y_test[test]
