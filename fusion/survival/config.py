"""Config of the survival head (owned by the survival-head module; fusion.config embeds it as ``survival:``).

The ``train`` overrides are checked against :class:`fusion.train_config.TrainConfig` when validated.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from core.config import StrictModel
from fusion.train_config import TrainConfig

# Training defaults of the head where they differ from the VAE's TrainConfig (Cox needs large batches).
HEAD_TRAIN_DEFAULTS: dict[str, Any] = {"learning_rate": 3e-3, "weight_decay": 1e-3, "batch_size": 256,
                                       "max_epochs": 150, "patience": 20, "warmup_steps": 20}


class Endpoint(StrictModel):
    """One outcome to model: time-to-event (``time`` + ``event`` columns) or ``binary`` (0/1, no times)."""

    name: str
    time: str | None = None                  # clinical.parquet column, days
    event: str | None = None                 # 1 = event observed at `time`, 0 = censored
    binary: str | None = None                # 0/1 outcome without times (logistic loss; C-index = AUROC)
    onset: str | None = None                 # binary only: column with the day the outcome happened (null when
    #                                          it did not); with tokens.landmark_days, patients whose outcome happened
    #                                          up to the landmark are left out (an image of the window could show it)

    @model_validator(mode="after")
    def _one_kind(self) -> Endpoint:
        timed = self.time is not None and self.event is not None
        if timed == (self.binary is not None) or (self.time is None) != (self.event is None):
            raise ValueError(f"endpoint '{self.name}': give either both `time` and `event`, or `binary`")
        if self.onset is not None and self.binary is None:
            raise ValueError(f"endpoint '{self.name}': `onset` is for binary endpoints (a timed one has `time`)")
        return self

    @property
    def kind(self) -> Literal["time_to_event", "binary"]:
        return "binary" if self.binary is not None else "time_to_event"


class TokenConfig(StrictModel):
    """What becomes a token of the sequence the selective SSM reads."""

    cxr: bool = True                         # CXR embedding tokens (needs --store)
    cxr_model: str | None = None             # store group; None: --selection (inside fusion: the VAE's model)
    augmentation: str = "original"
    cxr_tokens: Literal["image", "all"] = "image"   # one token per image (mean of its tokens) or all 32/128
    max_images: int = Field(4, ge=1)         # serial CXRs per patient: the latest ones up to the landmark
    landmark_days: float | None = 3.0        # use images with offset_days <= landmark; time-to-event rows
    # must be event-free and uncensored at the landmark (a later image would reveal survival). null: all images
    unknown_offset: Literal["include", "exclude"] = "include"   # images without offset_days
    clinical: bool = True                    # one token per clinical feature variable (missing ones masked)
    clinical_columns: list[str] | None = None   # None: every role=feature column
    clinical_exclude: list[str] = Field(default_factory=list)
    out_of_range: Literal["error", "mask"] = "error"   # clinical values outside the schema range
    latent: Literal["none", "frozen", "joint"] = "frozen"   # frozen: the fusion VAE's latents.zarr as a token;
    # joint: a fusion VAE trained with the head in each fold, its posterior mean as the token (see JointConfig)


class JointConfig(StrictModel):
    """``tokens.latent: joint``: per fold a fusion VAE is trained together with the head (shared latent).

    Loss: the VAE's negative ELBO (fusion config's ``model``/``kl``/``clinical`` sections) + ``weight`` x the
    survival loss; early stopping on the survival loss of the validation part. Ignored in the other modes.
    """

    weight: float = Field(1.0, ge=0)         # weight of the survival loss next to the negative ELBO


ABLATIONS = ("gru", "mlp", "linear", "no_cxr", "no_clinical", "no_latent")
BASELINES = ("clinical_cox", "cxr_pca_cox", "oracle", "rsf")
METRICS = ("c_index", "uno_c", "antolini_c", "td_auroc", "integrated_brier", "calibration")
Ablation = Literal["gru", "mlp", "linear", "no_cxr", "no_clinical", "no_latent"]
Baseline = Literal["clinical_cox", "cxr_pca_cox", "oracle", "rsf"]
Metric = Literal["c_index", "uno_c", "antolini_c", "td_auroc", "integrated_brier", "calibration"]


class HeadConfig(StrictModel):
    """Network sizes of the token head (selective SSM by default)."""

    mixer: Literal["ssm", "gru", "mlp", "linear"] = "ssm"   # sequence model over the tokens (fusion.survival.network)
    linear_skip: bool = True                 # add a linear term of the same inputs (Cox + nonlinear correction)
    linear_penalty: float = Field(0.1, ge=0)  # ridge penalty of the linear term's exact starting fit
    # (fusion.survival.linear; half this times the squared kernel norm is added to the mean loss)
    d_model: int = Field(32, ge=4)
    n_layers: int = Field(1, ge=1)
    d_state: int = Field(8, ge=1)
    expand: int = Field(2, ge=1)
    d_conv: int = Field(2, ge=1)             # causal depthwise conv width (1 = none)
    scan: Literal["parallel", "sequential"] = "parallel"
    token_dropout: float = Field(0.0, ge=0, lt=1)   # training only: each present token is hidden w.p. this
    ensemble: int = Field(3, ge=1)           # heads per fold, each early-stopped on its own validation split and
    # seed; the fold's output is their mean (Cox risks centred first): less variance from noisy early stopping


class LossConfig(StrictModel):
    """Survival loss for time-to-event endpoints (binary endpoints always use the logistic loss)."""

    kind: Literal["cox", "discrete"] = "cox"
    ties: Literal["efron", "breslow"] = "efron"
    n_bins: int = Field(10, ge=2)            # discrete-time hazard: quantile bins of training event times


class EvaluationConfig(StrictModel):
    """Held-out evaluation: K-fold out-of-fold risks, bootstrap CIs, baselines, oracle."""

    folds: int = Field(5, ge=2)              # patient-level K-fold; every reported risk is out-of-fold
    fold_seed: int | None = None             # seed of the fold split; None: the config's `seed`
    val_fraction: float = Field(0.15, gt=0, lt=0.5)   # of each training fold, for early stopping
    n_boot: int = Field(1000, ge=10)
    level: float = Field(0.95, gt=0, lt=1)
    pca_components: int = Field(8, ge=1)     # CXR-PCA CoxPH baseline
    penalizer: float = Field(0.1, ge=0)      # ridge penalty of the lifelines baselines
    oracle_columns: list[str] | None = None  # role=truth columns for the oracle CoxPH; None: all present
    risk_groups: int = Field(3, ge=2)        # Kaplan-Meier curves by predicted-risk tertiles
    baselines: list[Baseline] = Field(default_factory=lambda: ["clinical_cox", "cxr_pca_cox", "oracle"])
    # rsf: random survival forest (scikit-survival, 100 trees) on the clinical design; binary: random forest
    ablations: list[Ablation] = Field(default_factory=list)   # extra heads per fold, each compared to the head:
    # gru / mlp / linear mixer, or the head without one token group (no_cxr, no_clinical, no_latent)
    metrics: list[Metric] = Field(default_factory=lambda: list(METRICS))   # binary endpoints: c_index only
    horizons_days: list[float] | None = None  # td-AUROC horizons; None: quartiles of the endpoint's event times
    calibration_horizon_days: float | None = None   # None: median event time
    calibration_groups: int = Field(10, ge=2)  # risk groups (deciles) of the calibration plot

class SurvivalConfig(StrictModel):
    """Selective-SSM survival head options."""

    enabled: bool = True
    seed: int = 0
    endpoints: list[Endpoint] = Field(default_factory=lambda: [Endpoint(name="death", time="time", event="event")])
    tokens: TokenConfig = Field(default_factory=TokenConfig)
    head: HeadConfig = Field(default_factory=HeadConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: dict[str, Any] = Field(default_factory=dict)   # overrides of fusion TrainConfig fields for the head
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    joint: JointConfig = Field(default_factory=JointConfig)

    @field_validator("train")
    @classmethod
    def _train_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        TrainConfig(**{**HEAD_TRAIN_DEFAULTS, **value})
        return value

    @field_validator("endpoints")
    @classmethod
    def _unique_names(cls, value: list[Endpoint]) -> list[Endpoint]:
        names = [e.name for e in value]
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"endpoint names must be unique and at least one is needed, got {names}")
        return value

    def train_config(self) -> TrainConfig:
        """The head's :class:`fusion.train_config.TrainConfig` (head defaults + the ``train`` overrides)."""
        return TrainConfig(**{**HEAD_TRAIN_DEFAULTS, **self.train})
