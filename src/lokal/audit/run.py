"""One `lokal audit MODEL` run: run each suite (raw outputs to JSONL first), collect the `AuditResult`. The
caller saves it.

Suites are looked up by name in `lokal.audit.suites` and imported on demand, so `lokal audit --help` does not
import scipy, VADER or the datasets' parsers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from lokal._version import __version__
from lokal.audit.result import AuditResult, SuiteResult
from lokal.audit.stats import DEFAULT_RESAMPLES
from lokal.audit.suite import AuditError, LikelihoodUnsupported, Progress, RawLog, Scorer, SuiteRunner
from lokal.audit.suites import NEEDS_DATA, SUITES, suite_runner
from lokal.config import Settings
from lokal.results import ModelRef
from lokal.store.types import LocalModel

#: Called when a suite starts with its name; returns the progress callback for it.
SuiteHook = Callable[[str], Progress | None]


def suite_data(suite: str, data: Path | None) -> Path | None:
    """Where `suite` reads its dataset: `data` itself, or `data/<suite>` when `data` is a root holding several
    (as ../shared/data does). Suites that need data and get none fail with a message saying so."""
    if suite not in NEEDS_DATA:
        return None
    if data is None:
        raise AuditError(
            f"the {suite} suite reads its dataset from a file you point at: add --data PATH "
            f"(a folder with the dataset's files, or a folder holding {', '.join(f'{s}/' for s in NEEDS_DATA)})"
        )
    if not data.exists():
        raise AuditError(f"--data {data}: no such file or folder")
    nested = data / suite
    return nested if nested.is_dir() else data


def raw_path(output: Path, suite: str) -> Path:
    """Raw outputs sit beside the result: run.json -> run.crows-pairs.raw.jsonl."""
    return output.with_name(f"{output.stem}.{suite}.raw.jsonl")


def run_audit(
    scorer: Scorer,
    model: ModelRef,
    suites: list[str],
    *,
    output: Path,
    data: Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    on_suite: SuiteHook | None = None,
) -> AuditResult:
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise AuditError(f"unknown suite {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    if limit is not None and limit < 1:
        raise AuditError(f"--limit must be at least 1, got {limit}")
    paths = {s: suite_data(s, data) for s in suites}  # check every path before the first model call
    created = datetime.now(UTC)
    results: list[SuiteResult] = []
    warnings: list[str] = []
    for name in suites:
        run: SuiteRunner = suite_runner(name)
        raw = RawLog(raw_path(output, name))
        try:
            progress = on_suite(name) if on_suite else None
            result = run(scorer, data=paths[name], limit=limit, seed=seed, raw=raw, progress=progress)
        except LikelihoodUnsupported as exc:
            if len(suites) == 1:
                raise
            warnings.append(f"{name} skipped: {exc}")
            continue
        finally:
            raw.close()
        results.append(result.model_copy(update={"raw_outputs": str(raw.path)}))
    return AuditResult(
        lokal_version=__version__,
        created_at=created,
        model=model,
        target=scorer.where,
        seed=seed,
        limit=limit,
        bootstrap_resamples=DEFAULT_RESAMPLES,
        suites=results,
        warnings=warnings,
    )


def model_ref(name: str, settings: Settings, resolved: LocalModel | None) -> ModelRef:
    """What the result records about the model: for one that runs in-process (`resolved`, the scorer's), its
    digest, GGUF details and the engine that scores it (the same weights under llama.cpp and transformers are two
    measurements); behind a server, the name it was given."""
    if resolved is None:
        return ModelRef(name=name)
    from lokal.store.engine_choice import engine_for

    return ModelRef(
        name=resolved.name,
        engine=engine_for(resolved, settings.engine),
        digest=resolved.digest,
        size_bytes=resolved.size,
        parameter_size=resolved.details.parameter_size or None,
        quantization=resolved.details.quantization_level or None,
        family=resolved.details.family or None,
    )
