"""`lokal report`: re-render saved results without running anything.

Bench results (one, or several side by side as a comparison) are the main case; saved `lokal cost` and
`lokal cache` results render too, through their own sections (`sections_of`), so one page can carry a
benchmark, its cost and the disk it takes. The files are the source of truth: every figure is recomputed from
them, so a re-rendered file gives the same report as the run that wrote it. A bad file raises the loader's
one-line `LokalError` (ResultError for bench files), which the error boundary in `lokal.cli.main` prints with
exit code 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from lokal.cli._output import print_json, warn

#: Result kinds `lokal report` renders besides bench results (the `kind` field of the saved JSON).
OTHER_KINDS = ("cost", "cache")


def _kind(path: Path) -> str | None:
    """The file's `kind`, or None when it cannot be read as a JSON object (the bench loader then says why)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    kind = raw.get("kind") if isinstance(raw, dict) else None
    return kind if isinstance(kind, str) else None


def sections_of(result: Any) -> tuple[Any, ...]:
    """The report sections of a saved cost or cache result (bench results are laid out side by side instead)."""
    if result.kind == "cost":
        from lokal.cost.sections import cost_sections

        return cost_sections(result)
    from lokal.cache.sections import cache_sections

    return cache_sections(result)


def load_any(path: Path) -> Any:
    """A saved bench, cost or cache result, by its `kind`; anything else is a ResultError naming the file."""
    from lokal.bench.result import ResultError, load

    kind = _kind(path)
    if kind == "cost":
        from lokal.cost.model import load as load_cost

        return load_cost(path)
    if kind == "cache":
        from lokal.cache.model import load_report

        return load_report(path)
    if kind is None or kind == "bench":
        return load(path)
    raise ResultError(f"{path} holds a {kind!r} result; lokal report renders bench, cost and cache results")


def _split(loaded: list[Any]) -> tuple[list[Any], list[Any]]:
    from lokal.bench.result import BenchResult

    bench = [r for r in loaded if isinstance(r, BenchResult)]
    return bench, [r for r in loaded if not isinstance(r, BenchResult)]


def report_document(loaded: list[Any]) -> Any:
    """Bench results side by side, then each cost or cache result's own sections."""
    from lokal.bench.report.document import bench_document
    from lokal.report.document import Document

    bench, others = _split(loaded)
    extra = tuple(section for other in others for section in sections_of(other))
    if bench and not others:
        return bench_document(bench)
    if bench:
        doc = bench_document(bench)
        return Document(title=doc.title, subtitle=doc.subtitle, sections=(*doc.sections, *extra))
    kinds = sorted({other.kind for other in others})
    return Document(title="lokal " + " and ".join(kinds), sections=extra)


@click.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--html", "html_path", type=click.Path(path_type=Path, dir_okay=False), help="Write a self-contained HTML page."
)
@click.option(
    "--markdown",
    "markdown_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write Markdown, with one PNG per chart beside it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def report(results: tuple[Path, ...], html_path: Path | None, markdown_path: Path | None, as_json: bool) -> None:
    """Render saved RESULTS again (from `lokal bench --output`, or saved cost and cache results).

    Several bench results are put side by side (compare two servers or two models).
    With no output option, prints a summary.

    \b
    Examples:
      lokal report run.json
      lokal report run.json --html report.html
      lokal report lokal.json ollama.json --html compare.html --markdown compare.md
    """
    loaded = [load_any(path) for path in results]  # a bad file stops here, before anything is written
    if html_path is not None or markdown_path is not None:
        document = report_document(loaded)
        if html_path is not None:
            from lokal.report.html import write_html

            warn(f"wrote {write_html(document, html_path)}")
        if markdown_path is not None:
            from lokal.report.markdown import render_markdown

            written = render_markdown(document, markdown_path)
            warn(f"wrote {written[0]} and {len(written) - 1} chart images beside it")
    if as_json:
        from lokal.bench.report.document import summary_json

        print_json([summary_json([r])[0] if r.kind == "bench" else r.model_dump(mode="json") for r in loaded])
    elif html_path is None and markdown_path is None:
        bench, others = _split(loaded)
        parts = []
        if bench:
            from lokal.bench.report.console import console_summary

            parts.append(console_summary(bench))
        if others:
            from lokal.report.console import render_text
            from lokal.report.document import Document

            parts.append(render_text(Document(title="", sections=tuple(s for o in others for s in sections_of(o)))))
        click.echo("\n\n".join(p.strip("\n") for p in parts))


COMMANDS = [report]
