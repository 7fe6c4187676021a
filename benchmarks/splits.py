"""Patient-grouped, stratified K-fold splits; augmented rows only ever in training folds."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold


class SplitError(ValueError):
    """A sample that cannot be split as asked (too few patients of a class)."""


def patient_folds(y: np.ndarray, patients: np.ndarray, *, n_folds: int, seed: int) -> np.ndarray:
    """Fold index (0..n_folds-1) per row: stratified by ``y``, no patient in two folds.

    ``y`` (N,) in {0, 1}; ``patients`` (N,) ids. Raises :class:`SplitError` when a class has fewer
    patients than folds (every test fold must hold both classes for AUROC).
    """
    y = np.asarray(y)
    patients = np.asarray(patients)
    for cls in (0, 1):
        n_pat = len(np.unique(patients[y == cls]))
        if n_pat < n_folds:
            raise SplitError(f"class y={cls} has {n_pat} patients, fewer than n_folds={n_folds}; "
                             f"lower n_folds or sample more images")
    folds = np.full(len(y), -1, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups=patients)):
        folds[test] = k
    return folds


def training_rows(train: np.ndarray, available: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rows (sample indices) each augmentation contributes to a training set.

    ``train`` holds the sample indices of the training images (originals); ``available[aug]`` is a
    bool mask over the sample saying which rows the store has for ``aug``. Test folds never come
    through here: they are scored on ``original`` rows only.
    """
    return {aug: train[mask[train]] for aug, mask in available.items()}
