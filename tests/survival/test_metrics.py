"""Survival metrics: lifelines sign convention, Uno's C vs brute force, IPCW Brier, Breslow vs lifelines."""
from __future__ import annotations

import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from lifelines.utils import concordance_index

from fusion.survival.metrics import (
    binary_c,
    bootstrap,
    breslow_cumulative_hazard,
    brier_scores,
    censoring_survival,
    cox_survival,
    harrell_c,
    integrated_brier,
    uno_c,
)


def _data(seed: int, n: int = 120):
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    t_event = rng.exponential(np.exp(-risk))
    t_cens = rng.exponential(1.5, n)
    time = np.round(np.minimum(t_event, t_cens), 1) + 0.1       # rounded: tied times
    return time, (t_event <= t_cens).astype(int), risk


def test_harrell_c_takes_risk_not_survival_time():
    time = np.arange(1.0, 11.0)
    event = np.ones(10)
    assert harrell_c(time, event, -time) == 1.0                 # earliest event = highest risk
    assert harrell_c(time, event, time) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_harrell_c_equals_lifelines_with_tied_times_and_risks(seed: int):
    time, event, risk = _data(seed)
    risk = np.round(risk, 1)                                   # tied risks count 1/2
    time[:10] = time[10:20]                                    # event/censored ties at the same time
    assert harrell_c(time, event, risk) == pytest.approx(concordance_index(time, -risk, event), abs=1e-12)
    assert np.isnan(harrell_c(time, np.zeros_like(event), risk))


def test_uno_c_equals_brute_force_with_ties():
    time, event, risk = _data(0)
    risk = np.round(risk, 1)                                   # tied risks count 1/2
    g = censoring_survival(time, event)
    tau = np.quantile(time, 0.8)
    num = den = 0.0
    for i in range(len(time)):
        if not event[i] or time[i] >= tau:
            continue
        w = 1.0 / g(np.array([time[i]]))[0] ** 2               # G(T_i), right-continuous
        for j in range(len(time)):
            if time[i] < time[j] or (time[i] == time[j] and not event[j]):   # censored at T_i: still at risk
                den += w
                num += w * (1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0)
    assert uno_c(time, event, risk, tau=tau) == pytest.approx(num / den, rel=1e-12)


def test_uno_equals_harrell_without_censoring():
    rng = np.random.default_rng(1)
    time, risk = rng.exponential(size=80), rng.normal(size=80)
    assert uno_c(time, np.ones(80), risk) == pytest.approx(harrell_c(time, np.ones(80), risk), rel=1e-12)


def test_censoring_km_removes_tied_events_first():
    """Events at t leave the censoring risk set before the censorings at t (the module's convention);
    lifelines' KM of the flipped indicator keeps them in it, so it agrees only without event/censoring ties."""
    time, event, _ = _data(2)
    grid = np.linspace(0.05, time.max(), 40)
    untied = time + np.where(event, 0.0, 0.01)                  # no censoring shares an event's time
    km = KaplanMeierFitter().fit(untied, 1 - event)
    np.testing.assert_allclose(censoring_survival(untied, event)(grid), km.survival_function_at_times(grid).to_numpy(),
                               rtol=1e-12)
    t, e = np.array([1.0, 1.0, 2.0, 3.0]), np.array([1, 0, 0, 1])
    g = censoring_survival(t, e)
    assert g(np.array([1.0]))[0] == pytest.approx(1 - 1 / 3)   # at t=1: 4 at risk, 1 event leaves first, 1 of 3 censored


def test_breslow_survival_matches_lifelines(rossi, rossi_fit, rossi_xte):
    x, t, e = rossi_xte
    risk = x @ rossi_fit.params_.to_numpy()
    times, h0 = breslow_cumulative_hazard(t, e, risk)
    grid = np.array([5.0, 20.0, 40.0, 52.0])
    ours = cox_survival(risk[:10], times, h0, grid)
    theirs = rossi_fit.predict_survival_function(rossi.iloc[:10], times=grid).to_numpy().T
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_brier_without_censoring_is_mean_squared_error():
    rng = np.random.default_rng(3)
    time = rng.exponential(size=60)
    surv = rng.uniform(size=(60, 5))
    grid = np.quantile(time, [0.1, 0.3, 0.5, 0.7, 0.9])
    expected = ((time[:, None] > grid[None, :]) - surv) ** 2
    np.testing.assert_allclose(brier_scores(time, np.ones(60), surv, grid), expected.mean(0), rtol=1e-12)
    assert integrated_brier(time, np.ones(60), surv, grid) == pytest.approx(
        np.trapezoid(expected.mean(0), grid) / (grid[-1] - grid[0]))


def test_bootstrap_is_seeded_and_paired():
    time, event, risk = _data(4)
    noisy = risk + np.random.default_rng(5).normal(0, 2, len(risk))
    def metric(rows, s):
        return harrell_c(time[rows], event[rows], s[rows])
    a = bootstrap(metric, len(time), {"good": risk, "noisy": noisy}, n_boot=50, seed=1, contrasts=[("good", "noisy")])
    b = bootstrap(metric, len(time), {"good": risk, "noisy": noisy}, n_boot=50, seed=1, contrasts=[("good", "noisy")])
    assert a == b
    assert a["good"].low <= a["good"].estimate <= a["good"].high
    assert a["good - noisy"].estimate == pytest.approx(a["good"].estimate - a["noisy"].estimate)
    assert a["good - noisy"].low > 0                              # the informative risk wins on every resample set


def test_binary_c_is_auroc():
    assert binary_c(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert np.isnan(binary_c(np.ones(3), np.arange(3.0)))
