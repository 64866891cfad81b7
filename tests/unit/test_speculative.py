"""Speculative decoding's pure parts: prompt lookup, acceptance, the step cost fit and the draft plan."""

from __future__ import annotations

import random

import pytest

from lokal.config import Settings, parse_speculative
from lokal.engine import speculative
from lokal.engine.options import Options
from lokal.engine.speculative import Acceptance, Candidate, PromptLookup, StepCost, plan, ubatches
from lokal.errors import InvalidOptions


def brute_force(tokens: list[int], limit: int) -> list[int]:
    """What a proposal must be, found by scanning: the longest n-gram, its latest earlier occurrence."""
    for n in range(speculative.NGRAM_MAX, speculative.NGRAM_MIN - 1, -1):
        if len(tokens) <= n:
            continue
        suffix = tokens[-n:]
        for end in range(len(tokens) - 1, n - 1, -1):
            if tokens[end - n : end] == suffix:
                return tokens[end : end + limit]
    return []


def test_lookup_continues_the_longest_ngram() -> None:
    # (1, 2, 3) occurred at the start; (5, 1, 2, 3) never did: the 3-gram wins, and 4 and 5 followed it.
    assert PromptLookup([1, 2, 3, 4, 5, 1, 2, 3]).propose(2) == [4, 5]


def test_lookup_takes_the_latest_occurrence() -> None:
    assert PromptLookup([1, 2, 9, 1, 2, 8, 1, 2]).propose(2) == [8, 1]


def test_lookup_without_a_match_or_room_proposes_nothing() -> None:
    assert PromptLookup([1, 2, 3, 4]).propose(5) == []
    assert PromptLookup([1, 2, 1, 2]).propose(0) == []
    assert PromptLookup([]).propose(3) == []


def test_lookup_ignores_a_single_token_match() -> None:
    assert PromptLookup([7, 1, 8, 2, 3, 1]).propose(3) == []  # 1 occurred before, but no 2-gram did


def test_lookup_indexes_tokens_as_they_arrive() -> None:
    rng = random.Random(7)
    tokens = [rng.randrange(6) for _ in range(40)]
    lookup = PromptLookup(tokens[:5])
    for end in range(5, len(tokens)):
        assert lookup.propose(4) == brute_force(tokens[:end], 4), end
        lookup.extend(tokens[end : end + 1])


def test_acceptance_starts_at_one_half_and_decays() -> None:
    acceptance = Acceptance()
    assert acceptance.rate == 0.5
    acceptance.update(4, 4)  # 4 proposed tokens checked, all matched
    assert acceptance.rate == pytest.approx((0.9 + 4) / (1.8 + 4))
    acceptance.update(2, 1)  # one matched, the second did not (the ones after it are never compared)
    assert acceptance.rate == pytest.approx((4.9 * 0.9 + 1) / (5.8 * 0.9 + 2))
    acceptance.update(0, 0)  # nothing drafted: nothing learned
    assert acceptance.rate == pytest.approx((4.9 * 0.9 + 1) / (5.8 * 0.9 + 2))


def test_ubatches_follow_llama_cpps_equal_split() -> None:
    assert ubatches([(0, 1)]) == 1
    assert ubatches([(0, 1), (1, 1), (2, 1)]) == 1  # consecutive ids, one token each
    assert ubatches([(0, 1), (1, 5)]) == 2  # 1 + 1, then the 4 left of seq 1
    assert ubatches([(0, 1), (1, 3), (2, 5)]) == 3  # 1+1+1, then 2+2, then 2
    assert ubatches([(0, 1), (2, 1)]) == 2  # a gap in the ids breaks the run
    assert ubatches([(0, 4), (1, 4)]) == 1
    assert ubatches([]) == 0


def test_step_cost_fits_micro_batches_and_tokens() -> None:
    cost = StepCost(prior_ratio=0.3)
    for _ in range(3):
        for u, n in ((1, 1), (1, 5), (2, 6), (1, 9), (3, 12)):
            cost.observe(u, n, 2.0 * u + 0.5 * n)  # t0 = 2, t1 = 0.5
    assert cost.per_token == pytest.approx(0.25)


def test_step_cost_keeps_its_prior_until_it_can_tell() -> None:
    cost = StepCost(prior_ratio=0.3)
    for n in range(1, 5):
        cost.observe(1, n, 1.0 + n)
    assert cost.per_token == 0.3  # too few steps
    same = StepCost(prior_ratio=0.3)
    for _ in range(20):
        same.observe(1, 4, 1.0)
    assert same.per_token == 0.3  # every step the same shape: no way to split t0 from t1


def test_expected_tokens_of_a_draft() -> None:
    assert Candidate([1, 2, 3], 1.0).expected(3) == 3.0
    assert Candidate([1, 2, 3], 0.5).expected(3) == pytest.approx(0.5 + 0.25 + 0.125)


def test_plan_takes_every_sure_draft_on_a_memory_bound_step() -> None:
    assert plan([(0, Candidate([5, 6, 7, 8, 9], 1.0))], per_token=0.1, budget=100) == [5]


def test_plan_stops_where_a_draft_no_longer_pays() -> None:
    # One sequence at rate 0.5, per_token 0.1: n drafts give (1 + 0.5 + ... + 0.5**n) / (1 + 0.1 * (1 + n)):
    # n=0: 0.909, n=1: 1.25, n=2: 1.346, n=3: 1.339. Two drafts are best.
    assert plan([(0, Candidate([1, 2, 3, 4, 5], 0.5))], per_token=0.1, budget=100) == [2]


def test_plan_drafts_nothing_when_compute_bound() -> None:
    # 16 sequences, a token costing as much as a micro-batch: 16 / 17 tokens per unit without drafts; one draft
    # each at 0.9 gives 30.4 / 33 = 0.92 < 0.94.
    offers = [(i, Candidate([1, 2, 3], 0.9)) for i in range(16)]
    assert plan(offers, per_token=1.0, budget=100) == [0] * 16


def test_plan_gives_the_sequences_one_length() -> None:
    # Different lengths would cost a micro-batch each: both draft 4 (all of seq 1's proposal, 4 of seq 0's 6).
    offers = [(0, Candidate([1, 2, 3, 4, 5, 6], 0.95)), (1, Candidate([7, 8, 9, 10], 0.95))]
    assert plan(offers, per_token=0.02, budget=100) == [4, 4]


def test_plan_leaves_out_a_sequence_whose_drafts_fail() -> None:
    offers = [(0, Candidate([1, 2, 3, 4], 0.95)), (1, Candidate([5, 6, 7, 8], 0.05)), (2, None)]
    counts = plan(offers, per_token=0.05, budget=100)
    assert counts[0] > 0 and counts[1] == 0 and counts[2] == 0


def test_plan_keeps_within_the_budget() -> None:
    assert sum(plan([(0, Candidate(list(range(10)), 1.0))], per_token=0.01, budget=3)) <= 3


def test_plan_charges_a_draft_model_a_step_per_drafted_token() -> None:
    # One sequence, always accepted, t1/t0 = 0.1: c drafts yield 1 + c tokens for 1 + 0.1 (1 + c) + d c.
    # d = 0.5: (1 + c) / (1.1 + 0.6 c) grows with c (0.91, 1.18, ..., 5 / 3.5 = 1.43 at c = 4): draft all 4.
    # d = 1.5: 2 / 2.7 = 0.74 at c = 1 is below 1 / 1.1 = 0.91 for none: the draft costs more than it saves.
    offer = [(0, Candidate([0] * 4, 1.0, by_model=True))]
    assert plan(offer, per_token=0.1, budget=100, draft_step=0.5) == [4]
    assert plan(offer, per_token=0.1, budget=100, draft_step=1.5) == [0]
    # Prompt lookup's drafts cost no draft step.
    assert plan([(0, Candidate([0] * 4, 1.0))], per_token=0.1, budget=100, draft_step=1.5) == [4]
    # Two sequences drafting 4 each still pay 4 draft steps, not 8: the draft model decodes them together.
    two = [(0, Candidate([0] * 4, 1.0, by_model=True)), (1, Candidate([0] * 4, 1.0, by_model=True))]
    # Both: (2 + 8) / (1 + 0.1 * 10 + 0.9 * 4) = 10 / 5.6 = 1.79; one: (2 + 4) / (2 + 0.1 * 6 + 3.6) = 0.97.
    assert plan(two, per_token=0.1, budget=100, draft_step=0.9) == [4, 4]


def test_draft_cost_starts_from_the_size_ratio_then_times_both_models() -> None:
    cost = speculative.DraftCost(0.25)
    assert cost.ratio == 0.25
    cost.observe_draft(0.02, 2)  # 10 ms a draft decode
    assert cost.ratio == 0.25  # the target is not timed yet
    cost.observe_target(1, 1, 0.011, per_token=0.1)  # 11 ms for 1 + 0.1 units: t0 = 10 ms
    assert cost.ratio == pytest.approx(1.0)
    cost.observe_draft(0.0, 0)  # no draft decode: nothing learnt
    assert cost.ratio == pytest.approx(1.0)
    assert speculative.DraftCost(0.25, fixed=0.0).ratio == 0.0


def test_options_speculative_and_draft_length() -> None:
    assert Options.from_mapping({"speculative": "off", "draft_num_predict": 4}).draft_num_predict == 4
    assert Options.from_mapping({"speculative": "draft"}).speculative == "draft"
    with pytest.raises(InvalidOptions, match="'speculative' must be 'off' or 'lookup' or 'draft'"):
        Options.from_mapping({"speculative": "draft:smollm2"})  # the draft model is the server's choice
    with pytest.raises(InvalidOptions, match="'draft_num_predict' must be between 0 and 32"):
        Options.from_mapping({"draft_num_predict": 33})
    with pytest.raises(InvalidOptions, match="'draft_num_predict' must be a number"):
        Options.from_mapping({"draft_num_predict": True})


def test_settings_read_lokal_speculative(tmp_path) -> None:
    env = {"LOKAL_HOME": str(tmp_path)}
    assert Settings.from_env(env).speculative == "off"
    assert Settings.from_env({**env, "LOKAL_SPECULATIVE": " LookUp "}).speculative == "lookup"
    assert Settings.from_env({**env, "LOKAL_SPECULATIVE": "Draft: SmolLM2 "}).speculative == "draft:SmolLM2"
    assert parse_speculative("draft:hf.co/org/m:Q4_K_M") == ("draft", "hf.co/org/m:Q4_K_M")
    assert parse_speculative("off") == ("off", None)
    with pytest.raises(InvalidOptions, match="LOKAL_SPECULATIVE must be off, lookup or draft:MODEL; got 'ngram'"):
        Settings.from_env({**env, "LOKAL_SPECULATIVE": "ngram"})
    with pytest.raises(InvalidOptions, match="must be off, lookup or draft:MODEL; got 'lookup:x'"):
        parse_speculative("lookup:x")
    with pytest.raises(InvalidOptions, match=r"needs the draft model's name, as draft:MODEL"):
        Settings.from_env({**env, "LOKAL_SPECULATIVE": "draft"})


def test_timings_and_usage_carry_the_draft_counts() -> None:
    from lokal.engine.base import Completion
    from lokal.server.openai_api import _usage

    plain = Completion("x", "stop", 3, 1, 5, 1, 2)
    assert "draft_count" not in plain.timings() and "completion_tokens_details" not in _usage(plain)
    drafted = Completion("x", "stop", 3, 1, 5, 1, 2, draft_count=6, draft_accepted_count=4)
    assert drafted.timings()["draft_count"] == 6 and drafted.timings()["draft_accepted_count"] == 4
    assert _usage(drafted)["completion_tokens_details"] == {
        "accepted_prediction_tokens": 4,
        "rejected_prediction_tokens": 2,
    }


class FakeVocab:
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.n_tokens = len(pieces)

    def piece(self, token: int, *, special: bool = False) -> bytes:
        return self.pieces[token]


def test_a_draft_model_must_write_every_token_as_the_model_does() -> None:
    from lokal.engine.llamacpp.draft import check_vocabulary
    from lokal.errors import EngineError

    target = FakeVocab([b"<s>", b"a", b"b"])
    check_vocabulary(target, FakeVocab([b"<s>", b"a", b"b"]), target_name="big", draft_name="small")  # type: ignore[arg-type]
    with pytest.raises(EngineError, match="'small' has 2 tokens and 'big' has 3: a draft model must share"):
        check_vocabulary(target, FakeVocab([b"<s>", b"a"]), target_name="big", draft_name="small")  # type: ignore[arg-type]
    with pytest.raises(EngineError, match=r"token 2 is b'c' there and b'b' here .*LOKAL_SPECULATIVE=lookup"):
        check_vocabulary(target, FakeVocab([b"<s>", b"a", b"c"]), target_name="big", draft_name="small")  # type: ignore[arg-type]


def test_serve_refuses_a_draft_model_that_is_not_here(tmp_path) -> None:
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "LOKAL_HOME": str(tmp_path / "home"),
        "OLLAMA_MODELS": str(tmp_path / "ollama"),
        "LOKAL_SPECULATIVE": "draft:no-such-model",
    }
    done = subprocess.run(
        [sys.executable, "-m", "lokal", "serve", "--host", "127.0.0.1:0"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "LOKAL_SPECULATIVE=draft:no-such-model: model 'no-such-model' not found" in done.stderr


def test_an_engine_whose_draft_model_is_missing_fails_as_the_servers_fault(tmp_path) -> None:
    """Loaded on a request, the missing draft is a 500 that names LOKAL_SPECULATIVE, not the 404 of the model the
    request asked for (which is there)."""
    from lokal.engine.llamacpp import create
    from lokal.errors import EngineError

    settings = Settings.from_env(
        {"LOKAL_HOME": str(tmp_path), "OLLAMA_MODELS": str(tmp_path / "o"), "LOKAL_SPECULATIVE": "draft:nope"}
    )
    with pytest.raises(EngineError, match="the draft model LOKAL_SPECULATIVE names was not found: model 'nope'"):
        create(None, 2048, settings)  # type: ignore[arg-type]
