"""Ollama's Modelfile, read for `lokal create NAME -f Modelfile` and written for `lokal show --modelfile`.

The grammar is Ollama's (`parser/parser.go`): one instruction per line, case-insensitive (`FROM`, `PARAMETER`,
`SYSTEM`, `TEMPLATE`, `MESSAGE`, `LICENSE`, `ADAPTER`), `#` starts a comment line, and a value is the rest of the
line, a `"quoted string"`, or a `\"\"\"triple-quoted\"\"\"` one that may span lines. Hand-written because no
Python package parses it (it is a few dozen lines of Go upstream).

`TEMPLATE` is a Jinja chat template (as GGUF files carry; Ollama's Go templates are refused where the model is
created, lokal.inference.model_template); `MESSAGE ROLE TEXT` lines seed every chat (system, user, assistant).
What lokal cannot honour is an error naming the line, never a model created without it: `ADAPTER` (LoRA
adapters), an unknown instruction, or a `PARAMETER` lokal has no option for.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from lokal.errors import InvalidOptions

_INSTRUCTIONS = ("from", "parameter", "system", "template", "message", "license", "adapter")
_REFUSED = {
    "adapter": "LoRA adapters are not supported; merge the adapter into the weights first (llama.cpp's "
    "llama-export-lora) and use FROM with the merged GGUF",
}
_INT_PARAMETERS = {"top_k", "repeat_last_n", "seed", "num_predict", "num_ctx"}
#: `tool_choice` is lokal's (Ollama has none): the model's default for requests with tools that name none.
_STRING_PARAMETERS = {"stop", "tool_choice"}


class ModelfileError(InvalidOptions):
    """A Modelfile lokal cannot create a model from; the message names the line."""


@dataclass
class Modelfile:
    from_: str
    parameters: dict[str, Any] = field(default_factory=dict)
    system: str | None = None
    license: str | None = None
    template: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)


_MESSAGE_ROLES = ("system", "user", "assistant")


def _value(text: str, lines: list[str], index: int, where: str) -> tuple[str, int]:
    """The value starting at `text` (the rest of line `index`): plain, "quoted" or \"\"\"triple-quoted\"\"\"
    (which may go on over the following lines). Returns it and the index of the line it ended on."""
    stripped = text.strip()
    if stripped.startswith('"""'):
        rest = stripped[3:]
        if '"""' in rest:
            return rest[: rest.index('"""')], index
        parts = [rest]
        for end in range(index + 1, len(lines)):
            if '"""' in lines[end]:
                parts.append(lines[end][: lines[end].index('"""')])
                return "\n".join(parts), end
            parts.append(lines[end])
        raise ModelfileError(f'{where}: a """ string is not closed')
    if stripped.startswith('"'):
        try:
            value, end = json.JSONDecoder().raw_decode(stripped)
        except json.JSONDecodeError:
            raise ModelfileError(f"{where}: a quoted string is not closed") from None
        if stripped[end:].strip():
            raise ModelfileError(f"{where}: unexpected text after the quoted string")
        return str(value), index
    return stripped, index


def _parameter_value(name: str, raw: str, where: str) -> Any:
    if name in _STRING_PARAMETERS:
        return raw
    if name in _INT_PARAMETERS:
        try:
            return int(raw)
        except ValueError:
            raise ModelfileError(f"{where}: PARAMETER {name} must be an integer, got {raw!r}") from None
    try:
        return float(raw)
    except ValueError:
        raise ModelfileError(f"{where}: PARAMETER {name} must be a number, got {raw!r}") from None


def parse(text: str, source: str = "Modelfile") -> Modelfile:
    """Read a Modelfile; a `ModelfileError` names the line of whatever lokal cannot honour."""
    lines = text.splitlines()
    found: dict[str, Any] = {"parameters": {}}
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        where = f"{source} line {index + 1}"
        if not line or line.startswith("#"):
            index += 1
            continue
        match = re.match(r"(\S+)\s*(.*)", line)
        assert match is not None
        word, rest = match.group(1).lower(), match.group(2)
        if word not in _INSTRUCTIONS:
            raise ModelfileError(
                f"{where}: unknown instruction {match.group(1)!r} (a Modelfile has "
                f"{', '.join(i.upper() for i in _INSTRUCTIONS)})"
            )
        if word in _REFUSED:
            raise ModelfileError(f"{where}: {word.upper()} is not supported: {_REFUSED[word]}")
        if word == "parameter":
            name, _, raw = rest.strip().partition(" ")
            if not name or not raw.strip():
                raise ModelfileError(f"{where}: PARAMETER needs a name and a value, e.g. PARAMETER temperature 0.7")
            value, index = _value(raw, lines, index, where)
            parsed = _parameter_value(name.lower(), value, where)
            if name.lower() == "stop":
                found["parameters"].setdefault("stop", []).append(parsed)
            else:
                found["parameters"][name.lower()] = parsed
        elif word == "message":
            role, _, raw = rest.strip().partition(" ")
            if role.lower() not in _MESSAGE_ROLES or not raw.strip():
                raise ModelfileError(
                    f"{where}: MESSAGE needs a role ({', '.join(_MESSAGE_ROLES)}) and a text, e.g. MESSAGE user Hi"
                )
            value, index = _value(raw, lines, index, where)
            found.setdefault("messages", []).append({"role": role.lower(), "content": value})
        else:
            value, index = _value(rest, lines, index, where)
            if not value and word == "from":
                raise ModelfileError(f"{where}: FROM needs a model name or a GGUF file")
            if word in found and word != "license":
                raise ModelfileError(f"{where}: {word.upper()} is given twice")
            found[word] = value if word != "license" else "\n\n".join(filter(None, [found.get(word), value]))
        index += 1
    if "from" not in found:
        raise ModelfileError(f"{source}: no FROM line (name the model or GGUF file to build on: FROM smollm2)")
    return Modelfile(
        from_=found["from"],
        parameters=found["parameters"],
        system=found.get("system"),
        license=found.get("license"),
        template=found.get("template"),
        messages=found.get("messages", []),
    )


def _quoted(text: str) -> str:
    return f'"""{text}"""' if "\n" in text or '"' in text else f'"{text}"'


def render(
    name: str,
    source: str,
    params: dict[str, Any],
    system: str | None,
    license: str | None,
    template: str | None = None,
    messages: Any = (),
) -> str:
    """The Modelfile that `lokal create` would make this model from (what `lokal show --modelfile` prints)."""
    out = [f"# Modelfile of {name}, for lokal create NAME -f FILE", f"FROM {source}"]
    if template:
        out.append(f'TEMPLATE """{template}"""')
    for key, value in params.items():
        for v in value if isinstance(value, list | tuple) else [value]:
            out.append(f"PARAMETER {key} {_quoted(v) if isinstance(v, str) else v}")
    if system:
        out.append(f"SYSTEM {_quoted(system)}")
    for message in messages:
        out.append(f"MESSAGE {message['role']} {_quoted(message['content'])}")
    if license:
        out.append(f"LICENSE {_quoted(license)}")
    return "\n".join(out) + "\n"


def for_model(info: Any) -> str:
    """`render` for a `ModelInfo` (`/api/show`'s `modelfile` and `lokal show --modelfile` print the same)."""
    return render(
        info.name,
        str(info.path),
        dict(info.params),
        info.system,
        info.license,
        info.template,
        info.messages,
    )
