"""Held-out probes of a latent space against ground-truth columns (evaluation only, never training).

A probe is fitted on the training patients' latents and scored on held-out patients; patients
without a value are left out. Categorical / binary truth: logistic regression or kNN classifier,
scored by balanced accuracy. Continuous truth: ridge or kNN regression, scored by R^2. Each score
gets a 95% percentile bootstrap CI over the held-out patients.

:func:`mixture_recovery` is unsupervised: a Gaussian mixture with as many components as the truth has
classes, fitted on every patient's latent, scored by ARI against the truth (what a cluster analysis of
that space can recover; the clustering stage's own choice is scored in clustering/metrics.json).

The kNN probe breaks distance ties by training row order (exact distances computed elementwise, stable
sort), so its score does not depend on the thread count or the search algorithm: tied rows are common
(every patient without any input sits at the prior mean).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import adjusted_rand_score, balanced_accuracy_score, r2_score
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def probe_latent(latent: np.ndarray, labels: np.ndarray, *, train_idx: np.ndarray, test_idx: np.ndarray,
                 kind: str = "logistic", continuous: bool = False, k: int = 15, seed: int = 0,
                 n_boot: int = 500) -> dict[str, float | str]:
    """Fit a ``kind`` ("logistic" | "knn") probe on ``latent[train_idx]``, score it on ``latent[test_idx]``.

    ``latent`` (N, d); ``labels`` (N,) with nulls for patients without a value; ``continuous``
    switches to regression ("logistic" then means ridge regression). Returns ``metric``
    ("balanced_accuracy" | "r2"), ``score``, ``ci_low``, ``ci_high``, ``n_train``, ``n_test``.
    """
    missing = pd.isna(pd.Series(labels, dtype=object)).to_numpy()
    tr = np.asarray([i for i in train_idx if not missing[i]], int)
    te = np.asarray([i for i in test_idx if not missing[i]], int)
    metric = "r2" if continuous else "balanced_accuracy"
    y = np.asarray(labels, dtype=object)
    y = y.astype(float) if continuous else y.astype(str)
    if len(tr) < 2 or len(te) < 2 or len(set(y[tr].tolist())) < 2:
        return {"metric": metric, "n_train": len(tr), "n_test": len(te), "skipped": "too few labelled patients"}
    if kind not in ("logistic", "knn"):
        raise ValueError(f"unknown probe kind {kind!r}; use 'logistic' or 'knn'")
    if continuous:
        score_fn = r2_score
    else:
        score_fn = balanced_accuracy_score
    if kind == "knn":
        scaler = StandardScaler().fit(latent[tr])
        pred = knn_predict(scaler.transform(latent[tr]), y[tr], scaler.transform(latent[te]), k=min(k, len(tr)),
                           continuous=continuous)
    else:
        est = RidgeCV() if continuous else LogisticRegression(max_iter=2000, random_state=seed)
        pred = make_pipeline(StandardScaler(), est).fit(latent[tr], y[tr]).predict(latent[te])
    truth = y[te]
    rng = np.random.default_rng(seed)
    boots = []
    with warnings.catch_warnings():   # a resample may lack a class that the probe predicts: expected
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(n_boot):
            b = rng.integers(0, len(te), len(te))
            if len(set(truth[b].tolist())) > 1:
                boots.append(score_fn(truth[b], pred[b]))
    lo, hi = np.percentile(boots, [2.5, 97.5]) if boots else (np.nan, np.nan)
    return {"metric": metric, "score": float(score_fn(truth, pred)), "ci_low": float(lo), "ci_high": float(hi),
            "n_train": len(tr), "n_test": len(te)}


def knn_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, *, k: int, continuous: bool,
                block: int = 256) -> np.ndarray:
    """Uniform-weight kNN prediction with deterministic ties: ``(n_test,)`` labels (majority, ties to the
    smallest label) or means.

    Euclidean distances are computed elementwise in numpy (no BLAS blocking, so identical rows give
    identical distances) and neighbours taken by a stable sort: equal distances go to the lower training row.
    """
    x_train, x_test = np.asarray(x_train, np.float64), np.asarray(x_test, np.float64)
    classes, codes = np.unique(y_train, return_inverse=True) if not continuous else (None, None)
    out = []
    for start in range(0, len(x_test), block):
        diff = x_test[start:start + block, None, :] - x_train[None, :, :]
        dist = np.einsum("ijk,ijk->ij", diff, diff)
        nn = np.argsort(dist, axis=1, kind="stable")[:, :k]
        if continuous:
            out.append(np.asarray(y_train, np.float64)[nn].mean(axis=1))
        else:
            votes = np.apply_along_axis(np.bincount, 1, codes[nn], minlength=len(classes))
            out.append(classes[votes.argmax(axis=1)])
    return np.concatenate(out) if out else np.asarray([], dtype=float if continuous else object)


def mixture_recovery(latent: np.ndarray, labels: np.ndarray, *, seed: int = 0, n_init: int = 5) -> dict[str, float | str]:
    """ARI between a seeded Gaussian mixture (K = number of truth classes) on ``latent`` and categorical ``labels``.

    Patients without a truth value still shape the mixture but are not scored.
    """
    y = pd.Series(labels, dtype=object)
    known = y.notna().to_numpy()
    k = int(y[known].nunique())
    if k < 2 or known.sum() <= k:
        return {"metric": "ari", "n": int(known.sum()), "skipped": "fewer than 2 truth classes or too few patients"}
    pred = GaussianMixture(k, reg_covar=1e-3, n_init=n_init, random_state=seed).fit_predict(latent.astype(np.float64))
    return {"metric": "ari", "score": float(adjusted_rand_score(y[known].astype(str), pred[known])),
            "n": int(known.sum()), "n_components": k}
