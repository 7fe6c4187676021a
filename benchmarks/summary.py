"""results.csv: each metric per (dataset, label, model, probe) with its two 95% intervals."""
from __future__ import annotations

import pandas as pd

from .config import BenchmarksConfig
from .metrics import METRICS, binary_metrics, cluster_bootstrap, fold_t_interval

KEYS = ["dataset", "label", "model", "probe"]
RESULT_COLUMNS = [*KEYS, "metric", "mean", "ci_low", "ci_high", "ci_method", "sd", "pooled", "n_folds",
                  "n_patients", "n_images", "min_class_patients_per_fold"]
# Fewer patients than this of one class in some test fold: for metrics computed within a class or over
# (positive, negative) pairs the within-fold bootstrap has too few distinct resamples to be trusted (with one
# positive per fold, AUROC is the same in every replicate that draws it); report.md shows the fold t-interval
# in those cells (marked †). Accuracy pools both classes, so its bootstrap interval stays.
MIN_CLASS_PATIENTS = 5
CLASS_CONDITIONAL_METRICS = frozenset(METRICS) - {"accuracy"}


def summarize(oof: pd.DataFrame, folds: pd.DataFrame, *, cfg: BenchmarksConfig) -> pd.DataFrame:
    """One row per (dataset, label, model, probe, metric, ci_method).

    ``mean``/``sd``: over the K test folds. ``pooled``: the metric on all out-of-fold predictions at once.
    ``ci_method`` ``patient_bootstrap``: percentile interval of the mean over folds across
    ``cfg.bootstrap.n_boot`` resamples of patients within each test fold; ``fold_t``: mean +- t_{K-1} SD / sqrt(K).
    ``min_class_patients_per_fold``: patients of the rarer class in the poorest test fold.
    """
    rows = []
    fold_groups = dict(list(folds.groupby(KEYS, sort=False)))
    for i, (key, sub) in enumerate(oof.groupby(KEYS, sort=True)):
        per_fold = fold_groups[key]
        y, score = sub["y_true"].to_numpy(), sub["y_score"].to_numpy()
        boot = cluster_bootstrap(y, score, sub["patient_id"].to_numpy(), folds=sub["fold"].to_numpy(),
                                 threshold=cfg.threshold, n_boot=cfg.bootstrap.n_boot, level=cfg.bootstrap.level,
                                 seed=cfg.seed + i)
        pooled = binary_metrics(y, score, threshold=cfg.threshold)
        per_class = sub.groupby(["fold", "y_true"])["patient_id"].nunique().unstack(fill_value=0)
        common = dict(zip(KEYS, key)) | {"n_folds": len(per_fold), "n_patients": sub["patient_id"].nunique(),
                                         "n_images": len(sub),
                                         "min_class_patients_per_fold": int(per_class.to_numpy().min())}
        for metric in METRICS:
            mean, sd, lo, hi = fold_t_interval(per_fold[metric].to_numpy(), level=cfg.bootstrap.level)
            base = common | {"metric": metric, "mean": mean, "sd": sd, "pooled": float(pooled[metric][0])}
            rows.append(base | {"ci_low": boot[metric][0], "ci_high": boot[metric][1],
                                "ci_method": "patient_bootstrap"})
            rows.append(base | {"ci_low": lo, "ci_high": hi, "ci_method": "fold_t"})
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)
