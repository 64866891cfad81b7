"""Thinking on a real `lokal serve`: the bundled SmolLM2 imported (official client's `create_blob` +
`create(files=...)`) from a copy whose chat template has a reasoning section in the Qwen 3 style (written for
this test: `enable_thinking` off renders an empty `<think></think>`, on leaves the prompt inside `<think>`).

A 135M model never closes a reasoning section it was not trained for, so its whole answer is reasoning: what is
checked is that the reasoning reaches clients apart from the text, in each API's shape, and that it is exactly
what the model wrote (the same prompt sent raw gives the same text), and that a grammar after the reasoning (a
forced tool call, a JSON format) is one llama.cpp takes.
"""

from __future__ import annotations

import ollama
import openai
import pytest
from gguf_copies import with_template
from server_fixture import MODEL, LiveServer, serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]

THINKING_TEMPLATE = """\
{%- for message in messages %}
{%- if message.role == 'assistant' %}<|im_start|>assistant
{% if message.reasoning_content and loop.last %}<think>
{{ message.reasoning_content }}
</think>

{% endif %}{{ message.content }}<|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% if enable_thinking is defined and not enable_thinking %}<think>

</think>

{% else %}<think>
{% endif %}{% endif %}"""

ASK = [{"role": "user", "content": "What is the capital of France?"}]
OPTIONS = {"temperature": 0, "num_predict": 24}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, smollm2_model):
    base = tmp_path_factory.mktemp("thinking")
    with serve(base / "server") as server:
        client = ollama.Client(host=server.url)
        path = with_template(smollm2_model.path, base / "thinker.gguf", THINKING_TEMPLATE)
        assert client.create("thinker", files={"model.gguf": client.create_blob(path)}).status == "success"
        path.unlink()
        yield server


@pytest.fixture
def client(live: LiveServer) -> ollama.Client:
    return ollama.Client(host=live.url)


def rendered(live: LiveServer, messages, think) -> str:
    engine, _ = live.manager.acquire(live.manager.store.resolve("thinker"))
    try:
        return engine.render_chat(messages, None, think)
    finally:
        live.manager.release(engine)


def test_show_lists_thinking_only_for_the_model_that_thinks(client):
    assert "thinking" in client.show("thinker").capabilities
    assert "thinking" not in client.show(MODEL).capabilities


def test_the_template_is_told_whether_to_think(live):
    assert rendered(live, ASK, "medium").endswith("<|im_start|>assistant\n<think>\n")
    assert rendered(live, ASK, None).endswith("<think>\n\n</think>\n\n")
    # An earlier turn's reasoning (Ollama's `thinking`) reaches the template as reasoning_content.
    history = [*ASK, {"role": "assistant", "content": "Paris.", "thinking": "Easy one."}]
    assert "<think>\nEasy one.\n</think>\n\nParis.<|im_end|>" in rendered(live, history, "medium")


def test_the_reasoning_is_what_the_model_wrote_apart_from_the_text(live, client):
    reply = client.chat("thinker", messages=ASK, think=True, options=OPTIONS)
    assert reply.message.thinking and reply.message.content == ""  # never closed: all of it is reasoning
    raw = client.generate("thinker", prompt=rendered(live, ASK, "medium"), raw=True, options=OPTIONS)
    assert reply.message.thinking == raw.response.lstrip()  # whitespace after the open tag is eaten


def test_streamed_reasoning_comes_in_the_thinking_field_as_ollama_streams_it(client):
    chunks = list(client.chat("thinker", messages=ASK, think="high", options=OPTIONS, stream=True))
    thinking = [c.message.thinking for c in chunks if c.message.thinking]
    assert len(thinking) > 2  # streamed as it came, not at the end
    assert all(c.message.content == "" for c in chunks)
    whole = client.chat("thinker", messages=ASK, think="high", options=OPTIONS)
    assert "".join(thinking) == whole.message.thinking


def test_think_false_gives_the_plain_answer(client):
    reply = client.chat("thinker", messages=ASK, think=False, options=OPTIONS)
    assert reply.message.content and not reply.message.thinking


def test_generate_splits_the_reasoning_too(client):
    reply = client.generate("thinker", prompt="What is the capital of France?", think=True, options=OPTIONS)
    assert reply.thinking and reply.response == ""


def test_a_model_that_cannot_think_says_so(client):
    with pytest.raises(ollama.ResponseError, match=f"model '{MODEL}' does not support thinking") as caught:
        client.chat(MODEL, messages=ASK, think=True)
    assert caught.value.status_code == 400


def test_openai_gives_reasoning_content(live):
    oai = openai.OpenAI(base_url=live.v1, api_key="x", max_retries=0, timeout=120)
    reply = oai.chat.completions.create(
        model="thinker", messages=ASK, reasoning_effort="low", temperature=0, max_tokens=24
    )
    message = reply.choices[0].message
    assert message.model_extra["reasoning_content"] and not message.content
    streamed = oai.chat.completions.create(
        model="thinker", messages=ASK, reasoning_effort="low", temperature=0, max_tokens=24, stream=True
    )
    parts = [(c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in streamed if c.choices]
    assert "".join(parts) == message.model_extra["reasoning_content"]
    plain = oai.chat.completions.create(
        model="thinker", messages=ASK, reasoning_effort="none", temperature=0, max_tokens=24
    )
    assert plain.choices[0].message.content and "reasoning_content" not in (plain.choices[0].message.model_extra or {})


@pytest.mark.parametrize(
    "extra",
    [
        {"format": "json"},
        {"format": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "capital",
                        "parameters": {"type": "object", "properties": {"country": {"type": "string"}}},
                    },
                }
            ],
            "tool_choice": "required",
        },
        {"tools": [{"type": "function", "function": {"name": "capital", "parameters": {"type": "object"}}}]},
    ],
    ids=["json", "schema", "forced-call", "lazy-call"],
)
def test_a_grammar_after_the_reasoning_is_one_llama_cpp_takes(live, extra):
    """The grammar that lets the reasoning through before a format or a forced call, and the lazy trigger that
    waits for it to end: llama.cpp takes them and samples under them (an invalid grammar or pattern fails the
    request), and the reasoning still comes apart."""
    import httpx

    body = {"model": "thinker", "messages": ASK, "think": True, "stream": False, "options": OPTIONS, **extra}
    reply = httpx.post(f"{live.url}/api/chat", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    message = reply.json()["message"]
    assert message.get("thinking") and "</think>" not in message["thinking"]


def test_responses_give_the_reasoning_as_a_reasoning_item(live):
    oai = openai.OpenAI(base_url=live.v1, api_key="x", max_retries=0, timeout=120)
    response = oai.responses.create(
        model="thinker",
        input="What is the capital of France?",
        reasoning={"effort": "low"},
        include=["reasoning.encrypted_content"],
        temperature=0,
        max_output_tokens=24,
    )
    reasoning = response.output[0]
    assert reasoning.type == "reasoning" and reasoning.summary[0].text
    assert reasoning.encrypted_content == reasoning.summary[0].text  # plain text, as Ollama gives it
    events = list(
        oai.responses.create(
            model="thinker",
            input="What is the capital of France?",
            reasoning={"effort": "low"},
            temperature=0,
            max_output_tokens=24,
            stream=True,
        )
    )
    deltas = [e.delta for e in events if e.type == "response.reasoning_summary_text.delta"]
    assert "".join(deltas) == reasoning.summary[0].text
