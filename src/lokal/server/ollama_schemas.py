"""Request bodies of Ollama's `/api/*` routes. Unknown fields are ignored (as Ollama's Go decoder does);
wrong types are a 400 naming the field. Types are strict, as Go's decoder is: `"stream": "yes"` or
`"context": ["1"]` is an error, not silently coerced. `name` is accepted where Ollama still accepts it
for `model`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

KeepAlive = float | int | str | None
FormatField = str | dict[str, Any] | None


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class _ModelRequest(_Request):
    model: str | None = None
    name: str | None = None  # deprecated alias of `model`

    @model_validator(mode="after")
    def _needs_model(self) -> _ModelRequest:
        if not (self.model or self.name):
            raise ValueError("model is required")
        self.model = self.model or self.name
        return self


class GenerateRequest(_ModelRequest):
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    stream: bool = True
    raw: bool = False
    format: FormatField = None
    keep_alive: KeepAlive = None
    images: list[str] | None = None
    options: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    think: bool | str | None = None  # true, false, or "low" / "medium" / "high" / "max"


class Message(_Request):
    role: str
    content: str | list[dict[str, Any]] | None = ""  # a list of text parts too, as OpenAI's clients send
    images: list[str] | None = None
    tool_calls: list[dict[str, Any]] | None = None  # an assistant turn's calls (checked against the tools)
    tool_name: str | None = None
    tool_call_id: str | None = None  # Ollama's server reads it too (ollama-python does not send it)
    thinking: str | None = None  # an assistant turn's reasoning, given to the template as reasoning_content


class ChatRequest(_ModelRequest):
    messages: list[Message] = []
    stream: bool = True
    format: FormatField = None
    keep_alive: KeepAlive = None
    options: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    # lokal's extensions (Ollama has neither): OpenAI's, so a client can make a model that would not call a
    # tool on its own call one.
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    think: bool | str | None = None  # true, false, or "low" / "medium" / "high" / "max"


class EmbedRequest(_ModelRequest):
    input: str | list[str] = []
    truncate: bool = True
    dimensions: int | None = None
    keep_alive: KeepAlive = None
    options: dict[str, Any] | None = None


class EmbeddingsRequest(_ModelRequest):
    prompt: str = ""
    keep_alive: KeepAlive = None
    options: dict[str, Any] | None = None


class ModelRequest(_ModelRequest):
    verbose: bool = False


class PullRequest(_ModelRequest):
    stream: bool = True
    insecure: bool = False


class CopyRequest(_Request):
    source: str
    destination: str


class CreateRequest(_ModelRequest):
    from_: str | None = None
    files: dict[str, str] | None = None
    system: str | None = None
    parameters: dict[str, Any] | None = None
    license: str | list[str] | None = None
    template: str | None = None  # a Jinja chat template (Ollama's Go templates are a 400 that says so)
    messages: list[dict[str, Any]] | None = None  # turns every chat starts with
    # Recognised, not implemented: each is refused with a 400 that names it, never silently dropped.
    adapters: dict[str, str] | None = None
    quantize: str | None = None
    stream: bool = True
    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _rename_from(cls, data: Any) -> Any:
        if isinstance(data, dict) and "from" in data:
            data = {**data, "from_": data["from"]}
        return data
