"""R13, rich content: what a send request may carry (media, reply buttons, a list), how WhatsApp sends it
natively inside the window, and how SMS (and WhatsApp through Twilio) renders it as text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossroute.channels import Outbound
from crossroute.channels.meta import whatsapp_payload
from crossroute.channels.twilio_sms import sms_arguments
from crossroute.channels.twilio_whatsapp import whatsapp_arguments
from crossroute.identity.model import BsuidRecord, Customer, PhoneRecord
from crossroute.routing.policy import REASONS, ChannelDecision, Decision, Recipient, TenantChannels, decide
from crossroute.routing.request import InvalidRequest, SendRequest, parse_send_request
from crossroute.routing.rich import (
    BODY_WITH_BUTTONS,
    MAX_SMS_BODY,
    RENDERINGS,
    numbered_options,
    render_text,
    segments,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
BUSINESS, SMS_NUMBER = "100000000000001", "+15550100002"
US_PHONE, UK_PHONE, BSUID = "+16505551234", "+447700900123", "US.13491208655302741918"
TENANT = TenantChannels(whatsapp_business=BUSINESS, sms_sender=SMS_NUMBER, mms_senders=(SMS_NUMBER,))
TWILIO_SENDER = "whatsapp:+15550100003"
TWILIO_TENANT = TenantChannels(
    whatsapp_business=TWILIO_SENDER, sms_sender=SMS_NUMBER, whatsapp_provider="twilio"
)
IMAGE = {"type": "image", "url": "https://cdn.example.com/order-42.jpg"}
BUTTONS = [
    {"id": "track", "title": "Track order"},
    {"id": "change", "title": "Change address"},
    {"id": "talk", "title": "Talk to us"},
]
LIST = {
    "button": "Choose a slot",
    "sections": [
        {"title": "Morning", "rows": [{"id": "am-9", "title": "9:00"}, {"id": "am-11", "title": "11:00"}]},
        {"title": "Afternoon", "rows": [{"id": "pm-2", "title": "14:00", "description": "after lunch"}]},
    ],
}
TEMPLATE = {"name": "order_shipped", "language": "en_US", "category": "utility"}


def customer(*, phone: str = US_PHONE, window: bool = True, business: str = BUSINESS) -> Customer:
    return Customer(
        id="c1",
        tenant="demo",
        created_at=NOW - timedelta(days=30),
        updated_at=NOW,
        phones=(PhoneRecord(phone, "current", "meta.message", NOW),),
        bsuids=(BsuidRecord(BSUID, "current", NOW),),
        whatsapp_last_inbound={business: NOW - timedelta(hours=2 if window else 30)},
    )


def request(**fields: Any) -> SendRequest:
    doc = {"tenant": "demo", "idempotency_key": "k1", "to": {"customer_id": "c1"}, "text": "Shipped!"}
    doc.update(fields)
    return parse_send_request({k: v for k, v in doc.items() if v is not None})


def problems(**fields: Any) -> list[str]:
    with pytest.raises(InvalidRequest) as raised:
        request(**fields)
    return raised.value.problems


def route(req: SendRequest, who: Customer, tenant: TenantChannels = TENANT) -> Decision:
    return decide(req, Recipient(who), tenant, NOW)


def channel(decision: Decision, name: str) -> ChannelDecision:
    return next(c for c in decision.considered if c.channel == name)


def sms_of(decision: Decision) -> Outbound:
    outbound = channel(decision, "sms").outbound
    assert outbound is not None
    return outbound


# ---------------------------------------------------------------- validation


def test_a_request_may_carry_an_image_and_three_buttons() -> None:
    req = request(media=IMAGE, buttons=BUTTONS)
    assert req.media is not None and (req.media.type, req.media.url) == ("image", IMAGE["url"])
    assert req.interactive is not None and req.interactive.buttons == tuple(
        (b["id"], b["title"]) for b in BUTTONS
    )


def test_a_request_may_carry_media_alone() -> None:
    assert request(text=None, media={**IMAGE, "caption": "Your parcel"}).media is not None


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"buttons": []}, "buttons: a list of 1 to 3 buttons"),
        ({"buttons": [*BUTTONS, {"id": "x", "title": "Four"}]}, "buttons: a list of 1 to 3 buttons"),
        (
            {"buttons": [{"id": "a", "title": "x" * 21}]},
            "buttons[0].title: a non-empty string of at most 20 characters",
        ),
        (
            {"buttons": [{"id": " a", "title": "A"}]},
            "buttons[0].id: 1 to 256 characters, no leading or trailing space",
        ),
        (
            {"buttons": [{"id": "a" * 257, "title": "A"}]},
            "buttons[0].id: 1 to 256 characters, no leading or trailing space",
        ),
        (
            {"buttons": [{"id": "a", "title": "Same"}, {"id": "b", "title": "same"}]},
            "buttons: titles must be unique",
        ),
        ({"buttons": [{"id": "a", "title": "A"}, {"id": "a", "title": "B"}]}, "buttons: ids must be unique"),
        ({"buttons": BUTTONS, "list": LIST}, "buttons and list: one or the other, not both"),
        (
            {"buttons": BUTTONS, "text": "x" * 1025},
            f"text: at most {BODY_WITH_BUTTONS} characters with buttons",
        ),
        (
            {"buttons": BUTTONS, "text": None, "template": TEMPLATE},
            "text: required with buttons or a list (it is the message body)",
        ),
        ({"list": {**LIST, "button": "x" * 21}}, "list.button: a non-empty string of at most 20 characters"),
        (
            {"list": {"button": "Pick", "sections": [{"rows": [{"id": "a", "title": "A"}]}] * 2}},
            "list.sections[0].title: required when there is more than one section",
        ),
        (
            {
                "list": {
                    "button": "Pick",
                    "sections": [{"title": "S", "rows": [{"id": f"r{i}", "title": "R"} for i in range(11)]}],
                }
            },
            "list.sections: 1 to 10 rows in all",
        ),
        (
            {"list": {"button": "Pick", "sections": [{"rows": [{"id": "a" * 201, "title": "A"}]}]}},
            "list.sections[0].rows[0].id: 1 to 200 characters, no leading or trailing space",
        ),
        (
            {"list": {"button": "Pick", "sections": [{"rows": [{"id": "a", "title": "A" * 25}]}]}},
            "list.sections[0].rows[0].title: a non-empty string of at most 24 characters",
        ),
        (
            {
                "list": {
                    "button": "Pick",
                    "sections": [{"rows": [{"id": "a", "title": "A", "description": "d" * 73}]}],
                }
            },
            "list.sections[0].rows[0].description: a non-empty string of at most 72 characters",
        ),
        (
            {
                "list": {
                    "button": "Pick",
                    "sections": [{"title": "x" * 25, "rows": [{"id": "a", "title": "A"}]}],
                }
            },
            "list.sections[0].title: a non-empty string of at most 24 characters",
        ),
        ({"media": {**IMAGE, "type": "sticker"}}, "media.type: one of image, document, audio, video"),
        (
            {"media": {**IMAGE, "url": "http://cdn.example.com/a.jpg"}},
            "media.url: an https URL of at most 2000 characters",
        ),
        ({"media": {**IMAGE, "url": "/a.jpg"}}, "media.url: an https URL of at most 2000 characters"),
        (
            {"text": None, "media": {"type": "audio", "url": IMAGE["url"], "caption": "hi"}},
            "media.caption: audio has no caption",
        ),
        ({"media": {**IMAGE, "filename": "a.jpg"}}, "media.filename: documents only"),
        ({"media": {**IMAGE, "caption": "x"}}, "media.caption: not with text (the text is the caption)"),
        (
            {"media": {"type": "audio", "url": IMAGE["url"]}},
            "text: not with audio media (audio has no caption)",
        ),
        ({"media": IMAGE, "list": LIST}, "media: not with a list (a list message has a text header only)"),
        (
            {"media": {"type": "audio", "url": IMAGE["url"]}, "buttons": BUTTONS},
            "media.type: image, document or video with buttons (the message header)",
        ),
        (
            {"media": {**IMAGE, "caption": "c"}, "buttons": BUTTONS},
            "media.caption: not with buttons (the text is the body; a header has none)",
        ),
        ({"media": IMAGE, "text": "x" * 1025}, "text: at most 1024 characters as a media caption"),
        ({"text": None}, "text and/or template: at least one is required, or media (R13)"),
    ],
)
def test_every_problem_with_rich_content_is_named(fields: dict[str, Any], problem: str) -> None:
    assert problem in problems(**fields)


def test_every_problem_is_listed_at_once() -> None:
    found = problems(media={"type": "gif", "url": "ftp://x"}, buttons=[{"id": "", "title": ""}])
    assert {p.split(":")[0] for p in found} >= {
        "media.type",
        "media.url",
        "buttons[0].id",
        "buttons[0].title",
    }


# ---------------------------------------------------------------- the numbered options


def test_options_are_the_buttons_in_order_or_the_list_rows_across_sections() -> None:
    assert numbered_options({"buttons": BUTTONS}) == (
        ("track", "Track order"),
        ("change", "Change address"),
        ("talk", "Talk to us"),
    )
    assert [i for i, _ in numbered_options({"list": LIST})] == ["am-9", "am-11", "pm-2"]
    assert numbered_options({"text": "hi"}) == () == numbered_options(None) == numbered_options({"list": 3})


# ---------------------------------------------------------------- WhatsApp natively


def test_inside_the_window_an_image_with_buttons_is_one_interactive_message_with_an_image_header() -> None:
    decided = channel(route(request(media=IMAGE, buttons=BUTTONS), customer()), "whatsapp")
    assert decided.reason == "whatsapp.window_open"
    assert decided.as_record()["rendering"] == {"codes": ["whatsapp.media", "whatsapp.interactive_buttons"]}
    assert decided.outbound is not None
    payload = whatsapp_payload(decided.outbound)
    assert payload["type"] == "interactive"
    assert payload["interactive"] == {
        "type": "button",
        "body": {"text": "Shipped!"},
        "header": {"type": "image", "image": {"link": IMAGE["url"]}},
        "action": {
            "buttons": [{"type": "reply", "reply": {"id": b["id"], "title": b["title"]}} for b in BUTTONS]
        },
    }


def test_a_list_goes_as_an_interactive_list_message() -> None:
    decided = channel(route(request(list=LIST), customer()), "whatsapp")
    assert decided.outbound is not None
    interactive = whatsapp_payload(decided.outbound)["interactive"]
    assert interactive["type"] == "list" and interactive["action"]["button"] == "Choose a slot"
    assert interactive["action"]["sections"][1] == {
        "title": "Afternoon",
        "rows": [{"id": "pm-2", "title": "14:00", "description": "after lunch"}],
    }


def test_media_alone_is_a_media_message_captioned_with_the_text() -> None:
    doc = {"type": "document", "url": "https://cdn.example.com/invoice.pdf", "filename": "invoice.pdf"}
    decided = channel(route(request(media=doc, text="Your invoice"), customer()), "whatsapp")
    assert decided.outbound is not None
    payload = whatsapp_payload(decided.outbound)
    assert (payload["type"], payload["document"]) == (
        "document",
        {"link": doc["url"], "caption": "Your invoice", "filename": "invoice.pdf"},
    )


def test_outside_the_window_buttons_without_a_template_are_not_deliverable_on_whatsapp() -> None:
    decision = route(request(buttons=BUTTONS), customer(window=False))
    assert channel(decision, "whatsapp").reason == "whatsapp.interactive_needs_window"
    assert not REASONS["whatsapp.interactive_needs_window"][0]
    assert decision.chosen is not None and decision.chosen.channel == "sms"  # SMS still qualifies


def test_outside_the_window_a_template_goes_instead_of_the_buttons() -> None:
    decided = channel(route(request(buttons=BUTTONS, template=TEMPLATE), customer(window=False)), "whatsapp")
    assert decided.reason == "whatsapp.template" and decided.rendering is None
    assert decided.outbound is not None and decided.outbound.interactive is None


# ---------------------------------------------------------------- SMS rendering


def test_sms_numbers_the_buttons_and_sends_an_image_as_mms_to_a_us_phone() -> None:
    sms = channel(route(request(media=IMAGE, buttons=BUTTONS, channels=["sms"]), customer()), "sms")
    assert sms.outbound is not None
    assert sms.outbound.text == (
        "Shipped!\n\n1. Track order\n2. Change address\n3. Talk to us\nReply with a number."
    )
    assert sms.outbound.options == (
        ("track", "Track order"),
        ("change", "Change address"),
        ("talk", "Talk to us"),
    )
    assert sms.outbound.interactive is None and sms.outbound.media is not None
    assert sms.as_record()["rendering"] == {
        "codes": ["sms.media_as_mms", "sms.rendered_buttons"],
        "characters": len(sms.outbound.text),
        "segments": 1,
        "encoding": "GSM-7",
    }
    assert sms_arguments(sms.outbound)["media_url"] == [IMAGE["url"]]


def test_outside_the_us_and_canada_the_image_url_goes_in_the_text() -> None:
    sms = sms_of(route(request(media=IMAGE, channels=["sms"]), customer(phone=UK_PHONE)))
    assert (sms.text, sms.media) == (f"Shipped!\n\n{IMAGE['url']}", None)
    assert "media_url" not in sms_arguments(sms)


def test_a_sender_that_cannot_send_mms_puts_the_url_in_the_text() -> None:
    plain = TenantChannels(whatsapp_business=BUSINESS, sms_sender=SMS_NUMBER)  # no mms_senders
    decided = channel(route(request(media=IMAGE, channels=["sms"]), customer(), plain), "sms")
    assert decided.rendering is not None and decided.rendering["codes"] == ["sms.media_as_link"]


def test_only_images_go_as_mms() -> None:
    video = {"type": "video", "url": "https://cdn.example.com/a.mp4"}
    assert sms_of(route(request(media=video, channels=["sms"]), customer())).media is None


def test_a_list_is_numbered_row_by_row_and_recorded_as_a_rendered_list() -> None:
    sms = channel(route(request(list=LIST, channels=["sms"]), customer()), "sms")
    assert sms.outbound is not None and sms.outbound.text is not None
    assert "1. 9:00\n2. 11:00\n3. 14:00\nReply with a number." in sms.outbound.text
    assert sms.rendering is not None and sms.rendering["codes"] == ["sms.rendered_list"]


def test_an_sms_over_1600_characters_as_rendered_does_not_qualify() -> None:
    long = "é" * (BODY_WITH_BUTTONS - 10)
    decided = channel(route(request(text=long * 2, channels=["sms"]), customer()), "sms")
    assert decided.reason == "sms.too_long" and not decided.qualified


def test_media_alone_goes_by_sms_as_an_mms_without_words() -> None:
    sms = sms_of(route(request(text=None, media=IMAGE, channels=["sms"]), customer()))
    assert sms.text is None and sms_arguments(sms) == {
        "to": US_PHONE,
        "from_": SMS_NUMBER,
        "media_url": [IMAGE["url"]],
    }


# ---------------------------------------------------------------- WhatsApp through Twilio


def test_through_twilio_buttons_are_numbered_and_media_goes_as_media_url() -> None:
    who = customer(business=TWILIO_SENDER)
    decided = channel(route(request(media=IMAGE, buttons=BUTTONS), who, TWILIO_TENANT), "whatsapp")
    assert decided.reason == "whatsapp.window_open" and decided.outbound is not None
    assert decided.rendering is not None and decided.rendering["codes"] == [
        "whatsapp.media",
        "whatsapp.rendered_buttons",
    ]
    arguments = whatsapp_arguments(decided.outbound)
    assert arguments["media_url"] == [IMAGE["url"]]
    assert arguments["body"].endswith("3. Talk to us\nReply with a number.")
    assert decided.outbound.options[0] == ("track", "Track order")


def test_every_rendering_code_is_catalogued() -> None:
    seen: set[str] = set()
    for fields in ({"media": IMAGE, "buttons": BUTTONS}, {"list": LIST}, {"media": IMAGE}):
        for tenant in (TENANT, TWILIO_TENANT):
            who = customer(business=tenant.whatsapp_business or BUSINESS)
            for phone_who in (who, customer(phone=UK_PHONE, business=tenant.whatsapp_business or BUSINESS)):
                for c in route(request(**fields), phone_who, tenant).considered:
                    seen |= set((c.rendering or {}).get("codes", []))  # type: ignore[call-overload]
    assert seen == set(RENDERINGS)


# ---------------------------------------------------------------- segments


GSM = st.text(alphabet="@£$¥èéùìòÇØøÅåΔ_ΦΓ ABCXYZabcxyz0123456789.,!?\n", max_size=1600)


@given(GSM)
def test_a_gsm_text_takes_one_segment_up_to_160_then_one_per_153(text: str) -> None:
    count, encoding = segments(text)
    assert encoding == "GSM-7"
    assert count == (0 if not text else 1 if len(text) <= 160 else -(-len(text) // 153))


@given(
    st.text(min_size=1, max_size=800).filter(
        lambda t: any(ord(c) > 0x7F and c not in "£¥èéùìòÇØøÅåΔΦΓ" for c in t)
    )
)
def test_a_text_outside_gsm_is_ucs2_70_then_67(text: str) -> None:
    count, encoding = segments(text)
    units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)
    if encoding == "UCS-2":
        assert count == (1 if units <= 70 else -(-units // 67))


def test_gsm_extension_characters_count_twice() -> None:
    assert segments("€" * 80) == (1, "GSM-7")
    assert segments("€" * 81) == (2, "GSM-7")
    assert segments("😀" * 35) == (1, "UCS-2")
    assert segments("😀" * 36) == (2, "UCS-2")


TITLES = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=20
).filter(lambda t: t.strip() == t and bool(t))


@settings(max_examples=150)
@given(
    text=st.text(min_size=1, max_size=BODY_WITH_BUTTONS).filter(str.strip),
    titles=st.lists(TITLES, min_size=1, max_size=3, unique_by=lambda t: t.casefold()),
    media=st.sampled_from([None, IMAGE, {"type": "document", "url": "https://x.example/a.pdf"}]),
)
def test_any_valid_request_with_buttons_renders_within_the_limits(
    text: str, titles: list[str], media: dict[str, str] | None
) -> None:
    buttons = [{"id": f"b{i}", "title": t} for i, t in enumerate(titles)]
    try:
        req = request(text=text, buttons=buttons, media=media, channels=["sms"])
    except InvalidRequest:
        return  # e.g. titles equal once stripped and case-folded
    decided = channel(route(req, customer(phone=UK_PHONE)), "sms")
    if decided.reason == "sms.too_long":
        assert len(render_text(req.text, req.media, req.raw, attach=False).text) > MAX_SMS_BODY
        return
    assert decided.outbound is not None and decided.outbound.text is not None
    assert len(decided.outbound.text) <= MAX_SMS_BODY
    assert decided.outbound.options == tuple((b["id"], b["title"]) for b in buttons)
    for k, (_, title) in enumerate(decided.outbound.options, start=1):
        assert f"{k}. {title}" in decided.outbound.text


def test_through_twilio_a_rendered_text_over_1600_characters_does_not_qualify() -> None:
    who = customer(business=TWILIO_SENDER)
    decided = channel(
        route(request(text="x" * 1000, buttons=BUTTONS * 1, media=None), who, TWILIO_TENANT), "whatsapp"
    )
    assert decided.qualified  # 1,000 characters and three options fit
    long_list = {
        "button": "Pick",
        "sections": [{"rows": [{"id": f"r{i}", "title": "y" * 24} for i in range(10)]}],
    }
    decided = channel(route(request(text="x" * 1400, list=long_list), who, TWILIO_TENANT), "whatsapp")
    assert decided.reason == "whatsapp.twilio_too_long"
