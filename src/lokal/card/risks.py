"""The critical questions every card must face: what could go wrong, who could be harmed, is the data
representative, are the limitations stated. Each is answered from evidence where there is some (a bias interval
that excludes the unbiased value, failed requests under load, how much of a dataset was scored) and from the
author's `card.yaml`; what neither answers is marked for the author, never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lokal.audit.fairness import MISSING, FairnessResult
from lokal.audit.result import AuditResult, Metric
from lokal.card.evidence import PerfRun, excludes_ideal, labelled_figures, metric_label, suite_title
from lokal.card.info import CardInfo
from lokal.card.render import bullets, fmt, fmt_ci, todo

#: Figures listed by name before "and N more".
LIST_AT_MOST = 8


def _cap(items: list[str]) -> list[str]:
    if len(items) <= LIST_AT_MOST:
        return items
    return [*items[:LIST_AT_MOST], f"and {len(items) - LIST_AT_MOST} more (see Evaluation)"]


def describe(title: str, m: Metric) -> str:
    """One figure in words: `CrowS-Pairs pct_stereotype (gender) = 62.0% [55.0, 69.0] (95% interval, ...)`.
    An interval of no width says only that every item agreed; with few items that is weak evidence."""
    agree = f"; all {m.n:,} items agree, so the interval has no width" if m.ci_low == m.ci_high else ""
    return (
        f"{title} {metric_label(m)} = {fmt(m.value, m.unit)} {fmt_ci(m.ci_low, m.ci_high)} "
        f"({m.confidence:.0%} interval, N = {m.n:,}; {fmt(m.ideal, m.unit)} without bias; {m.scoring}{agree})"
    )


def _what_could_go_wrong(
    info: CardInfo, flagged: list[tuple[str, Metric]], measured: bool, perf: Sequence[PerfRun]
) -> str:
    parts: list[str] = []
    if info.risks:
        parts.append("Stated by the author:\n" + bullets(info.risks))
    if flagged:
        parts.append(
            "Measured: these intervals exclude the value a model without the bias would get:\n"
            + bullets(_cap([describe(t, m) for t, m in flagged]))
        )
    elif measured:
        parts.append(
            "Measured: no figure with a stated value-without-bias has an interval that excludes it. That is not "
            "evidence of no bias: small samples give wide intervals, and the probes cover few groups."
        )
    failures = [
        f"{p.evidence.source}, {pl.level.label}: {pl.summary.failed} of {pl.summary.requests} requests failed"
        + (f" ({pl.summary.errors[0]})" if pl.summary.errors else "")
        for p in perf
        for pl in p.levels
        if pl.summary.failed
    ]
    if failures:
        parts.append("Measured under load:\n" + bullets(_cap(failures)))
    if not info.risks:
        parts.append(todo("what could go wrong when the model is used as intended (card.yaml: risks)"))
    return "\n\n".join(parts)


def _who_could_be_harmed(info: CardInfo, flagged: list[tuple[str, Metric]]) -> str:
    parts: list[str] = []
    if info.affected_groups:
        parts.append("Stated by the author:\n" + bullets(info.affected_groups))
    if flagged:
        groups = list(dict.fromkeys(f"{m.group or 'overall'} ({title})" for title, m in flagged))
        parts.append("The measured differences concern: " + ", ".join(_cap(groups)) + ".")
    if not info.affected_groups:
        parts.append(todo("who could be harmed, and how (card.yaml: affected_groups)"))
    return "\n\n".join(parts)


def _representative(info: CardInfo, audits: Sequence[AuditResult], fairness: Sequence[FairnessResult]) -> str:
    parts: list[str] = []
    if info.training_data:
        parts.append(f"Training data, as the author describes it: {info.training_data}")
    else:
        parts.append(todo("what the model was trained on and how representative it is (card.yaml: training_data)"))
    samples = []
    for a in audits:
        for s in a.suites:
            ds = s.dataset
            of = f" of {ds.total:,}" if ds.total is not None else ""
            sampled = f" (a sample drawn with seed {a.seed})" if ds.total is not None and ds.items < ds.total else ""
            samples.append(f"{suite_title(s)}: {ds.items:,}{of} items of {ds.name}{sampled}")
    for f in fairness:
        missing = sorted({c for b in f.breakdowns for g in b.groups for c, v in g.values.items() if v == MISSING})
        samples.append(
            f"Group fairness: {f.source.rows:,} rows of {Path(f.source.path).name}"
            + (f"; rows without a value in {', '.join(missing)} form the group {MISSING!r}" if missing else "")
        )
    if samples:
        parts.append(
            "Evaluation data: each probe covers only the groups, language and templates of its dataset:\n"
            + bullets(samples)
        )
    else:
        parts.append("Evaluation data: none (no `--audit` or `--fairness` result given).")
    return "\n\n".join(parts)


def _limitations_stated(info: CardInfo, audits: Sequence[AuditResult], fairness: Sequence[FairnessResult]) -> str:
    text = (
        f"Yes: {len(info.limitations)} limitation(s) stated by the author (Limitations, above)."
        if info.limitations
        else "No. " + todo("state the model's limitations (card.yaml: limitations).")
    )
    caveats = (
        sum(len(s.caveats) for a in audits for s in a.suites)
        + sum(len(a.warnings) for a in audits)
        + sum(len(f.warnings) for f in fairness)
    )
    if caveats:
        text += f" The results carry {caveats} caveat(s) on their own figures (Evaluation)."
    return text


def critical_questions(
    info: CardInfo, audits: Sequence[AuditResult], fairness: Sequence[FairnessResult], perf: Sequence[PerfRun]
) -> str:
    figures = labelled_figures(audits, fairness)
    # The best-supported findings first (the list is cut after LIST_AT_MOST): most items, then narrowest interval.
    flagged = sorted(
        ((t, m) for t, m in figures if excludes_ideal(m)),
        key=lambda tm: (-tm[1].n, (tm[1].ci_high or 0) - (tm[1].ci_low or 0)),
    )
    measured = any(m.value is not None for _, m in figures)
    return "\n\n".join(
        [
            "**What could go wrong?**\n\n" + _what_could_go_wrong(info, flagged, measured, perf),
            "**Who could be harmed?**\n\n" + _who_could_be_harmed(info, flagged),
            "**Is the data representative?**\n\n" + _representative(info, audits, fairness),
            "**Are the limitations stated?**\n\n" + _limitations_stated(info, audits, fairness),
        ]
    )
