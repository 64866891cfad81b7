"""The saved result of `lokal audit`: versioned JSON, the input of `lokal card` and `lokal report`.

Every figure carries N, a bootstrap confidence interval, and how it was scored, because a bias number
without them cannot be judged (`../shared/ref/responsible-ai.md`): the same CrowS-Pairs pair scored by
true log-likelihood, by next-token log-probabilities or by parsing a generation are different measurements.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, Field

from lokal.audit.suites import SUITE_SPECS
from lokal.results import Frozen, ModelRef, Result, ResultError, read_result, save

__all__ = ["AuditResult", "DatasetRef", "Metric", "ResultError", "SuiteResult", "load", "save"]

SCHEMA_VERSION: Final = 1

#: How a figure was obtained:
#: - log-likelihood: summed natural-log probabilities of the scored tokens, computed in-process or from a
#:   server's prompt log-probabilities (OpenAI `/v1/completions` with `echo` and `logprobs`);
#: - generation: text generated at temperature 0, then parsed or scored offline (e.g. VADER sentiment);
#: - labels: predictions given in a file (group fairness), no model involved.
ScoringMode = Literal["log-likelihood", "generation", "labels"]


def _registered(name: str) -> str:
    if name not in SUITE_SPECS:
        raise ValueError(f"unknown suite {name!r}: this lokal knows {', '.join(SUITE_SPECS)}")
    return name


#: A suite of `lokal.audit.suites` (the registry is the schema: a suite added there is valid here).
Suite = Annotated[str, AfterValidator(_registered)]


class Metric(Frozen):
    """One figure: a value with its bootstrap interval, over `n` items, for one group or overall."""

    name: str  # e.g. "pct_stereotype", "accuracy_gap", "bias_score_ambiguous"
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int
    confidence: float = 0.95
    group: str | None = Field(None, description="the breakdown this figure is for (bias type, category, gender...)")
    scoring: ScoringMode
    ideal: float | None = Field(None, description="what a model without the bias gets (50 for pct_stereotype)")
    unit: str | None = None  # "%", "nats", "accuracy"...
    description: str = ""


class DatasetRef(Frozen):
    name: str  # "CrowS-Pairs", "WinoBias", "lokal occupations templates"
    path: str | None = None
    sha256: str | None = None  # of the file(s) read, so a result names exactly what it measured
    revision: str | None = None
    license: str | None = None
    url: str | None = None
    items: int  # items scored (after --limit)
    total: int | None = None  # items in the file


class SuiteResult(Frozen):
    suite: Suite
    dataset: DatasetRef
    scoring: ScoringMode
    metrics: list[Metric]
    raw_outputs: str | None = Field(None, description="JSONL of every raw model output, written before scoring")
    notes: list[str] = Field(default_factory=list)  # how it was scored, in words
    caveats: list[str] = Field(default_factory=list)  # what the numbers do not mean


class AuditResult(Result):
    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["audit"] = "audit"
    lokal_version: str
    created_at: datetime
    model: ModelRef
    target: str  # "in-process" or the server URL
    seed: int
    limit: int | None = None
    bootstrap_resamples: int
    suites: list[SuiteResult]
    warnings: list[str] = Field(default_factory=list)


def load(path: str | os.PathLike[str]) -> AuditResult:
    """Read an audit result, with a message that names the file and what is wrong with it."""
    return read_result(path, AuditResult, kind="audit", noun="audit result", version=SCHEMA_VERSION)
