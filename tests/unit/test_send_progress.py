"""``GET /messages/{request_id}``: what the send door answers about a request (``progress_view``), over
the in-memory store; tests/adapters/test_send_store_agreement.py holds the table to the same answers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crossroute.ports import ProviderStatus, SendProgress, SendRecord
from crossroute.send_door import SendDoor, progress_view
from crossroute.tenants import TenantRegistry
from tests.fakes import MemorySendStore, RecordingSendQueue
from tests.support import registry_document

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
REQUEST = {"tenant": "demo", "idempotency_key": "k1", "to": {"phone": "+15550123456"}, "text": "Hi"}
BOTH = [
    {"channel": "whatsapp", "qualified": True, "reason": "whatsapp.window_open"},
    {"channel": "sms", "qualified": True, "reason": "sms.fallback_available"},
]
NEITHER = [
    {"channel": "whatsapp", "qualified": False, "reason": "whatsapp.no_window_no_template"},
    {"channel": "sms", "qualified": False, "reason": "sms.no_phone"},
]


def sent(provider: str, message_id: str) -> dict:
    return {
        "state": "sent",
        "at": NOW,
        "attempt": "a1",
        "provider": provider,
        "provider_message_id": message_id,
    }


def progress(
    decision: list, sends: dict, statuses: dict | None = None, dead_lettered_at: datetime | None = None
) -> dict:
    record = SendRecord("demo", "k1", "r1", REQUEST, decision, "c1", sends)
    deliveries = {c: ProviderStatus(s) for c, s in (statuses or {}).items()}
    return progress_view(SendProgress(record, NOW, dead_lettered_at, deliveries))


@pytest.mark.parametrize(
    ("decision", "sends", "statuses", "status"),
    [
        ([], {}, {}, "queued"),
        (NEITHER, {}, {}, "undeliverable"),
        (BOTH, {"whatsapp": {"state": "sending", "at": NOW, "attempt": "a1"}}, {}, "sending"),
        (BOTH, {"whatsapp": {"state": "unknown", "at": NOW, "attempt": "a1"}}, {}, "sending"),
        (BOTH, {"whatsapp": sent("meta", "wamid.1")}, {"whatsapp": None}, "sent"),
        (BOTH, {"whatsapp": sent("meta", "wamid.1")}, {"whatsapp": "delivered"}, "delivered"),
        (BOTH, {"whatsapp": sent("meta", "wamid.1")}, {"whatsapp": "read"}, "read"),
        (BOTH, {"whatsapp": sent("meta", "wamid.1")}, {"whatsapp": "failed"}, "failed"),
        (BOTH, {"sms": sent("twilio", "SM1")}, {"sms": "undelivered"}, "failed"),
        # R7: WhatsApp failed, the SMS fallback delivered: the request's status is its best channel's
        (
            BOTH,
            {"whatsapp": {"state": "failed", "at": NOW, "code": "131026"}, "sms": sent("twilio", "SM1")},
            {"sms": "delivered"},
            "delivered",
        ),
    ],
)
def test_a_requests_status_is_its_most_advanced_channels(
    decision: list, sends: dict, statuses: dict, status: str
) -> None:
    assert progress(decision, sends, statuses)["status"] == status


def test_a_dead_lettered_request_is_undeliverable_whatever_was_decided() -> None:
    view = progress(BOTH, {}, dead_lettered_at=NOW)
    assert (view["status"], view["dead_lettered_at"]) == ("undeliverable", NOW.isoformat())


def test_the_view_shows_the_request_decision_and_each_channels_send_without_internals() -> None:
    sms = {**sent("twilio", "SM1"), "sender": "+15550009999", "reason": "sms.fallback_available"}
    view = progress(BOTH, {"sms": sms}, {"sms": "delivered"})
    assert view["request"] == REQUEST and view["decision"] == BOTH and view["chosen"] == "whatsapp"
    assert view["channels"]["sms"] == {
        "state": "sent",
        "at": NOW.isoformat(),
        "provider": "twilio",
        "provider_message_id": "SM1",
        "reason": "sms.fallback_available",
        "from": "+15550009999",
        "status": "delivered",
        "status_at": None,
        "errors": [],
    }
    assert "external_id" not in view and view["customer_id"] == "c1"


def test_the_door_answers_the_progress_of_the_request_id_it_gave_and_nothing_else() -> None:
    registry = TenantRegistry.from_json(registry_document())
    store, queue = MemorySendStore(), RecordingSendQueue()
    door = SendDoor(store, queue, lambda: registry, clock=lambda: NOW, new_id=lambda: "r1")
    request_id = door.accept(REQUEST, default_tenant=lambda: "demo")
    view = door.progress("demo", request_id)
    assert view is not None and (view["status"], view["created_at"]) == ("queued", NOW.isoformat())
    assert door.progress("demo", "r2") is None
    assert door.progress("other-tenant", request_id) is None
