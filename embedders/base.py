"""The embedder interface and the model registry.

An :class:`Embedder` turns a decoded image (``(H, W)`` float32 in [0, 1], as returned by
:func:`cohorts.images.load_image`) into a fixed-shape embedding in two steps, so that decoding and
preprocessing can run in worker threads while the forward pass runs in the main thread:

* :meth:`Embedder.preprocess` -- one image -> one model-ready ``torch.Tensor`` (e.g. ``(3, 518, 518)``);
* :meth:`Embedder.forward` -- a batch made by :meth:`Embedder.collate` (stacked ``(B, ...)`` by default)
  -> ``(B, *info.output_shape)`` float32.

Model families register a factory with :func:`register`; users get one with :func:`get_embedder`.
Factories that read a local checkpoint use :func:`resolve_weights_file` and :func:`verify_sha256`,
which raise :class:`WeightsError` with a message that says what to do.
"""
from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.provenance import sha256_file


class UnknownEmbedderError(ValueError, KeyError):
    """A model name the registry does not know (a user error; still a KeyError for lookups)."""


class WeightsError(ValueError):
    """Missing, ambiguous or unexpected model weights (the message says which file and what to do)."""


@dataclass(frozen=True)
class ModelInfo:
    """Registry metadata of one model (in the spirit of torchxrayvision's model registry)."""

    name: str                          # registry key, e.g. "rad-dino"
    version: str                       # release / revision the adapter reproduces
    output_shape: tuple[int, ...]      # per image, e.g. (768,) or (32, 768)
    input_size: int | None             # square side after preprocessing (None: not an image model)
    mean: tuple[float, ...] = ()       # normalization applied in preprocess
    std: tuple[float, ...] = ()
    resize: str = ""                   # e.g. "shortest side 518 bicubic + centre crop 518"
    weights_source: str = ""           # where users get the weights (HF repo id, URL, "none")
    license: str = ""                  # licence / gating note shown in errors and the README
    sha256: str | None = None          # expected checksum of the main weights file, when fixed
    notes: str = ""
    token_names: tuple[str, ...] = field(default=())  # optional names of multi-token outputs


class Embedder(abc.ABC):
    """Base class: subclasses set ``info`` and implement ``preprocess`` and ``forward``."""

    info: ModelInfo

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self.half = False
        self.weights_sha256: str | None = None   # sha256 of the weights actually loaded

    @abc.abstractmethod
    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """One ``(H, W)`` float32 image in [0, 1] -> one model-ready tensor (CPU, float32)."""

    @abc.abstractmethod
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """A batch of preprocessed tensors ``(B, ...)`` -> embeddings ``(B, *info.output_shape)`` float32 on CPU."""

    def collate(self, items: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """Preprocessed images -> the batch :meth:`forward` takes (stacked; models whose inputs keep their
        own size, e.g. CXR Foundation, return the list)."""
        return torch.stack(items)

    def to(self, device: str | torch.device = "cpu", *, half: bool = False) -> Embedder:
        """Move the model (if any) to ``device``; ``half`` enables float16 on GPU only."""
        self.device = torch.device(device)
        self.half = bool(half and self.device.type == "cuda")
        return self

    def provenance(self) -> dict[str, object]:
        """Attributes stamped on the store group this embedder writes."""
        info = self.info
        return {
            "model": info.name, "model_version": info.version, "output_shape": list(info.output_shape),
            "input_size": info.input_size, "mean": list(info.mean), "std": list(info.std),
            "resize": info.resize, "weights_source": info.weights_source, "license": info.license,
            "weights_sha256": self.weights_sha256,
        }


def resolve_weights_file(weights: Path | None, *, model: str, suffixes: tuple[str, ...] = (".pth", ".pt", ".bin")) -> Path:
    """The checkpoint file for ``model``: ``weights`` itself, or the single file with one of ``suffixes`` in it."""
    if weights is None:
        raise WeightsError(f"embedder {model!r} needs local weights: pass --weights PATH (a file or a folder)")
    weights = Path(weights)
    if weights.is_file():
        return weights
    if not weights.is_dir():
        raise WeightsError(f"weights for {model!r} not found at {weights}")
    found = sorted(p for p in weights.iterdir() if p.is_file() and p.suffix in suffixes)
    if len(found) != 1:
        raise WeightsError(
            f"weights folder {weights} for {model!r} must hold exactly one {'/'.join(suffixes)} file, "
            f"found {[p.name for p in found]}; pass the file itself with --weights")
    return found[0]


def verify_sha256(path: Path, *, expected: str | None, model: str) -> str:
    """Hex sha256 of ``path``; raises WeightsError when ``expected`` is given and differs."""
    digest = sha256_file(path)
    if expected is not None and digest != expected:
        raise WeightsError(
            f"weights {path} for {model!r} have sha256 {digest}, the registry expects {expected}; "
            "use the published file, or set the model option verify_sha256: false for your own checkpoint")
    return digest


EmbedderFactory = Callable[..., Embedder]
_REGISTRY: dict[str, tuple[ModelInfo, EmbedderFactory]] = {}


def register(info: ModelInfo) -> Callable[[EmbedderFactory], EmbedderFactory]:
    """Decorator: register ``factory(weights: Path | None, **options) -> Embedder`` under ``info.name``."""

    def deco(factory: EmbedderFactory) -> EmbedderFactory:
        if info.name in _REGISTRY:
            raise ValueError(f"embedder {info.name!r} registered twice")
        _REGISTRY[info.name] = (info, factory)
        return factory

    return deco


def available_models() -> dict[str, ModelInfo]:
    """Registered models and their metadata."""
    _load_builtin_families()
    return {name: info for name, (info, _) in sorted(_REGISTRY.items())}


def get_embedder(name: str, *, weights: str | Path | None = None, **options: object) -> Embedder:
    """Build the embedder ``name``, loading weights from ``weights`` (a local dir or file) when it needs them."""
    _load_builtin_families(until=name)
    if name not in _REGISTRY:
        raise UnknownEmbedderError(f"unknown embedder {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    _, factory = _REGISTRY[name]
    return factory(Path(weights) if weights is not None else None, **options)


def _load_builtin_families(until: str | None = None) -> None:
    """Import the modules that register the built-in model families (idempotent), in order; stop early once
    ``until`` is registered (so a baseline does not pay for importing transformers)."""
    import importlib

    for module in BUILTIN_FAMILIES:
        if until is not None and until in _REGISTRY:
            return
        importlib.import_module(module)


# One module per model family; each registers itself on import. Add new families here.
BUILTIN_FAMILIES: list[str] = ["embedders.baselines", "embedders.foundation"]
