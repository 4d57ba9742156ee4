"""The reference run: every event once, in scenario order, through the production code path, in-process.

moto in-process (``emulated_account``) with template.yaml's table, inbound queue, bus and masking key;
each webhook body goes through the webhook's own split (Meta: ``webhooks.meta.split``; Twilio:
``QueuedEvent.build`` as ``webhooks.twilio.accept`` does), then ``parsing.queued.parse`` and
``Ingest(DynamoIdentityStore).handle``, exactly what ``IngestFunction`` does with a queued record. The
final state is read with the functions the contacts API uses.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from crossroute.identity.model import Customer, Key
from crossroute.inbound import Unrecognised
from crossroute.inbound_queue import QueuedEvent
from crossroute.tenants import TenantRegistry
from infra.local.emulated import emulated_account
from tests.support import APP_SECRET, registry_document

from .emulator import patch_moto
from .scenario import META_PATH, Scenario

TENANT = "demo"
PAGE = 200


@dataclass
class ReadState:
    """What a run left behind, as the contacts API shows it: every contact an identifier of the
    scenario finds, and each contact's timeline (all pages, newest first)."""

    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # customer id -> contact view
    found_by: dict[str, str | None] = field(default_factory=dict)  # identifier -> customer id (None: 404)
    timelines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # customer id -> entries


@dataclass
class ReferenceResult:
    state: ReadState
    seconds: float
    problems: list[str]  # generator bugs: payloads the parser dropped parts of or did not understand


def queued(registry: TenantRegistry, path: str, body: bytes) -> list[QueuedEvent]:
    """What the webhook would put on the inbound queue for this POST body."""
    from crossroute.webhooks import meta, twilio

    if path == META_PATH:
        return meta.split(registry, APP_SECRET, json.loads(body))
    form = twilio.parse_form(body, "application/x-www-form-urlencoded")
    tenant = registry.by_twilio_address(form["AccountSid"], form["To"])
    assert tenant is not None, "the local tenant owns the Twilio number"
    return [
        QueuedEvent.build(
            tenant=tenant.id,
            sender=form.get("ExternalUserId") or form["From"],
            kind=twilio.INBOUND.kind,
            content={"form": body.decode()},
            region=tenant.default_region,
        )
    ]


def run_reference(scenario: Scenario) -> ReferenceResult:
    from crossroute.bus import EventBridgePublisher
    from crossroute.config import masking_key
    from crossroute.ingest import Ingest
    from crossroute.parsing.queued import parse
    from crossroute.store.identity_store import DynamoIdentityStore

    patch_moto()
    registry = TenantRegistry.from_json(registry_document())
    problems: list[str] = []
    started = time.monotonic()
    with emulated_account("InboundQueue", "EventBus", "MaskingKey") as account:
        import boto3

        store = DynamoIdentityStore(masking_key=masking_key(str(account.ref("MaskingKey"))))
        publisher = EventBridgePublisher(boto3.client("events"), str(account.ref("EventBus")))
        ingest = Ingest(store, publisher)
        for event in scenario.events:
            for record in queued(registry, event.path, event.body):
                parsed = parse(record.body)
                odd = [e.reason for e in parsed.events if isinstance(e, Unrecognised)] + parsed.rejected
                if odd:
                    problems.append(f"event {event.n} ({event.kind}): {sorted(set(odd))}")
                ingest.handle(parsed.events)
        state = read_store(store, scenario)
    return ReferenceResult(state, time.monotonic() - started, problems)


def read_store(store: Any, scenario: Scenario) -> ReadState:
    """The state through the read functions of the contacts API (``functions/contacts_and_messages_api``)."""
    from crossroute.contacts import contact_view

    state = ReadState()
    found: dict[str, Customer] = {}
    keys = [Key("phone", p) for p in scenario.phones()] + [Key("bsuid", b) for b in scenario.bsuids()]
    for key in keys:
        holder = store.holders(TENANT, [key]).get(key)
        state.found_by[key.value] = holder.id if holder else None
        if holder is not None:
            found[holder.id] = holder
    for cid, customer in found.items():
        state.contacts[cid] = contact_view(customer)
        entries: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            items, cursor = store.timeline(
                TENANT, [customer.id, *customer.merged_from], before=cursor, limit=PAGE
            )
            entries.extend(items)
            if not cursor:
                break
        state.timelines[cid] = entries
    return state
