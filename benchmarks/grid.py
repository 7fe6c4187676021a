"""The benchmark grid (tasks x models x probes) in this process or on Dask.

``workers = 0`` and no ``scheduler``: a plain loop. Otherwise every (task, model, probe) fit-set is a
Dask task (``--workers N``: a LocalCluster of N single-threaded processes; ``--scheduler ADDRESS``: a
running cluster, e.g. dask-jobqueue's ``SLURMCluster`` as in :mod:`embedders.distributed`). Tasks
and feature matrices are scattered to the workers once. A fit-set's result depends only on its own
inputs and the config's seeds, so the outputs equal the serial run's, in the same (job) order.
"""
from __future__ import annotations

import logging

import pandas as pd
from dask.distributed import as_completed
from tqdm.auto import tqdm

from core.parallel import dask_client

from .config import BenchmarksConfig
from .crossval import Task, cross_validate
from .data import Features

log = logging.getLogger(__name__)

Job = tuple[Task, Features, str]


def run_grid(jobs: list[Job], *, cfg: BenchmarksConfig, workers: int = 0, scheduler: str | None = None,
             progress: bool = True) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """``cross_validate`` each ``(task, features, probe)`` job -> ``[(oof, per_fold), ...]`` in job order."""
    if not workers and not scheduler:
        return [cross_validate(task, feat, probe, cfg=cfg)
                for task, feat, probe in tqdm(jobs, desc="benchmark", unit="fit-set", disable=not progress)]
    with dask_client(workers=workers, scheduler=scheduler) as client:
        log.info("benchmark grid: %d fit-sets on Dask (%s)", len(jobs), client.dashboard_link or client.scheduler.address)
        shared = {}
        for obj in [t for t, _, _ in jobs] + [f for _, f, _ in jobs]:
            if id(obj) not in shared:
                shared[id(obj)] = client.scatter(obj, broadcast=True)
        futures = [client.submit(cross_validate, shared[id(task)], shared[id(feat)], probe, cfg=cfg, pure=False)
                   for task, feat, probe in jobs]
        for _ in tqdm(as_completed(futures), total=len(futures), desc="benchmark (dask)", unit="fit-set",
                      disable=not progress):
            pass
        return client.gather(futures)
