"""Chunk-wise extraction of one model/augmentation into the store, with decoding overlapped with the forward.

Worker threads decode (:func:`cohorts.images.load_image`), augment and preprocess the images of the next
chunk while the calling thread runs the forward on the current one. Each chunk is written whole
(:func:`embedders.store.write_rows`: embeddings, then ``done``), so the unit of work, of parallelism and of
resumption is one zarr row chunk. Batches are cut from a chunk's pending rows only, so a chunk gives the same
batches (and bit-identical outputs) whether it runs in a fresh run, a resumed run or a Dask worker.
"""
from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np
import torch
import zarr
from tqdm.auto import tqdm

from cohorts.images import ImageError, load_image
from .augment import augment
from .base import Embedder
from .errors import ErrorRow, error_row
from .store import DONE, EMBEDDINGS, write_rows

log = logging.getLogger(__name__)
Prepared = torch.Tensor | tuple[str, str]   # a model-ready tensor, or (stage, reason)


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


def extract_chunks(embedder: Embedder, group: zarr.Group, augmentation: str, chunks: Sequence[int], *,
                   ids: np.ndarray, paths: Sequence[str | None], row0: int = 0, batch_size: int = 32,
                   decode_threads: int = 2, on_chunk: Callable[[int, list[ErrorRow]], None] | None = None,
                   progress: bool = False) -> list[ErrorRow]:
    """Embed the pending rows of ``chunks`` of ``group/augmentation`` and write each chunk when complete.

    ``ids``/``paths`` hold the rows ``row0 : row0 + len(ids)`` of the manifest (covering ``chunks``).
    ``on_chunk(n_rows, errors)`` is called after each chunk is on disk. Returns all error rows.
    """
    emb, done_arr = group[augmentation][EMBEDDINGS], group[augmentation][DONE]
    n, rows = emb.shape[0], emb.chunks[0]
    model = embedder.info.name
    work = []
    for c in chunks:
        start, stop = c * rows, min(n, (c + 1) * rows)
        done = np.asarray(done_arr[start:stop], dtype=bool)
        if not done.all():
            work.append((start, stop, done))
    all_errors: list[ErrorRow] = []
    bar = tqdm(total=sum(int((~d).sum()) for *_, d in work), desc=f"{model}/{augmentation}", unit="img",
               disable=not progress)

    def submit(item: tuple[int, int, np.ndarray]) -> list[Future]:
        start, _, done = item
        return [pool.submit(prepare_image, embedder, paths[start + i - row0], augmentation)
                for i in np.flatnonzero(~done)]

    with ThreadPoolExecutor(max_workers=decode_threads) as pool:
        ahead = submit(work[0]) if work else []
        for k, (start, stop, done) in enumerate(work):
            current, ahead = ahead, (submit(work[k + 1]) if k + 1 < len(work) else [])
            pending = np.flatnonzero(~done)
            prepared = [f.result() for f in current]
            errors = [error_row(str(ids[start + i - row0]), paths[start + i - row0], p[0], p[1], model, augmentation)
                      for i, p in zip(pending, prepared) if isinstance(p, tuple)]
            good = [(i, p) for i, p in zip(pending, prepared) if isinstance(p, torch.Tensor)]
            values = (np.asarray(emb[start:stop]) if done.any()
                      else np.full((stop - start, *emb.shape[1:]), np.nan, dtype=np.float32))
            ok = done.copy()
            for b in range(0, len(good), batch_size):
                batch = good[b:b + batch_size]
                out = embedder.forward(torch.stack([t for _, t in batch])).numpy()
                if out.shape[1:] != emb.shape[1:]:
                    raise RuntimeError(f"{model} returned rows of shape {out.shape[1:]}, the store expects "
                                       f"{emb.shape[1:]} (ModelInfo.output_shape is wrong)")
                idx = [i for i, _ in batch]
                values[idx] = out
                ok[idx] = True
            write_rows(group, augmentation, start, values, ok)
            all_errors += errors
            if on_chunk is not None:
                on_chunk(len(pending), errors)
            bar.update(len(pending))
    bar.close()
    return all_errors
