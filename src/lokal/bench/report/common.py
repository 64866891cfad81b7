"""What every section of a bench report shares: the runs it compares, and how numbers are written.

A *run* is one model of one result on one engine: a result benchmarking two models (or one model on two
engines, `lokal bench smollm2 --engine llamacpp,transformers`) gives two runs, and several results (a
comparison of two servers or two models) give a run each. The engine is named beside the model wherever the
runs used more than one ("smollm2:135m (transformers)"). Runs are the columns of comparison tables and the
lines (or bar colours) of every chart; a load level ("concurrency 4", "2 req/s", "batch 8") is a row or a
category, so the same setting lines up across runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lokal.bench.metrics import PERCENTILES, LevelSummary, summarize
from lokal.bench.result import BenchResult, LoadLevel, MemoryTimeline, Slo

DASH = "—"
P_KEYS = tuple(f"p{p}" for p in PERCENTILES)
MODE_ORDER = {"sync": 0, "concurrency": 1, "batch": 2, "rate": 3}


@dataclass(frozen=True)
class Run:
    """One model of one result on one engine: a column in comparison tables, a colour in every chart."""

    name: str
    index: int
    result: BenchResult
    model: str
    levels: tuple[tuple[LoadLevel, LevelSummary], ...]
    engine: str | None = None
    #: The model, with its engine when the report compares engines: "smollm2:135m (transformers)".
    label: str = ""


def engines_compared(results: Sequence[BenchResult]) -> bool:
    """Whether the engine tells runs apart: more than one engine (or a named one beside an unnamed one) ran."""
    return len({lv.engine for r in results for lv in r.levels} | {c.engine for r in results for c in r.cold_start}) > 1


def model_label(model: str, engine: str | None, show_engine: bool) -> str:
    return f"{model} ({engine})" if show_engine and engine else model


def build_runs(results: Sequence[BenchResult]) -> list[Run]:
    """Split results into runs, named so a reader can tell them apart (result name, then model and engine
    when needed)."""
    runs: list[Run] = []
    seen: dict[str, int] = {}
    show_engine = engines_compared(results)
    for result in results:
        keys = list(dict.fromkeys((level.model, level.engine) for level in result.levels))
        for model, engine in keys:
            label = model_label(model, engine, show_engine)
            if len(keys) == 1:
                name = result.name + (f" ({engine})" if show_engine and engine and not result.label else "")
            elif len(results) == 1:
                name = label
            else:
                name = (
                    f"{result.label} · {label}"
                    if result.label
                    else f"{label} @ {result.target.url or result.target.kind}"
                )
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                name = f"{name} ({seen[name]})"
            levels = tuple(
                (lv, summarize(lv, result.config.slo))
                for lv in result.levels
                if lv.model == model and lv.engine == engine
            )
            runs.append(
                Run(
                    name=name,
                    index=len(runs),
                    result=result,
                    model=model,
                    levels=levels,
                    engine=engine,
                    label=label,
                )
            )
    return runs


def fmt(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return DASH
    if isinstance(value, int):
        return str(value)
    return f"{value:,.{digits}f}"


def fmt_pct(fraction: float | None) -> str:
    return DASH if fraction is None else f"{100.0 * fraction:.1f} %"


def fmt_mb(n_bytes: int | float | None) -> str:
    return DASH if n_bytes is None else f"{n_bytes / 1e6:,.1f}"


def slo_text(slo: Slo | None) -> str:
    if slo is None:
        return "none"
    parts = [
        f"{name} ≤ {value:g} ms"
        for name, value in (("TTFT", slo.ttft_ms), ("TPOT", slo.tpot_ms), ("ITL", slo.itl_ms), ("E2EL", slo.e2el_ms))
        if value is not None
    ]
    return ", ".join(parts) or "none"


def level_order(level: LoadLevel) -> tuple[int, float]:
    value = level.concurrency or level.batch_size or level.rate or 0
    return MODE_ORDER[level.mode], float(value)


def level_labels(runs: Sequence[Run]) -> list[str]:
    """Every load-level label in the order the runs first show it."""
    return list(dict.fromkeys(level.label for run in runs for level, _ in run.levels))


def uss_rate(memory: MemoryTimeline) -> str:
    """ ", USS every 2 s" when USS was read less often than RSS (bench/memory.py says why)."""
    every = memory.uss_interval_s
    return f", USS every {every:g} s" if every is not None and every > memory.interval_s else ""


def own_cpu(result: BenchResult) -> tuple[float, str] | None:
    """The largest share of a core lokal bench itself used in one level, and that level's label (None for an
    in-process target, where the engine shares the process and only the event loop's share is known)."""
    own = [(v, lv.label) for lv in result.levels if lv.client and (v := lv.client.process_cpu_percent) is not None]
    return max(own) if own else None
