"""Console rendering: any `Document` as plain text (generic over sections, like the Markdown and HTML
renderers), and `text_table`, the aligned columns a result kind's own console summary can use.

Plain text only, no colour or box drawing, so it pipes and pastes cleanly.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from lokal.report.document import Document, Section, Table

WIDTH = 100


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell, numbers right-aligned; trailing spaces trimmed."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def _section_text(section: Section, depth: int) -> list[str]:
    mark = "=" if depth == 0 else "-"
    out = ["", section.title, mark * len(section.title)]
    out += [textwrap.fill(p, WIDTH) for p in section.paragraphs]
    for t in section.tables:
        out += _table_text(t)
    out += [f"[chart: {c.title}]" for c in section.charts]
    out += [textwrap.fill(n, WIDTH, initial_indent="- ", subsequent_indent="  ") for n in section.notes]
    for sub in section.subsections:
        out += _section_text(sub, depth + 1)
    return out


def _table_text(table: Table) -> list[str]:
    head = [table.caption] if table.caption else []
    return [*head, text_table(table.headers, table.rows, table.numeric), ""]


def render_text(doc: Document) -> str:
    """Any document as plain text: headings underlined, tables as aligned columns, charts named."""
    lines = [doc.title, *([doc.subtitle] if doc.subtitle else [])]
    for section in doc.sections:
        lines += _section_text(section, 0)
    return "\n".join(lines).rstrip() + "\n"
