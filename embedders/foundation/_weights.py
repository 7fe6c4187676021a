"""Locating and strictly loading foundation-model weights from a local folder or the Hugging Face cache.

Weights are never downloaded here: users pass ``--weights DIR`` (a plain folder, a Hugging Face cache
repo folder ``models--org--name`` or one of its ``snapshots/<rev>`` folders), or leave it out and the
adapter looks in the default Hugging Face cache. Anything missing gives one :class:`MissingWeightsError`
line naming what is missing, where to get it and its licence/gating.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open

from core.provenance import sha256_file
from embedders.base import ModelInfo, WeightsError

log = logging.getLogger(__name__)


class MissingWeightsError(WeightsError):
    """The weights folder or a file the adapter needs is not there (message: one line, with the fix)."""


class MissingDependencyError(ValueError):
    """An optional dependency of one adapter (e.g. TensorFlow) is not installed (message: one line).

    A ValueError (not ImportError) so the CLIs report it as a user error line like the others."""


class WeightsMismatchError(WeightsError):
    """The checkpoint's keys or shapes do not match the architecture (strict loading failed)."""


def missing_weights(info: ModelInfo, where: Path | str, what: str) -> MissingWeightsError:
    """The one-line error for weights that are not where the user said (or not in the HF cache)."""
    return MissingWeightsError(
        f"{info.name}: {what} not found at {where}; download {info.weights_source} "
        f"({info.license}) and pass --weights DIR"
    )


def hf_cache_root() -> Path:
    """The Hugging Face hub cache folder (``HF_HUB_CACHE`` > ``HF_HOME/hub`` > ``~/.cache/huggingface/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def _snapshot_of(repo_dir: Path) -> Path | None:
    """The snapshot a cache repo folder points to: ``refs/main`` if present, else its only/newest snapshot."""
    snapshots = repo_dir / "snapshots"
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        candidate = snapshots / ref.read_text().strip()
        if candidate.is_dir():
            return candidate
    found = sorted((p for p in snapshots.glob("*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def resolve_weights_dir(weights: Path | None, info: ModelInfo, *, required: Iterable[str]) -> Path:
    """The folder holding ``required`` files (names relative to it, ``a|b`` = either) for ``info``.

    ``weights`` may be a plain folder, a HF cache repo folder (``models--org--name``) or None (look up
    ``info.weights_source`` in the default HF cache). Raises :class:`MissingWeightsError`.
    """
    if weights is None:
        weights = hf_cache_root() / ("models--" + info.weights_source.replace("/", "--"))
    weights = Path(weights).expanduser()
    if not weights.is_dir():
        raise missing_weights(info, weights, "weights folder")
    folder = _snapshot_of(weights) if (weights / "snapshots").is_dir() else weights
    if folder is None:
        raise missing_weights(info, weights / "snapshots", "a downloaded snapshot")
    for name in required:
        options = name.split("|")
        if not any((folder / option).exists() for option in options):
            raise missing_weights(info, folder, " or ".join(options))
    return folder


def read_json(path: Path) -> dict:
    """A JSON file as a dict (a clear error naming the file if it is not valid JSON)."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise WeightsMismatchError(f"{path}: not valid JSON ({exc})") from exc


def safetensors_files(folder: Path, stem: str = "model") -> list[Path]:
    """``stem.safetensors`` or the shards listed in ``stem.safetensors.index.json`` (sorted, unique)."""
    single = folder / f"{stem}.safetensors"
    if single.is_file():
        return [single]
    index = folder / f"{stem}.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(read_json(index)["weight_map"].values()))
        return [folder / shard for shard in shards]
    return []


def read_safetensors(files: list[Path], *, prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Tensors whose names start with one of ``prefixes`` (prefix kept), read lazily shard by shard."""
    state: dict[str, torch.Tensor] = {}
    for path in files:
        if not path.is_file():
            raise MissingWeightsError(f"{path}: shard listed in the index is missing; re-download it")
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                if key.startswith(prefixes):
                    state[key] = handle.get_tensor(key)
    return state


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` under ``prefix``, with the prefix removed."""
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], *, source: Path | str) -> None:
    """``module.load_state_dict(state, strict=True)`` with a readable error (counts + first keys, shapes)."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
              for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} wrong shapes (e.g. {'; '.join(shapes[:3])})")
        raise WeightsMismatchError(f"{source}: checkpoint does not match {type(module).__name__}: "
                                   + "; ".join(parts))
    module.load_state_dict(state, strict=True)


def tensors_sha256(module: torch.nn.Module) -> str:
    """sha256 over ``module``'s state_dict: name, dtype, shape and raw bytes of every tensor, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


def weights_checksum(files: list[Path], module: torch.nn.Module, *, max_bytes: int = 2 << 30) -> str:
    """sha256 of a single weights file up to ``max_bytes``; for sharded or larger checkpoints (of which only
    the image tower is read) ``"tensors:" + tensors_sha256(module)``, the checksum of the weights in use."""
    if len(files) == 1 and files[0].stat().st_size <= max_bytes:
        return sha256_file(files[0])
    log.info("%d weight file(s), sharded or larger than %d bytes: hashing the loaded image-tower tensors",
             len(files), max_bytes)
    return "tensors:" + tensors_sha256(module)
