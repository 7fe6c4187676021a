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


def plot_probes(probes: dict, path: Path) -> Path:
    """Balanced accuracy (95% bootstrap CI) of each probe per latent space, one panel per truth column."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(probes)
    fig, axes = plt.subplots(1, len(cols), figsize=(7 * len(cols), 4), squeeze=False)
    for ax, col in zip(axes[0], cols):
        spaces = list(probes[col])
        kinds = sorted({k for s in spaces for k in probes[col][s]})
        width = 0.8 / max(len(kinds), 1)
        for j, kind in enumerate(kinds):
            vals = [probes[col][s][kind] for s in spaces]
            mid = np.array([v.get("balanced_accuracy", np.nan) for v in vals])
            lo = mid - np.array([v.get("balanced_accuracy_ci_low", np.nan) for v in vals])
            hi = np.array([v.get("balanced_accuracy_ci_high", np.nan) for v in vals]) - mid
            ax.bar(np.arange(len(spaces)) + j * width, mid, width, yerr=[lo, hi], capsize=3, label=kind)
        ax.set_xticks(np.arange(len(spaces)) + width * (len(kinds) - 1) / 2)
        ax.set_xticklabels([s.replace("_", "\n") for s in spaces], fontsize=8)
        ax.set(ylabel="balanced accuracy (held-out patients)", title=f"probe: {col}", ylim=(0, 1))
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
