"""The engine contract: what the CLI, the Python API, the server, the bench and the audit rely on.

One engine serves one loaded model. Generation is a stream of text pieces followed by one final
`Completion` carrying Ollama's timing fields, so every caller reports the same numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from lokal.engine.options import Options
from lokal.engine.tools import ToolRequest
from lokal.store.types import LocalModel

DoneReason = Literal["stop", "length", "cancelled"]
#: The most alternatives a generated token's log-probability comes with (Ollama's and OpenAI's limit).
MAX_TOP_LOGPROBS = 20
#: `format` as Ollama accepts it: None/"" (free text), "json", or a JSON schema object.
Format = str | dict[str, Any] | None


@dataclasses.dataclass(frozen=True)
class Completion:
    """The end of one generation, with Ollama's timing fields (all durations in nanoseconds)."""

    text: str
    done_reason: DoneReason
    prompt_eval_count: int
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int
    total_duration: int
    load_duration: int = 0
    context: tuple[int, ...] = ()  # prompt + output token ids (Ollama's deprecated `context`)
    #: Of `prompt_eval_count`, the tokens whose KV cells came from the prompt cache instead of being evaluated.
    prompt_cache_count: int = 0
    #: One entry per generated token when log-probabilities were asked for (`generate(..., logprobs=k)`).
    logprobs: tuple[GeneratedToken, ...] = ()
    #: Speculative decoding: tokens drafted and verified, and how many of them were kept (both in `eval_count`
    #: only as far as they were kept).
    draft_count: int = 0
    draft_accepted_count: int = 0

    def timings(self) -> dict[str, int]:
        """Ollama's timing fields; with speculative decoding, the draft counts too (only then: Ollama has none)."""
        out = {
            "total_duration": self.total_duration,
            "load_duration": self.load_duration,
            "prompt_eval_count": self.prompt_eval_count,
            "prompt_eval_duration": self.prompt_eval_duration,
            "eval_count": self.eval_count,
            "eval_duration": self.eval_duration,
        }
        if self.draft_count:
            out["draft_count"] = self.draft_count
            out["draft_accepted_count"] = self.draft_accepted_count
        return out


@dataclasses.dataclass(frozen=True)
class TokenLogprob:
    """Log-probability of one token given all tokens before it (natural log)."""

    token: int
    text: str
    logprob: float | None  # None for the first token, which has no preceding context


@dataclasses.dataclass(frozen=True)
class TokenChoice:
    """A token the model could have produced at one step, with its log-probability there (natural log)."""

    token: int
    bytes: bytes  # the token's own bytes: one character can span tokens, so `text` alone can lose data
    logprob: float

    @property
    def text(self) -> str:
        """The token's bytes as text (an incomplete UTF-8 character shows as U+FFFD)."""
        return self.bytes.decode("utf-8", errors="replace")


@dataclasses.dataclass(frozen=True)
class GeneratedToken(TokenChoice):
    """A generated token: its log-probability under the distribution it was sampled from (the log-softmax of
    the model's logits, before any sampling option reshaped them) and the `top` most likely tokens there."""

    top: tuple[TokenChoice, ...] = ()


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One delivery of a stream: text (possibly empty while a stop string or a character is incomplete) and,
    when log-probabilities were asked for, the generated token it came from."""

    text: str
    token: GeneratedToken | None = None


class GenerationStream(Protocol):
    """Iterate for text pieces (or `chunks()` for text with log-probabilities), with `for` or `async for`;
    afterwards `result` holds the `Completion`. `cancel()` frees the slot."""

    def __iter__(self) -> Iterator[str]: ...

    def chunks(self) -> Iterator[Chunk]: ...

    def __aiter__(self) -> AsyncIterator[str]: ...

    def achunks(self) -> AsyncIterator[Chunk]: ...

    def text(self) -> str:
        """Consume the stream and return the final text."""
        ...

    @property
    def result(self) -> Completion: ...

    def cancel(self) -> None: ...

    #: A thinking model's answer: how it splits into reasoning and text (lokal.engine.thinking.Reading), or None.
    thinking: Any


@runtime_checkable
class Engine(Protocol):
    """A loaded model. Implementations must be safe to call from many threads at once."""

    model: LocalModel
    runtime: str  # "llamacpp" or "transformers" (lokal.engine_specs.EngineName)
    context_length: int  # tokens available to one sequence
    num_parallel: int  # sequences decoded together
    vocab_size: int  # valid token ids are 0 to vocab_size - 1 (checked before any id reaches the runtime)
    can_think: bool  # its template has a reasoning section (lokal.engine.thinking.can_think)
    #: What the load did, for bench's cold-start record: dtype, device, a GGUF conversion (transformers); may be empty.
    load_info: dict[str, Any]

    def generate(
        self,
        prompt: str | Sequence[int],
        options: Options,
        *,
        format: Format = None,
        add_special: bool = True,
        logprobs: int | None = None,
        reading: Any = None,
    ) -> GenerationStream:
        """Start generating from a raw prompt (no template) and return its stream at once. `logprobs`: None for
        none, else each generated token's log-probability with that many (0 to MAX_TOP_LOGPROBS) alternatives.
        `reading`: the prompt asks a thinking model to think (lokal.engine.thinking.Reading, from `chat`)."""
        ...

    def chat(
        self,
        messages: Sequence[dict[str, Any]],
        options: Options,
        *,
        format: Format = None,
        logprobs: int | None = None,
        tools: ToolRequest | None = None,
        think: str | None = None,
    ) -> GenerationStream:
        """Render `messages` with the model's chat template, then generate. `think`: a thinking model's level
        ("low" ... "max", lokal.engine.thinking), or None for no reasoning; the stream's `thinking` then says how
        to split the answer. With `tools`, the tools are described
        in the prompt and a call is held to their schemas, in the model's tool format (`bind_tools`); the output
        is read with `tool_formats.read_answer`. An engine that cannot constrain output raises `Unsupported`."""
        ...

    def bind_tools(self, tools: ToolRequest) -> ToolRequest:
        """`tools` bound to how this model writes calls (lokal.engine.tool_formats): what `chat` renders and
        holds them to, and what its output must be read with."""
        ...

    def render_chat(
        self, messages: Sequence[dict[str, Any]], tools: ToolRequest | None = None, think: str | None = None
    ) -> str: ...

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]: ...

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Mean-pooled, L2-normalised embeddings, one per text."""
        ...

    def logprobs(self, text: str, *, add_special: bool = True) -> list[TokenLogprob]:
        """True log-likelihood of every token of `text` (for the audit's likelihood scoring)."""
        ...

    def active_requests(self) -> int:
        """Requests decoding or waiting for a sequence slot: the manager never unloads an engine with any."""
        ...

    def counts(self) -> tuple[int, int]:
        """(sequences decoding, requests waiting for a slot), for the server's metrics."""
        ...

    def failure(self) -> str | None:
        """Why this engine stopped serving (its worker crashed), or None while it serves. The manager replaces a
        failed engine on the next request, and the server's /health reports it until then."""
        ...

    def close(self) -> None: ...
