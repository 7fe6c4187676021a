"""report.html shows, per cell, the interval benchmarks/report.md shows, and the benchmark's studies."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmarks.report import metric_table
from pipeline.report import write_report


def _results() -> pd.DataFrame:
    """Two tasks: 'ok' (enough patients per fold) and 'rare' (2 patients of a class in a fold: † cell)."""
    rows = []
    for label, min_class in (("ok", 12), ("rare", 2)):
        for method, lo, hi in (("patient_bootstrap", 0.331, 0.479), ("fold_t", 0.0, 0.955)):
            for metric in ("auroc", "accuracy"):
                rows.append({"dataset": "hannover", "label": label, "model": "squeezenet1_1", "probe": "logistic",
                             "metric": metric, "mean": 0.405, "ci_low": lo, "ci_high": hi, "ci_method": method,
                             "min_class_patients_per_fold": min_class})
    return pd.DataFrame(rows)


def test_html_cells_match_report_md(tmp_path: Path) -> None:
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    results = _results()
    results.to_csv(bench / "results.csv", index=False)
    pd.DataFrame([{"train_dataset": "a", "test_dataset": "b", "label": "ok", "model": "m", "probe": "logistic",
                   "metric": "auroc", "value": 0.61, "ci_low": 0.52, "ci_high": 0.7, "n_train": 10, "n_test": 9}]
                 ).to_csv(bench / "transfer.csv", index=False)
    page = write_report(tmp_path, title="t", timings={}).read_text()
    md = metric_table(results, metric="auroc", probe="logistic")
    assert "[0.000, 0.955] †" in md and "0.405 [0.000, 0.955]</b> &dagger;" in page  # rare: fold interval
    assert "[0.331, 0.479]" in md and "0.405 [0.331, 0.479]" in page                # ok: bootstrap interval
    assert page.count("0.405 [0.331, 0.479]") == 3      # ok AUROC + both accuracies (accuracy keeps the bootstrap)
    assert "Cross-dataset transfer" in page and "0.610 [0.520, 0.700]" in page
