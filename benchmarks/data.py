"""Inputs of a benchmark run: the saved balanced sample and the pooled embeddings of its images.

The sample (``COHORT_DIR/sample.parquet``) is long format ``dataset, label, image_id, patient_id, y``.
Embeddings come from the store through :class:`embedders.store.EmbeddingStore` only. Sampled images
without an embedding are listed in ``missing.csv`` (never silently dropped) and left out of every
model's evaluation for that (dataset, label), so that all models are compared on the same images.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cohorts.folder import SAMPLE, CohortFolderError, read_sample
from embedders.precomputed import KNOWN_FLAT_LAYOUTS
from embedders.store import EmbeddingStore

from .config import BenchmarksConfig, Pooling
from .probes import pool

log = logging.getLogger(__name__)



class BenchmarkInputError(ValueError):
    """A sample or store that cannot be benchmarked as configured (the message says what to fix)."""


def load_sample(cohort: Path, cfg: BenchmarksConfig) -> pd.DataFrame:
    """Read ``cohort/sample.parquet`` (:func:`cohorts.folder.read_sample` checks it), keep the configured
    datasets/labels."""
    try:
        df = read_sample(cohort)
    except CohortFolderError as exc:
        raise BenchmarkInputError(str(exc)) from exc
    path = Path(cohort) / SAMPLE
    for key, wanted in (("dataset", cfg.datasets), ("label", cfg.labels)):
        if wanted is not None:
            absent = sorted(set(wanted) - set(df[key]))
            if absent:
                raise BenchmarkInputError(f"config {key}s {absent} not in {path} (it has {sorted(df[key].unique())})")
            df = df[df[key].isin(wanted)]
    return df.reset_index(drop=True)


@dataclass
class Features:
    """Pooled embeddings of the sampled images for one model.

    ``X[aug]`` (n_images, d) float32 rows aligned to ``image_ids`` (NaN where the store has no row),
    ``available[aug]`` (n_images,) bool, ``stored_shape`` the per-image shape in the store, ``pooling_note``
    what the pooling did, in words.
    """

    model: str
    pooling: Pooling
    stored_shape: tuple[int, ...]
    image_ids: np.ndarray
    X: dict[str, np.ndarray]
    available: dict[str, np.ndarray]
    pooling_note: str = ""

    @property
    def size(self) -> int:
        """Number of stored values per image (1024 for (1024,), 24576 for (32, 768))."""
        return int(np.prod(self.stored_shape))

    @property
    def probe_dim(self) -> int:
        """Features per image the probe sees after pooling (768 for (32, 768) mean-pooled, 1024 for (1024,))."""
        return int(self.X["original"].shape[1])


def pooling_note(model: str, stored_shape: tuple[int, ...], pooling: Pooling, *, explicit: bool) -> str:
    """What ``pooling`` does to per-image ``stored_shape``, in words; raises when an explicitly configured
    pooling (``pooling_per_model``) cannot apply. A flat vector whose length is a known flattened token layout
    (e.g. 24576 = CXR-Foundation's 32 x 768) gets a note that pooling did not act on it."""
    if len(stored_shape) == 2:
        t, d = stored_shape
        out = {"flatten": t * d, "mean": d, "cls": d}[pooling]
        what = {"flatten": "flattened", "mean": "mean over tokens", "cls": "token 0 kept"}[pooling]
        return f"{t} x {d} tokens, {what} -> {out} dims"
    if len(stored_shape) != 1:
        raise BenchmarkInputError(f"model {model!r}: per-image shape {list(stored_shape)} is neither (D,) nor "
                                  "(T, D); re-import it with a token_shape")
    (d,) = stored_shape
    if explicit and pooling != "flatten":
        raise BenchmarkInputError(f"pooling_per_model[{model!r}] = {pooling!r} cannot apply: the store holds one "
                                  f"vector of {d} per image, not tokens. Remove the entry, or re-import the "
                                  "embeddings with their token_shape (embedders precomputed.token_shape)")
    note = f"one vector of {d} per image; pooling '{pooling}' does not apply, used as is"
    if d in KNOWN_FLAT_LAYOUTS:
        shape, what = KNOWN_FLAT_LAYOUTS[d]
        note += (f". NOTE: {d} = {shape[0]} x {shape[1]}, the flattened layout of {what}: if these are tokens, "
                 f"the probe sees {d} dims instead of {shape[1]}; re-import with token_shape [{shape[0]}, {shape[1]}]")
    return note


def load_features(store: EmbeddingStore, model: str, image_ids: np.ndarray, *, augmentations: list[str],
                  pooling: Pooling, explicit_pooling: bool = False) -> Features:
    """Read, pool and keep in memory the rows of ``image_ids`` for each augmentation (float32).

    ``explicit_pooling``: the pooling was set for this model (``pooling_per_model``), so one that cannot
    apply is an error rather than a note (see :func:`pooling_note`)."""
    X, available, shape, note = {}, {}, (), ""
    for aug in augmentations:
        ids, arr = store.read(model, aug)
        if not note:
            shape = tuple(arr.shape[1:])
            note = pooling_note(model, shape, pooling, explicit=explicit_pooling)
        pos = pd.Index(ids).get_indexer(image_ids)
        have = pos >= 0
        rows = pos[have]
        order = np.argsort(rows)
        part = arr if len(rows) == arr.shape[0] and np.array_equal(rows, np.arange(len(rows))) else arr[rows[order]]
        pooled = np.asarray(pool(part, pooling).compute(), dtype=np.float32)
        out = np.full((len(image_ids), pooled.shape[1]), np.nan, dtype=np.float32)
        out[np.flatnonzero(have)[order]] = pooled
        X[aug], available[aug] = out, have
        log.info("%s/%s: %d of %d sampled images, pooled %s -> %d", model, aug, have.sum(), len(image_ids),
                 shape, pooled.shape[1])
    if "NOTE" in note:
        log.warning("%s: %s", model, note)
    return Features(model, pooling, shape, np.asarray(image_ids), X, available, note)


def train_augmentations(store: EmbeddingStore, model: str, cfg: BenchmarksConfig) -> list[str]:
    """Augmentations used for training ``model``: ``original`` first, then the configured (or all stored) ones."""
    have = store.augmentations(model)
    if "original" not in have:
        raise BenchmarkInputError(f"store {store.path}: model {model!r} has no 'original' rows (has {have})")
    wanted = cfg.train_augmentations if cfg.train_augmentations is not None else have
    absent = sorted(set(wanted) - set(have))
    if absent:
        raise BenchmarkInputError(f"config train_augmentations {absent} not in store {store.path} for {model!r} "
                                  f"(it has {have}); extract them or change the config")
    return ["original"] + [a for a in wanted if a != "original"]


def missing_images(sample: pd.DataFrame, features: list[Features], store: EmbeddingStore) -> pd.DataFrame:
    """Sampled images a model lacks (``original`` rows): dataset, label, image_id, patient_id, model, reason."""
    in_store = set(store.image_ids())
    rows = []
    for f in features:
        absent = set(f.image_ids[~f.available["original"]])
        sub = sample[sample["image_id"].isin(absent)]
        for r in sub.itertuples(index=False):
            reason = "not done in the store (see STORE.zarr.errors.csv)" if r.image_id in in_store \
                else "image_id not in the store (store built from another manifest?)"
            rows.append({"dataset": r.dataset, "label": r.label, "image_id": r.image_id,
                         "patient_id": r.patient_id, "model": f.model, "reason": reason})
    return pd.DataFrame(rows, columns=["dataset", "label", "image_id", "patient_id", "model", "reason"])
