"""Survival metrics against scikit-survival 0.28 on lifelines' gbsg2 (686 patients, integer days, tied times).

One tie convention (fusion/survival/metrics.py docstring) makes Harrell's and Uno's C, td-AUROC, Brier and
IBS equal scikit-survival's to rounding; the earlier 1e-5..2e-4 differences are reproduced and explained.
"""
from __future__ import annotations

import numpy as np
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter

from fusion.survival.figures import plot_calibration
from fusion.survival.metrics import (
    antolini_c,
    breslow_cumulative_hazard,
    brier_scores,
    calibration_table,
    cox_survival,
    harrell_c,
    integrated_brier,
    td_auroc,
    time_grid,
    uno_c,
)

sksurv_metrics = pytest.importorskip("sksurv.metrics")
from sksurv.nonparametric import kaplan_meier_estimator  # noqa: E402
from sksurv.util import Surv  # noqa: E402


@pytest.fixture(scope="module")
def gbsg2():
    """(time, event, Cox risk (n,), Breslow (times, H0)) of a CoxPH fitted on half of gbsg2, scored on all."""
    from lifelines.datasets import load_gbsg2

    df = load_gbsg2()
    df = df.assign(horTh=(df.horTh == "yes").astype(float), menostat=(df.menostat == "Post").astype(float),
                   tgrade=df.tgrade.map({"I": 1.0, "II": 2.0, "III": 3.0}))
    half = np.arange(len(df)) % 2 == 0
    cph = CoxPHFitter(penalizer=0.01).fit(df[half], "time", "cens")
    risk = cph.predict_log_partial_hazard(df).to_numpy()
    time, event = df["time"].to_numpy(float), df["cens"].to_numpy(int)
    return time, event, risk, breslow_cumulative_hazard(time, event, risk)


def _y(time, event):
    return Surv.from_arrays(event.astype(bool), time)


def test_gbsg2_has_event_censoring_ties(gbsg2):
    time, event, *_ = gbsg2
    assert len(set(time[event == 1]) & set(time[event == 0])) > 0     # the case the convention decides


def test_harrell_equals_sksurv(gbsg2):
    time, event, risk, _ = gbsg2
    ref = sksurv_metrics.concordance_index_censored(event.astype(bool), time, risk)[0]
    assert harrell_c(time, event, risk) == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("tau_q", [0.5, 0.9, 1.0])
def test_uno_equals_sksurv(gbsg2, tau_q):
    time, event, risk, _ = gbsg2
    tau = float(np.quantile(time, tau_q)) if tau_q < 1 else None
    ref = sksurv_metrics.concordance_index_ipcw(_y(time, event), _y(time, event), risk, tau=tau)[0]
    assert uno_c(time, event, risk, tau=tau) == pytest.approx(ref, abs=1e-12)


def _uno_before_the_fix(time, event, risk, tau):
    """The earlier uno_c: lifelines KM of the flipped indicator, weights 1/G(T_i-)^2, strict T_i < T_j."""
    km = KaplanMeierFitter().fit(time - 1e-9, 1 - event)         # G(T-) of lifelines' KM
    w = np.where(event & (time < tau), 1.0 / km.survival_function_at_times(time).to_numpy() ** 2, 0.0)
    comparable = time[:, None] < time[None, :]
    score = (risk[:, None] > risk[None, :]) + 0.5 * (risk[:, None] == risk[None, :])
    return float(np.sum(w[:, None] * comparable * score) / np.sum(w[:, None] * comparable))


def test_earlier_uno_difference_is_the_tie_convention(gbsg2):
    """The old code differed from sksurv by 1e-5..1e-3 on gbsg2; the difference is the tie handling alone."""
    time, event, risk, _ = gbsg2
    tau = float(np.quantile(time, 0.9))
    ref = sksurv_metrics.concordance_index_ipcw(_y(time, event), _y(time, event), risk, tau=tau)[0]
    old = _uno_before_the_fix(time, event.astype(bool), risk, tau)
    assert 1e-6 < abs(old - ref) < 1e-3
    untied = time + np.where(event == 1, 0.0, 0.5)                   # censorings off the event days
    ref_untied = sksurv_metrics.concordance_index_ipcw(_y(untied, event), _y(untied, event), risk)[0]
    assert uno_c(untied, event, risk) == pytest.approx(ref_untied, abs=1e-12)


def test_brier_and_ibs_equal_sksurv(gbsg2):
    time, event, risk, (bt, h0) = gbsg2
    grid = time_grid(time, event)
    surv = cox_survival(risk, bt, h0, grid)
    _, ref = sksurv_metrics.brier_score(_y(time, event), _y(time, event), surv, grid)
    np.testing.assert_allclose(brier_scores(time, event, surv, grid), ref, rtol=1e-12, atol=1e-15)
    ref_ibs = sksurv_metrics.integrated_brier_score(_y(time, event), _y(time, event), surv, grid)
    assert integrated_brier(time, event, surv, grid) == pytest.approx(ref_ibs, abs=1e-12)


def test_td_auroc_equals_sksurv(gbsg2):
    time, event, risk, _ = gbsg2
    horizons = np.quantile(time[event == 1], [0.25, 0.5, 0.75])
    ref, _ = sksurv_metrics.cumulative_dynamic_auc(_y(time, event), _y(time, event), risk, horizons)
    np.testing.assert_allclose(td_auroc(time, event, risk, horizons), ref, rtol=1e-12)


def test_antolini_of_proportional_hazards_equals_harrell_in_sksurv(gbsg2):
    """PH curves never cross: S_i(T_i) < S_j(T_i) iff r_i > r_j, so Antolini = Harrell (scikit-survival)."""
    time, event, risk, (bt, h0) = gbsg2
    grid = np.unique(time[event == 1])
    surv = cox_survival(risk, bt, h0, grid)
    ref = sksurv_metrics.concordance_index_censored(event.astype(bool), time, risk)[0]
    assert antolini_c(time, event, surv, grid) == pytest.approx(ref, abs=1e-12)


def test_antolini_scores_crossing_curves_by_the_time_of_the_event():
    """Brute force on crossing curves: i is ranked by S(T_i), not by one fixed risk."""
    rng = np.random.default_rng(0)
    n = 40
    time, event = np.round(rng.exponential(5, n), 0) + 1, (rng.random(n) < 0.7).astype(int)
    grid = np.arange(0.0, time.max() + 1)
    surv = np.exp(-np.outer(rng.uniform(0.05, 0.3, n), grid) - np.outer(rng.uniform(0, 0.02, n), grid ** 2))
    def at(k, t):
        return surv[k, int(np.searchsorted(grid, t, side="right") - 1)]
    num = den = 0.0
    for i in np.flatnonzero(event):
        for j in range(n):
            if time[i] < time[j] or (time[i] == time[j] and not event[j]):
                den += 1
                num += 1.0 if at(i, time[i]) < at(j, time[i]) else 0.5 if at(i, time[i]) == at(j, time[i]) else 0.0
    assert antolini_c(time, event, surv, grid) == pytest.approx(num / den, abs=1e-12)


def test_calibration_observed_is_sksurv_kaplan_meier_by_decile(gbsg2, tmp_path):
    time, event, risk, (bt, h0) = gbsg2
    horizon = float(np.median(time[event == 1]))
    surv_h = cox_survival(risk, bt, h0, np.array([horizon]))[:, 0]
    tab = calibration_table(time, event, surv_h, horizon, groups=10)
    parts = np.array_split(np.argsort(surv_h, kind="stable"), 10)
    for k, rows in enumerate(parts):
        t_km, s_km = kaplan_meier_estimator(event[rows].astype(bool), time[rows])
        expected = s_km[np.searchsorted(t_km, horizon, side="right") - 1]
        assert tab["observed"][k] == pytest.approx(expected, abs=1e-12)
        assert tab["predicted"][k] == pytest.approx(surv_h[rows].mean())
    assert np.all(np.diff(tab["predicted"]) >= 0)                    # sorted from highest risk
    assert np.corrcoef(tab["predicted"], tab["observed"])[0, 1] > 0.8  # an in-sample Cox is calibrated
    path = plot_calibration({"cox": tab}, horizon, tmp_path / "calibration.png", title="gbsg2")
    assert path.is_file() and path.stat().st_size > 1000
