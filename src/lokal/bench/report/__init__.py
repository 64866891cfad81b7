"""Bench results -> report sections: tables, charts and notes, built once and drawn by every renderer of
`lokal.report` (console text, Markdown, HTML). One module per section, plus what they share:

view.py        `view_of(results)`: the results, their runs (every level summarised once) and the warnings
common.py      runs (`Run`, `build_runs`) and number formatting, used by every section
summary.py     Summary: throughput and errors per load level
latency.py     Latency: TTFT, ITL, TPOT, E2EL per load level, with percentile charts
throughput.py  Throughput: against concurrency, batch size and offered rate
models.py      Models (and engines): the runs compared at one load level, latency against model size
memory.py      Memory: peaks per run, engine turn and level, memory over time
cold_start.py  Cold start: load time, first against warm TTFT
slo.py         SLO: the objectives and the steps of an SLO search
warnings.py    Warnings and errors
config.py      Run configuration and environment
definitions.py Metric definitions (`lokal.bench.metrics.DEFINITIONS` and the tables' other terms)
document.py    `bench_sections`, `bench_document`, `summary_json`
console.py     `console_summary`: what `lokal bench` prints when it finishes
charts.py      bench's own chart types, drawn with `lokal.report.charts`

Every function that draws takes the results or a `BenchView` already built. Nothing is imported here, and
matplotlib loads only when charts are built: the console summary does not need it.
"""
