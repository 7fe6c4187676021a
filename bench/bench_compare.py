"""Benchmark: the Emory-scale model comparison on a synthetic Emory release, on this machine's cores.

    .venv/bin/python bench/bench_compare.py --work /tmp/bench_compare                         # 5 x 100k x 1024, 2.4M rows
    .venv/bin/python bench/bench_compare.py --work /tmp/bench_small --n-images 10000 --n-metadata 200000 --dim 256

Data (``cohorts.emory_synth.generate_emory``, generated once into --work, not timed in the total):
Emory-shaped tables (metadata 2,430,209 x 19, findings 1,323,308 x 15, manufacturer, SDOH 159,946 x 388,
as parquet) and 5 correlated "model" embeddings of the same 100,000 sampled images (1,024-d float32, 25k-row
shards in parquet / npy / npz, rows shuffled; one model lacks 0.1% of the images and has 3 unknown ids).

Timed, in one fresh process (peak RSS is that process's maximum resident set):

1. cohort: the Emory adapter joins the four tables with pyarrow, keeping the 100k sampled images
   (``cohorts.run`` with ``keep_ids``; no image files, so no file checks);
2. import: ``embedders.bulk`` streams every model's shards into one Zarr store (alignment + errors tables);
3. compare: ``clustering.compare`` -- CKA on all shared images, per-model PCA-50 + kNN (IVF beyond 50k
   points) + Leiden (one resolution, one seed: the sweep multiplies this) + UMAP (batched, all points),
   neighbour Jaccard, Leiden ARI/AMI, probes (20k images per model x column), per-group tables, figures,
   the Atlas table (no static app) and the report.

Prints a markdown table of wall seconds per step, peak RSS and the load average before/after, and writes
``result.json`` in --work. Results in the issue note; the target is <= 15 min and <= 12 GB on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["view", "Manufacturer", "sex", "age", "site", "label_Effusion", "label_Opacity"]


def _peak_rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process: on a loaded shared machine wall time mostly measures the others."""
    import resource

    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def generate(args: argparse.Namespace) -> dict:
    """Write the synthetic release into --work/raw once (reused when its parameters match)."""
    from cohorts.emory_synth import generate_emory

    raw = Path(args.work) / "raw"
    params = {k: getattr(args, k) for k in ("n_metadata", "n_patients", "n_studies", "n_images", "dim", "seed")}
    stamp = raw / "params.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        return {"generated": False}
    t0 = time.perf_counter()
    generate_emory(raw, n_metadata=args.n_metadata, n_patients=args.n_patients, n_studies=args.n_studies,
                   n_images=args.n_images, dim=args.dim, seed=args.seed)
    stamp.write_text(json.dumps(params))
    return {"generated": True, "generate_seconds": round(time.perf_counter() - t0, 1)}


def timed(args: argparse.Namespace) -> dict:
    """Cohort join + bulk import + comparison, each timed; runs in a fresh child process."""
    import shutil

    from clustering.compare import run_compare
    from clustering.compare_config import CompareConfig
    from cohorts.config import CohortsConfig
    from cohorts.run import run_cohorts
    from embedders.bulk import BulkImportConfig, run_bulk_import

    work, raw = Path(args.work), Path(args.work) / "raw"
    for p in ("cohort", "store.zarr", "store.zarr.errors.csv", "store.zarr.alignment.csv", "store.zarr.run", "compare"):
        shutil.rmtree(work / p, ignore_errors=True) if (work / p).is_dir() else (work / p).unlink(missing_ok=True)
    truth = json.loads((raw / "truth.json").read_text())["encodes"]
    out: dict = {}
    t0 = time.perf_counter()
    source = {"kind": "emory", "metadata": raw / "metadata.parquet", "key": "sop_id", "keep_ids": raw / "sample_ids.txt",
              "tables": [{"path": raw / "findings.parquet", "key": "acc_anon"},
                         {"path": raw / "manufacturer.parquet", "key": "sop_id"},
                         {"path": raw / "sdoh.parquet", "key": "empi_anon",
                          "columns": ["adi_national_rank", "median_household_income"]}],
              "columns": {"image_id": "sop_id", "patient_id": "empi_anon", "study_id": "acc_anon", "path": "png_path",
                          "view": "ViewPosition", "acquired_at": "study_date"},
              "labels": {"Effusion": "Pleural Effusion", "Opacity": "Lung Opacity"},
              "extra_columns": ["sop_id", "Manufacturer", "site", "sex", "age", "adi_national_rank"]}
    cohort = run_cohorts(CohortsConfig(sources=[source], views=None, check_files=False, verify_images=False,
                                       overview=False), out=work / "cohort")
    out["cohort_seconds"] = round(time.perf_counter() - t0, 1)
    t1 = time.perf_counter()
    models = [{"name": m, "path": str(raw / "embeddings" / m), "id_column": "sop_id", "match_column": "sop_id"}
              for m in truth]
    run_bulk_import(BulkImportConfig(models=models), manifest=cohort["manifest"], store=work / "store.zarr")
    out["import_seconds"] = round(time.perf_counter() - t1, 1)
    t2 = time.perf_counter()
    cfg = CompareConfig(columns=COLUMNS, bins={"age": [0, 40, 60, 75, 200]},
                        leiden={"resolution": 1.0, "n_seeds": 1, "n_subsamples": 0}, montage_per_cluster=0,
                        disagreement={"montage": 0}, atlas={"enabled": True, "application": False})
    paths = run_compare(cfg, cohort=work / "cohort", store=work / "store.zarr", out=work / "compare")
    out["compare_seconds"] = round(time.perf_counter() - t2, 1)
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
    out["peak_rss_gb"] = round(_peak_rss_gb(), 2)
    out["cpu_seconds"] = round(_cpu_seconds(), 1)
    metrics = json.loads(paths["metrics"].read_text())
    out["per_model_seconds"] = {m: v["seconds"] for m, v in metrics["per_model"].items()}
    out["cka_seconds"] = metrics["cka_seconds"]
    out["compare_steps"] = metrics["step_seconds"]
    out["n_shared"], out["n_partial"] = metrics["n_shared"], metrics["n_partial"]
    out["knn"] = {m: {k: v["knn"][k] for k in ("method", "recall_at_k", "seconds")} for m, v in metrics["per_model"].items()}
    out["pairs"] = metrics["pairs"]
    out["probes"] = metrics["probes"]
    out["truth"] = truth
    return out


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/bench_compare")
    ap.add_argument("--n-images", type=int, default=100_000)
    ap.add_argument("--n-metadata", type=int, default=2_430_209)
    ap.add_argument("--n-patients", type=int, default=159_946)
    ap.add_argument("--n-studies", type=int, default=1_323_308)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", choices=["generate", "timed"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        sys.path.insert(0, str(REPO))
        result = generate(args) if args.child == "generate" else timed(args)
        print("RESULT " + json.dumps(result))
        return
    Path(args.work).mkdir(parents=True, exist_ok=True)
    results = {}
    for child in ("generate", "timed"):
        load_before = _load()
        cmd = [sys.executable, __file__, "--child", child] + [a for a in sys.argv[1:]]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            sys.exit(f"{child} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        results[child] = {**json.loads(lines[-1][7:]), "load_before": load_before, "load_after": _load()}
    (Path(args.work) / "result.json").write_text(json.dumps(results, indent=2))
    t = results["timed"]
    print(f"| {args.n_images} images x {args.dim}-d, {len(t['truth'])} models, metadata {args.n_metadata} rows "
          f"| seconds |\n|---|---|")
    for k in ("cohort_seconds", "import_seconds", "cka_seconds", "compare_seconds", "total_seconds"):
        print(f"| {k.replace('_seconds', '')} | {t[k]} |")
    print(f"| per model (kNN + Leiden + UMAP) | {t['per_model_seconds']} |")
    print(f"| compare steps | {t['compare_steps']} |")
    print(f"| CPU seconds (user + system, all threads) | {t['cpu_seconds']} |")
    print(f"| peak RSS GB | {t['peak_rss_gb']} |")
    print(f"| load average before / after | {t['load_before']} / {t['load_after']} |")
    print(f"shared images {t['n_shared']}, partial {t['n_partial']}; kNN {t['knn']}")


if __name__ == "__main__":
    main()
