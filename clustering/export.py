"""Export of subtype assignments for clinical collaborators, built from the config's allow-list.

Only the columns listed in ``export.columns`` leave next to ``patient_id`` (a keyed-hash pseudonym of
the cohort's patient key unless ``export.raw_ids``), ``subtype``, ``confidence`` and the UMAP
coordinates. A listed column that looks identifying (:func:`clustering.privacy.identifying_reason`:
schema role ``id``, a name or a value that looks like a name, date, contact detail, national or record
id, UID, path or free text) is refused with :class:`ExportError` unless it is also listed in
``export.allow_identifying``. Derived tables and figures show only :func:`summary_columns`.
The pseudonym key and the ``pseudonym -> id`` table stay in a private folder outside the export.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.provenance import library_versions, now_iso, sha256_json
from core.safeio import write_csv, write_json, write_parquet

from .config import ClusteringConfig, ExportConfig
from .privacy import ExportError, Pseudonymizer, guard_frame, identifying_reason, screen_columns, write_id_map

__all__ = ["BASE_COLUMNS", "ExportError", "ExportPlan", "check_columns", "data_dictionary", "identifying_reason",
           "id_policy", "plan_export", "pseudonymizer_for", "write_export"]

BASE_COLUMNS = {
    "patient_id": ("str", "pseudonymous patient key: keyed hash (HMAC-SHA256) of the cohort's patient id; the key "
                          "stays with the data owner"),
    "subtype": ("str", "candidate subtype S1..SK (S1 largest); the method is named in the dictionary row"),
    "confidence": ("float [0,1]", "membership confidence: over subsample reclusterings, the chance-corrected share of "
                                  "the patient's subtype mates kept with it (0 when a resample merges or shuffles "
                                  "everyone); empty when there are no stable subtypes"),
    "umap_1": ("float", "UMAP coordinate 1 (display only; NaN when left out of a display subsample)"),
    "umap_2": ("float", "UMAP coordinate 2 (display only)"),
}
SUBTYPE_METHOD = {"leiden": "Leiden communities of the cosine kNN graph",
                  "gmm": "Gaussian mixture on the latent (number of classes by BIC)"}
RAW_ID_NOTE = "patient key from the cohort manifest, exported UNCHANGED (export.raw_ids: true)"
PRIVATE_DIR = "private"


@dataclass
class ExportPlan:
    """What may leave: row-level columns, columns derived tables may show, withheld ones and why, the id policy."""

    columns: list[str]
    summary: list[str]
    withheld: dict[str, str] = field(default_factory=dict)
    ids: Pseudonymizer | None = None
    private_dir: Path | None = None

    def id_policy(self) -> str:
        """One sentence for the report and provenance: how ids were exported."""
        return id_policy(raw=self.ids is not None and self.ids.raw)


def id_policy(*, raw: bool) -> str:
    """How ids are exported, in one sentence: ``raw`` (``export.raw_ids``) or pseudonymous."""
    if raw:
        return "RAW patient ids exported on purpose (export.raw_ids: true)"
    return ("pseudonymous patient ids (keyed hash; the key and the pseudonym -> id table stay with the data "
            "owner, outside the export)")


def check_columns(table: pd.DataFrame, cfg: ClusteringConfig, schema: dict[str, dict], *, source: str) -> list[str]:
    """The allow-listed columns to export; raises ExportError for missing or identifying ones."""
    cols = list(cfg.export.columns)
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise ExportError(f"export.columns lists {missing}, which are not in {source} "
                          f"(available: {sorted(c for c in table.columns if c not in BASE_COLUMNS)}); fix the config")
    clash = [c for c in cols if c in BASE_COLUMNS]
    if clash:
        raise ExportError(f"export.columns lists {clash}, which the export always writes; remove them from the config")
    guard_frame(table, allowed=cols, schema=schema, allow_identifying=cfg.export.allow_identifying,
                where="export.columns")
    return cols


def summary_columns(table: pd.DataFrame, export: ExportConfig, schema: dict[str, dict]
                    ) -> tuple[list[str], dict[str, str]]:
    """(columns derived tables and figures may show, {withheld column: reason}).

    An explicit ``export.summary_columns`` is an allow-list (an identifying one raises unless allowed);
    null screens the schema's feature/outcome columns and the ``label_*`` columns and withholds the
    identifying ones.
    """
    if export.summary_columns is not None:
        missing = [c for c in export.summary_columns if c not in table.columns]
        if missing:
            raise ExportError(f"export.summary_columns lists {missing}, which are not in the cohort; fix the config")
        guard_frame(table, allowed=export.summary_columns, schema=schema, allow_identifying=export.allow_identifying,
                    where="export.summary_columns")
        return list(export.summary_columns), {}
    candidates = ([c for c, s in schema.items() if s.get("role") in ("feature", "outcome")]
                  + [c for c in table.columns if str(c).startswith("label_")])
    return screen_columns(table, candidates, schema, allow_identifying=export.allow_identifying)


def pseudonymizer_for(export: ExportConfig, *, out: Path) -> tuple[Pseudonymizer, Path]:
    """The run's pseudonymizer and its private folder (key file from ``export.id_key`` or next to ``out``)."""
    private = Path(out).resolve().parent / PRIVATE_DIR
    key = Path(export.id_key) if export.id_key else private / "pseudonym.key"
    return Pseudonymizer.from_key_file(key, raw=export.raw_ids), key.parent


def plan_export(table: pd.DataFrame, cfg: ClusteringConfig, schema: dict[str, dict], *, out: Path,
                source: str) -> ExportPlan:
    """Check the allow-lists against ``table`` (before any long work) and fix the id policy."""
    cols = check_columns(table, cfg, schema, source=source)
    shown, withheld = summary_columns(table, cfg.export, schema)
    ids, private = pseudonymizer_for(cfg.export, out=out)
    return ExportPlan(columns=cols, summary=shown, withheld=withheld, ids=ids, private_dir=private)


def export_ids(frame: pd.DataFrame, plan: ExportPlan) -> pd.DataFrame:
    """``frame`` with ``patient_id`` (and ``image_id``) replaced by pseudonyms; the mapping goes to the private folder."""
    out = frame.copy()
    for col, prefix in (("patient_id", "P-"), ("image_id", "I-")):
        if col in out.columns and plan.ids is not None:
            codes = plan.ids(out[col], prefix=prefix)
            if not plan.ids.raw and plan.private_dir is not None:
                write_id_map(out[col], codes, plan.private_dir / f"{col}_map.csv")
            out[col] = codes
    return out


def data_dictionary(cols: list[str], schema: dict[str, dict], *, raw_ids: bool = False,
                    method: str = "leiden") -> pd.DataFrame:
    """One row per exported column: name, type, unit, allowed range/categories, description, source.

    ``method``: the clustering method whose labels fill ``subtype`` (``leiden`` | ``gmm``).
    """
    def describe(c: str, d: str) -> str:
        if raw_ids and c == "patient_id":
            return RAW_ID_NOTE
        return f"candidate subtype S1..SK (S1 largest) from {SUBTYPE_METHOD[method]}" if c == "subtype" else d

    rows = [{"column": c, "type": t, "unit": "", "range_or_categories": "", "description": describe(c, d),
             "source": "clustering"} for c, (t, d) in BASE_COLUMNS.items()]
    for c in cols:
        spec = schema.get(c, {})
        rng = spec.get("categories") or ([spec.get("min"), spec.get("max")] if spec.get("min") is not None
                                         or spec.get("max") is not None else "")
        rows.append({"column": c, "type": spec.get("type", "label (1 present, 0 absent, -1 uncertain, empty not "
                                                           "mentioned)" if c.startswith("label_") else ""),
                     "unit": spec.get("unit") or "", "range_or_categories": json.dumps(rng) if rng else "",
                     "description": spec.get("description", ""), "source": "clinical" if c in schema else "manifest"})
    return pd.DataFrame(rows)


def write_export(assign: pd.DataFrame, table: pd.DataFrame, cfg: ClusteringConfig, schema: dict[str, dict], *,
                 out: Path, provenance: dict[str, object], source: str, plan: ExportPlan | None = None
                 ) -> dict[str, Path]:
    """Write subtypes.csv/.parquet, data_dictionary.csv and provenance.json into ``out`` (each atomically).

    ``assign`` has the base columns (one row per clustered unit, raw ids); ``table`` holds candidate extra
    columns aligned to it (same index). ``plan`` defaults to :func:`plan_export`.
    """
    plan = plan or plan_export(table, cfg, schema, out=out, source=source)
    extra = [c for c in assign.columns if c not in BASE_COLUMNS]
    export = guard_frame(pd.concat([assign, table[plan.columns]], axis=1), allowed=plan.columns,
                         keep=list(BASE_COLUMNS) + extra, schema=schema, allow_identifying=cfg.export.allow_identifying,
                         where="subtypes export")
    export = export_ids(export, plan)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"subtypes_csv": out / "subtypes.csv", "subtypes_parquet": out / "subtypes.parquet",
             "data_dictionary": out / "data_dictionary.csv", "provenance": out / "provenance.json"}
    write_csv(export, paths["subtypes_csv"])
    write_parquet(export, paths["subtypes_parquet"])
    dd = data_dictionary(plan.columns, schema, raw_ids=bool(plan.ids and plan.ids.raw), method=cfg.labels)
    if extra:
        dd = pd.concat([dd, pd.DataFrame([{"column": c, "type": "str", "unit": "", "range_or_categories": "",
                                           "description": "image key (pseudonymous like patient_id)", "source": "manifest"}
                                          for c in extra])], ignore_index=True)
    write_csv(dd, paths["data_dictionary"])
    record = {"created": now_iso(), "config_sha256": sha256_json(cfg.model_dump(mode="json")),
              "exported_columns": list(export.columns), "ids": plan.id_policy(),
              "withheld_from_summaries": plan.withheld, "n_rows": int(len(export)), "versions": library_versions(),
              **provenance}
    write_json(paths["provenance"], record)
    return paths
