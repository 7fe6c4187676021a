"""Chunk-wise extraction of one model/augmentation into the store, with decoding overlapped with the forward.

A ``torch.utils.data.DataLoader`` with ``decode_workers`` worker *processes* decodes
(:func:`cohorts.images.load_image`), augments, preprocesses and stacks the next batches while the calling
process runs the forward, so decoding neither competes for the GIL nor stalls the forward. Inside Dask
worker processes (daemonic: they may not fork) decoding runs inline; there the parallelism comes from
the Dask workers themselves.

Each row chunk is written whole (:func:`embedders.store.write_rows`: embeddings, then ``done``), so the unit
of work, of parallelism and of resumption is one zarr row chunk. Batches are consecutive runs of
``batch_size`` of a chunk's pending rows (minus the rows that failed to decode), so a chunk gives the same
batches, and bit-identical outputs, in a fresh run, a resumed run or a Dask worker.
"""
from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Sequence

import numpy as np
import torch
import zarr
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from cohorts.images import ImageError, load_image
from core.parallel import worker_context

from .augment import augment
from .base import Embedder
from .errors import ErrorRow, error_row
from .store import DONE, EMBEDDINGS, write_rows

log = logging.getLogger(__name__)
Prepared = torch.Tensor | tuple[str, str]   # a model-ready tensor, or (stage, reason)
Batch = torch.Tensor | list[torch.Tensor]   # what Embedder.collate returns


def prepare_image(embedder: Embedder, path: str | None, augmentation: str) -> Prepared:
    """Decode, augment and preprocess one image; failures come back as ``(stage, reason)``."""
    if not path:
        return "decode", "no image path in the manifest"
    try:
        image = load_image(path)
    except ImageError as exc:
        return "decode", exc.reason
    except OSError as exc:
        return "decode", f"{type(exc).__name__}: {exc}"
    try:
        return embedder.preprocess(augment(image, augmentation))
    except Exception as exc:  # noqa: BLE001 -- one bad image must not stop the run; it is reported
        return "preprocess", f"{type(exc).__name__}: {exc}"


def pending_chunks(group: zarr.Group, augmentation: str) -> list[int]:
    """Indices of the row chunks of ``group/augmentation`` that hold at least one row not done."""
    done = np.asarray(group[augmentation][DONE][:], dtype=bool)
    rows = group[augmentation][DONE].chunks[0]
    n_chunks = -(-len(done) // rows)
    padded = np.ones(n_chunks * rows, dtype=bool)
    padded[: len(done)] = done
    return np.flatnonzero(~padded.reshape(n_chunks, rows).all(axis=1)).tolist()


class _PreparedRows(Dataset):
    """Manifest rows -> ``(row, prepared)``; :meth:`collate` makes ``(rows_ok, batch, failures)``."""

    def __init__(self, embedder: Embedder, paths: Sequence[str | None], row0: int, augmentation: str) -> None:
        self.embedder, self.paths, self.row0, self.augmentation = embedder, paths, row0, augmentation

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, row: int) -> tuple[int, Prepared]:
        return row, prepare_image(self.embedder, self.paths[row - self.row0], self.augmentation)

    def collate(self, items: list[tuple[int, Prepared]]) -> tuple[list[int], Batch | None, list[tuple[int, str, str]]]:
        """Split decoded rows from failures; the good ones are batched by the embedder's ``collate``."""
        good = [(r, p) for r, p in items if isinstance(p, torch.Tensor)]
        failed = [(r, p[0], p[1]) for r, p in items if not isinstance(p, torch.Tensor)]
        return [r for r, _ in good], (self.embedder.collate([p for _, p in good]) if good else None), failed


def extract_chunks(embedder: Embedder, group: zarr.Group, augmentation: str, chunks: Sequence[int], *,
                   ids: np.ndarray, paths: Sequence[str | None], row0: int = 0, batch_size: int = 32,
                   decode_workers: int = 2, on_chunk: Callable[[int, list[ErrorRow]], None] | None = None,
                   progress: bool = False) -> list[ErrorRow]:
    """Embed the pending rows of ``chunks`` of ``group/augmentation`` and write each chunk when complete.

    ``ids``/``paths`` hold the rows ``row0 : row0 + len(ids)`` of the manifest (covering ``chunks``).
    ``on_chunk(n_rows, errors)`` is called after each chunk is on disk. Returns all error rows.
    """
    emb, done_arr = group[augmentation][EMBEDDINGS], group[augmentation][DONE]
    n, rows = emb.shape[0], emb.chunks[0]
    model = embedder.info.name
    work = []                                           # (start, stop, done mask, batches of absolute rows)
    for c in chunks:
        start, stop = c * rows, min(n, (c + 1) * rows)
        done = np.asarray(done_arr[start:stop], dtype=bool)
        pending = (start + np.flatnonzero(~done)).tolist()
        if pending:
            work.append((start, stop, done, [pending[b:b + batch_size] for b in range(0, len(pending), batch_size)]))
    if not work:
        return []
    workers = 0 if multiprocessing.current_process().daemon else decode_workers
    dataset = _PreparedRows(embedder, paths, row0, augmentation)
    loader = DataLoader(dataset, collate_fn=dataset.collate,
                        batch_sampler=[b for *_, batches in work for b in batches], num_workers=workers,
                        prefetch_factor=4 if workers else None, multiprocessing_context=worker_context() if workers else None)
    batches = iter(loader)
    all_errors: list[ErrorRow] = []
    bar = tqdm(total=sum(len(b) for *_, bs in work for b in bs), desc=f"{model}/{augmentation}", unit="img",
               disable=not progress)
    for start, stop, done, chunk_batches in work:
        values = (np.asarray(emb[start:stop]) if done.any()
                  else np.full((stop - start, *emb.shape[1:]), np.nan, dtype=np.float32))
        ok = done.copy()
        errors: list[ErrorRow] = []
        for _ in chunk_batches:
            good_rows, x, failed = next(batches)
            errors += [error_row(str(ids[r - row0]), paths[r - row0], stage, reason, model, augmentation)
                       for r, stage, reason in failed]
            if x is None:
                continue
            out = embedder.forward(x).numpy()
            if out.shape != (len(good_rows), *emb.shape[1:]):
                raise RuntimeError(f"{model} returned {out.shape} for {len(good_rows)} rows, the store expects rows of "
                                   f"{emb.shape[1:]} (ModelInfo.output_shape is wrong)")
            local = np.asarray(good_rows) - start
            values[local] = out
            ok[local] = True
        write_rows(group, augmentation, start, values, ok)
        all_errors += errors
        n_rows = sum(len(b) for b in chunk_batches)
        if on_chunk is not None:
            on_chunk(n_rows, errors)
        bar.update(n_rows)
    bar.close()
    return all_errors
