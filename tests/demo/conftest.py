"""Demo cohorts generated once per test session (small sizes so the suite stays fast)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cohorts.demo import generate_demo

# lung zones of the phantom in image fractions: (x0, x1) per side (image left = patient right)
SIDE_X = {"right": (0.12, 0.42), "left": (0.58, 0.88)}
ZONE_Y = {"upper": (0.2, 0.4), "middle": (0.4, 0.55), "lower": (0.55, 0.7), "base": (0.7, 0.8)}


def zone_means(path: Path) -> dict[tuple[str, str], float]:
    """Mean grey level (0..1) of each (side, zone) box of a demo image."""
    img = np.asarray(Image.open(path), dtype=np.float32) / 255.0
    n = img.shape[0]
    return {(side, zone): float(img[int(y0 * n):int(y1 * n), int(x0 * n):int(x1 * n)].mean())
            for side, (x0, x1) in SIDE_X.items() for zone, (y0, y1) in ZONE_Y.items()}


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """40 patients at 64 px (the size other tests may use) and the CPU seconds it took."""
    start = time.process_time()
    raw = generate_demo(tmp_path_factory.mktemp("demo_small"), n_patients=40, seed=3, image_size=64)
    return raw, time.process_time() - start


@pytest.fixture(scope="session")
def demo_300(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default-size cohort (300 patients, seed 0) at 64 px, for the statistical checks."""
    return generate_demo(tmp_path_factory.mktemp("demo_300"), n_patients=300, seed=0, image_size=64)
