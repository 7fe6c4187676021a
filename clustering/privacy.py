"""Privacy by construction for everything that leaves: allow-list guard, value checks, pseudonymous ids, no paths.

One reusable entry point for every writer of the export (subtypes table, Atlas table/app data, AnnData,
site diagnostics, ...)::

    safe = guard_frame(df, allowed=cfg.export.columns, keep=["patient_id", "subtype"], schema=schema,
                       allow_identifying=cfg.export.allow_identifying, where="atlas.parquet")

keeps ``keep`` (columns the product itself makes) plus ``allowed`` and nothing else, and refuses an
allowed column whose name, schema role or values look identifying (:class:`ExportError`: the column,
why, and one example row position -- never the value) unless it is also listed in ``allow_identifying``.
:func:`screen_columns` is the same test for derived tables (Table 1, Kaplan-Meier, figures): it splits
candidate columns into shown and withheld-with-reason. :class:`Pseudonymizer` replaces patient/image
ids by a keyed hash (HMAC-SHA256) whose key stays in a local file outside the export, and
:func:`core.safeio.relative_path` turns any path into one relative to the run folder (never the machine's).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from core.safeio import write_csv


class ExportError(ValueError):
    """A column that may not be exported (the message says which and how to allow it)."""


# Name tokens (after splitting snake_case, camelCase and digits) that mark a column as identifying.
IDENTIFYING_TOKENS = frozenset("""
name names first last given family surname maiden initials fullname patientname firstname lastname
dob birth birthdate birthday born dod date dates dt datetime timestamp acquired
admit admitted admission admissions adm discharge discharged disch
phone telephone tel mobile cell fax email mail address addr street city zip zipcode postcode postal
ssn sin nhs nino passport insurance medicare medicaid national mrn record accession
uid uuid guid sop instance series serial device ip url uri path paths file filename folder dir
note notes comment comments remark remarks text freetext narrative report impression
id subject hadm encounter
""".split())
# Roots found inside a single lower-case token ("dateofbirth", "admitdate", "patientname", "homephone").
IDENTIFYING_ROOTS = ("birth", "phone", "address", "surname", "accession", "admission", "admit", "discharg", "email",
                     "postcode", "zipcode", "passport", "timestamp", "datetime", "filename", "instanceuid",
                     "patientname", "firstname", "lastname", "fullname", "ssn", "mrn")
_TOKEN = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")

_MONTHS = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*"
VALUE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("an e-mail address", re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")),
    ("a DICOM UID", re.compile(r"\b\d+(?:\.\d+){4,}\b")),
    ("a date", re.compile(r"\b(?:19|20)\d{2}[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])\b"
                          r"|\b\d{1,2}[-/.]\d{1,2}[-/.](?:19|20)\d{2}\b"
                          rf"|\b\d{{1,2}}[ -]{_MONTHS}[ ,-]*\d{{2,4}}\b|\b{_MONTHS} \d{{1,2}},? \d{{4}}\b", re.IGNORECASE)),
    ("a phone number", re.compile(r"(?:\+\d{1,3}[\s.-]?)?\(?\d{3}\)?[\s.-]\d{3}[\s.-]?\d{4}\b")),
    ("a long digit id (record or accession number)", re.compile(r"\d{6,}")),
    ("a file path or URL", re.compile(r"^(?:/|[A-Za-z]:\\|\\\\|~/|\.{1,2}/)|://|\.(?:png|jpe?g|dcm|dicom|nii)$",
                                      re.IGNORECASE)),
)
FREE_TEXT_WORDS = 6           # a value with this many words or more is free text
FREE_TEXT_CHARS = 60          # ... or this many characters
LONG_INTEGER = 10**6          # integer values at or above this look like record numbers


def name_tokens(name: str) -> list[str]:
    """Lower-case tokens of a column name: ``'PatientName'`` -> ``['patient', 'name']``, ``'admit_dt'`` -> ``['admit', 'dt']``."""
    return [t.lower() for t in _TOKEN.findall(name)]


def identifying_name(name: str) -> bool:
    """True when the column name suggests names, dates, contact details, national/record ids, UIDs, paths or notes."""
    tokens = name_tokens(name)
    low = re.sub(r"[^a-z0-9]", "", name.lower())
    return bool(set(tokens) & IDENTIFYING_TOKENS) or any(root in low for root in IDENTIFYING_ROOTS)


def identifying_values(col: pd.Series) -> tuple[str, int] | None:
    """``(what it looks like, row position)`` of the first value that looks identifying, else None.

    Dates/times (dtype or text), e-mail addresses, phone numbers, DICOM UIDs, long digit ids, paths,
    free text (six words or more, or 60+ characters), and integers of seven digits or more.
    """
    values = col.reset_index(drop=True)
    if pd.api.types.is_datetime64_any_dtype(values) or isinstance(values.dtype, pd.PeriodDtype):
        ok = values.notna().to_numpy()
        return ("a date/time", int(np.flatnonzero(ok)[0])) if ok.any() else None
    if pd.api.types.is_bool_dtype(values):
        return None
    if pd.api.types.is_numeric_dtype(values):
        x = pd.to_numeric(values, errors="coerce").astype(float).to_numpy()
        hit = np.flatnonzero(np.isfinite(x) & (np.abs(x) >= LONG_INTEGER) & (x == np.round(x)))
        return ("a long digit id (record or accession number)", int(hit[0])) if hit.size else None
    try:            # each distinct value once, at its first row (a 1M-row category column has a handful)
        values = values.drop_duplicates()
    except TypeError:                                   # unhashable values (lists, arrays): every row
        pass
    for pos, value in values.items():
        if value is None or (not isinstance(value, (list, dict, np.ndarray)) and pd.isna(value)):
            continue
        if isinstance(value, (pd.Timestamp, np.datetime64)) or hasattr(value, "isoformat"):
            return "a date/time", int(pos)
        text = str(value).strip()
        for what, pattern in VALUE_PATTERNS:
            if pattern.search(text):
                return what, int(pos)
        if len(text.split()) >= FREE_TEXT_WORDS or len(text) >= FREE_TEXT_CHARS:
            return "free text", int(pos)
    return None


def identifying_reason(name: str, col: pd.Series, schema: dict[str, dict]) -> str | None:
    """Why column ``name`` (values ``col``) may not leave, without quoting any value; None when it may."""
    spec = schema.get(name, {})
    if spec.get("role") == "id":
        return "its clinical_schema.json role is 'id'"
    if pd.api.types.is_datetime64_any_dtype(col):
        return "it holds dates/times"
    if identifying_name(name):
        return ("its name suggests names, dates, contact details, national or record ids, UIDs, paths or "
                "free text notes")
    found = identifying_values(col)
    if found is not None:
        what, pos = found
        return f"a value looks like {what} (row {pos}; value not shown)"
    return None


def screen_columns(frame: pd.DataFrame, candidates: Iterable[str], schema: dict[str, dict], *,
                   allow_identifying: Sequence[str] = ()) -> tuple[list[str], dict[str, str]]:
    """Split ``candidates`` present in ``frame`` into (shown, {withheld: reason}) by :func:`identifying_reason`."""
    shown, withheld = [], {}
    for c in dict.fromkeys(candidates):
        if c not in frame.columns:
            continue
        reason = None if c in allow_identifying else identifying_reason(c, frame[c], schema)
        if reason is None:
            shown.append(c)
        else:
            withheld[c] = reason
    return shown, withheld


def guard_frame(frame: pd.DataFrame, *, allowed: Sequence[str], keep: Sequence[str] = (),
                schema: dict[str, dict] | None = None, allow_identifying: Sequence[str] = (),
                where: str = "the export") -> pd.DataFrame:
    """``frame[keep + allowed]``: the only columns that may leave; raises ExportError for identifying ones.

    ``keep``: columns the product makes itself (pseudonymous ids, subtype, coordinates); never value-checked.
    ``allowed``: the config's allow-list; each is checked by name, schema role and values
    (:func:`identifying_reason`) unless also in ``allow_identifying``. Missing columns raise too.
    """
    missing = [c for c in list(keep) + list(allowed) if c not in frame.columns]
    if missing:
        raise ExportError(f"{where}: column(s) {missing} are not available; fix export.columns in the config")
    _, refused = screen_columns(frame, allowed, schema or {}, allow_identifying=allow_identifying)
    if refused:
        raise ExportError(f"{where}: refusing to export identifying column(s): "
                          + "; ".join(f"'{c}' ({why})" for c, why in refused.items())
                          + ". Remove them from export.columns, or, if your data agreement allows it, "
                            "list them under export.allow_identifying as well.")
    return frame[list(dict.fromkeys(list(keep) + list(allowed)))].copy()


# ------------------------------------------------------------------------------------------ pseudonymous ids
class Pseudonymizer:
    """Keyed-hash pseudonyms: ``prefix + HMAC-SHA256(key, id)[:16 hex]``; ``raw=True`` exports ids unchanged.

    The key is a local secret (:meth:`from_key_file`); the same key gives the same pseudonym for the same
    id in every run, so collaborators' answers can be linked back by whoever holds the key.
    """

    def __init__(self, key: bytes, *, raw: bool = False) -> None:
        self._key, self.raw = key, raw

    @classmethod
    def from_key_file(cls, path: Path, *, raw: bool = False) -> Pseudonymizer:
        """Read the hex key at ``path``, creating it (random 256 bits, owner-only permissions) when absent."""
        path = Path(path)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
        text = path.read_text().strip()
        try:
            return cls(bytes.fromhex(text), raw=raw)
        except ValueError:
            raise ExportError(f"pseudonym key file {path} is not a hex key; delete it to make a new one") from None

    def __call__(self, ids: Iterable[object], *, prefix: str = "P-") -> np.ndarray:
        """Pseudonyms of ``ids`` (strings), or the ids as strings when ``raw``; raises on a hash collision."""
        ids = [str(i) for i in ids]
        if self.raw:
            return np.asarray(ids, dtype=object)
        codes, distinct = pd.factorize(np.asarray(ids, dtype=object))     # each distinct id hashed once
        out = [prefix + hmac.new(self._key, i.encode(), hashlib.sha256).hexdigest()[:16] for i in distinct]
        if len(set(out)) != len(distinct):
            raise ExportError("two ids got the same pseudonym (64-bit hash collision); set export.id_key to a new key file")
        return np.asarray(out, dtype=object)[codes]


def write_id_map(ids: Iterable[object], pseudonyms: Iterable[object], path: Path) -> Path:
    """Local re-identification table ``pseudonym, id`` (kept outside the export; merged with earlier rows)."""
    new = pd.DataFrame({"pseudonym": list(pseudonyms), "id": [str(i) for i in ids]}).drop_duplicates("pseudonym")
    if path.is_file():
        new = pd.concat([pd.read_csv(path, dtype=str), new], ignore_index=True).drop_duplicates("pseudonym", keep="last")
    return write_csv(new.sort_values("pseudonym"), path)
