"""MIMIC-CXR / MIMIC-CXR-JPG: ``files/pXX/p<subject>/s<study>/<dicom_id>.jpg|dcm`` + three csvs.

One manifest row per ``dicom_id`` of ``mimic-cxr-2.0.0-metadata.csv``; study-level CheXpert labels
(1/0/-1/blank) are joined on (subject_id, study_id), so studies without a labeler row get <NA>;
``split`` comes from the split csv. ``acquired_at`` is StudyDate + StudyTime (MIMIC's shifted dates).
"""
from __future__ import annotations

import pandas as pd

from ..config import MimicSource
from ..manifest import conform
from .base import AdapterResult, read_table, require_columns, under
from .chexpert_style import chexpert_labels

KEYS = ["subject_id", "study_id"]


def _acquired_at(date: pd.Series, time: pd.Series) -> pd.Series:
    hhmmss = time.astype("string").str.split(".").str[0].str.zfill(6)
    return pd.to_datetime(date.astype("string") + hhmmss, format="%Y%m%d%H%M%S", errors="coerce")


def load_mimic(cfg: MimicSource) -> AdapterResult:
    """Read the MIMIC-CXR csvs into manifest form (image paths under ``root/files``)."""
    ids = {"dicom_id": str, "subject_id": str, "study_id": str}
    meta_path = under(cfg.root, cfg.metadata_csv)
    meta = read_table(meta_path, what="MIMIC metadata csv", dtype={**ids, "StudyDate": str, "StudyTime": str})
    require_columns(meta, ["dicom_id", *KEYS, "ViewPosition"], source=meta_path)
    lab_path = under(cfg.root, cfg.chexpert_csv)
    labels_raw = read_table(lab_path, what="MIMIC chexpert csv", dtype=ids)
    require_columns(labels_raw, KEYS, source=lab_path)
    dup = labels_raw.duplicated(KEYS)
    if dup.any():
        raise ValueError(f"{lab_path}: {int(dup.sum())} duplicated (subject_id, study_id) rows")
    labels = pd.concat([labels_raw[KEYS], chexpert_labels(labels_raw, cfg.labels, source=str(lab_path))], axis=1)
    df = meta.merge(labels, on=KEYS, how="left", validate="many_to_one")
    if cfg.split_csv is not None:
        split_path = under(cfg.root, cfg.split_csv)
        split = read_table(split_path, what="MIMIC split csv", dtype=ids)
        require_columns(split, ["dicom_id", "split"], source=split_path)
        df = df.merge(split[["dicom_id", "split"]], on="dicom_id", how="left", validate="one_to_one")
    rel = ("files/p" + df["subject_id"].str[:2] + "/p" + df["subject_id"] + "/s" + df["study_id"] + "/"
           + df["dicom_id"] + "." + cfg.image_format)
    out = pd.DataFrame({
        "image_id": "mimic/" + df["dicom_id"],
        "patient_id": "mimic/" + df["subject_id"],
        "study_id": "mimic/s" + df["study_id"],
        "path": str(cfg.root.resolve()) + "/" + rel,
        "view": df["ViewPosition"],
        "acquired_at": _acquired_at(df["StudyDate"], df["StudyTime"]) if "StudyDate" in df else pd.NaT,
    })
    extras = [c for c in ("split", "Rows", "Columns") if c in df.columns]
    label_cols = [c for c in labels.columns if c.startswith("label_")]
    out = pd.concat([out, df[label_cols + extras]], axis=1)
    return AdapterResult(conform(out, dataset="mimic"))
