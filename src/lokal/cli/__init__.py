"""The `lokal` command: one click group, one module per command group, one error boundary in main()."""

from __future__ import annotations

import dataclasses
import enum
import os
import sys
import traceback
from typing import TYPE_CHECKING, Final

import click

from lokal._version import __version__
from lokal.config import Settings
from lokal.errors import LokalError

if TYPE_CHECKING:
    from lokal.cli.remote import RemoteServer
    from lokal.engine.manager import EngineManager, Runtime
    from lokal.store.store import ModelStore


class _Probe(enum.Enum):
    """The type of `_UNPROBED` (an enum, so that `is _UNPROBED` narrows the type)."""

    UNPROBED = enum.auto()


_UNPROBED: Final = _Probe.UNPROBED


class Context:
    """Per-invocation state handed to commands: settings built once, services built on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._runtime: Runtime | None = None
        self._remote: RemoteServer | _Probe | None = _UNPROBED
        self.engine_requested: str | None = None

    def use_engine(self, engine: str) -> None:
        """`--engine`: run models on `engine`, in this process. A server at OLLAMA_HOST is then never used (it
        runs the engine it was started with), so `remote` is None from here on."""
        if self._runtime is not None:
            raise RuntimeError("--engine must be applied before the store or the engine manager is built")
        self.settings = dataclasses.replace(self.settings, engine=engine)
        self.engine_requested = engine

    @property
    def runtime(self) -> Runtime:
        """The store and the engine manager, built on first use (`lokal list` never loads an engine)."""
        if self._runtime is None:
            from lokal.engine.manager import open_runtime

            self._runtime = open_runtime(self.settings)
        return self._runtime

    @property
    def store(self) -> ModelStore:
        return self.runtime.store

    @property
    def manager(self) -> EngineManager:
        return self.runtime.manager

    @property
    def remote(self) -> RemoteServer | None:
        """The server at OLLAMA_HOST when one answers, else None (probed once per command; never with --engine)."""
        if self.engine_requested is not None:
            return None
        if self._remote is _UNPROBED:
            from lokal.cli.remote import RemoteServer

            self._remote = RemoteServer.find(self.settings)
        return self._remote

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()
        if self._remote is not None and self._remote is not _UNPROBED:
            self._remote.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lokal")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Run, measure and audit language models on your own machine, offline.

    \b
    Start with:
      lokal run smollm2 "Explain machine learning in simple terms"
      lokal chat smollm2
      lokal list
    """
    state = Context(Settings.from_env())
    ctx.obj = state
    ctx.call_on_close(state.close)


def _register_commands() -> None:
    from lokal.cli import audit, bench, cache, card, cost, embed, models, report, run, serve

    for module in (models, run, embed, serve, bench, cost, cache, report, audit, card):
        for command in module.COMMANDS:
            cli.add_command(command)


_register_commands()


def main(argv: list[str] | None = None) -> int:
    """Entry point with the one error boundary: known errors are one line on stderr and exit code 1."""
    debug = os.environ.get("LOKAL_DEBUG", "") not in ("", "0", "false", "no")
    try:
        # Without standalone mode click returns (not raises) the code of a `ctx.exit(code)`.
        code = cli.main(args=argv, prog_name="lokal", standalone_mode=False)
        if isinstance(code, int) and code:
            return code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    except LokalError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"Error: {exc}", err=True)
        return 1
    except BrokenPipeError:
        # `lokal list | head`: the reader went away; nothing left to say.
        sys.stderr.close()
        return 1
    except Exception as exc:
        if debug:
            raise
        click.echo(
            f"Error: unexpected {type(exc).__name__}: {exc}\n(run with LOKAL_DEBUG=1 for the traceback)",
            err=True,
        )
        return 1
    return 0
