"""Patient-level dataset assembly from a cohort folder and the embedding store.

:func:`load_patient_data` joins ``COHORT_DIR/manifest.parquet`` (images), ``clinical.parquet``
(+ ``clinical_schema.json``) and the CXR embeddings of one store model into a
:class:`PatientData`: one row per patient (the union of patients with images and patients with
clinical rows), with CXR embeddings chosen by the serial policy, raw clinical values, outcomes,
ground-truth columns and per-modality presence masks. :func:`split_patients` makes the
patient-grouped train / val / test split.

Serial policies (images of one patient ordered by ``offset_days``, then ``acquired_at``, then ``image_id``):

* ``first_within_window`` -- the earliest image with ``offset_days`` in ``[lo, hi]``; patients whose
  images all lack an offset use their earliest image; patients with offsets but none in the window
  get no CXR (both counted in :attr:`PatientData.notes`);
* ``last`` -- the latest image;
* ``all`` -- the latest ``max_images`` images as a sequence, padded (``cxr_mask``, ``cxr_offsets``).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.selection import read_selection
from cohorts.clinical import ColumnSpec, column_specs
from cohorts.folder import CLINICAL, read_cohort_folder
from core.config import ConfigError
from fusion.config import SerialPolicy
from fusion.covariates import lookup_covariates

log = logging.getLogger(__name__)


@dataclass
class PatientData:
    """One row per patient; arrays share the leading axis ``N``.

    ``cxr`` is ``(N, S, T, D)`` float32: S images per patient (1 unless the policy is ``all``),
    T tokens per image (1 for vector embeddings), D features; zeros where ``cxr_mask`` is False.
    """

    patient_ids: np.ndarray                 # (N,) str
    cxr: np.ndarray                         # (N, S, T, D) float32
    cxr_mask: np.ndarray                    # (N, S) bool, image slot filled
    cxr_offsets: np.ndarray                 # (N, S) float32 days since reference, NaN unknown / padding
    cxr_image_ids: np.ndarray               # (N, S) str, "" for padding
    clinical: pd.DataFrame                  # (N, features) raw values, index patient_id, nulls = missing
    outcomes: pd.DataFrame                  # role=outcome columns (e.g. time, event), index patient_id
    truth: pd.DataFrame                     # role=truth columns (evaluation only), index patient_id
    schema: dict[str, ColumnSpec]
    clinical_row: np.ndarray                # (N,) bool, the patient has a row in clinical.parquet
    model: str | None = None                # store model of the CXR embeddings
    notes: dict[str, int] = field(default_factory=dict)   # counts of dropped/unused inputs, by reason
    covariates: pd.DataFrame = field(default_factory=pd.DataFrame)   # (N, k) str/NA, index patient_id (fusion.covariates)

    def __len__(self) -> int:
        return len(self.patient_ids)

    @property
    def has_cxr(self) -> np.ndarray:
        """(N,) bool: at least one CXR embedding."""
        return self.cxr_mask.any(axis=1)

    def subset(self, idx: np.ndarray) -> PatientData:
        """Rows ``idx`` (integer positions) as a new PatientData."""
        idx = np.asarray(idx)
        return replace(
            self, patient_ids=self.patient_ids[idx], cxr=self.cxr[idx], cxr_mask=self.cxr_mask[idx],
            cxr_offsets=self.cxr_offsets[idx], cxr_image_ids=self.cxr_image_ids[idx],
            clinical=self.clinical.iloc[idx], clinical_row=self.clinical_row[idx], outcomes=self.outcomes.iloc[idx], truth=self.truth.iloc[idx],
            covariates=self.covariates.iloc[idx] if len(self.covariates.columns) else self.covariates,
        )


def read_embeddings(store: str | Path, model: str, *, augmentation: str = "original") -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of ``model`` in the store -> ``(image_ids (M,) str, (M, *dims) float32)`` (done rows only)."""
    from embedders.store import EmbeddingStore

    ids, arr = EmbeddingStore(store).read(model, augmentation)
    return np.asarray(ids).astype(str), np.asarray(arr.compute(), np.float32)


def resolve_cxr_model(model: str | None, augmentation: str, selection: Path | None, *, key: str) -> tuple[str, str]:
    """``(model, augmentation)``: the configured ``model``, else the benchmark's ``selection.json`` pick.

    ``key`` names the config key for the error when neither is given (e.g. ``cxr.model``).
    """
    if model is not None:
        return model, augmentation
    if selection is None:
        raise ConfigError(f"no CXR embedding model: set {key} in the config or pass --selection "
                          "BENCH_DIR/selection.json")
    sel = read_selection(selection)
    return sel.model, sel.augmentation or augmentation


def load_patient_data(cohort: str | Path, store: str | Path | None, *, model: str | None,
                      augmentation: str = "original", serial: SerialPolicy = "first_within_window",
                      window_days: tuple[float, float] = (-1.0, 3.0), max_images: int = 8,
                      covariates: Sequence[str] = ()) -> PatientData:
    """Assemble the patient-level dataset of ``cohort`` with CXR embeddings of ``model`` from ``store``.

    ``store`` / ``model`` may be None for a clinical-only dataset (then ``cxr`` is ``(N, 1, 1, 0)``).
    ``covariates``: columns looked up per patient (:func:`fusion.covariates.lookup_covariates`).
    Every manifest image without a finished embedding is counted in ``notes["images_without_embedding"]``.
    """
    cohort = Path(cohort)
    folder = read_cohort_folder(cohort)
    manifest, schema = folder.manifest, column_specs(folder.schema)
    if folder.clinical is not None:
        clin = folder.clinical.assign(patient_id=folder.clinical["patient_id"].astype(str)).set_index("patient_id")
    else:
        log.warning("%s not found: clinical-only inputs are empty", cohort / CLINICAL)
        clin = pd.DataFrame(index=pd.Index([], name="patient_id"))

    manifest = manifest.assign(image_id=manifest["image_id"].astype(str), patient_id=manifest["patient_id"].astype(str))
    patients = np.array(sorted(set(manifest["patient_id"]) | set(clin.index)), dtype=object).astype(str)
    notes: dict[str, int] = {}

    if store is not None and model is not None:
        img_ids, emb = read_embeddings(store, model, augmentation=augmentation)
        if emb.ndim == 2:
            emb = emb[:, None, :]
        elif emb.ndim != 3:
            raise ValueError(f"store {store} model '{model}': embeddings must be (N, D) or (N, T, D), got {emb.shape[1:]}")
        row_of = pd.Series(np.arange(len(img_ids)), index=img_ids)
        with_emb = manifest["image_id"].isin(row_of.index)
        notes["images_without_embedding"] = int((~with_emb).sum())
        images = manifest.loc[with_emb].copy()
        images["_row"] = row_of.loc[images["image_id"]].to_numpy()
    else:
        emb = np.zeros((0, 1, 0), np.float32)
        images = manifest.iloc[:0].assign(_row=pd.Series(dtype=np.int64))

    chosen = _choose_images(images, serial=serial, window_days=window_days, max_images=max_images, notes=notes)
    n, s = len(patients), (max_images if serial in ("all", "all_within_window") else 1)
    cxr = np.zeros((n, s, emb.shape[1], emb.shape[2]), np.float32)
    cxr_mask = np.zeros((n, s), bool)
    offsets = np.full((n, s), np.nan, np.float32)
    image_ids = np.full((n, s), "", dtype=object)
    pos = {p: i for i, p in enumerate(patients)}
    for pid, group in chosen.groupby("patient_id", sort=False):
        i = pos[pid]
        k = len(group)
        cxr[i, :k] = emb[group["_row"].to_numpy()]
        cxr_mask[i, :k] = True
        offsets[i, :k] = group["_offset"].to_numpy(np.float32)
        image_ids[i, :k] = group["image_id"].to_numpy()

    def cols(role: str) -> list[str]:
        return [c for c, spec in schema.items() if spec.role == role]

    cov, cov_notes = lookup_covariates(covariates, patients=patients, manifest=_time_ordered(manifest),
                                       clinical=clin, chosen=chosen, source=str(cohort))
    notes.update(cov_notes)
    table = clin.reindex(patients)
    clinical_row = pd.Index(patients).isin(clin.index)
    notes["patients_without_clinical_row"] = int((~clinical_row).sum())
    notes["patients_without_cxr"] = int((~cxr_mask.any(axis=1)).sum())
    log.info("patient data: %d patients, %d with CXR, notes %s", n, int(cxr_mask.any(axis=1).sum()), notes)
    return PatientData(
        patient_ids=patients, cxr=cxr, cxr_mask=cxr_mask, cxr_offsets=offsets, cxr_image_ids=image_ids.astype(str),
        clinical=table[cols("feature")], outcomes=table[cols("outcome")], truth=table[cols("truth")],
        schema=schema, clinical_row=np.asarray(clinical_row), model=model, notes=notes, covariates=cov,
    )


def _time_ordered(images: pd.DataFrame) -> pd.DataFrame:
    """``images`` sorted by patient, ``offset_days``, ``acquired_at``, ``image_id`` (unknown times last); adds ``_offset``."""
    df = images.copy()
    df["_offset"] = pd.to_numeric(df["offset_days"], errors="coerce") if "offset_days" in df else np.nan
    sort_cols = ["patient_id", "_offset"] + (["acquired_at"] if "acquired_at" in df else []) + ["image_id"]
    return df.sort_values(sort_cols, na_position="last", kind="stable")


def _choose_images(images: pd.DataFrame, *, serial: SerialPolicy, window_days: tuple[float, float],
                   max_images: int, notes: dict[str, int]) -> pd.DataFrame:
    """Rows of ``images`` kept by the serial policy, in time order within each patient (adds ``_offset``)."""
    df = _time_ordered(images)
    if serial == "last":
        return df.groupby("patient_id", sort=False).tail(1)
    if serial == "all":
        kept = df.groupby("patient_id", sort=False).tail(max_images)
        notes["images_beyond_max_images"] = len(df) - len(kept)
        return kept
    lo, hi = window_days
    known = df["_offset"].notna()
    has_offset = known.groupby(df["patient_id"]).transform("any")
    in_window = known & df["_offset"].between(lo, hi)
    candidates = pd.concat([df[in_window], df[~has_offset]])   # disjoint: a patient has offsets or has none
    per_patient = 1 if serial == "first_within_window" else max_images
    picked = candidates.groupby("patient_id", sort=False).head(per_patient)
    if serial == "all_within_window":
        notes["images_beyond_max_images"] = len(candidates) - len(picked)
    no_offset = set(df.loc[~has_offset, "patient_id"])
    outside = set(df["patient_id"]) - set(picked["patient_id"])
    notes["patients_first_image_without_offset"] = len(no_offset)
    notes["patients_no_image_in_window"] = len(outside)
    return picked


def split_patients(patient_ids: np.ndarray, *, val_fraction: float, test_fraction: float,
                   seed: int) -> dict[str, np.ndarray]:
    """Seeded patient-level split -> ``{"train", "val", "test"}`` integer positions into ``patient_ids``.

    ``patient_ids`` must be unique (one row per patient), so the split is grouped by patient by
    construction; each non-empty fraction gets at least one patient.
    """
    ids = np.asarray(patient_ids)
    if len(np.unique(ids)) != len(ids):
        raise ValueError("split_patients: patient_ids must be unique (one row per patient)")
    n = len(ids)
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(test_fraction * n)) if test_fraction > 0 else 0
    n_val = max(1, round(val_fraction * n)) if val_fraction > 0 else 0
    if n - n_test - n_val < 1:
        raise ValueError(f"split_patients: {n} patients are too few for val={val_fraction}, test={test_fraction}")
    return {"test": np.sort(perm[:n_test]), "val": np.sort(perm[n_test:n_test + n_val]),
            "train": np.sort(perm[n_test + n_val:])}
