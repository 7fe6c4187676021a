"""Data-efficiency curves: AUROC against the share of training patients (the published anchor: ELIXR reaches a
mean AUC of 0.893 with 1 % of the labels).

Same tasks and folds as the main benchmark and its first probe. In every training fold a seeded random subset
of ``fraction`` of the patients (at least one of each class) is kept, with all their original and augmented
rows; the test fold is untouched. Each fraction below 1 is repeated ``repeats`` times with different subsets.
Per (task, model, fraction): ``auroc_mean`` = mean over repeats of the mean over folds; ``ci_low``/``ci_high`` =
the patient-bootstrap interval of the mean over folds (as in results.csv), averaged over repeats;
``sd_repeats`` = the SD over repeats (the subset-to-subset spread).
"""
from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from tqdm import tqdm  # noqa: E402

from .config import BenchmarksConfig  # noqa: E402
from .crossval import Task, build_train_set, fold_scaler, image_moments, standardized  # noqa: E402
from .data import Features  # noqa: E402
from .figures import slug  # noqa: E402
from .metrics import binary_metrics, cluster_bootstrap  # noqa: E402
from .probes import fit_predict  # noqa: E402

log = logging.getLogger(__name__)


def subset_patients(rows: np.ndarray, patients: np.ndarray, y: np.ndarray, *, fraction: float,
                    rng: np.random.Generator, tries: int = 50) -> np.ndarray:
    """The training rows of a random ``fraction`` of the patients behind ``rows`` (at least 2), redrawn until
    both classes are present (``rows`` unchanged for fraction 1)."""
    if fraction >= 1.0:
        return rows
    people = np.unique(patients[rows])
    k = max(2, int(np.ceil(fraction * len(people))))
    for _ in range(tries):
        chosen = rows[np.isin(patients[rows], rng.choice(people, size=k, replace=False))]
        if len(np.unique(y[chosen])) == 2:
            return chosen
    raise ValueError(f"no subset of {k} training patients holds both classes after {tries} draws")


def efficiency_curve(task: Task, features: Features, *, cfg: BenchmarksConfig) -> list[dict]:
    """Rows of :func:`efficiency_study` for one task and model."""
    pos = task.positions(features)
    moments = image_moments(features, pos)
    probe, out = cfg.probes[0], []
    for fraction in cfg.efficiency.fractions:
        repeats = 1 if fraction >= 1.0 else cfg.efficiency.repeats
        means, lows, highs, n_train = [], [], [], []
        for r in range(repeats):
            y_true, scores, folds, patients = [], [], [], []
            for k in np.unique(task.folds):
                rng = np.random.default_rng([cfg.seed, r, int(k), int(round(fraction * 1000))])
                test = np.flatnonzero(task.folds == k)
                train = subset_patients(np.flatnonzero(task.folds != k), task.patients, task.y,
                                        fraction=fraction, rng=rng)
                scaler = fold_scaler(moments, train)
                ts = build_train_set(features, pos, train, task.y, task.patients, scaler=scaler)
                score, _ = fit_predict(probe, ts, standardized(features.X["original"], pos[test], scaler), cfg=cfg,
                                       seed=cfg.seed * 1000 + int(k))
                y_true.append(task.y[test]), scores.append(score), folds.append(np.full(len(test), k))
                patients.append(task.patients[test])
                n_train.append(len(np.unique(task.patients[train])))
            y, s, f, p = (np.concatenate(v) for v in (y_true, scores, folds, patients))
            means.append(np.mean([binary_metrics(y[f == k], s[f == k])["auroc"][0] for k in np.unique(f)]))
            ci = cluster_bootstrap(y, s, p, folds=f, n_boot=cfg.bootstrap.n_boot, level=cfg.bootstrap.level,
                                   seed=cfg.seed + r)
            lows.append(ci["auroc"][0]), highs.append(ci["auroc"][1])
        out.append({"dataset": task.dataset, "label": task.label, "model": features.model, "probe": probe,
                    "fraction": fraction, "n_train_patients": float(np.mean(n_train)), "repeats": repeats,
                    "auroc_mean": float(np.mean(means)), "ci_low": float(np.mean(lows)),
                    "ci_high": float(np.mean(highs)),
                    "sd_repeats": float(np.std(means, ddof=1)) if repeats > 1 else 0.0})
    return out


def efficiency_study(tasks: dict[tuple[str, str], Task], features: list[Features], *,
                     cfg: BenchmarksConfig) -> pd.DataFrame:
    """AUROC vs share of training patients for every task and model (columns: see the module docstring)."""
    jobs = [(t, f) for t in tasks.values() for f in features]
    rows = [row for t, f in tqdm(jobs, desc="data efficiency", leave=False) for row in efficiency_curve(t, f, cfg=cfg)]
    return pd.DataFrame(rows)


def efficiency_figures(curves: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One PNG per (dataset, label): AUROC (with its interval) against training patients, a line per model."""
    paths = []
    for (ds, lab), sub in curves.groupby(["dataset", "label"], sort=True):
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for model, m in sub.groupby("model", sort=True):
            m = m.sort_values("n_train_patients")
            ax.plot(m["n_train_patients"], m["auroc_mean"], marker="o", label=model)
            ax.fill_between(m["n_train_patients"], m["ci_low"], m["ci_high"], alpha=0.15)
        ax.set_xscale("log")
        ax.set_xlabel("training patients per fold (log)")
        ax.set_ylabel("AUROC (mean over folds)")
        ax.axhline(0.5, color="grey", lw=0.7, ls=":")
        ax.set_title(f"Data efficiency: {ds} / {lab}", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = Path(out_dir) / f"efficiency_{slug(ds)}_{slug(lab)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def efficiency_section(curves: pd.DataFrame, figures: list[Path], *, out: Path, cfg: BenchmarksConfig) -> list[str]:
    """report.md section: AUROC [interval] per (dataset, label, model) and fraction, then the figures."""
    from .report import _df_table

    cells = curves.assign(cell=[f"{m:.3f} [{lo:.3f}, {hi:.3f}]" + (f" ±{sd:.3f}" if sd else "")
                                for m, lo, hi, sd in curves[["auroc_mean", "ci_low", "ci_high", "sd_repeats"]].to_numpy()])
    table = cells.pivot_table(index=["dataset", "label", "model"], columns="fraction", values="cell", aggfunc="first")
    table.columns = [f"{f:.0%} of patients" for f in table.columns]
    return ["## Data efficiency",
            f"AUROC ({cfg.probes[0]} probe) when each training fold keeps a random share of its patients "
            f"({cfg.efficiency.repeats} seeded subsets per share below 100 %): mean over folds and subsets "
            "[patient-bootstrap interval, averaged over subsets] ±SD over subsets. Test folds are unchanged. "
            "Published anchor: ELIXR, mean AUC 0.893 with 1 % of the labels (on far larger cohorts).",
            _df_table(table.reset_index())] + [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in figures]
