"""The card's Evaluation and Technical Specifications sections: testing data, performance, bias and group-fairness
tables (every figure with its interval, N and scoring mode), caveats, and the hardware the figures came from.

Tables show what the saved results hold, formatted; nothing is recomputed except the performance summaries, which
come from `lokal.bench.metrics.summarize` exactly as `lokal report` computes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lokal.audit.fairness import FairnessResult
from lokal.audit.result import AuditResult, Metric, SuiteResult
from lokal.bench.metrics import DEFINITIONS
from lokal.card.evidence import P99_MIN_REQUESTS, PerfRun, suite_title
from lokal.card.render import bullets, fmt, fmt_ci, paragraphs, table

SCORING_MODES = (
    "Scoring modes: **log-likelihood** = summed log-probabilities of the scored tokens, computed in-process or "
    "from a server's prompt log-probabilities; **generation** = text generated at temperature 0, then parsed or "
    "scored offline; **labels** = predictions given in a file, no model involved. Intervals are percentile "
    "bootstrap intervals over the items (rows for group fairness)."
)
NOT_COMPUTED = "n/a: the figure could not be computed on these items; it is left out of the front matter."


def testing_data(audits: Sequence[AuditResult], fairness: Sequence[FairnessResult], perf: Sequence[PerfRun]) -> str:
    parts = []
    rows = []
    for a in audits:
        for s in a.suites:
            ds = s.dataset
            file = Path(ds.path).name if ds.path else "—"
            digest = f"`{ds.sha256[:16]}…`" if ds.sha256 else "—"
            items = f"{ds.items:,} of {ds.total:,}" if ds.total is not None else f"{ds.items:,}"
            rows.append(
                (suite_title(s), ds.name, file, digest, ds.revision or "—", items, ds.license or "—", s.scoring)
            )
    for f in fairness:
        src = f.source
        rows.append(
            (
                "Group fairness",
                "labelled predictions",
                Path(src.path).name,
                f"`{src.sha256[:16]}…`",
                "—",
                f"{src.rows:,}",
                "—",
                "labels",
            )
        )
    if rows:
        parts.append(
            table(
                ("Probe", "Dataset", "File", "sha256", "Revision", "Items scored", "Licence", "Scoring"),
                rows,
                right=(5,),
            )
        )
        parts.append(SCORING_MODES)
    for p in perf:
        c = p.result.config
        parts.append(
            f"Performance: `lokal bench` workload `{c.workload}` against {p.target}: "
            f"{c.prompt_tokens or 'varied'} prompt tokens, up to {c.max_tokens} output tokens, "
            f"temperature {c.temperature:g}, seed {c.seed} ({p.evidence.source})."
        )
    return "\n\n".join(parts) or "No evaluation data: no `--bench`, `--audit` or `--fairness` result was given."


# --- performance -------------------------------------------------------------------------------------------------


def performance(perf: Sequence[PerfRun]) -> str:
    if not perf:
        return (
            "Not measured: no `lokal bench` result was given "
            "(`lokal bench MODEL --output bench.json`, then `lokal card MODEL --bench bench.json`)."
        )
    parts = []
    for p in perf:
        r, pf = p.result, p.result.platform
        memory = f", {pf.memory_bytes / 1e9:.1f} GB memory" if pf.memory_bytes else ""
        cpus = f", {pf.logical_cpus} logical CPUs" if pf.logical_cpus else ""
        threads = f", {r.config.threads} threads" if r.config.threads else ""
        head = (
            f"**{p.evidence.source}**: {p.target}, measured {r.created_at:%Y-%m-%d %H:%M} UTC on "
            f"{pf.cpu}{cpus}{memory} ({pf.system} {pf.machine}){threads}; lokal {r.lokal_version}."
        )
        rows = []
        small = False
        for pl in p.levels:
            s = pl.summary
            small = small or s.completed < P99_MIN_REQUESTS
            rows.append(
                (
                    pl.level.label,
                    f"{s.completed:,} / {s.requests:,}",
                    fmt(s.ttft_ms.p50),
                    fmt_ci(*pl.ttft_ci),
                    fmt(s.ttft_ms.p99),
                    fmt(s.tpot_ms.p50),
                    fmt(s.e2el_ms.p50),
                    fmt(s.output_token_throughput),
                    fmt(s.request_throughput),
                    f"{s.error_rate:.1%}",
                )
            )
        body = table(
            (
                "Load level",
                "Completed / requests",
                "TTFT p50 (ms)",
                "95% CI",
                "TTFT p99 (ms)",
                "TPOT p50 (ms)",
                "E2EL p50 (ms)",
                "Output tokens/s",
                "Requests/s",
                "Errors",
            ),
            rows,
            right=tuple(range(1, 10)),
        )
        notes = []
        if small:
            notes.append(
                f"Levels with fewer than {P99_MIN_REQUESTS} requests: their p99 is one of the largest values, "
                "not a stable tail estimate, so it has no interval."
            )
        notes += [f"Warning from the benchmark: {w}" for w in r.warnings]
        parts.append(paragraphs(head, body, bullets(notes) if notes else None))
    wanted = ("TTFT", "TPOT", "E2EL", "request / output-token throughput")
    definitions = [f"{name}: {text}" for name, text in DEFINITIONS if name in wanted]
    parts.append(
        "Definitions (those of `lokal report`); the TTFT interval is a percentile bootstrap interval of the median "
        "over requests:\n" + bullets(definitions)
    )
    return "\n\n".join(parts)


# --- bias and fairness -------------------------------------------------------------------------------------------


def _ci_header(metrics: Sequence[Metric]) -> str:
    levels = {m.confidence for m in metrics}
    return f"{levels.pop():.0%} CI" if len(levels) == 1 else "CI"


def _ci_cell(m: Metric, header: str) -> str:
    return fmt_ci(m.ci_low, m.ci_high) + ("" if header != "CI" else f" ({m.confidence:.0%})")


def figure_table(metrics: Sequence[Metric], *, group_header: str = "Group") -> str:
    """Metric, group, value, interval, N, value without bias, scoring: one row per figure."""
    header = _ci_header(metrics)
    rows = [
        (
            m.name,
            m.group or "overall",
            fmt(m.value, m.unit),
            _ci_cell(m, header),
            f"{m.n:,}",
            fmt(m.ideal, m.unit) if m.ideal is not None else "—",
            m.scoring,
        )
        for m in metrics
    ]
    return table(("Metric", group_header, "Value", header, "N", "Without bias", "Scoring"), rows, right=(2, 4, 5))


def _images(charts: Sequence[tuple[str, str]]) -> str:
    return "\n\n".join(f"![{alt}]({filename})" for alt, filename in charts)


def _described(metrics: Sequence[Metric]) -> str | None:
    """Each figure's own description; where one name has several (per-group notes), each names its group."""
    texts: dict[str, dict[str, None]] = {}
    for m in metrics:
        if m.description:
            texts.setdefault(m.name, {})[m.description] = None
    items = []
    for name, descriptions in texts.items():
        if len(descriptions) == 1:
            items.append(f"`{name}`: {next(iter(descriptions))}")
            continue
        seen: set[tuple[str, str]] = set()
        for m in metrics:
            key = (m.group or "overall", m.description)
            if m.name == name and m.description and key not in seen:
                seen.add(key)
                items.append(f"`{name}` ({key[0]}): {m.description}")
    return ("Metrics:\n" + bullets(items)) if items else None


def suite_block(audit: AuditResult, s: SuiteResult, charts: Sequence[tuple[str, str]]) -> str:
    ds = s.dataset
    of = f" of {ds.total:,}" if ds.total is not None else ""
    raw = f" Raw model outputs: `{Path(s.raw_outputs).name}`." if s.raw_outputs else ""
    head = (
        f"##### {suite_title(s)}\n\n"
        f"Scored by **{s.scoring}**; {ds.items:,}{of} items of {ds.name}; seed {audit.seed}; "
        f"{audit.bootstrap_resamples:,} bootstrap resamples; run {audit.created_at:%Y-%m-%d} against "
        f"{audit.target}.{raw}"
    )
    return paragraphs(
        head,
        figure_table(s.metrics) if s.metrics else "No figures: the suite produced no metrics.",
        NOT_COMPUTED if any(m.value is None for m in s.metrics) else None,
        _images(charts),
        _described(s.metrics),
        ("How it was scored:\n" + bullets(s.notes)) if s.notes else None,
        ("Caveats:\n" + bullets(s.caveats)) if s.caveats else None,
    )


def bias(audits: Sequence[AuditResult], charts: dict[int, list[tuple[str, str]]]) -> str:
    """One block per suite; `charts` maps id(suite) to (alt text, file name) of its charts."""
    if not audits:
        return (
            "Not measured: no `lokal audit` result was given "
            "(`lokal audit MODEL --output audit.json`, then `lokal card MODEL --audit audit.json`)."
        )
    return "\n\n".join(suite_block(a, s, charts.get(id(s), [])) for a in audits for s in a.suites)


def _value_ci(m: Metric) -> str:
    """`0.500 [0.250, 0.750]`; the value alone when it has no interval; n/a when it has no value."""
    if m.value is None:
        return "n/a"
    ci = fmt_ci(m.ci_low, m.ci_high)
    return fmt(m.value, m.unit) + ("" if ci == "n/a" else f" {ci}")


def _rates_table(result: FairnessResult, columns: int) -> str:
    b = result.breakdowns[columns]
    names = [m.name for m in (b.groups[0].metrics if b.groups else [])]
    rows = [(g.group, f"{g.count:,}", *(_value_ci(m) for m in g.metrics)) for g in b.groups]
    return table(("Group", "Rows", *names), rows, right=tuple(range(1, 2 + len(names))))


def fairness_block(result: FairnessResult, charts: Sequence[tuple[str, str]]) -> str:
    src = result.source
    head = (
        f"##### {Path(src.path).name}\n\n"
        f"{src.rows:,} rows; label column `{src.label}`, prediction column `{src.prediction}`, positive outcome "
        f"`{src.positive}`; groups by {', '.join(f'`{g}`' for g in src.groups)}; figures by fairlearn "
        f"{result.fairlearn_version}; {result.confidence:.0%} intervals from {result.bootstrap_resamples:,} bootstrap "
        f"resamples of rows (seed {result.seed}); run {result.created_at:%Y-%m-%d}. The file does not record which "
        "model made the predictions: the model's author must confirm they are this model's."
    )
    parts = [head, "Overall:\n\n" + figure_table(result.overall)]
    for i, b in enumerate(result.breakdowns):
        by = " × ".join(b.columns)
        parts.append(
            f"By {by}{' (intersection)' if b.intersectional else ''}, each rate with its {result.confidence:.0%} "
            f"interval:\n\n{_rates_table(result, i)}"
        )
        if b.disparities:
            parts.append(f"Gaps by {by}:\n\n" + figure_table(b.disparities, group_header="Groups"))
    metrics = list(result.overall) + [m for b in result.breakdowns for m in b.disparities]
    parts += [
        NOT_COMPUTED if any(m.value is None for b in result.breakdowns for g in b.groups for m in g.metrics) else "",
        _images(charts),
        _described(metrics) or "",
        ("Caveats:\n" + bullets(result.warnings)) if result.warnings else "",
    ]
    return paragraphs(*parts)


def fairness(results: Sequence[FairnessResult], charts: dict[int, list[tuple[str, str]]]) -> str:
    if not results:
        return (
            "Not measured: no `lokal audit fairness` result was given (`lokal audit fairness FILE --label COL "
            "--prediction COL --group COL --output fairness.json`, then `--fairness fairness.json`)."
        )
    return "\n\n".join(fairness_block(r, charts.get(id(r), [])) for r in results)


# --- caveats and hardware ----------------------------------------------------------------------------------------


def caveats(audits: Sequence[AuditResult], warnings: Sequence[str]) -> str:
    items = [w for a in audits for w in a.warnings] + list(warnings)
    if audits:
        items.append(
            "The probes measure how the model's likelihoods or generations change when group terms change "
            "(counterfactual sensitivity) on fixed templates and datasets; they do not measure harm in a deployed "
            "system, and a figure close to its ideal value does not show the absence of bias."
        )
    return bullets(items) if items else "None recorded."


def compute(audits: Sequence[AuditResult], perf: Sequence[PerfRun]) -> str:
    rows = []
    for p in perf:
        pf = p.result.platform
        rows.append(
            (
                p.evidence.source,
                p.target,
                pf.cpu,
                str(pf.logical_cpus or "—"),
                f"{pf.memory_bytes / 1e9:.1f} GB" if pf.memory_bytes else "—",
                f"{pf.system} {pf.release} {pf.machine}",
                p.result.target.server_version or "—",
            )
        )
    parts = []
    if rows:
        parts.append(table(("Result", "Target", "CPU", "Logical CPUs", "Memory", "System", "Engine / server"), rows))
    parts += [
        f"Audit run {a.created_at:%Y-%m-%d %H:%M} UTC against {a.target}, lokal {a.lokal_version}." for a in audits
    ]
    return "\n\n".join(parts) or "No measurement was given, so no hardware is recorded."
