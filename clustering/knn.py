"""Cosine k-nearest-neighbour graph.

Up to ``exact_max_n`` points the search is exact: rows are L2-normalised and the similarities are
computed in blocks of ``block_rows`` query rows with one matrix product per block (torch, float32),
keeping the top ``k`` per row. Beyond that, pynndescent builds an approximate graph, and its recall
against exact neighbours is measured on a random sample of points. Optionally the input is first
reduced with a seeded randomized PCA (implicit centring, never materialises the centred copy);
the result records which of these was done.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import KnnConfig

log = logging.getLogger(__name__)

_PCA_BLOCK = 65_536


@dataclass
class KnnGraph:
    """kNN result: ``indices``/``distances`` are ``(n, k)``, self excluded, cosine distance = 1 - cos."""

    indices: np.ndarray
    distances: np.ndarray
    method: str                      # "exact" or "pynndescent"
    space: str                       # e.g. "PCA-50 of 1024 dims" or "input (32 dims)"
    recall: float | None             # measured recall@k on a sample (1.0 by construction when exact)
    recall_sample: int               # points the recall was measured on (0 when exact)
    seconds: float
    explained_variance: float | None = None  # fraction kept by the PCA, when PCA ran
    rep: np.ndarray = field(repr=False, default_factory=lambda: np.empty((0, 0), np.float32))  # (n, d') searched space

    def summary(self) -> dict[str, object]:
        """JSON-ready description for reports and provenance."""
        return {"method": self.method, "space": self.space, "k": int(self.indices.shape[1]),
                "n": int(self.indices.shape[0]), "recall_at_k": self.recall, "recall_sample": self.recall_sample,
                "pca_explained_variance": self.explained_variance, "seconds": round(self.seconds, 2)}


def _block(x: np.ndarray, start: int, stop: int) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x[start:stop], dtype=np.float32))


def pca_reduce(x: np.ndarray, *, n_components: int, seed: int, n_power: int = 3) -> tuple[np.ndarray, float]:
    """Seeded randomized PCA of ``x`` ``(n, d)`` -> scores ``(n, n_components)`` float32 and the variance fraction kept.

    Centring is implicit (``(X - mu) @ B = X @ B - mu @ B``), so memory is ``O(n * n_components)``
    on top of ``x`` itself; ``x`` may be a memory map.
    """
    n, d = x.shape
    q = min(d, n, n_components + 10)
    mu = np.zeros(d, np.float64)
    sq = 0.0
    for s in range(0, n, _PCA_BLOCK):
        b = np.asarray(x[s:s + _PCA_BLOCK], dtype=np.float64)
        mu += b.sum(0)
        sq += float((b * b).sum())
    mu /= n
    total_var = (sq - n * float(mu @ mu)) / max(n - 1, 1)
    mu_t = torch.from_numpy(mu.astype(np.float32))

    def xc_times(m: torch.Tensor) -> torch.Tensor:  # (X - mu) @ m, (n, q)
        out = torch.empty(n, m.shape[1])
        for s in range(0, n, _PCA_BLOCK):
            out[s:s + _PCA_BLOCK] = _block(x, s, s + _PCA_BLOCK) @ m
        return out - mu_t @ m

    def xct_times(y: torch.Tensor) -> torch.Tensor:  # (X - mu).T @ y, (d, q)
        acc = torch.zeros(d, y.shape[1], dtype=torch.float64)
        for s in range(0, n, _PCA_BLOCK):
            acc += (_block(x, s, s + _PCA_BLOCK).T @ y[s:s + _PCA_BLOCK]).double()
        acc -= torch.outer(mu_t.double(), y.double().sum(0))
        return acc.float()

    gen = torch.Generator().manual_seed(seed)
    y = xc_times(torch.randn(d, q, generator=gen))
    for _ in range(n_power):
        qm, _ = torch.linalg.qr(y)
        w, _ = torch.linalg.qr(xct_times(qm))
        y = xc_times(w)
    qm, _ = torch.linalg.qr(y)
    _, s_vals, vt = torch.linalg.svd(xct_times(qm).T, full_matrices=False)
    comps = vt[:n_components]
    # deterministic sign: largest-magnitude loading positive
    signs = torch.sign(comps[torch.arange(comps.shape[0]), comps.abs().argmax(1)])
    comps = comps * signs[:, None]
    scores = xc_times(comps.T).numpy()
    kept = float((s_vals[:n_components].double() ** 2).sum()) / max(n - 1, 1) / total_var if total_var > 0 else 1.0
    return scores.astype(np.float32), kept


def normalize_rows(x: np.ndarray, *, what: str = "input") -> torch.Tensor:
    """L2-normalised rows as a float32 tensor; raises ValueError naming zero/non-finite rows."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    bad = ~torch.isfinite(t).all(1)
    norms = t.norm(dim=1)
    bad |= norms == 0
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten()[:10].tolist()
        raise ValueError(f"{what}: {int(bad.sum())} rows are all-zero or non-finite (first rows {rows}); "
                         "cosine similarity is undefined for them: drop or fix those rows upstream")
    return t / norms[:, None]


def knn_exact(x: np.ndarray, *, k: int, block_rows: int = 4096, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine kNN of the rows of ``x`` ``(n, d)``: ``(indices, distances)`` each ``(n, k)``, self excluded.

    One ``(block_rows, n)`` similarity block at a time, top-``k`` along rows. (Using the symmetry to
    halve the products needs top-``k`` along columns, which measured slower on CPU than it saves.)
    """
    z = normalize_rows(x)
    n = z.shape[0]
    if k >= n:
        raise ValueError(f"k={k} neighbours need at least k+1 points, got {n}: lower knn.k in the config")
    idx = np.empty((n, k), np.int64)
    sim_top = np.empty((n, k), np.float32)
    for s in tqdm(range(0, n, block_rows), desc="exact kNN", unit="block", disable=not progress, leave=False):
        e = min(s + block_rows, n)
        sim = z[s:e] @ z.T
        sim[torch.arange(e - s), torch.arange(s, e)] = -torch.inf  # exclude self
        v, i = torch.topk(sim, k, dim=1, largest=True, sorted=True)
        idx[s:e] = i.numpy()
        sim_top[s:e] = v.numpy()
    return idx, np.clip(1.0 - sim_top, 0.0, 2.0)


def knn_ann(x: np.ndarray, *, k: int, seed: int, n_trees: int | None = None,
            n_iters: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Approximate cosine kNN with pynndescent: ``(indices, distances)`` each ``(n, k)``, self excluded."""
    from pynndescent import NNDescent

    index = NNDescent(x, metric="cosine", n_neighbors=k + 1, random_state=seed, n_trees=n_trees,
                      n_iters=n_iters, low_memory=True, verbose=False)
    ind, dist = index.neighbor_graph
    n = x.shape[0]
    is_self = ind == np.arange(n)[:, None]
    # drop self where found, else the farthest neighbour, keeping k per row
    drop = np.where(is_self.any(1), is_self.argmax(1), k)
    keep = np.ones_like(ind, dtype=bool)
    keep[np.arange(n), drop] = False
    return ind[keep].reshape(n, k).astype(np.int64), dist[keep].reshape(n, k).astype(np.float32)


def measure_recall(x: np.ndarray, indices: np.ndarray, *, sample: int, seed: int) -> tuple[float, int]:
    """Mean recall@k of ``indices`` against exact cosine neighbours on ``sample`` random rows of ``x``."""
    n, k = indices.shape
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(sample, n), replace=False))
    z = normalize_rows(x)
    hits = 0
    for s in range(0, len(rows), 1024):
        r = torch.from_numpy(rows[s:s + 1024])
        sim = z[r] @ z.T
        sim[torch.arange(len(r)), r] = -torch.inf
        exact = torch.topk(sim, k, dim=1).indices.numpy()
        hits += sum(len(np.intersect1d(a, b, assume_unique=True)) for a, b in zip(exact, indices[rows[s:s + 1024]]))
    return hits / (len(rows) * k), len(rows)


def build_knn(x: np.ndarray, cfg: KnnConfig, *, seed: int, progress: bool = True) -> KnnGraph:
    """PCA (when configured and useful) then exact or approximate cosine kNN of ``x`` ``(n, d)``."""
    t0 = time.perf_counter()
    n, d = x.shape
    explained = None
    if cfg.pca_dims is not None and d > cfg.pca_dims and n > cfg.pca_dims + 1:
        rep, explained = pca_reduce(x, n_components=cfg.pca_dims, seed=seed)
        space = f"PCA-{cfg.pca_dims} of {d} dims ({explained:.1%} of variance), cosine on PCA scores"
    else:
        rep = np.ascontiguousarray(x, dtype=np.float32)
        space = f"input ({d} dims), cosine"
    if n <= cfg.exact_max_n:
        idx, dist = knn_exact(rep, k=cfg.k, block_rows=cfg.block_rows, progress=progress)
        method, recall, n_rec = "exact", 1.0, 0
    else:
        idx, dist = knn_ann(rep, k=cfg.k, seed=seed, n_trees=cfg.ann_trees, n_iters=cfg.ann_iters)
        method = "pynndescent"
        recall, n_rec = measure_recall(rep, idx, sample=cfg.recall_sample, seed=seed)
        log.info("pynndescent recall@%d = %.4f on %d sampled points", cfg.k, recall, n_rec)
    graph = KnnGraph(idx, dist, method, space, recall, n_rec, time.perf_counter() - t0, explained, rep)
    log.debug("kNN: %s", graph.summary())
    return graph
