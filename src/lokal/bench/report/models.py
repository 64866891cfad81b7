"""The Models (and engines) section: the runs of a result compared at the lightest load level they all ran,
and latency against model size."""

from __future__ import annotations

from collections.abc import Sequence

from lokal.bench.metrics import LevelSummary
from lokal.bench.report.common import DASH, Run, engines_compared, fmt, fmt_mb, level_order
from lokal.bench.result import BenchResult, LoadLevel, ModelRef
from lokal.report.document import Chart, Section, Table


def _reference_level(runs_of_result: Sequence[Run]) -> dict[int, tuple[LoadLevel, LevelSummary]]:
    """The load level to compare the runs (models, engines) of one result at, by run index: the lightest
    setting every run had (sync or concurrency 1 when there), else each run's lightest."""
    if not runs_of_result:
        return {}
    common = set.intersection(*({lv.label for lv, _ in run.levels} for run in runs_of_result))
    picked = {}
    for run in runs_of_result:
        candidates = [p for p in run.levels if p[0].label in common] or list(run.levels)
        picked[run.index] = min(candidates, key=lambda p: level_order(p[0]))
    return picked


def _model_ref(result: BenchResult, model: str, engine: str | None = None) -> ModelRef | None:
    """The model as the result recorded it, for `engine` when the result names one per engine."""
    named = [m for m in result.target.models if m.name == model]
    return next((m for m in named if m.engine == engine), named[0] if named else None)


def models_section(results: Sequence[BenchResult], runs: Sequence[Run]) -> Section | None:
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
