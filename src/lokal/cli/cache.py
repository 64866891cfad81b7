"""`lokal cache` and `lokal cache prune`: the disk your models take, over the HF cache, lokal's and Ollama's stores.

The commands only parse arguments and print; `lokal.cache` scans, plans and deletes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from lokal.cache.model import SOURCE_LABELS, SOURCES, CacheReport, PrunePlan
from lokal.cli._output import human_ago, human_size, print_json, table, warn
from lokal.files import write_atomic


def write_chart_png(chart: Any, path: Path, *, rows: int = 6) -> Path:
    """Draw a report `Chart` into a PNG at `path`, atomically (temp file + rename). Headless: no pyplot."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, max(3.0, 1.2 + 0.35 * rows)), layout="constrained")
    chart.draw(fig.add_subplot())
    return write_atomic(path, lambda out: fig.savefig(out, format="png", dpi=110))


def _scan(ctx: click.Context) -> Any:
    from lokal.cache.scan import scan_caches

    return scan_caches(ctx.obj.settings)


def _when(entry: Any) -> str:
    return human_ago(entry.last_used) if entry.last_used else ""


def _print_report(report: CacheReport) -> None:
    entries = report.models() + [e for e in report.entries if e.kind != "model"]
    rows = [
        [
            e.source if e.kind == "model" else f"{e.source} ({e.kind})",
            e.name,
            human_size(e.size_bytes),
            human_size(e.shared_bytes) if e.shared_bytes else "-",
            _when(e),
            human_ago(e.modified) if e.modified else "",
            e.path,
        ]
        for e in entries
    ]
    click.echo(table(rows, ["SOURCE", "NAME", "SIZE", "SHARED", "LAST USED", "MODIFIED", "PATH"]))
    shared = [e for e in entries if e.shared_with]
    if shared:
        click.echo("\nshared bytes (counted once in the totals):")
        for e in shared:
            click.echo(f"  {e.source}: {e.name}: {human_size(e.shared_bytes)} also in {'; '.join(e.shared_with)}")
    click.echo("")
    totals = [
        [
            SOURCE_LABELS[t.source],
            str(t.models),
            human_size(t.logical_bytes),
            human_size(t.physical_bytes),
            human_size(t.incomplete_bytes) if t.incomplete_bytes else "-",
            t.root if t.exists else f"{t.root} (none)",
        ]
        for t in report.sources
    ]
    totals.append(
        [
            "all",
            str(len(report.models())),
            human_size(report.logical_bytes),
            human_size(report.physical_bytes),
            human_size(partial) if (partial := sum(t.incomplete_bytes for t in report.sources)) else "-",
            "",
        ]
    )
    click.echo(table(totals, ["STORE", "MODELS", "LOGICAL", "PHYSICAL", "PARTIAL", "LOCATION"]))
    if report.linked_elsewhere_bytes:
        click.echo(
            f"{human_size(report.linked_elsewhere_bytes)} of it is also hardlinked from outside these stores "
            "(e.g. the installed package of a bundled model): deleting it here frees nothing."
        )


def _show(ctx: click.Context, as_json: bool, chart: Path | None) -> None:
    report = _scan(ctx).report
    for message in report.warnings:
        warn(f"warning: {message}")
    if chart is not None:
        from lokal.cache.sections import cache_sections

        sections = cache_sections(report)
        charts = [c for s in sections for c in s.charts]
        if charts:
            write_chart_png(charts[0], chart, rows=len(report.models()))
            warn(f"chart written to {chart}")
        else:
            warn("no models to chart")
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    _print_report(report)
    if not report.entries:
        warn("no models in the Hugging Face cache, lokal's store or Ollama's store")


_json_option = click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
_chart_option = click.option(
    "--chart",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    metavar="FILE.png",
    help="Also draw a bar chart of size per model into FILE.png.",
)


@click.group("cache", invoke_without_command=True)
@_json_option
@_chart_option
@click.pass_context
def cache(ctx: click.Context, as_json: bool, chart: Path | None) -> None:
    """Show the disk your models take: the Hugging Face cache, lokal's store and Ollama's store.

    Sizes count every file once, even when it is shared between models, linked between stores or
    hardlinked from an installed package: LOGICAL adds each model's own size, PHYSICAL is what the
    disk holds. `lokal cache prune` frees space (it plans first).

    \b
    Examples:
      lokal cache
      lokal cache --json
      lokal cache --chart cache.png
    """
    if ctx.invoked_subcommand is None:
        _show(ctx, as_json, chart)


@cache.command("list")
@_json_option
@_chart_option
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool, chart: Path | None) -> None:
    """Same as `lokal cache`: every cached model, its size, shared bytes and last use."""
    _show(ctx, as_json, chart)


def _print_plan(plan: PrunePlan) -> None:
    if plan.delete:
        rows = [
            [
                i.source if i.kind == "model" else f"{i.source} ({i.kind})",
                i.name,
                human_size(i.size_bytes),
                human_size(i.frees_bytes),
                i.reason + (f"; {i.note}" if i.note else ""),
            ]
            for i in plan.delete
        ]
        verb = "DELETED" if plan.executed else "DELETE"
        click.echo(table(rows, [f"{verb}: SOURCE", "NAME", "SIZE", "FREES", "WHY"]))
    if plan.keep:
        click.echo("")
        rows = [[i.source, i.name, human_size(i.size_bytes), i.reason] for i in plan.keep]
        click.echo(table(rows, ["KEPT: SOURCE", "NAME", "SIZE", "WHY"]))
    for note in plan.notes:
        click.echo(f"note: {note}")


@cache.command("prune")
@click.argument("names", nargs=-1, metavar="[MODEL|REPO]...")
@click.option("--older-than", "older_than", metavar="AGE", help="Only models last used more than AGE ago (30d, 2w).")
@click.option(
    "--source",
    "sources",
    multiple=True,
    type=click.Choice(SOURCES),
    help="Only this store (repeatable). Ollama's store is read-only: its models are only reported.",
)
@click.option("--incomplete", is_flag=True, help="Partial downloads and leftover temp files (and unused blobs).")
@click.option("--yes", "-y", "yes", is_flag=True, help="Delete. Without it, only the plan is shown.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan (or what was done) as JSON.")
@click.pass_context
def prune(
    ctx: click.Context,
    names: tuple[str, ...],
    older_than: str | None,
    sources: tuple[str, ...],
    incomplete: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Free disk: plan what goes and what it frees; delete only with --yes.

    Select models by name (lokal or Ollama names, Hugging Face repo ids), by --older-than,
    and/or partial downloads with --incomplete. A blob another remaining model still uses is
    never deleted, and Ollama's store is never touched (use `ollama rm`).

    \b
    Examples:
      lokal cache prune --older-than 30d             # show the plan
      lokal cache prune --older-than 30d --yes       # delete
      lokal cache prune --incomplete --source hf --yes
      lokal cache prune bartowski/Llama-3.2-1B-Instruct-GGUF mymodel:latest
    """
    from lokal.cache.prune import PruneCriteria, execute_prune, parse_age, plan_prune

    criteria = PruneCriteria(
        names=names,
        older_than_s=parse_age(older_than) if older_than is not None else None,
        older_than=older_than,
        sources=sources,
        incomplete=incomplete,
    )
    scan = _scan(ctx)
    for message in scan.report.warnings:
        warn(f"warning: {message}")
    plan = plan_prune(scan, criteria)
    if yes and plan.delete:
        plan = execute_prune(plan, scan, ctx.obj.store)
    if as_json:
        print_json(plan.model_dump(mode="json"))
        return
    if not plan.delete and not plan.keep:
        click.echo("nothing to prune")
        return
    _print_plan(plan)
    if not plan.delete:
        click.echo("nothing to delete")
    elif plan.executed:
        click.echo(f"freed {human_size(plan.frees_bytes)}")
    else:
        click.echo(f"would free {human_size(plan.frees_bytes)}; nothing was deleted (add --yes to delete)")


COMMANDS = [cache]
