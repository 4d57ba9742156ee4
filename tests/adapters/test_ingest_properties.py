"""Contract §9 against DynamoDB (moto): any duplication and reordering of a set of provider events ends
in the same state as one in-order delivery, through ``Ingest`` and the real ``DynamoIdentityStore``.

The histories and the canonical state (customers as partitions of keys, their attributes, which
customer each message belongs to, each message's status; generated ids ignored) come from
``tests/support.py``; ``tests/unit/test_identity_properties.py`` runs many more of them over the
in-memory store (``tests/fakes/identity_store.py``). Here each example also checks that the in-memory
store and DynamoDB agree, so those many examples speak for the real store too.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from crossroute.identity.model import Key
from crossroute.inbound import Person, ProviderEvent, StatusUpdate
from crossroute.ingest import Ingest
from crossroute.store.identity_store import DynamoIdentityStore, to_customer
from crossroute.store.tables import CustomerItem, KeyItem, MessageItem, TableItem
from tests.fakes import RecordingPublisher
from tests.support import (
    HISTORY_T0,
    TENANT,
    IdentityState,
    canonical,
    deliveries,
    explain,
    histories,
    ingest_each,
    memory_state,
    run_memory,
)


def wipe() -> None:
    """Empty the table between examples (a fresh moto account per example is slower)."""
    with TableItem.batch_write() as batch:
        for item in TableItem.scan(consistent_read=True):
            batch.delete(item)


def run_dynamo(events: Sequence[ProviderEvent]) -> DynamoIdentityStore:
    wipe()
    return ingest_each(DynamoIdentityStore(), events)


def dynamo_state(store: DynamoIdentityStore) -> IdentityState:
    items = list(TableItem.scan(consistent_read=True))
    customers = [to_customer(i) for i in items if isinstance(i, CustomerItem)]
    by_id = {c.id: c for c in customers}
    live = [c for c in customers if c.live]
    # I3 in the table itself: every key item names a live customer that has the key, and every
    # BSUID and current phone of a live customer is a key item naming it.
    keys = {i.pk: i.customer_id for i in items if isinstance(i, KeyItem)}
    for pk, cid in keys.items():
        kind, value = pk.split("#K#", 1)[1].split("#", 1)
        assert by_id[cid].live and Key(kind, value) in by_id[cid].keys, (pk, cid)  # type: ignore[arg-type]
    for customer in live:
        for key in [
            *(Key("bsuid", b.id) for b in customer.bsuids),
            *(Key("phone", p) for p in customer.current_phones()),
        ]:
            assert keys.get(f"T#{TENANT}#K#{key.kind}#{key.value}") == customer.id, (key, customer.id)
    messages = [(i.message_id, i.customer_id, i.status) for i in items if isinstance(i, MessageItem)]
    return canonical(live, messages, lambda cid: store.customer(TENANT, cid))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_redelivery_and_reordering_ends_in_the_in_order_state(table: str, data: st.DataObject) -> None:
    history = data.draw(histories(max_steps=8))
    shuffled = data.draw(deliveries(history))
    note(history.describe())
    in_order = dynamo_state(run_dynamo(history.events))
    reordered = dynamo_state(run_dynamo(shuffled))
    assert in_order == reordered, explain(history, shuffled, in_order, reordered)
    # The in-memory stand-in the unit property runs on agrees with DynamoDB.
    assert memory_state(run_memory(history.events)) == in_order


@pytest.mark.parametrize(
    "ladder",
    [("accepted", "queued"), ("failed", "undelivered"), ("sent", "delivered", "read")],
    ids=["accepted-queued", "failed-undelivered", "sent-delivered-read"],
)
def test_statuses_end_the_same_whatever_the_order(table: str, ladder: tuple[str, ...]) -> None:
    """Statuses never go backwards; on the same rung (same rank) the later provider time wins, so a
    reordering cannot leave the earlier one (found by the property: "queued" then "accepted")."""
    times = [HISTORY_T0 + timedelta(minutes=n) for n in range(len(ladder))]
    updates = [
        StatusUpdate(TENANT, "twilio", "sms", "SM1", "+15550100002", Person(), status, at)
        for status, at in zip(ladder, times, strict=True)
    ]
    finals = set()
    for order in itertools.permutations(updates):
        wipe()
        ingest = Ingest(DynamoIdentityStore(), RecordingPublisher(), sleep=lambda _: None)
        for update in (*order, *order):  # and every one redelivered
            ingest.handle([update])
        item = DynamoIdentityStore().message(TENANT, "twilio", "SM1")
        assert item is not None
        finals.add((item.status, item.status_at))
    assert finals == {(ladder[-1], updates[-1].at)}
