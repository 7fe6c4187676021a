"""Self-contained HTML report: figures inlined as base64 PNG, tables as HTML, no external resources."""
from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

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
"""


@dataclass
class Section:
    """A report section: heading, paragraphs (plain text), tables and figures (PNG paths with captions)."""

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[tuple[Path, str]] = field(default_factory=list)


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    cap = html.escape(caption)
    return (f'<figure><img class="figure" alt="{cap}" src="data:image/png;base64,{data}">'
            f"<figcaption>{cap}</figcaption></figure>")


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, border=0, na_rep="", float_format=lambda v: f"{v:.4g}", escape=True)


def render(title: str, sections: list[Section], *, meta: dict[str, object], top_html: str = "") -> str:
    """The HTML text of the report; ``top_html`` (trusted HTML, e.g. the validity panel) goes under the title."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style><script>{FIGURE_CHECK_SCRIPT}</script></head><body><h1>{html.escape(title)}</h1>",
             top_html]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts += [f"<p>{html.escape(t)}</p>" for t in s.text]
        for cap, df in s.tables:
            parts.append(f"<p class='note'>{html.escape(cap)}</p>{_table(df)}")
        parts += [_img(p, c) for p, c in s.figures]
    parts.append(f"<h2>Provenance</h2><pre>{html.escape(json.dumps(meta, indent=2, default=str))}</pre></body></html>")
    return "".join(parts)


def write_report(path: Path, title: str, sections: list[Section], *, meta: dict[str, object],
                 top_html: str = "") -> Path:
    """Write the self-contained report to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(title, sections, meta=meta, top_html=top_html), encoding="utf-8")
    return path
