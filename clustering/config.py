"""Config of the clustering stage (``clustering:`` section of a pipeline config, or a file of its own)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from core.config import StrictModel, load_stage_config


class KnnConfig(StrictModel):
    """Cosine kNN graph: exact blocked matrix products up to ``exact_max_n`` points, approximate (IVF) beyond."""

    k: int = Field(15, ge=2, description="neighbours per point, self excluded")
    pca_dims: int | None = Field(50, ge=2, description="PCA before kNN when the input has more dims; null = none")
    exact_max_n: int = Field(50_000, ge=1, description="exact search up to this many points")
    block_rows: int = Field(1024, ge=16, description="query rows per matrix-product block (exact search)")
    recall_sample: int = Field(1000, ge=10, description="points whose exact neighbours measure ANN recall")
    ann: Literal["ivf", "pynndescent"] = Field("ivf", description="approximate search beyond exact_max_n")
    target_recall: float = Field(0.95, gt=0.0, le=1.0, description="ivf: probes chosen to reach this recall@k")
    ivf_lists: int | None = Field(None, ge=1, description="ivf: k-means cells (null = sqrt(n))")
    ivf_probes: int | None = Field(None, ge=1, description="ivf: cells searched per query (null = tuned)")
    ann_trees: int | None = Field(None, ge=1, description="pynndescent n_trees (null = its default)")
    ann_iters: int | None = Field(None, ge=1, description="pynndescent n_iters (null = its default)")


class LeidenConfig(StrictModel):
    """Leiden sweep over resolutions and seeds; the chosen partition is a consensus over seeds."""

    backend: Literal["igraph", "leidenalg"] = "igraph"
    resolutions: list[float] = Field(default_factory=lambda: [0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0])
    n_seeds: int = Field(5, ge=1, description="Leiden runs (seeds) per resolution")
    n_iterations: int = Field(2, description="Leiden passes (scanpy's default); negative = until the partition is stable")
    n_subsamples: int = Field(5, ge=0, description="node subsamples per resolution for the stability score")
    subsample_fraction: float = Field(0.8, gt=0.0, lt=1.0)
    min_clusters: int = Field(2, ge=1, description="resolutions giving fewer (non-small) clusters are not chosen")
    max_clusters: int = Field(12, ge=1)
    min_cluster_size: int = Field(5, ge=1, description="smaller clusters merge into their best-connected neighbour")
    modularity_tolerance: float = Field(0.01, ge=0.0, description="modularities within this of the best tie; the coarser resolution wins")
    resolution: float | None = Field(None, gt=0.0, description="fix the resolution instead of choosing it")
    min_stability: float = Field(0.6, ge=0.0, le=1.0, description=(
        "a resolution is admissible only when its subsample ARI (kNN graph rebuilt on each subsample) reaches this; "
        "none admissible = no stable structure"))
    stability_margin: float = Field(0.1, ge=0.0, le=1.0, description=(
        "admissible resolutions also lie within this of the most stable one (with 2..max clusters)"))

    @model_validator(mode="after")
    def _check(self) -> LeidenConfig:
        if not self.resolutions or any(r <= 0 for r in self.resolutions):
            raise ValueError("resolutions must be a non-empty list of positive numbers")
        if self.max_clusters < self.min_clusters:
            raise ValueError("max_clusters must be >= min_clusters")
        return self


class GmmConfig(StrictModel):
    """Gaussian-mixture latent classes (scikit-learn) on the searched space, number of classes by BIC."""

    enabled: bool = True
    max_components: int = Field(8, ge=1, description="classes tried: 1..max_components; BIC picks")
    covariance_type: Literal["full", "diag", "tied", "spherical"] = Field(
        "full", description="full: latent class analysis' usual model (mclust VVV); diag over-splits correlated latents")
    n_init: int = Field(3, ge=1, description="EM restarts per class count (best likelihood kept)")
    max_fit_points: int = Field(20_000, ge=100, description=(
        "more points than this: EM (and BIC) on a seeded random subset of this size, then every point gets its most "
        "probable class (EM time grows with n; 20,000 points fit 8 full 50-d classes with ~2 points per parameter)"))
    min_stability: float = Field(0.6, ge=0.0, le=1.0, description=(
        "below this resampling ARI the mixture's classes count as no stable structure (as for Leiden)"))


class UmapConfig(StrictModel):
    """UMAP on the kNN graph already built: batched deterministic epochs (parallel) or umap-learn (single-threaded)."""

    enabled: bool = True
    backend: Literal["batched", "umap-learn"] = Field(
        "batched", description="layout optimiser: clustering.umap_sgd (umap-learn's objective, parallel) or umap-learn")
    min_dist: float = Field(0.3, ge=0.0)
    spread: float = Field(1.0, gt=0.0)
    n_epochs: int | None = Field(None, ge=1, description="null = umap-learn's rule (200 above 10k points, else 500), "
                                 "doubled for the batched backend")
    init: Literal["pca", "spectral"] = "pca"
    max_points: int = Field(200_000, ge=100, description="above this, UMAP of a stratified subsample (by subtype)")


class StabilityConfig(StrictModel):
    """Bootstrap/subsample stability of the final partition and per-patient membership confidence."""

    n_resamples: int = Field(20, ge=2)
    fraction: float = Field(0.8, gt=0.0, lt=1.0)


class SitesConfig(StrictModel):
    """Site diagnostics (clustering/site_diagnostics.json): do the subtypes follow the sites?"""

    columns: list[str] | None = Field(None, description=(
        "per-patient site columns (manifest or clinical); null = those of dataset, site, view, sex that exist"))
    min_patients: int = Field(50, ge=10, description="a site is clustered alone (replication) from this many patients")
    cv_folds: int = Field(5, ge=2, description="patient-grouped folds of the site classifier on the latent")
    loo_max_queries: int = Field(5000, ge=100, description=(
        "leave-one-site-out kNN vote: at most this many units of each level are predicted (seeded sample; exact search "
        "against every other level's unit, so the cost is queries x units)"))


class ValidityConfig(StrictModel):
    """Thresholds of the validity panel (clustering/validity.json); ``*_warn`` / ``*_fail`` bound each status."""

    site_ami_warn: float = Field(0.05, ge=0.0, description="AMI(subtype, site column) above: warn")
    site_ami_fail: float = Field(0.2, ge=0.0, description="AMI(subtype, site column) above: fail")
    site_auroc_warn: float = Field(0.7, ge=0.5, le=1.0, description="site-classifier AUROC on the latent above: warn")
    site_auroc_fail: float = Field(0.9, ge=0.5, le=1.0, description="site-classifier AUROC on the latent above: fail")
    stability_mean_warn: float = Field(0.8, ge=0.0, le=1.0, description="mean resampling ARI below: warn")
    stability_mean_fail: float = Field(0.6, ge=0.0, le=1.0, description="mean resampling ARI below: fail")
    stability_min_warn: float = Field(0.5, ge=0.0, le=1.0, description="worst resampling ARI below: warn")
    subtype_size_warn: int = Field(30, ge=1, description="smallest subtype (patients) below: warn")
    subtype_size_fail: int = Field(10, ge=1, description="smallest subtype (patients) below: fail")
    km_min_patients: int = Field(10, ge=1, description="a Kaplan-Meier group with fewer patients: fail")
    km_min_events: int = Field(5, ge=0, description="a Kaplan-Meier group with fewer events: fail")
    hr_max_ratio: float = Field(1000.0, gt=1.0, description="a Cox HR or CI bound beyond [1/this, this]: not estimable")
    agreement_warn: float = Field(0.6, ge=0.0, le=1.0, description="ARI between Leiden and the mixture below: warn")
    agreement_fail: float = Field(0.2, ge=0.0, le=1.0, description="ARI between Leiden and the mixture below: fail")
    excluded_warn: float = Field(0.05, ge=0.0, le=1.0, description="fraction of patients left out above: warn")
    excluded_fail: float = Field(0.25, ge=0.0, le=1.0, description="fraction of patients left out above: fail")
    alpha: float = Field(0.05, gt=0.0, lt=1.0, description="significance level of the survival and selection checks")

    @model_validator(mode="after")
    def _check(self) -> ValidityConfig:
        pairs = [("site_ami", self.site_ami_warn <= self.site_ami_fail),
                 ("site_auroc", self.site_auroc_warn <= self.site_auroc_fail),
                 ("stability_mean", self.stability_mean_warn >= self.stability_mean_fail),
                 ("subtype_size", self.subtype_size_warn >= self.subtype_size_fail),
                 ("agreement", self.agreement_warn >= self.agreement_fail),
                 ("excluded", self.excluded_warn <= self.excluded_fail)]
        bad = [name for name, ok in pairs if not ok]
        if bad:
            raise ValueError(f"validity: the warn threshold of {bad} must be milder than its fail threshold")
        return self


class CharacterizeConfig(StrictModel):
    """Table 1, label enrichment, survival and montages by subtype."""

    montage_per_subtype: int = Field(8, ge=0, description="sample images per subtype in the montage (0 = none)")
    montage_size: int = Field(160, ge=32, description="tile side in pixels")
    fisher_max_n: int = Field(2000, ge=0, description="2x2 tables with expected counts < 5 use Fisher up to this n")


class ExportConfig(StrictModel):
    """What leaves the building. Only ``columns`` are exported next to the subtype assignments."""

    columns: list[str] = Field(default_factory=list, description="clinical/manifest columns to export")
    allow_identifying: list[str] = Field(
        default_factory=list, description="identifying columns (names, dates, paths, notes) you explicitly allow")
    summary_columns: list[str] | None = Field(
        None, description="columns that derived tables and figures may show (Table 1, Kaplan-Meier, outcome/label "
                          "UMAPs, label enrichment); null = the clinical schema's feature/outcome columns and the "
                          "labels that pass the identifying checks (the report lists the withheld ones)")
    raw_ids: bool = Field(False, description="export the cohort's patient/image ids unchanged instead of pseudonyms "
                                             "(on purpose only; the report says so)")
    id_key: str | None = Field(None, description="key file of the keyed-hash pseudonyms (created when absent); "
                                                 "null = private/pseudonym.key in the folder above --out")
    images: bool = Field(False, description="patient images may leave in export/: the image montage and an Atlas with "
                                            "thumbnails (images may carry burned-in identifiers)")


class AtlasConfig(StrictModel):
    """Embedding Atlas export (parquet + static offline application)."""

    enabled: bool = True
    application: bool = Field(True, description="also write the offline app atlas/app with double-click launchers")
    thumbnails: int = Field(0, ge=0, le=256, description="image thumbnails of this many px in the Atlas (0: none; "
                                                         "images may carry burned-in identifiers: enable only where "
                                                         "your data agreement allows sharing them)")


class StudiesConfig(StrictModel):
    """Optional studies from the Emory study's next steps."""

    label_noise: bool = Field(False, description="stability when one feature/label is corrupted")
    noise_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="fraction of rows whose value is corrupted")
    noise_columns: list[str] = Field(default_factory=list, description="columns to corrupt (default: all labels)")
    cross_dataset: bool = Field(False, description="cluster each dataset alone and compare with the pooled run")


class ClusteringConfig(StrictModel):
    """Top-level clustering config."""

    seed: int = 0
    unit: Literal["patient", "image"] = Field(
        "patient", description="store input: average a patient's images (L2-normalised) or cluster images")
    augmentation: str = "original"
    knn: KnnConfig = Field(default_factory=KnnConfig)
    leiden: LeidenConfig = Field(default_factory=LeidenConfig)
    gmm: GmmConfig = Field(default_factory=GmmConfig)
    labels: Literal["leiden", "gmm"] = Field("leiden", description="which clustering labels the export and the report")
    umap: UmapConfig = Field(default_factory=UmapConfig)
    stability: StabilityConfig = Field(default_factory=StabilityConfig)
    characterize: CharacterizeConfig = Field(default_factory=CharacterizeConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    atlas: AtlasConfig = Field(default_factory=AtlasConfig)
    studies: StudiesConfig = Field(default_factory=StudiesConfig)
    sites: SitesConfig = Field(default_factory=SitesConfig)
    validity: ValidityConfig = Field(default_factory=ValidityConfig)

    @model_validator(mode="after")
    def _check_labels(self) -> ClusteringConfig:
        if self.labels == "gmm" and not self.gmm.enabled:
            raise ValueError("labels: gmm needs gmm.enabled: true")
        return self


def load_clustering_config(path: str | Path) -> ClusteringConfig:
    """Load a clustering YAML, or the ``clustering`` section of a composed pipeline config."""
    return load_stage_config(path, ClusteringConfig, section="clustering")
