"""Generic CSV manifest: one row per image with path, patient, labels (1/0/-1/blank) and extra columns.

Column names default to the contract names (``image_id``, ``patient_id``, ``study_id``, ``path``,
``view``, ``acquired_at``, ``offset_days``); ``columns`` maps a contract name to another csv
column. Only ``patient_id`` and ``path`` are required; ``image_id`` defaults to the path without
its extension. Ids are prefixed with ``<dataset>/``. Relative paths are read against
``image_root`` (default: the csv's folder). An optional clinical csv comes with its
``clinical_schema.json``.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..clinical import read_schema, validate_clinical
from ..config import CsvSource
from ..labels import code_numeric, label_column
from ..manifest import conform
from .base import AdapterResult, read_table, require_columns

CONTRACT = ("image_id", "patient_id", "study_id", "path", "view", "acquired_at", "offset_days")
REQUIRED = ("patient_id", "path")


def _resolve_paths(paths: pd.Series, root: Path) -> pd.Series:
    base = str(root.resolve())
    text = paths.astype("string")
    absolute = text.str.startswith("/").fillna(False)
    return text.where(absolute, base + "/" + text)


def manifest_from_table(raw: pd.DataFrame, *, dataset: str, columns: dict[str, str], labels: dict[str, str],
                        extra_columns: list[str], image_root: Path, source: str) -> pd.DataFrame:
    """Turn an image-level table into manifest form (see module docstring for the rules)."""
    unknown = [k for k in columns if k not in CONTRACT]
    if unknown:
        raise ValueError(f"{source}: 'columns' keys {unknown} are not contract columns {list(CONTRACT)}")
    names = {key: columns.get(key, key) for key in CONTRACT}
    require_columns(raw, [names[k] for k in REQUIRED] + list(labels.values()) + list(extra_columns), source=source)
    df = pd.DataFrame(index=raw.index)
    for key, col in names.items():
        if col in raw.columns:
            df[key] = raw[col]
    df["path"] = _resolve_paths(df["path"], image_root)
    if "image_id" not in df.columns:
        df["image_id"] = raw[names["path"]].astype(str).str.rsplit(".", n=1).str[0]
    for key in ("image_id", "patient_id", "study_id"):
        if key in df.columns:
            df[key] = (dataset + "/" + df[key].astype("string")).where(df[key].notna())
    for name, col in labels.items():
        df[label_column(name)] = code_numeric(raw[col], source=f"{source} column '{col}'")
    for col in extra_columns:
        df[col] = raw[col]
    return conform(df, dataset=dataset)


def load_clinical_csv(path: Path, schema_path: Path | None, *, id_column: str, dataset: str) -> tuple[pd.DataFrame, dict]:
    """Read a clinical csv keyed by ``id_column`` and its schema; ids get the ``<dataset>/`` prefix."""
    if schema_path is None:
        raise ValueError(f"clinical table {path} needs a clinical_schema json (set clinical_schema)")
    schema = read_schema(schema_path)
    table = read_table(path, what="clinical csv", dtype={id_column: str})
    require_columns(table, [id_column], source=path)
    table = table.rename(columns={id_column: "patient_id"})
    cols = {("patient_id" if k == id_column else k): v for k, v in schema["columns"].items()}
    categorical = [c for c, v in cols.items() if v["type"] == "categorical" and c in table.columns]
    table[categorical] = table[categorical].astype("string")
    table["patient_id"] = dataset + "/" + table["patient_id"]
    schema = {"columns": cols}
    validate_clinical(table, schema, source=str(path))
    return table, schema


def load_csv(cfg: CsvSource) -> AdapterResult:
    """Read a generic CSV manifest (and optional clinical csv + schema)."""
    raw = read_table(cfg.manifest, what="CSV manifest", dtype={cfg.columns.get(k, k): str for k in
                                                               ("image_id", "patient_id", "study_id", "path")})
    root = cfg.image_root if cfg.image_root is not None else cfg.manifest.parent
    df = manifest_from_table(raw, dataset=cfg.dataset, columns=cfg.columns, labels=cfg.labels,
                             extra_columns=cfg.extra_columns, image_root=root, source=str(cfg.manifest))
    if cfg.clinical is None:
        return AdapterResult(df)
    table, schema = load_clinical_csv(cfg.clinical, cfg.clinical_schema, id_column=cfg.clinical_id,
                                      dataset=cfg.dataset)
    return AdapterResult(df, table, schema)
