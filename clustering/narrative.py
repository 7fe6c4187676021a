"""Plain-language description of each subtype, generated from Table 1's data and the outcome analysis.

Per subtype: size and share; the clinical variables that differ most from the other subtypes with an
effect size (continuous: medians and Cliff's delta, the probability that a patient of the subtype has a
higher value than one of the others minus the reverse; binary/categorical: percentages and the difference
in percentage points); the outcome (events, Cox hazard ratio against the reference subtype with its 95%
interval). Only differences of at least a moderate size are named (|delta| >= 0.33, Romano et al. 2006;
>= 10 percentage points).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

MIN_DELTA = 0.33          # Cliff's delta: 'medium' and above
MIN_POINTS = 10.0         # percentage points
MAX_NAMED = 4             # variables named per subtype
CAVEAT = ("These descriptions compare each subtype with all other patients. The subtypes were found in these "
          "same data, so the differences (and the p-values of Table 1) are larger than a new cohort would show: "
          "read them as a description, not as evidence, until the subtypes are replicated.")


def cliffs_delta(a: np.ndarray, b: np.ndarray) -> float:
    """P(a > b) - P(a < b) over all pairs (rank-based, in [-1, 1]); NaN when either side is empty."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if not len(a) or not len(b):
        return float("nan")
    both = np.sort(b)
    greater = np.searchsorted(both, a, side="left").sum()
    less = len(b) * len(a) - np.searchsorted(both, a, side="right").sum()
    return float((greater - less) / (len(a) * len(b)))


def _num(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def _differences(units: pd.DataFrame, schema: dict[str, dict], group: str, *, subtype: str) -> list[tuple[float, str]]:
    """(size of effect, phrase) for every feature that differs at least moderately; larger first."""
    inside = units[subtype] == group
    found = []
    for var, spec in schema.items():
        if var not in units.columns or spec.get("role") != "feature":
            continue
        unit = f" {spec['unit']}" if spec.get("unit") else ""
        if spec["type"] == "continuous":
            col = pd.to_numeric(units[var], errors="coerce")
            a, b = col[inside].dropna().to_numpy(), col[~inside].dropna().to_numpy()
            d = cliffs_delta(a, b)
            if np.isfinite(d) and abs(d) >= MIN_DELTA:
                found.append((abs(d), f"{'higher' if d > 0 else 'lower'} {var} (median {_num(np.median(a))} vs "
                                      f"{_num(np.median(b))}{unit}; Cliff's delta {d:+.2f})"))
            continue
        col = units[var]
        levels = ["1"] if spec["type"] == "binary" else sorted(col.dropna().astype(str).unique())
        for lev in levels:
            values = col.dropna()
            hit = (values.astype(float) == 1) if spec["type"] == "binary" else (values.astype(str) == lev)
            ins, out = hit[inside[values.index]], hit[~inside[values.index]]
            if not len(ins) or not len(out):
                continue
            pa, pb = 100 * ins.mean(), 100 * out.mean()
            # a category's deficit is another's excess: name categories only where they are more frequent
            if abs(pa - pb) >= MIN_POINTS and (spec["type"] == "binary" or pa > pb):
                what = var if spec["type"] == "binary" else f"{var} = {lev}"
                # for a 0/1 variable Cliff's delta equals the difference in proportions: one scale for ranking
                found.append((abs(pa - pb) / 100, f"{'more' if pa > pb else 'less'} often {what} "
                              f"({pa:.0f}% vs {pb:.0f}%, {pa - pb:+.0f} percentage points)"))
    return sorted(found, key=lambda t: -t[0])


def _outcome(group: str, surv: dict) -> str:
    if "logrank_p" not in surv:
        return ""
    cox = {c["subtype"]: c for c in surv.get("cox", [])}
    if group == surv.get("cox_reference"):
        return "It is the reference for the hazard ratios (the largest subtype)."
    if group in cox:
        c = cox[group]
        word = "higher" if c["ci_low"] > 1 else "lower" if c["ci_high"] < 1 else "no clearly different"
        return (f"Hazard of the event {c['hr']:.2f} times that of {surv['cox_reference']} (95% CI {c['ci_low']:.2f} to "
                f"{c['ci_high']:.2f}): {word} risk" + (" than the reference." if word != "no clearly different"
                                                       else " (the interval includes 1)."))
    return ""


def describe_subtypes(units: pd.DataFrame, schema: dict[str, dict], surv: dict, *, subtype: str = "subtype",
                      time: str = "time", event: str = "event") -> dict[str, str]:
    """One paragraph per subtype (keys ``S1``..), from the unit table (one row per clustered unit, with the
    schema's columns), the clinical schema and :func:`clustering.characterize.survival`'s result."""
    groups = sorted(units[subtype].dropna().unique(), key=lambda s: (len(s), s))
    n_all = len(units)
    out = {}
    for g in groups:
        part = units[units[subtype] == g]
        text = [f"{g}: {len(part)} of {n_all} patients ({100 * len(part) / n_all:.0f}%)."]
        diffs = _differences(units, schema, g, subtype=subtype)
        if diffs:
            named = [p for _, p in diffs[:MAX_NAMED]]
            text.append("Compared with the other subtypes: " + "; ".join(named) + ".")
        else:
            text.append("No clinical variable differs by a moderate amount or more from the other subtypes.")
        if {time, event} <= set(part.columns) and part[event].notna().any():
            ev = pd.to_numeric(part[event], errors="coerce").dropna()
            text.append(f"Events: {int(ev.sum())} of {len(ev)} ({100 * ev.mean():.0f}%).")
        outcome = _outcome(g, surv)
        if outcome:
            text.append(outcome)
        out[g] = " ".join(text)
    return out
