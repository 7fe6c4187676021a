"""The benchmarks stage config (``configs/benchmarks/*.yaml`` or the ``benchmarks`` section of a pipeline config)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from core.config import StrictModel, load_stage_config

ProbeName = Literal["logistic", "lightgbm", "mlp"]
Pooling = Literal["flatten", "mean", "cls"]
AUGMENTATIONS = ("original", "bright", "dark", "contrast", "rot+45", "rot-45")


class LogisticConfig(StrictModel):
    """L2 logistic regression on standardized features (lbfgs).

    ``C: null`` picks C from ``C_grid`` by an inner patient-grouped CV (AUROC) inside each training
    fold; a number uses it as is. The shipped default C=0.1 is ~10x stronger than sklearn's default,
    which suits standardized embeddings with hundreds to thousands of correlated dimensions.
    """

    C: float | None = Field(0.1, gt=0)
    C_grid: list[float] = Field(default_factory=lambda: [0.001, 0.01, 0.1, 1.0], min_length=1)
    inner_folds: int = Field(3, ge=2)
    max_iter: int = Field(500, ge=10)
    tol: float = Field(1e-4, gt=0)


class LightGBMConfig(StrictModel):
    """Gradient-boosted trees (see ``benchmarks.lgbm``): 100 trees as in the source study's probe (optionally
    early-stopped on a patient-grouped validation split of the training fold's original images); fewer bins,
    half the features and rows per tree; threads from the host's free cores (``n_jobs: null``)."""

    n_estimators: int = Field(100, ge=1)       # trees at most
    learning_rate: float = Field(0.1, gt=0)
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(20, ge=1)
    max_bin: int = Field(63, ge=3)
    feature_fraction: float = Field(0.5, gt=0, le=1)
    bagging_fraction: float = Field(0.5, gt=0, le=1)
    early_stopping_rounds: int | None = Field(None, ge=1)   # null: all n_estimators trees, no validation split
    validation_fraction: float = Field(0.1, gt=0, lt=0.5)
    n_jobs: int | None = Field(None, ge=1)     # null: cores available minus the host's load average, at least 1


class MLPConfig(StrictModel):
    """A small MLP (sklearn MLPClassifier, adam) trained epoch by epoch; early stopping on the AUROC of a
    patient-grouped validation split of the training fold's original images (``validation_fraction`` of the
    patients), keeping the best epoch's weights."""

    hidden: list[int] = Field(default_factory=lambda: [256], min_length=1)
    alpha: float = Field(1e-3, ge=0)
    max_iter: int = Field(200, ge=1)          # epochs at most
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(1e-3, gt=0)  # adam's initial step size
    patience: int = Field(10, ge=1)           # epochs without a better validation AUROC before stopping
    validation_fraction: float = Field(0.1, gt=0, lt=0.5)


class BootstrapConfig(StrictModel):
    """Patient-level (cluster) bootstrap of the pooled out-of-fold predictions."""

    n_boot: int = Field(1000, ge=100)
    level: float = Field(0.95, gt=0.5, lt=1)


class SelectionConfig(StrictModel):
    """Model selection (see ``benchmarks.selection``): the best mean AUROC, unless a model equivalent to it within
    ``margin`` (mean AUROC within the margin and, on every dataset/label, the 1 - 2 alpha paired interval of the
    AUROC difference inside +-margin) has a probe that sees fewer dimensions. ``correction`` adjusts the
    reported p-values of the paired tests (they do not decide the selection)."""

    margin: float = Field(0.02, gt=0, lt=0.5)   # equivalence margin, in AUROC
    alpha: float = Field(0.05, gt=0, lt=0.5)
    correction: Literal["holm", "bonferroni", "none"] = "holm"


class ProcedureIntervalConfig(StrictModel):
    """An interval for the *procedure* (refit on new training sets), not the fitted fold models: ``repeats``
    repetitions of the K-fold CV with new patient-grouped folds; over all repeats x K fold values, the mean
    +- t_(RK-1) sqrt((1/(RK) + n_test/n_train) SD^2) (Nadeau-Bengio corrected repeated CV, Bouckaert & Frank
    2004). Costs ``repeats`` x the main CV; results.csv rows with ``ci_method = repeated_cv``."""

    enabled: bool = False
    repeats: int = Field(5, ge=2)


class LabelNoiseConfig(StrictModel):
    """Label-noise study: flip a fraction of the training labels (test labels untouched)."""

    enabled: bool = False
    fractions: list[float] = Field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3, 0.4])

    @model_validator(mode="after")
    def _check(self) -> LabelNoiseConfig:
        bad = [f for f in self.fractions if not 0.0 <= f < 0.5]
        if bad:
            raise ValueError(f"label_noise.fractions must lie in [0, 0.5), got {bad}")
        return self


class TransferConfig(StrictModel):
    """Cross-dataset transfer: train on all of one dataset's sample, test on another's (per label)."""

    enabled: bool = False
    pairs: list[tuple[str, str]] | None = None  # (train, test); None = every ordered pair sharing a label


class ShortcutsConfig(StrictModel):
    """Confounder probes (view AP/PA, sex, age > 60, source), findings within view strata, the finding predicted
    by its confounder alone, and leave-one-source-out (``benchmarks.shortcuts``)."""

    enabled: bool = False


class EfficiencyConfig(StrictModel):
    """Data-efficiency curves: AUROC vs the share of training patients kept per fold (``benchmarks.efficiency``)."""

    enabled: bool = False
    fractions: list[float] = Field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0], min_length=1)
    repeats: int = Field(3, ge=1)   # seeded subsets per fraction below 1

    @model_validator(mode="after")
    def _check(self) -> EfficiencyConfig:
        bad = [f for f in self.fractions if not 0.0 < f <= 1.0]
        if bad:
            raise ValueError(f"efficiency.fractions must lie in (0, 1], got {bad}")
        return self


class BenchmarksConfig(StrictModel):
    """Everything `python -m benchmarks.run` does; see configs/README.md ('## benchmarks')."""

    seed: int = 0
    n_folds: int = Field(5, ge=2)
    datasets: list[str] | None = None          # None: every dataset in sample.parquet
    labels: list[str] | None = None            # None: every label in sample.parquet
    models: list[str] | None = None            # None: every model in the store
    train_augmentations: list[str] | None = None  # None: every augmentation the store has; "original" always
    pooling: Pooling = "mean"                  # for multi-token embeddings (N, T, D)
    pooling_per_model: dict[str, Pooling] = Field(default_factory=dict)
    probes: list[ProbeName] = Field(default_factory=lambda: ["logistic"], min_length=1)  # first = selection probe
    threshold: float = Field(0.5, gt=0, lt=1)  # probability cut-off for accuracy, F1, sensitivity, ...
    logistic: LogisticConfig = Field(default_factory=LogisticConfig)
    lightgbm: LightGBMConfig = Field(default_factory=LightGBMConfig)
    mlp: MLPConfig = Field(default_factory=MLPConfig)
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig)
    procedure_interval: ProcedureIntervalConfig = Field(default_factory=ProcedureIntervalConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    label_noise: LabelNoiseConfig = Field(default_factory=LabelNoiseConfig)
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    shortcuts: ShortcutsConfig = Field(default_factory=ShortcutsConfig)
    efficiency: EfficiencyConfig = Field(default_factory=EfficiencyConfig)

    @model_validator(mode="after")
    def _check(self) -> BenchmarksConfig:
        unknown = sorted(set(self.train_augmentations or ()) - set(AUGMENTATIONS))
        if unknown:
            raise ValueError(f"train_augmentations: unknown {unknown}; allowed {list(AUGMENTATIONS)}")
        if len(set(self.probes)) != len(self.probes):
            raise ValueError(f"probes: listed twice in {self.probes}")
        return self

    def pooling_for(self, model: str) -> Pooling:
        """Pooling used for ``model`` (per-model override, else the default)."""
        return self.pooling_per_model.get(model, self.pooling)


def load_benchmarks_config(path: str | Path) -> BenchmarksConfig:
    """Load the stage's own YAML, or the ``benchmarks`` section of a composed pipeline config."""
    return load_stage_config(path, BenchmarksConfig, section="benchmarks")
