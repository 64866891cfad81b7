"""Compare two audit results figure by figure: do they agree within their confidence intervals, and if not, why?

The question users ask: "is my model's bias the same under transformers as under llama.cpp?" (or: at Q4 as at
F16, or served as in-process). Two figures agree here when each one's value lies inside the other's 95 %
bootstrap interval — a deliberately plain rule that readers can check by eye; it is not a significance test of
the difference (the raw outputs beside each result allow a paired test when that matters).

When figures disagree, the explanation is read off what the results record about the two models: different
weights (digests), different quantization, the same weights under two engines (llama.cpp multiplies with the
quantized weights and 8-bit activations, transformers with dequantized float32 weights), or different
scoring, seeds or samples. Nothing is assumed that the results do not say.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from lokal.audit.result import AuditResult, Metric

Verdict = Literal["agree", "differ", "incomparable"]


@dataclasses.dataclass(frozen=True)
class FigureComparison:
    suite: str
    name: str
    group: str | None
    a: Metric
    b: Metric
    verdict: Verdict

    @property
    def difference(self) -> float | None:
        if self.a.value is None or self.b.value is None:
            return None
        return self.b.value - self.a.value


@dataclasses.dataclass(frozen=True)
class Comparison:
    figures: list[FigureComparison]
    only_in_a: list[str]  # "suite: name (group)" of figures the other result lacks
    only_in_b: list[str]
    reasons: list[str]  # why results may differ, from what they record

    @property
    def agreeing(self) -> int:
        return sum(f.verdict == "agree" for f in self.figures)

    @property
    def differing(self) -> list[FigureComparison]:
        return [f for f in self.figures if f.verdict == "differ"]


def inside(value: float, low: float | None, high: float | None) -> bool:
    return low is not None and high is not None and low <= value <= high


def verdict(a: Metric, b: Metric) -> Verdict:
    """'agree' when each value lies in the other's interval; 'incomparable' without values or intervals."""
    if a.value is None or b.value is None or a.ci_low is None or b.ci_low is None:
        return "incomparable"
    if inside(a.value, b.ci_low, b.ci_high) and inside(b.value, a.ci_low, a.ci_high):
        return "agree"
    return "differ"


def _key(suite: str, m: Metric) -> tuple[str, str, str | None]:
    return suite, m.name, m.group


def _label(key: tuple[str, str, str | None]) -> str:
    suite, name, group = key
    return f"{suite}: {name}" + (f" ({group})" if group else "")


def compare(a: AuditResult, b: AuditResult) -> Comparison:
    left = {_key(s.suite, m): m for s in a.suites for m in s.metrics}
    right = {_key(s.suite, m): m for s in b.suites for m in s.metrics}
    figures = [
        FigureComparison(key[0], key[1], key[2], left[key], right[key], verdict(left[key], right[key]))
        for key in left
        if key in right
    ]
    return Comparison(
        figures=figures,
        only_in_a=[_label(k) for k in left if k not in right],
        only_in_b=[_label(k) for k in right if k not in left],
        reasons=reasons(a, b),
    )


def reasons(a: AuditResult, b: AuditResult) -> list[str]:
    """What differs between the two measurements, in words, from what the results record."""
    out: list[str] = []
    ma, mb = a.model, b.model
    same_weights = ma.digest is not None and ma.digest == mb.digest
    if ma.digest and mb.digest and not same_weights:
        out.append(f"different weights: {ma.name} ({_short(ma.digest)}) and {mb.name} ({_short(mb.digest)})")
    if ma.quantization != mb.quantization and ma.quantization and mb.quantization:
        out.append(f"different quantization: {ma.quantization} and {mb.quantization}")
    if ma.engine != mb.engine:
        engines = f"{ma.engine or a.target} and {mb.engine or b.target}"
        if {ma.engine, mb.engine} == {"llamacpp", "transformers"} and same_weights:
            quant = f" {ma.quantization}" if ma.quantization else ""
            out.append(
                f"the same{quant} weights under two engines ({engines}): llama.cpp multiplies with the quantized "
                "weights and 8-bit-quantized activations, transformers with the weights dequantized to float32, so "
                "log-likelihoods differ slightly and items near a tie can flip"
            )
        else:
            out.append(f"different engines or targets: {engines}")
    if a.seed != b.seed:
        out.append(f"different seeds ({a.seed} and {b.seed}): other samples and bootstrap resamples")
    if a.limit != b.limit:
        out.append(f"different --limit ({a.limit or 'all'} and {b.limit or 'all'}): different items were scored")
    scoring_a = {s.suite: s.scoring for s in a.suites}
    for s in b.suites:
        if s.suite in scoring_a and scoring_a[s.suite] != s.scoring:
            out.append(f"{s.suite} was scored by {scoring_a[s.suite]} in one and {s.scoring} in the other")
    return out


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def to_json(c: Comparison) -> dict[str, Any]:
    return {
        "agree": c.agreeing,
        "differ": len(c.differing),
        "incomparable": sum(f.verdict == "incomparable" for f in c.figures),
        "reasons": c.reasons,
        "only_in_a": c.only_in_a,
        "only_in_b": c.only_in_b,
        "figures": [
            {
                "suite": f.suite,
                "name": f.name,
                "group": f.group,
                "verdict": f.verdict,
                "a": {"value": f.a.value, "ci": [f.a.ci_low, f.a.ci_high], "n": f.a.n},
                "b": {"value": f.b.value, "ci": [f.b.ci_low, f.b.ci_high], "n": f.b.n},
                "difference": f.difference,
            }
            for f in c.figures
        ],
    }


def summary_lines(c: Comparison, a: AuditResult, b: AuditResult, *, all_figures: bool = False) -> list[str]:
    """The overall figures side by side (every figure with `all_figures`), then the verdict and reasons."""

    def who(r: AuditResult) -> str:
        return f"{r.model.name} ({r.model.engine or r.target})"

    lines = [f"A: {who(a)}   B: {who(b)}", ""]
    shown = [f for f in c.figures if all_figures or f.group is None or f.verdict == "differ"]
    width = max((len(_label((f.suite, f.name, f.group))) for f in shown), default=10)
    for f in shown:
        mark = {"agree": "agree", "differ": "DIFFER", "incomparable": "n/a"}[f.verdict]
        lines.append(f"  {_label((f.suite, f.name, f.group)):<{width}}  A {_fig(f.a)}  B {_fig(f.b)}  {mark}")
    total = len(c.figures)
    lines += ["", f"{c.agreeing} of {total} figures agree within their 95 % intervals; {len(c.differing)} differ."]
    if c.only_in_a or c.only_in_b:
        lines.append(f"{len(c.only_in_a)} figure(s) only in A, {len(c.only_in_b)} only in B (not compared).")
    if c.reasons:
        lines.append("The two measurements differ in:" if c.differing else "Noted differences between the runs:")
        lines += [f"  - {r}" for r in c.reasons]
    elif c.differing:
        lines.append("The results record no difference in weights, engine, scoring, seed or sample.")
    return lines


def _fig(m: Metric) -> str:
    if m.value is None:
        return "-"
    ci = f" [{m.ci_low:.3g}, {m.ci_high:.3g}]" if m.ci_low is not None and m.ci_high is not None else ""
    return f"{m.value:.3g}{ci}"
