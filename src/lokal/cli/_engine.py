"""`--engine`: the one option every command that runs a model shares (run, chat, embed, serve, audit, bench).

The value is checked with `lokal.engine_specs.parse_engine`, so the CLI accepts exactly what LOKAL_ENGINE
accepts (also 'llama.cpp' and 'hf'); anything else is click's usage error naming the choices (exit code 2).
For one engine the option replaces the command's settings with `settings.engine` set, before the store or
the engine manager are first built (they read the settings once); asking for transformers without the `hf`
extra installed is a one-line error at once, not at the first request. `lokal bench` takes a comma-separated list
instead and runs the engines one after the other (`engines_option`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from click.shell_completion import CompletionItem

from lokal import engine_specs
from lokal.engine_specs import ENGINE_SPECS, ENGINES, parse_engine, parse_engines
from lokal.errors import EngineUnavailable, InvalidOptions

ENGINE_HELP = (
    "Run the model on this engine: llamacpp (GGUF files, the default) or transformers (Hugging Face, needs "
    "pip install 'lokal[hf]'). Overrides LOKAL_ENGINE and the engine a model's entry remembers."
)

#: For commands that would otherwise hand the request to a running server (run, chat, embed).
IN_PROCESS_HELP = (
    ENGINE_HELP + " With --engine the model runs in this process, never through a server at OLLAMA_HOST "
    "(a server runs the engine it was started with)."
)


class EngineType(click.ParamType):
    """An engine name, or with `several` a comma-separated list of them (in order, no repeats)."""

    name = "engine"

    def __init__(self, *, several: bool = False) -> None:
        self.several = several

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "ENGINE[,ENGINE]" if self.several else f"[{'|'.join(ENGINES)}]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):  # already converted (a default, or a second pass)
            return value
        try:
            return tuple(parse_engines(value)) if self.several else parse_engine(value)
        except InvalidOptions as exc:
            self.fail(str(exc), param, ctx)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        head, _, last = incomplete.rpartition(",") if self.several else ("", "", incomplete)
        prefix = f"{head}," if head else ""
        return [CompletionItem(prefix + e) for e in ENGINES if e.startswith(last.lower())]


def _use_engine(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    engine = parse_engine(value)  # already parsed by EngineType; this narrows the type
    if missing := engine_specs.missing_packages(engine):
        # Now, not at the first request: `lokal serve --engine transformers` would start and fail every call.
        raise EngineUnavailable(
            f"--engine {engine} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            f"not installed: {ENGINE_SPECS[engine].install_hint}"
        )
    ctx.obj.use_engine(engine)
    return engine


def engine_option(*, help: str = ENGINE_HELP) -> Callable[[Any], Any]:
    """`--engine llamacpp|transformers`; sets `settings.engine` on the command's state as it is parsed.
    The value is also passed to the command as `engine` (None when not given)."""
    return click.option(
        "--engine",
        "engine",
        type=EngineType(),
        default=None,
        callback=_use_engine,
        help=help,
    )


def engines_option(*, help: str) -> Callable[[Any], Any]:
    """`--engine a[,b]` for `lokal bench`: a tuple of engines (empty when not given); the settings are left
    alone, since each engine gets its own run."""
    return click.option("--engine", "engines", type=EngineType(several=True), default=None, help=help)


def refuse_engine_with_url(engine: object, url: str | None, *, does: str) -> None:
    """`--engine` with `--url` is a usage error (exit 2): the engine runs in this process, and a server at --url
    `does` (e.g. "runs", "audits on") the engine it was started with."""
    if engine and url is not None:
        raise click.UsageError(
            f"--engine runs the model in this process; a server at --url {does} the engine it was started with "
            "(lokal serve --engine ...): drop --engine, or drop --url"
        )
