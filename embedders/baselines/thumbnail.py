"""The "raw pixels" baseline: the whole radiograph shrunk to a ``side`` x ``side`` thumbnail, flattened.

Resizing is area averaging (``F.interpolate(mode="area")``, i.e. adaptive average pooling), so each value
is the mean density of one cell of a regular grid over the image: a coarse density map with no learned weights and no hand-chosen
features. With the default ``side`` = 32 the embedding has 1024 dims (the size of MedImageInsight's),
which makes it the natural floor for any foundation model to beat.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..base import Embedder, ModelInfo, register

DEFAULT_SIDE = 32


class ThumbnailEmbedder(Embedder):
    """Image -> ``(side * side,)`` float32 grey values in [0, 1] (row-major)."""

    def __init__(self, info: ModelInfo) -> None:
        super().__init__()
        self.info = info

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """``(H, W)`` in [0, 1] -> ``(side, side)`` cell means."""
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
        side = self.info.input_size
        return F.interpolate(x, size=(side, side), mode="area")[0, 0]

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, side, side)`` -> ``(B, side * side)``."""
        return batch.reshape(len(batch), -1).float()


THUMBNAIL = ModelInfo(
    name="thumbnail", version="1", output_shape=(DEFAULT_SIDE * DEFAULT_SIDE,), input_size=DEFAULT_SIDE,
    resize=f"area average to {DEFAULT_SIDE}x{DEFAULT_SIDE}, flattened", weights_source="none (raw pixels)",
    license="Apache-2.0", notes="downsampled-image baseline; option side sets the grid",
)


@register(THUMBNAIL)
def thumbnail(weights: Path | None = None, *, side: int = DEFAULT_SIDE) -> ThumbnailEmbedder:
    """The downsampled-pixels baseline (no weights); ``side`` x ``side`` grid, ``side**2`` dims."""
    if weights is not None:
        raise ValueError("the thumbnail embedder takes no weights; drop --weights / `weights:` for it")
    if side < 2:
        raise ValueError(f"thumbnail side must be >= 2, got {side}")
    return ThumbnailEmbedder(replace(THUMBNAIL, output_shape=(side * side,), input_size=side,
                                     resize=f"area average to {side}x{side}, flattened"))
