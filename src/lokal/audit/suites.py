"""The audit suites lokal knows, one `SuiteSpec` each: the only list of them.

`lokal audit --suite` offers their names, `run_audit` imports each one's module when it runs, the default run is
the built-in ones, `--data` is asked for where a suite reads a dataset, the refusal over a server without prompt
log-probabilities names the likelihood suites, and the model card titles their figures. Adding a suite is its
module under `lokal/audit/` plus one entry here (docs/architecture.md, "Adding an audit suite").

Why the module is named, not imported: a suite may import scipy, VADER or a dataset parser, and `lokal audit
--help` (or the card) must not pay for that.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SuiteSpec:
    name: str  # the `--suite` value, the result's `suite`, and the folder under a --data root
    title: str  # what the model card and the report call it
    module: str  # the module that runs it (`run`, a `SuiteRunner`), imported when the suite runs
    needs_data: bool  # reads a dataset the user points at with --data
    needs_likelihood: bool  # scores prompt log-probabilities (a server must give them)
    built_in: bool = False  # ships with lokal and runs when no --suite is given


SUITE_SPECS: dict[str, SuiteSpec] = {
    spec.name: spec
    for spec in (
        SuiteSpec("occupations", "Counterfactual occupations", "lokal.audit.occupations", False, True, built_in=True),
        SuiteSpec("crows-pairs", "CrowS-Pairs", "lokal.audit.crows_pairs", True, True),
        SuiteSpec("winobias", "WinoBias", "lokal.audit.winobias", True, True),
        SuiteSpec("winogender", "Winogender", "lokal.audit.winogender", True, True),
        SuiteSpec("bbq", "BBQ", "lokal.audit.bbq", True, True),
        SuiteSpec("generation", "Generation probe", "lokal.audit.generation", False, False, built_in=True),
    )
}
SUITES: tuple[str, ...] = tuple(SUITE_SPECS)
#: What runs when no --suite is given.
BUILT_IN: tuple[str, ...] = tuple(s.name for s in SUITE_SPECS.values() if s.built_in)
NEEDS_DATA: tuple[str, ...] = tuple(s.name for s in SUITE_SPECS.values() if s.needs_data)
LIKELIHOOD_SUITES: tuple[str, ...] = tuple(s.name for s in SUITE_SPECS.values() if s.needs_likelihood)
GENERATION_SUITES: tuple[str, ...] = tuple(s.name for s in SUITE_SPECS.values() if not s.needs_likelihood)


def suite_title(name: str) -> str:
    """The suite's title, or its name for one this lokal does not know (a result written by a newer one)."""
    spec = SUITE_SPECS.get(name)
    return spec.title if spec else name


def suite_runner(name: str) -> Callable[..., Any]:
    """The `run` of suite `name` (an `audit.suite.SuiteRunner`), imported now. This module imports no other of
    the audit's, so the result schema can read the registry."""
    run: Callable[..., Any] = importlib.import_module(SUITE_SPECS[name].module).run
    return run
