"""Balanced, seeded, patient-aware sampling: N positives + N negatives per (dataset, label).

The sample is a saved artefact (``sample.parquet``, long format ``dataset, label, image_id,
patient_id, y``) so every embedding model is benchmarked on the same images. Only rows coded
1 or 0 take part (uncertain -1 and missing never do). With ``one_per_patient`` a patient appears
at most once per (dataset, label): the class with fewer distinct patients is drawn first (one
random image per patient), the other class then comes from the remaining patients. When fewer than N are available,
all of them are used, a warning is logged and the shortfall is returned for the overview.
"""
from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .folder import SAMPLE_COLUMNS
from .labels import label_column

log = logging.getLogger(__name__)


@dataclass
class SampleResult:
    """The long-format sample and, per ``dataset/label``, the counts drawn vs asked."""

    sample: pd.DataFrame
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    shortfalls: list[str] = field(default_factory=list)


def _rng(seed: int, dataset: str, label: str) -> np.random.Generator:
    """A generator per (seed, dataset, label), independent of the order labels are listed in."""
    return np.random.default_rng([seed, zlib.crc32(f"{dataset}\0{label}".encode())])


def _draw(rows: pd.DataFrame, n: int, rng: np.random.Generator, *, one_per_patient: bool,
          exclude: set[str]) -> pd.DataFrame:
    rows = rows[~rows["patient_id"].isin(exclude)] if exclude else rows
    shuffled = rows.iloc[rng.permutation(len(rows))]
    if one_per_patient:
        shuffled = shuffled.drop_duplicates("patient_id")
    return shuffled.iloc[:n]


def balanced_sample(manifest: pd.DataFrame, *, labels: list[str], n_per_class: int = 1000,
                    seed: int = 0, one_per_patient: bool = True, negatives_from: dict[str, str] | None = None,
                    min_per_class: int = 0, balance_to_smaller: bool = False) -> SampleResult:
    """Draw ``n_per_class`` positive and negative images per (dataset, label) of ``manifest``.

    ``negatives_from`` (suffix -> label) defines other negative sets: for each entry, sample label
    ``<label>_vs_<suffix>`` takes its negatives only from images without the label that are positive for the
    entry's label (e.g. ``{Pneumonia: Pneumonia, NoFinding: NoFinding}``); the plain label is then not drawn.
    A (dataset, label) with fewer than ``min_per_class`` images in a class is left out and listed in
    ``counts`` with ``too_small: True`` (and logged), never dropped silently. With ``balance_to_smaller`` a
    class that exceeds the other is cut (at random) to the other's size when fewer than N exist.
    """
    parts, counts, shortfalls = [], {}, []
    pools = negatives_from or {"": None}
    for dataset, part in manifest.groupby("dataset", sort=True):
        for label in labels:
            col = label_column(label)
            if col not in part.columns or not part[col].isin([0, 1]).any():
                continue
            for suffix, pool in pools.items():
                name = f"{label}_vs_{suffix}" if suffix else label
                coded = part.loc[part[col].isin([0, 1]), ["image_id", "patient_id", col]]
                if pool is not None:
                    if label_column(pool) not in part:
                        raise ValueError(f"sampling.negatives_from names label {pool!r}, which dataset {dataset!r} "
                                         "does not have; add it to the source's labels")
                    in_pool = part.loc[coded.index, label_column(pool)].eq(1).fillna(False).astype(bool)
                    coded = coded[(coded[col] == 1) | in_pool]
                pos, neg = _draw_classes(coded, col, n_per_class, _rng(seed, str(dataset), name),
                                         one_per_patient=one_per_patient)
                if balance_to_smaller:
                    pos, neg = pos.iloc[:len(neg)], neg.iloc[:len(pos)]
                key = f"{dataset}/{name}"
                counts[key] = {"positive": len(pos), "negative": len(neg), "asked": n_per_class}
                if min(len(pos), len(neg)) < min_per_class:
                    counts[key]["too_small"] = True
                    log.warning("%s: only %d positive / %d negative image(s), fewer than min_per_class=%d: "
                                "left out of the sample as too small", key, len(pos), len(neg), min_per_class)
                    continue
                if len(pos) < n_per_class or len(neg) < n_per_class:
                    shortfalls.append(key)
                    log.warning("%s: only %d positive / %d negative image(s) available for %d+%d (%s); using all",
                                key, len(pos), len(neg), n_per_class, n_per_class,
                                "one per patient" if one_per_patient else "any image")
                for y, rows in ((1, pos), (0, neg)):
                    parts.append(pd.DataFrame({"dataset": dataset, "label": name, "image_id": rows["image_id"],
                                               "patient_id": rows["patient_id"], "y": np.int8(y)}))
    sample = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(SAMPLE_COLUMNS))
    sample = sample.astype({"dataset": "string", "label": "string", "image_id": "string",
                            "patient_id": "string", "y": "int8"})
    return SampleResult(sample[list(SAMPLE_COLUMNS)], counts, shortfalls)


def _draw_classes(coded: pd.DataFrame, col: str, n: int, rng: np.random.Generator, *,
                  one_per_patient: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(positives, negatives) of ``coded`` (rows coded 0/1 in ``col``), up to ``n`` each."""
    classes = {y: coded[coded[col] == y] for y in (1, 0)}
    # the class with fewer patients is drawn first, so the other cannot use up its patients
    order = sorted(classes, key=lambda y: (classes[y]["patient_id"].nunique(), -y))
    drawn: dict[int, pd.DataFrame] = {}
    for y in order:
        taken = set(drawn[1 - y]["patient_id"]) if one_per_patient and (1 - y) in drawn else set()
        drawn[y] = _draw(classes[y], n, rng, one_per_patient=one_per_patient, exclude=taken)
    return drawn[1], drawn[0]
