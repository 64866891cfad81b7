"""The audit's scorers without a model: in-process on the fake engine, OpenAI's and Ollama's APIs as scripted
servers (httpx.MockTransport), and lokal's own `/v1/completions` prompt log-probabilities on the fake engine.

The fake engine tokenizes one token per word (its length) after a BOS of 1, and gives every token but the first
a log-probability of -1.0, so `"a bb ccc"` is tokens [1, 1, 2, 3], texts "t1 t1 t2 t3", log-probs
[None, -1, -1, -1].
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fakes import BOS, FakeFactory, FakeStore, make_model, make_settings
from fastapi.testclient import TestClient

from lokal.audit.scorers import InProcessScorer, OllamaScorer, OpenAIScorer, open_scorer, require_likelihood
from lokal.audit.suite import AuditError, LikelihoodUnsupported, TokenScore
from lokal.engine.manager import EngineManager
from lokal.server.app import create_app

URL = "http://127.0.0.1:8000"
TEXT = "a bb ccc"


class Server:
    """A MockTransport answering by path, keeping every request body it saw."""

    def __init__(self, routes: dict[str, Callable[[dict[str, Any]], httpx.Response]]) -> None:
        self.routes = routes
        self.bodies: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        self.bodies.append((request.url.path, body))
        handler = self.routes.get(request.url.path)
        return handler(body) if handler else httpx.Response(404, json={"error": "404 page not found"})

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def echo_answer(body: dict[str, Any], tokens: list[str], logprobs: list[float | None], **extra: Any) -> httpx.Response:
    """An OpenAI legacy completion that echoes the prompt with log-probabilities."""
    return httpx.Response(
        200,
        json={
            "choices": [
                {
                    "text": body["prompt"] + extra.pop("generated", ""),
                    "logprobs": {"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": None},
                    "finish_reason": "length",
                }
            ],
            **extra,
        },
    )


# -- in-process ---------------------------------------------------------------------------------------------
@pytest.fixture
def manager(tmp_path: Path) -> Iterator[EngineManager]:
    factory = FakeFactory(pieces=("Hello", ",", " world"))
    manager = EngineManager(make_settings(tmp_path), FakeStore([make_model("fake:latest")]), factory=factory)
    manager.factory = factory  # type: ignore[attr-defined]  (for the tests to reach the engines)
    yield manager
    manager.close()


def test_in_process_scores_through_the_engine_logprobs(manager: EngineManager) -> None:
    scorer = InProcessScorer(manager, "fake")
    assert (scorer.where, scorer.supports_likelihood) == ("in-process", True)
    assert scorer.score(TEXT) == [
        TokenScore(BOS, "t1", None),
        TokenScore(1, "t1", -1.0),
        TokenScore(2, "t2", -1.0),
        TokenScore(3, "t3", -1.0),
    ]
    # Held for the whole audit, then released: the model is idle (and unloadable) only after close().
    assert manager.get_loaded("fake:latest").in_use == 1
    scorer.close()
    assert manager.get_loaded("fake:latest").in_use == 0
    with pytest.raises(AuditError, match="closed"):
        scorer.score(TEXT)


def test_in_process_generates_greedily_raw_or_as_a_chat_turn(manager: EngineManager) -> None:
    with InProcessScorer(manager, "fake") as scorer:
        assert scorer.generate("Once", max_tokens=5, seed=3) == "Hello, world"
        assert scorer.generate("Hi", max_tokens=7, seed=4, chat=True) == "Hello, world"
    (engine,) = manager.factory.engines  # type: ignore[attr-defined]  (one load for scoring and generating)
    raw, chat = engine.generate_calls
    assert raw["prompt"] == "Once"  # raw: no template
    assert chat["prompt"] == "<|user|>Hi\n<|assistant|>"  # through the chat template
    assert (raw["options"].temperature, raw["options"].seed, raw["options"].num_predict) == (0.0, 3, 5)
    assert (chat["options"].temperature, chat["options"].seed, chat["options"].num_predict) == (0.0, 4, 7)


def test_in_process_unknown_model_fails_at_once(manager: EngineManager) -> None:
    with pytest.raises(LookupError, match="model 'nope' not found"):
        InProcessScorer(manager, "nope")


# -- OpenAI API, scripted -----------------------------------------------------------------------------------
def test_openai_scores_from_echoed_prompt_logprobs() -> None:
    server = Server({"/v1/completions": lambda b: echo_answer(b, ["a", " bb", " ccc"], [None, -0.5, -2.25])})
    scorer = OpenAIScorer(f"{URL}/v1/", "m", transport=server.transport)
    assert scorer.where == f"{URL}/v1"
    expected = [TokenScore(None, "a", None), TokenScore(None, " bb", -0.5), TokenScore(None, " ccc", -2.25)]
    assert scorer.score(TEXT) == expected
    assert server.bodies == [
        (
            "/v1/completions",
            {"model": "m", "prompt": TEXT, "max_tokens": 0, "echo": True, "logprobs": 1, "temperature": 0},
        )
    ]


def test_openai_retries_with_one_token_and_drops_it() -> None:
    def completions(body: dict[str, Any]) -> httpx.Response:
        if body["max_tokens"] == 0:
            return httpx.Response(400, json={"error": {"message": "max_tokens must be at least 1"}})
        return echo_answer(body, ["a", " bb", " x"], [None, -0.5, -7.0], generated=" x", usage={"completion_tokens": 1})

    server = Server({"/v1/completions": completions})
    scorer = OpenAIScorer(URL, "m", transport=server.transport)
    assert scorer.score("a bb") == [TokenScore(None, "a", None), TokenScore(None, " bb", -0.5)]
    assert scorer.score("a bb") == [TokenScore(None, "a", None), TokenScore(None, " bb", -0.5)]
    assert [b["max_tokens"] for _, b in server.bodies] == [0, 1, 1]  # remembered after the first refusal


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        # llama-server: echo ignored, log-probabilities of generated tokens only
        (
            lambda b: httpx.Response(
                200, json={"choices": [{"text": " x", "logprobs": {"tokens": [" x"], "token_logprobs": [-1.0]}}]}
            ),
            "did not echo the prompt",
        ),
        (lambda b: httpx.Response(200, json={"choices": [{"text": b["prompt"], "logprobs": None}]}), "no logprobs"),
        (lambda b: httpx.Response(400, json={"error": {"message": "echo is not supported"}}), "echo is not supported"),
        (lambda b: httpx.Response(404, json={"error": "404 page not found"}), "no /v1/completions route"),
    ],
    ids=["no-echo", "no-logprobs", "refused", "chat-only"],
)
def test_openai_without_prompt_logprobs_refuses_likelihood(answer: Any, why: str) -> None:
    server = Server({"/v1/completions": answer, "/v1/models": lambda b: httpx.Response(200, json={"data": []})})
    scorer = OpenAIScorer(URL, "m", transport=server.transport)
    assert scorer.supports_likelihood is False  # one probe request
    with pytest.raises(LikelihoodUnsupported) as info:
        scorer.score(TEXT)
    message = str(info.value)
    assert message.startswith(f"the OpenAI-compatible server at {URL}/v1 gives no prompt log-probabilities for 'm'")
    assert why in message
    assert "crows-pairs" in message and "the generation suite (generation) still runs" in message
    assert len(server.bodies) == 1  # refused from memory after the probe
    with pytest.raises(LikelihoodUnsupported, match=r"^crows-pairs: the OpenAI-compatible server"):
        require_likelihood(scorer, "crows-pairs")


def test_openai_unknown_model_is_an_error_not_a_refusal() -> None:
    server = Server(
        {"/v1/completions": lambda b: httpx.Response(404, json={"error": {"message": "model 'm' not found"}})}
    )
    scorer = OpenAIScorer(URL, "m", transport=server.transport)
    with pytest.raises(AuditError) as info:
        scorer.score(TEXT)
    assert not isinstance(info.value, LikelihoodUnsupported)
    assert str(info.value) == f"{URL}/v1/completions failed for model 'm': HTTP 404: model 'm' not found"


def test_openai_generates_through_chat_or_completions() -> None:
    server = Server(
        {
            "/v1/chat/completions": lambda b: httpx.Response(200, json={"choices": [{"message": {"content": "hi"}}]}),
            "/v1/completions": lambda b: httpx.Response(200, json={"choices": [{"text": " there"}]}),
        }
    )
    scorer = OpenAIScorer(URL, "m", transport=server.transport)
    assert scorer.generate("Hello", max_tokens=4, seed=1, chat=True) == "hi"
    assert scorer.generate("Hello", max_tokens=4, seed=1) == " there"
    chat, plain = server.bodies
    common = {"model": "m", "max_tokens": 4, "temperature": 0, "seed": 1}
    assert chat == ("/v1/chat/completions", {**common, "messages": [{"role": "user", "content": "Hello"}]})
    assert plain == ("/v1/completions", {**common, "prompt": "Hello"})


def test_unreachable_server_is_one_line() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("All connection attempts failed", request=request)

    scorer = OpenAIScorer(URL, "m", transport=httpx.MockTransport(refuse))
    with pytest.raises(AuditError, match=r"^http://127.0.0.1:8000/v1/completions: cannot reach .*connection refused"):
        scorer.score(TEXT)


# -- Ollama API ---------------------------------------------------------------------------------------------
def test_ollama_refuses_likelihood_without_a_request_and_generates() -> None:
    server = Server({"/api/generate": lambda b: httpx.Response(200, json={"response": "ok", "done": True})})
    scorer = OllamaScorer(URL, "llama3", transport=server.transport)
    assert scorer.supports_likelihood is False
    with pytest.raises(LikelihoodUnsupported) as info:
        scorer.score(TEXT)
    message = str(info.value)
    assert message.startswith(f"Ollama's API (at {URL}) gives no prompt log-probabilities")
    assert "; run the likelihood suites in-process (lokal audit MODEL) or against `lokal serve`'s OpenAI API" in message
    assert ": the likelihood suites (occupations, crows-pairs, winobias, winogender, bbq) need them" in message
    assert server.bodies == []
    assert scorer.generate("Hi", max_tokens=3, seed=2) == "ok"
    assert scorer.generate("Hi", max_tokens=3, seed=2, chat=True) == "ok"
    assert server.bodies == [
        ("/api/generate", {"model": "llama3", "prompt": "Hi", "raw": raw, "stream": False,
                           "options": {"temperature": 0, "seed": 2, "num_predict": 3}})
        for raw in (True, False)
    ]  # fmt: skip


# -- choosing -----------------------------------------------------------------------------------------------
def test_open_scorer_with_an_explicit_api() -> None:
    transport = Server({}).transport
    assert isinstance(open_scorer("m", url=URL, api="openai", transport=transport), OpenAIScorer)
    assert isinstance(open_scorer("m", url=URL, api="ollama", transport=transport), OllamaScorer)
    with pytest.raises(AuditError, match="unknown API 'grpc'"):
        open_scorer("m", url=URL, api="grpc")


@pytest.mark.parametrize(
    ("lokal", "echoes", "expected"),
    [(True, True, OpenAIScorer), (True, False, OllamaScorer), (False, True, OllamaScorer)],
    ids=["lokal", "lokal-without-echo", "ollama"],
)
def test_lokal_serve_is_audited_through_its_openai_api(
    monkeypatch: pytest.MonkeyPatch, lokal: bool, echoes: bool, expected: type
) -> None:
    """`lokal serve` answers Ollama's `/api/version` (so detection says Ollama), names its pid on `/health`, and
    echoes prompt log-probabilities on `/v1/completions`. Ollama itself is never sent a likelihood probe."""

    async def detect(url: str, **kwargs: Any) -> str:
        return "ollama"

    monkeypatch.setattr("lokal.bench.targets.detect_api", detect)
    no_echo = httpx.Response(200, json={"choices": [{"text": "x", "logprobs": None}]})
    headers = {"X-Lokal-Pid": "123"} if lokal else {}
    server = Server(
        {
            "/health": lambda b: httpx.Response(200, json={"status": "ok"}, headers=headers),
            "/v1/completions": (lambda b: echo_answer(b, ["Hello"], [None])) if echoes else (lambda b: no_echo),
        }
    )
    assert type(open_scorer("m", url=URL, transport=server.transport)) is expected
    assert ("/v1/completions" in [path for path, _ in server.bodies]) is lokal


# -- lokal's own server: prompt log-probabilities on /v1/completions ----------------------------------------------
@pytest.fixture
def lokal_app(tmp_path: Path) -> Iterator[tuple[TestClient, FakeFactory]]:
    factory = FakeFactory(pieces=("Hello", ",", " world"))
    store = FakeStore([make_model("fake:latest")])
    config = make_settings(tmp_path)
    with TestClient(create_app(config, EngineManager(config, store, factory=factory), store=store), base_url=URL) as c:
        yield c, factory


def completion(client: TestClient, **body: Any) -> httpx.Response:
    return client.post("/v1/completions", json={"model": "fake", "prompt": TEXT, **body})


def test_echo_with_logprobs_and_no_tokens_gives_the_prompts_log_likelihood(lokal_app: Any) -> None:
    client, factory = lokal_app
    response = completion(client, echo=True, logprobs=1, max_tokens=0, temperature=0)
    assert response.status_code == 200, response.text
    body = response.json()
    (choice,) = body["choices"]
    assert (choice["text"], choice["finish_reason"]) == (TEXT, "length")
    assert choice["logprobs"] == {
        "tokens": ["t1", "t1", "t2", "t3"],
        "token_logprobs": [None, -1.0, -1.0, -1.0],
        "top_logprobs": [None, {"t1": -1.0}, {"t2": -1.0}, {"t3": -1.0}],
        "text_offset": [0, 2, 4, 6],  # running length of the token texts: 0, 0+2, 2+2, 4+2
    }
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 0, "total_tokens": 4}
    assert factory.engines[0].generate_calls == []  # nothing generated

    # The official client parses the legacy shape.
    bridge = httpx.MockTransport(lambda r: _forward(client, r))
    sdk = openai.OpenAI(base_url=f"{URL}/v1", api_key="x", http_client=httpx.Client(transport=bridge))
    parsed = sdk.completions.create(model="fake", prompt=TEXT, echo=True, logprobs=1, max_tokens=0)
    assert parsed.choices[0].logprobs.token_logprobs == [None, -1.0, -1.0, -1.0]
    assert parsed.choices[0].logprobs.tokens == ["t1", "t1", "t2", "t3"]


def _forward(client: TestClient, request: httpx.Request) -> httpx.Response:
    answer = client.request(request.method, request.url.path, content=request.content, headers=request.headers)
    return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def test_the_openai_scorer_reads_lokals_answer(lokal_app: Any) -> None:
    client, _ = lokal_app
    scorer = OpenAIScorer(URL, "fake", transport=httpx.MockTransport(lambda r: _forward(client, r)))
    assert scorer.supports_likelihood
    expected = [(1, None), (1, -1.0), (2, -1.0), (3, -1.0)]
    assert scorer.score(TEXT) == [TokenScore(None, f"t{t}", lp) for t, lp in expected]


def test_max_tokens_zero_without_logprobs_echoes_or_returns_nothing(lokal_app: Any) -> None:
    client, factory = lokal_app
    for echo, text in [(True, TEXT), (False, "")]:
        body = completion(client, echo=echo, max_tokens=0).json()
        assert (body["choices"][0]["text"], body["choices"][0]["logprobs"]) == (text, None)
        assert body["usage"]["prompt_tokens"] == 4
    assert factory.engines[0].generate_calls == []


def test_echo_puts_the_prompt_before_generated_text(lokal_app: Any) -> None:
    client, _ = lokal_app
    assert completion(client, echo=True, max_tokens=3).json()["choices"][0]["text"] == TEXT + "Hello, world"
    assert completion(client, max_tokens=3).json()["choices"][0]["text"] == "Hello, world"
    streamed = {"model": "fake", "prompt": TEXT, "echo": True, "stream": True}
    with client.stream("POST", "/v1/completions", json=streamed) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    assert "".join(e["choices"][0]["text"] for e in events) == TEXT + "Hello, world"
    assert events[0]["choices"][0]["text"] == TEXT


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"echo": True, "logprobs": 5, "max_tokens": 0}, "logprobs must be 0 or 1 with echo, got 5"),
        ({"echo": True, "logprobs": 1, "max_tokens": 4}, "needs max_tokens: 0"),
        ({"echo": True, "logprobs": 1}, "needs max_tokens: 0"),  # OpenAI's default is 16 tokens
        ({"logprobs": 21}, "logprobs must be between 0 and 20, got 21"),
        ({"echo": True, "logprobs": 1, "max_tokens": 0, "stream": True}, "send stream: false"),
        ({"echo": True, "logprobs": True, "max_tokens": 0}, "logprobs"),  # strict types: not a bool
    ],
)
def test_unsupported_logprob_requests_are_400_with_a_reason(
    lokal_app: Any, body: dict[str, Any], fragment: str
) -> None:
    client, _ = lokal_app
    response = completion(client, **body)
    assert response.status_code == 400
    assert fragment in response.json()["error"]["message"]
