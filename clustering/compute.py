"""The clustering computation, without writing a file: kNN graph -> connectivities -> Leiden / mixture choice ->
UMAP -> characterisation -> site diagnostics and validity -> studies, into one
:class:`~clustering.result.ClusteringResult`.

Python::

    from clustering.compute import compute_clustering
    res = compute_clustering(cfg, cohort=COHORT_DIR, latents=FUSION_DIR / "latents.zarr")
    res.units[["patient_id", "subtype", "confidence"]]; res.metrics()["knn"]["recall_at_k"]; res.params["leiden"]

:func:`clustering.run.run_clustering` runs the same computation (:func:`cluster`) and writes the outputs.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

from benchmarks.config import Pooling
from cohorts.folder import CohortFolder

from . import characterize as ch
from .choice import Choice, MethodResult, choose
from .config import ClusteringConfig
from .diagnose import diagnose
from .export import summary_columns
from .inputs import Points, load_cohort, load_points
from .knn import KnnGraph, build_knn
from .leiden import connectivities
from .narrative import describe_subtypes
from .result import Characterization, ClusteringResult, Umap, step_params
from .studies import cross_dataset_study, label_noise_study
from .umap_embed import layout_quality, umap_layout

log = logging.getLogger(__name__)


def columns_by_role(schema: dict[str, dict], *roles: str) -> list[str]:
    """The schema's columns whose ``role`` is one of ``roles``."""
    return [c for c, s in schema.items() if s.get("role") in roles]


def load_inputs(cfg: ClusteringConfig, *, cohort: Path, latents: Path | None = None, store: Path | None = None,
                model: str | None = None, pooling: Pooling = "mean") -> tuple[CohortFolder, Points]:
    """The cohort tables and the points to cluster (fusion ``latents`` or a ``store`` model's embeddings, tokens
    pooled as ``pooling`` says: the benchmark's ``selection.json`` choice)."""
    coh = load_cohort(Path(cohort))
    pts = load_points(coh, latents=latents, store=store, model=model, unit=cfg.unit, augmentation=cfg.augmentation,
                      pooling=pooling)
    log.info("clustering %d %ss of %d dims from %s", len(pts.units), cfg.unit, pts.x.shape[1], pts.source["kind"])
    return coh, pts


def compute_clustering(cfg: ClusteringConfig, *, cohort: Path, latents: Path | None = None, store: Path | None = None,
                       model: str | None = None, pooling: Pooling = "mean",
                       benchmark: Path | None = None) -> ClusteringResult:
    """Load ``cohort`` and its points and cluster them (:func:`cluster`); writes nothing.

    Derived tables show the columns ``export.summary_columns`` allows; ``benchmark`` (BENCH_DIR, optional)
    lets the validity panel judge the model selection.
    """
    coh, pts = load_inputs(cfg, cohort=cohort, latents=latents, store=store, model=model, pooling=pooling)
    shown, withheld = summary_columns(pts.units, cfg.export, coh.schema)
    return cluster(cfg, coh, pts, shown=shown, withheld=withheld, latents=latents, benchmark=benchmark)


def cluster(cfg: ClusteringConfig, coh: CohortFolder, pts: Points, *, shown: list[str], withheld: dict[str, str],
            latents: Path | None = None, benchmark: Path | None = None) -> ClusteringResult:
    """Every step on ``pts`` (n units): ``shown`` columns may appear in derived tables (``withheld``: the others and
    why); ``latents`` locates the fusion survival head's metrics for the validity panel."""
    knn = build_knn(pts.x, cfg.knn, seed=cfg.seed)
    log.info("kNN graph: %s", knn.summary())
    adj = connectivities(knn)
    choice = choose(knn.rep, adj, cfg)
    method = choice.chosen
    units = pts.units.assign(subtype=[f"S{k + 1}" for k in method.labels],
                             confidence=method.stability.confidence if method.stable else np.full(len(pts.units), np.nan))
    umap = _umap(knn, adj, method.labels, cfg)
    points = replace(pts, units=units.assign(umap_1=umap.coords[:, 0], umap_2=umap.coords[:, 1]))
    model_inputs = set(columns_by_role(coh.schema, "feature")) if pts.source["kind"] == "fusion latents" else set()
    char = _characterize(points.units, coh.schema, cfg, shown=shown, model_inputs=model_inputs)
    truth_ari, truth = _truth_ari(points.units, coh.schema, choice)
    diag = diagnose(knn.rep, points.units, coh.manifest, indices=knn.indices, choice=choice, survival=char.survival,
                    n_excluded=len(pts.excluded), model_inputs=model_inputs, cfg=cfg, latents=latents,
                    benchmark=benchmark)
    return ClusteringResult(
        cfg=cfg, points=points, schema=coh.schema, knn=knn, adjacency=adj, choice=choice, umap=umap,
        characterization=char, truth_ari=truth_ari, truth=truth, diagnosis=diag,
        studies=_studies(pts.x, points.units, cfg, method=method, resolution=choice.leiden.resolution),
        shown=list(shown), withheld=withheld, params=step_params(cfg, knn=knn, leiden=choice.leiden, shown=shown))


def _umap(knn: KnnGraph, adj: sp.csr_matrix, labels: np.ndarray, cfg: ClusteringConfig) -> Umap:
    """The layout on the clustering graph and how well it keeps each point's neighbours (NaN when disabled)."""
    if not cfg.umap.enabled:
        return Umap(np.full((len(labels), 2), np.nan, np.float32), "UMAP disabled in the config", {})
    coords, how = umap_layout(knn.rep, knn, labels, cfg.umap, cfg.knn, seed=cfg.seed, graph=adj)
    quality = layout_quality(knn.rep, coords, k=cfg.knn.k, seed=cfg.seed, labels=labels)
    how += (f"; on {quality['sample']} sampled points the layout keeps {quality['knn_preservation']:.1%} of each "
            f"point's {cfg.knn.k} cosine neighbours among its {cfg.knn.k} nearest in 2-D (chance {quality['chance']:.2%})"
            + (f", subtype silhouette {quality['silhouette']:.2f}" if "silhouette" in quality else ""))
    return Umap(coords, how, quality)


def _characterize(units: pd.DataFrame, schema: dict[str, dict], cfg: ClusteringConfig, *, shown: list[str],
                  model_inputs: set[str]) -> Characterization:
    """Table 1, label enrichment and survival per patient over the ``shown`` columns; sample images per subtype."""
    t1_schema = {c: s for c, s in schema.items() if s.get("role") in ("feature", "outcome") and c in shown}
    patients, split_patients = ch.per_patient(units)            # outcomes and Table 1: one row per patient, always
    table1, t1_stats = ch.table1(patients, t1_schema, descriptive=model_inputs)
    enrich = ch.label_enrichment(units, [c for c in units.columns if c.startswith("label_") and c in shown])
    surv = (ch.survival(patients, time="time", event="event", max_ratio=cfg.validity.hr_max_ratio)
            if {"time", "event"} <= set(shown) else
            {"note": "no time/event columns in clinical.parquet" if not {"time", "event"} <= set(units.columns)
             else "time/event withheld from summaries (export.summary_columns or identifying values)"})
    tiles, img_errors = (ch.montage_tiles(units["path"], units.subtype, per_subtype=cfg.characterize.montage_per_subtype,
                                          tile=cfg.characterize.montage_size, seed=cfg.seed)
                         if cfg.characterize.montage_per_subtype and "path" in units.columns else ([], []))
    return Characterization(patients, split_patients, table1, t1_stats, enrich, surv,
                            describe_subtypes(patients, t1_schema, surv), tiles, img_errors)


def _truth_ari(units: pd.DataFrame, schema: dict[str, dict], choice: Choice) -> tuple[dict[str, dict], dict[str, dict]]:
    """Against each categorical ``truth`` column: ``truth_ari`` (chosen + every swept resolution) and ``truth``
    (ARI/AMI of the exported subtypes, and the ARI of each method's partition as found)."""
    out, simple = {}, {}
    for col in columns_by_role(schema, "truth"):
        ok = units[col].notna().to_numpy()
        if schema[col]["type"] == "continuous" or ok.sum() < 2:
            continue
        truth = units.loc[ok, col].astype(str)
        out[col] = {"chosen": float(adjusted_rand_score(truth, units.loc[ok, "subtype"])),
                    "by_resolution": {r: float(adjusted_rand_score(truth, lab[ok]))
                                      for r, lab in choice.leiden.partitions.items()}}
        simple[col] = {"ari": out[col]["chosen"], "ami": float(adjusted_mutual_info_score(truth, units.loc[ok, "subtype"])),
                       "n_subtypes": choice.chosen.n_subtypes,
                       "leiden_ari": out[col]["by_resolution"][choice.leiden.resolution],
                       "gmm_ari": float(adjusted_rand_score(truth, choice.gmm.labels[ok])) if choice.gmm else None}
    return out, simple


def _studies(x: np.ndarray, units: pd.DataFrame, cfg: ClusteringConfig, *, method: MethodResult,
             resolution: float) -> dict[str, pd.DataFrame]:
    """The configured robustness studies (label noise, cross-dataset); none without stable subtypes."""
    studies = {"label_noise": label_noise_study, "cross_dataset": cross_dataset_study}
    return {name: study(x, units, cfg, labels=method.labels, resolution=resolution) for name, study in studies.items()
            if getattr(cfg.studies, name) and method.stable}
