"""Test helpers shared by the test modules (a test module never imports another): the provider fixtures,
the local tenant, signing as Meta and Twilio do, builders of provider events and histories, and harnesses
of the use cases over DynamoDB (moto). In-memory fakes of the ports are in ``tests/fakes``; pytest
fixtures in the ``conftest.py`` of the directory that uses them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import itertools
import json
import re
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode

from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from hypothesis import strategies as st
from jsonschema import Draft4Validator
from twilio.request_validator import RequestValidator

from crossroute.channels import Channel
from crossroute.dispatch import Dispatch, TenantSetup
from crossroute.identity.model import Customer, Key
from crossroute.inbound import (
    IdentityChange,
    InboundMessage,
    OutboundEcho,
    Person,
    PreferenceChange,
    ProviderError,
    ProviderEvent,
    StatusUpdate,
    Unrecognised,
)
from crossroute.inbound_queue import QueuedEvent
from crossroute.ingest import Ingest, Ingested
from crossroute.parsing.queued import parse
from crossroute.ports import IdentityStore
from crossroute.routing.pacing import Pacer
from crossroute.routing.policy import TenantChannels
from crossroute.store.identity_store import DynamoIdentityStore
from crossroute.store.sends import DynamoSendStore
from crossroute.store.tables import TableItem
from crossroute.tenants import TenantRegistry
from crossroute.webhooks import meta as meta_webhook
from tests.fakes import MemoryIdentityStore, RecordingPublisher, ScriptedSender

if TYPE_CHECKING:
    from crossroute.bus import BusEvent
    from crossroute.parsing.queued import Parsed
    from infra.local import StackClient
    from infra.local.client import HttpResponse
    from infra.local.provision import Provisioner

REPO = Path(__file__).resolve().parents[1]
# docs/events/<detail-type>.schema.json: every event crossroute publishes (contract §8)
EVENT_SCHEMAS: dict[str, dict[str, Any]] = {
    path.name.removesuffix(".schema.json"): json.loads(path.read_text())
    for path in sorted((REPO / "docs" / "events").glob("*.schema.json"))
}
# The core scenario payloads (tests/fixtures/core/README.md); tests/fixtures/ holds more beside them.
CORE_FIXTURES = REPO / "tests" / "fixtures" / "core"

# The built-in local tenant (contract §4).
TENANT = "demo"  # its name in the registry (registry_document)
APP_SECRET = "local-app-secret"
VERIFY_TOKEN = "local-verify-token"
WABA_ID = "100000000000000"
PHONE_NUMBER_ID = "100000000000001"
TWILIO_ACCOUNT = "AC00000000000000000000000000000000"
TWILIO_TOKEN = "local-twilio-token"
TWILIO_SMS_NUMBER = "+15550100002"
TWILIO_SMS_NUMBER_2 = "+15550100004"  # a second SMS number of the tenant in generated histories (R10)
TWILIO_WHATSAPP_SENDER = "whatsapp:+15550100003"

LOCAL_TENANT = {
    "default_region": "US",
    "meta": {
        "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN,
        "access_token": "local-access-token",
        "waba_id": WABA_ID,
        "phone_numbers": [{"phone_number_id": PHONE_NUMBER_ID, "display_phone_number": "15550100001"}],
    },
    "twilio": {
        "account_sid": TWILIO_ACCOUNT,
        "auth_token": TWILIO_TOKEN,
        "sms_numbers": [TWILIO_SMS_NUMBER],
        "whatsapp_senders": [TWILIO_WHATSAPP_SENDER],
    },
}


def load_handler(function: str, name: str | None = None) -> ModuleType:
    """``functions/<function>/app.py`` imported afresh, as a cold start does, as ``name`` in sys.modules."""
    path = REPO / "functions" / function / "app.py"
    spec = importlib.util.spec_from_file_location(name or f"handler_{function}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def function_environment(account: Provisioner, *functions: str, **overrides: str) -> dict[str, str]:
    """The environment template.yaml gives ``functions`` (all when none), resolved in an emulated
    ``account`` (what it names is provisioned there on demand), with the local tenant in the registry
    secret and ``overrides`` on top: the handlers see what they would see deployed."""
    import boto3

    from infra.local.functions import function_specs, merged_environment

    specs = function_specs(
        account.template,
        account.resolve,
        REPO,
        name_for=account.name_for,
        is_enabled=account.resolver.is_enabled,
    )
    # What the overrides set, the functions need not agree on (PUBLIC_BASE_URL differs per function).
    chosen = [
        replace(spec, environment={k: v for k, v in spec.environment.items() if k not in overrides})
        for spec in specs
        if not functions or spec.logical_id in functions
    ]
    environment = merged_environment(chosen)
    if "TENANTS_SECRET_ID" in environment:
        secretsmanager = boto3.client("secretsmanager")
        secretsmanager.put_secret_value(
            SecretId=environment["TENANTS_SECRET_ID"], SecretString=registry_document()
        )
    return {**environment, **overrides}


def meta_from_senders(count: int, tag: int = 0) -> dict[str, Any]:
    """A Meta webhook POST for the local tenant with one text message from each of ``count`` people
    (wa_ids ``1650<tag><6 digits>``; another ``tag``, other people and message ids)."""
    people = [f"1650{tag}{i:06d}" for i in range(count)]
    text = {"timestamp": "1779880000", "type": "text", "text": {"body": "hi"}}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100001", "phone_number_id": PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": f"P{i}"}, "wa_id": wa_id} for i, wa_id in enumerate(people)],
        "messages": [{"from": wa_id, "id": f"wamid.{tag}.{i}", **text} for i, wa_id in enumerate(people)],
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"field": "messages", "value": value}]}],
    }


def registry_document(**tenants: dict[str, object]) -> str:
    """A registry JSON document; by default just the local tenant ``demo``."""
    return json.dumps({"tenants": tenants or {TENANT: LOCAL_TENANT}})


def fixture_bytes(name: str) -> bytes:
    """A raw provider payload from tests/fixtures/core (Twilio forms without a trailing newline)."""
    data = (CORE_FIXTURES / name).read_bytes()
    return data.rstrip(b"\n") if name.endswith(".form") else data


def fixture_json(name: str) -> dict:
    return json.loads(fixture_bytes(name))


def meta_signature(raw: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


class _MultiForm(dict[str, str]):
    """Every value of a repeated parameter, the way Flask's MultiDict hands them to ``RequestValidator``."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs

    def getall(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]


def twilio_signature(url: str, raw_form: bytes, token: str = TWILIO_TOKEN) -> str:
    """Sign as Twilio does: URL plus every parameter sorted by name (every value of a repeated one),
    blank values included."""
    params = _MultiForm(parse_qsl(raw_form.decode(), keep_blank_values=True))
    return str(RequestValidator(token).compute_signature(url, params))


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def http_event(
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    query: str = "",
    base64_body: bool = False,
) -> dict[str, object]:
    """A minimal API Gateway HTTP API (payload 2.0) event, for calling a handler directly.

    Like API Gateway, a body that is not UTF-8 is always base64-encoded.
    """
    from urllib.parse import parse_qsl as _parse

    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        base64_body = True

    return {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": query,
        "queryStringParameters": dict(_parse(query)) or None,
        "headers": {k.lower(): v for k, v in (headers or {}).items()},
        "requestContext": {
            "domainName": "127.0.0.1:3000",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
            "requestId": "test",
            "routeKey": f"{method} {path}",
            "stage": "$default",
        },
        "body": b64(body) if base64_body else body.decode("utf-8"),
        "isBase64Encoded": base64_body,
    }


def schema_validator(detail_type: str) -> Draft4Validator:
    """The event's schema (JSON Schema draft 4, as the EventBridge Schema Registry takes it), checking
    formats (date-time)."""
    schema = EVENT_SCHEMAS[detail_type]
    return Draft4Validator(schema, format_checker=Draft4Validator.FORMAT_CHECKER)


def schema_problems(detail_type: str, detail: dict[str, Any]) -> list[str]:
    """What the event's schema finds wrong with ``detail`` (empty: it conforms)."""
    errors = schema_validator(detail_type).iter_errors(detail)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]


def wire_problems(event: BusEvent) -> list[str]:
    """What the event's schema finds wrong with its ``Detail`` as PutEvents sends it (``version`` and
    all): the form consumers get, not the dict the code built."""
    entry = event.entry("crossroute-test-events")
    return schema_problems(entry["DetailType"], json.loads(entry["Detail"]))


# Keywords of later drafts that a draft 4 validator (and the Schema Registry) would silently ignore.
_NOT_DRAFT_4 = frozenset(
    {
        *("$id", "$defs", "$anchor", "$comment", "const", "examples", "contains", "propertyNames"),
        *("if", "then", "else", "dependentRequired", "dependentSchemas", "prefixItems"),
        *("unevaluatedProperties", "unevaluatedItems", "readOnly", "writeOnly", "deprecated"),
    }
)


def subschemas(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema inside ``schema`` (itself included), with its JSON pointer."""
    pending = [("#", schema)]
    while pending:
        pointer, node = pending.pop()
        yield pointer, node
        for keyword in ("properties", "definitions"):
            pending += [(f"{pointer}/{keyword}/{k}", v) for k, v in node.get(keyword, {}).items()]
        for keyword in ("allOf", "anyOf", "oneOf"):
            pending += [(f"{pointer}/{keyword}/{i}", v) for i, v in enumerate(node.get(keyword, []))]
        for keyword in ("items", "not", "additionalProperties"):
            if isinstance(node.get(keyword), dict):
                pending.append((f"{pointer}/{keyword}", node[keyword]))


def draft_4_problems(detail_type: str) -> list[str]:
    """What in the event's schema a draft 4 reader would ignore or not find: later drafts' keywords,
    keywords beside a ``$ref`` (draft 4 ignores them, a description aside), numeric exclusive bounds,
    ``$ref`` that resolve to nothing."""
    schema, found = EVENT_SCHEMAS[detail_type], []
    for pointer, node in subschemas(schema):
        found += [f"{pointer}: {k} is not draft 4" for k in sorted(_NOT_DRAFT_4 & set(node))]
        found += [
            f"{pointer}: {k} must be a boolean in draft 4"
            for k in ("exclusiveMinimum", "exclusiveMaximum")
            if k in node and not isinstance(node[k], bool)
        ]
        if "$ref" in node:
            found += [
                f"{pointer}: {k} beside $ref is ignored" for k in sorted(set(node) - {"$ref", "description"})
            ]
            if not _resolves(schema, node["$ref"]):
                found.append(f"{pointer}: $ref {node['$ref']} is not a definition of this schema")
    return found


def _resolves(schema: dict[str, Any], ref: str) -> bool:
    """Whether ``ref`` is ``#/definitions/<name>`` of ``schema`` (the only references the schemas use)."""
    prefix = "#/definitions/"
    return ref.startswith(prefix) and ref.removeprefix(prefix) in schema.get("definitions", {})


# --- the local stack over HTTP, as a provider and an integrator use it ------------------------------------


def post_meta(stack: StackClient, raw: bytes) -> HttpResponse:
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(raw)}
    return stack.post("/webhooks/whatsapp", body=raw, headers=headers)


def post_twilio(stack: StackClient, raw: bytes, path: str = "/webhooks/twilio") -> HttpResponse:
    signature = twilio_signature(stack.base_url + path, raw)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
    return stack.post(path, body=raw, headers=headers)


def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """The first truthy answer of ``check`` (the consumer runs asynchronously), or fail."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, "the local stack did not get there in time"
            return result
        time.sleep(0.2)


def contact(stack: StackClient, **query: str) -> dict[str, Any] | None:
    answer = stack.get("/contacts", query=query)
    assert answer.status in (200, 404), answer.text
    return answer.json() if answer.status == 200 else None


class Probe:
    """Every event crossroute publishes while it exists, read off a queue a rule on the bus feeds."""

    def __init__(self, stack: StackClient) -> None:
        self.events_client, self.sqs = stack.client("events"), stack.client("sqs")
        self.bus, self.name = stack.event_bus_name, f"probe-{uuid.uuid4().hex[:8]}"
        self.url = self.sqs.create_queue(QueueName=self.name)["QueueUrl"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])
        pattern = json.dumps({"source": ["crossroute"]})
        self.events_client.put_rule(Name=self.name, EventBusName=self.bus, EventPattern=pattern)
        target = {"Id": "probe", "Arn": attributes["Attributes"]["QueueArn"]}
        self.events_client.put_targets(Rule=self.name, EventBusName=self.bus, Targets=[target])
        self.seen: list[dict[str, Any]] = []

    def events(self, detail_type: str, **match: Any) -> list[dict[str, Any]]:
        """The details of the events of ``detail_type`` seen so far whose fields equal ``match``."""
        while got := self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages"):
            self.seen += [json.loads(m["Body"]) for m in got]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
            self.sqs.delete_message_batch(QueueUrl=self.url, Entries=entries)
        details = [e["detail"] for e in self.seen if e["detail-type"] == detail_type]
        return [d for d in details if all(d.get(k) == v for k, v in match.items())]

    def close(self) -> None:
        self.events_client.remove_targets(Rule=self.name, EventBusName=self.bus, Ids=["probe"])
        self.events_client.delete_rule(Name=self.name, EventBusName=self.bus)
        self.sqs.delete_queue(QueueUrl=self.url)


# --- other projects' real webhook payloads (tests/fixtures/third_party) -----------------------------------

THIRD_PARTY = REPO / "tests" / "fixtures" / "third_party"


def third_party_meta() -> list[tuple[str, Any]]:
    """(file name, payload) of every Meta payload, as its source wrote it."""
    return [(p.name, json.loads(p.read_text())) for p in sorted((THIRD_PARTY / "meta").glob("*__*.json"))]


def third_party_twilio() -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(file name, "message" | "status", form parameters in order) of every Twilio payload."""
    out = []
    for path in sorted((THIRD_PARTY / "twilio").glob("*__*.json")):
        doc = json.loads(path.read_text())
        out.append((path.name, doc["kind"], [(str(k), str(v)) for k, v in doc["params"]]))
    return out


def as_local_meta(payload: Any) -> Any:
    """A Meta payload for the local tenant: a bare change ``value`` wrapped in an envelope, every entry's
    WABA id and every change's ``phone_number_id`` rewritten (a copy; anything else as it was)."""
    doc = json.loads(json.dumps(payload))
    if isinstance(doc, dict) and "entry" not in doc and "object" not in doc:
        change = {"field": "messages", "value": doc}
        doc = {"object": "whatsapp_business_account", "entry": [{"id": WABA_ID, "changes": [change]}]}
    for entry in doc.get("entry", []) if isinstance(doc, dict) and isinstance(doc.get("entry"), list) else []:
        if not isinstance(entry, dict):
            continue
        entry["id"] = WABA_ID
        for change in entry.get("changes", []) if isinstance(entry.get("changes"), list) else []:
            value = change.get("value") if isinstance(change, dict) else None
            metadata = value.get("metadata") if isinstance(value, dict) else None
            if isinstance(metadata, dict) and "phone_number_id" in metadata:
                metadata["phone_number_id"] = PHONE_NUMBER_ID
    return doc


def as_local_twilio(kind: str, params: list[tuple[str, str]]) -> tuple[str, bytes]:
    """(path, form body) of a Twilio payload for the local tenant: its account, and our number on our
    side (``To`` of a message, ``From`` of a status), WhatsApp or SMS as the other side is."""
    ours = "To" if kind == "message" else "From"
    theirs = dict(params).get("From" if kind == "message" else "To", "")
    number = TWILIO_WHATSAPP_SENDER if theirs.startswith("whatsapp:") else TWILIO_SMS_NUMBER
    pairs = [(k, TWILIO_ACCOUNT if k == "AccountSid" else number if k == ours else v) for k, v in params]
    for name, value in (("AccountSid", TWILIO_ACCOUNT), (ours, number)):
        if name not in dict(pairs):
            pairs.append((name, value))
    path = "/webhooks/twilio" if kind == "message" else "/webhooks/twilio/status"
    return path, urlencode(pairs).encode()


# --- what any parse must give: clean identifiers, nothing personal in reasons (tests/unit/test_parse_*) ---

# Strings that look like identifiers, numbers or keywords without being valid ones.
TRICKY_STRINGS = [
    "",
    "@",
    "US.",
    "us.1",
    "US.ENT.1",
    "whatsapp:US.1",
    "+1 650-555-1234",
    "001 650 555 1234",
    "0",
    "९८७६५४३२१०",
    "contact_request",
    "system",
    "user_changed_number",
    "group",
    "9" * 40,
]
_BSUID = re.compile(r"[A-Z]{2}\.[A-Za-z0-9]{1,128}")
_PARENT = re.compile(r"[A-Z]{2}\.ENT\.[A-Za-z0-9]{1,128}")


def persons(event: ProviderEvent) -> list[Person]:
    """Every person an event names."""
    names = ("sender", "recipient", "person", "previous", "current")
    return [getattr(event, name) for name in names if hasattr(event, name)]


def assert_clean(result: Parsed) -> None:
    """Contract I1/I2 for every identifier that comes out, and nothing personal in reasons."""
    for event in result.events:
        if isinstance(event, Unrecognised):
            assert not event.reason.startswith("parser failed"), event.reason
            assert re.fullmatch(r"(meta|twilio)(\.[a-z][a-z0-9_]*)+", event.kind), event.kind
            assert re.fullmatch(r"[a-z][A-Za-z0-9_ :.-]*", event.reason), event.reason
        for person in persons(event):
            assert person.phone is None or re.fullmatch(r"\+\d{7,15}", person.phone)
            assert (person.phone is None) == (person.phone_raw is None)
            assert person.bsuid is None or _BSUID.fullmatch(person.bsuid)
            assert person.parent_bsuid is None or _PARENT.fullmatch(person.parent_bsuid)
            assert person.username is None or not person.username.startswith("@")
        shared = getattr(event, "shared_own_phone", None)
        assert shared is None or re.fullmatch(r"\+\d{7,15}", shared)
        at_ = getattr(event, "sent_at", None) or getattr(event, "at", None)
        assert at_ is None or at_.tzinfo is not None
    for reason in result.rejected:
        assert re.fullmatch(r"[A-Za-z][A-Za-z_ .()]*", reason), reason  # field names only, never a value


# --- fresh identities for the shared local stack (tests/e2e) ----------------------------------------------

# Ana of meta_text_phone_and_bsuid.json: her wa_id (the phone without "+") and BSUID.
ANA_PHONE, ANA_BSUID = "5511987654321", "BR.1502576394655843"


def digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


def new_phone() -> str:
    """A fresh US number as Meta writes a wa_id (digits, no +)."""
    return "1650" + secrets.choice("23456789") + digits(6)


def new_bsuid(country: str = "US") -> str:
    return f"{country}.{digits(19)}"


def personal(fixture: str, **swap: str) -> bytes:
    """A shared fixture with its identifiers swapped for fresh ones (``old=new``), and fresh message ids."""
    raw = fixture_bytes(fixture)
    for old, new in swap.items():
        raw = raw.replace(old.encode(), new.encode())
    tag = digits(8)
    raw = raw.replace(b"wamid.", f"wamid.{tag}".encode())
    return raw.replace(b"SM", f"SM{tag}".encode()) if fixture.endswith(".form") else raw


# --- provider histories of one tenant, and the state they leave (the identity properties) ---------------
# tests/unit/test_identity_properties.py runs many of them over the in-memory store,
# tests/adapters/test_ingest_properties.py fewer over DynamoDB, and checks both stores agree.

HISTORY_T0 = datetime(2026, 11, 1, tzinfo=UTC)  # provider time of a history's start

# Realistic delivery ladders; a status event takes the next step of its message's ladder.
_STATUS_PATHS: dict[str, tuple[str, tuple[str, ...]]] = {
    "wamid.OUT-read": ("meta", ("sent", "delivered", "read")),
    "wamid.OUT-failed": ("meta", ("sent", "failed")),
    "SMOUT-delivered": ("twilio", ("accepted", "queued", "sending", "sent", "delivered")),
    "SMOUT-undelivered": ("twilio", ("queued", "sent", "undelivered")),
}


@dataclass
class _Someone:
    """A real person as the simulation knows them (crossroute only sees what providers say)."""

    n: int
    phone: str | None
    bsuid: str | None
    parent: str | None
    name: str
    username: str | None
    hides_phone: bool  # a username user: Meta sends the BSUID only
    recycled: bool = False  # got a number someone else left


@dataclass(frozen=True)
class History:
    """Provider events in provider-time order."""

    events: tuple[ProviderEvent, ...]

    def describe(self) -> str:
        return "\n".join(describe_event(e) for e in self.events)


def describe_event(event: ProviderEvent) -> str:
    match event:
        case InboundMessage():
            s = event.sender
            extra = f" own={event.shared_own_phone}" if event.shared_own_phone else ""
            return (
                f"{event.sent_at:%H:%M} {event.channel} {event.message_id} phone={s.phone} bsuid={s.bsuid}"
                f" parent={s.parent_bsuid} name={s.name} user={s.username} text={event.text}{extra}"
            )
        case IdentityChange():
            old, new = event.previous, event.current
            return (
                f"{event.at:%H:%M} {event.kind} {event.event_id} {old.bsuid}/{old.phone}"
                f" -> {new.bsuid}/{new.phone} parent={new.parent_bsuid}"
            )
        case StatusUpdate():
            return f"{event.at:%H:%M} status {event.message_id} {event.status}"
        case PreferenceChange():
            return f"{event.at:%H:%M} marketing {event.value} bsuid={event.person.bsuid}"
    return repr(event)


_ACTIONS = ("wa", "wa", "sms", "contact", "change", "status", "marketing", "rename", "recycle")


@st.composite
def histories(draw: st.DrawFn, *, max_steps: int = 10, max_people: int = 3) -> History:
    """A plausible history of the local tenant: a few people (who write by SMS and WhatsApp, answer
    contact requests, change numbers, stop SMS and marketing, get delivery statuses for messages sent
    to them, and take over numbers others left) and what providers report about them.

    No SMS comes from a number after it changed hands, and only numbers that never sent an SMS are
    recycled: who such an SMS belongs to depends on the order of delivery (``AMBIGUOUS`` in
    tests/unit/test_identity_properties.py)."""
    ids = itertools.count(1)
    people: list[_Someone] = []
    retired: list[str] = []  # phones a number change left behind: free for someone else (I6)
    texted: set[str] = set()  # phones an SMS came from: never recycled (see AMBIGUOUS)

    def newcomer(phone: str | None = None) -> _Someone:
        n = len(people)
        wa = phone is not None or draw(st.booleans()) or n == 0
        person = _Someone(
            n=n,
            phone=phone or (None if wa and draw(st.integers(0, 4)) == 0 else f"+1650555{n:04d}"),
            bsuid=f"US.{n}0{next(ids)}" if wa else None,
            parent=f"US.ENT.{n}0{next(ids)}" if wa and draw(st.booleans()) else None,
            name=f"Name{n}",
            username=f"user{n}" if wa and draw(st.booleans()) else None,
            hides_phone=phone is None and wa and draw(st.booleans()),
        )
        people.append(person)
        return person

    for _ in range(draw(st.integers(1, max_people))):
        newcomer()

    events: list[ProviderEvent] = []
    progress = dict.fromkeys(_STATUS_PATHS, 0)
    minute = 0
    for _ in range(draw(st.integers(1, max_steps))):
        minute += draw(st.sampled_from((1, 7, 90, 60 * 30)))  # windows (24 h) open and close
        at = HISTORY_T0 + timedelta(minutes=minute)
        action = draw(st.sampled_from(_ACTIONS))
        who = people[draw(st.integers(0, len(people) - 1))]
        n = next(ids)
        if action == "wa" and who.bsuid:
            show_phone = who.phone is not None and not who.hides_phone
            events.append(_wa(who, at, f"wamid.IN{n}", phone=who.phone if show_phone else None))
        elif action == "sms" and who.phone and not who.recycled:  # never from a number left (AMBIGUOUS)
            texted.add(who.phone)
            text = draw(st.sampled_from(("hi", "STOP", "START")))
            sender = Person(phone=who.phone)
            number = draw(st.sampled_from((TWILIO_SMS_NUMBER, TWILIO_SMS_NUMBER_2)))  # R10: sticky sender
            events.append(inbound_message("twilio", "sms", f"SMIN{n}", number, sender, at, text))
        elif action == "contact" and who.bsuid and who.phone:
            events.append(_wa(who, at, f"wamid.IN{n}", phone=None, own_phone=who.phone))
        elif action == "change" and who.bsuid:
            events.append(_change(draw, who, at, f"wamid.SYS{n}", n, retired))
        elif action == "status":
            message_id = draw(st.sampled_from(sorted(_STATUS_PATHS)))
            provider, path = _STATUS_PATHS[message_id]
            if progress[message_id] < len(path):
                status = path[progress[message_id]]
                progress[message_id] += 1
                events.append(_status(provider, message_id, status, at))
        elif action == "marketing" and who.bsuid:
            value = draw(st.sampled_from(("stop", "resume")))
            person = Person(bsuid=who.bsuid, parent_bsuid=who.parent)
            events.append(
                PreferenceChange(TENANT, "meta", PHONE_NUMBER_ID, person, "marketing_messages", value, at)
            )
        elif action == "rename":
            who.name = f"Name{who.n}.{n}"
            who.username = draw(st.sampled_from((None, f"user{who.n}", f"user{who.n}.{n}")))
        elif action == "recycle" and (free := [p for p in retired if p not in texted]) and len(people) < 4:
            # A number someone left passes to a new WhatsApp user.
            retired.remove(free[0])
            newcomer(phone=free[0]).recycled = True
    return History(tuple(events))


def inbound_message(
    provider: str,
    channel: str,
    message_id: str,
    business: str,
    sender: Person,
    at: datetime,
    text: str | None,
    own_phone: str | None = None,
) -> InboundMessage:
    """A message to the local tenant (a contact card with the sender's ``own_phone``, else a text)."""
    return InboundMessage(
        tenant=TENANT,
        provider=provider,  # type: ignore[arg-type]
        channel=channel,  # type: ignore[arg-type]
        message_id=message_id,
        business=business,
        sender=sender,
        sent_at=at,
        type="contacts" if own_phone else "text",
        text=text,
        shared_own_phone=own_phone,
    )


def _wa(
    who: _Someone, at: datetime, message_id: str, *, phone: str | None, own_phone: str | None = None
) -> InboundMessage:
    sender = Person(
        phone=phone, bsuid=who.bsuid, parent_bsuid=who.parent, username=who.username, name=who.name
    )
    return inbound_message("meta", "whatsapp", message_id, PHONE_NUMBER_ID, sender, at, "hello", own_phone)


def _change(
    draw: st.DrawFn, who: _Someone, at: datetime, event_id: str, n: int, retired: list[str]
) -> IdentityChange:
    """I7 in the shapes Meta sends: a new number (and id), a new id only, or the legacy update."""
    kind = draw(st.sampled_from(("user_changed_number", "user_changed_user_id", "user_id_update")))
    old_phone, old_bsuid, old_parent = who.phone, who.bsuid, who.parent
    who.bsuid = f"US.{who.n}0{n}"
    who.parent = f"US.ENT.{who.n}0{n}" if old_parent else None
    if kind == "user_changed_number":
        who.phone = f"+1650666{n:04d}"
        if old_phone:
            retired.append(old_phone)
        previous = Person(phone=old_phone, bsuid=old_bsuid, parent_bsuid=old_parent)
        current = Person(phone=who.phone, bsuid=who.bsuid, parent_bsuid=who.parent)
    elif kind == "user_changed_user_id":  # a new number too, but Meta names neither phone
        if old_phone:
            who.phone = f"+1650666{n:04d}"
            retired.append(old_phone)
        previous = Person(bsuid=old_bsuid, parent_bsuid=old_parent)
        current = Person(bsuid=who.bsuid, parent_bsuid=who.parent)
    else:  # user_id_update: the phone (wa_id) did not change and is named
        previous = Person(bsuid=old_bsuid, parent_bsuid=old_parent)
        current = Person(phone=who.phone, bsuid=who.bsuid, parent_bsuid=who.parent)
    return IdentityChange(TENANT, "meta", event_id, PHONE_NUMBER_ID, kind, previous, current, at)


def _status(provider: str, message_id: str, status: str, at: datetime) -> StatusUpdate:
    channel = "whatsapp" if provider == "meta" else "sms"
    business = PHONE_NUMBER_ID if provider == "meta" else TWILIO_SMS_NUMBER
    return StatusUpdate(TENANT, provider, channel, message_id, business, Person(), status, at)  # type: ignore[arg-type]


@st.composite
def deliveries(draw: st.DrawFn, history: History) -> list[ProviderEvent]:
    """The same events reordered, some delivered more than once."""
    events = list(history.events)
    if events:
        events += draw(st.lists(st.sampled_from(events), max_size=len(events)))
    return list(draw(st.permutations(events)))


_KeySet = frozenset[tuple[str, str, str]]


@dataclass(frozen=True)
class IdentityState:
    """What one delivery leaves behind, without the generated ids (customer ids differ per run):
    customers as the partition of keys (kind, value, status), each with its attributes; for each
    provider message id, the customer it belongs to (by its keys) and its status."""

    customers: dict[_KeySet, dict[str, Any]]  # key partition -> attributes
    messages: dict[str, tuple[_KeySet | None, str | None]]  # provider message id -> (owner, status)


def _key_set(customer: Customer) -> _KeySet:
    return frozenset(
        [("phone", p.e164, p.status) for p in customer.phones]
        + [("bsuid", b.id, b.status) for b in customer.bsuids]
    )


def _attributes(customer: Customer) -> dict[str, Any]:
    return {
        "username": customer.username,
        "name": customer.name,
        "parent": customer.parent_bsuid,
        "sms_opted_out": customer.sms_opted_out,
        "marketing_opted_out": customer.marketing_opted_out,
        "opt_in": (customer.whatsapp_opt_in, customer.whatsapp_opt_in_at, customer.whatsapp_opt_in_source),
        # whole seconds: DynamoDB keeps the window as epoch seconds
        "windows": {b: int(at.timestamp()) for b, at in customer.whatsapp_last_inbound.items()},
        "sms_last_to": (customer.sms_last_to, customer.sms_last_to_at),  # R10
    }


def canonical(
    live: Iterable[Customer],
    messages: Iterable[tuple[str, str | None, str | None]],
    resolve: Callable[[str], Customer | None],
) -> IdentityState:
    """``messages``: (provider message id, customer id as stored, status); ``resolve`` follows merges."""
    live = list(live)
    customers = {_key_set(c): _attributes(c) for c in live}
    assert len(customers) == len(live), "two live customers with the same keys"
    out: dict[str, tuple[_KeySet | None, str | None]] = {}
    for message_id, customer_id, status in messages:
        owner = resolve(customer_id) if customer_id else None
        out[message_id] = (_key_set(owner) if owner else None, status)
    return IdentityState(customers, out)


def memory_state(store: MemoryIdentityStore) -> IdentityState:
    """The local tenant's state in the in-memory store."""
    messages = [(mid, m.customer_id, m.status) for (t, _, mid), m in store.messages.items() if t == TENANT]
    return canonical(store.live_customers(TENANT), messages, lambda cid: store.customer(TENANT, cid))


S = TypeVar("S", bound=IdentityStore)


def run_memory(events: Sequence[ProviderEvent]) -> MemoryIdentityStore:
    """The real ``Ingest`` over a fresh in-memory store, one event per queued record, in this order."""
    return ingest_each(MemoryIdentityStore(), events)


def ingest_each(store: S, events: Iterable[ProviderEvent], prefix: str = "c") -> S:
    """The real ``Ingest`` over ``store``, one event per queued record, in this order; customer ids
    ``c0``, ``c1``, ... (``prefix``) so two stores given the same events name their customers alike."""
    ids = itertools.count()
    ingest = Ingest(store, RecordingPublisher(), new_id=lambda: f"{prefix}{next(ids)}", sleep=lambda _: None)
    for event in events:
        ingest.handle([event])
    return store


def explain(history: History, shuffled: Sequence[ProviderEvent], a: IdentityState, b: IdentityState) -> str:
    order = "\n".join(describe_event(e) for e in shuffled)
    return f"history:\n{history.describe()}\nredelivered as:\n{order}\nin order: {a}\nreordered: {b}"


# --- Lambda handlers called in-process (tests/adapters) -----------------------------------------------

PUBLIC_BASE_URL = "http://127.0.0.1:3000"
JSON_HEADERS = {"Content-Type": "application/json"}
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


class LambdaContext:
    """What a handler (Powertools) reads of Lambda's context object."""

    function_name = "test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test"
    aws_request_id = "req-1"


@dataclass
class SqsRecords:
    """Realistic SQS FIFO records for a handler, as Lambda's event source mapping builds them."""

    arn: str
    sequence: int = 18_800_000_000_000_000_000
    ids: dict[str, QueuedEvent] = field(default_factory=dict)

    def records(self, *events: QueuedEvent, receive_count: int = 1) -> list[dict[str, Any]]:
        out = []
        for event in events:
            self.sequence += 1
            message_id = str(uuid.uuid5(uuid.NAMESPACE_OID, str(self.sequence)))
            self.ids[message_id] = event
            out.append(self._record(message_id, event, receive_count))
        return out

    def again(self, records: Sequence[dict[str, Any]], failed: Sequence[str]) -> list[dict[str, Any]]:
        """The failed records as SQS redelivers them: same message id, a new receipt, one more receive."""
        return [
            self._record(
                r["messageId"], self.ids[r["messageId"]], int(r["attributes"]["ApproximateReceiveCount"]) + 1
            )
            for r in records
            if r["messageId"] in failed
        ]

    def _record(self, message_id: str, event: QueuedEvent, receive_count: int) -> dict[str, Any]:
        return {
            "messageId": message_id,
            "receiptHandle": f"AQEB{message_id}{receive_count}",
            "body": event.body,
            "attributes": {
                "ApproximateReceiveCount": str(receive_count),
                "SentTimestamp": "1779868801000",
                "SenderId": "AROAEXAMPLE:crossroute-whatsapp-webhook",
                "ApproximateFirstReceiveTimestamp": "1779868801500",
                "SequenceNumber": str(self.sequence),
                "MessageGroupId": event.group_id,
                "MessageDeduplicationId": event.dedup_id,
            },
            "messageAttributes": {},
            "md5OfBody": hashlib.md5(event.body.encode()).hexdigest(),  # noqa: S324 - as SQS does
            "eventSource": "aws:sqs",
            "eventSourceARN": self.arn,
            "awsRegion": "us-east-1",
        }


# --- ingest and dispatch over DynamoDB (moto; the ``table`` fixture binds the models) -------------------


class IngestHarness:
    """``Ingest`` over ``DynamoIdentityStore``, its events recorded; provider payloads in as the webhooks
    queue them."""

    def __init__(self) -> None:
        self.store = DynamoIdentityStore()
        self.bus = RecordingPublisher()
        self.ingest = Ingest(self.store, self.bus, sleep=lambda _: None)
        self._registry = TenantRegistry.from_json(registry_document())

    def meta(self, fixture: str | bytes) -> list[Ingested]:
        raw = fixture_bytes(fixture) if isinstance(fixture, str) else fixture
        return [self.body(e) for e in meta_webhook.split(self._registry, APP_SECRET, json.loads(raw))]

    def twilio(self, fixture: str, kind: str = "twilio.message") -> Ingested:
        form = fixture_bytes(fixture).decode()
        return self.body(QueuedEvent.build(tenant=TENANT, sender="x", kind=kind, content={"form": form}))

    def body(self, event: QueuedEvent) -> Ingested:
        return self.ingest.handle(parse(event.body).events)

    def by(self, kind: str, value: str) -> Any:
        found = self.store.holders(TENANT, [Key(kind, value)])  # type: ignore[arg-type]
        return found.get(Key(kind, value))  # type: ignore[arg-type]


ANA_SENT_AT = datetime.fromtimestamp(1779868800, UTC)  # meta_text_phone_and_bsuid.json
IN_WINDOW, AFTER_WINDOW = ANA_SENT_AT + timedelta(hours=1), ANA_SENT_AT + timedelta(days=2)
SEND_KEY = "order-42-shipped"
SHIPPED_TEMPLATE = {"name": "order_shipped", "language": "en_US", "category": "utility", "components": []}
LOCAL_CHANNELS = TenantChannels(PHONE_NUMBER_ID, TWILIO_SMS_NUMBER)


def send_request(key: str = SEND_KEY, **fields: Any) -> dict[str, Any]:
    """A send request of the local tenant (its text: "Your order has shipped")."""
    return {"tenant": TENANT, "idempotency_key": key, "text": "Your order has shipped", **fields}


def ana_customer_id() -> str:
    """Ana (meta_text_phone_and_bsuid.json) ingested: her customer id."""
    harness = IngestHarness()
    harness.meta("meta_text_phone_and_bsuid.json")
    return str(harness.by("bsuid", ANA_BSUID).id)


class DispatchWorld:
    """``Dispatch`` over the DynamoDB stores at ``now``, the providers scripted, the bus recorded."""

    def __init__(self, now: datetime, *, pacer: Pacer | None = None, region: str = "US") -> None:
        self.ingest = IngestHarness()
        self.whatsapp = ScriptedSender("meta")
        self.sms = ScriptedSender("twilio")
        self.bus = RecordingPublisher()
        self.now = now
        setup = TenantSetup(
            LOCAL_CHANNELS, {"whatsapp": self.whatsapp, "sms": self.sms}, default_region=region
        )
        self.dispatch = Dispatch(
            DynamoSendStore(),
            lambda tenant: setup if tenant == TENANT else None,
            self.bus,
            clock=lambda: self.now,
            pacer=pacer,
        )

    def ana(self) -> str:
        self.ingest.meta("meta_text_phone_and_bsuid.json")
        return str(self.ingest.by("bsuid", ANA_BSUID).id)


def pynamodb_clients() -> list[Any]:
    """Every botocore DynamoDB client PynamoDB's models use now (as ``infra/bench/ingest.py`` finds them)."""
    models: list[type[Any]] = [TableItem]
    for model in models:
        models.extend(model.__subclasses__())
    clients = {id(c): c for c in (m._get_connection().connection.client for m in models)}
    return list(clients.values())


def dynamodb_error(code: str = "InternalServerError", status: int = 500) -> dict[str, Any]:
    """A stubbed AWS error answer (what botocore would have parsed off the wire)."""
    metadata = {"HTTPStatusCode": status, "HTTPHeaders": {}, "RequestId": "fault"}
    return {"Error": {"Code": code, "Message": f"injected {code}"}, "ResponseMetadata": metadata}


@dataclass
class DynamoFault:
    """Answer the ``nth`` call (1-based, counted from arming) of ``operation`` whose body satisfies
    ``when`` with a stubbed error."""

    operation: str
    nth: int = 1
    when: Callable[[dict[str, Any]], bool] = lambda body: True
    seen: int = 0
    hits: int = 0


class DynamoFaults:
    """DynamoDB errors injected with a botocore ``before-call`` hook on PynamoDB's clients: the request
    never reaches moto. ``close()`` removes the hook."""

    def __init__(self) -> None:
        self.clients = pynamodb_clients()
        self.faults: list[DynamoFault] = []
        self.operations: list[str] = []
        self._id = f"dispatch-faults-{id(self)}"
        for client in self.clients:
            client.meta.events.register("before-call.dynamodb", self._before_call, unique_id=self._id)

    def close(self) -> None:
        for client in self.clients:
            client.meta.events.unregister("before-call.dynamodb", unique_id=self._id)

    def arm(self, fault: DynamoFault) -> DynamoFault:
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()

    def _before_call(self, model: Any, params: dict[str, Any], **_: Any) -> Any:
        raw = params.get("body") or b"{}"
        body = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        self.operations.append(model.name)
        for fault in self.faults:
            if fault.operation != model.name or not fault.when(body):
                continue
            fault.seen += 1
            if fault.seen == fault.nth:
                fault.hits += 1
                answer = dynamodb_error()
                return AWSResponse("https://fault.invalid", 500, {}, None), answer
        return None


def claims(channel: str) -> Callable[[dict[str, Any]], bool]:
    """An UpdateItem that claims ``channel`` (sets it to ``sending`` under attribute_not_exists)."""

    def match(body: dict[str, Any]) -> bool:
        condition = body.get("ConditionExpression", "")
        names = body.get("ExpressionAttributeNames", {})
        return "attribute_not_exists" in condition and channel in names.values()

    return match


def settles(body: dict[str, Any]) -> bool:
    """An UpdateItem that settles a claim: conditioned on the claim's attempt."""
    condition = body.get("ConditionExpression", "")
    names = body.get("ExpressionAttributeNames", {}).values()
    return "attempt" in names and "attribute_not_exists" not in condition


def releases(body: dict[str, Any]) -> bool:
    return settles(body) and "REMOVE" in body.get("UpdateExpression", "")


def finishes(body: dict[str, Any]) -> bool:
    return settles(body) and "SET" in body.get("UpdateExpression", "")


class FaultWorld:
    """Ana ingested; the request ``doc()`` for her, dispatched in fresh containers (``container()``) with
    the providers scripted (answers by outcome name) and DynamoDB faults armed on ``faults``."""

    def __init__(self, now: datetime = IN_WINDOW) -> None:
        self.customer = ana_customer_id()
        self.whatsapp = ScriptedSender("meta")
        self.sms = ScriptedSender("twilio")
        self.bus = RecordingPublisher()
        self.now = now
        self.setup = TenantSetup(LOCAL_CHANNELS, {"whatsapp": self.whatsapp, "sms": self.sms})
        self.faults = DynamoFaults()

    def container(self) -> Dispatch:
        """A fresh container: what a redelivery after a crash runs in."""
        return Dispatch(
            DynamoSendStore(),
            lambda tenant: self.setup if tenant == TENANT else None,
            self.bus,
            clock=lambda: self.now,
        )

    def doc(self, **fields: Any) -> dict[str, Any]:
        return send_request(SEND_KEY, to={"customer_id": self.customer}, **fields)

    def state(self, channel: Channel) -> str | None:
        record = DynamoSendStore().get(TENANT, SEND_KEY)
        return record.sends.get(channel, {}).get("state") if record else None


class RecordingSqs:
    """A handler module's SQS client, its calls recorded; ``fail_sends`` SendMessage calls fail first."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.sends: list[dict[str, Any]] = []
        self.visibility: list[dict[str, Any]] = []
        self.fail_sends = 0

    def send_message(self, **call: Any) -> Any:
        self.sends.append(call)
        if self.fail_sends:
            self.fail_sends -= 1
            answer = {"Error": {"Code": "InternalError", "Message": "injected: SendMessage failed"}}
            raise ClientError(answer, "SendMessage")  # type: ignore[arg-type]
        return self.client.send_message(**call)

    def change_message_visibility(self, **call: Any) -> Any:
        self.visibility.append(call)
        return self.client.change_message_visibility(**call)


@dataclass
class DispatchFunction:
    """The dispatch function (``functions/dispatch/app.py``) as the send queue's event source mapping
    invokes it (the ``dispatch_function`` fixture)."""

    module: ModuleType
    world: FaultWorld
    sqs: RecordingSqs
    queue_url: str
    queue_arn: str

    @property
    def raw(self) -> Any:
        return self.sqs.client

    def enqueue(self, body: dict[str, Any]) -> None:
        self.raw.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(body))

    def receive(self, wait: int = 0) -> list[dict[str, Any]]:
        """What is receivable now (or within ``wait`` seconds), with the attributes Lambda passes on."""
        answer = self.raw.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=wait
        )
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        return messages

    def invoke(self, *messages: dict[str, Any]) -> list[str]:
        """Invoke the handler with ``messages``: the ids of those the event source mapping keeps for a
        retry, the reported batch item failures (Powertools raises when every record failed: all)."""
        from infra.local.sqs_runner import build_sqs_event

        event = build_sqs_event(messages, self.queue_arn)
        try:
            answer = self.module.lambda_handler(event, LambdaContext())
        except BatchProcessingError:
            return [m["MessageId"] for m in messages]
        return [failure["itemIdentifier"] for failure in answer["batchItemFailures"]]

    def done(self, message: dict[str, Any]) -> None:
        """What the event source mapping does with a record the handler did not report failed."""
        self.raw.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def deliver(self, body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Queue ``body``, receive it (receive count 1) and invoke the handler with it."""
        self.enqueue(body)
        (message,) = self.receive()
        return message, self.invoke(message)

    def batch(self, *bodies: dict[str, Any]) -> list[dict[str, Any]]:
        """Queue ``bodies`` and receive them, in that order (one batch of the event source mapping)."""
        for body in bodies:
            self.enqueue(body)
        received = self.receive()
        order = [json.dumps(body) for body in bodies]
        assert sorted(m["Body"] for m in received) == sorted(order)
        return sorted(received, key=lambda m: order.index(m["Body"]))


# ---------------------------------------------------------------------- provider events by hand

EVENTS_T0 = datetime(2026, 11, 1, tzinfo=UTC)  # minute 0 of the hand-made events below


def minute_at(minute: int) -> datetime:
    return EVENTS_T0 + timedelta(minutes=minute)


def sms_in(message_id: str, phone: str, minute: int, text: str = "hi") -> InboundMessage:
    """An SMS to the local tenant's Twilio number."""
    sender = Person(phone=phone)
    return inbound_message("twilio", "sms", message_id, TWILIO_SMS_NUMBER, sender, minute_at(minute), text)


def whatsapp_in(
    message_id: str,
    minute: int,
    bsuid: str,
    *,
    phone: str | None = None,
    own_phone: str | None = None,
    text: str | None = "hello",
    name: str | None = None,
) -> InboundMessage:
    """A WhatsApp message; with ``own_phone`` the answer to a contact request (an attested phone, I5)."""
    sender = Person(phone=phone, bsuid=bsuid, name=name)
    return inbound_message(
        "meta", "whatsapp", message_id, PHONE_NUMBER_ID, sender, minute_at(minute), text, own_phone
    )


def business_echo(message_id: str, minute: int, bsuid: str) -> OutboundEcho:
    """A message the WhatsApp Business App sent (coexistence)."""
    recipient = Person(bsuid=bsuid)
    return OutboundEcho(
        TENANT,
        "meta",
        "whatsapp",
        message_id,
        PHONE_NUMBER_ID,
        recipient,
        minute_at(minute),
        "text",
        "thanks",
    )


def meta_status(message_id: str, minute: int, word: str, *errors: ProviderError) -> StatusUpdate:
    return StatusUpdate(
        TENANT, "meta", "whatsapp", message_id, PHONE_NUMBER_ID, Person(), word, minute_at(minute), errors
    )


def number_change(event_id: str, minute: int, old: Person, new: Person) -> IdentityChange:
    """I7: the user moved from ``old`` (phone and BSUID) to ``new``."""
    return IdentityChange(
        TENANT, "meta", event_id, PHONE_NUMBER_ID, "user_changed_number", old, new, minute_at(minute)
    )


def wipe_table() -> None:
    """Empty the table between examples (a fresh moto account per example is slower)."""
    with TableItem.batch_write() as batch:
        for item in TableItem.scan(consistent_read=True):
            batch.delete(item)


# --- the operator CLI (``crossroute``, infra/cli/crossroute_cli), run as a user runs it --------------------


@dataclass
class CliRun:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def cli_environment(stack: StackClient | None = None, **extra: str) -> dict[str, str]:
    """The environment of a ``crossroute`` run: this process's, less any AWS or ``CROSSROUTE_`` settings,
    with ``CROSSROUTE_PORT`` naming the stack's gateway (when given) and progress lines every 0.2 s."""
    import os

    kept = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CROSSROUTE_"))}
    env = {**kept, "CROSSROUTE_PROGRESS_EVERY": "0.2", "NO_COLOR": "1"}
    if stack is not None:
        env["CROSSROUTE_PORT"] = stack.base_url.rsplit(":", 1)[1]
    return {**env, **extra}


def run_cli(
    *args: str, stack: StackClient | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> CliRun:
    """``python -m crossroute_cli ARGS`` (what ``.venv/bin/crossroute`` runs) against ``stack``."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "crossroute_cli", *args],
        cwd=REPO,
        env=env if env is not None else cli_environment(stack),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CliRun(done.returncode, done.stdout, done.stderr)


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # terminal control sequences


def run_cli_on_a_terminal(stack: StackClient, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    """``crossroute ARGS`` with its stderr on a pseudo-terminal (stdout piped): (exit code, stdout, what
    the terminal showed)."""
    import os
    import pty
    import select
    import subprocess

    primary, secondary = pty.openpty()
    env = {**cli_environment(stack), "TERM": "xterm-256color", "COLUMNS": "120"}
    env.pop("NO_COLOR")
    proc = subprocess.Popen(
        [sys.executable, "-m", "crossroute_cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=secondary,
        stdin=subprocess.DEVNULL,
    )
    os.close(secondary)
    shown = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.1)
        chunk = b""
        if ready:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal closed with the process
                break
            shown += chunk
        if (ready and not chunk) or (not ready and proc.poll() is not None):
            break
    os.close(primary)
    stdout = proc.communicate(timeout=10)[0].decode()
    return proc.returncode, stdout, shown.decode(errors="replace")


@contextmanager
def stack_with_tenant(folder: Path, tenant: dict[str, object]) -> Iterator[StackClient]:
    """A local stack of its own whose registry (``CROSSROUTE_TENANTS_FILE``) holds ``tenant`` as ``demo``,
    with event sources on (send requests are dispatched) and failed records back after 1 s."""
    from infra.local import StackProcess

    registry = folder / "registry.json"
    registry.write_text(registry_document(demo=tenant))
    env = {"CROSSROUTE_TENANTS_FILE": str(registry), "CROSSROUTE_SQS_RETRY_DELAY": "1"}
    stack = StackProcess(env=env, log_path=folder / "stack.log")
    client = stack.start(timeout=60)
    try:
        yield client
    finally:
        stack.stop()


def send(stack: StackClient, **fields: Any) -> str:
    """``POST /messages`` with a fresh idempotency key and ``fields``; the request id of its 202."""
    answer = stack.post("/messages", json_body={"idempotency_key": f"k-{time.time_ns()}", **fields})
    assert answer.status == 202, answer.text
    request_id: str = answer.json()["request_id"]
    return request_id


def timeline(stack: StackClient, customer_id: str) -> list[dict[str, Any]]:
    """The customer's timeline, newest first (up to 200 items)."""
    answer = stack.get(f"/contacts/{customer_id}/timeline", query={"limit": "200"})
    assert answer.status == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def outbox(stack: StackClient, **match: Any) -> list[dict[str, Any]]:
    """What the sandbox providers sent, oldest first, whose fields equal ``match``."""
    items: list[dict[str, Any]] = stack.get("/_sandbox/outbox").json()
    return [i for i in items if all(i.get(k) == v for k, v in match.items())]


# --- the OpenAPI document of the contacts and send-request API (docs/openapi.yaml) --------------------

OPENAPI_PATH = REPO / "docs" / "openapi.yaml"
OPENAPI_BASE = "urn:crossroute:openapi"  # the document's URI, for $refs into it from outside


def openapi_document() -> dict[str, Any]:
    import yaml

    document: dict[str, Any] = yaml.safe_load(OPENAPI_PATH.read_text())
    return document


def openapi_schema_validator(document: dict[str, Any], pointer: str) -> Any:
    """A JSON Schema 2020-12 (OpenAPI 3.1 dialect) validator of the schema at ``pointer`` (a JSON pointer
    into ``document``, e.g. ``/components/schemas/SendRequest``), its ``$ref``s resolved in ``document``."""
    from urllib.parse import quote

    from openapi_schema_validator import OAS31Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(OPENAPI_BASE, resource)
    schema = {"$ref": f"{OPENAPI_BASE}#{quote(pointer)}"}
    return OAS31Validator(schema, registry=registry, format_checker=OAS31Validator.FORMAT_CHECKER)


# --- R13: the sandbox providers on a gateway of their own (adapter tests of rich sends) ---------------


@contextmanager
def sandbox_providers() -> Iterator[tuple[Any, str]]:
    """The local tenant's sandbox providers served on a free port, status callbacks going nowhere:
    ``(sandbox, base_url)``; the Graph API fake is at ``base_url + "/_sandbox/graph"``, Twilio's at
    ``base_url + "/_sandbox/twilio"``."""
    from infra.local.gateway import LocalGateway, LocalResponse, Router
    from infra.local.sandbox import Sandbox
    from infra.local.tenant import local_registry_document

    sandbox = Sandbox(delay_ms=(0, 5))
    gateway = LocalGateway(Router(), lambda *_: None, port=0)
    gateway.mount("/_sandbox/", sandbox.handle)
    gateway.mount("/webhooks/", lambda request: LocalResponse.json(200, {}))
    gateway.start()
    base_url = f"http://127.0.0.1:{gateway.port}"
    sandbox.bind(local_registry_document(), base_url=base_url)
    try:
        yield sandbox, base_url
    finally:
        sandbox.stop()
        gateway.stop()


# --- inbound media (tests/adapters/test_media_function.py, test_least_privilege.py) ------------------------


def media_environment(base_url: str) -> dict[str, str]:
    """What the media function needs beyond the template's environment to use ``sandbox_providers``
    (media downloads included), its backoff cut to nothing."""
    return {
        "META_GRAPH_BASE_URL": f"{base_url}/_sandbox/graph",
        "TWILIO_API_BASE_URL": f"{base_url}/_sandbox/twilio",
        "MEDIA_RETRY_BASE_SECONDS": "0",
    }


# --- e2e: a WhatsApp customer who just wrote ---------------------------------------------------------


def whatsapp_customer(
    stack: StackClient,
    *,
    minutes_ago: float = 1,
    phone: str | None = None,
    text: str | None = None,
    phone_number_id: str | None = None,
) -> tuple[str, str, str]:
    """A WhatsApp customer (``phone``'s digits or a new number, a new BSUID) whose last message, signed as
    Meta signs, was ``minutes_ago``, saying ``text`` (else the fixture's), to the business number
    ``phone_number_id`` (else the local tenant's first): (customer id, E.164 phone, BSUID)."""
    phone, bsuid = phone or new_phone(), new_bsuid("BR")
    doc = json.loads(personal("meta_text_phone_and_bsuid.json", **{ANA_PHONE: phone, ANA_BSUID: bsuid}))
    value = doc["entry"][0]["changes"][0]["value"]
    value["messages"][0]["timestamp"] = str(int(time.time() - 60 * minutes_ago))
    if text is not None:
        value["messages"][0]["text"]["body"] = text
    if phone_number_id is not None:
        value["metadata"]["phone_number_id"] = phone_number_id
    assert post_meta(stack, json.dumps(doc).encode()).status == 200
    view = eventually(lambda: contact(stack, bsuid=bsuid))
    return view["id"], "+" + phone, bsuid
