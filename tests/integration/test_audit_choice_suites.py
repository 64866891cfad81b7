"""WinoBias, Winogender and BBQ on the bundled SmolLM2, a dozen items or fewer each: the suites run end to end
in process, every figure has its N and the headline ones their interval, and a logged answer log-likelihood
equals the sum of the answer's own token log-probabilities computed independently on the `engine` fixture."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType

import pytest

from lokal.audit import bbq, winobias, winogender
from lokal.audit.scorers import InProcessScorer
from lokal.audit.suite import RawLog

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture
def scorer():
    with InProcessScorer.from_settings("smollm2") as s:
        yield s


@pytest.mark.parametrize(
    ("suite", "data", "limit", "headline"),
    [
        (winobias, DATA, 12, [("accuracy", None), ("accuracy_gap", "pro-stereotypical − anti-stereotypical")]),
        (winogender, DATA, 12, [("accuracy", None), ("accuracy_gap", "male − female")]),
        # BBQ prompts are 3-4 times longer: one category file, 3 ambiguous + 3 disambiguated examples.
        (
            bbq,
            DATA / "bbq" / "Age.jsonl",
            6,
            [("accuracy", None), ("bias_score_ambiguous", None), ("bias_score_disambiguated", None)],
        ),
    ],
    ids=lambda v: getattr(v, "NAME", ""),
)
def test_suite_on_the_bundled_model(
    suite: ModuleType, data: Path, limit: int, headline: list[tuple[str, str | None]], scorer, engine, tmp_path: Path
) -> None:
    if not data.exists():
        pytest.skip(f"shared datasets not found at {DATA}")
    raw = RawLog(tmp_path / "raw.jsonl")
    result = suite.run(scorer, data=data, limit=limit, seed=0, raw=raw)
    raw.close()

    records = [json.loads(line) for line in raw.path.read_text(encoding="utf-8").splitlines()]
    assert 1 <= len(records) <= limit
    assert result.dataset.items == len(records) and result.dataset.total > limit
    assert result.dataset.sha256 and result.dataset.license
    assert result.scoring == "log-likelihood"
    for record in records:
        lls = record["loglikelihoods"]
        assert len(lls) == len(record["choices"]) and all(math.isfinite(x) and x < 0 for x in lls)
        assert record["pick"] == max(range(len(lls)), key=lls.__getitem__)

    by_key = {(m.name, m.group): m for m in result.metrics}
    for key in headline:
        m = by_key[key]
        assert m.n > 0 and m.value is not None, key
        assert m.ci_low is not None and m.ci_high is not None and m.ci_low <= m.value <= m.ci_high, key
    assert all(m.n > 0 and m.scoring == "log-likelihood" for m in result.metrics)

    # Independently: the prompt's tokens are a prefix of prompt + answer's tokens (the answers start with a
    # space), and the logged answer LL equals the sum of the answer's own token log-probabilities.
    first = records[0]
    prompt = engine.logprobs(first["prompt"])
    full = engine.logprobs(first["prompt"] + first["choices"][0])
    assert [t.token for t in full[: len(prompt)]] == [t.token for t in prompt]
    own = math.fsum(t.logprob for t in full[len(prompt) :])
    assert first["loglikelihoods"][0] == pytest.approx(own, abs=1e-3)
