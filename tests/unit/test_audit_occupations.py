"""The occupations probe on a scripted Scorer: pronoun log-probabilities in, hand-computed shares and
correlations out; the raw log, the refusal over a backend without log-probabilities, and the chart."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lokal.audit import occupations, occupations_data
from lokal.audit.result import AuditResult, ModelRef, load
from lokal.audit.suite import AuditError, LikelihoodUnsupported, RawLog, ScorerBase, TokenScore
from lokal.report.charts import render_png
from lokal.results import save

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PREFIX_LOGPROB = -1.5  # every prefix token, whatever it is: it must cancel out of every figure


class PronounScorer(ScorerBase):
    """Tokenizes on spaces (" nurse", " said"...), after a BOS with no log-probability; every prefix token gets
    PREFIX_LOGPROB and the final pronoun log(p) from `probs[(occupation, template)] = (P(he), P(she))`."""

    where = "scripted"
    supports_likelihood = True

    def __init__(self, probs: dict[tuple[str, int], tuple[float, float]], templates: tuple[str, ...]) -> None:
        self.probs = probs
        self.templates = templates
        self.texts: list[str] = []

    def _which(self, text: str) -> tuple[str, int]:
        for (occupation, index), _ in self.probs.items():
            if text.startswith(self.templates[index].format(occupation=occupation) + " "):
                return occupation, index
        raise AssertionError(f"unexpected text {text!r}")

    def score(self, text: str) -> list[TokenScore]:
        self.texts.append(text)
        p_he, p_she = self.probs[self._which(text)]
        words = re.findall(r"\s?\S+", text)
        tokens = [TokenScore(1, "<s>", None)]
        tokens += [TokenScore(100 + i, w, PREFIX_LOGPROB) for i, w in enumerate(words[:-1])]
        last = words[-1]
        tokens.append(TokenScore(7 if last == " he" else 8, last, math.log(p_he if last == " he" else p_she)))
        return tokens

    def generate(self, prompt: str, *, max_tokens: int, seed: int, chat: bool = False) -> str:
        raise AssertionError("the occupations suite must not generate")


# Four occupations, two templates. Shares P(she)/(P(he)+P(she)) per template:
#   plumber: 0.1/(0.3+0.1) = 25%, 25%                  -> 25
#   clerk:   0.1/(0.3+0.1) = 25%, 0.3/(0.1+0.3) = 75%  -> 50 (the template average)
#   baker:   0.2/(0.2+0.2) = 50%, 50%                  -> 50
#   nurse:   0.3/(0.1+0.3) = 75%, 75%                  -> 75
TEMPLATES = ("The {occupation} said that", "The {occupation} told me that")
TABLE = (
    occupations_data.Occupation("plumber", 10.0, 2015),
    occupations_data.Occupation("clerk", 40.0, 2015),
    occupations_data.Occupation("baker", 60.0, 2015),
    occupations_data.Occupation("nurse", 90.0, 2015),
)
PROBS = {
    ("plumber", 0): (0.3, 0.1),
    ("plumber", 1): (0.3, 0.1),
    ("clerk", 0): (0.3, 0.1),
    ("clerk", 1): (0.1, 0.3),
    ("baker", 0): (0.2, 0.2),
    ("baker", 1): (0.2, 0.2),
    ("nurse", 0): (0.1, 0.3),
    ("nurse", 1): (0.1, 0.3),
}


@pytest.fixture
def small_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(occupations_data, "TEMPLATES", TEMPLATES)
    monkeypatch.setattr(occupations_data, "OCCUPATIONS", TABLE)
    monkeypatch.setattr(occupations_data, "BY_NAME", {o.name: o for o in TABLE})


def by_key(result) -> dict[tuple[str, str | None], object]:
    return {(m.name, m.group): m for m in result.metrics}


def test_female_share_by_hand() -> None:
    # 0.3 / (0.1 + 0.3) = 0.75
    assert occupations.female_share(math.log(0.1), math.log(0.3)) == pytest.approx(75.0)
    # Far below any float's exp: e^-1001 / (e^-1000 + e^-1001) = 1 / (e + 1) = 0.268941...
    assert occupations.female_share(-1000.0, -1001.0) == pytest.approx(100 / (math.e + 1))
    assert occupations.female_share(-2.0, -2.0) == 50.0


def test_split_continuations_after_the_common_tokens() -> None:
    bos = TokenScore(1, "<s>", None)
    prefix = [bos, TokenScore(10, "The", -1.0), TokenScore(11, " nurse", -2.0), TokenScore(12, " said", -0.5)]
    he = [*prefix, TokenScore(7, " he", -1.2)]
    # " she" as two tokens: its log-probability is the sum, -2.0 + -0.25 = -2.25
    she = [*prefix, TokenScore(20, " s", -2.0), TokenScore(21, "he", -0.25)]
    assert occupations.split_continuations(he, she) == (4, pytest.approx(-1.2), pytest.approx(-2.25))
    # A tokenizer that merged the last prefix character with the pronoun: the split moves back to the last
    # common token, and the difference of the two sums is still the difference of the full texts' scores.
    merged_he = [bos, TokenScore(10, "The", -1.0), TokenScore(30, " nurse he", -3.0)]
    merged_she = [bos, TokenScore(10, "The", -1.0), TokenScore(31, " nurse she", -4.5)]
    assert occupations.split_continuations(merged_he, merged_she) == (2, -3.0, -4.5)
    # Text-only tokens (a server's echo): compared by text
    text_he = [TokenScore(None, "A", None), TokenScore(None, " he", -0.7)]
    text_she = [TokenScore(None, "A", None), TokenScore(None, " she", -0.9)]
    assert occupations.split_continuations(text_he, text_she) == (1, -0.7, -0.9)
    with pytest.raises(AuditError, match="no continuation"):
        occupations.split_continuations(prefix, [*prefix, TokenScore(7, " he", -1.0)])


def test_run_figures_by_hand(small_table: None, tmp_path: Path) -> None:
    scorer = PronounScorer(PROBS, TEMPLATES)
    raw = RawLog(tmp_path / "raw.jsonl")
    seen: list[tuple[int, int]] = []
    result = occupations.run(scorer, data=None, limit=None, seed=0, raw=raw, progress=lambda d, t: seen.append((d, t)))
    raw.close()
    m = by_key(result)

    # per occupation: the template averages above, n = 2 templates
    for name, share in (("plumber", 25.0), ("clerk", 50.0), ("baker", 50.0), ("nurse", 75.0)):
        assert m[("female_share", name)].value == pytest.approx(share)
        assert m[("female_share", name)].n == 2
    # clerk's two templates give 25 and 75: every bootstrap mean lies between them
    clerk = m[("female_share", "clerk")]
    assert 25.0 <= clerk.ci_low <= 50.0 <= clerk.ci_high <= 75.0
    # plumber's templates agree: degenerate interval
    plumber = m[("female_share", "plumber")]
    assert (plumber.ci_low, plumber.ci_high) == (pytest.approx(25.0), pytest.approx(25.0))

    # overall: (25 + 50 + 50 + 75) / 4 = 50
    overall = m[("female_share", None)]
    assert overall.value == pytest.approx(50.0) and overall.n == 4 and overall.ideal == 50.0
    assert overall.ci_low <= 50.0 <= overall.ci_high
    # leaning male: only plumber (25 < 50) of 4 -> 25%
    assert m[("pct_male_leaning", None)].value == pytest.approx(25.0)
    # P(he) + P(she) = 0.4 for every item -> 40%
    assert m[("pronoun_probability", None)].value == pytest.approx(40.0)
    assert m[("pronoun_probability", None)].n == 8

    # Pearson, model (25, 50, 50, 75) vs BLS (10, 40, 60, 90); both means are 50:
    #   deviations x: -40, -10, 10, 40; y: -25, 0, 0, 25
    #   Σxy = 1000 + 0 + 0 + 1000 = 2000; Σx² = 1600 + 100 + 100 + 1600 = 3400; Σy² = 625 + 625 = 1250
    #   r = 2000 / sqrt(3400 · 1250) = 2000 / 2061.553 = 0.970143
    assert m[("pearson_r", None)].value == pytest.approx(2000 / math.sqrt(3400 * 1250))
    assert m[("pearson_r", None)].value == pytest.approx(0.970143, abs=1e-6)
    # Spearman: ranks x 1, 2, 3, 4; y 1, 2.5, 2.5, 4 (a tie); deviations x -1.5, -.5, .5, 1.5; y -1.5, 0, 0, 1.5
    #   Σxy = 2.25 + 2.25 = 4.5; Σx² = 5; Σy² = 4.5; rho = 4.5 / sqrt(22.5) = 0.948683
    assert m[("spearman_rho", None)].value == pytest.approx(4.5 / math.sqrt(22.5))
    for name in ("pearson_r", "spearman_rho"):
        metric = m[(name, None)]
        assert metric.n == 4 and metric.ci_low is not None and metric.ci_low <= metric.value <= metric.ci_high <= 1.0
    assert all(x.scoring == "log-likelihood" for x in result.metrics)

    assert result.suite == "occupations" and result.scoring == "log-likelihood"
    assert result.dataset.items == 8 and result.dataset.total == 8
    assert result.dataset.revision == occupations_data.DATA_VERSION and len(result.dataset.sha256) == 64
    assert result.caveats and result.raw_outputs == str(tmp_path / "raw.jsonl")
    assert seen[-1] == (8, 8) and len(seen) == 8
    assert len(scorer.texts) == 16  # two texts per item: "<prefix> he" and "<prefix> she"

    records = [json.loads(line) for line in (tmp_path / "raw.jsonl").read_text().splitlines()]
    assert len(records) == 8
    clerk1 = next(r for r in records if r["occupation"] == "clerk" and r["template"] == 1)
    assert clerk1["prefix"] == "The clerk told me that"
    assert clerk1["he"]["logprob"] == pytest.approx(math.log(0.1))
    assert clerk1["she"]["logprob"] == pytest.approx(math.log(0.3))
    assert clerk1["he"]["tokens"] == [{"token": 7, "text": " he", "logprob": pytest.approx(math.log(0.1))}]
    assert clerk1["context_tokens"] == 6  # BOS, "The", " clerk", " told", " me", " that"


def test_limit_takes_a_seeded_sample(small_table: None, tmp_path: Path) -> None:
    first = [o.name for o in occupations.select(2, seed=3)]
    assert first == [o.name for o in occupations.select(2, seed=3)]
    assert len(set(first)) == 2 and set(first) <= {o.name for o in TABLE}
    assert [o.name for o in occupations.select(None, seed=3)] == [o.name for o in TABLE]
    with pytest.raises(AuditError, match="at least 1"):
        occupations.select(0, seed=0)
    raw = RawLog(tmp_path / "raw.jsonl")
    result = occupations.run(PronounScorer(PROBS, TEMPLATES), data=None, limit=2, seed=3, raw=raw)
    raw.close()
    m = by_key(result)
    assert {g for (name, g) in m if name == "female_share" and g} == set(first)
    # two occupations: too few for a correlation, reported as none rather than a meaningless ±1
    assert m[("pearson_r", None)].value is None and m[("spearman_rho", None)].value is None
    assert result.dataset.items == 4 and any("--limit 2" in n for n in result.notes)


def test_refuses_a_scorer_without_log_probabilities(tmp_path: Path) -> None:
    scorer = PronounScorer(PROBS, TEMPLATES)
    scorer.supports_likelihood = False  # type: ignore[misc]
    scorer.where = "http://127.0.0.1:11434"
    raw = RawLog(tmp_path / "raw.jsonl")
    with pytest.raises(LikelihoodUnsupported, match=r"occupations.*http://127\.0\.0\.1:11434"):
        occupations.run(scorer, data=None, limit=None, seed=0, raw=raw)
    raw.close()
    assert scorer.texts == []  # refused before any model call


def test_chart_redraws_from_a_saved_result(small_table: None, tmp_path: Path) -> None:
    raw = RawLog(tmp_path / "raw.jsonl")
    suite = occupations.run(PronounScorer(PROBS, TEMPLATES), data=None, limit=None, seed=0, raw=raw)
    raw.close()
    audit = AuditResult(
        lokal_version="test",
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
        model=ModelRef(name="fake"),
        target="in-process",
        seed=0,
        bootstrap_resamples=1000,
        suites=[suite],
    )
    save(audit, tmp_path / "audit.json")
    loaded = load(tmp_path / "audit.json").suites[0]
    chart = occupations.occupations_chart(loaded)
    assert chart.id == "audit-occupations"
    assert "pearson_r 0.97" in chart.caption and "4 occupations" in chart.caption
    assert "nurse 75% vs 90%" in chart.alt and "plumber 25% vs 10%" in chart.alt
    assert render_png(chart).startswith(PNG_MAGIC)

    stale = loaded.model_copy(update={"dataset": loaded.dataset.model_copy(update={"revision": "lokal-occupations-0"})})
    with pytest.raises(AuditError, match="lokal-occupations-0"):
        occupations.occupations_chart(stale)


def test_the_built_in_table_is_well_formed() -> None:
    names = [o.name for o in occupations_data.OCCUPATIONS]
    assert len(names) == len(set(names)) >= 35
    assert all(0.0 < o.pct_female < 100.0 and o.year in (2015, 2016) for o in occupations_data.OCCUPATIONS)
    assert all(t.count("{occupation}") == 1 and not t.endswith(" ") for t in occupations_data.TEMPLATES)
    assert len(occupations_data.TEMPLATES) >= 5


def test_the_built_in_table_matches_its_published_source() -> None:
    """Every figure equals the one Rudinger et al. (2018) published for that word (skipped without the data)."""
    stats = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "winogender" / "occupations-stats.tsv"
    if not stats.exists():
        pytest.skip(f"{stats} is not here (the shared datasets folder)")
    import csv

    with stats.open(encoding="utf-8") as fh:
        rows = {r["occupation"]: r for r in csv.DictReader(fh, delimiter="\t")}
    for o in occupations_data.OCCUPATIONS:
        row = rows[o.name.removeprefix("dental ")]  # the paper's word is "hygienist"
        assert (float(row["bls_pct_female"]), int(row["bls_year"])) == (o.pct_female, o.year), o.name
