"""Baselines of the survival head, fitted per fold on training patients only.

* ``clinical_cox``: lifelines ``CoxPHFitter`` (ridge ``penalizer``) on the encoded clinical features;
  a missing value is the training mean (0 after standardization) plus a missing-indicator column.
* ``cxr_pca_cox``: the same on the first principal components of each patient's mean CXR embedding
  (PCA fitted on training patients), plus a no-CXR indicator.
* ``oracle``: the same on the cohort's ``truth`` columns (e.g. the demo's planted subtype and
  severity): the ceiling a model could reach from the generating variables.
* ``rsf`` (optional): a random survival forest (scikit-survival, 100 trees, min 15 patients per leaf) on
  the clinical design: a nonlinear reference that needs no tuning.

Binary endpoints (no times) use an L2 logistic regression (``C = 1 / penalizer``) on the same design,
the analogue of the head's logistic loss. Every fitter returns a risk score (higher = worse).

:func:`fit_baselines` fits the configured ``evaluation.baselines`` of one fold (designs from
:func:`baseline_designs`, with the head's preprocessing fitted on the same training patients) and returns their
test risks and survival curves; Cox-type risks are centred by their training mean, like the head's.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter
from lifelines.exceptions import ConvergenceError, ConvergenceWarning
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

from fusion.clinical import SchemaError
from fusion.survival.config import SurvivalConfig
from fusion.survival.inputs import HeadInputs, Preprocessor, Target
from fusion.survival.metrics import breslow_cumulative_hazard, cox_survival, survival_at

log = logging.getLogger(__name__)


def clinical_design(values: np.ndarray, mask: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Encoded clinical values (0 where missing) + one missing indicator per column -> design frame."""
    cols = {n: np.where(mask[:, j], values[:, j], 0.0) for j, n in enumerate(names)}
    cols |= {f"{n}__missing": (~mask[:, j]).astype(float) for j, n in enumerate(names)}
    return pd.DataFrame(cols)


def pca_design(cxr_mean: np.ndarray, has_cxr: np.ndarray, train: np.ndarray, *, n_components: int,
               seed: int) -> pd.DataFrame:
    """PCA scores of per-patient mean CXR embeddings ``(N, D)`` fitted on ``train`` rows having a CXR."""
    fit_rows = train & has_cxr
    k = int(min(n_components, fit_rows.sum() - 1, cxr_mean.shape[1]))
    if k < 1:
        return pd.DataFrame({"no_cxr": (~has_cxr).astype(float)})
    pca = PCA(k, random_state=seed).fit(cxr_mean[fit_rows])
    scores = np.where(has_cxr[:, None], pca.transform(cxr_mean), 0.0)
    frame = pd.DataFrame(scores, columns=[f"pc{i + 1}" for i in range(k)])
    frame["no_cxr"] = (~has_cxr).astype(float)
    return frame


def truth_design(truth: pd.DataFrame) -> pd.DataFrame:
    """Truth columns -> numeric design (categorical / object columns one-hot, first level dropped)."""
    frame = truth.reset_index(drop=True)
    cat = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c]) or frame[c].nunique() <= 5]
    out = pd.get_dummies(frame, columns=cat, drop_first=True, dtype=float).astype(float)
    return out.fillna(out.mean())


def fit_predict(design: pd.DataFrame, train: np.ndarray, test: np.ndarray, *, time: np.ndarray | None,
                event: np.ndarray | None, y: np.ndarray | None, penalizer: float) -> np.ndarray:
    """Fit on ``train`` rows, return the risk of ``test`` rows (NaN when the fit fails, logged)."""
    x = design.to_numpy(float)
    keep = x[train].std(0) > 0                       # constant in training: no information, breaks Newton
    x = x[:, keep]
    cols = list(design.columns[keep])
    n_test = int(test.sum())
    if not cols:
        return np.zeros(n_test)
    if y is not None:
        model = LogisticRegression(C=1.0 / max(penalizer, 1e-6), max_iter=2000).fit(x[train], y[train])
        return model.decision_function(x[test])
    mean, std = x[train].mean(0), x[train].std(0)
    frame = pd.DataFrame((x - mean) / std, columns=cols)
    frame["_time"], frame["_event"] = time, event
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            cph = CoxPHFitter(penalizer=penalizer).fit(frame[train], "_time", "_event")
    except ConvergenceError as exc:
        log.warning("CoxPH baseline did not converge (%s); its risks are NaN for this fold", exc)
        return np.full(n_test, np.nan)
    return cph.predict_log_partial_hazard(frame[test]).to_numpy()


def fit_predict_forest(design: pd.DataFrame, train: np.ndarray, test: np.ndarray, *, time: np.ndarray | None,
                       event: np.ndarray | None, y: np.ndarray | None, grid: np.ndarray | None, seed: int,
                       n_trees: int = 100) -> tuple[np.ndarray, np.ndarray | None]:
    """Random survival forest (or random forest classifier for ``y``) -> ``(test risk, test S on grid or None)``.

    Risk: the forest's predicted cumulative hazard summed over its time points (scikit-survival's
    ``predict``; higher = worse), or the event probability for binary outcomes. Needs scikit-survival.
    """
    x = design.to_numpy(float)
    if y is not None:
        from sklearn.ensemble import RandomForestClassifier

        model = RandomForestClassifier(n_trees, min_samples_leaf=5, random_state=seed, n_jobs=1).fit(x[train], y[train])
        return model.predict_proba(x[test])[:, 1], None
    try:
        from sksurv.ensemble import RandomSurvivalForest
        from sksurv.util import Surv
    except ImportError as exc:
        raise ImportError("evaluation.baselines 'rsf' needs scikit-survival (pip install 'scikit-survival==0.28.0', "
                          "in the dev extra), or remove 'rsf' from evaluation.baselines") from exc
    model = RandomSurvivalForest(n_trees, min_samples_leaf=15, max_features="sqrt", random_state=seed, n_jobs=1)
    model.fit(x[train], Surv.from_arrays(event[train].astype(bool), time[train]))
    risk = model.predict(x[test])
    curves = None
    if grid is not None:
        curves = survival_at(model.predict_survival_function(x[test], return_array=True), model.unique_times_, grid)
    return risk, curves


# ----------------------------------------------------------------------------------------- one fold
def baseline_designs(cfg: SurvivalConfig, inputs: HeadInputs, target: Target, pre: Preprocessor,
                     fit_rows: np.ndarray, seed: int) -> dict[str, pd.DataFrame]:
    """Design frame of each configured baseline over all of ``target``'s rows (PCA fitted on ``fit_rows``)."""
    data, rows = inputs.data, target.rows
    wanted = set(cfg.evaluation.baselines)
    designs: dict[str, pd.DataFrame] = {}
    if pre.encoder.variables and wanted & {"clinical_cox", "rsf"}:
        clin = pre.encoder.transform(data.clinical.iloc[rows], schema=data.schema)
        names = [f"{v.name}[{j}]" for v in pre.encoder.variables for j in range(v.stop - v.start)]
        design = clinical_design(clin.values, clin.mask, names)
        designs |= {k: design for k in ("clinical_cox", "rsf") if k in wanted}
    xmask = inputs.xmask[rows]
    if xmask.any() and "cxr_pca_cox" in wanted:
        x = np.where(xmask[..., None], (inputs.x[rows] - pre.cxr_mean) / pre.cxr_std, 0.0)
        mean = x.sum(1) / np.maximum(xmask.sum(1, keepdims=True), 1)
        designs["cxr_pca_cox"] = pca_design(mean, xmask.any(1), fit_rows, n_components=cfg.evaluation.pca_components,
                                            seed=seed)
    truth_cols = cfg.evaluation.oracle_columns if cfg.evaluation.oracle_columns is not None else list(data.truth.columns)
    missing = [c for c in truth_cols if c not in data.truth.columns]
    if missing:
        raise SchemaError(f"evaluation.oracle_columns {missing} are not role=truth columns "
                          f"(truth columns: {list(data.truth.columns)})")
    if truth_cols and "oracle" in wanted:
        designs["oracle"] = truth_design(data.truth.iloc[rows][truth_cols])
    return designs


def fit_baselines(cfg: SurvivalConfig, inputs: HeadInputs, target: Target, pre: Preprocessor, test: np.ndarray,
                  grid: np.ndarray | None, *, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Fit the baselines on the rows outside ``test`` (a mask over ``target.rows``) -> ``(test risks, test survival
    on grid)`` per baseline (``grid`` None for binary endpoints)."""
    fit_rows = ~test
    risk: dict[str, np.ndarray] = {}
    surv: dict[str, np.ndarray] = {}
    for name, design in baseline_designs(cfg, inputs, target, pre, fit_rows, seed).items():
        if name == "rsf":
            risk[name], curves = fit_predict_forest(design, fit_rows, test, time=target.time, event=target.event,
                                                    y=target.y, grid=grid, seed=seed)
            if curves is not None:
                surv[name] = curves
            continue
        scores = fit_predict(design, fit_rows, fit_rows | test, time=target.time, event=target.event,
                             y=target.y, penalizer=cfg.evaluation.penalizer)
        full = np.full(len(target.rows), np.nan)
        full[np.flatnonzero(fit_rows | test)] = scores
        risk[name] = full[test]
        if target.endpoint.kind != "binary":
            shift = np.nanmean(full[fit_rows])
            risk[name] = risk[name] - shift
            surv[name] = _cox_curves(target.time[fit_rows], target.event[fit_rows], full[fit_rows] - shift, risk[name],
                                     grid)
    return risk, surv


def _cox_curves(time: np.ndarray, event: np.ndarray, fit_risk: np.ndarray, test_risk: np.ndarray,
                grid: np.ndarray) -> np.ndarray:
    """Survival on ``grid`` of test rows from a Breslow baseline fitted on the training rows (``time``, ``event``)."""
    if not np.isfinite(fit_risk).all() or not np.isfinite(test_risk).all():
        return np.full((len(test_risk), len(grid)), np.nan)
    times, h0 = breslow_cumulative_hazard(time, event, fit_risk)
    return cox_survival(test_risk, times, h0, grid)
