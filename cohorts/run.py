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

from .adapters import AdapterResult, load_source
from .adapters.covid_dedupe import merge_hannover_duplicates
from .clinical import combine, write_clinical
from .config import CohortsConfig, ConfigError, load_config, read_yaml
from .labels import apply_uncertain_policy
from .manifest import ERROR_COLUMNS, check_image_files, conform, write_manifest
from .overview import write_overview
from .provenance import write_run_record
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


def run_cohorts(cfg: CohortsConfig, *, out: Path) -> dict[str, Path]:
    """Build the cohort described by ``cfg`` into ``out``; return the paths written by name."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = load_sources(cfg, out=out)
    manifest = conform(pd.concat([r.manifest for r in results.values()], ignore_index=True), dataset="")
    n_raw = len(manifest)
    manifest, view_dropped = _filter_views(manifest, cfg.views)
    manifest = apply_uncertain_policy(manifest, policy=cfg.uncertain)
    errors = pd.DataFrame(columns=list(ERROR_COLUMNS))
    if cfg.check_files:
        manifest, errors = check_image_files(manifest, verify=cfg.verify_images)
    written = {"manifest": write_manifest(manifest, out / "manifest.parquet")}
    errors.to_csv(out / "errors.csv", index=False)
    written["errors"] = out / "errors.csv"

    facts: dict[str, Any] = {"n_images_from_sources": n_raw, "views_kept": cfg.views,
                             "views_filtered_out": view_dropped, "n_errors": len(errors),
                             "uncertain_policy": cfg.uncertain,
                             "source_notes": {k: r.notes for k, r in results.items() if r.notes}}
    clinical = None
    parts = [(r.clinical, r.schema) for r in results.values() if r.clinical is not None]
    if parts:
        clinical, schema = combine(parts)
        in_cohort = clinical["patient_id"].isin(manifest["patient_id"])
        facts["clinical_rows_without_images"] = int((~in_cohort).sum())
        clinical = clinical[in_cohort].reset_index(drop=True)
        written["clinical"], written["clinical_schema"] = write_clinical(clinical, schema, out)
    if cfg.sampling is not None:
        s = cfg.sampling
        result = balanced_sample(manifest, labels=s.labels, n_per_class=s.n_per_class, seed=s.seed,
                                 one_per_patient=s.one_per_patient, negatives_from=s.negatives_from,
                                 min_per_class=s.min_per_class, balance_to_smaller=s.balance_to_smaller)
        result.sample.to_parquet(out / "sample.parquet", index=False)
        if s.manifest_sampled_only:
            kept = manifest["image_id"].isin(result.sample["image_id"])
            facts["images_not_sampled_left_out"] = int((~kept).sum())
            manifest = manifest[kept].reset_index(drop=True)
            written["manifest"] = write_manifest(manifest, out / "manifest.parquet")
        written["sample"] = out / "sample.parquet"
        facts["sample"] = {"counts": result.counts, "shortfalls": result.shortfalls,
                           "too_small": sorted(k for k, c in result.counts.items() if c.get("too_small"))}
    if cfg.overview:
        written["overview"] = write_overview(manifest, clinical, out / "overview", facts=facts)
    written["run"] = write_run_record(out, cfg, stage="cohorts", extra={
        "n_images": len(manifest), "n_patients": int(manifest["patient_id"].nunique()), **facts})
    written["config"] = out / "config.resolved.yaml"
    return written


def load_cohorts_config(path: str | Path) -> CohortsConfig:
    """Load a cohorts YAML, or the ``cohorts`` section of a composed pipeline config."""
    section = "cohorts" if "cohorts" in read_yaml(path) else None
    return load_config(path, CohortsConfig, section=section)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints a short summary."""
    parser = argparse.ArgumentParser(prog="python -m cohorts.run", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="cohorts YAML, e.g. configs/cohorts/nih.yaml")
    parser.add_argument("--out", required=True, type=Path, help="output folder (COHORT_DIR)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_cohorts_config(args.config)
        written = run_cohorts(cfg, out=args.out)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    manifest = pd.read_parquet(written["manifest"], columns=["patient_id"])
    n_errors = len(pd.read_csv(written["errors"]))
    print(f"cohort: {len(manifest)} images, {manifest['patient_id'].nunique()} patients, {n_errors} errors -> {args.out}")
    for name, path in written.items():
        print(f"  {name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
