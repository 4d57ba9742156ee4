"""R13 through the dispatch use case against DynamoDB (moto): what each channel is handed for a request
with media and buttons, and what the stored decision and the events say about it."""

from __future__ import annotations

import pytest

from crossroute.channels import SendFailed
from tests.support import AFTER_WINDOW, IN_WINDOW, DispatchWorld, send_request

IMAGE = {"type": "image", "url": "https://cdn.example.com/order-42.jpg"}
BUTTONS = [{"id": "track", "title": "Track order"}, {"id": "talk", "title": "Talk to us"}]
OPTIONS = (("track", "Track order"), ("talk", "Talk to us"))


@pytest.fixture
def world(table: str) -> DispatchWorld:
    return DispatchWorld(IN_WINDOW)


def test_inside_the_window_whatsapp_is_handed_the_image_and_the_buttons(world: DispatchWorld) -> None:
    customer = world.ana()
    world.dispatch.send(send_request(to={"customer_id": customer}, media=IMAGE, buttons=BUTTONS))
    (sent,) = world.whatsapp.calls
    assert sent.media is not None and sent.media.url == IMAGE["url"]
    assert sent.interactive is not None and sent.interactive.buttons == OPTIONS
    assert sent.options == ()  # nothing numbered: the buttons are native
    (routed,) = world.bus.of("MessageRouted")
    assert routed["decision"][0]["rendering"] == {"codes": ["whatsapp.media", "whatsapp.interactive_buttons"]}


def test_after_the_window_buttons_go_by_sms_numbered_with_the_image_as_a_link(world: DispatchWorld) -> None:
    customer = world.ana()  # a Brazilian phone: no MMS there
    world.now = AFTER_WINDOW
    result = world.dispatch.send(send_request(to={"customer_id": customer}, media=IMAGE, buttons=BUTTONS))
    assert world.whatsapp.calls == [] and result.sent == {"sms": "SM1"}
    (sent,) = world.sms.calls
    assert sent.text == (
        f"Your order has shipped\n\n{IMAGE['url']}\n\n1. Track order\n2. Talk to us\nReply with a number."
    )
    assert (sent.media, sent.interactive, sent.options) == (None, None, OPTIONS)
    (routed,) = world.bus.of("MessageRouted")
    whatsapp, sms = routed["decision"]
    assert whatsapp["reason"] == "whatsapp.interactive_needs_window"
    assert sms["rendering"]["codes"] == ["sms.media_as_link", "sms.rendered_buttons"]
    assert (sms["rendering"]["segments"], sms["rendering"]["encoding"]) == (1, "GSM-7")


def test_a_later_whatsapp_failure_sends_the_rendered_sms(world: DispatchWorld) -> None:
    customer = world.ana()
    world.dispatch.send(send_request(to={"customer_id": customer}, media=IMAGE, buttons=BUTTONS))
    result = world.dispatch.fallback("demo", "meta", "wamid.1", 131026)  # R7
    assert result.sent == {"sms": "SM1"}
    (sms,) = world.sms.calls
    assert sms.options == OPTIONS and sms.text is not None and sms.text.endswith("Reply with a number.")


def test_a_refused_whatsapp_send_moves_on_to_the_rendered_sms(world: DispatchWorld) -> None:
    customer = world.ana()
    world.whatsapp.script.append(SendFailed("meta", "fallback", 131026, "undeliverable"))
    result = world.dispatch.send(send_request(to={"customer_id": customer}, buttons=BUTTONS))
    assert result.sent == {"sms": "SM1"} and world.sms.calls[0].options == OPTIONS
