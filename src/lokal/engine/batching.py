"""What both engines' batchers share: the waiting queue, one worker thread, cancellation, how a sampled token is
accepted, and how a sequence's end becomes an Ollama-style `Completion`.

Each engine decides how a step runs (llama.cpp: one `llama_decode` over every running sequence plus prompt
chunks; transformers: padded batches with merged KV caches). This base owns everything around the step, so the
contract callers see cannot drift between engines: `QueueFull` past `max_queue`, a request cancelled while
waiting leaves the queue at once, stop strings and length limits, a closing or crashed worker fails every
request with a message instead of leaving it waiting, and the same timing fields.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import numpy as np

from lokal.engine import logprobs
from lokal.engine.base import Completion, DoneReason, GeneratedToken
from lokal.engine.stops import StopMatcher
from lokal.engine.stream import TokenStream
from lokal.errors import Cancelled, EngineError, QueueFull

log = logging.getLogger(__name__)


def common_prefix(a: list[int], b: list[int], *, limit: int) -> int:
    """How many leading tokens `a` and `b` share, at most `limit` (0 when `limit` is negative): what a slot's
    cached cells give a new prompt (the llama.cpp batcher), or a draft model's cells its sequence's tokens."""
    n = min(len(a), len(b), limit)
    for i in range(n):
        if a[i] != b[i]:
            return i
    return max(n, 0)


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


@dataclasses.dataclass(eq=False, kw_only=True)
class SequenceState:
    """One request inside a batcher: what every engine tracks (engines add their own fields)."""

    prompt: list[int]
    max_tokens: int  # < 0: no limit but the context; 0: evaluate the prompt only
    stops: StopMatcher
    stream: TokenStream
    submitted_at: float = dataclasses.field(default_factory=time.perf_counter)
    admitted_at: float = 0.0
    first_token_at: float = 0.0
    n_past: int = 0  # tokens of this sequence in the KV cache
    next_token: int | None = None  # sampled, not yet decoded
    generated: list[int] = dataclasses.field(default_factory=list)
    text: list[str] = dataclasses.field(default_factory=list)
    cached_tokens: int = 0  # prompt tokens reused from a prompt cache
    #: None: no log-probabilities; k: each generated token's, with its k most likely alternatives.
    top_logprobs: int | None = None
    logprobs: list[GeneratedToken] = dataclasses.field(default_factory=list)
    drafted: int = 0  # speculative decoding: drafted tokens verified, and how many of them were kept
    draft_accepted: int = 0
    done: bool = False

    @property
    def wants_logprobs(self) -> bool:
        return self.top_logprobs is not None


S = TypeVar("S", bound=SequenceState)


class WorkerBatcher(Generic[S]):
    """The queue and worker thread; subclasses implement one step and the engine-specific hooks below.

    Subclasses set up their own state, then call `start()` (the worker must not run before that state exists).
    """

    def __init__(self, *, n_ctx_seq: int, max_queue: int, name: str) -> None:
        self.n_ctx_seq = n_ctx_seq
        self.max_queue = max_queue
        self._pending: collections.deque[S] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._broken: BaseException | None = None
        #: Called after every step with (running sequences, waiting requests); the server's metrics hook.
        self.on_step: Callable[[int, int], None] | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    # -- hooks ---------------------------------------------------------------------------------
    def _running(self) -> list[S]:
        """The sequences admitted and not yet finished (read under the lock)."""
        raise NotImplementedError

    def _take(self) -> Any:
        """Under the lock, with work to do: admit waiting requests; return what `_step` needs."""
        raise NotImplementedError

    def _step(self, work: Any) -> None:
        """One step, outside the lock: retire cancelled sequences, decode, sample (through `_accept`)."""
        raise NotImplementedError

    def _is_end(self, token: int) -> bool:
        raise NotImplementedError

    def _piece(self, seq: S, token: int) -> str:
        """The text `token` adds to `seq` (held back while a character is incomplete)."""
        raise NotImplementedError

    def _flush_text(self, seq: S) -> str:
        """Text still held back when `seq` ends."""
        raise NotImplementedError

    def _token_bytes(self, token: int) -> bytes:
        """`token`'s own bytes, special tokens written out (for log-probability entries)."""
        raise NotImplementedError

    def _release(self, seq: S) -> None:
        """`seq` finished or failed: free what it holds (a sampler, a slot). Called once per sequence."""

    def _shutdown(self) -> None:
        """The worker stopped: free engine resources the step used."""

    # -- caller side -----------------------------------------------------------------------------
    def submit(self, seq: S) -> None:
        seq.stream._on_cancel = lambda: self._cancel(seq)
        with self._cond:
            if self._closing:
                raise EngineError("the model is being unloaded; retry the request")
            if self._broken is not None:
                raise EngineError(f"the engine stopped after an internal error: {self.failure}; retry the request")
            if len(self._pending) >= self.max_queue:
                raise QueueFull("server busy, please try again.  maximum pending requests exceeded")
            self._pending.append(seq)
            self._cond.notify()

    def _cancel(self, seq: S) -> None:
        with self._cond:
            if seq in self._pending:  # still waiting: leave the queue at once
                self._pending.remove(seq)
                seq.done = True
                self._release(seq)
                seq.stream.fail(Cancelled("request cancelled"))
            self._cond.notify()

    @property
    def failure(self) -> str | None:
        """Why the worker stopped after an internal error, or None while it runs (or after a normal close)."""
        broken = self._broken
        return None if broken is None else (str(broken) or type(broken).__name__)

    def counts(self) -> tuple[int, int]:
        """(running sequences, waiting requests)."""
        with self._cond:
            return len(self._running()), len(self._pending)

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join()
        self._shutdown()

    # -- worker side -------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._closing and not self._pending and not self._running():
                        self._cond.wait()
                    if self._closing:
                        break
                    work = self._take()
                self._step(work)
                if self.on_step is not None:
                    self.on_step(*self.counts())
        except BaseException as exc:  # a crash here must not leave callers waiting forever
            log.exception("engine worker failed")
            self._broken = exc
        finally:
            error = EngineError("the model was unloaded before the request finished")
            if self._broken is not None:
                error = EngineError(
                    f"the engine stopped after an internal error: {self.failure}; retry the request "
                    "(the model is loaded again for it)"
                )
            with self._cond:
                for seq in [*self._running(), *self._pending]:
                    if not seq.done:
                        seq.done = True
                        self._release(seq)
                        seq.stream.fail(error)
                self._pending.clear()
            self._stopped()

    def _stopped(self) -> None:
        """The worker loop ended (subclasses drop their running sequences and caches here)."""

    def _accept(self, seq: S, token: int, logits: np.ndarray | None = None) -> None:
        """A token was sampled for `seq`: end it (end-of-generation, stop string, length) or queue it for decoding.
        `logits`: the row it was sampled from, given when `seq.wants_logprobs`."""
        if not seq.first_token_at:
            seq.first_token_at = time.perf_counter()
        if seq.max_tokens == 0:  # num_predict 0: the prompt was evaluated (and stays cached), nothing is generated
            self._finish(seq, "length")
            return
        if self._is_end(token):
            self._finish(seq, "stop")
            return
        seq.generated.append(token)
        text = seq.stops.feed(self._piece(seq, token))
        if text:
            seq.text.append(text)
        if logits is not None and seq.top_logprobs is not None:
            scored = logprobs.score(logits, token, seq.top_logprobs, self._token_bytes)
            seq.logprobs.append(scored)
            seq.stream.put_piece(text, scored)
        elif text:
            seq.stream.put_piece(text)
        if seq.stops.stopped:
            self._finish(seq, "stop")
        elif 0 <= seq.max_tokens <= len(seq.generated) or seq.n_past >= self.n_ctx_seq:
            self._finish(seq, "length")
        else:
            seq.next_token = token

    def _finish(self, seq: S, reason: DoneReason) -> None:
        seq.done = True
        self._release(seq)
        if reason == "cancelled":
            seq.stream.fail(Cancelled("request cancelled"))
            return
        tail = seq.stops.feed(self._flush_text(seq)) + seq.stops.flush()
        if tail:
            seq.text.append(tail)
            seq.stream.put_piece(tail)
        end = time.perf_counter()
        first = seq.first_token_at or end
        seq.stream.finish(
            Completion(
                text="".join(seq.text),
                done_reason=reason,
                prompt_eval_count=len(seq.prompt),
                prompt_cache_count=seq.cached_tokens,
                prompt_eval_duration=_ns(first - seq.admitted_at),
                eval_count=len(seq.generated),
                eval_duration=_ns(end - first),
                total_duration=_ns(end - seq.submitted_at),
                context=(*seq.prompt, *seq.generated),
                logprobs=tuple(seq.logprobs),
                draft_count=seq.drafted,
                draft_accepted_count=seq.draft_accepted,
            )
        )
