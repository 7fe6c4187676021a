"""UMAP (umap-learn, cosine) that reuses the kNN graph already built, and scatter plots of it.

umap-learn receives the neighbour lists through ``precomputed_knn`` (self prepended, as it expects),
so no second neighbour search runs. With a ``random_state`` umap-learn optimises single-threaded and
the layout is reproducible. Above ``max_points`` points only a subsample is laid out (for display):
a seeded sample stratified by subtype (each subtype keeps its share, at least 50 points or all of it),
with its own exact/approximate kNN on the same representation; other points get no coordinates.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .config import KnnConfig, UmapConfig  # noqa: E402
from .figures import save_figure  # noqa: E402
from .knn import KnnGraph, build_knn  # noqa: E402
from .leiden import with_self  # noqa: E402

log = logging.getLogger(__name__)


def umap_from_knn(rep: np.ndarray, knn: KnnGraph, cfg: UmapConfig, *, seed: int) -> np.ndarray:
    """2-D UMAP ``(n, 2)`` float32 of ``rep`` ``(n, d)`` using ``knn``'s neighbour lists (no new search)."""
    import umap

    ind, dist = with_self(knn.indices, knn.distances)
    model = umap.UMAP(n_neighbors=ind.shape[1], n_components=2, metric="cosine", min_dist=cfg.min_dist,
                      spread=cfg.spread, n_epochs=cfg.n_epochs, init=cfg.init, random_state=seed, n_jobs=1,
                      precomputed_knn=(ind, dist, None), verbose=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        warnings.filterwarnings("ignore", message=".*n_jobs value 1 overridden.*")
        return model.fit_transform(rep).astype(np.float32)


def display_subsample(labels: np.ndarray, *, max_points: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded sample of at most ``max_points``, stratified by ``labels`` (>= 50 per group)."""
    n = len(labels)
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        take = min(len(members), max(50, int(round(max_points * len(members) / n))))
        picks.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(picks))


def umap_layout(rep: np.ndarray, knn: KnnGraph, labels: np.ndarray, cfg: UmapConfig, knn_cfg: KnnConfig, *,
                seed: int) -> tuple[np.ndarray, str]:
    """Coordinates ``(n, 2)`` (NaN for points left out of a display subsample) and a sentence saying how."""
    keep = display_subsample(labels, max_points=cfg.max_points, seed=seed)
    if len(keep) == len(labels):
        return umap_from_knn(rep, knn, cfg, seed=seed), f"UMAP of all {len(labels)} points on the clustering kNN graph"
    sub_knn = build_knn(rep[keep], knn_cfg.model_copy(update={"pca_dims": None}), seed=seed, progress=False)
    coords = np.full((len(labels), 2), np.nan, np.float32)
    coords[keep] = umap_from_knn(rep[keep], sub_knn, cfg, seed=seed)
    return coords, (f"UMAP of a seeded subsample of {len(keep)} of {len(labels)} points, stratified by subtype "
                    f"(each keeps its share, >= 50 points), with its own {sub_knn.method} kNN graph")


def scatter(coords: np.ndarray, values: pd.Series, *, title: str, path: Path, continuous: bool = False) -> Path:
    """Scatter of ``coords`` ``(n, 2)`` coloured by ``values`` (categories or a continuous scale) -> PNG."""
    ok = np.isfinite(coords).all(1)
    xy, vals = coords[ok], values.to_numpy()[ok]
    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=110)
    size = float(np.clip(3000 / max(len(xy), 1), 0.3, 30))
    if continuous:
        v = pd.to_numeric(pd.Series(vals), errors="coerce").to_numpy(float)
        miss = np.isnan(v)
        ax.scatter(xy[miss, 0], xy[miss, 1], s=size, c="lightgrey", label="missing", rasterized=True, linewidths=0)
        sc = ax.scatter(xy[~miss, 0], xy[~miss, 1], s=size, c=v[~miss], cmap="viridis", rasterized=True, linewidths=0)
        fig.colorbar(sc, ax=ax, shrink=0.8)
        if miss.any():
            ax.legend(loc="best", fontsize=7, markerscale=max(1.0, 6 / size))
    else:
        cats = pd.Series(vals).astype("string").fillna("missing")
        levels = sorted(cats.unique(), key=lambda s: (s == "missing", s))
        cmap = plt.get_cmap("tab10" if len(levels) <= 10 else "tab20")
        for i, lev in enumerate(levels):
            m = (cats == lev).to_numpy()
            color = "lightgrey" if lev == "missing" else cmap(i % cmap.N)
            ax.scatter(xy[m, 0], xy[m, 1], s=size, color=color, label=f"{lev} (n={int(m.sum())})", rasterized=True,
                       linewidths=0)
        ax.legend(loc="best", fontsize=7, markerscale=max(1.0, 6 / size), frameon=False)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    ax.set_xticks([])
    ax.set_yticks([])
    return save_figure(fig, path)
