"""Shortcut probes, view strata, leave-one-source-out and data-efficiency curves on a planted confounder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.config import BenchmarksConfig
from benchmarks.efficiency import subset_patients
from benchmarks.run import run_benchmarks
from cohorts.folder import write_cohort_folder

from .conftest import write_store


def _confounded(root: Path, n: int = 160, seed: int = 0) -> tuple[Path, Path]:
    """One image per patient. Model ``view_only`` encodes only the view; the finding follows the view in 85 % of
    patients. Model ``finding`` encodes the finding itself. Two sources, sex and age at random."""
    rng = np.random.default_rng(seed)
    ap = rng.random(n) < 0.5
    y = np.where(rng.random(n) < 0.85, ap, ~ap).astype(int)
    ids = np.array([f"i{k:03d}" for k in range(n)])
    man = pd.DataFrame({"image_id": ids, "patient_id": [f"p{k:03d}" for k in range(n)], "study_id": ids,
                        "path": None, "view": np.where(ap, "AP", "PA"), "dataset": "d",
                        "sex": rng.choice(["M", "F"], n), "age": rng.integers(20, 90, n).astype(float),
                        "source": np.where(rng.random(n) < 0.5, "s1", "s2"),
                        "label_F": pd.array(y, dtype="Int8"),
                        "acquired_at": pd.NaT, "offset_days": np.nan})
    man.loc[:3, "sex"] = None                                   # unknown sex: left out of that probe only
    cohort = root / "cohort"
    cohort.mkdir(parents=True)
    write_cohort_folder(cohort, man, sample=man.assign(label="F", y=y))
    d = rng.standard_normal(8)
    models = {"view_only": {"original": 2.0 * np.outer(ap, d) + rng.standard_normal((n, 8))},
              "finding": {"original": 1.2 * np.outer(y, d) + rng.standard_normal((n, 8))}}
    return cohort, write_store(root / "store.zarr", ids, models)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shortcuts")
    cohort, store = _confounded(root)
    cfg = BenchmarksConfig(bootstrap={"n_boot": 200}, shortcuts={"enabled": True},
                           efficiency={"enabled": True, "fractions": [0.25, 1.0], "repeats": 2})
    run_benchmarks(cfg, cohort=cohort, store=store, out=root / "bench")
    return root / "bench"


def test_confounder_probes_find_the_view(run: Path) -> None:
    probes = pd.read_csv(run / "shortcuts.csv")
    auroc = probes[(probes.metric == "auroc") & (probes.ci_method == "patient_bootstrap")].set_index(["model", "label"])
    assert auroc.loc[("view_only", "view_AP"), "mean"] > 0.85
    assert abs(auroc.loc[("view_only", "sex_M"), "mean"] - 0.5) < 0.15
    assert set(auroc.index.get_level_values("label")) == {"view_AP", "sex_M", "age_over_60", "source"}


def test_finding_no_better_than_its_confounder_is_said_in_words(run: Path) -> None:
    alone = pd.read_csv(run / "confounder_alone.csv").set_index("confounder")
    assert alone.loc["view_AP", "auroc_alone"] == pytest.approx(0.85, abs=0.07)
    report = (run / "report.md").read_text()
    assert "d/F: view_only (logistic) AUROC" in report and "no better than view_AP alone" in report
    strata = pd.read_csv(run / "view_strata.csv").set_index(["model", "view"])
    # within a view, the view-only embedding knows nothing of the finding; the finding embedding still does
    assert abs(strata.loc[("view_only", "AP"), "auroc"] - 0.5) < 0.2
    assert strata.loc[("finding", "PA"), "auroc"] > 0.7


def test_leave_one_source_out(run: Path) -> None:
    loso = pd.read_csv(run / "loso.csv")
    assert sorted(loso["held_out"].unique()) == ["s1", "s2"]
    assert set(loso["model"]) == {"view_only", "finding"}
    assert (loso["ci_low"] <= loso["auroc"]).all() and (loso["auroc"] <= loso["ci_high"]).all()
    assert (loso.loc[loso.model == "finding", "auroc"] > 0.7).all()


def test_efficiency_at_full_data_equals_the_benchmark(run: Path) -> None:
    curves = pd.read_csv(run / "efficiency.csv")
    results = pd.read_csv(run / "results.csv")
    main = results[(results.metric == "auroc") & (results.ci_method == "patient_bootstrap")].set_index("model")
    full = curves[curves.fraction == 1.0].set_index("model")
    for model in ("view_only", "finding"):
        assert full.loc[model, "auroc_mean"] == pytest.approx(main.loc[model, "mean"], abs=1e-12)
    quarter = curves[curves.fraction == 0.25].set_index("model")
    assert (quarter["n_train_patients"] < 0.3 * full["n_train_patients"]).all()
    assert (quarter["repeats"] == 2).all() and (quarter["sd_repeats"] >= 0).all()
    assert "## Data efficiency" in (run / "report.md").read_text()
    assert (run / "figures" / "efficiency_d_F.png").is_file()


def test_subset_patients_keeps_both_classes() -> None:
    patients = np.repeat(np.arange(20), 2)
    y = (patients == 0).astype(int)                       # one positive patient among 20
    rows = subset_patients(np.arange(40), patients, y, fraction=0.25, rng=np.random.default_rng(0), tries=500)
    assert set(y[rows]) == {0, 1} and len(np.unique(patients[rows])) == 5
    with pytest.raises(ValueError, match="both classes"):
        subset_patients(np.arange(40), patients, np.zeros(40, int), fraction=0.25, rng=np.random.default_rng(0))
