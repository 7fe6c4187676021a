"""Clinical table encoding from ``clinical_schema.json`` (read by :mod:`cohorts.folder`, typed by
:func:`cohorts.clinical.column_specs`; see docs/data-contracts.md).

:class:`ClinicalEncoder` is fitted on training rows only and turns a clinical DataFrame into a
dense ``(N, C)`` float32 matrix plus an ``(N, C)`` observation mask:

* continuous: standardized with the training mean / SD (values checked against the declared range);
* binary: 0/1 (``True``/``False`` accepted);
* categorical: one-hot over the declared categories (or those seen in training when none declared).

Missing values are never imputed: they are 0 in ``values`` and ``False`` in ``mask``; models must
only use ``values`` where ``mask`` is set. Encoded columns are ordered continuous, binary, then the
one-hot groups of categorical variables (see :attr:`ClinicalEncoder.variables`).
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from cohorts.clinical import TYPES, ColumnSpec, ColumnType

log = logging.getLogger(__name__)


class SchemaError(ValueError):
    """clinical_schema.json or clinical.parquet do not match the contract."""


@dataclass(frozen=True)
class EncodedVariable:
    """Where one clinical variable lives in the encoded matrix: columns ``[start, stop)``."""

    name: str
    type: ColumnType
    start: int
    stop: int


@dataclass(frozen=True)
class ClinicalLayout:
    """Static shape info a network needs: counts of continuous/binary columns and one-hot group sizes."""

    n_continuous: int
    n_binary: int
    categorical_sizes: tuple[int, ...]

    @property
    def width(self) -> int:
        """Total number of encoded columns ``C``."""
        return self.n_continuous + self.n_binary + sum(self.categorical_sizes)


@dataclass
class EncodedClinical:
    """Encoded table: ``values`` (N, C) float32 (0 where missing), ``mask`` (N, C) bool."""

    values: np.ndarray
    mask: np.ndarray


@dataclass
class _Stats:
    name: str
    type: ColumnType
    unit: str | None
    min: float | None
    max: float | None
    mean: float = 0.0
    std: float = 1.0
    categories: tuple[str, ...] = ()


class ClinicalEncoder:
    """Schema-driven encoder of clinical feature columns; fit on training rows only."""

    def __init__(self, *, out_of_range: Literal["error", "mask"] = "error") -> None:
        self.out_of_range = out_of_range
        self._stats: list[_Stats] = []
        self.report: dict[str, int] = {}   # column -> number of values masked as out of range (last transform)

    # ------------------------------------------------------------------ fit / transform
    def fit(self, table: pd.DataFrame, schema: dict[str, ColumnSpec], *,
            columns: list[str] | None = None, exclude: list[str] = ()) -> ClinicalEncoder:
        """Learn means/SDs and category lists from ``table`` (training rows only).

        ``columns`` defaults to every ``role == "feature"`` column of ``schema``. Columns named in
        ``columns`` but absent from ``table`` or ``schema`` raise :class:`SchemaError`.
        """
        names = columns if columns is not None else [n for n, s in schema.items() if s.role == "feature"]
        names = [n for n in names if n not in set(exclude)]
        for n in names:
            if n not in schema:
                raise SchemaError(f"clinical column '{n}' is not declared in clinical_schema.json")
            if n not in table.columns:
                raise SchemaError(f"clinical column '{n}' is declared but missing from clinical.parquet")
            if schema[n].role != "feature":
                raise SchemaError(f"clinical column '{n}' has role '{schema[n].role}'; only role=feature "
                                  "columns may be model inputs")
        ordered = sorted(names, key=lambda n: TYPES.index(schema[n].type))
        self._stats = []
        for n in ordered:
            spec = schema[n]
            st = _Stats(name=n, type=spec.type, unit=spec.unit, min=spec.min, max=spec.max)
            if spec.type == "continuous":
                x = self._continuous(table[n], st, check=True)
                obs = x[~np.isnan(x)]
                if obs.size:
                    st.mean = float(obs.mean())
                    st.std = float(obs.std()) if obs.size > 1 and obs.std() > 0 else 1.0
                else:
                    log.warning("clinical column '%s' has no observed training value; it will stay masked", n)
            elif spec.type == "categorical":
                if spec.categories:
                    st.categories = spec.categories
                else:
                    st.categories = tuple(sorted(table[n].dropna().astype(str).unique()))
                if not st.categories:
                    raise SchemaError(f"categorical column '{n}' declares no categories and has no training value")
            self._stats.append(st)
        return self

    def transform(self, table: pd.DataFrame, *, schema: dict[str, ColumnSpec] | None = None) -> EncodedClinical:
        """Encode ``table`` (rows = patients) -> :class:`EncodedClinical`.

        When ``schema`` is given, its units must match the fitted ones (a unit change would make
        the stored means meaningless). Invalid values raise (or are masked and counted in
        :attr:`report` when ``out_of_range="mask"``).
        """
        if not self._stats:
            raise RuntimeError("ClinicalEncoder.transform called before fit (or load)")
        n = len(table)
        values = np.zeros((n, self.layout.width), np.float32)
        mask = np.zeros((n, self.layout.width), bool)
        self.report = {}
        for var, st in zip(self.variables, self._stats):
            if st.name not in table.columns:
                raise SchemaError(f"clinical column '{st.name}' (used by the fitted encoder) is missing")
            if schema is not None and st.name in schema and schema[st.name].unit != st.unit:
                raise SchemaError(f"clinical column '{st.name}': unit {schema[st.name].unit!r} differs from "
                                  f"the unit the encoder was fitted on ({st.unit!r}); convert the data first")
            col = table[st.name]
            if st.type == "continuous":
                x = self._continuous(col, st, check=True)
                ok = ~np.isnan(x)
                values[ok, var.start] = (x[ok] - st.mean) / st.std
                mask[:, var.start] = ok
            elif st.type == "binary":
                x = self._binary(col, st.name, table.index)
                ok = ~np.isnan(x)
                values[ok, var.start] = x[ok]
                mask[:, var.start] = ok
            else:
                codes = self._categorical(col, st, table.index)
                ok = codes >= 0
                values[np.flatnonzero(ok), var.start + codes[ok]] = 1.0
                mask[:, var.start:var.stop] = ok[:, None]
        return EncodedClinical(values=values, mask=mask)

    # ------------------------------------------------------------------ layout
    @property
    def variables(self) -> list[EncodedVariable]:
        """Encoded variables in column order (continuous, binary, categorical)."""
        out, pos = [], 0
        for st in self._stats:
            width = len(st.categories) if st.type == "categorical" else 1
            out.append(EncodedVariable(st.name, st.type, pos, pos + width))
            pos += width
        return out

    @property
    def layout(self) -> ClinicalLayout:
        """Static layout for network construction."""
        return ClinicalLayout(
            n_continuous=sum(s.type == "continuous" for s in self._stats),
            n_binary=sum(s.type == "binary" for s in self._stats),
            categorical_sizes=tuple(len(s.categories) for s in self._stats if s.type == "categorical"),
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the fitted encoder as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"out_of_range": self.out_of_range,
                                    "variables": [asdict(s) for s in self._stats]}, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ClinicalEncoder:
        """Read an encoder written by :meth:`save`."""
        raw = json.loads(Path(path).read_text())
        enc = cls(out_of_range=raw["out_of_range"])
        enc._stats = [_Stats(**{**s, "categories": tuple(s["categories"])}) for s in raw["variables"]]
        return enc

    # ------------------------------------------------------------------ value checks
    def _continuous(self, col: pd.Series, st: _Stats, *, check: bool) -> np.ndarray:
        try:
            x = pd.to_numeric(col, errors="raise").astype("float64").to_numpy(na_value=np.nan)
        except (ValueError, TypeError) as exc:
            raise SchemaError(f"clinical column '{st.name}' is declared continuous but holds non-numeric "
                              f"values ({exc})") from exc
        lo = -np.inf if st.min is None else st.min
        hi = np.inf if st.max is None else st.max
        bad = ~np.isnan(x) & ((x < lo) | (x > hi) | ~np.isfinite(x))
        if check and bad.any():
            rows = list(col.index[bad][:5])
            msg = (f"clinical column '{st.name}' ({st.unit or 'no unit'}): {int(bad.sum())} value(s) outside "
                   f"the declared range [{st.min}, {st.max}] or not finite, e.g. rows {rows} = "
                   f"{list(x[bad][:5])}")
            if self.out_of_range == "error":
                raise SchemaError(msg + "; fix the data or the schema, or set clinical.out_of_range: mask")
            log.warning("%s; masked as missing", msg)
            self.report[st.name] = int(bad.sum())
            x = np.where(bad, np.nan, x)
        return x

    @staticmethod
    def _binary(col: pd.Series, name: str, index: pd.Index) -> np.ndarray:
        x = pd.to_numeric(col.map(lambda v: int(v) if isinstance(v, (bool, np.bool_)) else v), errors="coerce")
        bad = col.notna().to_numpy() & ~x.isin([0, 1]).to_numpy()
        if bad.any():
            raise SchemaError(f"binary clinical column '{name}' holds values other than 0/1, e.g. rows "
                              f"{list(index[bad][:5])} = {list(col[bad][:5])}")
        return x.astype("float64").to_numpy(na_value=np.nan)

    @staticmethod
    def _categorical(col: pd.Series, st: _Stats, index: pd.Index) -> np.ndarray:
        lookup = {c: i for i, c in enumerate(st.categories)}
        present = col.notna().to_numpy()
        as_str = col.astype("object").where(col.notna(), None).map(lambda v: None if v is None else str(v))
        codes = np.array([lookup.get(v, -2) if v is not None else -1 for v in as_str], np.int64)
        unknown = present & (codes == -2)
        if unknown.any():
            raise SchemaError(f"categorical clinical column '{st.name}' has categories not in "
                              f"{list(st.categories)}, e.g. rows {list(index[unknown][:5])} = "
                              f"{list(col[unknown][:5])}; declare them in clinical_schema.json")
        return codes
