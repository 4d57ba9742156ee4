"""The metrics of contract §11 (docs/operations.md): exactly the catalogue, written as CloudWatch EMF by
Powertools, and counted by the use cases from what really happened (over the fakes)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from crossroute.inbound_queue import QueuedEvent
from crossroute.ingest import InboundConsumer, Ingest
from crossroute.metrics import CATALOGUE, EmfMetrics, UnknownMetric
from crossroute.ports import Delivery
from tests.fakes import MemoryIdentityStore, RecordingDeadLetters, RecordingPublisher
from tests.fakes.metrics import RecordingMetrics
from tests.support import TENANT, fixture_bytes, fixture_json

CONTRACT = {
    "WebhookAccepted": None,
    "WebhookRejected": "reason",
    "EventsIngested": "kind",
    "CustomersCreated": None,
    "CustomersMerged": None,
    "IdentityConflicts": None,
    "IdentifiersRejected": None,
    "SendsRequested": None,
    "SendsRouted": "channel",
    "SmsFallbacks": None,
    "SendsUndeliverable": "reason",
    "ProviderErrors": "provider",
    "SendsRetried": None,
    "RegistryInvalid": None,
}


def test_the_catalogue_is_exactly_the_contracts() -> None:
    assert CATALOGUE == CONTRACT


def emitted(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return [doc for doc in map(json.loads, lines) if "_aws" in doc]


def test_counts_are_summed_per_invocation_into_emf_documents(capsys: pytest.CaptureFixture[str]) -> None:
    metrics = EmfMetrics.for_function()
    metrics.count("CustomersCreated")
    metrics.count("CustomersCreated", 2)
    metrics.count("SendsRouted", dimension="sms")
    metrics.count("SendsRouted", dimension="sms")
    metrics.count("SendsRouted", dimension="whatsapp")
    metrics.count("SmsFallbacks", 0)  # nothing happened: nothing written
    metrics.flush()
    docs = emitted(capsys)
    plain = [d for d in docs if "CustomersCreated" in d]
    assert len(plain) == 1 and plain[0]["CustomersCreated"] == [3.0]  # one value a flush (a list in EMF)
    (directive,) = plain[0]["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "crossroute" and directive["Dimensions"] == [["service"]]
    routed = {d["channel"]: d["SendsRouted"] for d in docs if "SendsRouted" in d}
    assert routed == {"sms": [2.0], "whatsapp": [1.0]}
    for doc in docs:
        assert doc["service"] == "crossroute"
        assert "SmsFallbacks" not in doc
    metrics.flush()  # a second flush writes nothing: the counts were per invocation
    assert emitted(capsys) == []


@pytest.mark.parametrize(
    ("name", "dimension"),
    [("NotAMetric", None), ("SendsRouted", None), ("CustomersCreated", "x")],
)
def test_a_metric_outside_the_catalogue_or_with_the_wrong_dimension_is_refused(
    name: str, dimension: str | None
) -> None:
    with pytest.raises(UnknownMetric):
        EmfMetrics.for_function().count(name, dimension=dimension)


def consume(metrics: RecordingMetrics, store: MemoryIdentityStore, fixture: str, n: int = 1) -> None:
    ingest = Ingest(store, RecordingPublisher(), sleep=lambda _: None)
    consumer = InboundConsumer(ingest, RecordingDeadLetters, max_receives=5, metrics=metrics)
    queued = QueuedEvent.build(
        tenant=TENANT, sender="x", kind="meta.webhook", content={"payload": fixture_json(fixture)}
    )
    consumer.consume(Delivery(queued.body, f"m{n}", 1))


def test_ingest_counts_events_by_kind_and_customers_created_once() -> None:
    metrics, store = RecordingMetrics(), MemoryIdentityStore()
    consume(metrics, store, "meta_text_phone_and_bsuid.json")
    consume(metrics, store, "meta_text_phone_and_bsuid.json", 2)  # redelivered: ingested, nobody new
    assert metrics.of("EventsIngested") == {"message": 2}
    assert metrics.of("CustomersCreated") == {None: 1}
    assert metrics.of("CustomersMerged") == {}


def test_ingest_counts_what_the_parser_dropped() -> None:
    metrics = RecordingMetrics()
    payload = fixture_json("meta_text_bsuid_only.json")
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["from_user_id"] = "not a bsuid"
    queued = QueuedEvent.build(tenant=TENANT, sender="y", kind="meta.webhook", content={"payload": payload})
    ingest = Ingest(MemoryIdentityStore(), RecordingPublisher(), sleep=lambda _: None)
    InboundConsumer(ingest, RecordingDeadLetters, max_receives=5, metrics=metrics).consume(
        Delivery(queued.body, "m9", 1)
    )
    assert metrics.of("IdentifiersRejected") == {None: 1}
    assert metrics.of("CustomersCreated") == {None: 1}  # the contacts block still names the sender


def test_ingest_counts_a_merge_once() -> None:
    """Jonas texts by SMS (one customer), then on WhatsApp by BSUID alone (a second), then answers a
    contact request with that phone: the two are one person (I4), merged and counted once."""
    answer = fixture_json("meta_contacts_request_answer.json")
    text = json.loads(json.dumps(answer))
    message = text["entry"][0]["changes"][0]["value"]["messages"][0]
    message.update(id="wamid.JONAS1", timestamp="1779876400", type="text", text={"body": "hi"})
    del message["contacts"]
    sms = (
        fixture_bytes("twilio_sms_inbound.form")
        .decode()
        .replace("From=%2B16505551234", "From=%2B4915123456789")
    )
    bodies = [
        QueuedEvent.build(tenant=TENANT, sender="j", kind="twilio.message", content={"form": sms}).body,
        QueuedEvent.build(tenant=TENANT, sender="j", kind="meta.webhook", content={"payload": text}).body,
        QueuedEvent.build(tenant=TENANT, sender="j", kind="meta.webhook", content={"payload": answer}).body,
    ]
    metrics, store = RecordingMetrics(), MemoryIdentityStore()
    consumer = InboundConsumer(
        Ingest(store, RecordingPublisher(), sleep=lambda _: None),
        RecordingDeadLetters,
        max_receives=5,
        metrics=metrics,
    )
    for n, body in enumerate([*bodies, bodies[-1]]):  # the answer redelivered: no second merge
        consumer.consume(Delivery(body, f"m{n}", 1))
    assert metrics.of("CustomersCreated") == {None: 2}
    assert metrics.of("CustomersMerged") == {None: 1}
    assert len(store.live_customers(TENANT)) == 1


class BrokenStore(MemoryIdentityStore):
    def holders(self, tenant: str, keys: Any) -> Any:
        raise ConnectionError("injected: the table is unavailable")


def test_a_record_that_fails_is_logged_at_warning_with_its_reason_then_parked_on_its_last_receive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    parked = RecordingDeadLetters()
    ingest = Ingest(BrokenStore(), RecordingPublisher(), sleep=lambda _: None)
    consumer = InboundConsumer(ingest, lambda: parked, max_receives=2)
    queued = QueuedEvent.build(
        tenant=TENANT,
        sender="x",
        kind="meta.webhook",
        content={"payload": fixture_json("meta_text_bsuid_only.json")},
    )
    with caplog.at_level("WARNING"), pytest.raises(ConnectionError):
        consumer.consume(Delivery(queued.body, "m1", 1))
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert (warning.reason, warning.id, warning.receive) == ("ConnectionError", "m1", 1)  # type: ignore[attr-defined]
    assert "US." not in warning.getMessage()
    consumer.consume(Delivery(queued.body, "m1", 2))  # the last receive: parked, counted as done
    assert [p.reason for p in parked.parked] == ["ConnectionError"]
