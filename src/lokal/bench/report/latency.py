"""The Latency section: TTFT, ITL, TPOT and E2EL per load level (client-side, then the server's own timings),
with a percentile chart per metric."""

from __future__ import annotations

from collections.abc import Sequence

from lokal.bench.metrics import LevelSummary, Stats, stats, tpot_ms
from lokal.bench.report.common import P_KEYS, Run, fmt, level_labels
from lokal.bench.result import LoadLevel
from lokal.report.document import Section, Table


def _schedule_differs(level: LoadLevel, summary: LevelSummary) -> bool:
    """E2EL from the intended send time is worth its own row only where the client ever sent late."""
    return level.mode == "rate" or (summary.send_lag_ms.max or 0.0) > 1e-3


def _decode_tok_s(level: LoadLevel) -> Stats:
    """Client-side decode speed per request, 1000 / TPOT: the figure beside the server's own tokens/s."""
    return stats(1000.0 / v for s in level.samples if s.ok and (v := tpot_ms(s)) and v > 0)


def _stat_cells(st: Stats, digits: int = 1) -> tuple[str, ...]:
    return (
        str(st.n),
        fmt(st.mean, digits),
        fmt(st.std, digits),
        fmt(st.min, digits),
        *(fmt(getattr(st, k), digits) for k in P_KEYS),
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
        ("drafted tokens accepted (%)", s.draft_acceptance_pct),
    ]
    rows += [(name, st) for name, st in server if st.n > 0]
    return rows


def latency_section(runs: Sequence[Run]) -> Section | None:
    from lokal.bench.report import charts

    if not level_labels(runs):
        return None
    many = len(runs) > 1
    headers = ("Metric", *(["Run"] if many else []), "N", "mean", "std", "min", *P_KEYS, "max")
    first_numeric = 2 if many else 1
    subsections = []
    for label in level_labels(runs):
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
    labels = level_labels(runs)
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
                        p: tuple(getattr(by_label[lb], p) if lb in by_label else None for lb in labels) for p in P_KEYS
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
