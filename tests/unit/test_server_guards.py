"""The server's guards and envelopes on a fake engine (no model): CORS, API key, Host, body limit, 400s."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeFactory, FakeStore, make_model, make_settings
from fastapi.testclient import TestClient

from lokal.engine.manager import EngineManager
from lokal.server.app import create_app


def _client(tmp_path: Path, **settings: object) -> TestClient:
    store = FakeStore([make_model("fake:latest")])
    config = make_settings(tmp_path, **settings)
    manager = EngineManager(config, store, factory=FakeFactory())
    return TestClient(create_app(config, manager, store=store), base_url="http://localhost:11434")


@pytest.fixture
def client(tmp_path: Path):
    with _client(tmp_path) as c:
        yield c


def _preflight(client: TestClient, origin: str):
    return client.options("/api/chat", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1", "app://desktop", "vscode-webview://x"])
def test_cors_allows_local_origins(client: TestClient, origin: str) -> None:
    response = _preflight(client, origin)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin


def test_cors_refuses_other_origins(client: TestClient) -> None:
    response = _preflight(client, "https://evil.example")
    assert "access-control-allow-origin" not in response.headers


def test_cors_allows_configured_origins(tmp_path: Path) -> None:
    with _client(tmp_path, origins=("https://app.example",)) as c:
        assert _preflight(c, "https://app.example").headers["access-control-allow-origin"] == "https://app.example"


def test_foreign_host_header_is_refused_on_loopback(client: TestClient) -> None:
    response = client.get("/api/tags", headers={"Host": "evil.example:11434"})
    assert response.status_code == 403
    assert "localhost" in response.json()["error"]


def test_any_host_is_accepted_when_bound_to_all_interfaces(tmp_path: Path) -> None:
    with _client(tmp_path, host="0.0.0.0:11434") as c:
        assert c.get("/api/tags", headers={"Host": "myserver.example:11434"}).status_code == 200


def test_api_key(tmp_path: Path) -> None:
    with _client(tmp_path, api_key="s3cret") as c:
        assert c.get("/api/tags").status_code == 401
        assert c.get("/v1/models").json()["error"]["type"] == "authentication_error"
        assert c.get("/api/tags", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/tags", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/").status_code == 200
        assert c.get("/health").status_code == 200


def test_body_limit(tmp_path: Path) -> None:
    with _client(tmp_path, max_body_bytes=2048) as c:
        response = c.post("/api/generate", json={"model": "fake", "prompt": "x" * 5000})
        assert response.status_code == 413
        assert "limit is 2048 bytes" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "invalid JSON"),
        (b'{"prompt": "hi"}', "model is required"),
        (b'{"model": "fake", "prompt": "hi", "stream": "yes"}', "stream"),
        (b'{"model": "fake", "prompt": "hi", "options": {"num_predict": -5}}', "num_predict"),
        (b'{"model": "fake", "prompt": "hi", "raw": true, "system": "s"}', "raw mode"),
    ],
)
def test_bad_requests_are_400_with_a_message(client: TestClient, body: bytes, fragment: str) -> None:
    response = client.post("/api/generate", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert fragment in response.json()["error"]


def test_openai_errors_use_openais_envelope(client: TestClient) -> None:
    response = client.post("/v1/chat/completions", json={"model": "fake", "messages": "nope"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "messages" in error["message"]
    missing = client.post(
        "/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]}
    )
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"


def test_an_engine_error_while_collecting_is_a_json_500(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not an ExceptionGroup from the disconnect watcher's task group, nor a bare traceback."""
    from lokal import inference
    from lokal.errors import EngineError

    start = inference.start_generate

    class Failing:
        def __aiter__(self):
            return self._pieces()

        async def _pieces(self):
            yield "x"
            raise EngineError("decode failed")

        def cancel(self) -> None:
            pass

    def failing_start(*args, **kwargs):
        run = start(*args, **kwargs)
        run.stream = Failing()
        return run

    monkeypatch.setattr(inference, "start_generate", failing_start)
    response = client.post("/api/generate", json={"model": "fake", "prompt": "hi", "stream": False})
    assert response.status_code == 500
    assert response.json() == {"error": "decode failed"}
    assert client.get("/api/tags").status_code == 200


@pytest.mark.parametrize(
    ("host", "key", "warns"),
    [
        ("0.0.0.0", None, True),
        ("::", None, True),
        ("192.168.1.5", None, True),
        ("0.0.0.0", "s3cret", False),
        ("127.0.0.1", None, False),
        ("::1", None, False),
        ("localhost", None, False),
    ],
)
def test_listening_beyond_loopback_without_a_key_is_warned_about(host, key, warns):
    from lokal.server.security import exposure_warning

    warning = exposure_warning(host, 11434, key)
    assert (warning is not None) == warns
    if warns:
        assert f"listening on {host}:11434 without an API key" in warning and "LOKAL_API_KEY" in warning


def test_openai_options_extension_values_are_not_replaced_by_the_defaults():
    from lokal.server.openai_api import ChatCompletionRequest

    def options(**body):
        return ChatCompletionRequest(model="m", messages=[], **body).ollama_options()

    assert options()["temperature"] == options()["top_p"] == 1.0  # Ollama's OpenAI-layer defaults
    assert options(options={"temperature": 0, "top_p": 0.5})["temperature"] == 0
    assert options(options={"temperature": 0, "top_p": 0.5})["top_p"] == 0.5
    assert options(temperature=0.3, options={"temperature": 0})["temperature"] == 0.3  # the OpenAI field wins


def test_a_request_that_raises_unexpectedly_is_a_json_500_naming_its_id(tmp_path: Path, monkeypatch):
    with _client(tmp_path) as c:
        monkeypatch.setattr(c.app.state.store, "list", lambda: 1 / 0)
        response = c.get("/api/tags")
        assert response.status_code == 500
        rid = response.headers["x-request-id"]
        assert response.json() == {
            "error": f"internal server error (request id {rid}); the server log has the details under that id"
        }
