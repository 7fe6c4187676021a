"""The JSRT lung UNet on its real weights: strict loading and checksum, batch invariance, masks on real images,
and the lung-zone radiomics built on them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cohorts.images import load_image
from embedders import WeightsError, available_models, get_embedder
from embedders.baselines.lung_radiomics import N_FEATURES, lung_radiomics_features, lung_regions
from embedders.baselines.radiomics import _zone_slices, radiomics_features
from embedders.lung_masks import mask_stats, segment_images, write_mask_checks

UNET_DIR = "hybridgnet-jsrt-unet"
NIH_1000 = "nih-chestxray14-1000"


@pytest.fixture(scope="module")
def unet_weights(shared_models: Path) -> Path:
    return shared_models / UNET_DIR


@pytest.fixture(scope="module")
def real_images(shared_data: Path, covid_pngs: list[Path]) -> list[str]:
    """Six NIH images (three per source folder) and two covid-chestxray images."""
    labels = pd.read_csv(shared_data / NIH_1000 / "labels.csv")
    nih = [str(shared_data / NIH_1000 / "images" / name)
           for folder in ("No_findings", "Pneumonia")
           for name in labels.loc[labels["source_folder"] == folder, "image"].iloc[:3]]
    return nih + [str(p) for p in covid_pngs[:2]]


def test_strict_loading_and_checksum(unet_weights: Path, tmp_path: Path) -> None:
    emb = get_embedder("unet-jsrt", weights=unet_weights)
    assert emb.weights_sha256 == available_models()["unet-jsrt"].sha256
    assert sum(p.numel() for p in emb.model.parameters()) == 323_414
    state = torch.load(unet_weights / "unet.pt", map_location="cpu", weights_only=True)
    state["conv_last.bias"] = state["conv_last.bias"] + 1.0
    torch.save(state, tmp_path / "unet.pt")
    with pytest.raises(WeightsError, match="sha256"):
        get_embedder("unet-jsrt", weights=tmp_path / "unet.pt")
    del state["conv_last.bias"]
    torch.save(state, tmp_path / "unet.pt")
    with pytest.raises(WeightsError, match="does not match the JSRT UNet layout"):
        get_embedder("unet-jsrt", weights=tmp_path / "unet.pt", verify_sha256=False)


def test_masks_on_real_images_are_anatomical(unet_weights: Path, real_images: list[str]) -> None:
    """Every image: lungs 12-45 % and heart 2-20 % of the padded square and clavicles found (the checkpoint README:
    1.4-2.2 %); placement (one lung field in each half, both above the lower 15 %, the heart between them) on all
    six NIH images and all but one image overall (the second covid image, an AP film with a distorted
    mediastinum, gets its heart below the left lung)."""
    emb = get_embedder("unet-jsrt", weights=unet_weights)
    _, classes = segment_images(emb.model, real_images)
    stats = pd.DataFrame([mask_stats(c) for c in classes])
    assert stats["placement_ok"].iloc[:6].all() and stats["placement_ok"].sum() >= 7, stats
    assert (stats["lung_left_col"] < 0.5).all() and (stats["lung_right_col"] > 0.5).all(), stats
    assert stats["fractions_ok"].all(), stats
    assert stats["clavicles_fraction"].between(0.003, 0.04).all(), stats
    assert stats["lungs_fraction"].mean() == pytest.approx(0.25, abs=0.06)


def test_embedding_shape_and_batch_invariance(unet_weights: Path, real_images: list[str]) -> None:
    """Image norms use each image's own statistics: a batch gives every image what it gets alone."""
    emb = get_embedder("unet-jsrt", weights=unet_weights)
    x = torch.stack([emb.preprocess(load_image(p)) for p in real_images[:3]])
    assert x.shape == (3, 1, 512, 512)
    batch = emb.forward(x)
    assert batch.shape == (3, 368) and torch.isfinite(batch).all()
    torch.testing.assert_close(batch[1:2], emb.forward(x[1:2]), rtol=1e-4, atol=1e-5)


def test_lung_radiomics_on_real_images(unet_weights: Path, real_images: list[str]) -> None:
    emb = get_embedder("radiomics-lung", weights=unet_weights, mask_size=256)
    x = torch.stack([emb.preprocess(load_image(p)) for p in real_images[:2]])
    f = emb.forward(x).numpy()
    assert f.shape == (2, N_FEATURES) and np.isfinite(f).all()
    area, extent, ctr = f[:, -7:-5], f[:, -5:-1], f[:, -1]
    assert ((area > 0.05) & (area < 0.3)).all() and ((extent >= 0) & (extent <= 1)).all()
    assert ((ctr > 0.3) & (ctr < 0.8)).all()                     # cardiothoracic ratio of adult CXRs


def test_region_masks_reproduce_the_box_zones() -> None:
    """radiomics_features with the six image boxes given as masks == the box zones (the masked GLCM path)."""
    rng = np.random.default_rng(0)
    img = rng.random((64, 64)).astype(np.float32)
    masks = []
    for rs, cs in _zone_slices(64):
        m = np.zeros((64, 64), bool)
        m[rs, cs] = True
        masks.append(m)
    np.testing.assert_allclose(radiomics_features(img, regions=masks), radiomics_features(img), rtol=1e-5, atol=1e-6)


def test_lung_regions_split_lungs_and_zones() -> None:
    classes = np.zeros((90, 90), dtype=np.int64)
    classes[10:70, 10:35] = 1
    classes[10:70, 55:80] = 1
    classes[40:70, 36:54] = 2
    r = lung_regions(classes)
    assert np.argwhere(r.lungs[0])[:, 1].max() < 45 < np.argwhere(r.lungs[1])[:, 1].min()
    assert [int(z.sum()) for z in r.zones] == [20 * 25] * 6
    assert [int(q.sum()) for q in r.quadrants] == [30 * 25] * 4
    img = np.where(classes == 2, 0.8, 0.2).astype(np.float32)
    img[60:70, 10:35] = 0.8                                    # dense lower image-left lung
    f = lung_radiomics_features(img, classes)
    assert f[-5:-1].tolist() == pytest.approx([0.0, 10 / 30, 0.0, 0.0])   # extent in that quadrant only
    assert f[-1] == pytest.approx(18 / 70)


def test_mask_check_figure(unet_weights: Path, shared_data: Path, tmp_path: Path) -> None:
    manifest = pd.DataFrame({"image_id": ["a", "b"], "path": [
        str(p) for p in sorted((shared_data / NIH_1000 / "images").glob("*.png"))[:2]]})
    out = write_mask_checks(manifest, unet_weights, tmp_path, n_images=2)
    assert out["mask_figure"].stat().st_size > 10_000
    assert pd.read_csv(out["mask_checks"])["placement_ok"].all()
