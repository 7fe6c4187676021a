"""MIMIC-CXR adapter on a small synthetic tree written in a tmp dir (no MIMIC data here)."""
from pathlib import Path

import pandas as pd
import pytest

from cohorts.config import CohortsConfig
from cohorts.run import run_cohorts

from .conftest import write_png

# subject, study, dicom, view, date, time, split, Lung Opacity, Pleural Effusion
ROWS = [
    ("10000032", "50414267", "d1", "PA", "21800506", "213014.531", "train", 1.0, None),
    ("10000032", "50414267", "d2", "LATERAL", "21800506", "213015", "train", 1.0, None),
    ("10000032", "53189527", "d3", "AP", "21800626", "165500", "train", -1.0, 0.0),
    ("10000764", "57375967", "d4", "AP", "21321014", "94000", "test", 0.0, 1.0),
    ("10000764", "59999999", "d5", "PA", "21321020", "101010", "validate", None, None),   # study not labelled
    ("10000898", "50771383", "d6", "PA", "21321020", "101010", "train", 1.0, 1.0),        # image file missing
]


def _tree(root: Path) -> Path:
    meta, labels, split = [], {}, []
    for i, (subj, study, dicom, view, date, time, sp, opac, eff) in enumerate(ROWS):
        meta.append({"dicom_id": dicom, "subject_id": subj, "study_id": study, "ViewPosition": view,
                     "StudyDate": date, "StudyTime": time, "Rows": 32, "Columns": 32})
        split.append({"dicom_id": dicom, "study_id": study, "subject_id": subj, "split": sp})
        if study != "59999999":
            labels[(subj, study)] = {"subject_id": subj, "study_id": study, "Lung Opacity": opac,
                                     "Pleural Effusion": eff, "Atelectasis": None, "Edema": 0.0}
        if dicom != "d6":
            write_png(root / f"files/p{subj[:2]}/p{subj}/s{study}/{dicom}.jpg", seed=i)
    pd.DataFrame(meta).to_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", index=False)
    pd.DataFrame(list(labels.values())).to_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz", index=False)
    pd.DataFrame(split).to_csv(root / "mimic-cxr-2.0.0-split.csv.gz", index=False)
    return root


@pytest.mark.parametrize("policy, d3_opacity", [("ignore", -1), ("ones", 1)])
def test_mimic_tree_to_manifest(tmp_path, policy, d3_opacity):
    root = _tree(tmp_path / "mimic")
    cfg = CohortsConfig(sources=[{"kind": "mimic", "root": root}], uncertain=policy, verify_images=True,
                        sampling={"labels": ["Opacity"], "n_per_class": 1})
    written = run_cohorts(cfg, out=tmp_path / "out")
    m = pd.read_parquet(written["manifest"]).set_index("image_id")
    # LATERAL filtered out by the frontal default, d6 missing on disk -> errors.csv
    assert sorted(m.index) == ["mimic/d1", "mimic/d3", "mimic/d4", "mimic/d5"]
    errors = pd.read_csv(written["errors"])
    assert errors["image_id"].tolist() == ["mimic/d6"] and errors["reason"].iloc[0] == "file not found"
    assert m.loc["mimic/d1", "patient_id"] == "mimic/10000032" and m.loc["mimic/d1", "study_id"] == "mimic/s50414267"
    assert m.loc["mimic/d1", "path"].endswith("files/p10/p10000032/s50414267/d1.jpg")
    assert m.loc["mimic/d3", "label_Opacity"] == d3_opacity
    assert m.loc["mimic/d4", "label_Effusion"] == 1 and pd.isna(m.loc["mimic/d1", "label_Effusion"])
    assert m.loc[["mimic/d5"]].filter(like="label_").isna().all().all()
    assert m.loc["mimic/d4", "split"] == "test"
    assert m.loc["mimic/d1", "acquired_at"] == pd.Timestamp("2180-05-06 21:30:14")
    sample = pd.read_parquet(written["sample"])
    assert sorted(sample["y"]) == [0, 1]


def test_mimic_missing_csv_names_file(tmp_path):
    root = _tree(tmp_path / "mimic")
    (root / "mimic-cxr-2.0.0-chexpert.csv.gz").unlink()
    cfg = CohortsConfig(sources=[{"kind": "mimic", "root": root}])
    with pytest.raises(FileNotFoundError, match="chexpert.csv.gz"):
        run_cohorts(cfg, out=tmp_path / "out")
