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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.report import reported_intervals
from benchmarks.selection import read_selection
from clustering.characterize import cox_table
from clustering.narrative import CAVEAT
from clustering.report import FIGURE_CHECK_SCRIPT, TABLE1_LEGEND, format_p
from clustering.validity import panel_html
from core.provenance import now_iso
from core.safeio import write_text
from fusion.survival.eval import FLAG_TEXT

_CSS = """body{font-family:system-ui,sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #446}h2{margin-top:2em;border-bottom:1px solid #bbb}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#eef}td.l,th.l{text-align:left}figure{display:inline-block;margin:.5em;vertical-align:top}
figure img{max-width:580px;border:1px solid #ddd}figcaption{font-size:12px;color:#555}
.muted{color:#777}.why{background:#f6f8ff;border-left:4px solid #88a;padding:.5em 1em}code{background:#f4f4f4;padding:1px 4px}
figure.wide{display:block}figure.wide img{max-width:100%}.legend{color:#555;font-size:12px;margin-top:-.8em;max-width:1000px}"""


def write_report(run_dir: Path, *, title: str, timings: dict[str, dict[str, object]]) -> Path:
    """Write ``run_dir/report.html`` from whatever the stages wrote; returns its path."""
    run_dir = Path(run_dir)
    parts = [f"<h1>cxr-fusion run: {html.escape(title)}</h1>",
             f"<p class=muted>run folder {html.escape(run_dir.name)} &middot; written {now_iso()}</p>",
             panel_html(_json(run_dir / "clustering" / "validity.json")),
             _links(run_dir),
             "<h3>Stages</h3>" + _html_table(pd.DataFrame.from_dict(timings, orient="index"))]
    for section in (_cohort, _benchmark, _fusion, _survival, _subtypes):
        parts.append(section(run_dir))
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style><script>{FIGURE_CHECK_SCRIPT}</script></head><body>{''.join(parts)}</body></html>")
    return write_text(run_dir / "report.html", page)


# ----------------------------------------------------------------------------------------- sections
def _cohort(run: Path) -> str:
    folder = run / "cohorts"
    overview = _json(folder / "overview" / "overview.json")
    if overview is None:
        return ""
    per_patient = overview.get("images_per_patient", {})
    facts = {"images": overview.get("n_images"), "patients": overview.get("n_patients"),
             "studies": overview.get("n_studies"),
             "images per patient (mean / max)": f"{_fmt(per_patient.get('mean'))} / {_fmt(per_patient.get('max'))}",
             **{f"images from {k}": v for k, v in overview.get("images_by_dataset", {}).items()}}
    errors = _csv(folder / "errors.csv")
    n_errors = 0 if errors is None else len(errors)
    out = ["<h2>1. Cohort</h2>", _facts(facts),
           f"<p><b>{n_errors}</b> file(s) could not be used (<code>cohorts/errors.csv</code>).</p>"]
    if n_errors:
        if "path" in errors.columns:           # file names only: the report names no folder of this machine
            errors = errors.assign(path=errors["path"].map(lambda p: Path(str(p)).name if isinstance(p, str) else p))
        out.append(_html_table(errors.head(20), index=False))
    out.append(_figures(folder / "overview"))
    return "".join(out)


def _benchmark(run: Path) -> str:
    folder = run / "benchmarks"
    results = _csv(folder / "results.csv")
    selection = read_selection(folder / "selection.json").record if (folder / "selection.json").is_file() else None
    if results is None:
        return ""
    out = ["<h2>2. Benchmark of the embedding models</h2>",
           "<p class=muted>Patient-grouped stratified K-fold; augmented images only in training folds. "
           "Cells: mean over folds [95% patient-level bootstrap CI of the pooled out-of-fold predictions; "
           "&dagger;: the fold t-interval, where a test fold holds too few patients of a class for the bootstrap, "
           "as in benchmarks/report.md]; best model per row in bold.</p>"]
    for metric in ("auroc", "accuracy"):
        out.append(_metric_table(results, metric))
    out.append(_legend("AUROC: area under the ROC curve (0.5 = chance, 1 = perfect); accuracy at the 0.5 threshold. "
                       "[a, b]: 95% confidence interval."))
    if selection is not None:
        candidates = pd.DataFrame(selection.get("candidates", {})).T
        out += [f"<div class=why><b>Selected: {html.escape(str(selection.get('model')))}</b> "
                f"(probe {html.escape(str(selection.get('probe')))}, pooling {html.escape(str(selection.get('pooling')))})"
                f"<br>{html.escape(str(selection.get('reason')))}</div>", _html_table(candidates)]
        out += [f"<p><b>Warning (patient ids):</b> {html.escape(w)}.</p>"
                for w in selection.get("patient_id_warnings", [])]
    comparisons = _csv(folder / "comparisons.csv")
    if comparisons is not None and len(comparisons):
        cols = [c for c in ("dataset", "label", "probe", "model_a", "model_b", "auroc_a", "auroc_b", "delong_p_adj",
                            "nb_p_adj") if c in comparisons]
        out.append("<h3>Paired comparisons (fold-stratified, patient-clustered DeLong; Nadeau-Bengio corrected t "
                   "over folds; p adjusted for multiple comparisons)</h3>" + _html_table(comparisons[cols], index=False)
                   + _legend("auroc_a, auroc_b: the two models' AUROC on the same patients; delong_p_adj, nb_p_adj: "
                             "p-values (adjusted) that the two are equal; a small p says the models differ."))
    skipped = _csv(folder / "skipped.csv")
    if skipped is not None and len(skipped):
        out.append("<h3>Tasks that could not be run</h3>" + _html_table(skipped, index=False))
    out.append(_benchmark_studies(folder))
    out.append(_figures(folder / "figures"))
    out.append(_lung_masks(run / "embedders"))
    return "".join(out)


def _benchmark_studies(folder: Path) -> str:
    """Transfer, shortcut checks, leave-one-source-out and data efficiency, where the benchmark ran them."""
    out = []
    transfer = _csv(folder / "transfer.csv")
    if transfer is not None and len(transfer):
        t = transfer[transfer["metric"] == "auroc"]
        t = t.assign(auroc=[_ci(v, lo, hi) for v, lo, hi in t[["value", "ci_low", "ci_high"]].to_numpy()])
        out.append("<h3>Cross-dataset transfer (train on one dataset, test on another; AUROC [patient bootstrap])</h3>"
                   + _html_table(t[["train_dataset", "test_dataset", "label", "model", "probe", "auroc", "n_train",
                                    "n_test"]], index=False))
    shortcuts = _csv(folder / "shortcuts.csv")
    if shortcuts is not None and len(shortcuts):
        a = shortcuts[(shortcuts["metric"] == "auroc") & (shortcuts["ci_method"] == "patient_bootstrap")]
        a = a.assign(cell=[_ci(m, lo, hi) for m, lo, hi in a[["mean", "ci_low", "ci_high"]].to_numpy()])
        out.append("<h3>Shortcuts: AUROC with which each embedding predicts a confounder</h3>"
                   + _html_table(a.pivot_table(index="model", columns="label", values="cell", aggfunc="first")))
        words = _markdown_bullets(folder / "report.md", "**Findings predicted no better than a confounder alone**")
        out.append("<div class=why><b>Findings predicted no better than a confounder alone</b><ul>"
                   + "".join(f"<li>{html.escape(w)}</li>" for w in words) + "</ul></div>" if words else
                   "<p>No finding is predicted only as well as a confounder alone.</p>")
    strata = _csv(folder / "view_strata.csv")
    if strata is not None and len(strata) and "auroc" in strata:
        strata = strata.assign(cell=[_ci(m, lo, hi) if pd.notna(m) else "" for m, lo, hi in
                                     strata[["auroc", "ci_low", "ci_high"]].to_numpy()])
        out.append("<h3>Finding AUROC within each view</h3>" + _html_table(
            strata.pivot_table(index=["dataset", "label", "model"], columns="view", values="cell", aggfunc="first")))
    loso = _csv(folder / "loso.csv")
    if loso is not None and len(loso):
        cell = [_ci(m, lo, hi) if pd.notna(m) else "" for m, lo, hi in
                loso.reindex(columns=["auroc", "ci_low", "ci_high"]).to_numpy()]
        out.append("<h3>Leave-one-source-out (AUROC on the held-out source)</h3>" + _html_table(
            loso.assign(auroc=cell).reindex(columns=["label", "held_out", "model", "auroc", "n_test", "note"]),
            index=False))
    curves = _csv(folder / "efficiency.csv")
    if curves is not None and len(curves):
        cell = [_ci(m, lo, hi) for m, lo, hi in curves[["auroc_mean", "ci_low", "ci_high"]].to_numpy()]
        out.append("<h3>Data efficiency: AUROC vs share of training patients</h3>" + _html_table(
            curves.assign(cell=cell).pivot_table(index=["dataset", "label", "model"], columns="fraction",
                                                 values="cell", aggfunc="first")))
    return "".join(out)


def _markdown_bullets(path: Path, heading: str) -> list[str]:
    """The ``- `` lines that follow ``heading`` in a markdown file (up to the next blank-line block)."""
    if not path.is_file() or heading not in (text := path.read_text()):
        return []
    block = text.split(heading, 1)[1].split("\n\n", 2)
    lines = block[1].splitlines() if len(block) > 1 else []
    return [line[2:] for line in lines if line.startswith("- ")]


def _lung_masks(folder: Path) -> str:
    checks = _csv(folder / "lung_mask_checks.csv")
    if checks is None:
        return ""
    return ("<h3>Lung masks of the JSRT UNet on this cohort's images</h3>"
            f"<p>{int(checks['placement_ok'].sum())} of {len(checks)} placed anatomically, "
            f"{int(checks['fractions_ok'].sum())} with plausible lung/heart fractions.</p>"
            + _html_table(checks, index=False) + _figures(folder / "figures"))


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
             "n test": res.get("n_test", res.get("n"))}
            for col, spaces in metrics.get("probes", {}).items() for space, kinds in spaces.items()
            for kind, res in kinds.items()]
    if rows:
        out.append("<h3>Probes of the latents against the ground truth (held-out test patients; the Gaussian mixture "
                   "is unsupervised, fitted and scored on all patients)</h3>"
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
    if metrics.get("tokens"):
        out.append(f"<p>Tokens: {html.escape(metrics['tokens'])} (config: fusion/survival/config.resolved.yaml).</p>")
    for name, endpoint in metrics.get("endpoints", {}).items():
        for flag in endpoint.get("flags", []):
            out.append(f"<p class=why>Warning, {html.escape(name)}: {html.escape(FLAG_TEXT.get(flag, flag))}.</p>")
        table = pd.DataFrame({metric: {method: _ci(v.get("estimate"), v.get("ci_low"), v.get("ci_high"))
                                       for method, v in values.items()}
                              for metric, values in endpoint.get("metrics", {}).items()})
        out.append(f"<h3>{html.escape(name)}: {endpoint.get('n_patients')} patients, {endpoint.get('n_events')} "
                   f"events ({html.escape(str(endpoint.get('kind')))}, loss {html.escape(str(endpoint.get('loss')))})"
                   f"</h3>" + _html_table(table))
    if metrics.get("endpoints"):
        out.append(_legend("c_index: Harrell's concordance (0.5 = chance, 1 = perfect ranking of who has the event "
                           "first); uno_c: Uno's censoring-weighted version; ibs: integrated Brier score (lower is "
                           "better). [a, b]: 95% patient-bootstrap confidence interval."))
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
        out.append("<h3>Site diagnostics (clustering/site_diagnostics.json)</h3>" + _html_table(pd.DataFrame(rows), index=False)
                   + _legend("AMI, ARI: how much the subtypes follow the column (0 = not at all, 1 = completely); site "
                             "AUROC: how well the latent predicts the column (0.5 = not at all); iLISI score: how well "
                             "the columns' levels mix among each patient's neighbours (1 = as if at random)."))
    descriptions = metrics.get("subtype_descriptions") or {}
    if descriptions:
        out.append("<h3>The subtypes in plain language</h3>"
                   + "".join(f"<p>{html.escape(t)}</p>" for t in descriptions.values()) + _legend(CAVEAT))
    if survival.get("cox"):
        out.append(f"<h3>Cox hazard ratios by subtype (reference {html.escape(str(survival.get('cox_reference')))})</h3>"
                   + _html_table(cox_table(survival["cox"]), index=False)
                   + _legend(f"hr: hazard ratio against {survival.get('cox_reference')} (above 1: the event comes "
                             "earlier or more often); ci_low, ci_high: 95% confidence interval; p: Wald test."))
    table1 = _csv(folder / "table1.csv")
    if table1 is not None:
        out.append("<h3>Table 1 by subtype</h3>" + _html_table(table1, index=False, max_rows=80) + _legend(TABLE1_LEGEND))
    out.append(_figures(folder / "figures", first=("umap_subtype", "kaplan_meier", "montage", "resolution_sweep")))
    return "".join(out)


def _links(run: Path) -> str:
    targets = [("Subtype report for collaborators", "clustering/report.html"),
               ("Subtype export (CSV)", "clustering/subtypes.csv"),
               ("Subtype export (Parquet)", "clustering/subtypes.parquet"),
               ("Data dictionary", "clustering/data_dictionary.csv"),
               ("Provenance of the export", "clustering/provenance.json"),
               ("Embedding Atlas: double-click open_atlas_windows.bat, open_atlas_macos.command or open_atlas_linux.sh "
                "in this folder; it opens the interactive map in your browser, served from this computer",
                "clustering/atlas/"),
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


def _legend(text: str) -> str:
    return f"<p class=legend>{html.escape(text)}</p>"


def _html_table(df: pd.DataFrame, *, index: bool = True, max_rows: int = 60) -> str:
    more = f"<p class=muted>{len(df) - max_rows} more rows in the file</p>" if len(df) > max_rows else ""
    df = df.head(max_rows).copy()
    for col in df.columns:      # p-values as '<0.001' / 2 significant digits
        if str(col) in ("p", "q_bh") or str(col).endswith(("_p", "_p_adj")):
            if pd.api.types.is_numeric_dtype(df[col]):
                df[col] = df[col].map(format_p)
    return df.to_html(index=index, na_rep="", float_format=lambda v: _fmt(float(v)), escape=True) + more


def _metric_table(results: pd.DataFrame, metric: str) -> str:
    """(dataset, label) x (model, probe): mean [95% CI] of the reported interval, best per row in bold."""
    sub = results[results["metric"].str.lower() == metric]
    if "ci_method" in sub and (sub["ci_method"] == "patient_bootstrap").any():
        sub = reported_intervals(sub)     # the interval report.md shows, † where it is the fold t-interval
    if sub.empty:
        return ""
    best = sub.loc[sub.groupby(["dataset", "label"])["mean"].idxmax(), ["dataset", "label", "model", "probe"]]
    best_keys = set(map(tuple, best.to_numpy()))
    mark = sub["dagger"].map({True: " &dagger;", False: ""}) if "dagger" in sub else pd.Series("", index=sub.index)
    cells = [(f"<b>{_ci(mean, lo, hi)}</b>" if (d, lab, m, p) in best_keys else _ci(mean, lo, hi)) + dag
             for d, lab, m, p, mean, lo, hi, dag in sub[["dataset", "label", "model", "probe", "mean", "ci_low",
                                                        "ci_high"]].assign(dag=mark.to_numpy()).itertuples(index=False)]
    wide = sub.assign(cell=cells).pivot_table(index=["dataset", "label"], columns=["model", "probe"], values="cell",
                                              aggfunc="first")
    return f"<h3>{metric.upper()}</h3>" + wide.to_html(escape=False)


def _is_wide(png: Path) -> bool:
    """A multi-panel figure (wider than 1100 px, or over twice as wide as tall) is shown at the full page width."""
    from PIL import Image

    with Image.open(png) as im:
        w, h = im.size
    return w > 1100 or w > 2 * h


def _figures(folder: Path, *, first: Iterable[str] = ()) -> str:
    """Every PNG directly in ``folder``, inlined; names starting with one of ``first`` come first, in that order."""
    if not folder.is_dir():
        return ""
    order = list(first)
    pngs = sorted(folder.glob("*.png"),
                  key=lambda p: (next((i for i, f in enumerate(order) if p.stem.startswith(f)), len(order)), p.name))
    figs = [f"<figure{' class=wide' if _is_wide(p) else ''}><img src='data:image/png;base64,"
            f"{base64.b64encode(p.read_bytes()).decode()}'><figcaption>{html.escape(p.name)}</figcaption></figure>"
            for p in pngs]
    return "<div>" + "".join(figs) + "</div>"
