"""Augmentations: intensities of bright/dark/contrast and the geometry of the expanded rotations."""
from __future__ import annotations

import numpy as np
import pytest

from embedders.augment import AUGMENTATIONS, augment


def _ramp(h: int = 40, w: int = 30) -> np.ndarray:
    return np.linspace(0.0, 1.0, h * w, dtype=np.float32).reshape(h, w)


def test_intensity_augmentations() -> None:
    x = _ramp()
    np.testing.assert_array_equal(augment(x, "original"), x)
    np.testing.assert_allclose(augment(x, "bright"), np.minimum(x * 1.5, 1.0), rtol=1e-6)
    np.testing.assert_allclose(augment(x, "dark"), x * 0.7, rtol=1e-6)
    m = x.mean()
    np.testing.assert_allclose(augment(x, "contrast"), np.clip(m + 1.3 * (x - m), 0, 1), atol=1e-6)
    for name in AUGMENTATIONS:
        y = augment(x, name)
        assert y.dtype == np.float32 and y.min() >= 0.0 and y.max() <= 1.0, name


@pytest.mark.parametrize("h,w", [(40, 30), (320, 257)])
def test_rotation_expands_canvas_and_turns_the_right_way(h: int, w: int) -> None:
    x = np.zeros((h, w), dtype=np.float32)
    x[2, w // 2] = 1.0                                    # a marker at the top centre
    c = np.cos(np.pi / 4)
    # expand=True: the canvas is the bounding box of the rotated pixel centres (+1 pixel)
    expected = (round((h - 1) * c + (w - 1) * c + 1),) * 2
    up, down = augment(x, "rot+45"), augment(x, "rot-45")
    assert up.shape == expected and down.shape == expected
    r_up, c_up = np.unravel_index(up.argmax(), up.shape)
    r_dn, c_dn = np.unravel_index(down.argmax(), down.shape)
    centre = (expected[0] - 1) / 2
    assert r_up < centre and c_up < centre                # +45 is counter-clockwise: top -> upper left
    assert r_dn < centre and c_dn > centre                # -45 is clockwise: top -> upper right
    assert up[0, 0] == 0.0 and up[-1, -1] == 0.0          # new corners are black


def test_unknown_augmentation_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown augmentation 'flip'"):
        augment(_ramp(), "flip")
