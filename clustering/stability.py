"""Stability of the final partition under subsampling, and per-patient membership confidence.

Each resample draws ``fraction`` of the points without replacement (bootstrap with replacement would
create exact duplicates, which distort a kNN graph), rebuilds the kNN graph on them from the same
representation, reruns Leiden at the chosen resolution and compares with the full partition on the
shared points (ARI). A point's membership confidence is the mean, over the resamples that contain it,
of the fraction of its full-partition cluster mates (also drawn) that the resample puts in its cluster.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score
from tqdm.auto import tqdm

from .config import KnnConfig, LeidenConfig, StabilityConfig
from .knn import build_knn
from .leiden import connectivities, merge_small, run_leiden, to_igraph

log = logging.getLogger(__name__)


@dataclass
class StabilityResult:
    """Per-resample ARIs ``(n_resamples,)`` and per-point confidence ``(n,)`` in [0, 1]."""

    ari: np.ndarray
    confidence: np.ndarray

    def summary(self) -> dict[str, float]:
        """Mean, sd and range of the resample ARIs plus the median confidence."""
        return {"ari_mean": float(self.ari.mean()), "ari_sd": float(self.ari.std(ddof=1)) if len(self.ari) > 1 else 0.0,
                "ari_min": float(self.ari.min()), "ari_max": float(self.ari.max()),
                "n_resamples": int(len(self.ari)), "confidence_median": float(np.nanmedian(self.confidence))}


def co_membership(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per point: fraction of its ``reference`` cluster mates that ``other`` puts in its cluster (NaN if alone)."""
    ref_codes, ref = np.unique(reference, return_inverse=True)
    _, oth = np.unique(other, return_inverse=True)
    table = pd.crosstab(ref, oth).to_numpy()
    same = table[ref, oth] - 1.0
    mates = table.sum(1)[ref] - 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mates > 0, same / np.maximum(mates, 1), np.nan)


def recluster(rep: np.ndarray, *, knn_cfg: KnnConfig, leiden_cfg: LeidenConfig, resolution: float,
              seed: int) -> np.ndarray:
    """kNN graph (no PCA: ``rep`` is already the searched space) + one Leiden run at ``resolution`` -> labels ``(n,)``."""
    knn = build_knn(rep, knn_cfg.model_copy(update={"pca_dims": None}), seed=seed, progress=False)
    adj = connectivities(knn)
    lab = run_leiden(to_igraph(adj), resolution=resolution, seed=seed, backend=leiden_cfg.backend,
                     n_iterations=leiden_cfg.n_iterations)
    return merge_small(lab, adj, min_size=leiden_cfg.min_cluster_size)


def subsample_stability(rep: np.ndarray, labels: np.ndarray, *, resolution: float, knn_cfg: KnnConfig,
                        leiden_cfg: LeidenConfig, cfg: StabilityConfig, seed: int,
                        progress: bool = True) -> StabilityResult:
    """Resample ``rep`` ``(n, d)`` (already reduced), recluster, compare with ``labels`` ``(n,)``."""
    n = rep.shape[0]
    rng = np.random.default_rng(seed + 7919)
    size = int(round(cfg.fraction * n))
    if size <= knn_cfg.k + 1:
        raise ValueError(f"stability.fraction={cfg.fraction} of {n} points leaves {size}, too few for k={knn_cfg.k}")
    conf_sum = np.zeros(n)
    conf_cnt = np.zeros(n)
    aris = []
    for r in tqdm(range(cfg.n_resamples), desc="stability", disable=not progress, leave=False):
        idx = np.sort(rng.choice(n, size=size, replace=False))
        lab = recluster(rep[idx], knn_cfg=knn_cfg, leiden_cfg=leiden_cfg, resolution=resolution, seed=seed + r)
        aris.append(adjusted_rand_score(labels[idx], lab))
        c = co_membership(labels[idx], lab)
        ok = ~np.isnan(c)
        conf_sum[idx[ok]] += c[ok]
        conf_cnt[idx[ok]] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(conf_cnt > 0, conf_sum / np.maximum(conf_cnt, 1), np.nan)
    result = StabilityResult(np.asarray(aris), confidence)
    log.info("stability: %s", result.summary())
    return result
