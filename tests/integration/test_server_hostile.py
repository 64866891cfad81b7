"""A battery of hostile requests against a real `lokal serve`: each must get a clear 4xx (or a sane 200), never a
5xx, a hang, a plain-text error or a file's contents; and afterwards the server and its engine still serve.

What is sent: malformed and non-UTF-8 bodies, lone surrogates, NUL bytes, deep nesting, huge numbers, NaN and
Infinity, negative and huge option values, out-of-vocabulary token ids, absurd keep_alive values, path-traversal
names on every route that takes a model name, bad digests, and a chunked body over the size limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from server_fixture import MODEL, LiveServer, serve

pytestmark = pytest.mark.integration

BODY_LIMIT = 64 * 1024  # small, so the size limit is cheap to cross
PASSWD_LINE = "root:x:0:0"  # what /etc/passwd starts with: it must never appear in an answer


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serve(tmp_path_factory.mktemp("hostile"), context_length=256, max_body_bytes=BODY_LIMIT) as server:
        yield server


@pytest.fixture(scope="module")
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with live.http() as client:
        yield client


def error_of(response: httpx.Response) -> str:
    """The error text of a JSON error answer in either API's envelope (asserting it is one)."""
    assert response.headers["content-type"].startswith("application/json"), response.text[:200]
    body = response.json()
    error = body["error"]
    return error["message"] if isinstance(error, dict) else error


def refused(response: httpx.Response, status: int = 400, *fragments: str) -> str:
    assert response.status_code == status, f"{response.status_code}: {response.text[:300]}"
    message = error_of(response)
    for fragment in fragments:
        assert fragment in message, message
    assert PASSWD_LINE not in response.text
    return message


def post(http: httpx.Client, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=True).encode()
    return http.post(path, content=content, **kwargs)


GENERATE = {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 2, "temperature": 0}}
BODY_ROUTES = [
    ("POST", "/api/generate"),
    ("POST", "/api/chat"),
    ("POST", "/api/embed"),
    ("POST", "/api/embeddings"),
    ("POST", "/api/show"),
    ("POST", "/api/pull"),
    ("POST", "/api/copy"),
    ("POST", "/api/create"),
    ("DELETE", "/api/delete"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"),
]


# -- bodies that are not JSON, or not JSON lokal can use ------------------------------------------------------

MALFORMED = [
    (b"{", "invalid JSON in request body"),
    (b'{"model": "smollm2",}', "invalid JSON in request body"),
    (b"[1, 2", "invalid JSON in request body"),
    (b"\xff\xfe{}", "not UTF-8 text"),
    (b'{"model": "\xc3\x28"}', "not UTF-8 text"),
    (b'{"model": "smollm2", "prompt": NaN}', "NaN is not valid JSON"),
    (b'{"model": "smollm2", "options": {"temperature": Infinity}}', "Infinity is not valid JSON"),
    (b'{"model": "smollm2", "options": {"temperature": -Infinity}}', "-Infinity is not valid JSON"),
    (b'{"model": "smollm2", "options": {"temperature": 1e999}}', "too large for a 64-bit float"),
    (b'{"model": "smollm2", "options": {"seed": ' + b"9" * 5000 + b"}}", "an integer of 5000 digits"),
    (b'{"model": "smollm2", "prompt": "\\ud800"}', "lone UTF-16 surrogate (\\ud800 at character 0)"),
    (b'{"model": "smollm2", "prompt": "ok \\udfff"}', "'prompt' contains a lone UTF-16 surrogate"),
    (b'{"model": "\\ud83d"}', "'model' contains a lone UTF-16 surrogate"),
    (b'{"model": "smollm2", "options": {"\\udc00": 1}}', "lone UTF-16 surrogate"),
    (b'{"model": "smollm2", "messages": [{"role": "user", "content": "\\ud800"}]}', "'messages[0].content'"),
    (b'{"a": ' * 200 + b"1" + b"}" * 200, "nested more than 128 levels deep"),
    (b"[" * 30_000 + b"]" * 30_000, "nested more than 128 levels deep"),  # deeper than Python's stack
    (b'"just a string"', "invalid request"),
    (b"[]", "invalid request"),
    (b"null", "invalid request"),
    (b"", "missing request body"),
]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
@pytest.mark.parametrize(("raw", "fragment"), MALFORMED, ids=[f"malformed{i}" for i in range(len(MALFORMED))])
def test_a_body_that_is_not_usable_json_is_a_400_naming_the_problem(http, method, path, raw, fragment):
    response = http.request(method, path, content=raw, headers={"content-type": "application/json"})
    refused(response, 400, fragment)


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain", "multipart/x"])
def test_a_json_body_is_read_whatever_the_content_type_says(http, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = post(http, "/api/generate", GENERATE, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["done"] is True


def test_a_chunked_body_over_the_limit_is_a_413(http):
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "smollm2", "prompt": "'
        for _ in range(BODY_LIMIT // 1000 + 2):
            yield b"x" * 1000
        yield b'"}'

    for path in ("/api/generate", "/v1/chat/completions"):
        refused(http.post(path, content=chunks()), 413, f"request body too large: limit is {BODY_LIMIT} bytes")
    declared = http.post("/api/generate", content=b"x" * (BODY_LIMIT + 1))
    refused(declared, 413, "request body too large")


def test_wrong_types_are_a_400_naming_the_field(http):
    refused(post(http, "/api/generate", {**GENERATE, "stream": "yes"}), 400, "stream")
    refused(post(http, "/api/generate", {**GENERATE, "context": ["1"]}), 400, "context")
    refused(post(http, "/api/generate", {**GENERATE, "options": [1, 2]}), 400, "options")
    refused(post(http, "/api/chat", {"model": MODEL, "messages": "hi"}), 400, "messages")
    refused(post(http, "/v1/chat/completions", {"model": MODEL, "messages": [{"role": 1}]}), 400, "role")


def test_nul_bytes_are_text_in_a_prompt_and_refused_in_a_name(http):
    answer = post(http, "/api/generate", {**GENERATE, "prompt": "a\u0000b\u0000"})
    assert answer.status_code == 200 and answer.json()["done"] is True
    refused(post(http, "/api/generate", {**GENERATE, "model": "smol\u0000lm2"}), 400, "NUL")
    stops = post(http, "/api/generate", {**GENERATE, "options": {"num_predict": 2, "stop": ["\u0000"]}})
    assert stops.status_code == 200


# -- numbers ----------------------------------------------------------------------------------------------------

BAD_OPTIONS = [
    ({"num_predict": -5}, "num_predict"),
    ({"num_ctx": 2**31}, "'num_ctx' must be at most 2147483647"),
    ({"num_ctx": 3}, "'num_ctx' must be at least 16"),
    ({"top_k": 2**40}, "'top_k' must be at most 2147483647"),
    ({"top_k": -1}, "'top_k' must be >= 0"),
    ({"repeat_last_n": -2}, "'repeat_last_n' must be >= -1"),
    ({"repeat_last_n": 2**63}, "'repeat_last_n' must be at most"),
    ({"top_p": -0.1}, "between 0 and 1"),
    ({"min_p": 2}, "between 0 and 1"),
    ({"temperature": -1e308}, "'temperature' must be >= 0"),
    ({"repeat_penalty": -1}, "'repeat_penalty' must be >= 0"),
    ({"seed": 1.5}, "'seed' must be an integer"),
    ({"stop": [""]}, "empty strings"),
    ({"stop": [1]}, "list of strings"),
]


@pytest.mark.parametrize(("options", "fragment"), BAD_OPTIONS)
@pytest.mark.parametrize("path", ["/api/generate", "/api/chat", "/v1/chat/completions"])
def test_impossible_option_values_are_a_400_naming_the_option(http, path, options, fragment):
    if path == "/api/generate":
        body: dict[str, Any] = {**GENERATE, "options": options}
    elif path == "/api/chat":
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": False, "options": options}
    else:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "options": options}
    refused(post(http, path, body), 400, fragment)


@pytest.mark.parametrize(
    "options",
    [
        {"seed": -1},
        {"seed": 2**64 + 5},
        {"temperature": 1e308},  # a float llama.cpp receives as +inf: sampling still works, nothing crashes
        {"top_k": 2**31 - 1},
        {"num_ctx": 10**6},  # capped at the model's trained context, as Ollama does
        {"repeat_penalty": 1e300, "repeat_last_n": -1},
        {"presence_penalty": -1e300, "frequency_penalty": 1e300},
        {"num_predict": 10**15, "stop": ["."]},
    ],
)
def test_extreme_but_valid_options_are_served(http, options):
    merged = {"num_predict": 2, "temperature": 0, **options}
    response = post(http, "/api/generate", {**GENERATE, "options": merged})
    assert response.status_code == 200, response.text
    assert response.json()["done"] is True


@pytest.mark.parametrize(
    "options",
    [
        {"presence_penalty": -1e300, "temperature": 0.8, "seed": 1},
        {"presence_penalty": -1.5e228, "frequency_penalty": 1e300, "temperature": 1.5, "seed": 2},
        {"repeat_penalty": 0, "temperature": 0.8, "seed": 3},
    ],
)
def test_penalties_that_overflow_float32_do_not_abort_a_grammar(live, http, options):
    """Found by CI's fuzzer: with a grammar (format json), a penalty whose float32 is infinite made the
    grammar-masked logits NaN, llama.cpp sampled a forbidden token and std::terminate aborted the server."""
    body = {**GENERATE, "format": "json", "options": {"num_predict": 24, **options}}
    response = post(http, "/api/generate", body)
    assert response.status_code == 200, response.text
    assert http.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/generate", {**GENERATE, "format": {"$ref": "https://127.0.0.1:9/schema.json"}}),
        (
            "/api/chat",
            {
                "model": MODEL,
                "stream": False,
                "messages": [{"role": "user", "content": "Hi"}],
                "tools": [
                    {"type": "function", "function": {"name": "f", "parameters": {"$ref": "http://127.0.0.1:9/x"}}}
                ],
                "tool_choice": "required",
            },
        ),
        ("/api/generate", {**GENERATE, "format": {"type": "string", "maxLength": 10**9}}),
    ],
)
def test_a_clients_schema_never_fetches_a_url_or_takes_the_memory(http, path, body):
    refused(post(http, path, body), 400, "format" if path == "/api/generate" else "tools")


@pytest.mark.parametrize(
    ("bad", "position"),
    [([49152], 0), ([99999], 0), ([-1], 0), ([2**31], 0), ([2**40], 0), ([1, 2, 49152], 2), ([2**63], 0)],
)
def test_context_ids_outside_the_vocabulary_are_a_400_and_the_engine_keeps_serving(live, http, bad, position):
    response = post(http, "/api/generate", {**GENERATE, "context": bad})
    refused(response, 400, f"context: token id {bad[position]} at position {position}", "vocabulary of 49152 tokens")
    assert post(http, "/api/generate", GENERATE).status_code == 200
    assert http.get("/health").json()["status"] == "ok"


COUNTING = ", ".join(str(i) for i in range(1, 31))


@pytest.mark.parametrize("num_ctx", [16, 17, 64])
def test_a_tiny_num_ctx_with_a_long_prompt_is_refused_not_a_crash(http, num_ctx):
    """Found by the fuzzer: llama.cpp clamps a context's batch to its size and aborted the whole process
    (GGML_ASSERT n_tokens_all <= n_batch) when lokal sent its usual 512-token prefill chunk."""
    body = {"model": MODEL, "prompt": COUNTING, "raw": True, "stream": False, "options": {"num_ctx": num_ctx}}
    response = post(http, "/api/generate", {**body, "options": {"num_ctx": num_ctx, "num_predict": 1}})
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert "context window" in error_of(response)
    chat = {"model": MODEL, "messages": [{"role": "user", "content": COUNTING}], "options": {"num_ctx": num_ctx}}
    assert post(http, "/v1/chat/completions", {**chat, "max_tokens": 1}).status_code in (200, 400)
    assert post(http, "/api/generate", GENERATE).status_code == 200  # the server is still there


@pytest.mark.parametrize("text", [{}, 5, None, ["a"]])
def test_a_content_part_whose_text_is_not_a_string_is_a_400(http, text):
    messages = [{"role": "user", "content": [{"type": "text", "text": text}]}]
    refused(post(http, "/v1/chat/completions", {"model": MODEL, "messages": messages}), 400, "must be a string")


@pytest.mark.parametrize("dimensions", [0, -1, -570])
def test_embedding_dimensions_below_one_are_a_400(http, dimensions):
    body = {"model": MODEL, "input": "Hi", "dimensions": dimensions}
    refused(post(http, "/v1/embeddings", body), 400, "dimensions must be at least 1")


def test_a_valid_context_is_used(http):
    first = post(http, "/api/generate", GENERATE).json()
    follow = post(http, "/api/generate", {**GENERATE, "prompt": "And?", "context": first["context"]})
    assert follow.status_code == 200
    assert follow.json()["prompt_eval_count"] > len(first["context"])


@pytest.mark.parametrize(
    "keep_alive", [1e15, 1e308, 10**30, "100000000h", "9999999999999999999s", "Infinity", -1e308, "-1m", 0.5]
)
def test_any_keep_alive_is_forever_or_a_duration_and_ps_keeps_answering(http, keep_alive):
    response = post(http, "/api/generate", {**GENERATE, "keep_alive": keep_alive})
    assert response.status_code == 200, response.text
    ps = http.get("/api/ps")
    assert ps.status_code == 200, ps.text
    assert all(m["expires_at"] for m in ps.json()["models"])


@pytest.mark.parametrize("keep_alive", ["NaN", "soon", "5 minutes", True, [1], {"m": 5}])
def test_a_keep_alive_that_is_no_duration_is_a_400(http, keep_alive):
    response = post(http, "/api/generate", {**GENERATE, "keep_alive": keep_alive})
    assert response.status_code == 400, response.text
    assert "keep_alive" in error_of(response) or "duration" in error_of(response)


def test_num_predict_zero_generates_nothing(http):
    answer = post(http, "/api/generate", {**GENERATE, "options": {"num_predict": 0}}).json()
    assert (answer["response"], answer["done_reason"], answer["eval_count"]) == ("", "length", 0)
    assert answer["prompt_eval_count"] > 0


# -- names and paths --------------------------------------------------------------------------------------------

HOSTILE_NAMES = [
    "/etc/passwd",
    "../../../../etc/passwd",
    "..",
    "a/../../b",
    "./etc/passwd",
    "~root/.ssh/id_rsa",
    "~/.ssh/id_rsa",
    "C:\\Windows\\win.ini",
    "\\\\server\\share\\x.gguf",
    "%2e%2e/%2e%2e/etc/passwd",
    "hf.co/../../etc:passwd",
    "/proc/kmsg",
    "/dev/zero",
    "x" * 5000,
    "",
    " ",
]


def _name_requests(name: str) -> list[tuple[str, str, dict[str, Any]]]:
    messages = [{"role": "user", "content": "Hi"}]
    return [
        ("POST", "/api/generate", {"model": name, "prompt": "Hi", "stream": False}),
        ("POST", "/api/chat", {"model": name, "messages": messages, "stream": False}),
        ("POST", "/api/embed", {"model": name, "input": "Hi"}),
        ("POST", "/api/embeddings", {"model": name, "prompt": "Hi"}),
        ("POST", "/api/show", {"model": name}),
        ("DELETE", "/api/delete", {"model": name}),
        ("POST", "/api/pull", {"model": name, "stream": False}),
        ("POST", "/api/pull", {"model": name}),  # streamed: still a 400 before any stream starts
        ("POST", "/api/copy", {"source": name, "destination": "copy-dest"}),
        ("POST", "/api/copy", {"source": MODEL, "destination": name}),
        ("POST", "/api/create", {"model": name, "from": MODEL, "stream": False}),
        ("POST", "/api/create", {"model": "made", "from": name, "stream": False}),
        ("POST", "/v1/chat/completions", {"model": name, "messages": messages}),
        ("POST", "/v1/completions", {"model": name, "prompt": "Hi"}),
        ("POST", "/v1/embeddings", {"model": name, "input": "Hi"}),
    ]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=[f"name{i}" for i in range(len(HOSTILE_NAMES))])
def test_hostile_names_never_reach_the_disk(http, name):
    for method, path, body in _name_requests(name):
        response = http.request(method, path, content=json.dumps(body).encode())
        assert response.status_code in (400, 404), f"{method} {path} {body}: {response.status_code} {response.text}"
        error_of(response)
        assert PASSWD_LINE not in response.text
    for path in ("/v1/models/" + name, "/v1/models/" + name.replace("/", "%2F")):
        response = http.get(path)
        assert response.status_code in (400, 404), f"GET {path}: {response.status_code} {response.text}"
    assert "copy-dest:latest" not in [m["name"] for m in http.get("/api/tags").json()["models"]]
    assert "made:latest" not in [m["name"] for m in http.get("/api/tags").json()["models"]]


def test_a_pull_of_a_server_file_is_refused_without_reading_it(http):
    for body in ({"model": "/etc/passwd", "stream": False}, {"model": "/etc/passwd"}, {"model": "model.gguf"}):
        message = refused(post(http, "/api/pull", body), 400, "looks like a file path", "POST /api/blobs")
        assert "starts with" not in message  # the old answer quoted the file's first bytes


@pytest.mark.parametrize(
    "digest",
    ["sha256:abc", "sha256:" + "g" * 64, "md5:" + "a" * 32, "sha256:", "sha256:" + "0" * 65, "sha256-" + "0" * 63],
)
def test_a_bad_blob_digest_is_a_400(http, digest):
    refused(http.post(f"/api/blobs/{digest}", content=b"data"), 400, "invalid digest")
    assert http.head(f"/api/blobs/{digest}").status_code == 400


def test_blob_paths_that_escape_are_not_routes(http):
    for path in ("/api/blobs/../../etc/passwd", "/api/blobs/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/api/blobs/..%2F..%2Fx"):
        response = http.post(path, content=b"x")
        assert response.status_code in (400, 404, 405), response.status_code
        assert PASSWD_LINE not in response.text


# -- afterwards -------------------------------------------------------------------------------------------------


def test_after_all_that_the_server_and_its_engine_still_serve(live, http):
    """Runs last in this module (pytest keeps file order): nothing above broke the engine or the store."""
    health = http.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert live.manager.failed() == [] and not live.manager.failures
    answer = post(http, "/api/generate", GENERATE)
    assert answer.status_code == 200 and answer.json()["eval_count"] == 2
    assert [m["name"] for m in http.get("/api/tags").json()["models"]] == ["smollm2:135m"]
    errors = [s for s in live.metrics().get("lokal_requests", []) if s.labels.get("status", "").startswith("5")]
    assert errors == []
