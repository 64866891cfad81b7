"""The one error `lokal card` raises for bad input: a card-info file that is not valid, a result that is for
another model, evidence that cannot go into one card. It is a `LokalError`, so the CLI prints one line."""

from __future__ import annotations

from lokal.errors import LokalError


class CardError(LokalError, ValueError):
    """A model card that cannot be built or read as asked; the message names the file (and line) at fault."""

    status_code = 400


class CardIncomplete(CardError):
    """`lokal card --check` found items missing. Raised after the list is printed, so the one error boundary
    sets exit code 1 (`ctx.exit(1)` would not: `lokal.cli.main` ignores the code click returns)."""
