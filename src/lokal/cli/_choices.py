"""`--api`: its choices are the keys of a registry that lives with heavy code (bench's targets, audit's scorers,
both importing httpx). Read them only when click needs them, so `lokal --help` and every other command do not
import that code at start-up."""

from __future__ import annotations

import importlib
from typing import Any

import click


class RegistryChoice(click.Choice):
    """A `click.Choice` whose choices are the keys of `module:NAME`, a dict imported on first use."""

    def __init__(self, registry: str) -> None:
        self._registry = registry
        self._choices: tuple[str, ...] | None = None
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:
        if self._choices is None:
            module, _, name = self._registry.partition(":")
            self._choices = tuple(getattr(importlib.import_module(module), name))
        return self._choices

    @choices.setter
    def choices(self, value: Any) -> None:  # click.Choice.__init__ would set it; never called here
        self._choices = tuple(value)


def api_option(registry: str) -> Any:
    """`--api NAME`: one of `registry`'s keys (default: detected from the server)."""
    return click.option("--api", type=RegistryChoice(registry), help="The server's API (default: detected).")
