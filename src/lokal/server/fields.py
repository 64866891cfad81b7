"""Every request field of every generation and embedding route, and what lokal does with it: supported, refused
(recognised but not implemented: a 400 that names the field, never a 200 that quietly drops what was asked), or
ignored, as upstream ignores it or because it cannot change the answer.

One table, used three ways: `JSONBodyRoute` calls `refuse()` on every parsed body before the handler runs, so
no route can forget it; tests check that every field the official `ollama` and `openai` clients can send on a
route is in the table, and that every refused one is refused; docs/server.md carries `markdown()`'s table.
Fields in neither Ollama's nor OpenAI's API are ignored, as both servers do.

A refused field is refused only when its value asks for something: `"tools": []` or `"think": false` ask for
nothing and pass (clients send such defaults).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from lokal.errors import InvalidOptions

Status = Literal["supported", "refused", "ignored"]


def _asks(value: Any) -> bool:
    """Whether a value asks for something: not null, false, zero, or empty."""
    return value is not None and value is not False and value != 0 and value not in ("", [], {})


@dataclass(frozen=True)
class Field:
    status: Status
    #: What it does (supported), why it is refused (the 400's text; `{model}` is the request's model), or why
    #: ignoring it loses nothing (ignored).
    note: str
    #: For a refused field: which values ask for what lokal cannot do (the others pass).
    asks: Callable[[Any], bool] = _asks


def ok(note: str) -> Field:
    return Field("supported", note)


def no(message: str, asks: Callable[[Any], bool] = _asks) -> Field:
    return Field("refused", message, asks)


def ignored(note: str) -> Field:
    return Field("ignored", note)


_TOOLS = ok("functions the model may call, for every model (lokal.engine.tools: described in the prompt, grammar-held)")
_THINK = ok(
    "true, false or a level (low, medium, high, max): a thinking model's reasoning, apart from the answer; "
    "unset: it thinks; a model that cannot: 400 does not support thinking"
)
_LOGPROBS = ok("each generated token's log-probability (the log-softmax of the model's raw logits)")
_TOP_LOGPROBS = ok("0 to 20 most likely alternatives per token; needs logprobs: true")
_IMAGES = no("model '{model}' does not support images")
_KEEP_ALIVE = ok("how long the model stays loaded: seconds, a Go duration, negative or huge = forever")
_OPTIONS = ok("Ollama's model options (num_ctx, temperature, seed, stop, ...); unknown keys ignored, as Ollama does")
_FORMAT = ok('"json", a JSON schema, or ""/null for none')
_NOT_TRUNCATED = "lokal never truncates a prompt: one longer than the context is a 400 whatever this says"

ROUTES: dict[str, dict[str, Field]] = {
    "POST /api/generate": {
        "model": ok("the model to run"),
        "prompt": ok("the prompt; empty loads (or with keep_alive 0 unloads) the model"),
        "system": ok("system prompt for this request (instead of the model's)"),
        "context": ok("token ids of an earlier answer's context, to continue it"),
        "raw": ok("send the prompt as is, without the chat template"),
        "stream": ok("NDJSON stream (default) or one JSON object"),
        "format": _FORMAT,
        "keep_alive": _KEEP_ALIVE,
        "options": _OPTIONS,
        "images": _IMAGES,
        "suffix": no("model '{model}' does not support insert (fill-in-the-middle with suffix)"),
        "template": no(
            "template is not supported: lokal renders the model's own chat template and cannot run Ollama's Go "
            "templates; format the prompt yourself and send raw: true"
        ),
        "think": _THINK,
        "logprobs": _LOGPROBS,
        "top_logprobs": _TOP_LOGPROBS,
        "width": no("image generation is not supported (width)"),
        "height": no("image generation is not supported (height)"),
        "steps": no("image generation is not supported (steps)"),
        "truncate": ignored(_NOT_TRUNCATED),
        "shift": ignored(_NOT_TRUNCATED + " (shift: false asks the same)"),
    },
    "POST /api/chat": {
        "model": ok("the model to run"),
        "messages": ok("system, user, assistant and tool turns; empty loads the model"),
        "stream": ok("NDJSON stream (default) or one JSON object"),
        "format": _FORMAT,
        "keep_alive": _KEEP_ALIVE,
        "options": _OPTIONS,
        "tools": _TOOLS,
        "tool_choice": ok(
            'lokal extension (Ollama has none), as OpenAI\'s: "none", "auto", "required", a function; '
            "unset: the model's PARAMETER tool_choice, else auto"
        ),
        "parallel_tool_calls": ok("lokal extension, as OpenAI's: false allows one call per answer"),
        "think": _THINK,
        "logprobs": _LOGPROBS,
        "top_logprobs": _TOP_LOGPROBS,
        "truncate": ignored(_NOT_TRUNCATED),
        "shift": ignored(_NOT_TRUNCATED + " (shift: false asks the same)"),
    },
    "POST /api/embed": {
        "model": ok("the model to embed with"),
        "input": ok("a text or a list of texts"),
        "dimensions": ok("cut each vector to this many dimensions (L2-normalised before and after, as Ollama)"),
        "truncate": ignored("lokal never truncates an input: one longer than the model's window is a 400 either way"),
        "keep_alive": _KEEP_ALIVE,
        "options": _OPTIONS,
    },
    "POST /api/embeddings": {
        "model": ok("the model to embed with"),
        "prompt": ok("the text; empty loads the model"),
        "keep_alive": _KEEP_ALIVE,
        "options": _OPTIONS,
    },
    "POST /v1/chat/completions": {
        "model": ok("the model to run"),
        "messages": ok("system, developer (as system), user, assistant turns; text content or text parts"),
        "stream": ok("SSE ending in data: [DONE]"),
        "stream_options": ok("include_usage: a last chunk with usage"),
        "temperature": ok("sampling temperature (1.0 when omitted, as OpenAI)"),
        "top_p": ok("nucleus sampling (1.0 when omitted)"),
        "max_tokens": ok("output token limit"),
        "max_completion_tokens": ok("output token limit (wins over max_tokens)"),
        "seed": ok("sampling seed"),
        "stop": ok("a stop string or a list of them"),
        "frequency_penalty": ok("as OpenAI"),
        "presence_penalty": ok("as OpenAI"),
        "n": ok("1 only; more is a 400 (send several requests: they are batched)"),
        "response_format": ok("text, json_object, json_schema"),
        "options": ok("lokal extension: Ollama options such as num_ctx"),
        "tools": _TOOLS,
        "tool_choice": ok(
            '"none", "auto", "required", or a named function (then that call, every time); '
            "unset: the model's PARAMETER tool_choice, else auto"
        ),
        "parallel_tool_calls": ok("false: at most one call per answer"),
        "functions": no("functions is OpenAI's deprecated form of tools: send tools instead"),
        "function_call": no(
            "function_call is OpenAI's deprecated form of tool_choice: send tools and tool_choice instead",
            asks=lambda v: v not in (None, "none", "auto"),
        ),
        "logprobs": _LOGPROBS,
        "top_logprobs": _TOP_LOGPROBS,
        "logit_bias": no("logit_bias is not supported yet; drop it"),
        "reasoning_effort": ok(
            "a thinking model's level (none: off, minimal: low, xhigh: max, as Ollama maps it); "
            "its reasoning comes as reasoning_content"
        ),
        "verbosity": no("verbosity is not supported; drop it (or ask for brevity in the prompt)"),
        "modalities": no("only text output is supported (modalities)", asks=lambda v: v not in (None, ["text"])),
        "audio": no("audio output is not supported"),
        "prediction": no("predicted outputs are not supported; drop prediction"),
        "web_search_options": no(
            "web_search_options: web search is not supported, lokal runs offline", asks=lambda v: v is not None
        ),
        "store": no("lokal does not store completions; drop store"),
        "metadata": ignored("only kept with store, which is refused"),
        "user": ignored("an end-user id for OpenAI's abuse monitoring"),
        "safety_identifier": ignored("an end-user id for OpenAI's abuse monitoring"),
        "service_tier": ignored("OpenAI's pricing tier; lokal has one"),
        "prompt_cache_key": ignored("a routing hint for OpenAI's prompt cache; lokal's cache works without it"),
        "prompt_cache_retention": ignored("OpenAI's prompt cache lifetime; lokal keeps prefixes per slot"),
        "prompt_cache_options": ignored("OpenAI's prompt cache settings; lokal keeps prefixes per slot"),
        "moderation": ignored("OpenAI's moderation settings; lokal runs no moderation model"),
    },
    "POST /v1/completions": {
        "model": ok("the model to run"),
        "prompt": ok("a text (a list of one text)"),
        "stream": ok("SSE ending in data: [DONE]"),
        "stream_options": ok("include_usage: a last chunk with usage"),
        "temperature": ok("sampling temperature (1.0 when omitted)"),
        "top_p": ok("nucleus sampling (1.0 when omitted)"),
        "max_tokens": ok("output token limit; 0 scores the prompt only"),
        "seed": ok("sampling seed"),
        "stop": ok("a stop string or a list of them"),
        "frequency_penalty": ok("as OpenAI"),
        "presence_penalty": ok("as OpenAI"),
        "n": ok("1 only; more is a 400"),
        "echo": ok("prepend the prompt (with logprobs: score it)"),
        "logprobs": ok(
            "0 to 20: generated tokens' log-probabilities with that many alternatives; "
            "0 or 1 with echo and max_tokens 0: the prompt's"
        ),
        "options": ok("lokal extension: Ollama options such as num_ctx"),
        "suffix": no("suffix is not supported (the model does not support insert)"),
        "best_of": no("best_of is not supported; send several requests", asks=lambda v: v not in (None, 0, 1)),
        "logit_bias": no("logit_bias is not supported yet; drop it"),
        "user": ignored("an end-user id for OpenAI's abuse monitoring"),
    },
    "POST /v1/embeddings": {
        "model": ok("the model to embed with"),
        "input": ok("a text or a list of texts"),
        "encoding_format": ok("float or base64"),
        "dimensions": ok("cut each vector to this many dimensions"),
        "user": ignored("an end-user id for OpenAI's abuse monitoring"),
    },
    "POST /v1/responses": {
        "model": ok("the model to run"),
        "input": ok("a text, or message, function_call, function_call_output and reasoning items"),
        "instructions": ok("the system turn"),
        "tools": ok("function tools (the flat form), for every model, as on /v1/chat/completions"),
        "tool_choice": ok('"none", "auto", "required", or {"type": "function", "name": ...}'),
        "parallel_tool_calls": ok("false: at most one call per answer"),
        "max_output_tokens": ok("output token limit; reached: status incomplete"),
        "temperature": ok("sampling temperature (1.0 when omitted)"),
        "top_p": ok("nucleus sampling (1.0 when omitted)"),
        "reasoning": ok("effort: a thinking model's level, as reasoning_effort; its reasoning as a reasoning item"),
        "text": ok("format: text, json_object, or json_schema with a schema"),
        "include": ok('"reasoning.encrypted_content" only: the reasoning, in plain text as Ollama gives it'),
        "stream": ok("SSE events as responses.stream() reads them"),
        "stream_options": ignored(
            "include_obfuscation pads events against side channels on a network lokal does not cross"
        ),
        "previous_response_id": no(
            "previous_response_id: lokal keeps no responses (stateless, as Ollama); send the conversation in input"
        ),
        "conversation": no("conversation: lokal keeps no conversations; send the whole conversation in input"),
        "store": no("lokal does not store responses; drop store (or send store: false)"),
        "background": no("background responses are not supported (lokal keeps no state to poll)"),
        "background_options": no("background responses are not supported (background_options)"),
        "prompt": no("prompt (a stored prompt template) is not supported; send instructions and input"),
        "max_tool_calls": no("max_tool_calls is not supported; parallel_tool_calls: false allows one call"),
        "top_logprobs": no("top_logprobs is not supported on /v1/responses yet; use /v1/chat/completions"),
        "truncation": ignored(_NOT_TRUNCATED + " (truncation: auto asks the same)"),
        "context_management": no("context_management is not supported: lokal never compacts or drops input"),
        "image": no("image generation is not supported (image)"),
        "access_programs": no("access_programs is not supported"),
        "metadata": ignored("only kept with store, which is refused"),
        "user": ignored("an end-user id for OpenAI's abuse monitoring"),
        "safety_identifier": ignored("an end-user id for OpenAI's abuse monitoring"),
        "service_tier": ignored("OpenAI's pricing tier; lokal has one"),
        "prompt_cache_key": ignored("a routing hint for OpenAI's prompt cache; lokal's cache works without it"),
        "prompt_cache_retention": ignored("OpenAI's prompt cache lifetime; lokal keeps prefixes per slot"),
        "prompt_cache_options": ignored("OpenAI's prompt cache settings; lokal keeps prefixes per slot"),
        "moderation": ignored("OpenAI's moderation settings; lokal runs no moderation model"),
        "options": ok("lokal extension: Ollama options such as num_ctx"),
    },
}


def refuse(route: str, body: Any) -> None:
    """An `InvalidOptions` (400) naming the first refused field of `route` whose value asks for something."""
    fields = ROUTES.get(route)
    if not fields or not isinstance(body, dict):
        return
    for name, value in body.items():
        field = fields.get(name)
        if field is not None and field.status == "refused" and field.asks(value):
            model = body.get("model") if isinstance(body.get("model"), str) else body.get("name")
            raise InvalidOptions(field.note.format(model=model or "", value=value))


def markdown() -> str:
    """The table docs/server.md carries (a test keeps the two the same)."""
    lines = ["| route | field | lokal | note |", "| --- | --- | --- | --- |"]
    for route, fields in ROUTES.items():
        for name, field in fields.items():
            note = field.note.replace("{model}", "M").replace("{value!r}", "X").replace("|", "\\|")
            lines.append(f"| `{route}` | `{name}` | {field.status} | {note} |")
    return "\n".join(lines) + "\n"
