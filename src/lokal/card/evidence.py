"""Saved results -> what a card states: Hugging Face `EvalResult`s for the `model-index` front matter, and the
rows of the body's tables. Both come from the same objects here, so the YAML and the tables cannot disagree.

How results map to `model-index` (one entry per task and dataset, as huggingface_hub groups them):

- a bias suite of an audit result: task `text-generation` named "Bias probe: <suite>", dataset type = the suite
  (`crows-pairs`...), dataset revision = the data's revision or `sha256:<file digest>`, dataset args = sha256,
  items scored, items in the file, seed; one metric per figure with `args` = scoring mode, N, interval, group,
  ideal value, unit. A figure without a value (not computable) is left out of the YAML and shown as such in the
  body.
- a group-fairness result (`lokal audit fairness`): task named "Group fairness of predictions", dataset = the
  predictions file (type `labelled-predictions`, revision `sha256:<file digest>`); one metric per figure (overall,
  per group, and the gaps), args as for bias figures with scoring `labels`. The file does not say which model
  made the predictions; the card says so.
- a load level of a bench result: task named "Inference performance (lokal bench)", dataset type `lokal-bench`,
  config = workload and target, split = the load level; metrics TTFT p50 (with a bootstrap interval) and p99,
  output tokens/s and requests/s from `lokal.bench.metrics.summarize`.

huggingface_hub keeps the task and dataset fields of the first result of each group only, so results that share
a group must agree on them: `check_model_index` refuses evidence that would be silently merged.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
from huggingface_hub import EvalResult

from lokal.audit import suites
from lokal.audit.fairness import FairnessResult
from lokal.audit.result import AuditResult, Metric, SuiteResult
from lokal.audit.stats import bootstrap_ci
from lokal.bench.metrics import LevelSummary, summarize, ttft_ms
from lokal.bench.result import BenchResult, LoadLevel
from lokal.card.errors import CardError
from lokal.card.model import ModelFacts
from lokal.results import ModelRef, ResultError

TASK_TYPE = "text-generation"
PERF_TASK = "Inference performance (lokal bench)"
PERF_DATASET = "lokal-bench"

#: Below this many requests a p99 is one of the largest two values: the table says so.
P99_MIN_REQUESTS = 100


@dataclass(frozen=True)
class Evidence:
    """A loaded result and the file it came from (its name and sha256 go into the card's provenance)."""

    result: Any  # BenchResult | AuditResult | FairnessResult
    source: str  # file name as shown in the card and in error messages
    sha256: str | None = None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_bench(path: str | os.PathLike[str]) -> Evidence:
    from lokal.bench.result import load

    source = Path(path)
    try:
        return Evidence(load(source), source.name, _sha256(source))
    except ResultError as exc:
        raise CardError(f"--bench: {exc}") from None


def load_audit(path: str | os.PathLike[str]) -> Evidence:
    from lokal.audit.result import load

    source = Path(path)
    try:
        return Evidence(load(source), source.name, _sha256(source))
    except ResultError as exc:
        raise CardError(f"--audit: {exc}") from None


def load_fairness(path: str | os.PathLike[str]) -> Evidence:
    from lokal.audit.fairness import load

    source = Path(path)
    try:
        return Evidence(load(source), source.name, _sha256(source))
    except ResultError as exc:
        raise CardError(f"--fairness: {exc}") from None


# --- numbers -----------------------------------------------------------------------------------------------------


def yaml_number(value: float) -> float | int:
    """Six significant digits: enough for any figure here, and free of float noise (0.30000000000000004)."""
    if isinstance(value, int):
        return value
    return float(f"{value:.6g}")


def _finite(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(value)


def _clean(mapping: dict[str, Any]) -> dict[str, Any] | None:
    """Drop empty entries (huggingface_hub drops None values on save, so keeping them would not round-trip)."""
    out = {k: v for k, v in mapping.items() if v is not None and v != ""}
    return out or None


# --- bench -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PerfLevel:
    level: LoadLevel
    summary: LevelSummary
    ttft_ci: tuple[float | None, float | None]  # bootstrap interval of the median TTFT


@dataclass(frozen=True)
class PerfRun:
    """One bench result's levels for the card's model."""

    evidence: Evidence
    result: BenchResult
    levels: tuple[PerfLevel, ...]

    @property
    def target(self) -> str:
        return self.result.target.url or self.result.target.kind


def select_bench(model: ModelFacts, evidence: Evidence, warnings: list[str]) -> PerfRun:
    """The load levels of `evidence` that measured `model`; a result that never measured it is an error."""
    result: BenchResult = evidence.result
    refs = {m.name: m for m in result.target.models}
    strict = result.target.kind == "in-process"
    names = list(dict.fromkeys(level.model for level in result.levels))
    mine = {
        n
        for n in names
        if model.is_same(refs.get(n, ModelRef(name=n)), evidence.source, strict=strict, warnings=warnings)
    }
    if not mine:
        measured = ", ".join(names) or "no model"
        raise CardError(f"--bench {evidence.source} has no measurements of {model.name} (it measured {measured})")
    levels = []
    for level in result.levels:
        if level.model not in mine:
            continue
        summary = summarize(level, result.config.slo)
        ttfts = [v for s in level.samples if s.ok and (v := ttft_ms(s)) is not None]
        ci = bootstrap_ci(ttfts, np.median, seed=result.config.seed)
        levels.append(PerfLevel(level, summary, ci))
    if not result.complete:
        warnings.append(f"{evidence.source}: the benchmark was interrupted; only its finished levels are shown")
    return PerfRun(evidence, result, tuple(levels))


def _bench_dataset_args(run: PerfRun) -> dict[str, Any] | None:
    r = run.result
    return _clean(
        {
            "workload": r.config.workload,
            "prompt_tokens": r.config.prompt_tokens,
            "max_tokens": r.config.max_tokens,
            "seed": r.config.seed,
            "threads": r.config.threads,
            "target": r.target.kind,
            "cpu": r.platform.cpu,
            "measured_at": r.created_at.isoformat(),
            "result_sha256": run.evidence.sha256,
        }
    )


def bench_eval_results(run: PerfRun) -> list[EvalResult]:
    out: list[EvalResult] = []
    args = _bench_dataset_args(run)
    for pl in run.levels:
        s = pl.summary
        common: dict[str, Any] = {
            "task_type": TASK_TYPE,
            "task_name": PERF_TASK,
            "dataset_type": PERF_DATASET,
            "dataset_name": f"lokal bench workload {run.result.config.workload}",
            "dataset_config": f"{run.result.config.workload} @ {run.target}",
            "dataset_split": pl.level.label,
            "dataset_args": args,
        }
        figures: list[tuple[str, str, float | None, dict[str, Any]]] = [
            (
                "ttft_p50_ms",
                "TTFT p50 (ms)",
                s.ttft_ms.p50,
                {"ci_low": pl.ttft_ci[0], "ci_high": pl.ttft_ci[1], "confidence": 0.95}
                if _finite(pl.ttft_ci[0]) and _finite(pl.ttft_ci[1])
                else {},
            ),
            ("ttft_p99_ms", "TTFT p99 (ms)", s.ttft_ms.p99, {}),
            ("output_tokens_per_s", "Output tokens/s", s.output_token_throughput, {}),
            ("requests_per_s", "Requests/s", s.request_throughput, {}),
        ]
        for metric_type, name, value, extra in figures:
            if not _finite(value):
                continue
            metric_args = {"n": s.completed, **{k: yaml_number(v) for k, v in extra.items() if _finite(v)}}
            out.append(
                EvalResult(
                    **common,
                    metric_type=metric_type,
                    metric_name=name,
                    metric_value=yaml_number(value),
                    metric_args=_clean(metric_args),
                )
            )
    return out


# --- audit -------------------------------------------------------------------------------------------------------


def select_audit(model: ModelFacts, evidence: Evidence, warnings: list[str]) -> AuditResult:
    audit: AuditResult = evidence.result
    if not model.is_same(audit.model, evidence.source, strict=audit.target == "in-process", warnings=warnings):
        raise CardError(f"--audit {evidence.source} measured {audit.model.name}, not {model.name}")
    return audit


def dataset_revision(suite: SuiteResult) -> str | None:
    ds = suite.dataset
    return ds.revision or (f"sha256:{ds.sha256}" if ds.sha256 else None)


def suite_title(suite: SuiteResult) -> str:
    return suites.suite_title(suite.suite)


def metric_label(metric: Metric) -> str:
    return f"{metric.name} ({metric.group})" if metric.group else metric.name


def metric_args(m: Metric) -> dict[str, Any] | None:
    """What a bias or fairness figure needs beside its value: how it was scored, over how many items, its
    interval, the group it is for, the value without bias, its unit."""
    args: dict[str, Any] = {"scoring": m.scoring, "n": m.n, "group": m.group, "unit": m.unit}
    if _finite(m.ci_low) and _finite(m.ci_high):
        args.update(
            ci_low=yaml_number(m.ci_low),
            ci_high=yaml_number(m.ci_high),
            confidence=yaml_number(m.confidence),
        )
    if _finite(m.ideal):
        args["ideal"] = yaml_number(m.ideal)
    return _clean(args)


def audit_eval_results(audit: AuditResult, evidence: Evidence) -> list[EvalResult]:
    out: list[EvalResult] = []
    for suite in audit.suites:
        ds = suite.dataset
        dataset_args = _clean(
            {
                "sha256": ds.sha256,
                "items": ds.items,
                "total": ds.total,
                "license": ds.license,
                "url": ds.url,
                "seed": audit.seed,
                "limit": audit.limit,
                "bootstrap_resamples": audit.bootstrap_resamples,
                "measured_at": audit.created_at.isoformat(),
                "target": audit.target,
                "result_sha256": evidence.sha256,
            }
        )
        for m in suite.metrics:
            if not _finite(m.value):
                continue
            out.append(
                EvalResult(
                    task_type=TASK_TYPE,
                    task_name=f"Bias probe: {suite_title(suite)}",
                    dataset_type=suite.suite,
                    dataset_name=ds.name,
                    dataset_revision=dataset_revision(suite),
                    dataset_args=dataset_args,
                    metric_type=m.name,
                    metric_name=metric_label(m),
                    metric_value=yaml_number(m.value),
                    metric_args=metric_args(m),
                )
            )
    return out


# --- group fairness ----------------------------------------------------------------------------------------------

FAIRNESS_TASK = "Group fairness of predictions (lokal audit fairness)"
FAIRNESS_DATASET = "labelled-predictions"


def fairness_metrics(result: FairnessResult) -> list[Metric]:
    """Every figure of a fairness result: overall rates, each group's rates, then the gaps of each breakdown."""
    out = list(result.overall)
    for b in result.breakdowns:
        out += [m for g in b.groups for m in g.metrics]
    for b in result.breakdowns:
        out += b.disparities
    return out


def fairness_eval_results(result: FairnessResult, evidence: Evidence) -> list[EvalResult]:
    src = result.source
    dataset_args = _clean(
        {
            "sha256": src.sha256,
            "rows": src.rows,
            "label": src.label,
            "prediction": src.prediction,
            "groups": ", ".join(src.groups),
            "positive": src.positive,
            "seed": result.seed,
            "bootstrap_resamples": result.bootstrap_resamples,
            "fairlearn_version": result.fairlearn_version,
            "measured_at": result.created_at.isoformat(),
            "result_sha256": evidence.sha256,
        }
    )
    return [
        EvalResult(
            task_type=TASK_TYPE,
            task_name=FAIRNESS_TASK,
            dataset_type=FAIRNESS_DATASET,
            dataset_name=Path(src.path).name,
            dataset_revision=f"sha256:{src.sha256}",
            dataset_args=dataset_args,
            metric_type=m.name,
            metric_name=metric_label(m),
            metric_value=yaml_number(m.value),
            metric_args=metric_args(m),
        )
        for m in fairness_metrics(result)
        if _finite(m.value)
    ]


# --- shared --------------------------------------------------------------------------------------------------------


def excludes_ideal(metric: Metric) -> bool:
    """True when the interval lies wholly on one side of the unbiased value: a measured difference."""
    if not (_finite(metric.ideal) and _finite(metric.ci_low) and _finite(metric.ci_high)):
        return False
    return not (metric.ci_low <= metric.ideal <= metric.ci_high)


# --- the whole front matter --------------------------------------------------------------------------------------

_SHARED = ("task_name", "dataset_name", "dataset_args", "source_name", "source_url")


def check_model_index(results: Sequence[EvalResult], origins: Sequence[str]) -> None:
    """Refuse results huggingface_hub would merge into one model-index entry while they disagree on the
    entry's task or dataset fields (the later ones would be silently replaced by the first)."""
    first: dict[tuple[Any, ...], tuple[EvalResult, str]] = {}
    for result, origin in zip(results, origins, strict=True):
        key = result.unique_identifier
        if key not in first:
            first[key] = (result, origin)
            continue
        seen, seen_origin = first[key]
        differs = [f for f in _SHARED if getattr(seen, f) != getattr(result, f)]
        if differs:
            raise CardError(
                f"{origin} and {seen_origin} both report {result.dataset_name}"
                f"{' ' + result.dataset_split if result.dataset_split else ''} with different "
                f"{', '.join(differs)}: a card holds one measurement of each; pass one of them"
            )


def labelled_figures(audits: Sequence[AuditResult], fairness: Sequence[FairnessResult]) -> list[tuple[str, Metric]]:
    """Every bias and fairness figure with the name of what measured it ("CrowS-Pairs", "Group fairness (x.csv)")."""
    out = [(suite_title(s), m) for a in audits for s in a.suites for m in s.metrics]
    out += [(f"Group fairness ({Path(f.source.path).name})", m) for f in fairness for m in fairness_metrics(f)]
    return out
