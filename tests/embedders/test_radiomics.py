"""The radiomics-style baseline: shape, determinism, GLCM against scikit-image, sensitivity to content."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

from cohorts.images import load_image
from embedders import get_embedder
from embedders.baselines import radiomics as R


def test_features_are_deterministic_and_match_scikit_image(covid_pngs: list[Path]) -> None:
    emb = get_embedder("radiomics")
    x = emb.preprocess(load_image(covid_pngs[0]))
    assert x.shape == (256, 256)
    batch = torch.stack([x, emb.preprocess(load_image(covid_pngs[1]))])
    f = emb.forward(batch).numpy()
    assert f.shape == (2, 348) and f.dtype == np.float32 and np.isfinite(f).all()
    np.testing.assert_array_equal(f, emb.forward(batch).numpy())
    assert not np.allclose(f[0], f[1])

    u8 = np.rint(np.clip(x.numpy(), 0, 1) * 255).astype(np.uint8)
    (rs, cs) = R._zone_slices(256)[4]                                   # lower-left zone
    zone = (u8 // 8)[rs, cs]
    m = graycomatrix(zone, [1, 3], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=32, symmetric=True, normed=True)
    ref = np.array([[graycoprops(m, p)[d].mean() for p in ("contrast", "dissimilarity", "homogeneity", "energy",
                                                        "correlation", "ASM")] for d in range(2)]).ravel()
    start = 4 * R.FEATURES_PER_ZONE + 26                                # zone 4: after intensity (10) + histogram (16)
    np.testing.assert_allclose(f[0, start:start + 12], ref, rtol=1e-5)
    # uniform LBP: the uniform codes (0..8) agree with scikit-image's 'uniform' on the same square neighbourhood
    ours = f[0, start + 12:start + 22]
    assert abs(ours.sum() - 1.0) < 1e-5 and ours[:9].sum() > 0.5
    ski = local_binary_pattern(u8, 8, 1, method="uniform")[rs, cs]
    assert np.isclose(ours[:9].sum(), (ski < 9).mean(), atol=0.15)


def test_intensity_features_follow_the_image() -> None:
    ramp = np.tile(np.linspace(0, 1, 256, dtype=np.float32), (256, 1))
    f = R.radiomics_features(ramp).reshape(6, R.FEATURES_PER_ZONE)
    assert np.allclose(f[0, 0], f[2, 0]) and f[1, 0] > f[0, 0] + 0.4    # right zones brighter than left
    bright = R.radiomics_features(np.clip(ramp * 1.5, 0, 1)).reshape(6, R.FEATURES_PER_ZONE)
    assert (bright[:, 0] >= f[:, 0]).all()
