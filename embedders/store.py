"""The Zarr v3 embedding store (layout in docs/data-contracts.md).

::

    STORE.zarr/                       attrs: manifest_sha256, n_images
      image_id            (N,) str     rows in manifest order
      {model}/                        attrs: Embedder.provenance() + library_versions, created,
                                             manifest_sha256, augmentations, extraction settings
        {augmentation}/
          embeddings      (N, *shape) float32, chunks (chunk_rows, *shape), NaN where not done
          done            (N,) bool,  chunks (chunk_rows,)

Crash safety: writers only ever write whole row chunks, the ``embeddings`` chunk first and the ``done``
chunk second, and zarr's LocalStore writes each chunk file atomically (temp file + rename). A process
killed at any point therefore leaves every chunk either old or new, and a row is marked done only after
its embedding is on disk; rerunning recomputes exactly the rows whose ``done`` is False.
Because ``embeddings`` and ``done`` share the row chunking, parallel workers that own disjoint chunk
ranges never write the same file. Creation is crash-safe too: a new store is built under a temporary
name and renamed into place once its root attrs and ``image_id`` are written, and a model group whose
identity attrs or arrays are incomplete (killed while being created) is rebuilt on the next run.

Readers use :class:`EmbeddingStore`; :meth:`EmbeddingStore.read` returns ``(ids, dask array)`` lazily.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr

from core.config import default_of
from core.safeio import fault_point

from .config import EmbeddersConfig

log = logging.getLogger(__name__)

IMAGE_ID = "image_id"
EMBEDDINGS = "embeddings"
DONE = "done"
# Provenance keys that must match for a rerun to resume an existing model group.
IDENTITY_KEYS = ("model", "model_version", "output_shape", "input_size", "mean", "std", "resize",
                 "weights_sha256", "source_sha256")


class StoreError(ValueError):
    """A store that cannot be read, or cannot be resumed with the given inputs (message says what to do)."""


def errors_path(store: str | Path) -> Path:
    """``STORE.zarr.errors.csv``: the errors table written next to the store."""
    store = Path(store)
    return store.with_name(store.name + ".errors.csv")


class EmbeddingStore:
    """Read-only view of an embedding store.

    >>> ids, x = EmbeddingStore("embeddings.zarr").read("squeezenet1_1")   # x: dask (n_done, 512)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise StoreError(f"no embedding store at {self.path} (run `python -m embedders.run` first)")
        self._root = zarr.open_group(self.path, mode="r")

    @property
    def manifest_sha256(self) -> str:
        """sha256 of the manifest file the store's rows are aligned to."""
        return str(self._root.attrs["manifest_sha256"])

    def image_ids(self) -> np.ndarray:
        """All ``(N,)`` image ids in manifest order (done or not)."""
        return stored_ids(self._root)

    def models(self) -> list[str]:
        """Model groups present in the store."""
        return sorted(name for name, _ in self._root.groups())

    def augmentations(self, model: str) -> list[str]:
        """Augmentation groups present for ``model``."""
        return sorted(name for name, _ in self._group(model).groups())

    def attrs(self, model: str) -> dict[str, Any]:
        """Provenance attributes of ``model`` (weights sha256, preprocessing, versions, created, ...)."""
        return dict(self._group(model).attrs)

    def done(self, model: str, augmentation: str = "original") -> np.ndarray:
        """``(N,)`` bool completion mask of one model/augmentation."""
        return np.asarray(self._arrays(model, augmentation)[1][:], dtype=bool)

    def read(self, model: str, augmentation: str = "original") -> tuple[np.ndarray, da.Array]:
        """``(ids (n,), embeddings (n, *shape))`` for the rows whose ``done`` is True, in manifest order.

        The array is a lazy dask array over the zarr chunks: nothing is loaded until computed.
        """
        emb, done = self._arrays(model, augmentation)
        rows = np.flatnonzero(np.asarray(done[:], dtype=bool))
        x = da.from_zarr(emb)
        if rows.size < emb.shape[0]:
            x = x[rows]
        return self.image_ids()[rows], x

    def _group(self, model: str) -> zarr.Group:
        if model not in self._root:
            raise StoreError(f"store {self.path} has no model {model!r}; it has {self.models()}")
        return self._root[model]

    def _arrays(self, model: str, augmentation: str) -> tuple[zarr.Array, zarr.Array]:
        group = self._group(model)
        if augmentation not in group:
            raise StoreError(f"store {self.path} has no augmentation {augmentation!r} for {model!r}; "
                             f"it has {self.augmentations(model)}")
        return group[augmentation][EMBEDDINGS], group[augmentation][DONE]


def stored_ids(root: zarr.Group) -> np.ndarray:
    """The root ``image_id`` array as a numpy ``<U`` string array."""
    return np.asarray(root[IMAGE_ID][:], dtype=object).astype(str)


def open_store_for_writing(path: str | Path, *, image_ids: np.ndarray, manifest_sha256: str,
                           overwrite: bool = False) -> zarr.Group:
    """Create the store, or reopen it for resuming after checking it belongs to the same manifest.

    A store made from another manifest (different sha256 or rows) raises StoreError unless
    ``overwrite``, which deletes the whole store (all models) and its errors table and starts afresh.
    """
    path = Path(path)
    for old in path.parent.glob(f".{path.name}.creating-*"):     # a creation killed before its rename
        shutil.rmtree(old, ignore_errors=True)
    if (path / "zarr.json").is_file() and _interrupted_creation(path):
        log.warning("store %s was left half-created by a killed run (no image ids); recreating it", path)
        shutil.rmtree(path)
    if (path / "zarr.json").is_file():
        root = zarr.open_group(path, mode="r+")
        old_sha = root.attrs.get("manifest_sha256")
        same = old_sha == manifest_sha256 and np.array_equal(stored_ids(root), np.asarray(image_ids, dtype=str))
        if same:
            _remove_partial_files(path)
            return root
        if not overwrite:
            raise StoreError(
                f"store {path} was built from another manifest (sha256 {old_sha}, now {manifest_sha256}); "
                "refusing to resume. Use a new --store path, or --overwrite to delete it and start again")
        log.warning("overwriting store %s (manifest changed)", path)
        shutil.rmtree(path)
        errors_path(path).unlink(missing_ok=True)
    elif path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise StoreError(f"{path} exists and is not a zarr store; choose another --store path")
    tmp = path.with_name(f".{path.name}.creating-{os.getpid()}")
    build = zarr.open_group(tmp, mode="w")
    build.attrs.update({"manifest_sha256": manifest_sha256, "n_images": int(len(image_ids))})
    fault_point("store-create")                       # attrs written, ids not yet: only the temporary is affected
    ids = build.create_array(IMAGE_ID, shape=(len(image_ids),), dtype=str, chunks=(max(1, min(len(image_ids), 1 << 16)),))
    ids[:] = np.asarray(image_ids, dtype=str)
    os.replace(tmp, path)                             # an empty folder at ``path`` is replaced too
    return zarr.open_group(path, mode="r+")


def _interrupted_creation(path: Path) -> bool:
    """A store whose root lacks ``image_id`` and any model group (created in place by an older version, then killed)."""
    root = zarr.open_group(path, mode="r")
    return IMAGE_ID not in root and not list(root.groups())


def prepare_model_group(root: zarr.Group, model: str, *, attrs: dict[str, Any], augmentations: list[str],
                        output_shape: tuple[int, ...], chunk_rows: int, overwrite: bool = False) -> zarr.Group:
    """Create (or check and reuse) ``/{model}/{augmentation}/{embeddings,done}`` for each augmentation.

    An existing group whose identity attrs (:data:`IDENTITY_KEYS`) differ from ``attrs`` raises
    StoreError unless ``overwrite`` (which recomputes this model only).
    """
    n = int(root.attrs["n_images"])
    if model in root and "model" not in root[model].attrs:
        log.warning("model %s in the store was left half-created by a killed run; recreating it", model)
        del root[model]
    if model in root:
        group = root[model]
        old = dict(group.attrs)
        diff = {k: (old.get(k), attrs.get(k)) for k in IDENTITY_KEYS if old.get(k) != attrs.get(k)}
        if diff and not overwrite:
            lines = "; ".join(f"{k}: store {a!r} vs now {b!r}" for k, (a, b) in diff.items())
            raise StoreError(f"store {root.store_path} holds {model!r} made differently ({lines}); "
                             "use --overwrite to recompute it, or another model name/store")
        if diff:
            log.warning("overwriting model %s in the store (%s)", model, sorted(diff))
            del root[model]
        elif "created" in old:
            attrs = {**attrs, "created": old["created"]}     # keep the first creation time when resuming
    group = root.require_group(model)
    for aug in augmentations:
        sub = group.require_group(aug)
        if EMBEDDINGS not in sub or DONE not in sub:   # new, or killed between its two arrays: no row is done
            for name in (EMBEDDINGS, DONE):
                if name in sub:
                    del sub[name]
            sub.create_array(EMBEDDINGS, shape=(n, *output_shape), dtype="float32",
                             chunks=(chunk_rows, *output_shape), fill_value=np.nan)
            fault_point("group-arrays")               # embeddings created, done not yet
            sub.create_array(DONE, shape=(n,), dtype=bool, chunks=(chunk_rows,), fill_value=False)
        elif tuple(sub[EMBEDDINGS].shape[1:]) != tuple(output_shape):
            raise StoreError(f"{model}/{aug} in {root.store_path} has rows of shape {sub[EMBEDDINGS].shape[1:]}, "
                             f"expected {output_shape}; use --overwrite")
    known = list(group.attrs.get("augmentations", []))       # identity last: a group with it is complete
    group.attrs.update({**attrs, "augmentations": known + [a for a in augmentations if a not in known]})
    return group


def write_rows(group: zarr.Group, augmentation: str, start: int, values: np.ndarray, ok: np.ndarray) -> None:
    """Write rows ``start:start+len(values)`` (whole chunks, or the tail): embeddings first, then ``done``.

    Rows with ``ok`` False are stored as NaN and stay not done.
    """
    emb, done = group[augmentation][EMBEDDINGS], group[augmentation][DONE]
    rows = emb.chunks[0]
    stop = start + len(values)
    if start % rows or (stop % rows and stop != emb.shape[0]):
        raise ValueError(f"rows {start}:{stop} are not aligned to chunks of {rows} rows")
    values = np.where(ok.reshape(-1, *([1] * (values.ndim - 1))), values, np.float32(np.nan)).astype(np.float32)
    emb[start:stop] = values
    done[start:stop] = ok


def write_store(path: str | Path, image_ids: np.ndarray, arrays: dict[str, dict[str, np.ndarray]], *,
                manifest_sha256: str, done: dict[str, np.ndarray] | None = None,
                attrs: dict[str, dict[str, Any]] | None = None,
                chunk_rows: int = default_of(EmbeddersConfig, "chunk_rows")) -> Path:
    """Write embeddings computed elsewhere (a notebook, another tool, a test) as a store in one call.

    ``arrays[model][augmentation]`` holds one row per image of ``image_ids`` (``(n, ...)``); ``done[model]`` marks
    which rows of its original images hold a value (all by default; the others are stored as NaN and not done);
    ``attrs[model]`` adds provenance attrs. Writes through :func:`open_store_for_writing`,
    :func:`prepare_model_group` and :func:`write_rows`, so the result is what an extraction run leaves.
    """
    root = open_store_for_writing(path, image_ids=np.asarray(image_ids, dtype=str), manifest_sha256=manifest_sha256)
    for model, augs in arrays.items():
        shapes = {aug: x.shape for aug, x in augs.items()}
        if len({s[1:] for s in shapes.values()}) != 1 or any(s[0] != len(image_ids) for s in shapes.values()):
            raise ValueError(f"{model}: every augmentation needs ({len(image_ids)}, ...) rows of one shape, got {shapes}")
        shape = next(iter(shapes.values()))[1:]
        group = prepare_model_group(root, model, attrs={"model": model, **(attrs or {}).get(model, {})},
                                    augmentations=list(augs), output_shape=shape, chunk_rows=chunk_rows)
        for aug, x in augs.items():
            ok = (done or {}).get(model) if aug == "original" else None
            ok = np.ones(len(x), bool) if ok is None else np.asarray(ok, bool)
            for start in range(0, len(x), chunk_rows):
                write_rows(group, aug, start, np.asarray(x[start:start + chunk_rows]), ok[start:start + chunk_rows])
    return Path(path)


def _remove_partial_files(path: Path) -> None:
    """Delete temp files a killed writer left behind (zarr writes ``*.partial`` then renames)."""
    for p in path.rglob("*.partial"):
        p.unlink(missing_ok=True)
