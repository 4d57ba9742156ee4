"""The Meta and Twilio clients against small local fakes of the providers: the exact requests they send, and
what each kind of answer (or no answer) means for the router. Nothing is ever sent twice by a client."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest

from crossroute.channels import Outbound, SendFailed, Sent, Template
from crossroute.channels.meta import MetaCloudClient, shared_pool
from crossroute.channels.twilio_sms import TwilioSmsClient
from crossroute.channels.twilio_whatsapp import TwilioWhatsAppClient, whatsapp_arguments
from tests.support import PHONE_NUMBER_ID, REPO, TWILIO_ACCOUNT, TWILIO_SMS_NUMBER, TWILIO_TOKEN

ACCESS_TOKEN = "local-access-token"
PHONE = "+16505551234"
BSUID = "US.13491208655302741918"
WAMID = "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
MESSAGE_SID = "SM" + "a" * 32
SERVICE_SID = "MG" + "b" * 32


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    drop: bool = False  # read the request, then close the connection without answering


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


class FakeProvider:
    """An HTTP/1.1 server on 127.0.0.1 that records each request and answers with the next scripted reply."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.replies: deque[Reply] = deque()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                provider.requests.append(
                    Recorded("POST", self.path, dict(self.headers), body, self.client_address[1])
                )
                reply = provider.replies.popleft() if provider.replies else Reply(500)
                if reply.drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in {"Content-Type": "application/json", **reply.headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    self.close_connection = True  # the client gave up waiting

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def answer(self, status: int = 200, body: Any = b"", **kwargs: Any) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.replies.append(Reply(status, raw, **kwargs))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    fake = FakeProvider()
    yield fake
    fake.close()


@pytest.fixture
def closed_port() -> int:
    """A port nobody listens on: connecting is refused before anything is sent."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A listener whose accept queue is full: a new connection never completes (a connect timeout)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.1)
    with socket.socket() as probe:
        probe.settimeout(0.3)
        try:
            probe.connect(("127.0.0.1", port))
            pytest.skip("this kernel completes connections beyond the accept queue")
        except TimeoutError:
            pass
    yield port
    for s in [*fillers, listener]:
        s.close()


def meta_sent(wa_id: str | None = "16505551234", user_id: str | None = None, input_: str = PHONE) -> dict:
    contact = {
        "input": input_,
        **({"wa_id": wa_id} if wa_id else {}),
        **({"user_id": user_id} if user_id else {}),
    }
    return {"messaging_product": "whatsapp", "contacts": [contact], "messages": [{"id": WAMID}]}


def meta_error(code: int, message: str, details: str = "") -> dict:
    return {
        "error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": "AbCdEfGhIjK",
        }
    }


def meta(provider: FakeProvider, **kwargs: Any) -> MetaCloudClient:
    return MetaCloudClient(ACCESS_TOKEN, base_url=provider.url, **kwargs)


def text_to_phone(**kwargs: Any) -> Outbound:
    return Outbound("whatsapp", PHONE_NUMBER_ID, to=PHONE, text="Your order has shipped", **kwargs)


# ---------------------------------------------------------------- Meta: what is sent


def test_a_text_to_a_phone_goes_in_to(provider: FakeProvider) -> None:
    provider.answer(200, meta_sent())

    sent = meta(provider).send(text_to_phone())

    assert sent == Sent("meta", WAMID, {"wa_id": "16505551234"})
    (request,) = provider.requests
    assert request.path == f"/v24.0/{PHONE_NUMBER_ID}/messages"
    assert request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": PHONE,
        "type": "text",
        "text": {"body": "Your order has shipped", "preview_url": False},
    }


def test_a_template_reply_to_a_username_user_goes_to_the_bsuid_in_recipient(provider: FakeProvider) -> None:
    provider.answer(200, meta_sent(wa_id=None, user_id=BSUID, input_=BSUID))
    components = [
        {"type": "header", "parameters": [{"type": "text", "text": "42"}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Ada"}, {"type": "text", "text": "Friday"}]},
        {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "o42"}]},
    ]
    template = Template("order_shipped", "en_US", "utility", components)

    sent = meta(provider, graph_version="v25.0").send(
        Outbound("whatsapp", PHONE_NUMBER_ID, recipient=BSUID, template=template, reply_to="wamid.IN1")
    )

    assert sent == Sent("meta", WAMID, {"user_id": BSUID})
    (request,) = provider.requests
    assert request.path == f"/v25.0/{PHONE_NUMBER_ID}/messages"
    assert request.json() == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "recipient": BSUID,
        "context": {"message_id": "wamid.IN1"},
        "type": "template",
        "template": {"name": "order_shipped", "language": {"code": "en_US"}, "components": components},
    }
    assert "to" not in request.json()


def test_a_template_without_parameters_has_no_components(provider: FakeProvider) -> None:
    provider.answer(200, meta_sent())

    meta(provider).send(
        Outbound("whatsapp", PHONE_NUMBER_ID, to=PHONE, template=Template("hello", "en", "utility"))
    )

    assert provider.requests[0].json()["template"] == {"name": "hello", "language": {"code": "en"}}


def test_with_a_phone_and_a_bsuid_only_the_phone_is_sent(provider: FakeProvider) -> None:
    provider.answer(200, meta_sent())

    meta(provider).send(text_to_phone(recipient=BSUID))

    body = provider.requests[0].json()
    assert body["to"] == PHONE
    assert "recipient" not in body


def test_a_bsuid_in_to_never_leaves_the_process(provider: FakeProvider) -> None:
    with pytest.raises(ValueError, match="recipient"):
        meta(provider).send(Outbound("whatsapp", PHONE_NUMBER_ID, to=BSUID, text="hi"))
    assert provider.requests == []


def test_clients_share_one_pool_and_reuse_the_connection(provider: FakeProvider) -> None:
    provider.answer(200, meta_sent())
    provider.answer(200, meta_sent())

    meta(provider).send(text_to_phone())
    MetaCloudClient("another-tenants-token", base_url=provider.url).send(text_to_phone())

    first, second = provider.requests
    assert first.client_port == second.client_port  # one kept-alive connection
    assert second.headers["Authorization"] == "Bearer another-tenants-token"
    assert shared_pool() is shared_pool()


# ---------------------------------------------------------------- Meta: what comes back

META_ERRORS = [
    (400, meta_error(131026, "(#131026) Message Undeliverable"), "fallback", 131026),
    (400, meta_error(131047, "(#131047) Re-engagement message"), "fallback", 131047),
    (400, meta_error(131049, "(#131049) Ecosystem engagement"), "fallback", 131049),
    (
        400,
        meta_error(131062, "(#131062) Business-scoped User ID recipients are not supported"),
        "fallback",
        131062,
    ),
    (400, meta_error(131050, "(#131050) Unable to deliver the message"), "permanent", 131050),
    (400, meta_error(100, "(#100) Invalid parameter"), "permanent", 100),
    (401, meta_error(190, "Error validating access token"), "permanent", 190),
    (
        400,
        meta_error(132001, "(#132001) Template name does not exist in the translation"),
        "permanent",
        132001,
    ),
    (400, meta_error(130429, "(#130429) Rate limit hit"), "retry", 130429),
    (
        400,
        meta_error(131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit"),
        "retry",
        131056,
    ),
    (500, meta_error(131000, "(#131000) Something went wrong"), "retry", 131000),
    (503, meta_error(2, "(#2) Service temporarily unavailable"), "retry", 2),
    (400, meta_error(987654, "(#987654) Something new"), "permanent", 987654),
    (500, b"<html>Internal Server Error</html>", "unknown", None),
    (502, b"", "unknown", None),
    (503, meta_error(987654, "(#987654) Something new"), "unknown", 987654),
    (429, b"", "retry", None),
]


@pytest.mark.parametrize(
    ("status", "body", "outcome", "code"),
    META_ERRORS,
    ids=[f"{s}-{c}" for s, _, _, c in META_ERRORS],
)
def test_meta_errors_become_outcomes(
    provider: FakeProvider, status: int, body: Any, outcome: str, code: int | None
) -> None:
    provider.answer(status, body)

    with pytest.raises(SendFailed) as failed:
        meta(provider).send(text_to_phone())

    assert (failed.value.provider, failed.value.outcome, failed.value.code) == ("meta", outcome, code)
    assert len(provider.requests) == 1


def test_throttling_says_when_to_come_back(provider: FakeProvider) -> None:
    provider.answer(429, meta_error(130429, "(#130429) Rate limit hit"), headers={"Retry-After": "7"})

    with pytest.raises(SendFailed) as failed:
        meta(provider).send(text_to_phone())

    assert failed.value.outcome == "retry"
    assert failed.value.retry_after == 7.0
    assert failed.value.title == "(#130429) Rate limit hit"


def test_accepted_without_a_message_id_is_unknown(provider: FakeProvider) -> None:
    provider.answer(200, {"messaging_product": "whatsapp", "contacts": [{"input": PHONE}]})

    with pytest.raises(SendFailed) as failed:
        meta(provider).send(text_to_phone())

    assert failed.value.outcome == "unknown"


def test_meta_read_timeout_is_unknown_and_sent_once(provider: FakeProvider) -> None:
    provider.answer(200, meta_sent(), delay=1.0)

    with pytest.raises(SendFailed) as failed:
        meta(provider, timeout=(1, 0.2)).send(text_to_phone())

    assert failed.value.outcome == "unknown"
    time.sleep(1.0)  # the fake answers late; nothing else arrives
    assert len(provider.requests) == 1


def test_meta_connection_dropped_after_sending_is_unknown(provider: FakeProvider) -> None:
    provider.answer(drop=True)

    with pytest.raises(SendFailed) as failed:
        meta(provider).send(text_to_phone())

    assert failed.value.outcome == "unknown"
    assert len(provider.requests) == 1


def test_meta_connection_refused_sent_nothing_so_retry(closed_port: int) -> None:
    client = MetaCloudClient(ACCESS_TOKEN, base_url=f"http://127.0.0.1:{closed_port}")

    with pytest.raises(SendFailed) as failed:
        client.send(text_to_phone())

    assert (failed.value.outcome, failed.value.code) == ("retry", None)


def test_meta_connect_timeout_sent_nothing_so_retry(unanswered_port: int) -> None:
    client = MetaCloudClient(ACCESS_TOKEN, base_url=f"http://127.0.0.1:{unanswered_port}", timeout=(0.2, 5))

    started = time.monotonic()
    with pytest.raises(SendFailed) as failed:
        client.send(text_to_phone())

    assert failed.value.outcome == "retry"
    assert time.monotonic() - started < 2


def test_meta_logs_no_token_phone_bsuid_or_body(
    provider: FakeProvider, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level("DEBUG")
    provider.answer(400, meta_error(131026, f"(#131026) Message Undeliverable to {BSUID}", f"{PHONE}"))
    provider.answer(200, meta_sent(user_id=BSUID))

    with pytest.raises(SendFailed) as failed:
        meta(provider).send(Outbound("whatsapp", PHONE_NUMBER_ID, recipient=BSUID, text="secret body"))
    meta(provider).send(text_to_phone())

    logged = caplog.text + "".join(capsys.readouterr())
    for secret in (ACCESS_TOKEN, PHONE, PHONE[1:], BSUID, "secret body", "Your order has shipped"):
        assert secret not in logged
        assert secret not in str(failed.value)
    assert ACCESS_TOKEN not in repr(meta(provider))


# ---------------------------------------------------------------- Twilio


def twilio(
    provider: FakeProvider | None = None, base_url: str | None = None, **kwargs: Any
) -> TwilioSmsClient:
    return TwilioSmsClient(TWILIO_ACCOUNT, TWILIO_TOKEN, base_url=base_url or provider.url, **kwargs)


def sms(**kwargs: Any) -> Outbound:
    return Outbound(
        "sms", kwargs.pop("business", TWILIO_SMS_NUMBER), to=PHONE, text="Your order has shipped", **kwargs
    )


def twilio_created(sid: str = MESSAGE_SID) -> dict:
    return {
        "sid": sid,
        "account_sid": TWILIO_ACCOUNT,
        "to": PHONE,
        "from": TWILIO_SMS_NUMBER,
        "body": "Your order has shipped",
        "status": "queued",
        "num_segments": "1",
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "uri": f"/2010-04-01/Accounts/{TWILIO_ACCOUNT}/Messages/{sid}.json",
    }


def twilio_error(code: int, message: str, status: int = 400) -> dict:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def test_an_sms_from_a_number(provider: FakeProvider) -> None:
    provider.answer(201, twilio_created())

    sent = twilio(provider).send(sms(status_callback="https://crossroute.example/webhooks/twilio/status"))

    assert sent == Sent("twilio", MESSAGE_SID)
    (request,) = provider.requests
    assert request.path == f"/2010-04-01/Accounts/{TWILIO_ACCOUNT}/Messages.json"
    credentials = base64.b64encode(f"{TWILIO_ACCOUNT}:{TWILIO_TOKEN}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {credentials}"
    assert request.form() == {
        "To": PHONE,
        "From": TWILIO_SMS_NUMBER,
        "Body": "Your order has shipped",
        "StatusCallback": "https://crossroute.example/webhooks/twilio/status",
    }


def test_an_sms_from_a_messaging_service(provider: FakeProvider) -> None:
    provider.answer(200, twilio_created())

    twilio(provider).send(sms(business=SERVICE_SID))

    assert provider.requests[0].form() == {
        "To": PHONE,
        "MessagingServiceSid": SERVICE_SID,
        "Body": "Your order has shipped",
    }


def test_base_url_redirects_every_request_even_with_an_edge_configured(
    provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_EDGE", "sydney")  # the SDK would rewrite the hostname to api.sydney.us1…
    provider.answer(201, twilio_created())

    twilio(base_url=provider.url + "/sandbox/twilio/").send(sms())

    assert provider.requests[0].path == f"/sandbox/twilio/2010-04-01/Accounts/{TWILIO_ACCOUNT}/Messages.json"


TWILIO_ERRORS = [
    (400, twilio_error(21610, "Attempt to send to unsubscribed recipient"), "permanent", 21610),
    (400, twilio_error(21211, f"The 'To' number {PHONE} is not a valid phone number."), "permanent", 21211),
    (400, twilio_error(21614, f"'To' number {PHONE} is not a valid mobile number"), "permanent", 21614),
    (400, twilio_error(30005, "Unknown destination handset"), "permanent", 30005),
    (400, twilio_error(30006, "Landline or unreachable carrier"), "permanent", 30006),
    (400, twilio_error(63024, "Invalid message recipient"), "fallback", 63024),
    (429, twilio_error(20429, "Too Many Requests", 429), "retry", 20429),
    (
        400,
        twilio_error(21611, "This 'From' number has exceeded the maximum number of queued messages"),
        "retry",
        21611,
    ),
    (400, twilio_error(30001, "Queue overflow"), "retry", 30001),
    (400, twilio_error(63018, "Rate limit exceeded for Channel"), "retry", 63018),
    (400, twilio_error(30003, "Unreachable destination handset"), "retry", 30003),
    (400, twilio_error(30008, "Unknown error"), "retry", 30008),
    (401, twilio_error(20003, "Authenticate", 401), "permanent", 20003),
    (429, b"", "retry", None),
    (500, b"<html>oops</html>", "unknown", None),
    (503, b"", "unknown", None),
    (
        429,
        {
            "type": "https://www.twilio.com/docs/errors/20429",
            "title": "Too Many Requests",
            "status": 429,
            "code": 20429,
        },
        "retry",
        20429,
    ),  # RFC 9457 problem details: TwilioServiceException
    (
        400,
        {
            "type": "https://www.twilio.com/docs/errors/21610",
            "title": "Unsubscribed",
            "status": 400,
            "code": 21610,
        },
        "permanent",
        21610,
    ),
]


@pytest.mark.parametrize(
    ("status", "body", "outcome", "code"),
    TWILIO_ERRORS,
    ids=[
        f"{s}-{c}-{'problem' if isinstance(b, dict) and 'type' in b else 'rest'}"
        for s, b, _, c in TWILIO_ERRORS
    ],
)
def test_twilio_errors_become_outcomes(
    provider: FakeProvider, status: int, body: Any, outcome: str, code: int | None
) -> None:
    provider.answer(status, body)

    with pytest.raises(SendFailed) as failed:
        twilio(provider).send(sms())

    assert (failed.value.provider, failed.value.outcome, failed.value.code) == ("twilio", outcome, code)
    assert PHONE not in str(failed.value)
    assert len(provider.requests) == 1


def test_twilio_read_timeout_is_unknown_and_never_created_twice(provider: FakeProvider) -> None:
    provider.answer(201, twilio_created(), delay=1.0)

    with pytest.raises(SendFailed) as failed:
        twilio(provider, timeout=0.2).send(sms())

    assert failed.value.outcome == "unknown"
    time.sleep(1.0)
    assert len(provider.requests) == 1


def test_twilio_connection_dropped_after_sending_is_unknown(provider: FakeProvider) -> None:
    provider.answer(drop=True)

    with pytest.raises(SendFailed) as failed:
        twilio(provider).send(sms())

    assert failed.value.outcome == "unknown"
    assert len(provider.requests) == 1


def test_twilio_connection_refused_sent_nothing_so_retry(closed_port: int) -> None:
    with pytest.raises(SendFailed) as failed:
        twilio(base_url=f"http://127.0.0.1:{closed_port}").send(sms())

    assert failed.value.outcome == "retry"


def test_twilio_connect_timeout_sent_nothing_so_retry(unanswered_port: int) -> None:
    with pytest.raises(SendFailed) as failed:
        twilio(base_url=f"http://127.0.0.1:{unanswered_port}", timeout=0.2).send(sms())

    assert failed.value.outcome == "retry"


def test_twilio_rest_is_imported_only_by_the_first_send(closed_port: int) -> None:
    probe = f"""
import sys
from crossroute.channels import Outbound, SendFailed
from crossroute.channels.twilio_sms import TwilioSmsClient

client = TwilioSmsClient("{TWILIO_ACCOUNT}", "token", base_url="http://127.0.0.1:{closed_port}")
print("twilio.rest" in sys.modules, "requests" in sys.modules)
try:
    client.send(Outbound("sms", "{TWILIO_SMS_NUMBER}", to="{PHONE}", text="hi"))
except SendFailed as failed:
    print(failed.outcome)
print("twilio.rest" in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60, check=True
    )
    assert result.stdout.split() == ["False", "False", "retry", "True"]


# ---------------------------------------------------------------- WhatsApp through Twilio (R11)

TWILIO_WA_SENDER = "whatsapp:+15550100003"
CONTENT_SID = "HX" + "c" * 32


def twilio_whatsapp(provider: FakeProvider) -> TwilioWhatsAppClient:
    return TwilioWhatsAppClient(TWILIO_ACCOUNT, TWILIO_TOKEN, base_url=provider.url)


def test_a_whatsapp_text_through_twilio_has_whatsapp_addresses(provider: FakeProvider) -> None:
    provider.answer(201, twilio_created())
    message = Outbound(
        "whatsapp", TWILIO_WA_SENDER, to=PHONE, text="Shipped", status_callback="https://x.example/s"
    )

    sent = twilio_whatsapp(provider).send(message)

    assert sent == Sent("twilio", MESSAGE_SID)
    (request,) = provider.requests
    assert request.path == f"/2010-04-01/Accounts/{TWILIO_ACCOUNT}/Messages.json"
    assert request.form() == {
        "To": f"whatsapp:{PHONE}",
        "From": TWILIO_WA_SENDER,
        "Body": "Shipped",
        "StatusCallback": "https://x.example/s",
    }


def test_a_whatsapp_template_through_twilio_goes_by_content_sid(provider: FakeProvider) -> None:
    provider.answer(201, twilio_created())
    template = Template("order_shipped", "en_US", "utility", content_sid=CONTENT_SID, variables={"1": "A-17"})

    twilio_whatsapp(provider).send(Outbound("whatsapp", TWILIO_WA_SENDER, to=PHONE, template=template))

    assert provider.requests[0].form() == {
        "To": f"whatsapp:{PHONE}",
        "From": TWILIO_WA_SENDER,
        "ContentSid": CONTENT_SID,
        "ContentVariables": '{"1":"A-17"}',
    }


@pytest.mark.parametrize(
    "message",
    [
        Outbound("whatsapp", TWILIO_WA_SENDER, recipient=BSUID, text="hi"),  # no BSUID through Twilio
        Outbound("whatsapp", TWILIO_WA_SENDER, to=PHONE, template=Template("t", "en_US", "utility")),
        Outbound("sms", TWILIO_WA_SENDER, to=PHONE, text="hi"),
        Outbound("whatsapp", "100000000000001", to=PHONE, text="hi"),  # a Meta number is no sender here
    ],
)
def test_what_twilio_cannot_send_on_whatsapp_never_leaves_the_process(message: Outbound) -> None:
    with pytest.raises(ValueError):
        whatsapp_arguments(message)


@pytest.mark.parametrize(("code", "outcome"), [(63016, "fallback"), (63003, "fallback"), (63018, "retry")])
def test_twilio_whatsapp_errors_become_outcomes(provider: FakeProvider, code: int, outcome: str) -> None:
    provider.answer(400, twilio_error(code, "refused"))

    with pytest.raises(SendFailed) as refused:
        twilio_whatsapp(provider).send(Outbound("whatsapp", TWILIO_WA_SENDER, to=PHONE, text="hi"))

    assert (refused.value.provider, refused.value.outcome, refused.value.code) == ("twilio", outcome, code)
