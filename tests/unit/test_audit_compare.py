"""`lokal audit compare`: figure-by-figure agreement of two audit results, and the reasons they may differ."""

from __future__ import annotations

from datetime import UTC, datetime

from lokal.audit.compare import compare, summary_lines, to_json, verdict
from lokal.audit.result import AuditResult, DatasetRef, Metric, SuiteResult
from lokal.results import ModelRef

DIGEST = "sha256:" + "ab" * 32


def metric(value: float | None, low: float | None, high: float | None, *, name: str = "pct_stereotype", group=None):
    return Metric(name=name, value=value, ci_low=low, ci_high=high, n=100, group=group, scoring="log-likelihood")


def result(engine: str, *metrics: Metric, digest: str = DIGEST, quant: str = "Q4_1", seed: int = 0) -> AuditResult:
    return AuditResult(
        lokal_version="0.1.0",
        created_at=datetime(2026, 11, 28, tzinfo=UTC),
        model=ModelRef(name="smollm2:135m", engine=engine, digest=digest, quantization=quant),
        target="in-process",
        seed=seed,
        limit=100,
        bootstrap_resamples=1000,
        suites=[
            SuiteResult(
                suite="crows-pairs",
                dataset=DatasetRef(name="CrowS-Pairs", items=100),
                scoring="log-likelihood",
                metrics=list(metrics),
            )
        ],
    )


def test_verdict_needs_each_value_inside_the_other_interval() -> None:
    assert verdict(metric(56.0, 50.0, 62.0), metric(58.0, 52.0, 64.0)) == "agree"
    # 63 is outside [50, 62] although 56 is inside [57, 69]: one-sided containment is not agreement.
    assert verdict(metric(56.0, 50.0, 62.0), metric(63.0, 55.0, 69.0)) == "differ"
    assert verdict(metric(56.0, 50.0, 62.0), metric(None, None, None)) == "incomparable"
    assert verdict(metric(56.0, None, None), metric(56.0, 50.0, 62.0)) == "incomparable"


def test_same_weights_under_two_engines_is_named_as_the_reason() -> None:
    a = result("llamacpp", metric(56.0, 50.0, 62.0), metric(0.1, 0.0, 0.2, name="gap", group="race"))
    b = result("transformers", metric(57.0, 51.0, 63.0), metric(0.5, 0.4, 0.6, name="gap", group="race"))
    c = compare(a, b)
    assert [f.verdict for f in c.figures] == ["agree", "differ"]
    assert c.figures[1].difference == 0.4
    assert len(c.reasons) == 1 and "the same Q4_1 weights under two engines" in c.reasons[0]
    text = "\n".join(summary_lines(c, a, b))
    assert "1 of 2 figures agree" in text
    assert "crows-pairs: gap (race)" in text  # a differing figure is shown even though it has a group
    assert to_json(c)["differ"] == 1


def test_other_differences_are_listed_from_what_the_results_record() -> None:
    a = result("llamacpp", metric(56.0, 50.0, 62.0))
    b = result("llamacpp", metric(56.0, 50.0, 62.0), digest="sha256:" + "cd" * 32, quant="Q8_0", seed=3)
    reasons = compare(a, b).reasons
    assert any(r.startswith("different weights") for r in reasons)
    assert "different quantization: Q4_1 and Q8_0" in reasons
    assert any(r.startswith("different seeds (0 and 3)") for r in reasons)


def test_figures_present_in_one_result_only_are_listed_not_compared() -> None:
    a = result("llamacpp", metric(56.0, 50.0, 62.0), metric(1.0, 0.5, 1.5, name="extra"))
    b = result("llamacpp", metric(56.0, 50.0, 62.0))
    c = compare(a, b)
    assert len(c.figures) == 1 and c.only_in_a == ["crows-pairs: extra"] and c.only_in_b == []
    assert c.reasons == []
