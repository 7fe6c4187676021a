"""UMAP layout optimisation in deterministic batched epochs (umap-learn's objective and schedule, parallel).

umap-learn optimises the layout with sequential stochastic gradient steps; with a ``random_state``
it runs single-threaded so that the result is reproducible, which dominates the clustering stage's
time at 100k points. Here the same objective is optimised with the same schedule (edges with weight
below ``max / n_epochs`` dropped, edge ``i`` sampled every ``max_w / w_i`` epochs, ``negative_sample_rate``
negative samples per sample, clipped gradients, learning rate decaying linearly from 1, the
``a``/``b`` curve fitted from ``min_dist``/``spread`` as umap-learn does), but each epoch computes all
updates from the positions at the start of the epoch and applies them together (as cuML's
deterministic mode does). Each point gathers its own updates (graph rows in parallel, fixed order
within a row) and draws its negative samples from an xorshift stream seeded by hashing (seed, epoch,
point), so the layout is identical run after run and for any number of threads. Such batched epochs
need about twice as many epochs as umap-learn's sequential ones for the same neighbour preservation
(``clustering.umap_embed`` doubles umap-learn's default).
"""
from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp
from scipy.optimize import curve_fit

from core.parallel import idle_cores

from .knn import fixed_order_kernels, pca_reduce

_U = np.uint64


def find_ab_params(spread: float, min_dist: float) -> tuple[float, float]:
    """``a``, ``b`` of the curve ``1 / (1 + a d^(2b))`` fitted to UMAP's offset exponential (as umap-learn)."""
    xv = np.linspace(0, spread * 3, 300)
    yv = np.where(xv < min_dist, 1.0, np.exp(-(xv - min_dist) / spread))
    (a, b), _ = curve_fit(lambda x, a, b: 1.0 / (1.0 + a * x ** (2 * b)), xv, yv)
    return float(a), float(b)


def scale_init(coords: np.ndarray, *, seed: int) -> np.ndarray:
    """umap-learn's treatment of an initial layout ``(n, 2)``: largest |coordinate| -> 10, N(0, 1e-4) noise, each axis to [0, 10]."""
    c = (coords * (10.0 / np.abs(coords).max())).astype(np.float32)
    c = c + np.random.default_rng(seed).normal(scale=1e-4, size=c.shape).astype(np.float32)
    lo, hi = c.min(0), c.max(0)
    return (10.0 * (c - lo) / np.where(hi > lo, hi - lo, 1.0)).astype(np.float32)


def initial_layout(rep: np.ndarray, graph: sp.spmatrix, *, init: str, seed: int) -> np.ndarray:
    """Starting layout ``(n, 2)`` as umap-learn makes it: the top two principal components of ``rep`` ``(n, d)``
    (``init="pca"``) or the spectral layout of ``graph`` (``"spectral"``, umap-learn's own function), then :func:`scale_init`."""
    if init == "pca":
        coords = pca_reduce(rep, n_components=2, seed=seed)[0]
    elif init == "spectral":
        from umap.spectral import spectral_layout

        with fixed_order_kernels():   # the eigensolver's BLAS on one thread: the same layout for any thread count
            coords = spectral_layout(rep, graph, 2, np.random.RandomState(seed), metric="cosine")
    else:
        raise ValueError(f"unknown UMAP init {init!r}: use 'pca' or 'spectral'")
    return scale_init(coords, seed=seed)


@numba.njit(inline="always")
def _mix(z: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    """splitmix64 finaliser."""
    z = (z ^ (z >> _U(30))) * _U(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U(27))) * _U(0x94D049BB133111EB)
    return z ^ (z >> _U(31))


@numba.njit(parallel=True, fastmath=True, cache=True)
def _epoch(indptr: np.ndarray, indices: np.ndarray, epochs_per_sample: np.ndarray, next_sample: np.ndarray,
           epochs_per_negative: np.ndarray, next_negative: np.ndarray, y: np.ndarray, y_new: np.ndarray,
           a: np.float32, b: np.float32, gamma: np.float32, alpha: np.float32, epoch: int,
           seed: np.uint64) -> None:  # pragma: no cover - compiled
    """One epoch: ``y_new[j] = y[j] + alpha * (updates of j's sampled edges and their negative samples)``.

    The graph is symmetric, so each sampled pair moves both ends as umap-learn's ``move_other`` does
    through its two directed edges: twice the clipped attractive step per sampled row edge. Negative
    samples of row ``j`` come from an xorshift stream seeded by hashing (seed, epoch, j); indices by
    multiply-shift (Lemire), not modulo.
    """
    n = y.shape[0]
    one, four, eps = np.float32(1.0), np.float32(4.0), np.float32(0.001)
    two_ab = np.float32(2.0) * a * b
    two_gb = np.float32(2.0) * gamma * b
    for j in numba.prange(n):
        state = _mix(seed ^ _mix(_U(epoch) * _U(0x9E3779B97F4A7C15) + _U(j)))
        yj0 = y[j, 0]
        yj1 = y[j, 1]
        g0 = np.float32(0.0)
        g1 = np.float32(0.0)
        for i in range(indptr[j], indptr[j + 1]):
            if next_sample[i] > epoch:
                continue
            k = indices[i]
            d0 = yj0 - y[k, 0]
            d1 = yj1 - y[k, 1]
            dist2 = d0 * d0 + d1 * d1
            if dist2 > 0:
                pw = dist2 ** b
                coeff = -two_ab * (pw / dist2) / (a * pw + one)
                g0 += np.float32(2.0) * min(four, max(-four, coeff * d0))
                g1 += np.float32(2.0) * min(four, max(-four, coeff * d1))
            next_sample[i] += epochs_per_sample[i]
            n_neg = int((epoch - next_negative[i]) / epochs_per_negative[i])
            for _ in range(n_neg):
                state ^= state << _U(13)
                state ^= state >> _U(7)
                state ^= state << _U(17)
                r = int(((state >> _U(32)) * _U(n)) >> _U(32))
                d0 = yj0 - y[r, 0]
                d1 = yj1 - y[r, 1]
                dist2 = d0 * d0 + d1 * d1
                if dist2 > 0:
                    coeff = two_gb / ((eps + dist2) * (a * dist2 ** b + one))
                    g0 += min(four, max(-four, coeff * d0))
                    g1 += min(four, max(-four, coeff * d1))
            next_negative[i] += n_neg * epochs_per_negative[i]
        y_new[j, 0] = yj0 + alpha * g0
        y_new[j, 1] = yj1 + alpha * g1


def optimize_layout(graph: sp.spmatrix, init: np.ndarray, *, n_epochs: int, a: float, b: float, seed: int,
                    negative_sample_rate: int = 5, gamma: float = 1.0, initial_alpha: float = 1.0) -> np.ndarray:
    """Optimise the layout ``init`` ``(n, 2)`` of the symmetric fuzzy graph ``graph`` ``(n, n)`` -> ``(n, 2)`` float32."""
    g = sp.csr_matrix(graph, dtype=np.float64, copy=True)
    if g.shape[0] != g.shape[1] or g.shape[0] != init.shape[0] or init.shape[1] != 2:
        raise ValueError(f"graph {g.shape} and init {init.shape} do not describe one 2-D layout of the same points")
    if abs(g - g.T).max() > 0:
        raise ValueError("the UMAP graph must be symmetric (clustering.leiden.connectivities builds one)")
    g.data[g.data < g.data.max() / n_epochs] = 0.0     # umap-learn: never sampled within n_epochs
    g.eliminate_zeros()
    g.sort_indices()
    epochs_per_sample = g.data.max() / g.data
    epochs_per_negative = epochs_per_sample / negative_sample_rate
    next_sample, next_negative = epochs_per_sample.copy(), epochs_per_negative.copy()
    y = np.ascontiguousarray(init, dtype=np.float32).copy()
    y_new = np.empty_like(y)
    indptr, indices = g.indptr.astype(np.int64), g.indices.astype(np.int64)
    alpha = initial_alpha
    previous = numba.get_num_threads()
    numba.set_num_threads(min(previous, idle_cores(0.05)))    # any thread count gives the same layout; a busy
    try:                                                   # machine is not oversubscribed
        for epoch in range(n_epochs):
            _epoch(indptr, indices, epochs_per_sample, next_sample, epochs_per_negative, next_negative, y, y_new,
                   np.float32(a), np.float32(b), np.float32(gamma), np.float32(alpha), epoch, _U(seed))
            y, y_new = y_new, y
            alpha = initial_alpha * (1.0 - epoch / n_epochs)   # umap-learn's decay, updated after each epoch
    finally:
        numba.set_num_threads(previous)
    return y
