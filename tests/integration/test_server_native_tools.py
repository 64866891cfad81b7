"""Native tool formats on a real `lokal serve`: the bundled SmolLM2 imported (through the official client's
`create_blob` + `create(files=...)`, as a user imports a GGUF) from copies whose `tokenizer.chat_template` is
replaced (gguf's own `copy_with_new_metadata`) by templates in the Hermes/Qwen, Llama 3.x and Mistral styles. The
templates below are written for these tests: they render tools, calls and results the way those families do.

A 135M model does not know these formats, so calls are asked for with tool_choice "required" (or the model's
`PARAMETER tool_choice`): the grammar then writes each call in the model's own syntax, which is what is checked
(the answer parses in that format, with arguments valid against the schema), along with what the template was
given (the tools, the history's calls and results, in the rendered prompt).
"""

from __future__ import annotations

import json
import re

import jsonschema
import ollama
import openai
import pytest
from gguf_copies import with_template
from server_fixture import LiveServer, serve
from weather_tool import WEATHER, WEATHER_PARAMS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HERMES_TEMPLATE = """\
{%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}

{% endif %}# Tools

You may call functions to answer. Their signatures are within <tools></tools> tags:
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>

For each call, write a JSON object with the function's name and arguments within <tool_call></tool_call> tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}
{%- for message in messages if message.role != 'system' %}
{%- if message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% elif message.role == 'assistant' %}<|im_start|>assistant
{{ message.content or '' }}
{%- for call in message.tool_calls or [] %}
<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>
{%- endfor %}<|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

LLAMA3_TEMPLATE = """\
{%- for message in messages %}
{%- if message.role == 'tool' %}<|start_header_id|>ipython<|end_header_id|>

{{ message.content }}<|im_end|>
{% elif message.tool_calls %}<|start_header_id|>assistant<|end_header_id|>

{"name": "{{ message.tool_calls[0].function.name }}", \
"parameters": {{ message.tool_calls[0].function.arguments | tojson }}}<|im_end|>
{% else %}<|start_header_id|>{{ message.role }}<|end_header_id|>

{% if tools and message is sameas (messages | selectattr('role', 'equalto', 'user') | first) %}\
Respond with a JSON for a function call, in the format \
{"name": function name, "parameters": dictionary of argument name and its value}. The functions:
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}
{% endif %}{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>

{% endif %}"""

MISTRAL_TEMPLATE = """\
{%- set last_user = messages | selectattr('role', 'equalto', 'user') | list | last %}
{%- for message in messages if message.role != 'system' %}
{%- if message.role == 'user' %}
{%- if tools and message is sameas last_user %}[AVAILABLE_TOOLS]{{ tools | tojson }}[/AVAILABLE_TOOLS]{% endif %}\
[INST]{{ message.content }}[/INST]
{%- elif message.tool_calls %}[TOOL_CALLS][
{%- for call in message.tool_calls %}
{%- if call.id is not string or call.id | length != 9 %}\
{{ raise_exception('Tool call ids must be 9 letters and digits') }}{% endif %}\
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}, "id": "{{ call.id }}"}\
{{ ", " if not loop.last }}
{%- endfor %}]<|im_end|>
{%- elif message.role == 'tool' %}
{%- if message.tool_call_id is not defined or message.tool_call_id | length != 9 %}\
{{ raise_exception('Tool results need the 9-character id of their call') }}{% endif %}\
[TOOL_RESULTS]{"content": {{ message.content | tojson }}, "call_id": "{{ message.tool_call_id }}"}[/TOOL_RESULTS]
{%- else %}{{ message.content }}<|im_end|>
{%- endif %}
{%- endfor %}"""

ASK = [{"role": "user", "content": "What is the weather like in Paris right now?"}]
HISTORY = [
    *ASK,
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 18, "sky": "clear"}'},
]
MAX_TOKENS = 640  # 8 calls (the limit) with the model's indentation: up to about 400 tokens
SEEDS = range(6)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, smollm2_model):
    base = tmp_path_factory.mktemp("native-tools")
    with serve(base / "server") as server:
        client = ollama.Client(host=server.url)
        templates = (("hermes", HERMES_TEMPLATE), ("llama3", LLAMA3_TEMPLATE), ("mistral", MISTRAL_TEMPLATE))
        for name, template in templates:
            path = with_template(smollm2_model.path, base / f"{name}.gguf", template)
            digest = client.create_blob(path)
            assert client.create(name, files={"model.gguf": digest}).status == "success"
            path.unlink()
        created = client.create("hermes-caller", from_="hermes", parameters={"tool_choice": "required"})
        assert created.status == "success"
        yield server


@pytest.fixture
def oai(live: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.v1, api_key="x", max_retries=0, timeout=120)


def test_show_reports_tools(live):
    assert "tools" in ollama.Client(host=live.url).show("hermes").capabilities


def rendered_prompt(live: LiveServer, model: str, messages, tools) -> str:
    """The prompt the server renders for a chat (its engine's render_chat, with the request bound as it is)."""
    from lokal.engine import tools as engine_tools

    engine, _ = live.manager.acquire(live.manager.store.resolve(model))
    try:
        return engine.render_chat(messages, engine_tools.request(tools, "auto"))
    finally:
        live.manager.release(engine)


@pytest.mark.parametrize("model", ["hermes", "llama3", "mistral"])
def test_the_template_renders_the_tools_and_the_history_natively(live, model):
    prompt = rendered_prompt(live, model, HISTORY, [WEATHER])
    assert "You can call these tools" not in prompt  # not the generic format's system turn
    assert '"name": "get_weather"' in prompt and "Current weather in a city" in prompt  # the tools, as given
    if model == "hermes":
        assert (
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>'
            in prompt
        )
        assert '<tool_response>\n{"temperature": 18, "sky": "clear"}\n</tool_response>' in prompt
    elif model == "llama3":
        assert '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}' in prompt
        assert '<|start_header_id|>ipython<|end_header_id|>\n\n{"temperature": 18' in prompt
    else:
        # The client's id "call_1" is not Mistral's: it is given one the template takes, the same for the result.
        (call_id,) = re.findall(r'"id": "([a-zA-Z0-9]{9})"', prompt)
        call = {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}, "id": call_id}
        assert f"[TOOL_CALLS][{json.dumps(call)}]" in prompt
        result = {"content": HISTORY[2]["content"], "call_id": call_id}
        assert f"[TOOL_RESULTS]{json.dumps(result)}[/TOOL_RESULTS]" in prompt


def openai_calls(oai: openai.OpenAI, model: str, seed: int, stream: bool) -> list[tuple[str, dict]]:
    params = {
        "model": model,
        "messages": ASK,
        "tools": [WEATHER],
        "tool_choice": "required",
        "temperature": 0.8,
        "seed": seed,
        "max_tokens": MAX_TOKENS,
        "parallel_tool_calls": model != "llama3",
    }
    if not stream:
        choice = oai.chat.completions.create(**params).choices[0]
        assert choice.finish_reason == "tool_calls", (seed, choice)
        return [(c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls]
    calls, finish, text = {}, None, ""
    for chunk in oai.chat.completions.create(**params, stream=True):
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for call in delta.tool_calls or []:
            calls[call.index] = (call.function.name, json.loads(call.function.arguments))
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls", (seed, finish, text)
    assert "<tool_call>" not in text and "[TOOL_CALLS]" not in text  # the call's syntax never leaks into the text
    return [calls[i] for i in sorted(calls)]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("model", ["hermes", "llama3", "mistral"])
def test_forced_calls_come_in_the_native_syntax_and_validate(oai, model, stream):
    for seed in SEEDS:
        calls = openai_calls(oai, model, seed, stream)
        assert calls and (model != "llama3" or len(calls) == 1)
        for name, arguments in calls:
            assert name == "get_weather"
            jsonschema.validate(arguments, WEATHER_PARAMS)


def test_the_raw_output_is_the_native_syntax(live):
    """What the model wrote, before parsing: generate with the rendered prompt and the bound tools."""
    from lokal.engine import tools as engine_tools
    from lokal.engine.options import Options

    engine, _ = live.manager.acquire(live.manager.store.resolve("hermes"))
    try:
        req = engine.bind_tools(engine_tools.request([WEATHER], "required"))
        text = engine.chat(ASK, Options.from_mapping({"temperature": 0, "num_predict": MAX_TOKENS}), tools=req).text()
    finally:
        live.manager.release(engine)
    assert text.startswith("<tool_call>") and text.rstrip().endswith("</tool_call>"), text


def test_the_official_ollama_client_gets_native_calls_with_the_models_tool_choice(live):
    client = ollama.Client(host=live.url)
    response = client.chat(
        "hermes-caller", messages=ASK, tools=[WEATHER], options={"temperature": 0, "num_predict": MAX_TOKENS}
    )
    (call,) = response.message.tool_calls[:1]
    assert call.function.name == "get_weather"
    jsonschema.validate(dict(call.function.arguments), WEATHER_PARAMS)
    # The result goes back as a tool turn; the next answer reads it (text: tool_choice none).
    follow = client.chat(
        "hermes",
        messages=[*ASK, response.message, {"role": "tool", "content": "18 degrees, clear", "tool_name": "get_weather"}],
        options={"temperature": 0, "num_predict": 24},
    )
    assert follow.message.content and not follow.message.tool_calls


def test_auto_lets_a_text_answer_stream_as_text(oai):
    chunks = list(
        oai.chat.completions.create(
            model="hermes",
            messages=[{"role": "user", "content": "Tell me about Paris in two sentences."}],
            tools=[WEATHER],
            temperature=0,
            max_tokens=24,
            stream=True,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text and chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert sum(1 for c in chunks if c.choices[0].delta.content) > 2, text  # streamed as it came, not at the end


def test_llama3_refuses_a_history_turn_with_two_calls(oai):
    call = HISTORY[1]["tool_calls"][0]
    two = [*ASK, {**HISTORY[1], "tool_calls": [call, {**call, "id": "call_2"}]}, HISTORY[2]]
    with pytest.raises(openai.BadRequestError, match="renders one call a turn"):
        oai.chat.completions.create(model="llama3", messages=two, tools=[WEATHER], max_tokens=8)


def test_mistral_calls_keep_the_ids_the_model_wrote_through_a_follow_up(live, oai):
    """The id in the answer is the one the model wrote (9 letters and digits, as its template takes back), and a
    follow-up that sends the call and its result with that id renders them with it, and is answered."""
    first = oai.chat.completions.create(
        model="mistral",
        messages=ASK,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,  # greedy, this model repeats the call until its token limit
        temperature=0,
        max_tokens=MAX_TOKENS,
    )
    (call,) = first.choices[0].message.tool_calls or [None]
    assert call is not None and re.fullmatch(r"[a-zA-Z0-9]{9}", call.id), first.choices[0]
    messages = [
        *ASK,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees, clear"},
    ]
    prompt = rendered_prompt(live, "mistral", messages, [WEATHER])
    assert f'"id": "{call.id}"}}]' in prompt and f'"call_id": "{call.id}"}}[/TOOL_RESULTS]' in prompt
    follow = oai.chat.completions.create(
        model="mistral", messages=messages, tools=[WEATHER], tool_choice="none", temperature=0, max_tokens=16
    )
    assert follow.choices[0].finish_reason in ("stop", "length") and not follow.choices[0].message.tool_calls
