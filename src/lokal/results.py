"""lokal's saved results, whatever measured them: the base of their models and one way to save and read them.

Every command that measures something (`lokal bench`, `audit`, `audit fairness`, `cost`, `cache`) saves a
versioned JSON file first and renders it second, so a report can be drawn again later from the file alone.
They share:

- `Frozen`, the base of every part of a result (immutable; fields a newer lokal added are ignored), and `Result`,
  the top level, whose `kind` names what measured it and whose `schema_version` the shape it has;
- `save`, which writes through `lokal.files.write_atomic` (a reader never sees half a file), and `read_result`,
  which reads any kind with one message per failure;
- `ModelRef`, the model a bench or audit result measured.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lokal.errors import LokalError
from lokal.files import write_atomic


class ResultError(LokalError, ValueError):
    """A result file that cannot be read: missing, not JSON, another schema version, or malformed."""


class Frozen(BaseModel):
    """A part of a saved result: immutable, and fields it does not know (from a newer lokal) are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Result(Frozen):
    """The top level of a saved result. Each kind narrows both fields to its own literal values."""

    schema_version: int
    kind: str


class ModelRef(Frozen):
    name: str
    engine: str | None = Field(None, description="the in-process engine (llamacpp, transformers); None for a server")
    digest: str | None = None
    size_bytes: int | None = None
    parameter_size: str | None = None
    quantization: str | None = None
    family: str | None = None


def save(result: Result, path: str | os.PathLike[str]) -> Path:
    """Write `result` as JSON atomically (temp file + fsync + rename): never a half-written file."""
    return write_atomic(path, result.model_dump_json(indent=1))


M = TypeVar("M", bound=BaseModel)


def read_result(
    path: str | os.PathLike[str],
    model: type[M],
    *,
    kind: str,
    noun: str,
    version: int,
    error: type[LokalError] = ResultError,
    missing: str | None = None,
    version_hint: str = "",
) -> M:
    """Read any of lokal's saved results (bench, audit, fairness, cost, cache) as `model`, with one message
    per failure that names the file and what is wrong: missing, unreadable, not JSON, another `kind`, another
    schema version, or malformed (the first pydantic error and where)."""
    source = Path(path)
    try:
        raw: Any = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{missing or f'no {noun} at'} {source}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {source}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{source} is not JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(raw, dict) or raw.get("kind") != kind:
        raise error(f'{source} is not a lokal {noun} (no "kind": "{kind}")')
    if raw.get("schema_version") != version:
        raise error(
            f"{source} has schema version {raw.get('schema_version')!r}; this lokal reads version {version}"
            + version_hint
        )
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise error(f"{source} is malformed at {where}: {first['msg']}") from None
