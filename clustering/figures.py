"""Figures of the clustering choices: the resolution sweep and the membership confidence."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Tight layout, write ``path`` (PNG, parents created), close the figure."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_sweep(table: pd.DataFrame, *, path: Path) -> Path:
    """Stability (seed and subsample ARI) and modularity against resolution; cluster counts annotated."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    ax.plot(table.resolution, table.seed_ari, "o-", label="ARI across seeds")
    if table.subsample_ari.notna().any():
        ax.plot(table.resolution, table.subsample_ari, "s-", label="ARI on node subsamples")
    ax.plot(table.resolution, table.modularity, "^-", label="modularity (resolution 1)")
    for _, r in table.iterrows():
        ax.annotate(f"K={int(r.n_clusters)}", (r.resolution, r.modularity), textcoords="offset points",
                    xytext=(0, 6), fontsize=7, ha="center")
    chosen = table[table.chosen]
    if len(chosen):
        ax.axvline(float(chosen.resolution.iloc[0]), color="grey", ls="--", lw=1, label="chosen")
    ax.set_xscale("log")
    ax.set_xlabel("Leiden resolution")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("Resolution sweep", fontsize=10)
    return save_figure(fig, path)


def plot_confidence(confidence: np.ndarray, subtype: pd.Series, *, path: Path) -> Path:
    """Box plot of per-point membership confidence by subtype."""
    groups = sorted(subtype.unique(), key=lambda s: (len(s), s))
    data = [confidence[(subtype == g).to_numpy() & ~np.isnan(confidence)] for g in groups]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    ax.boxplot(data, tick_labels=groups)
    ax.set_ylabel("membership confidence")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("Membership confidence by subtype (subsample reclustering)", fontsize=10)
    return save_figure(fig, path)
