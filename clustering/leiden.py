"""Leiden on the kNN graph: the graph's weights, one seeded run, and the partition helpers the sweep uses.

The graph's edge weights are UMAP's fuzzy-simplicial-set memberships computed from the kNN graph
(as scanpy does), so Leiden and UMAP see the same graph. The resolution sweep and its choice are in
:mod:`clustering.sweep`; many runs at once go through :mod:`clustering.leiden_runs`.
"""
from __future__ import annotations

import logging
import random
from itertools import combinations

import igraph as ig
import numpy as np
import scipy.sparse as sp

from .knn import KnnGraph

log = logging.getLogger(__name__)


def with_self(indices: np.ndarray, distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prepend each point itself (distance 0) to its neighbour lists, as umap-learn expects: ``(n, k+1)``."""
    n = indices.shape[0]
    return (np.hstack([np.arange(n)[:, None], indices]).astype(np.int64),
            np.hstack([np.zeros((n, 1), np.float32), distances]).astype(np.float32))


def smooth_knn_sigmas(distances: np.ndarray, *, n_iter: int = 64, tol: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """UMAP's per-point ``rho`` (nearest distance) and ``sigma`` for ``distances`` ``(n, k)`` (self excluded).

    ``sigma_i`` solves ``sum_j exp(-max(0, d_ij - rho_i) / sigma_i) = log2(k + 1)`` (umap-learn counts
    the point itself in ``n_neighbors``) by bisection, vectorised over the rows still searching; like
    umap-learn, a row stops once its sum is within ``tol`` of the target, and sigma is kept above
    1e-3 times the row's (or, when rho is 0, the global) mean distance.
    """
    d = distances.astype(np.float64)
    n, k = d.shape
    rho = np.where((d > 0).any(1), np.where(d > 0, d, np.inf).min(1), 0.0)
    gap = np.maximum(d - rho[:, None], 0.0)
    target = np.log2(k + 1)
    lo, hi, mid = np.zeros(n), np.full(n, np.inf), np.ones(n)
    rows = np.arange(n)
    for _ in range(n_iter):
        psum = np.exp(-gap[rows] / mid[rows, None]).sum(1)
        searching = np.abs(psum - target) >= tol
        rows, psum = rows[searching], psum[searching]
        if not len(rows):
            break
        over = psum > target
        hi[rows] = np.where(over, mid[rows], hi[rows])
        lo[rows] = np.where(over, lo[rows], mid[rows])
        mid[rows] = np.where(over | np.isfinite(hi[rows]), (lo[rows] + hi[rows]) / 2, mid[rows] * 2)
    floor = 1e-3 * np.where(rho > 0, d.mean(1), d.mean())
    return rho, np.maximum(mid, floor)


def connectivities(knn: KnnGraph) -> sp.csr_matrix:
    """Symmetric ``(n, n)`` fuzzy-simplicial-set weights of the kNN graph (UMAP's), zero diagonal.

    ``w_ij = exp(-max(0, d_ij - rho_i) / sigma_i)``, symmetrised by fuzzy union ``w + w.T - w * w.T``:
    the graph umap-learn builds from the same neighbour lists (checked in the tests), computed with
    numpy so that Leiden does not wait for numba compilation.
    """
    n, k = knn.indices.shape
    rho, sigma = smooth_knn_sigmas(knn.distances)
    w = np.exp(-np.maximum(knn.distances - rho[:, None], 0.0) / sigma[:, None])
    p = sp.csr_matrix((w.ravel(), knn.indices.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))
    pt = p.T.tocsr()
    graph = (p + pt - p.multiply(pt)).tocsr()
    graph.setdiag(0.0)
    graph.eliminate_zeros()
    return graph


def to_igraph(adj: sp.spmatrix) -> ig.Graph:
    """Undirected weighted igraph from a symmetric sparse adjacency (upper triangle used)."""
    up = sp.triu(adj, k=1).tocoo()
    # a list of int pairs: igraph reads it ~5x faster than an (m, 2) array (1.7 s -> 0.3 s for 1.1M edges)
    g = ig.Graph(n=adj.shape[0], edges=list(zip(up.row.tolist(), up.col.tolist())), directed=False)
    g.es["weight"] = up.data
    return g


def run_leiden(g: ig.Graph, *, resolution: float, seed: int, backend: str = "igraph",
               n_iterations: int = -1) -> np.ndarray:
    """One seeded Leiden run (modularity with resolution) -> labels ``(n,)`` int, canonical order."""
    if backend == "igraph":
        previous = random.getstate()
        ig.set_random_number_generator(random.Random(seed))
        try:
            part = g.community_leiden(objective_function="modularity", weights="weight", resolution=resolution,
                                      n_iterations=n_iterations)
        finally:
            ig.set_random_number_generator(random)
            random.setstate(previous)
        labels = np.asarray(part.membership)
    elif backend == "leidenalg":
        import leidenalg

        part = leidenalg.find_partition(g, leidenalg.RBConfigurationVertexPartition, weights="weight",
                                        resolution_parameter=resolution, seed=seed, n_iterations=n_iterations)
        labels = np.asarray(part.membership)
    else:
        raise ValueError(f"unknown Leiden backend {backend!r}: use 'igraph' or 'leidenalg'")
    return canonical(labels)


def canonical(labels: np.ndarray) -> np.ndarray:
    """Relabel clusters 0..K-1 by decreasing size, ties by first member, so equal partitions get equal labels."""
    uniq, first, inverse, counts = np.unique(labels, return_index=True, return_inverse=True, return_counts=True)
    order = np.lexsort((first, -counts))
    rank = np.empty(len(uniq), np.int64)
    rank[order] = np.arange(len(uniq))
    return rank[inverse.ravel()]


def modularity(g: ig.Graph, labels: np.ndarray) -> float:
    """Weighted Newman modularity (resolution 1) of ``labels`` on ``g``."""
    return float(g.modularity(labels.tolist(), weights="weight"))


def merge_small(labels: np.ndarray, adj: sp.csr_matrix, *, min_size: int) -> np.ndarray:
    """Merge clusters smaller than ``min_size`` into the cluster they share the most edge weight with.

    Clusters without edges to any other cluster are kept as they are (reported by the caller).
    """
    labels = labels.copy()
    while True:
        sizes = np.bincount(labels)
        small = [c for c in np.argsort(sizes, kind="stable") if 0 < sizes[c] < min_size]
        merged = False
        for c in small:
            members = np.flatnonzero(labels == c)
            sub = adj[members].tocoo()
            w = np.bincount(labels[sub.col], weights=sub.data, minlength=len(sizes))
            w[c] = 0.0
            if w.max() > 0:
                labels[members] = int(np.argmax(w))
                merged = True
                break
        if not merged:
            return canonical(labels)


def partition_ari(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two partitions given as non-negative integer labels ``(n,)``: the value of
    scikit-learn's ``adjusted_rand_score`` (the same integer pair counts and formula, so bit-identical), with the
    contingency table from one ``bincount`` instead of two sorts (the sweep and the resamples compute ~300)."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    if a.shape != b.shape or a.ndim != 1 or (len(a) and min(a.min(), b.min()) < 0):
        raise ValueError("partition_ari takes two 1-d arrays of non-negative integer labels of the same length")
    n = len(a)
    if n <= 1:
        return 1.0
    width = int(b.max()) + 1
    table = np.bincount(a * width + b, minlength=(int(a.max()) + 1) * width).reshape(-1, width)
    rows, cols = table.sum(1), table.sum(0)
    sum_squares = int((table ** 2).sum())
    tp = sum_squares - n
    fp = int(table.dot(cols).sum()) - sum_squares
    fn = int(table.T.dot(rows).sum()) - sum_squares
    tn = n * n - fp - fn - sum_squares
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def pairwise_ari(parts: list[np.ndarray]) -> np.ndarray:
    """Symmetric ``(m, m)`` matrix of :func:`partition_ari` between ``m`` partitions, ones on the diagonal."""
    out = np.ones((len(parts), len(parts)))
    for i, j in combinations(range(len(parts)), 2):
        out[i, j] = out[j, i] = partition_ari(parts[i], parts[j])
    return out


def mean_pairwise_ari(parts: list[np.ndarray], ari: np.ndarray | None = None) -> float:
    """Mean ARI over all pairs of partitions (1.0 for a single partition); ``ari``: their :func:`pairwise_ari`."""
    if len(parts) < 2:
        return 1.0
    ari = pairwise_ari(parts) if ari is None else ari
    return float(np.mean(ari[np.triu_indices(len(parts), 1)]))


def medoid_partition(parts: list[np.ndarray], ari: np.ndarray | None = None) -> np.ndarray:
    """The partition with the highest mean ARI to the others (first one on ties); ``ari``: their :func:`pairwise_ari`."""
    if len(parts) == 1:
        return parts[0]
    ari = pairwise_ari(parts) if ari is None else ari
    scores = [np.mean(np.delete(ari[i], i)) for i in range(len(parts))]
    return parts[int(np.argmax(scores))]
