"""The run report: one self-contained HTML page (figures inlined) over every stage's outputs."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

from cohorts.provenance import now_iso

_MAX_FIGURES_PER_STAGE = 40
_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #446}h2{margin-top:2em;border-bottom:1px solid #bbb}
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#eef}figure{display:inline-block;margin:.5em;vertical-align:top}
figure img{max-width:540px;border:1px solid #ddd}figcaption{font-size:12px;color:#555}
.muted{color:#777}code{background:#f4f4f4;padding:1px 4px}"""

_SECTIONS = (
    ("cohorts", "Cohort", ("overview.json",), ("errors.csv",)),
    ("benchmarks", "Benchmark and model selection", ("selection.json",), ("results.csv", "comparisons.csv")),
    ("fusion", "Fusion (multimodal VAE)", ("metrics.json",), ()),
    ("fusion/survival", "Survival head vs baselines", ("metrics.json",), ()),
    ("clustering", "Subtypes", ("provenance.json",), ("table1.csv",)),
)


def write_report(run_dir: Path, *, title: str, timings: dict[str, dict[str, object]]) -> Path:
    """Write ``run_dir/report.html`` from whatever the stages wrote; returns its path."""
    parts = [f"<h1>cxr-fusion run: {html.escape(title)}</h1>",
             f"<p class=muted>{html.escape(str(run_dir))} &middot; written {now_iso()}</p>",
             _table(pd.DataFrame.from_dict(timings, orient="index"), caption="Stages")]
    for sub, heading, json_names, csv_names in _SECTIONS:
        folder = run_dir / sub
        if not folder.is_dir():
            continue
        parts.append(f"<h2>{heading}</h2>")
        for name in json_names:
            if (folder / name).is_file():
                parts.append(_json_block(json.loads((folder / name).read_text()), caption=f"{sub}/{name}"))
        for name in csv_names:
            if (folder / name).is_file():
                parts.append(_csv_block(folder / name, caption=f"{sub}/{name}"))
        if sub == "benchmarks" and (folder / "results.csv").is_file():
            parts.append(_benchmark_tables(folder / "results.csv"))
        parts.append(_figures(folder, exclude_subdirs=("survival",) if sub == "fusion" else ()))
    parts.append(_links(run_dir))
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>")
    path = run_dir / "report.html"
    path.write_text(page)
    return path


def _table(df: pd.DataFrame, *, caption: str, max_rows: int = 60) -> str:
    more = f"<p class=muted>{len(df) - max_rows} more rows in the file</p>" if len(df) > max_rows else ""
    return f"<h3>{html.escape(caption)}</h3>" + df.head(max_rows).to_html(na_rep="", float_format="%.3f") + more


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obj, list) and len(obj) > 12:
        return {prefix: f"[{len(obj)} values]"}
    return {prefix: obj}


def _json_block(obj: Any, *, caption: str) -> str:
    flat = _flatten(obj)
    rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                   f"{html.escape(_fmt(v))}</td></tr>" for k, v in flat.items())
    return f"<h3>{html.escape(caption)}</h3><table>{rows}</table>"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _csv_block(path: Path, *, caption: str) -> str:
    df = pd.read_csv(path)
    if df.empty:
        return f"<h3>{html.escape(caption)}</h3><p>none</p>"
    return _table(df, caption=f"{caption} ({len(df)} rows)")


def _benchmark_tables(results: Path) -> str:
    """Accuracy and AUROC, (dataset, label) x model, mean [95% CI], best model per row in bold."""
    df = pd.read_csv(results)
    out = []
    for metric in ("auroc", "accuracy"):
        sub = df[df["metric"].str.lower() == metric]
        if sub.empty:
            continue
        best = sub.loc[sub.groupby(["dataset", "label"])["mean"].idxmax(), ["dataset", "label", "model", "probe"]]
        best_keys = set(map(tuple, best.to_numpy()))
        sub = sub.assign(cell=[
            ("<b>{:.3f} [{:.3f}, {:.3f}]</b>" if (d, lab, m, p) in best_keys else "{:.3f} [{:.3f}, {:.3f}]")
            .format(mean, lo, hi)
            for d, lab, m, p, mean, lo, hi in sub[["dataset", "label", "model", "probe", "mean",
                                                     "ci_low", "ci_high"]].itertuples(index=False)])
        wide = sub.pivot_table(index=["dataset", "label"], columns=["model", "probe"], values="cell",
                               aggfunc="first")
        out.append(f"<h3>{metric.upper()} (mean over folds, 95% CI)</h3>" + wide.to_html(escape=False))
    return "".join(out)


def _figures(folder: Path, *, exclude_subdirs: tuple[str, ...] = ()) -> str:
    pngs = [p for p in sorted(folder.rglob("*.png"))
            if not any(part in exclude_subdirs for part in p.relative_to(folder).parts[:-1])
            and "atlas" not in p.relative_to(folder).parts]
    figs = []
    for png in pngs[:_MAX_FIGURES_PER_STAGE]:
        data = base64.b64encode(png.read_bytes()).decode()
        figs.append(f"<figure><img src='data:image/png;base64,{data}'>"
                    f"<figcaption>{html.escape(str(png.relative_to(folder)))}</figcaption></figure>")
    if len(pngs) > _MAX_FIGURES_PER_STAGE:
        figs.append(f"<p class=muted>{len(pngs) - _MAX_FIGURES_PER_STAGE} more figures in {folder}</p>")
    return "".join(figs)


def _links(run_dir: Path) -> str:
    targets = [("Subtype report (collaborators)", "clustering/report.html"),
               ("Subtype export (CSV)", "clustering/subtypes.csv"),
               ("Subtype export (Parquet)", "clustering/subtypes.parquet"),
               ("Data dictionary", "clustering/data_dictionary.csv"),
               ("Embedding Atlas (offline app)", "clustering/atlas"),
               ("Benchmark report (Markdown)", "benchmarks/report.md"),
               ("Cohort errors", "cohorts/errors.csv")]
    items = "".join(f"<li><a href='{rel}'>{html.escape(label)}</a> <code>{rel}</code></li>"
                    for label, rel in targets if (run_dir / rel).exists())
    return f"<h2>Outputs</h2><ul>{items}</ul>" if items else ""
