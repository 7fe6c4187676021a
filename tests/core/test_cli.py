"""One error shape for every CLI: a user error prints one ``error: ...`` line and exits 2 (traceback only with
``--debug``), nothing half written is left behind, and a source without a usable image stops the run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from benchmarks.run import main as benchmarks_main
from clustering.run import main as clustering_main
from cohorts.run import main as cohorts_main
from embedders.run import main as embedders_main
from fusion.run import main as fusion_main
from pipeline.run import main as pipeline_main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def csv_cohort(tmp_path: Path) -> Path:
    """A csv-source cohorts config over 4 small PNGs (2 patients)."""
    img = tmp_path / "img"
    img.mkdir()
    rows = []
    for i in range(4):
        Image.fromarray(np.full((32, 32), 40 * i, np.uint8)).save(img / f"{i}.png")
        rows.append({"patient_id": f"p{i // 2}", "path": f"img/{i}.png", "view": "PA", "Edema": i % 2})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    cfg = {"sources": [{"kind": "csv", "manifest": str(tmp_path / "manifest.csv"), "dataset": "tiny",
                        "columns": {"patient_id": "patient_id", "path": "path", "view": "view"},
                        "labels": {"Edema": "Edema"}}], "views": None, "overview": False}
    path = tmp_path / "cohorts.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _one_error_line(capsys: pytest.CaptureFixture, code: int, *needles: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


def test_missing_config_and_bad_key(tmp_path: Path, capsys) -> None:
    _one_error_line(capsys, pipeline_main(["--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "r")]),
                    "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [{kind: demo, n_patientz: 3}]\n")
    _one_error_line(capsys, cohorts_main(["--config", str(bad), "--out", str(tmp_path / "c")]), "n_patientz")


def test_mistyped_data_path_in_the_pipeline(csv_cohort: Path, tmp_path: Path, capsys) -> None:
    cfg = yaml.safe_load(csv_cohort.read_text())
    cfg["sources"][0]["manifest"] = str(tmp_path / "typo" / "manifest.csv")
    pipe = tmp_path / "pipe.yaml"
    pipe.write_text(yaml.safe_dump({"name": "t", "cohorts": cfg, "embedders": {"models": [{"name": "thumbnail"}]},
                                    "clustering": {}}))
    _one_error_line(capsys, pipeline_main(["--config", str(pipe), "--out", str(tmp_path / "run")]), "typo")


def test_source_without_usable_images_stops_unless_allowed(csv_cohort: Path, tmp_path: Path, capsys) -> None:
    for png in (tmp_path / "img").glob("*.png"):
        png.unlink()
    out = tmp_path / "cohort"
    line = _one_error_line(capsys, cohorts_main(["--config", str(csv_cohort), "--out", str(out)]),
                           "none is usable", "allow_empty_sources")
    assert "errors.csv" in line and not (out / "manifest.parquet").exists()
    cfg = yaml.safe_load(csv_cohort.read_text())
    cfg["allow_empty_sources"] = True
    csv_cohort.write_text(yaml.safe_dump(cfg))
    assert cohorts_main(["--config", str(csv_cohort), "--out", str(out)]) == 0     # goes on, as configured
    assert len(pd.read_parquet(out / "manifest.parquet")) == 0 and len(pd.read_csv(out / "errors.csv")) == 4


def test_unknown_model_and_missing_weights_leave_no_store(csv_cohort: Path, tmp_path: Path, capsys,
                                                          monkeypatch) -> None:
    assert cohorts_main(["--config", str(csv_cohort), "--out", str(tmp_path / "c")]) == 0
    capsys.readouterr()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))          # no cached weights
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb = REPO / "configs" / "embedders" / "baselines.yaml"
    manifest = tmp_path / "c" / "manifest.parquet"
    for model, needle in (("no-such-model", "unknown embedder"), ("rad-dino", "rad-dino")):
        store = tmp_path / f"{model}.zarr"
        _one_error_line(capsys, embedders_main(["--config", str(emb), "--manifest", str(manifest), "--store",
                                                str(store), "--model", model]), needle)
        assert not store.exists() and not Path(f"{store}.errors.csv").exists()


def test_wrong_store_and_wrong_inputs(csv_cohort: Path, tmp_path: Path, capsys) -> None:
    not_a_store = tmp_path / "store.zarr"
    not_a_store.mkdir()
    (not_a_store / "x.txt").write_text("x")
    bench = REPO / "configs" / "benchmarks" / "benchmark.yaml"
    assert cohorts_main(["--config", str(csv_cohort), "--out", str(tmp_path / "c")]) == 0
    capsys.readouterr()
    _one_error_line(capsys, benchmarks_main(["--config", str(bench), "--cohort", str(tmp_path / "c"), "--store",
                                             str(not_a_store), "--out", str(tmp_path / "b")]))
    _one_error_line(capsys, fusion_main(["--config", str(REPO / "configs/fusion/demo.yaml"), "--cohort",
                                         str(tmp_path / "c"), "--store", str(not_a_store), "--out", str(tmp_path / "f")]))
    _one_error_line(capsys, clustering_main(["--config", str(REPO / "configs/clustering/demo.yaml"), "--cohort",
                                             str(tmp_path / "nowhere"), "--latents", str(tmp_path / "l.zarr"),
                                             "--out", str(tmp_path / "k")]), "nowhere")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        pipeline_main(["--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "r"), "--debug"])


def test_every_cli_helps_alike() -> None:
    for module in ("cohorts.run", "embedders.run", "benchmarks.run", "fusion.run", "fusion.survival",
                   "clustering.run", "pipeline.run"):
        proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=REPO,
                              timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"usage: python -m {module}"), proc.stdout[:80]
        assert "--debug" in proc.stdout and "--config CONFIG" in proc.stdout
