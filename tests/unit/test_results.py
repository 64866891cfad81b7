"""lokal.results: the shared result base, save and read, and the kinds a report reads by a file's `kind`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from lokal.results import Result, ResultError, ResultKind, ResultKinds, peek_kind, read_result, save


class Apples(Result):
    schema_version: Literal[1] = 1
    kind: Literal["apples"] = "apples"
    count: int


class Pears(Result):
    schema_version: Literal[1] = 1
    kind: Literal["pears"] = "pears"
    ripe: bool = True


def _apples(path: Path) -> Apples:
    return read_result(path, Apples, kind="apples", noun="apple count", version=1)


def _pears(path: Path) -> Pears:
    return read_result(path, Pears, kind="pears", noun="pear list", version=1)


KINDS = ResultKinds(
    ResultKind(kind="apples", load=_apples, sections=lambda rs: ()),
    ResultKind(kind="pears", load=_pears, sections=lambda rs: ()),
    reader="the fruit report",
)


def test_saved_results_keep_schema_version_and_kind_first_and_read_back(tmp_path: Path) -> None:
    path = save(Apples(count=3), tmp_path / "a.json")
    assert path.read_text(encoding="utf-8").startswith('{\n "schema_version": 1,\n "kind": "apples",')
    assert peek_kind(path) == "apples"
    assert KINDS.load(path) == Apples(count=3)
    assert KINDS.load(save(Pears(), tmp_path / "p.json")) == Pears()


def test_another_kind_is_refused_with_the_kinds_the_reader_reads(tmp_path: Path) -> None:
    other = tmp_path / "plums.json"
    other.write_text('{"kind": "plums", "schema_version": 1}', encoding="utf-8")
    with pytest.raises(ResultError, match=r"holds a 'plums' result; the fruit report renders apples and pears results"):
        KINDS.load(other)


def test_a_file_without_a_readable_kind_goes_to_the_first_loader_which_says_why(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    assert peek_kind(broken) is None and peek_kind(tmp_path / "missing.json") is None
    with pytest.raises(ResultError, match=r"broken.json is not JSON \(line 1"):
        KINDS.load(broken)
    with pytest.raises(ResultError, match="no apple count at"):
        KINDS.load(tmp_path / "missing.json")
