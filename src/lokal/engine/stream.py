"""The hand-off between the engine's worker thread and a caller, sync or asyncio.

The worker calls `put_piece`, then exactly one of `finish` or `fail`. A synchronous caller iterates
(blocking on a `queue.Queue`); an asyncio caller uses `async for` and is woken through
`loop.call_soon_threadsafe`, so no thread is parked per waiting request.

The batching worker holds a step's deliveries (`hold`) and hands them over together once every sequence of
the step is sampled (`flush_all`): one wake-up per event loop per step. Measured reason: when each token
woke the server's event loop at once, the loop's Python work (JSON, HTTP) ran while the worker was still
sampling, and the two threads passed the GIL back and forth at every ctypes call of the sampling phase.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Final, Literal, overload

from lokal.engine.base import Chunk, Completion, GeneratedToken


class _End(enum.Enum):
    """The type of `_DONE`, the item that ends a stream (an enum, so that `item is _DONE` narrows the type)."""

    DONE = enum.auto()


_DONE: Final = _End.DONE
#: What travels from the worker to a caller: text, a `Chunk` with its token, or `_DONE`.
_Item = str | Chunk | _End


class TokenStream:
    """A `GenerationStream`: text pieces, then `result`; `cancel()` asks the worker to stop.

    Items travel as plain `str` when no log-probabilities were asked for (the common case costs nothing
    extra) and as `Chunk` when a generated token comes with them; `__iter__` gives text, `chunks()` both.
    """

    def __init__(self, on_cancel: Callable[[], None] | None = None) -> None:
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_queue: asyncio.Queue[_Item] | None = None
        self._lock = threading.Lock()
        self._result: Completion | None = None
        self._error: BaseException | None = None
        self._on_cancel = on_cancel
        self.cancelled = False
        self.first_piece_at: float | None = None  # perf_counter() of the first piece, for TTFT
        self._held: list[_Item] | None = None  # deliveries kept back until `flush_all`
        #: Set by the engine when the answer is a thinking model's (lokal.engine.thinking.Reading): how to split it.
        self.thinking: Any = None

    # -- worker side -------------------------------------------------------------------------
    def _deliver(self, item: _Item) -> None:
        with self._lock:
            if self._held is not None:
                self._held.append(item)
            elif self._async_queue is not None and self._loop is not None:
                # A closed loop raises RuntimeError: nobody is listening any more.
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._async_queue.put_nowait, item)
            else:
                self._queue.put(item)

    def hold(self) -> None:
        """Keep deliveries back until `flush_all` (worker side, within one step)."""
        with self._lock:
            if self._held is None:
                self._held = []

    def _release(self) -> tuple[asyncio.AbstractEventLoop | None, list[_Item]]:
        """Stop holding; hand synchronous callers their items now, return what an event loop must get."""
        with self._lock:
            items, self._held = self._held or [], None
            if self._async_queue is not None and self._loop is not None:
                return self._loop, items
            for item in items:
                self._queue.put(item)
            return None, []

    def _put_many(self, items: list[_Item]) -> None:
        assert self._async_queue is not None
        for item in items:
            self._async_queue.put_nowait(item)

    def put_piece(self, text: str, token: GeneratedToken | None = None) -> None:
        """Hand over `text`; with `token` (its log-probabilities), even when `text` is empty, since a client
        that asked for log-probabilities gets every token while a stop string or a character is held back."""
        if token is not None:
            self._deliver(Chunk(text, token))
        elif text:
            self._deliver(text)

    def finish(self, completion: Completion) -> None:
        self._result = completion
        self._deliver(_DONE)

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._deliver(_DONE)

    # -- caller side -------------------------------------------------------------------------
    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            if self._on_cancel is not None:
                self._on_cancel()

    @property
    def result(self) -> Completion:
        if self._error is not None:
            raise self._error
        if self._result is None:
            raise RuntimeError("the stream has not finished; iterate it to the end first")
        return self._result

    @property
    def done(self) -> bool:
        return self._result is not None or self._error is not None

    def __iter__(self) -> Iterator[str]:
        return self._items(chunks=False)

    def chunks(self) -> Iterator[Chunk]:
        """Every delivery as a `Chunk`: text with the generated token it came from when log-probabilities
        were asked for (such a chunk's text may be empty)."""
        return self._items(chunks=True)

    @overload
    def _items(self, *, chunks: Literal[False]) -> Iterator[str]: ...
    @overload
    def _items(self, *, chunks: Literal[True]) -> Iterator[Chunk]: ...
    def _items(self, *, chunks: bool) -> Iterator[str | Chunk]:
        # One generator per iteration (not one wrapping another), so that closing it early cancels at once.
        try:
            while True:
                item = self._queue.get()
                if item is _DONE:
                    break
                out = _convert(item, chunks)
                if out is not None:
                    yield out
        except GeneratorExit:
            self.cancel()
            raise
        if self._error is not None:
            raise self._error

    def __aiter__(self) -> AsyncIterator[str]:
        return self._aitems(chunks=False)

    def achunks(self) -> AsyncIterator[Chunk]:
        """`chunks()` for an asyncio caller."""
        return self._aitems(chunks=True)

    @overload
    def _aitems(self, *, chunks: Literal[False]) -> AsyncIterator[str]: ...
    @overload
    def _aitems(self, *, chunks: Literal[True]) -> AsyncIterator[Chunk]: ...
    async def _aitems(self, *, chunks: bool) -> AsyncIterator[str | Chunk]:
        with self._lock:
            if self._async_queue is None:
                self._loop = asyncio.get_running_loop()
                self._async_queue = asyncio.Queue()
                # Move anything the worker delivered before we attached.
                while not self._queue.empty():
                    self._async_queue.put_nowait(self._queue.get_nowait())
        try:
            while True:
                item = await self._async_queue.get()
                if item is _DONE:
                    break
                out = _convert(item, chunks)
                if out is not None:
                    yield out
        except (asyncio.CancelledError, GeneratorExit):
            self.cancel()
            raise
        if self._error is not None:
            raise self._error

    def text(self) -> str:
        """Consume the stream and return the final text."""
        for _ in self:
            pass
        return self.result.text


def _convert(item: str | Chunk, chunks: bool) -> str | Chunk | None:
    """A delivered item as the iteration wants it: a `Chunk`, or text (None for a chunk without any)."""
    if chunks:
        return Chunk(item) if isinstance(item, str) else item
    if isinstance(item, str):
        return item
    return item.text or None


def flush_all(streams: Iterable[TokenStream]) -> None:
    """Deliver what `streams` held: synchronous callers at once, each event loop in one callback."""
    per_loop: dict[asyncio.AbstractEventLoop, list[tuple[TokenStream, list[_Item]]]] = {}
    for stream in streams:
        loop, items = stream._release()
        if loop is not None and items:
            per_loop.setdefault(loop, []).append((stream, items))
    for loop, batch in per_loop.items():
        # A closed loop raises RuntimeError: nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_put_batch, batch)


def _put_batch(batch: list[tuple[TokenStream, list[_Item]]]) -> None:
    for stream, items in batch:
        stream._put_many(items)
