"""What every command shares: the global options (accepted before or after the command's name), the
target stack, the output, and how an HTTP answer becomes a result or an exit code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from .console import Out
from .errors import Refused
from .target import Answer, Settings, Target, connect

__all__ = ["expect", "global_options", "out", "settings", "target"]

F = TypeVar("F", bound=Callable[..., Any])
PREFIX = "crossroute."


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Global options live in ``ctx.meta``, shared by the group and its commands: the last given wins."""
    if value is not None and value is not False:
        ctx.meta[PREFIX + str(param.name)] = value
    return value


def global_options(f: F) -> F:
    """``--stack``, ``--region``, ``--profile``, ``--tenant``, ``--json``."""
    options = [
        click.option(
            "--stack", metavar="NAME", help="A deployed stack (CloudFormation) instead of the local one."
        ),
        click.option(
            "--region", metavar="R", help="AWS region of --stack (default: the AWS configuration's)."
        ),
        click.option("--profile", metavar="P", help="AWS profile for --stack."),
        click.option("--tenant", metavar="T", help="The tenant (default: the only tenant)."),
        click.option("--json", "json", is_flag=True, default=None, help="Machine-readable output on stdout."),
    ]
    for option in reversed(options):
        f = option(f)
    for param in getattr(f, "__click_params__", [])[-len(options) :]:
        param.expose_value = False
        param.callback = _remember
        param.is_eager = True
    return f


def settings(ctx: click.Context) -> Settings:
    meta = ctx.meta
    return Settings(
        stack=meta.get(PREFIX + "stack"),
        region=meta.get(PREFIX + "region"),
        profile=meta.get(PREFIX + "profile"),
        tenant=meta.get(PREFIX + "tenant"),
        json=bool(meta.get(PREFIX + "json")),
    )


def target(ctx: click.Context) -> Target:
    """The stack to talk to, connected on first use."""
    found = ctx.meta.get(PREFIX + "target")
    if found is None:
        found = connect(settings(ctx))
        ctx.meta[PREFIX + "target"] = found
    return found


def out(ctx: click.Context) -> Out:
    return Out(json_mode=settings(ctx).json)


def expect(answer: Answer, what: str) -> Any:
    """The JSON of a 2xx answer; else exit 1 with the API's message (and ``errors`` with ``--json``)."""
    if 200 <= answer.status < 300:
        return answer.json()
    doc = answer.json()
    errors = doc.get("errors") if isinstance(doc, dict) else None
    extra: dict[str, Any] = {"status": answer.status}
    if isinstance(errors, list):
        extra["errors"] = errors
    if answer.status == 404:
        raise Refused(f"{what}: {answer.message}", code="not_found", **extra)
    if answer.status in (401, 403):
        raise Refused(f"{what}: not authorised ({answer.message})", code="not_authorised", **extra)
    if answer.status >= 500:
        raise Refused(f"{what}: the API failed ({answer.message})", code="unavailable", **extra)
    listed = "; ".join(_problem(e) for e in errors) if isinstance(errors, list) else ""
    raise Refused(f"{what}: {answer.message}" + (f" ({listed})" if listed else ""), **extra)


def _problem(error: Any) -> str:
    """One entry of a problem document's ``errors``: ``field: problem``."""
    if isinstance(error, dict) and "problem" in error:
        return f"{error.get('field')}: {error['problem']}"
    return str(error)
