"""One output object for every command: results to stdout (text or --json), diagnostics to stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=_default, ensure_ascii=False))


def table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    """Plain left-aligned columns, like `ollama list`; no box drawing, so it pipes cleanly."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["    ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["    ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def warn(message: str) -> None:
    click.echo(message, err=True)


def human_size(n: int | float) -> str:
    """Decimal units, as `ollama list` shows them (98 MB, 1.3 GB)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit in ("B", "KB", "MB") else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover


def human_ago(when: datetime, now: datetime | None = None) -> str:
    now = now or datetime.now(when.tzinfo)
    seconds = max(0.0, (now - when).total_seconds())
    for limit, unit in ((60, "second"), (3600, "minute"), (86400, "hour"), (86400 * 30, "day")):
        if seconds < limit:
            div = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}[unit]
            n = int(seconds // div)
            return "just now" if unit == "second" and n < 5 else f"{n} {unit}{'s' if n != 1 else ''} ago"
    months = int(seconds // (86400 * 30))
    return f"{months} month{'s' if months != 1 else ''} ago"


def is_tty(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())
