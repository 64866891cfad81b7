"""Agent frameworks against a real `lokal serve`, as they use Ollama: `langchain-ollama` (`ChatOllama.bind_tools`,
`with_structured_output` with `function_calling` and `json_schema`) and `llama-index-llms-ollama`
(`predict_and_call` with a `FunctionTool`). Neither can send `tool_choice` (both drop it: the `ollama` client
they call has no such field), and the bundled 135M model left to "auto" answers in text, so the model the
frameworks talk to is created the way an Ollama user would make one, with the official client's `create`: the
bundled SmolLM2 with lokal's `tool_choice` parameter set to "required". The grammar then makes each answer a call
to one of the tools with arguments that match its schema, and the frameworks' own parsing is what is tested.
"""

from __future__ import annotations

import jsonschema
import ollama
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool as langchain_tool
from langchain_ollama import ChatOllama
from llama_index.core.tools import FunctionTool
from llama_index.llms.ollama import Ollama as LlamaIndexOllama
from pydantic import BaseModel, Field
from server_fixture import MODEL, LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CALLER = "smollm2-caller"
QUESTION = "What is the weather like in Paris right now?"
OPTIONS = {"temperature": 0, "num_predict": 160}


@pytest.fixture(scope="module")
def caller(server: LiveServer) -> str:
    """The bundled model, created through the official client with `tool_choice` required."""
    client = ollama.Client(host=server.url, timeout=120)
    status = client.create(model=CALLER, from_=MODEL, parameters={"tool_choice": "required", "temperature": 0})
    assert status.status == "success"
    assert "tool_choice" in client.show(CALLER).parameters
    return CALLER


@langchain_tool
def get_weather(city: str, unit: str) -> str:
    """Current weather in a city; unit is celsius or fahrenheit."""
    return f"14 degrees {unit} and sunny in {city}"


class Weather(BaseModel):
    """A weather report for a city."""

    city: str = Field(description="the city", max_length=40)
    temperature: int = Field(description="degrees celsius", ge=-90, le=60)


def chat(server: LiveServer, model: str) -> ChatOllama:
    return ChatOllama(model=model, base_url=server.url, num_predict=OPTIONS["num_predict"], temperature=0)


def check_weather_call(call: dict) -> None:
    assert call["name"] == "get_weather"
    jsonschema.validate(call["args"], get_weather.tool_call_schema.model_json_schema())
    assert call["id"]  # langchain-ollama makes its own (the ollama client it reads through has no call id)


def test_langchain_bind_tools_gets_a_call_it_can_run(server: LiveServer, caller: str):
    """`bind_tools` → `invoke` → an AIMessage whose `tool_calls` LangChain parsed, which the tool runs; then the
    result as a ToolMessage and, without the tools, the model's answer in text: the full round trip."""
    llm = chat(server, caller)
    question = HumanMessage(QUESTION)
    message = llm.bind_tools([get_weather]).invoke([question])
    assert isinstance(message, AIMessage) and len(message.tool_calls) >= 1
    for call in message.tool_calls:
        check_weather_call(call)
    result = get_weather.invoke(message.tool_calls[0])  # a ToolMessage, as an agent loop makes it
    assert isinstance(result, ToolMessage) and result.tool_call_id == message.tool_calls[0]["id"]
    final = chat(server, MODEL).invoke([question, message, result])
    assert isinstance(final.content, str) and final.content.strip() and not final.tool_calls


def test_langchain_streamed_tool_calls_add_up_to_the_same_call(server: LiveServer, caller: str):
    bound = chat(server, caller).bind_tools([get_weather])
    chunks = list(bound.stream(QUESTION))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.tool_calls, [c.model_dump() for c in chunks]
    check_weather_call(merged.tool_calls[0])
    assert merged.tool_calls[0]["args"] == bound.invoke(QUESTION).tool_calls[0]["args"]  # greedy: the same call


def test_langchain_structured_output_by_function_calling(server: LiveServer, caller: str):
    structured = chat(server, caller).with_structured_output(Weather, method="function_calling", include_raw=True)
    out = structured.invoke("Report the weather in Paris: 14 degrees.")
    assert out["parsing_error"] is None, out["raw"]
    assert isinstance(out["parsed"], Weather)
    assert out["raw"].tool_calls[0]["name"] == "Weather"


def test_langchain_structured_output_by_json_schema(server: LiveServer):
    """`json_schema` sends the schema as Ollama's `format`: no tools, so the plain bundled model answers it."""
    structured = chat(server, MODEL).with_structured_output(Weather, method="json_schema", include_raw=True)
    out = structured.invoke("Report the weather in Paris: 14 degrees.")
    assert out["parsing_error"] is None, out["raw"]
    assert isinstance(out["parsed"], Weather)


def test_llama_index_predict_and_call_runs_the_function(server: LiveServer, caller: str):
    """`predict_and_call` sends the FunctionTool's schema, parses the call, and runs the Python function with its
    arguments: what the function received is what the model called it with, validated by its own schema."""
    received: list[dict] = []

    def weather(city: str, unit: str) -> str:
        """Current weather in a city; unit is celsius or fahrenheit."""
        received.append({"city": city, "unit": unit})
        return f"14 degrees {unit} and sunny in {city}"

    function_tool = FunctionTool.from_defaults(fn=weather)
    llm = LlamaIndexOllama(model=caller, base_url=server.url, request_timeout=120, temperature=0)
    response = llm.predict_and_call([function_tool], QUESTION)
    assert received, response
    jsonschema.validate(received[0], function_tool.metadata.get_parameters_dict())
    assert response.sources[0].tool_name == "weather"
    assert response.sources[0].raw_output == f"14 degrees {received[0]['unit']} and sunny in {received[0]['city']}"
    assert str(response) == response.sources[0].content
