"""Request handling shared by the Python API, the CLI and the server: options, prompts, keep-alive.

It decides what Ollama decides before a model runs — merge the model's default options under the
request's, apply the chat template to a non-raw generate, treat an empty prompt as "load the model" —
so every front end behaves the same.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from lokal.config import parse_duration
from lokal.engine import messages as engine_messages
from lokal.engine import thinking
from lokal.engine import tools as engine_tools
from lokal.engine.base import Completion, Engine, Format, GenerationStream
from lokal.engine.logprobs import check_top
from lokal.engine.manager import UNSET, EngineManager, KeepAlive
from lokal.engine.options import Options
from lokal.engine.thinking import Reading
from lokal.engine.tokens import check_token_ids
from lokal.engine.tools import ToolRequest
from lokal.errors import InvalidOptions, NoChatTemplate
from lokal.store.types import LocalModel


def keep_alive_seconds(value: str | float | None) -> KeepAlive:
    """Request `keep_alive` → seconds, None (forever), or UNSET (use the server default)."""
    return UNSET if value is None else parse_duration(value)


@dataclasses.dataclass
class Run:
    """One running request: its stream plus what is needed to report and release it."""

    manager: EngineManager
    engine: Engine
    stream: GenerationStream
    load_duration: int
    keep_alive: KeepAlive
    #: A chat's tools, bound to the model's tool format: what its output is read with.
    tools: ToolRequest | None = None
    released: bool = False

    @property
    def thinking(self) -> Reading | None:
        """A thinking model's answer: how it splits into reasoning and text (lokal.engine.answer reads it)."""
        return self.stream.thinking

    @property
    def model(self) -> str:
        return self.engine.model.name

    def completion(self) -> Completion:
        """The final result, with the load time this request paid added as Ollama reports it."""
        result = self.stream.result
        return dataclasses.replace(
            result,
            load_duration=self.load_duration,
            total_duration=result.total_duration + self.load_duration,
        )

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.manager.release(self.engine, keep_alive=self.keep_alive)

    def cancel(self) -> None:
        self.stream.cancel()
        self.release()


def logprobs_wanted(logprobs: bool | None, top_logprobs: int | None) -> int | None:
    """A request's `logprobs` / `top_logprobs` pair (Ollama's and OpenAI's chat fields) as the engine's
    `logprobs` argument: None for none, else how many alternatives per token. `top_logprobs` without
    `logprobs: true` is an error, as OpenAI makes it, rather than a silently empty answer."""
    if logprobs is None or logprobs is False:
        if top_logprobs is not None and top_logprobs != 0:
            raise InvalidOptions("top_logprobs needs logprobs: true (it says how many alternatives each token gets)")
        return None
    return check_top(0 if top_logprobs is None else top_logprobs)


def _options(engine: Engine, options: Mapping[str, Any] | Options | None) -> Options:
    if isinstance(options, Options):
        return options
    if options is not None and not isinstance(options, Mapping):
        raise InvalidOptions("options must be an object")
    return Options.from_mapping(options, engine.model.params)


def resolve(manager: EngineManager, model: str | LocalModel) -> LocalModel:
    """The model a request names, looked up once: every step after this takes the resolved model (a name
    resolved twice could mean two models if the store changed in between, and costs a store lookup each time)."""
    return model if isinstance(model, LocalModel) else manager.store.resolve(model)


def _name_as_sent(model: str | LocalModel) -> str:
    """What Ollama's error messages quote: the name as the request gave it."""
    return model if isinstance(model, str) else model.name


def context_length(model: LocalModel, options: Mapping[str, Any] | Options | None) -> int | None:
    """The load-time context length: the request's `num_ctx`, else the model's own default (Ollama's
    params layer), else None for the server default."""
    if isinstance(options, Options):
        return options.num_ctx
    if isinstance(options, Mapping) and options.get("num_ctx") is not None:
        return Options.from_mapping({"num_ctx": options["num_ctx"]}).num_ctx
    default = model.params.get("num_ctx")
    return Options.from_mapping({"num_ctx": default}).num_ctx if default is not None else None


def model_params(parameters: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Default options a created model records (`/api/create` `parameters`, a Modelfile's PARAMETER lines):
    each must be an option lokal implements, with a valid value. An unknown one is an error naming it, so a
    model is never created with a setting it would silently not use."""
    if parameters is None:
        return None
    known = sorted([field.name for field in dataclasses.fields(Options)] + list(_MODEL_ONLY_PARAMS))
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise InvalidOptions(f"parameters: lokal has no parameter {unknown[0]!r}; it supports {', '.join(known)}")
    for name, check in _MODEL_ONLY_PARAMS.items():
        if name in parameters:
            check(parameters[name])
    Options.from_mapping(parameters)  # types and ranges, with the option's name in the message
    return dict(parameters)


#: Ollama's Go template language: `{{ .Prompt }}`, `{{ range .Messages }}`, `{{ if .System }}`, `{{ end }}`.
_GO_TEMPLATE = re.compile(r"\{\{-?\s*(?:\.|(?:range|if|with|else|end|template|block|define)\b[^}]*\.?)")


def model_template(template: str | None) -> str | None:
    """A created model's chat template (`/api/create` `template`, a Modelfile's TEMPLATE), checked: a Jinja
    chat template over `messages`, as GGUF files carry (lokal renders those, with tools and thinking). Ollama's
    own Go templates are a 400 that says so: lokal cannot run them, and using the weights' template instead
    would silently change every prompt."""
    if template is None or template == "":
        return None
    if _GO_TEMPLATE.search(template) and "{%" not in template:
        raise InvalidOptions(
            "template: this is Ollama's Go template language ({{ .Prompt }}, {{ range .Messages }}), which lokal "
            "cannot run; give a Jinja chat template (as GGUF files carry in tokenizer.chat_template), or leave "
            "template out to use the model's own"
        )
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    try:
        ImmutableSandboxedEnvironment().parse(template)
    except TemplateSyntaxError as exc:
        raise InvalidOptions(f"template: not a valid Jinja template (line {exc.lineno}: {exc.message})") from None
    if "messages" not in template:
        raise InvalidOptions("template: a chat template renders `messages`; this one never reads them")
    return template


def model_messages(messages: Sequence[Any] | None) -> tuple[dict[str, str], ...] | None:
    """A created model's seed turns (`/api/create` `messages`, a Modelfile's MESSAGE lines): system, user and
    assistant turns with text content, checked as a chat's are."""
    if messages is None:
        return None
    if not isinstance(messages, list | tuple):
        raise InvalidOptions("messages must be a list of {role, content} turns")
    seed = []
    for i, entry in enumerate(engine_messages.normalise_messages(list(messages))):
        if entry["role"] not in ("system", "user", "assistant") or set(entry) - {"role", "content"}:
            raise InvalidOptions(f"messages[{i}]: a model's messages are system, user or assistant turns with text")
        seed.append({"role": entry["role"], "content": entry["content"]})
    return tuple(seed)


#: Parameters a model records that are not sampling options: each with its check.
_MODEL_ONLY_PARAMS = {"tool_choice": engine_tools.check_model_tool_choice}


def think_level(engine: Engine, think: str | Literal[False] | None, model: str) -> str | None:
    """The level an answer thinks at (None: no reasoning) from a request's `think` (`thinking.requested`): unset
    is "medium" for a model that thinks, as Ollama has it; asked of a model that cannot, Ollama's 400."""
    if think is None:
        return "medium" if engine.can_think else None
    if think is False:
        return None
    if not engine.can_think:
        raise InvalidOptions(f"model '{model}' does not support thinking")  # the name as sent, as Ollama says it
    return think


@dataclasses.dataclass(frozen=True)
class ToolAsk:
    """A request's tool fields as sent, for `start_chat` to make the ToolRequest once the model is resolved (a
    request naming no `tool_choice` gets the model's default): the name is then resolved once, not twice."""

    tools: Sequence[Any] | None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None

    @property
    def wants_model_default(self) -> bool:
        """Tools, and no `tool_choice`: the model's own default (`PARAMETER tool_choice`) decides."""
        return bool(self.tools) and self.tool_choice is None

    def request(self, model: LocalModel | None) -> ToolRequest | None:
        """The ToolRequest; `model` is read only when `wants_model_default` (else it may be None)."""
        choice = self.tool_choice
        if self.wants_model_default and model is not None:
            choice = model.params.get("tool_choice")
        return engine_tools.request(self.tools, choice, self.parallel_tool_calls)


def tool_request(
    manager: EngineManager,
    model: str | LocalModel,
    tools: Sequence[Any] | None,
    tool_choice: Any = None,
    parallel_tool_calls: bool | None = None,
) -> ToolRequest | None:
    """A request's tools as a ToolRequest (see `lokal.engine.tools.request`). A request with tools that names
    no `tool_choice` gets the model's default (`PARAMETER tool_choice`), else "auto". (A route that goes on to
    `start_chat` passes a `ToolAsk` instead, so the model is resolved once.)"""
    ask = ToolAsk(tools, tool_choice, parallel_tool_calls)
    return ask.request(resolve(manager, model) if ask.wants_model_default else None)


def load(manager: EngineManager, model: str | LocalModel, *, options: Any = None, keep_alive: Any = None) -> int:
    """Load a model without generating (Ollama's empty prompt); returns the load time in ns."""
    alive = keep_alive_seconds(keep_alive)
    found = resolve(manager, model)
    engine, load_ns = manager.acquire(found, num_ctx=context_length(found, options), keep_alive=alive)
    manager.release(engine, keep_alive=alive)
    return load_ns


def load_or_unload(
    manager: EngineManager, model: str | LocalModel, *, options: Any = None, keep_alive: Any = None
) -> tuple[str, str]:
    """Ollama's answer to an empty prompt: load the model, or unload it when `keep_alive` is 0.
    Returns the canonical model name and the `done_reason` ("load" or "unload")."""
    found = resolve(manager, model)
    if keep_alive is not None and keep_alive_seconds(keep_alive) == 0:
        manager.unload(found.name)
        return found.name, "unload"
    load(manager, found, options=options, keep_alive=keep_alive)
    return found.name, "load"


def start_generate(
    manager: EngineManager,
    model: str | LocalModel,
    prompt: str,
    *,
    system: str | None = None,
    raw: bool = False,
    format: Format = None,
    options: Mapping[str, Any] | Options | None = None,
    keep_alive: Any = None,
    context: Sequence[int] | None = None,
    logprobs: int | None = None,
    think: Any = None,
) -> Run:
    """Start a completion. Unless `raw`, the prompt goes through the model's chat template as a user turn
    (as Ollama does); a model without a template gets the prompt as is. `logprobs`: see `logprobs_wanted`.
    `think`: Ollama's (true, false, a level; unset thinks on a model that can), see `think_level`."""
    check_top(logprobs)  # before a model loads for a request that cannot run
    wanted = thinking.requested(think)
    if raw and wanted:
        raise InvalidOptions("raw mode does not support think: the prompt is sent as is, without the template")
    alive = keep_alive_seconds(keep_alive)
    found = resolve(manager, model)
    engine, load_ns = manager.acquire(found, num_ctx=context_length(found, options), keep_alive=alive)
    try:
        opts = _options(engine, options)
        reading = None
        if raw:
            tokens: list[int] | str = prompt
        else:
            messages = [{"role": "system", "content": system}] if system else []
            messages.append({"role": "user", "content": prompt})
            level = think_level(engine, wanted, _name_as_sent(model))
            try:
                tokens = engine.render_chat(messages, think=level)
            except NoChatTemplate:
                system = system or engine.model.system
                tokens = f"{system}\n\n{prompt}" if system else prompt
            else:
                reading = thinking.Reading.of_prompt(tokens) if level is not None else None
        if context:
            history = check_token_ids(context, engine.vocab_size, what="context")
            tokens = [*history, *engine.tokenize(tokens, add_special=False)] if isinstance(tokens, str) else tokens
        stream = engine.generate(tokens, opts, format=format, logprobs=logprobs, reading=reading)
    except BaseException:
        manager.release(engine, keep_alive=alive)
        raise
    return Run(manager, engine, stream, load_ns, alive)


def start_chat(
    manager: EngineManager,
    model: str | LocalModel,
    messages: Sequence[Mapping[str, Any]],
    *,
    format: Format = None,
    options: Mapping[str, Any] | Options | None = None,
    keep_alive: Any = None,
    logprobs: int | None = None,
    tools: ToolRequest | ToolAsk | None = None,
    think: Any = None,
) -> Run:
    """Start a chat. `tools` (from `lokal.engine.tools.request`, or a `ToolAsk` to be made against the resolved
    model's default `tool_choice`): the model may (or must) call them. `think`:
    Ollama's (true, false, a level; unset thinks on a model that can), see `think_level`. The run's output is
    read with `lokal.engine.answer` (`run.tools`, bound to the model's tool format, and `run.thinking`)."""
    check_top(logprobs)
    wanted = thinking.requested(think)
    alive = keep_alive_seconds(keep_alive)
    found = resolve(manager, model)
    asked = tools.request(found) if isinstance(tools, ToolAsk) else tools  # a bad tool is a 400 before any load
    engine, load_ns = manager.acquire(found, num_ctx=context_length(found, options), keep_alive=alive)
    try:
        bound = engine.bind_tools(asked) if asked is not None else None
        stream = engine.chat(
            [dict(m) for m in messages],
            _options(engine, options),
            format=format,
            logprobs=logprobs,
            tools=bound,
            think=think_level(engine, wanted, _name_as_sent(model)),
        )
    except BaseException:
        manager.release(engine, keep_alive=alive)
        raise
    return Run(manager, engine, stream, load_ns, alive, tools=bound)


def embed(
    manager: EngineManager,
    model: str | LocalModel,
    texts: Sequence[str],
    *,
    keep_alive: Any = None,
    dimensions: int | None = None,
) -> dict[str, Any]:
    """Embed `texts` with `model`: Ollama's `/api/embed` answer, for the Python API and both servers.

    `dimensions` cuts each vector as Ollama does: the first `dimensions` values, normalised to unit length again
    (so cosine similarities of cut vectors stay comparable)."""
    if dimensions is not None and dimensions < 1:
        raise InvalidOptions(f"dimensions must be at least 1, got {dimensions}")
    alive = keep_alive_seconds(keep_alive)
    engine, load_ns = manager.acquire(resolve(manager, model), keep_alive=alive)
    try:
        started = time.perf_counter_ns()
        vectors = engine.embed(texts) if texts else []
        prompt_tokens = sum(len(engine.tokenize(t)) for t in texts)
        total = time.perf_counter_ns() - started + load_ns
    finally:
        manager.release(engine, keep_alive=alive)
    if dimensions is not None:
        vectors = [_cut(v, dimensions) for v in vectors]
    return {
        "model": engine.model.name,
        "embeddings": vectors,
        "total_duration": total,
        "load_duration": load_ns,
        "prompt_eval_count": prompt_tokens,
    }


def _cut(vector: Sequence[float], dimensions: int) -> list[float]:
    """The first `dimensions` values, L2-normalised (what Ollama's normalise-cut-normalise comes to)."""
    if dimensions > len(vector):
        raise InvalidOptions(f"dimensions {dimensions} is more than the model's {len(vector)}")
    kept = vector[:dimensions]
    norm = math.sqrt(sum(x * x for x in kept))
    return [x / norm for x in kept] if norm else list(kept)
