"""What the two HTTP targets share beyond `lokal.http_client` (which makes their clients and words their
errors): a bad or unreachable URL as a TargetError, fail-fast probes, a failed request's text, recording
chunks, and the pid of a local lokal server.
"""

from __future__ import annotations

import json

import httpx
import psutil

from lokal import http_client
from lokal.bench.target import Outcome, TargetError


def normalize_url(url: str) -> str:
    """`http_client.normalize_url`, where a URL that cannot be one is a TargetError (nothing to benchmark)."""
    try:
        return http_client.normalize_url(url)
    except http_client.InvalidURL as exc:
        raise TargetError(str(exc)) from None


def unreachable(url: str, exc: httpx.HTTPError) -> TargetError:
    """One line for a server that cannot be reached at all."""
    return TargetError(http_client.unreachable_text(url, exc))


async def probe(client: httpx.AsyncClient, path: str, url: str) -> httpx.Response:
    """GET `path`; a transport failure is a TargetError (the target cannot be used), an HTTP status is not."""
    try:
        return await client.get(path)
    except httpx.HTTPError as exc:
        raise unreachable(url, exc) from None


def failure(exc: BaseException) -> str:
    """What went wrong with one request, as the sample records it."""
    exc = http_client.transport_error(exc)
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
    if not http_client.is_loopback(url):
        return None
    try:
        response = await client.get(f"{url}/health")  # absolute: the client's base may end in /v1
    except httpx.HTTPError:
        return None
    raw = response.headers.get(http_client.PID_HEADER)
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
