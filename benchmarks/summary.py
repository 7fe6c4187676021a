"""results.csv: each metric per (dataset, label, model, probe) with its intervals, each labelled by what it
estimates (``ci_estimates``)."""
from __future__ import annotations

import zlib

import pandas as pd

from .config import BenchmarksConfig
from .metrics import METRICS, binary_metrics, cluster_bootstrap, fold_t_interval
from .procedure import procedure_rows

KEYS = ["dataset", "label", "model", "probe"]
RESULT_COLUMNS = [*KEYS, "metric", "mean", "ci_low", "ci_high", "ci_method", "ci_estimates", "sd", "pooled",
                  "n_folds", "n_patients", "n_images", "min_class_patients_per_fold"]
# What each interval covers, in words (results.csv ``ci_estimates``; report.md repeats it).
CI_ESTIMATES = {
    "patient_bootstrap": "the metric of these K fitted fold models on new patients from the same population "
                         "(models held fixed; the variability of refitting is not covered)",
    "fold_t": "a rough spread of the K fold values treated as independent (folds share training data, so it is "
              "not a valid interval for the procedure)",
    "repeated_cv": "the metric expected from the training procedure refit on a new training set of this size "
                   "(repeated CV, Nadeau-Bengio corrected)",
}

# Fewer patients than this of one class in some test fold: for metrics computed within a class or over
# (positive, negative) pairs the within-fold bootstrap has too few distinct resamples to be trusted (with one
# positive per fold, AUROC is the same in every replicate that draws it); report.md shows the fold t-interval
# in those cells (marked †). Accuracy pools both classes, so its bootstrap interval stays.
MIN_CLASS_PATIENTS = 5
CLASS_CONDITIONAL_METRICS = frozenset(METRICS) - {"accuracy"}


def task_seed(seed: int, key: tuple) -> list[int]:
    """Bootstrap seed of one (dataset, label, model, probe): the config seed and a hash of the key, so a task's
    interval does not depend on which other tasks ran or in which order."""
    return [int(seed), zlib.crc32("\0".join(map(str, key)).encode())]


def summarize(oof: pd.DataFrame, folds: pd.DataFrame, *, cfg: BenchmarksConfig,
              repeated: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (dataset, label, model, probe, metric, ci_method).

    ``mean``/``sd``: over the K test folds. ``pooled``: the metric on all out-of-fold predictions at once.
    ``ci_method`` ``patient_bootstrap``: percentile interval of the mean over folds across
    ``cfg.bootstrap.n_boot`` resamples of patients within each test fold; ``fold_t``: mean +- t_{K-1} SD / sqrt(K).
    ``min_class_patients_per_fold``: patients of the rarer class in the poorest test fold. ``repeated``
    (per-fold metrics of repeated CV, see ``procedure.repeated_folds``) adds ``ci_method = repeated_cv`` rows.
    """
    rows, common_of = [], {}
    fold_groups = dict(list(folds.groupby(KEYS, sort=False)))
    for key, sub in oof.groupby(KEYS, sort=True):
        per_fold = fold_groups[key]
        y, score = sub["y_true"].to_numpy(), sub["y_score"].to_numpy()
        boot = cluster_bootstrap(y, score, sub["patient_id"].to_numpy(), folds=sub["fold"].to_numpy(),
                                 threshold=cfg.threshold, n_boot=cfg.bootstrap.n_boot, level=cfg.bootstrap.level,
                                 seed=task_seed(cfg.seed, key))
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
        if repeated is not None:
            common_of[key] = common
    if repeated is not None:
        for row in procedure_rows(repeated, keys=KEYS, level=cfg.bootstrap.level):
            key = tuple(row[k] for k in KEYS)
            rows.append(common_of[key] | row | {"pooled": float("nan")})
    out = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    out["ci_estimates"] = out["ci_method"].map(CI_ESTIMATES)
    return out
