"""NIH ChestX-ray14 (``Data_Entry_2017*.csv``) + optional Google 2019 expert labels.

``Finding Labels`` is pipe-separated (``No Finding`` when empty): a listed finding is 1, an
unlisted one 0 (the NIH labels are NLP-mined; there is no uncertain class). Google labels are
YES/NO for 4,376 images (1/0); every other image gets <NA> for them.

Partial copies: most users hold a few of the 12 image archives. With ``image_root`` set, only the table rows
whose PNG is in that folder are kept (one log line and ``notes["rows_without_image"]`` say how many were not);
a folder holding none of them is an error naming it.

Clinical table (one row per patient, from the rows kept): ``sex`` and ``age`` at the patient's earliest
follow-up. The manifest keeps each image's own age and sex (the benchmark's shortcut probes read them per image).
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ..clinical import ID_SPEC, spec
from ..config import NihSource
from ..labels import code_flags, code_terms, label_column
from ..manifest import conform, existing_files
from .base import AdapterResult, joined_paths, read_table, require_columns

log = logging.getLogger(__name__)

SCHEMA = {"patient_id": ID_SPEC,
          "sex": spec("categorical", "feature", "sex (Patient Gender)", categories=["M", "F"]),
          "age": spec("continuous", "feature", "age at the patient's earliest follow-up image in the cohort",
                      unit="years", min=0.0, max=120.0)}
COLUMNS = ("Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender", "View Position")


def load_nih(cfg: NihSource) -> AdapterResult:
    """Read the NIH table (and Google labels) into manifest form; ``path`` is null without ``image_root``."""
    raw = read_table(cfg.table, what="NIH Data_Entry table", dtype={"Patient ID": str})
    require_columns(raw, COLUMNS, source=cfg.table)
    labels = code_terms(raw["Finding Labels"], cfg.labels, separator="|")
    df = pd.DataFrame({
        "image_id": "nih/" + raw["Image Index"].str.rsplit(".", n=1).str[0],
        "patient_id": "nih/" + raw["Patient ID"],
        "path": joined_paths(cfg.image_root, raw["Image Index"]),
        "view": raw["View Position"],
        "follow_up": raw["Follow-up #"],
        "age": pd.to_numeric(raw["Patient Age"], errors="coerce"),
        "sex": raw["Patient Gender"],
    })
    df = pd.concat([df, labels], axis=1)
    notes = {}
    if cfg.google_labels is not None:
        google = read_table(cfg.google_labels, what="Google 2019 NIH label table")
        require_columns(google, ["Image Index", *cfg.google_label_map.values()], source=cfg.google_labels)
        unknown = ~google["Image Index"].isin(raw["Image Index"])
        if unknown.any():
            raise ValueError(f"{cfg.google_labels}: {int(unknown.sum())} image(s) not in {cfg.table}, "
                             f"e.g. {google.loc[unknown, 'Image Index'].iloc[0]}")
        google = google.drop_duplicates("Image Index").set_index("Image Index")
        for name, column in cfg.google_label_map.items():
            coded = code_flags(google[column], positive=["YES"], negative=["NO"])
            df[label_column(name)] = raw["Image Index"].map(coded).astype("Int8")
        df["google_set"] = raw["Image Index"].map(google["Set Id"]) if "Set Id" in google else pd.NA
        notes["google_labelled_images"] = int(len(google))
    if cfg.image_table is not None:
        df = _join_image_table(df, raw["Image Index"], cfg)
    if cfg.image_root is not None:
        df = _rows_with_images(df, root=cfg.image_root, table=cfg.table, notes=notes)
    manifest = conform(df, dataset="nih")
    return AdapterResult(manifest, _clinical(manifest, notes), {"columns": SCHEMA}, notes=notes)


def _clinical(manifest: pd.DataFrame, notes: dict) -> pd.DataFrame:
    """Per patient: sex and age of the earliest follow-up; ages outside the schema's 0-120 become missing, and a
    patient whose images disagree on sex keeps the earliest one's (both counted in ``notes``)."""
    ordered = manifest.sort_values(["patient_id", "follow_up"], kind="stable")
    first = ordered.groupby("patient_id", sort=False).first()
    sexes = ordered.dropna(subset=["sex"]).groupby("patient_id")["sex"].nunique()
    notes["patients_with_conflicting_sex"] = int((sexes > 1).sum())
    age = pd.to_numeric(first["age"], errors="coerce")
    implausible = age.notna() & ~age.between(0, 120)
    notes["implausible_ages_set_missing"] = int(implausible.sum())
    return pd.DataFrame({"patient_id": first.index.to_numpy(), "sex": first["sex"].astype("string").to_numpy(),
                         "age": age.mask(implausible).to_numpy(dtype=float)})


def _rows_with_images(df: pd.DataFrame, *, root: Path, table: Path, notes: dict) -> pd.DataFrame:
    """The rows of ``df`` whose image is in ``root``; ValueError naming the folder when none is."""
    found = existing_files(df["path"])
    if not found.any():
        where = "does not exist" if not Path(root).is_dir() else "holds none of them"
        raise ValueError(f"NIH image_root {root} {where}: no image of the {len(df)} rows of {table} found; set "
                         "image_root to the folder holding the NIH PNGs (e.g. the unpacked images_0XX archives), "
                         "or to null for a label-only manifest")
    missing = int((~found).sum())
    notes["rows_without_image"] = missing
    if missing:
        log.info("NIH: %d of %d table rows have their image in %s; %d row(s) without an image are left out "
                 "(a partial copy)", int(found.sum()), len(df), root, missing)
    return df.loc[found].reset_index(drop=True)


def _join_image_table(df: pd.DataFrame, names: pd.Series, cfg: NihSource) -> pd.DataFrame:
    """Copy ``cfg.image_table_columns`` of the per-image table onto the rows of ``df`` (keyed by file name)."""
    table = read_table(cfg.image_table, what="NIH per-image table", dtype=str)
    require_columns(table, [cfg.image_table_key, *cfg.image_table_columns.values()], source=cfg.image_table)
    table = table.drop_duplicates(cfg.image_table_key).set_index(cfg.image_table_key)
    unknown = ~table.index.isin(names)
    if unknown.any():
        raise ValueError(f"{cfg.image_table}: {int(unknown.sum())} image(s) not in {cfg.table}, "
                         f"e.g. {table.index[unknown][0]}")
    for name, column in cfg.image_table_columns.items():
        df[name] = names.map(table[column]).astype("string").to_numpy()
    return df
