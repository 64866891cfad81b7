"""lokal.http_client: addresses, keys, how clients are made, and the one-line error texts, against values worked
out by hand."""

from __future__ import annotations

from types import SimpleNamespace

import aiohttp
import httpx
import pytest

from lokal.errors import LokalError
from lokal.http_client import (
    InvalidURL,
    api_key_from,
    bound_url,
    error_message,
    error_text,
    is_loopback,
    is_loopback_host,
    json_or_none,
    make_async_client,
    make_client,
    normalize_url,
    not_json_text,
    transport_error,
    unreachable_text,
)


# -- addresses ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("localhost:11434/", "http://localhost:11434"),
        ("  http://127.0.0.1:8080  ", "http://127.0.0.1:8080"),
        ("https://api.example.com/v1/", "https://api.example.com/v1"),
        ("http://h:8080/v1///", "http://h:8080/v1"),
        ("[::1]:9", "http://[::1]:9"),
        ("gpu-box.example", "http://gpu-box.example"),
    ],
)
def test_normalize_url(given: str, normalized: str) -> None:
    assert normalize_url(given) == normalized


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", "empty URL: give the server's address, e.g. http://127.0.0.1:11434"),
        (" / ", "empty URL: give the server's address, e.g. http://127.0.0.1:11434"),
        ("ftp://example.com", "invalid URL 'ftp://example.com': expected http(s)://HOST[:PORT]"),
        ("http://:80", "invalid URL 'http://:80': expected http(s)://HOST[:PORT]"),
        ("http://h:abc", "invalid URL 'http://h:abc': Invalid port: 'abc'"),
    ],
)
def test_a_url_that_cannot_be_one_is_an_invalid_url(given: str, message: str) -> None:
    with pytest.raises(InvalidURL) as caught:
        normalize_url(given)
    assert str(caught.value) == message
    assert isinstance(caught.value, LokalError) and isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("0.0.0.0", 11434, "http://127.0.0.1:11434"),
        ("::", 8080, "http://127.0.0.1:8080"),
        ("", 80, "http://127.0.0.1:80"),
        ("::1", 9, "http://[::1]:9"),
        ("192.168.1.2", 11434, "http://192.168.1.2:11434"),
        ("localhost", 1, "http://localhost:1"),
    ],
)
def test_bound_url(host: str, port: int, url: str) -> None:
    assert bound_url(host, port) == url


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.0.2.1", False),
        ("localhost.example", False),
        ("::", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:11434", True),
        ("https://[::1]:8443/v1", True),
        ("http://LOCALHOST:1", True),
        ("http://192.0.2.1:11434", False),
        ("http://gpu-box.example:11434", False),
    ],
)
def test_is_loopback(url: str, loopback: bool) -> None:
    assert is_loopback(url) is loopback


def test_api_key_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOKAL_TEST_KEY", "sk-123")
    monkeypatch.setenv("LOKAL_TEST_EMPTY", "")
    monkeypatch.delenv("LOKAL_TEST_UNSET", raising=False)
    assert api_key_from("LOKAL_TEST_KEY") == "sk-123"
    assert api_key_from("LOKAL_TEST_EMPTY") is None
    assert api_key_from("LOKAL_TEST_UNSET") is None
    assert api_key_from(None) is None
    assert api_key_from("") is None


# -- clients --------------------------------------------------------------------------------------------------------
def test_blocking_and_async_clients_are_made_the_same_way() -> None:
    for url, trusted in (("http://127.0.0.1:11434", False), ("http://192.0.2.1:11434", True)):
        blocking = make_client(url, timeout_s=300, api_key="sk-1")
        inner = make_async_client(url, timeout_s=300, api_key="sk-1", transport=httpx.MockTransport(lambda r: None))
        try:
            for client in (blocking, inner):
                assert client.trust_env is trusted, url  # no proxy from the environment for loopback
                assert client.headers["Authorization"] == "Bearer sk-1"
                assert client.timeout == httpx.Timeout(300, connect=3.0)
                assert str(client.base_url).rstrip("/") == url
        finally:
            blocking.close()


def test_no_key_no_authorization_header_and_no_limit_between_bytes_when_asked() -> None:
    with make_client("http://127.0.0.1:1", timeout_s=None, connect_timeout_s=5.0) as client:
        assert "Authorization" not in client.headers
        assert client.timeout == httpx.Timeout(None, connect=5.0)
        assert client.timeout.read is None


def test_the_key_goes_to_the_server_and_is_not_in_the_clients_repr() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"version": "1"})

    with make_client(
        "http://127.0.0.1:1", timeout_s=5, api_key="sk-secret", transport=httpx.MockTransport(answer)
    ) as c:
        assert c.get("/api/version").json() == {"version": "1"}
        assert "sk-secret" not in repr(c)
    assert seen[0].headers["Authorization"] == "Bearer sk-secret"
    assert str(seen[0].url) == "http://127.0.0.1:1/api/version"


# -- what went wrong --------------------------------------------------------------------------------------------------
URL = "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (httpx.ConnectError("All connection attempts failed"), "connection refused"),
        (httpx.ConnectError("[Errno 111] Connection refused"), "connection refused"),
        (httpx.ConnectError("[Errno -2] Name or service not known"), "[Errno -2] Name or service not known"),
        (httpx.ConnectError(""), "ConnectError"),
        (httpx.ConnectTimeout("timed out"), "no answer within 3 s"),
        (httpx.ReadTimeout("timed out"), "no answer within 3 s"),
    ],
)
def test_unreachable_text(error: httpx.HTTPError, reason: str) -> None:
    assert unreachable_text(URL, error) == f"cannot reach {URL}: {reason} — is the server running?"


def test_unreachable_text_names_the_clients_own_connect_timeout() -> None:
    text = unreachable_text(URL, httpx.ConnectTimeout("timed out"), connect_timeout_s=0.5)
    assert text == f"cannot reach {URL}: no answer within 0.5 s — is the server running?"


def _connector_error() -> aiohttp.ClientConnectorError:
    key = SimpleNamespace(host="127.0.0.1", port=9, ssl=True)
    refused = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9)")
    return aiohttp.ClientConnectorError(key, refused)  # type: ignore[arg-type]  # a stand-in for ConnectionKey


def test_a_refused_connection_that_httpx_aiohttp_calls_a_timeout_is_a_connect_error_again() -> None:
    mapped = httpx.ConnectTimeout("mapped by httpx-aiohttp")
    mapped.__cause__ = _connector_error()
    error = transport_error(mapped)
    assert type(error) is httpx.ConnectError
    assert str(error).startswith("Cannot connect to host 127.0.0.1:9")
    assert unreachable_text(URL, mapped) == f"cannot reach {URL}: connection refused — is the server running?"


def test_other_errors_are_left_as_they_are() -> None:
    plain = httpx.ConnectTimeout("timed out")
    assert transport_error(plain) is plain
    real_timeout = httpx.ConnectTimeout("timed out")
    real_timeout.__cause__ = aiohttp.ServerTimeoutError("Connection timeout")
    assert transport_error(real_timeout) is real_timeout
    other = httpx.ReadError("reset")
    other.__cause__ = OSError("reset by peer")
    assert transport_error(other) is other


def test_json_or_none() -> None:
    assert json_or_none(httpx.Response(200, json={"a": 1})) == {"a": 1}
    assert json_or_none(httpx.Response(200, content=b"[1, 2]")) == [1, 2]
    assert json_or_none(httpx.Response(200, content=b"<html>hello</html>")) is None
    assert json_or_none(httpx.Response(200, content=b"\xff")) is None
    assert json_or_none(httpx.Response(204)) is None


@pytest.mark.parametrize(
    ("response", "text"),
    [
        (httpx.Response(404, json={"error": "model 'x' not found"}), "HTTP 404: model 'x' not found"),
        (
            httpx.Response(400, json={"error": {"message": "max_tokens must be at least 1", "type": "invalid"}}),
            "HTTP 400: max_tokens must be at least 1",
        ),
        (httpx.Response(400, json={"error": {"type": "invalid"}}), 'HTTP 400: {"type": "invalid"}'),
        (httpx.Response(422, json={"detail": "field required"}), "HTTP 422: field required"),
        (httpx.Response(401, json={"message": "Unauthorized"}), "HTTP 401: Unauthorized"),
        (httpx.Response(500, content=b"  Internal failure\n"), "HTTP 500: Internal failure"),
        (httpx.Response(500, content=b'["a"]'), 'HTTP 500: ["a"]'),
        (httpx.Response(502, content=b""), "HTTP 502: Bad Gateway"),
        (httpx.Response(503, content=b'{"error": ""}'), 'HTTP 503: {"error": ""}'),
        (httpx.Response(500, content=b"x" * 400), "HTTP 500: " + "x" * 300),
    ],
)
def test_error_text(response: httpx.Response, text: str) -> None:
    assert error_text(response) == text
    assert error_message(response) == text.split(": ", 1)[1]


def test_not_json_text() -> None:
    response = httpx.Response(200, content=b"<html></html>")
    assert not_json_text("http://h:8000/v1/completions", response) == (
        "http://h:8000/v1/completions answered HTTP 200 with something that is not JSON"
    )
