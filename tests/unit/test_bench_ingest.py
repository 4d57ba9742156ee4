"""The bench's DynamoDB round-trip counter counts every call PynamoDB makes, and only those (moto)."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from pynamodb.connection.base import Connection

from crossroute.store.tables import KeyItem, TableItem
from infra.bench import ingest as bench
from tests.fakes import MemoryIdentityStore, RecordingPublisher


def test_each_api_call_is_counted_once_with_its_operation_and_size() -> None:
    with bench.moto_table(), bench.DynamoCalls() as calls:
        with pytest.raises(KeyItem.DoesNotExist):
            KeyItem.get("T#demo#K#phone#+15550000000", "KEY")
        list(TableItem.batch_get([("a", "KEY"), ("b", "KEY"), ("c", "KEY")]))
        KeyItem("T#demo#K#bsuid#US.1", "KEY", customer_id="c1").save()
    assert calls.calls == [
        bench.Call("GetItem", 1),
        bench.Call("BatchGetItem", 3),
        bench.Call("PutItem", 1),
    ]
    assert calls.attempts == 3


def test_nothing_is_counted_before_entering_or_after_leaving() -> None:
    with bench.moto_table():
        KeyItem("T#demo#K#bsuid#US.1", "KEY", customer_id="c1").save()
        with bench.DynamoCalls() as calls:
            KeyItem.get("T#demo#K#bsuid#US.1", "KEY")
        KeyItem.get("T#demo#K#bsuid#US.1", "KEY")
    assert [c.operation for c in calls.calls] == ["GetItem"]


def _scenario(prefix: str) -> bench.Scenario:
    return next(s for s in bench.scenarios() if s.name.startswith(prefix))


def test_a_known_customer_text_is_counted_as_pynamodb_sends_it() -> None:
    """Cross-check against PynamoDB's own choke point: every call of the event, none of the scene."""
    seen: list[str] = []
    real = Connection._make_api_call

    def spy(self: Connection, operation: str, kwargs: dict[str, Any]) -> Any:
        seen.append(operation)
        return real(self, operation, kwargs)

    scenario = _scenario("(a)")
    with mock.patch.object(Connection, "_make_api_call", spy):
        measured = bench.measure_round_trips(scenario)
    operations = [c.operation for c in measured.calls]
    # the scene's calls come first in `seen`; the event's are its tail
    assert operations == seen[len(seen) - len(operations) :]
    assert operations == ["BatchGetItem", "BatchGetItem", "TransactWriteItems"]
    assert [c.items for c in measured.calls] == [2, 1, 2]  # phone + BSUID keys, Ana, profile + message
    assert measured.attempts == measured.round_trips == 3


def test_a_known_customer_in_a_warm_container_is_one_read_and_one_write() -> None:
    measured = bench.measure_round_trips(_scenario("(a')"))
    assert [c.operation for c in measured.calls] == ["BatchGetItem", "TransactWriteItems"]
    assert [c.items for c in measured.calls] == [
        3,
        2,
    ]  # two keys and the remembered profile; profile + message


def test_a_first_message_from_a_new_bsuid_reads_once_and_writes_once() -> None:
    measured = bench.measure_round_trips(_scenario("(b)"))
    assert [c.operation for c in measured.calls] == ["BatchGetItem", "TransactWriteItems"]


def test_the_fake_store_resolves_like_the_real_one_for_a_known_customer() -> None:
    from crossroute.ingest import Ingest
    from crossroute.parsing.queued import parse

    store = MemoryIdentityStore()  # the bench's CPU rows run over it
    ingest = Ingest(store, RecordingPublisher())
    ingest.handle(parse(bench.meta_text(bench.ANA, 1)).events)
    outcome = ingest.handle(parse(bench.meta_text(bench.ANA, 2)).events)
    again = ingest.handle(parse(bench.meta_text(bench.ANA, 2)).events)
    assert len(store.customers) == 1 and len(store.keys) == 2
    assert outcome.duplicates == 0 and again.duplicates == 1
    (customer,) = store.customers.values()
    assert customer.version == 2
