"""What a bias suite is given and must return, and the two things every suite shares: the model it scores
through (`Scorer`) and the raw-output log written before any scoring (`RawLog`).

A suite never talks to an engine or a server itself: it asks the `Scorer` for log-probabilities or for a
generation, so the same suite runs in-process or against a server, and a backend that cannot give prompt
log-probabilities refuses likelihood suites (`LikelihoodUnsupported`) instead of producing chance-level numbers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, Self

from lokal.audit.result import SuiteResult
from lokal.errors import LokalError

if TYPE_CHECKING:
    from lokal.store.types import LocalModel

Progress = Callable[[int, int], None]  # (done, total)


class AuditError(LokalError, ValueError):
    """An audit that cannot run as asked: a missing or malformed dataset file, an unknown suite."""


class LikelihoodUnsupported(AuditError):
    """The backend cannot give prompt log-probabilities, which likelihood suites need."""


@dataclass(frozen=True)
class TokenScore:
    token: int | None  # None where the backend gives text only (a server's echo)
    text: str
    logprob: float | None  # natural log; None for the first token (no context)


class Scorer(Protocol):
    """The model under audit, as suites see it. Blocking calls (suites are sequential)."""

    @property
    def where(self) -> str:
        """Where the model runs, for the result: "in-process" or a URL."""
        ...

    @property
    def supports_likelihood(self) -> bool:
        """True when `score` works (in-process; a server with prompt log-probabilities)."""
        ...

    @property
    def resolved(self) -> LocalModel | None:
        """The model as lokal's store resolved it, when it runs in this process (None behind a server), so the
        result records its digest and details without resolving the name again."""
        ...

    @property
    def refusal(self) -> str | None:
        """Why `score` cannot work here, in the scorer's own words (which server, what it answered), or None
        when it works or the scorer has nothing to add to the generic reason."""
        ...

    def score(self, text: str) -> list[TokenScore]:
        """Log-probability of every token of `text` (with the model's BOS when it uses one) given the ones
        before it. Raises LikelihoodUnsupported when the backend cannot."""
        ...

    def generate(self, prompt: str, *, max_tokens: int, seed: int, chat: bool = False) -> str:
        """A temperature-0 continuation of `prompt` (as a chat user message when `chat`)."""
        ...

    def close(self) -> None:
        """Free what the scorer holds (a loaded model, an HTTP client); the audit calls it once, at the end."""
        ...


class ScorerBase:
    """The defaults of `Scorer`'s optional members: no reason of its own for a refusal, nothing to close; and
    `with scorer:` closes it."""

    refusal: str | None = None
    resolved: LocalModel | None = None

    def close(self) -> None:
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RawLog:
    """Raw model outputs, one JSON object per line, flushed as they come: written before scoring, so a
    result can always be re-scored or audited by hand."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out: IO[str] = self.path.open("w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._out.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._out.flush()

    def close(self) -> None:
        self._out.close()


class SuiteRunner(Protocol):
    """Each suite module exposes `run` with this signature (and `NAME`, the `--suite` value)."""

    def __call__(
        self,
        scorer: Scorer,
        *,
        data: Path | None,
        limit: int | None,
        seed: int,
        raw: RawLog,
        progress: Progress | None = None,
    ) -> SuiteResult: ...
