"""In-process Python API shaped like the official `ollama` client.

    import lokal
    response = lokal.chat(model="smollm2", messages=[{"role": "user", "content": "Hello!"}])
    print(response["message"]["content"])     # or response.message.content

No server is involved: the model is loaded in this process (once, then kept for its keep-alive time).
Responses are dicts with Ollama's field names and also allow attribute access; `stream=True` returns an
iterator of chunks whose last one has `done: True` and the timings.
"""

from __future__ import annotations

import builtins
from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import Any

from lokal import inference, shapes
from lokal.config import Settings
from lokal.engine import answer
from lokal.engine import tools as engine_tools
from lokal.engine.base import Format
from lokal.shapes import Response


class Client:
    """Holds one model store and one engine manager; `close()` unloads every model."""

    def __init__(self, settings: Settings | None = None) -> None:
        from lokal.engine.manager import open_runtime

        self.settings = settings or Settings.from_env()
        runtime = open_runtime(self.settings)
        self.store = runtime.store
        self.manager = runtime.manager

    def close(self) -> None:
        self.manager.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- generation -------------------------------------------------------------------------------
    def generate(
        self,
        model: str,
        prompt: str = "",
        *,
        system: str | None = None,
        raw: bool = False,
        format: Format = None,
        options: Mapping[str, Any] | None = None,
        stream: bool = False,
        keep_alive: float | str | None = None,
        context: Sequence[int] | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        think: bool | str | None = None,
    ) -> Response | Iterator[Response]:
        """Ollama's generate. `logprobs=True` adds each generated token's log-probability (`logprobs` entries
        with `token`, `logprob`, `bytes`), and `top_logprobs` (0-20) that many alternatives per token. `think`
        (true, false, "low" ... "max"; unset: on for a model that thinks): a thinking model's reasoning comes
        as `thinking`, apart from the `response`."""
        wanted = inference.logprobs_wanted(logprobs, top_logprobs)
        if not prompt:
            name, reason = inference.load_or_unload(self.manager, model, options=options, keep_alive=keep_alive)
            final = Response.wrap(shapes.load_response(name, chat=False, reason=reason))
            return iter([final]) if stream else final
        run = inference.start_generate(
            self.manager,
            model,
            prompt,
            system=system,
            raw=raw,
            format=format,
            options=options,
            keep_alive=keep_alive,
            context=context,
            logprobs=wanted,
            think=think,
        )
        events = _Stream(self._events(run, chat=False, with_context=not raw), run)
        return events if stream else _collect(events, chat=False, with_logprobs=wanted is not None)

    def chat(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]] | None = None,
        *,
        format: Format = None,
        options: Mapping[str, Any] | None = None,
        stream: bool = False,
        keep_alive: float | str | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        think: bool | str | None = None,
    ) -> Response | Iterator[Response]:
        """Ollama's chat; `logprobs` and `top_logprobs` as in `generate`. `tools` (Ollama's and OpenAI's
        `{"type": "function", "function": {...}}`): the model may call them, and a call comes back as
        `message.tool_calls` (streamed: whole, in one chunk). `tool_choice` (lokal's, as OpenAI's: "none",
        "auto", "required" or `{"type": "function", "function": {"name": ...}}`; unset: the model's default).
        `think` as in `generate`; the reasoning comes as `message.thinking`."""
        wanted = inference.logprobs_wanted(logprobs, top_logprobs)
        tool_ask = inference.ToolAsk(tools, tool_choice)
        if not messages:
            name, reason = inference.load_or_unload(self.manager, model, options=options, keep_alive=keep_alive)
            final = Response.wrap(shapes.load_response(name, chat=True, reason=reason))
            return iter([final]) if stream else final
        run = inference.start_chat(
            self.manager,
            model,
            messages,
            format=format,
            options=options,
            keep_alive=keep_alive,
            logprobs=wanted,
            tools=tool_ask,
            think=think,
        )
        events = _Stream(self._events(run, chat=True, tool_request=run.tools), run)
        return events if stream else _collect(events, chat=True, with_logprobs=wanted is not None)

    def _events(
        self,
        run: inference.Run,
        *,
        chat: bool,
        with_context: bool = True,
        tool_request: engine_tools.ToolRequest | None = None,
    ) -> Generator[Response, None, None]:
        def chunk(text: str, tokens: Any, thinking: str = "", calls: Any = None) -> dict[str, Any]:
            if chat:
                return shapes.chat_chunk(run.model, text, tokens, calls, thinking=thinking)
            return shapes.generate_chunk(run.model, text, tokens, thinking=thinking)

        watcher = answer.AnswerWatcher(tool_request, run.thinking)
        finished = False
        try:
            for piece in run.stream.chunks():
                thinking, text = watcher.feed(piece.text)
                if text or thinking or piece.token is not None:
                    tokens = None if piece.token is None else [piece.token]
                    yield Response.wrap(chunk(text, tokens, thinking))
            completion = run.completion()
            finished = True
            thinking, text, calls = watcher.finish()
            if text or thinking or calls:
                yield Response.wrap(chunk(text, None, thinking, calls))
            final = (
                shapes.chat_final(run.model, completion)
                if chat
                else shapes.generate_final(run.model, completion, with_context=with_context)
            )
            run.release()
            yield Response.wrap(final)
        finally:
            if not finished:
                run.cancel()
            run.release()

    # -- embeddings -------------------------------------------------------------------------------
    def embed(
        self,
        model: str,
        input: str | Sequence[str],
        *,
        options: Mapping[str, Any] | None = None,
        keep_alive: float | str | None = None,
    ) -> Response:
        texts = [input] if isinstance(input, str) else builtins.list(input)
        return Response.wrap(inference.embed(self.manager, model, texts, keep_alive=keep_alive))

    # -- models -----------------------------------------------------------------------------------
    def list(self) -> Response:
        return Response.wrap({"models": [shapes.model_entry(m) for m in self.store.list()]})

    def show(self, model: str) -> Response:
        return Response.wrap(shapes.show_response(self.store.show(model)))

    def pull(self, model: str) -> Response:
        self.store.pull(model)
        return Response.wrap({"status": "success"})

    def delete(self, model: str) -> Response:
        self.store.remove(model)
        return Response.wrap({"status": "success"})

    def copy(self, source: str, destination: str) -> Response:
        self.store.copy(source, destination)
        return Response.wrap({"status": "success"})

    def ps(self) -> Response:
        return Response.wrap({"models": [shapes.ps_entry(entry) for entry in self.manager.loaded()]})


class _Stream:
    """The iterator `stream=True` returns. The request starts (and holds its model) at call time, so that
    errors surface there; if the caller drops the iterator without finishing it, the request is cancelled
    and the model released, even when iteration never started."""

    def __init__(self, events: Generator[Response, None, None], run: inference.Run) -> None:
        self._events = events
        self._run = run

    def __iter__(self) -> _Stream:
        return self

    def __next__(self) -> Response:
        return next(self._events)

    def close(self) -> None:
        self._events.close()  # runs the generator's cleanup if it started
        if not self._run.released:
            self._run.cancel()

    def __del__(self) -> None:
        self.close()


def _collect(events: Iterator[Response], *, chat: bool, with_logprobs: bool = False) -> Response:
    """The streamed chunks as one reply, as Ollama answers `stream: false`: the text joined and, when asked
    for, every token's log-probabilities."""
    parts: builtins.list[str] = []
    reasoning: builtins.list[str] = []
    logprobs: builtins.list[Any] = []
    calls: builtins.list[Any] = []
    final: Response | None = None
    for event in events:
        if event["done"]:
            final = event
        else:
            parts.append(event["message"]["content"] if chat else event["response"])
            reasoning.append((event["message"] if chat else event).get("thinking") or "")
            logprobs.extend(event.get("logprobs") or ())
            if chat:
                calls.extend(event["message"].get("tool_calls") or ())
    assert final is not None  # _events always ends with the final chunk or raises
    if calls:
        final["message"]["tool_calls"] = calls
    if with_logprobs:
        final["logprobs"] = logprobs
    reply = final["message"] if chat else final
    reply["content" if chat else "response"] = "".join(parts)
    if any(reasoning):
        reply["thinking"] = "".join(reasoning)
    return final
