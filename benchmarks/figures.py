"""PNG figures: pooled out-of-fold ROC curves per (dataset, label) and the label-noise curve."""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402


def slug(text: str) -> str:
    """File-name-safe version of a dataset/label name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def roc_figures(oof: pd.DataFrame, out_dir: Path, *, probe: str) -> list[Path]:
    """One PNG per (dataset, label): a pooled out-of-fold ROC curve per model (``probe`` only)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for (ds, lab), sub in oof[oof.probe == probe].groupby(["dataset", "label"], sort=True):
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        for model, rows in sub.groupby("model", sort=True):
            fpr, tpr, _ = roc_curve(rows["y_true"], rows["y_score"])
            ax.plot(fpr, tpr, lw=1.5, label=f"{model} (AUROC {roc_auc_score(rows['y_true'], rows['y_score']):.3f})")
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
        ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"{ds} / {lab} ({probe}, pooled OOF)",
               xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(loc="lower right", fontsize=7)
        fig.tight_layout()
        path = out_dir / f"roc_{slug(ds)}_{slug(lab)}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def label_noise_figure(curve: pd.DataFrame, path: Path) -> Path:
    """AUROC (fold mean with t-interval band) against the flipped fraction; a panel per (dataset, label)."""
    groups = list(curve.groupby(["dataset", "label"], sort=True))
    ncol = min(4, len(groups))
    nrow = int(np.ceil(len(groups) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.2 * nrow), squeeze=False)
    for ax, ((ds, lab), sub) in zip(axes.ravel(), groups):
        for model, rows in sub.groupby("model", sort=True):
            rows = rows.sort_values("fraction")
            ax.plot(rows["fraction"], rows["auroc_mean"], marker="o", label=model)
            ax.fill_between(rows["fraction"], rows["ci_low"], rows["ci_high"], alpha=0.2)
        ax.axhline(0.5, ls="--", c="grey", lw=0.8)
        ax.set(title=f"{ds} / {lab}", xlabel="fraction of training labels flipped", ylabel="AUROC")
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(groups):]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
