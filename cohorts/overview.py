"""Cohort overview (the Emory study's first step): counts in ``overview.json`` and PNG figures.

Covers view positions, images per patient and per study, images per year (from ``acquired_at``,
else a ``year`` column), label counts incl. uncertain and missing, manufacturer / site when present,
missingness of each clinical column per dataset, plus run facts passed in (filters, errors, sample shortfalls).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from core.safeio import write_json  # noqa: E402

from .labels import label_counts  # noqa: E402

CATEGORY_COLUMNS = ("manufacturer", "site", "modality")


def _per_dataset(manifest: pd.DataFrame, values: pd.Series) -> dict[str, dict[str, int]]:
    table = pd.crosstab(manifest["dataset"], values.fillna("<missing>").astype(str))
    return {str(d): {str(k): int(v) for k, v in row.items() if v} for d, row in table.iterrows()}


def _distribution(sizes: pd.Series) -> dict[str, float]:
    return {"n": int(len(sizes)), "mean": float(sizes.mean()), "median": float(sizes.median()),
            "max": int(sizes.max()), "single": int((sizes == 1).sum())} if len(sizes) else {"n": 0}


def cohort_counts(manifest: pd.DataFrame, clinical: pd.DataFrame | None) -> dict[str, Any]:
    """All overview counts as a JSON-ready dict."""
    years = manifest["acquired_at"].dt.year.astype("Int64")
    if "year" in manifest.columns:
        years = years.fillna(manifest["year"].astype("Int64"))
    out: dict[str, Any] = {
        "n_images": int(len(manifest)), "n_patients": int(manifest["patient_id"].nunique()),
        "n_studies": int(manifest["study_id"].nunique()),
        "images_by_dataset": {str(k): int(v) for k, v in manifest["dataset"].value_counts().sort_index().items()},
        "views": _per_dataset(manifest, manifest["view"]),
        "images_per_patient": _distribution(manifest.groupby("patient_id").size()),
        "images_per_study": _distribution(manifest.groupby("study_id").size()),
        "images_with_path": int(manifest["path"].notna().sum()),
        "labels": label_counts(manifest),
    }
    if years.notna().any():
        out["images_per_year"] = {str(k): int(v) for k, v in years.dropna().value_counts().sort_index().items()}
    for col in CATEGORY_COLUMNS:
        if col in manifest.columns and manifest[col].notna().any():
            out[col] = _per_dataset(manifest, manifest[col])
    if clinical is not None:
        by_dataset = _missing_by_dataset(manifest, clinical)
        out["clinical"] = {"n_patients": int(len(clinical)),
                           "missing_fraction": {c: round(float(clinical[c].isna().mean()), 4)
                                                for c in clinical.columns if c != "patient_id"},
                           "missing_fraction_by_dataset": {d: {c: round(float(v), 4) for c, v in col.items()}
                                                           for d, col in by_dataset.items()}}
    return out


def _missing_by_dataset(manifest: pd.DataFrame, clinical: pd.DataFrame) -> pd.DataFrame:
    """Fraction missing per clinical column (rows) and dataset of the patient (columns)."""
    dataset = clinical["patient_id"].map(manifest.drop_duplicates("patient_id").set_index("patient_id")["dataset"])
    values = clinical.drop(columns="patient_id").isna()
    return values.groupby(dataset.fillna("<no images>").to_numpy()).mean().T


def _bar(ax: plt.Axes, counts: dict[str, int], title: str) -> None:
    ax.bar(range(len(counts)), list(counts.values()), color="#4c72b0")
    ax.set_xticks(range(len(counts)), list(counts), rotation=45, ha="right", fontsize=8)
    ax.set_title(title)


def _figures(manifest: pd.DataFrame, clinical: pd.DataFrame | None, counts: dict[str, Any], out: Path) -> list[Path]:
    paths = []

    def save(fig: plt.Figure, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        paths.append(out / name)

    fig, ax = plt.subplots(figsize=(7, 4))
    pd.crosstab(manifest["view"].fillna("<missing>"), manifest["dataset"]).plot.bar(ax=ax)
    ax.set_title("images per view position"), ax.set_ylabel("images")
    save(fig, "views.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, unit, units in zip(axes, ("patient_id", "study_id"), ("patient", "study"), ("patients", "studies")):
        sizes = manifest.groupby(key).size().value_counts().sort_index()
        ax.bar(sizes.index, sizes.to_numpy(), width=0.8, color="#4c72b0")
        ax.set_yscale("log"), ax.set_xlabel(f"images per {unit}"), ax.set_ylabel(units)
        if len(sizes) <= 10:
            ax.set_xticks(sizes.index)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if unit == "study" and (manifest["study_id"] == manifest["image_id"]).all():
            ax.set_title("the sources give no study ids: one image per study", fontsize=9)
    save(fig, "images_per_patient_study.png")

    if counts.get("images_per_year"):
        fig, ax = plt.subplots(figsize=(7, 4))
        _bar(ax, counts["images_per_year"], "images per year")
        save(fig, "images_per_year.png")

    if counts["labels"]:
        table = pd.DataFrame(counts["labels"]).T
        fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(table)), 4.5))
        table[["positive", "negative", "uncertain", "missing"]].plot.bar(stacked=True, ax=ax)
        ax.set_title("label counts (1 / 0 / -1 / not mentioned)"), ax.set_ylabel("images")
        save(fig, "labels.png")

    for col in CATEGORY_COLUMNS:
        if col in counts:
            totals = manifest[col].fillna("<missing>").astype(str).value_counts().head(20)
            fig, ax = plt.subplots(figsize=(8, 4))
            _bar(ax, {k[:30]: int(v) for k, v in totals.items()}, f"images per {col} (top 20)")
            save(fig, f"{col}.png")

    if clinical is not None and counts["clinical"]["missing_fraction"]:
        miss = pd.DataFrame(counts["clinical"]["missing_fraction_by_dataset"]).loc[::-1]
        fig, ax = plt.subplots(figsize=(7, max(3, 0.22 * len(miss) * max(1, len(miss.columns) / 1.5))))
        miss.plot.barh(ax=ax, width=0.8)
        ax.set_xlim(0, 1), ax.set_xlabel("fraction of the dataset's patients missing the value")
        ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(4, len(miss.columns)),
                  title="clinical missingness by dataset", frameon=False)
        save(fig, "clinical_missingness.png")
    return paths


def write_overview(manifest: pd.DataFrame, clinical: pd.DataFrame | None, out_dir: str | Path, *,
                   facts: dict[str, Any] | None = None) -> Path:
    """Write ``overview.json`` (counts + ``facts``) and PNG figures into ``out_dir``; return the json path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = cohort_counts(manifest, clinical)
    figures = _figures(manifest, clinical, counts, out)
    record = {**counts, **(facts or {}), "figures": [p.name for p in figures]}
    path = out / "overview.json"
    write_json(path, record)
    return path
