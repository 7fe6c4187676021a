"""Embedding Atlas export: a parquet the ``embedding-atlas`` command opens, and its static offline app.

``atlas/atlas.parquet`` holds the UMAP coordinates (``umap_1``, ``umap_2``), subtype, confidence,
labels, outcomes and the allow-listed export columns (never anything else), plus the kNN neighbour
lists in Embedding Atlas' ``{"ids": [...], "distances": [...]}`` format when every point has
coordinates. Open it interactively with::

    embedding-atlas atlas/atlas.parquet --x umap_1 --y umap_2 --neighbors neighbors

``atlas/app/`` is the same view exported with ``--export-application``: a static web application
with the data inside, which runs offline from any static file server
(``python -m http.server -d atlas/app``); browsers refuse ``file://`` fetches, so a server is needed.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cohorts.safeio import write_parquet

log = logging.getLogger(__name__)


def atlas_table(frame: pd.DataFrame, *, indices: np.ndarray | None, distances: np.ndarray | None) -> pd.DataFrame:
    """``frame`` (one row per point, already restricted to exportable columns) plus a neighbours column."""
    table = frame.reset_index(drop=True).copy()
    if indices is not None and distances is not None and table[["umap_1", "umap_2"]].notna().all().all():
        table["neighbors"] = [{"ids": i.tolist(), "distances": d.astype(float).round(5).tolist()}
                              for i, d in zip(indices, distances)]
    return table[table[["umap_1", "umap_2"]].notna().all(axis=1)].reset_index(drop=True)


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("embedding-atlas")
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("embedding-atlas")
    if found is None:
        raise RuntimeError("the `embedding-atlas` command is not installed (pip install embedding-atlas==0.20.0)")
    return [found]


def export_atlas(table: pd.DataFrame, *, out: Path, application: bool = True) -> dict[str, Path]:
    """Write ``out/atlas.parquet`` and, when asked, the static app ``out/app`` via ``--export-application``."""
    out.mkdir(parents=True, exist_ok=True)
    parquet = write_parquet(table, out / "atlas.parquet")
    paths = {"atlas_parquet": parquet}
    if application:
        app = out / "app"
        # run inside ``out`` with relative names: embedding-atlas stores its input's name in a FILE_NAME column
        # on every row of the app data, which must not be a path of this machine
        cmd = _cli() + [parquet.name, "--x", "umap_1", "--y", "umap_2", "--export-application", app.name]
        if "neighbors" in table.columns:
            cmd += ["--neighbors", "neighbors"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=out)
        if proc.returncode != 0 or not (app / "index.html").is_file():
            raise RuntimeError(f"embedding-atlas --export-application failed (exit {proc.returncode}): "
                               f"{proc.stderr.strip()[-2000:]}")
        paths["atlas_app"] = app
    return paths
