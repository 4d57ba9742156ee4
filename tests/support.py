"""Test helpers: the provider fixtures, the local tenant, and signing as Meta and Twilio do."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from jsonschema import Draft202012Validator
from twilio.request_validator import RequestValidator

if TYPE_CHECKING:
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
APP_SECRET = "local-app-secret"
VERIFY_TOKEN = "local-verify-token"
WABA_ID = "100000000000000"
PHONE_NUMBER_ID = "100000000000001"
TWILIO_ACCOUNT = "AC00000000000000000000000000000000"
TWILIO_TOKEN = "local-twilio-token"
TWILIO_SMS_NUMBER = "+15550100002"
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
        secrets = boto3.client("secretsmanager")
        secrets.put_secret_value(SecretId=environment["TENANTS_SECRET_ID"], SecretString=registry_document())
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
    return json.dumps({"tenants": tenants or {"demo": LOCAL_TENANT}})


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


def schema_validator(detail_type: str) -> Draft202012Validator:
    schema = EVENT_SCHEMAS[detail_type]
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_problems(detail_type: str, detail: dict[str, Any]) -> list[str]:
    """What the event's schema finds wrong with ``detail`` (empty: it conforms)."""
    errors = schema_validator(detail_type).iter_errors(detail)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]


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
