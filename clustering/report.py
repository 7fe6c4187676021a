"""Self-contained HTML report: figures inlined as base64 PNG, tables as HTML, no external resources.

Every table may carry a legend (how to read its cells) printed under it; known library warnings are
turned into sentences (:func:`plain_warning`); the provenance is a short table with links to the
JSON records next to the report.
"""
from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.safeio import write_text

# Marks every figure as loaded or not once the page has loaded (and says so in place of a broken one),
# so a headless browser can check the report and a reader sees which figure is missing.
FIGURE_CHECK_SCRIPT = """window.addEventListener('load',()=>{let n=0;document.querySelectorAll('img').forEach(i=>{
const ok=i.complete&&i.naturalWidth>0;i.dataset.loaded=ok?'1':'0';if(ok){n++}else{i.alt='FIGURE FAILED TO LOAD: '+i.alt}});
document.body.dataset.figuresLoaded=n;document.body.dataset.figures=document.querySelectorAll('img').length;});"""

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}td,th{border:1px solid #ddd;padding:3px 7px;text-align:left}
th{background:#f3f3f3}figure{display:inline-block;margin:.5em;vertical-align:top}figcaption{font-size:.8em;color:#555}
img{max-width:520px;border:1px solid #eee}.note{color:#555;font-size:.9em}pre{background:#f7f7f7;padding:.6em;overflow:auto}
.legend{color:#555;font-size:.8em;margin-top:-.3em;max-width:900px}.subtype{margin:.4em 0}
"""
TABLE1_LEGEND = ("Continuous variables: median [Q1, Q3] (first and third quartile). Binary and categorical variables: "
                 "n (%) of patients with a recorded value; 'k missing' counts patients without one. Test across all "
                 "subtypes: Kruskal-Wallis (continuous), chi-square or Fisher exact (2x2 with an expected count below "
                 "5). p is not corrected for multiple comparisons, and the subtypes were found in these data, so small "
                 "p-values are expected even without real differences.")
P_COLUMNS = re.compile(r"^(p|q|p_adj|q_bh|.*_p|.*_p_adj|logrank_p)$")
# lifelines / statsmodels warnings -> what they mean for the reader
_WARNING_SENTENCES = (
    (re.compile(r"low variance|variance.*(too low|zero)", re.I),
     "One subtype indicator barely varies among the patients with outcome data, so its hazard ratio is imprecise."),
    (re.compile(r"converge|convergence|step size", re.I),
     "The Cox model did not converge cleanly (often a subtype with very few or no events): treat its hazard ratios "
     "as unreliable."),
    (re.compile(r"separation|perfectly predict", re.I),
     "A subtype separates events from non-events almost perfectly, so its hazard ratio is not estimable."),
)
TableSpec = tuple[str, pd.DataFrame] | tuple[str, pd.DataFrame, str]



@dataclass
class Section:
    """A report section: heading, paragraphs (plain text), tables and figures (PNG paths with captions)."""

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[TableSpec] = field(default_factory=list)    # (caption, table[, legend under it])
    figures: list[tuple[Path, str]] = field(default_factory=list)
    html: str = ""                                             # extra markup after the text (e.g. per-subtype blocks)


def plain_warning(message: str) -> str:
    """A library warning as a sentence for readers: known ones explained, others stripped of URLs and advice
    addressed to programmers (first sentence only)."""
    for pattern, sentence in _WARNING_SENTENCES:
        if pattern.search(message):
            return sentence
    text = re.sub(r"https?://\S+", "", message).split("\n")[0].strip()
    text = re.sub(r"\s*(See|see|Try|try)\b.*$", "", text).strip().rstrip(":;,")
    return (text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")) if text else ""


def format_p(p: float) -> str:
    """A p-value as readers expect it: '<0.001', else 2 significant digits."""
    if p is None or not pd.notna(p):
        return ""
    return "<0.001" if p < 1e-3 else f"{p:.2g}"


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    cap = html.escape(caption)
    return (f'<figure><img class="figure" alt="{cap}" src="data:image/png;base64,{data}">'
            f"<figcaption>{cap}</figcaption></figure>")


def _table(df: pd.DataFrame) -> str:
    df = df.copy()
    for col in df.columns:
        if P_COLUMNS.match(str(col)) and pd.api.types.is_numeric_dtype(df[col]):
            df[col] = df[col].map(format_p)
    return df.to_html(index=False, border=0, na_rep="", float_format=lambda v: f"{v:.3g}", escape=True)


def _provenance(meta: dict[str, object], links: dict[str, str]) -> str:
    """Short table of where the numbers come from, with links to the full JSON records."""
    inp = meta.get("input") if isinstance(meta.get("input"), dict) else {}
    leiden = meta.get("leiden") if isinstance(meta.get("leiden"), dict) else {}
    rows = {"input": f"{inp.get('kind', '')} {inp.get('model') or ''}".strip(),
            "units clustered": f"{meta.get('n')} {meta.get('unit', '')}s" if meta.get("n") is not None else None,
            "kNN graph": (meta.get("knn") or {}).get("space") if isinstance(meta.get("knn"), dict) else None,
            "Leiden resolution": leiden.get("resolution"), "run time": (f"{meta['seconds']} s" if "seconds" in meta
                                                                       else None)}
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items()
                   if v not in (None, ""))
    refs = ", ".join(f"<a href='{html.escape(href)}'>{html.escape(label)}</a>" for label, href in links.items())
    return f"<h2>Provenance</h2><table>{body}</table>" + (f"<p class='note'>Full records: {refs}.</p>" if refs else "")


def render(title: str, sections: list[Section], *, meta: dict[str, object],
           links: dict[str, str] | None = None, top_html: str = "") -> str:
    """The HTML text of the report (``links``: label -> relative path of the JSON records to link; ``top_html``:
    trusted HTML, e.g. the validity panel, under the title)."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style><script>{FIGURE_CHECK_SCRIPT}</script></head><body><h1>{html.escape(title)}</h1>",
             top_html]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts += [f"<p>{html.escape(t)}</p>" for t in s.text]
        parts.append(s.html)
        for cap, df, *legend in s.tables:
            parts.append(f"<p class='note'>{html.escape(cap)}</p>{_table(df)}"
                         + "".join(f"<p class='legend'>{html.escape(x)}</p>" for x in legend if x))
        parts += [_img(p, c) for p, c in s.figures]
    parts.append(_provenance(meta, links or {}) + "</body></html>")
    return "".join(parts)


def write_report(path: Path, title: str, sections: list[Section], *, meta: dict[str, object],
                 links: dict[str, str] | None = None, top_html: str = "") -> Path:
    """Write the self-contained report to ``path``."""
    return write_text(path, render(title, sections, meta=meta, links=links, top_html=top_html))
