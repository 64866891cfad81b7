"""Markdown renderer: one .md file plus one PNG per chart beside it, for pasting into a README, a wiki or a pull
request. Generic over `Document`: bench, cost and cache sections render the same way.

PNG files are named `<md stem>-<chart id>.png`: the chart id keeps names stable between runs (a re-rendered
report overwrites the same files) and the stem keeps two reports in one directory apart. A chart id used twice
(two cost results in one report) gets `-2`, `-3`, ... in document order.
"""

from __future__ import annotations

import os
from pathlib import Path

from lokal.files import write_atomic
from lokal.report.charts import render_png
from lokal.report.document import Chart, Document, Section, Table


def image_names(out_path: Path, charts: list[Chart]) -> dict[int, str]:
    """File name per chart (keyed by `id(chart)`), unique within the document."""
    names: dict[int, str] = {}
    used: set[str] = set()
    for chart in charts:
        base, n = f"{out_path.stem}-{chart.id}", 1
        name = f"{base}.png"
        while name in used:
            n += 1
            name = f"{base}-{n}.png"
        used.add(name)
        names[id(chart)] = name
    return names


def _cell(text: str) -> str:
    """Table cells cannot hold a pipe or a line break."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table) -> str:
    lines = []
    if table.caption:
        lines += [f"**{table.caption}**", ""]
    lines.append("| " + " | ".join(_cell(h) for h in table.headers) + " |")
    lines.append("|" + "|".join("---:" if i in table.numeric else "---" for i in range(len(table.headers))) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def _note(note: str) -> str:
    name, sep, text = note.partition(": ")
    return f"- **{name}**: {text}" if sep and len(name) <= 60 else f"- {note}"


def _section(section: Section, level: int, names: dict[int, str]) -> list[str]:
    parts = [f"{'#' * min(level, 6)} {section.title}"]
    parts += list(section.paragraphs)
    parts += [table_markdown(t) for t in section.tables]
    for chart in section.charts:
        alt = (chart.alt or chart.title).replace("]", ")").replace("[", "(")
        block = f"![{alt}]({names[id(chart)]})"
        if chart.caption:
            block += f"\n\n*{chart.caption}*"
        parts.append(block)
    if section.notes:
        parts.append("\n".join(_note(n) for n in section.notes))
    for sub in section.subsections:
        parts += _section(sub, level + 1, names)
    return parts


def markdown_text(doc: Document, out_path: str | os.PathLike[str]) -> str:
    """The Markdown for `doc`, with image links relative to where `out_path` will be."""
    names = image_names(Path(out_path), _charts(doc.sections))
    parts = [f"# {doc.title}"]
    if doc.subtitle:
        parts.append(f"*{doc.subtitle}*")
    for section in doc.sections:
        parts += _section(section, 2, names)
    return "\n\n".join(parts) + "\n"


def _charts(sections: tuple[Section, ...]) -> list[Chart]:
    out: list[Chart] = []
    for s in sections:
        out += list(s.charts)
        out += _charts(s.subsections)
    return out


def render_markdown(doc: Document, out_path: str | os.PathLike[str]) -> list[Path]:
    """Write `out_path` and its chart PNGs (each atomically); return every path written, the .md first."""
    path = Path(out_path)
    charts = _charts(doc.sections)
    names = image_names(path, charts)
    images = [write_atomic(path.parent / names[id(c)], render_png(c)) for c in charts]
    return [write_atomic(path, markdown_text(doc, path)), *images]
