"""Schemathesis over every route of a real `lokal serve` (uvicorn on 127.0.0.1, the bundled model): each generated
request must get no 5xx, a documented status, a documented media type, and a body that matches the documented
schema (NDJSON line by line). The spec is the server's own `/openapi.json` (`lokal.server.openapi`).

Bounded and deterministic: a fixed seed, a fixed number of examples per operation, and a 256-token context. To keep
each case short, `bound_generation` caps what generates: `num_predict`, `max_tokens` and `max_completion_tokens` at
16 tokens, `num_ctx` at 512. Huge values (a num_predict of 10**9, a num_ctx of 2**31) are the hand-written hostile
battery's job (test_server_hostile.py, test_engine_hardening.py), not this one's; what this one adds is breadth:
every field of every route, in types and shapes nobody thought to write down.

One 5xx is expected and documented: `POST /api/pull` of a catalogue or Hugging Face name reaches the network, which
tests never have (HF_HUB_OFFLINE=1), so it answers 502 "cannot reach the Hugging Face hub". Any other 5xx fails.
On a failure schemathesis prints the request as a curl command to reproduce it.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from jsonschema import Draft202012Validator
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from server_fixture import MODEL, LiveServer, serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 20261202
#: Random cases per operation (schemathesis' fuzzing phase), after its deterministic coverage phase (boundary and
#: invalid values of every documented keyword, about 2,000 cases over all operations).
EXAMPLES = 75
MAX_TOKENS = 16
MAX_CONTEXT = 512
NDJSON = "application/x-ndjson"

#: Bodies whose `model` (or `from`, `source`) names a model to run: the bundled one is put there in about half the
#: cases (chosen by a hash of the body, so the same cases every run), so generation, embedding and the store's copy
#: paths run on a real model instead of answering 404.
MODEL_FIELDS = {
    "/api/generate": "model",
    "/api/chat": "model",
    "/api/embed": "model",
    "/api/embeddings": "model",
    "/api/show": "model",
    "/api/copy": "source",
    "/api/create": "from",
    "/v1/chat/completions": "model",
    "/v1/completions": "model",
    "/v1/embeddings": "model",
}
OPENAI_LIMITS = ("max_tokens", "max_completion_tokens")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # One llama.cpp thread: cases run one at a time, and one thread keeps their time steady when the machine is
    # shared with other CPU-heavy work (two threads that wait on each other slow down sharply then).
    with serve(tmp_path_factory.mktemp("fuzz"), context_length=256, num_parallel=2, num_threads=1) as server:
        yield server


@pytest.fixture(scope="module")
def api(live: LiveServer) -> Any:
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
            "generation": {"max-examples": EXAMPLES, "database": "none", "mode": "all"},
            "request-timeout": 120,
            "max-stream-events": 100,
            # Print the reproducing request as it was sent: "max_tokens" is not a secret.
            "output": {"sanitization": {"enabled": False}},
            "phases": {"coverage": {"enabled": True}, "fuzzing": {"enabled": True}, "stateful": {"enabled": False}},
            "operations": [
                {
                    "include-path": "/api/pull",
                    "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "502"]}},
                }
            ],
        }
    )
    return schemathesis.openapi.from_url(f"{live.url}/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("api")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _cap_options(options: dict[str, Any]) -> None:
    predict = options.get("num_predict")
    if _is_number(predict) and (predict > MAX_TOKENS or predict in (-1, -2)):
        options["num_predict"] = MAX_TOKENS
    if _is_number(options.get("num_ctx")) and options["num_ctx"] > MAX_CONTEXT:
        options["num_ctx"] = MAX_CONTEXT


def _wants_real_model(body: dict[str, Any]) -> bool:
    return zlib.crc32(json.dumps(body, sort_keys=True, default=repr).encode("utf-8", "surrogatepass")) % 2 == 0


def bound_generation(case: Any) -> None:
    """Cap generation lengths (see the module docstring), and name the bundled model in about half the cases."""
    body = case.body
    if not isinstance(body, dict):
        return
    field = MODEL_FIELDS.get(case.path)
    if field and _wants_real_model(body):
        for key in (field, "name"):  # `name`: Ollama's deprecated alias of `model`
            if isinstance(body.get(key), str):
                body[key] = MODEL
    options = body.get("options")
    if isinstance(options, dict):
        _cap_options(options)
    elif options is None and case.path in ("/api/generate", "/api/chat"):
        body["options"] = {"num_predict": MAX_TOKENS}  # absent (or null): Ollama's default is "no limit"
    if case.path in ("/v1/chat/completions", "/v1/completions"):
        for key in OPENAI_LIMITS:
            if _is_number(body.get(key)) and body[key] > MAX_TOKENS:
                body[key] = MAX_TOKENS
        if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
            body["max_tokens"] = MAX_TOKENS


def _line_validator(case: Any, status: int) -> Draft202012Validator | None:
    spec = case.operation.schema.raw_schema
    responses = spec["paths"][case.path][case.method.lower()]["responses"]
    content = responses.get(str(status), {}).get("content", {})
    if NDJSON not in content:
        return None
    return Draft202012Validator({**content[NDJSON]["schema"], "components": spec["components"]})


def ndjson_line_conformance(ctx: Any, response: Any, case: Any) -> bool | None:
    """Each line of an NDJSON body is one JSON object matching the documented line schema (schemathesis has no
    NDJSON deserializer, so its own schema check skips these bodies)."""
    media_type = (response.headers.get("content-type") or [""])[0].split(";")[0].strip()
    if media_type != NDJSON:
        return None
    validator = _line_validator(case, response.status_code)
    assert validator is not None, f"{NDJSON} is not documented for {response.status_code}"
    text = response.content.decode("utf-8")
    assert text.endswith("\n"), "an NDJSON body ends with a newline"
    for number, line in enumerate(text.split("\n")[:-1], 1):
        assert line, f"line {number} is blank"
        errors = [e.message for e in validator.iter_errors(json.loads(line))]
        assert not errors, f"line {number} does not match the documented schema: {errors}\n{line[:500]}"
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    ndjson_line_conformance,
]


@schema.parametrize()
def test_every_route_conforms_to_its_spec(case: Any) -> None:
    bound_generation(case)
    case.call_and_validate(checks=CHECKS)
