"""The cohort folder (docs/data-contracts.md, cohorts): ``manifest.parquet`` (one row per image); when the
cohort has clinical data, ``clinical.parquet`` (one row per patient) + ``clinical_schema.json``; when sampling is
configured, ``sample.parquet`` (long format ``dataset, label, image_id, patient_id, y``: the benchmark's rows).

:func:`write_cohort_folder` validates and writes them (the cohorts stage, test fixtures); :func:`read_cohort_folder`
reads them for the later stages and checks what they rely on: ``image_id``/``patient_id`` in the manifest; a
unique ``patient_id`` in the clinical table; a valid schema that declares every clinical column and whose columns
are all in the table. Values are not range-checked on reading (fusion may mask out-of-range values).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.safeio import write_parquet

from .clinical import ClinicalError, check_schema, write_clinical
from .manifest import write_manifest

MANIFEST, CLINICAL, SCHEMA, SAMPLE = "manifest.parquet", "clinical.parquet", "clinical_schema.json", "sample.parquet"
SAMPLE_COLUMNS = ("dataset", "label", "image_id", "patient_id", "y")


class CohortFolderError(ValueError):
    """A cohort folder that is missing or breaks the contract (the message names the file)."""


@dataclass(frozen=True)
class CohortFolder:
    """The cohort tables: ``manifest`` (per image), ``clinical`` (per patient, None without clinical data) and
    ``schema`` (``clinical_schema.json``'s ``columns``: name -> spec; {} without clinical data)."""

    manifest: pd.DataFrame
    clinical: pd.DataFrame | None
    schema: dict[str, dict[str, Any]]
    path: Path


def write_cohort_folder(out: str | Path, manifest: pd.DataFrame, *, clinical: pd.DataFrame | None = None,
                        schema: dict[str, Any] | None = None, sample: pd.DataFrame | None = None) -> dict[str, Path]:
    """Validate and write ``manifest`` (+ ``clinical`` with its ``schema``, + ``sample``) into ``out``; returns the
    paths by name (``manifest``, ``clinical``, ``clinical_schema``, ``sample``)."""
    out = Path(out)
    written = {"manifest": write_manifest(manifest, out / MANIFEST)}
    if sample is not None:
        written["sample"] = write_parquet(_checked_sample(sample, out / SAMPLE), out / SAMPLE)
    if clinical is not None:
        if schema is None:
            raise CohortFolderError(f"{out}: a clinical table needs its schema ({SCHEMA})")
        written["clinical"], written["clinical_schema"] = write_clinical(clinical, schema, out)
    return written


def read_manifest(cohort: str | Path, *, columns: list[str] | None = None) -> pd.DataFrame:
    """``COHORT_DIR/manifest.parquet`` (only ``columns`` when given); checks ``image_id`` and ``patient_id``."""
    path = Path(cohort) / MANIFEST
    if not path.is_file():
        raise CohortFolderError(f"no manifest at {path}: run `python -m cohorts.run` first or pass the right --cohort")
    manifest = pd.read_parquet(path, columns=columns)
    for col in ("image_id", "patient_id"):
        if (columns is None or col in columns) and col not in manifest.columns:
            raise CohortFolderError(f"{path} has no '{col}' column (see docs/data-contracts.md)")
    return manifest


def read_cohort_folder(cohort: str | Path) -> CohortFolder:
    """Read the cohort folder ``cohort``: the manifest, and the clinical table + schema when there is one."""
    cohort = Path(cohort)
    manifest = read_manifest(cohort)
    clin_path, schema_path = cohort / CLINICAL, cohort / SCHEMA
    if not clin_path.is_file():
        return CohortFolder(manifest, None, {}, cohort)
    clinical = pd.read_parquet(clin_path)
    if "patient_id" not in clinical.columns:
        raise CohortFolderError(f"{clin_path} has no 'patient_id' column")
    dup = clinical.patient_id[clinical.patient_id.duplicated()]
    if len(dup):
        raise CohortFolderError(f"{clin_path}: patient_id must be unique; duplicated e.g. {dup.iloc[:5].tolist()}")
    if not schema_path.is_file():
        raise CohortFolderError(f"{clin_path} has no {SCHEMA} next to it; the schema declares column roles")
    try:
        raw = json.loads(schema_path.read_text())
        check_schema(raw, source=str(schema_path))
    except (json.JSONDecodeError, ClinicalError) as exc:
        raise CohortFolderError(f"cannot read clinical schema {schema_path}: {exc}") from exc
    schema = raw["columns"]
    unknown = [c for c in clinical.columns if c != "patient_id" and c not in schema]
    if unknown:
        raise CohortFolderError(f"{schema_path} does not describe clinical columns {unknown}: add them with a role")
    missing = [c for c in schema if c not in clinical.columns]
    if missing:
        raise CohortFolderError(f"{clin_path}: columns declared in {SCHEMA} are missing: {missing}")
    return CohortFolder(manifest, clinical, schema, cohort)


def read_sample(cohort: str | Path) -> pd.DataFrame:
    """``COHORT_DIR/sample.parquet`` with its columns checked, ids as str and ``y`` as int8."""
    path = Path(cohort) / SAMPLE
    if not path.is_file():
        raise CohortFolderError(f"{path} not found: configure sampling in the cohorts config and rerun "
                                "`python -m cohorts.run`")
    return _checked_sample(pd.read_parquet(path), path)


def _checked_sample(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The sample's contract columns, typed; raises CohortFolderError naming ``path`` for a missing column, a ``y``
    other than 0/1 or an image listed twice for one (dataset, label)."""
    missing = [c for c in SAMPLE_COLUMNS if c not in df.columns]
    if missing:
        raise CohortFolderError(f"{path}: missing column(s) {missing}; expected {list(SAMPLE_COLUMNS)}")
    df = df[list(SAMPLE_COLUMNS)].astype({"dataset": str, "label": str, "image_id": str, "patient_id": str})
    bad = ~df["y"].isin([0, 1])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise CohortFolderError(f"{path}: column 'y' must be 0 or 1; row {row} has {df['y'].iloc[row]!r}")
    dup = df.duplicated(["dataset", "label", "image_id"])
    if dup.any():
        raise CohortFolderError(f"{path}: image {df.loc[dup, 'image_id'].iloc[0]!r} appears twice for the same "
                                "(dataset, label)")
    return df.assign(y=df["y"].astype(np.int8)).reset_index(drop=True)
