"""Held-out probes of a latent space against ground-truth labels (evaluation only, never training).

A probe is fitted on the training patients' latents and scored on held-out patients; patients
without a label are left out and counted. Balanced accuracy gets a percentile bootstrap CI over
the held-out patients.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def probe_latent(latent: np.ndarray, labels: np.ndarray, *, train_idx: np.ndarray, test_idx: np.ndarray,
                 kind: str = "logistic", k: int = 15, seed: int = 0, n_boot: int = 500) -> dict[str, float]:
    """Fit a ``kind`` ("logistic" | "knn") probe on ``latent[train_idx]`` and score it on ``latent[test_idx]``.

    ``latent`` (N, d); ``labels`` (N,) with None/NaN for unlabelled patients. Returns accuracy,
    balanced accuracy with a 95% bootstrap CI, and the numbers of labelled train / test patients.
    """
    y = np.asarray([None if pd.isna(v) else str(v) for v in labels], dtype=object)
    tr = np.asarray([i for i in train_idx if y[i] is not None], int)
    te = np.asarray([i for i in test_idx if y[i] is not None], int)
    if len(tr) < 2 or len(te) < 1 or len(set(y[tr])) < 2:
        return {"n_train": len(tr), "n_test": len(te), "skipped": 1.0}
    if kind == "logistic":
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    elif kind == "knn":
        clf = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=min(k, len(tr))))
    else:
        raise ValueError(f"unknown probe kind {kind!r}; use 'logistic' or 'knn'")
    clf.fit(latent[tr], y[tr].astype(str))
    pred = clf.predict(latent[te])
    truth = y[te].astype(str)
    rng = np.random.default_rng(seed)
    boots = []
    with warnings.catch_warnings():   # a resample may lack a class that the probe predicts: expected
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(n_boot):
            b = rng.integers(0, len(te), len(te))
            if len(set(truth[b])) > 1:
                boots.append(balanced_accuracy_score(truth[b], pred[b]))
    lo, hi = (np.percentile(boots, [2.5, 97.5]) if boots else (np.nan, np.nan))
    return {"accuracy": float((pred == truth).mean()), "balanced_accuracy": float(balanced_accuracy_score(truth, pred)),
            "balanced_accuracy_ci_low": float(lo), "balanced_accuracy_ci_high": float(hi),
            "n_train": len(tr), "n_test": len(te)}
