"""CXR Foundation / ELIXR v2 (google/cxr-foundation): TensorFlow SavedModels, used only when TF is installed.

Official pipeline (model card quick start): the grey image is shifted to min 0 and scaled to the full
16-bit range (``image *= 65535 / max``, then ``astype(uint16)``, i.e. truncation), PNG-encoded
(16-bit greyscale) into a ``tf.train.Example`` (``image/encoded``, ``image/format = png``), run through
``elixr-c-v2-pooled`` (``serving_default(input_example=...)`` -> ``feature_maps_0``), and then through
the ELIXR-B Q-Former ``pax-elixr-b-text`` with empty text (``ids`` int32 zeros and ``paddings`` float32
zeros, shape (1, 1, 128)). ``img_emb`` (32 x 768) is the ``cxr-foundation`` embedding,
``all_contrastive_img_emb`` (32 x 128) the ``cxr-foundation-contrastive`` one. The SavedModels resize
internally, so :meth:`preprocess` returns the full-size 16-bit image and :meth:`collate` keeps a list
(images differ in size); :meth:`forward` accepts that list or a stacked batch.
"""
from __future__ import annotations

import importlib
import io
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from PIL import Image

from embedders.base import Embedder, ModelInfo, register
from embedders.foundation._weights import MissingDependencyError, resolve_weights_dir

ELIXR_C = "elixr-c-v2-pooled"
ELIXR_B = "pax-elixr-b-text"
_HAI_DEF = "Health AI Developer Foundations terms of use; gated on Hugging Face (accept the terms first)"
_COMMON = dict(version="google/cxr-foundation ELIXR v2", input_size=None,
               resize="min-shift, scale to 65535/max, uint16 (truncate), 16-bit PNG in tf.Example; "
                      "resized inside the SavedModel", weights_source="google/cxr-foundation", license=_HAI_DEF)
INFO = ModelInfo(name="cxr-foundation", output_shape=(32, 768), token_names=("query",),
                 notes="ELIXR-B img_emb (32 query tokens x 768)", **_COMMON)
CONTRASTIVE_INFO = ModelInfo(name="cxr-foundation-contrastive", output_shape=(32, 128), token_names=("query",),
                             notes="ELIXR-B all_contrastive_img_emb (32 x 128)", **_COMMON)
_OUTPUT_KEY = {INFO.name: "img_emb", CONTRASTIVE_INFO.name: "all_contrastive_img_emb"}


def to_uint16(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` float [0, 1] -> uint16 as the official ``np_to_tfexample`` (min 0, max 65535, truncation)."""
    image = np.asarray(image)
    if image.ndim != 2 or not np.isfinite(image).all():
        raise ValueError(f"expected a finite (H, W) grey image, got shape {image.shape}")
    shifted = image.astype(np.float32)
    shifted -= shifted.min()
    peak = shifted.max()
    if peak > 0:
        shifted *= 65535 / peak
    return shifted.astype(np.uint16)


def png16(pixels: np.ndarray) -> bytes:
    """A uint16 ``(H, W)`` array as 16-bit greyscale PNG bytes (lossless)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def import_tensorflow() -> ModuleType:
    """TensorFlow (and tensorflow_text's ops when installed), or one clear error line."""
    try:
        tf = importlib.import_module("tensorflow")
    except ImportError as exc:
        raise MissingDependencyError(
            "cxr-foundation: TensorFlow is not installed; `pip install 'cxr-fusion[tensorflow]' tensorflow-text` "
            "(tensorflow-text matching the TensorFlow version) to run google/cxr-foundation (" + _HAI_DEF + ")"
        ) from exc
    try:
        importlib.import_module("tensorflow_text")  # registers the SentencePiece op ELIXR-B's text branch uses
    except ImportError as exc:
        raise MissingDependencyError("cxr-foundation: tensorflow-text is not installed; "
                                     "`pip install tensorflow-text` matching your TensorFlow version") from exc
    return tf


class CxrFoundation(Embedder):
    """ELIXR-C -> ELIXR-B on TensorFlow: one 16-bit image -> ``(32, 768)`` (or ``(32, 128)``)."""

    def __init__(self, folder: Path, info: ModelInfo) -> None:
        super().__init__()
        self.info = info
        self.tf = import_tensorflow()
        self.elixr_c = self.tf.saved_model.load(str(folder / ELIXR_C)).signatures["serving_default"]
        self.elixr_b = self.tf.saved_model.load(str(folder / ELIXR_B)).signatures["serving_default"]

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """``(H, W)`` float [0, 1] -> ``(H, W)`` int32 tensor holding the official uint16 pixels."""
        return torch.from_numpy(to_uint16(image).astype(np.int32))

    def collate(self, items: list[torch.Tensor]) -> list[torch.Tensor]:
        """Images keep their own size (the SavedModel resizes), so a batch is a list."""
        return list(items)

    def _example(self, pixels: np.ndarray) -> bytes:
        example = self.tf.train.Example()
        feature = example.features.feature
        feature["image/encoded"].bytes_list.value.append(png16(pixels))
        feature["image/format"].bytes_list.value.append(b"png")
        return example.SerializeToString()

    def forward(self, batch: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """A list (or stack) of ``(H, W)`` uint16-valued tensors -> ``(B, *info.output_shape)`` float32."""
        tf = self.tf
        out = []
        for item in batch:
            features = self.elixr_c(input_example=tf.constant([self._example(item.numpy().astype(np.uint16))]))
            text = {"ids": tf.zeros((1, 1, 128), dtype=tf.int32), "paddings": tf.zeros((1, 1, 128), dtype=tf.float32)}
            result = self.elixr_b(image_feature=features["feature_maps_0"], **text)
            out.append(np.asarray(result[_OUTPUT_KEY[self.info.name]].numpy(), dtype=np.float32)[0])
        return torch.from_numpy(np.stack(out))


def _build(weights: Path | None, info: ModelInfo) -> CxrFoundation:
    folder = resolve_weights_dir(weights, info, required=[f"{ELIXR_C}/saved_model.pb", f"{ELIXR_B}/saved_model.pb"])
    return CxrFoundation(folder, info)


@register(INFO)
def cxr_foundation(weights: Path | None) -> CxrFoundation:
    """CXR Foundation ELIXR-B image embedding (32 x 768); needs TensorFlow."""
    return _build(weights, INFO)


@register(CONTRASTIVE_INFO)
def cxr_foundation_contrastive(weights: Path | None) -> CxrFoundation:
    """CXR Foundation ELIXR-B contrastive image embedding (32 x 128); needs TensorFlow."""
    return _build(weights, CONTRASTIVE_INFO)
