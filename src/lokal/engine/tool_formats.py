"""How a model writes tool calls: its native format where its chat template knows tools, else the generic one.

A template that renders `tools` itself was trained on a format of its own, and a model calls best in it:

- **Hermes** (Hermes 2/3, Qwen 2.5/3 and their fine-tunes; the template holds `<tool_call>`): each call is
  `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, after any text; results come back as `tool` turns
  the template wraps in `<tool_response>`.
- **Llama 3.x** (the template has the `ipython` role): one call, the whole answer, as
  `{"name": ..., "parameters": {...}}`; results come back as `ipython` turns.
- **Mistral** (the template holds `[TOOL_CALLS]`): every call in one array after any text,
  `[TOOL_CALLS][{"name": ..., "arguments": {...}, "id": "a1b2c3d4e"}]`, ids of 9 letters and digits.
- **Generic** (every other template, `lokal.engine.tools`): the tools described in the system turn and a call
  as `{"tool_calls": [...]}`.

The family is detected from the template as llama.cpp's `chat.cpp` detects it (the first marker found). A
native format hands the template the request's tools and the history's calls and results as they are
(`render`), and gives the grammar the call's shape (`CallShape`): the engine builds the grammar, lazy for
tool_choice "auto" with the format's trigger, so a call is held to the tools' schemas in the model's own syntax.
`parse` reads a finished answer; `scan` tells a streaming answer's text from a call it must hold back.

Everything here is pure; the engine picks the format once per model (`detect`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

from jsonschema import Draft202012Validator

from lokal.engine import tools as generic
from lokal.engine.tools import ToolCall, ToolRequest
from lokal.errors import InvalidOptions


@dataclasses.dataclass(frozen=True)
class CallShape:
    """What the grammar holds a call to: `schema` (a JSON Schema) between the literal `open` and `close` tags,
    repeated up to `repeat` times (whitespace between); `trigger`, for a lazy grammar, the pattern that starts
    it (llama.cpp's: the whole output so far, fed to the grammar from the first capture group)."""

    schema: dict[str, Any]
    trigger: str
    open: str = ""
    close: str = ""
    repeat: int = 1


@dataclasses.dataclass(frozen=True)
class Scan:
    """A streaming answer's text so far, split: `text` to pass on now; `held`, what may still open a call or is
    one (`call` says it is); `settled`: no call can come any more, so what follows is text."""

    text: str
    held: str
    call: bool = False
    settled: bool = False


class ToolFormat:
    """The generic format (lokal.engine.tools); native formats override what differs."""

    name = "generic"

    def render(self, messages: Sequence[dict[str, Any]], req: ToolRequest | None) -> tuple[list[dict[str, Any]], dict]:
        """The messages the template renders, and what else it is given (`tools`)."""
        return generic.messages_for(messages, req), {}

    def shape(self, req: ToolRequest) -> CallShape:
        return CallShape(generic.call_schema(req), generic.CALL_TRIGGER)

    def parse(self, text: str, req: ToolRequest) -> tuple[str, list[ToolCall] | None]:
        """A finished answer as (its text, its calls); calls None when there is none, or it does not parse or
        validate (cut off by a length limit, say): then all of it is text."""
        calls = generic.parse_calls(text, req)
        return ("", calls) if calls else (text, None)

    def scan(self, text: str) -> Scan:
        """The generic call is the whole answer: whitespace waits for the first visible character."""
        if not text.strip():
            return Scan("", text)
        if generic.looks_like_call(text):
            return Scan("", text, call=True)
        return Scan(text, "", settled=True)


GENERIC = ToolFormat()


def _history_call(call: Any, where: str, names: set[str] | None) -> tuple[str, dict[str, Any]]:
    """A past call's name and arguments (a JSON string in OpenAI's history, an object in Ollama's), checked."""
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise InvalidOptions(f"{where} must have a function with a name")
    name = function["name"]
    if names is not None and name not in names:
        raise InvalidOptions(f"{where} calls {name!r}, which is not among the tools ({', '.join(sorted(names))})")
    arguments = function.get("arguments") or {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            raise InvalidOptions(f"{where}.function.arguments is not valid JSON") from None
    if not isinstance(arguments, dict):
        raise InvalidOptions(f"{where}.function.arguments must be an object")
    return name, arguments


def _valid_call(data: Any, req: ToolRequest, arguments_key: str) -> ToolCall | None:
    """`{"name": ..., <arguments_key>: {...}}` as a call to one of the request's callable tools, or None."""
    tools = {t.name: t for t in req.callable}
    if not isinstance(data, dict) or data.get("name") not in tools:
        return None
    arguments = data.get(arguments_key)
    if not isinstance(arguments, dict):
        return None
    if next(Draft202012Validator(tools[data["name"]].parameters).iter_errors(arguments), None):
        return None
    return ToolCall(generic.new_call_id(), data["name"], arguments)


class NativeFormat(ToolFormat):
    """A template that renders tools: it is given them, and the history's calls and results as they are."""

    #: The key a call's arguments go under in the model's own syntax.
    arguments_key = "arguments"

    def render(self, messages: Sequence[dict[str, Any]], req: ToolRequest | None) -> tuple[list[dict[str, Any]], dict]:
        names = {t.name for t in req.tools} if req else None
        out: list[dict[str, Any]] = []
        for i, message in enumerate(messages):
            entry = dict(message)
            if message.get("tool_calls"):
                if message["role"] != "assistant":
                    raise InvalidOptions(f"messages[{i}]: only an assistant message can have tool_calls")
                calls = []
                for j, call in enumerate(message["tool_calls"]):
                    name, arguments = _history_call(call, f"messages[{i}].tool_calls[{j}]", names)
                    calls.append(
                        {
                            "type": "function",
                            "id": call.get("id") or "",
                            "function": {"name": name, "arguments": arguments},
                        }
                    )
                entry["tool_calls"] = calls
            elif message["role"] == "tool" and "name" not in entry and message.get("tool_name"):
                entry["name"] = message["tool_name"]  # Ollama's tool_name is OpenAI's (and the templates') name
            out.append(entry)
        offered = req.callable if req is not None else ()
        listed = [
            {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
            for t in offered
        ]
        return out, ({"tools": listed} if listed else {})

    def call_schema(self, req: ToolRequest) -> dict[str, Any]:
        """One call in the model's syntax, to any callable tool."""
        variants = [
            {
                "type": "object",
                "properties": {"name": {"const": t.name}, self.arguments_key: t.parameters},
                "required": ["name", self.arguments_key],
            }
            for t in req.callable
        ]
        return variants[0] if len(variants) == 1 else {"anyOf": variants}


class TaggedFormat(NativeFormat):
    """Calls in blocks that open with a tag (`OPEN`, then JSON, then `CLOSE`), after any text the model writes
    first: that text is the answer's content, and the first tag starts the call (a lazy grammar's trigger)."""

    OPEN = CLOSE = ""

    def shape(self, req: ToolRequest) -> CallShape:
        trigger = rf"^[\s\S]*?({re.escape(self.OPEN)}[\s\S]*)"
        return CallShape(self.block_schema(req), trigger, self.OPEN, self.CLOSE, self.blocks(req))

    def block_schema(self, req: ToolRequest) -> dict[str, Any]:
        """The JSON in one block."""
        raise NotImplementedError

    def blocks(self, req: ToolRequest) -> int:
        """How many blocks an answer may hold."""
        raise NotImplementedError

    def block_calls(self, data: Any, req: ToolRequest) -> list[ToolCall] | None:
        """The calls one block's JSON holds, or None if it is not valid calls."""
        raise NotImplementedError

    def parse(self, text: str, req: ToolRequest) -> tuple[str, list[ToolCall] | None]:
        start = text.find(self.OPEN)
        if start < 0:
            return text, None
        decoder = json.JSONDecoder()
        calls: list[ToolCall] = []
        at = start
        while at < len(text):
            if not text.startswith(self.OPEN, at):
                return text, None  # text after a call: not the format (the grammar never writes it)
            try:
                data, at = decoder.raw_decode(text, _skip_space(text, at + len(self.OPEN)))
            except ValueError:
                return text, None
            at = _skip_space(text, at)
            found = self.block_calls(data, req)
            if found is None or not text.startswith(self.CLOSE, at):
                return text, None
            calls.extend(found)
            at = _skip_space(text, at + len(self.CLOSE))
        if len(calls) > req.max_calls:
            return text, None
        return text[:start].rstrip(), calls

    def scan(self, text: str) -> Scan:
        start = text.find(self.OPEN)
        if start >= 0:
            return Scan(text[:start], text[start:], call=True)
        keep = _tag_prefix_length(text, self.OPEN)
        return Scan(text[: len(text) - keep], text[len(text) - keep :])


class HermesFormat(TaggedFormat):
    """`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one block per call, after any text."""

    name = "hermes"
    OPEN, CLOSE = "<tool_call>", "</tool_call>"

    def block_schema(self, req: ToolRequest) -> dict[str, Any]:
        return self.call_schema(req)

    def blocks(self, req: ToolRequest) -> int:
        return req.max_calls

    def block_calls(self, data: Any, req: ToolRequest) -> list[ToolCall] | None:
        call = _valid_call(data, req, self.arguments_key)
        return [call] if call is not None else None


class MistralFormat(TaggedFormat):
    """Mistral 7B v0.3, Nemo and their kin: `[TOOL_CALLS][{"name": ..., "arguments": {...}, "id": ...}, ...]`,
    every call in one array, each with an id of exactly 9 letters and digits.

    Its templates refuse any other id (`raise_exception`) in the history, both on a past call and on the tool
    result that answers it, so `render` gives a client's ids (`call_x1y2z3w4`) a 9-character form, the same
    one every time, and a tool result without `tool_call_id` (Ollama's clients send only `tool_name`) the id of
    the call it answers. A call the model writes keeps the id it wrote (that is the id the client sends back),
    unless an earlier call of the answer has it."""

    name = "mistral"
    OPEN = "[TOOL_CALLS]"

    def block_schema(self, req: ToolRequest) -> dict[str, Any]:
        one = self.call_schema(req)
        variants = one.get("anyOf", [one])
        item_id = {"type": "string", "pattern": "^[a-zA-Z0-9]{9}$"}
        items = [
            {**v, "properties": {**v["properties"], "id": item_id}, "required": [*v["required"], "id"]}
            for v in variants
        ]
        return {
            "type": "array",
            "items": items[0] if len(items) == 1 else {"anyOf": items},
            "minItems": 1,
            "maxItems": req.max_calls,
        }

    def blocks(self, req: ToolRequest) -> int:
        return 1

    def block_calls(self, data: Any, req: ToolRequest) -> list[ToolCall] | None:
        if not isinstance(data, list) or not data:
            return None
        calls: list[ToolCall] = []
        for item in data:
            call = _valid_call(item, req, self.arguments_key)
            if call is None:
                return None
            # The model's id, unless it wrote that one already (a small model writes "123456789" for each call):
            # then one of its kind, so each result still pairs with its call.
            taken = {c.id for c in calls}
            given = item.get("id")
            call_id = given if _is_mistral_id(given) and given not in taken else _mistral_id(call.id)
            calls.append(dataclasses.replace(call, id=call_id))
        return calls

    def render(self, messages: Sequence[dict[str, Any]], req: ToolRequest | None) -> tuple[list[dict[str, Any]], dict]:
        out, extra = super().render(messages, req)
        pending: list[tuple[str, str]] = []  # (name, id) of the last assistant turn's calls not yet answered
        for i, message in enumerate(out):
            if message.get("tool_calls"):
                calls = [
                    {**call, "id": _mistral_id(call["id"] or f"{i}.{j}")}
                    for j, call in enumerate(message["tool_calls"])
                ]
                message["tool_calls"] = calls
                pending = [(call["function"]["name"], call["id"]) for call in calls]
            elif message["role"] == "tool":
                given = message.get("tool_call_id")
                if given:
                    message["tool_call_id"] = _mistral_id(given)
                    pending = [p for p in pending if p[1] != message["tool_call_id"]]
                elif pending:
                    # The first unanswered call of that name, else the first unanswered one.
                    match = next((p for p in pending if p[0] == message.get("name")), pending[0])
                    message["tool_call_id"] = match[1]
                    pending.remove(match)
                else:
                    raise InvalidOptions(
                        f"messages[{i}] is a tool result that answers no call: give its tool_call_id, "
                        "or the assistant turn with the call before it"
                    )
        return out, extra


_MISTRAL_ID = re.compile(r"[a-zA-Z0-9]{9}")
_BASE62 = string.digits + string.ascii_letters


def _is_mistral_id(value: Any) -> bool:
    return isinstance(value, str) and _MISTRAL_ID.fullmatch(value) is not None


def _mistral_id(value: str) -> str:
    """A call id as Mistral's templates take it: itself if it is 9 letters and digits, else 9 base-62 digits
    of its SHA-256 (the same id each time, so a call and its result still pair up, and a prompt renders alike)."""
    if _is_mistral_id(value):
        return value
    n = int.from_bytes(hashlib.sha256(value.encode()).digest()[:8], "big")
    digits = []
    for _ in range(9):
        n, r = divmod(n, 62)
        digits.append(_BASE62[r])
    return "".join(digits)


class Llama3Format(NativeFormat):
    """Llama 3.1-3.3's JSON call, the whole answer: `{"name": ..., "parameters": {...}}`, one per answer (its
    template renders one call a turn and refuses more)."""

    name = "llama3"
    arguments_key = "parameters"

    def shape(self, req: ToolRequest) -> CallShape:
        return CallShape(self.call_schema(req), generic.CALL_TRIGGER)

    def parse(self, text: str, req: ToolRequest) -> tuple[str, list[ToolCall] | None]:
        if not generic.looks_like_call(text):
            return text, None
        try:
            data = json.loads(text)
        except ValueError:
            return text, None
        call = _valid_call(data, req, self.arguments_key)
        return ("", [call]) if call is not None else (text, None)

    def render(self, messages: Sequence[dict[str, Any]], req: ToolRequest | None) -> tuple[list[dict[str, Any]], dict]:
        out, extra = super().render(messages, req)
        for i, message in enumerate(out):
            if len(message.get("tool_calls") or ()) > 1:
                raise InvalidOptions(
                    f"messages[{i}] has {len(message['tool_calls'])} tool calls; "
                    "this model's template renders one call a turn"
                )
        return out, extra


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def _tag_prefix_length(text: str, tag: str) -> int:
    """The length of the longest end of `text` that the tag starts with (what may still become the tag)."""
    for n in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


HERMES = HermesFormat()
LLAMA3 = Llama3Format()
MISTRAL = MistralFormat()
#: Markers in the template, in the order llama.cpp's chat.cpp looks for them.
_MARKERS: tuple[tuple[str, ToolFormat], ...] = (
    ("<tool_call>", HERMES),
    ("<|start_header_id|>ipython<|end_header_id|>", LLAMA3),
    ("[TOOL_CALLS]", MISTRAL),
)


def detect(template: str | None) -> ToolFormat:
    """The model's tool format from its chat template's source: the first family marker found, else generic."""
    if template:
        for marker, fmt in _MARKERS:
            if marker in template:
                return fmt
    return GENERIC


def format_of(req: ToolRequest) -> ToolFormat:
    """The format a request was bound to (`Engine.bind_tools`); generic if none."""
    return req.format if isinstance(req.format, ToolFormat) else GENERIC


def read_answer(text: str, req: ToolRequest) -> tuple[str, list[ToolCall] | None]:
    """A finished answer as (text, calls) in the request's format (see `ToolFormat.parse`)."""
    if not req.offered:
        return text, None
    return format_of(req).parse(text, req)


class CallWatcher:
    """Splits a streamed answer into text to pass on at once and a call to hold back until the end, so a client
    gets text as it streams and each call whole, once (Ollama's and OpenAI's streaming contract).

    What may still open a call is held (leading whitespace for the generic format, a tail that may become
    `<tool_call>` for Hermes); a call that does not parse at the end (cut off by a length limit) is given back
    as text: nothing is lost."""

    def __init__(self, req: ToolRequest) -> None:
        self.req = req
        self._format = format_of(req)
        self._held = ""
        self._call = False
        self._settled = not req.offered

    def feed(self, piece: str) -> str:
        """The text to pass on now for `piece` ("" while held)."""
        if self._settled:
            return piece
        self._held += piece
        if self._call:
            return ""
        scan = self._format.scan(self._held)
        self._held, self._call, self._settled = scan.held, scan.call, scan.settled
        return scan.text

    def finish(self) -> tuple[str, list[ToolCall] | None]:
        """At the end: (text still to pass on, the calls or None)."""
        held, self._held = self._held, ""
        if self._call:
            text, calls = self._format.parse(held, self.req)
            if calls:
                return text, calls
        return held, None
