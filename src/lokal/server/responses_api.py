"""OpenAI's Responses API (`POST /v1/responses`), the stateless subset Ollama serves: newer OpenAI SDKs and agent
frameworks talk to it instead of chat completions.

A request is read into a chat (lokal.inference.start_chat) and its answer into output items:

- `input`: a string (one user turn) or a list of items: messages (`role`, `content` as a string or
  `input_text` / `output_text` parts), `function_call` (a past call: `call_id`, `name`, `arguments`),
  `function_call_output` (its result: `call_id`, `output`) and `reasoning` (a past turn's reasoning). A message
  may also be given without `type`, as the SDKs allow. `instructions` is the system turn.
- `tools`: the flat function form `{"type": "function", "name", "description", "parameters"}`; `tool_choice`
  ("auto", "none", "required", `{"type": "function", "name": ...}`) and `parallel_tool_calls` as on
  `/v1/chat/completions` (lokal.engine.tools).
- `max_output_tokens`, `temperature`, `top_p`, `reasoning.effort` (a thinking model's level, as
  `reasoning_effort`), `text.format` (`text`, `json_object`, or `json_schema` with a `schema`).

Output: a `reasoning` item (a thinking model's reasoning as a summary text; with `include:
["reasoning.encrypted_content"]` also as `encrypted_content`, in plain text as Ollama gives it: nothing leaves
the machine, so there is nothing to hide from the client, and a stateless client sends it back that way), then
a `message` item with one `output_text`, or `function_call` items. `status` is "incomplete" (reason
`max_output_tokens`) when the token limit cut the answer.

Streamed, the events come in the order the `openai` client's `responses.stream()` accumulates:
`response.created`, `response.in_progress`; per item `response.output_item.added`, its parts and deltas
(`response.reasoning_summary_*`, `response.content_part.*` and `response.output_text.*`,
`response.function_call_arguments.*`), `response.output_item.done`; then `response.completed` (or
`response.incomplete`). Each event has `type` and a `sequence_number`, and its SSE `event:` line.

There is no state: `previous_response_id`, `conversation`, `store: true` and `background` are refused with a 400
that says to send the whole conversation (lokal.server.fields).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict

from lokal import inference
from lokal.engine import answer, thinking, tools
from lokal.engine.messages import TEXT_PART_TYPES
from lokal.errors import InvalidOptions
from lokal.server import lifecycle
from lokal.server.body import JSONBodyRoute
from lokal.server.streaming import in_thread

router = APIRouter(prefix="/v1", route_class=JSONBodyRoute)

ENCRYPTED_REASONING = "reasoning.encrypted_content"


class ResponsesRequest(BaseModel):
    # Strict types, as OpenAI's API has them.
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    reasoning: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    include: list[str] | None = None
    stream: bool = False
    options: dict[str, Any] | None = None  # lokal extension, as on /v1/chat/completions: Ollama options

    def ollama_options(self) -> dict[str, Any]:
        options: dict[str, Any] = dict(self.options or {})
        for key in ("temperature", "top_p"):  # 1.0 when omitted, as OpenAI's API (and Ollama's layer) has it
            if getattr(self, key) is not None:
                options[key] = getattr(self, key)
            elif options.get(key) is None:
                options[key] = 1.0
        if self.max_output_tokens is not None:
            if self.max_output_tokens < 1:
                raise InvalidOptions("max_output_tokens must be at least 1")
            options["num_predict"] = self.max_output_tokens
        return options

    def think(self) -> str | bool | None:
        effort = (self.reasoning or {}).get("effort")
        return thinking.from_reasoning_effort(effort)

    def format(self) -> Any:
        spec = (self.text or {}).get("format")
        if spec is None:
            return None
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind == "text":
            return None
        if kind == "json_object":
            return "json"
        if kind == "json_schema":
            if not isinstance(spec.get("schema"), dict):
                raise InvalidOptions("text.format.schema must be a JSON schema object")
            return spec["schema"]
        raise InvalidOptions(f"text.format.type must be 'text', 'json_object' or 'json_schema', got {kind!r}")

    def encrypted_reasoning(self) -> bool:
        unknown = sorted(set(self.include or ()) - {ENCRYPTED_REASONING})
        if unknown:
            raise InvalidOptions(f"include {unknown} is not supported; lokal can include {ENCRYPTED_REASONING!r}")
        return ENCRYPTED_REASONING in (self.include or ())


def chat_tools(flat: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """The Responses API's flat function tools in the chat form lokal.engine.tools reads."""
    if flat is None:
        return None
    out = []
    for i, tool in enumerate(flat):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else type(tool).__name__
            raise InvalidOptions(f"tools[{i}] of type {kind!r} is not supported: only function tools")
        function = {k: tool[k] for k in ("name", "description", "parameters") if k in tool}
        out.append({"type": "function", "function": function})
    return out


def chat_tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if isinstance(choice, dict):
        if choice.get("type") != "function" or not isinstance(choice.get("name"), str):
            raise InvalidOptions('tool_choice must be "none", "auto", "required" or {"type": "function", "name": ...}')
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


def chat_messages(input: str | list[dict[str, Any]], instructions: str | None) -> list[dict[str, Any]]:
    """`input` (and `instructions`) as chat messages: past calls join the assistant turn before them (its text,
    if a message item came first), a call's output is a tool turn naming its call, and a reasoning item goes
    with the assistant turn after it."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": instructions}] if instructions else []
    if isinstance(input, str):
        return [*messages, {"role": "user", "content": input}]
    names: dict[str, str] = {}  # call_id -> the tool it called
    reasoning = ""
    for i, item in enumerate(input):
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            message = {"role": item.get("role"), "content": item.get("content")}
            if message["role"] == "assistant" and reasoning:
                message["reasoning_content"], reasoning = reasoning, ""
            messages.append(message)
        elif kind == "function_call":
            call_id, name = item.get("call_id"), item.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise InvalidOptions(f"input[{i}]: a function_call needs a call_id and a name")
            names[call_id] = name
            call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": item.get("arguments")}}
            last = messages[-1] if messages else None
            if last is None or last["role"] != "assistant":  # a message item then calls: one assistant turn
                last = {"role": "assistant", "content": ""}
                if reasoning:
                    last["reasoning_content"], reasoning = reasoning, ""
                messages.append(last)
            last.setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if call_id not in names:
                raise InvalidOptions(f"input[{i}]: function_call_output for call_id {call_id!r}, which no call has")
            output = item.get("output")
            text = output if isinstance(output, str) else _parts_text(output, f"input[{i}].output")
            messages.append({"role": "tool", "tool_call_id": call_id, "tool_name": names[call_id], "content": text})
        elif kind == "reasoning":
            reasoning = item.get("encrypted_content") or "".join(
                part.get("text", "") for part in item.get("summary") or () if isinstance(part, dict)
            )
        else:
            raise InvalidOptions(
                f"input[{i}] of type {kind!r} is not supported: send messages, function_call, "
                "function_call_output and reasoning items (lokal keeps no state to refer to)"
            )
    return messages


def _parts_text(parts: Any, where: str) -> str:
    if not isinstance(parts, list):
        raise InvalidOptions(f"{where} must be a string or a list of text parts")
    texts = []
    for j, part in enumerate(parts):
        if not isinstance(part, dict) or part.get("type") not in TEXT_PART_TYPES:
            raise InvalidOptions(f"{where}[{j}] is not a text part (text only)")
        texts.append(part.get("text", ""))
    return "".join(texts)


class _Items:
    """The output items of one response, with the ids streamed events and the final object share."""

    def __init__(self, ident: str, encrypted: bool) -> None:
        self.ident = ident
        self.encrypted = encrypted

    def reasoning(self, text: str) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": f"rs_{self.ident}",
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": text}],
        }
        if self.encrypted:
            item["encrypted_content"] = text
        return item

    def message(self, text: str, status: str = "completed") -> dict[str, Any]:
        return {
            "id": f"msg_{self.ident}",
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": [] if status == "in_progress" else [_output_text(text)],
        }

    @staticmethod
    def call(call: tools.ToolCall) -> dict[str, Any]:
        return {
            "id": f"fc_{call.id}",
            "type": "function_call",
            "status": "completed",
            "call_id": call.id,
            "name": call.name,
            "arguments": json.dumps(call.arguments, ensure_ascii=False),
        }

    def all(self, reasoning: str, text: str, calls: list[tools.ToolCall] | None) -> list[dict[str, Any]]:
        out = [self.reasoning(reasoning)] if reasoning else []
        if text or not calls:
            out.append(self.message(text))
        out.extend(self.call(c) for c in calls or ())
        return out


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _usage(completion: Any) -> dict[str, Any]:
    return {
        "input_tokens": completion.prompt_eval_count,
        "input_tokens_details": {"cached_tokens": completion.prompt_cache_count},
        "output_tokens": completion.eval_count,
        "output_tokens_details": {"reasoning_tokens": 0},  # not counted apart: the reasoning is in output_tokens
        "total_tokens": completion.prompt_eval_count + completion.eval_count,
    }


@router.post("/responses")
async def responses(body: ResponsesRequest, request: Request) -> Response:
    encrypted = body.encrypted_reasoning()
    messages = chat_messages(body.input, body.instructions)
    manager = request.app.state.manager
    tool_ask = inference.ToolAsk(chat_tools(body.tools), chat_tool_choice(body.tool_choice), body.parallel_tool_calls)
    run = await in_thread(
        inference.start_chat,
        manager,
        body.model,
        messages,
        format=body.format(),
        options=body.ollama_options(),
        tools=tool_ask,
        think=body.think(),
    )
    ident = uuid.uuid4().hex[:24]
    items = _Items(ident, encrypted)
    created = int(time.time())

    def response(status: str, output: list[dict[str, Any]], completion: Any = None) -> dict[str, Any]:
        return {
            "id": f"resp_{ident}",
            "object": "response",
            "created_at": created,
            "status": status,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": body.instructions,
            "max_output_tokens": body.max_output_tokens,
            "model": body.model,
            "output": output,
            "parallel_tool_calls": body.parallel_tool_calls is not False,
            "temperature": body.temperature,
            "tool_choice": body.tool_choice or "auto",
            "tools": body.tools or [],
            "top_p": body.top_p,
            "reasoning": body.reasoning or {"effort": None, "summary": None},
            "text": body.text or {"format": {"type": "text"}},
            "metadata": {},
            "usage": _usage(completion) if completion is not None else None,
        }

    def status_of(completion: Any) -> str:
        return "incomplete" if completion.done_reason == "length" else "completed"

    if not body.stream:
        collected = await lifecycle.collect(request, run)
        if collected is None:
            return Response(status_code=499)
        reasoning, text, calls = answer.read(collected.text, run.tools, run.thinking)
        completion = collected.completion
        return JSONResponse(response(status_of(completion), items.all(reasoning, text, calls), completion))

    watcher = answer.AnswerWatcher(run.tools, run.thinking)
    numbers = itertools.count()

    def event(kind: str, **data: Any) -> bytes:
        payload = {"type": kind, "sequence_number": next(numbers), **data}
        return f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()

    async def events(streamed: lifecycle.Streamed) -> AsyncIterator[bytes]:
        output: list[dict[str, Any]] = []
        open_kind: str | None = None  # the item being streamed: "reasoning" or "message"
        said = ""  # its text so far

        def open_item(kind: str) -> list[bytes]:
            nonlocal open_kind, said
            out = close_item()
            open_kind, said = kind, ""
            index = len(output)
            if kind == "reasoning":
                item = {**items.reasoning(""), "summary": []}
                out.append(event("response.output_item.added", output_index=index, item=item))
                part = {"type": "summary_text", "text": ""}
                out.append(
                    event(
                        "response.reasoning_summary_part.added",
                        item_id=item["id"],
                        output_index=index,
                        summary_index=0,
                        part=part,
                    )
                )
            else:
                item = items.message("", status="in_progress")
                out.append(event("response.output_item.added", output_index=index, item=item))
                out.append(
                    event(
                        "response.content_part.added",
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        part=_output_text(""),
                    )
                )
            return out

        def delta(kind: str, text: str) -> list[bytes]:
            nonlocal said
            out = open_item(kind) if open_kind != kind else []
            said += text
            index = len(output)
            if kind == "reasoning":
                out.append(
                    event(
                        "response.reasoning_summary_text.delta",
                        item_id=f"rs_{ident}",
                        output_index=index,
                        summary_index=0,
                        delta=text,
                    )
                )
            else:
                out.append(
                    event(
                        "response.output_text.delta",
                        item_id=f"msg_{ident}",
                        output_index=index,
                        content_index=0,
                        delta=text,
                        logprobs=[],
                    )
                )
            return out

        def close_item() -> list[bytes]:
            nonlocal open_kind
            if open_kind is None:
                return []
            index, out = len(output), []
            if open_kind == "reasoning":
                item = items.reasoning(said)
                common = {"item_id": item["id"], "output_index": index, "summary_index": 0}
                out.append(event("response.reasoning_summary_text.done", **common, text=said))
                out.append(event("response.reasoning_summary_part.done", **common, part=item["summary"][0]))
            else:
                item = items.message(said)
                common = {"item_id": item["id"], "output_index": index, "content_index": 0}
                out.append(event("response.output_text.done", **common, text=said, logprobs=[]))
                out.append(event("response.content_part.done", **common, part=_output_text(said)))
            out.append(event("response.output_item.done", output_index=index, item=item))
            output.append(item)
            open_kind = None
            return out

        def pieces(reasoning: str, text: str) -> list[bytes]:
            out = delta("reasoning", reasoning) if reasoning else []
            return out + delta("message", text) if text else out

        yield event("response.created", response=response("in_progress", []))
        yield event("response.in_progress", response=response("in_progress", []))
        async for piece in streamed.pieces():
            for line in pieces(*watcher.feed(piece.text)):
                yield line
        completion = streamed.completion
        reasoning, text, calls = watcher.finish()
        for line in pieces(reasoning, text):
            yield line
        if not calls and not any(i["type"] == "message" for i in output) and open_kind != "message":
            for line in open_item("message"):  # an empty answer is still a message
                yield line
        for line in close_item():
            yield line
        for call in calls or ():
            item, index = items.call(call), len(output)
            yield event("response.output_item.added", output_index=index, item={**item, "arguments": ""})
            common = {"item_id": item["id"], "output_index": index}
            yield event("response.function_call_arguments.delta", **common, delta=item["arguments"])
            yield event("response.function_call_arguments.done", **common, arguments=item["arguments"])
            yield event("response.output_item.done", output_index=index, item=item)
            output.append(item)
        status = status_of(completion)
        yield event(f"response.{status}", response=response(status, output, completion))

    def error_line(message: str, internal: bool) -> bytes:
        return event("error", code="api_error" if internal else "invalid_request_error", message=message, param=None)

    return lifecycle.stream(request, run, events, error_line, "text/event-stream")
