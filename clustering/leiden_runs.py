"""Many seeded Leiden runs -- the sweep's seeds and subsamples, the stability resamples -- on worker processes.

The stage runs Leiden about 90 times at the defaults (7 resolutions x 5 seeds on the full graph, 7 x 5 on
subsample graphs, 20 stability resamples); igraph holds the GIL, so threads do not help. A
:class:`LeidenRunner` hands the runs to a process pool whose workers inherit the full graph and the
:class:`~clustering.subgraphs.NeighbourPool` (fork: the workers run only igraph, numpy and scipy, nothing
that uses OpenMP, which deadlocks in a forked child; a forkserver start pickles them once per worker when JAX
is loaded in this process). A run on a subset builds the subset's kNN graph from the pool in the worker
(cached per worker for the sweep's shared subsamples) and merges clusters below ``min_cluster_size`` there.

Every run is seeded and depends only on its own inputs, and results come back in submission order, so the
labels are the same for any number of workers; ``workers`` defaults to the cores that are idle now
(:func:`core.parallel.idle_cores`), so a busy machine is not made slower by oversubscription.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import igraph as ig
import numpy as np
import scipy.sparse as sp

from core.parallel import idle_cores, map_with_state, worker_context

from .config import LeidenConfig
from .leiden import connectivities, merge_small, run_leiden, to_igraph
from .subgraphs import NeighbourPool, subset_knn


@dataclass(frozen=True)
class Run:
    """One Leiden run: on the full graph (``subset`` and ``nodes`` None), on shared subset ``subset``, or on ``nodes``."""

    resolution: float
    seed: int
    subset: int | None = None
    nodes: np.ndarray | None = None


@dataclass
class _State:
    graph: ig.Graph | None
    pool: NeighbourPool | None
    subsets: list[np.ndarray]
    cfg: LeidenConfig


_STATE: _State | None = None


def _install(state: _State | None) -> None:
    global _STATE
    _STATE = state
    _subset_graph.cache_clear()


@lru_cache(maxsize=8)
def _subset_graph(j: int) -> tuple[ig.Graph, sp.csr_matrix]:
    return _graph_of(_STATE.subsets[j])


def _graph_of(nodes: np.ndarray) -> tuple[ig.Graph, sp.csr_matrix]:
    adj = connectivities(subset_knn(_STATE.pool, nodes))
    return to_igraph(adj), adj


def _execute(run: Run) -> np.ndarray:
    cfg = _STATE.cfg
    if run.subset is None and run.nodes is None:
        return run_leiden(_STATE.graph, resolution=run.resolution, seed=run.seed, backend=cfg.backend,
                          n_iterations=cfg.n_iterations)
    g, adj = _subset_graph(run.subset) if run.subset is not None else _graph_of(run.nodes)
    lab = run_leiden(g, resolution=run.resolution, seed=run.seed, backend=cfg.backend, n_iterations=cfg.n_iterations)
    return merge_small(lab, adj, min_size=cfg.min_cluster_size)


class LeidenRunner:
    """Runs :class:`Run` s on ``graph`` (the full graph; None when every run is on a subset) and on subsets of the
    pool's points (module doc)."""

    def __init__(self, graph: ig.Graph | None, cfg: LeidenConfig, *, pool: NeighbourPool | None = None,
                 subsets: list[np.ndarray] | None = None, workers: int | None = None) -> None:
        self.state = _State(graph, pool, list(subsets or []), cfg)
        self.workers = max(1, workers if workers is not None else idle_cores())

    def run(self, runs: list[Run], *, desc: str = "Leiden", progress: bool = True) -> list[np.ndarray]:
        """Labels ``(n,)`` or ``(len(nodes),)`` per run, in the order given (subset runs after ``merge_small``)."""
        return map_with_state(_execute, runs, install=_install, state=self.state, workers=self.workers,
                              start_method=worker_context() or "fork", desc=desc, progress=progress)
