"""The export folder ``clustering/export/``: the only thing to hand over to collaborators.

The clustering stage writes everything into its output folder, some of it for the analyst only (metrics with
the machine's environment, resolution sweeps, the patients left out). :func:`assemble_export` then puts the
hand-over set into ``export/``: the allow-listed subtype tables (CSV, parquet, AnnData), the data dictionary,
provenance, Table 1, label enrichment, the validity panel and site diagnostics, the figures, the subtype report
and the Embedding Atlas. Every one of them is built from the export allow-list (:mod:`clustering.export`).
Patient images (the montage, Atlas thumbnails) go in only with ``export.images``. Files are hard links where
the file system allows (no extra disk), copies otherwise.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from core.safeio import write_text

EXPORT_DIR = "export"
TABLES = ("subtypes.csv", "subtypes.parquet", "subtypes.h5ad", "data_dictionary.csv", "provenance.json", "table1.csv",
          "table1_stats.csv", "label_enrichment.csv", "validity.json", "site_diagnostics.json")
IMAGE_FIGURES = ("montage.png",)      # figures made of patient images


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def assemble_export(out: Path, *, images: bool, atlas_has_images: bool,
                    write_report: Callable[[Path, bool], Path]) -> dict[str, Path]:
    """Fill ``out/export`` (rebuilt from scratch) from the stage's outputs in ``out``; return the written paths.

    ``images``: patient images may leave (montage figure; the Atlas when ``atlas_has_images``).
    ``write_report(path, images)`` writes the subtype report for the export (without images unless ``images``).
    """
    export = out / EXPORT_DIR
    if export.exists():
        shutil.rmtree(export)
    export.mkdir(parents=True)
    paths: dict[str, Path] = {}
    for name in TABLES:
        if (out / name).is_file():
            paths[name] = Path(_link_or_copy(str(out / name), str(export / name)))
    figures = out / "figures"
    if figures.is_dir():
        kept = [f for f in sorted(figures.iterdir()) if f.is_file() and (images or f.name not in IMAGE_FIGURES)]
        if kept:
            (export / "figures").mkdir()
            for f in kept:
                _link_or_copy(str(f), str(export / "figures" / f.name))
            paths["figures"] = export / "figures"
    if (out / "atlas").is_dir() and (images or not atlas_has_images):
        shutil.copytree(out / "atlas", export / "atlas", copy_function=_link_or_copy, symlinks=True)
        paths["atlas"] = export / "atlas"
    paths["report"] = write_report(export / "report.html", images)
    paths["readme"] = write_text(export / "README.txt", _readme(sorted(p.name for p in export.iterdir()), images=images))
    return paths


def _readme(names: list[str], *, images: bool) -> str:
    return "\n".join([
        "cxr-fusion export: candidate subtypes for collaborators",
        "",
        "This folder is what may be handed over: every table and figure in it shows only the columns on the",
        "export allow-list of the clustering config, patient ids are pseudonyms (unless the report says raw ids",
        "were exported on purpose), and no path of the producing machine appears in it. The pseudonym key stays",
        "with the data owner (the run's private/ folder), never in this folder.",
        "Patient images: " + ("included (export.images: true)." if images else
                              "not included (no image montage; no Atlas when it carries image thumbnails)."),
        "",
        "Start with report.html; data_dictionary.csv describes every column of subtypes.csv.",
        "Contents: " + ", ".join(names + ["README.txt"]),
        "",
    ])
