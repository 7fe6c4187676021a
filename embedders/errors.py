"""The errors table next to the store (``STORE.zarr.errors.csv``): every image that got no embedding.

Columns: ``image_id, path, stage, reason, model, augmentation`` (the first four as in cohorts' errors.csv).
``stage`` is ``decode`` (unreadable / missing file), ``preprocess`` or ``import`` (precomputed rows that
match no manifest row). Rows are appended as soon as a chunk is written, so a killed run keeps them;
every write replaces the whole file atomically (write-temp-then-rename), so a kill never leaves a torn
line. :func:`finalize_errors` drops duplicates from reruns and rows that have since succeeded.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from core.safeio import write_csv, write_text

from .store import stored_ids

COLUMNS = ("image_id", "path", "stage", "reason", "model", "augmentation")
ErrorRow = dict[str, str]


def error_row(image_id: str, path: str | None, stage: str, reason: str, model: str, augmentation: str) -> ErrorRow:
    """One record of the errors table."""
    return {"image_id": image_id, "path": path or "", "stage": stage, "reason": reason, "model": model,
            "augmentation": augmentation}


def append_errors(path: Path, rows: Iterable[ErrorRow]) -> int:
    """Append ``rows`` to the CSV at ``path`` (header written when the file is new); returns how many.

    The file is rewritten atomically with the new rows (error tables are small), so it is never torn.
    """
    rows = list(rows)
    if not rows:
        return 0
    old = path.read_text() if path.is_file() else ""
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    if not old:
        writer.writeheader()
    writer.writerows(rows)
    write_text(path, old + buf.getvalue())
    return len(rows)


def finalize_errors(path: Path, root: zarr.Group) -> int:
    """Deduplicate the table and drop rows whose model/augmentation row is now done; returns rows left.
    A run without errors leaves a header-only table, so the file always exists after a run."""
    if not path.is_file():
        write_csv(pd.DataFrame(columns=list(COLUMNS)), path)
        return 0
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table = table.drop_duplicates(subset=["image_id", "model", "augmentation", "stage"], keep="last")
    row_of = {v: i for i, v in enumerate(stored_ids(root))}
    keep = np.ones(len(table), dtype=bool)
    for (model, aug), sub in table.groupby(["model", "augmentation"]):
        if model in root and aug in root[model]:
            done = np.asarray(root[model][aug]["done"][:], dtype=bool)
            rows = [row_of.get(i) for i in sub["image_id"]]
            keep[table.index.get_indexer(sub.index)] = [r is None or not done[r] for r in rows]
    table = table[keep].sort_values(["model", "augmentation", "image_id"], kind="stable")
    write_csv(table, path, columns=list(COLUMNS))
    return len(table)
