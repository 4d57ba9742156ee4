"""How a command ends when it did not succeed: exit 1 (it ran, something was refused or not found) or
exit 2 (bad usage, click's ``UsageError``). Messages never quote a phone number, BSUID or body."""

from __future__ import annotations

import json
import sys
from typing import IO, Any

import click

__all__ = ["REFUSED", "USAGE", "Refused", "usage"]

REFUSED = 1
USAGE = 2


class Refused(click.ClickException):
    """The command ran and something was refused, not found or unavailable: exit 1.

    ``code`` is a stable word for scripts (``not_found``, ``refused``, ``unavailable``, ...); with
    ``--json`` the error is also printed on stdout as ``{"error": code, "message": ..., **extra}``.
    """

    exit_code = REFUSED

    def __init__(self, message: str, *, code: str = "refused", **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.extra = extra
        ctx = click.get_current_context(silent=True)  # raised inside a command: its context is current
        self.json = bool(ctx is not None and ctx.meta.get("crossroute.json"))

    def show(self, file: IO[Any] | None = None) -> None:
        if self.json:
            doc = {"error": self.code, "message": self.message, **self.extra}
            sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
            sys.stdout.flush()
        click.echo(f"crossroute: {self.message}", err=True)


def usage(message: str) -> click.UsageError:
    """Bad usage (exit 2): raise the result."""
    return click.UsageError(message)
