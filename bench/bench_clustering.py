"""Benchmark: clustering's kNN + Leiden + UMAP against scanpy's pipeline on synthetic clustered embeddings.

    .venv/bin/python bench/bench_clustering.py --n 100000                  # vs scanpy, same run
    .venv/bin/python bench/bench_clustering.py --n 100000 --umap-learn     # + umap-learn on our graph (quality)
    .venv/bin/python bench/bench_clustering.py --n 1000000 --no-scanpy

Data: ``n`` x 1024 float32 rows drawn around 12 centres of unequal size (Dirichlet weights),
signal-to-noise chosen so clusters overlap a little, L2-normalised like foundation-model
embeddings; written once to a ``.npy`` in --work and memory-mapped by each pipeline.

Each pipeline runs in its own fresh Python process (so both pay their imports; numba functions
come from their on-disk caches unless --cold points ours at an empty cache), one after the other,
and reports per-step wall times, peak RSS, ARI against the planted clusters, the recall@k of its
kNN graph against exact cosine neighbours in its own searched space (5000 sampled points, with the
standard error over points), and the
quality of its UMAP layout (``clustering.umap_embed.layout_quality``: fraction of each sampled
point's 15 exact neighbours among its 15 nearest in 2-D, silhouette of the planted clusters):

* scanpy (``bench`` extra, scanpy==1.11.5): ``sc.pp.neighbors(metric='cosine')`` (its default
  PCA-50 + pynndescent/umap connectivities), ``sc.tl.leiden(flavor='igraph', n_iterations=2)``,
  ``sc.tl.umap``.
* ours, with the stage's defaults (``KnnConfig()``, ``LeidenConfig()``, ``UmapConfig()``) unless
  --exact-max-n says otherwise: ``clustering.knn.build_knn`` (exact PCA-50; exact blocked search up
  to ``exact_max_n`` = 50k points, IVF with probes tuned to recall 0.95 beyond),
  ``clustering.leiden.connectivities`` + one ``run_leiden`` at resolution 1 (as scanpy; the shipped
  config's resolution sweep multiplies this by its number of runs, timed with --sweep), and
  ``clustering.umap_embed.umap_layout`` (batched optimiser on the same graph; above ``--umap-max``
  points a stratified display subsample with its own kNN graph, as the stage does).
  --umap-learn also lays out our graph with umap-learn (timed apart, not in the total) for a
  quality comparison on the same graph; --backends times leidenalg against igraph on it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _children import base_parser, run_child  # noqa: E402


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


_RECALL_SAMPLE = 5000


def _recall(rep: np.ndarray, neighbours: list[np.ndarray], rows: np.ndarray, k: int) -> tuple[float, float]:
    """Mean recall@k of ``neighbours`` (one array per row of ``rows``) against exact cosine neighbours, and its SE."""
    from clustering.knn import exact_neighbors

    exact = exact_neighbors(rep, rows, k=k)
    per_row = np.array([len(np.intersect1d(nb, e)) / k for nb, e in zip(neighbours, exact)])
    return float(per_row.mean()), float(per_row.std(ddof=1) / np.sqrt(len(rows)))


def _sample_rows(n: int) -> np.ndarray:
    return np.sort(np.random.default_rng(1).choice(n, size=min(_RECALL_SAMPLE, n), replace=False))


def _scanpy_recall(adata) -> tuple[float, float, int]:
    """Recall of scanpy's kNN (the rows of ``obsp['distances']`` less self) in its own ``X_pca``, its SE, and k.

    scanpy 1.11 stores 16 entries per row for ``n_neighbors=15``, self (distance 0) among them.
    """
    dist = adata.obsp["distances"].tocsr()
    rows = _sample_rows(dist.shape[0])
    nbs = [np.setdiff1d(dist.indices[dist.indptr[r]:dist.indptr[r + 1]], [r]) for r in rows]
    k = min(len(nb) for nb in nbs)
    return (*_recall(adata.obsm["X_pca"], nbs, rows, k), k)


def run_scanpy(data: Path) -> dict:
    """scanpy's neighbours + Leiden (igraph) + UMAP on the data; per-step seconds, recall, ARI, layout quality."""
    import anndata as ad
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score

    from clustering.umap_embed import layout_quality

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
    out["peak_rss_gb"] = _peak_rss_gb()
    out["ari"] = float(adjusted_rand_score(truth, adata.obs["leiden"].astype(int)))
    out["n_clusters"] = int(adata.obs["leiden"].nunique())
    out["recall"], out["recall_se"], out["k"] = _scanpy_recall(adata)
    out["layout"] = layout_quality(adata.obsm["X_pca"], adata.obsm["X_umap"], labels=truth)
    return out


def run_ours(data: Path, *, umap: bool, umap_max: int, exact_max_n: int | None, umap_learn: bool, sweep: bool,
             backends: bool) -> dict:
    """Our kNN + Leiden + UMAP on the data; per-step seconds, recall, ARI, layout quality, comparisons."""
    from sklearn.metrics import adjusted_rand_score

    from clustering.config import KnnConfig, LeidenConfig, UmapConfig
    from clustering.knn import build_knn
    from clustering.leiden import connectivities, modularity, run_leiden, to_igraph
    from clustering.sweep import sweep as leiden_sweep
    from clustering.umap_embed import layout_quality, umap_from_knn, umap_layout

    x = np.load(data, mmap_mode="r")
    truth = np.load(f"{data}.truth.npy")
    knn_cfg = KnnConfig() if exact_max_n is None else KnnConfig(exact_max_n=exact_max_n)
    leiden_cfg = LeidenConfig()
    out: dict = {}
    t = time.perf_counter()
    knn = build_knn(x, knn_cfg, seed=0)
    out["knn_s"] = time.perf_counter() - t
    out["knn"] = knn.summary()
    t = time.perf_counter()
    adj = connectivities(knn)
    g = to_igraph(adj)
    out["graph_s"] = time.perf_counter() - t
    t = time.perf_counter()
    labels = run_leiden(g, resolution=1.0, seed=0, backend=leiden_cfg.backend, n_iterations=leiden_cfg.n_iterations)
    out["leiden_s"] = time.perf_counter() - t
    if umap:
        t = time.perf_counter()
        coords, how = umap_layout(knn.rep, knn, labels, UmapConfig(max_points=umap_max), knn_cfg, seed=0, graph=adj)
        out["umap_s"] = time.perf_counter() - t
        out["umap_how"] = how
    out["peak_rss_gb"] = _peak_rss_gb()
    # quality checks, after the timed steps (not in the timings or the peak RSS above)
    rows = _sample_rows(len(labels))
    out["recall"], out["recall_se"] = _recall(knn.rep, list(knn.indices[rows]), rows, knn.indices.shape[1])
    out["ari"] = float(adjusted_rand_score(truth, labels))
    out["n_clusters"] = int(labels.max() + 1)
    out["modularity_igraph"] = modularity(g, labels)
    if umap:
        out["layout"] = layout_quality(knn.rep, coords, labels=truth)
    if umap and umap_learn and len(labels) <= umap_max:
        t = time.perf_counter()
        ref = umap_from_knn(knn.rep, knn, UmapConfig(backend="umap-learn"), seed=0)
        out["umap_learn_s"] = time.perf_counter() - t
        out["layout_umap_learn"] = layout_quality(knn.rep, ref, labels=truth)
    if backends:
        t = time.perf_counter()
        lab2 = run_leiden(g, resolution=1.0, seed=0, backend="leidenalg", n_iterations=leiden_cfg.n_iterations)
        out["leidenalg_s"] = time.perf_counter() - t
        out["modularity_leidenalg"] = modularity(g, lab2)
        out["ari_leidenalg"] = float(adjusted_rand_score(truth, lab2))
    if sweep:
        t = time.perf_counter()
        res = leiden_sweep(adj, LeidenConfig(n_seeds=3, n_subsamples=2), rep=knn.rep, knn_cfg=knn_cfg, seed=0)
        out["sweep_s"] = time.perf_counter() - t
        out["sweep_resolution"] = res.resolution
        out["sweep_ari"] = float(adjusted_rand_score(truth, res.labels))
    return out


def _child(which: str, args: argparse.Namespace, data: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", which, "--data", str(data), "--umap-max", str(args.umap_max)]
    cmd += [] if args.umap else ["--no-umap"]
    cmd += ["--sweep"] if args.sweep else []
    cmd += ["--backends"] if args.backends else []
    cmd += ["--umap-learn"] if args.umap_learn else []
    cmd += ["--exact-max-n", str(args.exact_max_n)] if args.exact_max_n is not None else []
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if args.cold and which == "ours":
        env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="numba_cold_")
    return run_child(which, cmd, env)


def _table(ours: dict, sc: dict | None) -> str:
    """Markdown table: per-step seconds (ratio ours/scanpy), quality and memory."""
    def f(v: object, fmt: str = ".1f") -> str:
        return "-" if v is None else format(v, fmt)

    ours_total = sum(ours.get(k, 0.0) for k in ("knn_s", "graph_s", "leiden_s", "umap_s"))
    sc_total = sum(sc[k] for k in ("knn_s", "leiden_s", "umap_s")) if sc else None
    rows = [("kNN (+PCA) s", ours["knn_s"], sc and sc["knn_s"]), ("graph (fuzzy weights, igraph) s", ours["graph_s"], None),
            ("Leiden s", ours["leiden_s"], sc and sc["leiden_s"]), ("UMAP s", ours.get("umap_s"), sc and sc["umap_s"]),
            ("total s", ours_total, sc_total)]
    lines = ["| | ours | scanpy | ours / scanpy |", "|---|---|---|---|"]
    for name, a, b in rows:
        lines.append(f"| {name} | {f(a)} | {f(b)} | {f(a / b if a is not None and b else None, '.2f')} |")
    lo, ls = ours.get("layout", {}), (sc or {}).get("layout", {})
    lines += [f"| kNN method | {ours['knn']['method']} | pynndescent | |",
              f"| recall@k ({_RECALL_SAMPLE} sampled points, +- SE) | {ours['recall']:.4f} +- {ours['recall_se']:.4f} | "
              + (f"{sc['recall']:.4f} +- {sc['recall_se']:.4f}" if sc else "-") + " | |",
              f"| ARI vs planted (clusters) | {ours['ari']:.4f} ({ours['n_clusters']}) | "
              + (f"{sc['ari']:.4f} ({sc['n_clusters']})" if sc else "-") + " | |",
              f"| UMAP kNN preservation (chance {f(lo.get('chance'), '.5f')}) | {f(lo.get('knn_preservation'), '.4f')} | "
              f"{f(ls.get('knn_preservation'), '.4f')} | |",
              f"| UMAP silhouette of planted clusters | {f(lo.get('silhouette'), '.3f')} | {f(ls.get('silhouette'), '.3f')} | |",
              f"| peak RSS GB | {ours['peak_rss_gb']:.2f} | {f(sc and sc['peak_rss_gb'], '.2f')} | |"]
    if "layout_umap_learn" in ours:
        ul = ours["layout_umap_learn"]
        lines.append(f"| umap-learn on our graph: s, kNN preservation, silhouette | {ours['umap_learn_s']:.1f}, "
                     f"{ul['knn_preservation']:.4f}, {ul['silhouette']:.3f} | | |")
    return "\n".join(lines)


def main() -> None:
    ap = base_parser(__doc__)
    ap.add_argument("--no-umap", dest="umap", action="store_false")
    ap.add_argument("--umap-max", type=int, default=200_000, help="UMAP of a stratified subsample above this")
    ap.add_argument("--exact-max-n", type=int, help="override KnnConfig.exact_max_n (exact search up to here)")
    ap.add_argument("--umap-learn", action="store_true", help="also lay out our graph with umap-learn (quality)")
    ap.add_argument("--sweep", action="store_true", help="also time a resolution sweep (3 seeds, 2 subsamples)")
    ap.add_argument("--backends", action="store_true", help="also time leidenalg against igraph")
    ap.add_argument("--cold", action="store_true", help="ours compiles its numba functions (empty cache dir)")
    ap.add_argument("--child", choices=["scanpy", "ours"])
    ap.add_argument("--data", type=Path)
    args = ap.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        res = (run_scanpy(args.data) if args.child == "scanpy" else
               run_ours(args.data, umap=args.umap, umap_max=args.umap_max, exact_max_n=args.exact_max_n,
                        umap_learn=args.umap_learn, sweep=args.sweep, backends=args.backends))
        print(json.dumps(res, default=float))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / f"synthetic_{args.n}x1024.npy"
    t = time.perf_counter()
    make_data(data, n=args.n)
    print(f"data: {data} ({time.perf_counter() - t:.1f} s)")
    ours = _child("ours", args, data)
    print("ours:", json.dumps(ours, indent=1, default=float))
    sc = None
    if args.scanpy:
        sc = _child("scanpy", args, data)
        print("scanpy:", json.dumps(sc, indent=1, default=float))
    print(_table(ours, sc))
    if sc:
        total = sum(ours.get(k, 0.0) for k in ("knn_s", "graph_s", "leiden_s", "umap_s"))
        sc_total = sc["knn_s"] + sc["leiden_s"] + sc["umap_s"]
        print(f"ratio ours/scanpy total time: {total / sc_total:.2f} (target <= 0.5); "
              f"ARI ours - scanpy: {ours['ari'] - sc['ari']:+.4f} (target >= 0); recall {ours['recall']:.4f} (target >= 0.95)")
    print(f"load average: ours {ours['load_before']} -> {ours['load_after']}"
          + (f"; scanpy {sc['load_before']} -> {sc['load_after']}" if sc else ""))


if __name__ == "__main__":
    main()
