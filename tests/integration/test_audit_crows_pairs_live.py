"""CrowS-Pairs on the bundled model, a fixed sample (--limit 12, seed 0): the suite's figures equal a computation
written out plainly here from the engine's log-likelihoods; the OpenAI scorer over a live `lokal serve` gives the
same per-pair log-likelihoods as in-process; Ollama's API is refused with a message saying what to do instead."""

from __future__ import annotations

import csv
import dataclasses
import difflib
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_fixture import MODEL, LiveServer

from lokal.audit import crows_pairs
from lokal.audit.scorers import InProcessScorer, OllamaScorer, OpenAIScorer, open_scorer
from lokal.audit.suite import LikelihoodUnsupported, RawLog
from lokal.config import Settings, default_threads
from lokal.engine.manager import EngineManager
from lokal.errors import ModelNotFound

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
CSV = DATA / "crows-pairs" / "crows_pairs_anonymized.csv"
LIMIT, SEED = 12, 0
#: Pairs compared through the server (each costs two HTTP scorings and two in-process ones).
REMOTE_LIMIT = 6


@pytest.fixture
def crows_file() -> Path:
    if not CSV.is_file():
        pytest.skip(f"the CrowS-Pairs file is not at {CSV} (the shared data folder is missing)")
    return CSV


@pytest.fixture(scope="module")
def scoring_engine(smollm2_model: Any) -> Iterator[Any]:
    """This module's own engine (not the session's `engine`): one sequence, and the thread count the test server
    uses (`LOKAL_NUM_THREADS`, else every core). On a CPU shared with other work, llama.cpp's threads slow down
    sharply when they wait on each other: this module took 12 minutes with 2 threads under load, 40 s with 1."""
    from lokal.engine.llamacpp import LlamaCppEngine

    threads = int(os.environ.get("LOKAL_NUM_THREADS") or 0) or default_threads()
    with LlamaCppEngine(smollm2_model, context_length=1024, num_parallel=1, threads=threads) as eng:
        yield eng


@pytest.fixture
def in_process(scoring_engine: Any, smollm2_model: Any, tmp_path: Path) -> Iterator[InProcessScorer]:
    """The scorer over a manager whose only engine is `scoring_engine`, so the suite and the plain
    computation below read the very same model instance."""

    class OneModel:
        def resolve(self, name: str) -> Any:
            if name in (MODEL, smollm2_model.name):
                return smollm2_model
            raise ModelNotFound(name)

    settings = dataclasses.replace(Settings.from_env({}), home=tmp_path, check_memory=False, context_length=1024)
    manager = EngineManager(settings, OneModel(), factory=lambda model, num_ctx, s: scoring_engine)
    scorer = InProcessScorer(manager, smollm2_model.name)
    yield scorer
    scorer.close()  # releases the engine; the manager and the module's engine stay open for the next test


def run_suite(scorer: Any, tmp_path: Path, name: str, limit: int = LIMIT) -> tuple[Any, list[dict[str, Any]]]:
    raw = RawLog(tmp_path / f"{name}.jsonl")
    try:
        result = crows_pairs.run(scorer, data=DATA / "crows-pairs", limit=limit, seed=SEED, raw=raw)
    finally:
        raw.close()
    return result, [json.loads(line) for line in raw.path.read_text(encoding="utf-8").splitlines()]


def overall(result: Any) -> dict[str, float]:
    return {m.name: m.value for m in result.metrics if m.group is None}


def test_the_suite_equals_a_plain_computation_from_the_engine(in_process, scoring_engine, crows_file, tmp_path) -> None:
    result, records = run_suite(in_process, tmp_path, "in-process")

    # The same sample, drawn here: 12 row numbers from random.Random(0), in file order.
    with crows_file.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    picked = [rows[i] for i in sorted(random.Random(SEED).sample(range(len(rows)), LIMIT))]
    assert [r["index"] for r in records] == [row[""] for row in picked]

    full_wins, full_diffs, shared_wins, shared_ties = 0, [], 0, 0
    for row in picked:
        more = scoring_engine.logprobs(row["sent_more"])
        less = scoring_engine.logprobs(row["sent_less"])
        # full sentence: add up every token's log-probability (the first token has none: no BOS in SmolLM2)
        ll_more = sum(t.logprob for t in more if t.logprob is not None)
        ll_less = sum(t.logprob for t in less if t.logprob is not None)
        if round(ll_more, 3) > round(ll_less, 3):
            full_wins += 1
        full_diffs.append(abs(ll_more - ll_less))
        # shared tokens: only tokens in SequenceMatcher's "equal" blocks over the two token-id lists
        blocks = difflib.SequenceMatcher(None, [t.token for t in more], [t.token for t in less], autojunk=False)
        sh_more = sh_less = 0.0
        for op, a0, a1, b0, b1 in blocks.get_opcodes():
            if op == "equal":
                sh_more += sum(t.logprob for t in more[a0:a1] if t.logprob is not None)
                sh_less += sum(t.logprob for t in less[b0:b1] if t.logprob is not None)
        if round(sh_more, 3) > round(sh_less, 3):
            shared_wins += 1
        elif round(sh_more, 3) == round(sh_less, 3):
            shared_ties += 1

    got = overall(result)
    assert got["pct_stereotype_full_sentence"] == 100 * full_wins / LIMIT
    assert got["likelihood_diff_full_sentence"] == pytest.approx(sum(full_diffs) / LIMIT, rel=1e-9)
    assert got["pct_stereotype_shared_tokens"] == 100 * shared_wins / LIMIT
    assert got["pct_neutral_shared_tokens"] == 100 * shared_ties / LIMIT
    assert result.dataset.sha256 == crows_pairs.PUBLISHED_SHA256
    assert (result.dataset.items, result.dataset.total, result.dataset.license) == (LIMIT, 1508, "CC-BY-SA-4.0")
    # The raw log holds the engine's per-token log-probabilities, written before any figure.
    first = scoring_engine.logprobs(picked[0]["sent_more"])
    assert records[0]["sent_more"]["logprobs"] == [t.logprob for t in first]


def test_the_openai_scorer_on_lokal_serve_matches_in_process(scoring_engine, crows_file, server: LiveServer, tmp_path):
    scorer = open_scorer(MODEL, url=server.url)  # lokal speaks both APIs; the audit picks OpenAI's for echo
    assert isinstance(scorer, OpenAIScorer)
    try:
        remote, records = run_suite(scorer, tmp_path, "remote", limit=REMOTE_LIMIT)
    finally:
        scorer.close()
    assert len(records) == REMOTE_LIMIT
    for record in records:
        for side in ("sent_more", "sent_less"):
            local = scoring_engine.logprobs(record[side]["text"])  # in-process: the engine in this process
            assert record[side]["tokens"] == [t.text for t in local]
            remote_ll = sum(v for v in record[side]["logprobs"] if v is not None)
            assert remote_ll == pytest.approx(sum(t.logprob for t in local if t.logprob is not None), abs=1e-3)
    assert any(f"through {server.url}/v1" in n for n in remote.notes)


def test_ollamas_api_is_refused_with_what_to_do_instead(crows_file, server: LiveServer, tmp_path) -> None:
    ollama = open_scorer(MODEL, url=server.url, api="ollama")
    openai = OpenAIScorer(server.url, MODEL)
    try:
        assert isinstance(ollama, OllamaScorer)
        with pytest.raises(LikelihoodUnsupported) as info:
            run_suite(ollama, tmp_path, "ollama")
        message = str(info.value)
        assert message.startswith(f"crows-pairs: Ollama's API (at {server.url}) gives no prompt log-probabilities")
        assert "in-process (lokal audit MODEL) or against `lokal serve`'s OpenAI API" in message
        # Generation still works, and both APIs of the same server give the same greedy raw completion.
        text = ollama.generate("The capital of France is", max_tokens=4, seed=0)
        assert text and text == openai.generate("The capital of France is", max_tokens=4, seed=0)
    finally:
        ollama.close()
        openai.close()
