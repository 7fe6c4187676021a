"""What every adapter returns, and small helpers they share."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass
class AdapterResult:
    """One source turned into contract form.

    ``manifest``: one row per image with the contract columns (``conform``-ed) and ``label_*`` Int8
    columns; ``clinical``: one row per ``patient_id`` or None; ``schema``: the clinical schema dict.
    ``notes``: facts worth recording in the overview (e.g. de-duplication counts).
    """

    manifest: pd.DataFrame
    clinical: pd.DataFrame | None = None
    schema: dict[str, Any] | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def under(root: Path, path: Path) -> Path:
    """``path`` if absolute, else ``root / path``."""
    return path if path.is_absolute() else root / path


def read_table(path: Path, *, what: str, **kwargs: Any) -> pd.DataFrame:
    """``pd.read_csv`` with a user error naming the file when it is missing or unreadable."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} not found: {path} (check the path in the cohorts config)")
    try:
        return pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"cannot read {what} {path}: {exc}") from exc


def require_columns(df: pd.DataFrame, columns: list[str] | tuple[str, ...], *, source: Path | str) -> None:
    """Raise a ValueError naming the file and the columns it lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; found {list(df.columns)[:20]}")


def joined_paths(root: Path | None, relative: pd.Series) -> pd.Series:
    """Absolute image paths ``root/relative`` as strings, or nulls when ``root`` is None (label-only)."""
    if root is None:
        return pd.Series(pd.NA, index=relative.index, dtype="string")
    base = str(Path(root).resolve())
    return (base + "/" + relative.astype(str).str.lstrip("/")).astype("string")
