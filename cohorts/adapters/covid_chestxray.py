"""ieee8023 covid-chestxray-dataset: ``metadata.csv`` (one row per image) + image files.

Image labels (``label_<name>``, Int8):
* ``finding_labels``: 1 when the term is one of the comma-separated ``finding`` values
  (``"COVID-19, ARDS"`` counts for both), 0 otherwise, <NA> when ``finding`` is ``todo``/blank.
* ``flag_labels``: Y/N columns, e.g. ``ICU`` from ``went_icu``, ``Death`` from ``survival`` (N = died).
Clinical table: one row per patient; features are each patient's first non-null value by
``offset``; outcomes ``death``/``icu``/``intubated`` are 1 when any of the patient's rows says so,
0 when rows say the opposite, null otherwise. ``time``/``event`` are null (the dataset has no
time of death). ``pO2_saturation`` values above 100 are not saturations (the Hannover rows carry
pO2 in mmHg there): they are set null, counted in the notes and logged.
"""
from __future__ import annotations

import logging

import pandas as pd

from ..clinical import ID_SPEC, OUTCOME_SPECS, first_by_time, spec
from ..config import CovidChestxraySource
from ..labels import code_flags, code_terms, label_column
from ..manifest import conform
from .base import AdapterResult, joined_paths, read_table, require_columns, under

log = logging.getLogger(__name__)
DATASET = "covid-chestxray"
FULL_DATE = r"(?:\d{1,2},? \d{4}$)|(?:^\d{1,2}/\d{1,2}/\d{4}$)"
FEATURES = {
    "sex": spec("categorical", "feature", "sex", categories=["M", "F"]),
    "age": spec("continuous", "feature", "age at the first image", unit="years", min=0.0, max=120.0),
    "temperature": spec("continuous", "feature", "body temperature", unit="degC", min=30.0, max=45.0),
    "pO2_saturation": spec("continuous", "feature", "oxygen saturation", unit="%", min=0.0, max=100.0),
    "leukocyte_count": spec("continuous", "feature", "leukocyte count", unit="10^9/L", min=0.0),
    "neutrophil_count": spec("continuous", "feature", "neutrophil count", unit="10^9/L", min=0.0),
    "lymphocyte_count": spec("continuous", "feature", "lymphocyte count", unit="10^9/L", min=0.0),
}
OUTCOMES = {"death": "Death", "icu": "ICU", "intubated": "Intubated"}   # clinical column -> flag label


def _clinical(raw: pd.DataFrame, df: pd.DataFrame, cfg: CovidChestxraySource) -> tuple[pd.DataFrame, dict]:
    rows = pd.DataFrame({"patient_id": df["patient_id"].astype(str), "offset_days": df["offset_days"]})
    for col in FEATURES:
        rows[col] = raw[col] if col == "sex" else pd.to_numeric(raw[col], errors="coerce")
    table = first_by_time(rows, order="offset_days", columns=list(FEATURES))
    schema = {"patient_id": ID_SPEC, **FEATURES}
    for out_col, label in OUTCOMES.items():
        if label in cfg.flag_labels:
            per_patient = df.groupby("patient_id")[label_column(label)].max()
            table[out_col] = table["patient_id"].map(per_patient).astype("Int8")
            schema[out_col] = spec("binary", "outcome", f"1 if any row of the patient has {label}=1 "
                                   f"(from '{cfg.flag_labels[label].column}')")
    table["time"] = float("nan")
    table["event"] = pd.array([pd.NA] * len(table), dtype="Int8")
    schema.update(OUTCOME_SPECS)
    return table, {"columns": schema}


def load_covid_chestxray(cfg: CovidChestxraySource) -> AdapterResult:
    """Read ``metadata.csv`` into manifest form plus a per-patient clinical table."""
    meta_path = under(cfg.root, cfg.metadata)
    raw = read_table(meta_path, what="covid-chestxray metadata.csv", dtype=str)
    require_columns(raw, ["patientid", "offset", "sex", "age", "finding", "view", "date", "location",
                          "filename", cfg.image_column, *(f.column for f in cfg.flag_labels.values()),
                          *(c for c in FEATURES if c != "sex")], source=meta_path)
    stem = raw[cfg.image_column].str.rsplit("/", n=1).str[-1].str.rsplit(".", n=1).str[0]
    date = raw["date"].where(raw["date"].str.contains(FULL_DATE, na=False))
    df = pd.DataFrame({
        "image_id": DATASET + "/" + stem,
        "patient_id": DATASET + "/" + raw["patientid"],
        "path": joined_paths(cfg.root, raw[cfg.image_column]),
        "view": raw["view"],
        "acquired_at": pd.to_datetime(date, format="mixed", errors="coerce"),
        "offset_days": pd.to_numeric(raw["offset"], errors="coerce"),
        "offset_reference": "symptom onset or hospitalisation",   # as the dataset defines `offset`
        "year": pd.to_numeric(raw["date"].str.extract(r"(\d{4})", expand=False), errors="coerce").astype("Int64"),
        "site": raw["location"],
        "finding": raw["finding"],
        "source_file": raw["filename"],
    })
    labels = code_terms(raw["finding"], cfg.finding_labels, separator=",", unknown=["todo"])
    for name, flag in cfg.flag_labels.items():
        labels[label_column(name)] = code_flags(raw[flag.column], positive=flag.positive, negative=flag.negative)
    df = pd.concat([df, labels], axis=1)
    sat = pd.to_numeric(raw["pO2_saturation"], errors="coerce")
    invalid_sat = sat > 100
    if invalid_sat.any():
        log.warning("%s: %d pO2_saturation value(s) above 100 %% set null (not saturations)", meta_path,
                    int(invalid_sat.sum()))
        raw = raw.assign(pO2_saturation=sat.mask(invalid_sat))
    clinical, schema = _clinical(raw, df, cfg)
    return AdapterResult(conform(df, dataset=DATASET), clinical, schema,
                         notes={"pO2_saturation_above_100_set_null": int(invalid_sat.sum())})
