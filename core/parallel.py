"""How this process starts worker processes (DataLoader decode workers, the demo generator's pool, Leiden runs) and
how many it may use, a process map over shared module state, and the Dask cluster that map can run on instead.

``with on_dask(workers=N)`` (a LocalCluster of N single-threaded processes) or ``with on_dask(scheduler=ADDRESS)``
(a running cluster, e.g. dask-jobqueue's ``SLURMCluster``; see :mod:`embedders.distributed`) makes every
:func:`map_with_state` inside the block run its items as Dask tasks: the state is scattered to the workers once
and installed once per worker, and the results come back in item order, so they equal the local run's.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import resource
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import forkserver
from typing import TYPE_CHECKING, Any, TypeVar

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from dask.distributed import Client

T = TypeVar("T")
R = TypeVar("R")

_MEASURED: tuple[float, float, int] | None = None    # (when, window, idle cores) of the last measurement
_REUSE_SECONDS = 1.0
_CLIENT: Client | None = None                        # set inside ``on_dask``
_INSTALLED: dict[str, Any] = {}                      # on a Dask worker: the state each install function holds now


@contextmanager
def dask_client(*, workers: int = 0, scheduler: str | None = None) -> Iterator[Client | None]:
    """A Dask client on ``scheduler`` or on a new LocalCluster of ``workers`` single-threaded processes, closed
    (with the LocalCluster) when the block ends; None without ``workers`` or ``scheduler``."""
    if not workers and not scheduler:
        yield None
        return
    from dask.distributed import Client, LocalCluster  # imported only when used (slow to import)

    cluster = (None if scheduler else
               LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None))
    client = Client(scheduler or cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@contextmanager
def on_dask(*, workers: int = 0, scheduler: str | None = None) -> Iterator[Client | None]:
    """Run every :func:`map_with_state` in the block on Dask (module doc); a no-op without ``workers`` or
    ``scheduler``. Yields the client (None for the no-op)."""
    global _CLIENT
    with dask_client(workers=workers, scheduler=scheduler) as client:
        _CLIENT = client
        try:
            yield client
        finally:
            _CLIENT = None


def worker_context() -> str | None:
    """Start method for worker processes: fork (the default, fastest) unless JAX is loaded in this process (e.g.
    the pipeline or a test session that already trained a VAE): JAX runs threads and forking them can deadlock,
    so then workers come from a clean forkserver process instead."""
    return "forkserver" if "jax" in sys.modules else None


def map_with_state(fn: Callable[[T], R], items: Iterable[T], *, install: Callable[[Any], None], state: Any,
                   workers: int, start_method: str, desc: str, progress: bool = True) -> list[R]:
    """``[fn(item) for item in items]``, in order, where ``fn`` reads module state that ``install(state)`` puts in
    place: inline in this process when ``workers`` <= 1 (the state is dropped again afterwards, so large inputs do
    not stay alive), else on a pool of ``workers`` processes started by ``start_method`` that each install the
    state once. Results do not depend on the worker count as long as ``fn`` depends only on its item and the state.

    ``start_method`` is the caller's choice: "fork" is cheapest, but a forked child deadlocks in an OpenMP pool its
    parent used (scikit-learn's k-means) or in JAX's threads, where "forkserver" is needed. Inside
    :func:`on_dask` the items run as Dask tasks instead, ``workers`` and ``start_method`` unused."""
    items = list(items)
    if _CLIENT is not None and items:
        return _map_on_dask(_CLIENT, fn, items, install=install, state=state, desc=desc, progress=progress)
    workers = min(workers, len(items))
    bar = tqdm(total=len(items), desc=desc, disable=not progress, leave=False)
    out: list[R] = []
    if workers <= 1:
        install(state)
        try:
            for item in items:
                out.append(fn(item))
                bar.update()
        finally:
            install(None)
            bar.close()
        return out
    ctx = mp.get_context(start_method)
    if start_method == "forkserver":
        preload_worker_modules(ctx, fn, install)
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=install, initargs=(state,)) as ex:
        for result in ex.map(fn, items):
            out.append(result)
            bar.update()
    bar.close()
    return out


def _map_on_dask(client: Client, fn: Callable[[T], R], items: list[T], *, install: Callable[[Any], None],
                 state: Any, desc: str, progress: bool) -> list[R]:
    """:func:`map_with_state` on ``client``'s workers: the state scattered once, installed once per worker, results
    in item order; each worker drops the state again at the end."""
    from dask.distributed import as_completed

    [shared] = client.scatter([state], broadcast=True, hash=False)    # one future, also when the state is a list
    try:
        futures = [client.submit(_with_state, fn, install, shared, item, pure=False) for item in items]
        for _ in tqdm(as_completed(futures), total=len(futures), desc=f"{desc} (dask)", disable=not progress,
                      leave=False):
            pass
        return client.gather(futures)
    finally:
        client.run(_uninstall, install)
        client.cancel(shared)


def _install_key(install: Callable[[Any], None]) -> str:
    return f"{install.__module__}.{install.__qualname__}"


def _with_state(fn: Callable[[T], R], install: Callable[[Any], None], state: Any, item: T) -> R:
    """On a Dask worker: ``fn(item)`` with ``state`` installed, installing it only when it is not in place yet (a
    worker gets the same scattered object for every task, so the state's caches survive between its tasks)."""
    key = _install_key(install)
    if key not in _INSTALLED or _INSTALLED[key] is not state:
        install(state)
        _INSTALLED[key] = state
    return fn(item)


def _uninstall(install: Callable[[Any], None]) -> None:
    """On a Dask worker: drop the state ``install`` put in place (``client.run`` calls it on every worker)."""
    key = _install_key(install)
    if key in _INSTALLED:
        del _INSTALLED[key]
        install(None)


def preload_worker_modules(ctx: mp.context.BaseContext, *functions: Callable[..., Any]) -> None:
    """Have the forkserver import the modules of ``functions`` (and ``__main__``) once, when it starts, so its
    children fork with them loaded instead of each importing them while this process waits: at 100k points the
    stage's four worker pools spent 38 s starting (about 10 s of scikit-learn/torch/igraph imports per worker, one
    after another). Only the first call before the forkserver starts counts; later workers still find most
    imports already done there."""
    ctx.set_forkserver_preload(["__main__", *sorted({f.__module__ for f in functions})])


def start_forkserver(*modules: str) -> None:
    """Start the forkserver now, importing ``modules`` (and ``__main__``) there while this process goes on, so the
    first forkserver pool later finds them loaded instead of waiting for the imports (~10 s on 2 cores). Nothing
    happens where the forkserver already runs."""
    mp.get_context("forkserver").set_forkserver_preload(["__main__", *modules])
    forkserver.ensure_running()


def _cpu_times() -> tuple[float, float] | None:
    """(free, total) jiffies of all CPUs from /proc/stat, or None where there is none; free = idle, I/O wait and
    niced work (which yields the core to a normal-priority process)."""
    try:
        with open("/proc/stat") as f:
            values = [float(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    return values[1] + values[3] + values[4], sum(values[:8])


def _own_cpu_seconds() -> float:
    """User + system CPU seconds of this process, all threads."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def idle_cores(window: float = 0.2) -> int:
    """Cores this process may use without oversubscribing the machine: those in its affinity mask that other work
    left free over the next ``window`` seconds (CPU time of this process's own threads, e.g. BLAS threads still
    spinning, and of niced processes counts as free), at least 1.

    A measurement is reused for ``_REUSE_SECONDS`` (callers in hot paths, e.g. every kNN search, do not each wait
    ``window``). Where /proc/stat is missing, the 1-minute load average (this process counted as one) stands in."""
    global _MEASURED
    if _MEASURED is not None and time.monotonic() - _MEASURED[0] < _REUSE_SECONDS and _MEASURED[1] >= window:
        return _MEASURED[2]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    before, own_before = _cpu_times(), _own_cpu_seconds()
    if before is not None:
        t0 = time.perf_counter()
        time.sleep(window)
        after, own = _cpu_times(), _own_cpu_seconds() - own_before
        total = after[1] - before[1]
        machine = os.cpu_count() or cores
        busy_share = 1.0 - (after[0] - before[0]) / total if total > 0 else 0.0
        others = max(0.0, busy_share * machine - own / max(time.perf_counter() - t0, 1e-6))
        free = max(1, min(cores, cores - int(others + 0.25)))     # a core counts busy from 3/4 of its time
        _MEASURED = (time.monotonic(), window, free)
        return free
    busy = max(0.0, os.getloadavg()[0] - 1.0) if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, int(round(cores - busy))))
