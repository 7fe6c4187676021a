"""Probes: pooling shapes, inner-CV choice of C, and every probe learns a planted signal."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from benchmarks.config import BenchmarksConfig
from benchmarks.probes import TrainSet, choose_C, fit_predict, pool


def test_pooling():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    assert pool(x, "flatten").shape == (2, 12)
    assert np.array_equal(pool(x, "mean"), x.mean(axis=1))
    assert np.array_equal(pool(x, "cls"), x[:, 0])
    assert pool(x[:, 0], "mean").shape == (2, 4)
    with pytest.raises(ValueError, match=r"\(N, D\) or \(N, T, D\)"):
        pool(np.zeros((2, 2, 2, 2)), "mean")


def _data(rng, n, d=20):
    y = rng.integers(0, 2, n)
    X = rng.standard_normal((n, d)).astype(np.float32)
    X[:, :3] += 1.2 * y[:, None]
    return X, y


@pytest.mark.parametrize("probe", ["logistic", "lightgbm", "mlp"])
def test_probes_learn_planted_signal(probe):
    rng = np.random.default_rng(0)
    X, y = _data(rng, 300)
    Xt, yt = _data(rng, 200)
    train = TrainSet(X, y, np.arange(300).astype(str), np.ones(300, bool))
    cfg = BenchmarksConfig(lightgbm={"n_estimators": 30, "n_jobs": 1}, mlp={"hidden": [16], "max_iter": 100})
    score, _ = fit_predict(probe, train, Xt, cfg=cfg, seed=0)
    assert score.shape == (200,) and ((score >= 0) & (score <= 1)).all()
    assert roc_auc_score(yt, score) > 0.85


def _contrast_data(rng, n):
    """The signal is x0 - x1: x0 = signal + a large nuisance, x1 = the nuisance. Heavy shrinkage drives the
    coefficients towards the class-mean difference (x0 alone, buried in the nuisance) and loses the contrast."""
    y = rng.integers(0, 2, n)
    nuisance = 3 * rng.standard_normal(n)
    X = np.column_stack([y + 0.5 * rng.standard_normal(n) + nuisance, nuisance,
                         rng.standard_normal((n, 3))]).astype(np.float32)
    return X, y


def test_inner_cv_picks_a_grid_value_and_reports_it():
    rng = np.random.default_rng(1)
    X, y = _contrast_data(rng, 240)
    groups = np.repeat(np.arange(120), 2).astype(str)        # 2 rows per patient
    original = np.tile([True, False], 120)
    cfg = BenchmarksConfig(logistic={"C": None, "C_grid": [1e-4, 0.1, 10.0]})
    C = choose_C(TrainSet(X, y, groups, original), cfg=cfg, seed=0)
    assert C in (0.1, 10.0)                                  # 1e-4 keeps only the mean difference
    _, params = fit_predict("logistic", TrainSet(X, y, groups, original), X[:5], cfg=cfg, seed=0)
    assert params["C"] == C


def test_lightgbm_early_stops_on_patient_grouped_originals_and_picks_threads(monkeypatch):
    import benchmarks.lgbm as lgbm

    rng = np.random.default_rng(7)
    X, y = _data(rng, 600)
    groups = np.repeat(np.arange(300), 2)                 # two rows per patient: an original and a copy
    original = np.tile([True, False], 300)
    cfg = BenchmarksConfig(lightgbm={"n_estimators": 200, "early_stopping_rounds": 5, "n_jobs": 1})
    X_test, y_test = _data(rng, 200)
    score, params = fit_predict("lightgbm", TrainSet(X, y, groups.astype(str), original), X_test, cfg=cfg, seed=0)
    assert roc_auc_score(y_test, score) > 0.75
    assert 1 <= params["trees"] < 200 and params["threads"] == 1
    monkeypatch.setattr(lgbm.os, "getloadavg", lambda: (30.0, 0.0, 0.0))      # a host busier than its cores
    assert lgbm.lightgbm_threads(None) == 1 and lgbm.lightgbm_threads(3) == 3
    monkeypatch.setattr(lgbm.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert lgbm.lightgbm_threads(None) == len(lgbm.os.sched_getaffinity(0))
