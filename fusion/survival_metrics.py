"""Survival evaluation in numpy: Harrell's and Uno's C-index, integrated Brier score, bootstrap CIs.

Sign convention: every function here takes a **risk** score (higher = earlier event, like a Cox
linear predictor). lifelines' ``concordance_index`` expects a predicted *survival time* (higher =
later event); :func:`harrell_c` equals ``concordance_index(time, -risk, event)``.

Censoring weights (Uno's C, Brier score) use the Kaplan-Meier estimate of the censoring distribution
``G(t) = P(C > t)``, by default fitted on the evaluated rows, or on training rows when given. For an
event at ``T_i`` the weight is ``1 / G(T_i-)`` (censorings at the same time as an event are taken to
happen after it, the usual convention).

Binary outcomes without times: the C-index of a risk score against a 0/1 outcome is the AUROC
(:func:`binary_c`).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

log = logging.getLogger(__name__)


def _check(time: np.ndarray, event: np.ndarray, risk: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    time = np.asarray(time, float)
    event = np.asarray(event).astype(bool)
    if time.ndim != 1 or event.shape != time.shape:
        raise ValueError(f"time and event must be 1-d of equal length, got {time.shape} and {event.shape}")
    if not np.isfinite(time).all():
        raise ValueError(f"time holds {int((~np.isfinite(time)).sum())} missing or infinite value(s)")
    if risk is not None and np.shape(risk) != time.shape:
        raise ValueError(f"risk must have shape {time.shape}, got {np.shape(risk)}")
    return time, event


def harrell_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C-index of ``risk`` (higher = earlier event); NaN without comparable pairs.

    lifelines' ``concordance_index`` definition, vectorized in row blocks (it is called thousands of
    times by the bootstrap): a pair is comparable when ``i`` has an event and ``j`` leaves later, or at
    the same time censored; tied risks count 1/2.
    """
    time, event = _check(time, event, risk)
    risk = np.asarray(risk, float)
    idx = np.flatnonzero(event)
    num = den = 0.0
    for start in range(0, len(idx), 1024):
        i = idx[start:start + 1024]
        comparable = (time[i, None] < time[None, :]) | ((time[i, None] == time[None, :]) & ~event[None, :])
        num += float(np.sum(comparable * ((risk[i, None] > risk[None, :]) + 0.5 * (risk[i, None] == risk[None, :]))))
        den += float(np.sum(comparable))
    return num / den if den > 0 else float("nan")


def binary_c(y: np.ndarray, risk: np.ndarray) -> float:
    """C-index for a binary outcome without times (= AUROC of ``risk`` for ``y == 1``); NaN if one class."""
    y = np.asarray(y).astype(int)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, np.asarray(risk, float)))


def censoring_survival(time: np.ndarray, event: np.ndarray) -> Callable[[np.ndarray, bool], np.ndarray]:
    """Kaplan-Meier estimate of the censoring survival ``G``.

    Returns ``G(t, left)``: ``P(C > t)`` for ``left=False`` and the left limit ``P(C >= t)`` for
    ``left=True``, evaluated elementwise on an array of times.
    """
    time, event = _check(time, event)
    uniq, inverse = np.unique(time, return_inverse=True)
    censored = np.bincount(inverse, weights=~event, minlength=len(uniq))
    at_risk = len(time) - np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(uniq)))[:-1]])
    surv = np.cumprod(1.0 - censored / at_risk)           # G just after each unique time

    def g(t: np.ndarray, left: bool = False) -> np.ndarray:
        idx = np.searchsorted(uniq, np.asarray(t, float), side="left" if left else "right") - 1
        return np.where(idx >= 0, surv[np.clip(idx, 0, None)], 1.0)

    return g


def uno_c(
    time: np.ndarray,
    event: np.ndarray,
    risk: np.ndarray,
    *,
    tau: float | None = None,
    train_time: np.ndarray | None = None,
    train_event: np.ndarray | None = None,
) -> float:
    """Uno's IPCW C-index (Uno et al. 2011) truncated at ``tau``; ties in risk count 1/2.

    ``C = sum_ij d_i G(T_i-)^-2 [T_i < T_j, T_i < tau] ([r_i > r_j] + [r_i = r_j]/2) / sum_ij d_i G(T_i-)^-2 [T_i < T_j, T_i < tau]``.
    ``tau`` defaults to the largest time; ``G`` is fitted on ``train_*`` when given, else on the rows.
    O(n^2) memory in row blocks: fine for held-out sets of some thousand patients.
    """
    time, event = _check(time, event, risk)
    risk = np.asarray(risk, float)
    g = censoring_survival(*((train_time, train_event) if train_time is not None else (time, event)))
    tau = float(time.max()) if tau is None else float(tau)
    w = np.zeros_like(time)
    rows = event & (time < tau)
    gi = g(time[rows], True)
    w[rows] = np.where(gi > 0, 1.0 / np.maximum(gi, 1e-12) ** 2, 0.0)
    num = den = 0.0
    idx = np.flatnonzero(rows)
    for start in range(0, len(idx), 1024):
        i = idx[start:start + 1024]
        comparable = time[i, None] < time[None, :]
        score = (risk[i, None] > risk[None, :]) + 0.5 * (risk[i, None] == risk[None, :])
        num += float(np.sum(w[i, None] * comparable * score))
        den += float(np.sum(w[i, None] * comparable))
    return num / den if den > 0 else float("nan")


def breslow_cumulative_hazard(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Breslow baseline cumulative hazard of a Cox model with linear predictor ``risk`` (training rows).

    Returns ``(event_times (K,), H0 (K,))``, with ``H0`` the baseline cumulative hazard just after each time.
    """
    time, event = _check(time, event, risk)
    risk = np.asarray(risk, float)
    shift = risk.max()
    uniq, inverse = np.unique(time, return_inverse=True)
    deaths = np.bincount(inverse, weights=event, minlength=len(uniq))
    weight_at = np.bincount(inverse, weights=np.exp(risk - shift), minlength=len(uniq))
    risk_set = np.cumsum(weight_at[::-1])[::-1]            # sum over t_j >= t_k
    hazard = deaths / risk_set * np.exp(-shift)
    keep = deaths > 0
    return uniq[keep], np.cumsum(hazard)[keep]


def cox_survival(risk: np.ndarray, base_times: np.ndarray, base_cumhaz: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Survival ``S(t | x) = exp(-H0(t) exp(risk))`` on ``grid`` -> ``(n, len(grid))``."""
    idx = np.searchsorted(base_times, np.asarray(grid, float), side="right") - 1
    h0 = np.where(idx >= 0, base_cumhaz[np.clip(idx, 0, None)], 0.0)
    return np.exp(-np.exp(np.asarray(risk, float))[:, None] * h0[None, :])


def time_grid(time: np.ndarray, event: np.ndarray, *, n: int = 50, quantiles: tuple[float, float] = (0.1, 0.9)) -> np.ndarray:
    """Evaluation grid for the Brier score: ``n`` points between quantiles of the event times."""
    time, event = _check(time, event)
    ev = time[event] if event.any() else time
    lo, hi = np.quantile(ev, quantiles)
    return np.linspace(lo, hi, n) if hi > lo else np.array([lo])


def brier_scores(
    time: np.ndarray,
    event: np.ndarray,
    surv: np.ndarray,
    grid: np.ndarray,
    *,
    train_time: np.ndarray | None = None,
    train_event: np.ndarray | None = None,
) -> np.ndarray:
    """IPCW Brier score (Graf et al. 1999) at each ``grid`` time for predicted survival ``surv`` ``(n, len(grid))``."""
    time, event = _check(time, event)
    g = censoring_survival(*((train_time, train_event) if train_time is not None else (time, event)))
    grid = np.asarray(grid, float)
    died = (time[:, None] <= grid[None, :]) & event[:, None]
    alive = time[:, None] > grid[None, :]
    g_event = np.maximum(g(time, True), 1e-12)[:, None]
    g_grid = np.maximum(g(grid), 1e-12)[None, :]
    score = died * surv ** 2 / g_event + alive * (1.0 - surv) ** 2 / g_grid
    return score.mean(axis=0)


def integrated_brier(
    time: np.ndarray,
    event: np.ndarray,
    surv: np.ndarray,
    grid: np.ndarray,
    *,
    train_time: np.ndarray | None = None,
    train_event: np.ndarray | None = None,
) -> float:
    """Integrated Brier score over ``grid`` (trapezoid rule divided by the grid's span); lower is better."""
    bs = brier_scores(time, event, surv, grid, train_time=train_time, train_event=train_event)
    if len(grid) < 2:
        return float(bs[0])
    return float(np.trapezoid(bs, grid) / (grid[-1] - grid[0]))


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap interval."""

    estimate: float
    low: float
    high: float
    n_boot: int            # resamples where the metric was defined

    def as_dict(self) -> dict[str, float | int]:
        return {"estimate": self.estimate, "ci_low": self.low, "ci_high": self.high, "n_boot": self.n_boot}


def bootstrap(
    metric: Callable[[np.ndarray], float],
    n: int,
    scores: Mapping[str, np.ndarray],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    contrasts: Sequence[tuple[str, str]] = (),
) -> dict[str, Interval]:
    """Paired percentile bootstrap over rows for several scores on the same resamples.

    Args:
        metric: ``metric(rows, score) -> float`` for integer row positions ``rows`` and one score array.
        n: number of rows.
        scores: name -> ``(n,)`` score arrays (e.g. risks of the head and baselines).
        contrasts: pairs ``(a, b)``: also returns ``"a - b"`` differences (paired CIs, same resamples).
    Resamples where a metric is undefined (NaN, e.g. no events drawn) are left out and counted.
    """
    rng = np.random.default_rng(seed)
    names = list(scores)
    full = np.arange(n)
    point = {k: metric(full, scores[k]) for k in names}
    draws = np.full((n_boot, len(names)), np.nan)
    for b in range(n_boot):
        rows = rng.integers(0, n, n)
        draws[b] = [metric(rows, scores[k]) for k in names]
    out: dict[str, Interval] = {}
    alpha = (1 - level) / 2

    def interval(est: float, values: np.ndarray) -> Interval:
        ok = values[np.isfinite(values)]
        if ok.size == 0:
            return Interval(est, float("nan"), float("nan"), 0)
        lo, hi = np.quantile(ok, [alpha, 1 - alpha])
        return Interval(float(est), float(lo), float(hi), int(ok.size))

    for j, k in enumerate(names):
        out[k] = interval(point[k], draws[:, j])
    for a, b in contrasts:
        ia, ib = names.index(a), names.index(b)
        out[f"{a} - {b}"] = interval(point[a] - point[b], draws[:, ia] - draws[:, ib])
    return out
