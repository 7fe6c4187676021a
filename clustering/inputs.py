"""Read the clustering inputs: fusion latents or store embeddings, and the cohort tables.

Everything is aligned into one per-unit frame (a unit is a patient, or an image for per-image
clustering of store embeddings): ``patient_id`` (+ ``image_id``), ``dataset``, ``path`` (one image of
the unit, for montages), the manifest's ``label_*`` columns (per patient: the maximum over the
patient's images, i.e. present if any image is positive, else absent if any negative, else uncertain)
and the clinical columns. Inputs that cannot be aligned are errors, never silently dropped.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.config import Pooling
from benchmarks.probes import pool
from cohorts.folder import CohortFolder, CohortFolderError, read_cohort_folder
from fusion.latents import read_informed, read_latents

log = logging.getLogger(__name__)


class InputError(ValueError):
    """Clustering inputs that are missing or do not line up (the message names the file and what to do)."""


@dataclass
class Points:
    """What gets clustered: ``x`` ``(n, d)`` float32 and the unit frame ``units`` (n rows, aligned)."""

    x: np.ndarray
    units: pd.DataFrame
    source: dict[str, object]
    excluded: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["patient_id", "reason"]))


def load_cohort(cohort: Path) -> CohortFolder:
    """Read ``COHORT_DIR`` (:func:`cohorts.folder.read_cohort_folder`); contract breaks are :class:`InputError`."""
    try:
        return read_cohort_folder(cohort)
    except CohortFolderError as exc:
        raise InputError(str(exc)) from None


UNINFORMED = ("no CXR in the fusion window and no clinical value the VAE uses: the latent is the prior mean, "
              "which has no direction to cluster by")


def load_latents(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """``(patient ids (n,), latent (n, d) float32, attrs)`` from a fusion ``latents.zarr``."""
    try:
        return read_latents(path)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def load_store(path: Path, *, model: str, augmentation: str,
               pooling: Pooling = "mean") -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """``(image ids (n,), embeddings (n, d) float32, model attrs)``; multi-token outputs are pooled over tokens as
    the benchmark does (``pooling``: its ``selection.json`` choice, :func:`benchmarks.probes.pool`)."""
    from embedders.store import EmbeddingStore

    store = EmbeddingStore(path)
    ids, arr = store.read(model, augmentation)
    x = np.asarray(arr.compute(), dtype=np.float32)
    if x.ndim > 2:
        x = pool(x.reshape(x.shape[0], -1, x.shape[-1]), pooling)
    return np.asarray(ids).astype(str), x, store.attrs(model)


def _patient_labels(manifest: pd.DataFrame) -> pd.DataFrame:
    labels = [c for c in manifest.columns if c.startswith("label_")]
    first = manifest.groupby("patient_id", sort=False).first()
    agg = manifest.groupby("patient_id", sort=False)[labels].max() if labels else pd.DataFrame(index=first.index)
    keep = [c for c in ("dataset", "path") if c in first.columns]
    return pd.concat([first[keep], agg.astype("Int8") if labels else agg], axis=1)


def _check_ids(ids: np.ndarray, known: pd.Index, *, what: str, source: Path, cohort: Path) -> None:
    dup = pd.Index(ids)[pd.Index(ids).duplicated()]
    if len(dup):
        raise InputError(f"{source}: duplicated {what} ids, e.g. {list(dup[:3])}")
    unknown = pd.Index(ids).difference(known)
    if len(unknown):
        raise InputError(f"{source}: {len(unknown)} {what} ids are not in {cohort}/manifest.parquet "
                         f"(e.g. {list(unknown[:3])}): the inputs come from a different cohort")


def align(ids: np.ndarray, x: np.ndarray, cohort: CohortFolder, *, unit: str, source_path: Path) -> Points:
    """Build the per-unit frame for ``ids`` (patient or image ids); store images may be averaged per patient."""
    man = cohort.manifest
    if unit == "image":
        _check_ids(ids, pd.Index(man.image_id), what="image", source=source_path, cohort=cohort.path)
        units = man.set_index("image_id").loc[ids].reset_index()
        units = units[[c for c in units.columns if c in ("image_id", "patient_id", "dataset", "path")
                       or c.startswith("label_")]]
    else:
        _check_ids(ids, pd.Index(man.patient_id), what="patient", source=source_path, cohort=cohort.path)
        units = _patient_labels(man).loc[ids].reset_index()
    if cohort.clinical is not None:
        clin = cohort.clinical[[c for c in cohort.clinical.columns if c == "patient_id" or c not in units.columns]]
        units = units.merge(clin, on="patient_id", how="left", validate="many_to_one")
    return Points(x, units, {})


def patient_means(image_ids: np.ndarray, x: np.ndarray, manifest: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Average each patient's L2-normalised image embeddings: ``(patient ids (p,), (p, d))`` in first-seen order."""
    pid = manifest.set_index("image_id").loc[image_ids, "patient_id"].to_numpy().astype(str)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    z = x / np.where(norms > 0, norms, 1.0)
    codes, uniq = pd.factorize(pid)
    sums = np.zeros((len(uniq), x.shape[1]), np.float64)
    np.add.at(sums, codes, z)
    counts = np.bincount(codes)[:, None]
    return np.asarray(uniq).astype(str), (sums / counts).astype(np.float32)


def load_points(cohort: CohortFolder, *, latents: Path | None, store: Path | None, model: str | None,
                unit: str, augmentation: str, pooling: Pooling = "mean") -> Points:
    """Load and align the clustering input given either ``latents`` or ``store`` + ``model``."""
    if (latents is None) == (store is None):
        raise InputError("give exactly one input: --latents FUSION_DIR/latents.zarr, or --store STORE.zarr --model NAME")
    if latents is not None:
        ids, x, attrs = load_latents(latents)
        informed = read_informed(latents)
        pts = align(ids[informed], x[informed], cohort, unit="patient", source_path=latents)
        pts.source = {"kind": "fusion latents", "path": str(latents), "model": attrs.get("model"), "attrs": attrs}
        pts.excluded = pd.DataFrame({"patient_id": ids[~informed], "reason": UNINFORMED})
        if len(pts.excluded):
            log.warning("%d patient(s) not clustered (listed in excluded.csv): %s", len(pts.excluded), UNINFORMED)
        return pts
    if model is None:
        raise InputError("--store needs --model NAME (one of the store's model groups)")
    ids, x, attrs = load_store(store, model=model, augmentation=augmentation, pooling=pooling)
    _check_ids(ids, pd.Index(cohort.manifest.image_id), what="image", source=store, cohort=cohort.path)
    if unit == "patient":
        ids, x = patient_means(ids, x, cohort.manifest)
    pts = align(ids, x, cohort, unit=unit, source_path=store)
    pts.source = {"kind": f"store embeddings ({unit} level)", "path": str(store), "model": model,
                  "augmentation": augmentation, "pooling": pooling, "weights_sha256": attrs.get("weights_sha256"),
                  "manifest_sha256": attrs.get("manifest_sha256")}
    return pts
