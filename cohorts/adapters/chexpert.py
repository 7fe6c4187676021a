"""CheXpert: ``Path`` column ``.../train/patientNNNNN/studyN/viewN_frontal.jpg``, 1/0/-1/blank labels.

Patient and study come from the path; ``view`` is the ``AP/PA`` value for frontal images and
``Lateral`` for lateral ones (so the frontal filter drops laterals and the 17 frontal rows coded LL/RL).
"""
from __future__ import annotations

import pandas as pd

from ..config import ChexpertSource
from ..manifest import conform
from .base import AdapterResult, joined_paths, read_table, require_columns
from .chexpert_style import chexpert_labels

PATH_PATTERN = r"(?P<patient>patient\d+)/(?P<study>study\d+)/(?P<view>view\d+)_"


def load_chexpert(cfg: ChexpertSource) -> AdapterResult:
    """Read the CheXpert csv into manifest form; ``path`` is null without ``image_root``."""
    raw = read_table(cfg.table, what="CheXpert table")
    require_columns(raw, ["Path", "Frontal/Lateral", "AP/PA", "Sex", "Age"], source=cfg.table)
    parts = raw["Path"].str.extract(PATH_PATTERN)
    bad = parts["patient"].isna()
    if bad.any():
        raise ValueError(f"{cfg.table}: {int(bad.sum())} Path value(s) lack patientN/studyN/viewN_, "
                         f"e.g. row {int(bad.to_numpy().nonzero()[0][0])}: {raw.loc[bad, 'Path'].iloc[0]!r}")
    patient = "chexpert/" + parts["patient"]
    study = patient + "/" + parts["study"]
    frontal = raw["Frontal/Lateral"].eq("Frontal")
    df = pd.DataFrame({
        "image_id": study + "/" + parts["view"],
        "patient_id": patient,
        "study_id": study,
        "path": joined_paths(cfg.image_root, raw["Path"]),
        "view": raw["AP/PA"].where(frontal, "Lateral"),
        "age": pd.to_numeric(raw["Age"], errors="coerce"),
        "sex": raw["Sex"],
    })
    df = pd.concat([df, chexpert_labels(raw, cfg.labels, source=str(cfg.table))], axis=1)
    return AdapterResult(conform(df, dataset="chexpert"))
