"""``crossroute contacts``: get, timeline, import, export, erase."""

from __future__ import annotations

import signal
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import click

from . import render
from .context import expect, global_options, out, target
from .errors import Refused, usage
from .export import CsvWriter, JsonlWriter, customers
from .importer import Counts, DoorError, Importer, RejectedFile, rejected_path
from .records import HeaderError, detect_format, phone_shaped, read_rows
from .target import MAX_WORKERS, Target

__all__ = ["contacts"]

MAX_TIMELINE_PAGE = 200
# The batch door is an idempotent upsert: a 500 (a storage hiccup) is retried like a 503.
BATCH_RETRY = frozenset({500, 429, 502, 503, 504})


@click.group()
@global_options
def contacts() -> None:
    """Look up, import, export and erase contacts."""


# ---------------------------------------------------------------------- get
@contacts.command("get")
@click.option("--phone", metavar="P", help="A phone number (E.164, or national in the tenant's region).")
@click.option(
    "--bsuid", metavar="B", help="A WhatsApp business-scoped user id, e.g. US.13491208655302741918."
)
@click.option(
    "--id", "customer_id", metavar="ID", help="A customer id (a merged-away id finds its survivor)."
)
@click.option("--external-id", metavar="X", help="The id the business gave the contact.")
@global_options
@click.pass_context
def get(
    ctx: click.Context, phone: str | None, bsuid: str | None, customer_id: str | None, external_id: str | None
) -> None:
    """The contact: GET /contacts (its JSON with --json, a table otherwise)."""
    given = {
        k: v
        for k, v in {"phone": phone, "bsuid": bsuid, "id": customer_id, "external_id": external_id}.items()
        if v
    }
    if len(given) != 1:
        raise usage("give exactly one of --phone, --bsuid, --id, --external-id")
    check_address(phone=phone, bsuid=bsuid)
    contact = expect(target(ctx).api("GET", "/contacts", query=given), "contact")
    show = out(ctx)
    if show.json_mode:
        show.emit(contact)
    else:
        render.contact_table(show.stdout, contact)


def check_address(
    *, phone: str | None, bsuid: str | None, options: tuple[str, str] = ("--phone", "--bsuid")
) -> None:
    """Bad usage (exit 2) for a value that cannot be a phone or a BSUID (the value is not repeated)."""
    from crossroute import ids

    if phone is not None and not phone_shaped(phone.strip()):
        raise usage(f"{options[0]}: not a phone number")
    if bsuid is not None and not ids.is_bsuid(ids.strip_channel_prefix(bsuid.strip())):
        raise usage(f"{options[1]}: not a BSUID (two capital letters, a dot, letters and digits)")


# ---------------------------------------------------------------------- timeline
@contacts.command("timeline")
@click.argument("customer_id", metavar="ID")
@click.option(
    "--limit", type=click.IntRange(1, 100_000), default=50, show_default=True, help="Entries to show."
)
@global_options
@click.pass_context
def timeline(ctx: click.Context, customer_id: str, limit: int) -> None:
    """The contact's timeline, newest first: messages, identity changes, routing decisions."""
    stack = target(ctx)
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    survivor = customer_id
    while len(items) < limit:
        query = {"limit": str(min(MAX_TIMELINE_PAGE, limit - len(items)))}
        if cursor:
            query["next"] = cursor
        page = expect(stack.api("GET", f"/contacts/{_path(customer_id)}/timeline", query=query), "timeline")
        survivor = str(page.get("customer_id") or customer_id)
        items.extend(page.get("items") or [])
        cursor = page.get("next")
        if not cursor:
            break
    show = out(ctx)
    if show.json_mode:
        show.emit({"customer_id": survivor, "items": items, "next": cursor})
    else:
        render.timeline_table(show.stdout, survivor, items)


def _path(segment: str) -> str:
    from urllib.parse import quote

    return quote(segment, safe="")


# ---------------------------------------------------------------------- erase
@contacts.command("erase")
@click.argument("customer_id", metavar="ID")
@click.option("--yes", is_flag=True, help="Yes, erase this customer and everything about it (I10).")
@global_options
@click.pass_context
def erase(ctx: click.Context, customer_id: str, yes: bool) -> None:
    """Erase a customer: DELETE /contacts/{id}. Cannot be undone."""
    if not yes:
        raise usage("erasing cannot be undone: add --yes")
    expect(target(ctx).api("DELETE", f"/contacts/{_path(customer_id)}"), "erase")
    show = out(ctx)
    if show.json_mode:
        show.emit({"erased": customer_id})
    else:
        show.line(f"erased {customer_id}")


# ---------------------------------------------------------------------- export
@contacts.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option(
    "--out", "path", type=click.Path(dir_okay=False, path_type=Path), help="A file (default: stdout)."
)
@click.option(
    "--segments", type=click.IntRange(1, 64), default=4, show_default=True, help="Parallel scan segments."
)
@global_options
@click.pass_context
def export(ctx: click.Context, fmt: str, path: Path | None, segments: int) -> None:
    """Every live customer of the tenant, one per line, streamed from the table."""
    stack = target(ctx)
    tenant = stack.tenant_id()
    stack.bind_table()
    show = out(ctx)
    count = 0
    with ExitStack() as files:
        sink: IO[str] = (
            files.enter_context(path.open("w", encoding="utf-8", newline="")) if path else sys.stdout
        )
        writer = CsvWriter(sink) if fmt == "csv" else JsonlWriter(sink)
        with show.progress("export", "customers", sized=False) as ticker:
            for contact in customers(tenant, segments):
                writer.write(contact)
                count += 1
                ticker.advance(1)
        sink.flush()
    if path is not None and show.json_mode:
        show.emit({"exported": count, "format": fmt, "out": str(path), "tenant": tenant})
    elif path is not None:
        show.line(f"exported {count} customers to {path}")


# ---------------------------------------------------------------------- import
@contacts.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check every row (the server too) and write nothing.")
@click.option(
    "--workers",
    type=click.IntRange(1, MAX_WORKERS),
    default=4,
    show_default=True,
    help="Requests in parallel.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["auto", "csv", "jsonl"]), default="auto", show_default=True
)
@global_options
@click.pass_context
def import_(ctx: click.Context, file: Path, dry_run: bool, workers: int, fmt: str) -> None:
    """Upsert contacts from a CSV (with a header row) or JSONL file, as POST /contacts does."""
    stack = target(ctx)
    show = out(ctx)
    with file.open("rb") as raw:
        kind = (
            detect_format(file.name, raw.peek(64) if hasattr(raw, "peek") else b"") if fmt == "auto" else fmt
        )
        rows = read_rows(raw, kind, region=_region(stack))  # type: ignore[arg-type]
        rejected = RejectedFile(rejected_path(file))
        importer = Importer(
            _door(stack),
            workers=workers,
            dry_run=dry_run,
            rejected=rejected,
            ticker=_NoTicker(),
            size=file.stat().st_size,
        )
        code = _run_import(show, importer, rows, rejected)
    _report(show, importer.counts, rejected, dry_run=dry_run, file=file)
    if code:
        ctx.exit(code)
    if importer.counts.rejected:
        ctx.exit(1)


class _NoTicker:
    def advance(self, items: int, *, fraction: float | None = None) -> None:
        pass


def _run_import(show: Any, importer: Importer, rows: Any, rejected: RejectedFile) -> int:
    """0, or the exit code of an import that stopped (1: the API failed; 130: interrupted). Ctrl-C stops
    sending; the batches already sent are answered and counted (a second Ctrl-C: Python's default)."""

    def on_interrupt(signum: int, frame: Any) -> None:
        importer.stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        with show.progress("import", "rows", sized=True) as ticker:
            importer.ticker = ticker
            importer.run(rows)
        return 0
    except HeaderError as exc:
        raise usage(str(exc)) from None
    except DoorError as exc:
        show.note(f"crossroute: import stopped: {exc}")
        show.note("run the same command again to finish: rows already imported come back unchanged")
        return 1
    except KeyboardInterrupt:
        show.note("crossroute: import interrupted; run the same command again to finish it")
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
        rejected.close()


def _report(show: Any, counts: Counts, rejected: RejectedFile, *, dry_run: bool, file: Path) -> None:
    summary = counts.summary() + (" (dry run: nothing written)" if dry_run else "")
    if rejected.written:
        show.note(f"rejected rows and refused fields: {rejected.path}")
    if counts.refused_fields:
        show.note(
            f"{counts.refused_fields} field(s) were refused on imported rows (listed in {rejected.path})"
        )
    if show.json_mode:
        show.note(summary)
        doc = {**counts.as_json(), "dry_run": dry_run, "file": str(file)}
        doc["rejected_file"] = str(rejected.path) if rejected.written else None
        show.emit(doc)
    else:
        show.line(summary)


def _region(stack: Target) -> str | None:
    """The tenant's default region, to check phone numbers as the functions read them; None when the
    registry cannot be read (the server checks them anyway)."""
    try:
        return stack.tenant().default_region
    except (Refused, click.UsageError):
        return None


def _door(stack: Target) -> Any:
    tenant = stack.settings.tenant

    def post(records: list[dict[str, Any]], dry_run: bool) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"dry_run": dry_run, "records": records}
        if tenant:
            body["tenant"] = tenant
        try:
            answer = stack.api("POST", "/contacts/batch", body=body, timeout=120, retry=BATCH_RETRY)
        except Refused as exc:
            raise DoorError(exc.message) from None
        doc = answer.json() if answer.status == 200 else None
        results = doc.get("results") if isinstance(doc, dict) else None
        if isinstance(results, list):
            return results
        if answer.status == 404 and answer.message == "Not Found":
            raise DoorError(
                f"{stack.base_url} has no POST /contacts/batch (a crossroute without the batch door?)"
            )
        raise DoorError(f"POST /contacts/batch answered {answer.status}: {answer.message}")

    return post
