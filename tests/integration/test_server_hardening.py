"""What keeps `lokal serve` serving: the error boundary, engines that fail and are replaced, store work that
cannot starve the rest, and model creation from uploads (never from a path), with the official `ollama` client."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Iterator

import httpx
import ollama
import pytest
from server_fixture import MODEL, MODEL_NAME, LiveServer, serve

import lokal.engine.llamacpp.batcher as batcher_module
from lokal import shapes

pytestmark = pytest.mark.integration

GENERATE = {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 3, "temperature": 0}}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serve(tmp_path_factory.mktemp("hardening"), context_length=256) as server:
        yield server


@pytest.fixture(scope="module")
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with live.http() as client:
        yield client


@pytest.fixture(scope="module")
def client(live: LiveServer) -> ollama.Client:
    return ollama.Client(host=live.url)


# -- request ids and the error boundary -------------------------------------------------------------------------


def test_every_answer_carries_a_request_id_and_a_sane_client_id_is_kept(http):
    first, second = http.get("/api/version"), http.get("/api/version")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert http.get("/api/tags", headers={"X-Request-Id": "trace-42"}).headers["x-request-id"] == "trace-42"
    odd = http.get("/api/tags", headers={"X-Request-Id": "a b\tc" + "x" * 100})
    assert odd.headers["x-request-id"] not in ("a b\tc" + "x" * 100, "")


def test_an_unexpected_exception_is_a_json_500_with_the_request_id_and_the_server_keeps_serving(
    live, http, monkeypatch, caplog
):
    def broken_list():
        raise RuntimeError("disk exploded")

    monkeypatch.setattr(live.app.state.store, "list", broken_list)
    for path, envelope in (("/api/tags", "ollama"), ("/v1/models", "openai")):
        response = http.get(path)
        assert response.status_code == 500 and response.headers["content-type"] == "application/json"
        rid = response.headers["x-request-id"]
        error = response.json()["error"]
        message = error["message"] if envelope == "openai" else error
        assert message == f"internal server error (request id {rid}); the server log has the details under that id"
        assert "disk exploded" not in response.text  # internals stay in the log
        assert any(rid in r.getMessage() and r.exc_info for r in caplog.records)
    monkeypatch.undo()
    assert http.get("/api/tags").status_code == 200
    assert http.post("/api/generate", json=GENERATE).status_code == 200


@pytest.mark.parametrize("path", ["/api/generate", "/v1/completions"])
def test_an_unexpected_exception_inside_a_stream_ends_it_with_an_error_that_names_the_request(
    live, http, monkeypatch, path
):
    calls = {"n": 0}
    real = shapes.generate_chunk

    def fails_on_the_second_piece(model, text):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("a bug in a chunk builder")
        return real(model, text)

    monkeypatch.setattr("lokal.server.ollama_api.shapes.generate_chunk", fails_on_the_second_piece)
    monkeypatch.setattr("lokal.server.openai_api.sse_event", _failing_after(2))
    body = (
        {**GENERATE, "stream": True, "options": {"num_predict": 8, "temperature": 0}}
        if path == "/api/generate"
        else {"model": MODEL, "prompt": "Hi", "max_tokens": 8, "temperature": 0, "stream": True}
    )
    with http.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        rid = response.headers["x-request-id"]
        text = response.read().decode()
    assert f"internal server error (request id {rid})" in text
    monkeypatch.undo()
    live.wait_idle()  # the cancelled sequence is freed
    assert http.post("/api/generate", json=GENERATE).status_code == 200


def _failing_after(n: int):
    from lokal.server import streaming

    seen = {"n": 0}

    def sse_event(obj):
        seen["n"] += 1
        if seen["n"] == n:
            raise RuntimeError("a bug in the SSE encoder")
        return streaming.sse_event(obj)

    return sse_event


# -- an engine that fails ---------------------------------------------------------------------------------------


def test_a_failed_engine_shows_in_health_and_is_replaced_at_the_next_request(live, http, monkeypatch):
    want = http.post("/api/generate", json=GENERATE).json()["response"]
    monkeypatch.setattr(batcher_module.L, "llama_decode", lambda ctx, batch: -1)
    with http.stream("POST", "/api/generate", json={**GENERATE, "stream": True}) as response:
        lines = [line for line in response.iter_lines() if line]
    assert response.status_code == 200
    assert "the engine stopped after an internal error: llama_decode failed with code -1" in lines[-1]
    monkeypatch.undo()

    health = http.get("/health")
    assert health.status_code == 503
    assert health.json()["status"] == "degraded"
    assert health.json()["failed"] == [{"model": MODEL_NAME, "error": "llama_decode failed with code -1"}]

    again = http.post("/api/generate", json=GENERATE)  # no operator: the next request reloads the model
    assert again.status_code == 200 and again.json()["response"] == want
    assert http.get("/health").json()["status"] == "ok"
    assert live.sample("lokal_engine_failures", "lokal_engine_failures_total", model=MODEL_NAME) == 1


# -- store work cannot take every thread ------------------------------------------------------------------------


def test_stuck_store_work_leaves_threads_for_everything_else(live, http, monkeypatch):
    """45 pulls that block (as reads of /proc/kmsg did) hold at most the store's 4 threads: listing and
    generating still answer while they wait."""
    release = threading.Event()
    started = threading.Semaphore(0)

    def stuck_pull(ref, **kwargs):
        started.release()
        release.wait(120)
        return live.app.state.store.resolve(MODEL)

    monkeypatch.setattr(live.app.state.store, "pull", stuck_pull)
    try:
        with concurrent.futures.ThreadPoolExecutor(45) as pool:
            pulls = [
                pool.submit(lambda: httpx.post(f"{live.url}/api/pull", json={"model": MODEL}, timeout=150).status_code)
                for _ in range(45)
            ]
            for _ in range(4):
                assert started.acquire(timeout=60)  # the store's threads are all busy now
            assert http.get("/api/tags").status_code == 200
            assert http.post("/api/generate", json=GENERATE).status_code == 200
            assert not any(p.done() for p in pulls)
            release.set()
            assert [p.result() for p in pulls] == [200] * 45
    finally:
        release.set()


# -- creating models: uploads and digests, never paths ----------------------------------------------------------


def test_create_from_an_uploaded_gguf_with_the_official_client(live, client, http, smollm2_model):
    digest = client.create_blob(smollm2_model.path)
    assert http.head(f"/api/blobs/{digest}").status_code == 200
    assert client.create("pirate", files={"model.gguf": digest}, system="You are a pirate.").status == "success"
    shown = http.post("/api/show", json={"model": "pirate"}).json()
    assert shown["system"] == "You are a pirate."

    made = http.post("/api/generate", json={**GENERATE, "model": "pirate"}).json()
    # The system prompt is in the prompt tokens the engine evaluated (SmolLM2's own default system prompt is not).
    engine = live.manager.get_loaded("pirate:latest").engine
    prompt = engine.detokenize(made["context"][: made["prompt_eval_count"]])
    assert "You are a pirate." in prompt and "SmolLM" not in prompt
    assert http.post("/api/blobs/" + digest, content=b"ignored").status_code == 200  # already there
    assert client.delete("pirate").status == "success"


def test_create_from_a_model_name_with_parameters_and_a_licence(client, http):
    response = client.create("steady", from_=MODEL, parameters={"temperature": 0, "num_predict": 4}, license="MIT")
    assert response.status == "success"
    shown = http.post("/api/show", json={"model": "steady"}).json()
    assert shown["license"] == "MIT" and "temperature 0" in shown["parameters"]
    answer = http.post("/api/generate", json={"model": "steady", "prompt": "Count to ten.", "stream": False})
    assert answer.json()["eval_count"] == 4  # its num_predict parameter applies
    assert client.delete("steady").status == "success"


TERSE_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\nTersely: {% endif %}"
)


def test_create_with_a_template_and_messages_uses_them(live, client, http):
    """A Jinja template and seed turns, through the official client: the created model renders its prompt with
    that template, the seed turns after the system turn and before the request's; show gives them back."""
    seed = [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "A terse helper."}]
    done = client.create("terse", from_=MODEL, template=TERSE_TEMPLATE, messages=seed, system="Be brief.")
    assert done.status == "success"
    made = http.post("/api/generate", json={**GENERATE, "model": "terse"}).json()
    engine = live.manager.get_loaded("terse:latest").engine
    prompt = engine.detokenize(made["context"][: made["prompt_eval_count"]])
    expected = (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWho are you?<|im_end|>\n"
        "<|im_start|>assistant\nA terse helper.<|im_end|>\n"
        f"<|im_start|>user\n{GENERATE['prompt']}<|im_end|>\n<|im_start|>assistant\nTersely: "
    )
    # detokenize writes no special tokens: compare the text between them
    assert prompt.endswith(expected.replace("<|im_start|>", "").replace("<|im_end|>", "")), prompt
    shown = client.show("terse")
    assert shown.template == TERSE_TEMPLATE
    assert 'MESSAGE user "Who are you?"' in shown.modelfile and "TEMPLATE" in shown.modelfile
    copied = client.create("terse2", from_="terse")  # a copy keeps them
    assert copied.status == "success" and client.show("terse2").template == TERSE_TEMPLATE
    for name in ("terse", "terse2"):
        assert client.delete(name).status == "success"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"template": "{{ .Prompt }}"}, "Ollama's Go template language"),
        ({"template": "{{ if .System }}{{ .System }}{{ end }}"}, "Ollama's Go template language"),
        ({"template": "{% for m in messages %}"}, "not a valid Jinja template"),
        ({"messages": [{"role": "tool", "content": "hi"}]}, "system, user or assistant turns"),
        ({"adapters": {"a.gguf": "sha256:" + "0" * 64}}, "'adapters' is not supported"),
        ({"quantize": "q4_K_M"}, "'quantize' is not supported"),
        ({"parameters": {"mirostat": 1}}, "lokal has no parameter 'mirostat'"),
        ({"parameters": {"temperature": "hot"}}, "'temperature' must be a number"),
    ],
)
def test_create_refuses_what_it_does_not_implement_by_name(http, body, fragment):
    response = http.post("/api/create", json={"model": "nope", "from": MODEL, "stream": False, **body})
    assert response.status_code == 400 and fragment in response.json()["error"], response.text
    assert "nope:latest" not in [m["name"] for m in http.get("/api/tags").json()["models"]]


def test_create_needs_a_name_or_an_uploaded_gguf_never_a_path(http, smollm2_model):
    def create(**body):
        return http.post("/api/create", json={"model": "nope", "stream": False, **body})

    assert "exactly one of 'from'" in create().json()["error"]
    assert (
        "exactly one of 'from'" in create(**{"from": MODEL, "files": {"a.gguf": "sha256:" + "0" * 64}}).json()["error"]
    )
    assert "not a path" in create(**{"from": str(smollm2_model.path)}).json()["error"]
    missing = create(files={"model.gguf": "sha256:" + "0" * 64})
    assert missing.status_code == 400 and "upload it first with POST /api/blobs/sha256:" in missing.json()["error"]
    safetensors = create(files={"model.safetensors": "sha256:" + "0" * 64})
    assert safetensors.status_code == 400 and "one .gguf file" in safetensors.json()["error"]
    bad = create(files={"model.gguf": "../../etc/passwd"})
    assert bad.status_code == 400 and "invalid digest" in bad.json()["error"]


def test_an_upload_whose_bytes_do_not_match_is_refused_and_nothing_is_kept(live, http):
    digest = "sha256:" + "1" * 64
    response = http.post(f"/api/blobs/{digest}", content=b"not what the digest says")
    assert response.status_code == 400 and "do not match their digest" in response.json()["error"]
    assert http.head(f"/api/blobs/{digest}").status_code == 404
    layout = live.app.state.store.layout
    assert not layout.uploads.exists() or [p.name for p in layout.uploads.iterdir()] == []
