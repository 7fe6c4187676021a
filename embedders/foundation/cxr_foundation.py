"""CXR Foundation / ELIXR v2 (google/cxr-foundation): TensorFlow SavedModels, used only when TF is installed.

Official pipeline (Hugging Face quick start and ``clientside/clients.py`` of google-health/cxr-foundation):
the grey image is PNG-encoded into a ``tf.train.Example`` (``image/encoded``, ``image/format = png``) and
run through ``elixr-c-v2-pooled`` (``serving_default(input_example=[serialized])`` -> ``feature_maps_0``,
``(1, 8, 8, 1376)``), then through the ELIXR-B Q-Former ``pax-elixr-b-text`` with empty text (``ids`` int32
and ``paddings`` float32 zeros of shape (1, 1, 128)). ``img_emb`` (32 x 768) is the ``cxr-foundation``
embedding, ``all_contrastive_img_emb`` (32 x 128) the ``cxr-foundation-contrastive`` one. Our float
[0, 1] image takes the quick start's ``np_to_tfexample`` path for non-uint8 arrays: shift to min 0, scale
by ``65535 / max``, truncate to uint16, 16-bit greyscale PNG. The SavedModels resize internally, so
:meth:`preprocess` returns the full-size 16-bit image and :meth:`collate` keeps a list (images differ in
size); :meth:`forward` accepts that list or a stacked batch and runs one image at a time, as the official
clients do.
"""
from __future__ import annotations

import hashlib
import importlib
import io
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from PIL import Image

from core.provenance import sha256_file
from embedders.base import Embedder, ModelInfo, register
from embedders.foundation._weights import MissingDependencyError, WeightsMismatchError, resolve_weights_dir

ELIXR_C = "elixr-c-v2-pooled"
ELIXR_B = "pax-elixr-b-text"
ELIXR_C_INPUTS = {"input_example"}
ELIXR_C_OUTPUT = "feature_maps_0"
ELIXR_C_SHAPE = (8, 8, 1376)   # per image, as the official clients' _ELIXR_C_EMBEDDING_SHAPE
QFORMER_INPUTS = {"image_feature", "ids", "paddings"}
TEXT_SHAPE = (1, 1, 128)   # empty text: BERT ids / paddings of one 128-token prompt, all zeros
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


def savedmodels_sha256(folder: Path) -> str:
    """``savedmodel:`` + sha256 over ``relative/path sha256-of-file`` lines (sorted) of every file in the two
    SavedModel folders: changes with any weight or graph, reproducible from the per-file sha256 on the Hub."""
    lines = sorted(f"{path.relative_to(folder).as_posix()} {sha256_file(path)}\n"
                   for sub in (ELIXR_C, ELIXR_B) for path in (folder / sub).rglob("*") if path.is_file())
    return "savedmodel:" + hashlib.sha256("".join(lines).encode()).hexdigest()


def import_tensorflow() -> ModuleType:
    """TensorFlow, or one clear error line; tensorflow_text is imported too when installed (it registers the
    text ops that the official notebooks load beside the SavedModels)."""
    try:
        tf = importlib.import_module("tensorflow")
    except ImportError as exc:
        raise MissingDependencyError(
            "cxr-foundation: TensorFlow is not installed; `pip install 'cxr-fusion[tensorflow]'` "
            "to run google/cxr-foundation (" + _HAI_DEF + ")"
        ) from exc
    try:
        importlib.import_module("tensorflow_text")
    except ImportError:
        pass   # only needed if the SavedModel uses its ops; load_signature names it when they are missing
    return tf


def load_signature(tf: ModuleType, path: Path, inputs: set[str],
                   outputs: dict[str, tuple[int, ...]]) -> tuple[Any, Any]:
    """``(loaded SavedModel, its serving_default)``, checking input names and output keys / per-image shapes.

    Raises :class:`WeightsMismatchError` (one line) when the signature is not the release's, and
    :class:`MissingDependencyError` when the graph uses an op this TensorFlow lacks (tensorflow-text)."""
    try:
        model = tf.saved_model.load(str(path))
    except (RuntimeError, tf.errors.NotFoundError) as exc:   # RuntimeError in TF 2.21, NotFoundError before
        missing = re.search(r"Op type not registered '([^']+)'", str(exc))
        if missing is None:
            raise
        raise MissingDependencyError(
            f"cxr-foundation: {path} uses the TensorFlow op {missing[1]!r}, which this TensorFlow does not have "
            f"(the official notebooks load tensorflow-text beside the SavedModels); `pip install "
            f"tensorflow-text=={tf.__version__.rsplit('.', 1)[0]}.*` (matching TensorFlow {tf.__version__})") from exc
    if "serving_default" not in model.signatures:
        raise WeightsMismatchError(f"{path}: no serving_default signature (has {sorted(model.signatures)})")
    signature = model.signatures["serving_default"]
    got_inputs = set(signature.structured_input_signature[1])
    if got_inputs != inputs:
        raise WeightsMismatchError(f"{path}: serving_default takes {sorted(got_inputs)}, expected {sorted(inputs)}")
    for key, shape in outputs.items():
        spec = signature.structured_outputs.get(key)
        if spec is None:
            raise WeightsMismatchError(f"{path}: serving_default has no output {key!r} "
                                       f"(has {sorted(signature.structured_outputs)})")
        if not spec.shape[1:].is_compatible_with(shape):
            raise WeightsMismatchError(f"{path}: output {key!r} has per-image shape {spec.shape[1:]}, "
                                       f"expected {shape}")
    return model, signature


class CxrFoundation(Embedder):
    """ELIXR-C -> ELIXR-B on TensorFlow: one 16-bit image -> ``(32, 768)`` (or ``(32, 128)``)."""

    def __init__(self, folder: Path, info: ModelInfo) -> None:
        super().__init__()
        self.info = info
        self.tf = import_tensorflow()
        self.output_key = _OUTPUT_KEY[info.name]
        # the loaded objects are kept: their variables must outlive the signatures that capture them
        self._elixr_c, self.elixr_c = load_signature(self.tf, folder / ELIXR_C, ELIXR_C_INPUTS,
                                                     {ELIXR_C_OUTPUT: ELIXR_C_SHAPE})
        self._elixr_b, self.elixr_b = load_signature(self.tf, folder / ELIXR_B, QFORMER_INPUTS,
                                                     {self.output_key: info.output_shape})
        self.weights_sha256 = savedmodels_sha256(folder)

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
        text = {"ids": tf.zeros(TEXT_SHAPE, dtype=tf.int32), "paddings": tf.zeros(TEXT_SHAPE, dtype=tf.float32)}
        out = []
        for item in batch:
            features = self.elixr_c(input_example=tf.constant([self._example(item.numpy().astype(np.uint16))]))
            result = self.elixr_b(image_feature=features[ELIXR_C_OUTPUT], **text)
            out.append(np.asarray(result[self.output_key].numpy(), dtype=np.float32)[0])
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
