"""Scripted stand-ins for the llama.cpp engine and the model store, for fast offline unit tests.

`FakeEngine` implements the `Engine` protocol: generation returns a `TokenStream` already fed with the
scripted pieces and its final `Completion`, and every call is recorded. `FakeFactory` is the
`EngineFactory` the `EngineManager` takes; `FakeStore` has just what the manager and the client use.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lokal.config import Settings
from lokal.engine.base import Completion, Format, GeneratedToken, TokenChoice, TokenLogprob
from lokal.engine.messages import normalise_messages
from lokal.engine.options import Options
from lokal.engine.stream import TokenStream
from lokal.engine.thinking import Reading
from lokal.engine.tokens import check_token_ids
from lokal.engine.tools import ToolRequest, messages_for
from lokal.errors import InvalidOptions, ModelNotFound, NoChatTemplate
from lokal.store.memory import MemoryEstimate
from lokal.store.types import LocalModel, ModelDetails

BOS = 1
VOCAB_SIZE = 1000  # FakeEngine's token ids are word lengths: well inside this


def make_model(
    name: str = "fake:latest",
    *,
    digest: str | None = None,
    size: int = 1234,
    params: Mapping[str, Any] | None = None,
    system: str | None = None,
    manifest_digest: str | None = None,
) -> LocalModel:
    return LocalModel(
        name=name,
        path=Path("/nonexistent") / f"{name.replace(':', '-')}.gguf",
        digest=digest or "sha256:" + "ab" * 32,
        size=size,
        source="file",
        origin="tests",
        modified_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        details=ModelDetails(family="llama", families=("llama",), parameter_size="1M", quantization_level="Q4_0"),
        params=dict(params or {}),
        system=system,
        manifest_digest=manifest_digest,
    )


def make_settings(tmp_path: Path, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "home": tmp_path / "home",
        "ollama_models": tmp_path / "ollama",
        "context_length": 256,
        "num_parallel": 2,
        "num_threads": 1,
        "keep_alive": 300.0,
        "max_loaded_models": 3,
        "check_memory": True,
    }
    values.update(changes)
    return Settings(**values)


class FakeEngine:
    """An `Engine` whose output is scripted; records prompts, options and whether it was closed."""

    runtime = "llamacpp"

    def __init__(
        self,
        model: LocalModel,
        context_length: int,
        num_parallel: int,
        *,
        pieces: Sequence[str] = ("Hello", ",", " world"),
        has_template: bool = True,
        generate_error: BaseException | None = None,
        tool_pieces: Sequence[str] | None = None,
        can_think: bool = False,
    ) -> None:
        self.model = model
        self.can_think = can_think
        self.context_length = context_length
        self.num_parallel = num_parallel
        self.pieces = tuple(pieces)
        #: What a chat with tools answers (a call's JSON, say); None: the plain pieces.
        self.tool_pieces = None if tool_pieces is None else tuple(tool_pieces)
        self.has_template = has_template
        self.generate_error = generate_error
        self.generate_calls: list[dict[str, Any]] = []
        self.chat_calls: list[dict[str, Any]] = []
        self.rendered: list[list[dict[str, Any]]] = []
        self.cancels = 0
        self.closed = False
        self.close_calls = 0
        self.vocab_size = VOCAB_SIZE
        self.failed: str | None = None  # set by a test: the engine "crashed" with this message
        self.load_info: dict[str, Any] = {}

    # -- generation -------------------------------------------------------------------------------
    def _stream(
        self, prompt_tokens: Sequence[int], logprobs: int | None = None, pieces: Sequence[str] | None = None
    ) -> TokenStream:
        """The scripted pieces, one token each; with `logprobs`, token i has log-probability -(i + 1) / 10 and
        `logprobs` alternatives (itself first, then ids 900, 901, ... at lower values)."""
        stream = TokenStream(on_cancel=self._on_cancel)
        pieces = self.pieces if pieces is None else tuple(pieces)
        scored = []
        for i, piece in enumerate(pieces):
            token = None
            if logprobs is not None:
                value = -(i + 1) / 10
                top = [TokenChoice(len(piece), piece.encode(), value)]
                top += [TokenChoice(900 + j, f"alt{j}".encode(), value - j - 1) for j in range(logprobs - 1)]
                token = GeneratedToken(len(piece), piece.encode(), value, tuple(top[:logprobs]))
                scored.append(token)
            stream.put_piece(piece, token)
        output = self.tokenize("".join(pieces), add_special=False)
        stream.finish(
            Completion(
                text="".join(pieces),
                done_reason="stop",
                prompt_eval_count=len(prompt_tokens),
                prompt_eval_duration=1_000,
                eval_count=len(pieces),
                eval_duration=2_000,
                total_duration=5_000,
                context=(*prompt_tokens, *output),
                logprobs=tuple(scored),
            )
        )
        return stream

    def _on_cancel(self) -> None:
        self.cancels += 1

    def generate(
        self,
        prompt: str | Sequence[int],
        options: Options,
        *,
        format: Format = None,
        add_special: bool = True,
        logprobs: int | None = None,
        reading: Reading | None = None,
    ) -> TokenStream:
        self.generate_calls.append(
            {
                "prompt": prompt,
                "options": options,
                "format": format,
                "add_special": add_special,
                "logprobs": logprobs,
                "reading": reading,
            }
        )
        if self.generate_error is not None:
            raise self.generate_error
        stream = self._stream(self.tokenize(prompt, add_special=add_special), logprobs)
        stream.thinking = reading
        return stream

    def chat(
        self,
        messages: Sequence[dict[str, Any]],
        options: Options,
        *,
        format: Format = None,
        logprobs: int | None = None,
        tools: ToolRequest | None = None,
        think: str | None = None,
    ) -> TokenStream:
        self.chat_calls.append(
            {
                "messages": list(messages),
                "options": options,
                "format": format,
                "logprobs": logprobs,
                "tools": tools,
                "think": think,
            }
        )
        if self.generate_error is not None:
            raise self.generate_error
        pieces = self.tool_pieces if tools is not None and tools.offered else None
        prompt = self.render_chat(messages, tools, think)
        stream = self._stream(self.tokenize(prompt), logprobs, pieces)
        stream.thinking = Reading.of_prompt(prompt) if think is not None else None
        return stream

    def bind_tools(self, tools: ToolRequest) -> ToolRequest:
        return tools  # the generic format

    def render_chat(
        self, messages: Sequence[dict[str, Any]], tools: ToolRequest | None = None, think: str | None = None
    ) -> str:
        """A template of its own; a thinking fake (`can_think`) opens the reasoning when asked to think."""
        self.rendered.append([dict(m) for m in messages])
        if not self.has_template:
            raise NoChatTemplate(f"model '{self.model.name}' has no chat template")
        if think is not None and not self.can_think:
            raise InvalidOptions(f"model '{self.model.name}' does not support thinking")
        rendered = messages_for(normalise_messages(messages), tools)
        prompt = "".join(f"<|{m['role']}|>{m['content']}\n" for m in rendered) + "<|assistant|>"
        return prompt + "<think>\n" if think is not None else prompt

    # -- tokens -----------------------------------------------------------------------------------
    def tokenize(self, text: str | Sequence[int], *, add_special: bool = True) -> list[int]:
        """One token per space-separated word (its length), after a BOS when `add_special`."""
        if not isinstance(text, str):
            return check_token_ids(text, self.vocab_size)
        return ([BOS] if add_special else []) + [len(word) for word in text.split()]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return " ".join(f"t{t}" for t in tokens)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[1.0, 0.0] for _ in texts]

    def logprobs(self, text: str, *, add_special: bool = True) -> list[TokenLogprob]:
        tokens = self.tokenize(text, add_special=add_special)
        return [TokenLogprob(t, f"t{t}", None if i == 0 else -1.0) for i, t in enumerate(tokens)]

    def active_requests(self) -> int:
        return 0

    def counts(self) -> tuple[int, int]:
        return (0, 0)

    def failure(self) -> str | None:
        return self.failed

    def close(self) -> None:
        self.closed = True
        self.close_calls += 1


class FakeFactory:
    """An `EngineFactory`: builds `FakeEngine`s with the given script and remembers every load."""

    def __init__(self, *, load_seconds: float = 0.001, fail: BaseException | None = None, **engine_kwargs: Any):
        self.load_seconds = load_seconds
        self.fail = fail
        self.engine_kwargs = engine_kwargs
        self.engines: list[FakeEngine] = []
        self.calls: list[tuple[str, int]] = []  # (model name, num_ctx) per load

    def __call__(self, model: LocalModel, num_ctx: int, settings: Settings) -> FakeEngine:
        self.calls.append((model.name, num_ctx))
        if self.load_seconds:
            time.sleep(self.load_seconds)  # so the measured load time is visibly above zero
        if self.fail is not None:
            raise self.fail
        engine = FakeEngine(model, num_ctx, settings.num_parallel, **self.engine_kwargs)
        self.engines.append(engine)
        return engine

    def for_model(self, name: str) -> list[FakeEngine]:
        return [e for e in self.engines if e.model.name == name]


class FakeStore:
    """`resolve`, `list` and `estimate_memory`, over a fixed set of models; names without a tag get ':latest'."""

    def __init__(self, models: Iterable[LocalModel] = (), *, estimate_total: int = 1_000) -> None:
        self.models = {m.name: m for m in models}
        self.estimate_total = estimate_total
        self.estimate_calls: list[tuple[str, int | None, int | None]] = []

    def add(self, model: LocalModel) -> LocalModel:
        self.models[model.name] = model
        return model

    def resolve(self, name: str) -> LocalModel:
        key = name if ":" in name else f"{name}:latest"
        try:
            return self.models[key]
        except KeyError:
            raise ModelNotFound(name) from None

    def list(self) -> list[LocalModel]:
        return [self.models[k] for k in sorted(self.models)]

    def sweep_temp_files(self) -> int:
        return 0

    def estimate_memory(
        self,
        model: LocalModel,
        *,
        num_ctx: int | None = None,
        num_parallel: int | None = None,
        engine: str = "llamacpp",
    ) -> MemoryEstimate:
        self.estimate_calls.append((model.name, num_ctx, num_parallel))
        kv = self.estimate_total // 4
        return MemoryEstimate(
            weights=self.estimate_total - 2 * kv,
            kv_cache=kv,
            compute=kv,
            num_ctx=num_ctx or 0,
            num_parallel=num_parallel or 0,
        )


def make_app(tmp_path: Path, name: str = "fake:latest") -> Any:
    """lokal's server app on the fake engine, with one model `name` in a fake store."""
    from lokal.engine.manager import EngineManager
    from lokal.server.app import create_app

    store = FakeStore([make_model(name)])
    config = make_settings(tmp_path)
    return create_app(config, EngineManager(config, store, factory=FakeFactory()), store=store)
