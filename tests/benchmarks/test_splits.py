"""Folds: patient-disjoint and stratified; augmented rows only in training sets, tests on originals only."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.crossval import build_train_set, fold_scaler, image_moments
from benchmarks.data import Features
from benchmarks.splits import SplitError, patient_folds, training_rows


def _cohort(seed: int = 0):
    rng = np.random.default_rng(seed)
    per_patient = rng.integers(1, 4, 150)                      # 1-3 images per patient
    patients = np.repeat([f"p{i}" for i in range(150)], per_patient)
    y = np.repeat(rng.random(150) < 0.3, per_patient).astype(int)  # label per patient, 30% positive
    return y, patients


def test_folds_are_patient_disjoint_and_stratified():
    y, patients = _cohort()
    folds = patient_folds(y, patients, n_folds=5, seed=3)
    assert set(folds) == set(range(5))
    for p in np.unique(patients):
        assert len(set(folds[patients == p])) == 1, f"patient {p} in two folds"
    overall = y.mean()
    for k in range(5):
        assert abs(y[folds == k].mean() - overall) < 0.08
        assert 0.15 < (folds == k).mean() < 0.25
    assert np.array_equal(folds, patient_folds(y, patients, n_folds=5, seed=3))   # seeded
    assert not np.array_equal(folds, patient_folds(y, patients, n_folds=5, seed=4))


def test_too_few_patients_is_a_clear_error():
    y = np.array([1, 1, 0, 0, 0, 0])
    with pytest.raises(SplitError, match="class y=1 has 2 patients"):
        patient_folds(y, np.array(["a", "b", "c", "d", "e", "f"]), n_folds=3, seed=0)


def test_augmented_rows_only_in_training_folds():
    y, patients = _cohort(1)
    n = len(y)
    folds = patient_folds(y, patients, n_folds=5, seed=0)
    augs = ["original", "bright", "rot+45"]
    # each feature row encodes (image index, augmentation code) so the training set can be traced back
    X = {a: np.c_[np.arange(n), np.full(n, j)].astype(np.float32) for j, a in enumerate(augs)}
    available = {a: np.ones(n, bool) for a in augs}
    available["rot+45"][::7] = False                        # some augmented rows were never extracted
    feats = Features("m", "mean", (2,), np.array([f"img{i}" for i in range(n)]), X, available)
    pos = np.arange(n)
    for k in range(5):
        train, test = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        ts = build_train_set(feats, pos, train, y, patients)
        images = ts.X[:, 0].astype(int)
        assert not set(images) & set(test), "a test image (original or augmented) is in the training set"
        assert set(np.unique(ts.X[:, 1]).astype(int)) == {0, 1, 2}
        assert ts.original.sum() == len(train) and np.array_equal(ts.original, ts.X[:, 1] == 0)
        assert np.array_equal(ts.y, y[images])
        assert not set(ts.groups) & set(patients[test])
        parts = training_rows(train, {a: available[a][pos] for a in augs})
        assert len(parts["rot+45"]) == available["rot+45"][train].sum()


def test_fold_scaler_equals_statistics_of_the_stacked_training_rows():
    rng = np.random.default_rng(2)
    n, augs = 40, ["original", "bright", "dark"]
    X = {a: rng.normal(3.0, 2.0, (n, 5)).astype(np.float32) for a in augs}
    X["original"][:, 4] = 7.0                                # constant feature in originals only
    available = {a: rng.random(n) < (1.0 if a == "original" else 0.7) for a in augs}
    feats = Features("m", "mean", (5,), np.arange(n).astype(str), X, available)
    pos, train = np.arange(n), np.arange(0, n, 2)
    raw = build_train_set(feats, pos, train, np.zeros(n, int), np.arange(n).astype(str))
    scaled = build_train_set(feats, pos, train, np.zeros(n, int), np.arange(n).astype(str),
                             scaler=fold_scaler(image_moments(feats, pos), train))
    assert np.allclose(scaled.X, (raw.X - raw.X.mean(0)) / raw.X.std(0), atol=1e-4)


def test_cross_validate_scores_test_folds_on_original_rows_only(monkeypatch):
    """Every row handed to the probe for scoring is an original image of the held-out fold; training sets
    hold the other folds' originals and augmented copies (an augmentation code column traces each row)."""
    import benchmarks.crossval as cv
    from benchmarks.config import BenchmarksConfig

    y, patients = _cohort(2)
    n = len(y)
    augs = ["original", "bright", "rot-45"]
    X = {a: np.c_[np.arange(n), np.full(n, j), np.random.default_rng(j).normal(size=n)].astype(np.float32)
         for j, a in enumerate(augs)}
    feats = Features("m", "mean", (3,), np.array([f"img{i}" for i in range(n)]), X, {a: np.ones(n, bool) for a in augs})
    task = cv.Task("d", "L", feats.image_ids, patients, y, patient_folds(y, patients, n_folds=5, seed=0))
    seen = []

    def spy(probe, train, X_test, *, cfg, seed):
        seen.append((train, X_test))
        return np.full(len(X_test), 0.5), {}

    monkeypatch.setattr(cv, "fit_predict", spy)
    oof, _ = cv.cross_validate(task, feats, "logistic", cfg=BenchmarksConfig())
    assert len(seen) == 5 and len(oof) == n and oof.image_id.is_unique
    for k, (train, X_test) in enumerate(seen):
        original_code = train.X[train.original, 1]           # the standardized code of 'original' in this fold
        assert np.unique(original_code).size == 1
        assert np.all(X_test[:, 1] == original_code[0]), "a test row is not an original image"
        assert len(X_test) == (task.folds == k).sum()
        assert np.unique(train.X[~train.original, 1]).size == 2   # both augmentations are in training
