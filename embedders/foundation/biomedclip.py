"""BiomedCLIP (microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224): the image tower.

The release is an open_clip checkpoint: ``open_clip_config.json`` (``timm_model_name``
``vit_base_patch16_224``, ``timm_pool ""`` = timm's default CLS-token pooling, ``timm_proj "linear"``,
``embed_dim`` 512, ``preprocess_cfg`` CLIP mean/std) and ``open_clip_pytorch_model.bin`` with timm-style
keys (``visual.trunk.blocks.N.attn.qkv.weight`` ...). We rebuild the trunk as ``transformers.ViTModel``
(LayerNorm eps 1e-6, no pooler), split the fused qkv into q/k/v, and apply ``visual.head.proj``
(Linear 768 -> 512, no bias) to the final-LayerNorm CLS token, as ``model.encode_image`` does (no L2
normalization). Preprocessing = open_clip's eval transform: torchvision ``Resize(224, bicubic)`` on the
shortest side + ``CenterCrop(224)`` (offset ``int(round(d / 2))``), ToTensor, Normalize.
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import torch
from transformers import ViTConfig, ViTModel

from embedders.base import ModelInfo, register
from embedders.foundation._torch import TorchImageEmbedder
from embedders.foundation._weights import WeightsMismatchError, load_strict, read_json, resolve_weights_dir, weights_checksum
from embedders.preprocess import CLIP_MEAN, CLIP_STD, ImageSpec

CHECKPOINT = "open_clip_pytorch_model.bin"
CONFIG = "open_clip_config.json"
# timm ViT variants open_clip may name, with their number of attention heads (not inferable from shapes).
TIMM_HEADS = {"vit_base_patch16_224": 12}

SPEC = ImageSpec(224, "shortest", "bicubic", CLIP_MEAN, CLIP_STD, crop_rounding="round")  # open_clip eval
INFO = ModelInfo(
    name="biomedclip", version="microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", output_shape=(512,),
    input_size=224, mean=CLIP_MEAN, std=CLIP_STD,
    resize=SPEC.describe(),
    weights_source="microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
    license="MIT; not gated", notes="encode_image: visual.head.proj(final-LN CLS token), not L2-normalized")

_BLOCK = {  # timm block sub-key -> transformers ViT layer sub-key (qkv is split separately)
    "norm1": "layernorm_before", "attn.proj": "attention.o_proj", "norm2": "layernorm_after",
    "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
}
_TOP = {
    "cls_token": "embeddings.cls_token", "pos_embed": "embeddings.position_embeddings",
    "patch_embed.proj": "embeddings.patch_embeddings.projection", "norm": "layernorm",
}


def open_clip_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """An open_clip checkpoint as a flat state dict (unwraps ``state_dict`` and a ``module.`` prefix)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if next(iter(state)).startswith("module."):
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


def timm_to_vit(trunk: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm ViT keys (``blocks.N.attn.qkv.weight`` ...) -> ``ViTModel`` keys; unknown keys raise."""
    out: dict[str, torch.Tensor] = {}
    for key, value in trunk.items():
        block = re.fullmatch(r"blocks\.(\d+)\.(.+)\.(weight|bias)", key)
        if block and block[2] == "attn.qkv":
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"layers.{block[1]}.attention.{name}.{block[3]}"] = part.clone()
        elif block and block[2] in _BLOCK:
            out[f"layers.{block[1]}.{_BLOCK[block[2]]}.{block[3]}"] = value
        else:
            stem, _, leaf = key.rpartition(".")
            if key in _TOP:
                out[_TOP[key]] = value
            elif stem in _TOP and leaf in ("weight", "bias"):
                out[f"{_TOP[stem]}.{leaf}"] = value
            else:
                raise WeightsMismatchError(f"unexpected key visual.trunk.{key} for a timm ViT trunk")
    return out


class BiomedClipVision(torch.nn.Module):
    """ViT trunk + linear projection: ``(B, 3, 224, 224)`` -> ``(B, 512)``."""

    def __init__(self, config: ViTConfig, embed_dim: int) -> None:
        super().__init__()
        self.trunk = ViTModel(config, add_pooling_layer=False)
        self.head = torch.nn.ModuleDict({"proj": torch.nn.Linear(config.hidden_size, embed_dim, bias=False)})

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        cls = self.trunk(pixel_values=pixels).last_hidden_state[:, 0]
        return self.head["proj"](cls)


def build_biomedclip(folder: Path) -> BiomedClipVision:
    """The image tower from an open_clip folder, loaded with strict key/shape matching."""
    cfg = read_json(folder / CONFIG)
    model_cfg = cfg["model_cfg"]
    vision = model_cfg["vision_cfg"]
    timm_name = vision.get("timm_model_name")
    if timm_name not in TIMM_HEADS or vision.get("timm_pool", "") != "" or vision.get("timm_proj") != "linear":
        raise WeightsMismatchError(f"{folder / CONFIG}: expected a timm ViT ({', '.join(TIMM_HEADS)}) with "
                                   f"timm_pool '' and timm_proj 'linear', got {vision}")
    state = open_clip_state_dict(folder / CHECKPOINT)
    trunk = timm_to_vit({k[len("visual.trunk."):]: v for k, v in state.items() if k.startswith("visual.trunk.")})
    head = {k[len("visual.head."):]: v for k, v in state.items() if k.startswith("visual.head.")}
    other_visual = [k for k in state if k.startswith("visual.") and not k.startswith(("visual.trunk.", "visual.head."))]
    if other_visual:
        raise WeightsMismatchError(f"{folder / CHECKPOINT}: unexpected image-tower keys {other_visual[:3]}")
    hidden = trunk["embeddings.cls_token"].shape[-1]
    patch = trunk["embeddings.patch_embeddings.projection.weight"].shape[-1]
    config = ViTConfig(
        hidden_size=hidden, num_hidden_layers=1 + max(int(k.split(".")[1]) for k in trunk if k.startswith("layers.")),
        num_attention_heads=TIMM_HEADS[timm_name], intermediate_size=trunk["layers.0.mlp.fc1.weight"].shape[0],
        image_size=vision["image_size"], patch_size=patch, layer_norm_eps=1e-6, qkv_bias=True, hidden_act="gelu",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BiomedClipVision(config, model_cfg["embed_dim"])
    state_dict = {f"trunk.{k}": v for k, v in trunk.items()} | {f"head.{k}": v for k, v in head.items()}
    load_strict(model, state_dict, source=folder / CHECKPOINT)
    return model.eval()


class BiomedClip(TorchImageEmbedder):
    """BiomedCLIP image embedding ``(512,)``."""

    def __init__(self, folder: Path) -> None:
        model = build_biomedclip(folder)
        preprocess = read_json(folder / CONFIG).get("preprocess_cfg", {})
        if preprocess.get("resize_mode", "shortest") != "shortest" or \
                preprocess.get("interpolation", "bicubic") not in ("bicubic", "bilinear"):
            raise WeightsMismatchError(f"{folder / CONFIG}: unsupported preprocess_cfg {preprocess}")
        spec = replace(SPEC, size=model.trunk.config.image_size, resample=preprocess.get("interpolation", "bicubic"),
                       mean=tuple(preprocess.get("mean", CLIP_MEAN)), std=tuple(preprocess.get("std", CLIP_STD)))
        info = replace(INFO, output_shape=(model.head["proj"].out_features,), input_size=spec.size, mean=spec.mean,
                       std=spec.std, resize=spec.describe())
        super().__init__(info, spec, model, weights_sha256=weights_checksum([folder / CHECKPOINT], model))

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels)


@register(INFO)
def biomedclip(weights: Path | None) -> BiomedClip:
    """BiomedCLIP image embedding (512)."""
    return BiomedClip(resolve_weights_dir(weights, INFO, required=[CONFIG, CHECKPOINT]))
