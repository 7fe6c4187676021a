"""One clustering run as one object: what :func:`clustering.compute.compute_clustering` returns.

:class:`ClusteringResult` holds the units with their subtypes, the kNN graph and the connectivities
Leiden ran on, the Leiden / mixture :class:`~clustering.choice.Choice`, the UMAP layout and its
quality, the characterisation tables, survival, the site diagnostics and validity checks, the
robustness studies, and ``params``: per step, the settings that made it (as scanpy keeps
``uns['neighbors']['params']`` beside its results). :meth:`ClusteringResult.metrics` is the home of
the quality metrics (kNN recall, UMAP layout quality, stability, ARI against truth columns, site AMI)
and is exactly ``metrics.json`` less the run's environment and timing. Every writer of
:mod:`clustering.run` (tables, figures, export, ``subtypes.h5ad``, Atlas, report) reads this object.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.safeio import relative_path

from .characterize import Tiles
from .choice import Choice, MethodResult
from .config import ClusteringConfig
from .diagnose import Diagnosis
from .export import id_policy
from .inputs import Points
from .knn import KnnGraph
from .sweep import LeidenResult


@dataclass
class Umap:
    """The 2-D layout: ``coords`` ``(n, 2)`` (NaN when disabled or outside the display subsample), how it was
    made in a sentence, and :func:`clustering.umap_embed.layout_quality` (empty when disabled)."""

    coords: np.ndarray
    how: str
    quality: dict[str, Any]


@dataclass
class Characterization:
    """The subtypes described: per-patient frame, Table 1, label enrichment, survival, words, sample images."""

    patients: pd.DataFrame              # one row per patient (outcomes and Table 1)
    split_patients: int                 # patients whose images fell into several subtypes
    table1: pd.DataFrame
    table1_stats: pd.DataFrame
    enrichment: pd.DataFrame
    survival: dict[str, Any]            # clustering.characterize.survival, or {"note": why not}
    descriptions: dict[str, str]        # subtype -> paragraph
    montage: Tiles                      # sample image tiles per subtype (empty when off)
    image_errors: list[dict[str, str]]  # images that failed to load


@dataclass
class ClusteringResult:
    """Everything one clustering run computed, with the settings that made it (module doc)."""

    cfg: ClusteringConfig
    points: Points                      # units gain subtype, confidence, umap_1, umap_2
    schema: dict[str, dict]
    knn: KnnGraph
    adjacency: sp.csr_matrix            # (n, n) UMAP fuzzy-union connectivities: the graph Leiden ran on
    choice: Choice
    umap: Umap
    characterization: Characterization
    truth_ari: dict[str, dict]          # per truth column: chosen and per swept resolution
    truth: dict[str, dict]              # per truth column: ARI/AMI of the exported subtypes and of each method
    diagnosis: Diagnosis
    studies: dict[str, pd.DataFrame]
    shown: list[str]                    # columns derived tables and figures may show
    withheld: dict[str, str]            # columns withheld from them, and why
    params: dict[str, dict[str, Any]]

    @property
    def units(self) -> pd.DataFrame:
        """One row per clustered unit, with ``subtype``, ``confidence``, ``umap_1``, ``umap_2``."""
        return self.points.units

    @property
    def method(self) -> MethodResult:
        """The method whose labels are exported."""
        return self.choice.chosen

    @property
    def leiden(self) -> LeidenResult:
        """The Leiden sweep and its chosen resolution."""
        return self.choice.leiden

    def source(self, *, root: Path | None = None) -> dict[str, Any]:
        """Where the clustered points came from; the path relative to the run folder ``root`` when given."""
        src = self.points.source
        return src if root is None else {**src, "path": relative_path(src.get("path"), root=root)}

    def metrics(self, *, root: Path | None = None, km_figure: str | None = None) -> dict[str, Any]:
        """``metrics.json`` without ``environment`` and ``seconds``; ``root``: see :meth:`source`; ``km_figure``:
        the Kaplan-Meier PNG, relative to the output folder, when drawn."""
        units, leiden, method, char = self.units, self.leiden, self.method, self.characterization
        surv = {**char.survival, **({"figure": km_figure} if km_figure else {})}
        return {"n": int(len(units)), "unit": self.cfg.unit, "input": self.source(root=root),
                "knn": self.knn.summary(), "connectivities_edges": int(self.adjacency.nnz // 2),
                "leiden": {"backend": self.cfg.leiden.backend, "resolution": leiden.resolution, "reason": leiden.reason,
                           "n_subtypes": self.choice.leiden_method.n_subtypes, "seconds": round(leiden.seconds, 2)},
                "n_subtypes": method.n_subtypes, "stable_structure": method.stable, "methods": self.choice.summary(),
                "truth": self.truth, "site_ami": self.diagnosis.site_ami(),
                "validity": {c["check"]: c["status"] for c in self.diagnosis.checks},
                "subtype_sizes": units.subtype.value_counts().to_dict(),
                "stability": method.stability.summary() if method.stability is not None else None,
                "patients_with_images_in_several_subtypes": char.split_patients,
                "excluded": len(self.points.excluded),
                "umap": self.umap.how, "umap_quality": self.umap.quality, "truth_ari": self.truth_ari,
                "survival": surv, "image_errors": len(char.image_errors),
                "ids": id_policy(raw=self.cfg.export.raw_ids), "withheld_from_summaries": self.withheld,
                "subtype_descriptions": char.descriptions}


def step_params(cfg: ClusteringConfig, *, knn: KnnGraph, leiden: LeidenResult, shown: list[str]
                ) -> dict[str, dict[str, Any]]:
    """Per step, the settings that made its result; ``neighbors``, ``leiden`` and ``umap`` as scanpy names them."""
    return {"neighbors": {"n_neighbors": cfg.knn.k, "method": "umap", "metric": "cosine", "random_state": cfg.seed,
                          "use_rep": "X_latent", "knn_method": knn.method, "space": knn.space},
            "leiden": {"resolution": float(leiden.resolution), "random_state": cfg.seed,
                       "n_iterations": cfg.leiden.n_iterations, "key_added": "subtype", "n_seeds": cfg.leiden.n_seeds,
                       "backend": cfg.leiden.backend, "resolution_choice": leiden.reason},
            "umap": {"min_dist": cfg.umap.min_dist, "spread": cfg.umap.spread, "init": cfg.umap.init,
                     "backend": cfg.umap.backend, "random_state": cfg.seed},
            "choice": {"labels": cfg.labels, "gmm": cfg.gmm.model_dump(mode="json")},
            "stability": {**cfg.stability.model_dump(mode="json"), "random_state": cfg.seed},
            "characterize": {**cfg.characterize.model_dump(mode="json"), "summary_columns": list(shown)},
            "sites": cfg.sites.model_dump(mode="json"),
            "validity": cfg.validity.model_dump(mode="json"),
            "studies": cfg.studies.model_dump(mode="json")}
