"""The state two runs are compared on, without anything that legitimately depends on arrival order.

A customer is its phones (with status), its BSUIDs (with status), name, username, SMS and marketing
opt-outs, WhatsApp windows, and the messages of its timeline as (provider message id, direction, type,
text, status). Customer ids are generated, so customers are compared as a set of those.

Left out, because they depend on arrival order by design: identity events on the timeline, and
``merged_from`` (a link that arrives before the messages it links creates one customer instead of
merging two), hence also ``created_at``/``updated_at`` and which id survives a merge. Phone sources
and attestation times are left out too (an SMS attests a number at its arrival time).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .reference import ReadState
from .scenario import Event, Scenario, Sender

Message = tuple[str, str, str, str, str]  # message id, direction, type, text, status ("" for none)


@dataclass(frozen=True)
class Customer:
    phones: tuple[tuple[str, str], ...]
    bsuids: tuple[tuple[str, str], ...]
    name: str
    username: str
    sms_opted_out: bool
    marketing_opted_out: bool
    windows: tuple[tuple[str, str], ...]
    messages: tuple[Message, ...]

    @property
    def identifiers(self) -> set[str]:
        return {p for p, _ in self.phones} | {b for b, _ in self.bsuids}


def canonical(state: ReadState) -> Counter[Customer]:
    out: Counter[Customer] = Counter()
    for cid, view in state.contacts.items():
        entries = state.timelines.get(cid, [])
        messages = sorted(
            (
                str(e.get("message_id") or ""),
                str(e.get("direction") or ""),
                str(e.get("type") or ""),
                str(e.get("text") or ""),
                str(e.get("status") or ""),
            )
            for e in entries
            if e.get("kind") == "message"
        )
        windows = view.get("whatsapp", {}).get("windows", {}) or {}
        out[
            Customer(
                phones=tuple(sorted((p["e164"], p["status"]) for p in view["phones"])),
                bsuids=tuple(sorted((b["id"], b["status"]) for b in view["bsuids"])),
                name=view.get("name") or "",
                username=view.get("username") or "",
                sms_opted_out=bool(view.get("sms_opted_out")),
                marketing_opted_out=bool(view.get("marketing_opted_out")),
                windows=tuple(sorted(windows.items())),
                messages=tuple(messages),
            )
        ] += 1
    return out


def fp(value: str) -> str:
    """A short fingerprint: enough to tell values apart in a diff, nothing to read them back from."""
    return "#" + hashlib.sha256(value.encode()).hexdigest()[:6] if value else "-"


@dataclass
class Difference:
    """A group of customers the two runs disagree on (linked by shared identifiers)."""

    reference: list[Customer]
    chaos: list[Customer]

    @property
    def identifiers(self) -> set[str]:
        return set().union(*(c.identifiers for c in [*self.reference, *self.chaos]))


def compare(reference: Counter[Customer], chaos: Counter[Customer]) -> list[Difference]:
    only_ref = list((reference - chaos).elements())
    only_chaos = list((chaos - reference).elements())
    groups: list[Difference] = []
    used: set[int] = set()
    for customer in only_ref:
        group = next((g for g in groups if g.identifiers & customer.identifiers), None)
        if group is None:
            group = Difference([], [])
            groups.append(group)
        group.reference.append(customer)
        # Pull in every chaos customer sharing an identifier with the group (transitively, once).
        grew = True
        while grew:
            grew = False
            for i, other in enumerate(only_chaos):
                if i not in used and other.identifiers & group.identifiers:
                    group.chaos.append(other)
                    used.add(i)
                    grew = True
    groups.extend(Difference([], [c]) for i, c in enumerate(only_chaos) if i not in used)
    return groups


def _ids(pairs: Iterable[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{fp(v)}:{s}" for v, s in pairs) + "}"


def _message(m: Message) -> str:
    mid, direction, kind, text, status = m
    return f"{fp(mid)} {direction} {kind} text={fp(text)} status={status or '-'}"


def describe(customer: Customer | None) -> str:
    if customer is None:
        return "(none)"
    return (
        f"phones={_ids(customer.phones)} bsuids={_ids(customer.bsuids)} name={fp(customer.name)} "
        f"username={fp(customer.username)} sms_out={customer.sms_opted_out} "
        f"marketing_out={customer.marketing_opted_out} windows={[w for _, w in customer.windows]} "
        f"messages={len(customer.messages)}"
    )


def field_diff(a: Customer, b: Customer) -> list[str]:
    """What differs between two customers, masked."""
    lines = []
    if a.phones != b.phones:
        lines.append(f"phones: {_ids(a.phones)} vs {_ids(b.phones)}")
    if a.bsuids != b.bsuids:
        lines.append(f"bsuids: {_ids(a.bsuids)} vs {_ids(b.bsuids)}")
    for name in ("name", "username"):
        if getattr(a, name) != getattr(b, name):
            lines.append(f"{name}: {fp(getattr(a, name))} vs {fp(getattr(b, name))}")
    for name in ("sms_opted_out", "marketing_opted_out"):
        if getattr(a, name) != getattr(b, name):
            lines.append(f"{name}: {getattr(a, name)} vs {getattr(b, name)}")
    if a.windows != b.windows:
        lines.append(f"windows: {[w for _, w in a.windows]} vs {[w for _, w in b.windows]}")
    if a.messages != b.messages:
        ours, theirs = Counter(a.messages), Counter(b.messages)
        for m in (ours - theirs).elements():
            lines.append(f"message only in reference: {_message(m)}")
        for m in (theirs - ours).elements():
            lines.append(f"message only in chaos:     {_message(m)}")
    return lines


def report(
    differences: list[Difference], scenario: Scenario, *, limit: int = 10, explain: int = 3
) -> list[str]:
    """A bounded, masked account of the differences, naming the scenario's senders involved."""
    owner = scenario.owner()
    lines = []
    for n, diff in enumerate(differences[:limit], 1):
        senders = sorted({owner[i].n for i in diff.identifiers if i in owner})
        who = ", ".join(f"#{s} ({scenario.senders[s].kind})" for s in senders) or "unknown"
        lines.append(
            f"[{n}] sender {who}: {len(diff.reference)} customer(s) in the reference, "
            f"{len(diff.chaos)} in the chaos run"
        )
        if len(diff.reference) == 1 and len(diff.chaos) == 1:
            lines.extend("    " + line for line in field_diff(diff.reference[0], diff.chaos[0]))
        else:
            lines.extend(f"    reference: {describe(c)}" for c in diff.reference)
            lines.extend(f"    chaos:     {describe(c)}" for c in diff.chaos)
        if n <= explain:
            for s in senders:
                lines.extend("      " + line for line in history(scenario.senders[s], owner))
    if len(differences) > limit:
        lines.append(f"... and {len(differences) - limit} more")
    return lines


def history(sender: Sender, owner: Mapping[str, Sender]) -> list[str]:
    """A sender's events in scenario order: kind, provider time relative to the first, masked ids."""
    start = next((e.at for e in sender.events if e.at), 0)
    return [
        f"event {e.n:5d} {e.kind:<15} t+{(e.at - start) if e.at else '(arrival)'!s:>9} {_names(e)}"
        for e in sender.events
    ]


def _names(event: Event) -> str:
    """The identifiers an event names (masked) and its message id."""
    import json
    from urllib.parse import parse_qs

    if event.path.endswith("twilio"):
        form = parse_qs(event.body.decode())
        return f"sms from {fp(form['From'][0])} sid {fp(form['MessageSid'][0])}"
    value: Any = json.loads(event.body)["entry"][0]["changes"][0]["value"]
    item: dict[str, Any] = next(v[0] for k, v in value.items() if isinstance(v, list) and k != "contacts")
    keys = (
        "from",
        "from_user_id",
        "to",
        "to_user_id",
        "recipient_id",
        "recipient_user_id",
        "wa_id",
        "user_id",
    )
    names = [
        f"{k}={fp('+' + str(item[k]) if k in ('from', 'to', 'recipient_id', 'wa_id') else str(item[k]))}"
        for k in keys
        if k in item
    ]
    system = item.get("system") or {}
    if system:
        names.append(f"new_wa_id={fp('+' + system['new_wa_id'])} new_user_id={fp(system['user_id'])}")
    extra = item.get("status") or item.get("value") or ""
    mid = item.get("id")
    return " ".join([*names, *([f"id={fp(mid)}"] if mid else []), str(extra)]).strip()
