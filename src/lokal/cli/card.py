"""`lokal card`: write a Hugging Face model card from what was measured, or check what a card still lacks.

The command parses arguments and prints; `lokal.card` builds and checks. Bad input (a card.yaml with an unknown
field, a result for another model) raises `CardError`, a LokalError the error boundary prints as one line. An
incomplete card under `--check` is a finding: the list is printed to stdout, then `CardIncomplete` (a
LokalError) gives a one-line summary on stderr and exit code 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from lokal.cli._output import print_json, warn

_FILE = click.Path(path_type=Path, dir_okay=False)


def _check(path: Path, as_json: bool) -> None:
    from lokal.card.check import check_card

    result = check_card(path)
    if as_json:
        print_json(result.to_dict())
    elif result.complete:
        click.echo(f"{path}: complete ({result.eval_results} evaluation results, no placeholders left)")
    else:
        click.echo(f"{path}: {len(result.problems)} item(s) missing")
        for p in result.problems:
            where = f"line {p.line}: " if p.line else ""
            click.echo(f"  - {p.item}: {where}{p.message}")
    if not result.complete:
        from lokal.card.errors import CardIncomplete

        raise CardIncomplete(f"{path} is incomplete: {len(result.problems)} item(s) missing")


def _build(
    ctx: click.Context,
    model: str,
    *,
    bench: tuple[Path, ...],
    audit: tuple[Path, ...],
    fairness: tuple[Path, ...],
    info_file: Path | None,
    output: Path | None,
    charts: bool,
    as_json: bool,
) -> None:
    from lokal.card.build import build_card, write_card
    from lokal.card.evidence import load_audit, load_bench, load_fairness
    from lokal.card.info import load_info
    from lokal.card.model import ModelFacts

    # Every input file is read and validated before the model is looked up or anything is written.
    info = load_info(info_file) if info_file is not None else None
    bench_ev = [load_bench(p) for p in bench]
    audit_ev = [load_audit(p) for p in audit]
    fairness_ev = [load_fairness(p) for p in fairness]
    store = ctx.obj.store
    local = store.resolve(model)
    facts = ModelFacts.from_info(store.show(model), manifest_digest=local.manifest_digest)
    built = build_card(
        facts,
        bench=bench_ev,
        audits=audit_ev,
        fairness=fairness_ev,
        info=info,
        chart_prefix=output.stem if output is not None and charts else None,
    )
    for message in built.warnings:
        warn(f"warning: {message}")
    summary: dict[str, Any] = {
        "model": facts.name,
        "file": str(output) if output is not None else None,
        "eval_results": len(built.eval_results),
        "charts": [],
        "todo_lines": built.todo_lines,
        "warnings": list(built.warnings),
    }
    if output is None:
        if as_json:
            print_json({**summary, "card": built.text})
        else:
            click.echo(built.text)
        return
    written = write_card(built, output)
    summary["charts"] = [str(p) for p in written[1:]]
    if as_json:
        print_json(summary)
        return
    charts_note = f" and {len(written) - 1} chart(s) beside it" if len(written) > 1 else ""
    click.echo(f"wrote {written[0]}{charts_note}: {len(built.eval_results)} evaluation results")
    if built.todo_lines:
        warn(
            f"{len(built.todo_lines)} place(s) are marked for the model's author; "
            f"fill them in (or pass --info card.yaml), then run: lokal card --check {output}"
        )


@click.command("card")
@click.argument("model", required=False)
@click.option("--bench", "bench", multiple=True, type=_FILE, metavar="RESULT.json", help="A lokal bench result.")
@click.option("--audit", "audit", multiple=True, type=_FILE, metavar="RESULT.json", help="A lokal audit result.")
@click.option(
    "--fairness", "fairness", multiple=True, type=_FILE, metavar="RESULT.json", help="A lokal audit fairness result."
)
@click.option(
    "--info", "info_file", type=_FILE, metavar="card.yaml", help="What only the author can say (fields above)."
)
@click.option(
    "-o",
    "--output",
    type=_FILE,
    metavar="README.md",
    help="Write the card here, its charts beside it (default: print it).",
)
@click.option("--no-charts", is_flag=True, help="Do not write interval charts beside the card.")
@click.option("--check", "check_file", type=_FILE, metavar="README.md", help="List what an existing card lacks.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.option("--info-example", is_flag=True, help="Print an example card.yaml and exit.")
@click.pass_context
def card(
    ctx: click.Context,
    model: str | None,
    bench: tuple[Path, ...],
    audit: tuple[Path, ...],
    fairness: tuple[Path, ...],
    info_file: Path | None,
    output: Path | None,
    no_charts: bool,
    check_file: Path | None,
    as_json: bool,
    info_example: bool,
) -> None:
    """Write a Hugging Face model card for MODEL, or check one with --check.

    The card holds what lokal can state from evidence: the GGUF metadata (architecture, parameters,
    quantization, context length, licence, digest) and the results you pass, each figure with its
    interval, N and scoring mode, in the front matter (model-index) and in tables. What only the
    model's author can say (intended use, limitations, risks, who could be harmed) comes from
    --info card.yaml; anything missing is marked "TODO: the model's author must fill this".

    \b
    card.yaml fields (all optional; see --info-example):
      name, summary, authors, contact, license, license_name, license_link, language,
      base_model, repository, intended_use, out_of_scope, limitations, risks,
      affected_groups, training_data, recommendations, human_oversight, citation, tags

    \b
    --check lists what a card lacks (sections, licence, evaluation results, limitations,
    placeholders left) and exits with code 1 when anything is missing.

    \b
    Examples:
      lokal card smollm2 -o README.md
      lokal card smollm2 --bench bench.json --audit audit.json --info card.yaml -o README.md
      lokal card --check README.md
    """
    if info_example:
        from lokal.card.info import EXAMPLE_INFO

        click.echo(EXAMPLE_INFO, nl=False)
        return
    if check_file is not None:
        extra = [
            name
            for name, given in (
                ("MODEL", model),
                ("--bench", bench),
                ("--audit", audit),
                ("--fairness", fairness),
                ("--info", info_file),
                ("-o", output),
            )
            if given
        ]
        if extra:
            raise click.UsageError(f"--check reads an existing card; it takes no {', '.join(extra)}")
        _check(check_file, as_json)
        return
    if model is None:
        raise click.UsageError("name the MODEL to write a card for, or pass --check README.md")
    _build(
        ctx,
        model,
        bench=bench,
        audit=audit,
        fairness=fairness,
        info_file=info_file,
        output=output,
        charts=not no_charts,
        as_json=as_json,
    )


COMMANDS = [card]
