"""SigLIP-family image towers: MedSigLIP (google/medsiglip-448) and MedGemma's vision tower (google/medgemma-4b-it).

* ``medsiglip``: ``SiglipVisionModel`` with the attention-pooling head; the embedding is
  ``pooler_output`` (what ``SiglipModel.get_image_features`` returns, not L2-normalized).
  Preprocessing = ``SiglipImageProcessor`` (448x448 resize without crop, bicubic, mean/std 0.5).
* ``medgemma-vision``: the 896-px SigLIP tower of MedGemma (no pooling head); Gemma 3 feeds
  ``last_hidden_state`` (4096 x 1152, after post-LayerNorm) to its projector, we store the token mean
  (1152). Preprocessing = ``Gemma3ImageProcessor`` (896x896, bilinear, mean/std 0.5, no pan-and-scan).

Both read ``preprocessor_config.json`` when the release ships one, and load the vision weights from
``model.safetensors`` (or the sharded index) with strict key/shape matching; the text tower and the
language model are never read.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from transformers import SiglipVisionConfig, SiglipVisionModel

from embedders.base import ModelInfo, register
from embedders.foundation._torch import TorchImageEmbedder
from embedders.foundation._weights import (
    WeightsMismatchError,
    load_strict,
    read_json,
    read_safetensors,
    resolve_weights_dir,
    safetensors_files,
    strip_prefix,
    weights_checksum,
)
from embedders.preprocess import HALF, ImageSpec, folder_image_spec

_HAI_DEF = "Health AI Developer Foundations terms of use; gated on Hugging Face (accept the terms first)"
MEDSIGLIP_SPEC = ImageSpec(448, "squash", "bicubic", HALF, HALF)
MEDGEMMA_SPEC = ImageSpec(896, "squash", "bilinear", HALF, HALF)
MEDSIGLIP_INFO = ModelInfo(
    name="medsiglip", version="google/medsiglip-448", output_shape=(1152,), input_size=448, mean=HALF, std=HALF,
    resize=MEDSIGLIP_SPEC.describe(), weights_source="google/medsiglip-448", license=_HAI_DEF,
    notes="SiglipVisionModel pooler_output (attention-pooling head) = get_image_features, not normalized")
MEDGEMMA_INFO = ModelInfo(
    name="medgemma-vision", version="google/medgemma-4b-it", output_shape=(1152,), input_size=896, mean=HALF,
    std=HALF, resize=MEDGEMMA_SPEC.describe(), weights_source="google/medgemma-4b-it", license=_HAI_DEF,
    notes="mean over the 4096 post-LayerNorm tokens of the SigLIP vision tower (no projector)")

# Where the vision tower lives in each release's safetensors (most specific first; the original layout,
# then what transformers 5 writes).
_TOWER_PREFIXES = {
    "medsiglip": ("vision_model.",),
    "medgemma-vision": ("vision_tower.vision_model.", "model.vision_tower.vision_model.", "vision_tower."),
}


def build_siglip_tower(folder: Path, info: ModelInfo, *, use_head: bool) -> tuple[SiglipVisionModel, list[Path]]:
    """``SiglipVisionModel`` from ``config.json``'s ``vision_config`` and the tower's tensors (strict)."""
    vision_cfg = {k: v for k, v in read_json(folder / "config.json").get("vision_config", {}).items()
                  if k not in ("model_type", "architectures", "transformers_version")}
    if not vision_cfg:
        raise WeightsMismatchError(f"{folder / 'config.json'}: no vision_config (is this {info.weights_source}?)")
    config = SiglipVisionConfig(**vision_cfg)
    config.vision_use_head = use_head
    files = safetensors_files(folder)
    prefixes = _TOWER_PREFIXES[info.name]
    raw = read_safetensors(files, prefixes=prefixes)
    prefix = next((p for p in prefixes if any(k.startswith(p) for k in raw)), prefixes[0])
    state = strip_prefix(raw, prefix)  # transformers-5 SiglipVisionModel keys have no vision_model. level
    model = SiglipVisionModel(config)
    load_strict(model, state, source=folder)
    return model.eval(), files


class SiglipTower(TorchImageEmbedder):
    """MedSigLIP (pooled) or MedGemma (token mean) image embedding ``(1152,)``."""

    def __init__(self, folder: Path, info: ModelInfo, default_spec: ImageSpec, *, pooled: bool) -> None:
        model, files = build_siglip_tower(folder, info, use_head=pooled)
        spec = folder_image_spec(folder, default_spec)
        if spec.size != model.config.image_size:
            raise WeightsMismatchError(f"{folder}: preprocessing size {spec.size} != vision_config.image_size "
                                       f"{model.config.image_size} (wrong weights for {info.name}?)")
        info = replace(info, output_shape=(model.config.hidden_size,), input_size=spec.size, mean=spec.mean,
                       std=spec.std, resize=spec.describe())
        super().__init__(info, spec, model, weights_sha256=weights_checksum(files, model))
        self.pooled = pooled

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixels)
        return out.pooler_output if self.pooled else out.last_hidden_state.mean(dim=1)


@register(MEDSIGLIP_INFO)
def medsiglip(weights: Path | None) -> SiglipTower:
    """MedSigLIP-448 image embedding (1152, attention-pooled)."""
    folder = resolve_weights_dir(weights, MEDSIGLIP_INFO, required=["config.json", "model.safetensors"])
    return SiglipTower(folder, MEDSIGLIP_INFO, MEDSIGLIP_SPEC, pooled=True)


@register(MEDGEMMA_INFO)
def medgemma_vision(weights: Path | None) -> SiglipTower:
    """MedGemma-4b vision-tower embedding (1152, mean of tokens)."""
    folder = resolve_weights_dir(weights, MEDGEMMA_INFO,
                                 required=["config.json", "model.safetensors|model.safetensors.index.json"])
    return SiglipTower(folder, MEDGEMMA_INFO, MEDGEMMA_SPEC, pooled=False)
