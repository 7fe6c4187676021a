"""``latents.zarr``, the fusion stage's per-patient joint latents (docs/data-contracts.md): write and read.

Arrays ``ids`` (N,) str (patient_id), ``latent`` (N, d) float32, ``split`` (N,) str (train/val/test),
``informed`` (N,) bool (False: the patient had no input the model uses, so its latent is the prior
mean); attrs ``level``, ``model``, ``latent_dim``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr


def write_latents(path: Path, ids: np.ndarray, latent: np.ndarray, *, split: dict[str, np.ndarray],
                  informed: np.ndarray, model: str | None) -> Path:
    """Write ``latents.zarr`` at ``path``; ``split`` maps a split name to the row indices in it."""
    root = zarr.open_group(str(path), mode="w")
    names = np.empty(len(ids), dtype=object)
    for name, idx in split.items():
        names[idx] = name
    for name, values in (("ids", np.asarray(ids).astype(str)), ("split", names.astype(str))):
        arr = root.create_array(name, shape=values.shape, dtype=str)
        arr[:] = values
    root.create_array("latent", data=np.asarray(latent, np.float32))
    root.create_array("informed", data=np.asarray(informed, bool))
    root.attrs.update({"level": "patient", "model": model, "latent_dim": int(latent.shape[1])})
    return path


def _open(path: Path) -> zarr.Group:
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no latents at {path}: run `python -m fusion.run` first or pass the right --latents")
    root = zarr.open_group(str(path), mode="r")
    for name in ("ids", "latent"):
        if name not in root:
            raise ValueError(f"{path} has no '{name}' array (see docs/data-contracts.md, fusion)")
    return root


def read_latents(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """``(patient ids (N,) <U str, latent (N, d) float32, attrs)``; ValueError naming the file when unusable."""
    root = _open(path)
    ids = np.asarray(root["ids"][:], dtype=object).astype(str)   # zarr v3 gives variable-width StringDType
    latent = np.asarray(root["latent"][:], dtype=np.float32)
    if latent.ndim != 2 or len(ids) != len(latent):
        raise ValueError(f"{path}: 'latent' must be (N, d) with N = len(ids); got {latent.shape} and {len(ids)} ids")
    return ids, latent, dict(root.attrs)


def read_informed(path: Path) -> np.ndarray:
    """(N,) bool, aligned with :func:`read_latents`: False where the latent is the prior (no input at all)."""
    root = _open(path)
    if "informed" not in root:                                 # written before the array existed
        return np.ones(root["ids"].shape[0], bool)
    return np.asarray(root["informed"][:], bool)
