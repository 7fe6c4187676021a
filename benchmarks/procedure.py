"""An interval for the training *procedure*: repeated patient-grouped K-fold CV with new folds per repeat.

The patient bootstrap in ``summary`` holds the K fitted fold models fixed, so it covers their AUROC on new
patients, not the AUROC expected from refitting on a new training set of the same size. Here the CV is
repeated ``R`` times with new folds; over the R x K fold values the interval is the Nadeau-Bengio corrected
repeated-CV t-interval (Bouckaert & Frank 2004): mean +- t_(RK-1) sqrt((1/(RK) + n_test/n_train) SD^2).
"""
from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy import stats
from tqdm import tqdm

from .config import BenchmarksConfig
from .crossval import Task, cross_validate
from .data import Features
from .metrics import METRICS
from .splits import patient_folds


def repeat_seed(seed: int, repeat: int) -> int:
    """Fold seed of repeat ``repeat`` (repeat 0 is the main CV, seeded ``seed``)."""
    return seed if repeat == 0 else zlib.crc32(f"{seed}\0repeat\0{repeat}".encode())


def repeated_folds(tasks: dict[tuple[str, str], Task], features: list[Features], *, cfg: BenchmarksConfig,
                   main: pd.DataFrame) -> pd.DataFrame:
    """Per-fold metrics of repeats 1..R-1 (new patient-grouped folds each) appended to the main CV's ``main``
    (folds.csv rows, repeat 0); columns of folds.csv plus ``repeat``."""
    parts = [main.assign(repeat=0)]
    jobs = [(r, t, f, p) for r in range(1, cfg.procedure_interval.repeats) for t in tasks.values()
            for f in features for p in cfg.probes]
    for r, task, feat, probe in tqdm(jobs, desc="repeated CV", unit="fit-set", leave=False):
        folds = patient_folds(task.y, task.patients, n_folds=cfg.n_folds, seed=repeat_seed(cfg.seed, r))
        _, per_fold = cross_validate(replace(task, folds=folds), feat, probe, cfg=cfg)
        parts.append(per_fold.assign(repeat=r))
    return pd.concat(parts, ignore_index=True)


def corrected_repeated_interval(values: np.ndarray, *, n_train: float, n_test: float,
                                level: float) -> tuple[float, float, float, float]:
    """Mean, SD and the corrected repeated-CV interval over R x K fold values, clipped to [0, 1]."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    mean, sd = float(v.mean()), float(v.std(ddof=1))
    half = float(stats.t.ppf((1 + level) / 2, len(v) - 1)) * np.sqrt(1 / len(v) + n_test / n_train) * sd
    return mean, sd, max(0.0, mean - half), min(1.0, mean + half)


def procedure_rows(repeated: pd.DataFrame, *, keys: list[str], level: float) -> list[dict[str, object]]:
    """results.csv rows (``ci_method = repeated_cv``) per (keys, metric) from :func:`repeated_folds`' table."""
    rows = []
    for key, sub in repeated.groupby(keys, sort=True):
        n_train, n_test = float(sub["n_train"].mean()), float(sub["n_test"].mean())
        for metric in METRICS:
            mean, sd, lo, hi = corrected_repeated_interval(sub[metric].to_numpy(), n_train=n_train, n_test=n_test,
                                                           level=level)
            rows.append(dict(zip(keys, key)) | {"metric": metric, "mean": mean, "sd": sd, "ci_low": lo,
                                                "ci_high": hi, "ci_method": "repeated_cv",
                                                "n_folds": int(len(sub))})
    return rows
