"""Streaming bodies (NDJSON for `/api/*`, SSE for `/v1/*`) that notice a client leaving at once.

Starlette's `StreamingResponse` only notices a disconnect when a write fails (ASGI 2.4), so a request
still waiting in the queue, with nothing written yet, would keep its place. These helpers listen for
`http.disconnect` while they wait, and cancel the engine request the moment it arrives.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import anyio
from fastapi import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

T = TypeVar("T")


class DisconnectAwareStreamingResponse(StreamingResponse):
    """A StreamingResponse that always listens for `http.disconnect` while it streams."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def stream_then_stop() -> None:
                await self.stream_response(send)
                group.cancel_scope.cancel()

            group.start_soon(stream_then_stop)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()


def ndjson_line(obj: Any) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def sse_event(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


async def until_disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def race_disconnect(request: Request, work: Callable[[], Awaitable[T]], on_disconnect: Callable[[], None]) -> T:
    """Run `work`; if the client disconnects first, call `on_disconnect` (cancel the request) and raise.

    An error from `work` is re-raised as itself (not wrapped in an ExceptionGroup), so the app's
    exception handlers still turn it into the right status."""
    result: list[T] = []
    failure: list[Exception] = []

    async with anyio.create_task_group() as group:

        async def run_work() -> None:
            try:
                result.append(await work())
            except Exception as exc:
                failure.append(exc)
            group.cancel_scope.cancel()

        async def watch() -> None:
            await until_disconnected(request)
            on_disconnect()
            group.cancel_scope.cancel()

        group.start_soon(run_work)
        group.start_soon(watch)
    if failure:
        raise failure[0]
    if not result:
        raise ClientGone()
    return result[0]


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def in_thread(
    func: Callable[..., T], *args: Any, limiter: anyio.CapacityLimiter | None = None, **kwargs: Any
) -> T:
    """Run a blocking call (a model load, tokenising a long prompt) off the event loop.

    `limiter` bounds how many threads one kind of work may hold: store writes (pulls, copies, uploads) run under
    the app's `store_io` limiter, so however many of them clients start, threads stay free for everything else."""
    return await anyio.to_thread.run_sync(partial(func, *args, **kwargs), limiter=limiter)


async def aiter_pieces(stream: Any) -> AsyncIterator[str]:
    async for piece in stream:
        yield piece
