"""PNG figures of the fusion stage (matplotlib, Agg): training curves and held-out probe scores."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_loss_curves(history: list[dict[str, float]], path: Path) -> Path:
    """Train / validation loss and the validation reconstruction terms per epoch."""
    path.parent.mkdir(parents=True, exist_ok=True)
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].plot(epochs, [h["train_loss"] for h in history], label="train")
    if history and "val_loss" in history[0]:
        axes[0].plot(epochs, [h["val_loss"] for h in history], label="validation")
    axes[0].set(xlabel="epoch", ylabel="negative ELBO per patient", title="loss")
    axes[0].legend()
    for key, label in (("val_rec_cxr", "CXR NLL"), ("val_rec_clinical", "clinical NLL"), ("val_kl", "KL")):
        if history and key in history[0]:
            axes[1].plot(epochs, [h[key] for h in history], label=label)
    axes[1].set(xlabel="epoch", title="validation terms (joint posterior)")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _probe_label(kind: str, metric: str) -> str:
    if kind == "mixture":
        return "Gaussian mixture: ARI (all patients, unsupervised)"
    return "ridge" if kind == "logistic" and metric == "r2" else kind


def plot_probes(probes: dict, path: Path) -> Path:
    """Held-out probe score (95% bootstrap CI) per latent space, one panel per truth column (with the mixture ARI
    for categorical truth)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(probes)
    fig, axes = plt.subplots(1, len(cols), figsize=(7 * len(cols), 4), squeeze=False)
    for ax, col in zip(axes[0], cols):
        spaces = list(probes[col])
        kinds = sorted({k for s in spaces for k in probes[col][s]})
        width = 0.8 / max(len(kinds), 1)
        metric = next(iter(probes[col][spaces[0]].values()))["metric"]
        for j, kind in enumerate(kinds):
            vals = [probes[col][s][kind] for s in spaces]
            mid = np.array([v.get("score", np.nan) for v in vals])
            err = [mid - np.array([v.get("ci_low", np.nan) for v in vals]),
                   np.array([v.get("ci_high", np.nan) for v in vals]) - mid]
            ax.bar(np.arange(len(spaces)) + j * width, mid, width, yerr=err, capsize=3,
                   label=_probe_label(kind, metric))
        ax.set_xticks(np.arange(len(spaces)) + width * (len(kinds) - 1) / 2)
        ax.set_xticklabels([s.replace("_", "\n") for s in spaces], fontsize=8)
        ax.set(ylabel=f"{metric} (held-out patients)", title=f"probe: {col}",
               ylim=(min(0.0, float(np.nanmin([v.get("score", 0) for s in spaces for v in probes[col][s].values()]))), 1))
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
