"""cohorts.phantom: each finding is drawn where a reader would look for it, and scales with severity."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cohorts.phantom import PhantomSpec, render_phantom

SIZE = 128
BASE = PhantomSpec(view="AP", severity=0.6, texture_seed=11)


def _diff(spec: PhantomSpec) -> np.ndarray:
    """Added brightness (0..1) of ``spec`` over the same image without findings."""
    return (render_phantom(spec, size=SIZE).astype(float) - render_phantom(BASE, size=SIZE).astype(float)) / 255.0


def _centroid(weights: np.ndarray) -> tuple[float, float]:
    """(x, y) centre of mass in normalised [-1, 1] image coordinates."""
    w = np.clip(weights, 0, None)
    lin = (np.arange(SIZE) + 0.5) / SIZE * 2 - 1
    return float((w.sum(0) * lin).sum() / w.sum()), float((w.sum(1) * lin).sum() / w.sum())


def _half_sums(d: np.ndarray) -> tuple[float, float]:
    """Added brightness on the image-left (patient right) and image-right halves."""
    return float(np.clip(d[:, : SIZE // 2], 0, None).sum()), float(np.clip(d[:, SIZE // 2:], 0, None).sum())


def test_render_shape_dtype_and_determinism() -> None:
    img = render_phantom(BASE, size=SIZE)
    assert img.shape == (SIZE, SIZE) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, render_phantom(BASE, size=SIZE))
    assert not np.array_equal(img, render_phantom(replace(BASE, texture_seed=12), size=SIZE))
    # lungs dark, mediastinum and abdomen bright, air outside darkest
    c = SIZE // 2
    assert img[:4, :4].mean() < img[c, int(0.2 * SIZE)] < img[c, c] and img[int(0.9 * SIZE), c] > img[c, int(0.2 * SIZE)]


def test_no_finding_leaves_the_image_unchanged() -> None:
    assert np.abs(_diff(BASE)).max() == 0


def test_right_effusion_fills_the_right_base_with_a_lateral_meniscus() -> None:
    d = _diff(replace(BASE, effusion_sides=("right",)))
    right, left = _half_sums(d)
    assert left < 0.02 * right
    x, y = _centroid(d)
    assert x < -0.3 and y > 0.2                                # patient right = image left, lower zone
    filled = d > 0.15
    lateral_col, medial_col = int(0.19 * SIZE), int(0.38 * SIZE)   # x = -0.62 and -0.24
    top = [int(np.argmax(filled[:, col])) for col in (lateral_col, medial_col)]
    assert filled[:, lateral_col].any() and filled[:, medial_col].any()
    assert top[0] < top[1] - 2                                   # fluid climbs the lateral chest wall


def test_supine_effusion_adds_a_veil_over_the_hemithorax() -> None:
    upright = _diff(replace(BASE, effusion_sides=("left",)))
    supine = _diff(replace(BASE, view="AP Supine", effusion_sides=("left",)))
    mid = slice(int(0.4 * SIZE), int(0.55 * SIZE))               # mid zone, above the fluid level
    assert supine[mid, SIZE // 2:].mean() > upright[mid, SIZE // 2:].mean() + 0.01


def test_focal_opacity_in_its_lobe_diffuse_opacity_in_both_lungs() -> None:
    focal = _diff(replace(BASE, opacity_sides=("left",), opacity_zone="upper"))
    right, left = _half_sums(focal)
    x, y = _centroid(focal)
    assert right < 0.05 * left and x > 0.2 and y < -0.2
    diffuse = _diff(replace(BASE, opacity_sides=("right", "left"), opacity_diffuse=True))
    right, left = _half_sums(diffuse)
    assert 0.5 < right / left < 2.0 and diffuse.mean() > focal.mean()


def test_edema_is_bilateral_and_perihilar() -> None:
    d = _diff(replace(BASE, edema=True))
    right, left = _half_sums(d)
    assert 0.6 < right / left < 1.6
    x, y = _centroid(d)
    assert abs(x) < 0.15 and -0.25 < y < 0.35
    hilar = d[int(0.45 * SIZE):int(0.6 * SIZE), int(0.26 * SIZE):int(0.38 * SIZE)].mean()
    apical = d[int(0.15 * SIZE):int(0.25 * SIZE), int(0.15 * SIZE):int(0.3 * SIZE)].mean()
    assert hilar > 2 * apical


def test_atelectasis_draws_a_band_and_raises_the_hemidiaphragm() -> None:
    spec = replace(BASE, atelectasis_side="left")
    d = _diff(spec)
    right, left = _half_sums(d)
    assert left > 3 * right
    img, base = render_phantom(spec, size=SIZE), render_phantom(BASE, size=SIZE)
    col = int(0.75 * SIZE)                                       # left lung at x = 0.5, lateral to the band
    lung_rows = lambda a: int((a[: int(0.85 * SIZE), col] < 110).sum())   # noqa: E731
    assert lung_rows(img) < lung_rows(base) - 4                  # volume loss: shorter lung


@pytest.mark.parametrize("finding", [{"effusion_sides": ("right",)}, {"opacity_sides": ("right",)},
                                     {"edema": True}, {"atelectasis_side": "right"}])
def test_findings_grow_with_severity(finding: dict) -> None:
    mild = _diff(replace(BASE, severity=0.1, **finding)).clip(0).mean()
    severe = _diff(replace(BASE, severity=0.9, **finding)).clip(0).mean()
    assert severe > 1.2 * mild > 0
