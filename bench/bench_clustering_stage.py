"""Benchmark: the whole clustering stage as users run it, against scanpy doing the same work.

    .venv/bin/python bench/bench_clustering_stage.py --n 100000                 # ours and scanpy, same run
    .venv/bin/python bench/bench_clustering_stage.py --n 1000000 --no-scanpy
    .venv/bin/python bench/bench_clustering_stage.py --n 1000000 --reuse-ours --scanpy-sample  # hours -> ~1 h
    .venv/bin/python bench/bench_clustering_stage.py --n 100000 --threads 1     # one BLAS/numba/torch thread

Data: ``bench_clustering.make_data`` (n x 1024 float32 around 12 planted centres, L2-normalised), written
once into --work with a cohort folder around it (manifest, clinical table with age, sex, site, survival
time/event and the planted class as a ``truth`` column, schema) and a ``latents.zarr``; not timed.

Timed, each in its own fresh Python process after its imports (so neither pays the other's imports and
scanpy does not pay TensorFlow's; import seconds are reported apart):

* ours: ``clustering.run.run_clustering`` with ``configs/clustering/default.yaml`` (PCA-50, k=15 cosine kNN,
  resolution sweep 7 x 5 seeds + 5 rebuilt-graph subsamples, 20 stability resamples, Gaussian mixture 1..8
  classes with its 20 stability refits, UMAP, Table 1, Kaplan-Meier/Cox, label enrichment, validity and site
  diagnostics, exports, h5ad, Atlas table, report), with per-step seconds from wrapping the stage's calls;
* scanpy doing the same clustering work: ``sc.pp.pca`` (50) + ``sc.pp.neighbors`` (cosine, k=15), ``sc.tl.leiden``
  (igraph, 2 iterations) for every resolution x seed, the 5 subsamples (neighbours recomputed on 80 % of the
  points, Leiden at every resolution), 20 stability resamples (neighbours + Leiden at the chosen resolution),
  the same scikit-learn Gaussian mixture work (EM on a random ``gmm.max_fit_points`` subset, every point
  predicted, as ours), and ``sc.tl.umap``. It writes no report, tables or exports:
  ours does more in the total.

``--scanpy-sample`` (for 1M, where scanpy's side takes hours): each repeated scanpy call is run once per kind
and multiplied by its count: Leiden on the full graph once per resolution (x seeds), one subsample's neighbours
and its Leiden once per resolution (x subsamples), one stability resample (x resamples). PCA, the first
neighbour search, the mixture and UMAP run in full. Steps holding an extrapolated figure are marked ``~``.

Prints a markdown table (seconds per step, ratio, peak RSS, load average) and writes result.json in --work.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _children import base_parser, run_child  # noqa: E402
from bench_clustering import make_data  # noqa: E402

NESTED = "  of which "          # a step timed inside another one (not added to the total again)
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def _peak_rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def make_cohort(work: Path, n: int) -> tuple[Path, Path]:
    """Cohort folder + latents.zarr around the planted data (reused when present)."""
    import pandas as pd

    from fusion.latents import write_latents

    data = work / f"x_{n}.npy"
    make_data(data, n=n)
    cohort, latents = work / f"cohort_{n}", work / f"latents_{n}.zarr"
    if (cohort / "clinical_schema.json").is_file() and latents.is_dir():
        return cohort, latents
    truth = np.load(f"{data}.truth.npy")
    rng = np.random.default_rng(1)
    pids = np.array([f"p{i:07d}" for i in range(n)])
    hazard = np.array([0.005, 0.01, 0.02, 0.04])[truth % 4]
    t_event, t_cens = rng.exponential(1 / hazard), rng.uniform(10, 90, n)
    cohort.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"image_id": pids, "patient_id": pids, "study_id": pids,
                  "dataset": np.where(rng.random(n) < 0.5, "site_a", "site_b"),
                  "label_Edema": (rng.random(n) < 0.1 + 0.05 * (truth % 3)).astype("int8")}
                 ).to_parquet(cohort / "manifest.parquet", index=False)
    pd.DataFrame({"patient_id": pids, "age": np.round(rng.normal(60, 12, n), 1), "sex": rng.choice(["F", "M"], n),
                  "time": np.round(np.minimum(t_event, t_cens), 2), "event": (t_event <= t_cens).astype(int),
                  "planted": [f"c{t}" for t in truth]}).to_parquet(cohort / "clinical.parquet", index=False)
    spec = {"unit": None, "min": None, "max": None, "categories": None}
    schema = {"age": {**spec, "type": "continuous", "role": "feature", "description": "age"},
              "sex": {**spec, "type": "categorical", "role": "feature", "categories": ["F", "M"], "description": "sex"},
              "time": {**spec, "type": "continuous", "role": "outcome", "description": "days to event or censoring"},
              "event": {**spec, "type": "binary", "role": "outcome", "description": "event observed"},
              "planted": {**spec, "type": "categorical", "role": "truth", "description": "planted class"}}
    (cohort / "clinical_schema.json").write_text(json.dumps({"columns": schema}))
    x = np.load(data, mmap_mode="r")
    write_latents(latents, pids, np.asarray(x), split={"train": np.arange(n)}, informed=np.ones(n, bool), model="bench")
    return cohort, latents


def run_ours(cohort: Path, latents: Path, out: Path, *, dask_workers: int = 0) -> dict:
    """The stage with the shipped default config (its Leiden runs and mixture fits on a Dask LocalCluster of
    ``dask_workers`` processes when > 0); per-step seconds from wrapping its calls."""
    import shutil

    from clustering import choice as choice_mod
    from clustering import compute as compute_mod
    from clustering import run as run_mod
    from clustering.config import load_clustering_config

    steps: dict[str, float] = {}

    def timed(module: object, name: str, label: str) -> None:
        fn = getattr(module, name)

        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                steps[label] = steps.get(label, 0.0) + time.perf_counter() - t
        setattr(module, name, wrapper)

    for mod, name, label in [(compute_mod, "build_knn", "kNN (+PCA)"), (compute_mod, "connectivities", "graph weights"),
                             (choice_mod, "neighbour_pool", "wide neighbour search (subsets)"),
                             (choice_mod, "sweep", "Leiden sweep"), (choice_mod, "_stability", "stability resamples (Leiden + mixture)"),
                             (choice_mod, "refit_many", NESTED + "mixture refits"),
                             (choice_mod, "choose_gmm", "Gaussian mixture (BIC over 1..8 classes)"),
                             (compute_mod, "umap_layout", "UMAP"), (compute_mod, "layout_quality", "UMAP quality"),
                             (compute_mod, "diagnose", "site diagnostics + validity")]:
        timed(mod, name, label)
    cfg = load_clustering_config(REPO / "configs" / "clustering" / "default.yaml")
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    paths = run_mod.run_clustering(cfg, cohort=cohort, latents=latents, out=out, workers=dask_workers)
    total = time.perf_counter() - t
    m = json.loads(paths["metrics"].read_text())
    steps["rest (characterisation, exports, report)"] = total - sum(v for k, v in steps.items()
                                                                    if not k.startswith(NESTED))
    return {"total_s": total, "steps": steps, "peak_rss_gb": _peak_rss_gb(), "n_subtypes": m["n_subtypes"],
            "resolution": m["leiden"]["resolution"], "leiden_subtypes": m["methods"]["leiden"]["n_subtypes"],
            "truth_ari": m["truth"].get("planted"), "stability": m["stability"], "knn": m["knn"]}


def run_scanpy(cohort: Path, latents: Path, resolution: float, *, sample: bool = False) -> dict:
    """scanpy (and scikit-learn's mixture) doing the stage's clustering work; per-step seconds.

    The stability resamples use ``resolution`` (ours' choice), so both recluster at the same resolution; pynndescent's
    numba functions are compiled on a 2,000-point warm-up first (reported apart, not in the total). ``sample``: the
    repeated calls run once per kind, their seconds multiplied by the count (see the module docstring).
    """
    import anndata as ad
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score
    from sklearn.mixture import GaussianMixture

    from clustering.config import load_clustering_config
    from fusion.latents import read_latents

    cfg = load_clustering_config(REPO / "configs" / "clustering" / "default.yaml")
    _, x, _ = read_latents(latents)
    steps: dict[str, float] = {}
    t0 = time.perf_counter()
    warm = ad.AnnData(x[:2000].copy())
    sc.pp.pca(warm, n_comps=cfg.knn.pca_dims)
    sc.pp.neighbors(warm, n_neighbors=cfg.knn.k + 1, metric="cosine")
    sc.tl.umap(warm)
    warm_up = time.perf_counter() - t0
    t0 = time.perf_counter()
    adata = ad.AnnData(x)
    sc.pp.pca(adata, n_comps=cfg.knn.pca_dims, random_state=cfg.seed)
    sc.pp.neighbors(adata, n_neighbors=cfg.knn.k + 1, metric="cosine", random_state=cfg.seed)
    steps["kNN (+PCA)"] = time.perf_counter() - t0
    lc, n = cfg.leiden, adata.n_obs
    rng = np.random.default_rng(cfg.seed)

    def leiden(a: ad.AnnData, resolution: float, seed: int) -> np.ndarray:
        sc.tl.leiden(a, resolution=resolution, flavor="igraph", n_iterations=lc.n_iterations, directed=False,
                     random_state=seed, key_added="_l")
        return a.obs["_l"].astype(int).to_numpy()

    def neighbours_of(nodes: np.ndarray, seed: int) -> ad.AnnData:
        sub = ad.AnnData(adata.obsm["X_pca"][nodes])
        sc.pp.neighbors(sub, n_neighbors=cfg.knn.k + 1, metric="cosine", use_rep="X", random_state=seed)
        return sub

    # sample: run the first of each repeated call only; its seconds count for all of its kind (x count / 1)
    n_seeds, n_subs, n_res = (1, 1, 1) if sample else (lc.n_seeds, lc.n_subsamples, cfg.stability.n_resamples)
    t = time.perf_counter()
    size = int(round(lc.subsample_fraction * n))
    subs = [(nodes, neighbours_of(nodes, j)) for j, nodes in
            enumerate(np.sort(rng.choice(n, size=size, replace=False)) for _ in range(n_subs))]
    sweep_s = (time.perf_counter() - t) * lc.n_subsamples / n_subs
    chosen = None
    for r in lc.resolutions:
        t = time.perf_counter()
        parts = [leiden(adata, r, s) for s in range(n_seeds)]
        sweep_s += (time.perf_counter() - t) * lc.n_seeds / n_seeds
        t = time.perf_counter()
        [adjusted_rand_score(parts[0][nodes], leiden(sub, r, 1000 + j)) for j, (nodes, sub) in enumerate(subs)]
        sweep_s += (time.perf_counter() - t) * lc.n_subsamples / n_subs
        chosen = parts[0] if r == resolution else chosen
    mark = "~ " if sample else ""
    steps[mark + "Leiden sweep"] = sweep_s
    t = time.perf_counter()
    size = int(round(cfg.stability.fraction * n))
    for r in range(n_res):
        nodes = np.sort(rng.choice(n, size=size, replace=False))
        leiden(neighbours_of(nodes, r), resolution, r)
    stability = mark + "stability resamples (Leiden + mixture)"
    steps[stability] = (time.perf_counter() - t) * cfg.stability.n_resamples / n_res
    t = time.perf_counter()
    pcs = adata.obsm["X_pca"].astype(np.float64)
    cap = cfg.gmm.max_fit_points           # the same procedure as ours: EM on a random subset, every point predicted

    def mixture(x: np.ndarray, k: int, seed: int) -> GaussianMixture:
        fit = x[np.sort(rng.choice(len(x), size=cap, replace=False))] if len(x) > cap else x
        model = GaussianMixture(k, covariance_type=cfg.gmm.covariance_type, n_init=cfg.gmm.n_init, random_state=seed,
                                reg_covar=1e-5).fit(fit)
        model.predict(x)
        return model

    fitted = pcs[np.sort(rng.choice(n, size=min(n, cap), replace=False))]
    bics = [mixture(pcs, k, cfg.seed).bic(fitted) for k in range(1, cfg.gmm.max_components + 1)]
    steps["Gaussian mixture (BIC over 1..8 classes)"] = time.perf_counter() - t
    t = time.perf_counter()
    k = int(np.argmin(bics)) + 1
    for r in range(cfg.stability.n_resamples):
        mixture(pcs[np.sort(rng.choice(n, size=size, replace=False))], k, r)
    steps[NESTED + "mixture refits"] = time.perf_counter() - t
    steps[stability] += steps[NESTED + "mixture refits"]
    t = time.perf_counter()
    sc.tl.umap(adata, min_dist=cfg.umap.min_dist, random_state=cfg.seed)
    steps["UMAP"] = time.perf_counter() - t
    total = sum(v for k, v in steps.items() if not k.startswith(NESTED))
    return {"total_s": total, "sampled": sample, "steps": steps, "peak_rss_gb": _peak_rss_gb(), "warm_up_s": warm_up,
            "resolution": resolution, "leiden_clusters": int(chosen.max() + 1) if chosen is not None else None}


def _child(which: str, args: argparse.Namespace, cohort: Path, latents: Path, resolution: float = 1.0) -> dict:
    cmd = [sys.executable, __file__, "--child", which, "--cohort", str(cohort), "--latents", str(latents),
           "--work", str(args.work), "--resolution", str(resolution), *(["--scanpy-sample"] if args.scanpy_sample else []),
           "--dask-workers", str(args.dask_workers)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if args.threads:
        env.update({v: str(args.threads) for v in THREAD_VARS})
    return run_child(which, cmd, env)


def _table(ours: dict, sc: dict | None) -> str:
    """Markdown table of seconds per step, ours vs scanpy."""
    def fmt(v: float | None, f: str = ".1f") -> str:
        return "-" if v is None else format(v, f)

    theirs = {k.removeprefix("~ "): v for k, v in (sc or {}).get("steps", {}).items()}
    approx = {k.removeprefix("~ ") for k in (sc or {}).get("steps", {}) if k.startswith("~ ")}
    if approx:
        approx.add("total")
    names = list(dict.fromkeys([*ours["steps"], *theirs]))
    lines = ["| step | ours s | scanpy s | ours / scanpy |", "|---|---|---|---|"]
    for name in names + ["total"]:
        a = ours["total_s"] if name == "total" else ours["steps"].get(name)
        b = (sc["total_s"] if name == "total" else theirs.get(name)) if sc else None
        tilde = "~" if name in approx else ""
        lines.append(f"| {name} | {fmt(a)} | {tilde}{fmt(b)} | {tilde}{fmt(a / b if a is not None and b else None, '.2f')} |")
    lines.append(f"| peak RSS GB | {ours['peak_rss_gb']:.2f} | {sc['peak_rss_gb']:.2f} | |" if sc else
                 f"| peak RSS GB | {ours['peak_rss_gb']:.2f} | - | |")
    return "\n".join(lines)


def main() -> None:
    ap = base_parser(__doc__)
    ap.add_argument("--reuse-ours", action="store_true", help="take ours from the last run's stage_ours_N.json")
    ap.add_argument("--threads", type=int, help="BLAS/OpenMP/numba threads of both processes (default: all cores)")
    ap.add_argument("--child", choices=["scanpy", "ours"])
    ap.add_argument("--cohort", type=Path)
    ap.add_argument("--latents", type=Path)
    ap.add_argument("--resolution", type=float, default=1.0, help="scanpy child: the resolution ours chose")
    ap.add_argument("--scanpy-sample", action="store_true",
                    help="scanpy: each repeated call once, its seconds times its count (~ in the table)")
    ap.add_argument("--dask-workers", type=int, default=0,
                    help="ours: the Leiden runs and mixture fits on a Dask LocalCluster of N processes")
    args = ap.parse_args()
    if args.child:
        t = time.perf_counter()
        res = (run_scanpy(args.cohort, args.latents, args.resolution, sample=args.scanpy_sample) if args.child == "scanpy"
               else run_ours(args.cohort, args.latents, args.work / "stage_out", dask_workers=args.dask_workers))
        res["process_after_imports_s"] = time.perf_counter() - t
        print(json.dumps(res, default=float))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    cohort, latents = make_cohort(args.work, args.n)
    saved = args.work / f"stage_ours_{args.n}{f'_dask{args.dask_workers}' if args.dask_workers else ''}.json"
    ours = json.loads(saved.read_text()) if args.reuse_ours and saved.is_file() else _child("ours", args, cohort, latents)
    saved.write_text(json.dumps(ours, default=float))
    sc = _child("scanpy", args, cohort, latents, ours["resolution"]) if args.scanpy else None
    print(f"n = {args.n} x 1024, cores = {os.cpu_count()}, threads = {args.threads or 'default'}"
          + (f", ours on a Dask LocalCluster of {args.dask_workers} processes" if args.dask_workers else ""))
    print(_table(ours, sc))
    print(f"ours: {ours['n_subtypes']} subtypes (Leiden {ours['leiden_subtypes']} at resolution {ours['resolution']}), "
          f"truth {ours['truth_ari']}, stability {ours['stability']}")
    if sc and sc["sampled"]:
        print("~ scanpy's repeated neighbour searches and Leiden runs were each run once and multiplied by their count")
    if sc:
        print(f"scanpy: resolution {sc['resolution']}, {sc['leiden_clusters']} clusters; numba warm-up "
              f"{sc['warm_up_s']:.1f} s (not in its total)")
    print(f"load before/after: {ours['load_before']} / {(sc or ours)['load_after']}")
    (args.work / f"stage_result_{args.n}.json").write_text(json.dumps({"ours": ours, "scanpy": sc}, indent=1,
                                                                       default=float))


if __name__ == "__main__":
    main()
