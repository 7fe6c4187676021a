"""Patient-level K-fold evaluation of one endpoint: out-of-fold risks of the head, its ablations and the baselines.

In each fold (:func:`_fold`) the head (:class:`fusion.survival.model.SurvivalModel`: preprocessing, ``head.ensemble``
early-stopped members), each configured ``evaluation.ablations`` variant (:func:`head_variants`, trained the same
way with the same validation parts) and the baselines (:func:`fusion.survival.baselines.fit_baselines`) are fitted
on the training patients only; every reported risk is out-of-fold. Cox-type risks are centred by their
training-fold mean, so pooled out-of-fold risks are comparable across folds. :func:`run_endpoint` pools them and
computes the metrics (:mod:`fusion.survival.eval`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fusion.config import FusionConfig
from fusion.survival.baselines import fit_baselines
from fusion.survival.config import SurvivalConfig
from fusion.survival.eval import EvalTimes, calibration_tables, endpoint_flags, eval_times, evaluate_endpoint
from fusion.survival.inputs import HeadInputs, Target
from fusion.survival.model import SurvivalModel
from fusion.survival.network import SurvivalHead

log = logging.getLogger(__name__)


def head_variants(cfg: SurvivalConfig, module: SurvivalHead) -> dict[str, SurvivalHead]:
    """``{"head": module}`` plus one module per ``evaluation.ablations`` entry (other mixer, or a token group
    dropped; an ablation that would leave no token group, or that equals the head, is skipped with a log line)."""
    out = {"head": module}
    for name in cfg.evaluation.ablations:
        if name in ("gru", "mlp", "linear"):
            variant = module.clone(mixer=name)
        else:
            group = {"no_cxr": "use_cxr", "no_clinical": "use_clinical", "no_latent": "use_latent"}[name]
            variant = module.clone(**{group: False})
            if not (variant.use_cxr or variant.use_clinical or variant.use_latent):
                log.info("ablation %s skipped: no token group would be left", name)
                continue
        if variant == module:
            log.info("ablation %s skipped: it is the head itself (mixer %s, groups as configured)", name, module.mixer)
            continue
        out[name] = variant
    return out


@dataclass
class FoldResult:
    """Out-of-fold outputs of one fold: risks per model, survival curves on the grid, head training epochs."""

    risk: dict[str, np.ndarray]
    surv: dict[str, np.ndarray]
    head_epochs: dict[str, list[int]]
    head_best_epochs: dict[str, list[int]]


def _folds(n: int, k: int, seed: int) -> np.ndarray:
    """Fold id (N,) of a seeded patient-level K-fold (rows are patients)."""
    fold = np.empty(n, np.int64)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % k
    return fold


def _fit_heads(cfg: SurvivalConfig, inputs: HeadInputs, train: Target, *, fold: int,
               fusion: FusionConfig | None) -> dict[str, SurvivalModel]:
    """The head and its ablation variants fitted on ``train`` (members seeded by ``(seed, fold, member)``)."""
    head = SurvivalModel(cfg, seed=(cfg.seed, fold), fusion=fusion).fit(inputs, train)
    models = {"head": head}
    for name, network in head_variants(cfg, head.network_).items():
        if name != "head":
            models[name] = SurvivalModel(cfg, network=network, seed=(cfg.seed, fold), fusion=fusion).fit(inputs, train)
    return models


def _fold(cfg: SurvivalConfig, inputs: HeadInputs, target: Target, test: np.ndarray, grid: np.ndarray | None, *,
          fold: int, fusion: FusionConfig | None = None) -> FoldResult:
    """Fit the head, its ablations and the baselines on the rows outside ``test`` (a mask over ``target.rows``);
    predict ``test``. ``grid``: times of the survival curves (None for binary endpoints)."""
    test_rows = target.rows[test]
    risk: dict[str, np.ndarray] = {}
    surv: dict[str, np.ndarray] = {}
    models = _fit_heads(cfg, inputs, target.subset(~test), fold=fold, fusion=fusion)
    for name, model in models.items():
        risk[name] = model.predict_risk(inputs, test_rows)
        if grid is not None:
            surv[name] = model.predict_survival(inputs, test_rows, grid)
    base_risk, base_surv = fit_baselines(cfg, inputs, target, models["head"].preprocessor_, test, grid,
                                         seed=cfg.seed * 1000 + fold)
    return FoldResult(risk=risk | base_risk, surv=surv | base_surv,
                      head_epochs={k: m.epochs_ for k, m in models.items()},
                      head_best_epochs={k: m.best_epochs_ for k, m in models.items()})


def _out_of_fold(cfg: SurvivalConfig, inputs: HeadInputs, target: Target, fold: np.ndarray, times: EvalTimes | None, *,
                 fusion: FusionConfig | None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[dict], list[dict]]:
    """Every fold's test risks and curves pooled -> ``(risk, surv, training epochs, ablation best epochs)``."""
    n = len(target.rows)
    risk: dict[str, np.ndarray] = {}
    surv: dict[str, np.ndarray] = {}
    epochs, ablation_epochs = [], []
    for f in tqdm(range(cfg.evaluation.folds), desc=f"survival {target.endpoint.name}", unit="fold"):
        test = fold == f
        res = _fold(cfg, inputs, target, test, times.grid if times else None, fold=f, fusion=fusion)
        for store, part in ((risk, res.risk), (surv, res.surv)):
            for k, v in part.items():
                store.setdefault(k, np.full((n,) + v.shape[1:], np.nan))[test] = v
        epochs.append({"fold": f, "epochs": res.head_epochs["head"], "best_epoch": res.head_best_epochs["head"]})
        ablation_epochs.append({"fold": f, **{k: v for k, v in res.head_best_epochs.items() if k != "head"}})
    return risk, surv, epochs, ablation_epochs


def run_endpoint(cfg: SurvivalConfig, inputs: HeadInputs, target: Target, *, fusion: FusionConfig | None = None
                 ) -> tuple[dict[str, Any], pd.DataFrame]:
    """K-fold out-of-fold risks + metrics of one endpoint -> ``(metrics, risk frame)``.

    ``fusion``: joint mode's VAE config (``tokens.latent: joint``; see :class:`fusion.survival.model.SurvivalModel`).
    """
    ev = cfg.evaluation
    n = len(target.rows)
    binary = target.endpoint.kind == "binary"
    n_events = int(target.events.sum())
    if n < 2 * ev.folds or n_events < ev.folds:
        raise ValueError(f"endpoint '{target.endpoint.name}': {n} patients with {n_events} events are too few for "
                         f"{ev.folds}-fold evaluation (evaluation.folds)")
    times = eval_times(target.time, target.event, cfg) if not binary else None
    fold = _folds(n, ev.folds, cfg.seed if ev.fold_seed is None else ev.fold_seed)
    risk, surv, epochs, ablation_epochs = _out_of_fold(cfg, inputs, target, fold, times, fusion=fusion)
    metrics = {
        "kind": target.endpoint.kind, "loss": "logistic" if binary else cfg.loss.kind,
        "n_patients": n, "n_events": n_events, "folds": ev.folds, "row_notes": target.notes, "training": epochs,
        "models": {"head": cfg.head.mixer, **{k: "ablation" for k in ev.ablations if k in risk},
                   **{k: "baseline" for k in ev.baselines if k in risk}},
        **({"brier_grid_days": [float(times.brier_times[0]), float(times.brier_times[-1])],
            "horizons_days": times.horizons.tolist(), "calibration_horizon_days": times.calibration}
           if times else {}),
        "metrics": evaluate_endpoint(target.endpoint.kind, risk, surv, cfg, time=target.time, event=target.event,
                                     y=target.y, times=times),
    }
    if ev.ablations:
        metrics["ablation_best_epochs"] = ablation_epochs
    if times is not None and "calibration" in ev.metrics:
        metrics["calibration"] = {k: {c: np.asarray(v).tolist() for c, v in tab.items()} for k, tab in
                                  calibration_tables(target.time, target.event, surv, times,
                                                     groups=ev.calibration_groups).items()}
    metrics["flags"] = endpoint_flags(metrics["metrics"], n_events=n_events, notes=target.notes)
    frame = pd.DataFrame({"patient_id": inputs.data.patient_ids[target.rows], "endpoint": target.endpoint.name,
                          "fold": fold, "risk": risk["head"]})
    for k in risk:
        if k != "head":
            frame[f"risk_{k}"] = risk[k]
    return metrics, frame
