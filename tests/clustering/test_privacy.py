"""Privacy by construction: a cohort full of identifiers goes through clustering, and no exported file (text,
parquet contents, figures, the Atlas app) holds any identifying value or the run folder's absolute path.
Raw ids leave only with ``export.raw_ids``; identifying columns on the allow-list are refused with the
column and a row position, never the value."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from clustering.config import ClusteringConfig
from clustering.export import ExportError
from clustering.privacy import guard_frame, identifying_name, identifying_values
from clustering.run import run_clustering

from .conftest import make_cohort

CFG = {"leiden": {"n_seeds": 2, "n_subsamples": 2, "resolutions": [0.1, 0.3]}, "stability": {"n_resamples": 3},
       "characterize": {"montage_per_subtype": 2}, "export": {"columns": ["age", "sex", "label_Edema"]}}
N = 90
IDENTIFYING = {   # planted column -> (schema role, values per patient i); a careless schema calls most of them features
    "first_name": ("feature", lambda i: f"Quentinella{i:03d}"),
    "last_name": ("feature", lambda i: f"Vorsprung{i:03d}"),
    "birth_date": ("feature", lambda i: f"19{40 + i % 30:02d}-0{1 + i % 9}-1{i % 10}"),
    "note": ("feature", lambda i: f"found unresponsive at home by neighbour {i}, brought in by ambulance"),
    "death_date": ("outcome", lambda i: f"2019-1{i % 3}-2{i % 10}" if i % 2 else None),   # a date-valued outcome
    "free_code": ("feature", lambda i: f"{4718253 + 17 * i}"),                            # MRN-like, innocent name
}


def mrn(i: int) -> str:
    return f"MRN{5500000 + 31 * i}"


@pytest.fixture(scope="module")
def identifying_cohort(tmp_path_factory) -> tuple[Path, dict[str, list[str]]]:
    """A run folder with cohorts/ (ids are MRNs, images named by DICOM UIDs, identifying clinical columns,
    admission datetimes) and fusion/latents.zarr; returns it and the planted values by column."""
    run = tmp_path_factory.mktemp("hospital_run")
    cohort, latents = make_cohort(run, n_patients=N, latent_dim=8)
    cohort.rename(run / "cohorts")
    cohort = run / "cohorts"
    ids = {f"demo:{i:05d}": mrn(i) for i in range(N)}
    clinical = pd.read_parquet(cohort / "clinical.parquet")
    clinical["patient_id"] = clinical.patient_id.map(ids)
    schema = json.loads((cohort / "clinical_schema.json").read_text())
    planted: dict[str, list[str]] = {"patient_id": list(ids.values())}
    for col, (role, make) in IDENTIFYING.items():
        clinical[col] = [make(i) for i in range(N)]
        planted[col] = [v for v in clinical[col] if v is not None]
        schema["columns"][col] = {"type": "categorical", "role": role, "unit": None, "min": None, "max": None,
                                  "categories": None, "description": col}
    clinical["admission_time"] = pd.Timestamp("2018-03-04 05:06") + pd.to_timedelta(np.arange(N) * 7, unit="h")
    schema["columns"]["admission_time"] = {"type": "continuous", "role": "feature", "unit": None, "min": None,
                                           "max": None, "categories": None, "description": "admitted"}
    planted["admission_time"] = [str(t) for t in clinical.admission_time]
    clinical.to_parquet(cohort / "clinical.parquet", index=False)
    (cohort / "clinical_schema.json").write_text(json.dumps(schema))
    man = pd.read_parquet(cohort / "manifest.parquet")
    man["patient_id"] = man.patient_id.map(ids)
    man["image_id"] = [f"1.2.826.0.1.3680043.8.498.{k}" for k in range(len(man))]
    man["study_id"] = man.image_id
    man["path"] = [str(Path(p).parent.parent.parent / "cohorts" / "img" / Path(p).name) for p in man.path]
    man.to_parquet(cohort / "manifest.parquet", index=False)
    planted["image_id"] = list(man.image_id)
    g = zarr.open_group(str(latents), mode="r+")
    g["ids"][:] = np.array([ids[i] for i in np.asarray(g["ids"][:], dtype=object).astype(str)])
    return run, planted


def _exported_text(folder: Path) -> dict[Path, str]:
    """Every file under ``folder``: raw bytes as text, plus every cell of every parquet file."""
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        text = path.read_bytes().decode("latin-1")
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
            text += " ".join(map(str, df.columns)) + "\n" + df.astype(str).to_csv()
        out[path] = text
    return out


def _leaks(folder: Path, planted: dict[str, list[str]], run: Path) -> list[str]:
    needles = {v for values in planted.values() for v in values} | {str(run), str(run.resolve())}
    return [f"{path.relative_to(folder)}: {n[:25]}" for path, text in _exported_text(folder).items()
            for n in needles if n in text]


def test_nothing_identifying_leaves_and_the_report_says_what_was_withheld(identifying_cohort) -> None:
    run, planted = identifying_cohort
    out = run / "clustering"
    paths = run_clustering(ClusteringConfig(**CFG), cohort=run / "cohorts", latents=run / "fusion" / "latents.zarr",
                           out=out)
    assert (paths["atlas_app"] / "index.html").is_file()
    assert _leaks(out, planted, run) == []
    sub = pd.read_csv(paths["subtypes_csv"])
    assert list(sub.columns) == ["patient_id", "subtype", "confidence", "umap_1", "umap_2", "age", "sex", "label_Edema"]
    assert sub.patient_id.str.fullmatch(r"P-[0-9a-f]{16}").all() and sub.patient_id.is_unique
    # the key and the pseudonym -> MRN table stay in the run's private folder, outside the export
    mapping = pd.read_csv(run / "private" / "patient_id_map.csv", dtype=str)
    assert set(mapping.id) == set(planted["patient_id"]) and set(sub.patient_id) <= set(mapping.pseudonym)
    assert (run / "private" / "pseudonym.key").stat().st_mode & 0o077 == 0
    page = (out / "report.html").read_text()
    for col in IDENTIFYING.keys() | {"admission_time"}:
        assert f"{col} (" in page, col                            # named as withheld, with the reason
    assert "pseudonymous patient ids" in page
    table1 = pd.read_csv(out / "table1.csv")
    assert not table1.astype(str).apply(lambda c: c.str.contains("birth_date|death_date|note")).any().any()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["cohort"] == "cohorts" and prov["input"]["path"] == "fusion/latents.zarr"
    # the hand-over folder: the allow-listed tables, figures, report and Atlas; no patient images by default
    export = paths["export"]
    assert {"subtypes.csv", "subtypes.parquet", "subtypes.h5ad", "data_dictionary.csv", "provenance.json",
            "table1.csv", "validity.json", "report.html", "README.txt", "figures", "atlas"} <= {
        p.name for p in export.iterdir()}
    assert not {"metrics.json", "run.json", "config.resolved.yaml"} & {p.name for p in export.iterdir()}
    assert not (export / "figures" / "montage.png").exists() and (out / "figures" / "montage.png").is_file()
    assert "Sample images per subtype" not in (export / "report.html").read_text()
    assert "Sample images per subtype" in page
    # same key -> same pseudonyms on a rerun (collaborators' answers can be linked back)
    again = run_clustering(ClusteringConfig(**CFG), cohort=run / "cohorts", latents=run / "fusion" / "latents.zarr",
                           out=run / "clustering2")
    assert pd.read_csv(again["subtypes_csv"]).patient_id.tolist() == sub.patient_id.tolist()


def test_patient_images_leave_only_with_the_explicit_switch(identifying_cohort) -> None:
    run, _ = identifying_cohort
    cfg = {**CFG, "atlas": {"thumbnails": 32}}
    without = run_clustering(ClusteringConfig(**cfg), cohort=run / "cohorts", latents=run / "fusion" / "latents.zarr",
                             out=run / "clustering_no_images")["export"]
    assert not (without / "atlas").exists() and not (without / "figures" / "montage.png").exists()
    assert "Patient images: withheld" in (without / "report.html").read_text()
    cfg["export"] = {**CFG["export"], "images": True}
    with_images = run_clustering(ClusteringConfig(**cfg), cohort=run / "cohorts",
                                 latents=run / "fusion" / "latents.zarr", out=run / "clustering_images")["export"]
    assert (with_images / "atlas" / "open_atlas.py").is_file() and (with_images / "figures" / "montage.png").is_file()
    assert "Sample images per subtype" in (with_images / "report.html").read_text()


def test_raw_ids_only_with_the_explicit_switch(identifying_cohort) -> None:
    run, planted = identifying_cohort
    cfg = ClusteringConfig(**{**CFG, "export": {**CFG["export"], "raw_ids": True}, "atlas": {"application": False}})
    out = run / "clustering_raw"
    run_clustering(cfg, cohort=run / "cohorts", latents=run / "fusion" / "latents.zarr", out=out)
    assert set(pd.read_csv(out / "subtypes.csv").patient_id) == set(planted["patient_id"])
    assert "RAW patient ids exported on purpose (export.raw_ids: true)" in (out / "report.html").read_text()
    others = {k: v for k, v in planted.items() if k not in ("patient_id", "image_id")}
    assert _leaks(out, others, run) == []


@pytest.mark.parametrize("column,why", [
    ("birth_date", "name suggests names, dates"), ("first_name", "name suggests"), ("admission_time", "dates/times"),
    ("free_code", r"looks like a long digit id \(record or accession number\) \(row 0; value not shown\)"),
    ("death_date", "name suggests")])
def test_identifying_allow_listed_column_is_refused_before_any_work(column, why, identifying_cohort, tmp_path) -> None:
    run, planted = identifying_cohort
    cfg = ClusteringConfig(**{**CFG, "export": {"columns": ["age", column]}})
    with pytest.raises(ExportError, match=why) as err:
        run_clustering(cfg, cohort=run / "cohorts", latents=run / "fusion" / "latents.zarr", out=tmp_path / "c")
    assert f"'{column}'" in str(err.value) and not any(v in str(err.value) for v in planted[column])
    assert not (tmp_path / "c" / "subtypes.csv").exists()


@pytest.mark.parametrize("name", ["PatientName", "birthdate", "admit_dt", "telephone", "address1", "nhs_number",
                                  "study_uid", "StudyInstanceUID", "discharge_time", "mrn", "AccessionNumber",
                                  "email", "free_text", "dateOfBirth", "hadm_id", "ssn"])
def test_broad_identifying_names(name: str) -> None:
    assert identifying_name(name)


@pytest.mark.parametrize("name", ["age", "sex", "lactate", "pf_ratio", "time", "event", "death", "icu", "label_Edema",
                                  "vasopressors", "site", "dataset", "view", "candidate_score"])
def test_plain_names_pass(name: str) -> None:
    assert not identifying_name(name)


@pytest.mark.parametrize("values,what", [
    (["ok", "fine", "jo@example.org"], "an e-mail address"), (["A", "B", "(555) 123-4567"], "a phone number"),
    (["x", "y", "03/04/2019"], "a date"), (["x", "y", "12 Mar 2019"], "a date"), (["x", "y", "1.2.840.10008.5.1"], "a DICOM UID"),
    (["a", "b", "ID 00123456"], "a long digit id"), (["a", "b", "/data/pt/img.png"], "a file path"),
    (["a", "b", "patient was admitted after a fall at home"], "free text")])
def test_value_patterns_report_kind_and_position(values, what) -> None:
    found = identifying_values(pd.Series(values))
    assert found is not None and found[0].startswith(what) and found[1] == 2
    assert identifying_values(pd.Series([1234567, 2, 3])) == ("a long digit id (record or accession number)", 0)
    assert identifying_values(pd.Series(["F", "M", "ARDS, moderate", None])) is None
    assert identifying_values(pd.Series([61.5, 72.0, np.nan])) is None


def test_guard_frame_keeps_only_allowed_columns() -> None:
    df = pd.DataFrame({"patient_id": ["P-1", "P-2"], "age": [50, 60], "name": ["a", "b"], "bed": ["x", "y"]})
    assert list(guard_frame(df, allowed=["age"], keep=["patient_id"]).columns) == ["patient_id", "age"]
    with pytest.raises(ExportError, match="'name'"):
        guard_frame(df, allowed=["age", "name"], where="site table")
    assert list(guard_frame(df, allowed=["name"], allow_identifying=["name"]).columns) == ["name"]
