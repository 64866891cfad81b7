"""The suite registry: every spec's module runs under the spec's name, the derived lists are what the CLI and the
refusals name, and an unknown suite in a result keeps its name as its title."""

from __future__ import annotations

import importlib
import inspect

import pytest

from lokal.audit import suites
from lokal.audit.suites import SUITE_SPECS, suite_runner, suite_title


@pytest.mark.parametrize("name", list(SUITE_SPECS))
def test_each_suite_module_has_the_registered_name_and_a_run(name: str) -> None:
    module = importlib.import_module(SUITE_SPECS[name].module)
    assert name == module.NAME
    run = suite_runner(name)
    assert run is module.run
    assert {"data", "limit", "seed", "raw", "progress"} <= set(inspect.signature(run).parameters)


def test_the_derived_lists() -> None:
    assert suites.SUITES == ("occupations", "crows-pairs", "winobias", "winogender", "bbq", "generation")
    assert suites.BUILT_IN == ("occupations", "generation")
    assert suites.NEEDS_DATA == ("crows-pairs", "winobias", "winogender", "bbq")
    assert suites.LIKELIHOOD_SUITES == ("occupations", "crows-pairs", "winobias", "winogender", "bbq")
    assert suites.GENERATION_SUITES == ("generation",)


def test_titles_and_an_unknown_suite() -> None:
    assert suite_title("crows-pairs") == "CrowS-Pairs"
    assert suite_title("from-a-newer-lokal") == "from-a-newer-lokal"


def test_the_cli_offers_exactly_the_registered_suites() -> None:
    from lokal.cli.audit import run_cmd

    (option,) = [p for p in run_cmd.params if p.name == "suites"]
    assert tuple(option.type.choices) == suites.SUITES  # type: ignore[attr-defined]
