"""`lokal serve` under load and at its limits, on a real uvicorn: many streams at once, clients that leave,
a full queue, prompts longer than the context, the API key and Host guards, `/health` and `/metrics`.

Nothing here asserts a wall-clock duration. Long requests are a raw counting prompt, which the model
continues greedily for ~1000 tokens (tens of seconds): the tests close them themselves, long before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import openai
import pytest
from server_fixture import MODEL, MODEL_NAME, LiveServer, metric_value, metrics_delta, serve

from lokal.engine.stream import TokenStream

pytestmark = pytest.mark.integration

BUSY = "server busy, please try again.  maximum pending requests exceeded"
#: Greedy counting goes on until num_predict (or the context) ends it: a request that stays running.
LONG = {
    "model": MODEL,
    "prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,",
    "raw": True,
    "options": {"temperature": 0, "num_predict": 1000},
}
SHORT = {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}}


@pytest.fixture(scope="module")
def small_context_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serve(tmp_path_factory.mktemp("small-ctx"), context_length=256) as live:
        yield live


@pytest.fixture(scope="module")
def wide_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serve(tmp_path_factory.mktemp("wide"), num_parallel=16) as live:
        yield live


@pytest.fixture(scope="module")
def single_slot_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serve(tmp_path_factory.mktemp("single-slot"), num_parallel=1, max_queue=1) as live:
        yield live


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serve(tmp_path_factory.mktemp("keyed"), api_key="secret") as live:
        yield live


@contextlib.contextmanager
def streaming(live: LiveServer, path: str, body: dict[str, Any], *, first_line: bool = True) -> Iterator[Any]:
    """A raw streaming request on its own connection; leaving the block disconnects (closes the socket)."""
    with live.http() as client, client.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        if first_line:
            assert next(lines)
        yield lines


@contextlib.contextmanager
def running_long_request(live: LiveServer) -> Iterator[None]:
    """One long generation holding a sequence slot for the duration of the block."""
    with streaming(live, "/api/generate", LONG):
        live.wait_for(lambda: live.counts()[0] == 1, what="the long request to run")
        yield


# -- health -----------------------------------------------------------------------------------------


def test_health(server):
    with server.http() as http:
        response = http.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_health_after_preloading(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("preload"), preload=(MODEL,)) as live, live.http() as http:
        response = http.get("/health")
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "loaded": [MODEL_NAME]}
        ps = http.get("/api/ps").json()["models"]  # loaded at start-up, before any request
        assert [m["name"] for m in ps] == [MODEL_NAME]
        assert ps[0]["expires_at"] > "2100"  # preloaded models stay loaded


# -- many at once -----------------------------------------------------------------------------------

PROMPTS = [
    "Write a sentence about the sea.",
    "Name a famous painter.",
    "What is two plus two?",
    "Describe a cat.",
    "Give me a tip for cooking rice.",
    "What is the capital of Italy?",
    "Say something about winter.",
    "Why is the sky blue?",
    "Name a planet.",
    "What do bees make?",
    "Suggest a name for a dog.",
    "What colour is grass?",
    "Tell me a fact about the moon.",
    "How many legs does a spider have?",
    "Name a musical instrument.",
    "What is ice made of?",
]
N_PREDICT = 16


def test_sixteen_concurrent_streams_match_their_solo_answers(wide_server):
    live = wide_server
    solo_client = ollama.Client(host=live.url, timeout=120)
    solo = [
        solo_client.chat(
            MODEL, [{"role": "user", "content": p}], options={"temperature": 0, "num_predict": N_PREDICT}
        ).message.content
        for p in PROMPTS
    ]
    assert all(solo) and len(set(solo)) > 8

    async def main() -> tuple[list[str], list[int]]:
        first_chunk = asyncio.Event()
        native = ollama.AsyncClient(host=live.url, timeout=120)
        compat = openai.AsyncOpenAI(base_url=live.v1, api_key="x", max_retries=0, timeout=120)

        async def via_ollama(prompt: str) -> str:
            parts = []
            stream = await native.chat(
                MODEL,
                [{"role": "user", "content": prompt}],
                stream=True,
                options={"temperature": 0, "num_predict": N_PREDICT},
            )
            async for chunk in stream:
                first_chunk.set()
                parts.append(chunk.message.content)
            return "".join(parts)

        async def via_openai(prompt: str) -> str:
            stream = await compat.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": prompt}],
                temperature=0,
                max_tokens=N_PREDICT,
                stream=True,
            )
            parts = []
            async for chunk in stream:
                first_chunk.set()
                parts.append(chunk.choices[0].delta.content or "")
            return "".join(parts)

        async def probe() -> list[int]:
            await first_chunk.wait()
            async with httpx.AsyncClient(base_url=live.url, timeout=60) as http:
                health, metrics = await asyncio.gather(http.get("/health"), http.get("/metrics"))
            return [health.status_code, metrics.status_code]

        jobs = [via_ollama(p) if i % 2 == 0 else via_openai(p) for i, p in enumerate(PROMPTS)]
        *texts, statuses = await asyncio.gather(*jobs, probe())
        return texts, statuses

    texts, statuses = asyncio.run(main())
    assert statuses == [200, 200]  # the event loop answers while 16 sequences decode
    for prompt, together, alone in zip(PROMPTS, texts, solo, strict=True):
        assert together == alone, prompt
    live.wait_idle()
    assert live.sample("lokal_sequence_slots", model=MODEL_NAME) == 16


# -- clients that leave -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/generate", LONG),
        ("/v1/completions", {"model": MODEL, "prompt": LONG["prompt"], "temperature": 0, "max_tokens": 1000}),
    ],
    ids=["ollama", "openai"],
)
def test_a_client_that_disconnects_mid_stream_frees_its_slot(server, monkeypatch, path, body):
    cancelled: list[TokenStream] = []
    original = TokenStream.cancel

    def spy(self: TokenStream) -> None:
        cancelled.append(self)
        original(self)

    monkeypatch.setattr(TokenStream, "cancel", spy)
    with streaming(server, path, body):
        server.wait_for(lambda: server.counts() == (1, 0), what="the stream to be decoding")
    # The socket is closed: the server must cancel the engine request and free the sequence.
    server.wait_idle()
    assert cancelled and all(s.cancelled for s in cancelled)
    with server.http() as http:
        assert http.post("/api/generate", json=SHORT).status_code == 200


def test_full_queue_is_503_at_once_with_retry_after(single_slot_server):
    live = single_slot_server
    with running_long_request(live):
        with streaming(live, "/api/generate", {**SHORT, "options": {"num_predict": 4}}, first_line=False):
            live.wait_for(lambda: live.counts() == (1, 1), what="the second request to queue")

            with live.http() as http:
                response = http.post("/api/generate", json=SHORT)
                assert response.status_code == 503
                assert response.headers["retry-after"] == "1"
                assert response.json() == {"error": BUSY}

                compat = http.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user"}]})
                assert compat.status_code == 503
                assert compat.headers["retry-after"] == "1"
                error = compat.json()["error"]
                assert error["message"] == BUSY
                assert error["type"] == "api_error"

            with pytest.raises(ollama.ResponseError) as info:
                ollama.Client(host=live.url, timeout=120).chat(MODEL, [{"role": "user", "content": "Hi"}])
            assert info.value.status_code == 503
            assert info.value.error == BUSY

            client = openai.OpenAI(base_url=live.v1, api_key="x", max_retries=0, timeout=120)
            with pytest.raises(openai.InternalServerError) as raised:
                client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
            assert isinstance(raised.value, openai.APIStatusError)
            assert raised.value.status_code == 503
            assert raised.value.response.headers["retry-after"] == "1"
            assert live.counts() == (1, 1)  # the refused requests took no place
        # The queued request's client left: it leaves the queue while the long one still runs.
        live.wait_for(lambda: live.counts() == (1, 0), what="the queued request to leave")
    live.wait_idle()
    with live.http() as http:
        assert http.post("/api/generate", json=SHORT).status_code == 200


def test_requests_cancelled_while_queued_leave_the_queue(single_slot_server):
    live = single_slot_server

    async def queue_then_give_up() -> None:
        async with httpx.AsyncClient(base_url=live.url, timeout=120) as http:
            waiting = asyncio.create_task(http.post("/api/generate", json=SHORT))  # not streamed
            while await asyncio.to_thread(live.counts) != (1, 1):
                assert not waiting.done(), "the request should wait behind the running one"
                await asyncio.sleep(0.02)
            waiting.cancel()  # the client gives up: httpx closes the connection
            with contextlib.suppress(asyncio.CancelledError):
                await waiting

    with running_long_request(live):
        asyncio.run(queue_then_give_up())
        live.wait_for(lambda: live.counts() == (1, 0), what="the abandoned request to leave the queue")

        with streaming(live, "/api/generate", SHORT, first_line=False):  # streamed: nothing written yet
            live.wait_for(lambda: live.counts() == (1, 1), what="the next request to queue")
        live.wait_for(lambda: live.counts() == (1, 0), what="the closed stream to leave the queue")
    live.wait_idle()


def test_a_queued_request_runs_when_the_slot_frees(single_slot_server):
    live = single_slot_server
    body = {**SHORT, "options": {"temperature": 0, "num_predict": 4}}
    with contextlib.ExitStack() as long_request:
        long_request.enter_context(running_long_request(live))
        with streaming(live, "/api/generate", body, first_line=False) as lines:
            live.wait_for(lambda: live.counts() == (1, 1), what="the second request to queue")
            long_request.close()  # the long request's client leaves; the queued one takes the slot
            chunks = [json.loads(line) for line in lines]
    assert chunks[-1]["done"] is True
    assert 0 < chunks[-1]["eval_count"] <= 4
    live.wait_idle()


# -- prompts longer than the context ----------------------------------------------------------------

OVERFLOW = re.compile(r"prompt is (\d+) tokens but the context window is 256 tokens")
LONG_PROMPT = "The quick brown fox jumps over the lazy dog. " * 40


def test_a_prompt_longer_than_the_context_is_400_naming_both_numbers(small_context_server):
    live = small_context_server
    with live.http() as http:
        http.post("/api/generate", json=SHORT).raise_for_status()  # loads the model with the 256-token context
        engine = live.manager.get_loaded(MODEL_NAME).engine
        assert engine.context_length == 256
        n_tokens = len(engine.tokenize(LONG_PROMPT))
        assert n_tokens > 256

        for stream in (False, True):  # a streamed request fails before its first byte: a plain 400 too
            response = http.post(
                "/api/generate", json={"model": MODEL, "prompt": LONG_PROMPT, "raw": True, "stream": stream}
            )
            assert response.status_code == 400, response.text
            match = OVERFLOW.search(response.json()["error"])
            assert match, response.text
            assert int(match.group(1)) == n_tokens

        chat = http.post(
            "/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": LONG_PROMPT}], "stream": False}
        )
        assert chat.status_code == 400
        assert OVERFLOW.search(chat.json()["error"])
        assert int(OVERFLOW.search(chat.json()["error"]).group(1)) > n_tokens  # the chat template adds tokens

        compat = http.post("/v1/completions", json={"model": MODEL, "prompt": LONG_PROMPT})
        assert compat.status_code == 400
        assert compat.json()["error"]["type"] == "invalid_request_error"
        assert int(OVERFLOW.search(compat.json()["error"]["message"]).group(1)) == n_tokens

        # The server still serves, and the same prompt fits when the request asks for a larger context.
        assert http.post("/api/generate", json=SHORT).status_code == 200
        bigger = http.post(
            "/api/generate",
            json={
                "model": MODEL,
                "prompt": LONG_PROMPT,
                "raw": True,
                "stream": False,
                "options": {"num_ctx": 1024, "num_predict": 2},
            },
        )
        assert bigger.status_code == 200, bigger.text
        assert bigger.json()["prompt_eval_count"] == n_tokens

    with pytest.raises(ollama.ResponseError) as info:
        ollama.Client(host=live.url, timeout=120).chat(MODEL, [{"role": "user", "content": LONG_PROMPT}])
    assert info.value.status_code == 400
    assert OVERFLOW.search(info.value.error)
    client = openai.OpenAI(base_url=live.v1, api_key="x", max_retries=0, timeout=120)
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": LONG_PROMPT}])
    assert OVERFLOW.search(raised.value.message)


# -- API key ----------------------------------------------------------------------------------------


def test_api_key_is_required_except_on_the_open_routes(keyed_server, monkeypatch):
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)  # the ollama client would send it
    live = keyed_server
    with live.http() as http:
        response = http.get("/api/tags")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert "unauthorized" in response.json()["error"]
        assert http.get("/api/tags", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.post("/api/generate", json=SHORT).status_code == 401
        compat = http.get("/v1/models")
        assert compat.status_code == 401
        assert compat.json()["error"]["type"] == "authentication_error"

        assert http.get("/api/tags", headers={"Authorization": "Bearer secret"}).status_code == 200
        assert http.get("/").status_code == 200
        assert http.head("/").status_code == 200
        assert http.get("/health").status_code == 200

    with pytest.raises(ollama.ResponseError) as info:
        ollama.Client(host=live.url, timeout=120).list()
    assert info.value.status_code == 401

    keyed = ollama.Client(host=live.url, timeout=120, headers={"Authorization": "Bearer secret"})
    assert isinstance(keyed.list().models, list)
    answer = keyed.chat(MODEL, [{"role": "user", "content": "Hi"}], options={"num_predict": 2})
    assert answer.done is True
    assert [
        c.done for c in keyed.chat(MODEL, [{"role": "user", "content": "Hi"}], stream=True, options={"num_predict": 2})
    ][-1]

    client = openai.OpenAI(base_url=live.v1, api_key="secret", max_retries=0, timeout=120)
    assert MODEL_NAME in [m.id for m in client.models.list().data]
    completion = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert completion.choices[0].message.role == "assistant"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=live.v1, api_key="wrong", max_retries=0, timeout=120).models.list()


# -- Host header ------------------------------------------------------------------------------------


def test_a_foreign_host_header_is_403(server):
    with server.http() as http:
        refused = http.get("/api/version", headers={"Host": "evil.example"})
        assert refused.status_code == 403
        assert "error" in refused.json()
        assert (
            http.post("/api/generate", json=SHORT, headers={"Host": f"evil.example:{server.port}"}).status_code == 403
        )
        compat = http.get("/v1/models", headers={"Host": "evil.example"})
        assert compat.status_code == 403
        assert compat.json()["error"]["type"] == "permission_error"

        for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", "localhost", f"[::1]:{server.port}"):
            assert http.get("/api/version", headers={"Host": host}).status_code == 200, host
        assert http.get("/").status_code == 200


# -- metrics ----------------------------------------------------------------------------------------


def test_metrics_count_requests_tokens_and_first_token_latency(server):
    client = ollama.Client(host=server.url, timeout=120)
    client.generate(MODEL, "Hi", options={"num_predict": 1})  # the model is loaded before we measure
    before = server.metrics()

    answer = client.generate(MODEL, "Name a colour.", options={"temperature": 0, "num_predict": 8})
    streamed = list(client.chat(MODEL, [{"role": "user", "content": "Hi"}], stream=True, options={"num_predict": 4}))
    with server.http() as http:
        assert http.post("/api/generate", json={**SHORT, "model": "no-such-model"}).status_code == 404
        assert http.post("/v1/chat/completions", json={"model": MODEL, "messages": [], "x": 1}).status_code == 400
        scrape = http.get("/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    after = server.metrics()

    def delta(family: str, sample: str, **labels: str) -> float:
        return metrics_delta(before, after, family, sample, **labels)

    requests = "lokal_requests_total"
    assert delta("lokal_requests", requests, route="/api/generate", status="200") == 1
    assert delta("lokal_requests", requests, route="/api/generate", status="404") == 1
    assert delta("lokal_requests", requests, route="/api/chat", status="200") == 1
    assert delta("lokal_requests", requests, route="/v1/chat/completions", status="400") == 1
    assert delta("lokal_request_duration_seconds", "lokal_request_duration_seconds_count", route="/api/chat") == 1

    final = streamed[-1]
    generated = delta("lokal_generated_tokens", "lokal_generated_tokens_total", model=MODEL_NAME)
    prompted = delta("lokal_prompt_tokens", "lokal_prompt_tokens_total", model=MODEL_NAME)
    assert generated == answer.eval_count + final.eval_count > 0
    assert prompted == answer.prompt_eval_count + final.prompt_eval_count > 0

    ttft = "lokal_time_to_first_token_seconds"
    assert delta(ttft, f"{ttft}_count", model=MODEL_NAME) == 2
    assert metric_value(after, ttft, f"{ttft}_sum", model=MODEL_NAME) > 0

    assert metric_value(after, "lokal_loaded_models") == 1
    assert metric_value(after, "lokal_sequence_slots", model=MODEL_NAME) == 4
    assert metric_value(after, "lokal_running_sequences", model=MODEL_NAME) == 0
    assert metric_value(after, "lokal_queue_depth", model=MODEL_NAME) == 0
    assert metric_value(after, "process_resident_memory_bytes") > 0
