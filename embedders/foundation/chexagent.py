"""CheXagent (StanfordAIMI/CheXagent-8b): the BLIP-2 style image encoder + Q-Former.

The release (``CheXagentForConditionalGeneration``, HF-BLIP-2 module layout) holds ``vision_model.*``
(EVA-style ViT-g/14 at 448 px, 40 layers, hidden 1408), ``query_tokens`` (1, 128, 768) and ``qformer.*``;
its images go through ``BlipImageProcessor`` (448x448 bicubic resize, no crop, CLIP mean/std). We rebuild
the two towers as ``Blip2VisionModel`` and ``Blip2QFormerModel`` from ``config.json`` and read only those
tensors from the sharded safetensors (the Mistral LM is never loaded). The Q-Former attends from the 128
learned queries to the post-LayerNorm patch tokens; its ``last_hidden_state`` (128 x 768) is the
``chexagent`` embedding, its token mean the ``chexagent-pooled`` one (our pooling choice).

If the checkpoint carries an instruction-text embedding block (``qformer.embeddings.*``, InstructBLIP
layout), its LayerNorm is the one applied to the queries and is used as ``layernorm``; the word/position
embeddings are not needed for image-only queries and are reported in the log.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch
from transformers import Blip2QFormerConfig, Blip2QFormerModel, Blip2VisionConfig, Blip2VisionModel

from embedders.base import ModelInfo, register
from embedders.foundation._torch import TorchImageEmbedder
from embedders.foundation._weights import (
    WeightsMismatchError,
    load_strict,
    read_json,
    read_safetensors,
    resolve_weights_dir,
    safetensors_files,
    weights_checksum,
)
from embedders.preprocess import CLIP_MEAN, CLIP_STD, ImageSpec, folder_image_spec

log = logging.getLogger(__name__)

SPEC = ImageSpec(448, "squash", "bicubic", CLIP_MEAN, CLIP_STD)
_COMMON = dict(version="StanfordAIMI/CheXagent-8b", input_size=448, mean=CLIP_MEAN, std=CLIP_STD,
               resize=SPEC.describe(), weights_source="StanfordAIMI/CheXagent-8b",
               license="CC-BY-NC-4.0 (research, non-commercial); not gated")
TOKENS_INFO = ModelInfo(name="chexagent", output_shape=(128, 768), token_names=("query",),
                        notes="Q-Former last_hidden_state: 128 query tokens x 768", **_COMMON)
POOLED_INFO = ModelInfo(name="chexagent-pooled", output_shape=(768,),
                        notes="mean over the 128 Q-Former query tokens", **_COMMON)
_DROP = ("model_type", "architectures", "transformers_version", "_name_or_path")
_TEXT_EMBEDDINGS = ("qformer.embeddings.word_embeddings.", "qformer.embeddings.position_embeddings.",
                    "qformer.embeddings.position_ids")


class CheXagentEncoder(torch.nn.Module):
    """Vision tower -> Q-Former: ``(B, 3, 448, 448)`` -> ``(B, 128, 768)``."""

    def __init__(self, vision: Blip2VisionConfig, qformer: Blip2QFormerConfig, num_query_tokens: int) -> None:
        super().__init__()
        self.vision_model = Blip2VisionModel(vision)
        self.query_tokens = torch.nn.Parameter(torch.zeros(1, num_query_tokens, qformer.hidden_size))
        self.qformer = Blip2QFormerModel(qformer)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        image_embeds = self.vision_model(pixel_values=pixels).last_hidden_state
        queries = self.query_tokens.expand(image_embeds.shape[0], -1, -1)
        mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        return self.qformer(query_embeds=queries, encoder_hidden_states=image_embeds,
                            encoder_attention_mask=mask).last_hidden_state


def _sub_config(config: dict, key: str) -> dict:
    return {k: v for k, v in config.get(key, {}).items() if k not in _DROP}


def build_chexagent(folder: Path) -> tuple[CheXagentEncoder, list[Path]]:
    """The vision + Q-Former part of a CheXagent folder, strict on every tensor it needs."""
    config = read_json(folder / "config.json")
    vision = Blip2VisionConfig(**_sub_config(config, "vision_config"))
    qformer = Blip2QFormerConfig(**_sub_config(config, "qformer_config"))
    qformer.encoder_hidden_size = vision.hidden_size
    model = CheXagentEncoder(vision, qformer, config.get("num_query_tokens", 32))
    files = safetensors_files(folder)
    state = read_safetensors(files, prefixes=("vision_model.", "qformer.", "query_tokens"))
    text_only = [k for k in state if k.startswith(_TEXT_EMBEDDINGS)]
    if text_only:
        log.info("CheXagent: ignoring %d instruction-text embedding tensors of the Q-Former", len(text_only))
    state = {k: v for k, v in state.items() if k not in text_only}
    for suffix in ("weight", "bias"):
        legacy = state.pop(f"qformer.embeddings.layernorm.{suffix}", None)
        if legacy is not None:
            if f"qformer.layernorm.{suffix}" in state:
                raise WeightsMismatchError(f"{folder}: both qformer.layernorm and qformer.embeddings.layernorm")
            state[f"qformer.layernorm.{suffix}"] = legacy
    load_strict(model, state, source=folder)
    return model.eval(), files


class CheXagent(TorchImageEmbedder):
    """CheXagent Q-Former tokens ``(128, 768)`` or their mean ``(768,)``."""

    def __init__(self, folder: Path, info: ModelInfo, *, pooled: bool) -> None:
        model, files = build_chexagent(folder)
        spec = folder_image_spec(folder, SPEC)
        if spec.size != model.vision_model.config.image_size:
            raise WeightsMismatchError(f"{folder}: preprocessing size {spec.size} != vision image_size "
                                       f"{model.vision_model.config.image_size}")
        tokens, width = model.query_tokens.shape[1:]
        info = replace(info, output_shape=(width,) if pooled else (tokens, width), input_size=spec.size,
                       mean=spec.mean, std=spec.std, resize=spec.describe())
        super().__init__(info, spec, model, weights_sha256=weights_checksum(files, model))
        self.pooled = pooled

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        tokens = self.model(pixels)
        return tokens.mean(dim=1) if self.pooled else tokens


def _folder(weights: Path | None, info: ModelInfo) -> Path:
    return resolve_weights_dir(weights, info,
                               required=["config.json", "model.safetensors|model.safetensors.index.json"])


@register(TOKENS_INFO)
def chexagent(weights: Path | None) -> CheXagent:
    """CheXagent-8b Q-Former tokens (128 x 768)."""
    return CheXagent(_folder(weights, TOKENS_INFO), TOKENS_INFO, pooled=False)


@register(POOLED_INFO)
def chexagent_pooled(weights: Path | None) -> CheXagent:
    """CheXagent-8b Q-Former tokens averaged (768)."""
    return CheXagent(_folder(weights, POOLED_INFO), POOLED_INFO, pooled=True)
