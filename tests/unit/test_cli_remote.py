"""The CLI's remote mode (`lokal run` and friends through a server at `OLLAMA_HOST`): its HTTP side, on a port
where nothing listens and on a scripted server (httpx.MockTransport)."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
from fakes import make_settings

from lokal import http_client
from lokal.cli.remote import RemoteError, RemoteServer


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_remote_server_is_not_found_where_nothing_listens(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, host=f"0.0.0.0:{_closed_port()}")  # a wildcard bind is looked for on loopback
    assert RemoteServer.find(settings) is None


def test_remote_server_client_and_errors() -> None:
    remote = RemoteServer("http://127.0.0.1:1", api_key="sk-2")
    assert remote._client.timeout == httpx.Timeout(None, connect=5.0)  # a model may load for minutes
    assert remote._client.headers["Authorization"] == "Bearer sk-2"
    assert remote._client.trust_env is False
    remote.close()

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/show":
            return httpx.Response(404, json={"error": "model 'x' not found"})
        return httpx.Response(500, content=b"boom")

    remote._client = http_client.make_client(remote.base_url, timeout_s=None, transport=httpx.MockTransport(answer))
    with pytest.raises(RemoteError) as caught:
        remote.post("/api/show", {"model": "x"})
    assert str(caught.value) == "model 'x' not found (from the server at http://127.0.0.1:1)"
    assert caught.value.status_code == 404
    with pytest.raises(RemoteError) as caught:
        remote.get("/api/ps")
    assert str(caught.value) == "boom (from the server at http://127.0.0.1:1)"
    assert caught.value.status_code == 500
    remote.close()
