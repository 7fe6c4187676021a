"""`python -m benchmarks.run --config FILE --cohort COHORT_DIR --store STORE.zarr --out DIR`.

Patient-grouped K-fold probing of every (dataset, label) in the cohort's saved sample with every model in
the store; writes results.csv, folds.csv, oof.parquet, comparisons.csv, selection.json, missing.csv,
report.md, figures/ (and transfer.csv / label_noise.csv when those studies are enabled) + the run record.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core import cli
from core.provenance import sha256_file, write_run_record
from core.safeio import check_output_dir, locked_output, relative_path, write_csv, write_parquet
from embedders.store import EmbeddingStore

from .compare import compare_models
from .config import BenchmarksConfig, load_benchmarks_config
from .crossval import Task
from .data import BenchmarkInputError, Features, load_features, load_sample, missing_images, train_augmentations
from .efficiency import efficiency_figures, efficiency_section, efficiency_study
from .figures import label_noise_figure, roc_figures
from .grid import run_grid
from .patients import patient_id_warnings
from .procedure import repeated_folds
from .report import metric_table, write_report
from .selection import read_selection, select_model, write_selection
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


def run_benchmarks(cfg: BenchmarksConfig, *, cohort: Path, store: Path, out: Path, workers: int = 0,
                   scheduler: str | None = None) -> dict[str, Path]:
    """Run the benchmark on ``cohort/sample.parquet`` and the embeddings in ``store``; returns the files written.

    ``workers`` / ``scheduler``: run the grid of fit-sets on Dask (:mod:`benchmarks.grid`); same results.
    """
    t0 = time.perf_counter()
    out = check_output_dir(Path(out), what="benchmarks output folder")
    (out / "figures").mkdir(parents=True, exist_ok=True)
    sample = load_sample(Path(cohort), cfg)
    st = EmbeddingStore(store)
    models = cfg.models if cfg.models is not None else st.models()
    absent = sorted(set(models) - set(st.models()))
    if absent or not models:
        raise BenchmarkInputError(f"models {absent or models} not in store {store} (it has {st.models()})")
    images = sample["image_id"].unique()
    features = [load_features(st, m, images, augmentations=train_augmentations(st, m, cfg),
                              pooling=cfg.pooling_for(m), explicit_pooling=m in cfg.pooling_per_model) for m in models]
    warnings = patient_id_warnings(sample, st, models)
    for w in warnings:
        log.warning("patient ids: %s", w)
    missing = missing_images(sample, features, st)
    if len(missing):
        log.warning("%d sampled image(s) have no embedding for some model; they are left out for every "
                    "model (see missing.csv)", missing["image_id"].nunique())
    t_load = time.perf_counter() - t0
    tasks, skipped = build_tasks(sample, features, cfg=cfg)

    jobs = [(t, f, p) for t in tasks.values() for f in features for p in cfg.probes]
    fits = run_grid(jobs, cfg=cfg, workers=workers, scheduler=scheduler)
    oof = pd.concat([o for o, _ in fits], ignore_index=True)
    per_fold = pd.concat([k for _, k in fits], ignore_index=True)
    repeated = repeated_folds(tasks, features, cfg=cfg, main=per_fold) if cfg.procedure_interval.enabled else None
    t_cv = time.perf_counter() - t0 - t_load

    results = summarize(oof, per_fold, cfg=cfg, repeated=repeated)
    comparisons = compare_models(oof, per_fold, correction=cfg.selection.correction, level=cfg.bootstrap.level,
                                 equivalence_level=1 - 2 * cfg.selection.alpha)
    selection = select_model(results, comparisons, probe_dims={f.model: f.probe_dim for f in features},
                             stored_shapes={f.model: f.stored_shape for f in features},
                             poolings={f.model: f.pooling for f in features}, probe=cfg.probes[0],
                             margin=cfg.selection.margin, alpha=cfg.selection.alpha)
    selection["patient_id_warnings"] = warnings
    paths = {"results": out / "results.csv", "folds": out / "folds.csv", "oof": out / "oof.parquet",
             "comparisons": out / "comparisons.csv", "selection": out / "selection.json",
             "missing": out / "missing.csv", "skipped": out / "skipped.csv"}
    write_csv(results, paths["results"])
    write_csv(per_fold, paths["folds"])
    write_parquet(oof[["dataset", "label", "model", "probe", "fold", "image_id", "patient_id", "y_true", "y_score"]],
                  paths["oof"])
    write_csv(comparisons, paths["comparisons"])
    write_selection(paths["selection"], selection)
    write_csv(missing, paths["missing"])
    write_csv(skipped, paths["skipped"])

    figures = roc_figures(oof, out / "figures", probe=cfg.probes[0])
    transfer = noise = None
    if cfg.transfer.enabled:
        transfer = transfer_study(tasks, features, cfg=cfg)
        paths["transfer"] = out / "transfer.csv"
        write_csv(transfer, paths["transfer"])
    if repeated is not None:
        paths["repeated_folds"] = out / "repeated_folds.csv"
        write_csv(repeated, paths["repeated_folds"])
    if cfg.label_noise.enabled:
        noise = label_noise_study(tasks, features, cfg=cfg)
        paths["label_noise"] = out / "label_noise.csv"
        write_csv(noise, paths["label_noise"])
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
                                   transfer=transfer, noise=noise, features=features, warnings=warnings,
                                   sections=sections)
    timings = {"load_s": round(t_load, 2), "cv_s": round(t_cv, 2), "total_s": round(time.perf_counter() - t0, 2)}
    paths["run"] = write_run_record(out, cfg, stage="benchmarks", extra={
        "inputs": {"cohort": relative_path(cohort, root=out.parent), "store": relative_path(store, root=out.parent),
                   "sample_sha256": sha256_file(Path(cohort) / "sample.parquet"),
                   "store_manifest_sha256": st.manifest_sha256},
        "models": {f.model: {"stored_shape": list(f.stored_shape), "pooling": f.pooling,
                             "probe_input_dims": f.probe_dim, "pooling_note": f.pooling_note,
                             "augmentations": list(f.X)} for f in features},
        "patient_id_warnings": warnings,
        "n_missing_images": int(missing["image_id"].nunique()) if len(missing) else 0,
        "skipped_tasks": skipped.to_dict(orient="records"),
        "timings": timings})
    log.info("benchmark done in %.1f s (load %.1f s, cross-validation %.1f s)", timings["total_s"], t_load, t_cv)
    return paths


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints a short summary."""
    ap = cli.parser("python -m benchmarks.run", __doc__)
    ap.add_argument("--config", required=True, type=Path, help="configs/benchmarks/benchmark.yaml or a pipeline config")
    ap.add_argument("--cohort", required=True, type=Path, help="cohort folder with sample.parquet")
    ap.add_argument("--store", required=True, type=Path, help="embeddings.zarr")
    ap.add_argument("--out", required=True, type=Path, help="output folder")
    ap.add_argument("--workers", type=int, default=0, help="run the fit-sets on a Dask LocalCluster of N processes")
    ap.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (e.g. dask-jobqueue SLURM)")
    return cli.run(ap, _main, argv)


def _main(args: argparse.Namespace) -> int:
    cfg = load_benchmarks_config(args.config)
    with locked_output(args.out):
        paths = run_benchmarks(cfg, cohort=args.cohort, store=args.store, out=args.out, workers=args.workers,
                               scheduler=args.scheduler)
    sel = read_selection(paths["selection"]).record
    print(f"AUROC ({cfg.probes[0]} probe), as in report.md:")
    print(metric_table(pd.read_csv(paths["results"]), metric="auroc", probe=cfg.probes[0]))
    print(f"selected: {sel['model']} ({sel['reason']})")
    for w in sel["patient_id_warnings"]:
        print(f"WARNING (patient ids): {w}")
    print(f"report: {paths['report']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
