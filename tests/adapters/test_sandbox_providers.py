"""The sandbox providers (contract section 4) in-process: the fake Graph API and the fake Twilio REST API
behind a real local gateway, their outbox and recipient settings, and the signed status webhooks /
callbacks they post (to a recorder here; to the real webhook functions in tests/e2e/test_sandbox.py)."""

from __future__ import annotations

import base64
import json
import os
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from infra.local.client import HttpResponse, http_request  # noqa: E402
from infra.local.gateway import LocalGateway, LocalRequest, LocalResponse, Router  # noqa: E402
from infra.local.sandbox import Sandbox, parse_delay_ms  # noqa: E402
from infra.local.sandbox.callbacks import Callback, CallbackWorker  # noqa: E402
from infra.local.sandbox.twilio_api import sync_failure, twilio_signature  # noqa: E402
from infra.local.stack import LocalStack, StackConfig  # noqa: E402
from infra.local.tenant import local_registry_document  # noqa: E402
from tests.support import (  # noqa: E402
    APP_SECRET,
    PHONE_NUMBER_ID,
    TWILIO_ACCOUNT,
    TWILIO_SMS_NUMBER,
    TWILIO_TOKEN,
    TWILIO_WHATSAPP_SENDER,
    WABA_ID,
    meta_signature,
)

ACCESS_TOKEN = "local-access-token"
GRAPH = f"/_sandbox/graph/v23.0/{PHONE_NUMBER_ID}/messages"
MESSAGES = f"/_sandbox/twilio/2010-04-01/Accounts/{TWILIO_ACCOUNT}/Messages.json"
PHONE = "+15550123456"


# --------------------------------------------------------------------------- harness
class Recorder:
    """Stands in for the stack's webhook routes: remembers every request, answers 200 (or as told)."""

    def __init__(self) -> None:
        self.requests: list[LocalRequest] = []
        self.answers: list[int] = []  # statuses to answer first, then 200
        self._cond = threading.Condition()

    def reset(self) -> None:
        with self._cond:
            self.requests.clear()
            self.answers.clear()

    def __call__(self, request: LocalRequest) -> LocalResponse:
        with self._cond:
            self.requests.append(request)
            status = self.answers.pop(0) if self.answers else 200
            self._cond.notify_all()
        return LocalResponse(status, [("Content-Type", "text/plain")], b"")

    def wait(self, count: int, timeout: float = 5) -> list[LocalRequest]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"expected {count} callbacks, got {len(self.requests)}")
            return list(self.requests)


class Harness:
    def __init__(self, sandbox: Sandbox, recorder: Recorder, base_url: str) -> None:
        self.sandbox, self.recorder, self.base_url = sandbox, recorder, base_url

    def request(self, method: str, path: str, **kwargs: Any) -> HttpResponse:
        return http_request(method, self.base_url + path, **kwargs)

    def graph(
        self,
        doc: Any,
        *,
        token: str | None = ACCESS_TOKEN,
        path: str = GRAPH,
    ) -> HttpResponse:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.request("POST", path, body=json.dumps(doc).encode(), headers=headers)

    def twilio(self, form: dict[str, str], *, token: str = TWILIO_TOKEN) -> HttpResponse:
        auth = base64.b64encode(f"{TWILIO_ACCOUNT}:{token}".encode()).decode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Basic {auth}"}
        return self.request("POST", MESSAGES, body=urlencode(form).encode(), headers=headers)

    def twilio_client(self, token: str = TWILIO_TOKEN) -> Client:
        client = Client(TWILIO_ACCOUNT, token)
        client.api.base_url = self.base_url + "/_sandbox/twilio"
        return client

    def outbox(self, **filters: str) -> list[dict[str, Any]]:
        query = "?" + urlencode(filters) if filters else ""
        resp = self.request("GET", "/_sandbox/outbox" + query)
        assert resp.status == 200
        result: list[dict[str, Any]] = resp.json()
        return result

    def configure(self, doc: Any) -> HttpResponse:
        return self.request(
            "POST",
            "/_sandbox/recipients",
            body=json.dumps(doc).encode(),
            headers={"Content-Type": "application/json"},
        )

    def idle(self) -> None:
        assert self.sandbox.worker.wait_idle(5)


@pytest.fixture(scope="module")
def served() -> Iterator[Harness]:
    """One gateway for the module (stopping one takes its 0.5 s poll interval)."""
    recorder = Recorder()
    sandbox = Sandbox(delay_ms=(0, 5))
    gateway = LocalGateway(Router(), lambda *_: None, port=0)
    gateway.mount("/_sandbox/", sandbox.handle)
    gateway.mount("/webhooks/", recorder)
    gateway.start()
    base_url = f"http://127.0.0.1:{gateway.port}"
    sandbox.bind(local_registry_document(), base_url=base_url)
    try:
        yield Harness(sandbox, recorder, base_url)
    finally:
        sandbox.stop()
        gateway.stop()


@pytest.fixture
def harness(served: Harness) -> Harness:
    """The sandbox with an empty outbox, default recipients and a fresh recorder."""
    assert served.sandbox.worker.wait_idle(5)
    served.sandbox.outbox.clear()
    served.sandbox.recipients.clear()
    served.sandbox.worker.clear_history()
    served.sandbox.public_base_url = served.base_url
    served.recorder.reset()
    return served


def meta_statuses(requests: list[LocalRequest]) -> list[dict[str, Any]]:
    """The status items of Meta webhooks, after checking each one's signature and envelope."""
    items = []
    for req in requests:
        assert req.path == "/webhooks/whatsapp"
        assert req.headers["Content-Type"] == "application/json"
        assert req.headers["X-Hub-Signature-256"] == meta_signature(req.body, APP_SECRET)
        doc = json.loads(req.body)
        assert doc["object"] == "whatsapp_business_account"
        (entry,) = doc["entry"]
        assert entry["id"] == WABA_ID
        (change,) = entry["changes"]
        assert change["field"] == "messages"
        value = change["value"]
        assert value["messaging_product"] == "whatsapp"
        assert value["metadata"] == {
            "display_phone_number": "15550100001",
            "phone_number_id": PHONE_NUMBER_ID,
        }
        assert "contacts" not in value
        items.extend(value["statuses"])
    return items


def twilio_callbacks(harness: Harness, requests: list[LocalRequest]) -> list[dict[str, str]]:
    """The form parameters of Twilio status callbacks, after checking each one's signature."""
    forms = []
    for req in requests:
        params = dict(parse_qsl(req.body.decode(), keep_blank_values=True))
        url = harness.base_url + req.path + (f"?{req.query}" if req.query else "")
        assert RequestValidator(TWILIO_TOKEN).validate(url, params, req.headers["X-Twilio-Signature"])
        forms.append(params)
    return forms


# --------------------------------------------------------------------------- fake Graph API
def test_graph_text_to_a_phone_then_sent_delivered_read(harness: Harness) -> None:
    resp = harness.graph(
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "1 555 012-3456",
            "type": "text",
            "text": {"body": "Your order has shipped"},
        }
    )
    assert resp.status == 200
    doc = resp.json()
    wamid = doc["messages"][0]["id"]
    assert wamid.startswith("wamid.") and len(wamid) > 20
    assert doc == {
        "messaging_product": "whatsapp",
        "contacts": [{"input": "1 555 012-3456", "wa_id": "15550123456"}],
        "messages": [{"id": wamid}],
    }
    (entry,) = harness.outbox()
    at = entry.pop("at")
    assert at.endswith("Z") and "T" in at
    assert entry == {
        "provider": "meta",
        "channel": "whatsapp",
        "to": PHONE,
        "recipient": None,
        "from": PHONE_NUMBER_ID,  # the sending number (R10)
        "type": "text",
        "text": "Your order has shipped",
        "template": None,
        "provider_message_id": wamid,
        "media": None,  # R13: none of these in a text message
        "buttons": None,
        "list": None,
    }
    statuses = meta_statuses(harness.recorder.wait(3))
    assert [s["status"] for s in statuses] == ["sent", "delivered", "read"]
    for s in statuses:
        assert s["id"] == wamid
        assert s["recipient_id"] == "15550123456"
        assert "recipient_user_id" not in s
        assert s["timestamp"].isdigit() and abs(int(s["timestamp"]) - time.time()) < 60
        assert s["pricing"]["category"] == "service"
    harness.idle()
    assert [
        (c["status"], c["http_status"]) for c in harness.request("GET", "/_sandbox/callbacks").json()
    ] == [
        ("sent", 200),
        ("delivered", 200),
        ("read", 200),
    ]


def test_graph_template_to_a_bsuid(harness: Harness) -> None:
    harness.configure(
        {"whatsapp": {"US.13491208655302741918": {"status": "delivered", "phone": "+447700900123"}}}
    )
    resp = harness.graph(
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "recipient": "US.13491208655302741918",
            "type": "template",
            "template": {"name": "order_shipped", "language": {"code": "en_US"}, "components": []},
        }
    )
    assert resp.status == 200
    wamid = resp.json()["messages"][0]["id"]
    assert resp.json()["contacts"] == [
        {"input": "US.13491208655302741918", "user_id": "US.13491208655302741918", "wa_id": "447700900123"}
    ]
    (entry,) = harness.outbox()
    assert (entry["to"], entry["recipient"], entry["type"], entry["text"], entry["template"]) == (
        None,
        "US.13491208655302741918",
        "template",
        None,
        "order_shipped",
    )
    statuses = meta_statuses(harness.recorder.wait(2))
    harness.idle()
    assert len(harness.recorder.requests) == 2  # "delivered" is the last status configured
    assert [s["status"] for s in statuses] == ["sent", "delivered"]
    assert all(s["recipient_user_id"] == "US.13491208655302741918" for s in statuses)
    assert all(s["recipient_id"] == "447700900123" for s in statuses)
    assert statuses[0]["pricing"]["category"] == "utility"
    assert statuses[0]["id"] == wamid


def test_graph_to_wins_over_recipient(harness: Harness) -> None:
    harness.configure({"whatsapp": {PHONE: {"user_id": "US.5"}}})
    resp = harness.graph(
        {"messaging_product": "whatsapp", "to": "+15550123456", "recipient": "US.5", "text": {"body": "hi"}}
    )
    assert resp.status == 200
    assert resp.json()["contacts"] == [{"input": "+15550123456", "wa_id": "15550123456", "user_id": "US.5"}]
    statuses = meta_statuses(harness.recorder.wait(3))
    assert statuses[0]["recipient_id"] == "15550123456" and statuses[0]["recipient_user_id"] == "US.5"
    (entry,) = harness.outbox()
    assert (entry["to"], entry["recipient"]) == (PHONE, "US.5")  # both as the client sent them


def test_graph_configured_failure(harness: Harness) -> None:
    assert (
        harness.configure({"whatsapp": {"NL.77": {"status": "failed", "error_code": 131026}}}).status == 200
    )
    resp = harness.graph(
        {"messaging_product": "whatsapp", "recipient": "NL.77", "type": "text", "text": {"body": "hi"}}
    )
    assert resp.status == 200  # Meta accepts it; the failure comes as a status
    wamid = resp.json()["messages"][0]["id"]
    (status,) = meta_statuses(harness.recorder.wait(1))
    harness.idle()
    assert len(harness.recorder.requests) == 1
    assert status["id"] == wamid and status["status"] == "failed"
    assert status["recipient_user_id"] == "NL.77"
    assert "pricing" not in status
    (error,) = status["errors"]
    assert error["code"] == 131026
    assert error["title"] == error["message"] == "Message undeliverable"
    assert error["error_data"]["details"]
    # error_code alone means failed too; a phone send's failed status names the phone only
    harness.configure({"whatsapp": {"15550123456": {"error_code": 131047, "user_id": "US.9"}}})
    harness.graph({"messaging_product": "whatsapp", "to": PHONE, "text": {"body": "hi"}})
    (status,) = meta_statuses(harness.recorder.wait(2)[1:])
    assert (status["status"], status["errors"][0]["code"]) == ("failed", 131047)
    assert status["recipient_id"] == "15550123456" and "recipient_user_id" not in status


def test_graph_bsuid_in_to_is_accepted_then_fails(harness: Harness) -> None:
    resp = harness.graph({"messaging_product": "whatsapp", "to": "US.123", "text": {"body": "hi"}})
    assert resp.status == 200
    assert resp.json()["contacts"] == [{"input": "US.123"}]
    (status,) = meta_statuses(harness.recorder.wait(1))
    assert (status["status"], status["errors"][0]["code"]) == ("failed", 131026)
    assert "recipient_id" not in status and "recipient_user_id" not in status
    (entry,) = harness.outbox()
    assert (entry["to"], entry["recipient"]) == ("US.123", None)  # the mistake is visible


def test_graph_synchronous_error(harness: Harness) -> None:
    harness.configure({"whatsapp": {"US.42": {"sync_error_code": 131062}}})
    resp = harness.graph(
        {
            "messaging_product": "whatsapp",
            "recipient": "US.42",
            "type": "template",
            "template": {"name": "otp", "language": {"code": "en"}},
        }
    )
    assert resp.status == 400
    error = resp.json()["error"]
    assert error["code"] == 131062
    assert error["message"].startswith("(#131062) ")
    assert error["type"] == "OAuthException"
    assert error["error_data"]["messaging_product"] == "whatsapp" and error["error_data"]["details"]
    assert error["fbtrace_id"]
    (entry,) = harness.outbox()
    assert entry["error_code"] == 131062 and entry["provider_message_id"] is None
    assert entry["template"] == "otp"
    harness.idle()
    assert harness.recorder.requests == []


@pytest.mark.parametrize(
    ("token", "path", "status", "code"),
    [
        (None, GRAPH, 401, 104),
        ("wrong-token", GRAPH, 401, 190),
        (ACCESS_TOKEN, "/_sandbox/graph/v23.0/999/messages", 400, 100),
        (ACCESS_TOKEN, f"/_sandbox/graph/latest/{PHONE_NUMBER_ID}/messages", 400, 100),
    ],
)
def test_graph_refuses_unauthenticated_or_unknown_senders(
    harness: Harness, token: str | None, path: str, status: int, code: int
) -> None:
    resp = harness.graph(
        {"messaging_product": "whatsapp", "to": PHONE, "text": {"body": "hi"}}, token=token, path=path
    )
    assert resp.status == status
    error = resp.json()["error"]
    assert error["code"] == code and error["type"] == "OAuthException" and error["message"]
    assert harness.outbox() == []  # nothing was sent
    harness.idle()
    assert harness.recorder.requests == []


@pytest.mark.parametrize(
    "doc",
    [
        {"to": PHONE, "text": {"body": "hi"}},  # no messaging_product
        {"messaging_product": "whatsapp", "recipient_type": "group", "to": PHONE, "text": {"body": "hi"}},
        {"messaging_product": "whatsapp", "text": {"body": "hi"}},  # nobody
        {"messaging_product": "whatsapp", "to": PHONE, "type": "text", "text": {}},
        {"messaging_product": "whatsapp", "to": PHONE, "type": "text"},
        {"messaging_product": "whatsapp", "to": PHONE, "type": "template", "template": {"name": "x"}},
        {"messaging_product": "whatsapp", "to": PHONE, "type": "fax", "fax": {}},
        {"messaging_product": "whatsapp", "to": "not-a-phone", "text": {"body": "hi"}},
        {"messaging_product": "whatsapp", "recipient": "+15550123456", "text": {"body": "hi"}},
        {"messaging_product": "whatsapp", "to": PHONE, "text": {"body": "x" * 4097}},
        {"messaging_product": "whatsapp", "to": PHONE, "text": {"body": "hi"}, "context": {"id": 1}},
    ],
)
def test_graph_validates_like_meta(harness: Harness, doc: dict[str, Any]) -> None:
    resp = harness.graph(doc)
    assert resp.status == 400
    assert resp.json()["error"]["code"] == 100
    (entry,) = harness.outbox()  # an authenticated attempt is recorded, marked refused
    assert entry["error_code"] == 100 and entry["provider_message_id"] is None


def test_graph_mark_as_read_is_not_a_send(harness: Harness) -> None:
    resp = harness.graph({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.X"})
    assert (resp.status, resp.json()) == (200, {"success": True})
    assert harness.outbox() == []


def test_graph_webhook_refused_is_retried(harness: Harness) -> None:
    harness.configure({"whatsapp": {PHONE: {"status": "sent"}}})
    harness.recorder.answers = [500]
    harness.graph({"messaging_product": "whatsapp", "to": PHONE, "text": {"body": "hi"}})
    requests = harness.recorder.wait(2)
    assert requests[0].body != b"" and [s["status"] for s in meta_statuses(requests)] == ["sent", "sent"]
    harness.idle()
    log = harness.request("GET", "/_sandbox/callbacks").json()
    assert [(c["attempt"], c["http_status"]) for c in log] == [(1, 500), (2, 200)]


# --------------------------------------------------------------------------- fake Twilio REST API
def test_twilio_sdk_send_then_signed_status_callbacks(harness: Harness) -> None:
    callback_url = harness.base_url + "/webhooks/twilio/status?tenant=demo"
    message = harness.twilio_client().messages.create(
        to="+1 555 012 3456", from_=TWILIO_SMS_NUMBER, body="Your code is 1234", status_callback=callback_url
    )
    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert int(message.sid[2:], 16) >= 0
    assert message.status == "queued"
    assert (message.to, message.from_, message.body) == (PHONE, TWILIO_SMS_NUMBER, "Your code is 1234")
    assert message.account_sid == TWILIO_ACCOUNT and message.date_created is not None
    (entry,) = harness.outbox()
    entry.pop("at")
    assert entry == {
        "provider": "twilio",
        "channel": "sms",
        "to": PHONE,
        "recipient": None,
        "from": TWILIO_SMS_NUMBER,  # the sender address (R10)
        "type": "text",
        "text": "Your code is 1234",
        "template": None,
        "provider_message_id": message.sid,
        "media": None,  # R13: none of these in a text message
        "buttons": None,
        "list": None,
    }
    requests = harness.recorder.wait(2)
    assert all(r.path == "/webhooks/twilio/status" and r.query == "tenant=demo" for r in requests)
    forms = twilio_callbacks(harness, requests)
    assert [f["MessageStatus"] for f in forms] == ["sent", "delivered"]
    assert forms[0] == {
        "SmsSid": message.sid,
        "SmsStatus": "sent",
        "MessageStatus": "sent",
        "To": PHONE,
        "MessageSid": message.sid,
        "AccountSid": TWILIO_ACCOUNT,
        "From": TWILIO_SMS_NUMBER,
        "ApiVersion": "2010-04-01",
    }


@pytest.mark.parametrize(
    ("configured", "callbacks"),
    [
        ({"error_code": 30003}, [("sent", None), ("undelivered", "30003")]),
        ({"error_code": 30001}, [("failed", "30001")]),
        ({"status": "undelivered"}, [("sent", None), ("undelivered", "30003")]),
        ({"status": "sent"}, [("sent", None)]),
    ],
)
def test_twilio_asynchronous_outcomes(
    harness: Harness, configured: dict[str, Any], callbacks: list[tuple[str, str | None]]
) -> None:
    harness.configure({"sms": {PHONE: configured}})
    resp = harness.twilio(
        {
            "To": PHONE,
            "From": TWILIO_SMS_NUMBER,
            "Body": "hi",
            "StatusCallback": harness.base_url + "/webhooks/twilio/status",
        }
    )
    assert resp.status == 201 and resp.json()["status"] == "queued"
    harness.recorder.wait(len(callbacks))
    harness.idle()
    forms = twilio_callbacks(harness, harness.recorder.requests)
    assert [(f["MessageStatus"], f.get("ErrorCode")) for f in forms] == callbacks
    assert all(f.get("ErrorMessage") for f in forms if f.get("ErrorCode"))


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"From": TWILIO_SMS_NUMBER, "Body": "hi"}, 21604),
        ({"To": PHONE, "Body": "hi"}, 21603),
        ({"To": PHONE, "From": TWILIO_SMS_NUMBER}, 21602),
        ({"To": "US.123", "From": TWILIO_SMS_NUMBER, "Body": "hi"}, 21211),
        ({"To": "12", "From": TWILIO_SMS_NUMBER, "Body": "hi"}, 21211),
        ({"To": PHONE, "From": "+15559999999", "Body": "hi"}, 21606),
        ({"To": PHONE, "MessagingServiceSid": "MG" + "0" * 32, "Body": "hi"}, 21705),
        ({"To": PHONE, "From": TWILIO_WHATSAPP_SENDER, "Body": "hi"}, 21910),
        ({"To": PHONE, "From": TWILIO_SMS_NUMBER, "Body": "x" * 1601}, 21617),
        ({"To": PHONE, "From": TWILIO_SMS_NUMBER, "Body": "hi", "StatusCallback": "ftp://x"}, 21609),
    ],
)
def test_twilio_validates_like_twilio(harness: Harness, form: dict[str, str], code: int) -> None:
    resp = harness.twilio(form)
    assert resp.status == 400
    assert resp.json() == {
        "code": code,
        "message": resp.json()["message"],
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": 400,
    }
    assert resp.json()["message"]
    (entry,) = harness.outbox()
    assert entry["error_code"] == code and entry["provider_message_id"] is None


def test_twilio_configured_synchronous_error_raises_in_the_sdk(harness: Harness) -> None:
    harness.configure({"sms": {PHONE: {"error_code": 21610}, "+15550123457": {"sync_error_code": 30003}}})
    client = harness.twilio_client()
    with pytest.raises(TwilioRestException) as opted_out:
        client.messages.create(to=PHONE, from_=TWILIO_SMS_NUMBER, body="hi", status_callback=harness.base_url)
    assert (opted_out.value.status, opted_out.value.code) == (400, 21610)
    with pytest.raises(TwilioRestException) as forced:
        client.messages.create(to="+15550123457", from_=TWILIO_SMS_NUMBER, body="hi")
    assert forced.value.code == 30003
    assert [(e["to"], e["error_code"]) for e in harness.outbox()] == [(PHONE, 21610), ("+15550123457", 30003)]
    harness.idle()
    assert harness.recorder.requests == []


def test_twilio_refuses_bad_credentials(harness: Harness) -> None:
    resp = harness.twilio({"To": PHONE, "From": TWILIO_SMS_NUMBER, "Body": "hi"}, token="wrong")
    assert resp.status == 401
    assert resp.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    with pytest.raises(TwilioRestException) as err:
        harness.twilio_client("wrong").messages.create(to=PHONE, from_=TWILIO_SMS_NUMBER, body="hi")
    assert (err.value.status, err.value.code) == (401, 20003)
    other = http_request(
        "POST",
        harness.base_url + MESSAGES.replace(TWILIO_ACCOUNT, "AC" + "1" * 32),
        body=b"To=%2B15550123456&From=%2B15550100002&Body=hi",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": "Basic "
            + base64.b64encode(f"{TWILIO_ACCOUNT}:{TWILIO_TOKEN}".encode()).decode(),
        },
    )
    assert other.status == 401
    assert harness.outbox() == []


def test_twilio_without_status_callback_posts_nothing(harness: Harness) -> None:
    resp = harness.twilio({"To": PHONE, "From": TWILIO_SMS_NUMBER, "Body": "hi"})
    assert resp.status == 201
    harness.idle()
    assert harness.recorder.requests == []


def test_twilio_whatsapp_to_a_bsuid(harness: Harness) -> None:
    resp = harness.twilio(
        {
            "To": "whatsapp:US.77",
            "From": TWILIO_WHATSAPP_SENDER,
            "ContentSid": "HX" + "0" * 32,
            "StatusCallback": harness.base_url + "/webhooks/twilio/status",
        }
    )
    assert resp.status == 201
    assert resp.json()["to"] == "whatsapp:US.77"
    (entry,) = harness.outbox()
    assert (entry["channel"], entry["to"], entry["recipient"], entry["type"], entry["template"]) == (
        "whatsapp",
        None,
        "US.77",
        "template",
        "HX" + "0" * 32,
    )
    forms = twilio_callbacks(harness, harness.recorder.wait(2))
    assert forms[0]["To"] == "whatsapp:US.77" and forms[0]["From"] == TWILIO_WHATSAPP_SENDER


def test_twilio_callback_under_the_public_url_reaches_the_stack(harness: Harness) -> None:
    public = "https://crossroute.example.ngrok.app"
    harness.sandbox.public_base_url = public
    harness.twilio(
        {
            "To": PHONE,
            "From": TWILIO_SMS_NUMBER,
            "Body": "hi",
            "StatusCallback": public + "/webhooks/twilio/status",
        }
    )
    (req, _) = harness.recorder.wait(2)
    params = dict(parse_qsl(req.body.decode()))
    # delivered to the stack itself, signed over the URL the client gave (what Twilio would have called)
    assert RequestValidator(TWILIO_TOKEN).validate(
        public + "/webhooks/twilio/status", params, req.headers["X-Twilio-Signature"]
    )


def test_twilio_signature_matches_twilios_test_vector() -> None:
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert RequestValidator("12345").validate(url, params, twilio_signature("12345", url, params))


def test_which_twilio_codes_fail_synchronously() -> None:
    assert all(sync_failure(c) for c in (20429, 21211, 21610, 21614))
    assert not any(sync_failure(c) for c in (30003, 30005, 30008, 63016))


# --------------------------------------------------------------------------- outbox and recipients
def test_recipients_merge_validate_and_reset(harness: Harness) -> None:
    resp = harness.configure(
        {
            "whatsapp": {
                "NL.77": {"status": "failed", "error_code": 131026},
                "15550123456": {"status": "sent"},
            },
            "sms": {"+1 555 012 3456": {"error_code": 21610}},
        }
    )
    assert resp.status == 200
    assert resp.json() == {
        "whatsapp": {"NL.77": {"status": "failed", "error_code": 131026}, PHONE: {"status": "sent"}},
        "sms": {PHONE: {"error_code": 21610}},
    }
    harness.configure({"whatsapp": {"NL.77": None, "US.1": {"sync_error_code": 131047}}})
    assert set(harness.request("GET", "/_sandbox/recipients").json()["whatsapp"]) == {PHONE, "US.1"}
    bad_documents: list[Any] = [
        [],
        {"email": {}},
        {"whatsapp": {"NL.77": {"status": "bounced"}}},
        {"whatsapp": {"NL.77": {"colour": "red"}}},
        {"whatsapp": {"nobody": {}}},
        {"sms": {"US.1": {"error_code": 21610}}},  # SMS needs a phone
        {"sms": {PHONE: {"error_code": "soon"}}},
        {"whatsapp": {"NL.77": {"status": "read", "error_code": 131026}}},
        {"whatsapp": {"NL.77": {}}, "sms": {"x": {}}},  # all or nothing
    ]
    for bad in bad_documents:
        resp = harness.configure(bad)
        assert resp.status == 400, bad
        assert resp.json()["message"]
    assert "NL.77" not in harness.request("GET", "/_sandbox/recipients").json()["whatsapp"]
    bad_json = harness.request(
        "POST", "/_sandbox/recipients", body=b"{", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status == 400
    resp = harness.request("DELETE", "/_sandbox/recipients")
    assert (resp.status, resp.json()) == (200, {"whatsapp": {}, "sms": {}})


def test_outbox_order_filters_and_delete(harness: Harness) -> None:
    harness.graph({"messaging_product": "whatsapp", "to": PHONE, "text": {"body": "one"}})
    harness.twilio({"To": PHONE, "From": TWILIO_SMS_NUMBER, "Body": "two"})
    harness.graph({"messaging_product": "whatsapp", "recipient": "US.3", "text": {"body": "three"}})
    assert [e["text"] for e in harness.outbox()] == ["one", "two", "three"]
    assert [e["text"] for e in harness.outbox(provider="meta")] == ["one", "three"]
    assert [e["text"] for e in harness.outbox(channel="sms")] == ["two"]
    assert [e["text"] for e in harness.outbox(recipient="US.3")] == ["three"]
    assert [e["text"] for e in harness.outbox(to=PHONE)] == ["one", "two"]
    resp = harness.request("DELETE", "/_sandbox/outbox")
    assert (resp.status, resp.json()) == (200, {"deleted": 3})
    assert harness.outbox() == []


def test_unknown_sandbox_routes(harness: Harness) -> None:
    assert harness.request("GET", "/_sandbox/nope").status == 404
    assert harness.request("PUT", "/_sandbox/outbox").status == 405
    assert harness.request("GET", GRAPH, headers={"Authorization": f"Bearer {ACCESS_TOKEN}"}).status == 400


def test_not_ready_before_bind() -> None:
    sandbox = Sandbox()
    resp = sandbox.handle(LocalRequest("GET", "/_sandbox/outbox", "", None, b""))  # type: ignore[arg-type]
    assert resp.status == 503


def test_send_log_masks_the_recipient(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="infra.local.sandbox")
    harness.graph({"messaging_product": "whatsapp", "to": PHONE, "text": {"body": "secret words"}})
    harness.twilio({"To": PHONE, "From": TWILIO_SMS_NUMBER, "Body": "secret words"})
    lines = [r.getMessage() for r in caplog.records if r.name == "infra.local.sandbox"]
    assert len(lines) == 2
    for line in lines:
        assert "5550123456" not in line and "secret" not in line
    assert lines[0].split(" to ")[1].split(":")[0] == lines[1].split(" to ")[1].split(":")[0]  # one tag


# --------------------------------------------------------------------------- the callback worker
def test_worker_is_bounded_ordered_and_stops() -> None:
    posted: list[str] = []
    worker = CallbackWorker(max_pending=2)

    def job(name: str) -> Callback:
        def build() -> tuple[bytes, dict[str, str]]:
            posted.append(name)
            return b"", {}

        return Callback("meta", "wamid.1", name, "http://127.0.0.1:9/x", "http://127.0.0.1:9/x", build)

    worker.start()
    now = time.monotonic()
    assert worker.schedule(job("later"), now + 0.2)
    assert worker.schedule(job("sooner"), now + 0.1)
    assert not worker.schedule(job("too many"), now)  # bounded: refused, not queued
    assert worker.wait_idle(5)
    assert posted == ["sooner", "later"]
    assert [h["error"] is not None for h in worker.history()] == [True, True]  # nothing listens on :9
    assert worker.schedule(job("never"), time.monotonic() + 60)
    thread = worker._thread
    assert thread is not None and thread.is_alive()
    worker.stop()
    assert not thread.is_alive()
    assert posted == ["sooner", "later"]
    assert not worker.schedule(job("after stop"), time.monotonic())


def test_delay_setting() -> None:
    assert parse_delay_ms("50-200") == (50.0, 200.0)
    assert parse_delay_ms("0") == (0.0, 0.0)
    for bad in ("fast", "200-50", "-1"):
        with pytest.raises(ValueError, match="CROSSROUTE_SANDBOX_DELAY_MS"):
            parse_delay_ms(bad)
    assert Sandbox.from_env({"CROSSROUTE_SANDBOX_DELAY_MS": "10"}).delay_ms == (10.0, 10.0)


# --------------------------------------------------------------------------- wired into the local stack
RECORDER = """
import json, os

def lambda_handler(event, context):
    with open(os.environ["RECORD_FILE"], "a") as f:
        f.write(json.dumps(event) + "\\n")
    return {"statusCode": 200, "body": json.dumps({k: os.environ.get(k) for k in
            ("META_GRAPH_BASE_URL", "TWILIO_API_BASE_URL", "PUBLIC_BASE_URL")})}
"""

RECORDER_TEMPLATE = """
Resources:
  Hooks:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/hooks/
      Handler: app.lambda_handler
      Environment: {{Variables: {{RECORD_FILE: {record_file}}}}}
      Events:
        Meta: {{Type: HttpApi, Properties: {{Path: /webhooks/whatsapp, Method: POST}}}}
        Status: {{Type: HttpApi, Properties: {{Path: /webhooks/twilio/status, Method: POST}}}}
"""


@pytest.fixture
def restore_environ() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_local_stack_mounts_the_sandbox(tmp_path: Path, restore_environ: None) -> None:
    record_file = tmp_path / "events.jsonl"
    (tmp_path / "functions" / "hooks").mkdir(parents=True)
    (tmp_path / "functions" / "hooks" / "app.py").write_text(textwrap.dedent(RECORDER))
    template = tmp_path / "template.yaml"
    template.write_text(RECORDER_TEMPLATE.format(record_file=record_file))
    stack = LocalStack(
        StackConfig(template=template, port=0, aws_port=0, tenants_document=local_registry_document())
    )
    stack.sandbox.delay_ms = (0, 0)
    stack.start()
    try:
        base = stack.base_url
        env = stack.outputs()["environment"]
        assert env["META_GRAPH_BASE_URL"] == os.environ["META_GRAPH_BASE_URL"] == base + "/_sandbox/graph"
        assert env["TWILIO_API_BASE_URL"] == os.environ["TWILIO_API_BASE_URL"] == base + "/_sandbox/twilio"
        resp = http_request(
            "POST",
            env["META_GRAPH_BASE_URL"] + f"/v23.0/{PHONE_NUMBER_ID}/messages",
            body=json.dumps({"messaging_product": "whatsapp", "to": PHONE, "text": {"body": "hi"}}).encode(),
            headers={"Authorization": f"Bearer {ACCESS_TOKEN}", "Content-Type": "application/json"},
        )
        assert resp.status == 200
        assert stack.sandbox.worker.wait_idle(10)
        events = [json.loads(line) for line in record_file.read_text().splitlines()]
        assert [e["routeKey"] for e in events] == ["POST /webhooks/whatsapp"] * 3
        for event in events:  # what the real webhook function sees: raw body and its signature
            assert event["headers"]["x-hub-signature-256"] == meta_signature(event["body"].encode())
        worker = stack.sandbox.worker
    finally:
        stack.stop()
    assert worker._thread is None  # stopped with the stack
