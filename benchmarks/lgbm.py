"""The LightGBM probe, made fast and robust to a busy host.

What costs time in the source study's script (100 trees on every training row, all cores, 255 bins) and what
this path does instead (measured in ``bench/bench_benchmarks.py``; AUROC equal within the fold noise):

* threads: OpenMP threads that outnumber the free cores wait on each other at every histogram barrier; on a
  loaded 2-core host two threads ran 4-8x slower than one. :func:`lightgbm_threads` uses the cores this process
  may run on minus the host's current load (at least 1), unless ``n_jobs`` is set.
* work per tree: 63 histogram bins (``max_bin``), half the features (``feature_fraction``) and half the rows
  (``bagging_fraction``) per tree; the augmented rows are near-copies of the originals, so row bagging loses
  little.
* trees: optional early stopping (``early_stopping_rounds``) on the AUROC of a patient-grouped validation split
  of the training fold's *original* images (their augmented copies are left out of fitting too);
  ``n_estimators`` is the ceiling. Off by default: at learning rate 0.1 the 100-tree probe is not overfitting
  yet, and a noisy 10% validation AUROC stopped it at 34 trees, 0.03 AUROC below the study's 100 trees.
* one binned ``lgb.Dataset`` per fold (the validation set reuses its bin mappers); trees are invariant to the
  fold standardization, so the features go in as they come.
"""
from __future__ import annotations

import os

import numpy as np

from .config import LightGBMConfig


def lightgbm_threads(requested: int | None) -> int:
    """Threads for one LightGBM fit: ``requested`` when given, else the cores this process may use minus the
    host's 1-minute load average (rounded up), at least 1."""
    if requested is not None:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - int(np.ceil(os.getloadavg()[0])))


def lightgbm_params(lc: LightGBMConfig, *, seed: int) -> dict[str, object]:
    """Booster parameters (``lgb.train``) from the config; threads from :func:`lightgbm_threads`."""
    params: dict[str, object] = {
        "objective": "binary", "learning_rate": lc.learning_rate, "num_leaves": lc.num_leaves,
        "feature_fraction": lc.feature_fraction, "bagging_fraction": lc.bagging_fraction,
        "bagging_freq": 1 if lc.bagging_fraction < 1 else 0, "min_child_samples": lc.min_child_samples,
        "max_bin": lc.max_bin, "num_threads": lightgbm_threads(lc.n_jobs), "seed": seed, "deterministic": True,
        "force_col_wise": True, "verbose": -1, "metric": "auc"}
    return params


def fit_lightgbm(X: np.ndarray, y: np.ndarray, X_test: np.ndarray, *, lc: LightGBMConfig, seed: int,
                 val: np.ndarray | None = None, fit_rows: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """P(y=1) for ``X_test`` (m,) from boosted trees fitted on ``X[fit_rows]`` (n, d) float32, early-stopped on
    the AUROC of rows ``val`` when given; returns the scores and {"trees": trees used, "threads": threads}."""
    import lightgbm as lgb

    params = lightgbm_params(lc, seed=seed)
    rows = np.arange(len(y)) if fit_rows is None else np.flatnonzero(fit_rows)
    train = lgb.Dataset(X[rows], y[rows], params=params, free_raw_data=True)
    kwargs: dict[str, object] = {}
    if val is not None and lc.early_stopping_rounds:
        kwargs = {"valid_sets": [lgb.Dataset(X[val], y[val], reference=train)],
                  "callbacks": [lgb.early_stopping(lc.early_stopping_rounds, verbose=False)]}
    booster = lgb.train(params, train, num_boost_round=lc.n_estimators, **kwargs)
    trees = booster.best_iteration or booster.current_iteration()
    return booster.predict(X_test, num_iteration=trees), {"trees": int(trees), "threads": int(params["num_threads"])}
