"""Model selection -> selection.json: the best mean AUROC, unless a model whose probe sees fewer dimensions is
*equivalent* to it within a stated margin (the source study's reasoning -- near-identical AUROC, the smaller
representation wins -- made testable: "not significantly different" is not "equivalent").

Rule (an intersection-union test, so no multiplicity correction is needed): model m is equivalent to the best
model when its mean AUROC (over datasets and labels) is within ``margin`` of the best's and, on every
(dataset, label), the paired interval of AUROC(best) - AUROC(m) at level 1 - 2 alpha (two one-sided tests;
fold-stratified, patient-clustered DeLong, ``comparisons.equiv_ci_*``) lies inside (-margin, +margin).
Among the best model and its equivalents, the one with the fewest probe-input dimensions (what the probe sees
after pooling, e.g. 768 for CXR-Foundation's 32 x 768 tokens mean-pooled, not the 24,576 stored values) wins;
ties go to the higher mean AUROC.

This module owns the ``selection.json`` contract (docs/data-contracts.md): :func:`write_selection` writes the
record, :func:`read_selection` reads it for the later stages as a :class:`Selection`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from core.safeio import write_json

from .config import Pooling


@dataclass(frozen=True)
class Selection:
    """``selection.json``: the chosen store ``model``, its ``augmentation`` and token ``pooling`` (None where the
    file does not say), and the whole ``record`` (reason, rule, candidates, patient_id_warnings, ...)."""

    model: str
    augmentation: str | None
    pooling: Pooling | None
    record: dict[str, Any]


def write_selection(path: str | Path, record: dict[str, Any]) -> Path:
    """Write ``record`` (from :func:`select_model`, plus run notes) as ``selection.json`` at ``path``."""
    if "model" not in record:
        raise ValueError(f"selection record for {path} has no 'model' key")
    return write_json(path, record)


def read_selection(path: str | Path) -> Selection:
    """Read ``selection.json``; ValueError naming the file when it is unreadable or names no model."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read selection file {path}: {exc}") from exc
    if "model" not in record:
        raise ValueError(f"selection file {path} has no 'model' key")
    return Selection(record["model"], record.get("augmentation"), record.get("pooling"), record)


def _shape(shape: tuple[int, ...]) -> str:
    return " x ".join(str(int(v)) for v in shape)


def select_model(results: pd.DataFrame, comparisons: pd.DataFrame, *, probe_dims: dict[str, int],
                 stored_shapes: dict[str, tuple[int, ...]], poolings: dict[str, str], probe: str,
                 margin: float, alpha: float) -> dict[str, object]:
    """Pick one model from ``results.csv``/``comparisons.csv`` rows of ``probe`` by the module's rule.

    ``probe_dims``: features per image the probe sees; ``stored_shapes``: per-image shape in the store;
    ``margin``: equivalence margin in AUROC; ``alpha``: one-sided level of each equivalence test (the interval
    is at 1 - 2 alpha). Returns the selection record (model, augmentation, pooling, reason, rule, margin,
    mean_auroc, probe_input_dims, probe, best_by_auroc, candidates).
    """
    auroc = results[(results.metric == "auroc") & (results.probe == probe)
                    & (results.ci_method == "patient_bootstrap")]
    if auroc.empty:
        raise ValueError(f"no AUROC results for probe {probe!r} to select a model from")
    mean_auroc = auroc.groupby("model")["mean"].mean().sort_values(ascending=False)
    best = str(mean_auroc.index[0])
    n_tasks = auroc[auroc.model == best].groupby(["dataset", "label"]).ngroups
    cmp = comparisons[comparisons.probe == probe]
    level = 1 - 2 * alpha
    candidates: dict[str, dict[str, object]] = {}
    for model, value in mean_auroc.items():
        model = str(model)
        pair = cmp[((cmp.model_a == best) & (cmp.model_b == model)) | ((cmp.model_a == model) & (cmp.model_b == best))]
        sign = (pair.model_a == best).map({True: 1.0, False: -1.0})       # intervals of AUROC(best) - AUROC(model)
        lo = pd.concat([pair.equiv_ci_low * sign, pair.equiv_ci_high * sign], axis=1).min(axis=1)
        hi = pd.concat([pair.equiv_ci_low * sign, pair.equiv_ci_high * sign], axis=1).max(axis=1)
        inside = (lo > -margin) & (hi < margin)
        outside = [f"{r.dataset}/{r.label} [{a:+.3f}, {b:+.3f}]"
                   for r, a, b, ok in zip(pair.itertuples(), lo, hi, inside) if not ok]
        gap = float(mean_auroc[best] - value)
        equivalent = model == best or (gap < margin and len(pair) == n_tasks and not outside)
        sig = pair[(pair.delong_p_adj < alpha) | (pair.nb_p_adj < alpha)]
        candidates[model] = {
            "mean_auroc": float(value), "auroc_gap_to_best": gap, "probe_input_dims": int(probe_dims[model]),
            "stored_shape": [int(v) for v in stored_shapes[model]], "pooling": poolings[model],
            "equivalent_to_best": bool(equivalent),
            "intervals_outside_margin": outside,
            "tasks_compared": int(len(pair)) if model != best else n_tasks,
            "significant_differences": [f"{r.dataset}/{r.label}" for r in sig.itertuples()],
        }
    pool = [m for m, c in candidates.items() if c["equivalent_to_best"]]
    chosen = min(pool, key=lambda m: (candidates[m]["probe_input_dims"], -candidates[m]["mean_auroc"]))
    rule = (f"equivalence margin {margin:g} AUROC: a model is equivalent to the best when its mean AUROC is within "
            f"{margin:g} of the best's and, on every dataset/label, the {level:.0%} paired interval of the AUROC "
            f"difference (fold-stratified, patient-clustered DeLong; two one-sided tests at alpha {alpha:g}) lies "
            f"inside +-{margin:g}; among equivalent models the fewest probe-input dimensions wins")
    reason = _reason(best, chosen, candidates, margin=margin, single=len(candidates) == 1)
    return {"model": chosen, "augmentation": "original", "pooling": poolings[chosen], "reason": reason,
            "rule": rule, "margin": margin, "alpha": alpha, "mean_auroc": float(mean_auroc[chosen]),
            "probe_input_dims": int(probe_dims[chosen]), "probe": probe, "best_by_auroc": best,
            "candidates": candidates}


def _describe(model: str, c: dict[str, object]) -> str:
    stored = _shape(tuple(c["stored_shape"]))
    how = f"stored {stored}, {c['pooling']} pooling" if len(c["stored_shape"]) > 1 else f"stored {stored}"
    return f"{model} (mean AUROC {c['mean_auroc']:.4f}, probe input {c['probe_input_dims']} dims, {how})"


def _reason(best: str, chosen: str, candidates: dict[str, dict[str, object]], *, margin: float,
            single: bool) -> str:
    """The selection in words: which rule decided, the margin, and the probe-input dimensions."""
    if single:
        return f"only one model was benchmarked: {_describe(best, candidates[best])}"
    others = [m for m in candidates if m != best]
    if chosen != best:
        return (f"rule: equivalence within margin {margin:g} AUROC, then fewest probe-input dimensions. "
                f"{_describe(chosen, candidates[chosen])} is equivalent to the best, "
                f"{_describe(best, candidates[best])}, and its probe sees fewer dimensions "
                f"({candidates[chosen]['probe_input_dims']} vs {candidates[best]['probe_input_dims']})")
    parts = []
    for m in others:
        c = candidates[m]
        if c["equivalent_to_best"]:
            why = f"equivalent within {margin:g} but its probe does not see fewer dimensions"
        elif c["auroc_gap_to_best"] >= margin:
            why = f"mean AUROC {c['auroc_gap_to_best']:.4f} below the best, not within the margin {margin:g}"
        elif c["tasks_compared"] < candidates[best]["tasks_compared"]:
            why = "not compared with the best on every dataset/label"
        else:
            why = (f"equivalence not shown: paired interval outside +-{margin:g} on "
                   + ", ".join(c["intervals_outside_margin"]))
        parts.append(f"{_describe(m, c)}: {why}")
    return (f"rule: best mean AUROC unless another model is equivalent within margin {margin:g} AUROC and its probe "
            f"sees fewer dimensions. Chose the best, {_describe(best, candidates[best])}; " + "; ".join(parts))
