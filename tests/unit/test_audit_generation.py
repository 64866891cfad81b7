"""The generation probe on a scripted Scorer: VADER scores of fixed texts checked by hand against the lexicon,
group means and the paired gap by hand, the raw log written before scoring, and the fallback for a model that
refuses chat."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lokal.audit import generation
from lokal.audit.suite import AuditError, RawLog, ScorerBase
from lokal.errors import NoChatTemplate

# VADER's compound score is s / sqrt(s² + 15), s the summed valence of the lexicon words (no punctuation or
# booster effects in these sentences). Lexicon valences (vader_lexicon.txt): kind 2.4, rude -2.0.
KIND = 2.4 / math.sqrt(2.4**2 + 15)  # 2.4 / 4.5563 = 0.5267
RUDE = -2.0 / math.sqrt(2.0**2 + 15)  # -2 / 4.3589 = -0.4588


def test_vader_scores_by_hand() -> None:
    scores = generation.compound_scores(["She is kind.", "He is rude.", "The person works as a nurse.", ""])
    assert scores[0] == pytest.approx(KIND, abs=1e-4) and scores[0] == pytest.approx(0.5267, abs=1e-4)
    assert scores[1] == pytest.approx(RUDE, abs=1e-4) and scores[1] == pytest.approx(-0.4588, abs=1e-4)
    assert scores[2:] == [0.0, 0.0]  # no lexicon word; empty text


def test_gap_is_paired_over_templates() -> None:
    groups = (
        generation.Group("gender", "a", "an a"),
        generation.Group("gender", "b", "a b"),
        generation.Group("nationality", "c", "a c"),
    )
    # One score per template (2 templates), per group. Means: a (0.1 + 0.3) / 2 = 0.2; b (-0.2 + 0) / 2 = -0.1;
    # c 0. Largest gap: a - b = 0.2 - (-0.1) = 0.3.
    # Paired bootstrap: a resample takes templates with all their groups. Templates {0, 0}: a 0.1, b -0.2, c 0
    # -> 0.3; {1, 1}: 0.3, 0, 0 -> 0.3; {0, 1}: the full data -> 0.3. Every resample gives 0.3, so the interval is
    # (0.3, 0.3); resampling groups independently would not.
    scores = {"a": [0.1, 0.3], "b": [-0.2, 0.0], "c": [0.0, 0.0]}
    metrics = {(m.name, m.group): m for m in generation.compute_metrics(groups, scores, seed=0)}
    assert metrics[("sentiment", "a")].value == pytest.approx(0.2)
    assert metrics[("sentiment", "b")].value == pytest.approx(-0.1)
    assert metrics[("sentiment", "c")].value == 0.0 and metrics[("sentiment", "c")].ci_low == 0.0
    assert metrics[("sentiment", "a")].n == 2
    assert 0.1 <= metrics[("sentiment", "a")].ci_low <= 0.2 <= metrics[("sentiment", "a")].ci_high <= 0.3
    overall = metrics[("sentiment_gap", None)]
    assert overall.value == pytest.approx(0.3) and overall.ideal == 0.0 and overall.n == 2
    assert (overall.ci_low, overall.ci_high) == (pytest.approx(0.3), pytest.approx(0.3))
    assert "a +0.200 vs b -0.100" in overall.description
    # within gender: the same two groups -> 0.3; nationality has one group, so no gap
    assert metrics[("sentiment_gap", "gender")].value == pytest.approx(0.3)
    assert ("sentiment_gap", "nationality") not in metrics
    assert all(m.scoring == "generation" for m in metrics.values())
    # the statistic itself
    assert generation.gap(np.array([1.0, 0.0]), np.array([0.0, 0.0])) == 0.5


class ScriptedWriter(ScorerBase):
    """Answers by the group named in the prompt: women kind, men rude, everyone else neutral."""

    where = "scripted"
    supports_likelihood = False  # the generation suite must not need log-probabilities

    def __init__(self, *, refuse_chat: bool = False) -> None:
        self.refuse_chat = refuse_chat
        self.calls: list[tuple[str, int, int, bool]] = []

    def score(self, text: str) -> list:
        raise AssertionError("the generation suite must not score")

    def generate(self, prompt: str, *, max_tokens: int, seed: int, chat: bool = False) -> str:
        self.calls.append((prompt, max_tokens, seed, chat))
        if chat and self.refuse_chat:
            raise NoChatTemplate("no chat template")
        if " a woman " in prompt:
            return "She is kind."
        if " a man " in prompt:
            return "He is rude."
        return "The person works here."


def test_run_logs_every_answer_and_scores_it(tmp_path: Path) -> None:
    writer = ScriptedWriter()
    raw = RawLog(tmp_path / "raw.jsonl")
    progress: list[tuple[int, int]] = []
    result = generation.run(writer, data=None, limit=2, seed=7, raw=raw, progress=lambda d, t: progress.append((d, t)))
    raw.close()
    n_groups = len(generation.GROUPS)
    assert len(writer.calls) == 2 * n_groups and progress[-1] == (2 * n_groups, 2 * n_groups)
    assert all(max_tokens == generation.MAX_TOKENS and seed == 7 and chat for _, max_tokens, seed, chat in writer.calls)

    records = [json.loads(line) for line in (tmp_path / "raw.jsonl").read_text().splitlines()]
    assert len(records) == 2 * n_groups
    woman = [r for r in records if r["group"] == "woman"]
    assert len(woman) == 2 and all(r["output"] == "She is kind." and r["chat"] and r["temperature"] == 0 for r in woman)
    assert woman[0]["prompt"] == generation.TEMPLATES[woman[0]["template"]].format(person="a woman")

    metrics = {(m.name, m.group): m for m in result.metrics}
    assert metrics[("sentiment", "woman")].value == pytest.approx(KIND, abs=1e-4)
    assert metrics[("sentiment", "man")].value == pytest.approx(RUDE, abs=1e-4)
    assert metrics[("sentiment", "Nigerian")].value == 0.0
    # largest gap anywhere and within gender: woman - man = 0.5267 - (-0.4588) = 0.9855; every template agrees,
    # so every paired resample gives the same gap
    for axis in (None, "gender"):
        gap = metrics[("sentiment_gap", axis)]
        assert gap.value == pytest.approx(KIND - RUDE, abs=1e-4) and gap.value == pytest.approx(0.9855, abs=1e-4)
        assert gap.ci_low == pytest.approx(gap.value) and gap.ci_high == pytest.approx(gap.value)
    for axis in ("nationality", "ethnicity"):
        assert metrics[("sentiment_gap", axis)].value == 0.0
    assert result.suite == "generation" and result.scoring == "generation"
    assert result.dataset.items == 2 * n_groups and result.dataset.total == len(generation.TEMPLATES) * n_groups
    assert result.raw_outputs == str(tmp_path / "raw.jsonl") and result.caveats
    assert any("--limit 2" in note for note in result.notes)


def test_limit_is_a_seeded_sample_of_templates() -> None:
    assert generation.select_templates(2, seed=1) == generation.select_templates(2, seed=1)
    assert len(set(generation.select_templates(2, seed=1))) == 2
    assert generation.select_templates(None, seed=1) == list(range(len(generation.TEMPLATES)))
    with pytest.raises(AuditError, match="at least 1"):
        generation.select_templates(0, seed=0)


def test_a_model_that_refuses_chat_gets_plain_prompts(tmp_path: Path) -> None:
    writer = ScriptedWriter(refuse_chat=True)
    raw = RawLog(tmp_path / "raw.jsonl")
    result = generation.run(writer, data=None, limit=1, seed=0, raw=raw)
    raw.close()
    # one refused chat call, then every prompt (that one again included) as plain text
    assert [c[3] for c in writer.calls] == [True] + [False] * len(generation.GROUPS)
    records = [json.loads(line) for line in (tmp_path / "raw.jsonl").read_text().splitlines()]
    assert len(records) == len(generation.GROUPS) and not any(r["chat"] for r in records)
    assert any("plain text" in note for note in result.notes)
    # one template: a group's mean has no interval (one value), and is still reported with n = 1
    woman = next(m for m in result.metrics if m.name == "sentiment" and m.group == "woman")
    assert woman.n == 1 and woman.ci_low is None


def test_built_in_prompts_are_well_formed() -> None:
    names = [g.name for g in generation.GROUPS]
    assert len(names) == len(set(names))
    assert {g.axis for g in generation.GROUPS} == {"gender", "nationality", "ethnicity"}
    assert all(t.count("{person}") == 1 for t in generation.TEMPLATES)
    # every phrase takes the right indefinite article
    for g in generation.GROUPS:
        article, word = g.phrase.split(" ", 2)[:2]
        assert article == ("an" if word[0].lower() in "aeiou" else "a"), g.phrase
