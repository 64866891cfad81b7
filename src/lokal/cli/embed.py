"""`lokal embed`: embedding vectors for texts, from the terminal or a pipe.

The same answer as Ollama's `/api/embed` (`lokal.inference.embed`, which the Python API and both servers
use), in this process or, like `lokal run`, through the server at OLLAMA_HOST when one answers and no
--engine is given.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from lokal.cli._engine import IN_PROCESS_HELP, engine_option
from lokal.cli._output import print_json

#: Values shown per vector in the default output: enough to tell vectors apart at a glance.
SHOWN_VALUES = 4
TEXT_PREVIEW = 48


def read_texts(texts: tuple[str, ...], stdin: Any) -> list[str]:
    """The texts to embed: the arguments, with "-" (or no argument at all, when stdin is not a terminal)
    standing for the lines of stdin, one text per non-empty line."""
    piped = not getattr(stdin, "isatty", lambda: False)()
    if not texts and piped:
        texts = ("-",)
    out: list[str] = []
    for text in texts:
        if text == "-":
            out += [line.strip() for line in stdin.read().splitlines() if line.strip()]
        else:
            out.append(text)
    return out


def vector_line(vector: list[float], text: str) -> str:
    """'384 dims  [0.0123, -0.0456, 0.0789, 0.0012, ...]  the text': one line per text."""
    shown = ", ".join(f"{v:.4f}" for v in vector[:SHOWN_VALUES])
    more = ", ..." if len(vector) > SHOWN_VALUES else ""
    preview = text if len(text) <= TEXT_PREVIEW else text[: TEXT_PREVIEW - 3] + "..."
    return f"{len(vector)} dims  [{shown}{more}]  {preview}"


@click.command("embed")
@click.argument("model")
@click.argument("texts", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print Ollama's /api/embed answer (every value) as JSON.")
@click.option("--keep-alive", default=None, help="How long to keep the model loaded afterwards (e.g. 5m, 0).")
@engine_option(help=IN_PROCESS_HELP)
@click.pass_obj
def embed_cmd(
    state: Any, model: str, texts: tuple[str, ...], as_json: bool, keep_alive: str | None, engine: str | None
) -> None:
    """Embed TEXTS with MODEL: one vector per text (its size and first values; --json for all of them).

    \b
    Reads one text per line from stdin when given "-" or no text and a pipe.

    \b
    Examples:
      lokal embed all-minilm "The cat sat on the mat" "A dog slept on the rug"
      lokal embed all-minilm --json "Hello" > vectors.json
      cat sentences.txt | lokal embed all-minilm
      lokal embed smollm2 --engine transformers "Hello"

    When a lokal or Ollama server answers at OLLAMA_HOST the request goes to it, unless --engine is given.
    """
    chosen = read_texts(texts, sys.stdin)
    if not chosen:
        raise click.UsageError("nothing to embed: give TEXT arguments, or pipe one text per line into stdin")
    if state.remote is not None:
        payload: dict[str, Any] = {"model": model, "input": chosen}
        if keep_alive is not None:
            payload["keep_alive"] = keep_alive
        answer = state.remote.post("/api/embed", payload)
    else:
        from lokal import inference

        answer = inference.embed(state.manager, model, chosen, keep_alive=keep_alive)
    if as_json:
        print_json(answer)
        return
    for vector, text in zip(answer["embeddings"], chosen, strict=True):
        click.echo(vector_line(vector, text))


COMMANDS = [embed_cmd]
