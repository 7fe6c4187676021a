"""Patient-id warnings of a benchmark run, in words: folds grouped by patient protect only when ``patient_id``
names the patient.

Two sources: the store attrs ``patients`` that an embeddings import records (no patient id given; the
manifest's patient ids split a patient's repeat studies; see ``embedders.import_patients``), and the sample
itself (``patient_id`` equal to ``image_id`` on every row of a dataset: each image is its own "patient").
"""
from __future__ import annotations

import pandas as pd

from embedders.store import EmbeddingStore


def patient_id_warnings(sample: pd.DataFrame, store: EmbeddingStore, models: list[str]) -> list[str]:
    """Warnings (sentences) about the patient ids the folds are grouped by; empty when nothing is known wrong.

    ``sample``: dataset, image_id, patient_id (one row per sampled image and label); ``models``: benchmarked.
    """
    out: list[str] = []
    for model in models:
        warning = (store.attrs(model).get("patients") or {}).get("warning")
        if warning:
            out.append(f"embeddings of {model}: {warning}")
    images = sample.drop_duplicates("image_id")
    for ds, sub in images.groupby("dataset", sort=True):
        if len(sub) > 1 and (sub["patient_id"].astype(str) == sub["image_id"].astype(str)).all():
            out.append(f"dataset {ds}: patient_id equals image_id for all {len(sub)} sampled images, so the "
                       "patient-grouped folds are image-level folds; if any patient has several images (repeat "
                       "studies), they fall in different folds and AUROC is inflated as in the source study. "
                       "Give the cohort real patient ids (adapter patient column, or patient_column / "
                       "patient_table of the precomputed import)")
    return out
