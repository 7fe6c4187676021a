"""`python -m benchmarks.run --config FILE --cohort COHORT_DIR --store STORE.zarr --out DIR`.

Patient-grouped K-fold probing of every (dataset, label) in the cohort's saved sample with every model in
the store; writes results.csv, folds.csv, oof.parquet, comparisons.csv, selection.json, missing.csv,
report.md, figures/ (and transfer.csv / label_noise.csv when those studies are enabled) + the run record.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from cohorts.provenance import sha256_file, write_run_record
from embedders.store import EmbeddingStore

from .compare import compare_models
from .config import BenchmarksConfig, load_benchmarks_config
from .crossval import Task, cross_validate
from .data import BenchmarkInputError, Features, load_features, load_sample, missing_images, train_augmentations
from .efficiency import efficiency_figures, efficiency_section, efficiency_study
from .figures import label_noise_figure, roc_figures
from .report import metric_table, write_report
from .selection import select_model
from .shortcuts import run_shortcut_checks
from .splits import SplitError, patient_folds
from .studies import label_noise_study, transfer_study
from .summary import summarize

log = logging.getLogger(__name__)


def build_tasks(sample: pd.DataFrame, features: list[Features], *,
                cfg: BenchmarksConfig) -> tuple[dict[tuple[str, str], Task], pd.DataFrame]:
    """One task per (dataset, label) over the sampled images every model has, with its patient-grouped folds.

    Returns the tasks and the (dataset, label) pairs that cannot be split into ``cfg.n_folds`` stratified
    folds (too few patients of a class), with the reason; those are reported, not benchmarked.
    """
    usable = set.intersection(*(set(f.image_ids[f.available["original"]]) for f in features))
    tasks, skipped = {}, []
    for (ds, lab), sub in sample.groupby(["dataset", "label"], sort=True):
        sub = sub[sub["image_id"].isin(usable)]
        y, patients = sub["y"].to_numpy().astype(np.int64), sub["patient_id"].to_numpy()
        try:
            folds = patient_folds(y, patients, n_folds=cfg.n_folds, seed=cfg.seed)
        except SplitError as exc:
            log.warning("not benchmarking %s/%s: %s", ds, lab, exc)
            skipped.append({"dataset": ds, "label": lab, "n_images": len(sub), "n_positive": int(y.sum()),
                            "reason": str(exc)})
            continue
        tasks[(ds, lab)] = Task(ds, lab, sub["image_id"].to_numpy(), patients, y, folds)
    if not tasks:
        raise BenchmarkInputError(f"no (dataset, label) in the sample can be split into {cfg.n_folds} folds: "
                                  + "; ".join(f"{r['dataset']}/{r['label']}: {r['reason']}" for r in skipped))
    return tasks, pd.DataFrame(skipped, columns=["dataset", "label", "n_images", "n_positive", "reason"])


def run_benchmarks(cfg: BenchmarksConfig, *, cohort: Path, store: Path, out: Path) -> dict[str, Path]:
    """Run the benchmark on ``cohort/sample.parquet`` and the embeddings in ``store``; returns the files written."""
    t0 = time.perf_counter()
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    sample = load_sample(Path(cohort), cfg)
    st = EmbeddingStore(store)
    models = cfg.models if cfg.models is not None else st.models()
    absent = sorted(set(models) - set(st.models()))
    if absent or not models:
        raise BenchmarkInputError(f"models {absent or models} not in store {store} (it has {st.models()})")
    images = sample["image_id"].unique()
    features = [load_features(st, m, images, augmentations=train_augmentations(st, m, cfg),
                              pooling=cfg.pooling_for(m)) for m in models]
    missing = missing_images(sample, features, st)
    if len(missing):
        log.warning("%d sampled image(s) have no embedding for some model; they are left out for every "
                    "model (see missing.csv)", missing["image_id"].nunique())
    t_load = time.perf_counter() - t0
    tasks, skipped = build_tasks(sample, features, cfg=cfg)

    oofs, folds = [], []
    jobs = [(t, f, p) for t in tasks.values() for f in features for p in cfg.probes]
    for task, feat, probe in tqdm(jobs, desc="benchmark", unit="fit-set"):
        o, k = cross_validate(task, feat, probe, cfg=cfg)
        oofs.append(o)
        folds.append(k)
    oof, per_fold = pd.concat(oofs, ignore_index=True), pd.concat(folds, ignore_index=True)
    t_cv = time.perf_counter() - t0 - t_load

    results = summarize(oof, per_fold, cfg=cfg)
    comparisons = compare_models(oof, per_fold, correction=cfg.selection.correction)
    selection = select_model(results, comparisons, sizes={f.model: f.size for f in features},
                             poolings={f.model: f.pooling for f in features}, probe=cfg.probes[0],
                             alpha=cfg.selection.alpha)
    paths = {"results": out / "results.csv", "folds": out / "folds.csv", "oof": out / "oof.parquet",
             "comparisons": out / "comparisons.csv", "selection": out / "selection.json",
             "missing": out / "missing.csv", "skipped": out / "skipped.csv"}
    results.to_csv(paths["results"], index=False)
    per_fold.to_csv(paths["folds"], index=False)
    oof[["dataset", "label", "model", "probe", "fold", "image_id", "patient_id", "y_true", "y_score"]].to_parquet(
        paths["oof"], index=False)
    comparisons.to_csv(paths["comparisons"], index=False)
    paths["selection"].write_text(json.dumps(selection, indent=2))
    missing.to_csv(paths["missing"], index=False)
    skipped.to_csv(paths["skipped"], index=False)

    figures = roc_figures(oof, out / "figures", probe=cfg.probes[0])
    transfer = noise = None
    if cfg.transfer.enabled:
        transfer = transfer_study(tasks, features, cfg=cfg)
        paths["transfer"] = out / "transfer.csv"
        transfer.to_csv(paths["transfer"], index=False)
    if cfg.label_noise.enabled:
        noise = label_noise_study(tasks, features, cfg=cfg)
        paths["label_noise"] = out / "label_noise.csv"
        noise.to_csv(paths["label_noise"], index=False)
        figures.append(label_noise_figure(noise, out / "figures" / "label_noise.png"))
    sections: list[str] = []
    if cfg.shortcuts.enabled:
        written, parts = run_shortcut_checks(sample, features, oof, results, cohort=Path(cohort), out=out, cfg=cfg)
        paths.update(written)
        sections += parts
    if cfg.efficiency.enabled:
        curves = efficiency_study(tasks, features, cfg=cfg)
        paths["efficiency"] = out / "efficiency.csv"
        curves.to_csv(paths["efficiency"], index=False)
        sections += efficiency_section(curves, efficiency_figures(curves, out / "figures"), out=out, cfg=cfg)
    paths["report"] = write_report(out, cfg=cfg, results=results, comparisons=comparisons, selection=selection,
                                   missing=missing, skipped=skipped, n_sampled=len(sample), figures=figures,
                                   transfer=transfer, noise=noise, sections=sections)
    timings = {"load_s": round(t_load, 2), "cv_s": round(t_cv, 2), "total_s": round(time.perf_counter() - t0, 2)}
    paths["run"] = write_run_record(out, cfg, stage="benchmarks", extra={
        "inputs": {"cohort": str(cohort), "store": str(store),
                   "sample_sha256": sha256_file(Path(cohort) / "sample.parquet"),
                   "store_manifest_sha256": st.manifest_sha256},
        "models": {f.model: {"stored_shape": list(f.stored_shape), "pooling": f.pooling,
                             "augmentations": list(f.X)} for f in features},
        "n_missing_images": int(missing["image_id"].nunique()) if len(missing) else 0,
        "skipped_tasks": skipped.to_dict(orient="records"),
        "timings": timings})
    log.info("benchmark done in %.1f s (load %.1f s, cross-validation %.1f s)", timings["total_s"], t_load, t_cv)
    return paths


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints a short summary."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, type=Path, help="configs/benchmarks/benchmark.yaml or a pipeline config")
    ap.add_argument("--cohort", required=True, type=Path, help="cohort folder with sample.parquet")
    ap.add_argument("--store", required=True, type=Path, help="embeddings.zarr")
    ap.add_argument("--out", required=True, type=Path, help="output folder")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    cfg = load_benchmarks_config(args.config)
    paths = run_benchmarks(cfg, cohort=args.cohort, store=args.store, out=args.out)
    sel = json.loads(paths["selection"].read_text())
    print(f"AUROC ({cfg.probes[0]} probe), as in report.md:")
    print(metric_table(pd.read_csv(paths["results"]), metric="auroc", probe=cfg.probes[0]))
    print(f"selected: {sel['model']} ({sel['reason']})")
    print(f"report: {paths['report']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
