"""RAD-DINO, MedSigLIP, MedGemma-vision and CheXagent: tiny random models of the real architectures, saved
in each release's on-disk layout, loaded through ``get_embedder`` (strict), at the real input sizes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as tf
from safetensors.torch import load_file, save_file

from embedders.base import get_embedder
from embedders.foundation._weights import WeightsMismatchError, tensors_sha256

TINY_VIT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=14)


def _check(embedder, batch: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    out = embedder.forward(batch)
    assert out.dtype == torch.float32 and tuple(out.shape) == (batch.shape[0], *shape)
    assert tuple(embedder.info.output_shape) == shape
    assert torch.isfinite(out).all() and out.std() > 0
    torch.testing.assert_close(embedder.forward(batch), out, rtol=0, atol=0)  # deterministic
    return out


# --- RAD-DINO --------------------------------------------------------------------------------------------

RAD_DINO_PREPROCESSOR = {
    "crop_size": {"height": 518, "width": 518}, "do_center_crop": True, "do_convert_rgb": True, "do_normalize": True,
    "do_rescale": True, "do_resize": True, "image_mean": [0.5307] * 3, "image_processor_type": "BitImageProcessor",
    "image_std": [0.2583] * 3, "resample": 3, "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 518}}


@pytest.fixture(scope="module")
def rad_dino_dir(tmp_path_factory: pytest.TempPathFactory, ckpt) -> tuple[Path, tf.Dinov2Model]:
    folder = tmp_path_factory.mktemp("rad-dino")
    model = ckpt.seeded(tf.Dinov2Model(tf.Dinov2Config(image_size=518, layer_norm_eps=1e-6, **{
        k: v for k, v in TINY_VIT.items() if k != "intermediate_size"}, mlp_ratio=2)))
    model.save_pretrained(folder)  # HF writes the release's (v4) key names, e.g. attention.attention.query
    ckpt.write_json(folder / "preprocessor_config.json", RAD_DINO_PREPROCESSOR)
    return folder, model


def test_rad_dino_cls_and_tokens(rad_dino_dir, xray: np.ndarray) -> None:
    folder, model = rad_dino_dir
    assert any("attention.attention.query" in k for k in load_file(str(folder / "model.safetensors")))
    cls = get_embedder("rad-dino", weights=folder)
    batch = torch.stack([cls.preprocess(xray), cls.preprocess(np.flipud(xray).copy())])
    out = _check(cls, batch, (32,))
    with torch.no_grad():
        ref = model(pixel_values=batch)
    torch.testing.assert_close(out, ref.pooler_output, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, ref.last_hidden_state[:, 0], rtol=1e-5, atol=1e-5)  # LN'd CLS token
    tokens = _check(get_embedder("rad-dino-tokens", weights=folder), batch, (37 * 37, 32))
    torch.testing.assert_close(tokens, ref.last_hidden_state[:, 1:], rtol=1e-5, atol=1e-5)
    assert cls.weights_sha256 and len(cls.weights_sha256) == 64


def test_rad_dino_strict_keys(rad_dino_dir, tmp_path: Path) -> None:
    folder, _ = rad_dino_dir
    state = load_file(str(folder / "model.safetensors"))
    for name, broken in {"missing": {k: v for k, v in state.items() if "layer.1.mlp.fc2" not in k},
                         "extra": state | {"encoder.layer.9.norm1.weight": torch.ones(32)}}.items():
        target = tmp_path / name
        target.mkdir()
        (target / "config.json").write_text((folder / "config.json").read_text())
        save_file(broken, str(target / "model.safetensors"), metadata={"format": "pt"})
        with pytest.raises(WeightsMismatchError):
            get_embedder("rad-dino", weights=target)


def test_hf_cache_snapshot_is_found(rad_dino_dir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = rad_dino_dir
    repo = tmp_path / "hub" / "models--microsoft--rad-dino"
    snapshot = repo / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        (snapshot / name).symlink_to(folder / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert get_embedder("rad-dino").info.output_shape == (32,)        # default cache location
    assert get_embedder("rad-dino", weights=repo).info.output_shape == (32,)  # a cache repo folder


# --- MedSigLIP / MedGemma ---------------------------------------------------------------------------------

def test_medsiglip_attention_pooled(tmp_path: Path, ckpt, xray: np.ndarray) -> None:
    config = tf.SiglipConfig(vision_config=TINY_VIT | {"image_size": 448}, text_config={
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "vocab_size": 64, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0})
    model = ckpt.seeded(tf.SiglipModel(config))
    model.save_pretrained(tmp_path)  # the full dual-tower release: vision_model.* and text_model.*
    ckpt.write_json(tmp_path / "preprocessor_config.json", {
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5] * 3,
        "image_processor_type": "SiglipImageProcessor", "image_std": [0.5] * 3, "resample": 3,
        "rescale_factor": 0.00392156862745098, "size": {"height": 448, "width": 448}})
    embedder = get_embedder("medsiglip", weights=tmp_path)
    batch = embedder.preprocess(xray)[None]
    out = _check(embedder, batch, (32,))
    with torch.no_grad():
        ref = model.get_image_features(pixel_values=batch).pooler_output
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_medgemma_vision_token_mean(tmp_path: Path, ckpt, xray: np.ndarray) -> None:
    config = tf.Gemma3Config(vision_config=TINY_VIT | {"image_size": 896, "vision_use_head": False}, text_config={
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 300}, mm_tokens_per_image=16)
    model = ckpt.seeded(tf.Gemma3ForConditionalGeneration(config))
    tower = model.model.vision_tower
    # the release layout: vision_tower.vision_model.*, multi_modal_projector.*, language_model.* in shards
    state = {f"vision_tower.vision_model.{k}": v for k, v in tower.state_dict().items()}
    state |= {f"multi_modal_projector.{k}": v for k, v in model.model.multi_modal_projector.state_dict().items()}
    state |= {"language_model.model.embed_tokens.weight": torch.zeros(300, 32)}
    ckpt.write_sharded(tmp_path, state, shards=3)
    ckpt.write_json(tmp_path / "config.json", config.to_dict())
    embedder = get_embedder("medgemma-vision", weights=tmp_path)
    batch = embedder.preprocess(xray)[None]
    out = _check(embedder, batch, (32,))
    with torch.no_grad():
        ref = tower(pixel_values=batch).last_hidden_state
    assert ref.shape[1] == 64 * 64
    torch.testing.assert_close(out, ref.mean(dim=1), rtol=1e-5, atol=1e-5)
    # sharded release: the checksum covers the vision tensors in use, and changes with any of them
    assert embedder.weights_sha256 == "tensors:" + tensors_sha256(embedder.model)
    assert get_embedder("medgemma-vision", weights=tmp_path).weights_sha256 == embedder.weights_sha256
    state["vision_tower.vision_model.post_layernorm.bias"] = state["vision_tower.vision_model.post_layernorm.bias"] + 1e-3
    ckpt.write_sharded(tmp_path, state, shards=3)
    changed = get_embedder("medgemma-vision", weights=tmp_path).weights_sha256
    assert changed.startswith("tensors:") and changed != embedder.weights_sha256
    state["language_model.model.embed_tokens.weight"] = torch.ones(300, 32)   # not read: same checksum
    ckpt.write_sharded(tmp_path, state, shards=3)
    assert get_embedder("medgemma-vision", weights=tmp_path).weights_sha256 == changed


def test_siglip_image_size_mismatch_is_an_error(tmp_path: Path, ckpt) -> None:
    config = tf.SiglipConfig(vision_config=TINY_VIT | {"image_size": 224}, text_config={
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 64})
    tf.SiglipModel(config).save_pretrained(tmp_path)
    with pytest.raises(WeightsMismatchError, match="image_size"):
        get_embedder("medsiglip", weights=tmp_path)


# --- CheXagent ---------------------------------------------------------------------------------------------

def _chexagent_release(folder: Path, ckpt, *, instruct_layout: bool) -> tf.Blip2ForConditionalGeneration:
    vision = TINY_VIT | {"image_size": 448}
    qformer = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
               "vocab_size": 64, "encoder_hidden_size": 32}
    text = {"model_type": "opt", "hidden_size": 32, "ffn_dim": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "vocab_size": 64, "word_embed_proj_dim": 32}
    model = ckpt.seeded(tf.Blip2ForConditionalGeneration(tf.Blip2Config(
        vision_config=vision, qformer_config=qformer, text_config=text, num_query_tokens=8)))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("language_model.")}
    state["language_model.model.embed_tokens.weight"] = torch.zeros(64, 32)
    if instruct_layout:  # InstructBLIP-style Q-Former: instruction-text embeddings + its LayerNorm
        for suffix in ("weight", "bias"):
            state[f"qformer.embeddings.layernorm.{suffix}"] = state.pop(f"qformer.layernorm.{suffix}")
        state["qformer.embeddings.word_embeddings.weight"] = torch.zeros(64, 32)
        state["qformer.embeddings.position_embeddings.weight"] = torch.zeros(16, 32)
    ckpt.write_sharded(folder, state, shards=2)
    ckpt.write_json(folder / "config.json", {
        "architectures": ["CheXagentForConditionalGeneration"], "model_type": "chexagent", "num_query_tokens": 8,
        "vision_config": vision | {"model_type": "chexagent_vision_model"},
        "qformer_config": qformer | {"model_type": "chexagent_qformer"}, "text_config": text})
    return model


@pytest.mark.parametrize("instruct_layout", [False, True])
def test_chexagent_qformer_tokens(tmp_path: Path, ckpt, xray: np.ndarray, instruct_layout: bool) -> None:
    model = _chexagent_release(tmp_path, ckpt, instruct_layout=instruct_layout)
    embedder = get_embedder("chexagent", weights=tmp_path)
    batch = embedder.preprocess(xray)[None]
    tokens = _check(embedder, batch, (8, 32))
    with torch.no_grad():
        image_embeds = model.vision_model(pixel_values=batch).last_hidden_state
        ref = model.qformer(query_embeds=model.query_tokens, encoder_hidden_states=image_embeds).last_hidden_state
    torch.testing.assert_close(tokens, ref, rtol=1e-5, atol=1e-5)
    pooled = _check(get_embedder("chexagent-pooled", weights=tmp_path), batch, (32,))
    torch.testing.assert_close(pooled, ref.mean(dim=1), rtol=1e-5, atol=1e-5)
