"""CheXpert-labeler tables (CheXpert ``train.csv`` and MIMIC-CXR ``chexpert.csv``): 1 / 0 / -1 / blank."""
from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from ..labels import code_numeric, label_column


def chexpert_labels(raw: pd.DataFrame, mapping: Mapping[str, str], *, source: str) -> pd.DataFrame:
    """Label columns ``label_<name>`` (Int8) from the CheXpert-coded columns named in ``mapping``."""
    missing = [c for c in mapping.values() if c not in raw.columns]
    if missing:
        raise ValueError(f"{source}: label column(s) {missing} not found; columns are {list(raw.columns)}")
    return pd.DataFrame({label_column(name): code_numeric(raw[col], source=f"{source} column '{col}'")
                         for name, col in mapping.items()}, index=raw.index)
