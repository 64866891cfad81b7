"""Markdown pieces of a card: tables, lists, and the marker for what only the model's author can write.

The marker is one fixed phrase so `lokal card --check` (and a reader's search) finds every gap; a card lokal
writes never fills such a gap with plausible-sounding text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

#: Marks a statement lokal cannot make from evidence. `lokal card --check` lists every line holding "TODO".
TODO = "TODO: the model's author must fill this"


def todo(hint: str) -> str:
    """The author-gap marker with what to write there (and where: the card.yaml field)."""
    return f"**{TODO}** — {hint}"


def cell(text: object) -> str:
    """A table cell: pipes escaped, line breaks flattened (a raw `|` or newline would break the table)."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ").strip()


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, right: Sequence[int] = ()) -> str:
    """A GitHub-flavoured Markdown table; columns in `right` (numbers) are right-aligned."""
    rule = ["---:" if i in right else "---" for i in range(len(headers))]
    lines = [
        "| " + " | ".join(cell(h) for h in headers) + " |",
        "| " + " | ".join(rule) + " |",
    ]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def bullets(items: Iterable[str]) -> str:
    """A Markdown list; an item's own line breaks are indented so they stay inside the item."""
    return "\n".join("- " + item.strip().replace("\n", "\n  ") for item in items)


def paragraphs(*parts: str | None) -> str:
    """Non-empty parts, separated by blank lines."""
    return "\n\n".join(p.strip() for p in parts if p and p.strip())


def fmt(value: float | int | None, unit: str | None = None) -> str:
    """A figure for a table: three significant digits (62.0, 1.00, 0.500, 0.0412), whole numbers from 1000 up
    with thousands separators; "n/a" for a missing or non-finite value. `%` is appended, other units spaced."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, int):
        text = f"{value:,}"
    elif value == 0:
        text = "0"
    elif abs(value) >= 1000:
        text = f"{value:,.0f}"
    else:
        decimals = max(0, 2 - math.floor(math.log10(abs(value))))
        text = f"{value:.{decimals}f}"
    if unit == "%":
        return f"{text}%"
    return f"{text} {unit}" if unit else text


def fmt_ci(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "n/a"
    return f"[{fmt(low)}, {fmt(high)}]"
