"""MedImageInsight (lion-ai/MedImageInsights, release ``2024.09.27``): the UniCL DaViT image encoder.

The release folder holds ``config.yaml`` (``IMAGE_ENCODER: davit_v1``, DIM_EMBED 256/512/1024/2048,
DEPTHS 1/1/9/1, WINDOW_SIZE 12, IMAGE_SIZE 480, ImageNet mean/std; ``UNICL_MODEL.DIM_PROJECTION`` 1024;
``TEST.CENTER_CROP`` false, ``AUG.INTERPOLATION`` bicubic) and ``vision_model/medimageinsigt-v1.0.0.pt``
(a safetensors file despite the name) with the whole UniCL model: ``image_encoder.*`` in DaViT naming
(``blocks.i.j.spatial_block.window_attn.fn.qkv`` ...), ``image_projection`` (2048 x 1024), and the text
tower (ignored). The DaViT stages are rebuilt with ``transformers.Florence2VisionBackbone`` (the same
DaViT blocks: depth-wise conv + window attention, depth-wise conv + channel-group attention) after a
strict key translation. ``encode_image``: mean over the final tokens -> LayerNorm(2048) -> @ projection
-> L2 normalization. Eval preprocessing: ``Resize((480, 480), bicubic)`` (no crop), ImageNet normalize.
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file
from transformers import Florence2VisionBackbone, Florence2VisionConfig

from embedders.base import ModelInfo, register
from embedders.foundation._torch import TorchImageEmbedder
from embedders.foundation._weights import (
    WeightsMismatchError,
    load_strict,
    missing_weights,
    resolve_weights_dir,
    weights_checksum,
)
from embedders.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImageSpec

RELEASE = "2024.09.27"
SPEC = ImageSpec(480, "squash", "bicubic", IMAGENET_MEAN, IMAGENET_STD)
INFO = ModelInfo(
    name="medimageinsight", version=f"lion-ai/MedImageInsights {RELEASE}", output_shape=(1024,), input_size=480,
    mean=IMAGENET_MEAN, std=IMAGENET_STD, resize=SPEC.describe(), weights_source="lion-ai/MedImageInsights",
    license="MIT per the lion-ai repackaging of Microsoft's MedImageInsight (check the model card); not gated",
    notes="UniCL encode_image: token mean -> LayerNorm -> projection -> L2 norm")

# Older UniCL/DaViT checkpoints use these names (the reference loader's remap table).
_LEGACY = {
    "conv_embeds": "convs", "main_blocks": "blocks",
    "0.cpe.0.proj": "spatial_block.conv1.fn.dw", "0.attn": "spatial_block.window_attn.fn",
    "0.cpe.1.proj": "spatial_block.conv2.fn.dw", "0.mlp": "spatial_block.ffn.fn.net",
    "1.cpe.0.proj": "channel_block.conv1.fn.dw", "1.attn": "channel_block.channel_attn.fn",
    "1.cpe.1.proj": "channel_block.conv2.fn.dw", "1.mlp": "channel_block.ffn.fn.net",
    "0.norm1": "spatial_block.window_attn.norm", "0.norm2": "spatial_block.ffn.norm",
    "1.norm1": "channel_block.channel_attn.norm", "1.norm2": "channel_block.ffn.norm",
}
# DaViT (reference code) -> Florence2VisionBackbone sub-module names inside one block.
_BLOCK = {
    "conv1.fn.dw": "conv1", "conv2.fn.dw": "conv2", "window_attn.norm": "norm1", "channel_attn.norm": "norm1",
    "window_attn.fn.qkv": "window_attn.qkv", "window_attn.fn.proj": "window_attn.proj",
    "channel_attn.fn.qkv": "channel_attn.qkv", "channel_attn.fn.proj": "channel_attn.proj",
    "ffn.norm": "norm2", "ffn.fn.net.fc1": "ffn.fc1", "ffn.fn.net.fc2": "ffn.fc2",
}


def release_folder(folder: Path) -> Path:
    """The folder with ``config.yaml``: ``folder`` itself or its ``2024.09.27`` release subfolder."""
    return folder if (folder / "config.yaml").is_file() else folder / RELEASE


def davit_to_florence(encoder: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DaViT ``image_encoder`` keys (prefix removed) -> ``Florence2VisionBackbone`` keys + ``norm.*``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in encoder.items():
        for old, new in _LEGACY.items():
            key = key.replace(old, new)
        conv = re.fullmatch(r"convs\.(\d+)\.(proj|norm)\.(weight|bias)", key)
        block = re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(spatial_block|channel_block)\.(.+)\.(weight|bias)", key)
        final = re.fullmatch(r"norms\.(weight|bias)", key)
        if conv:
            out[f"backbone.convs.{conv[1]}.{'conv' if conv[2] == 'proj' else 'norm'}.{conv[3]}"] = value
        elif block and block[4] in _BLOCK:
            out[f"backbone.blocks.{block[1]}.{block[2]}.{block[3]}.{_BLOCK[block[4]]}.{block[5]}"] = value
        elif final:
            out[f"norm.{final[1]}"] = value
        else:
            raise WeightsMismatchError(f"unexpected DaViT key image_encoder.{key}")
    return out


class MedImageInsightEncoder(torch.nn.Module):
    """DaViT -> token mean -> LayerNorm -> projection -> L2 norm: ``(B, 3, 480, 480)`` -> ``(B, 1024)``."""

    def __init__(self, config: Florence2VisionConfig, dim_projection: int) -> None:
        super().__init__()
        self.backbone = Florence2VisionBackbone(config)
        self.norm = torch.nn.LayerNorm(config.embed_dim[-1])
        self.image_projection = torch.nn.Parameter(torch.zeros(config.embed_dim[-1], dim_projection))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.backbone(pixels).last_hidden_state          # (B, C, H', W')
        pooled = self.norm(features.flatten(2).mean(dim=2))
        embedding = pooled @ self.image_projection
        return embedding / embedding.norm(dim=-1, keepdim=True)


def _florence_config(spec: dict, source: Path) -> Florence2VisionConfig:
    """Florence2VisionConfig from ``IMAGE_ENCODER.SPEC``; settings the backbone does not implement raise."""
    unsupported = {k: spec[k] for k in ("CONV_AT_ATTN", "CONV_AT_FFN", "DYNAMIC_SCALE", "STANDPARAM")
                   if k in spec and spec[k] is not True}
    if unsupported:
        raise WeightsMismatchError(f"{source}: unsupported DaViT settings {unsupported}")
    return Florence2VisionConfig(
        depths=list(spec["DEPTHS"]), embed_dim=list(spec["DIM_EMBED"]), num_heads=list(spec["NUM_HEADS"]),
        num_groups=list(spec["NUM_GROUPS"]), patch_size=list(spec["PATCH_SIZE"]),
        patch_stride=list(spec["PATCH_STRIDE"]), patch_padding=list(spec["PATCH_PADDING"]),
        patch_prenorm=list(spec["PATCH_PRENORM"]), window_size=spec.get("WINDOW_SIZE", 7),
        mlp_ratio=spec.get("MLP_RATIO", 4.0), drop_path_rate=0.0, qkv_bias=True)


def _checkpoint(folder: Path) -> Path:
    found = sorted(p for p in (folder / "vision_model").glob("*") if p.suffix in (".pt", ".safetensors"))
    if len(found) != 1:
        raise missing_weights(INFO, folder / "vision_model", "exactly one .pt/.safetensors checkpoint")
    return found[0]


def build_medimageinsight(folder: Path) -> tuple[MedImageInsightEncoder, ImageSpec, Path]:
    """Encoder, preprocessing and checkpoint path from a release folder (strict on image-encoder keys)."""
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    enc = cfg["IMAGE_ENCODER"]
    if enc.get("NAME") != "davit_v1" or cfg.get("TEST", {}).get("CENTER_CROP", False):
        raise WeightsMismatchError(f"{folder / 'config.yaml'}: expected davit_v1 without TEST.CENTER_CROP")
    height, width = enc["IMAGE_SIZE"]
    interpolation = cfg.get("AUG", {}).get("INTERPOLATION", "bicubic")
    if height != width or interpolation not in ("bicubic", "bilinear"):
        raise WeightsMismatchError(f"{folder / 'config.yaml'}: unsupported IMAGE_SIZE/INTERPOLATION")
    spec = ImageSpec(int(height), "squash", interpolation, tuple(enc["IMAGE_MEAN"]), tuple(enc["IMAGE_STD"]))
    path = _checkpoint(folder)
    raw = load_file(str(path))
    raw = {("image_encoder." + k[len("visual."):] if k.startswith("visual.") else k): v for k, v in raw.items()}
    if "vision_projection" in raw:
        raw["image_projection"] = raw.pop("vision_projection")
    state = davit_to_florence({k[len("image_encoder."):]: v for k, v in raw.items() if k.startswith("image_encoder.")})
    if "image_projection" in raw:
        state["image_projection"] = raw["image_projection"]
    model = MedImageInsightEncoder(_florence_config(enc["SPEC"], folder / "config.yaml"),
                                   cfg["UNICL_MODEL"]["DIM_PROJECTION"])
    load_strict(model, state, source=path)
    return model.eval(), spec, path


class MedImageInsight(TorchImageEmbedder):
    """MedImageInsight image embedding ``(1024,)``, unit L2 norm."""

    def __init__(self, folder: Path) -> None:
        model, spec, path = build_medimageinsight(folder)
        info = replace(INFO, output_shape=(model.image_projection.shape[1],), input_size=spec.size,
                       mean=spec.mean, std=spec.std, resize=spec.describe())
        super().__init__(info, spec, model, weights_sha256=weights_checksum([path], model))

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels)


@register(INFO)
def medimageinsight(weights: Path | None) -> MedImageInsight:
    """MedImageInsight image embedding (1024, L2-normalized)."""
    root = resolve_weights_dir(weights, INFO, required=[f"config.yaml|{RELEASE}/config.yaml"])
    folder = release_folder(root)
    return MedImageInsight(folder)
