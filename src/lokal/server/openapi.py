"""The OpenAPI document `lokal serve` publishes at `GET /openapi.json`, true to what the server answers.

FastAPI generates the paths and the request bodies from the routes and their pydantic body models; `install`
post-processes that document once, on first request, so a client generator or a fuzzer can rely on it:

- every response a route really gives is documented, with the statuses of `docs/server.md`: 400 for any
  invalid request (never FastAPI's 422, which `errors.install` turns into a 400), 404 unknown model, 413 body
  too large, 503 queue full, 507 no room (disk or memory), 502 hub unreachable (pulls), 401 and 403 from the
  guards; errors in the route's envelope (Ollama's `{"error": "..."}` or OpenAI's `{"error": {...}}`);
- 200 bodies have schemas: the TypedDicts below, one per shape `lokal.shapes` and the routes build. They are
  documentation only: nothing validates or serialises a response against them at run time (no
  `response_model=`), so they cost nothing per request. NDJSON streams document one line's schema (each line
  is one JSON object), SSE streams one event's (its `data` is JSON, or `[DONE]`, OpenAPI 3.1's reading);
- request bodies say what the server accepts: `options` lists Ollama's options with their ranges (other keys
  are accepted and ignored), `model`/`name` is required, `/api/create` takes `from`.

A route missing from `ROUTES` keeps FastAPI's defaults minus the 422 (tests/unit/test_server_openapi.py fails
for it): add its entry when adding a route.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from lokal.engine.base import MAX_TOP_LOGPROBS
from lokal.engine.messages import TEXT_PART_TYPES
from lokal.engine.options import FLOAT_FIELDS, INT32_MAX, INT_FIELDS, Options
from lokal.server.response_schemas import (
    SHAPES,
)
from lokal.server.security import OPEN_PATHS

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
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


_DIGEST_PATTERN = "^sha256[:-][0-9a-fA-F]{64}$"
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
            "additionalProperties": {"type": "string", "pattern": _DIGEST_PATTERN},
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

# -- responses per route ----------------------------------------------------------------------------------------


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def one_of(*names: str) -> dict[str, Any]:
    return {"anyOf": [ref(n) for n in names]}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _json_or_ndjson(description: str, whole: dict[str, Any], line: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description + f" (`stream` true: {NDJSON}, one JSON object per line, each matching its schema)",
        "content": {"application/json": {"schema": whole}, NDJSON: {"schema": line}},
    }


def _sse_event(*chunks: str) -> dict[str, Any]:
    """One SSE event: `data` is a JSON chunk, or `[DONE]` at the end."""
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "event": {"const": "message"},
            "data": {
                "type": "string",
                "if": {"const": "[DONE]"},
                "then": True,
                "else": {"contentMediaType": "application/json", "contentSchema": one_of(*chunks)},
            },
        },
    }


def _json_or_named_sse(description: str, whole: str, event: str) -> dict[str, Any]:
    """A JSON answer, or SSE events each with an `event:` line naming its type (no `[DONE]`: the Responses API)."""
    schema = {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string"},
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": ref(event)},
        },
    }
    return {
        "description": description + f" (`stream: true`: {SSE}, `event: <type>` and `data: <event>` per event)",
        "content": {"application/json": {"schema": ref(whole)}, SSE: {"schema": schema}},
    }


def _json_or_sse(description: str, whole: str, *chunks: str) -> dict[str, Any]:
    return {
        "description": description + f" (`stream: true`: {SSE}, `data: <chunk>` events, then `data: [DONE]`)",
        "content": {"application/json": {"schema": ref(whole)}, SSE: {"schema": _sse_event(*chunks)}},
    }


def _empty(description: str) -> dict[str, Any]:
    return {"description": description}


_GENERATE_OK = _json_or_ndjson(
    "the answer",
    one_of("GenerateFinal", "GenerateLoaded"),
    one_of("GenerateChunk", "GenerateFinal", "GenerateLoaded", "OllamaError"),
)
_CHAT_OK = _json_or_ndjson(
    "the answer", one_of("ChatFinal", "ChatLoaded"), one_of("ChatChunk", "ChatFinal", "ChatLoaded", "OllamaError")
)
_PROGRESS_OK = _json_or_ndjson("done", ref("StatusResponse"), one_of("ProgressLine", "OllamaError"))

GENERATION = (400, 404, 413, 503, 507)  # 507: not enough memory to load the model
STORE_WRITE = (400, 404, 413, 507)  # 507: not enough disk space


@dataclasses.dataclass(frozen=True)
class RouteDoc:
    """What one operation answers: its success responses and the error statuses it can give."""

    ok: dict[int, dict[str, Any]]
    errors: tuple[int, ...] = ()
    notes: dict[int, str] = dataclasses.field(default_factory=dict)  # route-specific error descriptions


ROUTES: dict[tuple[str, str], RouteDoc] = {
    ("get", "/api/version"): RouteDoc({200: _json("lokal's version", ref("VersionResponse"))}),
    ("head", "/api/version"): RouteDoc({200: _json("lokal's version (headers only)", ref("VersionResponse"))}),
    ("post", "/api/generate"): RouteDoc({200: _GENERATE_OK}, GENERATION),
    ("post", "/api/chat"): RouteDoc({200: _CHAT_OK}, GENERATION),
    ("post", "/api/embed"): RouteDoc({200: _json("the vectors", ref("EmbedResponse"))}, GENERATION),
    ("post", "/api/embeddings"): RouteDoc({200: _json("the vector", ref("EmbeddingsResponse"))}, GENERATION),
    ("get", "/api/tags"): RouteDoc({200: _json("the models in the store", ref("TagsResponse"))}),
    ("head", "/api/tags"): RouteDoc({200: _json("the models in the store (headers only)", ref("TagsResponse"))}),
    ("post", "/api/show"): RouteDoc({200: _json("the model's metadata", ref("ShowResponse"))}, (400, 404, 413)),
    ("get", "/api/ps"): RouteDoc({200: _json("the loaded models", ref("PsResponse"))}),
    ("post", "/api/copy"): RouteDoc({200: _empty("copied (no body)")}, STORE_WRITE),
    ("delete", "/api/delete"): RouteDoc(
        {200: _empty("deleted (no body)")},
        (400, 403, 404, 413),
        {403: "the model is in Ollama's store, which lokal only reads (or the Host header is not local)"},
    ),
    ("post", "/api/pull"): RouteDoc(
        {200: _PROGRESS_OK},
        (*STORE_WRITE, 502),
        {502: "the Hugging Face hub cannot be reached (offline); a stream reports it as an error line"},
    ),
    ("post", "/api/create"): RouteDoc({200: _PROGRESS_OK}, STORE_WRITE),
    ("head", "/api/blobs/{digest}"): RouteDoc({200: _empty("the store has this blob")}, (400, 404)),
    ("post", "/api/blobs/{digest}"): RouteDoc(
        {201: _empty("stored"), 200: _empty("the store already had this blob")},
        (400, 507),
        {400: "a malformed digest, or bytes that do not match it (nothing is kept)"},
    ),
    ("post", "/v1/chat/completions"): RouteDoc(
        {200: _json_or_sse("the completion", "ChatCompletion", "ChatCompletionChunk", "UsageChunk", "OpenAIError")},
        GENERATION,
    ),
    ("post", "/v1/completions"): RouteDoc(
        {200: _json_or_sse("the completion", "TextCompletion", "TextCompletionChunk", "UsageChunk", "OpenAIError")},
        GENERATION,
    ),
    ("post", "/v1/embeddings"): RouteDoc({200: _json("the vectors", ref("EmbeddingList"))}, GENERATION),
    ("post", "/v1/responses"): RouteDoc(
        {200: _json_or_named_sse("the response", "ResponseObject", "ResponseStreamEvent")}, GENERATION
    ),
    ("get", "/v1/models"): RouteDoc({200: _json("the models in the store", ref("ModelList"))}),
    ("get", "/v1/models/{model}"): RouteDoc({200: _json("the model", ref("ModelObject"))}, (400, 404)),
    ("get", "/health"): RouteDoc(
        {
            200: _json("ready", ref("Health")),
            503: _json("models named at start-up are loading, or an engine failed", ref("Health")),
        }
    ),
    ("get", "/metrics"): RouteDoc(
        {200: {"description": "Prometheus metrics", "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}}
    ),
}

_ERROR_DESCRIPTIONS = {
    400: "invalid request: malformed or non-strict JSON, wrong types, bad options, a prompt longer than the context",
    401: "missing or wrong API key (only when LOKAL_API_KEY is set)",
    403: "the Host header does not name this machine while the server is bound to loopback (DNS rebinding)",
    404: "unknown model",
    413: "request body over the limit (LOKAL_MAX_BODY_BYTES)",
    502: "an upstream hub cannot be reached",
    503: "too many requests are waiting for the model; retry after Retry-After seconds",
    507: "not enough room: disk space for the store, or memory to load the model",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "seconds", "schema": {"type": "string"}}},
}


def _error_statuses(path: str, doc: RouteDoc, has_body: bool) -> list[int]:
    statuses = set(doc.errors) | {403}  # the Host guard answers every route
    if path not in OPEN_PATHS:
        statuses.add(401)
    if has_body:
        statuses |= {400, 413}
    return sorted(statuses - set(doc.ok))


def _error_response(status: int, path: str, note: str | None) -> dict[str, Any]:
    envelope = "OpenAIError" if path.startswith("/v1/") else "OllamaError"
    response = _json(note or _ERROR_DESCRIPTIONS.get(status, "error"), ref(envelope))
    if status in _HEADERS:
        response["headers"] = copy.deepcopy(_HEADERS[status])
    return response


def _shape_schemas() -> dict[str, Any]:
    """The component schemas of every response shape, with objects closed (additionalProperties false)."""
    inputs: list[tuple[str, JsonSchemaMode, TypeAdapter[Any]]] = [
        (shape.__name__, "validation", TypeAdapter(shape)) for shape in SHAPES
    ]
    _, top = TypeAdapter.json_schemas(inputs, ref_template=REF)
    defs: dict[str, Any] = top.get("$defs", {})
    for schema in defs.values():
        _close_objects(schema)
    return defs


def _close_objects(schema: Any) -> None:
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            _close_objects(value)
    elif isinstance(schema, list):
        for value in schema:
            _close_objects(value)


def _unique_operation_ids(paths: dict[str, Any]) -> None:
    """FastAPI gives GET and HEAD of one `api_route` the same operationId (ending in whichever method its set
    yields first); end each with its own method instead."""
    counts: dict[str, int] = {}
    for operations in paths.values():
        for operation in operations.values():
            counts[operation.get("operationId", "")] = counts.get(operation.get("operationId", ""), 0) + 1
    for operations in paths.values():
        for method, operation in operations.items():
            op_id = operation.get("operationId", "")
            if counts[op_id] > 1:
                operation["operationId"] = f"{op_id.rsplit('_', 1)[0]}_{method}"


def document(spec: dict[str, Any]) -> dict[str, Any]:
    """Rewrite FastAPI's generated spec in place (and return it): responses, request schemas, components."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    shapes = _shape_schemas()
    clash = sorted(set(shapes) & set(schemas))
    if clash:
        raise ValueError(f"response shapes named like request bodies: {clash}")
    for name, patch in REQUEST_PATCHES.items():
        if name in schemas:
            patch(schemas[name])
    schemas["GenerationOptions"] = options_schema(open_ended=True)
    schemas["ModelParameters"] = options_schema(open_ended=False)
    schemas.update(shapes)
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)

    paths = spec.get("paths", {})
    _unique_operation_ids(paths)
    for path, operations in paths.items():
        for method, operation in operations.items():
            doc = ROUTES.get((method, path), RouteDoc({}))
            responses = {str(k): v for k, v in operation.get("responses", {}).items() if k != "422"}
            if doc.ok:  # FastAPI's success entry ({} schema) is replaced, not merged
                responses = {k: v for k, v in responses.items() if not k.startswith("2")}
                responses.update({str(status): copy.deepcopy(r) for status, r in doc.ok.items()})
            has_body = "requestBody" in operation
            for status in _error_statuses(path, doc, has_body):
                responses[str(status)] = _error_response(status, path, doc.notes.get(status))
            operation["responses"] = dict(sorted(responses.items()))
    _raw_upload(paths)
    _path_parameters(paths)
    spec["components"]["securitySchemes"] = {
        "apiKey": {"type": "http", "scheme": "bearer", "description": "LOKAL_API_KEY, when the server has one"}
    }
    spec["security"] = [{}, {"apiKey": []}]  # optional: only a server started with LOKAL_API_KEY asks for it
    return spec


def _path_parameters(paths: dict[str, Any]) -> None:
    """`/v1/models/{model}` takes a model name (slashes included: `hf.co/org/repo`)."""
    for operation in paths.get("/v1/models/{model}", {}).values():
        for parameter in operation.get("parameters", []):
            if parameter.get("name") == "model":
                parameter["schema"] = {**copy.deepcopy(MODEL_NAME), "title": "Model"}


def _raw_upload(paths: dict[str, Any]) -> None:
    """`/api/blobs/{digest}`: the digest's format, and the upload's raw body (the route reads the stream itself)."""
    operations = paths.get("/api/blobs/{digest}", {})
    for operation in operations.values():
        for parameter in operation.get("parameters", []):
            if parameter.get("name") == "digest":
                parameter["description"] = "sha256:<64 hex digits> (or Ollama's sha256-<hex>)"
                parameter["schema"] = {"type": "string", "pattern": _DIGEST_PATTERN, "title": "Digest"}
    if "post" in operations:
        operations["post"]["requestBody"] = {
            "required": True,
            "description": "the file's bytes; not subject to the JSON body limit",
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }


def install(app: FastAPI) -> None:
    """Make `app.openapi()` (and so `GET /openapi.json`) return the documented spec, built once."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            with warnings.catch_warnings():
                # GET and HEAD of one route share an operationId; `document` makes them unique.
                warnings.filterwarnings("ignore", message="Duplicate Operation ID")
                spec = generate()
            app.openapi_schema = document(spec)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema
