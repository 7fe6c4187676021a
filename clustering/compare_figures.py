"""Figures of the model comparison: annotated heatmaps and side-by-side UMAP panels with one colouring."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .figures import save_figure


def heatmap(matrix: pd.DataFrame, *, title: str, path: Path, vmin: float = 0.0, vmax: float = 1.0,
            cmap: str = "viridis") -> Path:
    """Annotated heatmap of ``matrix`` (rows x columns, NaN shown blank) -> PNG."""
    vals = matrix.to_numpy(float)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * matrix.shape[1], 1.0 + 0.55 * matrix.shape[0]), dpi=110)
    im = ax.imshow(np.ma.masked_invalid(vals), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    for (i, j), v in np.ndenumerate(vals):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if v < vmin + 0.6 * (vmax - vmin) else "black")
    ax.set_xticks(range(matrix.shape[1]), [str(c) for c in matrix.columns], rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(matrix.shape[0]), [str(r) for r in matrix.index], fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def umap_panels(coords: dict[str, np.ndarray], values: pd.Series, *, title: str, path: Path) -> Path:
    """One UMAP panel per model (``coords[model]`` ``(n, 2)``, NaN = not laid out), all coloured by ``values``.

    Categories get the same colour in every panel; numeric columns with many values use one continuous scale.
    """
    numeric = pd.api.types.is_numeric_dtype(values) and values.nunique() > 12
    fig, axes = plt.subplots(1, len(coords), figsize=(3.6 * len(coords), 3.9), dpi=100, squeeze=False)
    if numeric:
        v = values.to_numpy(float)
        lo, hi = np.nanquantile(v, [0.02, 0.98]) if np.isfinite(v).any() else (0.0, 1.0)
    else:
        cats = values.astype("string").fillna("missing")
        levels = sorted(cats.unique(), key=lambda s: (s == "missing", s))
        cmap = plt.get_cmap("tab10" if len(levels) <= 10 else "tab20")
        colour = {lev: ("lightgrey" if lev == "missing" else cmap(i % cmap.N)) for i, lev in enumerate(levels)}
    for ax, (model, xy) in zip(axes[0], coords.items()):
        ok = np.isfinite(xy).all(1)
        size = float(np.clip(3000 / max(ok.sum(), 1), 0.2, 20))
        if numeric:
            sc = ax.scatter(xy[ok, 0], xy[ok, 1], s=size, c=v[ok], cmap="viridis", vmin=lo, vmax=hi, linewidths=0,
                            rasterized=True)
        else:
            for lev in levels:
                m = ok & (cats == lev).to_numpy()
                ax.scatter(xy[m, 0], xy[m, 1], s=size, color=colour[lev], label=lev, linewidths=0, rasterized=True)
        ax.set_title(model, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if numeric:
        fig.colorbar(sc, ax=axes[0].tolist(), shrink=0.8)
    else:
        handles = [plt.Line2D([], [], marker="o", ls="", color=colour[lev], label=lev) for lev in levels[:20]]
        axes[0][-1].legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(title, fontsize=10)
    if not numeric:
        fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
