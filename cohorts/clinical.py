"""Clinical table keyed by ``patient_id`` and its declared schema (docs/data-contracts.md): the owner of the
``clinical_schema.json`` contract (read, check, write; :class:`ColumnSpec` the typed view later stages use).

Values are never imputed: a value a source does not give stays null. Schemas are plain dicts in
the ``clinical_schema.json`` format: ``{"columns": {name: {type, role, unit, min, max,
categories, description}}}``.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import pandas as pd

from core.safeio import write_json, write_parquet

ColumnType = Literal["continuous", "binary", "categorical"]
TYPES: tuple[ColumnType, ...] = get_args(ColumnType)
ROLES = ("feature", "outcome", "id", "truth", "covariate")
SPEC_KEYS = ("type", "role", "unit", "min", "max", "categories", "description")


class ClinicalError(ValueError):
    """A clinical table or schema that breaks the contract."""


@dataclass(frozen=True)
class ColumnSpec:
    """One column of ``clinical_schema.json``, typed."""

    name: str
    type: ColumnType
    role: str
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    description: str = ""


def spec(type_: str, role: str, description: str, *, unit: str | None = None, min: float | None = None,
         max: float | None = None, categories: list[str] | None = None) -> dict[str, Any]:
    """One column's schema entry."""
    return {"type": type_, "role": role, "unit": unit, "min": min, "max": max,
            "categories": categories, "description": description}


ID_SPEC = spec("categorical", "id", "dataset-prefixed patient key")
OUTCOME_SPECS = {
    "time": spec("continuous", "outcome", "days from the reference time to death or censoring", unit="days", min=0.0),
    "event": spec("binary", "outcome", "1 death observed at `time`, 0 censored"),
}


def read_schema(path: str | Path) -> dict[str, Any]:
    """Read a ``clinical_schema.json`` and check its entries."""
    try:
        schema = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ClinicalError(f"cannot read clinical schema {path}: {exc}") from exc
    check_schema(schema, source=str(path))
    return schema


def check_schema(schema: dict[str, Any], *, source: str) -> None:
    """Raise :class:`ClinicalError` when a schema entry has an unknown type/role or missing keys."""
    cols = schema.get("columns") if isinstance(schema, dict) else None
    if not isinstance(cols, dict):
        raise ClinicalError(f"{source}: a clinical schema must be {{'columns': {{name: spec}}}}")
    for name, entry in cols.items():
        missing = [k for k in ("type", "role") if k not in entry]
        unknown = [k for k in entry if k not in SPEC_KEYS]
        if missing or unknown:
            raise ClinicalError(f"{source}: column '{name}': missing {missing} / unknown keys {unknown}")
        if entry["type"] not in TYPES or entry["role"] not in ROLES:
            raise ClinicalError(f"{source}: column '{name}': type must be one of {TYPES} and role one of "
                                f"{ROLES}, got {entry['type']!r}/{entry['role']!r}")


def column_specs(columns: dict[str, dict[str, Any]]) -> dict[str, ColumnSpec]:
    """The schema's ``columns`` (checked by :func:`check_schema`) as ``{name: ColumnSpec}``; categories as str."""
    return {name: ColumnSpec(name=name, type=e["type"], role=e["role"], unit=e.get("unit"), min=e.get("min"),
                             max=e.get("max"), categories=tuple(str(c) for c in e["categories"]) if e.get("categories")
                             else None, description=e.get("description", ""))
            for name, e in columns.items()}


def validate_clinical(df: pd.DataFrame, schema: dict[str, Any], *, source: str = "clinical") -> None:
    """Check ``df`` against ``schema``: unique patient ids, every column declared, values in range/categories."""
    check_schema(schema, source=source)
    cols = schema["columns"]
    if "patient_id" not in df.columns:
        raise ClinicalError(f"{source}: no 'patient_id' column")
    dup = df["patient_id"].duplicated()
    if dup.any():
        raise ClinicalError(f"{source}: patient_id must be unique, e.g. {df.loc[dup, 'patient_id'].iloc[0]!r}")
    undeclared = [c for c in df.columns if c not in cols]
    if undeclared:
        raise ClinicalError(f"{source}: column(s) {undeclared} are not declared in the schema")
    for name, entry in cols.items():
        if name not in df.columns:
            raise ClinicalError(f"{source}: schema declares '{name}' but the table has no such column")
        values = df[name].dropna()
        if entry["type"] in ("continuous", "binary") and len(values):
            num = pd.to_numeric(values, errors="coerce")
            if num.isna().any():
                raise ClinicalError(f"{source}: column '{name}' is {entry['type']} but holds "
                                    f"{values[num.isna()].iloc[0]!r}")
            lo, hi = (0, 1) if entry["type"] == "binary" else (entry.get("min"), entry.get("max"))
            out = pd.Series(False, index=num.index)
            if lo is not None:
                out |= num < lo
            if hi is not None:
                out |= num > hi
            if out.any():
                raise ClinicalError(f"{source}: column '{name}' has {int(out.sum())} value(s) outside "
                                    f"[{lo}, {hi}], e.g. {num[out].iloc[0]}")
        if entry["type"] == "categorical" and entry.get("categories") and len(values):
            bad = ~values.astype(str).isin([str(c) for c in entry["categories"]])
            if bad.any():
                raise ClinicalError(f"{source}: column '{name}' value {values[bad].iloc[0]!r} is not one of "
                                    f"{entry['categories']}")


def first_by_time(df: pd.DataFrame, *, order: str, columns: Iterable[str]) -> pd.DataFrame:
    """Per ``patient_id``: the first non-null value of each column in ``order`` (earliest first; nulls last).

    Used to turn image-level rows into one baseline row per patient without imputing anything.
    """
    columns = list(columns)
    ordered = df.sort_values(["patient_id", order], na_position="last", kind="stable")
    return ordered.groupby("patient_id", sort=True)[columns].first().reset_index()


def combine(parts: list[tuple[pd.DataFrame, dict[str, Any]]]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Stack per-source clinical tables.

    A column declared by two sources must agree on everything but ``description`` (the
    descriptions are joined, so each source's derivation stays documented).
    """
    cols: dict[str, Any] = {}
    for _, schema in parts:
        for name, entry in schema["columns"].items():
            if name not in cols:
                cols[name] = dict(entry)
                continue
            old = cols[name]
            if {k: v for k, v in old.items() if k != "description"} != \
                    {k: v for k, v in entry.items() if k != "description"}:
                raise ClinicalError(f"clinical column '{name}' is declared differently by two sources: "
                                    f"{old} vs {entry}; rename one")
            if entry["description"] not in old["description"]:
                old["description"] = f"{old['description']}; {entry['description']}"
    frames = [df for df, _ in parts if len(df)]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["patient_id"])
    for name in cols:
        if name not in table.columns:
            table[name] = pd.NA
    return table[list(cols)], {"columns": cols}


def write_clinical(df: pd.DataFrame, schema: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Validate and write ``clinical.parquet`` + ``clinical_schema.json`` into ``out_dir``."""
    validate_clinical(df, schema, source=str(out_dir))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table, spec_path = out / "clinical.parquet", out / "clinical_schema.json"
    write_parquet(df, table)
    write_json(spec_path, schema)
    return table, spec_path
