"""Held-out probes: informative latents score high, noise scores near chance; regression for continuous truth."""
from __future__ import annotations

import numpy as np

from fusion.probes import mixture_recovery, probe_latent


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


def test_knn_probe_matches_sklearn_and_breaks_ties_by_row_order() -> None:
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    from fusion.probes import knn_predict

    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(120, 4)), rng.integers(0, 3, 120).astype(str)
    q = rng.normal(size=(40, 4))
    ref = KNeighborsClassifier(n_neighbors=7, algorithm="brute").fit(x, y).predict(q)     # no ties here
    assert (knn_predict(x, y, q, k=7, continuous=False) == ref).all()
    ref_r = KNeighborsRegressor(n_neighbors=7, algorithm="brute").fit(x, y.astype(float)).predict(q)
    np.testing.assert_allclose(knn_predict(x, y.astype(float), q, k=7, continuous=True), ref_r)
    # 30 identical training rows (patients at the prior mean) with different labels, a query among them:
    tied = np.vstack([np.zeros((30, 4)), x])
    labels = np.concatenate([np.array(["a", "b"] * 15), y])
    pred = [knn_predict(tied, labels, np.zeros((5, 4)), k=k, continuous=False, block=b) for k in (3, 4) for b in (1, 2, 64)]
    assert all((p == "a").all() for p in pred)       # rows 0,1,2 -> a,b,a; k=4: a,b,a,b tie -> smallest label


def test_mixture_recovery_finds_separated_classes_not_noise() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.array(["a", "b", "c"], dtype=object), 60)
    centres = {"a": (0, 0), "b": (6, 0), "c": (0, 6)}
    clustered = np.array([centres[x] for x in labels]) + rng.normal(0, 1, (180, 2))
    noise = rng.normal(0, 1, (180, 2))
    with_null = labels.copy()
    with_null[:5] = None
    found = mixture_recovery(clustered, with_null, seed=0)
    assert found["score"] > 0.9 and found["n"] == 175 and found["n_components"] == 3
    assert abs(mixture_recovery(noise, labels, seed=0)["score"]) < 0.1
    assert "skipped" in mixture_recovery(noise, np.array(["a"] * 180, dtype=object))
