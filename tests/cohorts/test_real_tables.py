"""Adapters on the real tables in ../shared/data; row counts asserted against direct pandas reads."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cohorts.adapters.covid_chestxray import load_covid_chestxray
from cohorts.adapters.covid_dedupe import merge_hannover_duplicates
from cohorts.adapters.hannover import load_hannover
from cohorts.clinical import validate_clinical
from cohorts.config import CovidChestxraySource, HannoverSource
from cohorts.manifest import validate_manifest

pytestmark = pytest.mark.real_data


def test_nih_rows_patients_labels(nih_result, label_tables):
    raw = pd.read_csv(label_tables / "Data_Entry_2017_v2020.csv.gz")
    m = nih_result.manifest
    validate_manifest(m)
    assert len(m) == len(raw) == 112_120
    assert m["patient_id"].nunique() == raw["Patient ID"].nunique() == 30_805
    for name in ("Atelectasis", "Edema", "Effusion"):
        expected = raw["Finding Labels"].str.split("|").map(lambda f, n=name: n in f)
        assert (m[f"label_{name}"] == 1).sum() == expected.sum()
        assert m[f"label_{name}"].notna().all()
    google = pd.read_csv(label_tables / "google2019_nih-chest-xray-labels.csv.gz")
    assert (m["label_Opacity"] == 1).sum() == (google["Airspace opacity"] == "YES").sum()
    assert (m["label_Opacity"] == 0).sum() == (google["Airspace opacity"] == "NO").sum()
    assert m["label_Opacity"].isna().sum() == len(raw) - len(google)
    assert m["path"].isna().all()   # no image_root: label-only


def test_nih_clinical_is_sex_and_age_at_the_earliest_follow_up(nih_result, label_tables):
    raw = pd.read_csv(label_tables / "Data_Entry_2017_v2020.csv.gz", dtype={"Patient ID": str})
    clin = nih_result.clinical.set_index("patient_id")
    validate_clinical(nih_result.clinical, nih_result.schema)
    assert len(clin) == raw["Patient ID"].nunique() == 30_805
    first = raw.sort_values(["Patient ID", "Follow-up #"]).groupby("Patient ID").first()
    first.index = "nih/" + first.index
    ages = first["Patient Age"].where(first["Patient Age"].between(0, 120))
    np.testing.assert_array_equal(clin.loc[first.index, "age"].to_numpy(), ages.to_numpy(dtype=float))
    assert (clin.loc[first.index, "sex"].to_numpy() == first["Patient Gender"].to_numpy()).all()
    conflicting = int((raw.groupby("Patient ID")["Patient Gender"].nunique() > 1).sum())
    assert nih_result.notes["patients_with_conflicting_sex"] == conflicting
    assert nih_result.notes["implausible_ages_set_missing"] == int(first["Patient Age"].gt(120).sum())


def test_chexpert_rows_coding_and_ids(chexpert_result, chexpert_raw):
    m = chexpert_result.manifest
    validate_manifest(m)
    assert len(m) == len(chexpert_raw) == 223_414
    for name, col in (("Opacity", "Lung Opacity"), ("Effusion", "Pleural Effusion"), ("Edema", "Edema")):
        raw = chexpert_raw[col]
        for code in (1, 0, -1):
            assert (m[f"label_{name}"] == code).sum() == (raw == code).sum()
        assert m[f"label_{name}"].isna().sum() == raw.isna().sum()
    patients = chexpert_raw["Path"].str.extract(r"(patient\d+)")[0]
    assert m["patient_id"].nunique() == patients.nunique()
    frontal = chexpert_raw["Frontal/Lateral"] == "Frontal"
    assert m["view"].isin(["PA", "AP"]).sum() == chexpert_raw.loc[frontal, "AP/PA"].isin(["PA", "AP"]).sum()
    assert (m["view"] == "Lateral").sum() == (~frontal).sum()


@pytest.fixture(scope="module")
def covid_pair(shared_data: Path):
    covid = load_covid_chestxray(CovidChestxraySource(kind="covid-chestxray",
                                                      root=shared_data / "covid-chestxray-dataset"))
    hannover = load_hannover(HannoverSource(kind="hannover", root=shared_data / "hannover-covid-19-image-repository"))
    return covid, hannover


def test_covid_chestxray_rows_labels_clinical(covid_pair, shared_data):
    covid, _ = covid_pair
    raw = pd.read_csv(shared_data / "covid-chestxray-dataset" / "metadata.csv", dtype=str)
    m = covid.manifest
    validate_manifest(m)
    assert len(m) == len(raw) == 555
    assert m["path"].map(lambda p: Path(p).is_file()).all()
    assert (m["label_COVID19"] == 1).sum() == raw["finding"].str.contains("COVID-19").sum()
    assert m["label_COVID19"].isna().sum() == (raw["finding"] == "todo").sum()
    assert (m["label_Death"] == 1).sum() == (raw["survival"] == "N").sum()
    assert (m["label_ICU"] == 0).sum() == (raw["went_icu"] == "N").sum()
    assert len(covid.clinical) == raw["patientid"].nunique()
    validate_clinical(covid.clinical, covid.schema)
    assert covid.notes["pO2_saturation_above_100_set_null"] == (pd.to_numeric(raw["pO2_saturation"]) > 100).sum()


def test_hannover_rows_outcomes_and_censored_labs(covid_pair, shared_data):
    _, hannover = covid_pair
    raw = pd.read_csv(shared_data / "hannover-covid-19-image-repository" / "data.csv", dtype=str)
    m, c = hannover.manifest, hannover.clinical
    validate_manifest(m)
    validate_clinical(c, hannover.schema)
    assert len(m) == len(raw) == 243 and len(c) == raw["patient_id"].nunique() == 71
    died = raw.loc[raw["death_offset"].notna(), "patient_id"].unique()
    assert c["event"].sum() == len(died) == 5
    one = raw[raw["patient_id"] == died[0]].iloc[0]
    expected = float(one["death_offset"]) - float(one["admission_offset"])
    assert c.set_index("patient_id").loc[f"hannover/{died[0]}", "time"] == expected
    assert (c["time"] >= 0).all() and c["time"].notna().all()
    icu = raw.loc[raw["icu_admission_offset"].notna(), "patient_id"].unique()
    assert c["icu_day"].notna().sum() == c["icu"].sum() == len(icu) > 0     # the day only where an ICU stay is recorded
    rows = raw[(raw["patient_id"] == icu[0]) & raw["icu_admission_offset"].notna()]
    days = rows["icu_admission_offset"].astype(float) - rows["admission_offset"].astype(float)
    assert c.set_index("patient_id").loc[f"hannover/{icu[0]}", "icu_day"] == days.min()
    # -inf / inf are never numbers in the clinical table; censored baselines are flagged
    assert np.isfinite(c[["crp", "d_dimer", "po2"]].dropna()).all().all()
    assert hannover.notes["censored_lab_values"]["d-dimer"] == raw["d-dimer_val"].isin(["inf", "-inf"]).sum()
    limit = c["d_dimer_limit"]
    censored = limit.isin(["below", "above"])
    assert censored.any() and c.loc[censored, "d_dimer"].isna().all()
    assert (limit.notna() == (c["d_dimer"].notna() | censored)).all()   # null limit <=> not measured
    assert c.loc[limit == "within", "d_dimer"].notna().all()


def test_hannover_duplicates_removed_once(covid_pair):
    covid, hannover = covid_pair
    c2, h2 = merge_hannover_duplicates(covid, hannover)
    assert c2.notes["hannover_duplicates_dropped_from_covid_chestxray"] == 82
    assert len(c2.manifest) == 555 - 82 and len(h2.manifest) == 243
    assert h2.manifest["also_in"].notna().sum() == 82
    # kept Hannover rows carry covid-chestxray's finding label
    assert h2.manifest.loc[h2.manifest["also_in"].notna(), "label_COVID19"].notna().all()
    # no patient split across ids: every Hannover-located covid image now has a Hannover patient id
    hann_located = c2.manifest["site"].str.contains("Hannover", na=False)
    assert c2.manifest.loc[hann_located, "patient_id"].str.startswith("hannover/").all()
    assert len(c2.notes["hannover_located_images_without_hannover_copy"]) == 10
    assert not set(c2.clinical["patient_id"]) & set(h2.clinical["patient_id"])
    assert "intubated" in h2.clinical.columns


def test_nih_partial_copy_keeps_existing_images_in_one_summary_line(shared_data, label_tables, tmp_path, caplog):
    """A partial NIH copy (2 of 112,120 PNGs): only those rows, one log line for the rest, no error rows."""
    from cohorts.config import CohortsConfig
    from cohorts.run import run_cohorts

    source = {"kind": "nih", "table": label_tables / "Data_Entry_2017_v2020.csv.gz",
              "image_root": shared_data / "nih-chestxray14-sample" / "images"}
    with caplog.at_level("INFO", logger="cohorts.adapters.nih"):
        written = run_cohorts(CohortsConfig(sources=[source], verify_images=True, overview=True), out=tmp_path)
    m = pd.read_parquet(written["manifest"])
    assert sorted(m["image_id"]) == ["nih/00000001_000", "nih/00027426_000"]
    assert m.set_index("image_id").loc["nih/00000001_000", "path"].endswith("images/00000001_000.png")
    assert len(pd.read_csv(written["errors"])) == 0
    lines = [r.getMessage() for r in caplog.records if "without an image" in r.getMessage()]
    assert len(lines) == 1 and "112118 row(s) without an image" in lines[0]
    run = json.loads(written["run"].read_text())
    assert run["source_notes"]["0:nih"]["rows_without_image"] == 112_118


def test_nih_empty_image_folder_stops_with_one_line_naming_it(label_tables, tmp_path, capsys):
    from cohorts.run import main

    empty = tmp_path / "images"
    empty.mkdir()
    config = tmp_path / "nih.yaml"
    config.write_text(f"sources:\n  - kind: nih\n    table: {label_tables / 'Data_Entry_2017_v2020.csv.gz'}\n"
                      f"    image_root: {empty}\n")
    assert main(["--config", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(empty) in err[0] and "holds none of them" in err[0]
    assert not (tmp_path / "out" / "errors.csv").exists()


def _grey(path: str, step: int = 2) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.float32)[::step, ::step]


def _best_crop_correlation(square: np.ndarray, image: np.ndarray) -> float:
    """Highest Pearson correlation of ``square`` (covid-chestxray's square crops) resized to about the short
    side of ``image`` against every crop of ``image`` it can cover, with a few pixels of slack each way."""
    short, best = min(image.shape), -1.0
    for side in range(short - 4, short + 5, 2):
        sq = np.asarray(Image.fromarray(square).resize((side, side), Image.Resampling.BILINEAR), dtype=np.float32)
        for top in range(-4, image.shape[0] - side + 5, 2):
            for left in range(-4, image.shape[1] - side + 5, 2):
                y0, x0 = max(top, 0), max(left, 0)
                y1, x1 = min(top + side, image.shape[0]), min(left + side, image.shape[1])
                a = sq[y0 - top:y1 - top, x0 - left:x1 - left].ravel()
                b = image[y0:y1, x0:x1].ravel()
                a, b = a - a.mean(), b - b.mean()
                best = max(best, float(a @ b / np.sqrt((a @ a) * (b @ b))))
    return best


def test_dropped_copies_are_the_same_radiographs_and_the_ten_others_are_not(covid_pair):
    covid, hannover = covid_pair
    c2, h2 = merge_hannover_duplicates(covid, hannover)
    covid_paths = covid.manifest.set_index("image_id")["path"]
    kept = h2.manifest[h2.manifest["also_in"].notna()]
    same = sorted(_best_crop_correlation(_grey(covid_paths[c]), _grey(h))
                  for c, h in zip(kept["also_in"], kept["path"]))
    # 81 of the 82 stem-matched pairs are pixel-identical up to crop and scale; one Hannover copy was
    # deskewed (rotated by a few degrees), which lowers its correlation but not below 0.7
    assert len(same) == 82 and same[1] > 0.93 and same[0] > 0.7
    # the 10 Hannover-located covid-chestxray images left in are other radiographs of their patients
    rest = c2.manifest.set_index("image_id")
    for image_id in c2.notes["hannover_located_images_without_hannover_copy"]:
        own = h2.manifest[h2.manifest["patient_id"] == rest.loc[image_id, "patient_id"]]
        assert len(own) and max(_best_crop_correlation(_grey(rest.loc[image_id, "path"]), _grey(p))
                                for p in own["path"]) < 0.92, image_id


def test_hannover_cohort_labels_hold_for_every_image_and_win_conflicts(covid_pair, shared_data):
    covid, _ = covid_pair
    root = shared_data / "hannover-covid-19-image-repository"
    hannover = load_hannover(HannoverSource(kind="hannover", root=root, cohort_labels={"COVID19": 1}))
    assert (hannover.manifest["label_COVID19"] == 1).all()
    _, merged = merge_hannover_duplicates(covid, hannover)
    shared = merged.manifest["also_in"].notna()
    assert shared.sum() == 82 and (merged.manifest["label_COVID19"] == 1).all()   # "No Finding" copies lose
