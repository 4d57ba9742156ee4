"""Send requests (contract §7), validated at every door: EventBridge, the send queue, POST /messages.

Plain dataclasses rather than pydantic: the dispatch function validates on its cold-start path.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from crossroute import ids
from crossroute.channels import Channel, Interactive, Media, Template
from crossroute.identity.model import Key
from crossroute.routing.rich import parse_rich

CHANNELS: tuple[Channel, ...] = ("whatsapp", "sms")
TEMPLATE_CATEGORIES = ("authentication", "marketing", "utility")
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:@/+=-]{1,128}")
MAX_TEXT = 4096
_CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
# R14: ``fallback_after`` bounds, in seconds. 5 s: a short wait is a sender's choice (and lets the local
# stack show the fallback without a test-only bound); 86,400 s: a day, past which an SMS is no fallback.
FALLBACK_AFTER_MIN, FALLBACK_AFTER_MAX = 5, 86_400


class InvalidRequest(ValueError):
    """What is wrong with a send request, one line per problem (safe to show to the caller)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def canonical_hash(request: dict[str, Any]) -> str:
    """A request's fingerprint, the same however its JSON was written (member order, spacing, escapes):
    the same idempotency key with a different hash is another request (422 at ``POST /messages``)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Address:
    """Whom a request is for, as it says: a customer id, a phone, a BSUID (any of them)."""

    customer_id: str | None = None
    phone: str | None = None  # E.164 after validation
    bsuid: str | None = None

    @property
    def named_key(self) -> Key | None:
        """The phone it names, else the BSUID: what a request for no known customer is indexed under, so
        that erasing whoever holds that key later deletes it too (I10)."""
        if self.phone:
            return Key("phone", self.phone)
        return Key("bsuid", self.bsuid) if self.bsuid else None


@dataclass(frozen=True)
class SendRequest:
    tenant: str
    idempotency_key: str
    to: Address
    text: str | None = None
    template: Template | None = None
    channels: tuple[Channel, ...] | None = None  # None: the tenant's preference
    reply_to: str | None = None
    sender: str | None = None  # ``from``: a business number or messaging service to send from (R10)
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    fallback_after: int | None = None  # R14: SMS when WhatsApp is not delivered within this many seconds
    media: Media | None = None  # R13
    interactive: Interactive | None = None  # R13: reply buttons or a list


def parse_send_request(
    doc: Any, *, default_tenant: str | None = None, default_region: str = "US"
) -> SendRequest:
    """Validate a send request document; raises ``InvalidRequest`` listing every problem."""
    problems: list[str] = []
    if not isinstance(doc, dict):
        raise InvalidRequest(["the request must be a JSON object"])
    tenant = _tenant(doc.get("tenant", default_tenant), problems)
    key = _idempotency_key(doc.get("idempotency_key"), problems)
    to = _address(doc.get("to"), default_region, problems)
    text, template = _content(doc, problems)
    media, interactive = parse_rich(doc, text, problems)  # R13
    if text is None and template is None and media is None:
        problems.append("text and/or template: at least one is required, or media (R13)")
    channels = _channels(doc.get("channels"), problems)
    reply_to = _reply_to(doc.get("reply_to"), problems)
    sender = _sender(doc.get("from"), problems)
    fallback_after = _fallback_after(doc.get("fallback_after"), problems)
    if problems:
        raise InvalidRequest(problems)
    return SendRequest(
        tenant,
        key,
        to,
        text,
        template,
        channels,
        reply_to,
        sender,
        raw=doc,
        fallback_after=fallback_after,
        media=media,
        interactive=interactive,
    )


def _tenant(value: Any, problems: list[str]) -> str:
    if not isinstance(value, str) or not value:
        problems.append("tenant: required")
        return ""
    return value


def _idempotency_key(value: Any, problems: list[str]) -> str:
    if not isinstance(value, str) or not IDEMPOTENCY_KEY.fullmatch(value):
        problems.append("idempotency_key: required, 1-128 of A-Z a-z 0-9 _ . : @ / + = -")
        return ""
    return value


def _content(doc: dict[str, Any], problems: list[str]) -> tuple[str | None, Template | None]:
    """Text, a template, or both (or neither when the request carries media, R13)."""
    text = doc.get("text")
    if text is not None and (not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT):
        problems.append(f"text: a non-empty string of at most {MAX_TEXT} characters")
    template = _template(doc.get("template"), problems) if doc.get("template") is not None else None
    return text, template


def _reply_to(value: Any, problems: list[str]) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        problems.append("reply_to: a provider message id")
        return None
    return value


def _sender(value: Any, problems: list[str]) -> str | None:
    """``from`` (R10): whether the tenant has that number is checked by dispatch, which knows the tenant."""
    if value is not None and (not isinstance(value, str) or not value.strip() or len(value) > 64):
        problems.append("from: one of the tenant's numbers (phone_number_id, display number) or senders")
        return None
    return value.strip() if value is not None else None


def _fallback_after(value: Any, problems: list[str]) -> int | None:
    """R14: whole seconds, ``FALLBACK_AFTER_MIN`` to ``FALLBACK_AFTER_MAX``."""
    if value is None:
        return None
    seconds = value if isinstance(value, int) and not isinstance(value, bool) else -1
    if not FALLBACK_AFTER_MIN <= seconds <= FALLBACK_AFTER_MAX:
        problems.append(f"fallback_after: whole seconds, {FALLBACK_AFTER_MIN} to {FALLBACK_AFTER_MAX}")
        return None
    return seconds


def _address(value: Any, region: str, problems: list[str]) -> Address:
    if not isinstance(value, dict) or not any(value.get(k) for k in ("customer_id", "phone", "bsuid")):
        problems.append("to: an object with at least one of customer_id, phone, bsuid")
        return Address()
    customer_id, phone, bsuid = value.get("customer_id"), value.get("phone"), value.get("bsuid")
    if customer_id is not None and (not isinstance(customer_id, str) or not customer_id):
        problems.append("to.customer_id: a customer id")
        customer_id = None
    if phone is not None:
        try:
            phone = ids.e164(str(phone), region)
        except ids.InvalidIdentifier:
            problems.append("to.phone: not a phone number")
            phone = None
    if bsuid is not None:
        try:
            bsuid = ids.bsuid(str(bsuid))
        except ids.InvalidIdentifier:
            problems.append("to.bsuid: not a BSUID (CC.alphanumerics)")
            bsuid = None
    return Address(customer_id or None, phone, bsuid)


def _template(value: Any, problems: list[str]) -> Template | None:
    if not isinstance(value, dict):
        problems.append("template: an object with name, language, category")
        return None
    name, language, category = value.get("name"), value.get("language"), value.get("category")
    components = value.get("components", [])
    ok = True
    if not isinstance(name, str) or not name:
        problems.append("template.name: required")
        ok = False
    if not isinstance(language, str) or not language:
        problems.append("template.language: required, e.g. en_US")
        ok = False
    if category not in TEMPLATE_CATEGORIES:
        problems.append(f"template.category: one of {', '.join(TEMPLATE_CATEGORIES)}")
        ok = False
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        problems.append("template.components: a list of objects")
        ok = False
    content_sid, variables = _content_template(value, problems)
    if not ok or (content_sid is None and "content_sid" in value):
        return None
    return Template(str(name), str(language), str(category), list(components), content_sid, variables)


def _content_template(value: dict[str, Any], problems: list[str]) -> tuple[str | None, dict[str, str]]:
    """R11: a Twilio Content API template (``content_sid``, HX...) and its ``variables`` (name -> text)."""
    sid, variables = value.get("content_sid"), value.get("variables", {})
    if sid is not None and not (isinstance(sid, str) and _CONTENT_SID.fullmatch(sid)):
        problems.append("template.content_sid: a Twilio Content SID (HX and 32 hex digits)")
        sid = None
    if not isinstance(variables, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in variables.items()
    ):
        problems.append("template.variables: an object of strings")
        variables = {}
    return sid, dict(variables)


def _channels(value: Any, problems: list[str]) -> tuple[Channel, ...] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or any(c not in CHANNELS for c in value)
        or len(set(value)) != len(value)
    ):
        problems.append("channels: a non-empty list of distinct 'whatsapp', 'sms'")
        return None
    return tuple(value)
