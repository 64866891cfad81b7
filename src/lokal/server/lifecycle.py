"""One started run, from its first token to its release: the part every generating route shares.

Why one place: each route (`/api/generate` and `/api/chat`, `/v1/chat/completions` and `/v1/completions`,
`/v1/responses`) must do the same things in the same order, and a slip in any of them is a leak or a lie:
cancel the engine request the moment the client leaves, release the engine exactly once (so keep-alive counts
from the end of the request), record the request in the metrics with its time to first token, and, once the
status line is sent, report an error inside the stream instead of cutting it. The routes only shape chunks.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from fastapi import Request
from starlette.responses import Response

from lokal.engine.base import Chunk, Completion
from lokal.errors import LokalError
from lokal.inference import Run
from lokal.server.errors import internal_error_message, log_internal_error, request_id
from lokal.server.streaming import ClientGone, DisconnectAwareStreamingResponse, race_disconnect


@dataclass(frozen=True)
class Collected:
    """A whole answer: the generated text (raw: reasoning and calls still in it) and the run's completion."""

    text: str
    completion: Completion


async def collect(request: Request, run: Run) -> Collected | None:
    """Wait for the whole answer; None when the client left first (the route answers 499, nobody reads it)."""
    started = time.perf_counter()
    first: list[float] = []

    async def read() -> str:
        parts = []
        async for piece in run.stream:
            if not first:
                first.append(time.perf_counter())
            parts.append(piece)
        return "".join(parts)

    try:
        text = await race_disconnect(request, read, run.cancel)
    except ClientGone:
        return None
    finally:
        run.release()
    completion = run.completion()
    request.app.state.metrics.completed(run.model, completion, first[0] - started if first else None)
    return Collected(text, completion)


class Streamed:
    """A run as a route's shaping generator reads it: `pieces()` until the end, then `completion`.

    The engine is released as soon as the last piece is read, before the route writes its closing chunks, so a
    slow client reading the tail holds no slot."""

    def __init__(self, request: Request, run: Run) -> None:
        self._request = request
        self._run = run
        self._started = time.perf_counter()
        self._completion: Completion | None = None

    @property
    def finished(self) -> bool:
        return self._completion is not None

    @property
    def completion(self) -> Completion:
        if self._completion is None:
            raise RuntimeError("the run's completion is read before its last piece")
        return self._completion

    async def pieces(self) -> AsyncIterator[Chunk]:
        first_at = None
        async for piece in self._run.stream.achunks():
            if first_at is None:
                first_at = time.perf_counter()
            yield piece
        self._completion = self._run.completion()
        self._run.release()
        ttft = first_at - self._started if first_at is not None else None
        self._request.app.state.metrics.completed(self._run.model, self._completion, ttft)


#: A route's chunks for one run, written as it reads `Streamed.pieces()`.
Shaper = Callable[[Streamed], AsyncIterator[bytes]]
#: A route's error line inside a stream: the message, and whether it is an internal error (else a LokalError).
ErrorLine = Callable[[str, bool], bytes]


def stream(request: Request, run: Run, shape: Shaper, error_line: ErrorLine, media_type: str) -> Response:
    """Stream what `shape` writes; a client that leaves cancels the run at once, whatever the route was doing."""
    streamed = Streamed(request, run)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for line in shape(streamed):
                yield line
        except LokalError as exc:  # after the first byte the status is sent: report in the stream
            yield error_line(str(exc), False)
        except Exception as exc:  # the same, for what nobody expected (logged under the request id)
            rid = request_id(request)
            log_internal_error(rid, request.method, request.url.path, exc)
            yield error_line(internal_error_message(rid), True)
        finally:
            if not streamed.finished:
                run.cancel()
            run.release()

    return DisconnectAwareStreamingResponse(body(), media_type=media_type)
