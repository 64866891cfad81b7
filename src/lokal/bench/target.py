"""What a benchmark target does: send one request and report, with one clock reading per event, what came back.

The load runner (`lokal.bench.load`) decides when requests go out; a target only carries them out. Three
kinds exist (`lokal.bench.targets`): the in-process engine, a server speaking Ollama's API, and a server
speaking OpenAI's. A target never raises for a failed request (HTTP error, broken stream, timeout): it
returns an `Outcome` with `ok=False` and the error, so the run records it and goes on. It raises
(`TargetError`) only when it cannot be used at all, e.g. an unreachable URL at `open()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from lokal.bench.result import ServerTimings, TargetInfo, TokenSource
from lokal.errors import LokalError


class TargetError(LokalError):
    """The target cannot be benchmarked at all (unreachable, wrong API, unknown model)."""


@dataclass(frozen=True)
class Prompt:
    """One workload item: chat messages, and optionally its own output length."""

    id: str
    messages: tuple[dict[str, str], ...]
    max_tokens: int | None = None  # overrides the run's --max-tokens (JSONL prompts may set it)


@dataclass(frozen=True)
class RequestParams:
    max_tokens: int
    temperature: float = 0.0
    seed: int | None = None
    stream: bool = True
    #: Ask the server to keep generating to max_tokens (llama-server `ignore_eos`); best effort, so output
    #: lengths are comparable. Servers that do not know the field ignore it.
    ignore_eos: bool = False


@dataclass
class Outcome:
    """One request as the client saw it. Times are `time.perf_counter()` readings."""

    sent: float
    ok: bool = False
    first_token: float | None = None  # first chunk with generated text
    end: float | None = None  # last chunk with generated text; for a failure, when it failed
    chunks: list[float] = field(default_factory=list)  # arrival of every chunk with generated text
    error: str | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    token_source: TokenSource | None = None
    finish_reason: str | None = None
    server: ServerTimings | None = None
    text: str = ""


class Target(Protocol):
    """A place to send requests. `open` before the first request, `close` after the last."""

    async def open(self, models: list[str]) -> TargetInfo:
        """Check the target answers and knows every model (fail fast with a TargetError naming the problem);
        return what the result records about it."""
        ...

    async def request(self, model: str, prompt: Prompt, params: RequestParams) -> Outcome:
        """Send one request and follow it to the end; never raises for a failed request."""
        ...

    async def cold_start(self, model: str) -> float | None:
        """Unload `model` if it is loaded, load it again and return the load time in seconds (None where the
        target cannot unload or does not report it)."""
        ...

    def server_pid(self) -> int | None:
        """The pid of the process doing the inference, for the memory sampler (None when unknown)."""
        ...

    async def close(self) -> None: ...
