"""``crossroute send``: a send request through ``POST /messages``; with ``--wait``, its outcome, polled from
``GET /messages/{request_id}``."""

from __future__ import annotations

import time
import uuid
from typing import Any

import click

from .contacts import check_address
from .context import expect, global_options, out, settings, target
from .errors import usage
from .render import decision_lines, reason_meaning
from .target import Target

__all__ = ["outcome", "progress_outcome", "send", "send_request"]

CHANNELS = ("whatsapp", "sms")
POLL = 0.2  # seconds between reads of the request's progress


@click.command("send")
@click.option("--to-phone", metavar="P", help="The recipient's phone number.")
@click.option("--to-bsuid", metavar="B", help="The recipient's BSUID.")
@click.option("--to-id", metavar="ID", help="The recipient's customer id.")
@click.option("--text", metavar="T", help="The message text (free-form WhatsApp inside the window, SMS).")
@click.option("--template", metavar="NAME", help="An approved WhatsApp template.")
@click.option("--language", metavar="L", default="en_US", show_default=True, help="The template's language.")
@click.option(
    "--category",
    type=click.Choice(["utility", "marketing", "authentication"]),
    default="utility",
    show_default=True,
    help="The template's category.",
)
@click.option(
    "--channels", metavar="whatsapp,sms", help="Channels to consider, in order (default: the tenant's)."
)
@click.option("--key", metavar="K", help="Idempotency key (default: a new one); the same key sends once.")
@click.option("--wait", is_flag=True, help="Wait for the outcome: the channel chosen and why.")
@click.option(
    "--timeout", type=click.FloatRange(1, 600), default=30, show_default=True, help="Seconds --wait waits."
)
@global_options
@click.pass_context
def send(ctx: click.Context, /, **options: Any) -> None:
    """Send a message: POST /messages. Prints the request_id."""
    doc = send_request(options, tenant=settings(ctx).tenant)  # bad usage: before connecting
    stack = target(ctx)
    answer = expect(stack.api("POST", "/messages", body=doc), "send")
    request_id = str(answer.get("request_id"))
    key = str(doc["idempotency_key"])
    show = out(ctx)
    if not options["wait"]:
        if show.json_mode:
            show.emit({"request_id": request_id, "idempotency_key": key})
        else:
            show.line(request_id)
            show.note(f"idempotency key: {key}")
        return
    result = _wait(stack, request_id, float(options["timeout"]))
    result.update({"request_id": request_id, "idempotency_key": key})
    _show_outcome(show, result)
    if result["outcome"] != "sent":
        ctx.exit(1)


def send_request(options: dict[str, Any], *, tenant: str | None) -> dict[str, Any]:
    """The ``POST /messages`` body for the command's options; bad usage raises ``click.UsageError``."""
    doc: dict[str, Any] = {"idempotency_key": options.get("key") or f"cli-{uuid.uuid4().hex}"}
    doc["to"] = _recipient(options)
    if not options.get("text") and not options.get("template"):
        raise usage("give --text, --template, or both")
    if tenant:
        doc["tenant"] = tenant
    if options.get("text"):
        doc["text"] = options["text"]
    if options.get("template"):
        template = {"name": options["template"], "language": options.get("language") or "en_US"}
        doc["template"] = {**template, "category": options.get("category") or "utility", "components": []}
    if options.get("channels"):
        doc["channels"] = _channels(str(options["channels"]))
    return doc


def _recipient(options: dict[str, Any]) -> dict[str, str]:
    to = {
        name: options[option]
        for option, name in (("to_phone", "phone"), ("to_bsuid", "bsuid"), ("to_id", "customer_id"))
        if options.get(option)
    }
    if len(to) != 1:
        raise usage("give exactly one of --to-phone, --to-bsuid, --to-id")
    check_address(phone=to.get("phone"), bsuid=to.get("bsuid"), options=("--to-phone", "--to-bsuid"))
    return to


def _channels(given: str) -> list[str]:
    channels = [c.strip() for c in given.split(",") if c.strip()]
    if not channels or any(c not in CHANNELS for c in channels) or len(set(channels)) != len(channels):
        raise usage("--channels: distinct whatsapp and/or sms, comma-separated, e.g. whatsapp,sms")
    return channels


def outcome(
    decision: list[dict[str, Any]], sends: dict[str, dict[str, Any]]
) -> tuple[str, str | None] | None:
    """What became of a request so far: (``sent`` | ``unknown`` | ``undeliverable``, the channel), or
    None while it is still being handled (not decided yet, or a qualifying channel not yet settled)."""
    if not decision:
        return None
    order = [str(d.get("channel")) for d in decision]
    for state in ("sent", "unknown"):
        for channel in order:
            if (sends.get(channel) or {}).get("state") == state:
                return state, channel
    qualified = [str(d.get("channel")) for d in decision if d.get("qualified")]
    if all((sends.get(c) or {}).get("state") == "failed" for c in qualified):
        return "undeliverable", None
    return None


def progress_outcome(found: dict[str, Any]) -> tuple[str, str | None] | None:
    """``outcome`` of a ``GET /messages/{request_id}`` answer. Its ``status`` says undeliverable also
    where the channels cannot show it: dead-lettered (R12) before any decision or settled send."""
    if found.get("status") == "undeliverable":
        return "undeliverable", None
    return outcome(list(found.get("decision") or []), dict(found.get("channels") or {}))


def _wait(stack: Target, request_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = expect(stack.api("GET", f"/messages/{request_id}"), "send --wait")
        decision = list(found.get("decision") or [])
        sends = dict(found.get("channels") or {})
        settled = progress_outcome(found)
        if settled is not None or time.monotonic() >= deadline:
            state, channel = settled or ("pending", None)
            return {
                "outcome": state,
                "channel": channel,
                "status": found.get("status"),
                "decision": _explained(decision),
                "sends": _sends(sends),
            }
        time.sleep(POLL)


def _explained(decision: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**d, "meaning": reason_meaning(str(d.get("reason") or ""))} for d in decision]


def _sends(sends: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each channel's send state, without the attempt ids (internal)."""
    keep = ("state", "at", "provider", "provider_message_id", "outcome", "code", "reason", "status")
    return {c: {k: v for k, v in s.items() if k in keep} for c, s in sends.items()}


def _show_outcome(show: Any, result: dict[str, Any]) -> None:
    if show.json_mode:
        show.emit(result)
        return
    show.line(str(result["request_id"]))
    state, channel = result["outcome"], result["channel"]
    headline = {
        "sent": f"sent on {channel}",
        "unknown": f"outcome unknown on {channel} (never sent again)",
        "undeliverable": "undeliverable: no channel could take it",
        "pending": "no outcome yet (still being handled; look again with the same --key)",
    }[state]
    show.line(headline)
    for line in decision_lines(result["decision"]):
        show.line("  " + line)
    for channel_name, state_doc in result["sends"].items():
        failure = f" (error {state_doc['code']})" if state_doc.get("code") else ""
        show.line(f"  {channel_name}: {state_doc.get('state')}{failure}")
