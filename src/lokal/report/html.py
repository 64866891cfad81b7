"""HTML renderer: one self-contained page a user can e-mail or attach to a ticket.

Self-contained means no request leaves the page: no CDN, no web fonts, no scripts, the charts embedded as
base64 PNG data URIs, and a Content-Security-Policy that would block anything else. The output is a pure
function of the document (no timestamps, stable ids, reproducible PNGs), so re-rendering a saved result gives
the same bytes. Generic over `Document`: bench, cost and cache sections render the same way.
"""

from __future__ import annotations

import base64
import os
import re
from html import escape
from pathlib import Path

from lokal.files import write_atomic
from lokal.report.charts import DPI, HEIGHT_IN, WIDTH_IN, render_png
from lokal.report.document import Chart, Document, Section, Table

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_CSS = """
:root { color-scheme: light; --fg: #1d2430; --muted: #5b6577; --line: #d9dee7; --stripe: #f5f7fa; --accent: #1f5fa8; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 20px 64px; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
h2 { font-size: 1.35em; margin: 40px 0 12px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 1.1em; margin: 28px 0 8px; }
h4, h5, h6 { font-size: 1em; margin: 20px 0 6px; }
.subtitle { color: var(--muted); margin: 0 0 16px; }
nav { background: var(--stripe); border: 1px solid var(--line); border-radius: 6px; padding: 8px 16px; }
nav ol { margin: 4px 0; padding-left: 20px; columns: 2; }
a { color: var(--accent); }
.table-wrap { overflow-x: auto; margin: 8px 0 20px; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 4px 0 6px; color: var(--muted); }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--stripe); white-space: nowrap; }
td.num, th.num { text-align: right; white-space: nowrap; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
figure { margin: 12px 0 28px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
dl.notes dt { font-weight: 600; margin-top: 8px; }
dl.notes dd { margin: 2px 0 0 16px; }
ul.notes { padding-left: 20px; }
@media print { nav { display: none; } h2 { break-after: avoid; } figure, table { break-inside: avoid; } }
""".strip()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


class _Ids:
    """Unique, stable element ids: the same document always gets the same ids."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def make(self, base: str) -> str:
        candidate, n = base, 1
        while candidate in self.used:
            n += 1
            candidate = f"{base}-{n}"
        self.used.add(candidate)
        return candidate


def table_html(table: Table) -> str:
    def cls(i: int) -> str:
        return ' class="num"' if i in table.numeric else ""

    head = "".join(f'<th scope="col"{cls(i)}>{escape(h)}</th>' for i, h in enumerate(table.headers))
    body = "\n".join(
        "<tr>" + "".join(f"<td{cls(i)}>{escape(c)}</td>" for i, c in enumerate(row)) + "</tr>" for row in table.rows
    )
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    return (
        f'<div class="table-wrap"><table>{caption}\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>'
        "</table></div>"
    )


def chart_html(chart: Chart, element_id: str) -> str:
    data = base64.b64encode(render_png(chart)).decode("ascii")
    width, height = int(WIDTH_IN * DPI), int(HEIGHT_IN * DPI)
    caption = f"<figcaption>{escape(chart.caption)}</figcaption>" if chart.caption else ""
    return (
        f'<figure id="{element_id}"><img src="data:image/png;base64,{data}" alt="{escape(chart.alt or chart.title)}" '
        f'width="{width}" height="{height}">{caption}</figure>'
    )


def _notes_html(notes: tuple[str, ...]) -> str:
    pairs = [n.partition(": ") for n in notes]
    if all(sep and len(name) <= 60 for name, sep, _ in pairs):
        items = "\n".join(f"<dt>{escape(name)}</dt><dd>{escape(text)}</dd>" for name, _, text in pairs)
        return f'<dl class="notes">\n{items}\n</dl>'
    items = "\n".join(f"<li>{escape(n)}</li>" for n in notes)
    return f'<ul class="notes">\n{items}\n</ul>'


def _section_html(section: Section, level: int, ids: _Ids, section_id: str) -> str:
    h = min(level, 6)
    parts = [f'<section id="{section_id}">', f"<h{h}>{escape(section.title)}</h{h}>"]
    parts += [f"<p>{escape(p)}</p>" for p in section.paragraphs]
    parts += [table_html(t) for t in section.tables]
    parts += [chart_html(c, ids.make(f"chart-{_slug(c.id)}")) for c in section.charts]
    if section.notes:
        parts.append(_notes_html(section.notes))
    for sub in section.subsections:
        parts.append(_section_html(sub, level + 1, ids, ids.make(f"{section_id}-{_slug(sub.title)}")))
    parts.append("</section>")
    return "\n".join(parts)


def render_html(doc: Document) -> str:
    """The whole page as one string (the same document gives the same string)."""
    ids = _Ids()
    section_ids = [ids.make(_slug(s.title)) for s in doc.sections]
    toc = "\n".join(
        f'<li><a href="#{sid}">{escape(s.title)}</a></li>' for s, sid in zip(doc.sections, section_ids, strict=True)
    )
    body = "\n".join(_section_html(s, 2, ids, sid) for s, sid in zip(doc.sections, section_ids, strict=True))
    subtitle = f'<p class="subtitle">{escape(doc.subtitle)}</p>' if doc.subtitle else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="lokal">
<title>{escape(doc.title)}</title>
<style>
{_CSS}
</style>
</head>
<body>
<main>
<header><h1>{escape(doc.title)}</h1>{subtitle}</header>
<nav aria-label="Contents"><strong>Contents</strong><ol>
{toc}
</ol></nav>
{body}
</main>
</body>
</html>
"""


def write_html(doc: Document, out_path: str | os.PathLike[str]) -> Path:
    """Render `doc` and write it to `out_path` atomically."""
    return write_atomic(out_path, render_html(doc))
