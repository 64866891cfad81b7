"""lokal's saved results, whatever measured them: the base of their models, one way to save and read them, and
the kinds `lokal report` renders.

Every command that measures something (`lokal bench`, `audit`, `audit fairness`, `cost`, `cache`) saves a
versioned JSON file first and renders it second, so a report can be drawn again later from the file alone.
They share:

- `Frozen`, the base of every part of a result (immutable; fields a newer lokal added are ignored), and `Result`,
  the top level, whose `kind` names what measured it and whose `schema_version` the shape it has;
- `save`, which writes through `lokal.files.write_atomic` (a reader never sees half a file), and `read_result`,
  which reads any kind with one message per failure;
- `ModelRef`, the model a bench or audit result measured;
- `ResultKind` and `ResultKinds`: how a kind is read and which report sections it brings. Each kind declares its
  `ResultKind` beside its sections (`lokal.bench.report.document`, `lokal.cost.sections`, `lokal.cache.sections`);
  the command that renders them (`lokal.cli.report`) puts them together, so nothing here imports the layers above.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lokal.errors import LokalError
from lokal.files import write_atomic

if TYPE_CHECKING:
    from lokal.report.document import Section


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


def peek_kind(path: str | os.PathLike[str]) -> str | None:
    """The file's `kind`, or None when it cannot be read as a JSON object (a loader then says why)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    kind = raw.get("kind") if isinstance(raw, dict) else None
    return kind if isinstance(kind, str) else None


R = TypeVar("R", bound=Result)


@dataclass(frozen=True)
class ResultKind(Generic[R]):
    """One kind of saved result as a report sees it: how to read a file of it, and the sections it brings.
    `sections` takes every result of the kind that is shown together (bench results side by side, or one)."""

    kind: str
    load: Callable[[Path], R]
    sections: Callable[[Sequence[R]], Sequence[Section]]


class ResultKinds:
    """The kinds one command reads, in order; a file is read by the kind its `kind` field names."""

    def __init__(self, *kinds: ResultKind[Any], reader: str) -> None:
        if not kinds:
            raise ValueError("ResultKinds needs at least one kind")
        self._kinds = {k.kind: k for k in kinds}
        self.reader = reader  # who reads them, for the message about a kind it does not read

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._kinds)

    def __getitem__(self, kind: str) -> ResultKind[Any]:
        return self._kinds[kind]

    def load(self, path: Path) -> Result:
        """The saved result at `path`, read by its kind's loader. A file whose kind cannot be read goes to the
        first kind's loader, which says what is wrong with it; another kind is a ResultError naming the file."""
        kind = peek_kind(path)
        if kind is None:
            return next(iter(self._kinds.values())).load(path)
        if kind in self._kinds:
            return self._kinds[kind].load(path)
        *head, last = self.names
        readable = f"{', '.join(head)} and {last}" if head else last
        raise ResultError(f"{path} holds a {kind!r} result; {self.reader} renders {readable} results")

    def sections(self, result: Result) -> tuple[Section, ...]:
        """The report sections of one result on its own."""
        return tuple(self._kinds[result.kind].sections([result]))
