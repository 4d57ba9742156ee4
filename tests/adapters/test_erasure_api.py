"""``DELETE /contacts/{id}`` through the API function's real handler (moto, provisioned from
template.yaml): the caller (the IAM principal API Gateway authenticated) is logged with counts and no
personal data, and ``CustomerErased`` is published through the function's own publisher (I10)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters

from crossroute.identity.model import Key
from crossroute.ingest import Ingest
from crossroute.store.identity_store import DynamoIdentityStore
from infra.local.emulated import emulated_account
from infra.local.gateway import build_http_event
from tests.fakes import RecordingPublisher
from tests.support import LambdaContext, function_environment, load_handler, sms_in

PHONE = "+16505550001"
ROLE = "arn:aws:sts::123456789012:assumed-role/support-desk/jane"
LOGGED = ("caller", "tenant", "customer_id", "merged_from", "items_deleted", "phones_suppressed")


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, RecordingPublisher]]:
    """The API handler in a fresh account, its bus recorded (behind the function's own ``_Bus``)."""
    with emulated_account("SendQueue", "EventBus", "MaskingKey") as account:
        for name, value in function_environment(account, "ContactsAndMessagesApiFunction").items():
            monkeypatch.setenv(name, value)
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        module = load_handler("contacts_and_messages_api")
        bus = RecordingPublisher()
        monkeypatch.setattr(module, "_bus", lambda: bus)
        yield module, bus


def delete(module: ModuleType, customer_id: str, principal: str | None) -> dict[str, Any]:
    event = build_http_event(
        method="DELETE",
        raw_path=f"/contacts/{customer_id}",
        raw_query="",
        headers=[("host", "127.0.0.1:3000")],
        body=b"",
        route_key="DELETE /contacts/{customer_id}",
        path_parameters={"customer_id": customer_id},
        request_id="dQe6cjMoIAMEVgA=",
    )
    if principal:  # what API Gateway adds for an AWS_IAM route
        event["requestContext"]["authorizer"] = {"iam": {"userArn": principal, "accountId": "123456789012"}}
    answer: dict[str, Any] = module.lambda_handler(event, LambdaContext())
    return answer


def customer_who_said_stop() -> str:
    store = DynamoIdentityStore()
    ingest = Ingest(store, RecordingPublisher(), sleep=lambda _: None)
    ingest.handle([sms_in("SM1", PHONE, 0, "hello")])
    ingest.handle([sms_in("SM2", PHONE, 1, "STOP")])
    return store.holders("demo", [Key("phone", PHONE)])[Key("phone", PHONE)].id


@pytest.mark.parametrize(
    ("principal", "logged"),
    [(ROLE, ROLE), (None, "unauthenticated (no IAM principal: the local stack)")],
)
def test_the_erasure_is_logged_with_its_caller_and_counts_and_published(
    api: tuple[ModuleType, RecordingPublisher],
    caplog: pytest.LogCaptureFixture,
    principal: str | None,
    logged: str,
) -> None:
    module, bus = api
    customer_id = customer_who_said_stop()
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    # On the service's own logger too: whether it propagates to the root depends on which test set
    # Powertools up for that logger name first.
    service = logging.getLogger(module.logger.name)
    if not service.propagate:
        service.addHandler(caplog.handler)
    try:
        assert delete(module, customer_id, principal)["statusCode"] == 204
    finally:
        service.removeHandler(caplog.handler)
    (line,) = [r for r in caplog.records if r.getMessage() == "contact erased"]
    fields = {k: getattr(line, k, None) for k in LOGGED}
    assert line.levelno == logging.INFO and fields == {
        "caller": logged,
        "tenant": "demo",
        "customer_id": customer_id,
        "merged_from": [],
        "items_deleted": 1 + 1 + 2 + 2,  # profile, key, two messages, two identity events
        "phones_suppressed": 1,
    }
    everything = json.dumps([vars(r) for r in caplog.records if r.levelno >= logging.INFO], default=str)
    assert PHONE[2:] not in everything and "STOP" not in everything  # no phone, no body, on any line
    (event,) = bus.wire()
    assert event[0] == "CustomerErased"
    assert event[1]["customer_id"] == customer_id and event[1]["correlation_id"] == "dQe6cjMoIAMEVgA="
    assert delete(module, customer_id, principal)["statusCode"] == 404  # gone; nothing published again
    assert len(bus.events) == 1
