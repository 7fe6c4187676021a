"""Hannover Medical School covid-19-image-repository: ``data.csv`` (one row per image) + ``png/``.

All offsets in ``data.csv`` are days relative to the image. The reference time here is hospital
admission: an image lies ``-admission_offset`` days after it (``offset_days``).

Outcomes (clinical table, per patient):
* ``event`` = 1 when a ``death_offset`` is recorded; ``time`` = days from admission to death
  (``death_offset - admission_offset``, identical on every row of a patient).
* ``event`` = 0 otherwise, censored at the last day the patient is known alive: the latest image,
  lab or ICU-release day after admission (0 when all of them precede admission).
* ``icu`` = 1 when an ICU admission is recorded, else 0 (the repository records ICU stays for its
  whole cohort; an empty field means none). Image labels ``label_Death``/``label_ICU`` carry
  the same patient-level facts so benchmarks can use them. ``cohort_labels`` (config) sets labels that
  hold for every image by enrolment (the repository holds COVID-19 patients only: ``COVID19: 1``).
Labs: the clinical value is the patient's earliest recorded measurement (by day relative to admission,
which may precede it); nothing is imputed.
``-inf``/``inf`` mean below/above the detection limit: the value is set null and the column
``<lab>_limit`` says ``below``/``above`` (``within`` for a finite value, null when not measured),
so a censored lab is never read as a number.
Units are not stated by the source; the ones in the schema are inferred from the value ranges.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..clinical import ID_SPEC, OUTCOME_SPECS, spec
from ..config import HannoverSource
from ..labels import label_column
from ..manifest import conform
from .base import AdapterResult, joined_paths, read_table, require_columns, under

DATASET = "hannover"
LABS = {   # data.csv prefix -> (clinical column, unit, description)
    "crp": ("crp", "mg/L", "C-reactive protein"),
    "d-dimer": ("d_dimer", "mg/L", "D-dimer"),
    "factor_xii": ("factor_xii", "%", "coagulation factor XII activity"),
    "ldh": ("ldh", "U/L", "lactate dehydrogenase"),
    "lymphocytes": ("lymphocytes", "10^9/L", "lymphocyte count"),
    "neutrophils": ("neutrophils", "10^9/L", "neutrophil count"),
    "pco2": ("pco2", "mmHg", "arterial pCO2"),
    "po2": ("po2", "mmHg", "arterial pO2"),
}
OFFSETS = ["admission_offset", "icu_admission_offset", "icu_release_offset", "death_offset"]


def _baseline_labs(raw: pd.DataFrame, day: pd.Series) -> tuple[pd.DataFrame, dict]:
    """Earliest measurement of each lab per patient; +-inf -> null value + ``<lab>_limit``."""
    parts, schema = [], {}
    for prefix, (col, unit, desc) in LABS.items():
        val = pd.to_numeric(raw[f"{prefix}_val"], errors="coerce")
        lab = pd.DataFrame({"patient_id": raw["patient_id"], "day": pd.to_numeric(raw[f"{prefix}_offset"],
                            errors="coerce") + day, "val": val}).dropna(subset=["val"])
        first = lab.sort_values(["patient_id", "day"], kind="stable").groupby("patient_id").first()
        limit = pd.Series(np.select([first["val"] == -np.inf, first["val"] == np.inf], ["below", "above"], "within"),
                          index=first.index)
        parts.append(pd.DataFrame({col: first["val"].where(np.isfinite(first["val"])),
                                   f"{col}_limit": limit.astype("string")}))
        schema[col] = spec("continuous", "feature", f"{desc}, earliest recorded value "
                           "(null when censored, see _limit)", unit=unit, min=0.0)
        schema[f"{col}_limit"] = spec("categorical", "feature", f"{desc} at that measurement: within, below "
                                      "or above the detection limit", categories=["below", "within", "above"])
    return pd.concat(parts, axis=1), schema


def _outcomes(raw: pd.DataFrame, day: pd.Series) -> pd.DataFrame:
    """Per patient: time (days since admission), event, icu, icu_day (days since admission to the ICU admission)."""
    off = raw[OFFSETS].apply(pd.to_numeric, errors="coerce")
    lab_days = raw[[f"{p}_offset" for p in LABS]].apply(pd.to_numeric, errors="coerce").max(axis=1) + day
    seen = pd.concat([day, lab_days, off["icu_release_offset"] + day], axis=1).max(axis=1)
    per = pd.DataFrame({"patient_id": raw["patient_id"], "death_day": off["death_offset"] + day,
                        "seen": seen, "icu": off["icu_admission_offset"].notna(),
                        "icu_day": off["icu_admission_offset"] + day}).groupby("patient_id")
    death_day = per["death_day"].max()   # identical on every row of a patient that died
    event = death_day.notna()
    time = death_day.where(event, per["seen"].max().clip(lower=0.0))
    return pd.DataFrame({"time": time, "event": event.astype("Int8"), "icu": per["icu"].any().astype("Int8"),
                         "icu_day": per["icu_day"].min()})


def load_hannover(cfg: HannoverSource) -> AdapterResult:
    """Read ``data.csv`` into manifest form plus a per-patient clinical table with time/event."""
    table_path = under(cfg.root, cfg.table)
    raw = read_table(table_path, what="Hannover data.csv", dtype={"patient_id": str, "image_id": str})
    require_columns(raw, ["patient_id", "image_id", "sex", "projection", "modality", *OFFSETS,
                          *(f"{p}_{s}" for p in LABS for s in ("offset", "val"))], source=table_path)
    day = -pd.to_numeric(raw["admission_offset"], errors="coerce")   # image day since admission
    outcomes = _outcomes(raw, day)
    patient = DATASET + "/" + raw["patient_id"]
    df = pd.DataFrame({
        "image_id": DATASET + "/" + raw["image_id"],
        "patient_id": patient,
        "path": joined_paths(under(cfg.root, cfg.image_dir), raw["image_id"] + ".png"),
        "view": raw["projection"].str.upper(),
        "offset_days": day,
        "offset_reference": "admission",
        "modality": raw["modality"],
        "site": "Hannover Medical School, Hannover, Germany",
        "source_file": raw["image_id"],
        label_column("ICU"): raw["patient_id"].map(outcomes["icu"]).astype("Int8"),
        label_column("Death"): raw["patient_id"].map(outcomes["event"]).astype("Int8"),
        **{label_column(name): pd.Series(value, index=raw.index, dtype="Int8")
           for name, value in cfg.cohort_labels.items()},
    })
    labs, lab_schema = _baseline_labs(raw, day)
    sex = raw.groupby("patient_id")["sex"].first().str.upper()
    clinical = pd.concat([sex.rename("sex"), labs, outcomes], axis=1)
    clinical["death"] = clinical["event"]
    clinical = clinical.rename_axis("patient_id").reset_index()
    clinical["patient_id"] = DATASET + "/" + clinical["patient_id"]
    schema = {"patient_id": ID_SPEC, "sex": spec("categorical", "feature", "sex", categories=["M", "F"]),
              **lab_schema, **OUTCOME_SPECS,
              "icu": spec("binary", "outcome", "1 if an ICU admission is recorded"),
              "icu_day": spec("continuous", "outcome", "days from hospital admission to the ICU admission (null: none "
                                                       "recorded)", unit="days"),
              "death": spec("binary", "outcome", "1 if a death is recorded (same as event)")}
    clinical = clinical[list(schema)]
    notes = {"censored_lab_values": {p: int(np.isinf(pd.to_numeric(raw[f"{p}_val"], errors="coerce")).sum())
                                     for p in LABS}}
    return AdapterResult(conform(df, dataset=DATASET), clinical, {"columns": schema}, notes=notes)
