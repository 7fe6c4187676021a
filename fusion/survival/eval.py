"""Evaluation of the survival head's out-of-fold predictions: metrics with paired bootstrap CIs, flags, tokens.

* :func:`eval_times`: the times on which every model's survival curves are evaluated (the Brier grid, the
  td-AUROC horizons, the calibration horizon and up to 200 quantiles of the event times for Antolini's C).
* :func:`evaluate_endpoint`: every metric of ``evaluation.metrics`` for every model (head, ablations,
  baselines) with a patient bootstrap (the same resamples for all models) and head-minus-model differences.
  Metrics (conventions in :mod:`fusion.survival.metrics`): ``c_index`` (Harrell; AUROC for binary
  endpoints), ``uno_c`` (truncated at the Brier grid's end), ``antolini_c``, ``td_auroc@<h>d`` per horizon,
  ``integrated_brier`` and ``calibration@<h>d`` (size-weighted mean |predicted - Kaplan-Meier observed|
  survival over risk deciles; lower is better for both).
* :func:`endpoint_flags`: machine-readable warnings of an endpoint (``worse_than_clinical``,
  ``c_below_half``, ``few_events``) that the reports show.
* :func:`token_summary`: one sentence naming the head's tokens.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fusion.survival.config import SurvivalConfig
from fusion.survival.metrics import (
    antolini_c,
    binary_c,
    bootstrap,
    calibration_error,
    calibration_table,
    harrell_c,
    integrated_brier,
    td_auroc,
    time_grid,
    uno_c,
)

MIN_EVENTS = 10            # fewer events: the endpoint is flagged `few_events`
ANTOLINI_POINTS = 200      # quantiles of the event times at which curves are read for Antolini's C
LOWER_IS_BETTER = ("integrated_brier", "calibration")


@dataclass(frozen=True)
class EvalTimes:
    """Times (days) of the survival curves and where each metric reads them."""

    grid: np.ndarray           # (G,) sorted unique times of every curve
    brier: np.ndarray          # (B,) indices into grid: the integrated Brier score's grid
    horizons: np.ndarray       # (H,) td-AUROC horizons
    calibration: float         # calibration horizon

    @property
    def brier_times(self) -> np.ndarray:
        return self.grid[self.brier]


def eval_times(time: np.ndarray, event: np.ndarray, cfg: SurvivalConfig) -> EvalTimes:
    """Curve times of one time-to-event endpoint (horizons default to the event-time quartiles)."""
    ev = cfg.evaluation
    brier = time_grid(time, event)
    t_ev = time[event.astype(bool)] if event.any() else time
    horizons = np.asarray(ev.horizons_days if ev.horizons_days is not None else np.quantile(t_ev, [0.25, 0.5, 0.75]),
                          float)
    cal = float(ev.calibration_horizon_days if ev.calibration_horizon_days is not None else np.median(t_ev))
    antolini = np.quantile(t_ev, np.linspace(0, 1, ANTOLINI_POINTS))
    grid = np.unique(np.concatenate([brier, horizons, [cal], antolini]))
    return EvalTimes(grid=grid, brier=np.searchsorted(grid, brier), horizons=horizons, calibration=cal)


def _guard(fn: Callable[[np.ndarray, np.ndarray], float]) -> Callable[[np.ndarray, np.ndarray], float]:
    """NaN where a model's prediction is missing for a resampled row (e.g. a baseline that did not converge)."""
    return lambda r, s: fn(r, s) if np.isfinite(s[r]).all() else float("nan")


def metric_fns(kind: str, *, time: np.ndarray | None, event: np.ndarray | None, y: np.ndarray | None,
               times: EvalTimes | None, cfg: SurvivalConfig) -> dict[str, tuple[Callable, bool]]:
    """``{metric name: (fn(rows, score) -> float, reads survival curves)}`` of the configured metrics."""
    wanted = cfg.evaluation.metrics
    if kind == "binary":
        return {"c_index": (_guard(lambda r, s: binary_c(y[r], s[r])), False)} if "c_index" in wanted else {}
    t, e, tm = time, event, times
    fns: dict[str, tuple[Callable, bool]] = {}
    if "c_index" in wanted:
        fns["c_index"] = (_guard(lambda r, s: harrell_c(t[r], e[r], s[r])), False)
    if "uno_c" in wanted:
        tau = float(tm.brier_times[-1])
        fns["uno_c"] = (_guard(lambda r, s: uno_c(t[r], e[r], s[r], tau=tau)), False)
    if "antolini_c" in wanted:
        fns["antolini_c"] = (_guard(lambda r, s: antolini_c(t[r], e[r], s[r], tm.grid)), True)
    if "td_auroc" in wanted:
        for h in tm.horizons:
            fns[f"td_auroc@{h:g}d"] = (_guard(lambda r, s, h=h: float(td_auroc(t[r], e[r], s[r], [h])[0])), False)
    if "integrated_brier" in wanted:
        fns["integrated_brier"] = (_guard(lambda r, s: integrated_brier(t[r], e[r], s[r][:, tm.brier],
                                                                        tm.brier_times)), True)
    if "calibration" in wanted:
        k = int(np.searchsorted(tm.grid, tm.calibration))
        groups = cfg.evaluation.calibration_groups
        fns[f"calibration@{tm.calibration:g}d"] = (
            _guard(lambda r, s: calibration_error(t[r], e[r], s[r][:, k], tm.calibration, groups=groups)), True)
    return fns


def evaluate_endpoint(kind: str, risk: dict[str, np.ndarray], surv: dict[str, np.ndarray], cfg: SurvivalConfig, *,
                      time: np.ndarray | None = None, event: np.ndarray | None = None, y: np.ndarray | None = None,
                      times: EvalTimes | None = None) -> dict[str, Any]:
    """Metrics with paired bootstrap CIs of every model, and ``"head - <model>"`` differences (same resamples)."""
    ev = cfg.evaluation
    n = len(next(iter(risk.values())))
    out: dict[str, Any] = {}
    for metric, (fn, curves) in metric_fns(kind, time=time, event=event, y=y, times=times, cfg=cfg).items():
        scores = surv if curves else risk
        if not scores:
            continue
        contrasts = [("head", k) for k in scores if k != "head"] if "head" in scores else []
        res = bootstrap(fn, n, scores, n_boot=ev.n_boot, seed=cfg.seed, level=ev.level, contrasts=contrasts)
        out[metric] = {k: v.as_dict() for k, v in res.items()}
    return out


def calibration_tables(time: np.ndarray, event: np.ndarray, surv: dict[str, np.ndarray], times: EvalTimes, *,
                       groups: int) -> dict[str, dict[str, list[float]]]:
    """Per model: predicted vs Kaplan-Meier observed survival at the calibration horizon by risk group."""
    k = int(np.searchsorted(times.grid, times.calibration))
    out = {}
    for name, s in surv.items():
        if np.isfinite(s[:, k]).all():
            out[name] = calibration_table(time, event, s[:, k], times.calibration, groups=groups)
    return out


def endpoint_flags(metrics: dict[str, Any], *, n_events: int, notes: dict[str, int] | None = None) -> list[str]:
    """Warnings of one endpoint: ``worse_than_clinical`` (head - clinical_cox C-index CI below 0),
    ``c_below_half`` (head C-index < 0.5), ``few_events`` (< :data:`MIN_EVENTS` events), ``onset_unknown`` (a binary
    endpoint whose positives may have had the outcome before the landmark: no ``onset`` column, or positives without
    an onset day; ``notes`` of the target)."""
    c = metrics.get("c_index", {})
    notes = notes or {}
    flags = []
    if notes.get("outcome_onset_unknown") or notes.get("positives_without_onset_day"):
        flags.append("onset_unknown")
    diff = c.get("head - clinical_cox")
    if diff is not None and np.isfinite(diff["ci_high"]) and diff["ci_high"] < 0:
        flags.append("worse_than_clinical")
    if "head" in c and c["head"]["estimate"] < 0.5:
        flags.append("c_below_half")
    if n_events < MIN_EVENTS:
        flags.append("few_events")
    return flags


FLAG_TEXT = {"worse_than_clinical": "the head is significantly worse than the clinical CoxPH baseline "
                                    "(paired C-index difference CI below 0)",
             "c_below_half": "the head's C-index is below 0.5 (worse than chance ranking)",
             "few_events": f"fewer than {MIN_EVENTS} events: every figure of this endpoint is unreliable",
             "onset_unknown": "binary outcome without an onset day for (some) positives: images up to the landmark may "
                              "have been taken after the outcome and leak it (name the day column in endpoint.onset)"}


def token_summary(cfg: SurvivalConfig, *, cxr_model: str | None, n_clinical: int, latent_dim: int | None) -> str:
    """One sentence of the head's tokens, e.g. ``CXR series (radiomics, up to 4 images up to day 3), 12 clinical
    variables, fused latent (frozen)``."""
    tok = cfg.tokens
    parts = []
    if tok.cxr and cxr_model:
        when = f"up to day {tok.landmark_days:g}" if tok.landmark_days is not None else "any time"
        per = "one token per image" if tok.cxr_tokens == "image" else "every embedding token"
        parts.append(f"CXR series ({cxr_model}, up to {tok.max_images} images {when}, {per})")
    if tok.clinical and n_clinical:
        parts.append(f"{n_clinical} clinical variables")
    if tok.latent != "none":
        parts.append(f"fused latent ({tok.latent}" + (f", {latent_dim} dims)" if latent_dim else ")"))
    head = cfg.head
    mixer = {"ssm": "selective SSM", "gru": "GRU", "mlp": "MLP on pooled tokens", "linear": "linear"}[head.mixer]
    return (", ".join(parts) or "no tokens") + (f"; {mixer} head" + (" + linear term" if head.linear_skip and
                                                                      head.mixer != "linear" else "")
                                                + f", {head.ensemble} member(s) per fold")
