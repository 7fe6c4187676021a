"""Preprocessing of every adapter at its real default size, on a real radiograph, against (a) a reference
written here independently with PIL/numpy and (b) the official transformers image processor where one exists."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from embedders.foundation import biomedclip, chexagent, cxr_foundation, medimageinsight, rad_dino, siglip
from embedders.preprocess import crop_offset, hf_image_spec, to_uint8

CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


def reference(image: np.ndarray, *, size: int, shortest: bool, bicubic: bool, mean, std,
              torchvision_crop: bool = False) -> np.ndarray:
    """Independent reference: 8-bit RGB PIL image -> resize -> centre crop -> /255 -> normalize."""
    rgb = Image.fromarray((image * 255.0 + 0.5).astype(np.uint8)).convert("RGB")
    filt = Image.Resampling.BICUBIC if bicubic else Image.Resampling.BILINEAR
    if shortest:
        w, h = rgb.size
        new = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        rgb = rgb.resize(new, filt)
        w, h = rgb.size
        if torchvision_crop:
            left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
        else:
            left, top = (w - size) // 2, (h - size) // 2
        rgb = rgb.crop((left, top, left + size, top + size))
    else:
        rgb = rgb.resize((size, size), filt)
    arr = np.asarray(rgb, dtype=np.float64).transpose(2, 0, 1) / 255.0
    return ((arr - np.asarray(mean)[:, None, None]) / np.asarray(std)[:, None, None]).astype(np.float32)


CASES = {
    "rad-dino": (rad_dino.SPEC, dict(size=518, shortest=True, bicubic=True, mean=(0.5307,) * 3, std=(0.2583,) * 3)),
    "biomedclip": (biomedclip.SPEC,
                   dict(size=224, shortest=True, bicubic=True, mean=CLIP[0], std=CLIP[1], torchvision_crop=True)),
    "medimageinsight": (medimageinsight.SPEC, dict(size=480, shortest=False, bicubic=True,
                                                   mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))),
    "medsiglip": (siglip.MEDSIGLIP_SPEC, dict(size=448, shortest=False, bicubic=True, mean=(0.5,) * 3, std=(0.5,) * 3)),
    "medgemma": (siglip.MEDGEMMA_SPEC, dict(size=896, shortest=False, bicubic=False, mean=(0.5,) * 3, std=(0.5,) * 3)),
    "chexagent": (chexagent.SPEC, dict(size=448, shortest=False, bicubic=True, mean=CLIP[0], std=CLIP[1])),
}


def odd_margin_crop(xray: np.ndarray) -> np.ndarray:
    """The real image narrowed so that the centre-crop margins at 518 and 224 are both odd (the case where
    HF's floor offset and torchvision's round-half-even offset differ)."""
    height = xray.shape[0]
    for width in range(xray.shape[1] - 1, xray.shape[1] - 200, -1):
        if width > height and all((int(s * width / height) - s) % 2 == 1 for s in (518, 224)):
            return xray[:, :width]
    raise AssertionError("no width with odd margins found")


@pytest.mark.parametrize("crop", [False, True], ids=["full", "odd-margin"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_preprocessing_matches_hand_reference(name: str, crop: bool, xray: np.ndarray) -> None:
    spec, ref_kwargs = CASES[name]
    xray = odd_margin_crop(xray) if crop else xray
    got = spec(xray)
    assert got.dtype == torch.float32 and tuple(got.shape) == (3, ref_kwargs["size"], ref_kwargs["size"])
    np.testing.assert_allclose(got.numpy(), reference(xray, **ref_kwargs), atol=1e-5, rtol=0)


def _official_processor_output(processor_cls, config: dict, xray: np.ndarray) -> np.ndarray:
    processor = processor_cls(**{k: v for k, v in config.items() if k != "image_processor_type"})
    rgb = Image.fromarray(to_uint8(xray)).convert("RGB")
    return np.asarray(processor(images=rgb, return_tensors="np")["pixel_values"][0], dtype=np.float32)


# The preprocessor_config.json each release ships (RAD-DINO, MedSigLIP, MedGemma, CheXagent).
OFFICIAL = {
    "rad-dino": ("BitImageProcessorPil", rad_dino.SPEC, {
        "crop_size": {"height": 518, "width": 518}, "do_center_crop": True, "do_convert_rgb": True,
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5307, 0.5307, 0.5307],
        "image_std": [0.2583, 0.2583, 0.2583], "resample": 3, "rescale_factor": 1 / 255,
        "size": {"shortest_edge": 518}}),
    "medsiglip": ("SiglipImageProcessorPil", siglip.MEDSIGLIP_SPEC, {
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5], "resample": 3, "rescale_factor": 1 / 255, "size": {"height": 448, "width": 448}}),
    "medgemma": ("Gemma3ImageProcessorPil", siglip.MEDGEMMA_SPEC, {
        "do_normalize": True, "do_rescale": True, "do_resize": True, "do_pan_and_scan": None,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2, "rescale_factor": 1 / 255,
        "size": {"height": 896, "width": 896}}),
    "chexagent": ("BlipImageProcessorPil", chexagent.SPEC, {
        "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": list(CLIP[0]), "image_std": list(CLIP[1]), "resample": 3, "rescale_factor": 1 / 255,
        "size": {"height": 448, "width": 448}}),
}


@pytest.mark.parametrize("crop", [False, True], ids=["full", "odd-margin"])
@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_preprocessing_matches_transformers_processor(name: str, crop: bool, xray: np.ndarray) -> None:
    import transformers

    xray = odd_margin_crop(xray) if crop else xray
    cls_name, default, config = OFFICIAL[name]
    spec = hf_image_spec(config, default=default, source=name)
    assert spec == default  # the shipped config describes exactly the adapter's built-in default
    expected = _official_processor_output(getattr(transformers, cls_name), config, xray)
    np.testing.assert_allclose(spec(xray).numpy(), expected, atol=2e-6, rtol=0)


def test_crop_rounding_conventions_differ_on_odd_margins() -> None:
    assert crop_offset(227, 224, "floor") == 1 and crop_offset(227, 224, "round") == 2  # round(1.5) = 2
    assert crop_offset(225, 224, "floor") == 0 == crop_offset(225, 224, "round")        # round(0.5) = 0


def test_bad_images_are_rejected() -> None:
    with pytest.raises(ValueError, match="grey image"):
        rad_dino.SPEC(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rad_dino.SPEC(np.full((8, 8), 2.0, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        rad_dino.SPEC(np.full((8, 8), np.nan, dtype=np.float32))


def test_cxr_foundation_16bit_png_matches_official_recipe(xray: np.ndarray) -> None:
    """min-shift, scale by 65535/max, truncate to uint16, lossless 16-bit PNG (as ``np_to_tfexample``)."""
    ref = xray.astype(np.float32) - xray.min()
    ref = (ref * (65535 / ref.max())).astype(np.uint16)
    pixels = cxr_foundation.to_uint16(xray)
    np.testing.assert_array_equal(pixels, ref)
    assert pixels.max() == 65535 and pixels.min() == 0
    decoded = np.asarray(Image.open(io.BytesIO(cxr_foundation.png16(pixels))))
    assert decoded.dtype.itemsize == 2 or decoded.dtype == np.int32
    np.testing.assert_array_equal(decoded.astype(np.int64), pixels.astype(np.int64))
