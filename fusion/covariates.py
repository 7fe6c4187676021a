"""Patient covariates the fusion VAE conditions on (site, dataset, view, ...), scVI-style "batch" variables.

:func:`lookup_covariates` finds each covariate per patient in the cohort: a column of
``clinical.parquet`` (one value per patient) when present there, else a column of
``manifest.parquet`` (one value per image). Where a patient's images disagree (e.g. ``view``), the
value is the most frequent one among the images the serial policy chose for the model (the CXR it
sees; ties: the earliest of them), else among all the patient's images; such patients are counted.
Missing values stay missing.

:class:`CovariateEncoder` one-hot encodes them with the levels seen in training. A missing value or
a level not seen in training (a new site) is the all-zero code "unknown": the decoders never need it
to compute a latent, and conditioned encoders learn it through covariate dropout
(``conditioning.unknown_dropout``), so every patient gets a latent.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import ConfigError

log = logging.getLogger(__name__)


def _mode_per_patient(images: pd.DataFrame, column: str) -> tuple[pd.Series, int]:
    """Most frequent non-null ``column`` value per patient (ties: earliest row) and the count of patients whose rows disagree."""
    rows = images.loc[images[column].notna(), ["patient_id", column]].astype({column: str})
    rows = rows.assign(_order=np.arange(len(rows)))
    counts = rows.groupby(["patient_id", column], sort=False).agg(n=("_order", "size"), first=("_order", "min"))
    counts = counts.reset_index().sort_values(["patient_id", "n", "first"], ascending=[True, False, True])
    value = counts.groupby("patient_id", sort=False)[column].first()
    disagree = int((counts.groupby("patient_id").size() > 1).sum())
    return value, disagree


def lookup_covariates(names: Sequence[str], *, patients: np.ndarray, manifest: pd.DataFrame,
                      clinical: pd.DataFrame, chosen: pd.DataFrame, source: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """Covariates ``names`` per patient -> (DataFrame index patient_id, one str column per name, NA missing; notes).

    ``manifest``: all images (``patient_id`` column, time order); ``clinical``: indexed by patient_id;
    ``chosen``: the images the serial policy kept (``patient_id`` + manifest columns). ``source`` names
    the cohort folder for errors.
    """
    out = pd.DataFrame(index=pd.Index(patients, name="patient_id"))
    notes: dict[str, int] = {}
    for name in names:
        if name in clinical.columns:
            out[name] = clinical[name].reindex(patients).astype("string").to_numpy()
        elif name in manifest.columns:
            picked = _mode_per_patient(chosen, name)[0] if name in chosen.columns else pd.Series(dtype=str)
            every, disagree_all = _mode_per_patient(manifest, name)
            value = picked.reindex(patients).fillna(every.reindex(patients))
            out[name] = value.astype("string").to_numpy()
            notes[f"covariate_{name}_patients_with_disagreeing_images"] = disagree_all
            if disagree_all:
                log.info("covariate '%s': %d patient(s) have images with different values; each takes the most "
                         "frequent value among the image(s) the model uses", name, disagree_all)
        else:
            raise ConfigError(f"covariate '{name}' is neither a column of {source}/clinical.parquet nor of "
                              f"{source}/manifest.parquet: remove it from fusion.covariates or add the column")
        notes[f"covariate_{name}_missing"] = int(out[name].isna().sum())
    return out, notes


class CovariateEncoder:
    """One-hot codes of categorical covariates over the levels seen in training; unknown levels -> zeros."""

    def __init__(self, levels: dict[str, list[str]] | None = None) -> None:
        self.levels: dict[str, list[str]] = dict(levels or {})

    @property
    def sizes(self) -> tuple[int, ...]:
        """Number of levels of each covariate (the one-hot block widths, in order)."""
        return tuple(len(v) for v in self.levels.values())

    @property
    def width(self) -> int:
        """Total one-hot width (0 without covariates)."""
        return sum(self.sizes)

    def fit(self, table: pd.DataFrame) -> CovariateEncoder:
        """Learn the sorted levels of every column of ``table`` (training patients only)."""
        self.levels = {}
        for name in table.columns:
            levels = sorted(table[name].dropna().astype(str).unique())
            if not levels:
                raise ConfigError(f"covariate '{name}' has no value among the training patients: remove it "
                                  "from fusion.covariates")
            self.levels[name] = levels
        return self

    def transform(self, table: pd.DataFrame) -> tuple[np.ndarray, int]:
        """``table`` -> ((N, width) float32 one-hot, number of rows with a missing or unseen level)."""
        blocks, unknown = [], np.zeros(len(table), bool)
        for name, levels in self.levels.items():
            if name not in table.columns:
                raise ConfigError(f"the model was fitted with covariate '{name}' but the data has no such column: "
                                  "load the patient data with the same fusion.covariates")
            values = table[name].astype("string").to_numpy(dtype=object)
            code = np.array([levels.index(v) if isinstance(v, str) and v in levels else -1 for v in values], int)
            unknown |= code < 0
            blocks.append(np.eye(len(levels), dtype=np.float32)[np.maximum(code, 0)] * (code >= 0)[:, None])
        if not blocks:
            return np.zeros((len(table), 0), np.float32), 0
        return np.concatenate(blocks, axis=1).astype(np.float32), int(unknown.sum())

    def save(self, path: str | Path) -> None:
        """Write the levels as JSON."""
        Path(path).write_text(json.dumps({"levels": self.levels}, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> CovariateEncoder:
        """Read an encoder written by :meth:`save` (no file: no covariates)."""
        path = Path(path)
        return cls(json.loads(path.read_text())["levels"]) if path.is_file() else cls()
