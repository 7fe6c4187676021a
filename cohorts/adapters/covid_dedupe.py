"""De-duplicate covid-chestxray-dataset against the Hannover repository (both as AdapterResults).

covid-chestxray-dataset holds 92 images from Hannover (``location`` = Hannover Medical School)
under its own patient ids. 82 of their file stems equal a Hannover ``image_id``: those are the
same radiographs (covid-chestxray's copy is a square crop; crop-search pixel correlation >= 0.93 for 81
pairs, the 82nd Hannover copy was deskewed: tests/cohorts/test_real_tables.py), so one copy is kept:
**the Hannover row**, because Hannover is the primary source (original aspect ratio instead of
a square crop, CC BY 3.0, and the labs / ICU / death offsets that give time-to-event outcomes).
Image labels that only covid-chestxray has (e.g. ``label_COVID19`` from ``finding``) are copied
onto the kept row; where both sources give a label and disagree, Hannover's value is kept and the
disagreement is counted. Every covid-chestxray patient with a matched image is renamed to the
Hannover patient id, so the remaining (unmatched) images of that patient stay with the same
patient in patient-grouped folds; their ids are listed in the notes (the 10 in the June 2020
snapshot are other radiographs of the same patients, absent from the Hannover snapshot: none
correlates above 0.9 with any of the 243 Hannover images). Their ``offset_days`` keep covid-chestxray's reference (``offset_reference`` says which): the offsets of
matched pairs do not differ by one constant per patient, so no re-referencing is attempted.
Clinical variables only covid-chestxray gives (e.g. ``intubated``) are added to the Hannover
patient's row.
"""
from __future__ import annotations

import logging

import pandas as pd

from ..labels import label_columns
from .base import AdapterResult

log = logging.getLogger(__name__)
HANNOVER_SITE = "Hannover"


def _stem(names: pd.Series) -> pd.Series:
    return names.astype("string").str.rsplit(".", n=1).str[0]


def merge_hannover_duplicates(covid: AdapterResult, hannover: AdapterResult) -> tuple[AdapterResult, AdapterResult]:
    """Drop covid-chestxray copies of Hannover images; return the updated (covid, hannover) pair."""
    cm, hm = covid.manifest, hannover.manifest.copy()
    from_hannover = cm["site"].str.contains(HANNOVER_SITE, na=False)
    stem = _stem(cm["source_file"])
    h_index = pd.Series(hm.index, index=hm["source_file"].astype(str))
    dup = from_hannover & stem.isin(h_index.index)
    pairs = pd.DataFrame({"c_row": cm.index[dup], "h_row": h_index[stem[dup]].to_numpy()})
    pairs["c_patient"] = cm.loc[pairs["c_row"], "patient_id"].to_numpy()
    pairs["h_patient"] = hm.loc[pairs["h_row"], "patient_id"].to_numpy()
    per_patient = pairs.groupby("c_patient")["h_patient"].nunique()
    if (per_patient > 1).any():
        raise ValueError(f"covid-chestxray patient {per_patient[per_patient > 1].index[0]} matches several "
                         "Hannover patients; set deduplicate: false and check the data")
    patient_map = pairs.drop_duplicates("c_patient").set_index("c_patient")["h_patient"]

    conflicts: dict[str, int] = {}
    for col in label_columns(cm):
        c_vals = cm.loc[pairs["c_row"], col].to_numpy()
        if col not in hm.columns:
            hm[col] = pd.array([pd.NA] * len(hm), dtype="Int8")
        h_vals = hm.loc[pairs["h_row"], col]
        conflicts[col] = int((h_vals.notna().to_numpy() & pd.notna(c_vals) & (h_vals.to_numpy() != c_vals)).sum())
        hm.loc[pairs["h_row"], col] = h_vals.fillna(pd.Series(c_vals, index=h_vals.index, dtype="Int8"))
    hm["also_in"] = pd.Series(pd.NA, index=hm.index, dtype="string")
    hm.loc[pairs["h_row"], "also_in"] = cm.loc[pairs["c_row"], "image_id"].to_numpy()

    rest = cm.loc[~dup].copy()
    rest["patient_id"] = rest["patient_id"].map(patient_map).fillna(rest["patient_id"])
    unmatched = rest.loc[from_hannover[~dup], "image_id"].astype(str).tolist()

    clinical, schema = covid.clinical, covid.schema
    h_clinical, h_schema = hannover.clinical, hannover.schema
    if clinical is not None and h_clinical is not None:
        moved = clinical[clinical["patient_id"].isin(patient_map.index)].copy()
        moved["patient_id"] = moved["patient_id"].map(patient_map)
        only_covid = [c for c in clinical.columns if c not in h_clinical.columns]
        extra = moved[["patient_id", *only_covid]].groupby("patient_id").first().reset_index()
        h_clinical = h_clinical.merge(extra, on="patient_id", how="left")
        h_schema = {"columns": {**h_schema["columns"], **{c: schema["columns"][c] for c in only_covid}}}
        clinical = clinical[~clinical["patient_id"].isin(patient_map.index)].reset_index(drop=True)

    notes = {"hannover_duplicates_dropped_from_covid_chestxray": int(dup.sum()),
             "covid_chestxray_patients_renamed_to_hannover": int(len(patient_map)),
             "hannover_located_images_without_hannover_copy": unmatched,
             "label_conflicts_kept_hannover": {k: v for k, v in conflicts.items() if v}}
    log.info("de-duplication: dropped %d covid-chestxray copies of Hannover images, renamed %d patients, "
             "%d Hannover-located images have no Hannover copy", int(dup.sum()), len(patient_map), len(unmatched))
    return (AdapterResult(rest.reset_index(drop=True), clinical, schema, {**covid.notes, **notes}),
            AdapterResult(hm, h_clinical, h_schema, hannover.notes))
