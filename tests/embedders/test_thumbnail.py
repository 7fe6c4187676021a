"""The raw-pixel thumbnail baseline: cell means of a regular grid, flattened row-major."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cohorts.images import load_image
from embedders import get_embedder


def test_thumbnail_is_the_grid_of_cell_means(covid_pngs: list[Path]) -> None:
    image = load_image(covid_pngs[0])
    k = min(image.shape) // 32
    crop = image[:32 * k, :32 * k]                        # a whole number of pixels per cell
    emb = get_embedder("thumbnail")
    out = emb.forward(torch.stack([emb.preprocess(crop), emb.preprocess(load_image(covid_pngs[1]))])).numpy()
    assert out.shape == (2, 1024) and out.dtype == np.float32 and emb.info.output_shape == (1024,)
    reference = crop.reshape(32, k, 32, k).mean(axis=(1, 3)).ravel()
    np.testing.assert_allclose(out[0], reference, rtol=1e-5, atol=1e-6)
    assert not np.allclose(out[0], out[1])


def test_side_option_and_errors() -> None:
    emb = get_embedder("thumbnail", side=8)
    assert emb.info.output_shape == (64,) and emb.preprocess(np.ones((50, 70), np.float32)).shape == (8, 8)
    with pytest.raises(ValueError, match="takes no weights"):
        get_embedder("thumbnail", weights="/tmp/x.pth")
    with pytest.raises(ValueError, match="side must be >= 2"):
        get_embedder("thumbnail", side=1)
