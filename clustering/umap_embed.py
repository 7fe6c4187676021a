"""UMAP that reuses the kNN graph already built, its layout quality, and scatter plots of it.

Both backends lay out the same fuzzy graph (``clustering.leiden.connectivities``, the one Leiden
clusters), so no second neighbour search runs. ``batched`` (default) optimises umap-learn's
objective with its schedule in deterministic parallel epochs (``clustering.umap_sgd``);
``umap-learn`` receives the neighbour lists through ``precomputed_knn`` (self prepended, as it
expects) and, seeded, optimises single-threaded. Both are reproducible. Above ``max_points`` points
only a subsample is laid out (for display): a seeded sample stratified by subtype (each subtype
keeps its share, at least 50 points or all of it), with its own kNN graph on the same
representation; other points get no coordinates.
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
import scipy.sparse as sp  # noqa: E402
from sklearn.metrics import silhouette_score  # noqa: E402
from sklearn.neighbors import NearestNeighbors  # noqa: E402

from .config import KnnConfig, UmapConfig  # noqa: E402
from .figures import save_figure  # noqa: E402
from .knn import KnnGraph, build_knn, exact_neighbors  # noqa: E402
from .leiden import connectivities, with_self  # noqa: E402
from .umap_sgd import find_ab_params, initial_layout, optimize_layout  # noqa: E402

log = logging.getLogger(__name__)


def umap_from_knn(rep: np.ndarray, knn: KnnGraph, cfg: UmapConfig, *, seed: int,
                  graph: sp.csr_matrix | None = None) -> np.ndarray:
    """2-D UMAP ``(n, 2)`` float32 of ``rep`` ``(n, d)`` on ``knn``'s graph (no new search).

    ``graph``: ``connectivities(knn)`` when the caller already has it (computed here otherwise).
    """
    if cfg.backend == "umap-learn":
        import umap

        ind, dist = with_self(knn.indices, knn.distances)
        model = umap.UMAP(n_neighbors=ind.shape[1], n_components=2, metric="cosine", min_dist=cfg.min_dist,
                          spread=cfg.spread, n_epochs=cfg.n_epochs, init=cfg.init, random_state=seed, n_jobs=1,
                          precomputed_knn=(ind, dist, None), verbose=False)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*knn_search_index.*")
            warnings.filterwarnings("ignore", message=".*n_jobs value 1 overridden.*")
            return model.fit_transform(rep).astype(np.float32)
    graph = connectivities(knn) if graph is None else graph
    a, b = find_ab_params(cfg.spread, cfg.min_dist)
    # twice umap-learn's rule: batched epochs need about twice as many for umap-learn's neighbour preservation
    # (100k bench points: 0.0043 at 200 epochs, 0.0047 at 400, umap-learn 0.0047 at 200; 3000 blobs: 0.185 at 500,
    # 0.193 at 1000, umap-learn 0.190 at 500)
    n_epochs = cfg.n_epochs or 2 * (500 if len(rep) <= 10_000 else 200)
    return optimize_layout(graph, initial_layout(rep, graph, init=cfg.init, seed=seed), n_epochs=n_epochs, a=a, b=b,
                           seed=seed)


def layout_quality(rep: np.ndarray, coords: np.ndarray, *, k: int = 15, sample: int = 10_000, seed: int = 0,
                   labels: np.ndarray | None = None) -> dict[str, float]:
    """How well a 2-D layout ``coords`` ``(n, 2)`` keeps the cosine neighbourhoods of ``rep`` ``(n, d)``, on a seeded sample.

    ``knn_preservation``: mean fraction of a sampled point's ``k`` exact cosine neighbours in ``rep``
    that are among its ``k`` nearest points in the layout (all ``n`` points searched in both spaces;
    chance level ``k / n``). With ``labels`` (of 2 or more groups) also ``silhouette``: the silhouette
    of those labels in the layout on the sample (cluster separation). Points without coordinates are
    left out.
    """
    ok = np.flatnonzero(np.isfinite(coords).all(1))
    rep, coords = rep[ok], coords[ok]
    rows = np.sort(np.random.default_rng(seed).choice(len(ok), size=min(sample, len(ok)), replace=False))
    hd = exact_neighbors(rep, rows, k=k)
    lo = NearestNeighbors(n_neighbors=k + 1).fit(coords).kneighbors(coords[rows], return_distance=False)
    lo = np.array([r[r != i][:k] for r, i in zip(lo, rows)])
    out = {"knn_preservation": float((lo[:, :, None] == hd[:, None, :]).any(2).mean()),
           "chance": k / len(ok), "sample": int(len(rows))}
    if labels is not None and 2 <= len(np.unique(np.asarray(labels)[ok][rows])) < len(rows):
        out["silhouette"] = float(silhouette_score(coords[rows], np.asarray(labels)[ok][rows]))
    return out


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
                seed: int, graph: sp.csr_matrix | None = None) -> tuple[np.ndarray, str]:
    """Coordinates ``(n, 2)`` (NaN for points left out of a display subsample) and a sentence saying how.

    ``graph``: the clustering graph ``connectivities(knn)``, reused when all points are laid out.
    """
    keep = display_subsample(labels, max_points=cfg.max_points, seed=seed)
    how = "batched deterministic epochs (clustering.umap_sgd)" if cfg.backend == "batched" else "umap-learn"
    if len(keep) == len(labels):
        return (umap_from_knn(rep, knn, cfg, seed=seed, graph=graph),
                f"UMAP ({how}) of all {len(labels)} points on the clustering kNN graph")
    sub_knn = build_knn(rep[keep], knn_cfg.model_copy(update={"pca_dims": None}), seed=seed, progress=False)
    coords = np.full((len(labels), 2), np.nan, np.float32)
    coords[keep] = umap_from_knn(rep[keep], sub_knn, cfg, seed=seed)
    return coords, (f"UMAP ({how}) of a seeded subsample of {len(keep)} of {len(labels)} points, stratified by "
                    f"subtype (each keeps its share, >= 50 points), with its own {sub_knn.method} kNN graph")


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
