"""Gaussian-mixture latent classes: the incumbent of the ARDS subphenotype literature, beside Leiden.

Latent class analysis (Calfee 2014 and successors) fits finite mixtures and picks the number of
classes by BIC. Here a scikit-learn ``GaussianMixture`` is fitted on the same searched space as the
kNN graph (the latent, or its PCA) for 1..``max_components`` classes, ``n_init`` EM restarts each;
the count with the lowest BIC wins. One class means the mixture finds no structure. Labels are each
point's most probable class, ordered by size (:func:`clustering.leiden.canonical`).

EM time grows linearly with the number of points (at 100,000 points one resampling refit took minutes), so
beyond ``max_fit_points`` EM and the BIC use a seeded random subset of that size and every point is then
assigned its most probable class under the fitted mixture. The stability refits do the same within each
resample, so they repeat exactly the procedure that made the labels.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from core.parallel import idle_cores, map_with_state, start_forkserver

from .config import GmmConfig
from .leiden import canonical

log = logging.getLogger(__name__)


@dataclass
class GmmResult:
    """Chosen mixture: labels ``(n,)`` 0..K-1 by size, the BIC table and why."""

    labels: np.ndarray
    n_components: int
    bic: pd.DataFrame           # n_components, bic, log_likelihood, converged, chosen
    reason: str
    seconds: float


def fit_rows(n: int, cfg: GmmConfig, *, seed: int) -> np.ndarray | None:
    """The rows EM is fitted on: ``None`` (all) up to ``max_fit_points``, else a seeded sorted random subset."""
    if n <= cfg.max_fit_points:
        return None
    return np.sort(np.random.default_rng(seed + 104729).choice(n, size=cfg.max_fit_points, replace=False))


def fit_gmm(x: np.ndarray, *, n_components: int, cfg: GmmConfig, seed: int) -> tuple[np.ndarray, GaussianMixture]:
    """Fit one mixture with ``n_components`` classes on ``x`` ``(n, d)`` (on a subset beyond ``max_fit_points``,
    module doc) -> (every point's most probable class ``(n,)`` by size, the model)."""
    model = GaussianMixture(n_components=n_components, covariance_type=cfg.covariance_type, n_init=cfg.n_init,
                            random_state=seed, reg_covar=1e-5)
    rows = fit_rows(len(x), cfg, seed=seed)
    if rows is None:
        return canonical(model.fit_predict(x.astype(np.float64))), model
    model.fit(x[rows].astype(np.float64))
    return canonical(model.predict(x.astype(np.float64))), model


_X: np.ndarray | None = None
_POOL_MIN_POINTS = 5000      # fewer points: each EM fit takes well under the ~1 s a forkserver worker needs to start


def _install(x: np.ndarray | None) -> None:
    global _X
    _X = x


def _refit(job: tuple[np.ndarray, int, int, GmmConfig]) -> np.ndarray:
    nodes, seed, n_components, cfg = job
    with threadpool_limits(limits=1, user_api="blas"):   # one BLAS thread per worker process
        return fit_gmm(_X[nodes], n_components=n_components, cfg=cfg, seed=seed)[0]


def _fit_count(job: tuple[int, int, GmmConfig]) -> tuple[np.ndarray, dict[str, float | int | bool]]:
    """One class count of the BIC search on ``_X``: (labels, its BIC table row)."""
    k, seed, cfg = job
    with threadpool_limits(limits=1, user_api="blas"):   # one BLAS thread per fit, whichever process runs it
        labels, model = fit_gmm(_X, n_components=k, cfg=cfg, seed=seed)
        fitted = fit_rows(len(_X), cfg, seed=seed)
        xf = (_X if fitted is None else _X[fitted]).astype(np.float64)
        return labels, {"n_components": k, "bic": float(model.bic(xf)),
                        "log_likelihood": float(model.score(xf) * len(xf)), "converged": bool(model.converged_),
                        "n_classes_used": int(len(np.unique(labels)))}


def _workers(n_points: int, workers: int | None) -> int:
    """Worker processes for fits on ``n_points``: the idle cores, unless the fits are so small (a demo cohort) that
    starting a worker costs more than it saves."""
    if workers is not None:
        return workers
    return idle_cores() if n_points >= _POOL_MIN_POINTS else 1


def warm_workers(n_points: int, cfg: GmmConfig) -> None:
    """When the fits on ``n_points`` will run on worker processes, start their forkserver now with this module
    imported there, so those imports overlap the work before the mixture instead of delaying its first fit."""
    if min(n_points, cfg.max_fit_points) >= _POOL_MIN_POINTS:
        start_forkserver(__name__)


def refit_many(x: np.ndarray, subsets: list[np.ndarray], seeds: list[int], *, n_components: int, cfg: GmmConfig,
               workers: int | None = None) -> list[np.ndarray]:
    """:func:`fit_gmm` labels of ``x[nodes]`` for each subset (stability refits), on worker processes (the idle
    cores by default; each fit is seeded, so the labels do not depend on how many)."""
    jobs = [(nodes, s, n_components, cfg) for nodes, s in zip(subsets, seeds)]
    # never fork: scikit-learn's k-means initialisation runs OpenMP, whose thread pool deadlocks in a forked child
    # once the parent has used it (measured: both workers hung in GOMP_parallel)
    return map_with_state(_refit, jobs, install=_install, state=x,
                          workers=_workers(min(len(x), cfg.max_fit_points), workers), start_method="forkserver",
                          desc="mixture stability")


def choose_gmm(x: np.ndarray, cfg: GmmConfig, *, seed: int, progress: bool = True,
               workers: int | None = None) -> GmmResult:
    """Fit 1..``max_components`` classes on ``x`` ``(n, d)`` and keep the count with the lowest BIC (of the fitted
    points: the subset beyond ``max_fit_points``). The counts are fitted on worker processes (the idle cores by
    default; one BLAS thread per fit, so the table and labels do not depend on how many)."""
    t0 = time.perf_counter()
    top = min(cfg.max_components, max(1, x.shape[0] // 10))      # at least ~10 points per class
    fitted = fit_rows(len(x), cfg, seed=seed)
    # largest counts first: the longest fits start early, so the last worker is not left with the slowest one
    jobs = [(k, seed, cfg) for k in range(top, 0, -1)]
    # forkserver as for the refits: scikit-learn's k-means OpenMP pool deadlocks in a forked child
    results = map_with_state(_fit_count, jobs, install=_install, state=x,
                             workers=_workers(len(x) if fitted is None else len(fitted), workers),
                             start_method="forkserver", desc="Gaussian mixture", progress=progress)
    fits = {row["n_components"]: labels for labels, row in results}
    rows = sorted((row for _, row in results), key=lambda r: r["n_components"])
    table = pd.DataFrame(rows)
    best = int(table.loc[table.bic.idxmin(), "n_components"])
    table["chosen"] = table.n_components == best
    reason = (f"lowest BIC ({table.bic.min():.1f}) over 1..{top} classes ({cfg.covariance_type} covariances, "
              f"{cfg.n_init} EM restarts each)"
              + (f"; EM and BIC on a random {len(fitted):,} of the {len(x):,} points (gmm.max_fit_points), every point "
                 "then given its most probable class" if fitted is not None else "")
              + ("; one class: the mixture finds no structure" if best == 1 else ""))
    log.info("Gaussian mixture: %d classes (%s)", best, reason)
    return GmmResult(fits[best], best, table, reason, time.perf_counter() - t0)
