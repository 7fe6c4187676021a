"""NIH ChestX-ray14 (``Data_Entry_2017*.csv``) + optional Google 2019 expert labels.

``Finding Labels`` is pipe-separated (``No Finding`` when empty): a listed finding is 1, an
unlisted one 0 (the NIH labels are NLP-mined; there is no uncertain class). Google labels are
YES/NO for 4,376 images (1/0); every other image gets <NA> for them.
"""
from __future__ import annotations

import pandas as pd

from ..config import NihSource
from ..labels import code_flags, code_terms, label_column
from ..manifest import conform
from .base import AdapterResult, joined_paths, read_table, require_columns

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
    return AdapterResult(conform(df, dataset="nih"), notes=notes)
