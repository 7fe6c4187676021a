"""Label coding shared by every adapter: 1 present, 0 absent, -1 uncertain, <NA> not mentioned.

Manifest label columns are named ``label_<Name>`` and stored as pandas nullable ``Int8``.
The uncertain-label policy (``ignore`` / ``zeros`` / ``ones``) is applied once, after all
adapters ran: ``ignore`` keeps -1 in the manifest (the sampler and the probes then use only
0/1 rows), ``zeros``/``ones`` rewrite -1 to 0/1.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

LABEL_PREFIX = "label_"
UNCERTAIN_POLICIES = ("ignore", "zeros", "ones")
VALID_CODES = (-1, 0, 1)


def label_column(name: str) -> str:
    """Manifest column of label ``name`` (``Opacity`` -> ``label_Opacity``)."""
    return f"{LABEL_PREFIX}{name}"


def label_columns(df: pd.DataFrame) -> list[str]:
    """The manifest's ``label_*`` columns, in order."""
    return [c for c in df.columns if c.startswith(LABEL_PREFIX)]


def code_numeric(values: pd.Series, *, source: str) -> pd.Series:
    """CheXpert-style numbers (1.0 / 0.0 / -1.0 / blank) -> Int8; anything else is a ValueError."""
    num = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & (values.astype(str).str.strip() != "") & ~num.isin(VALID_CODES)
    if bad.any():
        first = values[bad].iloc[0]
        raise ValueError(f"{source}: {int(bad.sum())} value(s) not in 1/0/-1/blank, e.g. {first!r} "
                         f"at row {values[bad].index[0]}; fix the table or map the column differently")
    return num.astype("Int8")


def code_flags(values: pd.Series, *, positive: Iterable[str], negative: Iterable[str]) -> pd.Series:
    """Text flags -> Int8: values in ``positive`` -> 1, in ``negative`` -> 0, everything else <NA>."""
    text = values.astype("string").str.strip()
    out = pd.Series(pd.NA, index=values.index, dtype="Int8")
    out[text.isin(list(positive)).fillna(False)] = 1
    out[text.isin(list(negative)).fillna(False)] = 0
    return out


def code_terms(values: pd.Series, terms: Mapping[str, str], *, separator: str,
               unknown: Iterable[str] = ()) -> pd.DataFrame:
    """Multi-finding text (``"Atelectasis|Effusion"``) -> one Int8 column per label name.

    A label is 1 when its term is one of the row's findings, 0 otherwise; rows whose text is
    blank or in ``unknown`` (e.g. ``"todo"``) get <NA> for every label.
    """
    text = values.fillna("").astype(str).str.strip()
    missing = ((text == "") | text.isin(list(unknown))).to_numpy()
    parts = text.reset_index(drop=True).str.split(separator).explode().str.strip()
    out = {}
    for name, term in terms.items():
        hit = parts.eq(term).groupby(level=0).any().to_numpy()
        col = pd.array(np.where(hit, 1, 0), dtype="Int8")
        col[missing] = pd.NA
        out[label_column(name)] = col
    return pd.DataFrame(out, index=values.index)


def apply_uncertain_policy(df: pd.DataFrame, *, policy: str) -> pd.DataFrame:
    """Return ``df`` with -1 labels kept (``ignore``) or rewritten to 0 (``zeros``) / 1 (``ones``)."""
    if policy not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain policy {policy!r} is not one of {UNCERTAIN_POLICIES}")
    if policy == "ignore":
        return df
    out = df.copy()
    target = 0 if policy == "zeros" else 1
    for col in label_columns(out):
        out[col] = out[col].mask((out[col] == -1).fillna(False), target)
    return out


def label_counts(df: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per label column: counts of 1, 0, -1 and missing, per dataset, as ``{dataset/label: {...}}``."""
    out: dict[str, dict[str, int]] = {}
    for dataset, part in df.groupby("dataset", sort=True):
        for col in label_columns(part):
            s = part[col]
            if s.isna().all():
                continue
            out[f"{dataset}/{col[len(LABEL_PREFIX):]}"] = {
                "positive": int((s == 1).sum()), "negative": int((s == 0).sum()),
                "uncertain": int((s == -1).sum()), "missing": int(s.isna().sum()),
            }
    return out
