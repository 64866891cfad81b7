"""Renderer-neutral report pieces. A result kind (bench, cost, cache) is turned into `Section`s once; the
Markdown, console and HTML renderers each draw the same sections, so the formats cannot disagree.

Charts are functions that draw into a matplotlib `Axes`, not images: the HTML renderer draws them into PNGs
embedded as data URIs (self-contained, no CDN), the Markdown renderer writes PNG files beside the .md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    #: Column indexes to right-align (numbers).
    numeric: tuple[int, ...] = ()


@dataclass(frozen=True)
class Chart:
    """`draw(ax)` draws on a fresh matplotlib Axes; it must set a title, axis labels with units, and a
    legend when there is more than one series."""

    id: str  # stable, file-name safe: used for PNG file names and HTML ids
    title: str
    draw: Callable[[Any], None]
    caption: str = ""
    alt: str = ""  # text alternative for the HTML img


@dataclass(frozen=True)
class Section:
    title: str
    #: Plain paragraphs (no markup), shown before the tables.
    paragraphs: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()
    charts: tuple[Chart, ...] = ()
    #: Definition-list style notes shown after the tables ("TTFT: ...").
    notes: tuple[str, ...] = ()
    subsections: tuple[Section, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Document:
    title: str
    subtitle: str = ""
    sections: tuple[Section, ...] = ()
