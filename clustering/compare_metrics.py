"""Measures of how two embedding models arrange the same images.

* :func:`linear_cka` -- linear centred kernel alignment (Kornblith et al. 2019) computed in feature space:
  ``||Xc' Yc||_F^2 / (||Xc' Xc||_F ||Yc' Yc||_F)`` with column-centred ``X (n, p)``, ``Y (n, q)``; invariant to
  rotations and isotropic scaling, 1 for the same representation.
* :func:`knn_jaccard` -- per image, the Jaccard index of two models' k nearest-neighbour sets.
* :func:`partition_agreement` -- ARI and AMI of two partitions.
* :func:`probe_auroc` -- out-of-fold macro one-vs-rest AUROC of a logistic probe from an embedding to a
  categorical column, with folds grouped by patient (a patient's images never straddle train and test).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    adjusted_mutual_info_score,
    adjusted_rand_score,
    roc_auc_score,
)
from sklearn.model_selection import StratifiedGroupKFold
from threadpoolctl import threadpool_limits

_BLOCK = 65_536


def _centred_cross(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``Xc' Yc`` ``(p, q)`` float64, accumulated over row blocks (float32 products of centred blocks)."""
    mx = x.mean(0, dtype=np.float64).astype(np.float32)
    my = y.mean(0, dtype=np.float64).astype(np.float32)
    acc = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64)
    for s in range(0, len(x), _BLOCK):
        xb = torch.from_numpy(np.asarray(x[s:s + _BLOCK], np.float32) - mx)
        yb = xb if y is x else torch.from_numpy(np.asarray(y[s:s + _BLOCK], np.float32) - my)
        acc += (xb.T @ yb).double()
    return acc.numpy()


def gram_norm(x: np.ndarray) -> float:
    """``||Xc' Xc||_F`` of ``x`` ``(n, p)`` (the self term of :func:`linear_cka`, computed once per model)."""
    return float(np.linalg.norm(_centred_cross(x, x)))


def linear_cka(x: np.ndarray, y: np.ndarray, *, norm_x: float | None = None, norm_y: float | None = None) -> float:
    """Linear CKA in [0, 1] of ``x`` ``(n, p)`` and ``y`` ``(n, q)`` (rows = the same images); norms may be precomputed."""
    if len(x) != len(y):
        raise ValueError(f"CKA needs the same rows: {len(x)} vs {len(y)}")
    norm_x = gram_norm(x) if norm_x is None else norm_x
    norm_y = gram_norm(y) if norm_y is None else norm_y
    if norm_x == 0 or norm_y == 0:
        return float("nan")
    return float(np.linalg.norm(_centred_cross(x, y)) ** 2 / (norm_x * norm_y))


def knn_jaccard(a: np.ndarray, b: np.ndarray, *, block: int = 65_536) -> np.ndarray:
    """Per-row Jaccard ``|A & B| / |A | B|`` ``(n,)`` of neighbour index lists ``a`` ``(n, k)`` and ``b`` ``(n, k2)``."""
    if len(a) != len(b):
        raise ValueError(f"neighbour lists of different lengths: {len(a)} vs {len(b)}")
    out = np.empty(len(a))
    for s in range(0, len(a), block):
        inter = (a[s:s + block, :, None] == b[s:s + block, None, :]).any(2).sum(1)
        out[s:s + block] = inter / (a.shape[1] + b.shape[1] - inter)
    return out


def partition_agreement(p: np.ndarray, q: np.ndarray) -> dict[str, float]:
    """``{"ari", "ami"}`` of two labelings of the same points."""
    return {"ari": float(adjusted_rand_score(p, q)), "ami": float(adjusted_mutual_info_score(p, q))}


def probe_targets(values: pd.Series, groups: np.ndarray, *, min_patients: int) -> tuple[np.ndarray, list[str]]:
    """Integer codes ``(n,)`` (-1 = not used) of the levels held by at least ``min_patients`` patients, and the levels."""
    vals = values.astype("string")
    per_level = pd.Series(groups).groupby(vals.to_numpy()).nunique()
    levels = sorted(str(v) for v in per_level[per_level >= min_patients].index)
    codes = pd.Categorical(vals, categories=levels).codes.astype(np.int64)
    return codes, levels


def probe_auroc(x: np.ndarray, codes: np.ndarray, groups: np.ndarray, *, folds: int, C: float, seed: int,
                max_n: int) -> dict[str, float]:
    """Out-of-fold macro one-vs-rest AUROC of an L2 logistic probe ``x`` ``(n, d)`` -> ``codes`` ``(n,)`` (-1 unused).

    A seeded subsample of ``max_n`` used rows; folds stratified and grouped by ``groups`` (patients);
    features standardised with each training fold's statistics. Returns ``auroc`` (NaN when fewer than two
    levels are left), ``n`` rows and ``levels``.
    """
    rows = np.flatnonzero(codes >= 0)
    rng = np.random.default_rng(seed)
    if len(rows) > max_n:
        rows = np.sort(rng.choice(rows, size=max_n, replace=False))
    y, g = codes[rows], np.asarray(groups)[rows]
    present = np.unique(y)
    if len(present) < 2 or min(len(np.unique(g[y == c])) for c in present) < folds:
        return {"auroc": float("nan"), "n": len(rows), "levels": len(present)}
    y = np.searchsorted(present, y)
    proba = np.zeros((len(rows), len(present)))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        for train, test in splitter.split(rows, y, groups=g):
            xt = np.asarray(x[rows[train]], np.float64)
            mu, sd = xt.mean(0), xt.std(0)
            sd[sd == 0] = 1.0
            model = LogisticRegression(C=C, max_iter=500).fit((xt - mu) / sd, y[train])
            proba[np.ix_(test, model.classes_)] = model.predict_proba((np.asarray(x[rows[test]], np.float64) - mu) / sd)
    if len(present) == 2:
        auc = roc_auc_score(y, proba[:, 1])
    else:   # macro one-vs-rest, computed per level (a level missing from a training fold has probability 0 there)
        auc = np.mean([roc_auc_score(y == c, proba[:, c]) for c in range(len(present))])
    return {"auroc": float(auc), "n": len(rows), "levels": len(present)}


def variance_concentration(x: np.ndarray, *, top: int = 5) -> float:
    """Share of the total variance of ``x`` ``(n, p)`` carried by its ``top`` highest-variance columns (1.0 when
    ``p <= top``): near 1, distances, CKA and neighbourhoods mostly reflect those few columns (raw features on
    very different scales, e.g. pixel counts beside ratios)."""
    var = np.asarray(x, np.float64).var(axis=0)
    total = var.sum()
    return float(np.sort(var)[::-1][:top].sum() / total) if total > 0 else 1.0
