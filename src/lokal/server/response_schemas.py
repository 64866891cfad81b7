"""The response bodies `lokal serve` sends, as TypedDicts: documentation for its OpenAPI spec (`openapi.py`).

One per shape `lokal.shapes` and the routes build. Nothing validates or serialises a response against them at
run time (no `response_model=`), so they cost nothing per request; tests/unit/test_server_openapi.py checks them
against real answers so they stay true.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import Field
from typing_extensions import TypedDict  # pydantic needs typing_extensions' TypedDict before Python 3.12

from lokal.engine.base import DoneReason

# -- response shapes: Ollama ------------------------------------------------------------------------------------


class OllamaError(TypedDict):
    """An Ollama route's error, also a stream's last line when it fails after the first byte."""

    error: str


class VersionResponse(TypedDict):
    version: str


class Timings(TypedDict):
    """Ollama's counters, durations in nanoseconds."""

    total_duration: int
    load_duration: int
    prompt_eval_count: int
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int
    #: lokal's speculative decoding (absent when nothing was drafted): tokens drafted and verified, and kept.
    draft_count: NotRequired[int]
    draft_accepted_count: NotRequired[int]


class TokenLogprob(TypedDict):
    """A token and its natural-log probability; `bytes` are its own bytes (a character can span tokens)."""

    token: str
    logprob: float
    bytes: NotRequired[list[int]]


class Logprob(TokenLogprob):
    """A generated token's entry (`logprobs: true`); `top_logprobs` with `top_logprobs` > 0, most likely first."""

    top_logprobs: NotRequired[list[TokenLogprob]]


class GenerateChunk(TypedDict):
    model: str
    created_at: datetime
    response: str
    done: Literal[False]
    thinking: NotRequired[str]  # a thinking model's reasoning, as it comes (beside an empty response)
    logprobs: NotRequired[list[Logprob]]  # with logprobs: true, this chunk's own tokens


class GenerateFinal(Timings):
    """The whole answer (`stream: false`) or a stream's last line. `context` unless `raw`; `logprobs` (all of
    them) in a whole answer that asked for them."""

    model: str
    created_at: datetime
    response: str
    done: Literal[True]
    done_reason: DoneReason
    thinking: NotRequired[str]  # a thinking model's reasoning (in a whole answer)
    context: NotRequired[list[int]]
    logprobs: NotRequired[list[Logprob]]


class GenerateLoaded(TypedDict):
    """The answer to an empty prompt: the model was loaded (or, with `keep_alive: 0`, unloaded)."""

    model: str
    created_at: datetime
    done: Literal[True]
    done_reason: Literal["load", "unload"]
    response: Literal[""]


class OllamaFunctionCall(TypedDict):
    index: int
    name: str
    arguments: dict[str, Any]  # an object (a string breaks ollama-python)


class OllamaToolCall(TypedDict):
    id: str
    function: OllamaFunctionCall


class AssistantMessage(TypedDict):
    role: Literal["assistant"]
    content: str
    thinking: NotRequired[str]  # a thinking model's reasoning, apart from the content
    tool_calls: NotRequired[list[OllamaToolCall]]  # each call whole, once (streamed: in one chunk)


class ChatChunk(TypedDict):
    model: str
    created_at: datetime
    message: AssistantMessage
    done: Literal[False]
    logprobs: NotRequired[list[Logprob]]


class ChatFinal(Timings):
    model: str
    created_at: datetime
    message: AssistantMessage
    done: Literal[True]
    done_reason: DoneReason
    logprobs: NotRequired[list[Logprob]]


class ChatLoaded(TypedDict):
    """The answer to an empty `messages`: the model was loaded (or, with `keep_alive: 0`, unloaded)."""

    model: str
    created_at: datetime
    done: Literal[True]
    done_reason: Literal["load", "unload"]
    message: AssistantMessage


class EmbedResponse(TypedDict):
    model: str
    embeddings: list[list[float]]
    total_duration: int
    load_duration: int
    prompt_eval_count: int


class EmbeddingsResponse(TypedDict):
    """The legacy route: one vector (empty for an empty prompt, which only loads the model)."""

    embedding: list[float]


class ModelDetails(TypedDict):
    parent_model: str
    format: str
    family: str
    families: list[str] | None
    parameter_size: str
    quantization_level: str


class ModelEntry(TypedDict):
    name: str
    model: str
    modified_at: datetime
    size: int
    digest: str
    details: ModelDetails


class TagsResponse(TypedDict):
    models: list[ModelEntry]


class RunningModel(ModelEntry):
    expires_at: datetime
    size_vram: int
    context_length: int
    engine: Literal["llamacpp", "transformers"]  # lokal's addition to Ollama's entry


class PsResponse(TypedDict):
    models: list[RunningModel]


class MemoryEstimate(TypedDict):
    """Bytes the model needs loaded with `num_parallel` sequences of `num_ctx` tokens."""

    weights: int
    kv_cache: int
    compute: int
    num_ctx: int
    num_parallel: int
    total: int


class ShowLokal(TypedDict):
    source: str
    read_only: bool
    digest: str
    size: int
    context_length: int | None
    memory: MemoryEstimate


class ShowResponse(TypedDict):
    license: str
    modelfile: str
    parameters: str
    template: str
    system: str
    details: ModelDetails
    model_info: dict[str, str | int | float | bool | None]  # GGUF metadata (config.json for a checkpoint)
    capabilities: list[str]
    modified_at: datetime
    lokal: ShowLokal  # lokal's addition: where the model comes from and the memory it needs


class StatusResponse(TypedDict):
    status: Literal["success"]


class ProgressLine(TypedDict):
    """One line of a pull's or a create's stream; a failure is an `{"error": ...}` line instead."""

    status: str
    digest: NotRequired[str]
    total: NotRequired[int]
    completed: NotRequired[int]


# -- response shapes: OpenAI ------------------------------------------------------------------------------------

FinishReason = Literal["stop", "length"]
ChatFinishReason = Literal["stop", "length", "tool_calls"]


class OpenAIErrorDetail(TypedDict):
    message: str
    type: str | None
    param: str | None
    code: str | None


class OpenAIError(TypedDict):
    """An OpenAI route's error, also a stream's last event when it fails after the first byte."""

    error: OpenAIErrorDetail


class PromptTokensDetails(TypedDict):
    cached_tokens: int  # of prompt_tokens, those the prompt cache supplied


class CompletionTokensDetails(TypedDict):
    """OpenAI's Predicted Outputs counters, which lokal's speculative decoding fills: drafted tokens the model
    produced too (part of completion_tokens), and drafted tokens it did not (verified, then discarded)."""

    accepted_prediction_tokens: int
    rejected_prediction_tokens: int


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: NotRequired[PromptTokensDetails]  # absent where no prompt cache is used (scoring)
    completion_tokens_details: NotRequired[CompletionTokensDetails]  # present when tokens were drafted


class FunctionCall(TypedDict):
    name: str
    arguments: str  # a JSON string, as openai-python parses it


class ToolCall(TypedDict):
    id: str
    type: Literal["function"]
    function: FunctionCall


class StreamedToolCall(ToolCall):
    index: int


class ChatCompletionMessage(TypedDict):
    role: Literal["assistant"]
    content: str | None  # null when the answer is tool calls
    reasoning_content: NotRequired[str]  # a thinking model's reasoning
    tool_calls: NotRequired[list[ToolCall]]


class ChatTokenLogprob(TypedDict):
    token: str
    logprob: float
    bytes: list[int] | None


class ChatLogprobContent(ChatTokenLogprob):
    top_logprobs: list[ChatTokenLogprob]  # always a list (empty for top_logprobs 0), as openai-python requires


class ChatLogprobs(TypedDict):
    """`logprobs: true`: one entry per generated token (a streamed chunk: its own tokens)."""

    content: list[ChatLogprobContent]
    refusal: None


class ChatCompletionChoice(TypedDict):
    index: int
    finish_reason: ChatFinishReason
    logprobs: ChatLogprobs | None
    message: ChatCompletionMessage


class ChatCompletion(TypedDict):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChatCompletionChoice]
    usage: Usage


class ChunkDelta(TypedDict):
    role: NotRequired[Literal["assistant"]]
    content: NotRequired[str]
    reasoning_content: NotRequired[str]  # a thinking model's reasoning, as it comes
    tool_calls: NotRequired[list[StreamedToolCall]]  # each call whole in one delta


class ChatCompletionChunkChoice(TypedDict):
    index: int
    delta: ChunkDelta
    finish_reason: ChatFinishReason | None
    logprobs: ChatLogprobs | None


class ChatCompletionChunk(TypedDict):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChatCompletionChunkChoice]


class UsageChunk(TypedDict):
    """The last event before `[DONE]` when `stream_options.include_usage` is true."""

    id: str
    object: Literal["chat.completion.chunk", "text_completion"]
    created: int
    model: str
    choices: Annotated[list[Any], Field(max_length=0)]
    usage: Usage


class LegacyLogprobs(TypedDict):
    """Generated tokens' log-probabilities (`logprobs: k`; each `top_logprobs` dict has the k most likely tokens
    and the sampled one), or the prompt's (`echo: true, logprobs: 1, max_tokens: 0`; the first token's is null)."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class TextCompletionChoice(TypedDict):
    index: int
    text: str
    finish_reason: FinishReason
    logprobs: LegacyLogprobs | None


class TextCompletion(TypedDict):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[TextCompletionChoice]
    usage: Usage


class TextCompletionChunkChoice(TypedDict):
    index: int
    text: str
    finish_reason: FinishReason | None
    logprobs: LegacyLogprobs | None


class TextCompletionChunk(TypedDict):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[TextCompletionChunkChoice]


class Embedding(TypedDict):
    object: Literal["embedding"]
    embedding: list[float] | str  # a string with encoding_format "base64" (little-endian float32)
    index: int


class EmbeddingUsage(TypedDict):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(TypedDict):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class ModelObject(TypedDict):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(TypedDict):
    object: Literal["list"]
    data: list[ModelObject]


class ResponseOutputText(TypedDict):
    type: Literal["output_text"]
    text: str
    annotations: Annotated[list[Any], Field(max_length=0)]
    logprobs: Annotated[list[Any], Field(max_length=0)]


class ResponseMessageItem(TypedDict):
    """The answer's text (`content` is empty only while it streams, in `response.output_item.added`)."""

    id: str
    type: Literal["message"]
    status: Literal["in_progress", "completed"]
    role: Literal["assistant"]
    content: list[ResponseOutputText]


class ResponseSummaryText(TypedDict):
    type: Literal["summary_text"]
    text: str


class ResponseReasoningItem(TypedDict):
    """A thinking model's reasoning; `encrypted_content` (the same text) with include reasoning.encrypted_content."""

    id: str
    type: Literal["reasoning"]
    summary: list[ResponseSummaryText]
    encrypted_content: NotRequired[str]


class ResponseFunctionCallItem(TypedDict):
    id: str
    type: Literal["function_call"]
    status: Literal["completed"]
    call_id: str
    name: str
    arguments: str  # a JSON string ("" in response.output_item.added: it comes in the arguments events)


class ResponseTokensDetails(TypedDict):
    cached_tokens: int


class ResponseOutputTokensDetails(TypedDict):
    reasoning_tokens: int


class ResponseUsage(TypedDict):
    input_tokens: int
    input_tokens_details: ResponseTokensDetails
    output_tokens: int
    output_tokens_details: ResponseOutputTokensDetails
    total_tokens: int


class ResponseIncompleteDetails(TypedDict):
    reason: Literal["max_output_tokens"]


class ResponseObject(TypedDict):
    """`POST /v1/responses`' answer; `usage` null only in the stream's response.created and in_progress events."""

    id: str
    object: Literal["response"]
    created_at: int
    status: Literal["in_progress", "completed", "incomplete"]
    error: None
    incomplete_details: ResponseIncompleteDetails | None
    instructions: str | None
    max_output_tokens: int | None
    model: str
    output: list[ResponseReasoningItem | ResponseMessageItem | ResponseFunctionCallItem]
    parallel_tool_calls: bool
    temperature: float | None
    tool_choice: str | dict[str, Any]
    tools: list[dict[str, Any]]
    top_p: float | None
    reasoning: dict[str, Any]
    text: dict[str, Any]
    metadata: dict[str, Any]
    usage: ResponseUsage | None


class ResponseStreamEvent(TypedDict):
    """One event of a streamed response (its SSE `event:` line is its `type`); which fields it has depends on
    the type, as in OpenAI's API (openai-python's `types/responses`)."""

    type: str
    sequence_number: int
    response: NotRequired[ResponseObject]
    output_index: NotRequired[int]
    item: NotRequired[ResponseReasoningItem | ResponseMessageItem | ResponseFunctionCallItem]
    item_id: NotRequired[str]
    content_index: NotRequired[int]
    summary_index: NotRequired[int]
    part: NotRequired[ResponseOutputText | ResponseSummaryText]
    delta: NotRequired[str]
    text: NotRequired[str]
    arguments: NotRequired[str]
    logprobs: NotRequired[Annotated[list[Any], Field(max_length=0)]]
    code: NotRequired[str]  # an `error` event: the request failed after the stream began
    message: NotRequired[str]
    param: NotRequired[None]


# -- response shapes: operations --------------------------------------------------------------------------------


class HealthFailure(TypedDict):
    model: str
    error: str


class Health(TypedDict):
    """200 `ok`; 503 `loading` (models named at start-up still loading) or `degraded` (an engine failed)."""

    status: Literal["ok", "loading", "degraded"]
    loaded: list[str]
    failed: NotRequired[list[HealthFailure]]


SHAPES: tuple[type, ...] = (
    OllamaError,
    VersionResponse,
    GenerateChunk,
    GenerateFinal,
    GenerateLoaded,
    ChatChunk,
    ChatFinal,
    ChatLoaded,
    EmbedResponse,
    EmbeddingsResponse,
    TagsResponse,
    PsResponse,
    ShowResponse,
    StatusResponse,
    ProgressLine,
    OpenAIError,
    ChatCompletion,
    ChatCompletionChunk,
    UsageChunk,
    TextCompletion,
    TextCompletionChunk,
    EmbeddingList,
    ModelObject,
    ModelList,
    ResponseObject,
    ResponseStreamEvent,
    Health,
)
