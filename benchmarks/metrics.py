"""Binary metrics, fold-based t-intervals and a patient-level (cluster) bootstrap, vectorized over replicates.

Where each interval is reported: ``results.csv`` holds both, one row per ``ci_method``:
``patient_bootstrap`` (percentile interval from resampling patients with replacement within each test fold
of the pooled out-of-fold predictions; statistic = mean over folds, so the interval belongs to the reported
mean) and ``fold_t`` (mean over the K test folds +- t_{K-1} * SD / sqrt(K)). ``report.md`` shows the mean over
folds with the patient-bootstrap interval, or, for AUROC, with the fold t-interval (marked †) for tasks where a
test fold holds fewer than 5 patients of a class (``summary.MIN_CLASS_PATIENTS``).
"""
from __future__ import annotations

import numpy as np
from scipy import stats

METRICS: tuple[str, ...] = ("auroc", "accuracy", "balanced_accuracy", "f1", "sensitivity", "specificity", "auprc")


def _grouped_sums(score: np.ndarray, yw: np.ndarray, nw: np.ndarray, *, descending: bool):
    """Sort by score, then sum positive/negative weights within groups of tied scores: (B, G) each."""
    order = np.argsort(-score if descending else score, kind="mergesort")
    s = score[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    return np.add.reduceat(yw[:, order], starts, axis=1), np.add.reduceat(nw[:, order], starts, axis=1)


def binary_metrics(y: np.ndarray, score: np.ndarray, *, threshold: float = 0.5,
                   weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """All of :data:`METRICS` for labels ``y`` (n,) in {0,1} and scores ``score`` (n,).

    ``weights`` (B, n) gives B weighted versions at once (bootstrap counts); returns arrays of shape (B,)
    (shape (1,) without weights). Ties count one half in AUROC; AUPRC is average precision with tied
    scores as one threshold (both equal sklearn's for unit weights). Undefined values are NaN.
    """
    y = np.asarray(y).astype(np.float64)
    score = np.asarray(score, dtype=np.float64)
    w = np.ones((1, len(y))) if weights is None else np.asarray(weights, dtype=np.float64)
    yw, nw = w * y, w * (1.0 - y)
    P, N = yw.sum(axis=1), nw.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        pos, neg = _grouped_sums(score, yw, nw, descending=False)
        below = np.cumsum(neg, axis=1) - neg
        auroc = (pos * (below + 0.5 * neg)).sum(axis=1) / (P * N)
        tp_g, fp_g = _grouped_sums(score, yw, nw, descending=True)
        tp, fp = np.cumsum(tp_g, axis=1), np.cumsum(fp_g, axis=1)
        precision = np.nan_to_num(tp / (tp + fp))
        auprc = (tp_g / P[:, None] * precision).sum(axis=1)
        pred = (score >= threshold).astype(np.float64)
        TP, FP = yw @ pred, nw @ pred
        FN, TN = P - TP, N - FP
        sens, spec = TP / P, TN / N
        return {
            "auroc": auroc, "accuracy": (TP + TN) / (P + N), "balanced_accuracy": (sens + spec) / 2,
            "f1": 2 * TP / (2 * TP + FP + FN), "sensitivity": sens, "specificity": spec, "auprc": auprc,
        }


def fold_t_interval(values: np.ndarray, *, level: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, SD and t-interval over K per-fold values: mean +- t_{K-1, (1+level)/2} * SD / sqrt(K),
    clipped to [0, 1] (every metric here is a proportion)."""
    v = np.asarray(values, dtype=np.float64)
    k = len(v)
    mean, sd = float(v.mean()), float(v.std(ddof=1)) if k > 1 else float("nan")
    half = float(stats.t.ppf((1 + level) / 2, k - 1)) * sd / np.sqrt(k)
    return mean, sd, max(0.0, mean - half), min(1.0, mean + half)


def cluster_bootstrap(y: np.ndarray, score: np.ndarray, groups: np.ndarray, *, folds: np.ndarray | None = None,
                      threshold: float = 0.5, n_boot: int = 1000, level: float = 0.95,
                      seed: int | list[int] = 0) -> dict[str, tuple[float, float]]:
    """Percentile CI of each metric, resampling *patients* (``groups``) with replacement.

    Every image of a drawn patient enters with the patient's draw count as weight, so correlated images of
    one patient move together. Without ``folds`` the statistic is the metric on all predictions pooled.
    With ``folds`` (out-of-fold predictions; each patient in one fold) patients are resampled within their
    fold and the statistic is the mean of the per-fold metrics, i.e. the interval belongs to the reported
    mean over folds. Replicates where a metric is undefined are skipped.
    """
    y, score, groups = np.asarray(y), np.asarray(score), np.asarray(groups)
    rng = np.random.default_rng(seed)
    strata = np.zeros(len(y), dtype=np.int64) if folds is None else np.asarray(folds)
    boot: dict[str, np.ndarray] = {}
    levels = np.unique(strata)
    for k in levels:
        rows = np.flatnonzero(strata == k)
        _, inv = np.unique(groups[rows], return_inverse=True)
        n_groups = inv.max() + 1
        counts = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_boot)
        part = binary_metrics(y[rows], score[rows], threshold=threshold, weights=counts[:, inv])
        for name, values in part.items():
            boot[name] = boot.get(name, 0.0) + values / len(levels)
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    out = {}
    for name, values in boot.items():
        finite = values[np.isfinite(values)]
        lo, hi = np.percentile(finite, q) if len(finite) else (np.nan, np.nan)
        out[name] = (float(lo), float(hi))
    return out
