"""Export of subtype assignments for clinical collaborators, with an allow-list guard.

Only the columns listed in ``export.columns`` leave the building, next to ``patient_id`` (the
dataset-prefixed pseudonymous key), ``subtype``, ``confidence`` and the UMAP coordinates. A listed
column that looks identifying -- schema role ``id``, a date/time dtype, a name that suggests names,
dates, addresses, contact details, record numbers, file paths, URLs or notes, or free text (long
strings with mostly unique values) -- is refused with :class:`ExportError` unless it is also listed
in ``export.allow_identifying``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from cohorts.provenance import library_versions, now_iso, sha256_json

from .config import ClusteringConfig

IDENTIFYING_NAME = re.compile(
    r"(^|_)(name|names|first|last|surname|initials|dob|birth|date|dates|datetime|timestamp|acquired|address|street|"
    r"city|zip|zipcode|postcode|postal|phone|fax|email|mail|mrn|ssn|insurance|account|license|licence|device_serial|"
    r"serial|ip|url|uri|doi|path|paths|file|filename|folder|png|dicom|note|notes|comment|comments|text|report|"
    r"free_text|location|hospital|site_name|accession)($|_)", re.IGNORECASE)

BASE_COLUMNS = {
    "patient_id": ("str", "pseudonymous, dataset-prefixed patient key from the cohort manifest"),
    "subtype": ("str", "candidate subtype S1..SK (S1 largest) from Leiden on the cosine kNN graph"),
    "confidence": ("float [0,1]", "membership confidence: over subsample reclusterings, the chance-corrected share of "
                                  "the patient's subtype mates kept with it (0 when a resample merges or shuffles "
                                  "everyone); empty when there are no stable subtypes"),
    "umap_1": ("float", "UMAP coordinate 1 (display only; NaN when left out of a display subsample)"),
    "umap_2": ("float", "UMAP coordinate 2 (display only)"),
}


class ExportError(ValueError):
    """A column that may not be exported (the message says which and how to allow it)."""


def identifying_reason(name: str, col: pd.Series, schema: dict[str, dict]) -> str | None:
    """Why ``col`` looks identifying (None when it does not)."""
    spec = schema.get(name, {})
    if spec.get("role") == "id":
        return "its clinical_schema.json role is 'id'"
    if pd.api.types.is_datetime64_any_dtype(col):
        return "it holds dates/times"
    if IDENTIFYING_NAME.search(name):
        return "its name suggests names, dates, contact details, record numbers, paths, URLs or free-text notes"
    if col.dtype == object or pd.api.types.is_string_dtype(col):
        s = col.dropna().astype(str)
        if len(s) >= 5 and s.str.len().mean() > 30 and s.nunique() > 0.5 * len(s):
            return "it looks like free text (long, mostly unique strings)"
    return None


def check_columns(table: pd.DataFrame, cfg: ClusteringConfig, schema: dict[str, dict], *, source: str) -> list[str]:
    """The allow-listed columns to export; raises ExportError for missing or identifying ones."""
    cols = list(cfg.export.columns)
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise ExportError(f"export.columns lists {missing}, which are not in {source} "
                          f"(available: {sorted(c for c in table.columns if c not in BASE_COLUMNS)}); fix the config")
    clash = [c for c in cols if c in BASE_COLUMNS]
    if clash:
        raise ExportError(f"export.columns lists {clash}, which the export always writes; remove them from the config")
    refused = []
    for c in cols:
        reason = identifying_reason(c, table[c], schema)
        if reason and c not in cfg.export.allow_identifying:
            refused.append(f"'{c}' ({reason})")
    if refused:
        raise ExportError("refusing to export identifying column(s): " + "; ".join(refused) +
                          ". Remove them from export.columns, or, if your data agreement allows it, "
                          "list them under export.allow_identifying as well.")
    return cols


def data_dictionary(cols: list[str], schema: dict[str, dict]) -> pd.DataFrame:
    """One row per exported column: name, type, unit, allowed range/categories, description, source."""
    rows = [{"column": c, "type": t, "unit": "", "range_or_categories": "", "description": d, "source": "clustering"}
            for c, (t, d) in BASE_COLUMNS.items()]
    for c in cols:
        spec = schema.get(c, {})
        rng = spec.get("categories") or ([spec.get("min"), spec.get("max")] if spec.get("min") is not None
                                         or spec.get("max") is not None else "")
        rows.append({"column": c, "type": spec.get("type", "label (1 present, 0 absent, -1 uncertain, empty not "
                                                           "mentioned)" if c.startswith("label_") else ""),
                     "unit": spec.get("unit") or "", "range_or_categories": json.dumps(rng) if rng else "",
                     "description": spec.get("description", ""), "source": "clinical" if c in schema else "manifest"})
    return pd.DataFrame(rows)


def write_export(assign: pd.DataFrame, table: pd.DataFrame, cfg: ClusteringConfig, schema: dict[str, dict], *,
                 out: Path, provenance: dict[str, object], source: str) -> dict[str, Path]:
    """Write subtypes.csv/.parquet, data_dictionary.csv and provenance.json into ``out``.

    ``assign`` has the base columns (one row per clustered unit); ``table`` holds candidate extra
    columns aligned to it (same index).
    """
    cols = check_columns(table, cfg, schema, source=source)
    export = pd.concat([assign[list(BASE_COLUMNS) + [c for c in assign.columns if c not in BASE_COLUMNS]],
                        table[cols]], axis=1)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"subtypes_csv": out / "subtypes.csv", "subtypes_parquet": out / "subtypes.parquet",
             "data_dictionary": out / "data_dictionary.csv", "provenance": out / "provenance.json"}
    export.to_csv(paths["subtypes_csv"], index=False)
    export.to_parquet(paths["subtypes_parquet"], index=False)
    extra = [c for c in assign.columns if c not in BASE_COLUMNS]
    dd = data_dictionary(cols, schema)
    if extra:
        dd = pd.concat([dd, pd.DataFrame([{"column": c, "type": "str", "unit": "", "range_or_categories": "",
                                           "description": "image key from the cohort manifest", "source": "manifest"}
                                          for c in extra])], ignore_index=True)
    dd.to_csv(paths["data_dictionary"], index=False)
    record = {"created": now_iso(), "config_sha256": sha256_json(cfg.model_dump(mode="json")),
              "exported_columns": list(export.columns), "n_rows": int(len(export)), "versions": library_versions(),
              **provenance}
    paths["provenance"].write_text(json.dumps(record, indent=2, default=str))
    return paths
