"""Shipped configs, config errors, and the CLI end to end on the real covid data."""
import json
from pathlib import Path

import pandas as pd
import pytest

from cohorts.config import CohortsConfig
from cohorts.run import load_cohorts_config, main
from core.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "configs" / "cohorts").glob("*.yaml"))


def test_every_dataset_has_a_shipped_config():
    names = {p.stem for p in SHIPPED}
    assert {"nih", "chexpert", "mimic", "covid_cxr", "emory", "csv", "demo"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_configs_validate(path):
    cfg = load_config(path, CohortsConfig)
    assert cfg.views == ["PA", "AP", "AP Supine"] and cfg.uncertain == "ignore"


def test_unknown_key_and_wrong_type_name_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - kind: nih\n    table: x.csv\n    lables: {}\nsampling:\n  n_per_class: many\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad, CohortsConfig)
    msg = str(err.value)
    assert str(bad) in msg and "lables" in msg and "sampling.n_per_class" in msg


def test_composed_config_section_is_read(tmp_path):
    composed = tmp_path / "pipeline.yaml"
    composed.write_text("cohorts:\n  sources:\n    - kind: demo\n      n_patients: 5\nembedders: {}\n")
    assert load_cohorts_config(composed).sources[0].n_patients == 5


@pytest.mark.real_data
def test_cli_covid_cxr_real(shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)   # shipped configs use paths relative to the repository root
    if not (REPO.parent / "shared" / "data").is_dir():
        pytest.skip("shipped covid config expects ../shared/data next to the repository")
    assert main(["--config", "configs/cohorts/covid_cxr.yaml", "--out", str(tmp_path)]) == 0
    assert "716 images, 352 patients, 0 errors" in capsys.readouterr().out
    m = pd.read_parquet(tmp_path / "manifest.parquet")
    assert m["image_id"].is_unique and len(m) == 555 - 82 + 243
    clinical = pd.read_parquet(tmp_path / "clinical.parquet")
    assert clinical["patient_id"].is_unique and set(clinical["patient_id"]) == set(m["patient_id"])
    assert clinical["event"].sum() == 5 and clinical["time"].notna().sum() == 71   # Hannover only
    sample = pd.read_parquet(tmp_path / "sample.parquet")
    assert set(sample["label"]) == {"COVID19", "ICU", "Death"}
    assert not sample.duplicated(["dataset", "label", "patient_id"]).any()
    ov = json.loads((tmp_path / "overview" / "overview.json").read_text())
    assert set(ov["sample"]["shortfalls"]) == {f"{d}/{lab}" for d in ("covid-chestxray", "hannover")
                                               for lab in ("COVID19", "ICU", "Death")}
    assert ov["source_notes"]["0:covid-chestxray"]["hannover_duplicates_dropped_from_covid_chestxray"] == 82
    by_dataset = ov["clinical"]["missing_fraction_by_dataset"]
    assert by_dataset["hannover"]["age"] == 1.0 and by_dataset["covid-chestxray"]["age"] < 0.2   # redacted at Hannover
    assert by_dataset["hannover"]["crp"] < 0.3 < 0.9 < by_dataset["covid-chestxray"]["crp"]
    assert {"views.png", "images_per_patient_study.png", "images_per_year.png", "labels.png", "site.png",
            "modality.png", "clinical_missingness.png"} == set(ov["figures"])
    assert all((tmp_path / "overview" / f).stat().st_size > 10_000 for f in ov["figures"])


def test_demo_end_to_end(tmp_path):
    pytest.importorskip("cohorts.demo", reason="the demo generator (cohorts/demo.py) has not landed yet")
    cfg = CohortsConfig(sources=[{"kind": "demo", "n_patients": 12, "seed": 0, "image_size": 64}],
                        verify_images=True, sampling={"n_per_class": 5})
    from cohorts.run import run_cohorts

    written = run_cohorts(cfg, out=tmp_path)
    m = pd.read_parquet(written["manifest"])
    assert len(m) > 0 and (m["dataset"] == "demo").all() and len(pd.read_csv(written["errors"])) == 0
    clinical = pd.read_parquet(written["clinical"])
    assert {"time", "event", "true_subtype"} <= set(clinical.columns)
