"""``python -m cohorts.run --config FILE --out DIR``: raw datasets -> manifest, clinical table, sample.

Writes ``manifest.parquet``, ``clinical.parquet`` + ``clinical_schema.json`` (when a source has
clinical data), ``sample.parquet`` (when ``sampling`` is configured), ``errors.csv``,
``overview/`` and ``config.resolved.yaml`` + ``run.json`` into ``DIR`` (docs/data-contracts.md).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from core import cli
from core.config import ConfigError, load_stage_config
from core.provenance import write_run_record
from core.safeio import check_output_dir, locked_output, write_csv

from .adapters import AdapterResult, load_source
from .adapters.covid_dedupe import merge_hannover_duplicates
from .clinical import combine
from .config import CohortsConfig
from .folder import write_cohort_folder
from .labels import apply_uncertain_policy
from .manifest import ERROR_COLUMNS, check_image_files, conform
from .overview import write_overview
from .sampling import balanced_sample

log = logging.getLogger(__name__)


def load_sources(cfg: CohortsConfig, *, out: Path) -> dict[str, AdapterResult]:
    """Run every source's adapter (keyed ``<index>:<kind>``), then the covid/Hannover de-duplication."""
    results = {f"{i}:{src.kind}": load_source(src, out=out)
               for i, src in enumerate(tqdm(cfg.sources, desc="sources", unit="source", disable=len(cfg.sources) < 2))}
    keys = {key.split(":", 1)[1]: key for key in results}
    if cfg.deduplicate and {"covid-chestxray", "hannover"} <= keys.keys():
        c, h = keys["covid-chestxray"], keys["hannover"]
        results[c], results[h] = merge_hannover_duplicates(results[c], results[h])
    return results


def _filter_views(manifest: pd.DataFrame, views: list[str] | None) -> tuple[pd.DataFrame, dict[str, int]]:
    if views is None:
        return manifest, {}
    keep = manifest["view"].isin(views).fillna(False).astype(bool)
    dropped = manifest.loc[~keep, ["dataset", "view"]].fillna("<missing>").value_counts()
    if (~keep).any():
        log.info("view filter %s removed %d image(s)", views, int((~keep).sum()))
    return manifest.loc[keep].reset_index(drop=True), {f"{d}/{v}": int(n) for (d, v), n in dropped.items()}


def _check_sources_usable(results: dict[str, AdapterResult], manifest: pd.DataFrame, *, errors_csv: Path,
                          allow_empty: bool) -> None:
    """Stop (ConfigError) when a source that lists image files keeps none of them, or yields no row at all,
    unless ``allow_empty`` (then a warning): a mistyped ``image_dir`` must not silently drop a dataset."""
    kept = manifest.loc[manifest["path"].notna(), "dataset"].value_counts()
    for key, result in results.items():
        listed = result.manifest
        with_path = listed["path"].notna() if "path" in listed else pd.Series(False, index=listed.index)
        datasets = sorted(listed["dataset"].dropna().unique()) if "dataset" in listed else []
        if len(listed) and (not with_path.any() or any(kept.get(d, 0) for d in datasets)):
            continue        # a label-only source, or one with usable images
        what = (f"source {key} yielded no rows (check its paths in the config)" if not len(listed) else
                f"source {key} lists {int(with_path.sum())} image(s) and none is usable (reasons in {errors_csv})")
        if not allow_empty:
            raise ConfigError(f"{what}; fix the source's image_dir/paths, or set allow_empty_sources: true to go on "
                              "without it")
        log.warning("%s; going on without it (allow_empty_sources: true)", what)


def run_cohorts(cfg: CohortsConfig, *, out: Path) -> dict[str, Path]:
    """Build the cohort described by ``cfg`` into ``out``; return the paths written by name."""
    out = check_output_dir(Path(out), what="cohort output folder")     # before any image is read
    results = load_sources(cfg, out=out)
    manifest = conform(pd.concat([r.manifest for r in results.values()], ignore_index=True), dataset="")
    n_raw = len(manifest)
    manifest, view_dropped = _filter_views(manifest, cfg.views)
    manifest = apply_uncertain_policy(manifest, policy=cfg.uncertain)
    errors = pd.DataFrame(columns=list(ERROR_COLUMNS))
    if cfg.check_files:
        manifest, errors = check_image_files(manifest, verify=cfg.verify_images)
    write_csv(errors, out / "errors.csv")
    _check_sources_usable(results, manifest, errors_csv=out / "errors.csv", allow_empty=cfg.allow_empty_sources)
    written = {"errors": out / "errors.csv"}

    facts: dict[str, Any] = {"n_images_from_sources": n_raw, "views_kept": cfg.views,
                             "views_filtered_out": view_dropped, "n_errors": len(errors),
                             "uncertain_policy": cfg.uncertain,
                             "source_notes": {k: r.notes for k, r in results.items() if r.notes}}
    sample = None
    if cfg.sampling is not None:
        s = cfg.sampling
        result = balanced_sample(manifest, labels=s.labels, n_per_class=s.n_per_class, seed=s.seed,
                                 one_per_patient=s.one_per_patient, negatives_from=s.negatives_from,
                                 min_per_class=s.min_per_class, balance_to_smaller=s.balance_to_smaller)
        sample = result.sample
        if s.manifest_sampled_only:
            kept = manifest["image_id"].isin(result.sample["image_id"])
            facts["images_not_sampled_left_out"] = int((~kept).sum())
            manifest = manifest[kept].reset_index(drop=True)
        facts["sample"] = {"counts": result.counts, "shortfalls": result.shortfalls,
                           "too_small": sorted(k for k, c in result.counts.items() if c.get("too_small"))}
    clinical = schema = None
    parts = [(r.clinical, r.schema) for r in results.values() if r.clinical is not None]
    if parts:
        clinical, schema = combine(parts)
        # after sampling: with manifest_sampled_only, patients none of whose images was sampled leave too
        in_cohort = clinical["patient_id"].isin(manifest["patient_id"])
        facts["clinical_rows_without_images"] = int((~in_cohort).sum())
        clinical = clinical[in_cohort].reset_index(drop=True)
    written = {**write_cohort_folder(out, manifest, clinical=clinical, schema=schema, sample=sample), **written}
    if cfg.overview:
        written["overview"] = write_overview(manifest, clinical, out / "overview", facts=facts)
    written["run"] = write_run_record(out, cfg, stage="cohorts", extra={
        "n_images": len(manifest), "n_patients": int(manifest["patient_id"].nunique()), **facts})
    written["config"] = out / "config.resolved.yaml"
    return written


def load_cohorts_config(path: str | Path) -> CohortsConfig:
    """Load a cohorts YAML, or the ``cohorts`` section of a composed pipeline config."""
    return load_stage_config(path, CohortsConfig, section="cohorts")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints a short summary."""
    parser = cli.parser("python -m cohorts.run", __doc__)
    parser.add_argument("--config", required=True, help="cohorts YAML, e.g. configs/cohorts/nih.yaml")
    parser.add_argument("--out", required=True, type=Path, help="output folder (COHORT_DIR)")
    return cli.run(parser, _main, argv)


def _main(args: argparse.Namespace) -> int:
    cfg = load_cohorts_config(args.config)
    with locked_output(args.out):
        written = run_cohorts(cfg, out=args.out)
    manifest = pd.read_parquet(written["manifest"], columns=["patient_id"])
    n_errors = len(pd.read_csv(written["errors"]))
    print(f"cohort: {len(manifest)} images, {manifest['patient_id'].nunique()} patients, {n_errors} errors -> {args.out}")
    for name, path in written.items():
        print(f"  {name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
