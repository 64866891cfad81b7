"""Group fairness of given predictions: `lokal audit fairness FILE --label COL --prediction COL --group COL ...`.

No model is involved: the file holds a true label, a prediction and one or more sensitive columns per row (a
classifier's output, a human decision log, a probe's answers). The figures are fairlearn's, not lokal's own
re-implementation: `MetricFrame` for per-group accuracy, selection rate, false positive and false negative rates,
and `demographic_parity_difference` / `demographic_parity_ratio` / `equalized_odds_difference` for the gaps.
Several `--group` columns give each column's groups and their intersection ("sex=female, race=black").

Intervals are percentile bootstraps (`lokal.audit.stats`, seeded): a group's rate resamples the rows it is computed
over (the group's rows; its label-negative rows for the false positive rate...), a gap resamples the rows of the
whole file. The gaps are recomputed per resample from confusion counts with fairlearn's definitions (a group absent
from a resample is left out of it, as fairlearn would leave it out of that data), because building 1,000
`MetricFrame`s would take minutes; the unit tests check the two agree on the full data.

Rows without a group value are not dropped (fairlearn refuses missing sensitive values): they form the group
"(missing)", with a warning. Labels must be binary, or `--positive V` names the positive outcome (every other
value is negative).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
from pydantic import Field

from lokal._version import __version__
from lokal.audit.result import Metric
from lokal.audit.stats import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, bootstrap_ci, bootstrap_paired_ci
from lokal.audit.suite import AuditError
from lokal.results import Frozen, Result, read_result, save

__all__ = [
    "MISSING",
    "Breakdown",
    "FairnessResult",
    "FairnessSource",
    "GroupRow",
    "Table",
    "assess",
    "evaluate",
    "load",
    "read_table",
    "save",
]

SCHEMA_VERSION: Final = 1
MISSING = "(missing)"

#: Outcome spellings understood without --positive (compared lower-case, integral numbers as integers).
POSITIVE_WORDS = frozenset({"1", "true", "yes", "y", "positive", "pos"})
NEGATIVE_WORDS = frozenset({"0", "-1", "false", "no", "n", "negative", "neg"})


# --- the saved result --------------------------------------------------------------------------------------------


class FairnessSource(Frozen):
    path: str
    sha256: str
    format: Literal["csv", "jsonl"]
    rows: int
    label: str
    prediction: str
    groups: list[str]
    positive: str = Field(description="the label value counted as the positive outcome")


class GroupRow(Frozen):
    group: str  # "female", or "sex=female, race=black" for an intersection
    values: dict[str, str]  # column -> value
    count: int
    metrics: list[Metric]  # accuracy, selection_rate, false_positive_rate, false_negative_rate


class Breakdown(Frozen):
    columns: list[str]
    intersectional: bool
    groups: list[GroupRow]
    disparities: list[Metric]  # demographic_parity_difference, demographic_parity_ratio, equalized_odds_difference


class FairnessResult(Result):
    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["fairness"] = "fairness"
    lokal_version: str
    created_at: datetime
    source: FairnessSource
    seed: int
    bootstrap_resamples: int
    confidence: float
    fairlearn_version: str
    overall: list[Metric]
    breakdowns: list[Breakdown]
    warnings: list[str] = Field(default_factory=list)


def load(path: str | os.PathLike[str]) -> FairnessResult:
    """Read a fairness result, with a message that names the file and what is wrong with it."""
    return read_result(path, FairnessResult, kind="fairness", noun="fairness result", version=SCHEMA_VERSION)


# --- reading the file --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    path: Path
    format: Literal["csv", "jsonl"]
    columns: list[str]
    rows: list[dict[str, Any]]
    lines: list[int]  # the file line each row starts on, for messages
    sha256: str


def _detect_format(path: Path, head: str) -> Literal["csv", "jsonl"]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv", ".tab"):
        return "csv"
    return "jsonl" if head.lstrip().startswith("{") else "csv"


def _read_csv(path: Path, text: str) -> tuple[list[str], list[dict[str, Any]], list[int]]:
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    reader = csv.DictReader(text.splitlines(keepends=True), delimiter=delimiter)
    try:
        header = reader.fieldnames
        if not header:
            raise AuditError(f"{path} is empty: a CSV file needs a header row naming its columns")
        columns = [c.strip() for c in header]
        duplicates = sorted({c for c in columns if columns.count(c) > 1})
        if duplicates:
            raise AuditError(f"{path}: the header names {', '.join(map(repr, duplicates))} more than once")
        rows: list[dict[str, Any]] = []
        lines: list[int] = []
        start = reader.line_num + 1
        for row in reader:
            if None in row:
                raise AuditError(f"{path}: line {start} has more fields than the header ({len(columns)})")
            rows.append({c.strip(): v for c, v in row.items()})
            lines.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise AuditError(f"{path}: line {reader.line_num}: {exc}") from None
    return columns, rows, lines


def _read_jsonl(path: Path, text: str) -> tuple[list[str], list[dict[str, Any]], list[int]]:
    columns: dict[str, None] = {}
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AuditError(f"{path}: line {number} is not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise AuditError(f"{path}: line {number} is not a JSON object")
        columns.update(dict.fromkeys(record))
        rows.append(record)
        lines.append(number)
    return list(columns), rows, lines


def read_table(path: str | os.PathLike[str]) -> Table:
    """Rows of a CSV (header row; .tsv is tab-separated) or JSON Lines file; the format from the extension, else
    from the first character."""
    source = Path(path)
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise AuditError(f"no such file: {source}") from None
    except OSError as exc:
        raise AuditError(f"cannot read {source}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AuditError(f"{source} is not UTF-8 text (byte {exc.start})") from None
    fmt = _detect_format(source, text[:64])
    columns, rows, lines = _read_csv(source, text) if fmt == "csv" else _read_jsonl(source, text)
    if not rows:
        raise AuditError(f"{source} has no data rows")
    return Table(source, fmt, columns, rows, lines, hashlib.sha256(data).hexdigest())


def _text(value: Any) -> str | None:
    """A cell as text; None for a missing value (absent, JSON null, empty or blank text, NaN)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _canonical(value: str) -> str:
    """Lower case, and integral numbers as integers ("1.0" -> "1"), to recognise outcome spellings."""
    lowered = value.lower()
    try:
        number = float(lowered)
    except ValueError:
        return lowered
    return str(int(number)) if number.is_integer() else lowered


def _quoted(values: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def binarize(
    labels: Sequence[str], predictions: Sequence[str], positive: str | None, *, where: str
) -> tuple[np.ndarray, np.ndarray, str, list[str]]:
    """(y_true, y_pred as 0/1, the positive value, warnings). Without `positive` the values must spell a binary
    outcome (0/1, true/false, yes/no, positive/negative); with it, `positive` is 1 and every other value 0."""
    notes: list[str] = []
    seen = sorted(set(labels) | set(predictions))
    if positive is not None:
        if positive not in seen:
            raise AuditError(f"{where}: --positive {positive!r} is not among the values ({_quoted(seen)})")
        if len(seen) > 2:
            notes.append(
                f"{len(seen)} outcome values ({_quoted(seen)}): {positive!r} counts as positive and every other value "
                "as negative, so accuracy is of that yes/no outcome"
            )
        return (
            np.array([v == positive for v in labels], dtype=int),
            np.array([v == positive for v in predictions], dtype=int),
            positive,
            notes,
        )
    canon = {v: _canonical(v) for v in seen}
    unknown = [v for v in seen if canon[v] not in POSITIVE_WORDS | NEGATIVE_WORDS]
    if unknown:
        if len(seen) == 2:
            raise AuditError(
                f"{where}: cannot tell which of {_quoted(seen)} is the positive outcome; name it with --positive"
            )
        raise AuditError(
            f"{where}: the outcomes are not binary ({len(seen)} values: {_quoted(seen)}); pass --positive VALUE to "
            "count VALUE as positive and every other value as negative"
        )
    positives = sorted({v for v in seen if canon[v] in POSITIVE_WORDS})
    return (
        np.array([canon[v] in POSITIVE_WORDS for v in labels], dtype=int),
        np.array([canon[v] in POSITIVE_WORDS for v in predictions], dtype=int),
        "/".join(positives) if positives else "1",
        notes,
    )


# --- figures -----------------------------------------------------------------------------------------------------


def _fairlearn() -> Any:
    try:
        import fairlearn
        import fairlearn.metrics
    except ImportError:  # pragma: no cover - a dependency of lokal's audit
        raise AuditError("lokal audit fairness needs fairlearn: pip install fairlearn==0.15.0") from None
    return fairlearn


def _group_rates(y_true: np.ndarray, y_pred: np.ndarray, codes: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """(selection rate, true positive rate, false positive rate) of every group present, from confusion counts,
    as fairlearn defines them (a rate with an empty denominator is 0, as scikit-learn's normalised confusion
    matrix makes it)."""
    n = np.bincount(codes, minlength=k).astype(float)
    present = n > 0
    positives = np.bincount(codes, weights=y_true, minlength=k)
    negatives = n - positives
    selected = np.bincount(codes, weights=y_pred, minlength=k)
    true_pos = np.bincount(codes, weights=y_true * y_pred, minlength=k)
    false_pos = selected - true_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr = np.where(positives > 0, true_pos / positives, 0.0)
        fpr = np.where(negatives > 0, false_pos / negatives, 0.0)
    return (selected / np.where(present, n, 1.0))[present], tpr[present], fpr[present]


def disparity_statistics(k: int) -> dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], float]]:
    """The three gaps as functions of (y_true, y_pred, group codes) columns, for the bootstrap."""

    def rates(y_true: np.ndarray, y_pred: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, ...]:
        return _group_rates(y_true, y_pred, codes.astype(np.int64), k)

    def dp_difference(y_true: np.ndarray, y_pred: np.ndarray, codes: np.ndarray) -> float:
        sel = rates(y_true, y_pred, codes)[0]
        return float(sel.max() - sel.min())

    def dp_ratio(y_true: np.ndarray, y_pred: np.ndarray, codes: np.ndarray) -> float:
        sel = rates(y_true, y_pred, codes)[0]
        return float(sel.min() / sel.max()) if sel.max() > 0 else math.nan

    def eo_difference(y_true: np.ndarray, y_pred: np.ndarray, codes: np.ndarray) -> float:
        _, tpr, fpr = rates(y_true, y_pred, codes)
        return float(max(tpr.max() - tpr.min(), fpr.max() - fpr.min()))

    return {
        "demographic_parity_difference": dp_difference,
        "demographic_parity_ratio": dp_ratio,
        "equalized_odds_difference": eo_difference,
    }


_DISPARITY_TEXT = {
    "demographic_parity_difference": (
        0.0,
        "largest difference in selection rate (share predicted positive) between two groups; 0 = parity",
    ),
    "demographic_parity_ratio": (1.0, "smallest selection rate divided by the largest; 1 = parity"),
    "equalized_odds_difference": (
        0.0,
        "the larger of the largest true-positive-rate gap and the largest false-positive-rate gap between groups; "
        "0 = equal error rates",
    ),
}


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _rate_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    values: dict[str, float],
    *,
    group: str | None,
    boot: dict[str, Any],
    warnings: list[str],
) -> list[Metric]:
    """accuracy, selection rate, FPR and FNR of one set of rows: fairlearn's value, an interval over the rows
    each rate is computed over. A rate with no rows to compute it over is reported as None, with a warning."""
    where = "overall" if group is None else f"group {group!r}"
    negatives, positives = y_true == 0, y_true == 1
    specs = (
        ("accuracy", (y_true == y_pred).astype(float), "share of rows where the prediction equals the label"),
        ("selection_rate", y_pred.astype(float), "share of rows predicted positive"),
        ("false_positive_rate", y_pred[negatives].astype(float), "share of label-negative rows predicted positive"),
        ("false_negative_rate", 1.0 - y_pred[positives], "share of label-positive rows predicted negative"),
    )
    out = []
    for name, sample, description in specs:
        value: float | None = values[name]
        if sample.size == 0:
            kind = "negative" if name == "false_positive_rate" else "positive"
            warnings.append(
                f"{where} has no {kind} labels: its {name.replace('_', ' ')} is undefined (reported as none; "
                "fairlearn counts it as 0 in equalized_odds_difference)"
            )
            value = None
        low, high = bootstrap_ci(sample, **boot) if value is not None else (None, None)
        out.append(
            Metric(
                name=name,
                value=value,
                ci_low=low,
                ci_high=high,
                n=int(sample.size),
                confidence=boot["confidence"],
                group=group,
                scoring="labels",
                description=description,
            )
        )
    return out


def _group_label(columns: Sequence[str], key: Any) -> tuple[str, dict[str, str]]:
    parts = key if isinstance(key, tuple) else (key,)
    values = {c: str(v) for c, v in zip(columns, parts, strict=True)}
    if len(columns) == 1:
        return values[columns[0]], values
    return ", ".join(f"{c}={v}" for c, v in values.items()), values


_RATES = ("accuracy", "selection_rate", "false_positive_rate", "false_negative_rate")


def metric_frame(y_true: np.ndarray, y_pred: np.ndarray, features: Any) -> Any:
    """fairlearn's `MetricFrame` with every per-group figure lokal reports."""
    _fairlearn()
    from fairlearn import metrics as fm
    from sklearn.metrics import accuracy_score

    return fm.MetricFrame(
        metrics={
            "accuracy": accuracy_score,
            "selection_rate": fm.selection_rate,
            "false_positive_rate": fm.false_positive_rate,
            "false_negative_rate": fm.false_negative_rate,
            "count": fm.count,
        },
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=features,
    )


def _breakdown(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    sensitive: dict[str, list[str]],
    columns: list[str],
    *,
    boot: dict[str, Any],
    warnings: list[str],
) -> tuple[Breakdown, Any]:
    """One breakdown (a column, or the intersection of several), and its MetricFrame."""
    import pandas as pd

    fairlearn = _fairlearn()
    from fairlearn import metrics as fm

    features = pd.DataFrame({c: sensitive[c] for c in columns})
    frame = metric_frame(y_true, y_pred, features)
    labels = [_group_label(columns, key)[0] for key in zip(*(sensitive[c] for c in columns), strict=True)]
    codes, uniques = pd.factorize(pd.Series(labels))
    code_of = {label: i for i, label in enumerate(uniques)}
    groups: list[GroupRow] = []
    for key, row in frame.by_group.iterrows():
        if not row["count"] or math.isnan(row["count"]):  # a combination no row has (intersections)
            continue
        label, values = _group_label(columns, key)
        mask = codes == code_of[label]
        rates = {name: float(row[name]) for name in _RATES}
        groups.append(
            GroupRow(
                group=label,
                values=values,
                count=int(row["count"]),
                metrics=_rate_metrics(y_true[mask], y_pred[mask], rates, group=label, boot=boot, warnings=warnings),
            )
        )
    point = {
        "demographic_parity_difference": fm.demographic_parity_difference(y_true, y_pred, sensitive_features=features),
        "demographic_parity_ratio": fm.demographic_parity_ratio(y_true, y_pred, sensitive_features=features),
        "equalized_odds_difference": fm.equalized_odds_difference(y_true, y_pred, sensitive_features=features),
    }
    disparities = []
    for name, statistic in disparity_statistics(len(uniques)).items():
        value = _finite(point[name])
        low, high = (None, None)
        if value is not None and len(groups) > 1:
            low, high = bootstrap_paired_ci([y_true, y_pred, codes], statistic, **boot)
        ideal, description = _DISPARITY_TEXT[name]
        disparities.append(
            Metric(
                name=name,
                value=value,
                ci_low=_finite(low),
                ci_high=_finite(high) if _finite(low) is not None else None,
                n=int(y_true.size),
                confidence=boot["confidence"],
                group=" × ".join(columns),
                scoring="labels",
                ideal=ideal,
                description=f"{description} (fairlearn {fairlearn.__version__} {name})",
            )
        )
    if len(groups) < 2:
        warnings.append(f"{' × '.join(columns)}: only one group, so there is no gap to measure")
    return Breakdown(columns=columns, intersectional=len(columns) > 1, groups=groups, disparities=disparities), frame


def assess(
    table: Table,
    *,
    label: str,
    prediction: str,
    groups: Sequence[str],
    positive: str | None = None,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
) -> FairnessResult:
    """Group fairness of `table`'s predictions: overall, per `groups` column, and their intersection."""
    fairlearn = _fairlearn()
    if not groups:
        raise AuditError("name at least one sensitive column with --group")
    groups = list(dict.fromkeys(groups))
    for option, column in [("--label", label), ("--prediction", prediction)] + [("--group", g) for g in groups]:
        if column not in table.columns:
            raise AuditError(
                f"{table.path} has no column {column!r} ({option}); its columns are: {', '.join(table.columns)}"
            )
    labels: list[str] = []
    predictions: list[str] = []
    for row, line in zip(table.rows, table.lines, strict=True):
        for column, out in ((label, labels), (prediction, predictions)):
            value = _text(row.get(column))
            if value is None:
                raise AuditError(f"{table.path}: line {line} has no value in column {column!r}")
            out.append(value)
    warnings: list[str] = []
    y_true, y_pred, positive_value, notes = binarize(labels, predictions, positive, where=str(table.path))
    warnings += notes
    sensitive: dict[str, list[str]] = {}
    for column in groups:
        values = [_text(row.get(column)) for row in table.rows]
        missing = sum(v is None for v in values)
        if missing:
            warnings.append(
                f"column {column!r}: {missing} of {len(values)} rows have no value; they are reported as the group "
                f"{MISSING!r}"
            )
        sensitive[column] = [MISSING if v is None else v for v in values]
    boot = {"resamples": resamples, "confidence": confidence, "seed": seed}
    layouts = [[g] for g in groups] + ([groups] if len(groups) > 1 else [])
    breakdowns: list[Breakdown] = []
    frames = []
    for columns in layouts:
        breakdown, frame = _breakdown(y_true, y_pred, sensitive, columns, boot=boot, warnings=warnings)
        breakdowns.append(breakdown)
        frames.append(frame)
    overall_values = {name: float(frames[0].overall[name]) for name in _RATES}
    overall = _rate_metrics(y_true, y_pred, overall_values, group=None, boot=boot, warnings=warnings)
    return FairnessResult(
        lokal_version=__version__,
        created_at=datetime.now(UTC),
        source=FairnessSource(
            path=str(table.path),
            sha256=table.sha256,
            format=table.format,
            rows=len(table.rows),
            label=label,
            prediction=prediction,
            groups=groups,
            positive=positive_value,
        ),
        seed=seed,
        bootstrap_resamples=resamples,
        confidence=confidence,
        fairlearn_version=fairlearn.__version__,
        overall=overall,
        breakdowns=breakdowns,
        warnings=warnings,
    )


def evaluate(
    path: str | os.PathLike[str],
    *,
    label: str,
    prediction: str,
    groups: Sequence[str],
    positive: str | None = None,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
) -> FairnessResult:
    """`assess` on a CSV or JSON Lines file."""
    return assess(
        read_table(path),
        label=label,
        prediction=prediction,
        groups=groups,
        positive=positive,
        seed=seed,
        resamples=resamples,
        confidence=confidence,
    )
