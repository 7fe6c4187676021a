"""Dask execution of the extraction: chunk-aligned row shards on worker processes.

``--workers N`` starts a ``dask.distributed.LocalCluster`` of N processes with 1 thread each; ``--scheduler
ADDRESS`` uses a running cluster instead. Every task embeds a contiguous range of row chunks of one
model/augmentation and writes those chunks itself (so workers never touch the same file); the client only
collects the error rows. The result is bit-identical to the single-process run because a chunk always
produces the same batches (see :mod:`embedders.extract`).

SLURM (needs ``pip install dask-jobqueue``, the ``slurm`` extra): start a scheduler with jobs, then point
the runner at it; every worker job needs the repository, the store path and the weights on a shared FS::

    from dask_jobqueue import SLURMCluster
    cluster = SLURMCluster(cores=1, processes=1, memory="16GB", walltime="04:00:00",
                           job_extra_directives=["--gres=gpu:1"])      # one GPU worker per job
    cluster.scale(jobs=8)
    print(cluster.scheduler_address)      # tcp://10.0.0.5:8786

    python -m embedders.run --config configs/embedders/covid_cxr.yaml --manifest M --store S \\
        --model rad-dino --scheduler tcp://10.0.0.5:8786
"""
from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from dask.distributed import Client, as_completed

from .base import Embedder, get_embedder
from .errors import ErrorRow
from .extract import extract_chunks

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _worker_embedder(name: str, weights: str | None, options_json: str, device: str, half: bool) -> Embedder:
    """One embedder per worker process (weights loaded once, reused by every task on that worker)."""
    return get_embedder(name, weights=weights, **json.loads(options_json)).to(device, half=half)


def _shard_task(name: str, weights: str | None, options_json: str, store: str, augmentation: str,
                chunks: list[int], ids: np.ndarray, paths: list[str | None], row0: int,
                settings: dict[str, Any]) -> tuple[int, list[ErrorRow]]:
    """Runs on a worker: embed ``chunks`` and write them into the store; returns (rows processed, errors)."""
    if settings["torch_threads"]:
        torch.set_num_threads(settings["torch_threads"])
    torch.manual_seed(settings["seed"])
    embedder = _worker_embedder(name, weights, options_json, settings["device"], settings["half"])
    group = zarr.open_group(store, mode="r+")[embedder.info.name]
    count = [0]

    def on_chunk(n_rows: int, _errors: list[ErrorRow]) -> None:
        count[0] += n_rows

    errors = extract_chunks(embedder, group, augmentation, chunks, ids=ids, paths=paths, row0=row0,
                            batch_size=settings["batch_size"], decode_workers=settings["decode_workers"],
                            on_chunk=on_chunk)
    return count[0], errors


def split_chunks(chunks: list[int], parts: int) -> list[list[int]]:
    """Split sorted chunk indices into at most ``parts`` runs of near-equal length (order kept)."""
    parts = max(1, min(parts, len(chunks)))
    return [s.tolist() for s in np.array_split(np.asarray(chunks, dtype=int), parts) if len(s)]


def run_sharded(client: Client, *, name: str, weights: Path | None, options: dict[str, Any], store: Path,
                work: dict[str, list[int]], chunk_rows: int, ids: np.ndarray, paths: list[str | None],
                settings: dict[str, Any]) -> Iterator[tuple[int, list[ErrorRow]]]:
    """Submit one task per shard of each augmentation's pending chunks; yield (rows, errors) as they finish."""
    n_workers = max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))
    futures = []
    for aug, chunks in work.items():
        for shard in split_chunks(chunks, 2 * n_workers):
            row0, row1 = shard[0] * chunk_rows, min(len(ids), (shard[-1] + 1) * chunk_rows)
            futures.append(client.submit(
                _shard_task, name, None if weights is None else str(weights), json.dumps(options, sort_keys=True),
                str(store), aug, shard, ids[row0:row1], paths[row0:row1], row0, settings, pure=False))
    for future in as_completed(futures):
        yield future.result()
