"""The Memory section: peak RSS and USS per run, engine turn and load level, and memory over time."""

from __future__ import annotations

from collections.abc import Sequence

from lokal.bench.report.common import fmt_mb, model_label, uss_rate
from lokal.bench.result import BenchResult, EngineRun
from lokal.report.document import Section, Table


def _turns(result: BenchResult) -> list[EngineRun | None]:
    """The engines' turns of a run of several engines, or [None]: the timeline is then one piece."""
    return list(result.engines) if len(result.engines) > 1 else [None]


def _turn_label(result: BenchResult, turn: EngineRun) -> str:
    """'smollm2 (transformers)' for a turn that measured one model, else the engine's name."""
    models = list(dict.fromkeys(lv.model for lv in result.levels if lv.engine == turn.engine))
    return model_label(models[0], turn.engine, True) if len(models) == 1 else turn.engine


def memory_section(results: Sequence[BenchResult]) -> Section | None:
    """One line per result, or per engine where a result ran several one after the other: each engine's line
    then starts at its own turn, so the engines' memory is drawn side by side like two runs."""
    from lokal.bench.report import charts

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
        + f", sampled every {r.memory.interval_s * 1000:g} ms{uss_rate(r.memory)} ({len(r.memory.samples)} samples)."
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
