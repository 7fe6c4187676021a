"""Emory-style split tables: an image-level metadata table plus findings / other tables (csv).

Every table holds the join ``key`` (an image or a study key). The other tables are joined onto
the metadata with a left join and must have one row per key (a study-level findings table then
labels every image of the study). The joined table is read like a generic CSV manifest:
``columns`` / ``labels`` / ``extra_columns`` name its columns (e.g. ``manufacturer``, ``site``).
"""
from __future__ import annotations

from ..config import EmorySource
from .base import AdapterResult, read_table, require_columns
from .csv_manifest import manifest_from_table


def load_emory(cfg: EmorySource) -> AdapterResult:
    """Join the metadata table with the other tables on ``key`` and build the manifest."""
    joined = read_table(cfg.metadata, what="metadata table", dtype={cfg.key: str})
    require_columns(joined, [cfg.key], source=cfg.metadata)
    for path in cfg.tables:
        table = read_table(path, what="Emory-style table", dtype={cfg.key: str})
        require_columns(table, [cfg.key], source=path)
        dup = table[cfg.key].duplicated()
        if dup.any():
            raise ValueError(f"{path}: key '{cfg.key}' repeats (e.g. {table.loc[dup, cfg.key].iloc[0]!r}); "
                             "each joined table needs one row per key")
        clash = [c for c in table.columns if c != cfg.key and c in joined.columns]
        if clash:
            raise ValueError(f"{path}: column(s) {clash} also exist in an earlier table; rename them")
        joined = joined.merge(table, on=cfg.key, how="left")
    root = cfg.image_root if cfg.image_root is not None else cfg.metadata.parent
    df = manifest_from_table(joined, dataset=cfg.dataset, columns=cfg.columns, labels=cfg.labels,
                             extra_columns=cfg.extra_columns, image_root=root, source=str(cfg.metadata))
    return AdapterResult(df)
