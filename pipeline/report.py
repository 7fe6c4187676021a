"""The run report: one self-contained HTML page (figures inlined) that walks through every stage's outputs.

Sections follow the data flow: cohort (counts, errors, overview figures), benchmark (AUROC and
accuracy tables with CIs, selection and why, paired comparisons, ROC curves), fusion (training,
reconstruction, held-out probes), survival head (C-index etc. against the baselines), subtypes
(choice of resolution, stability, outcomes, Table 1, UMAPs, montage), then links to the export,
the Embedding Atlas and the stage reports. A stage that did not run is left out; a file a stage did
not write is skipped, so the report also works on partial runs.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from clustering.characterize import cox_table
from clustering.report import FIGURE_CHECK_SCRIPT
from clustering.validity import panel_html
from cohorts.provenance import now_iso

_CSS = """body{font-family:system-ui,sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #446}h2{margin-top:2em;border-bottom:1px solid #bbb}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#eef}td.l,th.l{text-align:left}figure{display:inline-block;margin:.5em;vertical-align:top}
figure img{max-width:580px;border:1px solid #ddd}figcaption{font-size:12px;color:#555}
.muted{color:#777}.why{background:#f6f8ff;border-left:4px solid #88a;padding:.5em 1em}code{background:#f4f4f4;padding:1px 4px}"""


def write_report(run_dir: Path, *, title: str, timings: dict[str, dict[str, object]]) -> Path:
    """Write ``run_dir/report.html`` from whatever the stages wrote; returns its path."""
    run_dir = Path(run_dir)
    parts = [f"<h1>cxr-fusion run: {html.escape(title)}</h1>",
             f"<p class=muted>{html.escape(str(run_dir))} &middot; written {now_iso()}</p>",
             panel_html(_json(run_dir / "clustering" / "validity.json")),
             _links(run_dir),
             "<h3>Stages</h3>" + _html_table(pd.DataFrame.from_dict(timings, orient="index"))]
    for section in (_cohort, _benchmark, _fusion, _survival, _subtypes):
        parts.append(section(run_dir))
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style><script>{FIGURE_CHECK_SCRIPT}</script></head><body>{''.join(parts)}</body></html>")
    path = run_dir / "report.html"
    path.write_text(page)
    return path


# ----------------------------------------------------------------------------------------- sections
def _cohort(run: Path) -> str:
    folder = run / "cohorts"
    overview = _json(folder / "overview" / "overview.json")
    if overview is None:
        return ""
    per_patient = overview.get("images_per_patient", {})
    facts = {"images": overview.get("n_images"), "patients": overview.get("n_patients"),
             "studies": overview.get("n_studies"),
             "images per patient (mean / max)": f"{per_patient.get('mean')} / {per_patient.get('max')}",
             **{f"images from {k}": v for k, v in overview.get("images_by_dataset", {}).items()}}
    errors = _csv(folder / "errors.csv")
    n_errors = 0 if errors is None else len(errors)
    out = ["<h2>1. Cohort</h2>", _facts(facts),
           f"<p><b>{n_errors}</b> file(s) could not be used (<code>cohorts/errors.csv</code>).</p>"]
    if n_errors:
        out.append(_html_table(errors.head(20)))
    out.append(_figures(folder / "overview"))
    return "".join(out)


def _benchmark(run: Path) -> str:
    folder = run / "benchmarks"
    results, selection = _csv(folder / "results.csv"), _json(folder / "selection.json")
    if results is None:
        return ""
    out = ["<h2>2. Benchmark of the embedding models</h2>",
           "<p class=muted>Patient-grouped stratified K-fold; augmented images only in training folds. "
           "Cells: mean over folds [95% patient-level bootstrap CI of the pooled out-of-fold predictions]; "
           "best model per row in bold.</p>"]
    for metric in ("auroc", "accuracy"):
        out.append(_metric_table(results, metric))
    if selection is not None:
        candidates = pd.DataFrame(selection.get("candidates", {})).T
        out += [f"<div class=why><b>Selected: {html.escape(str(selection.get('model')))}</b> "
                f"(probe {html.escape(str(selection.get('probe')))}, pooling {html.escape(str(selection.get('pooling')))})"
                f"<br>{html.escape(str(selection.get('reason')))}</div>", _html_table(candidates)]
    comparisons = _csv(folder / "comparisons.csv")
    if comparisons is not None and len(comparisons):
        cols = [c for c in ("dataset", "label", "probe", "model_a", "model_b", "auroc_a", "auroc_b", "delong_p_adj",
                            "nb_p_adj") if c in comparisons]
        out.append("<h3>Paired comparisons (DeLong on pooled out-of-fold scores; Nadeau-Bengio corrected t over "
                   "folds; p adjusted for multiple comparisons)</h3>" + _html_table(comparisons[cols]))
    skipped = _csv(folder / "skipped.csv")
    if skipped is not None and len(skipped):
        out.append("<h3>Tasks that could not be run</h3>" + _html_table(skipped))
    out.append(_figures(folder / "figures"))
    return "".join(out)


def _fusion(run: Path) -> str:
    folder = run / "fusion"
    metrics = _json(folder / "metrics.json")
    if metrics is None:
        return ""
    facts = {"CXR model": metrics.get("model"), "serial images": metrics.get("serial"),
             "patients": metrics.get("n_patients"), "split (patients)": metrics.get("split_sizes"),
             "epochs (best / run)": f"{metrics.get('best_epoch')} / {metrics.get('epochs_run')}",
             "best validation loss": metrics.get("val_loss"), "input notes": metrics.get("input_notes")}
    out = ["<h2>3. Fusion: multimodal VAE</h2>", _facts(facts)]
    if metrics.get("reconstruction"):
        out.append("<h3>Reconstruction and KL per split</h3>" + _html_table(pd.DataFrame(metrics["reconstruction"]).T))
    rows = [{"truth": col, "latent space": space, "probe": kind, "metric": res.get("metric"),
             "score [95% CI]": _ci(res.get("score"), res.get("ci_low"), res.get("ci_high")),
             "n test": res.get("n_test")}
            for col, spaces in metrics.get("probes", {}).items() for space, kinds in spaces.items()
            for kind, res in kinds.items()]
    if rows:
        out.append("<h3>Held-out probes of the latents against the ground truth (test patients only)</h3>"
                   + _html_table(pd.DataFrame(rows), index=False))
    out.append(_figures(folder / "figures"))
    return "".join(out)


def _survival(run: Path) -> str:
    folder = run / "fusion" / "survival"
    metrics = _json(folder / "metrics.json")
    if metrics is None:
        return ""
    out = ["<h2>4. Survival head vs baselines</h2>",
           f"<p class=muted>Out-of-fold risks ({html.escape(str(metrics.get('cxr_model')))} embeddings); "
           "CIs from a patient bootstrap; 'a - b' rows are paired differences.</p>"]
    for name, endpoint in metrics.get("endpoints", {}).items():
        table = pd.DataFrame({metric: {method: _ci(v.get("estimate"), v.get("ci_low"), v.get("ci_high"))
                                       for method, v in values.items()}
                              for metric, values in endpoint.get("metrics", {}).items()})
        out.append(f"<h3>{html.escape(name)}: {endpoint.get('n_patients')} patients, {endpoint.get('n_events')} "
                   f"events ({html.escape(str(endpoint.get('kind')))}, loss {html.escape(str(endpoint.get('loss')))})"
                   f"</h3>" + _html_table(table))
    out.append(_figures(folder / "figures"))
    return "".join(out)


def _subtypes(run: Path) -> str:
    folder = run / "clustering"
    metrics = _json(folder / "metrics.json")
    if metrics is None:
        return ""
    leiden, stability, survival = metrics.get("leiden", {}), metrics.get("stability", {}), metrics.get("survival", {})
    facts = {"units clustered": f"{metrics.get('n')} {metrics.get('unit')}s"
                                + (f" ({metrics['excluded']} without any input left out: clustering/excluded.csv)"
                                   if metrics.get("excluded") else ""),
             "subtypes": leiden.get("n_subtypes"), "sizes": metrics.get("subtype_sizes"),
             "kNN graph": metrics.get("knn", {}).get("space"),
             "stability (resampling ARI, mean [min, max])":
                 _ci(stability.get("ari_mean"), stability.get("ari_min"), stability.get("ari_max")),
             "median membership confidence (chance-corrected)": stability.get("confidence_median"),
             "log-rank p (survival by subtype)": survival.get("logrank_p")}
    for col, ari in metrics.get("truth_ari", {}).items():
        facts[f"ARI against {col}"] = ari.get("chosen")
    methods = metrics.get("methods", {})
    if methods:
        facts["labels exported"] = methods.get("exported")
        facts["Leiden vs Gaussian mixture (ARI)"] = methods.get("agreement_ari")
        if "gmm" in methods:
            facts["Gaussian mixture classes (BIC)"] = methods["gmm"].get("n_components_bic")
    if metrics.get("stable_structure") is False:
        facts["subtypes"] = "none: no stable structure (every patient in one group S1)"
    out = ["<h2>5. Candidate subtypes</h2>", _facts(facts),
           f"<div class=why><b>Resolution {leiden.get('resolution')}</b>: {html.escape(str(leiden.get('reason')))}</div>"]
    sites = _json(folder / "site_diagnostics.json") or {}
    rows = [{"column": c, "AMI": d["ami"], "ARI": d["ari"], "site AUROC from the latent": d["classifier"].get("auroc"),
             "mixing (iLISI score)": d["mixing"]["score"], "model input": d["model_input"]}
            for c, d in sites.items() if "ami" in d]
    if rows:
        out.append("<h3>Site diagnostics (clustering/site_diagnostics.json)</h3>" + _html_table(pd.DataFrame(rows), index=False))
    if survival.get("cox"):
        out.append(f"<h3>Cox hazard ratios by subtype (reference {html.escape(str(survival.get('cox_reference')))})</h3>"
                   + _html_table(cox_table(survival["cox"]), index=False))
    table1 = _csv(folder / "table1.csv")
    if table1 is not None:
        out.append("<h3>Table 1 by subtype</h3>" + _html_table(table1, index=False, max_rows=80))
    out.append(_figures(folder / "figures", first=("umap_subtype", "kaplan_meier", "montage", "resolution_sweep")))
    return "".join(out)


def _links(run: Path) -> str:
    targets = [("Subtype report for collaborators", "clustering/report.html"),
               ("Subtype export (CSV)", "clustering/subtypes.csv"),
               ("Subtype export (Parquet)", "clustering/subtypes.parquet"),
               ("Data dictionary", "clustering/data_dictionary.csv"),
               ("Provenance of the export", "clustering/provenance.json"),
               ("Embedding Atlas (offline app; serve the folder: python -m http.server)", "clustering/atlas/app/index.html"),
               ("Embedding Atlas table (embedding-atlas atlas.parquet)", "clustering/atlas/atlas.parquet"),
               ("Benchmark report (Markdown)", "benchmarks/report.md"),
               ("Model selection", "benchmarks/selection.json"),
               ("Cohort errors", "cohorts/errors.csv"),
               ("Pipeline log", "pipeline.log")]
    items = "".join(f"<li><a href='{rel}'>{html.escape(label)}</a> <code>{rel}</code></li>"
                    for label, rel in targets if (run / rel).exists())
    return f"<h3>Outputs</h3><ul>{items}</ul>" if items else ""


# ----------------------------------------------------------------------------------------- helpers
def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.3f}".rstrip("0").rstrip(".")
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


def _ci(estimate: Any, low: Any, high: Any) -> str:
    if estimate is None:
        return ""
    return f"{estimate:.3f} [{low:.3f}, {high:.3f}]" if low is not None and high is not None else f"{estimate:.3f}"


def _facts(facts: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th class=l>{html.escape(k)}</th><td class=l>{html.escape(_fmt(v))}</td></tr>"
                   for k, v in facts.items() if v is not None)
    return f"<table>{rows}</table>"


def _html_table(df: pd.DataFrame, *, index: bool = True, max_rows: int = 60) -> str:
    more = f"<p class=muted>{len(df) - max_rows} more rows in the file</p>" if len(df) > max_rows else ""
    return df.head(max_rows).to_html(index=index, na_rep="", float_format=lambda v: _fmt(float(v)), escape=True) + more


def _metric_table(results: pd.DataFrame, metric: str) -> str:
    """(dataset, label) x (model, probe): mean [95% CI] of the reported interval, best per row in bold."""
    sub = results[results["metric"].str.lower() == metric]
    if "ci_method" in sub:
        sub = sub[sub["ci_method"] == "patient_bootstrap"] if (sub["ci_method"] == "patient_bootstrap").any() else sub
    if sub.empty:
        return ""
    best = sub.loc[sub.groupby(["dataset", "label"])["mean"].idxmax(), ["dataset", "label", "model", "probe"]]
    best_keys = set(map(tuple, best.to_numpy()))
    cells = [(f"<b>{_ci(mean, lo, hi)}</b>" if (d, lab, m, p) in best_keys else _ci(mean, lo, hi))
             for d, lab, m, p, mean, lo, hi in sub[["dataset", "label", "model", "probe", "mean", "ci_low",
                                                   "ci_high"]].itertuples(index=False)]
    wide = sub.assign(cell=cells).pivot_table(index=["dataset", "label"], columns=["model", "probe"], values="cell",
                                              aggfunc="first")
    return f"<h3>{metric.upper()}</h3>" + wide.to_html(escape=False)


def _figures(folder: Path, *, first: Iterable[str] = ()) -> str:
    """Every PNG directly in ``folder``, inlined; names starting with one of ``first`` come first, in that order."""
    if not folder.is_dir():
        return ""
    order = list(first)
    pngs = sorted(folder.glob("*.png"),
                  key=lambda p: (next((i for i, f in enumerate(order) if p.stem.startswith(f)), len(order)), p.name))
    figs = [f"<figure><img src='data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}'>"
            f"<figcaption>{html.escape(p.name)}</figcaption></figure>" for p in pngs]
    return "<div>" + "".join(figs) + "</div>"
