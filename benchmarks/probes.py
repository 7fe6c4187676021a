"""Probes fitted on embeddings: L2 logistic regression, LightGBM, a small MLP; pooling of multi-token embeddings."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits  # a scikit-learn dependency

from .config import BenchmarksConfig, Pooling, ProbeName
from .lgbm import fit_lightgbm


def pool(x: np.ndarray, method: Pooling) -> np.ndarray:
    """``(N, D)`` stays; ``(N, T, D)`` -> ``(N, T*D)`` (flatten), ``(N, D)`` (mean over tokens) or token 0 (cls)."""
    if x.ndim == 2:
        return x
    if x.ndim != 3:
        raise ValueError(f"embeddings must be (N, D) or (N, T, D), got shape {x.shape}")
    if method == "flatten":
        return x.reshape(len(x), -1)
    if method == "mean":
        return x.mean(axis=1)
    return x[:, 0, :]


@dataclass(frozen=True)
class TrainSet:
    """A training fold: features ``X`` (n, d) float32, labels ``y`` (n,), patient ``groups`` (n,), and
    ``original`` (n,) bool (False for augmented copies; inner validation uses originals only)."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    original: np.ndarray


def _logistic(C: float, cfg: BenchmarksConfig) -> LogisticRegression:
    return LogisticRegression(C=C, solver="lbfgs", max_iter=cfg.logistic.max_iter, tol=cfg.logistic.tol,
                              warm_start=True)


# Logistic and MLP fits run their BLAS calls single-threaded: lbfgs alternates memory-bound matrix-vector
# products with many tiny vector operations, where thread hand-offs cost more than a second core saves.
# Measured on the shared 2-core host (load 3-5), lbfgs on standardized float32 features: 9600 x 1024
# 1.34 s multi-threaded vs 0.19 s single; 9600 x 4096 1.4 s vs 0.5 s; 1600 x 1024 1.0 s vs 0.05 s.


def _fit(model, X: np.ndarray, y: np.ndarray):
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def choose_C(train: TrainSet, *, cfg: BenchmarksConfig, seed: int) -> float:
    """C from ``cfg.logistic.C_grid`` with the best mean inner-CV AUROC (patient-grouped folds, validation on
    originals only; the path over the grid is warm-started from strong to weak regularization).
    ``train.X`` is standardized by the outer fold's scaler (unsupervised, so no label leak)."""
    grid = sorted(cfg.logistic.C_grid)
    orig = np.flatnonzero(train.original)
    splitter = StratifiedGroupKFold(n_splits=cfg.logistic.inner_folds, shuffle=True, random_state=seed)
    scores = np.zeros(len(grid))
    for _, val_orig in splitter.split(orig, train.y[orig], groups=train.groups[orig]):
        val_groups = np.unique(train.groups[orig[val_orig]])
        fit_rows = ~np.isin(train.groups, val_groups)
        model = _logistic(grid[0], cfg)
        for i, C in enumerate(grid):
            model.set_params(C=C)
            _fit(model, train.X[fit_rows], train.y[fit_rows])
            val = orig[val_orig]
            scores[i] += roc_auc_score(train.y[val], model.decision_function(train.X[val]))
    return float(grid[int(np.argmax(scores))])


def validation_split(train: TrainSet, *, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A patient-grouped, stratified validation split of the fold's *original* images: ``(val (v,) row indices,
    fit_rows (n,) bool)``; the validation patients' augmented rows are left out of ``fit_rows`` too."""
    orig = np.flatnonzero(train.original)
    n_splits = max(2, round(1 / fraction))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, val_orig = next(splitter.split(orig, train.y[orig], groups=train.groups[orig]))
    val = orig[val_orig]
    return val, ~np.isin(train.groups, np.unique(train.groups[val]))


def _fit_mlp(train: TrainSet, *, cfg: BenchmarksConfig, seed: int) -> tuple[MLPClassifier, int]:
    """An MLP trained one epoch at a time on the fold minus a patient-grouped validation split (originals only);
    returns it with the weights of the epoch (1-based, also returned) with the best validation AUROC."""
    mc = cfg.mlp
    val, fit_rows = validation_split(train, fraction=mc.validation_fraction, seed=seed)
    X, y = train.X[fit_rows], train.y[fit_rows]
    model = MLPClassifier(hidden_layer_sizes=tuple(mc.hidden), alpha=mc.alpha, batch_size=mc.batch_size,
                          learning_rate_init=mc.learning_rate, random_state=seed)
    best, best_epoch, best_weights = -np.inf, 0, None
    with threadpool_limits(1, user_api="blas"):
        for epoch in range(1, mc.max_iter + 1):
            model.partial_fit(X, y, classes=np.array([0, 1]))
            auc = roc_auc_score(train.y[val], model.predict_proba(train.X[val])[:, 1])
            if auc > best:
                best, best_epoch = auc, epoch
                best_weights = ([w.copy() for w in model.coefs_], [b.copy() for b in model.intercepts_])
            elif epoch - best_epoch >= mc.patience:
                break
    model.coefs_, model.intercepts_ = best_weights
    return model, best_epoch


def fit_predict(probe: ProbeName, train: TrainSet, X_test: np.ndarray, *, cfg: BenchmarksConfig,
                seed: int) -> tuple[np.ndarray, dict[str, float]]:
    """Fit ``probe`` on ``train`` and return P(y=1) for ``X_test`` (m,) plus the chosen hyper-parameters.

    Features arrive standardized with the training fold's statistics (see ``crossval.fold_scaler``).
    """
    if probe == "logistic":
        C = cfg.logistic.C if cfg.logistic.C is not None else choose_C(train, cfg=cfg, seed=seed)
        model = _fit(_logistic(C, cfg), train.X, train.y)
        return model.predict_proba(X_test)[:, 1], {"C": C}
    if probe == "lightgbm":
        lc = cfg.lightgbm
        val, fit_rows = (validation_split(train, fraction=lc.validation_fraction, seed=seed)
                         if lc.early_stopping_rounds else (None, None))
        return fit_lightgbm(train.X, train.y, X_test, lc=lc, seed=seed, val=val, fit_rows=fit_rows)
    if probe == "mlp":
        model, epoch = _fit_mlp(train, cfg=cfg, seed=seed)
        return model.predict_proba(X_test)[:, 1], {"epochs": epoch}
    raise ValueError(f"unknown probe {probe!r}; choose logistic, lightgbm or mlp")
