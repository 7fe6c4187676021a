"""Emory-style split tables: an image-level metadata table plus findings / other tables (csv or parquet).

The other tables are left-joined onto the metadata (each on its own key: an image, study or patient key)
and must have one row per key (a study-level findings table then labels every image of the study).
Tables are streamed and filtered with pyarrow (:mod:`cohorts.emory_tables`), so millions of rows fit;
``keep_ids`` restricts the metadata to a sample (e.g. the images that have embeddings). The joined table
is read like a generic CSV manifest: ``columns`` / ``labels`` / ``extra_columns`` name its columns
(e.g. ``manufacturer``, ``site``).
"""
from __future__ import annotations

from pathlib import Path

from ..config import EmorySource
from ..emory_tables import EmoryTable, join_tables, read_ids
from .base import AdapterResult
from .csv_manifest import manifest_from_table


def load_emory(cfg: EmorySource) -> AdapterResult:
    """Join the metadata table with the other tables and build the manifest."""
    tables = [t if isinstance(t, EmoryTable) else EmoryTable(path=t, key=cfg.key) for t in cfg.tables]
    keep = read_ids(cfg.keep_ids, column=cfg.key) if cfg.keep_ids is not None else None
    joined = join_tables(EmoryTable(path=cfg.metadata, key=cfg.key), tables, keep_ids=keep).to_pandas()
    root = cfg.image_root if cfg.image_root is not None else Path(cfg.metadata).parent
    df = manifest_from_table(joined, dataset=cfg.dataset, columns=cfg.columns, labels=cfg.labels,
                             extra_columns=cfg.extra_columns, image_root=root, source=str(cfg.metadata))
    return AdapterResult(df)
