"""Held-out probes: informative latents score high, noise scores near chance; regression for continuous truth."""
from __future__ import annotations

import numpy as np

from fusion.probes import probe_latent


def test_probe_separates_signal_from_noise() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    signal = np.eye(3)[y] * 3 + rng.normal(size=(300, 3))
    noise = rng.normal(size=(300, 3))
    labels = y.astype(object)
    labels[:10] = None                                              # unlabelled patients are left out
    tr, te = np.arange(200), np.arange(200, 300)
    for kind in ("logistic", "knn"):
        good = probe_latent(signal, labels, train_idx=tr, test_idx=te, kind=kind)
        bad = probe_latent(noise, labels, train_idx=tr, test_idx=te, kind=kind)
        assert good["metric"] == "balanced_accuracy" and good["n_train"] == 190 and good["n_test"] == 100
        assert good["score"] > 0.85 and bad["score"] < 0.5
        assert good["ci_low"] <= good["score"] <= good["ci_high"]


def test_continuous_truth_uses_regression() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=(200, 2))
    target = 2 * z[:, 0] + 0.1 * rng.normal(size=200)
    res = probe_latent(z, target.astype(object), train_idx=np.arange(150), test_idx=np.arange(150, 200),
                       kind="logistic", continuous=True)
    assert res["metric"] == "r2" and res["score"] > 0.95
