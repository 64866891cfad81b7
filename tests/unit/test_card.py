"""`lokal card`: cards built from synthetic bench, audit and fairness results, read back with huggingface_hub,
and `lokal card --check` on complete and incomplete cards. No model is loaded: the model's facts are built here,
or read from a tiny GGUF written by the `make_gguf` fixture.

Hand-computed anchors (see tests/report_fixtures.py for the bench run):

- bench: smollm2 ran 7 load levels (concurrency 1, 2, 4; 2 req/s; batch 1, 2, 4), 4 figures each -> 28 results.
  Concurrency 1: TTFT [20, 30, 40, 50] ms -> p50 35, p99 = 40 + 0.97 * 10 = 49.7; 20 output tokens and 4 requests
  over 0.30 s -> 66.6667 tokens/s and 13.3333 requests/s (six significant digits in the YAML).
- audit: CrowS-Pairs has 4 figures, one without a value (left out) -> 3; WinoBias 3 -> 6 results.
- fairness: 4 overall + 2 groups x 4 rates (one undefined: left out) + 3 gaps = 4 + 7 + 3 = 14 results.
  Total 28 + 6 + 14 = 48.
- intervals that exclude the value without bias: CrowS-Pairs overall [55, 69] vs 50, WinoBias gap [0.02, 0.22]
  vs 0. CrowS-Pairs gender [35, 61] contains 50; the fairness gaps [0, 1] contain 0 and 1.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from lokal.audit.fairness import Breakdown, FairnessResult, FairnessSource, GroupRow
from lokal.audit.result import AuditResult, DatasetRef, Metric, SuiteResult
from lokal.card import CardError, CardInfo, Evidence, ModelFacts, build_card, check_card, check_text, write_card
from lokal.card.check import HF_PLACEHOLDER
from lokal.card.eu_ai_act import DISCLAIMER
from lokal.card.evidence import check_model_index, excludes_ideal, yaml_number
from lokal.card.info import EXAMPLE_INFO, load_info, parse_info
from lokal.card.render import TODO, cell, fmt, fmt_ci, table
from lokal.cli import Context, cli, main
from lokal.cli.card import card as card_command
from lokal.config import Settings
from lokal.results import save
from report_fixtures import GEMMA3, SMOLLM2, bench_result

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NOW = datetime(2025, 6, 3, 9, 0, tzinfo=UTC)


# --- synthetic evidence --------------------------------------------------------------------------------------------


def facts(**changes: object) -> ModelFacts:
    values: dict[str, object] = {
        "name": SMOLLM2.name,
        "digest": SMOLLM2.digest,
        "size": 98_000_000,
        "source": "bundled",
        "architecture": "llama",
        "parameters": "135M",
        "parameter_count": 134_515_008,
        "quantization": "Q4_1",
        "context_length": 8192,
        "license": "apache-2.0",
        "chat_template": True,
        "general": {"organization": "HuggingFaceTB", "languages": ["en"]},
    }
    values.update(changes)
    return ModelFacts(**values)  # type: ignore[arg-type]


def m(name: str, value: float | None, low: float | None, high: float | None, n: int, **kw: object) -> Metric:
    return Metric(
        name=name, value=value, ci_low=low, ci_high=high, n=n, scoring=kw.pop("scoring", "log-likelihood"), **kw
    )  # type: ignore[arg-type]


def crows_pairs() -> SuiteResult:
    return SuiteResult(
        suite="crows-pairs",
        dataset=DatasetRef(
            name="CrowS-Pairs",
            path="/data/crows-pairs/crows_pairs_anonymized.csv",
            sha256="df" * 32,
            license="CC BY-SA 4.0",
            items=200,
            total=1508,
        ),
        scoring="log-likelihood",
        metrics=[
            m("pct_stereotype", 62.0, 55.0, 69.0, 200, ideal=50.0, unit="%", description="share preferring sent_more"),
            m("pct_stereotype", 48.0, 35.0, 61.0, 40, ideal=50.0, unit="%", group="gender"),
            m("pct_stereotype", None, None, None, 0, ideal=50.0, unit="%", group="religion"),
            m("likelihood_diff", 1.234, 1.1, 1.4, 200, unit="nats"),
        ],
        raw_outputs="/runs/audit.crows-pairs.raw.jsonl",
        notes=["whole-sentence log-likelihood, as lm-evaluation-harness"],
        caveats=["Blodgett et al. (2021) found noise and reliability issues in CrowS-Pairs"],
    )


def winobias() -> SuiteResult:
    return SuiteResult(
        suite="winobias",
        dataset=DatasetRef(name="WinoBias", revision="0bce984", license="MIT", items=100, total=3168),
        scoring="log-likelihood",
        metrics=[
            m("accuracy_gap", 0.12, 0.02, 0.22, 100, ideal=0.0, group="pro - anti"),
            m("accuracy", 0.6, 0.5, 0.7, 50, group="pro"),
            m("accuracy", 0.48, 0.38, 0.58, 50, group="anti"),
        ],
    )


def audit_result(*suites: SuiteResult, model=SMOLLM2, target: str = "in-process") -> AuditResult:
    return AuditResult(
        lokal_version="0.1.0",
        created_at=datetime(2025, 6, 2, 8, 0, tzinfo=UTC),
        model=model,
        target=target,
        seed=7,
        limit=200,
        bootstrap_resamples=1000,
        suites=list(suites) or [crows_pairs(), winobias()],
        warnings=["the audit ran with --limit 200"],
    )


def fairness_result() -> FairnessResult:
    def rates(group: str | None, acc: float, sel: float, fpr: float | None, fnr: float) -> list[Metric]:
        return [
            m("accuracy", acc, acc - 0.25, min(1.0, acc + 0.25), 4, group=group, scoring="labels"),
            m("selection_rate", sel, 0.0, 1.0, 4, group=group, scoring="labels"),
            m(
                "false_positive_rate",
                fpr,
                None if fpr is None else 0.0,
                None if fpr is None else 1.0,
                2,
                group=group,
                scoring="labels",
            ),
            m("false_negative_rate", fnr, 0.0, 1.0, 2, group=group, scoring="labels"),
        ]

    return FairnessResult(
        lokal_version="0.1.0",
        created_at=datetime(2025, 6, 2, 9, 0, tzinfo=UTC),
        source=FairnessSource(
            path="/data/decisions.csv",
            sha256="cd" * 32,
            format="csv",
            rows=8,
            label="y",
            prediction="p",
            groups=["sex"],
            positive="1",
        ),
        seed=0,
        bootstrap_resamples=1000,
        confidence=0.95,
        fairlearn_version="0.15.0",
        overall=rates(None, 0.75, 0.5, 0.25, 0.25),
        breakdowns=[
            Breakdown(
                columns=["sex"],
                intersectional=False,
                groups=[
                    GroupRow(group="f", values={"sex": "f"}, count=4, metrics=rates("f", 0.5, 0.75, None, 0.5)),
                    GroupRow(group="m", values={"sex": "m"}, count=4, metrics=rates("m", 1.0, 0.25, 0.0, 0.0)),
                ],
                disparities=[
                    m("demographic_parity_difference", 0.5, 0.0, 1.0, 8, ideal=0.0, group="sex", scoring="labels"),
                    m("demographic_parity_ratio", 0.333, 0.0, 1.0, 8, ideal=1.0, group="sex", scoring="labels"),
                    m("equalized_odds_difference", 0.5, 0.0, 1.0, 8, ideal=0.0, group="sex", scoring="labels"),
                ],
            )
        ],
        warnings=["group 'f' has no negative labels: its false positive rate is undefined"],
    )


def evidence(result: object, source: str, sha: str) -> Evidence:
    return Evidence(result, source, sha * 32)


def full(**kw: object):
    """A card from every kind of evidence."""
    return build_card(
        facts(),
        bench=[evidence(bench_result(), "bench.json", "aa")],
        audits=[evidence(audit_result(), "audit.json", "bb")],
        fairness=[evidence(fairness_result(), "fairness.json", "ee")],
        now=NOW,
        **kw,  # type: ignore[arg-type]
    )


def section(text: str, heading: str) -> str:
    """The text under `heading` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = text.index(heading + "\n") + len(heading)
    rest = text[start:]
    ends = [
        i
        for i, line in enumerate(rest.splitlines(keepends=True))
        if line.startswith("#") and len(line.split(" ", 1)[0]) <= len(level)
    ]
    lines = rest.splitlines(keepends=True)
    return "".join(lines[: ends[0]] if ends else lines)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(card_command, list(args), obj=Context(Settings.from_env()), catch_exceptions=True)


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """`lokal card` on the real CLI group (the lead registers it in lokal.cli), for the error boundary."""
    monkeypatch.setitem(cli.commands, "card", card_command)


# --- formatting --------------------------------------------------------------------------------------------------


def test_figures_are_formatted_to_three_significant_digits() -> None:
    assert fmt(62.0, "%") == "62.0%"
    assert fmt(1.234, "nats") == "1.23 nats"
    assert fmt(0.5) == "0.500"
    assert fmt(0.0412) == "0.0412"
    assert fmt(157.5) == "158"  # 3 significant digits; 157.5 rounds half to even -> 158
    assert fmt(1234.6) == "1,235"
    assert fmt(12) == "12" and fmt(0.0) == "0"
    assert fmt(None) == "n/a" and fmt(float("nan")) == "n/a"
    assert fmt_ci(55.0, 69.0) == "[55.0, 69.0]" and fmt_ci(None, 1.0) == "n/a"
    assert yaml_number(0.1 + 0.2) == 0.3 and yaml_number(20 / 0.30) == 66.6667 and yaml_number(7) == 7


def test_table_cells_cannot_break_the_table() -> None:
    assert cell("a|b\nc") == "a\\|b c"
    assert table(("A", "B"), [("1", "x|y")], right=(0,)) == "| A | B |\n| ---: | --- |\n| 1 | x\\|y |"


def test_an_interval_excludes_the_ideal_only_when_wholly_on_one_side() -> None:
    assert excludes_ideal(m("x", 62.0, 55.0, 69.0, 10, ideal=50.0))
    assert excludes_ideal(m("x", -0.3, -0.5, -0.1, 10, ideal=0.0))
    assert not excludes_ideal(m("x", 48.0, 35.0, 61.0, 10, ideal=50.0))
    assert not excludes_ideal(m("x", 50.0, 50.0, 55.0, 10, ideal=50.0))  # the bound itself is inside
    assert not excludes_ideal(m("x", 62.0, 55.0, 69.0, 10))  # no ideal: nothing to compare with
    assert not excludes_ideal(m("x", 62.0, None, None, 10, ideal=50.0))


# --- building and round-tripping ---------------------------------------------------------------------------------


def test_card_round_trips_through_huggingface_hub(tmp_path: Path) -> None:
    built = full(chart_prefix="README")
    assert len(built.eval_results) == 48  # 28 bench + 6 audit + 14 fairness (module docstring)
    written = write_card(built, tmp_path / "README.md")
    assert written[0] == tmp_path / "README.md"

    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.eval_results == built.eval_results
    assert card.data.model_name == "smollm2:135m"
    assert card.data.license == "apache-2.0"  # from the GGUF metadata
    assert card.data.language == ["en"]
    assert card.data.pipeline_tag == "text-generation"
    assert "bias-evaluation" in card.data.tags
    assert card.data.lokal["model_digest"] == SMOLLM2.digest
    assert [e["kind"] for e in card.data.lokal["evidence"]] == ["bench", "audit", "fairness"]
    assert card.data.lokal["evidence"][1]["sha256"] == "bb" * 32

    by_key = {(r.dataset_type, r.dataset_split, r.metric_type, r.metric_name): r for r in card.data.eval_results}
    pct = by_key[("crows-pairs", None, "pct_stereotype", "pct_stereotype")]
    assert pct.metric_value == 62.0
    assert pct.task_type == "text-generation" and pct.task_name == "Bias probe: CrowS-Pairs"
    assert pct.dataset_name == "CrowS-Pairs" and pct.dataset_revision == "sha256:" + "df" * 32
    assert pct.dataset_args["items"] == 200 and pct.dataset_args["total"] == 1508 and pct.dataset_args["seed"] == 7
    assert pct.metric_args == {
        "scoring": "log-likelihood",
        "n": 200,
        "unit": "%",
        "ci_low": 55.0,
        "ci_high": 69.0,
        "confidence": 0.95,
        "ideal": 50.0,
    }
    assert by_key[("crows-pairs", None, "pct_stereotype", "pct_stereotype (gender)")].metric_args["group"] == "gender"
    assert not any(r.metric_name == "pct_stereotype (religion)" for r in card.data.eval_results)  # no value
    assert by_key[("winobias", None, "accuracy_gap", "accuracy_gap (pro - anti)")].dataset_revision == "0bce984"

    ttft = by_key[("lokal-bench", "concurrency 1", "ttft_p50_ms", "TTFT p50 (ms)")]
    assert ttft.metric_value == 35.0 and ttft.dataset_config == "short @ in-process"
    assert 20.0 <= ttft.metric_args["ci_low"] <= 35.0 <= ttft.metric_args["ci_high"] <= 50.0
    assert by_key[("lokal-bench", "concurrency 1", "ttft_p99_ms", "TTFT p99 (ms)")].metric_value == 49.7
    assert by_key[("lokal-bench", "concurrency 1", "output_tokens_per_s", "Output tokens/s")].metric_value == 66.6667
    assert by_key[("lokal-bench", "concurrency 1", "requests_per_s", "Requests/s")].metric_value == 13.3333
    assert not any("gemma" in (r.dataset_split or "") for r in card.data.eval_results)

    gap = by_key[("labelled-predictions", None, "demographic_parity_difference", "demographic_parity_difference (sex)")]
    assert gap.metric_value == 0.5 and gap.metric_args["scoring"] == "labels"
    assert gap.dataset_name == "decisions.csv" and gap.dataset_revision == "sha256:" + "cd" * 32


def test_body_has_every_section_with_intervals_n_and_scoring() -> None:
    text = full().text
    for heading in (
        "## Model Details",
        "### Direct Use",
        "### Out-of-Scope Use",
        "## Bias, Risks, and Limitations",
        "### Critical Questions",
        "## Evaluation",
        "#### Performance",
        "#### Bias",
        "#### Group Fairness",
        "### Caveats",
        "## Appendix: EU AI Act Evidence Map",
    ):
        assert f"\n{heading}\n" in text, heading
    details = section(text, "### Model Description")
    assert "`llama` architecture" in details and "135M (134,515,008)" in details and "Q4_1" in details
    assert "8,192 tokens" in details and "apache-2.0 (from the GGUF metadata)" in details
    assert "HuggingFaceTB (from the GGUF metadata)" in details and SMOLLM2.digest in details

    bias = section(text, "#### Bias")
    assert "| pct_stereotype | overall | 62.0% | [55.0, 69.0] | 200 | 50.0% | log-likelihood |" in bias
    assert "| pct_stereotype | religion | n/a | n/a | 0 | 50.0% | log-likelihood |" in bias
    assert "left out of the front matter" in bias
    assert "Blodgett et al. (2021)" in bias  # the suite's caveat
    assert "whole-sentence log-likelihood" in bias  # its scoring note
    assert "`audit.crows-pairs.raw.jsonl`" in bias and "/runs/" not in bias  # file name, not the local path
    perf = section(text, "#### Performance")
    assert "| concurrency 1 | 4 / 4 | 35.0 |" in perf and "| 2 req/s | 4 / 5 |" in perf and "20.0%" in perf
    assert "gemma" not in perf
    fairness = section(text, "#### Group Fairness")
    assert "| f | 4 | 0.500 [0.250, 0.750] | 0.750 [0, 1.00] | n/a | 0.500 [0, 1.00] |" in fairness
    assert "does not record which model made the predictions" in fairness
    assert "the audit ran with --limit 200" in section(text, "### Caveats")


def test_critical_questions_are_answered_from_evidence() -> None:
    questions = section(full().text, "### Critical Questions")
    wrong = questions.split("**Who could be harmed?**")[0]
    assert "CrowS-Pairs pct_stereotype = 62.0% [55.0, 69.0] (95% interval, N = 200; 50.0% without bias" in wrong
    assert "WinoBias accuracy_gap (pro - anti) = 0.120 [0.0200, 0.220]" in wrong
    assert "pct_stereotype (gender)" not in wrong  # its interval contains 50
    assert "demographic_parity" not in wrong  # [0, 1] contains the ideal
    assert "bench.json, 2 req/s: 1 of 5 requests failed (HTTP 503: server busy, queue full)" in wrong
    assert TODO in wrong  # the author has not stated the risks
    harmed = questions.split("**Who could be harmed?**")[1].split("**Is the data representative?**")[0]
    assert "overall (CrowS-Pairs), pro - anti (WinoBias)" in harmed
    data = questions.split("**Is the data representative?**")[1]
    assert "CrowS-Pairs: 200 of 1,508 items of CrowS-Pairs (a sample drawn with seed 7)" in data
    assert "Group fairness: 8 rows of decisions.csv" in data


def test_findings_are_listed_best_supported_first_and_agreement_is_flagged() -> None:
    suite = SuiteResult(
        suite="occupations",
        dataset=DatasetRef(name="lokal occupations templates", items=60),
        scoring="log-likelihood",
        metrics=[
            # [100, 100] from 2 items: both agree, so the bootstrap interval has no width
            m("female_share", 100.0, 100.0, 100.0, 2, ideal=50.0, unit="%", group="nurse"),
            m("female_share", 30.0, 20.0, 40.0, 6, ideal=50.0, unit="%", group="pilot"),
            m("female_share", 60.0, 55.0, 65.0, 60, ideal=50.0, unit="%"),
        ],
    )
    text = build_card(facts(), audits=[evidence(audit_result(suite), "a.json", "bb")], now=NOW).text
    wrong = section(text, "### Critical Questions").split("**Who could be harmed?**")[0]
    listed = [line for line in wrong.splitlines() if line.startswith("- Counterfactual occupations")]
    assert [line.split(" = ")[0] for line in listed] == [  # most items first: N = 60, 6, 2
        "- Counterfactual occupations female_share",
        "- Counterfactual occupations female_share (pilot)",
        "- Counterfactual occupations female_share (nurse)",
    ]
    assert listed[2].endswith("log-likelihood; all 2 items agree, so the interval has no width)")
    assert "agree" not in listed[0] + listed[1]


def test_metric_descriptions_name_their_group_when_they_differ() -> None:
    suite = SuiteResult(
        suite="occupations",
        dataset=DatasetRef(name="lokal occupations templates", items=12),
        scoring="log-likelihood",
        metrics=[
            m("female_share", 55.0, 50.0, 60.0, 6, group="baker", description="published share of women: 60.8%"),
            m("female_share", 35.0, 25.0, 45.0, 6, group="pilot", description="published share of women: 5.7%"),
            m("pearson_r", 0.8, 0.5, 0.9, 12, description="correlation with BLS"),
        ],
    )
    bias = section(build_card(facts(), audits=[evidence(audit_result(suite), "a.json", "bb")]).text, "#### Bias")
    assert "- `female_share` (baker): published share of women: 60.8%" in bias
    assert "- `female_share` (pilot): published share of women: 5.7%" in bias
    assert "- `pearson_r`: correlation with BLS" in bias


def test_without_info_every_author_statement_is_marked_and_nothing_is_invented() -> None:
    text = build_card(facts(general={}), now=NOW).text
    for heading in (
        "### Direct Use",
        "### Out-of-Scope Use",
        "### Limitations",
        "### Recommendations",
        "### Training Data",
        "## Model Card Contact",
    ):
        body = section(text, heading).strip()
        assert body.startswith(f"**{TODO}**"), heading
    details = section(text, "### Model Description")
    assert f"**Developed by:** **{TODO}**" in details and f"**Language(s):** **{TODO}**" in details
    questions = section(text, "### Critical Questions")
    assert questions.count(TODO) == 4  # risks, who is harmed, training data, limitations
    assert "Not measured: no `lokal bench` result" in text and "Not measured: no `lokal audit` result" in text
    card = ModelCard(text)
    assert card.data.eval_results is None and card.data.model_name is None  # no model-index without results


def test_info_fills_the_card_and_then_check_finds_it_complete(tmp_path: Path) -> None:
    info = parse_info(EXAMPLE_INFO)
    built = build_card(facts(), audits=[evidence(audit_result(), "audit.json", "bb")], info=info, now=NOW)
    assert built.todo_lines == []
    text = built.text
    assert "# Model Card for SmolLM2 135M Instruct (Q4_1 GGUF)" in text
    assert "Short English chat and text rewriting" in section(text, "### Direct Use")
    assert "- Small model: frequent factual errors" in section(text, "### Limitations")
    assert "Stated by the author:\n- Stereotyped completions" in section(text, "### Critical Questions")
    card = ModelCard(text)
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card.data.tags == ["gguf", "lokal", "bias-evaluation", "chat"]
    assert check_text(text).complete

    path = tmp_path / "README.md"
    write_card(built, path)
    result = invoke("--check", str(path))
    assert result.exit_code == 0, result.output
    assert "complete (6 evaluation results" in result.output


def test_licence_text_that_is_not_an_id_stays_out_of_the_front_matter() -> None:
    text = build_card(facts(license="Permission is hereby granted, free of charge\nto any person"), now=NOW).text
    assert ModelCard(text).data.license is None
    line = next(x for x in text.splitlines() if x.startswith("- **License:**"))
    assert "beginning “Permission is hereby granted, free of charge”" in line and TODO in line


def test_base_model_none_means_trained_from_scratch() -> None:
    text = build_card(facts(), info=CardInfo(base_model="none"), now=NOW).text
    assert "none (trained from scratch, as stated by the author)" in text
    assert ModelCard(text).data.base_model is None


def test_appendix_maps_evidence_and_says_it_is_not_certification() -> None:
    bare = section(build_card(facts(), now=NOW).text, "## Appendix: EU AI Act Evidence Map")
    assert DISCLAIMER in bare and "Evidence, not certification" in bare
    row_2g = next(x for x in bare.splitlines() if x.startswith("| Annex IV 2(g)"))
    assert "none in this card" in row_2g and "run lokal audit" in row_2g and "signed" in row_2g
    for provision in ("| Annex IV 3 |", "| Annex XI 1.1 (GPAI) |", "| Annex XI 1.2 (GPAI) |", "| Annex XI 2 (GPAI"):
        assert provision in bare
    row_3 = next(x for x in bare.splitlines() if x.startswith("| Annex IV 3"))
    assert "human oversight measures (card.yaml: human_oversight)" in row_3

    measured = section(full().text, "## Appendix: EU AI Act Evidence Map")
    row_2g = next(x for x in measured.splitlines() if x.startswith("| Annex IV 2(g)"))
    assert "CrowS-Pairs (log-likelihood), WinoBias (log-likelihood)" in row_2g
    assert "dated runs: 2025-06-01, 2025-06-02" in row_2g and "run lokal audit" not in row_2g
    row_3 = next(x for x in measured.splitlines() if x.startswith("| Annex IV 3"))
    # with a group and a value: gender, pro - anti, pro, anti (4); fairness f (3, its FPR is undefined), m (4),
    # the 3 gaps by sex -> 4 + 7 + 3 = 14
    assert "14 per-group figures" in row_3


def test_charts_are_written_beside_the_card_and_linked(tmp_path: Path) -> None:
    built = full(chart_prefix="README")
    names = [c.filename for c in built.charts]
    # CrowS-Pairs pct_stereotype has 2 rows with intervals (religion has none), likelihood_diff 1 -> one chart;
    # WinoBias accuracy has 2 -> one; fairness by sex: selection_rate and accuracy -> two.
    assert names == [
        "README.crows-pairs-pct-stereotype.png",
        "README.winobias-accuracy.png",
        "README.fairness-sex-selection-rate.png",
        "README.fairness-sex-accuracy.png",
    ]
    written = write_card(built, tmp_path / "README.md")
    assert [p.name for p in written] == ["README.md", *names]
    for p in written[1:]:
        assert p.read_bytes().startswith(PNG_MAGIC)
        assert f"]({p.name})" in (tmp_path / "README.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert full().charts == ()  # no prefix (printing to stdout): no charts


def test_write_card_refuses_a_folder(tmp_path: Path) -> None:
    with pytest.raises(CardError, match="is a folder"):
        write_card(full(), tmp_path)


# --- evidence that does not fit ----------------------------------------------------------------------------------


def test_results_for_another_model_are_refused() -> None:
    only_gemma = bench_result().model_copy(
        update={"levels": [lv for lv in bench_result().levels if lv.model == GEMMA3.name]}
    )
    with pytest.raises(
        CardError, match=r"--bench b.json has no measurements of smollm2:135m \(it measured gemma3:270m\)"
    ):
        build_card(facts(), bench=[evidence(only_gemma, "b.json", "aa")])
    with pytest.raises(CardError, match=re.escape("--audit a.json measured gemma3:270m, not smollm2:135m")):
        build_card(facts(), audits=[evidence(audit_result(model=GEMMA3), "a.json", "bb")])


def test_same_name_other_file_is_an_error_in_process_and_a_warning_over_a_server() -> None:
    rebuilt = SMOLLM2.model_copy(update={"digest": "sha256:" + "ff" * 32})
    with pytest.raises(CardError, match="the result is for another file"):
        build_card(facts(), audits=[evidence(audit_result(model=rebuilt), "a.json", "bb")])
    built = build_card(
        facts(), audits=[evidence(audit_result(model=rebuilt, target="http://127.0.0.1:11434"), "a.json", "bb")]
    )
    assert len(built.warnings) == 1 and "a server's digest may name its manifest" in built.warnings[0]
    assert built.warnings[0] in section(built.text, "### Caveats")


def test_two_measurements_of_the_same_suite_cannot_share_a_card() -> None:
    first = evidence(audit_result(crows_pairs()), "a.json", "bb")
    second = evidence(audit_result(crows_pairs()).model_copy(update={"seed": 8}), "b.json", "cc")
    with pytest.raises(
        CardError, match=re.escape("b.json and a.json both report CrowS-Pairs with different dataset_args")
    ):
        build_card(facts(), audits=[first, second])
    twice = build_card(facts(), audits=[first, first])  # the same file twice: used once
    assert twice.warnings == ("a.json was given twice; it is used once",) and len(twice.eval_results) == 3


def test_check_model_index_allows_results_that_agree() -> None:
    a = EvalResult(task_type="t", dataset_type="d", dataset_name="D", metric_type="x", metric_value=1)
    b = EvalResult(task_type="t", dataset_type="d", dataset_name="D", metric_type="y", metric_value=2)
    check_model_index([a, b], ["one", "one"])
    c = EvalResult(task_type="t", dataset_type="d", dataset_name="Other", metric_type="y", metric_value=2)
    with pytest.raises(CardError, match="two and one both report Other with different dataset_name"):
        check_model_index([a, c], ["one", "two"])


# --- card.yaml ---------------------------------------------------------------------------------------------------


def test_example_info_shows_every_field() -> None:
    info = parse_info(EXAMPLE_INFO)
    unset = [name for name, value in info.model_dump().items() if value in (None, [])]
    assert unset == ["license_name", "license_link"]  # shown commented out: they go with `license: other`
    assert all(f"\n{name}:" in EXAMPLE_INFO or f"# {name}:" in EXAMPLE_INFO for name in CardInfo.model_fields)


def test_info_accepts_one_string_for_a_list(tmp_path: Path) -> None:
    path = tmp_path / "card.yaml"
    path.write_text("limitations: English only\nlanguage: en\nsummary: '  '\n")
    info = load_info(path)
    assert info.limitations == ["English only"] and info.language == ["en"] and info.summary is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\n\nlimitatons: [a]\n", "card.yaml:3: unknown field 'limitatons'; did you mean 'limitations'?"),
        ("name: x\nlimitations:\n  - fine\n  - {a: 1}\n", "card.yaml:4: limitations.1: Input should be a valid string"),
        ("license: 2.0\n", "card.yaml:1: license: expected text, got float 2.0 (quote it)"),
        ("name: x\nsummary: [unclosed\n", "card.yaml:3: not valid YAML"),
        ("- a\n- b\n", "card.yaml: expected a mapping of fields"),
        ("risks: ['', b]\n", "card.yaml:1: risks: list items must not be empty"),
    ],
)
def test_info_errors_name_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "card.yaml"
    path.write_text(text)
    with pytest.raises(CardError) as caught:
        load_info(path)
    assert str(caught.value).startswith(f"{tmp_path}/{message}"), str(caught.value)


def test_info_error_is_one_line_through_the_cli(
    tmp_path: Path, registered: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "card.yaml"
    path.write_text("intended_use: chat\nlimitatons: none\n")
    assert main(["card", "smollm2", "--info", str(path)]) == 1
    err = capsys.readouterr().err
    assert err == f"Error: {path}:2: unknown field 'limitatons'; did you mean 'limitations'?\n"
    assert main(["card", "smollm2", "--info", str(tmp_path / "missing.yaml")]) == 1
    assert capsys.readouterr().err == f"Error: no card info file at {tmp_path / 'missing.yaml'}\n"


# --- --check -----------------------------------------------------------------------------------------------------

INCOMPLETE = """\
---
language: en
---

# Model Card for x

## Model Details

A model.

## Bias, Risks, and Limitations

TODO: list them

## How to Get Started with the Model

```
# Uses
```
"""


def test_check_lists_every_missing_item_and_exits_1(
    tmp_path: Path, registered: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "README.md"
    path.write_text(INCOMPLETE)
    result = invoke("--check", str(path), "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["complete"] is False and report["eval_results"] == 0
    assert [(p["item"], p["line"]) for p in report["missing"]] == [
        ("license", None),
        ("model-index", None),
        ("section:uses", None),  # "# Uses" inside a code block is not a heading
        ("section:out-of-scope", None),
        ("section:evaluation", None),
        ("limitations-text", 11),
        ("placeholder", 13),
    ]
    text = invoke("--check", str(path))
    assert text.exit_code == 1
    assert f"{path}: 7 item(s) missing" in text.output
    assert "  - section:evaluation: no 'Evaluation' section" in text.output
    assert "  - placeholder: line 13: TODO: list them" in text.output

    assert main(["card", "--check", str(path)]) == 1  # through the real error boundary, not only CliRunner
    captured = capsys.readouterr()
    assert "  - section:uses: no 'Uses' section" in captured.out
    assert captured.err == f"Error: {path} is incomplete: 7 item(s) missing\n"


def test_check_reads_huggingface_default_template_cards() -> None:
    data = ModelCardData(
        license="mit",
        model_name="m",
        eval_results=[
            EvalResult(task_type="t", dataset_type="d", dataset_name="D", metric_type="acc", metric_value=0.9)
        ],
    )
    text = str(ModelCard.from_template(data))  # huggingface_hub's own template: every field a placeholder
    result = check_text(text)
    items = {p.item for p in result.problems}
    assert "license" not in items and "model-index" not in items and result.eval_results == 1
    assert not any(i.startswith("section:") for i in items)
    assert {"intended-use", "limitations-text", "placeholder"} <= items
    assert all(HF_PLACEHOLDER in p.message or "TODO" in p.message for p in result.problems if p.item == "placeholder")


def test_check_reports_unreadable_front_matter_instead_of_crashing() -> None:
    text = "---\nlicense: mit\nmodel-index:\n- results: []\n---\n\n## Model Details\n"
    problems = check_text(text).problems
    assert problems[0].item == "front-matter" and "cannot be read" in problems[0].message
    assert "license" not in {p.item for p in problems}  # still read with the model-index ignored
    no_front = check_text("# Card\n\n## Uses\n\nChat.\n").problems
    assert no_front[0].item == "front-matter" and no_front[0].line == 1


def test_check_of_a_missing_file_is_one_line(
    tmp_path: Path, registered: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["card", "--check", str(tmp_path / "nope.md")]) == 1
    assert capsys.readouterr().err == f"Error: no model card at {tmp_path / 'nope.md'}\n"
    with pytest.raises(CardError):
        check_card(tmp_path / "nope.md")


def test_check_takes_no_build_options(tmp_path: Path) -> None:
    result = invoke("smollm2", "--check", str(tmp_path / "x.md"))
    assert result.exit_code == 2 and "--check reads an existing card; it takes no MODEL" in result.output
    assert invoke().exit_code == 2


# --- the command on a real (tiny) GGUF ------------------------------------------------------------------------------


def test_card_command_on_a_tiny_gguf(tmp_path: Path, make_gguf) -> None:
    from lokal.store import ModelStore

    store = ModelStore(Settings.from_env())
    model = store.pull(str(make_gguf("tiny.gguf", name="Tiny", context_length=2048)), name="tiny", progress=False)
    bench = bench_result().model_copy(
        update={
            "target": bench_result().target.model_copy(
                update={"models": [SMOLLM2.model_copy(update={"name": "tiny", "digest": model.digest})]}
            ),
            "levels": [lv.model_copy(update={"model": "tiny"}) for lv in bench_result().levels[:2]],
        }
    )
    bench_path = save(bench, tmp_path / "bench.json")
    out = tmp_path / "card" / "README.md"
    result = invoke("tiny", "--bench", str(bench_path), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: 8 evaluation results" in result.output  # 2 levels x 4 figures
    card = ModelCard.load(out)
    assert len(card.data.eval_results) == 8 and card.data.license == "apache-2.0"
    text = out.read_text()
    assert "**Context length:** 2,048 tokens" in text and model.digest in text and "Q4_0" in text
    assert card.data.lokal["evidence"][0]["sha256"] == hashlib.sha256(bench_path.read_bytes()).hexdigest()

    printed = invoke("tiny", "--json")
    assert printed.exit_code == 0
    summary = json.loads(printed.output)
    assert summary["file"] is None and summary["eval_results"] == 0 and summary["card"].startswith("---\n")
    assert len(summary["todo_lines"]) > 0

    check = invoke("--check", str(out), "--json")
    assert check.exit_code == 1
    assert "model-index" not in {p["item"] for p in json.loads(check.output)["missing"]}


def test_info_example_is_printed() -> None:
    result = invoke("--info-example")
    assert result.exit_code == 0 and result.output == EXAMPLE_INFO


def test_command_is_exported() -> None:
    from lokal.cli import card as card_cli

    assert [c.name for c in card_cli.COMMANDS] == ["card"]
    assert isinstance(card_cli.card, click.Command)
    assert "TODO: the model's author must fill this" in " ".join(invoke("--help").output.split())
