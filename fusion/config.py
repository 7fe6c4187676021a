"""Config of the fusion stage (multimodal VAE), validated on load.

Load with :func:`load_fusion_config`: a fusion YAML or the ``fusion`` section of a composed pipeline
config (``from:`` includes resolved).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from core.config import StrictModel, load_stage_config
from fusion.distributed import DistributedConfig
from fusion.survival.config import SurvivalConfig
from fusion.train_config import TrainConfig

SerialPolicy = Literal["first_within_window", "all_within_window", "last", "all"]


class CXRInputConfig(StrictModel):
    """Which CXR embeddings feed the model and how serial images of one patient are chosen."""

    model: str | None = None                 # store group; None: taken from --selection selection.json
    augmentation: str = "original"
    serial: SerialPolicy = "first_within_window"
    window_days: tuple[float, float] = (-1.0, 3.0)   # [lo, hi] offset_days for the *_within_window policies
    max_images: int = Field(8, ge=1)         # "all": at most the last max_images per patient; "all_within_window": the first
    pooling: Literal["mean", "attention"] = "attention"   # over tokens (and images) of one patient
    likelihood: Literal["gaussian", "cosine"] = "gaussian"

    @model_validator(mode="after")
    def _window_ordered(self) -> CXRInputConfig:
        lo, hi = self.window_days
        if lo > hi:
            raise ValueError(f"window_days must be [lo, hi] with lo <= hi, got {list(self.window_days)}")
        return self


class ClinicalInputConfig(StrictModel):
    """Clinical table encoding (columns with role ``feature`` in clinical_schema.json)."""

    columns: list[str] | None = None         # None: every role=feature column of the schema
    exclude: list[str] = Field(default_factory=list)
    out_of_range: Literal["error", "mask"] = "error"   # "mask": out-of-range values become missing (counted)


class ModelConfig(StrictModel):
    """Network sizes and the joint-latent options."""

    latent_dim: int = Field(16, ge=1)
    hidden: int = Field(128, ge=4)
    n_layers: int = Field(2, ge=1)
    attention_heads: int = Field(4, ge=1)
    unimodal_elbo: bool = True               # MVAE-style: also fit each single-modality posterior
    # reconstruction weight of the CXR branch; "auto": (encoded clinical columns) / (CXR dims), so a
    # 300-1000-dim embedding does not drown a handful of clinical variables in the ELBO
    cxr_weight: float | Literal["auto"] = "auto"
    clinical_weight: float = Field(1.0, ge=0)


class KLConfig(StrictModel):
    """beta-VAE weight of the KL term with linear annealing from 0."""

    beta: float = Field(1.0, ge=0)
    warmup_steps: int = Field(500, ge=0)     # 0: constant beta


class SplitConfig(StrictModel):
    """Patient-grouped split: train (fit), val (early stopping), test (held-out evaluation)."""

    val_fraction: float = Field(0.15, ge=0, lt=1)
    test_fraction: float = Field(0.15, ge=0, lt=1)

    @model_validator(mode="after")
    def _fractions(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% for training")
        return self


class EvaluationConfig(StrictModel):
    """Held-out probes of the latent against ``truth`` columns, and single-modality ablations."""

    truth_columns: list[str] | None = None   # None: every role=truth column present
    probes: list[Literal["knn", "logistic"]] = Field(default_factory=lambda: ["knn", "logistic"])
    knn_k: int = Field(15, ge=1)
    ablations: bool = True                   # also train clinical-only and CXR-only VAEs


class ConditioningConfig(StrictModel):
    """How ``covariates`` enter the VAE, and an optional penalty against covariate information in the latent."""

    encoders: bool = False                   # the encoders also see the covariates (decoders always do)
    unknown_dropout: float = Field(0.1, ge=0, lt=1)   # training: hide each patient's covariates from the
    #                                          encoders w.p. this, so the "unknown" code (new site) is learned
    penalty: Literal["none", "mmd"] = "none"  # mmd: maximum mean discrepancy between each level's latents and the rest
    penalty_weight: float = Field(10.0, ge=0)


class FusionConfig(StrictModel):
    """Top-level fusion stage config."""

    seed: int = 0
    covariates: list[str] = Field(default_factory=list)   # per-patient categorical columns (site, dataset, view)
    conditioning: ConditioningConfig = Field(default_factory=ConditioningConfig)
    cxr: CXRInputConfig = Field(default_factory=CXRInputConfig)
    clinical: ClinicalInputConfig = Field(default_factory=ClinicalInputConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    kl: KLConfig = Field(default_factory=KLConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    survival: SurvivalConfig = Field(default_factory=SurvivalConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)

    @model_validator(mode="after")
    def _unique_covariates(self) -> FusionConfig:
        if len(set(self.covariates)) != len(self.covariates):
            raise ValueError(f"covariates must not repeat a column, got {self.covariates}")
        return self


def load_fusion_config(path: str | Path) -> FusionConfig:
    """Load a fusion YAML or the ``fusion`` section of a composed pipeline config."""
    return load_stage_config(path, FusionConfig, section="fusion")
