"""Readable tables for the operator (stdout): a contact, a timeline, a routing decision."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

__all__ = ["contact_table", "decision_lines", "reason_meaning", "timeline_table"]

TEXT_WIDTH = 60  # characters of a message's text shown on a timeline row


def reason_meaning(reason: str) -> str:
    """What a routing reason code means (``crossroute.routing.policy.REASONS``)."""
    from crossroute.routing.policy import FALLBACK_PREFIX, REASONS

    if reason.startswith(FALLBACK_PREFIX):
        return f"SMS after WhatsApp failed with error {reason[len(FALLBACK_PREFIX) :]} (R7)"
    known = REASONS.get(reason)
    return known[1] if known else ""


def decision_lines(decision: Iterable[Any]) -> list[str]:
    """``whatsapp  no   whatsapp.window_closed_no_template: the window is closed and ...``."""
    lines = []
    for entry in decision:
        if not isinstance(entry, dict):
            continue
        reason = str(entry.get("reason") or "")
        verdict = "yes" if entry.get("qualified") else "no"
        meaning = reason_meaning(reason)
        sender = f" (from {entry['from']})" if entry.get("from") else ""  # R10: a qualifying channel's number
        lines.append(
            f"{entry.get('channel', '?'):<9} {verdict:<4} {reason}"
            + (f": {meaning}" if meaning else "")
            + sender
        )
    return lines


def contact_table(console: Console, contact: dict[str, Any]) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    window = (contact.get("whatsapp") or {}).get("window_open_until")
    rows = [
        ("id", contact.get("id")),
        ("tenant", contact.get("tenant")),
        ("external id", contact.get("external_id")),
        ("name", contact.get("name")),
        ("username", contact.get("username")),
        ("phones", _listed(contact.get("phones"), "e164", "status", "source")),
        ("BSUIDs", _listed(contact.get("bsuids"), "id", "status")),
        ("parent BSUID", contact.get("parent_bsuid")),
        ("SMS opted out", _yes_no(contact.get("sms_opted_out"))),
        ("marketing opted out", _yes_no(contact.get("marketing_opted_out"))),
        ("WhatsApp opt-in", _yes_no((contact.get("whatsapp_opt_in") or {}).get("value"))),
        ("WhatsApp window", f"open until {window}" if window else "closed"),
        ("merged from", ", ".join(str(m) for m in contact.get("merged_from") or []) or None),
        ("created", contact.get("created_at")),
        ("updated", contact.get("updated_at")),
    ]
    for label, value in rows:
        if value not in (None, ""):
            table.add_row(label, Text(str(value)))  # Text: data is never read as Rich markup
    console.print(table)


def timeline_table(console: Console, customer_id: str, items: list[dict[str, Any]]) -> None:
    table = Table(title=f"timeline of {escape(customer_id)}, newest first", title_justify="left")
    for name in ("at", "what", "channel", "detail"):
        table.add_column(name, overflow="fold")
    for item in items:
        table.add_row(*(Text(cell) for cell in _timeline_row(item)))
    console.print(table)


def _timeline_row(item: dict[str, Any]) -> tuple[str, str, str, str]:
    kind = str(item.get("kind") or "")
    at = _when(item.get("at"))
    if kind == "message":
        channel, text = _message(item)
        return at, f"message {'in' if item.get('direction') == 'in' else 'out'}", channel, text
    if kind == "identity":
        return (
            at,
            f"identity: {item.get('change')}",
            str(item.get("source") or ""),
            _detail(item.get("detail")),
        )
    decision = item.get("channels") if kind == "decision" else item.get("decision")
    if isinstance(decision, list):
        return at, "routing decision", "", "\n".join(decision_lines(decision))
    if kind == "other":  # the timeline's other entries are send requests (their decision is not shown yet)
        return at, "send request", "", ""
    return at, kind or "?", "", ""


def _message(item: dict[str, Any]) -> tuple[str, str]:
    """(channel, text with its delivery status and errors)."""
    text = str(item.get("text") or f"({item.get('type') or 'no text'})")
    status = f" [{item['status']}]" if item.get("status") else ""
    errors = "; ".join(f"error {e.get('code')}" for e in item.get("errors") or [] if isinstance(e, dict))
    return str(item.get("channel") or ""), _cut(text) + status + (f" {errors}" if errors else "")


def _when(at: Any) -> str:
    """``2026-12-02 12:03:01`` (UTC, as stored) for an ISO time; anything else as it is."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(at)).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return "" if at is None else str(at)


def _detail(detail: Any) -> str:
    if isinstance(detail, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(detail.items()))
    return "" if detail is None else str(detail)


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= TEXT_WIDTH else text[: TEXT_WIDTH - 1] + "…"


def _listed(entries: Any, *keys: str) -> str | None:
    if not isinstance(entries, list) or not entries:
        return None
    parts = []
    for entry in entries:
        if isinstance(entry, dict):
            first, *rest = (entry.get(k) for k in keys)
            extra = ", ".join(str(v) for v in rest if v)
            parts.append(f"{first} ({extra})" if extra else str(first))
    return "\n".join(parts)


def _yes_no(value: Any) -> str:
    return "yes" if value else "no"
