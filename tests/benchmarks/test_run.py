"""End to end: the CLI on the tiny contract-format fixture, and what its outputs must satisfy."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from benchmarks.config import BenchmarksConfig, load_benchmarks_config
from benchmarks.run import main, run_benchmarks
from core.config import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_out(tmp_path_factory, bench_fixture_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("bench")
    cohort, store = bench_fixture_factory(root)
    cfg = {"seed": 1, "probes": ["logistic", "lightgbm"], "bootstrap": {"n_boot": 200},
           "lightgbm": {"n_estimators": 30, "n_jobs": 1},
           "transfer": {"enabled": True}, "label_noise": {"enabled": True, "fractions": [0.0, 0.45]}}
    (root / "bm.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["--config", str(root / "bm.yaml"), "--cohort", str(cohort), "--store", str(store),
                 "--out", str(root / "out"), "--log-level", "WARNING"]) == 0
    return cohort, store, root / "out"


def test_outputs_and_columns(run_out):
    _, _, out = run_out
    for name in ("results.csv", "oof.parquet", "comparisons.csv", "selection.json", "report.md", "folds.csv",
                 "missing.csv", "transfer.csv", "label_noise.csv", "config.resolved.yaml", "run.json"):
        assert (out / name).is_file(), name
    res = pd.read_csv(out / "results.csv")
    assert {"dataset", "label", "model", "probe", "metric", "mean", "ci_low", "ci_high", "ci_method", "n_patients",
            "n_images"} <= set(res.columns)
    assert set(res.ci_method) == {"patient_bootstrap", "fold_t"}
    assert set(res.metric) == {"auroc", "accuracy", "balanced_accuracy", "f1", "sensitivity", "specificity", "auprc"}
    oof = pd.read_parquet(out / "oof.parquet")
    assert {"dataset", "label", "model", "fold", "image_id", "patient_id", "y_true", "y_score"} <= set(oof.columns)
    sel = json.loads((out / "selection.json").read_text())
    assert {"model", "augmentation", "pooling", "reason", "mean_auroc"} <= set(sel)
    report = (out / "report.md").read_text()
    assert "## Accuracy (logistic probe)" in report and "## AUROC (logistic probe)" in report and "**" in report
    assert sorted(p.name for p in (out / "figures").glob("roc_*.png")) == [
        "roc_dsA_Edema.png", "roc_dsA_Effusion.png", "roc_dsB_Edema.png", "roc_dsB_Effusion.png"]
    assert (out / "figures" / "label_noise.png").is_file()


def test_planted_signal_found_and_noise_hurts(run_out):
    _, _, out = run_out
    res = pd.read_csv(out / "results.csv")
    auroc = res[(res.metric == "auroc") & (res.ci_method == "patient_bootstrap") & (res.probe == "logistic")]
    assert (auroc["mean"] > 0.7).all()
    assert (auroc.ci_low <= auroc["mean"]).all() and (auroc["mean"] <= auroc.ci_high).all()
    noise = pd.read_csv(out / "label_noise.csv")
    wide = noise.pivot_table(index=["dataset", "label", "model"], columns="fraction", values="auroc_mean")
    assert (wide[0.0] > wide[0.45]).mean() >= 0.75
    transfer = pd.read_csv(out / "transfer.csv")
    assert set(zip(transfer.train_dataset, transfer.test_dataset)) == {("dsA", "dsB"), ("dsB", "dsA")}


def test_fold_auroc_recomputes_from_saved_oof(run_out):
    _, _, out = run_out
    oof = pd.read_parquet(out / "oof.parquet")
    folds = pd.read_csv(out / "folds.csv")
    assert len(folds) == 4 * 2 * 2 * 5
    for r in folds.itertuples():
        rows = oof[(oof.dataset == r.dataset) & (oof.label == r.label) & (oof.model == r.model)
                   & (oof.probe == r.probe) & (oof.fold == r.fold)]
        assert len(rows) == r.n_test
        assert r.auroc == pytest.approx(roc_auc_score(rows.y_true, rows.y_score), abs=1e-12)


def test_each_sampled_image_tested_once_missing_reported(run_out):
    cohort, _, out = run_out
    sample = pd.read_parquet(cohort / "sample.parquet")
    oof = pd.read_parquet(out / "oof.parquet")
    missing = pd.read_csv(out / "missing.csv")
    assert len(missing) == 2 and set(missing.model) == {"tokens"}      # 1 image x 2 labels, not done in store
    for (ds, lab, _model, _probe), rows in oof.groupby(["dataset", "label", "model", "probe"]):
        assert rows.image_id.is_unique
        expected = set(sample[(sample.dataset == ds) & (sample.label == lab)].image_id) - set(missing.image_id)
        assert set(rows.image_id) == expected
        # patients never split across folds
        assert (rows.groupby("patient_id").fold.nunique() == 1).all()
    res = pd.read_csv(out / "results.csv")
    assert res.groupby(["dataset", "label"]).n_images.first().sum() == len(sample) - len(missing)


def test_deterministic_given_seed(run_out, tmp_path):
    cohort, store, out = run_out
    cfg = load_benchmarks_config(out / "config.resolved.yaml").model_copy(
        update={"probes": ["logistic"], "transfer": BenchmarksConfig().transfer,
                "label_noise": BenchmarksConfig().label_noise})
    paths = run_benchmarks(cfg, cohort=cohort, store=store, out=tmp_path / "again")
    a = pd.read_parquet(out / "oof.parquet").query("probe == 'logistic'").reset_index(drop=True)
    b = pd.read_parquet(paths["oof"])
    pd.testing.assert_frame_equal(a, b)


def test_bad_config_is_a_clear_error(tmp_path, run_out, capsys):
    (tmp_path / "bad.yaml").write_text("n_folds: 5\nprobe: [logistic]\n")
    cohort, store, _ = run_out
    assert main(["--config", str(tmp_path / "bad.yaml"), "--cohort", str(cohort), "--store", str(store),
                 "--out", str(tmp_path / "o")]) == 2       # the CLI shell: one error line, exit 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "unknown key 'probe'" in err[0]
    (tmp_path / "pipe.yaml").write_text("benchmarks:\n  n_folds: 1\n")
    with pytest.raises(ConfigError, match="n_folds"):
        load_benchmarks_config(tmp_path / "pipe.yaml")


def test_shipped_configs_validate():
    for path in sorted((REPO / "configs" / "benchmarks").glob("*.yaml")):
        assert isinstance(load_benchmarks_config(path), BenchmarksConfig)
    assert np.isfinite(BenchmarksConfig().logistic.C)


def test_unsplittable_task_is_reported_not_dropped(tmp_path, bench_fixture_factory):
    cohort, store = bench_fixture_factory(tmp_path)
    sample = pd.read_parquet(cohort / "sample.parquet")
    rare = sample[sample.label == "Edema"].assign(label="Rare")
    rare["y"] = (rare.patient_id.isin(["dsA_p0", "dsA_p1"])).astype(int)   # 2 positive patients < 5 folds
    pd.concat([sample, rare]).to_parquet(cohort / "sample.parquet", index=False)
    cfg = BenchmarksConfig(labels=["Effusion", "Rare"], bootstrap={"n_boot": 100})
    paths = run_benchmarks(cfg, cohort=cohort, store=store, out=tmp_path / "out")
    skipped = pd.read_csv(paths["skipped"])
    assert set(zip(skipped.dataset, skipped.label)) == {("dsA", "Rare"), ("dsB", "Rare")}
    assert "fewer than n_folds=5" in skipped.reason.iloc[0]
    assert "## (dataset, label) pairs not benchmarked" in paths["report"].read_text()
    assert set(pd.read_csv(paths["results"]).label) == {"Effusion"}


def test_grid_on_dask_equals_the_serial_run(run_out, tmp_path) -> None:
    """--workers 2 runs the fit-sets on a Dask LocalCluster and writes the same results as the serial run."""
    cohort, store, out = run_out
    assert main(["--config", str(out.parent / "bm.yaml"), "--cohort", str(cohort), "--store", str(store),
                 "--out", str(tmp_path / "dask"), "--workers", "2", "--log-level", "WARNING"]) == 0
    for name in ("results.csv", "folds.csv", "comparisons.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "dask" / name), pd.read_csv(out / name), obj=name)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "dask" / "oof.parquet"), pd.read_parquet(out / "oof.parquet"))
    assert json.loads((tmp_path / "dask" / "selection.json").read_text()) == json.loads((out / "selection.json").read_text())
