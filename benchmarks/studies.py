"""The two studies the Emory paper lists as next steps: cross-dataset transfer and label-noise robustness."""
from __future__ import annotations

import logging
from itertools import permutations

import numpy as np
import pandas as pd
from tqdm import tqdm

from .config import BenchmarksConfig
from .crossval import Task, build_train_set, cross_validate, fold_scaler, image_moments, standardized
from .data import Features
from .metrics import binary_metrics, cluster_bootstrap, fold_t_interval
from .probes import fit_predict

log = logging.getLogger(__name__)


def transfer_pairs(tasks: dict[tuple[str, str], Task], cfg: BenchmarksConfig) -> list[tuple[str, str, str]]:
    """(train dataset, test dataset, label) triples: the configured pairs, else every ordered pair, for
    each label both datasets have."""
    datasets = sorted({ds for ds, _ in tasks})
    pairs = cfg.transfer.pairs if cfg.transfer.pairs is not None else list(permutations(datasets, 2))
    out = []
    for a, b in pairs:
        for ds in (a, b):
            if ds not in datasets:
                raise ValueError(f"transfer.pairs names dataset {ds!r}, not in the sample ({datasets})")
        out += [(a, b, lab) for (ds, lab) in sorted(tasks) if ds == a and (b, lab) in tasks]
    return out


def transfer_study(tasks: dict[tuple[str, str], Task], features: list[Features], *,
                   cfg: BenchmarksConfig) -> pd.DataFrame:
    """Train on every sampled image of one dataset (with augmentations), test on another's originals.

    Rows: train_dataset, test_dataset, label, model, probe, metric (auroc/accuracy), value, ci_low, ci_high
    (patient-level bootstrap over the test images), n_train, n_test. Uses the first configured probe.
    """
    probe = cfg.probes[0]
    rows = []
    for a, b, lab in tqdm(transfer_pairs(tasks, cfg), desc="transfer", leave=False):
        src, dst = tasks[(a, lab)], tasks[(b, lab)]
        for f in features:
            pos, everyone = src.positions(f), np.arange(len(src.y))
            scaler = fold_scaler(image_moments(f, pos), everyone)
            ts = build_train_set(f, pos, everyone, src.y, src.patients, scaler=scaler)
            X_test = standardized(f.X["original"], dst.positions(f), scaler)
            score, _ = fit_predict(probe, ts, X_test, cfg=cfg, seed=cfg.seed)
            point = binary_metrics(dst.y, score, threshold=cfg.threshold)
            ci = cluster_bootstrap(dst.y, score, dst.patients, threshold=cfg.threshold,
                                   n_boot=cfg.bootstrap.n_boot, level=cfg.bootstrap.level, seed=cfg.seed)
            for metric in ("auroc", "accuracy"):
                rows.append({"train_dataset": a, "test_dataset": b, "label": lab, "model": f.model, "probe": probe,
                             "metric": metric, "value": float(point[metric][0]), "ci_low": ci[metric][0],
                             "ci_high": ci[metric][1], "n_train": len(src.y), "n_test": len(dst.y)})
    return pd.DataFrame(rows)


def label_noise_study(tasks: dict[tuple[str, str], Task], features: list[Features], *,
                      cfg: BenchmarksConfig) -> pd.DataFrame:
    """AUROC (mean over folds, fold t-interval) against the fraction of flipped training labels.

    Same folds as the main benchmark; test labels are never flipped. Uses the first configured probe.
    Rows: dataset, label, model, probe, fraction, auroc_mean, ci_low, ci_high.
    """
    probe = cfg.probes[0]
    rows = []
    jobs = [(t, f, fr) for t in tasks.values() for f in features for fr in cfg.label_noise.fractions]
    for task, feat, fraction in tqdm(jobs, desc="label noise", leave=False):
        _, per_fold = cross_validate(task, feat, probe, cfg=cfg, noise_fraction=fraction)
        mean, _, lo, hi = fold_t_interval(per_fold["auroc"].to_numpy(), level=cfg.bootstrap.level)
        rows.append({"dataset": task.dataset, "label": task.label, "model": feat.model, "probe": probe,
                     "fraction": fraction, "auroc_mean": mean, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)
