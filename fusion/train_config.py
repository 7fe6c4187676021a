"""Options of the optax training loop (:func:`fusion.train.fit`), shared by the VAE (``fusion.config``) and the
survival head (``fusion.survival.config``); both import it from here, so neither imports the other.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.config import StrictModel


class TrainConfig(StrictModel):
    """Generic optax training loop options (shared with the survival head)."""

    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_steps: int = Field(50, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    grad_clip: float = Field(1.0, gt=0)
    batch_size: int = Field(128, ge=1)
    max_epochs: int = Field(200, ge=1)
    patience: int = Field(20, ge=1)          # epochs without val improvement before stopping
    min_delta: float = Field(0.0, ge=0)
    checkpoint_every: int = Field(10, ge=1)  # epochs
