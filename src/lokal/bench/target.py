"""What a benchmark target does: send one request and report, with one clock reading per event, what came back.

The load runner (`lokal.bench.load`) decides when requests go out; a target only carries them out. Three
kinds exist (`lokal.bench.targets`): the in-process engine, a server speaking Ollama's API, and a server
speaking OpenAI's. `Target` is the whole contract the runner uses; `TargetBase` gives the members a target may
not have (cold start, a server pid, an engine per model, load details, a tokenizer) their "not known" defaults,
so the runner calls every member directly and never probes.

A target never raises for a failed request (HTTP error, broken stream, timeout): it returns an `Outcome` with
`ok=False` and the error, so the run records it and goes on. It raises (`TargetError`) only when it cannot be
used at all, e.g. an unreachable URL at `open()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

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


#: Makes a counter of one model's tokens on first need (None when the model's tokenizer cannot be had).
TokenizerFactory = Callable[[], Callable[[str], int] | None]


class Target(Protocol):
    """A place to send requests. `open` before the first request, `close` after the last."""

    #: "in-process", "ollama" or "openai": what the result records as the target's kind.
    kind: str
    #: Things the report should say about this run of the target (e.g. token counts that are chunk counts).
    warnings: list[str]

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

    def engine_of(self, model: str) -> str | None:
        """The engine that runs `model` ("llamacpp", "transformers"), or None when the target does not say."""
        ...

    def load_info(self, model: str) -> dict[str, Any]:
        """What the engine says about loading `model` (runtime, dtype, conversion), for the cold-start record;
        blocking. Empty when not known."""
        ...

    def token_counter(self, model: str) -> Callable[[str], int] | None:
        """An exact counter of `model`'s tokens (blocking), to size synthetic prompts; None when the target has
        no tokenizer, and prompts are then sized by an estimate."""
        ...

    def set_tokenizer(self, model: str, factory: TokenizerFactory) -> None:
        """Offer a way to count `model`'s output tokens, for a server that sends no usage. A target whose
        answers always carry token counts ignores it."""
        ...

    async def close(self) -> None: ...


class TargetBase:
    """The defaults of `Target`'s optional members: nothing known, nothing to do. Subclasses implement `open`,
    `request` and `kind`, and override what they can tell."""

    kind: str
    warnings: list[str]

    def __init__(self) -> None:
        self.warnings = []

    async def cold_start(self, model: str) -> float | None:
        return None

    def server_pid(self) -> int | None:
        return None

    def engine_of(self, model: str) -> str | None:
        return None

    def load_info(self, model: str) -> dict[str, Any]:
        return {}

    def token_counter(self, model: str) -> Callable[[str], int] | None:
        return None

    def set_tokenizer(self, model: str, factory: TokenizerFactory) -> None:
        return None

    async def close(self) -> None:
        return None

    def warn(self, message: str) -> None:
        """Record `message` for the report, once however often it happens."""
        if message not in self.warnings:
            self.warnings.append(message)
