"""RAD-DINO (microsoft/rad-dino): DINOv2 ViT-B/14 trained on chest X-rays.

Official use (model card): ``AutoImageProcessor`` (BitImageProcessor: shortest side 518 bicubic,
centre crop 518, mean 0.5307 / std 0.2583) then ``Dinov2Model``; the image embedding is
``pooler_output`` (the final-LayerNorm CLS token), patch tokens are ``last_hidden_state[:, 1:]``.
Weights load through ``Dinov2Model.from_pretrained`` (the HF loading path, safetensors) and any
missing / unexpected / mis-shaped key is an error.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from transformers import Dinov2Model

from embedders.base import ModelInfo, register
from embedders.foundation._torch import TorchImageEmbedder
from embedders.foundation._weights import WeightsMismatchError, resolve_weights_dir, safetensors_files, weights_checksum
from embedders.preprocess import ImageSpec, folder_image_spec

SPEC = ImageSpec(size=518, mode="shortest", resample="bicubic", mean=(0.5307,) * 3, std=(0.2583,) * 3,
                 crop_rounding="floor")
_COMMON = dict(version="microsoft/rad-dino", input_size=SPEC.size, mean=SPEC.mean, std=SPEC.std,
               resize=SPEC.describe(), weights_source="microsoft/rad-dino",
               license="MIT (earlier revisions: MSRLA research licence); not gated")
CLS_INFO = ModelInfo(name="rad-dino", output_shape=(768,), notes="pooler_output (LayerNorm CLS token)", **_COMMON)
TOKENS_INFO = ModelInfo(name="rad-dino-tokens", output_shape=(37 * 37, 768), token_names=("patch",),
                        notes="last_hidden_state[:, 1:] (LayerNorm patch tokens, 37x37 grid row-major)",
                        **_COMMON)


def load_rad_dino(folder: Path) -> Dinov2Model:
    """``Dinov2Model`` from a rad-dino folder (config.json + model.safetensors), strict on keys."""
    model, report = Dinov2Model.from_pretrained(str(folder), output_loading_info=True, dtype=torch.float32)
    bad = {k: sorted(v) for k, v in report.items() if k != "error_msgs" and v}
    if bad or report.get("error_msgs"):
        raise WeightsMismatchError(f"{folder}: checkpoint does not match Dinov2Model: {bad or report['error_msgs']}")
    return model.eval()


class RadDino(TorchImageEmbedder):
    """RAD-DINO: ``(3, 518, 518)`` -> CLS ``(768,)`` or patch tokens ``(1369, 768)``."""

    def __init__(self, folder: Path, *, tokens: bool) -> None:
        model = load_rad_dino(folder)
        cfg = model.config
        spec = folder_image_spec(folder, SPEC)
        grid = spec.size // cfg.patch_size
        base = TOKENS_INFO if tokens else CLS_INFO
        shape = (grid * grid, cfg.hidden_size) if tokens else (cfg.hidden_size,)
        info = replace(base, output_shape=shape, input_size=spec.size, mean=spec.mean, std=spec.std,
                       resize=spec.describe())
        super().__init__(info, spec, model, weights_sha256=weights_checksum(safetensors_files(folder), model))
        self.tokens = tokens

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixels)
        return out.last_hidden_state[:, 1:] if self.tokens else out.pooler_output


def _folder(weights: Path | None, info: ModelInfo) -> Path:
    return resolve_weights_dir(weights, info, required=["config.json", "model.safetensors"])


@register(CLS_INFO)
def rad_dino(weights: Path | None) -> RadDino:
    """RAD-DINO CLS embedding (768)."""
    return RadDino(_folder(weights, CLS_INFO), tokens=False)


@register(TOKENS_INFO)
def rad_dino_tokens(weights: Path | None) -> RadDino:
    """RAD-DINO patch tokens (1369 x 768)."""
    return RadDino(_folder(weights, TOKENS_INFO), tokens=True)
