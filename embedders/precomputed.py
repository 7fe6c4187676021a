"""Import embeddings computed elsewhere into the store (as model ``spec.name``).

Formats, chosen by the file suffix:

* ``.csv`` -- the source study's format: columns ``embedding_0 .. embedding_{D-1}``, ``dicom_id``, ``label``,
  ``augmentation`` (one row per image and augmentation). ``label`` is ignored: labels come from the manifest.
  The study wrote CXR-Foundation's (32, 768) tokens flattened row-major into 24,576 columns; ``token_shape:
  auto`` (default) restores known flattened layouts (:data:`KNOWN_FLAT_LAYOUTS`) and reads ``embedding_T_D``
  column names as (T, D); ``[T, D]`` reshapes explicitly, ``flat`` keeps one vector per row.
  Augmentation names are the store's (``original, bright, dark, contrast, rot+45, rot-45``) or the study's
  spellings (``Original``, ``rot45``, ``rot_-45``, ``Rot +45 deg``, ``rotate45`` ...; see
  :func:`study_augmentation_name`); ``augmentation_map`` covers any other.
* ``.parquet`` -- an id column plus either ``embedding_0..`` columns or one list column ``embedding``.
* ``.npz`` -- arrays ``<id_column>`` (n,) and ``<embedding_key>`` (n, *shape).
* ``.npy`` -- an (n, *shape) array whose rows follow ``ids_path`` (a .npy or one-id-per-line .txt), or the
  manifest order when ``ids_path`` is not given (then n must equal the manifest's row count).

File ids are matched against the manifest column ``match_column`` (default ``image_id``; e.g. a ``dicom_id``
column kept by the cohort adapter). Ids that match no manifest row are reported in the errors table (stage
``import``); a repeated (id, augmentation) is an error. Manifest rows absent from the file stay not done.

Patient ids (``patient_column``, in the file or in ``patient_table``) are checked against the manifest's
``patient_id``: the store attrs ``patients`` record the source, the counts and, in words, a ``warning`` when
no patient id was given or when the manifest splits one patient's images over several patient ids (folds
grouped by such ids leak a patient across folds, as the source study's image-level folds did). The
benchmark repeats these warnings in its report.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from core.provenance import library_versions, now_iso, sha256_file

from .augment import AUGMENTATIONS
from .config import PrecomputedSpec
from .errors import append_errors, error_row
from .import_patients import patient_check, read_patient_ids
from .store import prepare_model_group, write_rows

log = logging.getLogger(__name__)


# Flattened multi-token layouts the source study's format implies: values per row -> (tokens, width), the model.
# Both models write their tokens row-major (token 0's 768 values first), which is numpy's reshape order.
KNOWN_FLAT_LAYOUTS: dict[int, tuple[tuple[int, int], str]] = {
    32 * 768: ((32, 768), "CXR-Foundation (ELIXR v2) 32 x 768 tokens"),
    128 * 768: ((128, 768), "CheXagent Q-Former 128 x 768 tokens"),
}
_STUDY_AUGMENTATIONS = {"original": "original", "orig": "original", "none": "original", "raw": "original",
                        "bright": "bright", "brightness": "bright", "brighten": "bright", "dark": "dark",
                        "darken": "dark", "darkness": "dark", "contrast": "contrast", "rot+45": "rot+45",
                        "rot45": "rot+45", "rot-45": "rot-45"}


class PrecomputedError(ValueError):
    """A precomputed-embeddings file that cannot be imported (message names the file and the problem)."""


def study_augmentation_name(value: str) -> str:
    """The store's name for an augmentation spelled as the source study did (``rot45`` -> ``rot+45``,
    ``Rot -45 deg`` / ``rot_-45`` / ``rotate_neg45`` -> ``rot-45``, ``Original`` -> ``original``); other values
    come back unchanged (``augmentation_map`` or the unknown-value error deals with them)."""
    key = re.sub(r"[\s_]+|degrees?|deg", "", str(value).strip().lower())
    key = re.sub(r"^rot(ate|ation|ated)?", "rot", key)
    key = re.sub(r"^rot(neg|minus|m)(?=\d)", "rot-", key)
    key = re.sub(r"^rot(pos|plus|p)(?=\d)", "rot+", key)
    return _STUDY_AUGMENTATIONS.get(key, str(value))


def _embedding_columns(df: pd.DataFrame, prefix: str, path: Path) -> list[str]:
    """The ``prefix_0..prefix_{D-1}`` columns (or ``prefix_t_d``, token-major) in value order."""
    flat = re.compile(rf"^{re.escape(prefix)}_(\d+)$")
    cols = sorted((int(m.group(1)), c) for c in df.columns if (m := flat.match(str(c))))
    if not cols and column_token_shape(df.columns, prefix) is not None:
        two = re.compile(rf"^{re.escape(prefix)}_(\d+)_(\d+)$")
        matched = [(m, c) for c in df.columns if (m := two.match(str(c)))]
        return [c for _, c in sorted(((int(m.group(1)), int(m.group(2))), c) for m, c in matched)]
    if not cols:
        raise PrecomputedError(f"{path}: no '{prefix}_0..N' columns (columns: {list(df.columns)[:8]}...)")
    if [i for i, _ in cols] != list(range(len(cols))):
        raise PrecomputedError(f"{path}: '{prefix}_*' columns are not numbered 0..{len(cols) - 1} without gaps")
    return [c for _, c in cols]


def column_token_shape(columns, prefix: str) -> tuple[int, int] | None:
    """``(T, D)`` when the columns are named ``prefix_t_d`` for every t < T, d < D; else None."""
    two = re.compile(rf"^{re.escape(prefix)}_(\d+)_(\d+)$")
    pairs = {(int(m.group(1)), int(m.group(2))) for c in columns if (m := two.match(str(c)))}
    if not pairs:
        return None
    t, d = max(p[0] for p in pairs) + 1, max(p[1] for p in pairs) + 1
    return (t, d) if len(pairs) == t * d else None


def token_shape(spec: PrecomputedSpec, values_per_row: int, *, column_shape: tuple[int, int] | None = None,
                path: Path | str = "") -> tuple[tuple[int, ...], str]:
    """Per-image shape for ``values_per_row`` flat values, and where it came from (in words).

    ``spec.token_shape`` ``[T, D]`` must multiply to ``values_per_row``; ``auto`` takes ``column_shape``
    (``prefix_t_d`` names), else a :data:`KNOWN_FLAT_LAYOUTS` entry, else stays flat; ``flat`` stays flat.
    """
    if isinstance(spec.token_shape, list):
        shape = tuple(spec.token_shape)
        if int(np.prod(shape)) != values_per_row:
            raise PrecomputedError(f"{path}: token_shape {list(shape)} holds {int(np.prod(shape))} values but the "
                                   f"file has {values_per_row} per row; fix token_shape (or use auto / flat)")
        return shape, f"token_shape {list(shape)} from the config"
    if spec.token_shape == "flat":
        return (values_per_row,), "flat, as configured (token_shape: flat)"
    if column_shape is not None:
        return column_shape, f"column names {spec.embedding_key}_t_d ({column_shape[0]} x {column_shape[1]})"
    if values_per_row in KNOWN_FLAT_LAYOUTS:
        shape, what = KNOWN_FLAT_LAYOUTS[values_per_row]
        return shape, (f"{values_per_row} flat values per row read as {what}, the source study's flattened "
                       "layout (token_shape: flat keeps them flat)")
    return (values_per_row,), "one vector per row"


def _read_csv(path: Path, spec: PrecomputedSpec) -> pd.DataFrame:
    """The CSV with its embedding columns parsed as float32 (a 24,576-column file stays half the size)."""
    header = pd.read_csv(path, nrows=0).columns
    prefix = re.compile(rf"^{re.escape(spec.embedding_key)}_\d+(_\d+)?$")
    return pd.read_csv(path, dtype={c: np.float32 for c in header if prefix.match(str(c))})


def _from_table(df: pd.DataFrame, spec: PrecomputedSpec, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if spec.id_column not in df.columns:
        raise PrecomputedError(f"{path}: id column {spec.id_column!r} missing (set id_column; has {list(df.columns)[:8]})")
    if spec.embedding_key in df.columns:   # one list/array column
        x = np.stack([np.asarray(v, dtype=np.float32) for v in df[spec.embedding_key]])
    else:
        x = df[_embedding_columns(df, spec.embedding_key, path)].to_numpy(dtype=np.float32)
    if spec.augmentation_column and spec.augmentation_column in df.columns:
        augs = df[spec.augmentation_column].astype(str).to_numpy()
    else:
        augs = np.full(len(df), "original", dtype=object)
    return df[spec.id_column].astype(str).to_numpy(), augs, x


def read_precomputed(spec: PrecomputedSpec, *, manifest_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids (n,), augmentation names (n,), embeddings (n, *shape) float32)`` from ``spec.path``; the per-image
    shape follows ``spec.token_shape`` (see :func:`read_precomputed_layout` for where it came from)."""
    return read_precomputed_layout(spec, manifest_ids=manifest_ids)[:3]


def read_precomputed_layout(spec: PrecomputedSpec, *,
                            manifest_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """:func:`read_precomputed` plus, in words, where the per-image shape came from."""
    ids, augs, x, column_shape = _read_raw(spec, manifest_ids=manifest_ids)
    if x.ndim == 2:
        shape, note = token_shape(spec, x.shape[1], column_shape=column_shape, path=spec.path)
        x = x.reshape(len(x), *shape)
    elif isinstance(spec.token_shape, list) and tuple(spec.token_shape) != x.shape[1:]:
        raise PrecomputedError(f"{spec.path}: embeddings have shape {list(x.shape[1:])} per row, not the configured "
                               f"token_shape {spec.token_shape}")
    else:
        note = "shape as stored in the file"
    return ids, augs, x, note


def _read_raw(spec: PrecomputedSpec, *,
              manifest_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int] | None]:
    """ids, augmentation names, embeddings as stored, and the (T, D) that ``prefix_t_d`` column names imply."""
    path = Path(spec.path)
    if not path.is_file():
        raise PrecomputedError(f"precomputed embeddings {spec.name!r}: file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet"):
        df = _read_csv(path, spec) if suffix == ".csv" else pd.read_parquet(path)
        return (*_from_table(df, spec, path), column_token_shape(df.columns, spec.embedding_key))
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            for key in (spec.id_column, spec.embedding_key):
                if key not in z:
                    raise PrecomputedError(f"{path}: array {key!r} missing (has {list(z.keys())})")
            x, ids = z[spec.embedding_key].astype(np.float32), z[spec.id_column].astype(str)
        return ids, np.full(len(ids), "original", dtype=object), x, None
    if suffix == ".npy":
        x = np.load(path, allow_pickle=False).astype(np.float32)
        if spec.ids_path is None:
            if len(x) != len(manifest_ids):
                raise PrecomputedError(f"{path}: {len(x)} rows but the manifest has {len(manifest_ids)}; "
                                       "give ids_path (ids of the rows) or a file in manifest order")
            ids = np.asarray(manifest_ids, dtype=str)
        elif Path(spec.ids_path).suffix == ".npy":
            ids = np.load(spec.ids_path, allow_pickle=False).astype(str)
        else:
            ids = np.asarray(Path(spec.ids_path).read_text().split(), dtype=str)
        return ids, np.full(len(ids), "original", dtype=object), x, None
    raise PrecomputedError(f"{path}: unsupported suffix {suffix!r} (use .csv, .parquet, .npz or .npy)")


def import_precomputed(spec: PrecomputedSpec, *, root: zarr.Group, manifest: pd.DataFrame, manifest_sha256: str,
                       chunk_rows: int, overwrite: bool = False, errors_file: Path) -> dict[str, Any]:
    """Write ``spec``'s embeddings into ``root/{spec.name}/{augmentation}``; returns counts per augmentation."""
    if spec.match_column not in manifest.columns:
        raise PrecomputedError(f"{spec.name}: manifest has no column {spec.match_column!r} to match ids against")
    keys = manifest[spec.match_column].astype(str)
    if keys.duplicated().any():
        raise PrecomputedError(f"{spec.name}: manifest column {spec.match_column!r} has repeated values "
                               f"(e.g. {keys[keys.duplicated()].iloc[0]!r}); choose a unique column")
    ids, augs, x, layout = read_precomputed_layout(spec, manifest_ids=manifest["image_id"].astype(str).to_numpy())
    if len(ids) != len(x):
        raise PrecomputedError(f"{spec.path}: {len(ids)} ids but {len(x)} embedding rows")
    augs = np.asarray([spec.augmentation_map.get(a, study_augmentation_name(a)) for a in augs], dtype=object)
    unknown = sorted(set(augs) - set(AUGMENTATIONS))
    if unknown:
        raise PrecomputedError(f"{spec.path}: augmentation values {unknown} are not in {list(AUGMENTATIONS)}; "
                               "map them with augmentation_map")
    row_of = pd.Series(np.arange(len(keys)), index=keys.to_numpy())
    rows = row_of.reindex(ids).to_numpy()
    missing = np.isnan(rows)
    append_errors(errors_file, [
        error_row(i, str(spec.path), "import", f"id not in manifest column {spec.match_column!r}", spec.name, a)
        for i, a in zip(ids[missing], augs[missing])])
    try:
        file_patients, source = read_patient_ids(spec, ids)
    except ValueError as exc:
        raise PrecomputedError(str(exc)) from exc
    first = ~missing & ~pd.Series(rows).duplicated().to_numpy()            # one file row per matched image
    patients = patient_check(rows[first].astype(np.int64), None if file_patients is None else file_patients[first],
                             manifest, source=source, match_column=spec.match_column)
    if patients["warning"]:
        log.warning("%s: %s", spec.name, patients["warning"])
    log.info("%s: per-image shape %s (%s)", spec.name, list(x.shape[1:]), layout)
    present = [a for a in AUGMENTATIONS if a in set(augs)]
    attrs = {"model": spec.name, "model_version": spec.version, "output_shape": list(x.shape[1:]),
             "input_size": None, "mean": [], "std": [], "resize": "", "weights_sha256": None,
             "weights_source": f"precomputed: {spec.path}", "source_sha256": sha256_file(spec.path),
             "library_versions": library_versions(), "created": now_iso(), "manifest_sha256": manifest_sha256,
             "token_shape_source": layout, "patients": patients}
    group = prepare_model_group(root, spec.name, attrs=attrs, augmentations=present, output_shape=x.shape[1:],
                                chunk_rows=chunk_rows, overwrite=overwrite)
    n = len(keys)
    counts: dict[str, Any] = {"unmatched": int(missing.sum())}
    block = chunk_rows * max(1, (1 << 16) // chunk_rows)
    for aug in present:
        sel = np.flatnonzero((augs == aug) & ~missing)
        r = rows[sel].astype(np.int64)
        if len(np.unique(r)) != len(r):
            dup = pd.Series(ids[sel])[pd.Series(r).duplicated().to_numpy()].iloc[0]
            raise PrecomputedError(f"{spec.path}: id {dup!r} appears more than once for augmentation {aug!r}")
        for start in range(0, n, block):                  # one block of manifest rows in memory at a time
            stop = min(n, start + block)
            inside = (r >= start) & (r < stop)
            values = np.full((stop - start, *x.shape[1:]), np.nan, dtype=np.float32)
            ok = np.zeros(stop - start, dtype=bool)
            values[r[inside] - start], ok[r[inside] - start] = x[sel[inside]], True
            write_rows(group, aug, start, values, ok)
        counts[aug] = int(len(r))
    log.info("imported %s from %s: %s", spec.name, spec.path, counts)
    return counts
