"""`lokal serve`'s prompt log-probabilities (`/v1/completions` with echo + logprobs + max_tokens 0), read with the
official `openai` client and compared with the engine's own `logprobs` of the same text."""

from __future__ import annotations

import openai
import pytest
from server_fixture import MODEL, LiveServer

pytestmark = pytest.mark.integration

TEXTS = ["The nurse said that she would be late.", "Un café à Genève, s'il vous plaît."]


@pytest.fixture
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key="x", max_retries=0, timeout=120)


@pytest.mark.parametrize("text", TEXTS, ids=["ascii", "accents"])
def test_echoed_prompt_logprobs_equal_the_engines(client: openai.OpenAI, engine, text: str) -> None:
    completion = client.completions.create(model=MODEL, prompt=text, echo=True, logprobs=1, max_tokens=0)
    choice = completion.choices[0]
    assert choice.text == text
    lp = choice.logprobs
    expected = engine.logprobs(text)  # the same model file, loaded separately in this process
    assert lp.tokens == [t.text for t in expected]
    assert lp.token_logprobs[0] is None  # no context for the first token
    assert lp.token_logprobs[1:] == pytest.approx([t.logprob for t in expected[1:]], abs=1e-3)
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    assert lp.top_logprobs[0] is None
    scored = zip(lp.top_logprobs[1:], lp.tokens[1:], lp.token_logprobs[1:], strict=True)
    assert all(top == {tok: value} for top, tok, value in scored)  # the token itself: no alternatives
    assert completion.usage.prompt_tokens == len(expected)
    assert completion.usage.completion_tokens == 0


def test_what_lokal_cannot_give_is_refused_with_a_reason(server: LiveServer) -> None:
    with server.http() as http:
        base = {"model": MODEL, "prompt": "Hello there", "echo": True}
        too_many = http.post("/v1/completions", json={**base, "logprobs": 5, "max_tokens": 0})
        generated = http.post("/v1/completions", json={**base, "logprobs": 1, "max_tokens": 4})
        echoed = http.post("/v1/completions", json={**base, "max_tokens": 4, "temperature": 0})
    assert too_many.status_code == generated.status_code == 400
    assert "logprobs must be 0 or 1" in too_many.json()["error"]["message"]
    assert "needs max_tokens: 0" in generated.json()["error"]["message"]
    assert echoed.status_code == 200
    assert echoed.json()["choices"][0]["text"].startswith("Hello there")
