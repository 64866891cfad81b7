"""`lokal serve`: the Ollama- and OpenAI-compatible server."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from lokal.cli._engine import engine_option
from lokal.config import parse_duration


@click.command("serve")
@click.option(
    "--host", "host", default=None, help="Address to bind, HOST[:PORT] (default: OLLAMA_HOST or 127.0.0.1:11434)."
)
@click.option("--port", type=int, default=None, help="Port to bind (overrides the one in --host).")
@click.option("--parallel", type=int, default=None, help="Sequences decoded together per model (OLLAMA_NUM_PARALLEL).")
@click.option(
    "--max-queue", type=int, default=None, help="Requests that may wait per model before 503 (OLLAMA_MAX_QUEUE)."
)
@click.option("--keep-alive", default=None, help="Idle time before a model is unloaded, e.g. 5m (OLLAMA_KEEP_ALIVE).")
@click.option("--max-loaded-models", type=int, default=None, help="Models loaded at once (OLLAMA_MAX_LOADED_MODELS).")
@click.option(
    "--context-length", type=int, default=None, help="Context per sequence, in tokens (OLLAMA_CONTEXT_LENGTH)."
)
@click.option(
    "--model", "preload", multiple=True, help="Load this model at start-up (repeatable); /health is 503 until done."
)
@engine_option(
    help="The engine for GGUF models: llamacpp (the default) or transformers (needs pip install 'lokal[hf]'); "
    "overrides LOKAL_ENGINE and the engine a model's entry remembers. Checkpoint folders always run on "
    "transformers."
)
@click.pass_obj
def serve_cmd(state: Any, host: str | None, port: int | None, preload: tuple[str, ...], **overrides: Any) -> None:
    """Serve Ollama's API (/api/*) and OpenAI's (/v1/*), with /health and /metrics.

    \b
    Binds to 127.0.0.1 unless told otherwise. Set LOKAL_API_KEY to require
    'Authorization: Bearer <key>' on every route but / and /health.

    \b
    Examples:
      lokal serve
      lokal serve --host 127.0.0.1:8080 --parallel 8 --model smollm2
      lokal serve --engine transformers --model smollm2 --model all-minilm
      OLLAMA_HOST=127.0.0.1:11500 lokal serve
    """
    import uvicorn

    from lokal.server.app import create_app
    from lokal.server.security import exposure_warning

    overrides.pop("engine", None)  # already applied to state.settings by the option
    changes: dict[str, Any] = {}
    if host:
        changes["host"] = host
    mapping = {
        "parallel": "num_parallel",
        "max_queue": "max_queue",
        "max_loaded_models": "max_loaded_models",
        "context_length": "context_length",
    }
    for flag, field in mapping.items():
        if overrides.get(flag) is not None:
            if overrides[flag] < 1:
                raise click.BadParameter(
                    f"must be at least 1, got {overrides[flag]}", param_hint=f"--{flag.replace('_', '-')}"
                )
            changes[field] = overrides[flag]
    if overrides.get("keep_alive") is not None:
        changes["keep_alive"] = parse_duration(overrides["keep_alive"])
    settings = dataclasses.replace(state.settings, **changes)
    _check_draft_model(settings)
    bind_host, bind_port = settings.bind
    if port is not None:
        bind_port = port
    app = create_app(settings, preload=preload)
    warning = exposure_warning(bind_host, bind_port, settings.api_key)
    if warning:
        click.secho(warning, err=True, fg="yellow")
    engine = f"; engine: {settings.engine}" if settings.engine else ""
    click.echo(
        f"lokal {app.version} serving Ollama's API on http://{bind_host}:{bind_port} (OpenAI's at /v1){engine}; "
        "Ctrl-C to stop",
        err=True,
    )
    uvicorn.run(app, host=bind_host, port=bind_port, log_level="warning", timeout_graceful_shutdown=5)


def _check_draft_model(settings: Any) -> None:
    """LOKAL_SPECULATIVE=draft:MODEL: fail at start, not at the first request, when MODEL is not here."""
    from lokal.config import parse_speculative
    from lokal.errors import ModelNotFound

    _, name = parse_speculative(settings.speculative)
    if name is None:
        return
    from lokal.store.store import ModelStore

    try:
        ModelStore(settings).resolve(name)
    except ModelNotFound as exc:
        raise click.UsageError(f"LOKAL_SPECULATIVE=draft:{name}: {exc}") from None


@click.command("ps")
@click.option("--json", "as_json", is_flag=True, help="Print the server's /api/ps answer as JSON.")
@click.pass_obj
def ps_cmd(state: Any, as_json: bool) -> None:
    """List the models a running lokal server has loaded (and when they will be unloaded)."""
    from datetime import datetime

    from lokal.cli._output import human_size, print_json, table
    from lokal.errors import LokalError

    remote = state.remote
    if remote is None:
        host, port = state.settings.bind
        raise LokalError(f"no lokal server is answering at {host}:{port}; start one with: lokal serve")
    loaded = remote.get("/api/ps")
    if as_json:
        print_json(loaded)
        return
    models = loaded.get("models", [])
    # lokal's server names each loaded model's engine ("engine", beside Ollama's fields); Ollama's does not.
    with_engine = any(m.get("engine") for m in models)
    rows = []
    for m in models:
        until = datetime.fromisoformat(m["expires_at"].replace("Z", "+00:00"))
        left = (until - datetime.now(until.tzinfo)).total_seconds()
        expires = (
            "Forever"
            if left > 86400 * 365
            else ("Stopping..." if left <= 0 else f"{int(left // 60)} min {int(left % 60)} s")
        )
        rows.append(
            [
                m["name"],
                m.get("digest", "")[:12],
                human_size(m.get("size", 0)),
                "100% CPU",
                str(m.get("context_length", "")),
                *([m.get("engine") or ""] if with_engine else []),
                expires,
            ]
        )
    headers = ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", *(["ENGINE"] if with_engine else []), "UNTIL"]
    click.echo(table(rows, headers))


COMMANDS = [serve_cmd, ps_cmd]
