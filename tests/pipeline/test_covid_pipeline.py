"""The real-data pipeline config (configs/covid_cxr.yaml) end to end on ../shared/data, at reduced size.

Reduced: original images only (no augmentations), fewer bootstrap draws, folds and epochs. The run
works in a scratch folder next to a link to the shared folder, so the config's ``../shared/...``
paths resolve exactly as they do from the repository root.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from pipeline.run import STAGES_FILE, run_pipeline

pytestmark = pytest.mark.slow   # minutes: `make test-fast` leaves it out

REDUCED = {
    "embedders": {"augmentations": ["original"]},
    "benchmarks": {"bootstrap": {"n_boot": 200}, "label_noise": {"enabled": False}},
    "fusion": {"train": {"max_epochs": 40}, "survival": {"evaluation": {"folds": 3, "n_boot": 100}}},
    "clustering": {"stability": {"n_resamples": 5}, "atlas": {"application": False}},
}


@pytest.mark.real_data
def test_covid_config_runs_end_to_end(shared_data: Path, reduced_config, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "shared").symlink_to(shared_data.parent, target_is_directory=True)
    monkeypatch.chdir(work)
    config = reduced_config("covid_cxr", tmp_path / "covid.yaml", REDUCED)
    report = run_pipeline(config, out=work / "run")
    out = work / "run"
    assert all(v["status"] == "ran" for v in json.loads((out / STAGES_FILE).read_text()).values())
    manifest = pd.read_parquet(out / "cohorts" / "manifest.parquet")
    assert set(manifest["dataset"]) == {"covid-chestxray", "hannover"}
    results = pd.read_csv(out / "benchmarks" / "results.csv")
    assert {"COVID19", "ICU", "Death"} & set(results["label"])
    assert set(results["model"]) == {"radiomics", "thumbnail", "squeezenet1_1"}
    selection = json.loads((out / "benchmarks" / "selection.json").read_text())
    fusion = json.loads((out / "fusion" / "metrics.json").read_text())
    assert fusion["model"] == selection["model"]
    assert fusion["input_notes"]["patients_without_clinical_row"] >= 0
    survival = json.loads((out / "fusion" / "survival" / "metrics.json").read_text())
    assert {"death", "icu"} <= set(survival["endpoints"])
    subtypes = pd.read_csv(out / "clustering" / "subtypes.csv")
    assert subtypes["patient_id"].is_unique and subtypes["subtype"].notna().all()
    excluded = pd.read_csv(out / "clustering" / "excluded.csv")                  # patients with no input at all
    assert len(subtypes) + len(excluded) == fusion["n_patients"]                  # every patient accounted for
    assert len(excluded) == fusion["input_notes"]["patients_without_any_input"]
    assert not {"path", "image_id", "acquired_at"} & set(subtypes.columns)       # nothing identifying leaves
    page = report.read_text()
    assert "5. Candidate subtypes" in page and page.count("data:image/png;base64,") >= 10
    # the validity panel says what the data show: two sources whose subtypes still follow the source
    checks = json.loads((out / "clustering" / "validity.json").read_text())
    dataset = [c for c in checks if c["check"].endswith(": dataset")]
    assert dataset and {c["status"] for c in dataset} & {"warn", "fail"}, dataset
    assert all(c["message"] and c["status"] in {"pass", "warn", "fail"} for c in checks)
    assert {"resampling stability", "excluded patients", "model selection"} <= {c["check"] for c in checks}
    assert page.index("Validity panel") < page.index("5. Candidate subtypes")
    assert "Validity panel" in (out / "clustering" / "report.html").read_text()
    for text in (page, (out / "clustering" / "report.html").read_text()):      # no degenerate statistic as a number
        assert not re.search(r"\[0(\.0+)?, inf\]|e-0\d \[", text)
