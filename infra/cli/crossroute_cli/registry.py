"""``crossroute tenants``: check a registry document, store it in the tenants secret, show it redacted.

The check is the functions' own (``crossroute.tenants.TenantRegistry.from_json``, which validates each
tenant against ``crossroute/registry.schema.json`` with ``crossroute.registry_schema`` and refuses a
number claimed twice). A document is valid here only when every tenant in it is usable: one the
functions would leave out is a problem to fix before storing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .context import global_options, out, target
from .errors import Refused

__all__ = ["REDACTED", "check_document", "redact", "tenants"]

REDACTED = "<redacted>"
# Every secret in docs/registry.schema.json (app_secret, auth_token, their previous_ pair, ...) names one.
SECRET_WORDS = ("secret", "token", "password")


def redact(value: Any, key: str = "") -> Any:
    """The document with every secret value replaced by ``<redacted>`` (an empty one stays empty, so a
    rotation in progress shows)."""
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if any(w in key.lower() for w in SECRET_WORDS) and value not in ("", None):
        return REDACTED
    return value


def check_document(text: str) -> dict[str, Any]:
    """``{"valid", "tenants", "problems": [{"tenant", "path", "problem"}]}`` for a registry document."""
    from crossroute.tenants import RegistryError, TenantRegistry

    try:
        registry = TenantRegistry.from_json(text)
    except RegistryError as exc:
        problems = [_problem(p) for p in exc.problems] or [{"tenant": None, "path": "$", "problem": str(exc)}]
        return {"valid": False, "tenants": [], "problems": problems, "reason": exc.reason}
    problems = [_problem(p) for p in registry.skipped]
    return {"valid": not problems, "tenants": [t.id for t in registry.tenants], "problems": problems}


def _problem(problem: Any) -> dict[str, Any]:
    return {"tenant": problem.tenant, "path": problem.path, "problem": problem.message}


@click.group()
@global_options
def tenants() -> None:
    """The tenant registry (docs/registry.md)."""


_document = click.argument(
    "file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)
)


@tenants.command("validate")
@_document
@global_options
@click.pass_context
def validate(ctx: click.Context, file: Path) -> None:
    """Check a registry document as the functions do (exit 1 when anything is wrong)."""
    result = check_document(file.read_text(encoding="utf-8"))
    _report(ctx, result, file)
    if not result["valid"]:
        ctx.exit(1)


def _report(ctx: click.Context, result: dict[str, Any], file: Path) -> None:
    display = out(ctx)
    if display.json_mode:
        display.emit(result)
        return
    for problem in result["problems"]:
        who = f"tenant {problem['tenant']}" if problem["tenant"] else "document"
        display.line(f"{file}: {who}: {problem['path']}: {problem['problem']}")
    verdict = "valid" if result["valid"] else "invalid"
    display.line(f"{file}: {verdict}; usable tenants: {', '.join(result['tenants']) or 'none'}")


@tenants.command("put")
@_document
@global_options
@click.pass_context
def put(ctx: click.Context, file: Path) -> None:
    """Validate a registry document, then store it in the stack's tenants secret (refused if invalid)."""
    text = file.read_text(encoding="utf-8")
    result = check_document(text)
    if not result["valid"]:
        _report(ctx, result, file)
        raise Refused(
            f"{file} is not a valid registry: nothing stored", code="invalid", problems=result["problems"]
        )
    stack = target(ctx)
    arn = stack.output("TenantsSecretArn")
    stack.client("secretsmanager").put_secret_value(SecretId=arn, SecretString=text)
    display = out(ctx)
    if display.json_mode:
        display.emit({"stored": True, "secret": arn, "tenants": result["tenants"]})
    else:
        display.line(f"stored {file} in {arn} (tenants: {', '.join(result['tenants'])})")
        display.note(
            "the functions read it within 5 minutes (at once for a webhook to a number they do not know)"
        )


@tenants.command("show")
@global_options
@click.pass_context
def show(ctx: click.Context) -> None:
    """The stored registry, secrets redacted."""
    text = target(ctx).tenants_document()
    try:
        doc = json.loads(text)
    except ValueError:
        raise Refused("the tenants secret does not hold JSON", code="registry_unusable") from None
    redacted = redact(doc)
    display = out(ctx)
    if display.json_mode:
        display.emit(redacted)
        return
    display.line(json.dumps(redacted, indent=2, sort_keys=True))
    checked = check_document(text)
    for problem in checked["problems"]:
        display.note(f"warning: {problem['path']}: {problem['problem']}")
