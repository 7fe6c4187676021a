"""Import embeddings computed elsewhere into the store (as model ``spec.name``).

Formats, chosen by the file suffix:

* ``.csv`` -- the source study's format: columns ``embedding_0 .. embedding_{D-1}``, ``dicom_id``, ``label``,
  ``augmentation`` (one row per image and augmentation). ``label`` is ignored: labels come from the manifest.
* ``.parquet`` -- an id column plus either ``embedding_0..`` columns or one list column ``embedding``.
* ``.npz`` -- arrays ``<id_column>`` (n,) and ``<embedding_key>`` (n, *shape).
* ``.npy`` -- an (n, *shape) array whose rows follow ``ids_path`` (a .npy or one-id-per-line .txt), or the
  manifest order when ``ids_path`` is not given (then n must equal the manifest's row count).

File ids are matched against the manifest column ``match_column`` (default ``image_id``; e.g. a ``dicom_id``
column kept by the cohort adapter). Ids that match no manifest row are reported in the errors table (stage
``import``); a repeated (id, augmentation) is an error. Manifest rows absent from the file stay not done.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from cohorts.provenance import library_versions, now_iso, sha256_file
from .augment import AUGMENTATIONS
from .config import PrecomputedSpec
from .errors import append_errors, error_row
from .store import prepare_model_group, write_rows

log = logging.getLogger(__name__)


class PrecomputedError(ValueError):
    """A precomputed-embeddings file that cannot be imported (message names the file and the problem)."""


def _embedding_columns(df: pd.DataFrame, prefix: str, path: Path) -> list[str]:
    pattern = re.compile(rf"^{re.escape(prefix)}_(\d+)$")
    cols = sorted((int(m.group(1)), c) for c in df.columns if (m := pattern.match(str(c))))
    if not cols:
        raise PrecomputedError(f"{path}: no '{prefix}_0..N' columns (columns: {list(df.columns)[:8]}...)")
    if [i for i, _ in cols] != list(range(len(cols))):
        raise PrecomputedError(f"{path}: '{prefix}_*' columns are not numbered 0..{len(cols) - 1} without gaps")
    return [c for _, c in cols]


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
    """``(ids (n,), augmentation names (n,), embeddings (n, *shape) float32)`` from ``spec.path``."""
    path = Path(spec.path)
    if not path.is_file():
        raise PrecomputedError(f"precomputed embeddings {spec.name!r}: file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _from_table(pd.read_csv(path), spec, path)
    if suffix == ".parquet":
        return _from_table(pd.read_parquet(path), spec, path)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            for key in (spec.id_column, spec.embedding_key):
                if key not in z:
                    raise PrecomputedError(f"{path}: array {key!r} missing (has {list(z.keys())})")
            x, ids = z[spec.embedding_key].astype(np.float32), z[spec.id_column].astype(str)
        return ids, np.full(len(ids), "original", dtype=object), x
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
        return ids, np.full(len(ids), "original", dtype=object), x
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
    ids, augs, x = read_precomputed(spec, manifest_ids=manifest["image_id"].astype(str).to_numpy())
    if len(ids) != len(x):
        raise PrecomputedError(f"{spec.path}: {len(ids)} ids but {len(x)} embedding rows")
    augs = np.asarray([spec.augmentation_map.get(a, a) for a in augs], dtype=object)
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
    present = [a for a in AUGMENTATIONS if a in set(augs)]
    attrs = {"model": spec.name, "model_version": spec.version, "output_shape": list(x.shape[1:]),
             "input_size": None, "mean": [], "std": [], "resize": "", "weights_sha256": None,
             "weights_source": f"precomputed: {spec.path}", "source_sha256": sha256_file(spec.path),
             "library_versions": library_versions(), "created": now_iso(), "manifest_sha256": manifest_sha256}
    group = prepare_model_group(root, spec.name, attrs=attrs, augmentations=present, output_shape=x.shape[1:],
                                chunk_rows=chunk_rows, overwrite=overwrite)
    n = len(keys)
    counts: dict[str, Any] = {"unmatched": int(missing.sum())}
    for aug in present:
        sel = (augs == aug) & ~missing
        r = rows[sel].astype(np.int64)
        if len(np.unique(r)) != len(r):
            dup = pd.Series(ids[sel])[pd.Series(r).duplicated().to_numpy()].iloc[0]
            raise PrecomputedError(f"{spec.path}: id {dup!r} appears more than once for augmentation {aug!r}")
        values = np.full((n, *x.shape[1:]), np.nan, dtype=np.float32)
        ok = np.zeros(n, dtype=bool)
        values[r], ok[r] = x[sel], True
        block = chunk_rows * max(1, (1 << 16) // chunk_rows)
        for start in range(0, n, block):
            write_rows(group, aug, start, values[start:start + block], ok[start:start + block])
        counts[aug] = int(ok.sum())
    log.info("imported %s from %s: %s", spec.name, spec.path, counts)
    return counts
