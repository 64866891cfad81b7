"""`lokal audit fairness FILE`: group fairness of labelled predictions (attached to the `lokal audit` group).

The command only parses arguments and prints; `lokal.audit.fairness` computes (with fairlearn) and saves.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from lokal.cli._output import print_json, table, warn

if TYPE_CHECKING:
    from lokal.audit.fairness import FairnessResult
    from lokal.audit.result import Metric


def _figure(metric: Metric) -> str:
    """`0.812 [0.790, 0.833]`, or `-` for an undefined figure."""
    value, low, high = metric.value, metric.ci_low, metric.ci_high
    if value is None:
        return "-"
    ci = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
    return f"{value:.3f}{ci}"


def _print_result(result: FairnessResult) -> None:
    src = result.source
    click.echo(
        f"{src.path}: {src.rows} rows; label {src.label!r}, prediction {src.prediction!r}, "
        f"positive outcome {src.positive!r}"
    )
    overall = ", ".join(f"{m.name.replace('_', ' ')} {_figure(m)}" for m in result.overall)
    click.echo(f"overall: {overall}")
    headers = ["GROUP", "N", "ACCURACY", "SELECTION RATE", "FALSE POSITIVE RATE", "FALSE NEGATIVE RATE"]
    for breakdown in result.breakdowns:
        title = " × ".join(breakdown.columns)
        click.echo("")
        click.echo(f"By {title}{' (intersection)' if breakdown.intersectional else ''}")
        rows = [[g.group, str(g.count)] + [_figure(m) for m in g.metrics] for g in breakdown.groups]
        click.echo(table(rows, headers))
        for m in breakdown.disparities:
            click.echo(f"  {m.name.replace('_', ' ')}: {_figure(m)} (ideal {m.ideal:g})")
    click.echo("")
    click.echo(
        f"[a, b]: {result.confidence:.0%} percentile bootstrap intervals ({result.bootstrap_resamples} resamples of "
        f"rows, seed {result.seed}); figures by fairlearn {result.fairlearn_version}."
    )


@click.command("fairness")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--label", required=True, metavar="COL", help="Column with the true outcome.")
@click.option("--prediction", required=True, metavar="COL", help="Column with the predicted outcome.")
@click.option(
    "--group",
    "groups",
    required=True,
    multiple=True,
    metavar="COL",
    help="Sensitive column (repeat for several: each, and their intersection).",
)
@click.option(
    "--positive",
    metavar="VALUE",
    help="The outcome value that counts as positive (needed unless outcomes are 0/1, true/false, yes/no); every "
    "other value counts as negative.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap resampling.")
@click.option("--resamples", type=click.IntRange(min=100), default=1000, show_default=True, help="Bootstrap resamples.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="RESULT.json",
    help="Also save the result (versioned JSON, input of lokal card --fairness).",
)
def fairness(
    file: Path,
    label: str,
    prediction: str,
    groups: tuple[str, ...],
    positive: str | None,
    seed: int,
    resamples: int,
    as_json: bool,
    output: Path | None,
) -> None:
    """Group fairness of the predictions in FILE (CSV with a header row, or JSON Lines).

    Per group: accuracy, selection rate, false positive and false negative rates, with N; between groups:
    demographic parity difference and ratio, equalized odds difference; each with a bootstrap interval. Rows
    with no group value form the group "(missing)".

    \b
    Examples:
      lokal audit fairness loans.csv --label repaid --prediction approved --group sex
      lokal audit fairness out.jsonl --label gold --prediction answer --group gender --group race --json
      lokal audit fairness hiring.csv --label hired --prediction decision --positive yes --group age_band -o fair.json
    """
    from lokal.audit.fairness import evaluate, save

    result = evaluate(
        file, label=label, prediction=prediction, groups=groups, positive=positive, seed=seed, resamples=resamples
    )
    for message in result.warnings:
        warn(f"warning: {message}")
    if output is not None:
        save(result, output)
        warn(f"saved {output}")
    if as_json:
        print_json(result.model_dump(mode="json"))
    else:
        _print_result(result)


COMMANDS = [fairness]
