"""Benchmark: clustering's kNN + Leiden + UMAP against scanpy's pipeline on synthetic clustered embeddings.

    .venv/bin/python bench/bench_clustering.py --n 100000            # vs scanpy, same run
    .venv/bin/python bench/bench_clustering.py --n 1000000 --no-scanpy --no-umap-full

Data: ``n`` x 1024 float32 rows drawn around 12 centres of unequal size (Dirichlet weights),
signal-to-noise chosen so clusters overlap a little, L2-normalised like foundation-model
embeddings; written once to a ``.npy`` in --work and memory-mapped by each pipeline.

Each pipeline runs in its own fresh Python process (so both pay their imports and numba
compilation), one after the other, and reports per-step wall times, peak RSS and ARI against
the planted clusters:

* scanpy (``bench`` extra, scanpy==1.11.5): ``sc.pp.neighbors(metric='cosine')`` (its default
  PCA-50 + pynndescent/umap connectivities), ``sc.tl.leiden(flavor='igraph', n_iterations=2)``,
  ``sc.tl.umap``.
* ours: ``clustering.knn.build_knn`` (PCA-50, exact blocked search below 300k points, pynndescent
  with measured recall above), ``clustering.leiden.connectivities`` + one ``run_leiden`` at
  resolution 1 (as scanpy; the shipped config's resolution sweep multiplies this by its number of
  runs, reported separately with --sweep), and ``clustering.umap_embed.umap_from_knn`` (umap-learn
  on the same kNN graph; above ``--umap-max`` points a stratified display subsample, as the stage does).
  The Leiden backend choice is measured too: leidenalg vs igraph on the same graph (time, modularity).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_data(path: Path, *, n: int, d: int = 1024, n_clusters: int = 12, seed: int = 0) -> None:
    """Write ``path`` (n, d) float32 .npy and ``path.truth.npy`` (n,) int."""
    if path.is_file() and Path(f"{path}.truth.npy").is_file():
        return
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, d)).astype(np.float32)
    weights = rng.dirichlet(np.full(n_clusters, 3.0))
    truth = rng.choice(n_clusters, size=n, p=weights)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for s in range(0, n, 100_000):
        e = min(s + 100_000, n)
        block = 0.12 * centres[truth[s:e]] + rng.normal(size=(e - s, d)).astype(np.float32)
        out[s:e] = block / np.linalg.norm(block, axis=1, keepdims=True)
    out.flush()
    np.save(f"{path}.truth.npy", truth)


def _peak_rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def run_scanpy(data: Path) -> dict:
    """scanpy's neighbours + Leiden (igraph) + UMAP on the data; per-step seconds and ARI."""
    import anndata as ad
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score

    x = np.load(data)
    truth = np.load(f"{data}.truth.npy")
    adata = ad.AnnData(x)
    out = {}
    t = time.perf_counter()
    sc.pp.neighbors(adata, metric="cosine", random_state=0)
    out["knn_s"] = time.perf_counter() - t
    t = time.perf_counter()
    sc.tl.leiden(adata, flavor="igraph", n_iterations=2, directed=False, random_state=0)
    out["leiden_s"] = time.perf_counter() - t
    t = time.perf_counter()
    sc.tl.umap(adata, random_state=0)
    out["umap_s"] = time.perf_counter() - t
    out["ari"] = float(adjusted_rand_score(truth, adata.obs["leiden"].astype(int)))
    out["n_clusters"] = int(adata.obs["leiden"].nunique())
    out["peak_rss_gb"] = _peak_rss_gb()
    return out


def run_ours(data: Path, *, umap: bool, umap_max: int, sweep: bool, backends: bool) -> dict:
    """Our kNN + Leiden + UMAP on the data; per-step seconds, recall, ARI, backend comparison."""
    from sklearn.metrics import adjusted_rand_score

    from clustering.config import KnnConfig, LeidenConfig, UmapConfig
    from clustering.knn import build_knn, measure_recall
    from clustering.leiden import connectivities, modularity, run_leiden, sweep as leiden_sweep, to_igraph
    from clustering.umap_embed import umap_layout

    x = np.load(data, mmap_mode="r")
    truth = np.load(f"{data}.truth.npy")
    out: dict = {}
    t = time.perf_counter()
    knn = build_knn(x, KnnConfig(), seed=0)
    out["knn_s"] = time.perf_counter() - t
    out["knn"] = knn.summary()
    if knn.method == "exact":   # recall is 1 by construction; check it on a sample anyway
        out["knn_recall_check"] = measure_recall(knn.rep, knn.indices, sample=1000, seed=1)[0]
    t = time.perf_counter()
    adj = connectivities(knn)
    g = to_igraph(adj)
    out["graph_s"] = time.perf_counter() - t
    t = time.perf_counter()
    labels = run_leiden(g, resolution=1.0, seed=0, backend="igraph", n_iterations=-1)
    out["leiden_s"] = time.perf_counter() - t
    out["ari"] = float(adjusted_rand_score(truth, labels))
    out["n_clusters"] = int(labels.max() + 1)
    out["modularity_igraph"] = modularity(g, labels)
    if backends:
        t = time.perf_counter()
        lab2 = run_leiden(g, resolution=1.0, seed=0, backend="leidenalg", n_iterations=-1)
        out["leidenalg_s"] = time.perf_counter() - t
        out["modularity_leidenalg"] = modularity(g, lab2)
        out["ari_leidenalg"] = float(adjusted_rand_score(truth, lab2))
    if sweep:
        t = time.perf_counter()
        res = leiden_sweep(adj, LeidenConfig(n_seeds=3, n_subsamples=2), seed=0)
        out["sweep_s"] = time.perf_counter() - t
        out["sweep_resolution"] = res.resolution
        out["sweep_ari"] = float(adjusted_rand_score(truth, res.labels))
    if umap:
        t = time.perf_counter()
        _, how = umap_layout(knn.rep, knn, labels, UmapConfig(max_points=umap_max), KnnConfig(), seed=0)
        out["umap_s"] = time.perf_counter() - t
        out["umap_how"] = how
    out["peak_rss_gb"] = _peak_rss_gb()
    return out


def _child(which: str, args: argparse.Namespace, data: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", which, "--data", str(data), "--umap-max", str(args.umap_max)]
    cmd += [] if args.umap else ["--no-umap"]
    cmd += ["--sweep"] if args.sweep else []
    cmd += [] if args.backends else ["--no-backends"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{which} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_clustering"))
    ap.add_argument("--no-scanpy", dest="scanpy", action="store_false")
    ap.add_argument("--no-umap", dest="umap", action="store_false")
    ap.add_argument("--umap-max", type=int, default=200_000, help="UMAP of a stratified subsample above this")
    ap.add_argument("--sweep", action="store_true", help="also time a resolution sweep (3 seeds, 2 subsamples)")
    ap.add_argument("--no-backends", dest="backends", action="store_false", help="skip leidenalg vs igraph")
    ap.add_argument("--child", choices=["scanpy", "ours"])
    ap.add_argument("--data", type=Path)
    args = ap.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        res = (run_scanpy(args.data) if args.child == "scanpy" else
               run_ours(args.data, umap=args.umap, umap_max=args.umap_max, sweep=args.sweep, backends=args.backends))
        print(json.dumps(res, default=float))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / f"synthetic_{args.n}x1024.npy"
    t = time.perf_counter()
    make_data(data, n=args.n)
    print(f"data: {data} ({time.perf_counter() - t:.1f} s); load average before: {os.getloadavg()}")
    ours = _child("ours", args, data)
    print("ours:", json.dumps(ours, indent=1, default=float))
    ours_total = ours["knn_s"] + ours["graph_s"] + ours["leiden_s"] + ours.get("umap_s", 0.0)
    print(f"ours: kNN {ours['knn_s']:.1f} s + graph {ours['graph_s']:.1f} s + Leiden {ours['leiden_s']:.1f} s"
          f" + UMAP {ours.get('umap_s', float('nan')):.1f} s = {ours_total:.1f} s; ARI {ours['ari']:.4f}; "
          f"recall@15 {ours['knn']['recall_at_k']}; peak RSS {ours['peak_rss_gb']:.2f} GB")
    if args.scanpy:
        sc = _child("scanpy", args, data)
        print("scanpy:", json.dumps(sc, indent=1, default=float))
        sc_total = sc["knn_s"] + sc["leiden_s"] + sc["umap_s"]
        print(f"scanpy: kNN {sc['knn_s']:.1f} s + Leiden {sc['leiden_s']:.1f} s + UMAP {sc['umap_s']:.1f} s = "
              f"{sc_total:.1f} s; ARI {sc['ari']:.4f}; peak RSS {sc['peak_rss_gb']:.2f} GB")
        print(f"ratio ours/scanpy total time: {ours_total / sc_total:.2f} (target <= 0.5); "
              f"ARI ours - scanpy: {ours['ari'] - sc['ari']:+.4f} (target >= 0)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
