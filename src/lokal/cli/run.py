"""`lokal run` and `lokal chat`: talk to a model in the terminal, in process, or through the server at OLLAMA_HOST
when one answers (it reuses the model it has loaded). `--engine` always runs in process: a server runs the
engine it was started with."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

import click

from lokal import inference
from lokal.cli._engine import IN_PROCESS_HELP, engine_option
from lokal.engine import answer
from lokal.engine.base import Completion
from lokal.errors import Cancelled, InvalidOptions, NoChatTemplate

_OPTION_FLAGS: list[tuple[str, str, type, str]] = [
    ("--temperature", "temperature", float, "Sampling temperature; 0 is greedy and deterministic."),
    ("--seed", "seed", int, "Random seed: the same seed and options give the same text."),
    (
        "--num-predict",
        "num_predict",
        int,
        "Maximum tokens to generate (-1: until done or the context is full).",
    ),
    ("--num-ctx", "num_ctx", int, "Context window per sequence, in tokens."),
    ("--top-k", "top_k", int, "Sample from the k most likely tokens."),
    ("--top-p", "top_p", float, "Sample from the smallest set of tokens whose probability reaches p."),
    ("--min-p", "min_p", float, "Drop tokens less likely than min-p times the most likely one."),
    ("--repeat-penalty", "repeat_penalty", float, "Penalty for repeating recent tokens (1.0: off)."),
]


def generation_options(func: Any) -> Any:
    """Shared flags of `run` and `chat`."""
    for flag, dest, kind, help_text in reversed(_OPTION_FLAGS):
        func = click.option(flag, dest, type=kind, default=None, help=help_text)(func)
    func = click.option("--stop", "stop", multiple=True, help="Stop when this text appears (repeatable).")(func)
    func = click.option(
        "--format",
        "format_",
        default=None,
        metavar="json|SCHEMA.json",
        help="Constrain the answer to JSON, or to the JSON schema in a file.",
    )(func)
    func = engine_option(help=IN_PROCESS_HELP)(func)
    func = click.option(
        "--think",
        "think",
        default=None,
        metavar="true|false|low|medium|high|max",
        help="A thinking model's reasoning: on (a level), or false for none; unset: it thinks.",
    )(func)
    func = click.option(
        "--hide-thinking", is_flag=True, help="Print only the answer, not a thinking model's reasoning."
    )(func)
    func = click.option("--system", default=None, help="System prompt.")(func)
    func = click.option(
        "--keep-alive", default=None, help="How long to keep the model loaded afterwards (e.g. 5m, 0)."
    )(func)
    return click.option("--verbose", is_flag=True, help="Print timings and token rates after each answer.")(func)


def _collect_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    options = {dest: kwargs.pop(dest) for _, dest, _, _ in _OPTION_FLAGS if kwargs.get(dest) is not None}
    for _, dest, _, _ in _OPTION_FLAGS:
        kwargs.pop(dest, None)
    stops = kwargs.pop("stop", ())
    if stops:
        options["stop"] = list(stops)
    return options


def _parse_format(value: str | None) -> Any:
    if value is None or value == "":
        return None
    if value == "json":
        return "json"
    path = Path(value)
    if not path.is_file():
        raise InvalidOptions(f"--format must be 'json' or a JSON schema file; '{value}' is neither")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidOptions(f"--format file '{value}' is not valid JSON: {exc}") from None


def _think_value(raw: str | None) -> bool | str | None:
    """`--think`: true / false, or a level (checked where the request starts, lokal.engine.thinking)."""
    if raw is None:
        return None
    lowered = raw.lower()
    return {"true": True, "false": False}.get(lowered, lowered)


class _Printer:
    """Prints an answer as it streams: a thinking model's reasoning dimmed, between "Thinking..." and "...done
    thinking." (as Ollama's CLI shows it; hidden with --hide-thinking), then the answer."""

    def __init__(self, *, hide_thinking: bool) -> None:
        self.hide = hide_thinking
        self.thinking = False
        self.shown = False  # the answer has begun
        self.text: list[str] = []

    def reasoning(self, piece: str) -> None:
        if not piece or self.hide:
            return
        if not self.thinking:
            click.secho("Thinking...", dim=True)
            self.thinking = True
        click.secho(piece, nl=False, dim=True)

    def answer(self, piece: str) -> None:
        if not piece:
            return
        self.close_thinking()
        self.text.append(piece)
        click.echo(piece, nl=False)

    def close_thinking(self) -> None:
        if self.thinking:
            click.secho("\n...done thinking.\n", dim=True)
            self.thinking = False

    def end(self) -> str:
        self.close_thinking()
        text = "".join(self.text)
        if text and not text.endswith("\n"):
            click.echo()
        return text


def _stream_to_terminal(run: inference.Run, *, hide_thinking: bool = False) -> tuple[str, Completion | None]:
    """Print pieces as they come; Ctrl-C stops this answer (and frees its slot) without a traceback. Returns
    the answer's text (without a thinking model's reasoning: what the conversation keeps)."""
    printer = _Printer(hide_thinking=hide_thinking)
    watcher = answer.AnswerWatcher(None, run.thinking)
    try:
        for piece in run.stream:
            reasoning, text = watcher.feed(piece)
            printer.reasoning(reasoning)
            printer.answer(text)
        reasoning, text, _ = watcher.finish()
        printer.reasoning(reasoning)
        printer.answer(text)
        completion = run.completion()
    except KeyboardInterrupt:
        run.cancel()
        click.echo("\n(interrupted)", err=True)
        return "".join(printer.text), None
    except Cancelled:
        return "".join(printer.text), None
    finally:
        run.release()
    return printer.end(), completion


def _print_stats(c: Completion) -> None:
    def rate(count: int, ns: int) -> str:
        return f"{count / (ns / 1e9):.2f} tokens/s" if ns > 0 else "n/a"

    lines = [
        ("total duration", f"{c.total_duration / 1e6:.1f} ms"),
        ("load duration", f"{c.load_duration / 1e6:.1f} ms"),
        ("prompt eval count", f"{c.prompt_eval_count} token(s)"),
        ("prompt eval duration", f"{c.prompt_eval_duration / 1e6:.1f} ms"),
        ("prompt eval rate", rate(c.prompt_eval_count, c.prompt_eval_duration)),
        ("eval count", f"{c.eval_count} token(s)"),
        ("eval duration", f"{c.eval_duration / 1e6:.1f} ms"),
        ("eval rate", rate(c.eval_count, c.eval_duration)),
        ("done reason", c.done_reason),
    ]
    for name, value in lines:
        click.echo(f"{name + ':':<22}{value}", err=True)


def _answer_remote(
    remote: Any, model: str, messages: list[dict[str, Any]], opts: dict[str, Any], **kw: Any
) -> str | None:
    """The same as `_answer`, through a running server (which reuses the model it has loaded)."""
    from lokal.cli.remote import RemoteError

    payload: dict[str, Any] = {"model": model, "messages": messages, "options": opts}
    if kw["format"] is not None:
        payload["format"] = kw["format"]
    if kw["think"] is not None:
        payload["think"] = kw["think"]
    if kw["keep_alive"] is not None:
        payload["keep_alive"] = kw["keep_alive"]
    chunks = remote.stream("/api/chat", payload)
    key = "message"
    try:
        first = next(chunks)
    except RemoteError as exc:
        if exc.status_code != 400 or "chat template" not in str(exc):
            raise
        # A base model: complete the last user message as plain text, as in process.
        payload = {k: v for k, v in payload.items() if k != "messages"}
        chunks = remote.stream("/api/generate", {**payload, "prompt": messages[-1]["content"], "raw": True})
        first, key = next(chunks), "response"
    printer = _Printer(hide_thinking=kw["hide_thinking"])
    final: dict[str, Any] | None = None
    try:
        for chunk in itertools.chain([first], chunks):
            if chunk.get("done"):
                final = chunk
                break
            body = chunk[key] if key == "message" else chunk
            printer.reasoning(body.get("thinking") or "")
            printer.answer(body["content"] if key == "message" else body["response"])
    except KeyboardInterrupt:
        chunks.close()  # closing the connection cancels the request on the server
        click.echo("\n(interrupted)", err=True)
        return None
    text = printer.end()
    if final is not None and kw["verbose"]:

        def number(field: str) -> int:
            return int(final.get(field, 0))

        _print_stats(
            Completion(
                text=text,
                done_reason=final.get("done_reason", "stop"),
                prompt_eval_count=number("prompt_eval_count"),
                prompt_eval_duration=number("prompt_eval_duration"),
                eval_count=number("eval_count"),
                eval_duration=number("eval_duration"),
                total_duration=number("total_duration"),
                load_duration=number("load_duration"),
                prompt_cache_count=number("prompt_cache_count"),
            )
        )
    return text


def _answer(state: Any, model: str, messages: list[dict[str, Any]], opts: dict[str, Any], **kw: Any) -> str | None:
    if state.remote is not None:
        return _answer_remote(state.remote, model, messages, opts, **kw)
    manager = state.manager
    try:
        run = inference.start_chat(
            manager,
            model,
            messages,
            options=opts,
            format=kw["format"],
            keep_alive=kw["keep_alive"],
            think=kw["think"],
        )
    except NoChatTemplate:
        # A base model has no chat template: complete the last user message as plain text.
        run = inference.start_generate(
            manager,
            model,
            messages[-1]["content"],
            raw=True,
            options=opts,
            format=kw["format"],
            keep_alive=kw["keep_alive"],
        )
    text, completion = _stream_to_terminal(run, hide_thinking=kw["hide_thinking"])
    if completion is not None and kw["verbose"]:
        _print_stats(completion)
    return text if completion is not None else None


@click.command("run")
@click.argument("model")
@click.argument("prompt", nargs=-1)
@generation_options
@click.pass_obj
def run_cmd(state: Any, model: str, prompt: tuple[str, ...], **kwargs: Any) -> None:
    """Answer PROMPT with MODEL, streaming to the terminal; with no prompt, start a chat.

    \b
    Examples:
      lokal run smollm2 "Explain machine learning in simple terms"
      lokal run smollm2 --temperature 0 --num-predict 64 "Write a haiku about rain"
      echo "Summarise: ..." | lokal run smollm2
      lokal run smollm2 --format json "List three colours as JSON"
      lokal run smollm2 --engine transformers "Hello"    # the same weights on Hugging Face transformers

    When a lokal or Ollama server answers at OLLAMA_HOST the request goes to it, unless --engine is given.
    """
    opts = _collect_options(kwargs)
    kw = {
        "format": _parse_format(kwargs["format_"]),
        "keep_alive": kwargs["keep_alive"],
        "verbose": kwargs["verbose"],
        "think": _think_value(kwargs["think"]),
        "hide_thinking": kwargs["hide_thinking"],
    }
    text = " ".join(prompt)
    if not text and not sys.stdin.isatty():
        text = sys.stdin.read().strip()
    if not text:
        _repl(state, model, opts, system=kwargs["system"], **kw)
        return
    messages = [{"role": "system", "content": kwargs["system"]}] if kwargs["system"] else []
    messages.append({"role": "user", "content": text})
    _answer(state, model, messages, opts, **kw)


@click.command("chat")
@click.argument("model", default="smollm2")
@generation_options
@click.pass_obj
def chat_cmd(state: Any, model: str, **kwargs: Any) -> None:
    """Chat with MODEL in the terminal, keeping the conversation (default model: smollm2).

    Type /? for commands, /bye or Ctrl-D to leave; Ctrl-C stops the current answer. With --engine the
    model runs in this process, even when a server answers at OLLAMA_HOST.
    """
    opts = _collect_options(kwargs)
    kw = {
        "format": _parse_format(kwargs["format_"]),
        "keep_alive": kwargs["keep_alive"],
        "verbose": kwargs["verbose"],
        "think": _think_value(kwargs["think"]),
        "hide_thinking": kwargs["hide_thinking"],
    }
    _repl(state, model, opts, system=kwargs["system"], **kw)


_HELP = """Commands:
  /clear          forget the conversation so far
  /system TEXT    set the system prompt (and start over)
  /bye            leave (Ctrl-D works too)
  /?              this help"""


def _repl(state: Any, model: str, opts: dict[str, Any], *, system: str | None, **kw: Any) -> None:
    # Load now, so an unknown model fails before the first prompt and the first answer starts at once.
    if state.remote is not None:
        loaded = state.remote.post("/api/chat", {"model": model, "messages": [], "stream": False, "options": opts})
        name = loaded["model"]
    else:
        name = state.store.resolve(model).name
        inference.load(state.manager, name, options=opts, keep_alive=kw["keep_alive"])
    resolved_name = name
    history: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    click.echo(f"Chatting with {resolved_name}. Type /? for help, /bye to leave.", err=True)
    while True:
        try:
            line = input(">>> ")
        except EOFError:
            click.echo()
            return
        except KeyboardInterrupt:
            click.echo("\n(use /bye or Ctrl-D to leave)", err=True)
            continue
        text = line.strip()
        if not text:
            continue
        if text in ("/bye", "/exit", "/quit"):
            return
        if text in ("/?", "/help"):
            click.echo(_HELP)
            continue
        if text == "/clear":
            history = [m for m in history if m["role"] == "system"]
            click.echo("Cleared the conversation.", err=True)
            continue
        if text.startswith("/system"):
            system = text.removeprefix("/system").strip() or None
            history = [{"role": "system", "content": system}] if system else []
            click.echo("Set the system prompt." if system else "Cleared the system prompt.", err=True)
            continue
        if text.startswith("/"):
            click.echo(f"Unknown command '{text.split()[0]}'. Type /? for help.", err=True)
            continue
        history.append({"role": "user", "content": text})
        answer = _answer(state, resolved_name, history, opts, **kw)
        if answer is None:
            history.pop()  # interrupted: forget the unanswered question
        else:
            history.append({"role": "assistant", "content": answer})
        click.echo()


COMMANDS = [run_cmd, chat_cmd]
