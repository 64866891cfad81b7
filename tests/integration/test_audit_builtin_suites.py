"""The built-in suites (occupations, generation) on the bundled SmolLM2, with small limits: they run end to end
in process; a logged pronoun log-probability equals an independent sum of the engine's own token
log-probabilities; a logged answer is what the model generates again at temperature 0."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lokal.audit import generation, occupations, occupations_data
from lokal.audit.scorers import InProcessScorer
from lokal.audit.suite import RawLog
from lokal.report.charts import render_png

pytestmark = pytest.mark.integration


@pytest.fixture
def scorer(monkeypatch: pytest.MonkeyPatch):
    # One llama.cpp thread: on the shared 2-core machine, two threads that spin-wait for each other while another
    # process holds a core made each 5-token scoring take ~7 s instead of ~0.1 s.
    monkeypatch.setenv("LOKAL_NUM_THREADS", "1")
    with InProcessScorer.from_settings("smollm2") as s:
        yield s


def test_occupations_on_the_bundled_model(scorer, engine, tmp_path: Path) -> None:
    raw = RawLog(tmp_path / "raw.jsonl")
    result = occupations.run(scorer, data=None, limit=3, seed=0, raw=raw)  # 36 scorings: the fewest with a correlation
    raw.close()
    records = [json.loads(line) for line in raw.path.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 3 * len(occupations_data.TEMPLATES) == result.dataset.items

    # Independently: the engine's token log-probabilities of "<prefix> he" and "<prefix> she"; the prefix
    # tokens are the same in both, and the pronoun's log-probability is the sum over the tokens after them.
    record = records[0]
    he = engine.logprobs(record["prefix"] + " he")
    she = engine.logprobs(record["prefix"] + " she")
    shared = 0
    while he[shared].token == she[shared].token:
        shared += 1
    assert shared == record["context_tokens"]
    lp_he = sum(t.logprob for t in he[shared:])
    lp_she = sum(t.logprob for t in she[shared:])
    assert record["he"]["logprob"] == pytest.approx(lp_he, abs=1e-3)
    assert record["she"]["logprob"] == pytest.approx(lp_she, abs=1e-3)
    assert lp_he < 0 and lp_she < 0

    # that occupation's figure: 100 · P(she) / (P(he) + P(she)) averaged over its templates, from the log
    name = record["occupation"]
    mine = [r for r in records if r["occupation"] == name]
    expected = sum(100 / (1 + math.exp(r["he"]["logprob"] - r["she"]["logprob"])) for r in mine) / len(mine)
    by_key = {(m.name, m.group): m for m in result.metrics}
    assert by_key[("female_share", name)].value == pytest.approx(expected)
    assert by_key[("female_share", name)].n == len(occupations_data.TEMPLATES)
    overall = by_key[("female_share", None)]
    assert overall.n == 3 and overall.ci_low is not None and overall.ci_low <= overall.value <= overall.ci_high
    assert 0 < by_key[("pronoun_probability", None)].value < 100
    assert -1 <= by_key[("pearson_r", None)].value <= 1 and by_key[("pearson_r", None)].n == 3
    assert all(m.scoring == "log-likelihood" for m in result.metrics)
    assert render_png(occupations.occupations_chart(result)).startswith(b"\x89PNG")


def test_generation_on_the_bundled_model(scorer, tmp_path: Path) -> None:
    raw = RawLog(tmp_path / "raw.jsonl")
    result = generation.run(scorer, data=None, limit=2, seed=0, raw=raw)
    raw.close()
    records = [json.loads(line) for line in raw.path.read_text(encoding="utf-8").splitlines()]
    n = 2 * len(generation.GROUPS)
    assert len(records) == n == result.dataset.items
    assert sum(1 for r in records if r["output"].strip()) >= n // 2  # an instruct model answers

    # the raw log holds the model's answer: asked again at temperature 0, it says the same
    first = records[0]
    again = scorer.generate(first["prompt"], max_tokens=generation.MAX_TOKENS, seed=0, chat=True)
    assert again == first["output"]

    by_key = {(m.name, m.group): m for m in result.metrics}
    woman = by_key[("sentiment", "woman")]
    assert woman.n == 2 and -1 <= woman.value <= 1
    gap = by_key[("sentiment_gap", None)]
    assert gap.value >= 0 and gap.n == 2 and gap.ci_low is not None and 0 <= gap.ci_low <= gap.ci_high
    assert all(m.scoring == "generation" for m in result.metrics)
