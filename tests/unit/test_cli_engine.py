"""`--engine` on run, chat, embed, serve, audit and bench, and `lokal embed`, through `lokal.cli.main` on fake
engines: the value reaches the settings before anything is built, a bad one is click's usage error, and a
command given --engine never hands its request to a server."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fakes import FakeFactory, FakeStore, make_model

from lokal.cli import Context, main
from lokal.cli._engine import EngineType
from lokal.cli.embed import read_texts, vector_line
from lokal.cli.remote import RemoteServer
from lokal.config import Settings
from lokal.engine.manager import EngineManager
from lokal.errors import LokalError
from lokal.store.engine_choice import engine_for


class EngineFactory(FakeFactory):
    """Builds the fake engine the settings ask for, as the real default factory does, and remembers with which."""

    def __call__(self, model: Any, num_ctx: int, settings: Any) -> Any:
        engine = super().__call__(model, num_ctx, settings)
        engine.runtime = engine_for(model, settings.engine)
        return engine


class FakeRemote:
    """A server at OLLAMA_HOST that answers every call and records it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.loaded: list[dict[str, Any]] = []

    def stream(self, path: str, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        self.calls.append((path, payload))
        yield {"message": {"role": "assistant", "content": "from the server"}, "done": False}
        yield {"done": True, "done_reason": "stop"}

    def post(self, path: str, payload: dict[str, Any]) -> Any:
        self.calls.append((path, payload))
        return {"model": "fake:latest", "embeddings": [[0.5, -0.25, 0.125, 1.0, 2.0]] * len(payload["input"])}

    def get(self, path: str) -> Any:
        self.calls.append((path, {}))
        return {"models": self.loaded}

    def close(self) -> None:
        pass


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[EngineFactory, FakeRemote]]:
    """The commands' store and manager are fakes, a server answers at OLLAMA_HOST, and the hf extra counts as
    installed (so these tests also run where it is not)."""
    factory = EngineFactory(pieces=("Hello", ",", " world"))
    store = FakeStore([make_model("fake:latest")])
    remote = FakeRemote()
    monkeypatch.setattr("lokal.store.ModelStore", lambda settings: store)
    monkeypatch.setattr(
        "lokal.engine.manager.EngineManager", lambda settings, st: EngineManager(settings, st, factory=factory)
    )
    monkeypatch.setattr(RemoteServer, "find", staticmethod(lambda settings: remote))
    monkeypatch.setattr("lokal.engine_specs.missing_packages", lambda engine: [])
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    yield factory, remote


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- the option -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "fake", "--engine", "vllm", "hi"],
        ["chat", "fake", "--engine", "vllm"],
        ["embed", "fake", "--engine", "vllm", "hi"],
        ["serve", "--engine", "vllm"],
        ["audit", "fake", "--engine", "vllm"],
        ["bench", "fake", "--engine", "vllm"],
    ],
)
def test_an_unknown_engine_is_a_usage_error_naming_the_choices(argv: list[str], capsys) -> None:
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert f"Usage: lokal {argv[0]}" in err
    assert "Invalid value for '--engine': unknown engine 'vllm': choose one of llamacpp, transformers" in err


def test_engine_type_takes_what_lokal_engine_takes() -> None:
    one, several = EngineType(), EngineType(several=True)
    assert one.convert("HF", None, None) == "transformers" and one.convert("llama.cpp", None, None) == "llamacpp"
    assert several.convert("llamacpp, hf,llamacpp", None, None) == ("llamacpp", "transformers")
    assert [c.value for c in one.shell_complete(None, None, "tr")] == ["transformers"]  # type: ignore[arg-type]
    assert [c.value for c in several.shell_complete(None, None, "llamacpp,t")] == [  # type: ignore[arg-type]
        "llamacpp,transformers"
    ]


def test_transformers_without_the_hf_extra_is_one_line_before_anything_runs(cli, capsys, monkeypatch) -> None:
    factory, remote = cli
    monkeypatch.setattr(
        "lokal.engine_specs.missing_packages",
        lambda engine: ["torch", "transformers"] if engine == "transformers" else [],
    )
    code, out, err = run_cli(capsys, "run", "fake", "--engine", "transformers", "hi")
    assert code == 1 and out == ""
    assert err.startswith("Error: --engine transformers needs torch, transformers, which are not installed: ")
    assert "pip install 'lokal[hf]'" in err and err.count("\n") == 1
    assert factory.calls == [] and remote.calls == []


def test_use_engine_sets_the_settings_and_never_probes_a_server(monkeypatch) -> None:
    monkeypatch.setattr(RemoteServer, "find", staticmethod(lambda settings: pytest.fail("probed a server")))
    state = Context(Settings.from_env())
    state.use_engine("transformers")
    assert state.settings.engine == "transformers" and state.remote is None


def test_use_engine_after_the_manager_is_built_is_a_programming_error(cli) -> None:
    state = Context(Settings.from_env())
    assert state.store is not None
    with pytest.raises(RuntimeError, match="before the store or the engine manager"):
        state.use_engine("llamacpp")


# -- run and chat -----------------------------------------------------------------------------------------------------


def test_run_with_engine_runs_in_process_even_when_a_server_answers(cli, capsys) -> None:
    factory, remote = cli
    code, out, err = run_cli(capsys, "run", "fake", "--engine", "transformers", "hello")
    assert code == 0, err
    assert out == "Hello, world\n"
    assert [e.runtime for e in factory.engines] == ["transformers"] and remote.calls == []


def test_run_without_engine_still_goes_to_the_server(cli, capsys) -> None:
    factory, remote = cli
    code, out, _ = run_cli(capsys, "run", "fake", "hello")
    assert code == 0 and out == "from the server\n"
    assert [path for path, _ in remote.calls] == ["/api/chat"] and factory.calls == []


def test_chat_with_engine_loads_in_process(cli, capsys, monkeypatch) -> None:
    factory, remote = cli

    def leave(prompt: str) -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", leave)
    code, _, err = run_cli(capsys, "chat", "fake", "--engine", "llamacpp")
    assert code == 0, err
    assert "Chatting with fake:latest" in err
    assert [e.runtime for e in factory.engines] == ["llamacpp"] and remote.calls == []


# -- embed ------------------------------------------------------------------------------------------------------------


def test_embed_prints_one_line_per_text(cli, capsys) -> None:
    factory, remote = cli
    code, out, err = run_cli(capsys, "embed", "fake", "--engine", "llamacpp", "hello world", "a")
    assert code == 0, err
    # The fake engine embeds every text as [1.0, 0.0].
    assert out.splitlines() == ["2 dims  [1.0000, 0.0000]  hello world", "2 dims  [1.0000, 0.0000]  a"]
    assert remote.calls == [] and len(factory.calls) == 1


def test_embed_json_is_ollamas_api_embed_answer(cli, capsys) -> None:
    code, out, err = run_cli(capsys, "embed", "fake", "--engine", "llamacpp", "--json", "hello world", "a")
    assert code == 0, err
    answer = json.loads(out)
    assert set(answer) == {"model", "embeddings", "total_duration", "load_duration", "prompt_eval_count"}
    assert answer["model"] == "fake:latest" and answer["embeddings"] == [[1.0, 0.0], [1.0, 0.0]]
    # The fake tokeniser: BOS + one token per word -> 3 for "hello world", 2 for "a".
    assert answer["prompt_eval_count"] == 5


def test_embed_without_engine_asks_the_server(cli, capsys) -> None:
    factory, remote = cli
    code, out, _ = run_cli(capsys, "embed", "fake", "--keep-alive", "0", "hello")
    assert code == 0
    assert remote.calls == [("/api/embed", {"model": "fake", "input": ["hello"], "keep_alive": "0"})]
    assert out == "5 dims  [0.5000, -0.2500, 0.1250, 1.0000, ...]  hello\n" and factory.calls == []


def test_embed_reads_one_text_per_line_from_a_pipe(cli, capsys, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("first line\n\n  second  \n"))
    code, out, _ = run_cli(capsys, "embed", "fake", "--engine", "llamacpp")
    assert code == 0
    assert [line.split("  ")[-1] for line in out.splitlines()] == ["first line", "second"]


def test_embed_with_nothing_to_embed_is_a_usage_error(cli, capsys) -> None:
    code, _, err = run_cli(capsys, "embed", "fake", "--engine", "llamacpp")
    assert code == 2 and "nothing to embed" in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_read_texts() -> None:
    assert read_texts(("a", "-", "b"), io.StringIO("x\n\ny\n")) == ["a", "x", "y", "b"]
    assert read_texts((), io.StringIO("x\n")) == ["x"]  # a pipe and no argument
    assert read_texts((), _Terminal("never read\n")) == []  # a terminal is not read without "-"
    assert read_texts(("-",), _Terminal("typed\n")) == ["typed"]


def test_vector_line_shortens_long_vectors_and_texts() -> None:
    assert vector_line([0.5, -1.0], "hi") == "2 dims  [0.5000, -1.0000]  hi"
    text = "x" * 60
    line = vector_line([0.0] * 384, text)
    assert line == "384 dims  [0.0000, 0.0000, 0.0000, 0.0000, ...]  " + "x" * 45 + "..."


# -- serve, audit -----------------------------------------------------------------------------------------------------


def test_serve_engine_is_the_servers_default(cli, capsys, monkeypatch) -> None:
    seen: dict[str, Any] = {}

    class App:
        version = "0.0.0"

    def create_app(settings: Settings, preload: tuple[str, ...] = ()) -> App:
        seen["settings"] = settings
        return App()

    monkeypatch.setattr("lokal.server.app.create_app", create_app)
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: seen.setdefault("ran", kwargs))
    code, _, err = run_cli(capsys, "serve", "--engine", "transformers", "--parallel", "2")
    assert code == 0, err
    assert seen["settings"].engine == "transformers" and seen["settings"].num_parallel == 2
    assert "engine: transformers" in err and "ran" in seen


def test_audit_engine_reaches_the_scorers_settings(cli, capsys, monkeypatch) -> None:
    seen: dict[str, Any] = {}

    def open_scorer(model: str, **kwargs: Any) -> Any:
        seen.update(kwargs, model=model)
        raise LokalError("stopped here")

    monkeypatch.setattr("lokal.audit.scorers.open_scorer", open_scorer)
    code, _, err = run_cli(capsys, "audit", "fake", "--engine", "transformers")
    assert code == 1 and "stopped here" in err
    assert seen["model"] == "fake" and seen["settings"].engine == "transformers" and seen["url"] is None


def test_audit_engine_with_a_url_is_a_usage_error(cli, capsys) -> None:
    code, _, err = run_cli(capsys, "audit", "fake", "--engine", "llamacpp", "--url", "http://127.0.0.1:9")
    assert code == 2 and "a server at --url audits on the engine it was started with" in err


def test_ps_shows_the_engine_when_the_server_names_it(cli, capsys) -> None:
    _, remote = cli
    remote.loaded = [
        {"name": "smollm2:135m", "digest": "ab" * 32, "size": 98_000_000, "context_length": 4096}
        | {"expires_at": "2999-01-01T00:00:00Z"}
    ]
    code, out, _ = run_cli(capsys, "ps")  # Ollama's answer: no engine, no column
    assert code == 0 and out.splitlines()[0].split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    remote.loaded[0]["engine"] = "transformers"
    code, out, _ = run_cli(capsys, "ps")
    header, line = out.splitlines()
    assert header.split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "ENGINE", "UNTIL"]
    assert line.split()[:8] == ["smollm2:135m", "ab" * 6, "98", "MB", "100%", "CPU", "4096", "transformers"]
