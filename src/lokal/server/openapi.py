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
from typing import Any

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from lokal.server.openapi_requests import DIGEST_PATTERN, MODEL_NAME, REF, REQUEST_PATCHES, options_schema
from lokal.server.response_schemas import (
    SHAPES,
)
from lokal.server.security import OPEN_PATHS

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"

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
                parameter["schema"] = {"type": "string", "pattern": DIGEST_PATTERN, "title": "Digest"}
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
