"""R13 over HTTP: the real provider clients send media, buttons and lists to the sandbox providers, which
check the bodies as Meta and Twilio would and record in the outbox what went out."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from crossroute.channels import Interactive, ListRow, ListSection, Media, Outbound
from crossroute.channels.meta import MetaCloudClient
from crossroute.channels.twilio_sms import TwilioSmsClient
from crossroute.channels.twilio_whatsapp import TwilioWhatsAppClient
from infra.local.client import http_request
from tests.support import PHONE_NUMBER_ID, TWILIO_ACCOUNT, TWILIO_SMS_NUMBER, TWILIO_TOKEN, sandbox_providers

PHONE = "+16505551234"
IMAGE = Media("image", "https://cdn.example.com/order-42.jpg")
BUTTONS = Interactive(
    buttons=(("track", "Track order"), ("change", "Change address"), ("talk", "Talk to us"))
)
SLOTS = Interactive(
    list_button="Choose a slot",
    sections=(
        ListSection("Morning", (ListRow("am-9", "9:00"), ListRow("am-11", "11:00"))),
        ListSection("Afternoon", (ListRow("pm-2", "14:00", "after lunch"),)),
    ),
)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Any, str]]:
    with sandbox_providers() as served:
        yield served


@pytest.fixture
def sandbox(served: tuple[Any, str]) -> tuple[Any, str]:
    served[0].outbox.clear()
    return served


def meta(base_url: str) -> MetaCloudClient:
    return MetaCloudClient("local-access-token", base_url=base_url + "/_sandbox/graph")


def whatsapp(**fields: Any) -> Outbound:
    return Outbound("whatsapp", PHONE_NUMBER_ID, to=PHONE, **fields)


def test_an_image_with_three_buttons_is_recorded_as_an_interactive_message(sandbox: tuple[Any, str]) -> None:
    box, base_url = sandbox
    sent = meta(base_url).send(whatsapp(text="Shipped!", media=IMAGE, interactive=BUTTONS))
    (entry,) = box.outbox.list()
    assert entry["provider_message_id"] == sent.message_id
    assert (entry["type"], entry["text"], entry["list"]) == ("interactive", "Shipped!", None)
    assert entry["media"] == {"type": "image", "url": IMAGE.url}
    assert entry["buttons"] == [{"id": i, "title": t} for i, t in BUTTONS.buttons]


def test_a_list_is_recorded_with_its_rows_as_buttons(sandbox: tuple[Any, str]) -> None:
    box, base_url = sandbox
    meta(base_url).send(whatsapp(text="When shall we come?", interactive=SLOTS))
    (entry,) = box.outbox.list()
    assert entry["type"] == "interactive" and entry["media"] is None
    assert [b["id"] for b in entry["buttons"]] == ["am-9", "am-11", "pm-2"]
    assert entry["list"]["button"] == "Choose a slot" and len(entry["list"]["sections"]) == 2


def test_a_document_goes_by_link_with_its_caption_and_file_name(sandbox: tuple[Any, str]) -> None:
    box, base_url = sandbox
    invoice = Media("document", "https://cdn.example.com/invoice.pdf", filename="invoice.pdf")
    meta(base_url).send(whatsapp(text="Your invoice", media=invoice))
    (entry,) = box.outbox.list()
    assert (entry["type"], entry["text"], entry["media"], entry["buttons"]) == (
        "document",
        "Your invoice",
        {"type": "document", "url": invoice.url},
        None,
    )


def graph(base_url: str, doc: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    answer = http_request(
        "POST",
        f"{base_url}/_sandbox/graph/v24.0/{PHONE_NUMBER_ID}/messages",
        body=json.dumps({"messaging_product": "whatsapp", "to": PHONE, **doc}).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer local-access-token"},
    )
    result: dict[str, Any] = answer.json()
    return answer.status, result


def buttons(*titles: str) -> dict[str, Any]:
    replies = [{"type": "reply", "reply": {"id": f"b{i}", "title": t}} for i, t in enumerate(titles)]
    return {
        "type": "interactive",
        "interactive": {"type": "button", "body": {"text": "Hi"}, "action": {"buttons": replies}},
    }


@pytest.mark.parametrize(
    "doc",
    [
        buttons("A", "B", "C", "D"),  # four buttons
        buttons("x" * 21),  # a title over 20
        buttons("Same", "Same"),  # titles not unique
        {"type": "image", "image": {"caption": "no link"}},
        {"type": "audio", "audio": {"link": IMAGE.url, "caption": "audio has none"}},
        {"type": "image", "image": {"link": IMAGE.url, "filename": "a.jpg"}},
        {
            "type": "interactive",
            "interactive": {
                "type": "list",
                "body": {"text": "Hi"},
                "action": {
                    "button": "Pick",
                    "sections": [{"rows": [{"id": f"r{i}", "title": "R"} for i in range(11)]}],
                },
            },
        },
    ],
)
def test_the_fake_graph_api_refuses_what_meta_would(sandbox: tuple[Any, str], doc: dict[str, Any]) -> None:
    box, base_url = sandbox
    status, answer = graph(base_url, doc)
    assert (status, answer["error"]["code"]) == (400, 100)
    (entry,) = box.outbox.list()
    assert entry["error_code"] == 100 and entry["provider_message_id"] is None


def twilio_sms(base_url: str) -> TwilioSmsClient:
    return TwilioSmsClient(TWILIO_ACCOUNT, TWILIO_TOKEN, base_url=base_url + "/_sandbox/twilio")


def test_an_mms_goes_as_media_url_and_is_recorded_as_media(sandbox: tuple[Any, str]) -> None:
    box, base_url = sandbox
    text = "Shipped!\n\n1. Track order\n2. Change address\n3. Talk to us\nReply with a number."
    twilio_sms(base_url).send(Outbound("sms", TWILIO_SMS_NUMBER, to=PHONE, text=text, media=IMAGE))
    (entry,) = box.outbox.list()
    assert (entry["channel"], entry["type"], entry["text"]) == ("sms", "media", text)
    assert (entry["media"], entry["buttons"]) == ({"type": "image", "url": IMAGE.url}, None)


def test_an_mms_without_words_needs_no_body(sandbox: tuple[Any, str]) -> None:
    box, base_url = sandbox
    twilio_sms(base_url).send(Outbound("sms", TWILIO_SMS_NUMBER, to=PHONE, media=IMAGE))
    (entry,) = box.outbox.list()
    assert (entry["type"], entry["text"], entry["media"]["url"]) == ("media", None, IMAGE.url)


def test_twilio_whatsapp_media_goes_as_media_url(sandbox: tuple[Any, str]) -> None:
    box, base_url = sandbox
    client = TwilioWhatsAppClient(TWILIO_ACCOUNT, TWILIO_TOKEN, base_url=base_url + "/_sandbox/twilio")
    client.send(
        Outbound(
            "whatsapp", "whatsapp:+15550100003", to=PHONE, text="1. Yes\nReply with a number.", media=IMAGE
        )
    )
    (entry,) = box.outbox.list()
    assert (entry["channel"], entry["provider"], entry["type"]) == ("whatsapp", "twilio", "media")
    assert entry["media"] == {"type": "image", "url": IMAGE.url}


def test_the_fake_twilio_api_refuses_a_media_url_that_is_not_one(sandbox: tuple[Any, str]) -> None:
    box, base_url = sandbox
    form = {"To": PHONE, "From": TWILIO_SMS_NUMBER, "Body": "x", "MediaUrl": "not a url"}
    credentials = base64.b64encode(f"{TWILIO_ACCOUNT}:{TWILIO_TOKEN}".encode()).decode()
    answer = http_request(
        "POST",
        f"{base_url}/_sandbox/twilio/2010-04-01/Accounts/{TWILIO_ACCOUNT}/Messages.json",
        body=urlencode(form).encode(),
        headers={
            "Authorization": f"Basic {credentials}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert (answer.status, answer.json()["code"]) == (400, 21620)
    (entry,) = box.outbox.list()
    assert entry["error_code"] == 21620
