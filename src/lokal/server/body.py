"""Request bodies as lokal reads them: JSON whatever the Content-Type says (as Ollama does), and strictly.

Why strictly: Python's json module accepts what JSON forbids and what nothing downstream can use. NaN and
Infinity (and numbers such as 1e999 that overflow to infinity) would slip past every range check, since NaN
compares false with everything; a lone UTF-16 surrogate (`"\\ud800"`) is a Python string no UTF-8 text can hold,
and made the tokenizer raise a 500; integers of thousands of digits and nesting thousands of levels deep cost
time and stack for nothing. Each of those is a 400 here that says what is wrong and where, before a handler
sees the body.

Why whatever the Content-Type: `curl URL -d '{...}'`, the first command people copy from Ollama's README,
sends `application/x-www-form-urlencoded`, and Ollama parses the body as JSON anyway.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from lokal.errors import InvalidOptions
from lokal.server import fields

#: Deeper JSON than this is refused: no request lokal understands nests more than a JSON schema or two.
MAX_DEPTH = 128
#: No number lokal reads needs more digits (2**64 has 20); Python would otherwise convert up to 4,300.
MAX_INT_DIGITS = 100
_SURROGATE = re.compile("[\ud800-\udfff]")
#: A surrogate can only come from a `\\uD800`-`\\uDFFF` escape: UTF-8 decoding never yields one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class InvalidBody(InvalidOptions):
    """A request body that is not strict JSON."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (JSON has no NaN or Infinity)")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits is out of range")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:40]} is too large for a 64-bit float")
    return value


def _where(path: str) -> str:
    return f"'{path}'" if path else "the body"


def _check(value: Any) -> None:
    """Walk the parsed body without recursion: nesting depth, then strings (values and keys) that are not Unicode."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            bad = _SURROGATE.search(item)
            if bad is not None:
                raise InvalidBody(
                    f"invalid request: {_where(path)} contains a lone UTF-16 surrogate "
                    f"(\\u{ord(bad.group()):04x} at character {bad.start()}), which is not valid Unicode; "
                    "send UTF-8 text (a surrogate must be half of a pair)"
                )
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise InvalidBody(f"invalid request: the body is nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else str(key)
                stack.append((key, path, depth))  # keys are strings too
                stack.append((child, child_path, depth + 1))
        else:
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))


def parse_json_body(raw: bytes) -> Any:
    """The body as strict JSON; `InvalidBody` (400) with the reason otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidBody(f"invalid request body: not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x})") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except RecursionError:
        raise InvalidBody(f"invalid request: the body is nested more than {MAX_DEPTH} levels deep") from None
    except json.JSONDecodeError as exc:
        raise InvalidBody(f"invalid JSON in request body: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except ValueError as exc:  # from the hooks above
        raise InvalidBody(f"invalid JSON in request body: {exc}") from None
    # The walk costs time on big bodies (embedding inputs): only take it when the text could hold what it finds.
    if _SURROGATE_ESCAPE.search(raw) or raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:
        _check(value)
    return value


class JSONBodyRoute(APIRoute):
    """An APIRoute that reads a JSON body with `parse_json_body`, whatever its Content-Type, before FastAPI does.

    Routes without a body model (GET routes, the raw blob upload) are left as FastAPI builds them. A field the
    route recognises but does not implement is refused here (`fields.refuse`), before any handler runs."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def read_json_then_handle(request: Request) -> Response:
            raw = await request.body()
            if raw:
                # Cached where Starlette's Request.json() looks, so FastAPI uses this parse instead of its own.
                request._json = parse_json_body(raw)
                fields.refuse(f"{request.method} {self.path}", request._json)  # never a 200 that drops a field
                headers = [(k, v) for k, v in request.scope["headers"] if k.lower() != b"content-type"]
                request.scope["headers"] = [*headers, (b"content-type", b"application/json")]
                request.__dict__.pop("_headers", None)
            return await handler(request)

        return read_json_then_handle
