"""Patient ids that protect: an import without patient ids, and one whose "patients" are the images of repeat
studies, each put a warning in words into report.md, selection.json and run.json; correct ids put none."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.config import BenchmarksConfig
from benchmarks.run import run_benchmarks
from cohorts.folder import write_cohort_folder
from embedders.config import EmbeddersConfig
from embedders.run import run_embedders

N_PATIENTS = 20          # two studies each -> 40 images


def _cohort(root: Path, *, patient_is_image: bool, patient_column: bool) -> tuple[Path, Path]:
    """A study-format CSV import (8-d embeddings with a planted signal) + manifest + sample; returns (cohort, store)."""
    rng = np.random.default_rng(0)
    dicom = np.array([f"dcm{p:02d}{s}" for p in range(N_PATIENTS) for s in "ab"])
    subject = np.repeat([f"s{p:02d}" for p in range(N_PATIENTS)], 2)
    y = np.repeat(np.arange(N_PATIENTS) % 2, 2)
    cohort = root / "cohort"
    cohort.mkdir(parents=True)
    manifest = pd.DataFrame({"image_id": [f"img-{d}" for d in dicom], "dicom_id": dicom, "study_id": dicom,
                             "patient_id": [f"img-{d}" for d in dicom] if patient_is_image else subject,
                             "path": None, "view": "PA", "dataset": "mimic",
                             "acquired_at": pd.NaT, "offset_days": np.nan})
    write_cohort_folder(cohort, manifest, sample=manifest.assign(label="Edema", y=y))
    x = rng.normal(size=(len(dicom), 8)) + 1.5 * y[:, None]
    csv = pd.DataFrame(x, columns=[f"embedding_{i}" for i in range(8)]).assign(dicom_id=dicom, label=y,
                                                                               augmentation="original")
    if patient_column:
        csv["subject_id"] = subject
    csv.to_csv(root / "study.csv", index=False)
    spec = {"name": "study", "path": str(root / "study.csv"), "match_column": "dicom_id"}
    if patient_column:
        spec["patient_column"] = "subject_id"
    store = root / "emb.zarr"
    run_embedders(EmbeddersConfig.model_validate({"precomputed": [spec]}), manifest=cohort / "manifest.parquet",
                  store=store)
    return cohort, store


def _run(root: Path, cohort: Path, store: Path) -> tuple[str, dict, dict]:
    paths = run_benchmarks(BenchmarksConfig(bootstrap={"n_boot": 100}), cohort=cohort, store=store, out=root / "out")
    return (paths["report"].read_text(), json.loads(paths["selection"].read_text()),
            json.loads(paths["run"].read_text()))


def test_csv_without_patient_ids_is_a_stated_warning(tmp_path: Path) -> None:
    cohort, store = _cohort(tmp_path, patient_is_image=True, patient_column=False)
    report, selection, run = _run(tmp_path, cohort, store)
    section = report.split("## Patient ids")[1].split("##")[0]
    assert "**Warning:** embeddings of study: imported without patient ids (set patient_column or patient_table)" \
        in section
    assert "patient_id equals image_id for all 40 sampled images" in section
    assert any("imported without patient ids" in w for w in selection["patient_id_warnings"])
    assert run["patient_id_warnings"] == selection["patient_id_warnings"]


def test_patients_that_are_images_of_repeat_studies_are_a_stated_warning(tmp_path: Path) -> None:
    cohort, store = _cohort(tmp_path, patient_is_image=True, patient_column=True)
    report, selection, _ = _run(tmp_path, cohort, store)
    section = report.split("## Patient ids")[1].split("##")[0]
    assert (f"the manifest's patient_id splits {N_PATIENTS} patients (by column 'subject_id' of study.csv) over "
            "several ids") in section
    assert "the manifest's patients are its images while the cohort has repeat studies" in section
    assert "inflate AUROC" in " ".join(selection["patient_id_warnings"])


def test_correct_patient_ids_give_no_warning(tmp_path: Path) -> None:
    cohort, store = _cohort(tmp_path, patient_is_image=False, patient_column=True)
    report, selection, _ = _run(tmp_path, cohort, store)
    assert selection["patient_id_warnings"] == [] and "**Warning:**" not in report
    assert "No patient-id warning" in report


def test_grouped_folds_keep_repeat_studies_together(tmp_path: Path) -> None:
    cohort, store = _cohort(tmp_path, patient_is_image=False, patient_column=True)
    run_benchmarks(BenchmarksConfig(bootstrap={"n_boot": 100}), cohort=cohort, store=store, out=tmp_path / "out")
    oof = pd.read_parquet(tmp_path / "out" / "oof.parquet")
    assert (oof.groupby("patient_id").fold.nunique() == 1).all() and oof.patient_id.nunique() == N_PATIENTS
