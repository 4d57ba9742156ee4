"""Fuzzing the whole intake with correctly signed payloads: real payloads (the shared and third-party
fixtures) mutated by hypothesis (fields dropped, retyped, enlarged, nested, repeated), signed as the
provider would, posted to the real webhook handler, and everything it queued consumed by the real
ingest handler, in moto.

What must hold, whatever the content:
- the webhook answers 200 or refuses at the door with a 4xx: never a 5xx;
- the consumer never fails a record (a failure would be retried, then dead-lettered);
- every customer the events name can still be read (as GET /contacts would).

``CROSSROUTE_FUZZ_EXAMPLES`` sets how many examples each test runs (``make soak`` runs many more).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as label
from hypothesis import strategies as st

from crossroute.contacts import contact_view
from crossroute.identity.model import Key
from crossroute.inbound import InboundMessage, OutboundEcho, Person, StatusUpdate
from crossroute.parsing.queued import parse
from crossroute.store.identity_store import DynamoIdentityStore
from infra.local.emulated import emulated_account
from tests.support import (
    CORE_FIXTURES,
    as_local_meta,
    as_local_twilio,
    function_environment,
    http_event,
    load_handler,
    meta_signature,
    third_party_meta,
    third_party_twilio,
    twilio_signature,
)

EXAMPLES = int(os.environ.get("CROSSROUTE_FUZZ_EXAMPLES", "40"))
BASE = "http://127.0.0.1:3000"
REFUSALS = {400, 401, 404, 413, 415}

META_CORPUS = [as_local_meta(p) for _, p in third_party_meta()] + [
    as_local_meta(json.loads(p.read_text())) for p in sorted(CORE_FIXTURES.glob("meta_*.json"))
]
TWILIO_CORPUS = [(kind, params) for _, kind, params in third_party_twilio()]


class Context:
    function_name = "fuzz"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:fuzz"
    aws_request_id = "req-fuzz"


def _load(function: str) -> ModuleType:
    return load_handler(function, f"fuzz_{function}")


@dataclass
class Intake:
    whatsapp: ModuleType
    twilio: ModuleType
    ingest: ModuleType
    queue_url: str
    queue_arn: str

    def post(self, event: dict[str, Any]) -> int:
        module = self.whatsapp if event["rawPath"] == "/webhooks/whatsapp" else self.twilio
        answer = module.lambda_handler(event, Context())
        status = int(answer["statusCode"])
        assert status == 200 or status in REFUSALS, (status, answer["body"])
        label(f"answered {status}")
        return status

    def consume(self) -> list[str]:
        """Every queued body, each through the ingest handler; fails on a record it could not take."""
        sqs, bodies = boto3.client("sqs"), []
        while messages := sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages"):
            records = [_record(m, self.queue_arn) for m in messages]
            answer = self.ingest.lambda_handler({"Records": records}, Context())
            assert answer["batchItemFailures"] == [], "the consumer failed a record"
            for message in messages:
                bodies.append(message["Body"])
                label("consumed an event")
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return bodies


def _record(message: dict[str, Any], arn: str) -> dict[str, Any]:
    attributes = dict(message["Attributes"])
    attributes.setdefault("SequenceNumber", str(uuid.uuid4().int)[:20])
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": "us-east-1",
    }


@pytest.fixture(scope="module")
def intake() -> Iterator[Intake]:
    with (
        emulated_account("InboundQueue", "EventBus", "MaskingKey") as account,
        pytest.MonkeyPatch.context() as mp,
    ):
        env = function_environment(
            account,
            "WhatsAppWebhookFunction",
            "TwilioWebhookFunction",
            "IngestFunction",
            PUBLIC_BASE_URL=BASE,
            POWERTOOLS_LOG_LEVEL="ERROR",
        )
        for name, value in env.items():
            mp.setenv(name, value)
        yield Intake(
            _load("whatsapp_webhook"),
            _load("twilio_webhook"),
            _load("ingest"),
            env["INBOUND_QUEUE_URL"],
            str(account.get_att("InboundQueue", "Arn")),
        )


# --------------------------------------------------------------------------- mutations
def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``node`` (dict keys and list indexes)."""
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*path, index))
    return found


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        return {**node, head: _replace(node[head], rest, value)}
    copy = list(node)
    copy[head] = _replace(copy[head], rest, value)
    return copy


def _drop(node: Any, path: tuple[Any, ...]) -> Any:
    if len(path) == 1:
        if isinstance(node, dict):
            return {k: v for k, v in node.items() if k != path[0]}
        return [v for i, v in enumerate(node) if i != path[0]]
    head = path[0]
    if isinstance(node, dict):
        return {**node, head: _drop(node[head], path[1:])}
    copy = list(node)
    copy[head] = _drop(copy[head], path[1:])
    return copy


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        node = node[key]
    return node


odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(["", " ", "0", "+", "whatsapp:", "US.", "US.1", "+16505551234", "\x00", "é" * 30]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@st.composite
def mutated_meta(draw: st.DrawFn) -> Any:
    doc = draw(st.sampled_from(META_CORPUS))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(doc)
        inside = [p for p in paths if len(p) >= 6]  # inside a change's value: mostly past the door
        path = draw(st.sampled_from(inside if inside and draw(st.booleans()) else paths))
        kind = draw(st.sampled_from(["drop", "retype", "enlarge", "nest", "repeat"]))
        if kind == "drop" and path:
            doc = _drop(doc, path)
        elif kind == "retype":
            doc = _replace(doc, path, draw(odd_values))
        elif kind == "enlarge":
            size = draw(st.sampled_from([300, 5_000, 70_000, 300_000]))
            doc = _replace(doc, path, draw(st.sampled_from(["x", "é", "😀", "wamid."])) * size)
        elif kind == "nest":
            depth = draw(st.sampled_from([2, 30, 63, 64, 65, 500]))
            value = _get(doc, path)
            for _ in range(depth):
                value = [value]
            doc = _replace(doc, path, value)
        elif kind == "repeat":
            value = _get(doc, path)
            if isinstance(value, list) and value:
                doc = _replace(doc, path, value * draw(st.sampled_from([2, 50, 400])))
    return doc


@st.composite
def mutated_twilio(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]]]:
    kind, params = draw(st.sampled_from(TWILIO_CORPUS))
    params = list(params)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        index = draw(st.integers(min_value=0, max_value=max(0, len(params) - 1)))
        action = draw(st.sampled_from(["drop", "value", "enlarge", "repeat", "add"]))
        if action == "drop" and params:
            params.pop(index)
        elif action == "value" and params:
            params[index] = (params[index][0], str(draw(odd_values)))
        elif action == "enlarge" and params:
            params[index] = (params[index][0], "é" * draw(st.sampled_from([100, 2_000, 20_000])))
        elif action == "repeat" and params:
            params += [params[index]] * draw(st.sampled_from([1, 5]))
        else:
            params.append((draw(st.text(min_size=1, max_size=20)), draw(st.text(max_size=50))))
    return kind, params


# --------------------------------------------------------------------------- the properties
def readable_afterwards(bodies: list[str]) -> None:
    """Every customer the consumed events name is readable, as GET /contacts reads it."""
    store = DynamoIdentityStore()
    for body in bodies:
        for event in parse(body).events:
            person = _person(event)
            keys = [Key("phone", person.phone)] if person and person.phone else []
            keys += [Key("bsuid", person.bsuid)] if person and person.bsuid else []
            for customer in store.holders("demo", keys).values():
                view = contact_view(customer)
                assert json.dumps(view) and view["id"] == customer.id
                assert all(b for b in view["whatsapp"]["windows"]), "an empty business number in the profile"


def _person(event: Any) -> Person | None:
    if isinstance(event, InboundMessage):
        return event.sender
    if isinstance(event, OutboundEcho | StatusUpdate):
        return event.recipient
    return getattr(event, "person", None)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(doc=mutated_meta())
def test_a_signed_mutated_meta_payload_is_stored_or_refused_and_never_breaks_a_customer(
    intake: Intake, doc: Any
) -> None:
    raw = json.dumps(doc).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(raw)}
    intake.post(http_event("POST", "/webhooks/whatsapp", body=raw, headers=headers))
    readable_afterwards(intake.consume())


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=mutated_twilio())
def test_a_signed_mutated_twilio_form_is_stored_or_refused_and_never_breaks_a_customer(
    intake: Intake, payload: tuple[str, list[tuple[str, str]]]
) -> None:
    path, form = as_local_twilio(*payload)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": twilio_signature(BASE + path, form),
    }
    intake.post(http_event("POST", path, body=form, headers=headers, base64_body=True))
    readable_afterwards(intake.consume())
