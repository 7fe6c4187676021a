"""Figures of the survival head (matplotlib, Agg): C-index forest plot, Kaplan-Meier by predicted risk group,
calibration at a horizon."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.km import plot_km  # noqa: E402


def plot_c_index(metrics: dict[str, Any], path: Path, *, title: str) -> Path:
    """Forest plot of the C-index (and Uno's C where present) per model with bootstrap CIs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    panels = [m for m in ("c_index", "uno_c") if m in metrics]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 0.5 + 0.5 * len(metrics[panels[0]])),
                             squeeze=False)
    for ax, name in zip(axes[0], panels):
        models = [k for k in metrics[name] if " - " not in k]
        est = np.array([metrics[name][k]["estimate"] for k in models])
        lo = np.array([metrics[name][k]["ci_low"] for k in models])
        hi = np.array([metrics[name][k]["ci_high"] for k in models])
        y = np.arange(len(models))[::-1]
        ax.errorbar(est, y, xerr=[est - lo, hi - est], fmt="o", color="k", capsize=3)
        ax.axvline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_yticks(y, models)
        ax.set_xlabel(f"{name} (out-of-fold, 95% bootstrap CI)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_km_by_risk(time: np.ndarray, event: np.ndarray, frame: pd.DataFrame, path: Path, *, groups: int,
                    title: str) -> Path:
    """Kaplan-Meier curves of patients grouped by quantiles of the head's out-of-fold risk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    risk = frame["risk"].to_numpy()
    edges = np.quantile(risk, np.linspace(0, 1, groups + 1)[1:-1])
    group = np.searchsorted(edges, risk, side="right")
    fig, ax = plt.subplots(figsize=(6, 4.8))
    names = {0: "lowest risk", groups - 1: "highest risk"}
    plot_km(ax, [(f"{names.get(g, f'group {g + 1}')} (n={int(sel.sum())})", time[sel], event[sel])
                 for g in range(groups) for sel in [group == g] if sel.any()], ci=False)
    ax.set_xlabel("days")
    ax.set_ylabel("survival")
    ax.set_title(f"{title}: Kaplan-Meier by predicted risk ({groups} groups, out-of-fold)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_calibration(tables: dict[str, dict[str, np.ndarray]], horizon: float, path: Path, *, title: str) -> Path:
    """Predicted vs Kaplan-Meier observed survival at ``horizon`` (days) by risk group, one line per model.

    ``tables``: model -> :func:`fusion.survival.metrics.calibration_table` output.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfect calibration")
    for name, tab in tables.items():
        ax.plot(tab["predicted"], tab["observed"], "o-", ms=4, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"predicted survival at {horizon:g} days (mean of risk group)")
    ax.set_ylabel("observed survival (Kaplan-Meier of the group)")
    ax.set_title(f"{title}: calibration, {len(next(iter(tables.values()))['n'])} risk groups, out-of-fold")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
