"""How this process starts worker processes (DataLoader decode workers, the demo generator's pool, Leiden runs) and
how many it may use, and a process map over shared module state."""
from __future__ import annotations

import multiprocessing as mp
import os
import resource
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import forkserver
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")

_MEASURED: tuple[float, float, int] | None = None    # (when, window, idle cores) of the last measurement
_REUSE_SECONDS = 1.0


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
    parent used (scikit-learn's k-means) or in JAX's threads, where "forkserver" is needed."""
    items = list(items)
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
