"""configs/nih_sample.yaml on the real NIH images, reduced (10 images per class, original images only, one
repeat of two data-efficiency shares): cohort -> embedders (radiomics, the JSRT UNet, lung-zone radiomics) ->
benchmark with shortcut checks, leave-one-folder-out and data efficiency -> subtypes of the selected model, whose
Table 1 and export carry the NIH clinical table (sex, age)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.config import BenchmarksConfig
from benchmarks.run import run_benchmarks
from benchmarks.selection import read_selection
from clustering.run import run_clustering
from cohorts.run import run_cohorts
from embedders.run import run_embedders
from pipeline.config import load_pipeline_config

pytestmark = [pytest.mark.real_data, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def nih_run(shared_data: Path, tmp_path_factory) -> Path:
    if not (shared_data / "nih-chestxray14-1000" / "images").is_dir():
        pytest.skip("../shared/data/nih-chestxray14-1000 not found")
    out = tmp_path_factory.mktemp("nih")
    _, sections = load_pipeline_config(REPO / "configs" / "nih_sample.yaml")   # the full protocol, validated
    c = sections["cohorts"]
    c = c.model_copy(update={"sampling": c.sampling.model_copy(update={"n_per_class": 12, "min_per_class": 12})})  # Opacity: fewer than 12 in a class
    run_cohorts(c, out=out / "cohort")
    models = [m if m.name != "radiomics-lung" else m.model_copy(update={"options": {"mask_size": 256}})
              for m in sections["embedders"].models if m.name in ("radiomics", "unet-jsrt", "radiomics-lung")]
    e = sections["embedders"].model_copy(update={"models": models, "augmentations": ["original"]})
    run_embedders(e, manifest=out / "cohort" / "manifest.parquet", store=out / "store.zarr", out=out / "embedders")
    b = sections["benchmarks"].model_copy(update={
        "probes": ["logistic"], "bootstrap": BenchmarksConfig().bootstrap.model_copy(update={"n_boot": 200}),
        "efficiency": sections["benchmarks"].efficiency.model_copy(update={"fractions": [0.5, 1.0], "repeats": 1})})
    run_benchmarks(b, cohort=out / "cohort", store=out / "store.zarr", out=out / "bench")
    sel = read_selection(out / "bench" / "selection.json")
    k = sections["clustering"]
    k = k.model_copy(update={"leiden": k.leiden.model_copy(update={"n_seeds": 2, "n_subsamples": 2}),
                             "stability": k.stability.model_copy(update={"n_resamples": 3})})
    run_clustering(k, cohort=out / "cohort", store=out / "store.zarr", model=sel.model, pooling=sel.pooling or "mean",
                   benchmark=out / "bench", out=out / "clustering")
    return out


def test_sample_has_both_negative_definitions_and_opacity_is_reported_too_small(nih_run: Path) -> None:
    sample = pd.read_parquet(nih_run / "cohort" / "sample.parquet")
    assert set(sample["label"]) == {f"{f}_vs_{n}" for f in ("Atelectasis", "Edema", "Effusion")
                                    for n in ("Pneumonia", "NoFinding")}
    assert (sample.groupby(["label", "y"]).size() == 12).all()
    overview = json.loads((nih_run / "cohort" / "overview" / "overview.json").read_text())
    assert "nih/Opacity_vs_Pneumonia" in json.dumps(overview) and "too_small" in json.dumps(overview)


def test_benchmark_shortcuts_loso_and_efficiency(nih_run: Path) -> None:
    bench = nih_run / "bench"
    results = pd.read_csv(bench / "results.csv")
    assert set(results["model"]) == {"radiomics", "unet-jsrt", "radiomics-lung"}
    assert results["label"].nunique() == 6
    shortcuts = pd.read_csv(bench / "shortcuts.csv")
    assert {"view_AP", "source"} <= set(shortcuts["label"])
    loso = pd.read_csv(bench / "loso.csv")
    # the No_findings folder holds no finding positive: held out, it cannot be scored
    assert loso.loc[loso.held_out == "No_findings", "note"].str.startswith("not estimable").all()
    assert len(pd.read_csv(bench / "efficiency.csv")) == 6 * 3 * 2
    checks = pd.read_csv(nih_run / "embedders" / "lung_mask_checks.csv")
    assert checks["placement_ok"].sum() >= len(checks) - 1
    assert "## Shortcuts and confounders" in (bench / "report.md").read_text()


def test_subtypes_describe_and_export_the_nih_clinical_table(nih_run: Path) -> None:
    table1 = pd.read_csv(nih_run / "clustering" / "table1.csv")
    assert {"age (years)", "sex"} <= set(table1["variable"])
    exported = pd.read_csv(nih_run / "clustering" / "export" / "subtypes.csv")
    assert {"age", "sex"} <= set(exported.columns) and exported["sex"].isin(["M", "F"]).all()
