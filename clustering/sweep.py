"""Leiden resolution sweep: seeds, rebuilt-graph subsamples, consensus, choice of the resolution.

For each resolution, Leiden runs with
``n_seeds`` seeds (modularity objective with a resolution parameter) and on ``n_subsamples`` random
node subsets with their own kNN graph in the searched space (an induced subgraph of the full graph
keeps the full data's neighbourhoods and overstates stability: covid 0.847 vs 0.417; the subset graphs
come from one wide search, :mod:`clustering.subgraphs`). The subsets are drawn once and shared by every
resolution; all runs go to worker processes at once (:mod:`clustering.leiden_runs`). Per resolution we report modularity (at
resolution 1, comparable across resolutions), the mean pairwise ARI between seeds, the mean ARI
between subsample runs and the full partition on the shared nodes, and the cluster count. The
consensus partition of a resolution is the seed partition with the highest mean ARI to the other
seeds (the medoid). Its stability is the smaller of the seed and subsample ARIs.

Choice (:func:`choose_resolution`): a resolution is admissible when it gives
``min_clusters..max_clusters`` clusters and its stability reaches ``min_stability`` and lies within
``stability_margin`` of the most stable such resolution; none admissible means no stable structure
(the caller reports it instead of a partition). Among the admissible ones the highest modularity
wins, ties (within ``modularity_tolerance``) to the coarser resolution: a split that is nearly as
stable and adds modularity is taken, which keeps planted classes that a most-stable rule merges (two
classes merged are more stable than three kept apart) -- the rule of chooseR (Patterson-Cross 2021:
near-best stability, then the finest) with modularity in place of the resolution. Everything is
seeded, so the same config and seed give identical labels.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .config import KnnConfig, LeidenConfig
from .leiden import mean_pairwise_ari, medoid_partition, merge_small, modularity, pairwise_ari, partition_ari, to_igraph
from .leiden_runs import LeidenRunner, Run
from .subgraphs import NeighbourPool, neighbour_pool

log = logging.getLogger(__name__)


def subsample_nodes(n: int, *, knn_cfg: KnnConfig, cfg: LeidenConfig, seed: int) -> list[np.ndarray]:
    """``cfg.n_subsamples`` seeded sorted node subsets of ``subsample_fraction`` of ``n`` points."""
    size = int(round(cfg.subsample_fraction * n))
    if cfg.n_subsamples and size <= knn_cfg.k + 1:
        raise ValueError(f"leiden.subsample_fraction={cfg.subsample_fraction} of {n} points leaves {size}, "
                         f"too few for k={knn_cfg.k}: raise it or set leiden.n_subsamples: 0")
    rng = np.random.default_rng(seed)
    return [np.sort(rng.choice(n, size=size, replace=False)) for _ in range(cfg.n_subsamples)]


@dataclass
class LeidenResult:
    """Chosen partition plus the sweep table that justifies it."""

    labels: np.ndarray          # (n,) int, 0..K-1 by decreasing size; all 0 when ``stable`` is False
    resolution: float
    sweep: pd.DataFrame         # one row per resolution
    reason: str
    seconds: float
    partitions: dict[float, np.ndarray]  # consensus partition of every swept resolution
    stable: bool = True         # False: no resolution reached min_stability with an admissible count


def sweep(adj: sp.csr_matrix, cfg: LeidenConfig, *, rep: np.ndarray, knn_cfg: KnnConfig, seed: int,
          progress: bool = True, pool: NeighbourPool | None = None, workers: int | None = None) -> LeidenResult:
    """Resolution sweep with seeds and rebuilt-graph subsamples of ``rep`` ``(n, d)``; the chosen consensus.

    ``pool``: a neighbour pool of ``rep`` wide enough for ``subsample_fraction`` (built here when needed);
    ``workers``: Leiden worker processes (default: the idle cores).
    """
    t0 = time.perf_counter()
    g = to_igraph(adj)
    resolutions = [cfg.resolution] if cfg.resolution is not None else sorted(cfg.resolutions)
    subsets = subsample_nodes(rep.shape[0], knn_cfg=knn_cfg, cfg=cfg, seed=seed)
    if subsets and pool is None:
        pool = neighbour_pool(rep, knn_cfg, fraction=cfg.subsample_fraction, seed=seed)
    runner = LeidenRunner(g, cfg, pool=pool, subsets=subsets, workers=workers)
    runs = ([Run(r, seed + s) for r in resolutions for s in range(cfg.n_seeds)]
            + [Run(r, seed + 1000 + j, subset=j) for r in resolutions for j in range(len(subsets))])
    labels = iter(runner.run(runs, desc="Leiden sweep", progress=progress))
    seeded = {r: [next(labels) for _ in range(cfg.n_seeds)] for r in resolutions}
    on_subsets = {r: [next(labels) for _ in subsets] for r in resolutions}
    rows, consensus = [], {}
    for r in resolutions:
        parts = seeded[r]
        ari = pairwise_ari(parts)
        med = merge_small(medoid_partition(parts, ari), adj, min_size=cfg.min_cluster_size)
        consensus[r] = med
        seed_ari = mean_pairwise_ari(parts, ari)
        sub_ari = (float(np.mean([partition_ari(med[nodes], lab) for nodes, lab in zip(subsets, on_subsets[r])]))
                   if subsets else float("nan"))
        sizes = np.bincount(med)
        rows.append({"resolution": r, "n_clusters": int(len(sizes)),
                     "n_small_clusters": int((sizes < cfg.min_cluster_size).sum()),
                     "largest_fraction": float(sizes.max() / len(med)),
                     "modularity": modularity(g, med), "seed_ari": seed_ari, "subsample_ari": sub_ari,
                     "stability": float(np.nanmin([seed_ari, sub_ari]))})
    table = pd.DataFrame(rows)
    chosen, reason, stable = choose_resolution(table, cfg)
    table["chosen"] = table["resolution"] == chosen
    log.info("Leiden: chose resolution %s (%s)", chosen, reason)
    labels_out = consensus[chosen] if stable else np.zeros(len(consensus[chosen]), np.int64)
    return LeidenResult(labels_out, chosen, table, reason, time.perf_counter() - t0, consensus, stable)


def choose_resolution(table: pd.DataFrame, cfg: LeidenConfig) -> tuple[float, str, bool]:
    """(resolution, why, stable): the most modular admissible resolution (module doc); stable False when none is."""
    if cfg.resolution is not None:
        row = table.iloc[0]
        stable = bool(row.n_clusters >= 2 and row.stability >= cfg.min_stability)
        return float(cfg.resolution), ("fixed in the config (leiden.resolution)" + (
            "" if stable else f"; its partition is not stable (stability {row.stability:.3f} < leiden.min_stability "
                              f"{cfg.min_stability} or one cluster): reported as no stable subtypes")), stable
    counts = (table.n_clusters >= max(cfg.min_clusters, 2)) & (table.n_clusters <= cfg.max_clusters)
    best_stability = table.stability[counts].max() if counts.any() else float("nan")
    ok = table[counts & (table.stability >= cfg.min_stability)
               & (table.stability >= best_stability - cfg.stability_margin)]
    if ok.empty:
        pool = table[counts] if counts.any() else table
        best = pool.sort_values(["stability", "resolution"], ascending=[False, True]).iloc[0]
        return float(best.resolution), (
            f"no stable structure: no resolution with {max(cfg.min_clusters, 2)}-{cfg.max_clusters} clusters reached "
            f"stability {cfg.min_stability} (leiden.min_stability); the best, {best.stability:.3f} at resolution "
            f"{best.resolution} ({int(best.n_clusters)} clusters), is not reported as subtypes"), False
    top = ok.modularity.max()
    tied = ok[ok.modularity >= top - cfg.modularity_tolerance]
    best = tied.sort_values("resolution").iloc[0]
    return float(best.resolution), (
        f"highest modularity ({best.modularity:.3f}; best {top:.3f}, ties within {cfg.modularity_tolerance} go to the "
        f"coarser resolution) among the {len(ok)} resolution(s) with {max(cfg.min_clusters, 2)}-{cfg.max_clusters} "
        f"clusters and stability >= {cfg.min_stability} and within {cfg.stability_margin} of the best "
        f"({best_stability:.3f}) (stability = min of seed ARI and rebuilt-graph subsample ARI; "
        f"here {best.stability:.3f} = min({best.seed_ari:.3f}, {best.subsample_ari:.3f}))"), True
