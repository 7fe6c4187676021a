"""kNN graphs of node subsets (sweep subsamples, stability resamples, per-site replication) from one wide search.

Reclustering a subset of the points needs the subset's own kNN graph -- each drawn point's ``k`` nearest
among the drawn points (an induced subgraph of the full graph would keep the full data's neighbourhoods and
overstate stability). Rebuilding it costs one search per subset: 25 at the defaults, each an IVF index
beyond ``exact_max_n`` points. Instead :func:`neighbour_pool` searches each point's ``width`` nearest
neighbours in the whole searched space once, and :func:`subset_knn` gives a subset's graph by keeping, for
each drawn point, the first ``k`` drawn points of its wide list. When the wide search is exact this is the
subset's exact kNN graph (the same neighbours a rebuild finds, up to ties); when it is approximate (IVF),
its recall is measured at ``width`` like any graph's. A point whose wide list holds fewer than ``k`` drawn
points (rare for random subsets: ``width`` is ~5 standard deviations above what ``k`` needs at the sampling
fraction; common for a small site) is searched exactly among the drawn points.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import KnnConfig
from .knn import KnnGraph, build_knn


def pool_width(k: int, fraction: float, n: int) -> int:
    """Neighbours to search per point so that a random ``fraction`` subset almost surely keeps ``k`` of them."""
    mean_needed = k / fraction
    return int(min(n - 1, math.ceil(mean_needed + 5 * math.sqrt(mean_needed * (1 - fraction)) / fraction)))


@dataclass
class NeighbourPool:
    """Each point's ``width`` nearest neighbours ``(n, width)`` in the searched space ``rep`` ``(n, d)``."""

    rep: np.ndarray
    wide: KnnGraph
    k: int

    @property
    def width(self) -> int:
        """Neighbours kept per point."""
        return int(self.wide.indices.shape[1])


def neighbour_pool(rep: np.ndarray, knn_cfg: KnnConfig, *, fraction: float, seed: int) -> NeighbourPool:
    """Search ``rep`` once for :func:`pool_width` neighbours per point (exact or IVF as ``knn_cfg`` says, no PCA)."""
    width = pool_width(knn_cfg.k, fraction, rep.shape[0])
    wide = build_knn(rep, knn_cfg.model_copy(update={"pca_dims": None, "k": width}), seed=seed, progress=False)
    return NeighbourPool(rep, wide, knn_cfg.k)


def _exact_rows(x: np.ndarray, rows: np.ndarray, *, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine neighbours (indices, distances) ``(len(rows), k)`` of ``x[rows]`` among the rows of ``x``, self
    excluded; numpy only (it runs in forked Leiden workers, where torch's thread pool is not safe to use)."""
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = z[rows] @ z.T
    sim[np.arange(len(rows)), rows] = -np.inf
    top = np.argpartition(-sim, k, axis=1)[:, :k]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1, kind="stable"), axis=1)
    return top, np.clip(1.0 - np.take_along_axis(sim, top, axis=1), 0.0, 2.0)


def subset_knn(pool: NeighbourPool, nodes: np.ndarray) -> KnnGraph:
    """The kNN graph of the sorted unique ``nodes`` alone (indices into ``nodes``), from the pool (module doc)."""
    n, k = pool.rep.shape[0], pool.k
    if len(nodes) <= k:
        raise ValueError(f"a subset of {len(nodes)} points is too small for k={k} neighbours")
    position = np.full(n, -1, np.int64)
    position[nodes] = np.arange(len(nodes))
    cand = position[pool.wide.indices[nodes]]                        # (m, width), -1 = not drawn
    drawn = cand >= 0
    order = np.argsort(~drawn, axis=1, kind="stable")[:, :k]        # first k drawn, in distance order
    idx = np.take_along_axis(cand, order, axis=1)
    dist = np.take_along_axis(pool.wide.distances[nodes], order, axis=1)
    short = np.flatnonzero(drawn.sum(1) < k)
    if len(short):
        idx[short], dist[short] = _exact_rows(pool.rep[nodes], short, k=k)
    return KnnGraph(idx, dist.astype(np.float32), f"{pool.wide.method} (subset of a {pool.width}-neighbour search)",
                    pool.wide.space, pool.wide.recall, pool.wide.recall_sample, 0.0, None, pool.rep[nodes],
                    {"rows_searched_again": int(len(short))})
