"""The view a bench report and the console summary are drawn from: the results, their runs (every level
summarised once) and the warnings, computed once from them.

`view_of(results)` builds it; every function that draws a bench report takes the results or a view already
built, so `lokal bench` summarises its samples and works out its warnings once for the console summary and
the HTML and Markdown reports together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lokal.bench.report.common import Run, build_runs
from lokal.bench.result import BenchResult

#: Below this many values p99 is little more than the maximum: said so in the warnings.
FEW_FOR_P99 = 100
#: A client that sent a request later than this after its intended time gets a warning (coordinated omission).
LATE_SEND_MS = 10.0


@dataclass(frozen=True)
class Warnings:
    """What a reader should know before trusting the figures."""

    #: What the results recorded while they ran, each prefixed with its result's name when there are several.
    recorded: tuple[str, ...]
    #: What the samples themselves say: a saturated or late client, chunk-counted tokens, failures.
    derived: tuple[str, ...]
    #: That some levels' p99 rests on few requests (the report says so; the console summary leaves it out).
    sample_size: str | None = None

    @property
    def in_report(self) -> tuple[str, ...]:
        return (*self.recorded, *self.derived, *([self.sample_size] if self.sample_size else []))

    @property
    def in_console(self) -> tuple[str, ...]:
        return (*self.recorded, *self.derived)


@dataclass(frozen=True)
class BenchView:
    results: tuple[BenchResult, ...]
    runs: tuple[Run, ...]
    warnings: Warnings


def view_of(results: Sequence[BenchResult] | BenchView) -> BenchView:
    """The view of `results` (a view is returned as it is)."""
    if isinstance(results, BenchView):
        return results
    runs = tuple(build_runs(results))
    many = len(results) > 1
    recorded = tuple(f"{r.name}: {w}" if many else w for r in results for w in r.warnings)
    derived, few = _derived(runs)
    note = f"levels with fewer than {FEW_FOR_P99} completed requests: p99 is close to the maximum there"
    return BenchView(tuple(results), runs, Warnings(recorded, tuple(derived), note if few else None))


def _derived(runs: Sequence[Run]) -> tuple[list[str], bool]:
    """What the samples say a reader should know, and whether any level has fewer than FEW_FOR_P99 completed
    requests."""
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
            if (s.send_lag_ms.max or 0.0) > LATE_SEND_MS:
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
            few = few or 0 < s.completed < FEW_FOR_P99
    return notes, few
