"""What the two HTTP targets share: one client set-up, fail-fast probes, error text, and recording chunks.

The client never queues requests itself (no connection limit), so a concurrency of 64 means 64 requests on
the wire, not 64 waiting for a pool slot inside the benchmark (a known way for a client to hide load,
see `../shared/ref/benchmarking.md` §6.5). Proxies from the environment are ignored for loopback URLs, where
a corporate `HTTP_PROXY` would only add a hop or break the connection.

For a loopback URL the client shares the cores with the server it measures, so its cost per streamed chunk
is taken from the server: there httpx runs over aiohttp (`httpx-aiohttp`, aiohttp's C parser instead of
httpcore + h11 + anyio), about 40 % less CPU per chunk, measured (docs/measure.md). Remote URLs keep httpx's
own transport, which honours the proxy settings of the environment.
"""

from __future__ import annotations

import json
import os
from typing import Any

import aiohttp
import httpx
import psutil
from httpx_aiohttp import AiohttpTransport

from lokal.bench.target import Outcome, TargetError

#: Generous: a request on a saturated CPU server may wait minutes for its first token. Applies between bytes.
DEFAULT_TIMEOUT_S = 300.0
#: Short, so an unreachable URL fails at once rather than after the request timeout.
CONNECT_TIMEOUT_S = 3.0
#: The `/health` response header in which a lokal server names its pid (`lokal.server.app.PID_HEADER`;
#: repeated here so a benchmark does not import the server's web stack).
PID_HEADER = "X-Lokal-Pid"


def normalize_url(url: str) -> str:
    """`localhost:11434/` -> `http://localhost:11434`; a URL that cannot be one is a TargetError."""
    text = url.strip().rstrip("/")
    if not text:
        raise TargetError("empty URL: give the server's address, e.g. http://127.0.0.1:11434")
    if "://" not in text:
        text = f"http://{text}"
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, ValueError) as exc:
        raise TargetError(f"invalid URL {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise TargetError(f"invalid URL {url!r}: expected http(s)://HOST[:PORT]")
    return text


def is_loopback(url: str) -> bool:
    from lokal.server.security import is_loopback_host  # a stdlib-only module of the server package

    return is_loopback_host(httpx.URL(url).host)


def make_client(
    base_url: str,
    *,
    timeout_s: float,
    api_key: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    loopback = is_loopback(base_url)
    if transport is None and loopback:
        transport = AiohttpTransport(client=_aiohttp_session)
    return httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        timeout=httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
        trust_env=not loopback,
        transport=transport,
    )


def _aiohttp_session() -> aiohttp.ClientSession:
    """The transport's session, made on its first request (inside the running loop, as aiohttp requires):
    no connection limit (aiohttp's default is 100) and no proxy from the environment (loopback only)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), trust_env=False)


def api_key_from(env_var: str | None) -> str | None:
    """The key in `env_var`, read at start-up and kept only in the client's headers (never in a result)."""
    return (os.environ.get(env_var) or None) if env_var else None


def _unmapped(exc: BaseException) -> BaseException:
    """httpx-aiohttp maps aiohttp's "cannot connect" (refused, unreachable) to httpx.ConnectTimeout; undo that,
    so a refused connection is not reported as a timeout."""
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientConnectorError) and not isinstance(cause, aiohttp.ServerTimeoutError):
        return httpx.ConnectError(str(cause))
    return exc


def unreachable(url: str, exc: httpx.HTTPError) -> TargetError:
    """One line for a server that cannot be reached at all."""
    error = _unmapped(exc)
    if isinstance(error, httpx.TimeoutException):
        reason = f"no answer within {CONNECT_TIMEOUT_S:g} s"
    else:
        text = str(error) or type(error).__name__
        # When nothing listens on the port httpx says "All connection attempts failed" (or errno 111),
        # aiohttp "Cannot connect to host ... [Connect call failed ...]".
        said = text.lower()
        refused = any(m in said for m in ("refused", "all connection attempts failed", "connect call failed"))
        reason = "connection refused" if refused else text
    return TargetError(f"cannot reach {url}: {reason} — is the server running?")


async def probe(client: httpx.AsyncClient, path: str, url: str) -> httpx.Response:
    """GET `path`; a transport failure is a TargetError (the target cannot be used), an HTTP status is not."""
    try:
        return await client.get(path)
    except httpx.HTTPError as exc:
        raise unreachable(url, exc) from None


def json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def error_text(response: httpx.Response) -> str:
    """`HTTP 500: <the server's message>` from Ollama's, OpenAI's or FastAPI's error bodies, or the raw text."""
    body = json_or_none(response)
    message: Any = None
    if isinstance(body, dict):
        message = body.get("error") or body.get("detail") or body.get("message")
        if isinstance(message, dict):  # OpenAI: {"error": {"message": ...}}
            message = message.get("message") or json.dumps(message)
    if not message:
        message = response.text.strip()[:300] or response.reason_phrase
    return f"HTTP {response.status_code}: {message}"


def failure(exc: BaseException) -> str:
    """What went wrong with one request, as the sample records it."""
    exc = _unmapped(exc)
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {exc or 'connection failed'}"
    if isinstance(exc, httpx.TransportError):
        return f"stream broke: {type(exc).__name__}: {exc}"
    if isinstance(exc, json.JSONDecodeError):
        return f"malformed chunk from the server: {exc.msg} at {exc.pos}: {exc.doc[:80]!r}"
    return f"{type(exc).__name__}: {exc}"


def record_text(outcome: Outcome, now: float, text: str) -> None:
    """A chunk carrying generated text arrived at `now` (one clock reading per chunk, taken by the caller)."""
    if outcome.first_token is None:
        outcome.first_token = now
    outcome.end = now
    outcome.chunks.append(now)
    outcome.text += text


def fail(outcome: Outcome, error: str, now: float) -> Outcome:
    outcome.ok = False
    outcome.error = error
    outcome.end = now
    return outcome


async def local_pid(client: httpx.AsyncClient, url: str) -> int | None:
    """The pid the lokal server at `url` (its root) reports on `/health`, when it can be trusted to be ours.

    Only for loopback URLs, and only when that process really listens on the URL's port: a server in a
    container reached through a forwarded port reports a pid from another pid namespace, which here may
    belong to an unrelated process.
    """
    if not is_loopback(url):
        return None
    try:
        response = await client.get(f"{url}/health")  # absolute: the client's base may end in /v1
    except httpx.HTTPError:
        return None
    raw = response.headers.get(PID_HEADER)
    if raw is None or not raw.isdigit():
        return None
    pid = int(raw)
    port = httpx.URL(url).port or (443 if url.startswith("https") else 80)
    return pid if _listens_on(pid, port) else None


def _listens_on(pid: int, port: int) -> bool:
    try:
        connections = psutil.Process(pid).net_connections(kind="inet")
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # cannot check (another user's process): it exists, take its word
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections)
