"""Patient ids of an embeddings import, checked against the manifest's ``patient_id``.

Patient-grouped folds protect against leakage only when ``patient_id`` names the patient. The source study's
CSV has one image id per row and keeps patient ids in a separate table; a cohort built from it with
``patient_id = image id`` splits a patient's repeat studies across folds, exactly as the study's image-level
folds did. :func:`patient_check` states, in words, when an import cannot rule that out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from .config import PrecomputedSpec


def read_patient_ids(spec: PrecomputedSpec, ids: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """Patient id per file row (``ids`` (n,) the file's ids; None where unknown) and the source in words.

    From ``spec.patient_table`` (columns ``id_column`` and ``patient_column``) when given, else from the
    file's own ``patient_column`` (.csv/.parquet). ``(None, None)`` when no patient id was configured.
    """
    if spec.patient_column is None:
        return None, None
    source = Path(spec.patient_table) if spec.patient_table is not None else Path(spec.path)
    if source.suffix.lower() not in (".csv", ".parquet"):
        raise ValueError(f"{source}: patient ids are read from .csv or .parquet files; give patient_table")
    if not source.is_file():
        raise ValueError(f"patient_table not found: {source}")
    cols = [spec.id_column, spec.patient_column]
    csv = source.suffix.lower() == ".csv"
    header = list(pd.read_csv(source, nrows=0).columns) if csv else pq.read_schema(source).names
    absent = [c for c in cols if c not in header]
    if absent:
        raise ValueError(f"{source}: column(s) {absent} missing (patient ids need {cols}; set id_column / "
                         "patient_column)")
    table = (pd.read_csv(source, usecols=cols, dtype=str) if csv
             else pd.read_parquet(source, columns=cols).astype(str))
    table = table.drop_duplicates(spec.id_column)
    patients = table.set_index(spec.id_column)[spec.patient_column].reindex(np.asarray(ids, dtype=str))
    where = f"table {source.name}" if spec.patient_table is not None else source.name
    return patients.to_numpy(dtype=object), f"column {spec.patient_column!r} of {where}"


def patient_check(image_rows: np.ndarray, file_patients: np.ndarray | None, manifest: pd.DataFrame, *,
                  source: str | None, match_column: str) -> dict[str, Any]:
    """What the import knows about patients, with a ``warning`` in words where the folds may leak.

    ``image_rows`` (n,): manifest rows of the imported images (one per image); ``file_patients`` (n,) their
    patient ids from the import (None: not given). Returns source, n_images, n_patients (from the file),
    manifest_patients, split_patients (file patients whose images carry several manifest patient ids),
    patients_equal_images (every manifest patient has one imported image) and warning (str or None).
    """
    rows = np.asarray(image_rows, dtype=np.int64)
    man = manifest["patient_id"].astype(str).to_numpy()[rows] if "patient_id" in manifest.columns else None
    n_images = len(rows)
    out: dict[str, Any] = {"source": source, "n_images": n_images, "n_patients": None,
                           "manifest_patients": None if man is None else int(len(np.unique(man))),
                           "split_patients": 0, "patients_equal_images": None, "warning": None}
    if man is not None:
        out["patients_equal_images"] = bool(out["manifest_patients"] == n_images)
    if file_patients is None:
        if man is None or out["patients_equal_images"]:
            out["warning"] = (f"imported without patient ids (set patient_column or patient_table), and the "
                              f"manifest gives each of its {n_images} images its own patient_id: the folds are "
                              "split by image, so if any patient has repeat studies their images land in "
                              "different folds and AUROC is inflated, as in the source study's image-level folds")
        else:
            out["warning"] = (f"imported without patient ids (set patient_column or patient_table): the folds "
                              f"group by the manifest's patient_id ({n_images} images, {out['manifest_patients']} "
                              "patients), which the import could not check")
        return out
    fp = pd.Series(file_patients, dtype=object)
    unknown = int(fp.isna().sum())
    out["n_patients"] = int(fp.dropna().nunique())
    if man is not None:
        known = fp.notna().to_numpy()
        per_patient = pd.DataFrame({"p": fp[known].to_numpy(), "m": man[known]}).groupby("p")["m"].nunique()
        split = per_patient[per_patient > 1]
        out["split_patients"] = int(len(split))
        if len(split):
            example = split.index[0]
            n_split_images = int(fp.isin(split.index).sum())
            out["warning"] = (
                f"the manifest's patient_id splits {len(split)} patients (by {source}) over several ids "
                f"({n_split_images} of {n_images} images; e.g. patient {example!r} has "
                f"{int(per_patient[example])} manifest patient_ids)"
                + (": the manifest's patients are its images while the cohort has repeat studies"
                   if out["patients_equal_images"] else "")
                + "; folds grouped by these ids put one patient's images in several folds and inflate AUROC as in "
                f"the source study. Rebuild the cohort with the real patient ids (match column {match_column!r})")
    if unknown and out["warning"] is None:
        out["warning"] = f"{unknown} of {n_images} imported images have no patient id in {source}"
    return out
