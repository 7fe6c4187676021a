"""The manifest contract (docs/data-contracts.md): conform adapter output, validate, check files, write."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from core.safeio import write_parquet

from .labels import VALID_CODES, label_columns

log = logging.getLogger(__name__)

CONTRACT_COLUMNS = ("image_id", "patient_id", "study_id", "path", "view", "dataset", "acquired_at", "offset_days")
STRING_COLUMNS = ("image_id", "patient_id", "study_id", "path", "view", "dataset")
ERROR_COLUMNS = ("image_id", "path", "stage", "reason")


class ManifestError(ValueError):
    """A manifest that breaks the contract (message names the column and an offending row)."""


def _coerced(df: pd.DataFrame, column: str, parse: Callable[..., pd.Series], dataset: str) -> pd.Series:
    """``parse(df[column], errors="coerce")``, logging values that could not be read (they become null)."""
    parsed = parse(df[column], errors="coerce")
    lost = df[column].notna() & parsed.isna()
    if lost.any():
        log.warning("%s: %d '%s' value(s) could not be read and are left null, e.g. %r", dataset or "manifest",
                    int(lost.sum()), column, df.loc[lost, column].iloc[0])
    return parsed


def conform(df: pd.DataFrame, *, dataset: str) -> pd.DataFrame:
    """Give adapter output the contract's columns and dtypes (contract columns first, then labels, extras).

    ``study_id`` falls back to ``image_id``; missing optional columns become nulls; ``dataset``
    is set to ``dataset`` unless the adapter set it per row.
    """
    out = df.copy()
    if "dataset" not in out.columns:
        out["dataset"] = dataset
    if "study_id" not in out.columns:
        out["study_id"] = out["image_id"]
    out["study_id"] = out["study_id"].fillna(out["image_id"])
    for col in ("path", "view"):
        if col not in out.columns:
            out[col] = None
    out["acquired_at"] = _coerced(out, "acquired_at", pd.to_datetime, dataset) if "acquired_at" in out.columns \
        else pd.Series(pd.NaT, index=out.index, dtype="datetime64[ns]")
    out["offset_days"] = _coerced(out, "offset_days", pd.to_numeric, dataset).astype("float64") \
        if "offset_days" in out.columns else float("nan")
    for col in STRING_COLUMNS:
        out[col] = out[col].astype("string")
    labels = label_columns(out)
    for col in labels:
        out[col] = out[col].astype("Int8")
    extras = [c for c in out.columns if c not in CONTRACT_COLUMNS and c not in labels]
    return out[[*CONTRACT_COLUMNS, *labels, *extras]].reset_index(drop=True)


def validate_manifest(df: pd.DataFrame, *, source: str = "manifest") -> None:
    """Raise :class:`ManifestError` when ``df`` breaks the manifest contract."""
    missing = [c for c in CONTRACT_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"{source}: missing column(s) {missing}")
    for col in ("image_id", "patient_id", "study_id", "dataset"):
        null = df[col].isna()
        if null.any():
            raise ManifestError(f"{source}: column '{col}' is empty in {int(null.sum())} row(s), "
                                f"first at row {int(null.to_numpy().nonzero()[0][0])}")
    relative = df["path"].notna() & ~df["path"].astype("string").str.startswith("/").fillna(False)
    if relative.any():
        raise ManifestError(f"{source}: 'path' must be absolute (or null), e.g. row "
                            f"{int(relative.to_numpy().nonzero()[0][0])}: {df.loc[relative, 'path'].iloc[0]!r}")
    dup = df["image_id"].duplicated(keep=False)
    if dup.any():
        raise ManifestError(f"{source}: image_id must be unique; {int(dup.sum())} rows share ids, "
                            f"e.g. {df.loc[dup, 'image_id'].iloc[0]!r}")
    for col in label_columns(df):
        if str(df[col].dtype) != "Int8":
            raise ManifestError(f"{source}: label column '{col}' must be Int8, got {df[col].dtype}")
        bad = df[col].notna() & ~df[col].isin(VALID_CODES)
        if bad.any():
            raise ManifestError(f"{source}: label column '{col}' holds values outside 1/0/-1/<NA> "
                                f"(e.g. {df.loc[bad, col].iloc[0]} in row {int(bad.to_numpy().nonzero()[0][0])})")


def existing_files(paths: pd.Series) -> np.ndarray:
    """Which ``paths`` exist: one directory listing per folder instead of one stat per file."""
    parts = paths.astype(str).str.rsplit("/", n=1)
    folders, names = parts.str[0].to_numpy(), parts.str[-1].to_numpy()
    listing: dict[str, set[str]] = {}
    for folder in pd.unique(folders):
        try:
            listing[folder] = set(os.listdir(folder))
        except OSError:   # folder missing or unreadable: none of its files can be used
            listing[folder] = set()
    return np.fromiter((n in listing[f] for f, n in zip(folders, names)), dtype=bool, count=len(names))


def check_image_files(df: pd.DataFrame, *, verify: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``df`` into rows whose image can be used and an errors table (``ERROR_COLUMNS``).

    Rows with a null ``path`` (label-only manifests) are kept. A listed file that does not exist
    is an error; with ``verify`` every file is also decoded by ``cohorts.images.load_image`` and
    an ``ImageError`` becomes an error row. The run goes on either way.
    """
    has_path = df["path"].notna().to_numpy(dtype=bool)
    exists = np.ones(len(df), dtype=bool)
    exists[has_path] = existing_files(df.loc[has_path, "path"])
    reasons = pd.Series(pd.NA, index=df.index, dtype="string")
    reasons[~exists] = "file not found"
    if verify:
        from .images import ImageError, load_image  # image I/O is only needed when verifying

        todo = df.index[has_path & exists]
        for idx in tqdm(todo, desc="verify images", unit="img", disable=len(todo) < 100):
            try:
                load_image(df.at[idx, "path"])
            except ImageError as exc:
                reasons[idx] = f"unreadable image: {exc}"
    bad = reasons.notna()
    errors = df.loc[bad, ["image_id", "path"]].assign(stage="cohorts", reason=reasons[bad])
    if bad.any():
        log.warning("%d of %d image(s) cannot be used (see errors.csv), e.g. %s: %s", int(bad.sum()), len(df),
                    errors["path"].iloc[0], errors["reason"].iloc[0])
    return df.loc[~bad].reset_index(drop=True), errors.reset_index(drop=True)


def write_manifest(df: pd.DataFrame, path: str | Path) -> Path:
    """Validate and write ``manifest.parquet``."""
    validate_manifest(df, source=str(path))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(df, path)
    return path
