"""What a clustering result depends on besides its inputs: library versions and thread settings.

Recorded in ``metrics.json`` so two results can be compared: with the same versions the stage
gives bit-identical kNN graphs, labels and UMAP coordinates for any thread count
(``clustering.knn`` runs every product single-threaded on a pool of row blocks and sums in
block order; ``clustering.umap_sgd`` batches its epochs), which a test checks at 1, 2 and 4 threads.
"""
from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version

import numba
import torch
from threadpoolctl import threadpool_info

_PACKAGES = ("numpy", "scipy", "torch", "scikit-learn", "igraph", "leidenalg", "numba", "umap-learn", "pynndescent")
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def _version(pkg: str) -> str | None:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def compute_environment() -> dict[str, object]:
    """Library versions, usable cores, thread counts (torch, numba, BLAS pools) and thread-related env variables."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"versions": {p: _version(p) for p in _PACKAGES},
            "cores": cores, "torch_threads": torch.get_num_threads(), "numba_threads": numba.get_num_threads(),
            "blas": sorted({f"{i['internal_api']} {i['version']} x{i['num_threads']}" for i in threadpool_info()}),
            "env": {k: os.environ[k] for k in _THREAD_ENV if k in os.environ},
            "thread_invariant": "kNN, Leiden and UMAP are bit-identical for any thread count with these versions"}
