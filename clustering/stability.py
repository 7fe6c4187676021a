"""Stability of the final partition under subsampling, and per-patient membership confidence.

Each resample draws ``fraction`` of the points without replacement (bootstrap with replacement would
create exact duplicates, which distort a kNN graph), reclusters them from scratch (Leiden: the drawn
points' own kNN graph, :mod:`clustering.subgraphs`, and Leiden at the chosen resolution, all resamples on
worker processes; Gaussian mixture: refitted with the chosen number of classes) and compares with the full
partition on the shared points (ARI).

A point's membership confidence is a chance-corrected, per-point version of that agreement: in one
resample, with ``A`` its subtype mates that were drawn and ``B`` its cluster mates in the resample,
recall ``|A&B|/|A|`` and precision ``|A&B|/|B|`` are each corrected for what an unrelated partition
with the same cluster sizes would give (``|B|/(m-1)`` and ``|A|/(m-1)``, ``m`` points drawn), and the
point scores the smaller of the two, clipped to [0, 1]. A resample that puts everyone together (or
shuffles them) scores every point 0, as the ARI does; the confidence is the mean over the resamples
that drew the point. It cannot be high where the resampling ARI is low (tested).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .config import KnnConfig, LeidenConfig, StabilityConfig
from .knn import build_knn
from .leiden import connectivities, merge_small, partition_ari, run_leiden, to_igraph

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


def membership_agreement(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per point ``(n,)``: chance-corrected min(recall, precision) of its cluster mates (module doc); NaN if alone."""
    _, ref = np.unique(reference, return_inverse=True)
    _, oth = np.unique(other, return_inverse=True)
    m = len(ref)
    width = oth.max() + 1
    table = np.bincount(ref * width + oth, minlength=(ref.max() + 1) * width).reshape(-1, width).astype(float)
    both = table[ref, oth] - 1.0                      # mates kept together, self excluded
    mates_ref = table.sum(1)[ref] - 1.0
    mates_oth = table.sum(0)[oth] - 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = both / mates_ref
        precision = np.where(mates_oth > 0, both / np.maximum(mates_oth, 1), 0.0)
        e_recall, e_precision = mates_oth / (m - 1), mates_ref / (m - 1)
        adj_recall = np.where(e_recall < 1, (recall - e_recall) / (1 - e_recall), 0.0)
        adj_precision = np.where(e_precision < 1, (precision - e_precision) / (1 - e_precision), 0.0)
    score = np.clip(np.minimum(adj_recall, adj_precision), 0.0, 1.0)
    return np.where(mates_ref > 0, score, np.nan)


def recluster(rep: np.ndarray, *, knn_cfg: KnnConfig, leiden_cfg: LeidenConfig, resolution: float,
              seed: int) -> np.ndarray:
    """kNN graph (no PCA: ``rep`` is already the searched space) + one Leiden run at ``resolution`` -> labels ``(n,)``."""
    knn = build_knn(rep, knn_cfg.model_copy(update={"pca_dims": None}), seed=seed, progress=False)
    adj = connectivities(knn)
    lab = run_leiden(to_igraph(adj), resolution=resolution, seed=seed, backend=leiden_cfg.backend,
                     n_iterations=leiden_cfg.n_iterations)
    return merge_small(lab, adj, min_size=leiden_cfg.min_cluster_size)


ClusterBatch = Callable[[list[np.ndarray], list[int]], list[np.ndarray]]


def subsample_stability(labels: np.ndarray, *, cluster: ClusterBatch, cfg: StabilityConfig, seed: int,
                        min_points: int = 2) -> StabilityResult:
    """Draw ``cfg.n_resamples`` subsets of the ``len(labels)`` points, recluster them all at once with
    ``cluster(node_subsets, seeds) -> labels per subset``, compare each with ``labels`` on its points."""
    n = len(labels)
    rng = np.random.default_rng(seed + 7919)
    size = int(round(cfg.fraction * n))
    if size < min_points:
        raise ValueError(f"stability.fraction={cfg.fraction} of {n} points leaves {size}, fewer than the {min_points} "
                         "the clustering needs: raise stability.fraction")
    draws = [np.sort(rng.choice(n, size=size, replace=False)) for _ in range(cfg.n_resamples)]
    conf_sum = np.zeros(n)
    conf_cnt = np.zeros(n)
    aris = []
    for idx, lab in zip(draws, cluster(draws, [seed + r for r in range(cfg.n_resamples)])):
        aris.append(partition_ari(labels[idx], lab))
        c = membership_agreement(labels[idx], lab)
        ok = ~np.isnan(c)
        conf_sum[idx[ok]] += c[ok]
        conf_cnt[idx[ok]] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(conf_cnt > 0, conf_sum / np.maximum(conf_cnt, 1), np.nan)
    result = StabilityResult(np.asarray(aris), confidence)
    log.info("stability: %s", result.summary())
    return result
