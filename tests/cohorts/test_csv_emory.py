"""Generic CSV manifest, Emory-style split tables, demo wiring and bad files, on tables written here."""
import json
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from cohorts.clinical import ClinicalError
from cohorts.config import CohortsConfig
from cohorts.run import run_cohorts

from .conftest import write_png

SCHEMA = {"columns": {
    "patient_id": {"type": "categorical", "role": "id", "description": "patient"},
    "age": {"type": "continuous", "role": "feature", "unit": "years", "min": 0, "max": 120, "description": "age"},
    "sex": {"type": "categorical", "role": "feature", "categories": ["M", "F"], "description": "sex"},
    "time": {"type": "continuous", "role": "outcome", "unit": "days", "min": 0, "description": "time"},
    "event": {"type": "binary", "role": "outcome", "description": "death"},
}}


def _csv_cohort(root: Path, *, n: int = 12) -> Path:
    rows = []
    for i in range(n):
        rel = f"img/{i:03d}.png"
        if i == 3:
            (root / "img").mkdir(parents=True, exist_ok=True)
            (root / rel).write_text("this is not an image")        # undecodable
        elif i != 5:                                                 # 005.png is missing
            write_png(root / rel, seed=i)
        rows.append({"image_id": f"{i:03d}", "patient_id": f"P{i // 2}", "study_id": f"S{i}", "path": rel,
                     "view": "LL" if i == 7 else "PA", "offset_days": i % 2, "site": "A" if i < 6 else "B",
                     "Effusion": [1, 0, -1, None][i % 4], "Edema": i % 2})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    pd.DataFrame({"patient_id": [f"P{p}" for p in range(n // 2)], "age": [40 + p for p in range(n // 2)],
                  "sex": ["M", "F"] * (n // 4), "time": [10.0] * (n // 2), "event": [0, 1] * (n // 4)}
                 ).to_csv(root / "clinical.csv", index=False)
    (root / "clinical_schema.json").write_text(json.dumps(SCHEMA))
    return root


def _csv_cfg(root: Path, **kw) -> CohortsConfig:
    source = {"kind": "csv", "manifest": root / "manifest.csv", "dataset": "mine",
              "labels": {"Effusion": "Effusion", "Edema": "Edema"}, "extra_columns": ["site"],
              "clinical": root / "clinical.csv", "clinical_schema": root / "clinical_schema.json"}
    return CohortsConfig(sources=[source], **kw)


def test_csv_cohort_errors_views_clinical_overview(tmp_path):
    root = _csv_cohort(tmp_path / "raw")
    written = run_cohorts(_csv_cfg(root, verify_images=True), out=tmp_path / "out")
    m = pd.read_parquet(written["manifest"])
    errors = pd.read_csv(written["errors"]).set_index("image_id")
    assert sorted(errors.index) == ["mine/003", "mine/005"]
    assert errors.loc["mine/005", "reason"] == "file not found"
    assert errors.loc["mine/003", "reason"].startswith("unreadable image")
    assert sorted(m["image_id"]) == [f"mine/{i:03d}" for i in (0, 1, 2, 4, 6, 8, 9, 10, 11)]   # LL dropped too
    assert m["path"].map(lambda p: Path(p).is_absolute() and Path(p).is_file()).all()
    assert m.set_index("image_id").loc["mine/002", "label_Effusion"] == -1
    assert m["patient_id"].str.startswith("mine/P").all() and "site" in m.columns
    clinical = pd.read_parquet(written["clinical"])
    assert set(clinical["patient_id"]) == set(m["patient_id"])
    assert json.loads(Path(written["clinical_schema"]).read_text()) == SCHEMA
    ov = json.loads(Path(written["overview"]).read_text())
    assert ov["n_images"] == 9 and ov["n_errors"] == 2 and ov["views_filtered_out"] == {"mine/LL": 1}
    assert ov["labels"]["mine/Effusion"]["uncertain"] == 3 and ov["site"]["mine"] == {"A": 4, "B": 5}
    assert ov["clinical"]["missing_fraction"]["age"] == 0.0
    assert {"views.png", "labels.png", "clinical_missingness.png"} <= set(ov["figures"])
    assert (Path(written["run"]).parent / "config.resolved.yaml").is_file()


@pytest.mark.parametrize("table, column, value, error, match", [
    ("manifest.csv", "Edema", 2, ValueError, "column 'Edema'"),
    ("clinical.csv", "age", 400, ClinicalError, "'age'.*outside"),
])
def test_bad_values_are_named(tmp_path, table, column, value, error, match):
    root = _csv_cohort(tmp_path / "raw")
    df = pd.read_csv(root / table)
    df.loc[4 % len(df), column] = value
    df.to_csv(root / table, index=False)
    with pytest.raises(error, match=match):
        run_cohorts(_csv_cfg(root), out=tmp_path / "out")


def test_emory_split_tables_join_on_study_key(tmp_path):
    root = tmp_path / "emory"
    meta = pd.DataFrame({"img": [f"i{i}" for i in range(6)], "acc": ["s0", "s0", "s1", "s2", "s2", "s3"],
                         "empi": ["p0", "p0", "p1", "p2", "p2", "p3"], "png": [f"{i}.png" for i in range(6)],
                         "ViewPosition": ["PA", "AP", "PA", "PA", "LATERAL", "AP"],
                         "study_date": ["2019-01-02", "2019-01-02", "2020-03-04", "2021-05-06", "2021-05-06", None]})
    for i in range(6):
        write_png(root / f"{i}.png", seed=i)
    root.mkdir(exist_ok=True)
    meta.to_csv(root / "metadata.csv", index=False)
    pd.DataFrame({"acc": ["s0", "s1", "s2"], "Opacity": [1, 0, -1]}).to_csv(root / "findings.csv", index=False)
    pd.DataFrame({"acc": ["s0", "s1", "s2", "s3"], "manufacturer": ["GE", "Agfa", "GE", None]}
                 ).to_csv(root / "devices.csv", index=False)
    source = {"kind": "emory", "metadata": root / "metadata.csv", "key": "acc",
              "tables": [root / "findings.csv", root / "devices.csv"],
              "columns": {"image_id": "img", "patient_id": "empi", "study_id": "acc", "path": "png",
                          "view": "ViewPosition", "acquired_at": "study_date"},
              "labels": {"Opacity": "Opacity"}, "extra_columns": ["manufacturer"]}
    written = run_cohorts(CohortsConfig(sources=[source]), out=tmp_path / "out")
    m = pd.read_parquet(written["manifest"]).set_index("image_id")
    assert sorted(m.index) == ["emory/i0", "emory/i1", "emory/i2", "emory/i3", "emory/i5"]
    assert m.loc[["emory/i0", "emory/i1"], "label_Opacity"].tolist() == [1, 1]     # study-level label
    assert pd.isna(m.loc["emory/i5", "label_Opacity"]) and m.loc["emory/i3", "manufacturer"] == "GE"
    assert m.loc["emory/i2", "acquired_at"] == pd.Timestamp("2020-03-04")
    ov = json.loads(Path(written["overview"]).read_text())
    assert ov["images_per_year"] == {"2019": 2, "2020": 1, "2021": 1}
    assert ov["manufacturer"]["emory"] == {"<missing>": 1, "Agfa": 1, "GE": 3}
    pd.DataFrame({"acc": ["s0", "s0"], "Opacity": [1, 0]}).to_csv(root / "findings.csv", index=False)
    with pytest.raises(ValueError, match="findings.csv: key 'acc' repeats"):
        run_cohorts(CohortsConfig(sources=[source]), out=tmp_path / "out2")


def test_demo_source_calls_generator_and_ingests_csv(tmp_path, monkeypatch):
    calls = {}

    def fake_generate(raw_dir: Path, *, n_patients: int, seed: int, image_size: int, sites: int, workers: int) -> Path:
        calls.update(raw_dir=raw_dir, n_patients=n_patients, seed=seed, image_size=image_size, sites=sites,
                     workers=workers)
        _csv_cohort(raw_dir)
        df = pd.read_csv(raw_dir / "manifest.csv").rename(columns={"Effusion": "Opacity"})
        df["Effusion"], df["Atelectasis"] = df["Edema"], 1 - df["Edema"]
        df["site"] = "A"
        df.to_csv(raw_dir / "manifest.csv", index=False)
        return raw_dir

    monkeypatch.setitem(sys.modules, "cohorts.demo", types.SimpleNamespace(generate_demo=fake_generate))
    cfg = CohortsConfig(sources=[{"kind": "demo", "n_patients": 6, "seed": 3, "image_size": 64}])
    written = run_cohorts(cfg, out=tmp_path / "out")
    assert calls == {"raw_dir": tmp_path / "out" / "raw", "n_patients": 6, "seed": 3, "image_size": 64, "sites": 3,
                     "workers": 1}
    m = pd.read_parquet(written["manifest"])
    assert (m["dataset"] == "demo").all() and (m["site"] == "A").all()
    assert {"label_Atelectasis", "label_Edema", "label_Effusion", "label_Opacity"} <= set(m.columns)
    assert written["clinical"].is_file()
