"""Join Emory-style split tables of millions of rows with pyarrow, streaming and filtering as they are read.

The Emory CXR release ships one image-level metadata table (2.4M rows x 19) beside findings (study-level,
1.3M rows), manufacturer (image-level) and SDOH (patient-level, 160k rows x 388) tables. Reading them whole
with pandas costs several GB; here each table is read in record batches (CSV through ``pyarrow.csv.open_csv``,
parquet through ``ParquetFile.iter_batches``), only the requested columns are decoded, and only rows whose
key is wanted are kept (the sampled images, then the studies / patients those images belong to), so memory
follows the kept rows, not the table size. Joins are left joins in the metadata's row order; a joined table
must hold one row per key (else a left join would copy images).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.config import StrictModel

log = logging.getLogger(__name__)

_ROW = "__row__"
_BLOCK_BYTES = 64 << 20       # CSV block decoded at a time
_BATCH_ROWS = 262_144         # parquet rows decoded at a time


class EmoryTable(StrictModel):
    """One split table: its file (.csv/.csv.gz/.parquet), its key column and what it joins on."""

    path: Path
    key: str                                  # column of this table holding the join key
    on: str | None = None                     # column of the tables joined so far to match (default: key)
    columns: list[str] | None = None          # keep only these columns (default: all)


def _batches(path: Path, *, columns: list[str] | None, key: str) -> Iterator[pa.RecordBatch]:
    """Record batches of ``path`` with only ``columns`` (+ ``key``) decoded; the key read as string."""
    if not path.is_file():
        raise FileNotFoundError(f"Emory table not found: {path} (check the path in the config)")
    wanted = None if columns is None else list(dict.fromkeys([key, *columns]))
    if path.suffix == ".parquet":
        pf = pq.ParquetFile(path)
        missing = [c for c in wanted or [key] if c not in pf.schema_arrow.names]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; found {pf.schema_arrow.names[:20]}")
        yield from pf.iter_batches(batch_size=_BATCH_ROWS, columns=wanted)
        return
    try:
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES),
                                convert_options=pacsv.ConvertOptions(column_types={key: pa.string()}, strings_can_be_null=True,
                                                                     include_columns=wanted))
    except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
        raise ValueError(f"cannot read Emory table {path}: {exc}") from exc
    if key not in reader.schema.names:
        raise ValueError(f"{path}: missing key column {key!r}; found {reader.schema.names[:20]}")
    yield from reader


def read_filtered(path: Path, *, key: str, keep: pa.Array | None = None,
                  columns: list[str] | None = None) -> pa.Table:
    """Rows of ``path`` whose ``key`` (as string) is in ``keep`` (all rows when None), only ``columns`` + key.

    Streams the file in batches, so peak memory is one batch plus the kept rows.
    """
    parts, n_read = [], 0
    for batch in _batches(Path(path), columns=columns, key=key):
        n_read += batch.num_rows
        if batch.schema.field(key).type != pa.string():
            batch = batch.set_column(batch.schema.get_field_index(key), key, pc.cast(batch.column(key), pa.string()))
        if keep is not None:
            batch = batch.filter(pc.is_in(batch.column(key), value_set=keep))
        parts.append(batch)
    table = pa.Table.from_batches(parts) if parts else pa.table({key: pa.array([], pa.string())})
    log.info("%s: kept %d of %d rows (%d columns)", path, table.num_rows, n_read, table.num_columns)
    return table


def _check_unique(table: pa.Table, key: str, path: Path) -> None:
    if pc.count_distinct(table.column(key)).as_py() < table.num_rows:
        counts = pc.value_counts(table.column(key))
        dup = next(v["values"] for v in counts.to_pylist() if v["counts"] > 1)
        raise ValueError(f"{path}: key '{key}' repeats (e.g. {dup!r}); each joined table needs one row per key")


def join_tables(metadata: EmoryTable, tables: Sequence[EmoryTable], *,
                keep_ids: Sequence[str] | None = None) -> pa.Table:
    """Metadata rows (those whose key is in ``keep_ids``, or all) left-joined with each of ``tables`` in turn.

    Each table is filtered to the keys the rows so far hold in its ``on`` column before the join. Rows keep
    the metadata's order. Raises ValueError naming the file for a repeated key or a column clash.
    """
    keep = None if keep_ids is None else pa.array(list(map(str, keep_ids)), pa.string())
    joined = read_filtered(metadata.path, key=metadata.key, keep=keep, columns=metadata.columns)
    joined = joined.append_column(_ROW, pa.array(range(joined.num_rows), pa.int64()))
    for spec in tables:
        on = spec.on or spec.key
        if on not in joined.column_names:
            raise ValueError(f"{spec.path}: joins on {on!r}, which the tables before it do not have "
                             f"(have {joined.column_names[:20]}); set 'on'")
        if joined.schema.field(on).type != pa.string():
            joined = joined.set_column(joined.schema.get_field_index(on), on, pc.cast(joined.column(on), pa.string()))
        table = read_filtered(spec.path, key=spec.key, keep=pc.unique(joined.column(on).drop_null()),
                              columns=spec.columns)
        _check_unique(table, spec.key, spec.path)
        clash = [c for c in table.column_names if c != spec.key and c in joined.column_names]
        if clash:
            raise ValueError(f"{spec.path}: column(s) {clash} also exist in an earlier table; rename them "
                             "or list the columns to keep")
        joined = joined.join(table, keys=on, right_keys=spec.key, join_type="left outer")
    return joined.sort_by(_ROW).drop_columns([_ROW])


def read_ids(path: Path, *, column: str) -> list[str]:
    """Ids from a one-per-line ``.txt`` or the ``column`` of a .csv/.parquet table."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"id list not found: {path}")
    if path.suffix == ".txt":
        return path.read_text().split()
    return read_filtered(path, key=column, columns=[column]).column(column).to_pylist()
