"""Intervals that say what they cover: labels in results.csv, the optional procedure interval (repeated CV),
and bootstrap seeds that do not depend on which tasks ran."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks.config import BenchmarksConfig
from benchmarks.procedure import corrected_repeated_interval
from benchmarks.run import run_benchmarks
from benchmarks.summary import CI_ESTIMATES


@pytest.fixture(scope="module")
def repeated_run(tmp_path_factory, bench_fixture_factory):
    root = tmp_path_factory.mktemp("intervals")
    cohort, store = bench_fixture_factory(root)
    cfg = BenchmarksConfig(seed=2, bootstrap={"n_boot": 200}, procedure_interval={"enabled": True, "repeats": 3})
    return cohort, store, run_benchmarks(cfg, cohort=cohort, store=store, out=root / "out")


def test_every_interval_is_labelled_and_the_procedure_interval_is_offered(repeated_run):
    _, _, paths = repeated_run
    res = pd.read_csv(paths["results"])
    assert set(res.ci_method) == {"patient_bootstrap", "fold_t", "repeated_cv"}
    assert (res.ci_estimates == res.ci_method.map(CI_ESTIMATES)).all()
    assert "held fixed" in CI_ESTIMATES["patient_bootstrap"] and "refit" in CI_ESTIMATES["repeated_cv"]
    rep = pd.read_csv(paths["repeated_folds"])
    assert sorted(rep.repeat.unique()) == [0, 1, 2]
    auroc = res[(res.metric == "auroc") & (res.ci_method == "repeated_cv")]
    assert (auroc.n_folds == 15).all()
    row = auroc.iloc[0]
    sub = rep[(rep.dataset == row.dataset) & (rep.label == row.label) & (rep.model == row.model)
              & (rep.probe == row.probe)]
    mean, _, lo, hi = corrected_repeated_interval(sub.auroc.to_numpy(), n_train=sub.n_train.mean(),
                                                  n_test=sub.n_test.mean(), level=0.95)
    assert (row["mean"], row.ci_low, row.ci_high) == pytest.approx((mean, lo, hi))
    # repeats use new folds: the same image sits in different folds across repeats
    assert rep.groupby(["dataset", "label", "model", "probe", "repeat"]).auroc.mean().unstack().nunique(axis=1).max() > 1
    assert "repeated-CV interval" in paths["report"].read_text()


def test_corrected_repeated_interval_reference():
    v = np.array([0.80, 0.82, 0.78, 0.85, 0.81, 0.79, 0.83, 0.80, 0.84, 0.82])
    mean, sd, lo, hi = corrected_repeated_interval(v, n_train=400, n_test=100, level=0.95)
    half = 2.2621571627409915 * np.sqrt(1 / 10 + 100 / 400) * v.std(ddof=1)   # t_{9, 0.975}
    assert (mean, lo, hi) == pytest.approx((v.mean(), v.mean() - half, v.mean() + half))


def test_bootstrap_interval_does_not_depend_on_the_other_tasks(repeated_run, tmp_path):
    cohort, store, paths = repeated_run
    alone = run_benchmarks(BenchmarksConfig(seed=2, bootstrap={"n_boot": 200}, datasets=["dsB"], labels=["Edema"],
                                            models=["small"]), cohort=cohort, store=store, out=tmp_path / "alone")
    key = ["dataset", "label", "model", "probe", "metric", "ci_method"]
    a = pd.read_csv(alone["results"]).query("ci_method == 'patient_bootstrap'").set_index(key)
    b = pd.read_csv(paths["results"]).set_index(key).loc[a.index]
    pd.testing.assert_series_equal(a.ci_low, b.ci_low)
    pd.testing.assert_series_equal(a.ci_high, b.ci_high)
