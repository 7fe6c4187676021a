"""Survival evaluation in numpy: Harrell's, Uno's and Antolini's C, time-dependent AUROC, Brier score,
calibration at a horizon, bootstrap CIs.

Sign convention: every concordance / AUROC function here takes a **risk** score (higher = earlier event,
like a Cox linear predictor). lifelines' ``concordance_index`` expects a predicted *survival time*
(higher = later event); :func:`harrell_c` equals ``concordance_index(time, -risk, event)``.

One tie convention in every metric (the one of lifelines and scikit-survival 0.28):

* Tied times: an event and a censoring at the same time -> the event happens first (the censored patient
  was still at risk). So a pair ``(i, j)`` is comparable when ``i`` has an event and ``T_j > T_i``, or
  ``T_j == T_i`` and ``j`` is censored (Harrell, Uno, Antolini); a td-AUROC case at ``t`` has an event at
  ``T_i <= t``, a control ``T_j > t``; the censoring Kaplan-Meier ``G(t) = P(C > t)`` removes the events
  at ``t`` from its risk set before counting the censorings at ``t``.
* Tied risks (or tied predicted survival, Antolini) count 1/2 (exact equality; scikit-survival uses
  ``|a - b| <= 1e-8``).
* Inverse probability of censoring weights (Uno's C, td-AUROC, Brier score) use ``G`` right-continuous at
  the time itself: ``1 / G(T_i)`` for an event, ``1 / G(t)`` for a patient still event-free at ``t``
  (scikit-survival's ``CensoringDistributionEstimator``; Uno et al. 2011 write ``G(T_i)``). ``G`` is fitted
  on the evaluated rows, or on training rows when given; a weight with ``G = 0`` is 0.

With this convention Uno's C, the Brier score and the td-AUROC equal scikit-survival's
``concordance_index_ipcw``, ``brier_score`` / ``integrated_brier_score`` and ``cumulative_dynamic_auc``
to rounding (tests/survival/test_metrics_sksurv.py). The 1e-5..2e-4 differences of the earlier version
on gbsg2 came from three departures, each shown there: its censoring KM kept the events at ``t`` in the
censoring risk set, its IPCW weights used the left limit ``G(T_i-)``, and its Uno comparable set was
strict (``T_j > T_i`` only).

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
        comparable = _comparable(time[i], time, event)
        num += float(np.sum(comparable * ((risk[i, None] > risk[None, :]) + 0.5 * (risk[i, None] == risk[None, :]))))
        den += float(np.sum(comparable))
    return num / den if den > 0 else float("nan")


def binary_c(y: np.ndarray, risk: np.ndarray) -> float:
    """C-index for a binary outcome without times (= AUROC of ``risk`` for ``y == 1``); NaN if one class."""
    y = np.asarray(y).astype(int)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, np.asarray(risk, float)))


def kaplan_meier(time: np.ndarray, event: np.ndarray, *, censoring: bool = False
                 ) -> Callable[[np.ndarray, bool], np.ndarray]:
    """Kaplan-Meier survival of the event (``censoring=False``) or of the censoring (``True``).

    Returns ``S(t, left)``: ``P(X > t)`` for ``left=False`` and the left limit ``P(X >= t)`` for
    ``left=True``, evaluated elementwise on an array of times (1 before the first time, the last value
    after the last). Censoring: the events at ``t`` leave the risk set before the censorings at ``t``.
    """
    time, event = _check(time, event)
    uniq, inverse = np.unique(time, return_inverse=True)
    events = np.bincount(inverse, weights=event, minlength=len(uniq))
    censored = np.bincount(inverse, weights=~event, minlength=len(uniq))
    at_risk = len(time) - np.concatenate([[0], np.cumsum(events + censored)[:-1]])
    if censoring:
        at_risk, events = at_risk - events, censored
    ratio = np.divide(events, at_risk, out=np.zeros(len(uniq)), where=at_risk > 0)
    surv = np.cumprod(1.0 - ratio)                        # just after each unique time

    def s(t: np.ndarray, left: bool = False) -> np.ndarray:
        idx = np.searchsorted(uniq, np.asarray(t, float), side="left" if left else "right") - 1
        return np.where(idx >= 0, surv[np.clip(idx, 0, None)], 1.0)

    return s


def censoring_survival(time: np.ndarray, event: np.ndarray) -> Callable[[np.ndarray, bool], np.ndarray]:
    """Kaplan-Meier estimate of the censoring survival ``G`` (:func:`kaplan_meier` with ``censoring=True``)."""
    return kaplan_meier(time, event, censoring=True)


def _ipcw(g: Callable[[np.ndarray, bool], np.ndarray], t: np.ndarray) -> np.ndarray:
    """``1 / G(t)`` (right-continuous), 0 where ``G(t) = 0``."""
    gt = g(t)
    return np.where(gt > 0, 1.0 / np.maximum(gt, 1e-300), 0.0)


def _comparable(ti: np.ndarray, time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """``(len(ti), n)`` comparable mask for event rows at times ``ti`` (tie convention in the module doc)."""
    return (ti[:, None] < time[None, :]) | ((ti[:, None] == time[None, :]) & ~event[None, :])


def uno_c(
    time: np.ndarray,
    event: np.ndarray,
    risk: np.ndarray,
    *,
    tau: float | None = None,
    train_time: np.ndarray | None = None,
    train_event: np.ndarray | None = None,
) -> float:
    """Uno's IPCW C-index (Uno et al. 2011) truncated at ``tau``; ties as in the module doc.

    ``C = sum_ij d_i G(T_i)^-2 [i, j comparable, T_i < tau] ([r_i > r_j] + [r_i = r_j]/2) / sum_ij d_i G(T_i)^-2 [...]``.
    ``tau`` defaults to the largest time; ``G`` is fitted on ``train_*`` when given, else on the rows.
    O(n^2) memory in row blocks: fine for held-out sets of some thousand patients.
    """
    time, event = _check(time, event, risk)
    risk = np.asarray(risk, float)
    g = censoring_survival(*((train_time, train_event) if train_time is not None else (time, event)))
    tau = float(time.max()) if tau is None else float(tau)
    w = np.zeros_like(time)
    rows = event & (time < tau)
    w[rows] = _ipcw(g, time[rows]) ** 2
    num = den = 0.0
    idx = np.flatnonzero(rows)
    for start in range(0, len(idx), 1024):
        i = idx[start:start + 1024]
        comparable = _comparable(time[i], time, event)
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


def brier_scores(time: np.ndarray, event: np.ndarray, surv: np.ndarray, grid: np.ndarray, *,
                 train_time: np.ndarray | None = None, train_event: np.ndarray | None = None) -> np.ndarray:
    """IPCW Brier score (Graf et al. 1999) at each ``grid`` time for predicted survival ``surv`` ``(n, len(grid))``.

    ``BS(t) = mean_i [ d_i [T_i <= t] S_i(t)^2 / G(T_i) + [T_i > t] (1 - S_i(t))^2 / G(t) ]``.
    """
    time, event = _check(time, event)
    g = censoring_survival(*((train_time, train_event) if train_time is not None else (time, event)))
    grid = np.asarray(grid, float)
    died = (time[:, None] <= grid[None, :]) & event[:, None]
    alive = time[:, None] > grid[None, :]
    score = died * surv ** 2 * _ipcw(g, time)[:, None] + alive * (1.0 - surv) ** 2 * _ipcw(g, grid)[None, :]
    return score.mean(axis=0)


def integrated_brier(time: np.ndarray, event: np.ndarray, surv: np.ndarray, grid: np.ndarray, *,
                     train_time: np.ndarray | None = None, train_event: np.ndarray | None = None) -> float:
    """Integrated Brier score over ``grid`` (trapezoid rule divided by the grid's span); lower is better.

    Same arguments as :func:`brier_scores`.
    """
    bs = brier_scores(time, event, surv, grid, train_time=train_time, train_event=train_event)
    if len(grid) < 2:
        return float(bs[0])
    return float(np.trapezoid(bs, grid) / (grid[-1] - grid[0]))


def survival_at(surv: np.ndarray, grid: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Step lookup of curves ``surv (n, G)`` on ``grid`` at times ``t`` (m,) -> ``(n, m)``; 1 before ``grid[0]``."""
    idx = np.searchsorted(np.asarray(grid, float), np.asarray(t, float), side="right") - 1
    return np.where(idx[None, :] >= 0, surv[:, np.clip(idx, 0, None)], 1.0)


def antolini_c(time: np.ndarray, event: np.ndarray, surv: np.ndarray, grid: np.ndarray) -> float:
    """Antolini's time-dependent C-index (Antolini et al. 2005) of survival curves ``surv (n, len(grid))``.

    Over comparable pairs ``(i, j)`` (module doc): concordant when ``S_i(T_i) < S_j(T_i)``, ties 1/2; the
    curves are read as steps on ``grid`` (:func:`survival_at`). With proportional-hazards curves and a grid
    holding every event time it equals Harrell's C; with crossing curves it scores the time-varying ranking.
    """
    time, event = _check(time, event)
    surv = np.asarray(surv, float)
    idx = np.flatnonzero(event)
    num = den = 0.0
    for start in range(0, len(idx), 512):
        i = idx[start:start + 512]
        at = survival_at(surv, grid, time[i])                 # (n, b): every patient's S at T_i
        own = at[i, np.arange(len(i))]                        # S_i(T_i)
        comparable = _comparable(time[i], time, event)        # (b, n)
        score = (own[:, None] < at.T) + 0.5 * (own[:, None] == at.T)
        num += float(np.sum(comparable * score))
        den += float(np.sum(comparable))
    return num / den if den > 0 else float("nan")


def td_auroc(time: np.ndarray, event: np.ndarray, risk: np.ndarray, horizons: np.ndarray, *,
             train_time: np.ndarray | None = None, train_event: np.ndarray | None = None) -> np.ndarray:
    """Cumulative/dynamic AUROC at each horizon (Uno 2007, Hung & Chiang 2010) -> ``(len(horizons),)``.

    Cases at ``t``: events with ``T_i <= t``, weighted ``1 / G(T_i)``; controls: ``T_j > t``; tied risks 1/2.
    NaN at a horizon without cases or controls.
    """
    time, event = _check(time, event, risk)
    risk = np.asarray(risk, float)
    g = censoring_survival(*((train_time, train_event) if train_time is not None else (time, event)))
    w = _ipcw(g, time)
    out = np.full(len(horizons), np.nan)
    for k, t in enumerate(np.asarray(horizons, float)):
        case = event & (time <= t)
        controls = np.sort(risk[time > t])
        if not case.any() or len(controls) == 0 or w[case].sum() == 0:
            continue
        below = np.searchsorted(controls, risk[case], side="left")
        tied = np.searchsorted(controls, risk[case], side="right") - below
        out[k] = float(np.sum(w[case] * (below + 0.5 * tied)) / (w[case].sum() * len(controls)))
    return out


def calibration_table(time: np.ndarray, event: np.ndarray, surv_h: np.ndarray, horizon: float, *,
                      groups: int = 10) -> dict[str, np.ndarray]:
    """Predicted vs observed survival at ``horizon`` by groups of predicted risk (deciles by default).

    ``surv_h (n,)`` predicted ``S(horizon)``; rows are split into ``groups`` equal-size groups by it (highest
    risk first). Returns ``{"n", "predicted" (mean S), "observed" (Kaplan-Meier S(horizon) of the group)}``,
    each ``(groups,)``.
    """
    time, event = _check(time, event, surv_h)
    order = np.argsort(np.asarray(surv_h, float), kind="stable")
    parts = np.array_split(order, groups)
    n = np.array([len(p) for p in parts])
    pred = np.array([np.mean(surv_h[p]) if len(p) else np.nan for p in parts])
    obs = np.array([kaplan_meier(time[p], event[p])(np.array([horizon]))[0] if len(p) else np.nan for p in parts])
    return {"n": n, "predicted": pred, "observed": obs}


def calibration_error(time: np.ndarray, event: np.ndarray, surv_h: np.ndarray, horizon: float, *,
                      groups: int = 10) -> float:
    """Size-weighted mean ``|predicted - Kaplan-Meier observed|`` of :func:`calibration_table` (0 = calibrated)."""
    tab = calibration_table(time, event, surv_h, horizon, groups=groups)
    ok = tab["n"] > 0
    return float(np.sum(tab["n"][ok] * np.abs(tab["predicted"][ok] - tab["observed"][ok])) / tab["n"][ok].sum())


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
