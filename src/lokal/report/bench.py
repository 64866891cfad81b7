"""Bench results -> report sections: tables, charts and notes, built once and drawn by every renderer.

Every number comes from `lokal.bench.metrics.summarize` over the saved samples, never from figures the run
printed, so `lokal report RESULT.json` and the run that wrote RESULT.json show the same report.

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
from typing import TYPE_CHECKING, Any

from lokal.bench.metrics import DEFINITIONS, PERCENTILES, LevelSummary, Stats, stats, summarize, tpot_ms
from lokal.bench.result import BenchResult, EngineRun, LoadLevel, MemoryTimeline, ModelRef, Slo
from lokal.report.document import Chart, Document, Section, Table

# charts (and so matplotlib, ~0.4 s to import) is imported inside the functions that build charts: the console
# summary at the end of `lokal bench` and `lokal report RESULT.json` need only the numbers.
if TYPE_CHECKING:
    from lokal.report import charts

DASH = "—"
_P_KEYS = tuple(f"p{p}" for p in PERCENTILES)
_MODE_ORDER = {"sync": 0, "concurrency": 1, "batch": 2, "rate": 3}
#: Below this many values p99 is little more than the maximum: said so in the warnings.
_FEW_FOR_P99 = 100
#: A client that sent a request later than this after its intended time gets a warning (coordinated omission).
_LATE_SEND_MS = 10.0
#: Load facts left out of the cold start notes: the engine is in the label already, and a cache path is long
#: and differs from machine to machine.
_LOAD_INFO_HIDDEN = ("runtime", "cache")


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


# --- formatting ----------------------------------------------------------------------------------------------


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


def _level_order(level: LoadLevel) -> tuple[int, float]:
    value = level.concurrency or level.batch_size or level.rate or 0
    return _MODE_ORDER[level.mode], float(value)


def _labels(runs: Sequence[Run]) -> list[str]:
    """Every load-level label in the order the runs first show it."""
    return list(dict.fromkeys(level.label for run in runs for level, _ in run.levels))


def _schedule_differs(level: LoadLevel, summary: LevelSummary) -> bool:
    """E2EL from the intended send time is worth its own row only where the client ever sent late."""
    return level.mode == "rate" or (summary.send_lag_ms.max or 0.0) > 1e-3


def _decode_tok_s(level: LoadLevel) -> Stats:
    """Client-side decode speed per request, 1000 / TPOT: the figure beside the server's own tokens/s."""
    return stats(1000.0 / v for s in level.samples if s.ok and (v := tpot_ms(s)) and v > 0)


# --- summary -------------------------------------------------------------------------------------------------


def _throughput_table(runs: Sequence[Run]) -> Table:
    with_slo = any(summary.slo is not None for run in runs for _, summary in run.levels)
    many = len(runs) > 1
    headers = [
        *(["Run"] if many else []),
        "Level",
        "Requests (N)",
        "Completed",
        "Failed",
        "Error rate",
        "Duration (s)",
        "Requests/s",
        "Output tokens/s",
        "Total tokens/s",
        *(["Goodput (req/s)", "SLO attainment"] if with_slo else []),
        "Token counts from",
    ]
    rows = []
    for run in runs:
        for level, s in run.levels:
            rows.append(
                (
                    *([run.name] if many else []),
                    level.label,
                    str(s.requests),
                    str(s.completed),
                    str(s.failed),
                    fmt_pct(s.error_rate),
                    fmt(s.duration_s, 2),
                    fmt(s.request_throughput, 2),
                    fmt(s.output_token_throughput, 1),
                    fmt(s.total_token_throughput, 1),
                    *([fmt(s.goodput, 2), fmt_pct(s.slo_attainment)] if with_slo else []),
                    ", ".join(s.token_sources) or DASH,
                )
            )
    first_numeric = 2 if many else 1
    last_numeric = len(headers) - 2
    return Table(
        headers=tuple(headers),
        rows=tuple(rows),
        caption="Throughput and errors per load level (warm-up requests excluded; duration is first send to last "
        "completion, tail included)",
        numeric=tuple(range(first_numeric, last_numeric + 1)),
    )


def _uss_rate(memory: MemoryTimeline) -> str:
    """ ", USS every 2 s" when USS was read less often than RSS (bench/memory.py says why)."""
    every = memory.uss_interval_s
    return f", USS every {every:g} s" if every is not None and every > memory.interval_s else ""


def own_cpu(result: BenchResult) -> tuple[float, str] | None:
    """The largest share of a core lokal bench itself used in one level, and that level's label (None for an
    in-process target, where the engine shares the process and only the event loop's share is known)."""
    own = [(v, lv.label) for lv in result.levels if lv.client and (v := lv.client.process_cpu_percent) is not None]
    return max(own) if own else None


def _own_cpu_text(result: BenchResult) -> str:
    most = own_cpu(result)
    return f" lokal bench's own CPU: at most {most[0]:.1f} % of one core ({most[1]})." if most else ""


def _summary_section(results: Sequence[BenchResult], runs: Sequence[Run]) -> Section:
    paragraphs = []
    for result in results:
        n = sum(len(lv.samples) for lv in result.levels)
        failed = sum(1 for lv in result.levels for s in lv.samples if not s.ok)
        where = result.target.kind + (f" at {result.target.url}" if result.target.url else "")
        paragraphs.append(
            f"{result.name}: {len(result.levels)} load levels (target: {where}), {n} measured requests "
            f"({failed} failed); SLO: {slo_text(result.config.slo)}; run at {result.created_at.isoformat()}."
            + _own_cpu_text(result)
        )
    return Section(title="Summary", paragraphs=tuple(paragraphs), tables=(_throughput_table(runs),))


# --- latency -------------------------------------------------------------------------------------------------


def _stat_cells(st: Stats, digits: int = 1) -> tuple[str, ...]:
    return (
        str(st.n),
        fmt(st.mean, digits),
        fmt(st.std, digits),
        fmt(st.min, digits),
        *(fmt(getattr(st, k), digits) for k in _P_KEYS),
        fmt(st.max, digits),
    )


def _latency_rows(level: LoadLevel, s: LevelSummary) -> list[tuple[str, Stats]]:
    rows = [("TTFT (ms)", s.ttft_ms), ("ITL (ms)", s.itl_ms), ("TPOT (ms)", s.tpot_ms), ("E2EL (ms)", s.e2el_ms)]
    if _schedule_differs(level, s):
        rows.append(("E2EL from schedule (ms)", s.e2el_from_schedule_ms))
        rows.append(("send lag (ms)", s.send_lag_ms))
    rows.append(("client decode tokens/s (1000 / TPOT)", _decode_tok_s(level)))
    server = [
        ("server prompt eval (ms)", s.server_prompt_eval_ms),
        ("server eval (ms)", s.server_eval_ms),
        ("server tokens/s (output / eval)", s.server_tokens_per_s),
    ]
    rows += [(name, st) for name, st in server if st.n > 0]
    return rows


def _latency_section(runs: Sequence[Run]) -> Section | None:
    from lokal.report import charts

    if not _labels(runs):
        return None
    many = len(runs) > 1
    headers = ("Metric", *(["Run"] if many else []), "N", "mean", "std", "min", *_P_KEYS, "max")
    first_numeric = 2 if many else 1
    subsections = []
    for label in _labels(runs):
        rows: list[tuple[str, ...]] = []
        per_run = [(run, lv, s) for run in runs for lv, s in run.levels if lv.label == label]
        metric_names = list(dict.fromkeys(name for _, lv, s in per_run for name, _ in _latency_rows(lv, s)))
        for metric in metric_names:  # metric-major: the runs' figures for one metric sit next to each other
            for run, lv, s in per_run:
                for name, st in _latency_rows(lv, s):
                    if name == metric:
                        rows.append((name, *([run.name] if many else []), *_stat_cells(st)))
        subsections.append(
            Section(
                title=label,
                tables=(
                    Table(
                        headers=headers,
                        rows=tuple(rows),
                        caption=f"Latency at {label}: client-side, then server-side timings where reported",
                        numeric=tuple(range(first_numeric, len(headers))),
                    ),
                ),
            )
        )
    labels = _labels(runs)
    chart_list = []
    for key, name in (("ttft_ms", "TTFT"), ("itl_ms", "ITL"), ("e2el_ms", "E2EL")):
        data = []
        for run in runs:
            by_label = {lv.label: getattr(s, key) for lv, s in run.levels}
            data.append(
                charts.Percentiles(
                    run=run.name,
                    color_index=run.index,
                    by_percentile={
                        p: tuple(getattr(by_label[lb], p) if lb in by_label else None for lb in labels) for p in _P_KEYS
                    },
                )
            )
        chart_list.append(
            charts.percentile_chart(
                f"latency-{key.removesuffix('_ms')}",
                f"{name} percentiles per load level",
                labels,
                data,
                ylabel=f"{name} (ms)",
                caption=f"{name} p50, p90, p95 and p99 in milliseconds; failed requests are left out.",
            )
        )
    return Section(
        title="Latency",
        paragraphs=(
            "Client-side figures are measured from the actual send; server-side ones are what the server or engine "
            "reported for the same requests. TTFT minus the server's prompt eval is time spent queueing, in the "
            "chat template, on the network and in the client.",
        ),
        charts=tuple(chart_list),
        subsections=tuple(subsections),
    )


# --- throughput ----------------------------------------------------------------------------------------------


def _sweep_lines(runs: Sequence[Run], mode: str) -> list[charts.ThroughputLine]:
    from lokal.report import charts

    lines = []
    for run in runs:
        ordered = sorted(
            (
                (lv.concurrency if mode == "concurrency" else lv.batch_size, s)
                for lv, s in run.levels
                if lv.mode == mode
            ),
            key=lambda p: p[0] or 0,
        )
        points = [(x, s) for x, s in ordered if x]
        if points:
            lines.append(
                charts.ThroughputLine(
                    run=run.name,
                    color_index=run.index,
                    x=tuple(float(x) for x, _ in points),
                    output_tok_s=tuple(s.output_token_throughput for _, s in points),
                    request_s=tuple(s.request_throughput for _, s in points),
                )
            )
    return lines


def _throughput_section(runs: Sequence[Run]) -> Section | None:
    from lokal.report import charts

    chart_list: list[Chart] = []
    conc = _sweep_lines(runs, "concurrency")
    if any(len(line.x) > 1 for line in conc):
        chart_list.append(
            charts.throughput_chart(
                "throughput-concurrency",
                "Throughput vs concurrency",
                conc,
                xlabel="concurrency (requests in flight)",
                caption="Closed loop: each worker sends its next request when the previous one completes.",
            )
        )
    batch = _sweep_lines(runs, "batch")
    if any(len(line.x) > 1 for line in batch):
        chart_list.append(
            charts.throughput_chart(
                "throughput-batch",
                "Throughput vs batch size",
                batch,
                xlabel="batch size (sequences decoded together)",
                caption="In-process engine: all sequences of a batch submitted together.",
            )
        )
    rate_lines = []
    for run in runs:
        points = sorted(((lv.rate, s) for lv, s in run.levels if lv.mode == "rate" and lv.rate), key=lambda p: p[0])
        if points:
            rate_lines.append(
                charts.RateLine(
                    run=run.name,
                    color_index=run.index,
                    offered=tuple(r for r, _ in points),
                    achieved=tuple(s.request_throughput for _, s in points),
                    goodput=tuple(s.goodput for _, s in points),
                )
            )
    if rate_lines:
        chart_list.append(
            charts.rate_chart(
                "throughput-rate",
                "Throughput and goodput vs offered rate",
                rate_lines,
                caption="Open loop: requests arrive at the offered rate whether or not earlier ones have finished.",
            )
        )
    if not chart_list:
        return None
    return Section(title="Throughput", charts=tuple(chart_list))


# --- models --------------------------------------------------------------------------------------------------


def _reference_level(runs_of_result: Sequence[Run]) -> dict[int, tuple[LoadLevel, LevelSummary]]:
    """The load level to compare the runs (models, engines) of one result at, by run index: the lightest
    setting every run had (sync or concurrency 1 when there), else each run's lightest."""
    if not runs_of_result:
        return {}
    common = set.intersection(*({lv.label for lv, _ in run.levels} for run in runs_of_result))
    picked = {}
    for run in runs_of_result:
        candidates = [p for p in run.levels if p[0].label in common] or list(run.levels)
        picked[run.index] = min(candidates, key=lambda p: _level_order(p[0]))
    return picked


def _model_ref(result: BenchResult, model: str, engine: str | None = None) -> ModelRef | None:
    """The model as the result recorded it, for `engine` when the result names one per engine."""
    named = [m for m in result.target.models if m.name == model]
    return next((m for m in named if m.engine == engine), named[0] if named else None)


def _models_section(results: Sequence[BenchResult], runs: Sequence[Run]) -> Section | None:
    from lokal.report import charts

    rows = []
    series = []
    for k, result in enumerate(results):
        result_runs = [run for run in runs if run.result is result]
        picked = _reference_level(result_runs)
        points = []
        for run in result_runs:
            lv, s = picked[run.index]
            ref = _model_ref(result, run.model, run.engine)
            size = ref.size_bytes if ref else None
            rows.append(
                (
                    *([result.name] if len(results) > 1 else []),
                    run.label,
                    fmt_mb(size),
                    (ref.parameter_size if ref else None) or DASH,
                    (ref.quantization if ref else None) or DASH,
                    lv.label,
                    fmt(s.ttft_ms.p50),
                    fmt(s.tpot_ms.p50),
                    fmt(s.e2el_ms.p50),
                    fmt(s.output_token_throughput),
                )
            )
            if size:
                points.append((size / 1e6, s, run.label))
        points.sort(key=lambda p: p[0])
        for j, (metric, key) in enumerate((("TTFT p50", "ttft_ms"), ("TPOT p50", "tpot_ms"))):
            series.append(
                charts.Series(
                    name=metric if len(results) == 1 else f"{result.name}: {metric}",
                    x=tuple(p[0] for p in points),
                    y=tuple(getattr(p[1], key).p50 for p in points),
                    color=charts.color(j if len(results) == 1 else k),
                    linestyle="-" if j == 0 else "--",
                    marker="o" if j == 0 else "s",
                    labels=tuple(p[2] for p in points) if j == 0 else (),
                )
            )
    sized_models = {x for s in series for x in s.x}
    if len({(run.model, run.engine) for run in runs}) < 2:
        return None
    show_engine = engines_compared(results)
    many = len(results) > 1
    headers = (
        *(["Run"] if many else []),
        "Model (engine)" if show_engine else "Model",
        "Size (MB)",
        "Parameters",
        "Quantization",
        "Level",
        "TTFT p50 (ms)",
        "TPOT p50 (ms)",
        "E2EL p50 (ms)",
        "Output tokens/s",
    )
    table = Table(
        headers=headers,
        rows=tuple(rows),
        caption=("Models and engines" if show_engine else "Models")
        + " compared at the lightest load level they all ran",
        numeric=(1 + many, *range(5 + many, len(headers))),
    )
    chart_list: tuple[Chart, ...] = ()
    if len(sized_models) >= 2:
        chart_list = (
            charts.line_chart(
                "latency-model-size",
                "Latency vs model size",
                series,
                xlabel="model size on disk (MB)",
                ylabel="latency (ms)",
                caption="Median TTFT and TPOT of each model at the load level named in the table.",
                alt="Latency vs model size: median TTFT and TPOT in ms against the model file size in MB",
            ),
        )
    return Section(title="Models and engines" if show_engine else "Models", tables=(table,), charts=chart_list)


# --- memory --------------------------------------------------------------------------------------------------


def _turns(result: BenchResult) -> list[EngineRun | None]:
    """The engines' turns of a run of several engines, or [None]: the timeline is then one piece."""
    return list(result.engines) if len(result.engines) > 1 else [None]


def _turn_label(result: BenchResult, turn: EngineRun) -> str:
    """'smollm2 (transformers)' for a turn that measured one model, else the engine's name."""
    models = list(dict.fromkeys(lv.model for lv in result.levels if lv.engine == turn.engine))
    return model_label(models[0], turn.engine, True) if len(models) == 1 else turn.engine


def _memory_section(results: Sequence[BenchResult]) -> Section | None:
    """One line per result, or per engine where a result ran several one after the other: each engine's line
    then starts at its own turn, so the engines' memory is drawn side by side like two runs."""
    from lokal.report import charts

    with_memory = [r for r in results if r.memory is not None and r.memory.samples]
    if not with_memory:
        return None
    many = len(results) > 1
    rows = []
    lines = []
    split = False
    for result in with_memory:
        mem = result.memory
        assert mem is not None
        multi = len({(lv.model, lv.engine) for lv in result.levels}) > 1
        show = len({lv.engine for lv in result.levels}) > 1
        level_names = [
            (f"{model_label(lv.model, lv.engine, show)} " if multi else "") + lv.label for lv in result.levels
        ]
        span_names = [  # short: drawn vertically inside a narrow band
            (f"{model_label(lv.model.split(':')[0], lv.engine, show)} " if multi else "") + lv.label
            for lv in result.levels
        ]
        run_col = [result.name] if many else []
        rows.append((*run_col, "whole run", fmt_mb(mem.peak_rss_bytes), fmt_mb(mem.peak_uss_bytes)))
        for turn in _turns(result):
            if turn is None:
                samples, offset, line_name = list(mem.samples), 0.0, result.name
            else:
                split = True
                last = turn is result.engines[-1]
                samples = [x for x in mem.samples if turn.started_at_s <= x.t_s and (x.t_s < turn.ended_at_s or last)]
                offset = turn.started_at_s
                label = _turn_label(result, turn)
                line_name = f"{result.name} · {label}" if many else label
                if samples:
                    uss = [x.uss_bytes for x in samples if x.uss_bytes is not None]
                    rows.append(
                        (
                            *run_col,
                            f"{label}: load and every level",
                            fmt_mb(max(x.rss_bytes for x in samples)),
                            fmt_mb(max(uss) if uss else None),
                        )
                    )
            in_turn = [(i, lv) for i, lv in enumerate(result.levels) if turn is None or lv.engine == turn.engine]
            for i, _ in in_turn:
                in_level = [x for x in mem.samples if x.level == i]
                if in_level:
                    uss = [x.uss_bytes for x in in_level if x.uss_bytes is not None]
                    rows.append(
                        (
                            *run_col,
                            level_names[i],
                            fmt_mb(max(x.rss_bytes for x in in_level)),
                            fmt_mb(max(uss) if uss else None),
                        )
                    )
            if not samples:
                continue
            lines.append(
                charts.MemoryLine(
                    run=line_name,
                    t_s=tuple(x.t_s - offset for x in samples),
                    rss_mb=tuple(x.rss_bytes / 1e6 for x in samples),
                    uss_mb=tuple(None if x.uss_bytes is None else x.uss_bytes / 1e6 for x in samples),
                    spans=tuple(
                        (lv.started_at_s - offset, lv.started_at_s - offset + lv.duration_s, span_names[i])
                        for i, lv in in_turn
                    ),
                )
            )
    paragraphs = [
        f"{r.name}: process {r.memory.pid}"
        + (" and its children" if r.memory.include_children else "")
        + f", sampled every {r.memory.interval_s * 1000:g} ms{_uss_rate(r.memory)} ({len(r.memory.samples)} samples)."
        for r in with_memory
        if r.memory is not None
    ]
    if split:
        paragraphs.append(
            "The engines ran one after the other in one process, each unloading its models before the next loaded; "
            "each engine's line starts at its own turn. What an engine leaves behind (a library it imported, memory "
            "its allocator keeps) still counts in the turns after it."
        )
    headers = (*(["Run"] if many else []), "Period", "Peak RSS (MB)", "Peak USS (MB)")
    return Section(
        title="Memory",
        paragraphs=tuple(paragraphs),
        tables=(Table(headers=headers, rows=tuple(rows), caption="Peak memory", numeric=(1 + many, 2 + many)),),
        charts=(
            charts.memory_chart(
                "memory",
                "Memory over time",
                lines,
                caption="RSS counts shared and memory-mapped pages (the model file); USS is memory only this process "
                "tree holds. Shaded bands are the load levels"
                + ("; with several engines each line starts at that engine's turn." if split else "."),
                xlabel="time since the start of each engine's turn (s)"
                if split
                else "time since the start of the run (s)",
            ),
        ),
    )


# --- cold start ----------------------------------------------------------------------------------------------


def _cold_start_section(results: Sequence[BenchResult], runs: Sequence[Run]) -> Section | None:
    from lokal.report import charts

    entries = [(r, c) for r in results for c in r.cold_start]
    if not entries:
        return None
    many = len(results) > 1
    show_engine = engines_compared(results)
    labels = [model_label(c.model, c.engine, show_engine) for _, c in entries]
    rows = []
    for (r, c), label in zip(entries, labels, strict=True):
        ratio = c.first_ttft_ms / c.warm_ttft_ms if c.first_ttft_ms and c.warm_ttft_ms else None
        rows.append(
            (
                *([r.name] if many else []),
                label,
                fmt(c.load_s, 3),
                fmt(c.first_ttft_ms),
                fmt(c.warm_ttft_ms),
                DASH if ratio is None else f"{ratio:.1f}×",
            )
        )
    headers = (
        *(["Run"] if many else []),
        "Model (engine)" if show_engine else "Model",
        "Load (s)",
        "First TTFT (ms)",
        "Warm TTFT (ms)",
        "First / warm",
    )
    run_names = {(id(run.result), run.model, run.engine): run.name for run in runs}
    categories = [
        run_names.get((id(r), c.model, c.engine), f"{r.name}\n{label}") if many else label
        for (r, c), label in zip(entries, labels, strict=True)
    ]
    paragraphs = tuple(
        f"{label}" + (f" ({r.name})" if many else "") + ": " + ", ".join(f"{k} {v}" for k, v in shown.items()) + "."
        for (r, c), label in zip(entries, labels, strict=True)
        if (shown := {k: v for k, v in c.load_info.items() if k not in _LOAD_INFO_HIDDEN})
    )
    chart = charts.bar_chart(
        "cold-start",
        "Cold start",
        categories,
        {
            "model load (ms)": [None if c.load_s is None else 1000.0 * c.load_s for _, c in entries],
            "first request TTFT (ms)": [c.first_ttft_ms for _, c in entries],
            "warm TTFT, median (ms)": [c.warm_ttft_ms for _, c in entries],
        },
        ylabel="time (ms)",
        caption="Loading the model from nothing, then the first request's TTFT (cold caches) against warm ones.",
        alt="Cold start: model load time, first-request TTFT and warm TTFT in milliseconds per model",
    )
    return Section(
        title="Cold start",
        paragraphs=paragraphs,
        tables=(
            Table(
                headers=headers, rows=tuple(rows), caption="Cold start", numeric=tuple(range(1 + many, len(headers)))
            ),
        ),
        charts=(chart,),
    )


# --- SLO -----------------------------------------------------------------------------------------------------


def _slo_section(results: Sequence[BenchResult]) -> Section | None:
    from lokal.report import charts

    searched = [r for r in results if r.slo_search is not None]
    if not searched and all(r.config.slo is None for r in results):
        return None
    paragraphs = [f"{r.name}: SLO {slo_text(r.config.slo)}." for r in results if r.config.slo is not None]
    tables = []
    chart_list = []
    for k, r in enumerate(searched):
        search = r.slo_search
        assert search is not None
        unit = "concurrency" if search.over == "concurrency" else "rate (req/s)"
        best = DASH if search.best is None else f"{search.best:g}"
        paragraphs.append(
            f"{r.name}: the highest {search.over} at which at least {100 * search.target_fraction:g} % of requests "
            f"met the SLO: {best}" + ("" if search.best is not None else " (none met it)") + "."
        )
        tables.append(
            Table(
                headers=(unit.capitalize(), "Requests meeting the SLO", "Met"),
                rows=tuple(
                    (f"{s.value:g}", fmt_pct(s.goodput_fraction), "yes" if s.met else "no") for s in search.steps
                ),
                caption=f"SLO search ({r.name})" if len(results) > 1 else "SLO search",
                numeric=(0, 1),
            )
        )
        chart_list.append(
            charts.slo_search_chart(
                "slo-search" if len(searched) == 1 else f"slo-search-{k + 1}",
                "SLO search" + (f": {r.name}" if len(searched) > 1 else ""),
                [(s.value, s.goodput_fraction, s.met) for s in search.steps],
                target=search.target_fraction,
                xlabel=f"{unit}" if search.over == "rate" else "concurrency (requests in flight)",
                caption=f"Each step of the search; the dashed line is the {100 * search.target_fraction:g} % target.",
            )
        )
    return Section(title="SLO", paragraphs=tuple(paragraphs), tables=tuple(tables), charts=tuple(chart_list))


# --- warnings ------------------------------------------------------------------------------------------------


def derived_warnings(runs: Sequence[Run], *, sample_size: bool = True) -> list[str]:
    """What the samples themselves say a reader should know: a saturated or late client, chunk-counted
    tokens, failures, and (with `sample_size`) percentiles over few requests."""
    notes: list[str] = []
    few = False
    for run in runs:
        for lv, s in run.levels:
            where = f"{run.name}, {lv.label}"
            if lv.client is not None and lv.client.saturated:
                notes.append(
                    f"{where}: the client itself was the bottleneck (CPU {lv.client.cpu_percent:.0f} %); "
                    "these figures understate the server"
                )
            if (s.send_lag_ms.max or 0.0) > _LATE_SEND_MS:
                notes.append(
                    f"{where}: requests went out up to {s.send_lag_ms.max:.0f} ms after their intended time; "
                    "'E2EL from schedule' includes that wait"
                )
            if "chunks" in s.token_sources:
                notes.append(
                    f"{where}: output tokens counted as stream chunks (no server count); ITL and TPOT are "
                    "per chunk, which can carry several tokens"
                )
            if "tokenizer" in s.token_sources:
                notes.append(f"{where}: output tokens re-counted with a tokenizer; counts can drift from the server's")
            if s.failed:
                top = s.errors[0] if s.errors else "unknown error"
                notes.append(f"{where}: {s.failed} of {s.requests} requests failed (most frequent: {top})")
            few = few or 0 < s.completed < _FEW_FOR_P99
    if few and sample_size:
        notes.append(f"levels with fewer than {_FEW_FOR_P99} completed requests: p99 is close to the maximum there")
    return notes


def _warnings_section(results: Sequence[BenchResult], runs: Sequence[Run]) -> Section | None:
    many = len(results) > 1
    recorded = [f"{r.name}: {w}" if many else w for r in results for w in r.warnings]
    derived = derived_warnings(runs)
    errors: list[tuple[str, ...]] = []
    for run in runs:
        for lv, _ in run.levels:
            counts: dict[str, int] = {}
            for s in lv.samples:
                if not s.ok:
                    counts[s.error or "unknown error"] = counts.get(s.error or "unknown error", 0) + 1
            for message, n in sorted(counts.items(), key=lambda kv: -kv[1]):
                errors.append((*([run.name] if len(runs) > 1 else []), lv.label, str(n), message))
    if not (recorded or derived or errors):
        return None
    tables: tuple[Table, ...] = ()
    if errors:
        headers = (*(["Run"] if len(runs) > 1 else []), "Level", "Count", "Error")
        tables = (Table(headers=headers, rows=tuple(errors), caption="Failed requests", numeric=(len(headers) - 2,)),)
    return Section(title="Warnings and errors", paragraphs=tuple(recorded + derived), tables=tables)


# --- configuration -------------------------------------------------------------------------------------------


def _config_rows(r: BenchResult) -> list[tuple[str, str]]:
    p, t, c = r.platform, r.target, r.config
    cpus = ", ".join(
        x
        for x in (p.logical_cpus and f"{p.logical_cpus} logical", p.physical_cores and f"{p.physical_cores} physical")
        if x
    )
    mem = r.memory
    return [
        ("lokal version", r.lokal_version),
        ("created at", r.created_at.isoformat()),
        ("platform", f"{p.system} {p.release} ({p.machine})"),
        ("Python", p.python),
        ("CPU", p.cpu + (f" ({cpus})" if cpus else "")),
        ("memory (GB)", DASH if p.memory_bytes is None else f"{p.memory_bytes / 1e9:.1f}"),
        ("target", t.kind + (f" ({t.api} API)" if t.api else "")),
        ("URL", t.url or DASH),
        ("server version", t.server_version or DASH),
        ("engine", _engines_text(r)),
        ("models", ", ".join(dict.fromkeys(m.name for m in t.models)) or DASH),
        (
            "workload",
            c.workload
            + (f": {c.workload_description}" if c.workload_description else "")
            + (f" ({c.prompts_file})" if c.prompts_file else ""),
        ),
        ("prompt tokens", fmt(c.prompt_tokens)),
        ("max tokens", str(c.max_tokens)),
        ("requests per level", fmt(c.requests)),
        ("duration per level (s)", fmt(c.duration_s, 0)),
        ("concurrency", ", ".join(map(str, c.concurrency)) or DASH),
        ("rates (req/s)", ", ".join(f"{x:g}" for x in c.rates) or DASH),
        ("arrivals (rate levels)", c.arrival or DASH),
        ("max in flight (rate levels)", fmt(c.max_concurrency)),
        ("batch sizes", ", ".join(map(str, c.batch_sizes)) or DASH),
        ("warm-up requests", str(c.warmup)),
        ("seed", str(c.seed)),
        ("temperature", f"{c.temperature:g}"),
        ("threads", fmt(c.threads)),
        ("streaming", "yes" if c.stream else "no"),
        ("SLO", slo_text(c.slo)),
        (
            "memory sampling",
            DASH
            if mem is None
            else f"pid {mem.pid}{' + children' if mem.include_children else ''}, every {mem.interval_s * 1000:g} ms"
            + _uss_rate(mem),
        ),
    ]


def _engines_text(r: BenchResult) -> str:
    """'llamacpp, then transformers (one after the other)' for a run of several engines."""
    engines = list(
        dict.fromkeys(e for e in (*(lv.engine for lv in r.levels), *(m.engine for m in r.target.models)) if e)
    )
    if not engines:
        return DASH if r.target.kind == "in-process" else "the server's own"
    if len(r.engines) > 1:
        return ", then ".join(turn.engine for turn in r.engines) + " (one after the other, in this process)"
    return ", ".join(engines)


def _config_section(results: Sequence[BenchResult]) -> Section:
    many = len(results) > 1
    per_result = [_config_rows(r) for r in results]
    keys = [k for k, _ in per_result[0]]
    rows = tuple((key, *(dict(rows)[key] for rows in per_result)) for key in keys)
    headers = ("Setting", *([r.name for r in results] if many else ["Value"]))
    with_engine = any(m.engine for r in results for m in r.target.models)
    model_rows = tuple(
        (
            *([r.name] if many else []),
            m.name,
            *([m.engine or DASH] if with_engine else []),
            m.digest or DASH,
            fmt_mb(m.size_bytes),
            m.parameter_size or DASH,
            m.quantization or DASH,
            m.family or DASH,
        )
        for r in results
        for m in r.target.models
    )
    model_headers = (
        *(["Run"] if many else []),
        "Model",
        *(["Engine"] if with_engine else []),
        "Digest",
        "Size (MB)",
        "Parameters",
        "Quantization",
        "Family",
    )
    return Section(
        title="Run configuration and environment",
        tables=(
            Table(headers=headers, rows=rows, caption="Configuration"),
            Table(headers=model_headers, rows=model_rows, caption="Models", numeric=(2 + many + with_engine,)),
        ),
    )


# --- definitions ---------------------------------------------------------------------------------------------


def metric_definitions() -> list[str]:
    """The metric definitions (`lokal.bench.metrics.DEFINITIONS`), one "NAME: definition" per entry."""
    return [f"{name}: {text}" for name, text in DEFINITIONS]


_EXTRA_DEFINITIONS = (
    "Token counts from: usage = the server's own count (OpenAI usage, Ollama eval_count); engine = the in-process "
    "engine's counters; tokenizer = the text re-tokenised by the client; chunks = one token per streamed chunk",
    "Server-side timings: what the server or engine reported per request (Ollama prompt_eval_duration and "
    "eval_duration, llama-server timings, engine counters); server tokens/s = output tokens / eval time",
    "Percentiles: linear interpolation between samples (numpy, as vLLM); std is the population standard deviation; "
    "N is the number of values (for ITL, of gaps)",
    "Memory: RSS = resident pages including shared and memory-mapped ones (the model file); USS = pages only this "
    "process tree holds; both summed over the process and its children",
)


def _definitions_section() -> Section:
    return Section(title="Metric definitions", notes=(*metric_definitions(), *_EXTRA_DEFINITIONS))


# --- public --------------------------------------------------------------------------------------------------


def bench_sections(results: Sequence[BenchResult]) -> list[Section]:
    """Every section of a bench report, for one result or several side by side."""
    if not results:
        raise ValueError("bench_sections needs at least one result")
    runs = build_runs(results)
    sections = [
        _summary_section(results, runs),
        _latency_section(runs),
        _throughput_section(runs),
        _models_section(results, runs),
        _memory_section(results),
        _cold_start_section(results, runs),
        _slo_section(results),
        _warnings_section(results, runs),
        _config_section(results),
        _definitions_section(),
    ]
    return [s for s in sections if s is not None]


def bench_document(results: Sequence[BenchResult]) -> Document:
    if len(results) == 1:
        title = f"lokal bench: {results[0].name}"
        subtitle = f"run at {results[0].created_at.isoformat()}, lokal {results[0].lokal_version}"
    else:
        title = f"lokal bench: {len(results)} runs compared"
        subtitle = "; ".join(f"{r.name} ({r.created_at.isoformat()})" for r in results)
    return Document(title=title, subtitle=subtitle, sections=tuple(bench_sections(results)))


def _stats_json(prefix: str, st: Stats) -> dict[str, Any]:
    """vLLM-compatible keys (mean_ttft_ms, median_ttft_ms, p99_ttft_ms, ...) so existing dashboards read them."""
    unit = prefix.rsplit("_", 1)[-1]
    base = prefix.removesuffix(f"_{unit}")
    out: dict[str, Any] = {f"n_{base}": st.n}
    for key, value in (("mean", st.mean), ("std", st.std), ("median", st.p50), ("min", st.min), ("max", st.max)):
        out[f"{key}_{base}_{unit}"] = value
    for p in _P_KEYS:
        out[f"{p}_{base}_{unit}"] = getattr(st, p)
    return out


def summary_json(results: Sequence[BenchResult]) -> list[dict[str, Any]]:
    """The figures of every load level as plain JSON (what `lokal report --json` prints)."""
    out = []
    for result in results:
        levels = []
        for lv in result.levels:
            s = summarize(lv, result.config.slo)
            entry: dict[str, Any] = {
                "model": lv.model,
                "engine": lv.engine,
                "level": lv.label,
                "mode": lv.mode,
                "concurrency": lv.concurrency,
                "rate": lv.rate,
                "batch_size": lv.batch_size,
                "num_requests": s.requests,
                "completed": s.completed,
                "failed": s.failed,
                "error_rate": s.error_rate,
                "duration_s": s.duration_s,
                "request_throughput": s.request_throughput,
                "output_throughput": s.output_token_throughput,
                "total_token_throughput": s.total_token_throughput,
                "total_output_tokens": s.output_tokens,
                "total_input_tokens": s.prompt_tokens,
                "token_sources": list(s.token_sources),
                "request_goodput": s.goodput,
                "slo_attainment": s.slo_attainment,
                "errors": list(s.errors),
            }
            for name in ("ttft_ms", "itl_ms", "tpot_ms", "e2el_ms", "e2el_from_schedule_ms"):
                entry.update(_stats_json(name, getattr(s, name)))
            for name, st in (
                ("server_prompt_eval_ms", s.server_prompt_eval_ms),
                ("server_eval_ms", s.server_eval_ms),
                ("server_output_tps", s.server_tokens_per_s),
            ):
                entry.update(_stats_json(name, st))
            levels.append(entry)
        out.append(
            {
                "kind": "bench",
                "name": result.name,
                "created_at": result.created_at.isoformat(),
                "lokal_version": result.lokal_version,
                "target": result.target.model_dump(mode="json"),
                "slo": None if result.config.slo is None else result.config.slo.model_dump(mode="json"),
                "levels": levels,
                "peak_rss_bytes": result.memory.peak_rss_bytes if result.memory else None,
                "peak_uss_bytes": result.memory.peak_uss_bytes if result.memory else None,
                "cold_start": [c.model_dump(mode="json") for c in result.cold_start],
                "engines": [e.model_dump(mode="json") for e in result.engines],
                "slo_search": None if result.slo_search is None else result.slo_search.model_dump(mode="json"),
                "warnings": list(result.warnings),
            }
        )
    return out
