"""The Warnings and errors section: what the results recorded, what the samples say (`BenchView.warnings`,
computed once), and the failed requests by message."""

from __future__ import annotations

from lokal.bench.report.view import BenchView
from lokal.report.document import Section, Table


def warnings_section(view: BenchView) -> Section | None:
    runs = view.runs
    paragraphs = view.warnings.in_report
    errors: list[tuple[str, ...]] = []
    for run in runs:
        for lv, _ in run.levels:
            counts: dict[str, int] = {}
            for s in lv.samples:
                if not s.ok:
                    counts[s.error or "unknown error"] = counts.get(s.error or "unknown error", 0) + 1
            for message, n in sorted(counts.items(), key=lambda kv: -kv[1]):
                errors.append((*([run.name] if len(runs) > 1 else []), lv.label, str(n), message))
    if not (paragraphs or errors):
        return None
    tables: tuple[Table, ...] = ()
    if errors:
        headers = (*(["Run"] if len(runs) > 1 else []), "Level", "Count", "Error")
        tables = (Table(headers=headers, rows=tuple(errors), caption="Failed requests", numeric=(len(headers) - 2,)),)
    return Section(title="Warnings and errors", paragraphs=paragraphs, tables=tables)
