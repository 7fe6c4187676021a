"""Metrics equal sklearn's; the patient-level bootstrap CI covers a known AUROC ~95% of the time."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from benchmarks.metrics import binary_metrics, cluster_bootstrap, fold_t_interval


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metrics_equal_sklearn_with_ties_and_weights(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) + 0.4 * y, 1)                 # many ties
    w = rng.integers(0, 4, 300).astype(float)
    for weights in (None, w):
        m = {k: v[0] for k, v in binary_metrics(y, s, threshold=0.7,
                                                   weights=None if weights is None else weights[None]).items()}
        pred = s >= 0.7
        assert m["auroc"] == pytest.approx(skm.roc_auc_score(y, s, sample_weight=weights), abs=1e-12)
        assert m["auprc"] == pytest.approx(skm.average_precision_score(y, s, sample_weight=weights), abs=1e-12)
        assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred, sample_weight=weights))
        assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred, sample_weight=weights))
        assert m["f1"] == pytest.approx(skm.f1_score(y, pred, sample_weight=weights))
        assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred, sample_weight=weights))
        assert m["specificity"] == pytest.approx(skm.recall_score(1 - y, ~pred, sample_weight=weights))


def test_fold_t_interval_formula():
    v = np.array([0.80, 0.85, 0.83, 0.90, 0.82])
    mean, sd, lo, hi = fold_t_interval(v)
    half = stats.t.ppf(0.975, 4) * v.std(ddof=1) / np.sqrt(5)
    assert (mean, lo, hi) == pytest.approx((v.mean(), v.mean() - half, v.mean() + half))
    assert fold_t_interval(np.array([0.6, 1.0, 0.7, 1.0, 0.9]))[3] == 1.0


def _clustered_sample(rng, *, n_patients: int, delta: float):
    """Patients with 1-4 images; score = delta*y + patient effect (sd 0.8) + image noise (sd 0.6).
    Labels are per patient, so the AUROC over (positive image, negative image) pairs is
    Phi(delta / sqrt(2 * (0.8^2 + 0.6^2))) = Phi(delta / sqrt(2))."""
    per = rng.integers(1, 5, n_patients)
    pid = np.repeat(np.arange(n_patients), per)
    y_pat = rng.permutation(np.arange(n_patients) % 2)
    folds_pat = rng.permutation(np.arange(n_patients) % 5)
    y = y_pat[pid]
    score = delta * y + rng.normal(0, 0.8, n_patients)[pid] + rng.normal(0, 0.6, len(pid))
    return y, score, pid, folds_pat[pid]


def test_patient_bootstrap_covers_known_auroc():
    """200 simulated out-of-fold samples (80 clustered patients, 5 folds) with true AUROC 0.80:
    the 95% interval of the mean over folds covers 0.80 in 90-99% of them (binomial SE ~1.5%), while
    resampling images instead of patients ignores the clustering and covers clearly less often (~82%)."""
    delta = np.sqrt(2) * stats.norm.ppf(0.80)
    rng = np.random.default_rng(7)
    hits, naive = [], []
    for rep in range(200):
        y, s, pid, folds = _clustered_sample(rng, n_patients=80, delta=delta)
        lo, hi = cluster_bootstrap(y, s, pid, folds=folds, n_boot=400, seed=rep)["auroc"]
        hits.append(lo <= 0.80 <= hi)
        lo, hi = cluster_bootstrap(y, s, np.arange(len(y)), folds=folds, n_boot=400, seed=rep)["auroc"]
        naive.append(lo <= 0.80 <= hi)
    coverage = float(np.mean(hits))
    assert 0.90 <= coverage <= 0.99, coverage
    assert np.mean(naive) < coverage - 0.05


def test_pooled_bootstrap_interval_contains_point_estimate():
    rng = np.random.default_rng(3)
    y, s, pid, _ = _clustered_sample(rng, n_patients=200, delta=1.2)
    lo, hi = cluster_bootstrap(y, s, pid, n_boot=500, seed=0)["auroc"]
    assert lo < skm.roc_auc_score(y, s) < hi and hi - lo < 0.25
