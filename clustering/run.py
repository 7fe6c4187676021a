"""Clustering stage: kNN graph -> Leiden subtypes -> stability -> UMAP -> characterisation -> export.

CLI::

    python -m clustering.run --config FILE --cohort COHORT_DIR --latents FUSION_DIR/latents.zarr --out DIR
    python -m clustering.run --config FILE --cohort COHORT_DIR --store STORE.zarr --model NAME [--pooling mean] --out DIR
    python -m clustering.run ... --workers 8            # the Leiden runs and mixture fits on a Dask LocalCluster
    python -m clustering.run ... --scheduler tcp://10.0.0.5:8786     # ... or on a running cluster (e.g. SLURM)

The stage's repeated work -- about 90 Leiden runs (sweep seeds and subsamples, stability resamples) and 28
Gaussian-mixture fits at the defaults -- runs on worker processes of this machine (its idle cores) or, with
``--workers``/``--scheduler``, as Dask tasks (:func:`core.parallel.on_dask`; dask-jobqueue for SLURM as in
:mod:`embedders.distributed`; every worker needs the repository). Each run is seeded, so the labels are the
same either way. The kNN search, UMAP and the rest run in this process.

Python: :func:`run_clustering` computes and writes every output. To compute without writing, use
:func:`clustering.compute.compute_clustering`: it returns a :class:`clustering.result.ClusteringResult`
(labels, kNN graph, connectivities, UMAP, characterisation, diagnostics, studies, per-step ``params``
and :meth:`~clustering.result.ClusteringResult.metrics`), the object every writer here reads.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import get_args

import pandas as pd

from benchmarks.config import Pooling
from core import cli
from core.parallel import on_dask
from core.provenance import write_run_record
from core.safeio import check_output_dir, locked_output, relative_path, write_csv, write_json

from .anndata_export import scanpy_uns, write_h5ad
from .atlas import atlas_table, export_atlas, thumbnails
from .compute import cluster, load_inputs
from .config import ClusteringConfig, load_clustering_config
from .diagnose import write_diagnosis
from .environment import compute_environment
from .export import ExportPlan, export_ids, plan_export, write_export
from .handover import EXPORT_DIR, assemble_export
from .privacy import guard_frame
from .report import write_report
from .result import ClusteringResult
from .subtype_report import Figures, draw_figures, report_sections
from .validity import panel_html

log = logging.getLogger(__name__)


def run_clustering(cfg: ClusteringConfig, *, cohort: Path, latents: Path | None = None, store: Path | None = None,
                   model: str | None = None, pooling: Pooling = "mean", benchmark: Path | None = None,
                   out: Path, workers: int = 0, scheduler: str | None = None) -> dict[str, Path]:
    """Run the whole clustering stage into ``out``; returns the written outputs by name.

    ``pooling``: how multi-token store embeddings become one vector (the benchmark's ``selection.json`` choice).
    ``benchmark`` (BENCH_DIR, optional) lets the validity panel judge the model selection.
    ``workers`` / ``scheduler``: run the Leiden runs and mixture fits on Dask (module doc); the same labels.
    """
    t0 = time.perf_counter()
    out = check_output_dir(Path(out), what="clustering output folder")
    run_root = out.resolve().parent                 # paths in the outputs are relative to the run folder
    coh, pts = load_inputs(cfg, cohort=cohort, latents=latents, store=store, model=model, pooling=pooling)
    described = f"{cohort} (manifest + clinical)"
    plan = plan_export(pts.units, cfg, coh.schema, out=out, source=described)  # before the long work
    if plan.withheld:
        log.warning("withheld from tables and figures (identifying): %s", sorted(plan.withheld))
    with on_dask(workers=workers, scheduler=scheduler):
        res = cluster(cfg, coh, pts, shown=plan.summary, withheld=plan.withheld, latents=latents, benchmark=benchmark)

    figs = draw_figures(res, out / "figures")
    _write_tables(res, plan, out)
    metrics = {**res.metrics(root=run_root, km_figure=relative_path(figs.kaplan_meier, root=out)),
               "environment": compute_environment(), "seconds": round(time.perf_counter() - t0, 1)}
    write_json(out / "metrics.json", metrics)
    paths = write_export(_assignments(res), res.units, cfg, res.schema, out=out, source=described, plan=plan,
                         provenance={"input": res.source(root=run_root), "knn": res.knn.summary(),
                                     "resolution": res.leiden.resolution, "seed": cfg.seed,
                                     "cohort": relative_path(cohort, root=run_root)})
    paths["h5ad"] = _write_h5ad(res, plan, out / "subtypes.h5ad")
    if cfg.atlas.enabled:
        paths.update(_write_atlas(res, plan, out / "atlas"))
    paths.update(_write_reports(res, figs, plan, out=out, metrics=metrics, source=res.source(root=run_root)))
    paths["run"] = write_run_record(out, cfg, stage="clustering", extra={"metrics": "metrics.json"})
    paths.update({"metrics": out / "metrics.json", "table1": out / "table1.csv", "figures": out / "figures",
                  "validity": out / "validity.json", "site_diagnostics": out / "site_diagnostics.json",
                  "label_enrichment": out / "label_enrichment.csv", "resolution_sweep": out / "resolution_sweep.csv"})
    log.info("clustering done in %.1f s: %d subtypes, outputs in %s", time.perf_counter() - t0,
             res.method.labels.max() + 1, out)
    return paths


def _write_tables(res: ClusteringResult, plan: ExportPlan, out: Path) -> None:
    """Write the CSV and JSON tables of ``res`` into ``out`` (ids of ``excluded.csv`` as ``plan`` exports them)."""
    char = res.characterization
    write_csv(char.table1, out / "table1.csv")
    write_csv(char.table1_stats, out / "table1_stats.csv")
    write_csv(char.enrichment, out / "label_enrichment.csv")
    if char.image_errors:
        write_csv(pd.DataFrame(char.image_errors), out / "errors.csv")
    if len(res.points.excluded):
        write_csv(export_ids(res.points.excluded, plan), out / "excluded.csv")
    write_diagnosis(res.diagnosis, out)
    for name, df in res.studies.items():
        write_csv(df, out / f"study_{name}.csv")
    write_csv(res.leiden.sweep, out / "resolution_sweep.csv")
    if res.choice.gmm is not None:
        write_csv(res.choice.gmm.bic, out / "gmm_bic.csv")


def _assignments(res: ClusteringResult) -> pd.DataFrame:
    """The export's base columns, one row per unit, raw ids (``image_id`` too when images are the unit)."""
    base = res.units[["patient_id", "subtype", "confidence", "umap_1", "umap_2"]]
    return base.assign(image_id=res.units.image_id) if res.cfg.unit == "image" else base


def _write_h5ad(res: ClusteringResult, plan: ExportPlan, path: Path) -> Path:
    """``subtypes.h5ad``: allow-listed ``obs`` with exported ids, latent, UMAP, graph and the scanpy ``params``."""
    key = "image_id" if res.cfg.unit == "image" else "patient_id"
    obs = export_ids(res.units[list(dict.fromkeys([key, "patient_id", "subtype", "confidence", *plan.columns]))], plan)
    return write_h5ad(path, obs, latent=res.points.x, umap=res.umap.coords if res.cfg.umap.enabled else None,
                      connectivities=res.adjacency, indices=res.knn.indices, distances=res.knn.distances, index=key,
                      uns=scanpy_uns(res.params))


def _write_atlas(res: ClusteringResult, plan: ExportPlan, out: Path) -> dict[str, Path]:
    """The Embedding Atlas: row level, the same allow-list as the subtypes table, exported ids, optional thumbnails."""
    cfg, units, base = res.cfg, res.units, _assignments(res)
    rows = guard_frame(pd.concat([base, units[plan.columns]], axis=1), allowed=plan.columns, keep=list(base.columns),
                       schema=res.schema, allow_identifying=cfg.export.allow_identifying, where="atlas.parquet")
    frame = export_ids(rows, plan)
    if cfg.atlas.thumbnails and "path" in units.columns:
        frame["thumbnail"], n_bad = thumbnails(units["path"], size=cfg.atlas.thumbnails)
        if n_bad:
            log.warning("Atlas thumbnails: %d image(s) could not be loaded (left blank)", n_bad)
    table = atlas_table(frame, indices=res.knn.indices, distances=res.knn.distances)
    return export_atlas(table, out=out, application=cfg.atlas.application)


def _write_reports(res: ClusteringResult, figs: Figures, plan: ExportPlan, *, out: Path, metrics: dict[str, object],
                   source: dict[str, object]) -> dict[str, Path]:
    """``report.html`` (with images) and the ``export/`` folder with its own report (images only if allowed)."""
    def report(path: Path, *, images: bool, links: dict[str, str]) -> Path:
        sections = report_sections(res, figs, plan, source=source, images=images,
                                   atlas=(path.parent / "atlas" / "open_atlas.py").is_file())
        return write_report(path, "cxr-fusion: candidate subtypes", sections, meta=metrics, links=links,
                            top_html=panel_html(res.diagnosis.checks))

    cfg = res.cfg
    paths = {"report": report(out / "report.html", images=True,
                              links={"metrics.json": "metrics.json", "validity.json": "validity.json",
                                     "site_diagnostics.json": "site_diagnostics.json",
                                     "provenance.json": "provenance.json", "run.json": "run.json",
                                     "config.resolved.yaml": "config.resolved.yaml", "export/": "export/README.txt"})}
    atlas_images = bool(cfg.atlas.enabled and cfg.atlas.thumbnails and "path" in res.units.columns)
    handed = assemble_export(out, images=cfg.export.images, atlas_has_images=atlas_images, write_report=lambda p, im: report(
        p, images=im, links={"validity.json": "validity.json", "site_diagnostics.json": "site_diagnostics.json",
                             "provenance.json": "provenance.json", "data_dictionary.csv": "data_dictionary.csv"}))
    return {**paths, "export": out / EXPORT_DIR, "export_report": handed["report"]}


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see module docstring)."""
    ap = cli.parser("python -m clustering.run", __doc__)
    ap.add_argument("--config", type=Path, required=True, help="clustering YAML or a pipeline config with a 'clustering' section")
    ap.add_argument("--cohort", type=Path, required=True, help="COHORT_DIR with manifest.parquet (+ clinical.parquet)")
    ap.add_argument("--latents", type=Path, help="FUSION_DIR/latents.zarr")
    ap.add_argument("--store", type=Path, help="embedding store STORE.zarr (per-image embeddings)")
    ap.add_argument("--model", help="model group in the store")
    ap.add_argument("--pooling", choices=get_args(Pooling), default="mean",
                    help="multi-token store embeddings: mean over tokens, flatten or cls (token 0)")
    ap.add_argument("--benchmark", type=Path, help="BENCH_DIR (optional): the validity panel judges its model selection")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--workers", type=int, default=0,
                    help="run the Leiden runs and mixture fits on a Dask LocalCluster of N processes")
    ap.add_argument("--scheduler", help="... or on the running Dask cluster at this address (e.g. SLURM)")
    return cli.run(ap, _main, argv)


def _main(args: argparse.Namespace) -> int:
    cfg = load_clustering_config(args.config)
    with locked_output(args.out):
        paths = run_clustering(cfg, cohort=args.cohort, latents=args.latents, store=args.store, model=args.model,
                               pooling=args.pooling, benchmark=args.benchmark, out=args.out, workers=args.workers,
                               scheduler=args.scheduler)
    metrics = json.loads(paths["metrics"].read_text())
    print(f"{metrics['n']} {metrics['unit']}s -> {metrics['leiden']['n_subtypes']} subtypes "
          f"(resolution {metrics['leiden']['resolution']}); report: {paths['report']}")
    if metrics["truth_ari"]:
        print("ARI vs truth: " + ", ".join(f"{k}={v['chosen']:.3f}" for k, v in metrics["truth_ari"].items()))
    if "logrank_p" in metrics["survival"]:
        print(f"log-rank p = {metrics['survival']['logrank_p']:.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
