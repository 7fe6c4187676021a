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
    from fusion.survival_metrics import survival_at

    model = RandomSurvivalForest(n_trees, min_samples_leaf=15, max_features="sqrt", random_state=seed, n_jobs=1)
    model.fit(x[train], Surv.from_arrays(event[train].astype(bool), time[train]))
    risk = model.predict(x[test])
    curves = None
    if grid is not None:
        curves = survival_at(model.predict_survival_function(x[test], return_array=True), model.unique_times_, grid)
    return risk, curves
