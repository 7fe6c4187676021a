"""cohorts.demo: files, schema, determinism, and that the planted structure is really there."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from lifelines.utils import concordance_index
from PIL import Image
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cohorts.demo import FEATURES, IL6_MEDIAN, LABELS, clinical_schema, generate_demo, main

from .conftest import zone_means

MANIFEST_COLUMNS = ["image_id", "patient_id", "study_id", "path", "view", "site", "offset_days", *LABELS]


def _hashes(raw: Path) -> dict[str, str]:
    return {str(p.relative_to(raw)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(raw.rglob("*")) if p.is_file()}


def _tables(raw: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    return (pd.read_csv(raw / "manifest.csv"), pd.read_csv(raw / "clinical.csv"),
            json.loads((raw / "clinical_schema.json").read_text()))


# ------------------------------------------------------------------ files and determinism
def test_reduced_demo_is_fast_and_complete(small_demo: tuple[Path, float]) -> None:
    raw, cpu_seconds = small_demo
    assert cpu_seconds < 8.0, f"40 patients at 64 px took {cpu_seconds:.1f} CPU s"
    manifest, clinical, _ = _tables(raw)
    assert clinical["patient_id"].nunique() == 40 == len(clinical)
    pngs = sorted((raw / "images").glob("*.png"))
    assert [p.name for p in pngs] == sorted(Path(p).name for p in manifest["path"])
    with Image.open(pngs[0]) as img:
        assert (img.mode, img.size, img.format) == ("L", (64, 64), "PNG")


def test_same_seed_identical_bytes_different_seed_differs(small_demo: tuple[Path, float], tmp_path: Path) -> None:
    raw, _ = small_demo
    again = generate_demo(tmp_path / "again", n_patients=40, seed=3, image_size=64)
    assert _hashes(again) == _hashes(raw)
    pooled = generate_demo(tmp_path / "pooled", n_patients=40, seed=3, image_size=64, workers=2)
    assert _hashes(pooled) == _hashes(raw)
    other = generate_demo(tmp_path / "other", n_patients=40, seed=4, image_size=64)
    a, b = _hashes(raw), _hashes(other)
    assert a["clinical.csv"] != b["clinical.csv"] and a["manifest.csv"] != b["manifest.csv"]
    shared = set(a) & set(b)
    assert sum(a[k] == b[k] for k in shared) == 1   # only the schema, which does not depend on the seed
    assert a["clinical_schema.json"] == b["clinical_schema.json"]


def test_patients_do_not_depend_on_cohort_size(small_demo: tuple[Path, float], tmp_path: Path) -> None:
    raw, _ = small_demo
    few = generate_demo(tmp_path / "few", n_patients=10, seed=3, image_size=64)
    m_all, c_all, _ = _tables(raw)
    m_few, c_few, _ = _tables(few)
    pd.testing.assert_frame_equal(c_few, c_all.iloc[:10])
    pd.testing.assert_frame_equal(m_few, m_all[m_all["patient_id"].isin(c_few["patient_id"])].reset_index(drop=True))


def test_rerun_removes_stale_images(tmp_path: Path) -> None:
    raw = generate_demo(tmp_path, n_patients=6, seed=1, image_size=32)
    generate_demo(tmp_path, n_patients=2, seed=1, image_size=32)
    manifest = pd.read_csv(raw / "manifest.csv")
    assert sorted(p.name for p in (raw / "images").glob("*.png")) == sorted(Path(p).name for p in manifest["path"])
    assert set(manifest["patient_id"]) == {"P0000", "P0001"}


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_patients >= 1"):
        generate_demo(tmp_path, n_patients=0)
    with pytest.raises(ValueError, match="image_size >= 32"):
        generate_demo(tmp_path, image_size=16)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--out", str(tmp_path / "cli"), "--n-patients", "3", "--image-size", "32", "--seed", "5"])
    out = capsys.readouterr().out
    n_images = len(pd.read_csv(tmp_path / "cli" / "manifest.csv"))
    assert f"wrote {n_images} images of 3 patients" in out


# ------------------------------------------------------------------ schema consistency
def test_manifest_columns_and_values(demo_300: Path) -> None:
    manifest, clinical, _ = _tables(demo_300)
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert manifest["image_id"].is_unique and manifest["study_id"].is_unique
    assert set(manifest["view"]) <= {"PA", "AP", "AP Supine"}
    assert (manifest["view"] != "PA").mean() > 0.7                       # ICU: mostly AP
    for label in LABELS:
        assert set(manifest[label]) <= {0, 1}
    assert all(not Path(p).is_absolute() and (demo_300 / p).is_file() for p in manifest["path"])
    per_patient = manifest.groupby("patient_id").size()
    assert per_patient.between(1, 4).all() and (per_patient > 1).mean() > 0.5
    assert set(per_patient.index) == set(clinical["patient_id"])          # every patient has an image
    ordered = manifest.groupby("patient_id")["offset_days"].apply(lambda s: s.is_monotonic_increasing)
    assert ordered.all() and (manifest["offset_days"] >= 0).all()
    alive = manifest.merge(clinical[["patient_id", "time"]], on="patient_id")
    assert (alive["offset_days"] < alive["time"]).all()                   # nobody is imaged after death/censoring


def test_clinical_table_matches_its_schema(demo_300: Path) -> None:
    _, clinical, schema = _tables(demo_300)
    assert schema == clinical_schema()
    cols = schema["columns"]
    assert list(cols) == list(clinical.columns)
    keys = {"type", "role", "unit", "min", "max", "categories", "description"}
    for name, spec in cols.items():
        assert set(spec) == keys, name
        assert spec["type"] in {"continuous", "binary", "categorical"} and \
            spec["role"] in {"feature", "outcome", "id", "truth", "covariate"}
        values = clinical[name].dropna()
        if spec["type"] == "binary":
            assert set(values) <= {0, 1}, name
        if spec["min"] is not None:
            assert values.min() >= spec["min"] and values.max() <= spec["max"], name
        if spec["categories"] is not None:
            assert set(values) <= set(spec["categories"]), name
    roles = {name: spec["role"] for name, spec in cols.items()}
    assert roles["patient_id"] == "id" and roles["true_subtype"] == "truth" and roles["true_severity"] == "truth"
    assert roles["site"] == "covariate"
    assert {n for n, r in roles.items() if r == "outcome"} == {"time", "event"}
    assert {n for n, r in roles.items() if r == "feature"} == set(FEATURES)
    assert cols["pf_ratio"]["unit"] == "mmHg" and cols["il6"]["unit"] == "pg/mL"
    assert clinical["time"].between(0.1, 60).all() and clinical[["time", "event"]].notna().all().all()
    censored = clinical.loc[clinical["event"] == 0, "time"]
    assert {28.0, 60.0} <= set(censored)                                  # both follow-up horizons occur


# ------------------------------------------------------------------ planted structure
def test_label_prevalence_and_subtype_proportions(demo_300: Path) -> None:
    manifest, clinical, _ = _tables(demo_300)
    prevalence = manifest[list(LABELS)].mean()
    assert prevalence.drop("Opacity").between(0.2, 0.6).all(), prevalence.to_dict()
    assert 0.6 < prevalence["Opacity"] < 0.9, prevalence.to_dict()       # airspace opacity: nearly every ARDS film
    shares = clinical["true_subtype"].value_counts(normalize=True)
    assert sorted(shares.index) == [0, 1, 2] and shares.between(0.25, 0.42).all(), shares.to_dict()
    by_subtype = manifest.merge(clinical[["patient_id", "true_subtype"]]).groupby("true_subtype")[list(LABELS)].mean()
    assert by_subtype.loc[1, "Edema"] > 3 * by_subtype.loc[[0, 2], "Edema"].max()   # diffuse pattern
    assert by_subtype.loc[1, "Atelectasis"] < by_subtype.loc[[0, 2], "Atelectasis"].min()


def test_missingness(demo_300: Path) -> None:
    _, clinical, _ = _tables(demo_300)
    missing = clinical[list(FEATURES)].isna().mean()
    assert missing[["il6", "il8"]].between(0.2, 0.55).all()               # site B has no biomarker sub-study
    assert missing["bicarbonate"] >= 0.05 and missing["lactate"] >= 0.2
    assert (clinical["il6"].isna() == clinical["il8"].isna()).all()        # one biomarker panel
    no_values = clinical[list(FEATURES)].isna().all(axis=1).mean()
    assert 0.003 <= no_values <= 0.08
    on_pressors = clinical["vasopressors"] == 1                            # MAR: lactate drawn in shock
    assert clinical.loc[~on_pressors & clinical["vasopressors"].notna(), "lactate"].isna().mean() > \
        clinical.loc[on_pressors, "lactate"].isna().mean() + 0.1


def test_clinical_markers_and_outcome_follow_the_subtype(demo_300: Path) -> None:
    _, clinical, _ = _tables(demo_300)
    hyper = clinical["true_subtype"] == 0
    assert clinical.loc[hyper, "il6"].median() > 2.5 * clinical.loc[~hyper, "il6"].median()
    assert clinical.loc[hyper, "bicarbonate"].median() < clinical.loc[~hyper, "bicarbonate"].median() - 3
    assert clinical.loc[hyper, "vasopressors"].mean() > clinical.loc[~hyper, "vasopressors"].mean() + 0.25
    for z in (1, 2):   # clinically alike
        assert abs(np.log(clinical.loc[clinical["true_subtype"] == z, "il6"].median() / IL6_MEDIAN[1])) < 0.5
    died_28 = (clinical["time"] <= 28) & (clinical["event"] == 1)
    assert died_28[hyper].mean() > died_28[clinical["true_subtype"] == 2].mean() + 0.1
    sicker = clinical["true_severity"] > 0
    assert died_28[sicker].mean() > died_28[~sicker].mean() + 0.1


def test_findings_are_visible_on_the_rendered_images(demo_300: Path) -> None:
    manifest, _, _ = _tables(demo_300)
    zones = pd.DataFrame([zone_means(demo_300 / p) for p in manifest["path"]])
    lungs = zones.mean(axis=1)
    for label in ("Opacity", "Effusion", "Edema"):
        yes, no = lungs[manifest[label] == 1], lungs[manifest[label] == 0]
        assert yes.mean() > no.mean() + 0.01, label
    lower = zones[[("right", "lower"), ("left", "lower")]].max(axis=1)   # effusion fills a lower zone
    assert lower[manifest["Effusion"] == 1].mean() > lower[manifest["Effusion"] == 0].mean() + 0.04


def _zone_features(raw: Path, manifest: pd.DataFrame) -> pd.DataFrame:
    """Per patient: mean over images of lung-zone means and left/right differences."""
    rows = []
    for path in manifest["path"]:
        z = zone_means(raw / path)
        values = np.array(list(z.values()))
        right, left = values[:4], values[4:]
        rows.append(np.concatenate([values, np.abs(right - left), [values.std()]]))
    feats = pd.DataFrame(rows, index=manifest["patient_id"])
    return feats.groupby(level=0).mean()


def _numeric_clinical(clinical: pd.DataFrame) -> pd.DataFrame:
    clin = clinical[["age", "pf_ratio", "vasopressors", "bicarbonate", "il6", "il8", "lactate"]].copy()
    clin[["il6", "il8", "lactate"]] = np.log(clin[["il6", "il8", "lactate"]])
    return clin


def test_each_modality_recovers_the_subtypes_only_partly(demo_300: Path) -> None:
    manifest, clinical, _ = _tables(demo_300)
    clinical = clinical.set_index("patient_id")
    clin = _numeric_clinical(clinical)
    clin = clin.join(clin.isna().astype(float).add_suffix("_missing"))
    image = _zone_features(demo_300, manifest).reindex(clinical.index)
    y = clinical["true_subtype"].to_numpy()
    folds = StratifiedKFold(5, shuffle=True, random_state=0)

    def cv_accuracy(x: pd.DataFrame) -> float:   # out-of-fold predictions only
        model = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=2000))
        return float((cross_val_predict(model, x.to_numpy(), y, cv=folds) == y).mean())

    acc_clinical, acc_image, acc_both = cv_accuracy(clin), cv_accuracy(image), cv_accuracy(clin.join(image))
    assert 0.45 < acc_clinical < 0.7 and 0.45 < acc_image < 0.7, (acc_clinical, acc_image)
    assert acc_both > max(acc_clinical, acc_image) + 0.1, (acc_clinical, acc_image, acc_both)


def test_images_add_prognostic_information_beyond_clinical_data(demo_300: Path) -> None:
    manifest, clinical, _ = _tables(demo_300)
    clinical = clinical.set_index("patient_id")
    clin = _numeric_clinical(clinical)
    image = _zone_features(demo_300, manifest).reindex(clinical.index)

    def cv_cindex(x: pd.DataFrame) -> float:   # penalised Cox, out-of-fold risks, train-fold imputation
        risk = np.zeros(len(x))
        for train, test in KFold(5, shuffle=True, random_state=0).split(x):
            mean, sd = x.iloc[train].mean(), x.iloc[train].std().replace(0, 1)
            scaled = (x.fillna(mean) - mean) / sd
            fit = scaled.iloc[train].assign(time=clinical["time"].iloc[train], event=clinical["event"].iloc[train])
            model = CoxPHFitter(penalizer=0.5).fit(fit, "time", "event")
            risk[test] = model.predict_partial_hazard(scaled.iloc[test]).to_numpy()
        return float(concordance_index(clinical["time"], -risk, clinical["event"]))

    c_clinical, c_both = cv_cindex(clin), cv_cindex(clin.join(image))
    assert c_clinical > 0.55 and c_both > c_clinical + 0.02, (c_clinical, c_both)


def test_full_size_rendering_is_fast(tmp_path: Path) -> None:
    start = time.process_time()
    generate_demo(tmp_path, n_patients=5, seed=0, image_size=256)
    assert time.process_time() - start < 5.0
