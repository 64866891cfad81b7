"""The one way lokal makes HTTP requests: to a `lokal serve` or Ollama at `OLLAMA_HOST` (the CLI's remote mode),
to the server a benchmark measures (`lokal bench --url`), to the server an audit scores (`lokal audit --url`).

    url = normalize_url("localhost:11434/")                  # "http://localhost:11434"
    client = make_client(url, timeout_s=300, api_key=api_key_from("OPENAI_API_KEY"))
    response = client.get("/api/version")
    if response.status_code >= 400:
        raise SomeError(error_text(response))                # "HTTP 404: model 'x' not found"

Every client is made the same way, blocking (`make_client`) or async (`make_async_client`):

- a bearer key, when there is one, lives only in the client's headers: it is read from an environment
  variable by name (`api_key_from`), never logged and never written into a result;
- a short connect timeout (an unreachable host fails at once) and a separate timeout between bytes;
- no proxy from the environment for a loopback URL, where a corporate `HTTP_PROXY` would only add a hop or
  break the connection; other URLs honour the environment's proxy settings;
- no connection limit, so a caller that sends 64 requests at once has 64 on the wire, not 64 waiting for a
  pool slot (a known way for a benchmark client to hide load, `../shared/ref/benchmarking.md` §6.5).

Errors here are one-line texts that callers put into their own error types (`TargetError`, `AuditError`,
`RemoteError`), so each command keeps its own; a URL that cannot be one is an `InvalidURL`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
from typing import TYPE_CHECKING, Any

import httpx

from lokal.errors import LokalError

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S",
    "PID_HEADER",
    "InvalidURL",
    "api_key_from",
    "bound_url",
    "error_message",
    "error_text",
    "is_loopback",
    "is_loopback_host",
    "json_or_none",
    "make_async_client",
    "make_client",
    "normalize_url",
    "not_json_text",
    "transport_error",
    "unreachable_text",
]

#: Generous: a request on a saturated CPU server may wait minutes for its first token. Applies between bytes.
DEFAULT_TIMEOUT_S = 300.0
#: Short, so an unreachable URL fails at once rather than after the request timeout.
CONNECT_TIMEOUT_S = 3.0
#: The `/health` response header in which a lokal server names its pid (`lokal.server.app.PID_HEADER`;
#: repeated here so a client does not import the server's web stack). Ollama sends none.
PID_HEADER = "X-Lokal-Pid"


class InvalidURL(LokalError, ValueError):
    """Text that cannot be the address of an HTTP server."""


# -- addresses ----------------------------------------------------------------------------------------------
def normalize_url(url: str) -> str:
    """`localhost:11434/` -> `http://localhost:11434`; a URL that cannot be one is an InvalidURL."""
    text = url.strip().rstrip("/")
    if not text:
        raise InvalidURL("empty URL: give the server's address, e.g. http://127.0.0.1:11434")
    if "://" not in text:
        text = f"http://{text}"
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, ValueError) as exc:
        raise InvalidURL(f"invalid URL {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidURL(f"invalid URL {url!r}: expected http(s)://HOST[:PORT]")
    return text


def bound_url(host: str, port: int) -> str:
    """Where this machine reaches a server bound to (`host`, `port`): a wildcard address (`0.0.0.0`, `::`, none)
    at 127.0.0.1, an IPv6 address in brackets."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def is_loopback_host(host: str) -> bool:
    """`127.0.0.1`, `::1` (bracketed or not), any 127.x address, or the name `localhost`."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def is_loopback(url: str) -> bool:
    """Whether `url` (a normalized one, with its scheme) names this machine."""
    return is_loopback_host(httpx.URL(url).host)


def api_key_from(env_var: str | None) -> str | None:
    """The key in `env_var`, read at start-up and kept only in the client's headers (never in a result)."""
    return (os.environ.get(env_var) or None) if env_var else None


# -- clients ------------------------------------------------------------------------------------------------
def _settings(base_url: str, timeout_s: float | None, connect_timeout_s: float, api_key: str | None) -> dict[str, Any]:
    """What every client of lokal shares, blocking or async (see the module's docstring)."""
    return {
        "base_url": base_url,
        "headers": {"Authorization": f"Bearer {api_key}"} if api_key else {},
        "timeout": httpx.Timeout(timeout_s, connect=connect_timeout_s),
        "limits": httpx.Limits(max_connections=None, max_keepalive_connections=None),
        "trust_env": not is_loopback(base_url),
    }


def make_client(
    base_url: str,
    *,
    timeout_s: float | None,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    api_key: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """A blocking client for the server at `base_url`. `timeout_s` applies between bytes (None: no limit)."""
    return httpx.Client(**_settings(base_url, timeout_s, connect_timeout_s, api_key), transport=transport)


def make_async_client(
    base_url: str,
    *,
    timeout_s: float | None,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    api_key: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An async client for the server at `base_url`, set up as `make_client`'s.

    For a loopback URL the client shares the cores with the server it talks to, so its cost per streamed
    chunk is taken from the server: there httpx runs over aiohttp (`httpx-aiohttp`, aiohttp's C parser
    instead of httpcore + h11 + anyio), about 40 % less CPU per chunk, measured (docs/measure.md). Remote
    URLs keep httpx's own transport, which honours the proxy settings of the environment.
    """
    if transport is None and is_loopback(base_url):
        from httpx_aiohttp import AiohttpTransport  # imports aiohttp (0.1 s): only where it is used

        transport = AiohttpTransport(client=_aiohttp_session)
    return httpx.AsyncClient(**_settings(base_url, timeout_s, connect_timeout_s, api_key), transport=transport)


def _aiohttp_session() -> aiohttp.ClientSession:
    """The transport's session, made on its first request (inside the running loop, as aiohttp requires):
    no connection limit (aiohttp's default is 100) and no proxy from the environment (loopback only)."""
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), trust_env=False)


# -- what went wrong, in one line ---------------------------------------------------------------------------
def transport_error(exc: BaseException) -> BaseException:
    """The error `exc` stands for. httpx-aiohttp maps aiohttp's "cannot connect" (refused, unreachable) to
    httpx.ConnectTimeout; this undoes that, so a refused connection is not reported as a timeout."""
    cause = exc.__cause__
    aio = sys.modules.get("aiohttp")  # not imported: then `cause` is none of its errors
    if cause is None or aio is None:
        return exc
    if isinstance(cause, aio.ClientConnectorError) and not isinstance(cause, aio.ServerTimeoutError):
        return httpx.ConnectError(str(cause))
    return exc


def unreachable_text(url: str, exc: httpx.HTTPError, *, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> str:
    """One line for a server that cannot be reached at all (`exc` raised by a client with that timeout)."""
    error = transport_error(exc)
    if isinstance(error, httpx.TimeoutException):
        reason = f"no answer within {connect_timeout_s:g} s"
    else:
        text = str(error) or type(error).__name__
        # When nothing listens on the port httpx says "All connection attempts failed" (or errno 111),
        # aiohttp "Cannot connect to host ... [Connect call failed ...]".
        said = text.lower()
        refused = any(m in said for m in ("refused", "all connection attempts failed", "connect call failed"))
        reason = "connection refused" if refused else text
    return f"cannot reach {url}: {reason} — is the server running?"


def json_or_none(response: httpx.Response) -> Any:
    """The response's JSON body, or None when it has none (not JSON, or not text)."""
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def error_message(response: httpx.Response) -> str:
    """The server's own message in an error body (Ollama's `{"error": ...}`, OpenAI's `{"error": {"message":
    ...}}`, FastAPI's `{"detail": ...}`), else the start of the raw text, else the status's reason phrase."""
    body = json_or_none(response)
    message: Any = None
    if isinstance(body, dict):
        message = body.get("error") or body.get("detail") or body.get("message")
        if isinstance(message, dict):  # OpenAI: {"error": {"message": ...}}
            message = message.get("message") or json.dumps(message)
    if not message:
        message = response.text.strip()[:300] or response.reason_phrase
    return str(message)


def error_text(response: httpx.Response) -> str:
    """`HTTP 500: <the server's message>`."""
    return f"HTTP {response.status_code}: {error_message(response)}"


def not_json_text(where: str, response: httpx.Response) -> str:
    """One line for an answer from `where` that should have been JSON and is not."""
    return f"{where} answered HTTP {response.status_code} with something that is not JSON"
