"""The metrics of contract §11 as the functions print them on the local stack (CloudWatch embedded metric
format, as any log line): driven by real webhooks and sends, every metric of the catalogue appears with
exactly the dimensions its alarm or dashboard widget reads (``service``, plus the one
``crossroute.metrics.CATALOGUE`` names), in namespace ``crossroute``. ``RegistryInvalid`` is seen in
tests/e2e/test_registry_file.py, with the sum its alarm would read."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from crossroute.metrics import CATALOGUE, NAMESPACE
from infra.local import StackClient
from tests.support import (
    ANA_BSUID,
    ANA_PHONE,
    contact,
    eventually,
    meta_signature,
    new_bsuid,
    new_phone,
    personal,
    post_meta,
    post_twilio,
    send,
    whatsapp_customer,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("clean_sandbox")]
_DECODER = json.JSONDecoder()


class Emitted:
    """The EMF documents the stack printed from now on, summed per (metric, its dimension values)."""

    def __init__(self, stack: StackClient) -> None:
        assert stack.process is not None
        self.process = stack.process
        self.start = len(self.process.output())

    def sums(self) -> Counter[tuple[str, str | None]]:
        found: Counter[tuple[str, str | None]] = Counter()
        for line in self.process.output()[self.start :].splitlines():
            # A line may hold more than one document when two functions print at once: the first is read.
            doc = _DECODER.raw_decode(line)[0] if line.startswith('{"_aws"') else None
            for directive in (doc or {}).get("_aws", {}).get("CloudWatchMetrics", []):
                assert directive["Namespace"] == NAMESPACE
                (names,) = directive["Dimensions"]
                for metric in directive["Metrics"]:
                    name = metric["Name"]
                    extra = CATALOGUE[name]  # a metric outside the catalogue fails here
                    assert names == ["service", *([extra] if extra else [])], (name, names)
                    assert doc["service"] == "crossroute"  # the dimension the alarms and dashboard use
                    value = doc[name]
                    found[(name, doc.get(extra) if extra else None)] += (
                        sum(value) if isinstance(value, list) else value
                    )
        return found

    def wait_for(self, *wanted: tuple[str, str | None]) -> Counter[tuple[str, str | None]]:
        def seen() -> Counter[tuple[str, str | None]] | None:
            sums = self.sums()
            return sums if all(sums[w] for w in wanted) else None

        result: Counter[tuple[str, str | None]] = eventually(seen, timeout=30)
        return result


def test_webhooks_and_ingest_count_what_they_accept_refuse_create_and_merge(local_stack: StackClient) -> None:
    emitted = Emitted(local_stack)
    _, phone, _ = whatsapp_customer(local_stack)
    raw = personal("meta_text_phone_and_bsuid.json", **{ANA_PHONE: new_phone(), ANA_BSUID: new_bsuid()})
    bad = {"Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(raw, "not-the-secret")}
    assert local_stack.post("/webhooks/whatsapp", body=raw, headers=bad).status == 401
    whatsapp_customer(
        local_stack, phone=phone[1:], minutes_ago=1 / 60
    )  # the number passed to another user (I6)
    sums = emitted.wait_for(
        ("WebhookAccepted", None),
        ("EventsIngested", "message"),
        ("CustomersCreated", None),
        ("IdentityConflicts", None),
        ("WebhookRejected", "bad_signature"),
    )
    assert sums[("WebhookAccepted", None)] >= 2 and sums[("CustomersCreated", None)] >= 2
    assert sums[("WebhookRejected", "bad_signature")] >= 1, sums  # by reason: crossroute.webhooks.errors


def test_sends_count_requests_routes_fallbacks_and_the_undeliverable(local_stack: StackClient) -> None:
    emitted = Emitted(local_stack)
    customer_id, phone, _ = whatsapp_customer(local_stack)
    local_stack.post(
        "/_sandbox/recipients", json_body={"whatsapp": {phone: {"status": "failed", "error_code": 131026}}}
    )
    send(local_stack, to={"customer_id": customer_id}, text="Your order has shipped")  # WhatsApp, then R7
    send(local_stack, to={"bsuid": new_bsuid("US")}, text="Hello")  # nobody: undeliverable
    sums = emitted.wait_for(
        ("SendsRequested", None),
        ("SendsRouted", "whatsapp"),
        ("SendsRouted", "sms"),
        ("SmsFallbacks", None),
        ("EventsIngested", "status"),
        ("SendsUndeliverable", "no_channel"),
    )
    assert sums[("SendsRequested", None)] >= 2 and sums[("SmsFallbacks", None)] == 1
    assert sums[("SendsUndeliverable", "no_channel")] >= 1, sums  # a BSUID nobody holds: no channel


def test_a_throttled_send_counts_as_retried(local_stack: StackClient) -> None:
    emitted = Emitted(local_stack)
    customer_id, phone, _ = whatsapp_customer(local_stack)
    local_stack.post("/_sandbox/recipients", json_body={"whatsapp": {phone: {"sync_error_code": 130429}}})
    send(local_stack, to={"customer_id": customer_id}, text="Your order has shipped")
    try:
        sums = emitted.wait_for(("SendsRetried", None), ("ProviderErrors", "meta"))
    finally:
        local_stack.request("DELETE", "/_sandbox/recipients")
    assert sums[("SendsRetried", None)] >= 1 and sums[("ProviderErrors", "meta")] >= 1, sums


JONAS_BSUID = "DE.88201937465502911"  # meta_text_bsuid_only.json, meta_contacts_request_answer.json


def test_a_merge_a_malformed_bsuid_and_a_provider_refusal_are_counted(local_stack: StackClient) -> None:
    emitted = Emitted(local_stack)
    phone, bsuid = new_phone(), new_bsuid("DE")
    assert (
        post_twilio(
            local_stack, personal("twilio_sms_inbound.form", **{"%2B16505551234": "%2B" + phone})
        ).status
        == 200
    )
    eventually(lambda: contact(local_stack, phone="+" + phone))
    assert post_meta(local_stack, personal("meta_text_bsuid_only.json", **{JONAS_BSUID: bsuid})).status == 200
    eventually(lambda: contact(local_stack, bsuid=bsuid))
    answer = personal(
        "meta_contacts_request_answer.json",
        **{JONAS_BSUID: bsuid, "4915123456789": phone, "+49 151 23456789": "+" + phone},
    )
    assert post_meta(local_stack, answer).status == 200  # the contact-request answer: one person (I4)
    malformed = personal("meta_text_bsuid_only.json", **{JONAS_BSUID: "not a bsuid"})
    assert post_meta(local_stack, malformed).status == 200  # stored as unrecognised, the id refused (I2)
    refused = "+" + new_phone()
    local_stack.post("/_sandbox/recipients", json_body={"sms": {refused: {"error_code": 21610}}})
    send(local_stack, to={"phone": refused}, text="Hello")  # Twilio refuses: the recipient said STOP there
    sums = emitted.wait_for(
        ("CustomersMerged", None), ("IdentifiersRejected", None), ("ProviderErrors", "twilio")
    )
    assert sums[("CustomersMerged", None)] == 1
