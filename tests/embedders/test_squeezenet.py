"""The SqueezeNet 1.1 embedder on the real Kermany checkpoint: checksum, architecture and preprocessing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cohorts.images import load_image
from embedders import WeightsError, available_models, get_embedder
from embedders.baselines.cnn import SqueezeNet11
from embedders.preprocess import IMAGENET_MEAN, IMAGENET_STD

from .conftest import SQUEEZENET_DIR


def _reference(weights: Path, paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """The checkpoint's own pipeline (README / the repo's app): PIL RGB, resize 224 bilinear, ToTensor,
    ImageNet norm, then the full model -> (preprocessed batch, logits)."""
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model = SqueezeNet11(num_classes=3)
    model.load_state_dict(state, strict=True)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    batch = []
    for p in paths:
        rgb = Image.open(p).convert("RGB").resize((224, 224), Image.BILINEAR)
        batch.append((torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255).permute(2, 0, 1) - mean) / std)
    x = torch.stack(batch)
    with torch.inference_mode():
        return x, model.eval()(x)


def test_embedding_and_head_reproduce_the_checkpoint(shared_models: Path, covid_pngs: list[Path]) -> None:
    folder = shared_models / SQUEEZENET_DIR
    emb = get_embedder("squeezenet1_1", weights=folder)
    assert emb.weights_sha256 == available_models()["squeezenet1_1"].sha256 == \
        "f469942680d218bf22fd6a9298c0daa741ce48257bdfe7a5eac3ebdd9ba93d16"
    paths = covid_pngs[:16]
    batch = torch.stack([emb.preprocess(load_image(p)) for p in paths])
    assert batch.shape == (16, 3, 224, 224)
    features = emb.forward(batch)
    fmap = emb.feature_maps(batch)
    assert features.shape == (16, 512) and fmap.shape == (16, 512, 13, 13)
    torch.testing.assert_close(features, fmap.mean(dim=(2, 3)))          # embedding = GAP of the last map
    ref_batch, ref = _reference(folder / "squeezenet1_1_model.pth", paths)
    # architecture: the embedder's feature map + the checkpoint's own head == the full model, exactly
    torch.testing.assert_close(emb.logits(ref_batch), ref, rtol=0, atol=0)
    # preprocessing: the same 8-bit PIL resize as the checkpoint's pipeline (float32 rounding only)
    torch.testing.assert_close(batch, ref_batch, rtol=0, atol=1e-6)
    ours = emb.logits(batch)                                              # our whole pipeline
    assert ours.shape == (16, 3)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-4)
    # the README's observation on adult CXRs: the paediatric model calls most of them "Normal"
    assert emb.classes[1] == "Normal" and (ours.argmax(1) == 1).float().mean() >= 0.75


def test_checksum_is_enforced(tmp_path: Path, shared_models: Path) -> None:
    state = torch.load(shared_models / SQUEEZENET_DIR / "squeezenet1_1_model.pth", weights_only=True)
    state["classifier.1.bias"] = state["classifier.1.bias"] + 1.0
    other = tmp_path / "mine.pth"
    torch.save(state, other)
    with pytest.raises(WeightsError, match="verify_sha256: false"):
        get_embedder("squeezenet1_1", weights=other)
    emb = get_embedder("squeezenet1_1", weights=other, verify_sha256=False)
    assert emb.weights_sha256 != available_models()["squeezenet1_1"].sha256 and emb.classes == ()
    del state["features.0.weight"]
    torch.save(state, other)
    with pytest.raises(WeightsError, match="does not match the squeezenet1_1 architecture"):
        get_embedder("squeezenet1_1", weights=other, verify_sha256=False)
    with pytest.raises(WeightsError, match="--weights"):
        get_embedder("squeezenet1_1")
