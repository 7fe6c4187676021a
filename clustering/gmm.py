"""Gaussian-mixture latent classes: the incumbent of the ARDS subphenotype literature, beside Leiden.

Latent class analysis (Calfee 2014 and successors) fits finite mixtures and picks the number of
classes by BIC. Here a scikit-learn ``GaussianMixture`` is fitted on the same searched space as the
kNN graph (the latent, or its PCA) for 1..``max_components`` classes, ``n_init`` EM restarts each;
the count with the lowest BIC wins. One class means the mixture finds no structure. Labels are each
point's most probable class, ordered by size (:func:`clustering.leiden.canonical`).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.mixture import GaussianMixture
from tqdm.auto import tqdm

from .config import GmmConfig
from .leiden import canonical

log = logging.getLogger(__name__)


@dataclass
class GmmResult:
    """Chosen mixture: labels ``(n,)`` 0..K-1 by size, the BIC table and why."""

    labels: np.ndarray
    n_components: int
    bic: pd.DataFrame           # n_components, bic, log_likelihood, converged, chosen
    reason: str
    seconds: float


def fit_gmm(x: np.ndarray, *, n_components: int, cfg: GmmConfig, seed: int) -> tuple[np.ndarray, GaussianMixture]:
    """Fit one mixture with ``n_components`` classes on ``x`` ``(n, d)`` -> (labels ``(n,)`` by size, the model)."""
    model = GaussianMixture(n_components=n_components, covariance_type=cfg.covariance_type, n_init=cfg.n_init,
                            random_state=seed, reg_covar=1e-5)
    return canonical(model.fit_predict(x.astype(np.float64))), model


def choose_gmm(x: np.ndarray, cfg: GmmConfig, *, seed: int, progress: bool = True) -> GmmResult:
    """Fit 1..``max_components`` classes on ``x`` ``(n, d)`` and keep the count with the lowest BIC."""
    t0 = time.perf_counter()
    rows, fits = [], {}
    top = min(cfg.max_components, max(1, x.shape[0] // 10))      # at least ~10 points per class
    for k in tqdm(range(1, top + 1), desc="Gaussian mixture", disable=not progress, leave=False):
        labels, model = fit_gmm(x, n_components=k, cfg=cfg, seed=seed)
        fits[k] = labels
        rows.append({"n_components": k, "bic": float(model.bic(x.astype(np.float64))),
                     "log_likelihood": float(model.score(x.astype(np.float64)) * len(x)),
                     "converged": bool(model.converged_), "n_classes_used": int(len(np.unique(labels)))})
    table = pd.DataFrame(rows)
    best = int(table.loc[table.bic.idxmin(), "n_components"])
    table["chosen"] = table.n_components == best
    reason = (f"lowest BIC ({table.bic.min():.1f}) over 1..{top} classes ({cfg.covariance_type} covariances, "
              f"{cfg.n_init} EM restarts each)" + ("; one class: the mixture finds no structure" if best == 1 else ""))
    log.info("Gaussian mixture: %d classes (%s)", best, reason)
    return GmmResult(fits[best], best, table, reason, time.perf_counter() - t0)
