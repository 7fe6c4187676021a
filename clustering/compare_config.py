"""Config of the model comparison (``python -m clustering.compare``; keys in configs/README.md, ## clustering.compare)."""
from __future__ import annotations

from pydantic import Field

from core.config import StrictModel

from .config import AtlasConfig, KnnConfig, LeidenConfig, UmapConfig


class CompareProbeConfig(StrictModel):
    """Patient-grouped probes from each model's embedding to each metadata column."""

    folds: int = Field(5, ge=2, description="patient-grouped stratified folds")
    max_n: int = Field(20_000, ge=100, description="seeded subsample of images the probes use")
    C: float = Field(1.0, gt=0.0, description="inverse L2 strength of the logistic regression")
    min_patients: int = Field(10, ge=2, description="levels with fewer patients are left out of that column's probe")


class DisagreementConfig(StrictModel):
    """Images whose neighbourhoods disagree most across models."""

    fraction: float = Field(0.01, gt=0.0, lt=0.5, description="bottom / top fraction shown as low / high agreement")
    montage: int = Field(8, ge=0, description="images per agreement band in the montage (0 = none)")


class CompareConfig(StrictModel):
    """Top-level config of the model comparison."""

    seed: int = 0
    models: list[str] | None = Field(None, description="store models to compare (null = all, at least 2)")
    augmentation: str = "original"
    columns: list[str] = Field(default_factory=list, description="manifest/clinical columns: groups and probe targets")
    bins: dict[str, list[float]] = Field(default_factory=dict,
                                         description="continuous column -> bin edges; adds column '<name>_band'")
    cka_max_n: int | None = Field(None, ge=10, description="CKA on a seeded subsample of this many images (null = all)")
    knn: KnnConfig = Field(default_factory=KnnConfig)
    leiden: LeidenConfig = Field(default_factory=lambda: LeidenConfig(resolutions=[0.2, 0.5, 1.0], n_seeds=2,
                                                                       n_subsamples=0))
    umap: UmapConfig = Field(default_factory=UmapConfig)
    probes: CompareProbeConfig = Field(default_factory=CompareProbeConfig)
    disagreement: DisagreementConfig = Field(default_factory=DisagreementConfig)
    montage_per_cluster: int = Field(6, ge=0, description="sample images per cluster per model (0 = none)")
    montage_size: int = Field(128, ge=32, description="montage tile side in pixels")
    atlas: AtlasConfig = Field(default_factory=AtlasConfig)
