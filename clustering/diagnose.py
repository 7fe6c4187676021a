"""Site diagnostics and the validity panel of one clustering run: compute, write, describe.

:func:`diagnose` computes; :func:`write_diagnosis` writes ``site_diagnostics.json`` and ``validity.json``;
:func:`site_section` is the report section. Reads, when they exist, the fusion survival head's
``metrics.json`` (next to the latents: ``FUSION_DIR/survival/metrics.json``) and the benchmark's
``selection.json`` and ``comparisons.csv`` (``BENCH_DIR``, passed by the pipeline or ``--benchmark``).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.selection import read_selection

from . import validity as v
from .choice import Choice
from .config import ClusteringConfig
from .report import Section
from .sites import site_columns, site_diagnostics, top_levels

log = logging.getLogger(__name__)


@dataclass
class Diagnosis:
    """What the run learnt about its own trustworthiness."""

    sites: dict[str, Any]
    checks: list[dict[str, Any]]

    def site_ami(self) -> dict[str, float]:
        """AMI(subtype, column) per site column with at least two levels (``metrics.json`` ``site_ami``)."""
        return {c: d["ami"] for c, d in self.sites.items() if "ami" in d}


def diagnose(x: np.ndarray, units: pd.DataFrame, manifest: pd.DataFrame, *, indices: np.ndarray, choice: Choice,
             survival: dict[str, Any], n_excluded: int, model_inputs: set[str], cfg: ClusteringConfig,
             latents: Path | None, benchmark: Path | None) -> Diagnosis:
    """Site diagnostics + validity checks for ``units`` (n rows, aligned with ``x`` ``(n, d)`` and ``indices``)."""
    method = choice.chosen
    sites = site_columns(units, manifest, columns=cfg.sites.columns)
    diag = site_diagnostics(x, method.labels, sites, indices=indices, groups=units.patient_id.to_numpy(),
                            model_inputs=model_inputs, cluster=method.recluster if method.stable else None,
                            cfg=cfg.sites, seed=cfg.seed)

    checks = [v.stability_check(method.stability.summary() if method.stability else None, stable=method.stable,
                                reason=method.reason, cfg=cfg.validity)]
    if method.stable:
        per_patient = units.groupby("subtype").patient_id.nunique().to_dict()
        checks += [v.size_check(per_patient, cfg.validity)] + v.site_checks(diag, cfg.validity)
        checks += [c for c in [v.agreement_check(choice.summary(), cfg.validity)] if c is not None]
        checks += v.survival_checks(survival, cfg.validity)
    head = v.read_json(Path(latents).parent / "survival" / "metrics.json" if latents is not None else None)
    if head:
        checks += v.survival_head_check(head, cfg.validity)
    selection = Path(benchmark) / "selection.json" if benchmark is not None else None
    if selection is not None and selection.is_file():
        comp = Path(benchmark) / "comparisons.csv"
        checks.append(v.selection_check(read_selection(selection).record,
                                        pd.read_csv(comp) if comp.is_file() and comp.stat().st_size else None,
                                        cfg.validity))
    n_patients = units.patient_id.nunique() + n_excluded
    checks.append(v.excluded_check(n_excluded, n_patients, cfg.validity))
    log.info("validity: %s", {c["check"]: c["status"] for c in checks})
    return Diagnosis(diag, checks)


def write_diagnosis(diag: Diagnosis, out: Path) -> tuple[Path, Path]:
    """Write ``out/site_diagnostics.json`` and ``out/validity.json``."""
    path = out / "site_diagnostics.json"
    path.write_text(json.dumps(diag.sites, indent=2, default=str))
    return path, v.write_validity(diag.checks, out / "validity.json")


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def site_section(diag: Diagnosis, *, figure: Path | None) -> Section:
    """Report section: one summary row per site column, replication tables, the composition ``figure``."""
    rows, tables = [], []
    for col, d in diag.sites.items():
        if "ami" not in d:
            rows.append({"column": col, "levels": json.dumps(d.get("levels")), "note": d.get("note", "")})
            continue
        shown = list(d["levels"].items())[:6]
        rows.append({"column": col, "levels": ", ".join(f"{k}: {n}" for k, n in shown)
                     + (f" (+{len(d['levels']) - 6} more)" if len(d["levels"]) > 6 else ""),
                     "AMI": _fmt(d["ami"]), "ARI": _fmt(d["ari"]), "site AUROC from the latent": _fmt(d["classifier"].get("auroc")),
                     "mixing (iLISI score)": _fmt(d["mixing"]["score"]),
                     "note": "model input (descriptive)" if d["model_input"] else d["classifier"].get("note", "")})
        comp = top_levels(pd.DataFrame(d["composition"]).T.fillna(0).astype(int))
        tables.append((f"Subtype composition by {col} (patients; per patient: {d['resolved']})", comp.reset_index(
            names="subtype")))
        if d.get("replication"):
            tables.append((f"Replication by {col}: each level clustered alone, clusters matched to the pooled subtypes",
                           pd.DataFrame(d["replication"])))
        if d.get("leave_one_out"):
            tables.append((f"Leave one {col} out: subtypes predicted from the other levels (cosine kNN)",
                           pd.DataFrame(d["leave_one_out"])))
    text = ["Do the subtypes follow the sites? AMI/ARI of subtype vs column (0 = independent); AUROC of a "
            "patient-grouped cross-validated classifier predicting the column from the clustered representation "
            "(0.5 = no site information); mixing: iLISI on the kNN graph scaled so that 1 = neighbourhoods as mixed "
            "as with the levels randomly permuted, 0 = each neighbourhood from a single level. Replication: each "
            "level with enough patients clustered alone, its clusters matched to the pooled subtypes (agreement = "
            "share of its patients in the matched subtype)."]
    return Section("Site diagnostics", text=text, tables=[("Per site column", pd.DataFrame(rows))] + tables,
                   figures=[(figure, "Subtype composition by site column")] if figure else [])
