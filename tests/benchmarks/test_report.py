"""report.md tables: which interval each cell shows."""
from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.report import metric_table
from benchmarks.summary import MIN_CLASS_PATIENTS


def _results(metric: str) -> pd.DataFrame:
    """Rows of two tasks x one model: 'Many' has enough patients per test fold, 'Few' has 1 positive."""
    rows = []
    for label, min_class, boot, fold_t in (("Many", MIN_CLASS_PATIENTS, (0.70, 0.80), (0.66, 0.84)),
                                           ("Few", 1, (0.71, 0.77), (0.20, 1.00))):
        for method, (lo, hi) in (("patient_bootstrap", boot), ("fold_t", fold_t)):
            rows.append({"dataset": "d", "label": label, "model": "m", "probe": "logistic", "metric": metric,
                         "mean": 0.75, "ci_low": lo, "ci_high": hi, "ci_method": method,
                         "min_class_patients_per_fold": min_class})
    return pd.DataFrame(rows)


def _cells(metric: str) -> dict[str, str]:
    table = metric_table(_results(metric), metric=metric, probe="logistic")
    return {line.split(" | ")[1]: line.split(" | ")[2].removesuffix(" |") for line in table.splitlines()[2:]}


def test_auroc_cells_switch_to_fold_t_when_a_fold_has_too_few_patients_of_a_class():
    cells = _cells("auroc")
    assert cells["Many"] == "**0.750** [0.700, 0.800]"
    assert cells["Few"] == "**0.750** [0.200, 1.000] †"
    assert cells["*average*"].startswith("**0.750**")


@pytest.mark.parametrize("label", ["Many", "Few"])
def test_accuracy_cells_keep_the_bootstrap_interval(label):
    assert _cells("accuracy")[label] == {"Many": "**0.750** [0.700, 0.800]", "Few": "**0.750** [0.710, 0.770]"}[label]
