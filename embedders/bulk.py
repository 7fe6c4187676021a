"""Import precomputed embeddings of several models at scale: many shards, streamed, aligned by image id.

CLI::

    python -m embedders.bulk --config configs/embedders/emory_bulk.yaml --manifest COHORT/manifest.parquet \\
        --store runs/emory/embeddings.zarr

Each model is a :class:`BulkSpec` (a :class:`~embedders.config.PrecomputedSpec` whose ``path`` may be one
file, a folder of shards or a glob). Shards are read in record batches (parquet row groups, CSV blocks,
memory-mapped ``.npy``; an ``.npz`` shard is read whole, so keep those small), parsed by the same functions as
``precomputed:`` imports (:mod:`embedders.precomputed`), and each batch's rows are written straight to an
on-disk staging array in manifest order; the staging array is then copied into the store in whole row
chunks. Memory is one batch plus a bool per manifest row, whatever the file sizes.

Alignment across models: ids that match no manifest row go to the store's errors table (stage ``import``);
a manifest row that one model has and another lacks is listed in ``STORE.zarr.alignment.csv``
(``image_id, missing_from, present_in``): nothing is dropped silently. A repeated (id, augmentation) is an error.
"""
from __future__ import annotations

import argparse
import glob
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import Field
from tqdm.auto import tqdm

from core import cli
from core.config import StrictModel, load_stage_config
from core.provenance import (
    library_versions,
    now_iso,
    sha256_file,
    sha256_json,
    write_run_record,
)
from core.safeio import locked_output

from .augment import AUGMENTATIONS
from .config import PrecomputedSpec
from .errors import append_errors, error_row, finalize_errors
from .precomputed import PrecomputedError, _from_table, read_precomputed
from .run import read_manifest
from .store import errors_path, open_store_for_writing, prepare_model_group, write_rows

log = logging.getLogger(__name__)

SUFFIXES = (".parquet", ".csv", ".npy", ".npz")


class BulkSpec(PrecomputedSpec):
    """A model's precomputed embeddings; ``path`` is a file, a folder of shards or a glob (``dir/part-*.parquet``).

    A ``.npy`` shard's ids are read from ``<shard>.ids.txt`` / ``<shard>.ids.npy`` beside it (else ``ids_path``).
    """

    batch_rows: int = Field(65_536, ge=1)       # rows parsed at a time (parquet / CSV)


class BulkImportConfig(StrictModel):
    """Config of ``python -m embedders.bulk`` (keys in configs/README.md, ## embedders.bulk)."""

    models: list[BulkSpec] = Field(min_length=1)
    chunk_rows: int = Field(1024, ge=1)         # rows per zarr chunk of the store
    overwrite: bool = False


def shard_paths(spec: BulkSpec) -> list[Path]:
    """The shard files of ``spec.path`` in sorted order (id side files ``*.ids.*`` excluded)."""
    text = str(spec.path)
    if any(c in text for c in "*?["):
        paths = [Path(p) for p in sorted(glob.glob(text))]
    elif Path(text).is_dir():
        paths = sorted(p for p in Path(text).iterdir() if p.is_file())
    else:
        paths = [Path(text)]
    paths = [p for p in paths if p.suffix.lower() in SUFFIXES and ".ids." not in p.name]
    if not paths:
        raise PrecomputedError(f"precomputed embeddings {spec.name!r}: no {'/'.join(SUFFIXES)} files at {text}")
    return paths


def _npy_ids(shard: Path, spec: BulkSpec, n_shards: int) -> Path | None:
    for side in (shard.with_suffix(".ids.txt"), shard.with_suffix(".ids.npy")):
        if side.is_file():
            return side
    if n_shards > 1:
        raise PrecomputedError(f"{shard}: no {shard.with_suffix('.ids.txt').name} beside it; each .npy shard "
                               "needs its ids (one per line, or a .ids.npy)")
    return spec.ids_path


def iter_batches(spec: BulkSpec, *, manifest_ids: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(ids (b,), augmentation names (b,), embeddings (b, *shape) float32)`` batch by batch over all shards."""
    shards = shard_paths(spec)
    for shard in shards:
        suffix = shard.suffix.lower()
        if suffix == ".parquet":
            for batch in pq.ParquetFile(shard).iter_batches(batch_size=spec.batch_rows):
                yield _from_table(batch.to_pandas(), spec, shard)
        elif suffix == ".csv":
            opts = pacsv.ReadOptions(block_size=max(1 << 20, spec.batch_rows * 1024))
            for batch in pacsv.open_csv(shard, read_options=opts,
                                        convert_options=pacsv.ConvertOptions(column_types={spec.id_column: pa.string()})):
                yield _from_table(batch.to_pandas(), spec, shard)
        elif suffix == ".npy":
            ids_file = _npy_ids(shard, spec, len(shards))
            sub = spec.model_copy(update={"path": shard, "ids_path": ids_file})
            if ids_file is None:
                ids = np.asarray(manifest_ids, dtype=str)
            else:
                ids = (np.load(ids_file, allow_pickle=False).astype(str) if ids_file.suffix == ".npy"
                       else np.asarray(Path(ids_file).read_text().split(), dtype=str))
            x = np.load(sub.path, mmap_mode="r", allow_pickle=False)
            if len(ids) != len(x):
                raise PrecomputedError(f"{shard}: {len(x)} rows but {len(ids)} ids in {ids_file or 'the manifest'}")
            for s in range(0, len(x), spec.batch_rows):
                yield ids[s:s + spec.batch_rows], np.full(min(spec.batch_rows, len(x) - s), "original", object), \
                    np.asarray(x[s:s + spec.batch_rows], dtype=np.float32)
        else:
            yield read_precomputed(spec.model_copy(update={"path": shard}), manifest_ids=manifest_ids)


class _Staging:
    """On-disk ``(N, *shape)`` float32 arrays (one per augmentation) filled in any row order, plus done masks."""

    def __init__(self, folder: Path, n: int) -> None:
        self.folder, self.n = folder, n
        self.values: dict[str, np.memmap] = {}
        self.done: dict[str, np.ndarray] = {}

    def put(self, aug: str, rows: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Write rows; returns the rows that were already written (duplicates), which are not overwritten."""
        if aug not in self.values:
            self.values[aug] = np.lib.format.open_memmap(self.folder / f"{aug}.npy", mode="w+", dtype=np.float32,
                                                         shape=(self.n, *x.shape[1:]))
            self.done[aug] = np.zeros(self.n, bool)
        elif self.values[aug].shape[1:] != x.shape[1:]:
            raise PrecomputedError(f"rows of shape {x.shape[1:]} after rows of shape {self.values[aug].shape[1:]}")
        _, first = np.unique(rows, return_index=True)
        repeated = np.setdiff1d(np.arange(len(rows)), first)
        again = np.concatenate([rows[repeated], rows[self.done[aug][rows]]])
        new = ~self.done[aug][rows]
        new[repeated] = False
        self.values[aug][rows[new]] = x[new]
        self.done[aug][rows[new]] = True
        return again


def import_bulk(spec: BulkSpec, *, root: Any, manifest: pd.DataFrame, manifest_sha256: str, chunk_rows: int,
                errors_file: Path, overwrite: bool = False) -> tuple[dict[str, Any], np.ndarray]:
    """Stream every shard of ``spec`` into ``root/{spec.name}``; returns counts and the ``(N,)`` original-done mask."""
    if spec.match_column not in manifest.columns:
        raise PrecomputedError(f"{spec.name}: manifest has no column {spec.match_column!r} to match ids against")
    keys = pd.Index(manifest[spec.match_column].astype(str))
    if keys.has_duplicates:
        raise PrecomputedError(f"{spec.name}: manifest column {spec.match_column!r} has repeated values "
                               f"(e.g. {keys[keys.duplicated()][0]!r}); choose a unique column")
    shards = shard_paths(spec)
    n = len(keys)
    counts: dict[str, Any] = {"unmatched": 0, "shards": len(shards)}
    shape: tuple[int, ...] | None = None
    with tempfile.TemporaryDirectory(prefix=f"{spec.name}.", dir=errors_file.parent) as tmp:
        staging = _Staging(Path(tmp), n)
        manifest_ids = manifest["image_id"].astype(str).to_numpy()
        for ids, augs, x in tqdm(iter_batches(spec, manifest_ids=manifest_ids), desc=f"import {spec.name}",
                                 unit="batch", leave=False):
            if len(ids) != len(x):
                raise PrecomputedError(f"{spec.path}: {len(ids)} ids but {len(x)} embedding rows")
            shape = x.shape[1:] if shape is None else shape
            augs = np.asarray([spec.augmentation_map.get(a, a) for a in augs], dtype=object)
            unknown = sorted(set(augs) - set(AUGMENTATIONS))
            if unknown:
                raise PrecomputedError(f"{spec.path}: augmentation values {unknown} are not in {list(AUGMENTATIONS)}; "
                                       "map them with augmentation_map")
            rows = keys.get_indexer(ids)
            missing = rows < 0
            counts["unmatched"] += int(missing.sum())
            append_errors(errors_file, [error_row(i, str(spec.path), "import",
                                                  f"id not in manifest column {spec.match_column!r}", spec.name, a)
                                        for i, a in zip(ids[missing], augs[missing])])
            for aug in np.unique(augs[~missing]):
                sel = (augs == aug) & ~missing
                again = staging.put(str(aug), rows[sel], x[sel])
                if len(again):
                    raise PrecomputedError(f"{spec.path}: id {keys[again[0]]!r} appears more than once for "
                                           f"augmentation {aug!r}")
        if shape is None:
            raise PrecomputedError(f"{spec.path}: no embedding rows")
        present = [a for a in AUGMENTATIONS if a in staging.values]
        attrs = {"model": spec.name, "model_version": spec.version, "output_shape": list(shape),
                 "input_size": None, "mean": [], "std": [], "resize": "", "weights_sha256": None,
                 "weights_source": f"precomputed: {spec.path}",
                 "source_sha256": sha256_json([(p.name, sha256_file(p)) for p in shards]),
                 "library_versions": library_versions(), "created": now_iso(), "manifest_sha256": manifest_sha256}
        group = prepare_model_group(root, spec.name, attrs=attrs, augmentations=present, output_shape=shape,
                                    chunk_rows=chunk_rows, overwrite=overwrite)
        block = chunk_rows * max(1, (1 << 16) // chunk_rows)
        for aug in present:
            vals, ok = staging.values[aug], staging.done[aug]
            for start in range(0, n, block):
                write_rows(group, aug, start, np.asarray(vals[start:start + block]), ok[start:start + block])
            counts[aug] = int(ok.sum())
        done = staging.done.get("original", np.zeros(n, bool)).copy()
    log.info("imported %s from %d shard(s): %s", spec.name, len(shards), counts)
    return counts, done


def alignment_table(image_ids: np.ndarray, done: dict[str, np.ndarray]) -> pd.DataFrame:
    """Rows that some models have and others lack: ``image_id, missing_from, present_in`` (';'-joined names)."""
    names = list(done)
    mat = np.stack([done[m] for m in names], 1)
    partial = np.flatnonzero(mat.any(1) & ~mat.all(1))
    return pd.DataFrame({"image_id": np.asarray(image_ids)[partial],
                         "missing_from": [";".join(m for m, d in zip(names, mat[r]) if not d) for r in partial],
                         "present_in": [";".join(m for m, d in zip(names, mat[r]) if d) for r in partial]})


def alignment_path(store: Path) -> Path:
    """``STORE.zarr.alignment.csv``: manifest rows present in some models only."""
    return store.with_name(store.name + ".alignment.csv")


def load_bulk_config(path: str | Path) -> BulkImportConfig:
    """A bulk-import YAML, or the ``embedders_bulk`` section of a larger config."""
    return load_stage_config(path, BulkImportConfig, section="embedders_bulk")


def run_bulk_import(cfg: BulkImportConfig, *, manifest: Path, store: Path, out: Path | None = None) -> dict[str, Path]:
    """Import every model of ``cfg`` into ``store`` (created or resumed) and write the alignment table.

    Returns ``store``, ``errors``, ``alignment`` and ``run`` (run.json in ``out``, default ``STORE.zarr.run/``).
    """
    manifest, store = Path(manifest), Path(store)
    out = Path(out) if out is not None else store.with_name(store.name + ".run")
    df = read_manifest(manifest)
    sha = sha256_file(manifest)
    ids = df["image_id"].astype(str).to_numpy()
    root = open_store_for_writing(store, image_ids=ids, manifest_sha256=sha, overwrite=cfg.overwrite)
    summary, done = {}, {}
    for spec in cfg.models:
        summary[spec.name], done[spec.name] = import_bulk(spec, root=root, manifest=df, manifest_sha256=sha,
                                                          chunk_rows=cfg.chunk_rows, errors_file=errors_path(store),
                                                          overwrite=cfg.overwrite)
    table = alignment_table(ids, done)
    table.to_csv(alignment_path(store), index=False)
    in_all = int(np.logical_and.reduce(list(done.values())).sum())
    if len(table):
        log.warning("%d image(s) are in some models but not all (listed in %s); %d are in all %d models",
                    len(table), alignment_path(store), in_all, len(done))
    n_errors = finalize_errors(errors_path(store), root)
    run = write_run_record(out, cfg, stage="embedders.bulk", extra={
        "manifest": str(manifest), "manifest_sha256": sha, "store": str(store), "summary": summary,
        "in_all_models": in_all, "partial_rows": len(table), "errors_rows": n_errors})
    return {"store": store, "errors": errors_path(store), "alignment": alignment_path(store), "run": run}


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see module docstring)."""
    ap = cli.parser("python -m embedders.bulk", __doc__)
    ap.add_argument("--config", type=Path, required=True, help="YAML with `models:` (or an `embedders_bulk:` section)")
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--store", type=Path, required=True)
    return cli.run(ap, _main, argv)


def _main(args: argparse.Namespace) -> int:
    cfg = load_bulk_config(args.config)
    with locked_output(args.store.parent, name=args.store.name + ".lock", what="--store folder"):
        paths = run_bulk_import(cfg, manifest=args.manifest, store=args.store)
    partial = len(pd.read_csv(paths["alignment"]))
    print(f"imported into {paths['store']}; {partial} image(s) in some models only ({paths['alignment']}); "
          f"errors: {paths['errors']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
