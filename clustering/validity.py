"""The validity panel: which of the report's numbers cannot be trusted, and why, in one sentence each.

``validity.json`` is a list of ``{"check", "status": "pass"|"warn"|"fail", "value", "threshold",
"message"}``, written by the clustering stage and shown at the top of ``clustering/report.html`` and
of the pipeline's ``report.html``. Checks that do not apply (one site, no survival columns, no
survival head, no benchmark) are left out. Thresholds: :class:`clustering.config.ValidityConfig`.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from .config import ValidityConfig

STATUSES = ("pass", "warn", "fail")


def check(name: str, status: str, value: Any, threshold: Any, message: str) -> dict[str, Any]:
    """One panel row."""
    if status not in STATUSES:
        raise ValueError(f"validity status must be one of {STATUSES}, got {status!r}")
    return {"check": name, "status": status, "value": value, "threshold": threshold, "message": message}


def _grade(value: float, *, warn: float, fail: float, higher_is_worse: bool) -> str:
    if higher_is_worse:
        return "fail" if value > fail else "warn" if value > warn else "pass"
    return "fail" if value < fail else "warn" if value < warn else "pass"


def site_checks(diagnostics: dict[str, dict], cfg: ValidityConfig) -> list[dict[str, Any]]:
    """Per site column that is not a model input: AMI(subtype, column) and the site classifier's AUROC."""
    out = []
    for col, d in diagnostics.items():
        if "ami" not in d or d.get("model_input"):
            continue
        ami = d["ami"]
        status = _grade(ami, warn=cfg.site_ami_warn, fail=cfg.site_ami_fail, higher_is_worse=True)
        out.append(check(f"site confounding: subtypes vs {col}", status, round(ami, 4),
                         {"warn": cfg.site_ami_warn, "fail": cfg.site_ami_fail},
                         f"The subtypes share {max(ami, 0.0):.2f} adjusted mutual information with {col} (0 = independent): "
                         + {"pass": f"they do not follow {col}.",
                            "warn": f"they partly follow {col}; read the composition table before trusting them.",
                            "fail": f"they largely follow {col}, so they may be {col} groups rather than patient "
                                    "subtypes."}[status]))
        auroc = d.get("classifier", {}).get("auroc")
        if auroc is None:
            continue
        status = _grade(auroc, warn=cfg.site_auroc_warn, fail=cfg.site_auroc_fail, higher_is_worse=True)
        out.append(check(f"site in the latent: {col}", status, round(auroc, 4),
                         {"warn": cfg.site_auroc_warn, "fail": cfg.site_auroc_fail},
                         f"A classifier predicts {col} from the clustered representation with AUROC {auroc:.2f} "
                         "(patient-grouped cross-validation; 0.5 = no site information): "
                         + {"pass": "little site information is left to cluster by.",
                            "warn": "it carries site information that clusters can pick up.",
                            "fail": f"it encodes {col} almost perfectly; condition the fusion on it "
                                    "(fusion covariates) before trusting subtypes."}[status]))
    return out


def stability_check(summary: dict[str, float] | None, *, stable: bool, reason: str,
                    cfg: ValidityConfig) -> dict[str, Any]:
    """Resampling stability (mean and worst ARI), or a fail when no stable structure was found."""
    threshold = {"mean_warn": cfg.stability_mean_warn, "mean_fail": cfg.stability_mean_fail,
                 "min_warn": cfg.stability_min_warn}
    if not stable or summary is None:
        return check("resampling stability", "fail", None, threshold,
                     f"No stable subtypes: {reason}. Every patient is reported in one group.")
    mean, worst = summary["ari_mean"], summary["ari_min"]
    status = _grade(mean, warn=cfg.stability_mean_warn, fail=cfg.stability_mean_fail, higher_is_worse=False)
    if status == "pass" and worst < cfg.stability_min_warn:
        status = "warn"
    return check("resampling stability", status, {"mean": round(mean, 4), "min": round(worst, 4)}, threshold,
                 f"Reclustering {summary['n_resamples']} subsamples reproduces the subtypes with ARI {mean:.2f} on "
                 f"average (worst {worst:.2f}): "
                 + {"pass": "the partition is reproducible.",
                    "warn": "some resamples give a different partition; treat the boundaries as soft.",
                    "fail": "the partition is not reproducible; do not report these subtypes."}[status])


def agreement_check(methods: dict[str, Any], cfg: ValidityConfig) -> dict[str, Any] | None:
    """Agreement (ARI) of the Leiden and Gaussian-mixture partitions (``Choice.summary()``); None without a mixture."""
    ari = methods.get("agreement_ari")
    if ari is None or "gmm" not in methods:
        return None
    status = _grade(ari, warn=cfg.agreement_warn, fail=cfg.agreement_fail, higher_is_worse=False)
    n_leiden, n_gmm = methods["leiden"]["n_subtypes"], methods["gmm"]["n_subtypes"]
    return check("method agreement", status, round(ari, 4), {"warn": cfg.agreement_warn, "fail": cfg.agreement_fail},
                 f"Leiden ({n_leiden} subtypes) and the Gaussian mixture ({n_gmm} classes) agree at ARI {ari:.2f} "
                 f"(1 = the same partition); {methods['exported']} labels the export: "
                 + {"pass": "both methods find the same groups.",
                    "warn": "the groups depend on the method; compare both partitions before naming subtypes.",
                    "fail": "the two methods find different groups; the subtypes are an artefact of the method "
                            "as much as of the data."}[status])


def size_check(sizes: dict[str, int], cfg: ValidityConfig) -> dict[str, Any]:
    """Smallest subtype, in patients."""
    name, n = min(sizes.items(), key=lambda kv: kv[1])
    status = _grade(n, warn=cfg.subtype_size_warn, fail=cfg.subtype_size_fail, higher_is_worse=False)
    return check("smallest subtype", status, int(n), {"warn": cfg.subtype_size_warn, "fail": cfg.subtype_size_fail},
                 f"The smallest subtype, {name}, has {n} patients: "
                 + {"pass": "large enough to characterise.",
                    "warn": "its proportions and curves have wide uncertainty.",
                    "fail": "too few to characterise; its statistics are anecdotes."}[status])


def survival_checks(surv: dict[str, Any], cfg: ValidityConfig) -> list[dict[str, Any]]:
    """Kaplan-Meier group sizes/events and whether the Cox hazard ratios are estimable."""
    groups = surv.get("groups")
    if not groups:
        return []
    threshold = {"min_patients": cfg.km_min_patients, "min_events": cfg.km_min_events}
    thin = [g for g in groups if g["n"] < cfg.km_min_patients or g["events"] < cfg.km_min_events]
    value = {"min_patients": min(g["n"] for g in groups), "min_events": min(g["events"] for g in groups)}
    out = [check("Kaplan-Meier groups", "fail" if thin else "pass", value, threshold,
                 ("Kaplan-Meier curves of " + ", ".join(f"{g['subtype']} ({g['n']} patients, {g['events']} events)"
                                                        for g in thin)
                  + f" rest on fewer than {cfg.km_min_patients} patients with follow-up or {cfg.km_min_events} events: "
                    "do not read them.") if thin else
                 f"Every subtype has at least {cfg.km_min_patients} patients with follow-up and {cfg.km_min_events} "
                 "events in the survival analysis.")]
    if "logrank_p" not in surv:
        return out
    bad = [r for r in surv.get("cox", []) if not r.get("estimable", True)]
    if "cox_error" in surv or bad:
        what = (surv.get("cox_error") or "The hazard ratios of " + ", ".join(r["subtype"] for r in bad)
                + " are not estimable (an infinite or zero ratio: no or almost no events in a group)")
        out.append(check("Cox hazard ratios", "fail", len(bad) or None, {"max_ratio": cfg.hr_max_ratio},
                         f"{what}; they are reported as not estimable, not as numbers."))
    else:
        out.append(check("Cox hazard ratios", "pass", 0, {"max_ratio": cfg.hr_max_ratio},
                         "Every Cox hazard ratio against the reference subtype is estimable."))
    return out


def survival_head_check(metrics: dict[str, Any], cfg: ValidityConfig) -> list[dict[str, Any]]:
    """Per endpoint of the fusion survival head: C below 0.5 or significantly below its clinical baseline."""
    out = []
    for name, endpoint in metrics.get("endpoints", {}).items():
        c = endpoint.get("metrics", {}).get("c_index", {})
        head = c.get("head")
        if not head:
            continue
        diffs = {k: v for k, v in c.items() if k.startswith("head - ") and "clinical" in k}
        worse = [k.split(" - ", 1)[1] for k, v in diffs.items() if _finite(v.get("ci_high")) and v["ci_high"] < 0]
        est = head["estimate"]
        if est < 0.5 or worse:
            status, msg = "fail", (f"The survival head's C-index for {name} is {est:.2f}"
                                   + (f", significantly below {', '.join(worse)}" if worse else ", below chance")
                                   + ": its risk scores should not be used.")
        elif _finite(head.get("ci_low")) and head["ci_low"] <= 0.5:
            status, msg = "warn", (f"The survival head's C-index for {name} is {est:.2f} but its interval "
                                   f"[{head['ci_low']:.2f}, {head['ci_high']:.2f}] includes chance (0.5).")
        else:
            status, msg = "pass", (f"The survival head's C-index for {name} is {est:.2f} [{head['ci_low']:.2f}, "
                                   f"{head['ci_high']:.2f}], above chance and not below its clinical baseline.")
        out.append(check(f"survival head: {name}", status, round(est, 4), {"c_index_min": 0.5, "alpha": cfg.alpha},
                         msg))
    return out


def selection_check(selection: dict[str, Any], comparisons: pd.DataFrame | None, cfg: ValidityConfig) -> dict[str, Any]:
    """The benchmark's pick: significantly worse than another model (fail), or no model differs (warn)."""
    pick = selection.get("model")
    p_col = next((c for c in ("delong_p_adj", "delong_p") if comparisons is not None and c in comparisons), None)
    worse, better = [], []
    if p_col is not None:
        sig = comparisons[comparisons[p_col] < cfg.alpha]
        for r in sig.itertuples(index=False):
            if pick not in (r.model_a, r.model_b):
                continue
            other = r.model_b if r.model_a == pick else r.model_a
            pick_auc, other_auc = (r.auroc_a, r.auroc_b) if r.model_a == pick else (r.auroc_b, r.auroc_a)
            probe = f" ({r.probe} probe)" if hasattr(r, "probe") else ""     # one row per probe: say which
            (worse if pick_auc < other_auc else better).append(f"{other} on {r.dataset}/{r.label}{probe}")
    else:
        better = [m for m, c in selection.get("candidates", {}).items()
                  if m != pick and not c.get("indistinguishable_from_best", True)]
    threshold = {"alpha": cfg.alpha}
    if worse:
        return check("model selection", "fail", len(worse), threshold,
                     f"The selected model {pick} is significantly worse than " + "; ".join(worse[:5])
                     + " (adjusted DeLong p < alpha): the selection does not follow the benchmark.")
    if not better:
        return check("model selection", "warn", 0, threshold,
                     f"No model differs significantly from the selected {pick}: the benchmark does not show it is "
                     "better; another model would be an equally valid choice.")
    return check("model selection", "pass", len(better), threshold,
                 f"The selected model {pick} is significantly better than " + "; ".join(better[:5]) + ".")


def excluded_check(n_excluded: int, n_total: int, cfg: ValidityConfig) -> dict[str, Any]:
    """Patients left out of the clustering (no input at all)."""
    frac = n_excluded / n_total if n_total else 0.0
    status = _grade(frac, warn=cfg.excluded_warn, fail=cfg.excluded_fail, higher_is_worse=True)
    return check("excluded patients", status, {"n": int(n_excluded), "fraction": round(frac, 4)},
                 {"warn": cfg.excluded_warn, "fail": cfg.excluded_fail},
                 f"{n_excluded} of {n_total} patients ({frac:.1%}) had no input and are not in any subtype "
                 "(excluded.csv)" + {"pass": ".", "warn": ": the subtypes describe a selected cohort.",
                                     "fail": ": the subtypes describe a strongly selected cohort."}[status])


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def read_json(path: Path | None) -> Any:
    """Parsed JSON at ``path``, or None when there is no such file."""
    return json.loads(Path(path).read_text()) if path is not None and Path(path).is_file() else None


def write_validity(checks: list[dict[str, Any]], path: Path) -> Path:
    """Write ``validity.json``."""
    path.write_text(json.dumps(checks, indent=2, default=str))
    return path


_COLOURS = {"pass": "#2e7d32", "warn": "#b26a00", "fail": "#c62828"}
PANEL_CSS = (".validity td,.validity th{text-align:left;vertical-align:top}.validity .st{font-weight:bold;"
             "text-transform:uppercase}" + "".join(f".validity .{k}{{color:{v}}}" for k, v in _COLOURS.items()))


def panel_html(checks: list[dict[str, Any]] | None) -> str:
    """The panel as an HTML fragment (a heading, counts and one row per check); empty without checks."""
    if not checks:
        return ""
    counts = {s: sum(c["status"] == s for c in checks) for s in STATUSES}
    rows = "".join(f"<tr><td class='st {c['status']}'>{c['status']}</td><td>{html.escape(c['check'])}</td>"
                   f"<td>{html.escape(c['message'])}</td></tr>"
                   for c in sorted(checks, key=lambda c: -STATUSES.index(c["status"])))
    return (f"<style>{PANEL_CSS}</style><h2>Validity panel</h2><p>{counts['fail']} fail, {counts['warn']} warn, "
            f"{counts['pass']} pass (<code>clustering/validity.json</code>; thresholds in the config's "
            f"<code>validity</code> section).</p><table class='validity'><tr><th>status</th><th>check</th>"
            f"<th>what it means</th></tr>{rows}</table>")
