"""Official-style image preprocessing shared by the foundation-model adapters and the checkpoint CNNs.

The released pipelines (Hugging Face image processors, open_clip/torchvision transforms) start from an
8-bit PIL image. We reproduce that from the decoded ``(H, W)`` float32 image in [0, 1]: round to uint8
(``round(x * 255)``), resize the single grey channel with Pillow (identical to resizing the RGB copy the
official code makes, channel by channel), crop, replicate to 3 channels, rescale by 1/255 and normalize.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` float in [0, 1] -> ``(H, W)`` uint8 (``round(x * 255)``); ValueError for other input."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a (H, W) grey image, got shape {image.shape}")
    if not np.isfinite(image).all():
        raise ValueError("image contains NaN or infinite values")
    if image.min() < 0.0 or image.max() > 1.0:
        raise ValueError(f"image values must lie in [0, 1], got [{image.min():.3g}, {image.max():.3g}]")
    return np.rint(image.astype(np.float64) * 255.0).astype(np.uint8)


def shortest_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) with the shorter side = ``size`` and the longer ``int(size * long / short)`` (HF/torchvision)."""
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def crop_offset(length: int, crop: int, rounding: Literal["floor", "round"]) -> int:
    """Start of a centre crop: ``(L - c) // 2`` (HF) or ``int(round((L - c) / 2))`` (torchvision)."""
    if crop > length:
        raise ValueError(f"cannot centre-crop {crop} pixels out of {length}")
    return (length - crop) // 2 if rounding == "floor" else int(round((length - crop) / 2.0))


@dataclass(frozen=True)
class ImageSpec:
    """One model's preprocessing: resize (``shortest`` side + centre crop, or ``squash`` to a square),
    resample filter, crop rounding convention, and per-channel mean/std (after scaling to [0, 1])."""

    size: int
    mode: Literal["shortest", "squash"]
    resample: Literal["bicubic", "bilinear"]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_rounding: Literal["floor", "round"] = "floor"

    def describe(self) -> str:
        """Human-readable summary stored with the embeddings (``ModelInfo.resize``)."""
        if self.mode == "shortest":
            rounding = "floor" if self.crop_rounding == "floor" else "round-half-even"
            return (f"uint8 grey; shortest side {self.size} {self.resample} (PIL) + centre crop "
                    f"{self.size} ({rounding} offset); x/255; 3 channels")
        return (f"uint8 grey; resize to {self.size}x{self.size} {self.resample} (PIL, aspect not kept); "
                "x/255; 3 channels")

    def resize(self, grey: np.ndarray) -> np.ndarray:
        """uint8 ``(H, W)`` -> uint8 ``(size, size)`` resized (and centre-cropped) with Pillow."""
        pil = Image.fromarray(grey, mode="L")
        filt = RESAMPLE[self.resample]
        if self.mode == "squash":
            return np.asarray(pil.resize((self.size, self.size), resample=filt))
        height, width = shortest_side_size(pil.height, pil.width, self.size)
        resized = np.asarray(pil.resize((width, height), resample=filt))
        top = crop_offset(height, self.size, self.crop_rounding)
        left = crop_offset(width, self.size, self.crop_rounding)
        return resized[top:top + self.size, left:left + self.size]

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """``(H, W)`` float32 [0, 1] -> ``(3, size, size)`` float32 normalized tensor."""
        grey = self.resize(to_uint8(image)).astype(np.float64) / 255.0
        mean = np.asarray(self.mean, dtype=np.float64)[:, None, None]
        std = np.asarray(self.std, dtype=np.float64)[:, None, None]
        out = (np.broadcast_to(grey, (3, *grey.shape)) - mean) / std
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


_PIL_CODES = {2: "bilinear", 3: "bicubic"}


def hf_image_spec(config: dict, *, default: ImageSpec, source: str) -> ImageSpec:
    """The :class:`ImageSpec` a Hugging Face ``preprocessor_config.json`` describes (resize + optional centre
    crop, resample, mean/std; HF crops at the floor offset). Unsupported settings raise ValueError."""
    if not (config.get("do_resize", True) and config.get("do_rescale", True) and config.get("do_normalize", True)):
        raise ValueError(f"{source}: expected do_resize/do_rescale/do_normalize true, got {config}")
    if abs(config.get("rescale_factor", 1 / 255) - 1 / 255) > 1e-8 or config.get("do_pan_and_scan"):
        raise ValueError(f"{source}: unsupported rescale_factor / pan-and-scan settings in {config}")
    resample = _PIL_CODES.get(config.get("resample", 3 if default.resample == "bicubic" else 2))
    if resample is None:
        raise ValueError(f"{source}: unsupported resample {config.get('resample')} (2 bilinear, 3 bicubic)")
    size = config.get("size", {})
    if "shortest_edge" in size:
        crop = config.get("crop_size", {})
        if not config.get("do_center_crop", False) or crop.get("height") != crop.get("width") \
                or crop.get("height") != size["shortest_edge"]:
            raise ValueError(f"{source}: expected a square centre crop equal to shortest_edge, got {config}")
        mode, side = "shortest", size["shortest_edge"]
    elif size.get("height") is not None and size.get("height") == size.get("width"):
        if config.get("do_center_crop", False):
            raise ValueError(f"{source}: centre crop after a square resize is not supported ({config})")
        mode, side = "squash", size["height"]
    else:
        raise ValueError(f"{source}: unsupported size {size}")

    def triple(value: object, fallback: tuple[float, float, float]) -> tuple[float, float, float]:
        values = fallback if value is None else (value if isinstance(value, list) else [value] * 3)
        return tuple(float(v) for v in values)  # type: ignore[return-value]

    return ImageSpec(size=int(side), mode=mode, resample=resample,
                     mean=triple(config.get("image_mean"), default.mean),
                     std=triple(config.get("image_std"), default.std), crop_rounding="floor")


def folder_image_spec(folder: Path, default: ImageSpec) -> ImageSpec:
    """``hf_image_spec`` of ``folder/preprocessor_config.json`` when the release ships one, else ``default``."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return default
    return hf_image_spec(json.loads(path.read_text()), default=default, source=str(path))
