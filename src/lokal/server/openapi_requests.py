"""The request body schemas of `lokal serve`'s OpenAPI document (`openapi.py`): what pydantic's generated
`dict[str, Any]` and plain strings cannot say (option ranges, model-name patterns, roles, `from` or `files`).

Documentation only: validation stays with the body models and `lokal.engine.options`; `REQUEST_PATCHES` maps a
body model's name to the function that rewrites its generated schema.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

from lokal.engine.base import MAX_TOP_LOGPROBS
from lokal.engine.messages import TEXT_PART_TYPES
from lokal.engine.options import FLOAT_FIELDS, INT32_MAX, INT_FIELDS, Options
from lokal.engine.speculative import MAX_DRAFT, MODES

REF = "#/components/schemas/{model}"

# -- request pieces (what pydantic's `dict[str, Any]` cannot say) ---------------------------------------------

#: Each option's JSON type and range, as `lokal.engine.options.Options.validate` checks them (a value out of range
#: is a 400 naming the option). `null` means "not given". The keys must be `Options`' fields (a unit test checks).
_OPTION_DOCS: dict[str, tuple[dict[str, Any], str]] = {
    "num_predict": ({"minimum": -2}, "tokens to generate at most; -1 (default) until the end or the context is full"),
    "temperature": ({"minimum": 0}, "sampling temperature; 0 is greedy (default 0.8)"),
    "top_k": ({"minimum": 0, "maximum": INT32_MAX}, "sample from the k most likely tokens; 0 disables (default 40)"),
    "top_p": ({"minimum": 0, "maximum": 1}, "nucleus sampling (default 0.9)"),
    "min_p": ({"minimum": 0, "maximum": 1}, "drop tokens below min_p times the top token's probability (default 0)"),
    "seed": ({}, "random seed; -1 (default) a fresh one per request"),
    "stop": ({}, "stop sequences (not included in the output)"),
    "num_ctx": ({"minimum": 16, "maximum": INT32_MAX}, "context length the model is loaded with"),
    "repeat_penalty": ({"minimum": 0}, "penalty for repeated tokens; 1 disables (default)"),
    "repeat_last_n": ({"minimum": -1, "maximum": INT32_MAX}, "tokens the repeat penalty looks back; -1 the context"),
    "presence_penalty": ({}, "OpenAI's presence penalty (default 0)"),
    "frequency_penalty": ({}, "OpenAI's frequency penalty (default 0)"),
    "speculative": (
        {},
        "speculative decoding: off, lookup or draft (with the server's draft model)",
    ),
    "draft_num_predict": ({"minimum": 0, "maximum": MAX_DRAFT}, "tokens drafted per step at most (default 10)"),
}
_STOP = {
    "anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string", "minLength": 1}},
        {"type": "null"},
    ]
}


def options_schema(*, open_ended: bool) -> dict[str, Any]:
    """`options` (open-ended: unknown keys are ignored, as Ollama does) or a model's `parameters` (closed)."""
    properties: dict[str, Any] = {}
    for field in dataclasses.fields(Options):
        bounds, description = _OPTION_DOCS.get(field.name, ({}, ""))
        if field.name == "stop":
            schema: dict[str, Any] = copy.deepcopy(_STOP)
        elif field.name == "speculative":
            schema = {"enum": [*MODES, None]}
        elif field.name in INT_FIELDS:
            schema = {"type": ["integer", "null"], **bounds}
        elif field.name in FLOAT_FIELDS:
            schema = {"type": ["number", "null"], **bounds}
        else:  # pragma: no cover - every Options field is an int, a float or `stop`
            schema = {}
        properties[field.name] = {**schema, "description": description} if description else schema
    return {
        "type": "object",
        "properties": properties,
        "additionalProperties": open_ended,
        "description": (
            "Ollama's generation options; other keys are accepted and ignored"
            if open_ended
            else "default options the model records; an option lokal does not implement is a 400"
        ),
    }


_NULLABLE_OPTIONS = {"anyOf": [{"$ref": REF.format(model="GenerationOptions")}, {"type": "null"}]}
_KEEP_ALIVE = {
    "anyOf": [
        {"type": "number"},
        {
            "type": "string",
            "pattern": (
                "^[+-]?(?:(?:[0-9]+(?:\\.[0-9]*)?|\\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                "|(?:[0-9]+(?:\\.[0-9]+)?(?:ns|us|µs|ms|s|m|h))+)$"
            ),
        },
        {"type": "null"},
    ],
    "description": (
        "how long the model stays loaded after this request: seconds, or a Go duration such as '5m' or '1h30m'; "
        "negative keeps it loaded, 0 unloads it"
    ),
}
_FORMAT = {
    "anyOf": [
        {"type": "string", "enum": ["", "json"]},
        {"type": "object", "description": "a JSON schema the output must match"},
        {"type": "null"},
    ],
    "description": "constrain the output: 'json', or a JSON schema",
}
#: A model name as `lokal.store.names` accepts it: `name[:tag]`, `namespace/name[:tag]`, `hf.co/org/repo[:quant]`
#: (case-insensitive; every part starts with a letter or a digit). A malformed name is a 400, an unknown one a 404.
_PART = "[A-Za-z0-9][A-Za-z0-9._-]*"
MODEL_NAME = {
    "type": "string",
    "pattern": (
        f"^(?:(?:hf\\.co|huggingface\\.co)/{_PART}/{_PART}|(?:[A-Za-z0-9][A-Za-z0-9_-]*/)?{_PART})"
        "(?::[A-Za-z0-9_][A-Za-z0-9._-]*)?$"
    ),
    "maxLength": 300,
    "description": "a model name: name[:tag], namespace/name[:tag] or hf.co/org/repo[:quant]",
}
_NULLABLE_NAME = {"anyOf": [MODEL_NAME, {"type": "null"}]}
#: `model`, or its deprecated alias `name`, must be given (`_ModelRequest._needs_model`).
_NEEDS_MODEL = {
    "anyOf": [
        {"required": ["model"], "properties": {"model": {"type": "string", "minLength": 1}}},
        {"required": ["name"], "properties": {"name": {"type": "string", "minLength": 1}}},
    ]
}
_ROLE = {
    "type": "string",
    "enum": ["system", "developer", "user", "assistant", "tool"],
    "description": "case-insensitive; developer is the system turn; any other role is a 400",
}
_UNSUPPORTED = "recognised, not supported: a 400 unless empty"


def _set(schema: dict[str, Any], field: str, value: dict[str, Any]) -> None:
    schema["properties"][field] = {"title": schema["properties"][field].get("title", field), **copy.deepcopy(value)}


def _ollama_model_request(schema: dict[str, Any]) -> None:
    schema.update(copy.deepcopy(_NEEDS_MODEL))
    _set(schema, "model", _NULLABLE_NAME)
    _set(schema, "name", {**_NULLABLE_NAME, "deprecated": True, "description": "deprecated alias of model"})


_TOP_LOGPROBS = {
    "type": ["integer", "null"],
    "minimum": 0,
    "maximum": MAX_TOP_LOGPROBS,
    "description": "alternatives per generated token; more than 0 needs logprobs: true",
}


def _ollama_generation(schema: dict[str, Any]) -> None:
    _ollama_model_request(schema)
    properties = schema["properties"]
    _set(schema, "options", _NULLABLE_OPTIONS)
    _set(schema, "keep_alive", _KEEP_ALIVE)
    if "format" in properties:
        _set(schema, "format", _FORMAT)
    if "images" in properties:  # no model lokal runs takes images
        _set(
            schema,
            "images",
            {"type": ["array", "null"], "maxItems": 0, "description": "not supported: non-empty is a 400"},
        )
    if "top_logprobs" in properties:
        _set(schema, "top_logprobs", _TOP_LOGPROBS)
    if "input" in properties:  # /api/embed
        text = {"type": "string", "minLength": 1}
        _set(schema, "input", {"anyOf": [text, {"type": "array", "items": text}], "description": "text(s) to embed"})


def _ollama_message(schema: dict[str, Any]) -> None:
    _set(schema, "role", _ROLE)
    _set(
        schema, "images", {"type": ["array", "null"], "maxItems": 0, "description": "not supported: non-empty is a 400"}
    )


def _copy(schema: dict[str, Any]) -> None:
    _set(schema, "source", MODEL_NAME)
    _set(schema, "destination", MODEL_NAME)


DIGEST_PATTERN = "^sha256[:-][0-9a-fA-F]{64}$"
#: Exactly one of `from` and `files` must be given (both empty, or both given, is a 400).
_FROM_OR_FILES = {
    "anyOf": [
        {"required": ["from"], "properties": {"from": {"type": "string"}}},
        {"required": ["files"], "properties": {"files": {"type": "object", "minProperties": 1}}},
    ]
}


def _create(schema: dict[str, Any]) -> None:
    _ollama_model_request(schema)
    schema["allOf"] = [{"anyOf": schema.pop("anyOf")}, copy.deepcopy(_FROM_OR_FILES)]
    properties = schema["properties"]
    properties["from"] = {**copy.deepcopy(_NULLABLE_NAME), "title": "From", "description": "a model in the store"}
    del properties["from_"]
    _set(
        schema,
        "files",
        {
            "type": ["object", "null"],
            "maxProperties": 1,
            "propertyNames": {"pattern": "\\.[gG][gG][uU][fF]$"},
            "additionalProperties": {"type": "string", "pattern": DIGEST_PATTERN},
            "description": 'one GGUF uploaded with POST /api/blobs/<digest>, as {"model.gguf": "sha256:..."}',
        },
    )
    _set(schema, "parameters", {"anyOf": [{"$ref": REF.format(model="ModelParameters")}, {"type": "null"}]})
    _set(schema, "template", {"type": ["string", "null"], "maxLength": 0, "description": _UNSUPPORTED})
    _set(schema, "quantize", {"type": ["string", "null"], "maxLength": 0, "description": _UNSUPPORTED})
    _set(schema, "messages", {"type": ["array", "null"], "maxItems": 0, "description": _UNSUPPORTED})
    _set(schema, "adapters", {"type": ["object", "null"], "maxProperties": 0, "description": _UNSUPPORTED})


def _openai_sampling(schema: dict[str, Any], *, min_tokens: int) -> None:
    _set(schema, "model", MODEL_NAME)
    _set(schema, "options", {**_NULLABLE_OPTIONS, "description": "lokal's extension: Ollama options (num_ctx...)"})
    for field in ("max_tokens", "max_completion_tokens"):
        _set(schema, field, {"type": ["integer", "null"], "minimum": min_tokens})
    _set(schema, "n", {"anyOf": [{"const": 1}, {"type": "null"}], "description": "only 1 is supported"})
    _set(schema, "temperature", {"type": ["number", "null"], "minimum": 0})
    _set(schema, "top_p", {"type": ["number", "null"], "minimum": 0, "maximum": 1})


def _chat_completion(schema: dict[str, Any]) -> None:
    _openai_sampling(schema, min_tokens=1)
    _set(schema, "top_logprobs", _TOP_LOGPROBS)
    schema["properties"]["messages"]["minItems"] = 1
    _set(
        schema,
        "response_format",
        {
            "anyOf": [
                {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "enum": ["text", "json_object", "json_schema"]},
                        "json_schema": {
                            "type": "object",
                            "properties": {"name": {"type": "string"}, "schema": {"type": "object"}},
                            "required": ["schema"],
                        },
                    },
                    "if": {"properties": {"type": {"const": "json_schema"}}, "required": ["type"]},
                    "then": {"required": ["json_schema"]},
                },
                {"type": "null"},
            ]
        },
    )


def _completion(schema: dict[str, Any]) -> None:
    _openai_sampling(schema, min_tokens=0)
    schema["properties"]["max_tokens"]["description"] = "0 generates nothing: with echo and logprobs, scores the prompt"
    _set(
        schema,
        "logprobs",
        {
            "type": ["integer", "null"],
            "minimum": 0,
            "maximum": MAX_TOP_LOGPROBS,
            "description": "generated tokens' log-probabilities with this many alternatives; with echo "
            "(and max_tokens 0), 0 or 1: the prompt's",
        },
    )
    prompt = {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1}
    _set(schema, "prompt", {"anyOf": [{"type": "string"}, prompt], "description": "one prompt (a list of one)"})


def _chat_message(schema: dict[str, Any]) -> None:
    text_part = {
        "type": "object",
        "properties": {"type": {"enum": list(TEXT_PART_TYPES)}, "text": {"type": "string"}},
        "required": ["type"],
        "description": "text parts only: any other type is a 400",
    }
    _set(schema, "role", _ROLE)
    _set(schema, "content", {"anyOf": [{"type": "string"}, {"type": "array", "items": text_part}, {"type": "null"}]})


def _embedding(schema: dict[str, Any]) -> None:
    _set(schema, "model", MODEL_NAME)
    text = {"type": "string", "minLength": 1}
    _set(schema, "input", {"anyOf": [text, {"type": "array", "items": text}], "description": "text(s) to embed"})
    _set(schema, "encoding_format", {"type": "string", "enum": ["float", "base64"], "default": "float"})


#: Documentation-only changes to the request body schemas pydantic generated (validation is unchanged).
REQUEST_PATCHES: dict[str, Callable[[dict[str, Any]], None]] = {
    "GenerateRequest": _ollama_generation,
    "ChatRequest": _ollama_generation,
    "EmbedRequest": _ollama_generation,
    "EmbeddingsRequest": _ollama_generation,
    "Message": _ollama_message,
    "ModelRequest": _ollama_model_request,
    "PullRequest": _ollama_model_request,
    "CopyRequest": _copy,
    "CreateRequest": _create,
    "ChatCompletionRequest": _chat_completion,
    "CompletionRequest": _completion,
    "ChatMessage": _chat_message,
    "EmbeddingRequest": _embedding,
}
