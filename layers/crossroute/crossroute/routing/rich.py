"""R13: rich content in a send request (``media``, reply ``buttons``, a ``list``): its validation against
Meta's limits, the order of its numbered options, and how SMS (and WhatsApp through Twilio) render it
as text. Pure: no I/O. The limits and their sources are in docs/routing.md (R13).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from crossroute.channels import Interactive, ListRow, ListSection, Media

MEDIA_TYPES = ("image", "document", "audio", "video")
HEADER_MEDIA = ("image", "document", "video")  # what may head a reply-button message
MAX_BUTTONS, BUTTON_TITLE, BUTTON_ID = 3, 20, 256
BODY_WITH_BUTTONS = 1024
LIST_BUTTON, MAX_SECTIONS, MAX_ROWS = 20, 10, 10
SECTION_TITLE, ROW_ID, ROW_TITLE, ROW_DESCRIPTION = 24, 200, 24, 72
CAPTION = 1024
MAX_URL, MAX_FILENAME = 2000, 240  # crossroute's own bounds (no provider states one)
MAX_SMS_BODY = 1600  # Twilio's Body limit, in characters
REPLY_HINT = "Reply with a number."
# GSM 03.38: the basic set (1 septet each) and the extension table (2: escape + character).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = frozenset("\f^{}\\[~]|€")


# ------------------------------------------------------------------ the order of the numbered options


def numbered_options(raw_request: Any) -> tuple[tuple[str, str], ...]:
    """The (id, title) of each option a request's SMS numbers, in order: option k (1-based) is the k-th
    button, or the k-th list row counting rows across sections in order. Empty without buttons or a
    list. The one place that order is defined: the reply mapping reads it too."""
    if not isinstance(raw_request, Mapping):
        return ()
    buttons = raw_request.get("buttons")
    if isinstance(buttons, list) and buttons:
        return tuple(_pair(b) for b in buttons if isinstance(b, Mapping))
    listed = raw_request.get("list")
    sections = listed.get("sections") if isinstance(listed, Mapping) else None
    if not isinstance(sections, list):
        return ()
    rows = [s.get("rows") for s in sections if isinstance(s, Mapping)]
    return tuple(
        _pair(r) for section in rows if isinstance(section, list) for r in section if isinstance(r, Mapping)
    )


def _pair(item: Mapping[str, Any]) -> tuple[str, str]:
    return str(item.get("id", "")), str(item.get("title", ""))


# ------------------------------------------------------------------ validation


def parse_rich(
    doc: Mapping[str, Any], text: Any, problems: list[str]
) -> tuple[Media | None, Interactive | None]:
    """``media``, ``buttons`` and ``list`` of a request whose ``text`` is ``text``; every problem is
    appended to ``problems`` as a "field: problem" line."""
    media = _media(doc["media"], problems) if doc.get("media") is not None else None
    has_buttons, has_list = doc.get("buttons") is not None, doc.get("list") is not None
    interactive = None
    if has_buttons and has_list:
        problems.append("buttons and list: one or the other, not both")
    elif has_buttons:
        interactive = _buttons(doc["buttons"], problems)
    elif has_list:
        interactive = _list(doc["list"], problems)
    _combination(doc, text, media, has_buttons or has_list, problems)
    return media, interactive


def _combination(
    doc: Mapping[str, Any], text: Any, media: Media | None, interactive: bool, problems: list[str]
) -> None:
    """What goes together: buttons and lists need a body (the text); a list has no media header; a
    media message's caption is its text (or ``media.caption``), and audio has none."""
    has_text = isinstance(text, str) and bool(text.strip())
    if interactive and not has_text:
        problems.append("text: required with buttons or a list (it is the message body)")
    if doc.get("buttons") is not None and has_text and len(text) > BODY_WITH_BUTTONS:
        problems.append(f"text: at most {BODY_WITH_BUTTONS} characters with buttons")
    if media is not None:
        _media_combination(doc, text if has_text else None, media, interactive, problems)


def _media_combination(
    doc: Mapping[str, Any], text: str | None, media: Media, interactive: bool, problems: list[str]
) -> None:
    """Media with a list (never), with buttons (a header: no audio, no caption), or alone (the text or
    ``media.caption`` is its caption)."""
    has_text = text is not None
    if doc.get("list") is not None:
        problems.append("media: not with a list (a list message has a text header only)")
    elif interactive:
        if media.type not in HEADER_MEDIA:
            problems.append("media.type: image, document or video with buttons (the message header)")
        if media.caption is not None:
            problems.append("media.caption: not with buttons (the text is the body; a header has none)")
    elif has_text and media.type == "audio":
        problems.append("text: not with audio media (audio has no caption)")
    elif has_text and media.caption is not None:
        problems.append("media.caption: not with text (the text is the caption)")
    elif text is not None and len(text) > CAPTION:
        problems.append(f"text: at most {CAPTION} characters as a media caption")


def _media(value: Any, problems: list[str]) -> Media | None:
    if not isinstance(value, Mapping):
        problems.append("media: an object with type and url")
        return None
    kind, url = value.get("type"), value.get("url")
    caption, filename = value.get("caption"), value.get("filename")
    before = len(problems)
    if kind not in MEDIA_TYPES:
        problems.append(f"media.type: one of {', '.join(MEDIA_TYPES)}")
    if not _https_url(url):
        problems.append(f"media.url: an https URL of at most {MAX_URL} characters")
    if caption is not None and kind == "audio":
        problems.append("media.caption: audio has no caption")
    elif caption is not None and not _text(caption, CAPTION):
        problems.append(f"media.caption: a non-empty string of at most {CAPTION} characters")
    if filename is not None and kind != "document":
        problems.append("media.filename: documents only")
    elif filename is not None and not _text(filename, MAX_FILENAME):
        problems.append(f"media.filename: a non-empty string of at most {MAX_FILENAME} characters")
    if len(problems) > before:
        return None
    return Media(str(kind), str(url), caption, filename)


def _https_url(url: Any) -> bool:
    """An absolute https URL without spaces: Meta and Twilio fetch it from the internet."""
    if not isinstance(url, str) or len(url) > MAX_URL or any(c.isspace() for c in url):
        return False
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(parts.hostname)


def _text(value: Any, limit: int) -> bool:
    return isinstance(value, str) and bool(value.strip()) and len(value) <= limit


def _button_id(value: Any, limit: int) -> bool:
    """An id: non-empty, at most ``limit`` characters, no leading or trailing space."""
    return isinstance(value, str) and bool(value) and len(value) <= limit and value == value.strip()


def _buttons(value: Any, problems: list[str]) -> Interactive | None:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_BUTTONS:
        problems.append(f"buttons: a list of 1 to {MAX_BUTTONS} buttons")
        return None
    before = len(problems)
    for i, button in enumerate(value):
        where = f"buttons[{i}]"
        if not isinstance(button, Mapping):
            problems.append(f"{where}: an object with id and title")
            continue
        if not _button_id(button.get("id"), BUTTON_ID):
            problems.append(f"{where}.id: 1 to {BUTTON_ID} characters, no leading or trailing space")
        if not _text(button.get("title"), BUTTON_TITLE):
            problems.append(f"{where}.title: a non-empty string of at most {BUTTON_TITLE} characters")
    if len(problems) > before:
        return None
    pairs = tuple((str(b["id"]), str(b["title"])) for b in value)
    _distinct(pairs, "buttons", problems)
    return None if len(problems) > before else Interactive(buttons=pairs)


def _distinct(pairs: tuple[tuple[str, str], ...], where: str, problems: list[str]) -> None:
    if len({i for i, _ in pairs}) != len(pairs):
        problems.append(f"{where}: ids must be unique")
    if len({t.strip().casefold() for _, t in pairs}) != len(pairs):
        problems.append(f"{where}: titles must be unique")


def _list(value: Any, problems: list[str]) -> Interactive | None:
    if not isinstance(value, Mapping) or not isinstance(value.get("sections"), list):
        problems.append("list: an object with button and sections")
        return None
    before = len(problems)
    if not _text(value.get("button"), LIST_BUTTON):
        problems.append(f"list.button: a non-empty string of at most {LIST_BUTTON} characters")
    raw_sections = value["sections"]
    if not 1 <= len(raw_sections) <= MAX_SECTIONS:
        problems.append(f"list.sections: 1 to {MAX_SECTIONS} sections")
    sections = tuple(
        _section(s, f"list.sections[{i}]", len(raw_sections) > 1, problems)
        for i, s in enumerate(raw_sections)
    )
    rows = [(r.id, r.title) for s in sections for r in s.rows]
    if not 1 <= len(rows) <= MAX_ROWS and len(problems) == before:
        problems.append(f"list.sections: 1 to {MAX_ROWS} rows in all")
    if len({i for i, _ in rows}) != len(rows):
        problems.append("list: row ids must be unique")
    if len(problems) > before:
        return None
    return Interactive(list_button=str(value["button"]), sections=sections)


def _section(value: Any, where: str, titled: bool, problems: list[str]) -> ListSection:
    if not isinstance(value, Mapping) or not isinstance(value.get("rows"), list) or not value["rows"]:
        problems.append(f"{where}: an object with a non-empty list of rows")
        return ListSection(None, ())
    title = value.get("title")
    if title is None and titled:
        problems.append(f"{where}.title: required when there is more than one section")
    elif title is not None and not _text(title, SECTION_TITLE):
        problems.append(f"{where}.title: a non-empty string of at most {SECTION_TITLE} characters")
    rows = tuple(_row(r, f"{where}.rows[{j}]", problems) for j, r in enumerate(value["rows"]))
    return ListSection(title if isinstance(title, str) else None, rows)


def _row(value: Any, where: str, problems: list[str]) -> ListRow:
    if not isinstance(value, Mapping):
        problems.append(f"{where}: an object with id and title")
        return ListRow("", "")
    row_id, title, description = value.get("id"), value.get("title"), value.get("description")
    if not _button_id(row_id, ROW_ID):
        problems.append(f"{where}.id: 1 to {ROW_ID} characters, no leading or trailing space")
    if not _text(title, ROW_TITLE):
        problems.append(f"{where}.title: a non-empty string of at most {ROW_TITLE} characters")
    if description is not None and not _text(description, ROW_DESCRIPTION):
        problems.append(f"{where}.description: a non-empty string of at most {ROW_DESCRIPTION} characters")
    return ListRow(str(row_id), str(title), description if isinstance(description, str) else None)


# ------------------------------------------------------------------ rendering as text


# Rendering codes (the decision record's ``rendering.codes``, R9): how rich content went out on a channel.
RENDERINGS: dict[str, str] = {
    "whatsapp.media": "the media went by link: a media message, the header of a button message, or "
    "Twilio's `MediaUrl`",
    "whatsapp.interactive_buttons": "the buttons went as a WhatsApp interactive button message",
    "whatsapp.interactive_list": "the list went as a WhatsApp interactive list message",
    "whatsapp.rendered_buttons": "WhatsApp through Twilio: the buttons as numbered options in the text",
    "whatsapp.rendered_list": "WhatsApp through Twilio: the list rows as numbered options in the text",
    "sms.rendered_buttons": "the buttons as numbered options in the text; a reply of a number is its button",
    "sms.rendered_list": "the list rows as numbered options in the text; a reply of the number is the row",
    "sms.media_as_mms": "the image went as MMS (a US/CA phone, a sender that can send MMS)",
    "sms.media_as_link": "the media URL went in the text",
}


@dataclass(frozen=True)
class Rendered:
    """A message rendered as text (SMS, WhatsApp through Twilio): the text, the media that goes attached
    (``MediaUrl``: MMS, or Twilio WhatsApp media), the numbered options in the text, and why."""

    text: str
    attachment: Media | None
    options: tuple[tuple[str, str], ...]
    codes: tuple[str, ...]

    def record(self) -> dict[str, object]:
        """What the decision record says of it (R9): the codes, the text's length, segments and encoding."""
        count, encoding = segments(self.text)
        return {
            "codes": list(self.codes),
            "characters": len(self.text),
            "segments": count,
            "encoding": encoding,
        }


def render_text(
    text: str | None,
    media: Media | None,
    raw_request: Mapping[str, Any],
    *,
    attach: bool,
    channel: str = "sms",
) -> Rendered:
    """The text a channel without native buttons sends: the request's text (or the media's caption),
    the media URL unless the media goes attached (``attach``), then the numbered options and a hint."""
    options = numbered_options(raw_request)
    body = text or (media.caption if media else None)
    parts = [body] if body else []
    codes: list[str] = []
    if media is not None and attach:
        codes.append("sms.media_as_mms" if channel == "sms" else f"{channel}.media")
    elif media is not None:
        parts.append(media.url)
        codes.append(f"{channel}.media_as_link")
    if options:
        lines = [f"{k}. {title}" for k, (_, title) in enumerate(options, start=1)]
        parts.append("\n".join([*lines, REPLY_HINT]))
        kind = "list" if raw_request.get("list") is not None else "buttons"
        codes.append(f"{channel}.rendered_{kind}")
    return Rendered("\n\n".join(parts), media if attach else None, options, tuple(codes))


def whatsapp_codes(media: Media | None, interactive: Interactive | None) -> tuple[str, ...]:
    """The rendering codes of a native WhatsApp message (through Meta)."""
    codes = ["whatsapp.media"] if media else []
    if interactive is not None:
        codes.append(f"whatsapp.interactive_{'list' if interactive.sections else 'buttons'}")
    return tuple(codes)


def segments(text: str) -> tuple[int, str]:
    """How many SMS segments ``text`` takes, and its encoding: GSM-7 (160 alone, 153 per part; an
    extension character counts 2) when every character is in GSM 03.38, else UCS-2 (70 alone, 67 per
    part; a character outside the BMP counts 2). An empty text (an MMS without words) takes none."""
    if not text:
        return 0, "GSM-7"
    if all(c in GSM_BASIC or c in GSM_EXTENDED for c in text):
        units, single, part, encoding = sum(2 if c in GSM_EXTENDED else 1 for c in text), 160, 153, "GSM-7"
    else:
        units, single, part, encoding = sum(2 if ord(c) > 0xFFFF else 1 for c in text), 70, 67, "UCS-2"
    return (1 if units <= single else math.ceil(units / part)), encoding


def mms_reachable(phone: str) -> bool:
    """A US or Canadian phone: where Twilio delivers MMS (elsewhere it turns it into a link, or refuses)."""
    if not phone.startswith("+1"):
        return False
    import phonenumbers  # loaded only for an image that could go as MMS

    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(phone))
    except phonenumbers.NumberParseException:
        return False
    return region in ("US", "CA")
