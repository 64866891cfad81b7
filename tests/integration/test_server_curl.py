"""curl exactly as Ollama's README shows it: `curl URL/api/generate -d '{...}'`, with no Content-Type header
(curl then sends `application/x-www-form-urlencoded`), against the real server and the bundled model. Ollama
parses every body as JSON whatever its content type; so must lokal, on every POST route. The real curl binary,
not a Python client, so what goes over the wire is what a user's terminal sends."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
from server_fixture import MODEL, LiveServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl binary"),
]


def curl(server: LiveServer, path: str, body: dict[str, Any], *, method: str | None = None) -> tuple[int, str]:
    """`curl -s URL -d 'BODY'` (plus `-X METHOD` where the README has it); the status and the body."""
    command = ["curl", "-s", "-w", "\n%{http_code}", f"{server.url}{path}", "-d", json.dumps(body)]
    if method:
        command[1:1] = ["-X", method]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    text, _, status = done.stdout.rpartition("\n")
    return int(status), text


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_generate_streams_ndjson(server):
    status, text = curl(
        server, "/api/generate", {"model": MODEL, "prompt": "Why is the sky blue?", "options": {"num_predict": 4}}
    )
    assert status == 200, text
    chunks = lines(text)
    assert chunks[-1]["done"] is True and chunks[-1]["eval_count"] > 0
    assert "".join(c["response"] for c in chunks[:-1])


def test_chat_streams_ndjson(server):
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "why is the sky blue?"}],
        "options": {"num_predict": 4},
    }
    status, text = curl(server, "/api/chat", body)
    assert status == 200, text
    chunks = lines(text)
    assert chunks[-1]["done"] is True and chunks[0]["message"]["role"] == "assistant"


def test_chat_not_streamed(server):
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": False,
        "options": {"num_predict": 2},
    }
    status, text = curl(server, "/api/chat", body)
    assert status == 200, text
    assert json.loads(text)["message"]["content"]


def test_embed_and_embeddings(server):
    status, text = curl(server, "/api/embed", {"model": MODEL, "input": "Why is the sky blue?"})
    assert status == 200, text
    assert len(json.loads(text)["embeddings"]) == 1
    status, text = curl(server, "/api/embeddings", {"model": MODEL, "prompt": "Why is the sky blue?"})
    assert status == 200, text
    assert json.loads(text)["embedding"]


def test_show_copy_delete(server):
    status, text = curl(server, "/api/show", {"model": MODEL})
    assert status == 200, text
    assert "model_info" in json.loads(text)
    status, text = curl(server, "/api/copy", {"source": MODEL, "destination": "curl-copy"})
    assert status == 200, text
    status, text = curl(server, "/api/delete", {"model": "curl-copy"}, method="DELETE")
    assert status == 200, text


def test_create_from_an_existing_model(server):
    status, text = curl(server, "/api/create", {"model": "curl-made", "from": MODEL, "system": "You are terse."})
    assert status == 200, text
    assert lines(text)[-1] == {"status": "success"}
    status, text = curl(server, "/api/show", {"model": "curl-made"})
    assert status == 200 and json.loads(text)["system"] == "You are terse."
    assert curl(server, "/api/delete", {"model": "curl-made"}, method="DELETE")[0] == 200


def test_pull_by_name(server):
    status, text = curl(server, "/api/pull", {"model": MODEL, "stream": False})
    assert status == 200, text
    assert json.loads(text)["status"] == "success"


def test_openai_routes_without_a_content_type(server):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    status, text = curl(server, "/v1/chat/completions", body)
    assert status == 200, text
    assert json.loads(text)["object"] == "chat.completion"
    status, text = curl(server, "/v1/completions", {"model": MODEL, "prompt": "Hi", "max_tokens": 2})
    assert status == 200, text
    assert json.loads(text)["object"] == "text_completion"
    status, text = curl(server, "/v1/embeddings", {"model": MODEL, "input": "Hi"})
    assert status == 200, text
    assert json.loads(text)["object"] == "list"
    status, text = curl(server, "/v1/responses", {"model": MODEL, "input": "Hi", "max_output_tokens": 2})
    assert status == 200, text
    assert json.loads(text)["object"] == "response"


def test_a_refused_field_says_so_to_curl_too(server):
    status, text = curl(server, "/api/generate", {"model": MODEL, "prompt": "Hi", "think": True})
    assert status == 400
    assert json.loads(text) == {"error": f"model '{MODEL}' does not support thinking"}


CURLED = {
    "/api/generate",
    "/api/chat",
    "/api/embed",
    "/api/embeddings",
    "/api/show",
    "/api/copy",
    "/api/delete",
    "/api/create",
    "/api/pull",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
}
RAW_BODY = {"/api/blobs/{digest}"}  # a file's bytes (`curl -T`), not JSON


def test_every_route_with_a_json_body_has_a_curl_test_above(server):
    spec = server.app.openapi()
    with_body = {path for path, operations in spec["paths"].items() if set(operations) - {"get", "head"}}
    assert with_body - RAW_BODY == CURLED, "a new POST/DELETE route needs a curl test here (and a CURLED entry)"
