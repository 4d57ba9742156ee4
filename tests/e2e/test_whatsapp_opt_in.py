"""R15 on the local stack: a tenant whose registry entry requires a WhatsApp opt-in for marketing
templates. A marketing template to a customer without one is undeliverable (``whatsapp.no_opt_in``);
after ``POST /contacts`` with ``whatsapp_opt_in: true``, or the customer's own ``JOIN``, it goes out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from infra.local import StackClient
from tests.support import (
    LOCAL_TENANT,
    Probe,
    contact,
    eventually,
    outbox,
    send,
    stack_with_tenant,
    timeline,
    whatsapp_customer,
)

pytestmark = pytest.mark.e2e
REQUIRES_OPT_IN: dict[str, object] = {
    **LOCAL_TENANT,
    "whatsapp_opt_in_required": ["marketing"],
    "whatsapp_opt_in_keywords": ["JOIN"],
}
SALE = {"name": "winter_sale", "language": "en_US", "category": "marketing", "components": []}


@pytest.fixture(scope="module")
def consent_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackClient]:
    """Its own stack, with event sources on: send requests are dispatched."""
    with stack_with_tenant(tmp_path_factory.mktemp("opt-in"), REQUIRES_OPT_IN) as client:
        yield client


@pytest.fixture
def probe(consent_stack: StackClient) -> Iterator[Probe]:
    watching = Probe(consent_stack)
    try:
        yield watching
    finally:
        watching.close()


def send_sale(stack: StackClient, customer_id: str) -> str:
    return send(stack, to={"customer_id": customer_id}, template=SALE, channels=["whatsapp"])


def sales_to(stack: StackClient, phone: str) -> list[dict[str, Any]]:
    """The marketing templates the sandbox took for ``phone`` (E.164: a phone goes in ``to``, R2)."""
    return outbox(stack, template=SALE["name"], to=phone)


def test_no_marketing_template_without_an_opt_in_until_a_record_gives_one(
    consent_stack: StackClient, probe: Probe
) -> None:
    customer_id, phone, bsuid = whatsapp_customer(consent_stack, text="hello")
    view = contact(consent_stack, bsuid=bsuid)
    assert view and view["whatsapp_opt_in"] == {"value": False, "at": None, "source": None}
    request_id = send_sale(consent_stack, customer_id)
    (refused,) = eventually(lambda: probe.events("MessageUndeliverable", request_id=request_id))
    assert refused["decision"] == [
        {"channel": "whatsapp", "qualified": False, "reason": "whatsapp.no_opt_in"}
    ]
    assert sales_to(consent_stack, phone) == []

    answer = consent_stack.post("/contacts", json_body={"bsuid": bsuid, "whatsapp_opt_in": True})
    assert answer.status == 200, answer.text
    opt_in = answer.json()["contact"]["whatsapp_opt_in"]
    assert opt_in["value"] is True and opt_in["source"] == "business.record"
    send_sale(consent_stack, customer_id)
    (sale,) = eventually(lambda: sales_to(consent_stack, phone))
    assert sale["channel"] == "whatsapp"
    withdraw = consent_stack.post("/contacts", json_body={"bsuid": bsuid, "whatsapp_opt_in": False})
    assert [r["code"] for r in withdraw.json()["refused"]] == ["opt_in.withdraw_needs_user"]


def test_the_tenant_keyword_records_the_opt_in_and_the_template_goes_out(consent_stack: StackClient) -> None:
    customer_id, phone, bsuid = whatsapp_customer(consent_stack, text="join")
    view = eventually(
        lambda: (c := contact(consent_stack, bsuid=bsuid)) and c["whatsapp_opt_in"]["value"] and c
    )
    assert view["whatsapp_opt_in"]["source"] == "user.keyword"
    items = timeline(consent_stack, customer_id)
    assert [i for i in items if i["kind"] == "identity" and i["change"] == "whatsapp_opt_in"], items
    send_sale(consent_stack, customer_id)
    (sale,) = eventually(lambda: sales_to(consent_stack, phone))
    assert sale["channel"] == "whatsapp"
