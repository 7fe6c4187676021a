"""Cross-validated probing of one (dataset, label) task with one model's features."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import BenchmarksConfig, ProbeName
from .data import Features
from .metrics import binary_metrics
from .probes import TrainSet, fit_predict
from .splits import training_rows


@dataclass(frozen=True)
class Task:
    """One (dataset, label): its sampled images that every model has, their labels, patients and folds."""

    dataset: str
    label: str
    image_ids: np.ndarray   # (n,)
    patients: np.ndarray    # (n,)
    y: np.ndarray           # (n,) int 0/1
    folds: np.ndarray       # (n,) fold index, patient-grouped and stratified

    def positions(self, features: Features) -> np.ndarray:
        """Row of each task image in ``features``' arrays."""
        return pd.Index(features.image_ids).get_indexer(self.image_ids)


@dataclass(frozen=True)
class Moments:
    """Per-image sums over the stored augmentations: ``s1`` (n, d) and ``s2`` (n, d) of x and x**2 (float64),
    ``count`` (n,) rows summed. Any training set's mean and SD follow from them without touching its rows."""

    s1: np.ndarray
    s2: np.ndarray
    count: np.ndarray


def image_moments(features: Features, pos: np.ndarray) -> Moments:
    """:class:`Moments` of the task images at rows ``pos`` of ``features``."""
    d = features.X["original"].shape[1]
    s1, s2, count = np.zeros((len(pos), d)), np.zeros((len(pos), d)), np.zeros(len(pos), dtype=np.int64)
    for aug, X in features.X.items():
        have = features.available[aug][pos]
        x = X[pos[have]].astype(np.float64)
        s1[have] += x
        s2[have] += x * x
        count[have] += 1
    return Moments(s1, s2, count)


def fold_scaler(moments: Moments, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, 1/SD) as float32 (d,) over all stored rows (original + augmented) of the training images ``rows``;
    constant features get 1/SD = 1."""
    n = moments.count[rows].sum()
    mean = moments.s1[rows].sum(axis=0) / n
    sd = np.sqrt(np.maximum(moments.s2[rows].sum(axis=0) / n - mean**2, 0.0))
    sd[sd < 1e-12] = 1.0
    return mean.astype(np.float32), (1.0 / sd).astype(np.float32)


def standardized(X: np.ndarray, index: np.ndarray, scaler: tuple[np.ndarray, np.ndarray] | None,
                 out: np.ndarray | None = None) -> np.ndarray:
    """``(X[index] - mean) / SD`` gathered and scaled in place (float32); ``scaler=None`` only gathers."""
    out = np.take(X, index, axis=0, out=out)
    if scaler is not None:
        out -= scaler[0]
        out *= scaler[1]
    return out


def build_train_set(features: Features, pos: np.ndarray, rows: np.ndarray, y: np.ndarray, patients: np.ndarray,
                    *, scaler: tuple[np.ndarray, np.ndarray] | None = None) -> TrainSet:
    """Stack the original and augmented rows of the training images ``rows`` (task indices), standardized by
    ``scaler`` (from :func:`fold_scaler`) when given."""
    avail = {aug: mask[pos] for aug, mask in features.available.items()}
    parts = training_rows(rows, avail)
    X = np.empty((sum(len(r) for r in parts.values()), features.X["original"].shape[1]), dtype=np.float32)
    start = 0
    for aug, r in parts.items():
        standardized(features.X[aug], pos[r], scaler, out=X[start:start + len(r)])
        start += len(r)
    return TrainSet(X=X, y=np.concatenate([y[r] for r in parts.values()]),
                    groups=np.concatenate([patients[r] for r in parts.values()]),
                    original=np.concatenate([np.full(len(r), aug == "original") for aug, r in parts.items()]))


def flip_labels(y: np.ndarray, rows: np.ndarray, *, fraction: float, seed: int) -> np.ndarray:
    """Copy of ``y`` with round(fraction * len(rows)) of the training images ``rows`` flipped (seeded);
    an image's augmented copies carry its flipped label too."""
    out = y.copy()
    n_flip = int(round(fraction * len(rows)))
    if n_flip:
        chosen = np.random.default_rng(seed).choice(rows, size=n_flip, replace=False)
        out[chosen] = 1 - out[chosen]
    return out


def cross_validate(task: Task, features: Features, probe: ProbeName, *, cfg: BenchmarksConfig,
                   noise_fraction: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """K-fold probe of ``task``: train on originals + augmentations of the other folds, score the held-out
    fold's originals. Returns (out-of-fold rows, per-fold metrics); ``noise_fraction`` flips that share
    of each training fold's labels (test labels stay true). Features are standardized with each training
    fold's own mean and SD (original + augmented rows), computed from per-image sums once per task."""
    pos = task.positions(features)
    moments = image_moments(features, pos)
    oof, per_fold = [], []
    for k in np.unique(task.folds):
        test = np.flatnonzero(task.folds == k)
        train = np.flatnonzero(task.folds != k)
        seed = cfg.seed * 1000 + int(k)
        y_train = flip_labels(task.y, train, fraction=noise_fraction, seed=seed) if noise_fraction else task.y
        scaler = fold_scaler(moments, train)
        ts = build_train_set(features, pos, train, y_train, task.patients, scaler=scaler)
        X_test = standardized(features.X["original"], pos[test], scaler)
        score, params = fit_predict(probe, ts, X_test, cfg=cfg, seed=seed)
        oof.append(pd.DataFrame({"fold": int(k), "image_id": task.image_ids[test],
                                 "patient_id": task.patients[test], "y_true": task.y[test].astype(np.int8),
                                 "y_score": score.astype(np.float64)}))
        m = binary_metrics(task.y[test], score, threshold=cfg.threshold)
        per_fold.append({"fold": int(k), **{name: float(v[0]) for name, v in m.items()},
                         "n_train": len(train), "n_train_rows": len(ts.y), "n_test": len(test), **params})
    keys = {"dataset": task.dataset, "label": task.label, "model": features.model, "probe": probe}
    oof_df = pd.concat(oof, ignore_index=True).assign(**keys)
    return oof_df, pd.DataFrame(per_fold).assign(**keys)
