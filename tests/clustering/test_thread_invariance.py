"""Clustering gives bit-identical kNN graphs, labels and UMAP coordinates for 1, 2 and 4 threads.

Each setting runs in its own process (thread pools are fixed at start-up): BLAS/OpenMP/numba
threads from the environment, torch threads set, and the process pinned to one core for the
1-thread run, so the thread pools of ``clustering.knn`` differ in size too. Both the exact and
the IVF kNN paths run, each followed by the PCA, the Leiden sweep and the batched UMAP.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow   # minutes: `make test-fast` leaves it out

REPO = Path(__file__).resolve().parents[2]

PROBE = r"""
import hashlib, json, sys
import numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from clustering.config import ClusteringConfig
from clustering.environment import compute_environment
from clustering.knn import build_knn
from clustering.leiden import connectivities
from clustering.sweep import sweep
from clustering.umap_embed import umap_layout

rng = np.random.default_rng(0)
x = (rng.normal(size=(6, 96))[rng.integers(0, 6, 2500)] * 0.5 + rng.normal(size=(2500, 96))).astype(np.float32)
digest = lambda a: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
out = {"cores": compute_environment()["cores"]}
for path, exact_max_n in (("exact", 50_000), ("ivf", 500)):
    cfg = ClusteringConfig.model_validate({"knn": {"pca_dims": 20, "exact_max_n": exact_max_n},
                                           "leiden": {"n_seeds": 2, "n_subsamples": 2}, "umap": {"n_epochs": 60}})
    knn = build_knn(x, cfg.knn, seed=0, progress=False)
    adj = connectivities(knn)
    lr = sweep(adj, cfg.leiden, rep=knn.rep, knn_cfg=cfg.knn, seed=0, progress=False)
    coords, _ = umap_layout(knn.rep, knn, lr.labels, cfg.umap, cfg.knn, seed=0, graph=adj)
    out[path] = {"method": knn.method, "pca": digest(knn.rep), "indices": digest(knn.indices),
                 "distances": digest(knn.distances), "labels": digest(lr.labels), "umap": digest(coords)}
print(json.dumps(out))
"""


def _run(threads: int, *, one_core: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), **{k: str(threads) for k in (
        "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")}}
    pin = (lambda: os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})) if one_core else None
    res = subprocess.run([sys.executable, "-c", PROBE, str(threads)], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=600, preexec_fn=pin)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity (Linux)")
def test_clustering_is_bit_identical_for_1_2_and_4_threads() -> None:
    one, two, four = _run(1, one_core=True), _run(2, one_core=False), _run(4, one_core=False)
    assert one["cores"] == 1
    assert one["exact"]["method"] == "exact" and one["ivf"]["method"] == "ivf"
    for path in ("exact", "ivf"):
        assert one[path] == two[path] == four[path], path
