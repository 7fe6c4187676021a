"""Cluster choice: Leiden (kNN graph) and a Gaussian mixture (BIC) side by side; the config picks the exported one.

Both run on the same searched space. Each gets a resampling stability (:mod:`clustering.stability`:
Leiden reruns on a kNN graph rebuilt on every subsample at the chosen resolution; the mixture is
refitted with the chosen class count) and counts as *no stable structure* when it finds fewer than
two groups or its stability is below its ``min_stability``. Then every patient is put in one group
(``S1``) and the validity panel says there are no stable subtypes: a partition of noise is not
reported as subtypes. Their agreement (ARI) is reported.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score

from .config import ClusteringConfig
from .gmm import GmmResult, choose_gmm, fit_gmm, refit_many, warm_workers
from .leiden_runs import LeidenRunner, Run
from .stability import ClusterBatch, StabilityResult, recluster, subsample_stability
from .subgraphs import neighbour_pool
from .sweep import LeidenResult, sweep

log = logging.getLogger(__name__)

Recluster = Callable[[np.ndarray, int], np.ndarray]


@dataclass
class MethodResult:
    """One method's partition ``labels`` ``(n,)`` (0..K-1; all 0 when not ``stable``) and how it was reached."""

    name: str
    labels: np.ndarray
    stable: bool
    reason: str
    stability: StabilityResult | None      # None when the method found a single group
    recluster: Recluster                    # reclusters a subset the same way (replication, stability)

    @property
    def n_subtypes(self) -> int:
        """Groups reported: 1 when there is no stable structure."""
        return int(self.labels.max() + 1)

    def summary(self) -> dict[str, object]:
        """JSON-ready summary."""
        return {"n_subtypes": self.n_subtypes, "stable": self.stable, "reason": self.reason,
                "stability": self.stability.summary() if self.stability is not None else None}


@dataclass
class Choice:
    """Both methods and the one whose labels are exported."""

    leiden: LeidenResult
    leiden_method: MethodResult
    gmm: GmmResult | None
    gmm_method: MethodResult | None
    exported: str

    @property
    def chosen(self) -> MethodResult:
        """The exported method."""
        return self.gmm_method if self.exported == "gmm" else self.leiden_method

    def agreement(self) -> float | None:
        """ARI between the Leiden and mixture partitions (as found, before any no-structure collapse)."""
        if self.gmm is None:
            return None
        return float(adjusted_rand_score(self.leiden.partitions[self.leiden.resolution], self.gmm.labels))

    def summary(self) -> dict[str, object]:
        """``metrics.json`` ``methods``: per method its summary, the agreement, which one is exported."""
        out = {"exported": self.exported, "leiden": {**self.leiden_method.summary(), "resolution": self.leiden.resolution},
               "agreement_ari": self.agreement()}
        if self.gmm_method is not None:
            out["gmm"] = {**self.gmm_method.summary(), "n_components_bic": self.gmm.n_components}
        return out


def _stability(labels: np.ndarray, fn: ClusterBatch, cfg: ClusteringConfig, *, min_points: int) -> StabilityResult:
    return subsample_stability(labels, cluster=fn, cfg=cfg.stability, seed=cfg.seed, min_points=min_points)


def choose(rep: np.ndarray, adj: sp.csr_matrix, cfg: ClusteringConfig) -> Choice:
    """Run Leiden (and the mixture when enabled) on ``rep`` ``(n, d)`` / its graph ``adj``; see module doc.

    One wide neighbour search (:func:`clustering.subgraphs.neighbour_pool`) serves the sweep's subsamples and
    the stability resamples."""
    if cfg.gmm.enabled:
        warm_workers(len(rep), cfg.gmm)
    fraction = min(cfg.leiden.subsample_fraction, cfg.stability.fraction)
    pool = neighbour_pool(rep, cfg.knn, fraction=fraction, seed=cfg.seed)
    leiden = sweep(adj, cfg.leiden, rep=rep, knn_cfg=cfg.knn, seed=cfg.seed, pool=pool)

    def leiden_fn(x: np.ndarray, seed: int) -> np.ndarray:
        return recluster(x, knn_cfg=cfg.knn, leiden_cfg=cfg.leiden, resolution=leiden.resolution, seed=seed)

    def leiden_batch(subsets: list[np.ndarray], seeds: list[int]) -> list[np.ndarray]:
        runner = LeidenRunner(None, cfg.leiden, pool=pool)
        return runner.run([Run(leiden.resolution, s, nodes=nodes) for nodes, s in zip(subsets, seeds)],
                          desc="stability")

    stab = (_stability(leiden.labels, leiden_batch, cfg, min_points=cfg.knn.k + 2) if leiden.stable else None)
    leiden_m = MethodResult("leiden", leiden.labels, leiden.stable, leiden.reason, stab, leiden_fn)
    gmm, gmm_m = None, None
    if cfg.gmm.enabled:
        gmm = choose_gmm(rep, cfg.gmm, seed=cfg.seed)
        k = gmm.n_components

        def gmm_fn(x: np.ndarray, seed: int) -> np.ndarray:
            return fit_gmm(x, n_components=k, cfg=cfg.gmm, seed=seed)[0]

        def gmm_batch(subsets: list[np.ndarray], seeds: list[int]) -> list[np.ndarray]:
            return refit_many(rep, subsets, seeds, n_components=k, cfg=cfg.gmm)

        gstab = _stability(gmm.labels, gmm_batch, cfg, min_points=2 * k) if k > 1 else None
        stable = bool(gstab is not None and gstab.ari.mean() >= cfg.gmm.min_stability)
        reason = gmm.reason if stable else (
            gmm.reason if k == 1 else f"{gmm.reason}; resampling ARI {gstab.ari.mean():.3f} is below "
                                      f"gmm.min_stability {cfg.gmm.min_stability}: no stable structure")
        gmm_m = MethodResult("gmm", gmm.labels if stable else np.zeros(len(rep), np.int64), stable, reason, gstab,
                             gmm_fn)
    choice = Choice(leiden, leiden_m, gmm, gmm_m, cfg.labels)
    log.info("cluster choice: %s", choice.summary())
    return choice
