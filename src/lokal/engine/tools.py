"""Tool calling for every model, in one generic format (llama.cpp's "generic" fallback, as its `chat.cpp` does
for templates that know no tools): the tools are described in the system turn, a call is the JSON object
`{"tool_calls": [{"name": ..., "arguments": {...}}]}`, and llama.cpp's grammar sampler keeps a call valid.

- `tool_choice` "required" or a named function: the grammar holds from the first token, so the answer is a
  call whose `name` is one of the tools (or the named one) and whose `arguments` match that tool's parameter
  schema, every time.
- "auto": the grammar is lazy. It starts only when the answer opens with `{` (llama.cpp's trigger patterns), so
  a plain answer streams as text and costs nothing extra; once a call starts, its JSON is held to the schema.
- Past calls and their results are written back the way llama.cpp's minja polyfill writes them for such
  templates: an assistant turn holding the call JSON, and a user turn `{"tool_response": {...}}`.

Everything here is pure (no engine state): the engine renders `messages_for` with its template and samples with
`grammar`; the front ends turn the output into calls with `parse_calls`.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import string
from collections.abc import Mapping, Sequence
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from lokal.errors import InvalidOptions

#: The lazy grammar's trigger: the whole output so far, once it opens with `{` (after any whitespace). llama.cpp
#: feeds the grammar from the first capture group.
CALL_TRIGGER = r"^\s*(\{[\s\S]*)"
#: Calls one answer may hold. A small model asked for a call can repeat it until its token limit (SmolLM2 at
#: temperature 0.8 did, in 5 of 20 answers), and a call cut off there is no call at all: the cap ends the
#: answer as a valid one instead. Real requests make a few calls; eight leaves room.
MAX_PARALLEL_CALLS = 8
_ID_ALPHABET = string.ascii_lowercase + string.digits


@dataclasses.dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ToolRequest:
    """What a request asks of tools: which may be called, whether one must be (`required`, or `only` names the
    one that must), and whether several calls may come in one answer."""

    tools: tuple[Tool, ...]
    required: bool = False
    only: str | None = None
    parallel: bool = True
    #: False for tool_choice "none": the tools are known (a history may call them) but not offered.
    offered: bool = True
    #: The model's way of writing calls (a `lokal.engine.tool_formats.ToolFormat`), set by the engine that runs
    #: the request (`Engine.bind_tools`); None is the generic format.
    format: Any = None

    @property
    def callable(self) -> tuple[Tool, ...]:
        if not self.offered:
            return ()
        return tuple(t for t in self.tools if self.only is None or t.name == self.only)

    @property
    def lazy(self) -> bool:
        return not self.required and self.only is None

    @property
    def max_calls(self) -> int:
        """A named function is called once (OpenAI's "call this function"); otherwise `parallel` decides, up to
        MAX_PARALLEL_CALLS."""
        return 1 if self.only is not None or not self.parallel else MAX_PARALLEL_CALLS


@dataclasses.dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


def new_call_id() -> str:
    """`call_` and 8 characters of [a-z0-9], as Ollama makes them."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def _fix_types(schema: Any) -> Any:
    """ollama-python's `convert_function_to_tool` writes a union as `"type": "integer, string"`; JSON Schema
    spells it `["integer", "string"]`. Applied recursively to a copy."""
    if isinstance(schema, list):
        return [_fix_types(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    fixed = {k: _fix_types(v) for k, v in schema.items()}
    kind = fixed.get("type")
    if isinstance(kind, str) and "," in kind:
        fixed["type"] = [part.strip() for part in kind.split(",") if part.strip()]
    return fixed


def parse_tools(tools: Sequence[Any] | None) -> tuple[Tool, ...]:
    """Validate a request's `tools` (OpenAI's and Ollama's shape: `{"type": "function", "function": {...}}`).
    Each needs a unique name and parameters that are a valid JSON Schema object; anything else is a 400 that
    names the tool and says what is wrong."""
    out: list[Tool] = []
    for i, tool in enumerate(tools or ()):
        where = f"tools[{i}]"
        if not isinstance(tool, Mapping) or tool.get("type", "function") != "function":
            shape = '{"type": "function", "function": {"name": ..., "parameters": ...}}'
            raise InvalidOptions(f"{where} must be {shape}")
        function = tool.get("function")
        if not isinstance(function, Mapping):
            raise InvalidOptions(f"{where}.function must be an object with a name and parameters")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidOptions(f"{where}.function.name must be a non-empty string")
        if any(t.name == name for t in out):
            raise InvalidOptions(f"{where}: two tools are named {name!r}; names must be unique")
        parameters = function.get("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        if not isinstance(parameters, Mapping):
            raise InvalidOptions(f"{where}.function.parameters must be a JSON Schema object")
        parameters = _fix_types(dict(parameters))
        try:
            Draft202012Validator.check_schema(parameters)
        except SchemaError as exc:
            raise InvalidOptions(
                f"{where}.function.parameters is not a valid JSON Schema: {exc.message} "
                f"(at {'/'.join(map(str, exc.path)) or 'the top'})"
            ) from None
        description = function.get("description") or ""
        out.append(Tool(name, description if isinstance(description, str) else str(description), parameters))
    return tuple(out)


def request(
    tools: Sequence[Any] | None, tool_choice: Any = None, parallel_tool_calls: bool | None = None
) -> ToolRequest | None:
    """A request's tools and `tool_choice` ("none", "auto", "required", or `{"type": "function", "function":
    {"name": ...}}`) as a ToolRequest, or None without tools. With "none" the tools are not offered, but a
    history's calls to them still render."""
    parsed = parse_tools(tools)
    if tool_choice is None or tool_choice == "auto":
        required, only = False, None
    elif tool_choice == "none":
        return ToolRequest(parsed, offered=False) if parsed else None
    elif tool_choice == "required":
        required, only = True, None
    elif isinstance(tool_choice, Mapping) and isinstance(tool_choice.get("function"), Mapping):
        only = tool_choice["function"].get("name")
        if not any(t.name == only for t in parsed):
            names = ", ".join(t.name for t in parsed) or "none"
            raise InvalidOptions(f"tool_choice names {only!r}, which is not among the tools ({names})")
        required = True
    else:
        raise InvalidOptions(
            'tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}, '
            f"got {tool_choice!r}"
        )
    if not parsed:
        if required:
            raise InvalidOptions("tool_choice asks for a tool call, but the request has no tools")
        return None
    return ToolRequest(parsed, required=required, only=only, parallel=parallel_tool_calls is not False)


#: The `tool_choice` values a model may record as its default (`PARAMETER tool_choice required`).
MODEL_TOOL_CHOICES = ("auto", "required", "none")


def check_model_tool_choice(value: Any) -> str:
    """A model's default `tool_choice`: used when a request with tools names none. Agent frameworks cannot send
    one (langchain-ollama and llama-index-llms-ollama drop it, as the ollama client has no such field), and a
    small model left to "auto" rarely calls: `required` makes it call."""
    if value not in MODEL_TOOL_CHOICES:
        raise InvalidOptions(f"parameter tool_choice must be one of {', '.join(MODEL_TOOL_CHOICES)}, got {value!r}")
    return value


def system_text(req: ToolRequest) -> str:
    """The instructions and tool list the system turn gets (a template with no tools of its own sees them here)."""
    described = [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in req.callable]
    example = json.dumps({"tool_calls": [{"name": req.callable[0].name, "arguments": {}}]})
    many = "exactly one call" if req.max_calls == 1 else "one call, or more if the question needs them"
    if req.lazy:
        when = f"To call tools, reply with only a JSON object like {example} ({many}); otherwise reply normally."
    else:
        when = f"Reply with only a JSON object like {example} ({many}), with the arguments the tool needs."
    return f"You can call these tools:\n{json.dumps(described, ensure_ascii=False)}\n{when}"


def call_schema(req: ToolRequest) -> dict[str, Any]:
    """The JSON Schema of an answer that calls tools: each call names a tool and matches its parameters."""
    variants = [
        {
            "type": "object",
            "properties": {"name": {"const": t.name}, "arguments": t.parameters},
            "required": ["name", "arguments"],
        }
        for t in req.callable
    ]
    items: dict[str, Any] = {"type": "array", "items": {"anyOf": variants}, "minItems": 1}
    items["maxItems"] = req.max_calls
    return {"type": "object", "properties": {"tool_calls": items}, "required": ["tool_calls"]}


def _call_json(calls: Sequence[Mapping[str, Any]], where: str, names: set[str] | None) -> str:
    out = []
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise InvalidOptions(f"{where}.tool_calls[{j}] must have a function with a name")
        name = function["name"]
        if names is not None and name not in names:
            known = ", ".join(sorted(names)) or "none"
            raise InvalidOptions(f"{where}.tool_calls[{j}] calls {name!r}, which is not among the tools ({known})")
        arguments = function.get("arguments") or {}
        if isinstance(arguments, str):  # OpenAI's history carries arguments as a JSON string
            try:
                arguments = json.loads(arguments)
            except ValueError:
                raise InvalidOptions(f"{where}.tool_calls[{j}].function.arguments is not valid JSON") from None
        out.append({"name": name, "arguments": arguments})
    return json.dumps({"tool_calls": out}, ensure_ascii=False)


def messages_for(messages: Sequence[dict[str, Any]], req: ToolRequest | None) -> list[dict[str, Any]]:
    """Messages (already normalised) as a template without tools can render them: the tool instructions in the
    system turn, past calls as the JSON a call is, and tool results as user turns (llama.cpp's polyfill).
    A past call must name one of the request's tools; a request without tools renders its history's calls as
    they are (as Ollama does: a client may leave the tools out of the turn that reads their results)."""
    names = {t.name for t in req.tools} if req else None
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message["role"]
        if message.get("tool_calls"):
            if role != "assistant":
                raise InvalidOptions(f"messages[{i}]: only an assistant message can have tool_calls")
            text = _call_json(message["tool_calls"], f"messages[{i}]", names)
            out.append(_with_reasoning({"role": "assistant", "content": text}, message))
        elif role == "tool":
            response = {"tool": message.get("tool_name") or message.get("name") or "", "content": message["content"]}
            if message.get("tool_call_id"):
                response["tool_call_id"] = message["tool_call_id"]
            out.append({"role": "user", "content": json.dumps({"tool_response": response}, ensure_ascii=False)})
        else:
            out.append(_with_reasoning({"role": role, "content": message["content"]}, message))
    if req is not None and req.offered:
        instructions = system_text(req)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{instructions}"}
        else:
            out.insert(0, {"role": "system", "content": instructions})
    return out


def _with_reasoning(entry: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """An assistant turn's reasoning (lokal.engine.thinking) is kept for a thinking template to render."""
    if message.get("reasoning_content"):
        entry["reasoning_content"] = message["reasoning_content"]
    return entry


def looks_like_call(text: str) -> bool:
    """Whether output opens as a call would (after whitespace): from its first visible character on."""
    return text.lstrip().startswith("{")


def parse_calls(text: str, req: ToolRequest) -> list[ToolCall] | None:
    """The calls in a finished output, or None when it is not a complete, valid call (then it is the answer's
    text: a plain reply, or a call cut off by a length limit)."""
    if not req.offered or not looks_like_call(text):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    calls = data.get("tool_calls") if isinstance(data, dict) else None
    if not isinstance(calls, list) or not calls:
        return None
    tools = {t.name: t for t in req.callable}
    out = []
    for call in calls:
        if not isinstance(call, dict) or call.get("name") not in tools or not isinstance(call.get("arguments"), dict):
            return None
        if next(Draft202012Validator(tools[call["name"]].parameters).iter_errors(call["arguments"]), None):
            return None
        out.append(ToolCall(new_call_id(), call["name"], call["arguments"]))
    return out
