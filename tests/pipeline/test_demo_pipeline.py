"""The whole product on the demo cohort at reduced size: killed mid-run, resumed, every output checked,
the planted truth recovered at the stage issues' thresholds.

One pipeline run serves every test here: it is started as a subprocess, SIGKILLed once the benchmark
stage has finished (while fusion trains), then rerun; the rerun must reuse the three finished stages
and complete the rest. A third run must reuse everything.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from PIL import Image

from core.config import read_yaml
from pipeline.run import STAGES_FILE, run_pipeline

pytestmark = pytest.mark.slow   # minutes: `make test-fast` leaves it out

REPO = Path(__file__).resolve().parents[2]
N_PATIENTS = 500        # the demo's size: fewer patients leave the planted survival signal within noise
REDUCED = {   # the demo's own configs, made smaller and faster
    "cohorts": {"sources": [{"kind": "demo", "n_patients": N_PATIENTS, "seed": 0, "image_size": 128}],
                "sampling": {"n_per_class": 40}},
    "embedders": {"augmentations": ["original", "bright", "rot+45"]},   # 128 px images, 3 of 6 augmentations
    "fusion": {"survival": {"evaluation": {"n_boot": 200}}},
    "clustering": {"stability": {"n_resamples": 6}, "atlas": {"application": False}},
}
STAGE_NAMES = ["cohorts", "embedders", "benchmarks", "fusion", "clustering"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, reduced_config) -> dict:
    root = tmp_path_factory.mktemp("demo_pipeline")
    config, out = reduced_config("demo", root / "demo.yaml", REDUCED), root / "run"
    cmd = [sys.executable, "-m", "pipeline.run", "--config", str(config), "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 600
    try:
        while not (out / "benchmarks" / ".stage.json").is_file():
            assert proc.poll() is None, "the pipeline ended before the benchmark stage finished"
            assert time.monotonic() < deadline, "benchmark stage not finished after 10 minutes"
            time.sleep(0.2)
        time.sleep(3)                                   # inside the fusion stage now
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_during = json.loads((out / STAGES_FILE).read_text())
    report = run_pipeline(config, out=out)
    resumed = json.loads((out / STAGES_FILE).read_text())
    run_pipeline(config, out=out)
    again = json.loads((out / STAGES_FILE).read_text())
    return {"out": out, "report": report, "killed_during": killed_during, "resumed": resumed, "again": again}


def test_interrupted_run_resumes_without_redoing_finished_stages(demo_run: dict) -> None:
    assert set(demo_run["killed_during"]) == {"cohorts", "embedders", "benchmarks"}
    status = {name: demo_run["resumed"][name]["status"] for name in STAGE_NAMES}
    assert status == {"cohorts": "cached", "embedders": "cached", "benchmarks": "cached", "fusion": "ran",
                      "clustering": "ran"}
    assert all(demo_run["again"][name]["status"] == "cached" for name in STAGE_NAMES)


def test_every_output_exists_and_parses(demo_run: dict) -> None:
    out = demo_run["out"]
    manifest = pd.read_parquet(out / "cohorts" / "manifest.parquet")
    clinical = pd.read_parquet(out / "cohorts" / "clinical.parquet")
    assert manifest["image_id"].is_unique and clinical["patient_id"].nunique() == N_PATIENTS
    assert len(pd.read_parquet(out / "cohorts" / "sample.parquet")) == 4 * 80
    root = zarr.open_group(str(out / "embedders" / "embeddings.zarr"), mode="r")
    for model in ("radiomics", "thumbnail"):
        for aug in REDUCED["embedders"]["augmentations"]:
            assert np.asarray(root[f"{model}/{aug}/done"][:]).all()
    bench = out / "benchmarks"
    oof = pd.read_parquet(bench / "oof.parquet")
    assert set(oof["model"]) == {"radiomics", "thumbnail"} and oof["y_score"].between(0, 1).all()
    assert {"dataset", "label", "model", "metric", "mean", "ci_low", "ci_high"} <= set(pd.read_csv(bench / "results.csv"))
    selection = json.loads((bench / "selection.json").read_text())
    assert selection["model"] in {"radiomics", "thumbnail"} and selection["reason"]
    fusion = json.loads((out / "fusion" / "metrics.json").read_text())
    assert fusion["model"] == selection["model"]                     # fusion uses the benchmark's pick
    latents = zarr.open_group(str(out / "fusion" / "latents.zarr"), mode="r")
    assert latents["latent"].shape == (N_PATIENTS, fusion_latent_dim(out))
    survival = json.loads((out / "fusion" / "survival" / "metrics.json").read_text())
    assert survival["cxr_model"] == selection["model"]
    subtypes = pd.read_csv(out / "clustering" / "subtypes.csv")
    assert len(subtypes) == N_PATIENTS and subtypes["patient_id"].is_unique
    assert set(subtypes.columns) >= {"patient_id", "subtype", "confidence", "umap_1", "umap_2"}
    pd.testing.assert_frame_equal(pd.read_parquet(out / "clustering" / "subtypes.parquet").reset_index(drop=True)
                                  .convert_dtypes(), subtypes.convert_dtypes(), check_dtype=False)   # <NA> both
    for name in ("data_dictionary.csv", "table1.csv", "provenance.json", "report.html", "atlas/atlas.parquet"):
        assert (out / "clustering" / name).is_file(), name
    page = demo_run["report"].read_text()
    for path in [demo_run["report"], *(out / "clustering").rglob("*.json"), *(out / "clustering").rglob("*.html"),
                 *(out / "clustering").rglob("*.csv")]:             # no machine path in any report or record
        assert str(out.resolve()) not in path.read_text(errors="replace"), path
    for heading in ("1. Cohort", "2. Benchmark", "3. Fusion", "4. Survival head", "5. Candidate subtypes"):
        assert heading in page
    assert page.count("data:image/png;base64,") >= 15


def test_run_report_renders_with_every_figure(demo_run: dict, render_html, tmp_path: Path) -> None:
    page = demo_run["report"]
    n_figs = page.read_text().count("<img ")
    dom = render_html(page, tmp_path / "report.png")
    assert f'data-figures-loaded="{n_figs}"' in dom and f'data-figures="{n_figs}"' in dom
    shot = np.asarray(Image.open(tmp_path / "report.png").convert("RGB"))
    assert shot.shape[:2] == (2000, 1200) and len(np.unique(shot.reshape(-1, 3), axis=0)) > 200


def fusion_latent_dim(out: Path) -> int:
    return int(read_yaml(out / "fusion" / "config.resolved.yaml")["model"]["latent_dim"])


def test_planted_truth_is_recovered(demo_run: dict) -> None:
    out = demo_run["out"]
    results = pd.read_csv(out / "benchmarks" / "results.csv")
    auroc = results[(results["metric"] == "auroc") & (results["ci_method"] == "patient_bootstrap")]
    best = auroc.groupby("label")["mean"].max()
    assert (best > 0.75).all(), best                                  # every planted finding is detected
    assert (auroc.groupby("label")["ci_low"].max() > 0.6).all()


def test_fusion_latent_beats_each_modality_alone(demo_run: dict) -> None:
    probes = json.loads((demo_run["out"] / "fusion" / "metrics.json").read_text())["probes"]["true_subtype"]
    for probe in ("knn", "logistic"):
        joint = probes["joint"][probe]["score"]
        alone = {name: probes[name][probe]["score"] for name in ("clinical_only_vae", "cxr_only_vae")}
        assert joint > 0.7 and all(joint > score + 0.05 for score in alone.values()), (probe, joint, alone)


def test_survival_head_beats_clinical_cox_near_the_oracle(demo_run: dict) -> None:
    survival = json.loads((demo_run["out"] / "fusion" / "survival" / "metrics.json").read_text())
    c = {k: v["estimate"] for k, v in survival["endpoints"]["death"]["metrics"]["c_index"].items()}
    assert c["head"] > c["clinical_cox"] and c["head"] > c["cxr_pca_cox"], c
    assert c["oracle"] - c["head"] < 0.1, c


def test_subtypes_recover_the_planted_truth_and_separate_survival(demo_run: dict) -> None:
    metrics = json.loads((demo_run["out"] / "clustering" / "metrics.json").read_text())
    assert metrics["truth_ari"]["true_subtype"]["chosen"] > 0.3, metrics["truth_ari"]
    assert metrics["truth"]["true_subtype"]["n_subtypes"] == metrics["n_subtypes"] >= 2
    checks = json.loads((demo_run["out"] / "clustering" / "validity.json").read_text())
    assert {"resampling stability", "Kaplan-Meier groups", "model selection"} <= {c["check"] for c in checks}
    assert metrics["survival"]["logrank_p"] < 0.001, metrics["survival"]["logrank_p"]
