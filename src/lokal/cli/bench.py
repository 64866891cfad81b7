"""`lokal bench`: measure a model in-process or behind a server, save the result, then render it.

The result JSON is written before anything is rendered, so a rendering problem never loses a run, and
`lokal report RESULT.json` gives the same report later.
"""

from __future__ import annotations

import asyncio
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from lokal.cli._choices import RegistryChoice, api_option
from lokal.cli._engine import engines_option, refuse_engine_with_url
from lokal.cli._output import print_json, warn


def _split(text: str | None, kind: type, what: str) -> tuple[Any, ...]:
    if not text:
        return ()
    try:
        values = tuple(kind(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated {what}, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise click.BadParameter(f"expected positive {what}, got {text!r}")
    return values


def _duration(text: str | None) -> float | None:
    if text is None:
        return None
    from lokal.config import parse_duration
    from lokal.errors import InvalidOptions

    try:
        seconds = parse_duration(text)
    except InvalidOptions as exc:
        raise click.BadParameter(str(exc)) from None
    if not seconds:
        raise click.BadParameter(f"the duration must be positive, got {text!r}")
    return seconds


def _default_output(home: Path, models: tuple[str, ...], engines: tuple[str, ...] = ()) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    name = "+".join(models) + (f"-{'+'.join(engines)}" if engines else "")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name)[:60].strip("-") or "bench"
    return home / "bench" / f"{stamp}-{slug}.json"


class _Bars:
    """One tqdm bar per load level on stderr (hidden when stderr is not a terminal)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __call__(self, model: str, label: str, total: int | None):
        from tqdm import tqdm

        self.close()
        if not self.enabled:
            warn(f"{model}: {label} ...")
            return None
        self.bar = tqdm(total=total, desc=f"{model} {label}", unit="req", leave=True, dynamic_ncols=True)

        def progress(done: int, _total: int | None) -> None:
            self.bar.update(done - self.bar.n)

        return progress

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@click.command("bench")
@click.argument("models", nargs=-1)
@click.option("--url", metavar="URL", help="Benchmark the server at URL instead of the in-process engine.")
@api_option("lokal.bench.targets:TARGETS")
@click.option("--model", "served", multiple=True, metavar="NAME", help="Model name as the server knows it.")
@click.option("-n", "--requests", type=click.IntRange(min=1), help="Measured requests per level (default 8).")
@click.option("--duration", metavar="TIME", help="Run each level for this long instead, e.g. 60s or 2m.")
@click.option("-c", "--concurrency", metavar="N[,N...]", help="Closed-loop concurrency levels, e.g. 1,2,4,8.")
@click.option("--rate", metavar="R[,R...]", help="Open-loop request rates (requests/s, Poisson arrivals).")
@click.option("--arrival", type=click.Choice(["poisson", "constant"]), default="poisson", show_default=True)
@click.option("--max-concurrency", type=click.IntRange(min=1), help="Cap on requests in flight at a --rate.")
@click.option("--batch", "batch", metavar="B[,B...]", help="Batch sizes: waves of B requests sent together.")
@click.option("--prompt-tokens", type=click.IntRange(min=8), help="Synthetic prompts of about N tokens.")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Output tokens per request (default: workload's).")
@click.option(
    "--prompts",
    "prompts_file",
    type=click.Path(dir_okay=False),
    help="Prompts from a JSONL file, sent top to bottom (then again from the top, each re-send tagged).",
)
@click.option("--shuffle", is_flag=True, help="Send the --prompts file in a random order (seeded by --seed).")
@click.option(
    "--workload",
    type=RegistryChoice("lokal.bench.workload:WORKLOADS"),
    default="chat",
    show_default=True,
    help="Built-in prompt set.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for prompts, arrivals and sampling.")
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True, help="Unmeasured requests/level.")
@click.option("--temperature", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--slo", metavar="SPEC", help="Service-level objectives for goodput, e.g. ttft=100ms,tpot=50ms.")
@click.option("--search", type=click.Choice(["concurrency", "rate"]), help="Find the highest load meeting --slo.")
@click.option("--search-max", type=float, help="Upper bound for --search (default 16 workers or 32 req/s).")
@click.option("--pid", type=int, help="Sample this process's memory (when the server does not report its pid).")
@click.option("--no-memory", is_flag=True, help="Do not sample memory.")
@click.option("--no-cold-start", is_flag=True, help="Do not unload and reload the model to time a cold start.")
@engines_option(
    help="In-process engines to measure, one after the other: llamacpp, transformers, or both comma-separated "
    "(same weights, two runtimes, one report). Not with --url: a server runs its own engine."
)
@click.option("--label", help="A name for this run in reports and comparisons.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Result JSON (default: ~/.lokal/bench/...).")
@click.option("--html", "html_out", type=click.Path(dir_okay=False), help="Also write an HTML report here.")
@click.option("--markdown", "md_out", type=click.Path(dir_okay=False), help="Also write a Markdown report here.")
@click.option("--json", "as_json", is_flag=True, help="Print the result JSON instead of the summary.")
@click.pass_context
def bench(ctx: click.Context, models: tuple[str, ...], **opts: Any) -> None:
    """Measure latency, throughput, memory and cold start of MODELS.

    \b
    Without --url the models run in this process on lokal's engine (--engine: llama.cpp, transformers,
    or both one after the other); with --url, any server speaking Ollama's API (lokal serve, ollama
    serve) or OpenAI's (llama-server, vLLM, a cloud API; the key comes from OPENAI_API_KEY) is measured
    from the outside.

    \b
    Examples:
      lokal bench smollm2                                # about a minute: concurrency 1, 2, 4
      lokal bench smollm2 gemma3:270m -c 1,4             # two models side by side
      lokal bench smollm2 --batch 1,2,4,8                # throughput against batch size
      lokal bench smollm2 --engine llamacpp,transformers # the same weights on both engines, side by side
      lokal bench --url http://127.0.0.1:11434 --model smollm2 --rate 1,2,4 --slo ttft=500ms
      lokal bench --url http://127.0.0.1:8080/v1 --model m -c 1,8 --html report.html

    The result is saved as JSON first (see -o); `lokal report` renders it again later.
    """
    from lokal.bench import result as result_io
    from lokal.bench.run import BenchPlan, run_bench
    from lokal.bench.slo import parse_slo
    from lokal.cli._output import is_tty

    names = tuple(dict.fromkeys([*models, *opts["served"]]))
    if not names:
        raise click.UsageError("name a model, e.g. lokal bench smollm2 (with --url: the name the server uses)")
    engines: tuple[str, ...] = opts["engines"] or ()
    refuse_engine_with_url(engines, opts["url"], does="runs")
    plan = BenchPlan(
        models=names,
        url=opts["url"],
        api=opts["api"],
        concurrency=_split(opts["concurrency"], int, "integers"),
        rates=_split(opts["rate"], float, "rates"),
        batch_sizes=_split(opts["batch"], int, "integers"),
        requests=opts["requests"],
        duration_s=_duration(opts["duration"]),
        max_tokens=opts["max_tokens"],
        prompt_tokens=opts["prompt_tokens"],
        prompts_file=opts["prompts_file"],
        shuffle=opts["shuffle"],
        workload="synthetic" if opts["prompt_tokens"] else opts["workload"],
        seed=opts["seed"],
        warmup=opts["warmup"],
        temperature=opts["temperature"],
        slo=parse_slo(opts["slo"]) if opts["slo"] else None,
        search=opts["search"],
        search_max=opts["search_max"],
        arrival=opts["arrival"],
        max_concurrency=opts["max_concurrency"],
        cold_start=not opts["no_cold_start"],
        memory=not opts["no_memory"],
        pid=opts["pid"],
        label=opts["label"],
        settings=ctx.obj.settings,
        engines=engines,
    )
    output = Path(opts["output"]) if opts["output"] else _default_output(ctx.obj.settings.home, names, engines)
    bars = _Bars(enabled=is_tty(sys.stderr))
    try:
        result = asyncio.run(run_bench(plan, on_level=bars))
    finally:
        bars.close()
    saved = result_io.save(result, output)
    warn(f"result saved to {saved}")
    if not result.complete:
        warn("interrupted: the result holds the load levels that finished")
        ctx.exit(130)
    from lokal.bench.report.view import view_of

    view = view_of([result])  # summarised and checked for warnings once, for the summary and the reports
    _render(view, opts["html_out"], opts["md_out"])
    if opts["as_json"]:
        print_json(result.model_dump(mode="json"))
    else:
        from lokal.bench.report.console import console_summary

        click.echo(console_summary(view))


def _render(view: Any, html_out: str | None, md_out: str | None) -> None:
    if not (html_out or md_out):
        return
    from lokal.bench.report.document import bench_document

    doc = bench_document(view)
    if html_out:
        from lokal.report.html import write_html

        warn(f"HTML report written to {write_html(doc, html_out)}")
    if md_out:
        from lokal.report.markdown import render_markdown

        warn(f"Markdown report written to {render_markdown(doc, md_out)[0]}")


COMMANDS = [bench]
