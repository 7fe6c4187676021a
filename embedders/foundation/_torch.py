"""Common PyTorch plumbing for the foundation adapters: preprocessing by an :class:`ImageSpec`,
eval-mode/no-grad batched forward, device moves and optional float16 on GPU."""
from __future__ import annotations

import abc

import numpy as np
import torch

from embedders.base import Embedder, ModelInfo
from embedders.preprocess import ImageSpec


class TorchImageEmbedder(Embedder):
    """An embedder made of an ``ImageSpec`` and a torch module; subclasses implement :meth:`embed`."""

    def __init__(self, info: ModelInfo, spec: ImageSpec, model: torch.nn.Module,
                 *, weights_sha256: str | None) -> None:
        super().__init__()
        self.info = info
        self.spec = spec
        self.model = model.eval()
        self.weights_sha256 = weights_sha256

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """``(H, W)`` float32 [0, 1] -> ``(3, S, S)`` float32 (see ``info.resize``)."""
        return self.spec(image)

    def to(self, device: str | torch.device = "cpu", *, half: bool = False) -> TorchImageEmbedder:
        """Move the model to ``device`` (float16 only on CUDA when ``half``)."""
        super().to(device, half=half)
        self.model.to(device=self.device, dtype=torch.float16 if self.half else torch.float32)
        return self

    @torch.no_grad()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, *info.output_shape)`` float32 on CPU."""
        dtype = torch.float16 if self.half else torch.float32
        out = self.embed(batch.to(device=self.device, dtype=dtype))
        expected = (batch.shape[0], *self.info.output_shape)
        if tuple(out.shape) != expected:
            raise RuntimeError(f"{self.info.name}: model returned {tuple(out.shape)}, expected {expected}")
        return out.float().cpu()

    @abc.abstractmethod
    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """The model-specific forward + pooling on the device (``pixels``: ``(B, 3, S, S)``)."""
