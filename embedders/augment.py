"""The source study's training-time augmentations, applied to a decoded image before preprocessing.

Each augmentation maps an ``(H, W)`` float32 image in [0, 1] to a float32 image in [0, 1]:

* ``original`` -- unchanged;
* ``bright`` / ``dark`` -- intensity x1.5 / x0.7, clipped to [0, 1] (PIL ``ImageEnhance.Brightness``);
* ``contrast`` -- ``mean + 1.3 * (x - mean)`` around the image mean, clipped (PIL ``ImageEnhance.Contrast``);
* ``rot+45`` / ``rot-45`` -- rotation by 45 degrees counter-clockwise / clockwise with ``expand=True``
  (the canvas grows to hold the whole rotated image; corners are filled with 0 = black), bilinear.

The store keeps one group per augmentation so that benchmarks use augmented rows in training folds only.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from skimage.transform import rotate

AugmentationName = Literal["original", "bright", "dark", "contrast", "rot+45", "rot-45"]
Augmentation = Callable[[np.ndarray], np.ndarray]


def _scale(factor: float) -> Augmentation:
    def scale(image: np.ndarray) -> np.ndarray:
        return np.clip(image * np.float32(factor), 0.0, 1.0).astype(np.float32, copy=False)

    return scale


def _contrast(factor: float) -> Augmentation:
    def contrast(image: np.ndarray) -> np.ndarray:
        mean = np.float32(image.mean(dtype=np.float64))
        return np.clip(mean + np.float32(factor) * (image - mean), 0.0, 1.0).astype(np.float32, copy=False)

    return contrast


def _rotation(degrees: float) -> Augmentation:
    def rotation(image: np.ndarray) -> np.ndarray:
        out = rotate(image, degrees, resize=True, order=1, mode="constant", cval=0.0, preserve_range=True)
        return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)

    return rotation


AUGMENTATIONS: dict[str, Augmentation] = {
    "original": lambda image: image,
    "bright": _scale(1.5),
    "dark": _scale(0.7),
    "contrast": _contrast(1.3),
    "rot+45": _rotation(45.0),
    "rot-45": _rotation(-45.0),
}


def augment(image: np.ndarray, name: str) -> np.ndarray:
    """Apply the augmentation ``name`` to an ``(H, W)`` float32 image in [0, 1] (see the module docstring)."""
    try:
        fn = AUGMENTATIONS[name]
    except KeyError:
        raise ValueError(f"unknown augmentation {name!r}; choose from {list(AUGMENTATIONS)}") from None
    return fn(image)
