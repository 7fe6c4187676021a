"""BiomedCLIP (open_clip/timm keys) and MedImageInsight (UniCL/DaViT keys): tiny checkpoints written with the
release's key names, loaded through ``get_embedder`` (strict), compared with a functional forward written
here from the reference architectures (so a swapped key mapping cannot pass); plus the missing-weights and
missing-TensorFlow errors of every adapter (TensorFlow hidden when installed)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import save_file

from embedders import base
from embedders.base import available_models, get_embedder
from embedders.foundation._weights import MissingDependencyError, MissingWeightsError, WeightsMismatchError


def _rand(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=generator) * 0.2


# --- BiomedCLIP ------------------------------------------------------------------------------------------

D, LAYERS, HEADS, EMBED = 48, 2, 12, 16   # vit_base_patch16_224 has 12 heads; width shrunk to 48


def _timm_open_clip_state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = "visual.trunk."
    state = {t + "cls_token": _rand(g, 1, 1, D), t + "pos_embed": _rand(g, 1, 197, D),
             t + "patch_embed.proj.weight": _rand(g, D, 3, 16, 16), t + "patch_embed.proj.bias": _rand(g, D),
             t + "norm.weight": 1 + _rand(g, D), t + "norm.bias": _rand(g, D),
             "visual.head.proj.weight": _rand(g, EMBED, D),
             "text.transformer.embeddings.word_embeddings.weight": _rand(g, 10, 8), "logit_scale": torch.ones(())}
    for i in range(LAYERS):
        b = f"{t}blocks.{i}."
        state |= {b + "norm1.weight": 1 + _rand(g, D), b + "norm1.bias": _rand(g, D),
                  b + "attn.qkv.weight": _rand(g, 3 * D, D), b + "attn.qkv.bias": _rand(g, 3 * D),
                  b + "attn.proj.weight": _rand(g, D, D), b + "attn.proj.bias": _rand(g, D),
                  b + "norm2.weight": 1 + _rand(g, D), b + "norm2.bias": _rand(g, D),
                  b + "mlp.fc1.weight": _rand(g, 4 * D, D), b + "mlp.fc1.bias": _rand(g, 4 * D),
                  b + "mlp.fc2.weight": _rand(g, D, 4 * D), b + "mlp.fc2.bias": _rand(g, D)}
    return state


def _timm_reference(s: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """timm VisionTransformer (global_pool='token', pre-norm blocks, eps 1e-6) + open_clip linear head."""
    t = "visual.trunk."
    ln = lambda h, n: F.layer_norm(h, (D,), s[n + ".weight"], s[n + ".bias"], eps=1e-6)  # noqa: E731
    x = F.conv2d(x, s[t + "patch_embed.proj.weight"], s[t + "patch_embed.proj.bias"], stride=16).flatten(2).mT
    x = torch.cat([s[t + "cls_token"].expand(x.shape[0], -1, -1), x], dim=1) + s[t + "pos_embed"]
    batch, tokens, _ = x.shape
    for i in range(LAYERS):
        b = f"{t}blocks.{i}."
        qkv = F.linear(ln(x, b + "norm1"), s[b + "attn.qkv.weight"], s[b + "attn.qkv.bias"])
        q, k, v = qkv.reshape(batch, tokens, 3, HEADS, D // HEADS).permute(2, 0, 3, 1, 4)
        attn = ((q * (D // HEADS) ** -0.5) @ k.mT).softmax(-1) @ v
        merged = attn.transpose(1, 2).reshape(batch, tokens, D)
        x = x + F.linear(merged, s[b + "attn.proj.weight"], s[b + "attn.proj.bias"])
        h = F.gelu(F.linear(ln(x, b + "norm2"), s[b + "mlp.fc1.weight"], s[b + "mlp.fc1.bias"]))
        x = x + F.linear(h, s[b + "mlp.fc2.weight"], s[b + "mlp.fc2.bias"])
    return F.linear(ln(x, t + "norm")[:, 0], s["visual.head.proj.weight"])


def _write_biomedclip(folder: Path, state: dict[str, torch.Tensor], ckpt) -> None:
    torch.save(state, folder / "open_clip_pytorch_model.bin")
    ckpt.write_json(folder / "open_clip_config.json", {
        "model_cfg": {"embed_dim": EMBED, "vision_cfg": {"timm_model_name": "vit_base_patch16_224",
                      "timm_model_pretrained": False, "timm_pool": "", "timm_proj": "linear", "image_size": 224},
                      "text_cfg": {"hf_model_name": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"}},
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}})


def test_biomedclip_matches_timm_reference(tmp_path: Path, ckpt, xray: np.ndarray) -> None:
    state = _timm_open_clip_state()
    _write_biomedclip(tmp_path, state, ckpt)
    embedder = get_embedder("biomedclip", weights=tmp_path)
    batch = torch.stack([embedder.preprocess(xray), embedder.preprocess(1.0 - xray)])
    out = embedder.forward(batch)
    assert out.dtype == torch.float32 and tuple(out.shape) == (2, EMBED) == (2, *embedder.info.output_shape)
    torch.testing.assert_close(embedder.forward(batch), out, rtol=0, atol=0)
    torch.testing.assert_close(out, _timm_reference(state, batch), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("change", ["drop", "extra"])
def test_biomedclip_strict_keys(tmp_path: Path, ckpt, change: str) -> None:
    state = _timm_open_clip_state()
    if change == "drop":
        del state["visual.trunk.blocks.1.mlp.fc2.bias"]
    else:
        state["visual.trunk.blocks.0.ls1.gamma"] = torch.ones(D)
    _write_biomedclip(tmp_path, state, ckpt)
    with pytest.raises(WeightsMismatchError):
        get_embedder("biomedclip", weights=tmp_path)


# --- MedImageInsight ------------------------------------------------------------------------------------

DIMS, STAGE_DEPTHS, GROUPS, PROJ = [8, 16, 16, 32], [1, 1, 2, 1], [2, 2, 2, 2], 12
PATCH, STRIDE, PAD, PRENORM = [7, 3, 3, 3], [4, 2, 2, 2], [3, 1, 1, 1], [False, True, True, True]
BLOCKS = ("spatial_block", "channel_block")


def _davit_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A UniCL checkpoint in the reference code's naming (image_encoder.* DaViT + projection + text tower)."""
    g = torch.Generator().manual_seed(seed)
    e, state = "image_encoder.", {"lang_encoder.token_embedding.weight": _rand(g, 10, 8), "logit_scale": torch.ones(())}
    for i, dim in enumerate(DIMS):
        prev = 3 if i == 0 else DIMS[i - 1]
        state |= {f"{e}convs.{i}.proj.weight": _rand(g, dim, prev, PATCH[i], PATCH[i]),
                  f"{e}convs.{i}.proj.bias": _rand(g, dim),
                  f"{e}convs.{i}.norm.weight": 1 + _rand(g, prev if PRENORM[i] else dim),
                  f"{e}convs.{i}.norm.bias": _rand(g, prev if PRENORM[i] else dim)}
        for j in range(STAGE_DEPTHS[i]):
            for blk, attn in zip(BLOCKS, ("window_attn", "channel_attn")):
                p = f"{e}blocks.{i}.{j}.{blk}."
                for name, shape in {"conv1.fn.dw": (dim, 1, 3, 3), "conv2.fn.dw": (dim, 1, 3, 3),
                                    f"{attn}.fn.qkv": (3 * dim, dim), f"{attn}.fn.proj": (dim, dim),
                                    "ffn.fn.net.fc1": (4 * dim, dim), "ffn.fn.net.fc2": (dim, 4 * dim)}.items():
                    state[f"{p}{name}.weight"], state[f"{p}{name}.bias"] = _rand(g, *shape), _rand(g, shape[0])
                for norm in (f"{attn}.norm", "ffn.norm"):
                    state[f"{p}{norm}.weight"], state[f"{p}{norm}.bias"] = 1 + _rand(g, dim), _rand(g, dim)
    state[f"{e}norms.weight"], state[f"{e}norms.bias"] = 1 + _rand(g, DIMS[-1]), _rand(g, DIMS[-1])
    state["image_projection"] = _rand(g, DIMS[-1], PROJ)
    return state


def _davit_reference(s: dict[str, torch.Tensor], x: torch.Tensor, window: int = 12) -> torch.Tensor:
    """UniCL encode_image with DaViT written from the reference architecture (tokens as (B, N, C))."""
    e = "image_encoder."
    ln = lambda h, n: F.layer_norm(h, h.shape[-1:], s[n + ".weight"], s[n + ".bias"])  # noqa: E731
    lin = lambda h, n: F.linear(h, s[n + ".weight"], s[n + ".bias"])  # noqa: E731

    def dwconv(h, n, hw):
        grid = h.mT.reshape(h.shape[0], h.shape[2], *hw)
        return F.conv2d(grid, s[n + ".weight"], s[n + ".bias"], padding=1, groups=h.shape[2]).flatten(2).mT

    def window_attn(h, n, hw, heads):
        b, _, c = h.shape
        grid = F.pad(h.reshape(b, *hw, c), (0, 0, 0, -hw[1] % window, 0, -hw[0] % window))
        hp, wp = grid.shape[1:3]
        win = grid.reshape(b, hp // window, window, wp // window, window, c).permute(0, 1, 3, 2, 4, 5)
        win = win.reshape(-1, window * window, c)
        q, k, v = lin(win, n + ".qkv").reshape(win.shape[0], -1, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        attn = ((q * (c // heads) ** -0.5) @ k.mT).softmax(-1) @ v  # (windows, heads, tokens, c/heads)
        out = lin(attn.transpose(1, 2).reshape(win.shape), n + ".proj")
        out = out.reshape(b, hp // window, wp // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
        return out.reshape(b, hp, wp, c)[:, :hw[0], :hw[1]].reshape(b, -1, c)

    def channel_attn(h, n, groups):
        b, tokens, c = h.shape
        q, k, v = lin(h, n + ".qkv").reshape(b, tokens, 3, groups, c // groups).permute(2, 0, 3, 1, 4)
        attn = ((q * tokens ** -0.5).mT @ k).softmax(-1)              # (B, G, c, c)
        return lin((attn @ v.mT).mT.transpose(1, 2).reshape(b, tokens, c), n + ".proj")

    hw = tuple(x.shape[-2:])
    for i in range(len(DIMS)):
        if x.dim() == 3:
            if PRENORM[i]:
                x = ln(x, f"{e}convs.{i}.norm")
            x = x.mT.reshape(x.shape[0], x.shape[2], *hw)
        x = F.conv2d(x, s[f"{e}convs.{i}.proj.weight"], s[f"{e}convs.{i}.proj.bias"], stride=STRIDE[i], padding=PAD[i])
        hw, x = tuple(x.shape[-2:]), x.flatten(2).mT
        if not PRENORM[i]:
            x = ln(x, f"{e}convs.{i}.norm")
        for j in range(STAGE_DEPTHS[i]):
            for blk in BLOCKS:
                p = f"{e}blocks.{i}.{j}.{blk}."
                x = x + dwconv(x, p + "conv1.fn.dw", hw)
                if blk == "spatial_block":
                    x = x + window_attn(ln(x, p + "window_attn.norm"), p + "window_attn.fn", hw, GROUPS[i])
                else:
                    x = x + channel_attn(ln(x, p + "channel_attn.norm"), p + "channel_attn.fn", GROUPS[i])
                x = x + dwconv(x, p + "conv2.fn.dw", hw)
                x = x + lin(F.gelu(lin(ln(x, p + "ffn.norm"), p + "ffn.fn.net.fc1")), p + "ffn.fn.net.fc2")
    z = ln(x.mean(dim=1), f"{e}norms") @ s["image_projection"]
    return z / z.norm(dim=-1, keepdim=True)


def _write_medimageinsight(root: Path, state: dict[str, torch.Tensor]) -> Path:
    release = root / "2024.09.27"
    (release / "vision_model").mkdir(parents=True)
    save_file(state, str(release / "vision_model" / "medimageinsigt-v1.0.0.pt"))  # safetensors despite .pt
    config = {"IMAGE_ENCODER": {"NAME": "davit_v1", "NUM_CLASSES": 0, "IMAGE_SIZE": [480, 480],
                                "IMAGE_MEAN": [0.485, 0.456, 0.406], "IMAGE_STD": [0.229, 0.224, 0.225],
                                "SPEC": {"DROP_RATE": 0.1, "DROP_PATH_RATE": 0.2, "PATCH_SIZE": PATCH,
                                         "PATCH_STRIDE": STRIDE, "PATCH_PADDING": PAD, "PATCH_PRENORM": PRENORM,
                                         "DIM_EMBED": DIMS, "NUM_HEADS": GROUPS, "NUM_GROUPS": GROUPS,
                                         "DEPTHS": STAGE_DEPTHS, "WINDOW_SIZE": 12, "ENABLE_CHECKPOINT": True}},
              "UNICL_MODEL": {"DIM_PROJECTION": PROJ}, "AUG": {"INTERPOLATION": "bicubic"},
              "TEST": {"CENTER_CROP": False}}
    (release / "config.yaml").write_text(yaml.safe_dump(config))
    return release


def test_medimageinsight_matches_davit_reference(tmp_path: Path, xray: np.ndarray) -> None:
    state = _davit_state()
    _write_medimageinsight(tmp_path, state)
    embedder = get_embedder("medimageinsight", weights=tmp_path)   # the repo root; release folder found
    batch = embedder.preprocess(xray)[None]
    assert tuple(batch.shape) == (1, 3, 480, 480)
    out = embedder.forward(batch)
    assert out.dtype == torch.float32 and tuple(out.shape) == (1, PROJ) == (1, *embedder.info.output_shape)
    torch.testing.assert_close(embedder.forward(batch), out, rtol=0, atol=0)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(1))
    torch.testing.assert_close(out, _davit_reference(state, batch), rtol=1e-4, atol=1e-5)


def test_medimageinsight_strict_keys(tmp_path: Path) -> None:
    state = _davit_state()
    del state["image_encoder.blocks.2.1.channel_block.ffn.norm.bias"]
    with pytest.raises(WeightsMismatchError, match="missing"):
        get_embedder("medimageinsight", weights=_write_medimageinsight(tmp_path, state))


# --- errors -------------------------------------------------------------------------------------------------

FOUNDATION = sorted(name for name in available_models()
                    if base._REGISTRY[name][1].__module__.startswith("embedders.foundation."))


@pytest.mark.parametrize("name", FOUNDATION)
def test_missing_weights_is_one_clear_line(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = available_models()[name]
    for weights in (tmp_path / "nowhere", None):
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
        with pytest.raises(MissingWeightsError) as err:
            get_embedder(name, weights=weights)
        message = str(err.value)
        assert "\n" not in message and name in message and info.weights_source in message
        assert info.license.split(";")[0] in message and "--weights" in message


def test_missing_file_in_weights_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(MissingWeightsError, match="model.safetensors"):
        get_embedder("rad-dino", weights=tmp_path)


@pytest.mark.parametrize("name", ["cxr-foundation", "cxr-foundation-contrastive"])
def test_cxr_foundation_without_tensorflow_is_one_clear_line(name: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for sub in ("elixr-c-v2-pooled", "pax-elixr-b-text"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "saved_model.pb").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "tensorflow", None)   # as if not installed: `import tensorflow` raises
    with pytest.raises(MissingDependencyError) as err:
        get_embedder(name, weights=tmp_path)
    message = str(err.value)
    assert "\n" not in message and "TensorFlow is not installed" in message and "cxr-fusion[tensorflow]" in message
