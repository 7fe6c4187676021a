"""Embedding Atlas export: a table the ``embedding-atlas`` command opens, and an offline app a clinician double-clicks.

``atlas/atlas.parquet`` holds the UMAP coordinates (``umap_1``, ``umap_2``), subtype, confidence,
labels, outcomes and the allow-listed export columns (never anything else), plus the kNN neighbour
lists in Embedding Atlas' ``{"ids": [...], "distances": [...]}`` format when every point has
coordinates, and optional image thumbnails (``atlas.thumbnails`` px; off by default: images may carry
burned-in identifiers). Open it interactively with::

    embedding-atlas atlas/atlas.parquet --x umap_1 --y umap_2 --neighbors neighbors

``atlas/app/`` is the same view as a static web application (data in ``app/data/``), coloured by
subtype on open. Browsers refuse to run it from ``file://``, so the export ships launchers that serve
``app/`` on 127.0.0.1 and open the browser: ``open_atlas_windows.bat``, ``open_atlas_macos.command``,
``open_atlas_linux.sh`` (all run ``open_atlas.py``, standard-library Python only).

The application's static files (about 100 MB, the same for every run) are *hard links* to the copy
inside the installed ``embedding-atlas`` package, so a run folder costs no extra disk for them, while
the export stays self-contained: copying or zipping ``atlas/`` materialises real files, and the copy
works on a computer without cxr-fusion. Where hard links are impossible (another file system) the
files are copied, with a warning. A shared cache referenced by path would break the export as soon as
it is copied alone, which is what a collaborator receives.
"""
from __future__ import annotations

import base64
import io
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from core.safeio import write_parquet

log = logging.getLogger(__name__)

LAUNCHER = Path(__file__).with_name("atlas_launcher.py")
WRAPPERS = {   # file name -> text; each runs open_atlas.py from its own folder
    "open_atlas_windows.bat": '@echo off\r\ncd /d "%~dp0"\r\nwhere py >nul 2>nul && (py -3 open_atlas.py) || '
                              '(python open_atlas.py)\r\nif errorlevel 1 pause\r\n',
    "open_atlas_macos.command": '#!/bin/sh\ncd "$(dirname "$0")" && exec python3 open_atlas.py "$@"\n',
    "open_atlas_linux.sh": '#!/bin/sh\ncd "$(dirname "$0")" && exec python3 open_atlas.py "$@"\n',
}
HOW_TO_OPEN = ("Double-click open_atlas_windows.bat (Windows), open_atlas_macos.command (macOS; the first time: "
               "right-click > Open) or open_atlas_linux.sh (Linux): it shows the interactive map of the patients in "
               "your web browser, coloured by subtype, served from this computer only (nothing is uploaded); close "
               "the small window it opens to stop it. It needs Python 3 (python.org).")


def atlas_table(frame: pd.DataFrame, *, indices: np.ndarray | None, distances: np.ndarray | None) -> pd.DataFrame:
    """``frame`` (one row per point, already restricted to exportable columns) plus a neighbours column."""
    table = frame.reset_index(drop=True).copy()
    if indices is not None and distances is not None and table[["umap_1", "umap_2"]].notna().all().all():
        table["neighbors"] = [{"ids": i.tolist(), "distances": d.astype(float).round(5).tolist()}
                              for i, d in zip(indices, distances)]
    return table[table[["umap_1", "umap_2"]].notna().all(axis=1)].reset_index(drop=True)


def thumbnails(paths: pd.Series, *, size: int) -> tuple[list[str | None], int]:
    """``data:image/png;base64,...`` thumbnails (longest side ``size`` px) of ``paths``; None where a path is
    missing or unreadable. Returns the list and the number that failed to load."""
    from PIL import Image

    from cohorts.images import ImageError, load_image

    out: list[str | None] = []
    failed = 0
    for p in paths:
        if p is None or (isinstance(p, float) and np.isnan(p)):
            out.append(None)
            continue
        try:
            img = load_image(p)
        except ImageError:
            failed += 1
            out.append(None)
            continue
        im = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
        im.thumbnail((size, size))
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
        out.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode())
    return out, failed


def _static_dir() -> Path:
    import embedding_atlas

    static = Path(embedding_atlas.__file__).parent / "static"
    if not (static / "index.html").is_file():
        raise RuntimeError(f"the embedding-atlas package has no static application at {static}; reinstall "
                           "embedding-atlas==0.20.0")
    return static


def link_tree(src: Path, dst: Path) -> tuple[int, int]:
    """Hard-link every file under ``src`` into ``dst`` (copy where linking fails); returns (linked, copied bytes)."""
    linked = copied = 0
    for root, _, files in os.walk(src):
        for name in files:
            s = Path(root) / name
            d = dst / s.relative_to(src)
            d.parent.mkdir(parents=True, exist_ok=True)
            d.unlink(missing_ok=True)
            try:
                os.link(s, d)
                linked += 1
            except OSError:
                shutil.copy2(s, d)
                copied += s.stat().st_size
    return linked, copied


def _write_data(table: pd.DataFrame, app: Path, *, category: str) -> None:
    """``app/data/`` (metadata.json, dataset.parquet, cache) through embedding-atlas' own exporter."""
    from embedding_atlas.data_source import DataSource
    from embedding_atlas.options import make_embedding_atlas_props
    from embedding_atlas.version import __version__

    df = table.copy()
    df["__row_index__"] = np.arange(len(df))
    image = "thumbnail" if "thumbnail" in df.columns else None
    props = make_embedding_atlas_props(row_id="__row_index__", x="umap_1", y="umap_2",
                                       neighbors="neighbors" if "neighbors" in df.columns else None)
    # the embedding chart the app builds on open, coloured by ``category`` (the app's defaultChartsConfig)
    charts = {"embedding": {"data": {"x": "umap_1", "y": "umap_2", "category": category}}}
    if image:
        props["data"]["image"] = image
    overrides = {"props": {"defaultChartsConfig": charts}}
    source = DataSource(f"cxr-fusion-{__version__}-{len(df)}", df, {"props": props})
    with tempfile.TemporaryDirectory() as empty:     # no static files: they are linked in by the caller
        source.export_to_folder(empty, str(app), overrides)


def export_atlas(table: pd.DataFrame, *, out: Path, application: bool = True, category: str = "subtype") -> dict[str, Path]:
    """Write ``out/atlas.parquet`` and, when asked, the offline app ``out/app`` with its launchers."""
    out.mkdir(parents=True, exist_ok=True)
    parquet = write_parquet(table, out / "atlas.parquet")
    paths = {"atlas_parquet": parquet}
    if not application:
        return paths
    app = out / "app"
    if app.exists():
        shutil.rmtree(app)
    _write_data(table, app, category=category)
    linked, copied = link_tree(_static_dir(), app)
    if copied:
        log.warning("Embedding Atlas app: %.0f MB copied into %s (hard links impossible here, e.g. another "
                    "file system)", copied / 1e6, app)
    log.info("Embedding Atlas app: %d static files hard-linked from the embedding-atlas package", linked)
    shutil.copyfile(LAUNCHER, out / "open_atlas.py")
    for name, text in WRAPPERS.items():
        path = out / name
        path.write_bytes(text.encode())
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    (out / "README.txt").write_text("Embedding Atlas of the candidate subtypes\n\n" + HOW_TO_OPEN + "\n\n"
                                    "From a terminal: python3 open_atlas.py\n")
    paths.update(atlas_app=app, atlas_launcher=out / "open_atlas.py")
    return paths
