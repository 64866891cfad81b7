"""Group fairness: figures equal fairlearn's own functions on the same data and hand-computed values on a tiny
table; missing group values, bad columns and non-binary outcomes give a report or a one-line error, never a
traceback; the `lokal audit fairness` command and the saved result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
)
from sklearn.metrics import accuracy_score

from lokal.audit import fairness
from lokal.audit.fairness import MISSING, FairnessResult, evaluate, load, read_table
from lokal.audit.suite import AuditError
from lokal.cli.audit_fairness import fairness as fairness_cmd
from lokal.results import ResultError

# y = true label, p = prediction
TINY = """y,p,sex
1,1,f
1,0,f
0,0,f
0,1,f
1,1,m
1,1,m
0,0,m
0,1,m
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def metric(metrics, name: str):
    return next(m for m in metrics if m.name == name)


def group_row(breakdown, group: str):
    return next(g for g in breakdown.groups if g.group == group)


def test_tiny_table_by_hand(tmp_path: Path) -> None:
    result = evaluate(write(tmp_path, "tiny.csv", TINY), label="y", prediction="p", groups=["sex"], seed=0)
    (by_sex,) = result.breakdowns
    f, m = group_row(by_sex, "f"), group_row(by_sex, "m")
    # f rows (y, p): (1,1) (1,0) (0,0) (0,1)
    #   accuracy: rows 1 and 3 right -> 2/4 = 0.5; selection rate: p = 1 twice -> 2/4 = 0.5
    #   FPR: label-negative rows (0,0) (0,1), one predicted positive -> 1/2; FNR: positives (1,1) (1,0) -> 1/2
    assert f.count == 4
    assert [(x.name, x.value, x.n) for x in f.metrics] == [
        ("accuracy", 0.5, 4),
        ("selection_rate", 0.5, 4),
        ("false_positive_rate", 0.5, 2),
        ("false_negative_rate", 0.5, 2),
    ]
    # m rows: (1,1) (1,1) (0,0) (0,1) -> accuracy 3/4; selection 3/4; FPR 1/2; FNR 0/2
    assert [(x.name, x.value) for x in m.metrics] == [
        ("accuracy", 0.75),
        ("selection_rate", 0.75),
        ("false_positive_rate", 0.5),
        ("false_negative_rate", 0.0),
    ]
    # demographic parity difference = 0.75 - 0.5 = 0.25; ratio = 0.5 / 0.75 = 0.6667
    # equalized odds: TPR f 1/2, m 2/2 -> gap 0.5; FPR gap 0.5 - 0.5 = 0 -> max(0.5, 0) = 0.5
    gaps = {d.name: d for d in by_sex.disparities}
    assert gaps["demographic_parity_difference"].value == pytest.approx(0.25)
    assert gaps["demographic_parity_ratio"].value == pytest.approx(0.5 / 0.75)
    assert gaps["equalized_odds_difference"].value == pytest.approx(0.5)
    assert gaps["demographic_parity_ratio"].ideal == 1.0 and gaps["equalized_odds_difference"].ideal == 0.0
    for d in gaps.values():
        assert d.n == 8 and d.group == "sex" and d.scoring == "labels"
        assert d.ci_low is not None and d.ci_low <= d.value <= d.ci_high
    # overall: accuracy 5/8, selection 5/8, FPR 2/4, FNR 1/4
    assert [(x.name, x.value) for x in result.overall] == [
        ("accuracy", 0.625),
        ("selection_rate", 0.625),
        ("false_positive_rate", 0.5),
        ("false_negative_rate", 0.25),
    ]
    # m's FNR is 0 on each of its 2 positive rows: every resample gives 0
    fnr_m = metric(m.metrics, "false_negative_rate")
    assert (fnr_m.ci_low, fnr_m.ci_high) == (0.0, 0.0)
    assert result.source.positive == "1" and result.source.rows == 8 and result.source.format == "csv"
    assert not result.warnings


def test_figures_equal_fairlearn(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    n = 300
    frame = pd.DataFrame(
        {
            "label": rng.integers(0, 2, n),
            "pred": rng.integers(0, 2, n),
            "sex": rng.choice(["f", "m", "x"], n, p=[0.45, 0.45, 0.1]),
            "age": rng.choice(["young", "old"], n),
        }
    )
    frame.loc[frame["sex"] == "x", "label"] = 1  # a group without label-negative rows: FPR undefined in it
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    result = evaluate(path, label="label", prediction="pred", groups=["sex", "age"], seed=1, resamples=200)
    y, p = frame["label"].to_numpy(), frame["pred"].to_numpy()

    for breakdown in result.breakdowns:
        features = frame[breakdown.columns]
        mf = MetricFrame(
            metrics={
                "accuracy": accuracy_score,
                "selection_rate": selection_rate,
                "false_positive_rate": false_positive_rate,
                "false_negative_rate": false_negative_rate,
            },
            y_true=y,
            y_pred=p,
            sensitive_features=features,
        )
        expected = mf.by_group
        assert len(breakdown.groups) == len(expected)
        for row in breakdown.groups:
            key = tuple(row.values[c] for c in breakdown.columns)
            want = expected.loc[key if len(key) > 1 else key[0]]
            for x in row.metrics:
                if x.value is None:  # undefined rate: fairlearn says 0, lokal says so in a warning
                    assert x.name == "false_positive_rate" and row.values["sex"] == "x" and want[x.name] == 0.0
                else:
                    assert x.value == pytest.approx(want[x.name]), (row.group, x.name)
        gaps = {d.name: d.value for d in breakdown.disparities}
        assert gaps["demographic_parity_difference"] == pytest.approx(
            demographic_parity_difference(y, p, sensitive_features=features)
        )
        assert gaps["demographic_parity_ratio"] == pytest.approx(
            demographic_parity_ratio(y, p, sensitive_features=features)
        )
        assert gaps["equalized_odds_difference"] == pytest.approx(
            equalized_odds_difference(y, p, sensitive_features=features)
        )
        # the bootstrap's statistics, evaluated on the full data, are fairlearn's values too
        labels = features.astype(str).agg("|".join, axis=1)
        codes, uniques = pd.factorize(labels)
        for name, statistic in fairness.disparity_statistics(len(uniques)).items():
            assert statistic(y.astype(float), p.astype(float), codes.astype(float)) == pytest.approx(gaps[name])

    assert [b.columns for b in result.breakdowns] == [["sex"], ["age"], ["sex", "age"]]
    intersection = result.breakdowns[2]
    assert intersection.intersectional and len(intersection.groups) == 6
    assert group_row(intersection, "sex=f, age=old").values == {"sex": "f", "age": "old"}
    assert any("'x' has no negative labels" in w for w in result.warnings)


def test_missing_group_values_are_their_own_group(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "data.jsonl",
        "\n".join(
            json.dumps(r)
            for r in (
                {"y": 1, "p": 1, "race": "a"},
                {"y": 0, "p": 1, "race": None},
                {"y": 1, "p": 0},
                {"y": 0, "p": 0, "race": ""},
                {"y": 1, "p": 1, "race": "b"},
                {"y": 0, "p": 0, "race": "b"},
            )
        )
        + "\n",
    )
    result = evaluate(path, label="y", prediction="p", groups=["race"])
    (breakdown,) = result.breakdowns
    missing = group_row(breakdown, MISSING)
    # null, an absent key and "" -> 3 rows: (0,1) (1,0) (0,0); accuracy 1/3, selection 1/3
    assert missing.count == 3
    assert metric(missing.metrics, "accuracy").value == pytest.approx(1 / 3)
    assert metric(missing.metrics, "selection_rate").value == pytest.approx(1 / 3)
    assert any("3 of 6 rows have no value" in w and MISSING in w for w in result.warnings)
    assert result.source.format == "jsonl"


def test_bad_columns_and_values_are_one_line_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "tiny.csv", TINY)
    with pytest.raises(AuditError, match=r"no column 'gender' \(--group\); its columns are: y, p, sex"):
        evaluate(path, label="y", prediction="p", groups=["gender"])
    with pytest.raises(AuditError, match=r"no column 'pred' \(--prediction\)"):
        evaluate(path, label="y", prediction="pred", groups=["sex"])
    with pytest.raises(AuditError, match=r"line 3 has no value in column 'p'"):
        evaluate(write(tmp_path, "gap.csv", "y,p,sex\n1,1,f\n0,,m\n"), label="y", prediction="p", groups=["sex"])
    with pytest.raises(AuditError, match="line 2 is not JSON"):
        read_table(write(tmp_path, "bad.jsonl", '{"y": 1}\n{"y": \n'))
    with pytest.raises(AuditError, match="line 3 has more fields than the header"):
        read_table(write(tmp_path, "wide.csv", "y,p\n1,1\n1,1,1\n"))
    with pytest.raises(AuditError, match="no data rows"):
        read_table(write(tmp_path, "empty.csv", "y,p,sex\n"))
    with pytest.raises(AuditError, match="no such file"):
        read_table(tmp_path / "nope.csv")


def test_outcomes_must_be_binary_or_named(tmp_path: Path) -> None:
    words = write(tmp_path, "words.csv", "y,p,g\nyes,yes,a\nno,yes,a\nYes,no,b\nno,no,b\n")
    result = evaluate(words, label="y", prediction="p", groups=["g"])
    # yes/no recognised (any case): a: (1,1) (0,1) -> accuracy 1/2; b: (1,0) (0,0) -> 1/2
    assert [metric(g.metrics, "accuracy").value for g in result.breakdowns[0].groups] == [0.5, 0.5]
    assert result.source.positive == "Yes/yes"

    named = write(tmp_path, "named.csv", "y,p,g\napproved,approved,a\ndenied,approved,a\napproved,denied,b\n")
    with pytest.raises(AuditError, match="cannot tell which of 'approved', 'denied' is the positive outcome"):
        evaluate(named, label="y", prediction="p", groups=["g"])
    result = evaluate(named, label="y", prediction="p", groups=["g"], positive="approved")
    assert metric(result.overall, "selection_rate").value == pytest.approx(2 / 3)

    multi = write(tmp_path, "multi.csv", "y,p,g\ncat,cat,a\ndog,cat,a\nbird,dog,b\ncat,bird,b\n")
    with pytest.raises(AuditError, match=r"not binary \(3 values: 'bird', 'cat', 'dog'\).*--positive"):
        evaluate(multi, label="y", prediction="p", groups=["g"])
    with pytest.raises(AuditError, match="--positive 'fish' is not among the values"):
        evaluate(multi, label="y", prediction="p", groups=["g"], positive="fish")
    # one-vs-rest: cat positive. Rows (1,1) (0,1) (0,0) (1,0): accuracy 2/4, a warning that says so
    result = evaluate(multi, label="y", prediction="p", groups=["g"], positive="cat")
    assert metric(result.overall, "accuracy").value == 0.5
    assert any("'cat' counts as positive" in w for w in result.warnings)

    floats = write(tmp_path, "floats.jsonl", '{"y": 1.0, "p": true, "g": 1}\n{"y": 0, "p": false, "g": 2}\n')
    result = evaluate(floats, label="y", prediction="p", groups=["g"])
    assert metric(result.overall, "accuracy").value == 1.0
    assert [g.group for g in result.breakdowns[0].groups] == ["1", "2"]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(fairness_cmd, list(args), catch_exceptions=True)


def test_cli_text_json_and_saved_result(tmp_path: Path) -> None:
    path = write(tmp_path, "tiny.csv", TINY)
    text = invoke(str(path), "--label", "y", "--prediction", "p", "--group", "sex", "--resamples", "200")
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert "By sex" in lines
    header = lines.index("By sex") + 1
    assert lines[header].split()[:3] == ["GROUP", "N", "ACCURACY"]
    assert lines[header + 1].startswith("f ") and " 0.500 [" in lines[header + 1]
    assert any(line.strip().startswith("demographic parity difference: 0.250 [") for line in lines)

    out = tmp_path / "out" / "fair.json"
    shown = invoke(str(path), "--label", "y", "--prediction", "p", "--group", "sex", "--json", "-o", str(out))
    assert shown.exit_code == 0, shown.output
    printed = json.loads(shown.stdout)  # "saved ..." went to stderr
    assert printed["kind"] == "fairness" and printed["schema_version"] == 1
    assert f"saved {out}" in shown.stderr
    saved = load(out)
    assert isinstance(saved, FairnessResult) and saved.model_dump(mode="json") == printed
    assert saved.source.sha256 == fairness.hashlib.sha256(path.read_bytes()).hexdigest()

    bad = invoke(str(path), "--label", "y", "--prediction", "p", "--group", "gender")
    assert bad.exit_code == 1 and isinstance(bad.exception, AuditError)
    assert "its columns are: y, p, sex" in str(bad.exception)


def test_load_refuses_other_files(tmp_path: Path) -> None:
    with pytest.raises(ResultError, match="not a lokal fairness result"):
        load(write(tmp_path, "bench.json", '{"kind": "bench", "schema_version": 1}'))
    with pytest.raises(ResultError, match="schema version 2"):
        load(write(tmp_path, "v2.json", '{"kind": "fairness", "schema_version": 2}'))
    with pytest.raises(ResultError, match="malformed"):
        load(write(tmp_path, "half.json", '{"kind": "fairness", "schema_version": 1}'))
