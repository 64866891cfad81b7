"""What the multiple-choice suites (WinoBias, Winogender, BBQ) share: scoring a prompt's candidate
continuations by log-likelihood, the seeded `--limit` sample, the figures with their bootstrap intervals, and
the `DatasetRef` naming exactly which files were read.

Scoring follows lm-evaluation-harness's `multiple_choice` output type: the model's answer is the candidate
continuation with the highest summed log-probability given the prompt (no length normalisation, lm-eval's
`acc`). The `Scorer` only gives the log-probabilities of a whole text, so a continuation's log-likelihood is
LL(prompt + continuation) − LL(prompt): equal to the sum over the continuation's own tokens whenever the
tokenizer splits at the boundary (the continuations start with a space, so BPE vocabularies do), and still the
log-probability of the continuation's text given the prompt's text when it does not.
"""

from __future__ import annotations

import csv
import hashlib
import math
import random
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from lokal.audit.result import DatasetRef, Metric
from lokal.audit.scorers import require_likelihood as require_likelihood  # the refusal all suites give
from lokal.audit.stats import bootstrap_paired_ci
from lokal.audit.suite import AuditError, Progress, RawLog, Scorer

T = TypeVar("T")

SCORING = "log-likelihood"


# -- scoring --------------------------------------------------------------------------------------------
def loglikelihood(scorer: Scorer, text: str) -> float:
    """Summed natural-log probability of every token of `text` that has a context (the first one has none)."""
    return math.fsum(t.logprob for t in scorer.score(text) if t.logprob is not None)


@dataclass(frozen=True)
class ChoiceScores:
    prompt_ll: float
    choice_lls: tuple[float, ...]  # LL of each continuation given the prompt

    @property
    def pick(self) -> int:
        """Index of the most likely continuation; a tie goes to the first (numpy's argmax)."""
        return int(np.argmax(self.choice_lls))


def score_choices(scorer: Scorer, prompt: str, continuations: Sequence[str]) -> ChoiceScores:
    """Log-likelihood of each continuation given `prompt` (one pass for the prompt, one per continuation)."""
    base = loglikelihood(scorer, prompt)
    return ChoiceScores(base, tuple(loglikelihood(scorer, prompt + c) - base for c in continuations))


class ChoiceItem(Protocol):
    @property
    def prompt(self) -> str: ...

    @property
    def continuations(self) -> Sequence[str]: ...


ItemT = TypeVar("ItemT", bound=ChoiceItem)


def score_items(
    scorer: Scorer,
    items: Sequence[ItemT],
    *,
    suite: str,
    raw: RawLog,
    progress: Progress | None,
    record: Callable[[ItemT], dict[str, Any]],
) -> list[tuple[ItemT, ChoiceScores]]:
    """Score every item's continuations in order; write each raw record before it counts (the suite's `record`
    fields around the shared ones: prompt, choices, log-likelihoods, pick) and report progress."""
    scored: list[tuple[ItemT, ChoiceScores]] = []
    for done, item in enumerate(items, start=1):
        scores = score_choices(scorer, item.prompt, item.continuations)
        raw.write(
            {
                "suite": suite,
                "prompt": item.prompt,
                "choices": list(item.continuations),
                "prompt_loglikelihood": scores.prompt_ll,
                "loglikelihoods": list(scores.choice_lls),
                "pick": scores.pick,
                **record(item),
            }
        )
        scored.append((item, scores))
        if progress:
            progress(done, len(items))
    return scored


# -- --limit ------------------------------------------------------------------------------------------------
def stratified_sample(items: Sequence[T], key: Callable[[T], Hashable], k: int, rng: random.Random) -> list[T]:
    """`k` items drawn without replacement, spread evenly over the strata `key` defines (round robin over the
    strata in a seeded order, each stratum in a seeded order), returned in file order. Even allocation, not
    proportional: a quick run should still see every stratum (every BBQ category, both WinoBias types) rather
    than reproduce the file's mix, so the overall figure of a limited run weights strata equally."""
    if k >= len(items):
        return list(items)
    strata: dict[Hashable, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        strata[key(item)].append(i)
    queues = list(strata.values())
    for queue in queues:
        rng.shuffle(queue)
    rng.shuffle(queues)
    picked: list[int] = []
    while len(picked) < k:
        for queue in queues:
            if queue and len(picked) < k:
                picked.append(queue.pop())
    return [items[i] for i in sorted(picked)]


class _InUnit(Protocol):
    @property
    def unit(self) -> str: ...


U = TypeVar("U", bound=_InUnit)


def units_of(items: Sequence[U]) -> list[list[U]]:
    """Items grouped by their `unit` (a pro/anti pair, a he/she/they triple), units in first-seen order."""
    units: dict[str, list[U]] = {}
    for item in items:
        units.setdefault(item.unit, []).append(item)
    return list(units.values())


def sample_units(
    units: Sequence[Sequence[T]], key: Callable[[Sequence[T]], Hashable], limit: int | None, rng: random.Random
) -> list[T]:
    """The items of a seeded, stratified sample of whole units (pairs, triples) holding about `limit` items:
    sampling units, not items, keeps every gap paired."""
    if limit is not None:
        n_items = sum(len(u) for u in units)
        units = stratified_sample(units, key, max(1, limit * len(units) // max(1, n_items)), rng)
    return [item for unit in units for item in unit]


# -- figures ------------------------------------------------------------------------------------------------
def estimate(
    columns: Sequence[Sequence[float]], statistic: Callable[..., float], *, seed: int, scale: float = 1.0
) -> tuple[float | None, float | None, float | None]:
    """(value, ci_low, ci_high) of `statistic` over aligned per-unit columns, times `scale` (100 for a share
    reported in %). Whole rows are resampled together (`bootstrap_paired_ci`), so items that share a unit (a
    pro/anti pair, a he/she/they triple) stay together: a cluster bootstrap, which is the paired bootstrap when
    a unit holds one item of each group. None where a figure or interval is undefined."""
    arrays = [np.asarray(c, dtype=float) for c in columns]
    if arrays[0].size == 0:
        return None, None, None
    value = statistic(*arrays)
    low, high = bootstrap_paired_ci(arrays, statistic, seed=seed)

    def scaled(x: float | None) -> float | None:
        return None if x is None or not math.isfinite(x) else float(x) * scale

    return scaled(value), scaled(low), scaled(high)


def ratio(num: np.ndarray, den: np.ndarray) -> float:
    """Σnum / Σden over the (resampled) units; NaN when no unit has an item of the group."""
    total = float(den.sum())
    return float(num.sum()) / total if total else math.nan


def ratio_gap(num_a: np.ndarray, den_a: np.ndarray, num_b: np.ndarray, den_b: np.ndarray) -> float:
    return ratio(num_a, den_a) - ratio(num_b, den_b)


@dataclass(frozen=True)
class Resolved:
    """One scored pronoun-resolution item: its unit (the items that differ only in the pronoun), whether the
    model picked the gold referent, and the tags that place it in groups ("male", "pro-stereotypical"...)."""

    unit: str
    correct: bool
    tags: frozenset[str] = field(default_factory=frozenset)


def _columns(items: Sequence[Resolved], groups: Sequence[tuple[str, ...]]) -> tuple[list[list[float]], int]:
    """Per-unit (correct, count) columns for each group, over the units holding an item of any of them (a
    unit without one would only add empty resamples), and how many such units there are."""
    units: dict[str, list[float]] = {}
    for item in items:
        for g, tags in enumerate(groups):
            if all(t in item.tags for t in tags):
                row = units.setdefault(item.unit, [0.0] * (2 * len(groups)))
                row[2 * g] += item.correct
                row[2 * g + 1] += 1
    rows = list(units.values())
    return [[row[c] for row in rows] for c in range(2 * len(groups))], len(rows)


def _label(tags: tuple[str, ...]) -> str:
    return "/".join(tags)


def resolution_metrics(
    items: Sequence[Resolved],
    *,
    groups: Iterable[tuple[str, ...]],
    gaps: Iterable[tuple[tuple[str, ...], tuple[str, ...]]],
    seed: int,
    unit_name: str,
) -> list[Metric]:
    """Accuracy overall and per group (a group = items carrying all of its tags), and accuracy gaps between
    groups (A − B), each with a 95% percentile bootstrap that resamples whole units (the items that differ
    only in the pronoun). Groups without items are left out."""
    metrics: list[Metric] = []
    for tags in [(), *groups]:
        columns, n_units = _columns(items, [tags])
        n = int(sum(columns[1]))
        if not n:
            continue
        value, low, high = estimate(columns, ratio, seed=seed, scale=100)
        metrics.append(
            Metric(
                name="accuracy",
                value=value,
                ci_low=low,
                ci_high=high,
                n=n,
                group=_label(tags) or None,
                scoring=SCORING,
                unit="%",
                description=(
                    "share of pronouns resolved to the gold referent; 95% percentile bootstrap over "
                    f"{n_units} {unit_name}"
                ),
            )
        )
    for a, b in gaps:
        columns, n_units = _columns(items, [a, b])
        n_a, n_b = int(sum(columns[1])), int(sum(columns[3]))
        if not n_a or not n_b:
            continue
        value, low, high = estimate(columns, ratio_gap, seed=seed, scale=100)
        metrics.append(
            Metric(
                name="accuracy_gap",
                value=value,
                ci_low=low,
                ci_high=high,
                n=n_a + n_b,
                group=f"{_label(a)} − {_label(b)}",
                scoring=SCORING,
                ideal=0.0,
                unit="percentage points",
                description=(
                    f"accuracy on {_label(a)} ({n_a}) minus accuracy on {_label(b)} ({n_b}); > 0: the model does "
                    f"better on {_label(a)}; 95% percentile bootstrap over {n_units} {unit_name}, each resampled "
                    "whole (a paired bootstrap where a unit holds one item of each side)"
                ),
            )
        )
    return metrics


# -- datasets -----------------------------------------------------------------------------------------------
def locate(data: Path | None, suite: str, expected: str) -> Path:
    """The path a suite reads: `data` itself, or `data/<suite>` when `data` is a root holding several datasets
    (as lokal's shared data folder does). No path, or one that does not exist, is an AuditError that says what
    the suite expects."""
    if data is None:
        raise AuditError(f"the {suite} suite reads its dataset from a path you give: add --data PATH ({expected})")
    path = Path(data)
    if not path.exists():
        raise AuditError(f"--data {path}: no such file or folder; the {suite} suite expects {expected}")
    nested = path / suite
    return nested if nested.is_dir() else path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: Recognised licence texts -> SPDX id (checked in this order: "ShareAlike" before plain "Attribution").
_LICENCES = (
    ("Attribution-ShareAlike 4.0 International", "CC-BY-SA-4.0"),
    ("Attribution 4.0 International", "CC-BY-4.0"),
    ("MIT License", "MIT"),
    ("Permission is hereby granted, free of charge", "MIT"),
)


def _licence(folder: Path) -> str | None:
    for candidate in (folder / "_source" / "LICENSE", folder / "LICENSE", folder / "LICENSE.txt"):
        try:
            head = candidate.read_text(encoding="utf-8", errors="replace")[:2000]
        except OSError:
            continue
        for marker, spdx in _LICENCES:
            if marker in head:
                return spdx
    return None


def _manifest_rows(folder: Path) -> dict[str, dict[str, str]]:
    """Rows of a MANIFEST.tsv (lokal's shared data layout: sha256, source_repo, source_commit...) in the
    folder or up to two levels above it, keyed by sha256."""
    for where in (folder, folder.parent, folder.parent.parent):
        manifest = where / "MANIFEST.tsv"
        if manifest.is_file():
            try:
                with manifest.open(encoding="utf-8", newline="") as f:
                    return {row["sha256"]: row for row in csv.DictReader(f, delimiter="\t") if row.get("sha256")}
            except (OSError, KeyError, csv.Error):
                return {}
    return {}


def dataset_ref(
    name: str,
    given: Path,
    files: Sequence[Path],
    *,
    items: int,
    total: int,
    license: str,
    url: str,
) -> tuple[DatasetRef, list[str]]:
    """The result's record of the data, and notes listing each file's sha256.

    `sha256` is the file's own digest when one file was read, else the digest of a `sha256sum`-style listing
    of every file read (sorted by name), so one string names the exact bytes measured. Revision and source
    come from a MANIFEST.tsv beside the data when it lists these digests; the licence from the licence file
    shipped with the data, else the licence the dataset is published under (`license`)."""
    folder = given if given.is_dir() else given.parent
    digests = {f: sha256_file(f) for f in files}
    names = {f: f.name for f in files}
    if len(files) == 1:
        combined = digests[files[0]]
    else:
        listing = "".join(f"{digests[f]}  {names[f]}\n" for f in sorted(files, key=lambda p: p.name))
        combined = hashlib.sha256(listing.encode()).hexdigest()
    rows = _manifest_rows(folder)
    found = [rows[d] for d in digests.values() if d in rows]
    revision = None
    if found and len(found) == len(files) and len({r.get("source_commit") for r in found}) == 1:
        revision = found[0].get("source_commit") or None
        repo = found[0].get("source_repo")
        url = f"https://github.com/{repo}" if repo else url
    ref = DatasetRef(
        name=name,
        path=str(given),
        sha256=combined,
        revision=revision,
        license=_licence(folder) or license,
        url=url,
        items=items,
        total=total,
    )
    notes = [f"sha256 {digests[f]}  {names[f]}" for f in sorted(files, key=lambda p: p.name)]
    if len(files) > 1:
        notes.insert(0, "dataset sha256 is the sha256 of the sha256sum listing of the files below")
    return ref, notes
