"""``subtypes.h5ad``: the clustering as an AnnData file for the scanpy / ehrapy world.

Laid out as scanpy stores its own results, so ``sc.pl.umap(adata, color="subtype")`` and the
``sc.tl.*`` tools that read a neighbour graph work on it directly:

- ``obs`` (one row per clustered unit, indexed by ``patient_id`` or ``image_id``): ``subtype``
  (categorical), ``confidence`` and the allow-listed export columns only (``export.columns``, checked
  by :func:`clustering.export.check_columns`, the guard of the CSV/Parquet export);
- ``obsm``: ``X_latent`` (the clustered representation, ``(n, d)``) and ``X_umap`` ``(n, 2)``;
- ``obsp``: ``distances`` (cosine distance to each of the k neighbours, CSR ``(n, n)``) and
  ``connectivities`` (UMAP fuzzy-union weights, the graph Leiden ran on);
- ``uns``: ``neighbors`` (``connectivities_key``, ``distances_key``, ``params``), ``leiden``
  (``params``: resolution, random_state, n_iterations and how the resolution was chosen) and
  ``umap`` (``params``), as ``sc.pp.neighbors`` / ``sc.tl.leiden`` / ``sc.tl.umap`` write them.
``X`` is left empty: the latent is not a feature matrix with named variables.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp


def knn_distances(indices: np.ndarray, distances: np.ndarray) -> sp.csr_matrix:
    """``(n, n)`` CSR of the kNN distances (row i holds its k neighbours), as scanpy's ``obsp['distances']``."""
    n, k = indices.shape
    rows = np.repeat(np.arange(n), k)
    return sp.csr_matrix((distances.ravel().astype(np.float32), (rows, indices.ravel())), shape=(n, n))


def scanpy_uns(params: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``uns`` as scanpy writes it for ``neighbors``, ``leiden`` and ``umap``, from the run's per-step ``params``
    (:attr:`clustering.result.ClusteringResult.params`)."""
    return {"neighbors": {"connectivities_key": "connectivities", "distances_key": "distances",
                          "params": params["neighbors"]},
            "leiden": {"params": params["leiden"]},
            "umap": {"params": params["umap"]}}


def write_h5ad(path: Path, obs: pd.DataFrame, *, latent: np.ndarray, umap: np.ndarray | None,
               connectivities: sp.csr_matrix, indices: np.ndarray, distances: np.ndarray,
               uns: dict[str, Any], index: str) -> Path:
    """Write ``path`` (``obs``: one row per unit, ``index`` names its id column; ``latent`` ``(n, d)``;
    ``umap`` ``(n, 2)`` or None; ``uns``: scanpy-style parameter records)."""
    import anndata as ad

    frame = obs.set_index(obs[index].astype(str)).drop(columns=[index])
    frame.index.name = None
    for col in frame.columns:       # strings as categoricals, anndata's own convention (missing values allowed)
        if frame[col].dtype == object or pd.api.types.is_string_dtype(frame[col]):
            frame[col] = frame[col].astype("category")
    frame["subtype"] = pd.Categorical(frame["subtype"], categories=sorted(frame["subtype"].unique(),
                                                                          key=lambda s: (len(s), s)))
    obsm = {"X_latent": np.asarray(latent, np.float32)}
    if umap is not None and np.isfinite(umap).all():
        obsm["X_umap"] = np.asarray(umap, np.float32)
    adata = ad.AnnData(obs=frame, obsm=obsm,
                       obsp={"connectivities": sp.csr_matrix(connectivities, dtype=np.float32),
                             "distances": knn_distances(indices, distances)},
                       uns=uns)
    path.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(path)
    return path
