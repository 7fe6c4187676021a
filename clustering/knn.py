"""Cosine k-nearest-neighbour graph.

Up to ``exact_max_n`` points the search is exact: rows are L2-normalised and the similarities are
computed in blocks of query rows with one matrix product per block (torch, float32) into a reused
buffer, keeping the top ``k`` per row. Beyond that an approximate graph is built and its recall
against exact neighbours is measured on a random sample of points and reported:

* ``ivf`` (default): an inverted-file search. A seeded spherical k-means splits the points into
  ``n_lists`` cells; each query compares itself, exactly, with the points of the ``n_probe`` cells
  whose centroids are most similar to it. ``n_probe`` is chosen from the recall it gives on a
  seeded tuning sample (the fraction of exact neighbours lying in probed cells, less two standard
  errors), so the graph reaches ``target_recall``. Blocks of queries run on a thread pool (BLAS
  single-threaded in each): per probed cell one matrix product with all the block's queries that
  probe it, into a cache-sized tile merged into running top-``k`` lists (numba). Each query's
  result depends only on its block, so it is the same for any number of threads.
* ``pynndescent``: NN-descent, as scanpy uses.

Optionally the input is first reduced by PCA (exact, from the covariance accumulated over row
blocks; randomized for very wide inputs); the result records which of these was done.

Same result for any thread count: every matrix product runs with single-threaded kernels
(:func:`fixed_order_kernels`) on a thread pool of row blocks (:func:`_ordered_map`), and sums over
blocks are taken in block order, so no reduction's order depends on how many threads there are
(a multi-threaded BLAS splits a product's inner dimension by thread count: the PCA scores moved by
~4e-6 between 1 and 2 threads, enough to change 82 of 100,000 neighbour lists).
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import numba
import numpy as np
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from core.config import default_of
from core.parallel import idle_cores

from .config import KnnConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

_PCA_BLOCK = 65_536          # rows of the first block, whose mean shifts the covariance
_PCA_ROWS = 8192             # rows per PCA task on the thread pool
_EXACT_PCA_MAX_DIMS = 4096  # wider: randomized (the (d, d) float64 covariance is 128 MB and its eigh seconds here)
_BUFFER_BYTES = 256 * 2**20   # similarity buffer of the exact search; probe scores of one IVF query chunk
# IVF similarity tile (1 MB), written by the product and scanned by the merge while still in cache: fresh
# per-cell arrays (tens of MB at 1M points) cost page faults and memory traffic, 3x the CPU time
_TILE_FLOATS = 2**18
_IVF_BLOCK = 8192             # IVF queries per task; tasks run on a thread pool, each with single-threaded BLAS

BLOCK_ROWS = default_of(KnnConfig, "block_rows")   # query rows per exact-search block (knn.block_rows)


@dataclass
class KnnGraph:
    """kNN result: ``indices``/``distances`` are ``(n, k)``, self excluded, cosine distance = 1 - cos."""

    indices: np.ndarray
    distances: np.ndarray
    method: str                      # "exact", "ivf" or "pynndescent"
    space: str                       # e.g. "PCA-50 of 1024 dims" or "input (32 dims)"
    recall: float | None             # measured recall@k on a sample (1.0 by construction when exact)
    recall_sample: int               # points the recall was measured on (0 when exact)
    seconds: float
    explained_variance: float | None = None  # fraction kept by the PCA, when PCA ran
    rep: np.ndarray = field(repr=False, default_factory=lambda: np.empty((0, 0), np.float32))  # (n, d') searched space
    params: dict[str, object] = field(default_factory=dict)  # method settings (IVF lists/probes, how chosen)

    def summary(self) -> dict[str, object]:
        """JSON-ready description for reports and provenance."""
        return {"method": self.method, "space": self.space, "k": int(self.indices.shape[1]),
                "n": int(self.indices.shape[0]), "recall_at_k": self.recall, "recall_sample": self.recall_sample,
                "pca_explained_variance": self.explained_variance, "seconds": round(self.seconds, 2), **self.params}


def _block(x: np.ndarray, start: int, stop: int) -> torch.Tensor:
    return torch.from_numpy(np.array(x[start:stop], dtype=np.float32))


@contextmanager
def fixed_order_kernels() -> Iterator[None]:
    """Run torch and BLAS kernels single-threaded inside the block (restored after).

    A multi-threaded product splits its work by thread count, which changes the order of floating
    point sums; on one thread the order is fixed. Parallelism comes from :func:`_ordered_map` instead.
    """
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(prev)


def _ordered_map(fn: Callable[[int], T], items: Iterable[int]) -> Iterator[T]:
    """``fn(item)`` for each item on a thread pool, yielded in item order, at most ``2 * threads`` in flight.

    Call inside :func:`fixed_order_kernels`; summing the results in the order yielded gives the same
    floating point result for any number of threads.
    """
    workers = _threads()
    # each pool thread sets its own kernel threads: OpenMP's thread count is per thread, and a new thread
    # starts from OMP_NUM_THREADS (the cores), so without this each block ran multi-threaded
    with ThreadPoolExecutor(max_workers=workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def pca_reduce(x: np.ndarray, *, n_components: int, seed: int) -> tuple[np.ndarray, float]:
    """PCA of ``x`` ``(n, d)`` -> scores ``(n, n_components)`` float32 and the variance fraction kept; ``x`` may be a memory map.

    Up to ``_EXACT_PCA_MAX_DIMS`` dims the PCA is exact (:func:`_exact_components`); wider inputs use a
    seeded randomized PCA (:func:`_randomized_components`). Component signs: largest-magnitude loading
    positive. Scores come from one more pass over row blocks.
    """
    n, d = x.shape
    find = _exact_components if d <= _EXACT_PCA_MAX_DIMS else _randomized_components
    with fixed_order_kernels():
        comps, kept, mu = find(x, n_components=n_components, seed=seed)
        comps = comps * torch.sign(comps[torch.arange(comps.shape[0]), comps.abs().argmax(1)])[:, None]
        offset = mu @ comps.T
        scores = torch.empty(n, comps.shape[0])

        def project(s: int) -> None:
            scores[s:s + _PCA_ROWS] = _block(x, s, s + _PCA_ROWS) @ comps.T - offset

        for _ in _ordered_map(project, range(0, n, _PCA_ROWS)):
            pass
    return scores.numpy(), kept


def _exact_components(x: np.ndarray, *, n_components: int, seed: int) -> tuple[torch.Tensor, float, torch.Tensor]:
    """Top principal axes ``(n_components, d)``, variance kept and column mean ``(d,)`` of ``x`` from its covariance.

    One pass accumulates the ``(d, d)`` covariance in float64 over row blocks (rows shifted by the
    first block's mean, so no cancellation when the mean is large), then an eigendecomposition.
    Deterministic (``seed`` unused).
    """
    n, d = x.shape
    shift = _block(x, 0, _PCA_BLOCK).double().mean(0).float()
    total = torch.zeros(d, dtype=torch.float64)
    cross = torch.zeros(d, d, dtype=torch.float64)

    def moments(s: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = _block(x, s, s + _PCA_ROWS) - shift
        return b.sum(0, dtype=torch.float64), (b.T @ b).double()

    for part_sum, part_cross in _ordered_map(moments, range(0, n, _PCA_ROWS)):
        total += part_sum
        cross += part_cross
    mean = total / n
    # numpy's LAPACK: MKL's multi-threaded eigh (torch) fails to converge on covariances with many zero
    # eigenvalues (e.g. SqueezeNet features, 429 of 512 constant on the covid images)
    cov = ((cross - n * torch.outer(mean, mean)) / max(n - 1, 1)).numpy()
    evals, evecs = (torch.from_numpy(a) for a in np.linalg.eigh(cov))
    evals = evals.clamp(min=0)
    trace = float(evals.sum())
    kept = float(evals[-n_components:].sum()) / trace if trace > 0 else 1.0
    return evecs[:, -n_components:].flip(1).T.float(), kept, (shift.double() + mean).float()


def _randomized_components(x: np.ndarray, *, n_components: int, seed: int,
                           n_power: int = 7) -> tuple[torch.Tensor, float, torch.Tensor]:
    """Seeded randomized PCA (Halko et al.) of a wide ``x``: axes ``(n_components, d)``, variance kept, mean ``(d,)``.

    Centring is implicit (``(X - mu) @ B = X @ B - mu @ B``), memory ``O((n + d) * n_components)``.
    Approximate: with a flat spectrum the trailing components converge slowly (on the bench's
    clustered embeddings 3 power iterations left a dozen of 50 axes far from the exact ones, and the
    kNN graph measurably worse), which is why inputs up to ``_EXACT_PCA_MAX_DIMS`` dims take the exact path.
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

        def rows(s: int) -> None:
            out[s:s + _PCA_ROWS] = _block(x, s, s + _PCA_ROWS) @ m

        for _ in _ordered_map(rows, range(0, n, _PCA_ROWS)):
            pass
        return out - mu_t @ m

    def xct_times(y: torch.Tensor) -> torch.Tensor:  # (X - mu).T @ y, (d, q)
        acc = torch.zeros(d, y.shape[1], dtype=torch.float64)
        for part in _ordered_map(lambda s: (_block(x, s, s + _PCA_ROWS).T @ y[s:s + _PCA_ROWS]).double(),
                                 range(0, n, _PCA_ROWS)):
            acc += part
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
    kept = float((s_vals[:n_components].double() ** 2).sum()) / max(n - 1, 1) / total_var if total_var > 0 else 1.0
    return vt[:n_components], kept, mu_t


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


def _exact_topk(z: torch.Tensor, queries: torch.Tensor, *, k: int, block_rows: int,
                progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` cosine similarities ``(m, k)`` and indices of the unit rows ``z[queries]`` against all of ``z``, self excluded.

    One ``(rows, n)`` similarity block at a time in one reused buffer of at most ``_BUFFER_BYTES``
    (a fresh 1-2 GB block per product measured twice as slow: page faults). Using the symmetry
    to halve the products needs top-``k`` along columns, which measured slower on CPU than it saves.
    """
    n, m = z.shape[0], len(queries)
    rows = max(1, min(block_rows, _BUFFER_BYTES // (4 * n * _threads()), m))
    local = threading.local()                # one reused buffer per pool thread
    sim = torch.empty(m, k)
    idx = torch.empty(m, k, dtype=torch.int64)

    def search(s: int) -> None:
        if not hasattr(local, "buf"):
            local.buf = torch.empty(rows, n)
        q = queries[s:s + rows]
        out = local.buf[:len(q)]
        torch.matmul(z[q], z.T, out=out)
        out[torch.arange(len(q)), q] = -torch.inf  # exclude self
        torch.topk(out, k, dim=1, largest=True, sorted=True, out=(sim[s:s + len(q)], idx[s:s + len(q)]))

    starts = range(0, m, rows)
    with fixed_order_kernels():
        for _ in tqdm(_ordered_map(search, starts), total=len(starts), desc="exact kNN", unit="block",
                      disable=not progress, leave=False):
            pass
    return sim, idx


def _check_k(n: int, k: int) -> None:
    if k >= n:
        raise ValueError(f"k={k} neighbours need at least k+1 points, got {n}: lower knn.k in the config")


def knn_exact(x: np.ndarray, *, k: int, block_rows: int = BLOCK_ROWS, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine kNN of the rows of ``x`` ``(n, d)``: ``(indices, distances)`` each ``(n, k)``, self excluded."""
    z = normalize_rows(x)
    _check_k(z.shape[0], k)
    sim, idx = _exact_topk(z, torch.arange(z.shape[0]), k=k, block_rows=block_rows, progress=progress)
    return idx.numpy(), np.clip(1.0 - sim.numpy(), 0.0, 2.0)


def spherical_kmeans(z: torch.Tensor, *, n_clusters: int, seed: int, n_iter: int = 10,
                     train_per_cluster: int = 64) -> torch.Tensor:
    """Seeded spherical k-means centroids ``(n_clusters, d)`` (unit rows) of the unit rows ``z`` ``(n, d)``.

    Trained on a seeded sample of ``train_per_cluster * n_clusters`` rows, initialised on sampled
    rows; centroid sums go through a sparse product (fixed summation order), so the result is
    reproducible. A cluster that empties keeps its previous centroid.
    """
    n = z.shape[0]
    rng = np.random.default_rng(seed)
    train = z[torch.from_numpy(np.sort(rng.choice(n, size=min(n, train_per_cluster * n_clusters), replace=False)))]
    cent = train[torch.from_numpy(rng.choice(len(train), size=n_clusters, replace=False))].clone()
    for _ in range(n_iter):
        assign = _nearest_centroid(train, cent)
        member = sp.csr_matrix((np.ones(len(train), np.float32), (assign, np.arange(len(train)))),
                               shape=(n_clusters, len(train)))
        sums = torch.from_numpy(np.asarray(member @ train.numpy(), dtype=np.float32))
        norms = sums.norm(dim=1)
        ok = norms > 0
        cent[ok] = sums[ok] / norms[ok, None]
    return cent


def _threads() -> int:
    """Pool threads for the row blocks: the idle cores (results do not depend on it; a busy machine is not
    oversubscribed)."""
    return idle_cores(window=0.05)


def _nearest_centroid(z: torch.Tensor, cent: torch.Tensor) -> np.ndarray:
    """Index of the most similar centroid for each row of ``z`` (chunked), ``(n,)`` int64."""
    chunk = max(1, _BUFFER_BYTES // (4 * cent.shape[0]))
    return torch.cat([(z[s:s + chunk] @ cent.T).argmax(1) for s in range(0, z.shape[0], chunk)]).numpy()


@numba.njit(nogil=True, cache=True)
def _merge_topk(sim: np.ndarray, queries: np.ndarray, cands: np.ndarray, best_v: np.ndarray,
                best_i: np.ndarray) -> None:  # pragma: no cover - compiled
    """Merge similarities ``sim`` ``(m, c)`` of ``queries`` ``(m,)`` (distinct) to ``cands`` ``(c,)`` into the
    descending top-k rows ``best_v``/``best_i`` ``(n, k)``; self skipped; ties keep the earlier entry.
    Releases the GIL: threads may merge at once into disjoint sets of rows."""
    k = best_v.shape[1]
    for r in range(sim.shape[0]):
        q = queries[r]
        bv = best_v[q]
        bi = best_i[q]
        for j in range(sim.shape[1]):
            v = sim[r, j]
            if v > bv[k - 1] and cands[j] != q:
                p = k - 1
                while p > 0 and bv[p - 1] < v:
                    bv[p] = bv[p - 1]
                    bi[p] = bi[p - 1]
                    p -= 1
                bv[p] = v
                bi[p] = cands[j]


def _tune_probes(z: torch.Tensor, cent: torch.Tensor, cell: np.ndarray, *, k: int, target: float, sample: int,
                 seed: int, block_rows: int) -> tuple[int, float]:
    """Fewest probed cells whose recall on a seeded sample of queries reaches ``target`` with margin, and that recall.

    A query finds exactly those of its exact neighbours that lie in its probed cells, so the recall
    of ``p`` probes for a sampled query is the fraction of its exact neighbours whose cell ranks below
    ``p`` in its centroid order. ``p`` is the fewest for which the mean over the sample, less two
    standard errors (over queries), reaches ``target``, so that the recall measured afterwards on
    other points also does.
    """
    n, lists = z.shape[0], cent.shape[0]
    rows = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False)))
    _, exact = _exact_topk(z, rows, k=k, block_rows=block_rows)
    order = torch.argsort(z[rows] @ cent.T, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(lists).expand_as(order).contiguous())
    ranks = torch.gather(rank, 1, torch.from_numpy(cell)[exact]).numpy()          # (m, k)
    found = np.zeros((len(ranks), lists + 1))                                      # found[i, p]: hits with p probes
    np.add.at(found, (np.repeat(np.arange(len(ranks)), k), ranks.ravel() + 1), 1.0 / k)
    found = np.cumsum(found, axis=1)
    bound = found.mean(0) - 2 * found.std(0, ddof=1) / np.sqrt(len(ranks)) if len(ranks) > 1 else found.mean(0)
    reach = np.flatnonzero(bound[1:] >= target - 1e-12)
    probes = int(reach[0]) + 1 if len(reach) else lists
    return probes, float(found[:, probes].mean())


def knn_ivf(x: np.ndarray, *, k: int, seed: int, n_lists: int | None = None, n_probe: int | None = None,
            target_recall: float = 0.95, tune_sample: int = 2000, block_rows: int = BLOCK_ROWS,
            progress: bool = True) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """Inverted-file cosine kNN of ``x`` ``(n, d)``: ``(indices, distances)`` each ``(n, k)``, self excluded, and settings.

    ``n_lists`` cells (default ``sqrt(n)``) from :func:`spherical_kmeans`; each query searches
    exactly the ``n_probe`` cells with the most similar centroids (default: the fewest giving
    ``target_recall`` on a tuning sample, see :func:`_tune_probes`). ``n_probe = n_lists`` is exact.
    """
    z = normalize_rows(x)
    n = z.shape[0]
    _check_k(n, k)
    lists = int(min(n, n_lists or max(1, round(math.sqrt(n)))))
    cent = spherical_kmeans(z, n_clusters=lists, seed=seed)
    cell = _nearest_centroid(z, cent)
    if n_probe is None:
        probes, tuned = _tune_probes(z, cent, cell, k=k, target=target_recall, sample=tune_sample, seed=seed + 1,
                                     block_rows=block_rows)
        how = (f"fewest whose recall on {min(tune_sample, n)} tuning points less 2 standard errors reaches "
               f"{target_recall} (recall there {tuned:.4f})")
    else:
        probes, how = min(int(n_probe), lists), "fixed in the config (knn.ivf_probes)"
    order = np.argsort(cell, kind="stable")
    counts = np.bincount(cell, minlength=lists)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    zn = z.numpy()
    zs = zn[order]                                           # points grouped by cell: each cell is a slice
    best_v = np.full((n, k), -np.inf, np.float32)
    best_i = np.full((n, k), -1, np.int64)
    cent_t = np.ascontiguousarray(cent.numpy().T)
    block = max(1, min(_IVF_BLOCK, _BUFFER_BYTES // (4 * lists)))

    def search(s: int) -> None:          # queries s .. s + block, written to their own rows of best_v/best_i
        q_all = np.arange(s, min(s + block, n))
        scores = zn[s:s + block] @ cent_t
        probe = np.argpartition(-scores, probes - 1, axis=1)[:, :probes].ravel()   # the probed cells, as a set
        by_cell = np.argsort(probe, kind="stable")
        queries = q_all[by_cell // probes]                    # query ids grouped by probed cell
        bounds = np.concatenate([[0], np.cumsum(np.bincount(probe, minlength=lists))])
        tile = np.empty(_TILE_FLOATS, np.float32)
        for c in np.flatnonzero(bounds[1:] > bounds[:-1]):
            members = zs[starts[c]:starts[c] + counts[c]].T
            ids = order[starts[c]:starts[c] + counts[c]]
            step = max(1, _TILE_FLOATS // int(counts[c]))
            for r in range(bounds[c], bounds[c + 1], step):
                q = queries[r:min(r + step, bounds[c + 1])]
                sim = tile[:len(q) * len(ids)].reshape(len(q), len(ids))
                np.matmul(np.take(zn, q, axis=0), members, out=sim)
                _merge_topk(sim, q, ids, best_v, best_i)

    starts_q = range(0, n, block)
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(max_workers=_threads()) as pool:
        for _ in tqdm(pool.map(search, starts_q), total=len(starts_q), desc="IVF kNN", unit="block",
                      disable=not progress, leave=False):
            pass
    short = np.flatnonzero(best_v[:, -1] == -np.inf)     # fewer than k points in the probed cells
    if len(short):
        v, i = _exact_topk(z, torch.from_numpy(short), k=k, block_rows=block_rows)
        best_v[short], best_i[short] = v.numpy(), i.numpy()
    info = {"ivf_lists": lists, "ivf_probes": probes, "ivf_probes_how": how, "ivf_exact_fallback_rows": int(len(short))}
    return best_i, np.clip(1.0 - best_v, 0.0, 2.0), info


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


def exact_neighbors(x: np.ndarray, rows: np.ndarray, *, k: int, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """Exact cosine neighbours ``(len(rows), k)`` of the rows ``rows`` of ``x`` ``(n, d)`` among all rows, self excluded."""
    return _exact_topk(normalize_rows(x), torch.from_numpy(np.asarray(rows, np.int64)), k=k, block_rows=block_rows)[1].numpy()


def nearest_in(base: np.ndarray, queries: np.ndarray, *, k: int, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """Exact: indices ``(m, k)`` into ``base`` ``(n, d)`` of each row of ``queries`` ``(m, d)``'s ``k`` most
    cosine-similar base rows, most similar first (queries are not part of ``base``)."""
    zb, zq = normalize_rows(base, what="base rows"), normalize_rows(queries, what="query rows")
    _check_k(zb.shape[0] + 1, k)
    starts = range(0, zq.shape[0], block_rows)

    def search(s: int) -> np.ndarray:
        return torch.topk(zq[s:s + block_rows] @ zb.T, k, dim=1, largest=True, sorted=True).indices.numpy()

    with fixed_order_kernels():
        blocks = list(_ordered_map(search, starts))
    return np.concatenate(blocks) if blocks else np.empty((0, k), np.int64)


def measure_recall(x: np.ndarray, indices: np.ndarray, *, sample: int, seed: int,
                   block_rows: int = BLOCK_ROWS) -> tuple[float, int]:
    """Mean recall@k of ``indices`` against exact cosine neighbours on ``sample`` random rows of ``x``."""
    n, k = indices.shape
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))
    exact = exact_neighbors(x, rows, k=k, block_rows=block_rows)
    hits = (indices[rows][:, :, None] == exact[:, None, :]).any(2).sum()
    return float(hits) / (len(rows) * k), len(rows)


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
    params: dict[str, object] = {}
    if n <= cfg.exact_max_n:
        idx, dist = knn_exact(rep, k=cfg.k, block_rows=cfg.block_rows, progress=progress)
        method, recall, n_rec = "exact", 1.0, 0
    else:
        if cfg.ann == "ivf":
            idx, dist, params = knn_ivf(rep, k=cfg.k, seed=seed, n_lists=cfg.ivf_lists, n_probe=cfg.ivf_probes,
                                        target_recall=cfg.target_recall, tune_sample=2 * cfg.recall_sample,
                                        block_rows=cfg.block_rows, progress=progress)
        else:
            idx, dist = knn_ann(rep, k=cfg.k, seed=seed, n_trees=cfg.ann_trees, n_iters=cfg.ann_iters)
        method = cfg.ann
        recall, n_rec = measure_recall(rep, idx, sample=cfg.recall_sample, seed=seed, block_rows=cfg.block_rows)
        log.info("%s recall@%d = %.4f on %d sampled points", method, cfg.k, recall, n_rec)
    graph = KnnGraph(idx, dist, method, space, recall, n_rec, time.perf_counter() - t0, explained, rep, params)
    log.debug("kNN: %s", graph.summary())
    return graph
