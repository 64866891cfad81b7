"""`lokal audit`: bias probes on a model (`lokal audit MODEL`), group fairness from labelled predictions
(`lokal audit fairness FILE`). Results are saved as JSON (raw model outputs as JSONL beside them) before
anything is printed, and feed `lokal card`.
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from lokal.audit.suites import BUILT_IN, SUITES
from lokal.cli._choices import api_option
from lokal.cli._engine import ENGINE_HELP, engine_option, refuse_engine_with_url
from lokal.cli._output import is_tty, print_json, warn
from lokal.cli.audit_fairness import fairness


class _AuditGroup(click.Group):
    """`lokal audit MODEL ...` runs the probes; `lokal audit fairness ...` is a subcommand. A first argument
    that is not a subcommand name is the model."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("audit", cls=_AuditGroup)
def audit() -> None:
    """Audit a model for bias, or predictions for group fairness.

    \b
    lokal audit MODEL [--suite ...]          bias probes with confidence intervals
    lokal audit fairness FILE --label ...    group fairness metrics (fairlearn)
    lokal audit compare A.json B.json        do two audits agree within their intervals?

    \b
    Examples:
      lokal audit smollm2                                     # the built-in suites (occupations, generation)
      lokal audit smollm2 --suite crows-pairs --data ../shared/data --limit 200
      lokal audit smollm2 --suite winobias --suite winogender --suite bbq --data ../shared/data
      lokal audit smollm2 --engine transformers --suite crows-pairs --data ../shared/data   # same weights, HF
      lokal audit --url http://127.0.0.1:11434/v1 smollm2 --suite crows-pairs --data ...   # via lokal serve
    """


def _default_output(home: Path, model: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model)[:60].strip("-") or "audit"
    return home / "audit" / f"{stamp}-{slug}.json"


class _Bars:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __call__(self, suite: str):
        from tqdm import tqdm

        self.close()
        if not self.enabled:
            warn(f"{suite} ...")
            return None
        self.bar = tqdm(desc=suite, unit="item", leave=True, dynamic_ncols=True)

        def progress(done: int, total: int) -> None:
            if self.bar.total != total:
                self.bar.total = total
            self.bar.update(done - self.bar.n)

        return progress

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def summary_lines(result: Any) -> list[str]:
    """One block per suite: each overall figure (no group) with its interval, N and scoring."""
    lines = [f"{result.model.name} @ {result.target}: {len(result.suites)} suite(s), seed {result.seed}"]
    for suite in result.suites:
        lines.append(f"  {suite.suite} ({suite.dataset.name}, {suite.dataset.items} items, scored by {suite.scoring})")
        # The overall figures, and the top-level gaps (pro - anti, male - female); the full breakdown is in the
        # result JSON and the model card.
        shown = [m for m in suite.metrics if m.group is None or ("gap" in m.name and "/" not in m.group)]
        for m in shown or suite.metrics[:6]:
            label = m.name if m.group is None else f"{m.name} ({m.group})"
            ci = f" [{_fmt(m.ci_low)}, {_fmt(m.ci_high)}]" if m.ci_low is not None else ""
            ideal = f"  (ideal {m.ideal:g})" if m.ideal is not None else ""
            unit = f" {m.unit}" if m.unit and m.unit != "%" else (m.unit or "")
            lines.append(f"    {label:<44} {_fmt(m.value)}{unit}{ci}  N={m.n}{ideal}")
    lines += [f"  warning: {w}" for w in result.warnings]
    return lines


@audit.command("run", hidden=True)
@click.argument("model")
@click.option(
    "--suite",
    "suites",
    multiple=True,
    type=click.Choice(SUITES),
    help=f"A suite to run (repeatable; default: the built-in {' and '.join(BUILT_IN)}).",
)
@click.option("--data", type=click.Path(path_type=Path), help="Dataset file or folder (or a folder of datasets).")
@click.option("--limit", type=click.IntRange(min=1), help="Score at most N items per suite (a seeded sample).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling and bootstrap intervals.")
@click.option("--url", help="Audit the model behind this server (OpenAI API for likelihood suites).")
@api_option("lokal.audit.scorers:SCORERS")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Result JSON path.")
@click.option("--json", "as_json", is_flag=True, help="Print the result JSON instead of the summary.")
@engine_option(help=ENGINE_HELP + " In-process only: a server at --url audits on the engine it was started with.")
@click.pass_context
def run_cmd(
    ctx: click.Context,
    model: str,
    suites: tuple[str, ...],
    data: Path | None,
    limit: int | None,
    seed: int,
    url: str | None,
    api: str | None,
    output: Path | None,
    as_json: bool,
    engine: str | None,
) -> None:
    """Run bias probes on MODEL."""
    from lokal.audit.result import save
    from lokal.audit.run import model_ref, run_audit
    from lokal.audit.scorers import open_scorer

    refuse_engine_with_url(engine, url, does="audits on")
    settings = ctx.obj.settings
    chosen = list(dict.fromkeys(suites)) or list(BUILT_IN)
    output = output or _default_output(settings.home, model)
    scorer = open_scorer(model, url=url, api=api, settings=settings)
    bars = _Bars(enabled=is_tty(sys.stderr))
    try:
        result = run_audit(
            scorer,
            model_ref(model, settings, scorer.resolved),
            chosen,
            output=output,
            data=data,
            limit=limit,
            seed=seed,
            on_suite=bars,
        )
    finally:
        bars.close()
        scorer.close()
    saved = save(result, output)
    warn(f"result saved to {saved} (raw model outputs beside it)")
    if as_json:
        print_json(result.model_dump(mode="json"))
    else:
        click.echo("\n".join(summary_lines(result)))


@audit.command("compare")
@click.argument("first", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("second", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--all", "all_figures", is_flag=True, help="Show every figure, not only overall ones and differences.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.pass_context
def compare_cmd(ctx: click.Context, first: Path, second: Path, all_figures: bool, as_json: bool) -> None:
    """Compare two audit results figure by figure (e.g. one model under --engine llamacpp and transformers).

    Two figures agree when each value lies inside the other's 95 % interval. When some differ, the command lists
    what differs between the two runs, as their results record it: weights, quantization, engine, seed, sample.
    Exits 1 when any figure differs, so scripts can gate on agreement.

    \b
    Example:
      lokal audit smollm2 --suite crows-pairs --data ../shared/data --limit 300 --engine llamacpp -o a.json
      lokal audit smollm2 --suite crows-pairs --data ../shared/data --limit 300 --engine transformers -o b.json
      lokal audit compare a.json b.json
    """
    from lokal.audit.compare import compare, summary_lines, to_json
    from lokal.audit.result import load

    a, b = load(first), load(second)
    comparison = compare(a, b)
    if as_json:
        print_json(to_json(comparison))
    else:
        click.echo("\n".join(summary_lines(comparison, a, b, all_figures=all_figures)))
    if comparison.differing:
        ctx.exit(1)


audit.add_command(fairness)

COMMANDS = [audit]
