"""`lokal report`: re-render saved results without running anything.

Bench results (one, or several side by side as a comparison) are the main case; saved `lokal cost` and
`lokal cache` results render too, through their own sections, so one page can carry a benchmark, its cost and
the disk it takes. Which kinds it reads, and how, is `kinds()`: each kind's `ResultKind` (loader and sections)
is declared beside its sections, and `lokal.results.ResultKinds` picks one by a file's `kind`. The files are
the source of truth: every figure is recomputed from them, so a re-rendered file gives the same report as the
run that wrote it. A bad file raises the loader's one-line `LokalError` (ResultError for bench files), which
the error boundary in `lokal.cli.main` prints with exit code 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from lokal.cli._output import print_json, warn

if TYPE_CHECKING:
    from lokal.bench.result import BenchResult
    from lokal.report.document import Document
    from lokal.results import Result, ResultKinds


def kinds() -> ResultKinds:
    """The kinds `lokal report` renders, bench first (a file whose kind cannot be read is taken for a bench
    result, and the bench loader says what is wrong with it). Imported here, not at module level, so
    `lokal --help` does not load them."""
    from lokal.bench.report.document import KIND as BENCH
    from lokal.cache.sections import KIND as CACHE
    from lokal.cost.sections import KIND as COST
    from lokal.results import ResultKinds

    return ResultKinds(BENCH, COST, CACHE, reader="lokal report")


def _split(loaded: Sequence[Result]) -> tuple[list[BenchResult], list[Result]]:
    """Bench results (laid side by side) and the others (each with its own sections, in the order given)."""
    from lokal.bench.result import BenchResult

    bench = [r for r in loaded if isinstance(r, BenchResult)]
    return bench, [r for r in loaded if not isinstance(r, BenchResult)]


def report_document(loaded: Sequence[Result], known: ResultKinds) -> Document:
    """Bench results side by side, then each cost or cache result's own sections."""
    from lokal.bench.report.document import bench_document
    from lokal.report.document import Document

    bench, others = _split(loaded)
    extra = tuple(section for other in others for section in known.sections(other))
    if bench and not others:
        return bench_document(bench)
    if bench:
        doc = bench_document(bench)
        return Document(title=doc.title, subtitle=doc.subtitle, sections=(*doc.sections, *extra))
    names = sorted({other.kind for other in others})
    return Document(title="lokal " + " and ".join(names), sections=extra)


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
    known = kinds()
    loaded = [known.load(path) for path in results]  # a bad file stops here, before anything is written
    if html_path is not None or markdown_path is not None:
        document = report_document(loaded, known)
        if html_path is not None:
            from lokal.report.html import write_html

            warn(f"wrote {write_html(document, html_path)}")
        if markdown_path is not None:
            from lokal.report.markdown import render_markdown

            written = render_markdown(document, markdown_path)
            warn(f"wrote {written[0]} and {len(written) - 1} chart images beside it")
    if as_json:
        from lokal.bench.report.document import summary_json
        from lokal.bench.result import BenchResult

        print_json([summary_json([r])[0] if isinstance(r, BenchResult) else r.model_dump(mode="json") for r in loaded])
    elif html_path is None and markdown_path is None:
        bench, others = _split(loaded)
        parts = []
        if bench:
            from lokal.bench.report.console import console_summary

            parts.append(console_summary(bench))
        if others:
            from lokal.report.console import render_text
            from lokal.report.document import Document

            parts.append(render_text(Document(title="", sections=tuple(s for o in others for s in known.sections(o)))))
        click.echo("\n\n".join(p.strip("\n") for p in parts))


COMMANDS = [report]
