"""The routing policy (contract §7, R1-R10) as one pure function: who, what, now -> a decision.

Every channel considered gets a stable reason code (the catalogue is ``REASONS``); the first channel
that qualifies, in preference order, is chosen; the others that qualify are the fallbacks (R7). A
qualifying channel also says which business number sends it, and why (R10, ``SENDER_REASONS``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from crossroute.channels import Channel, Outbound
from crossroute.identity.model import Customer
from crossroute.routing.request import SendRequest
from crossroute.routing.rich import MAX_SMS_BODY, Rendered, mms_reachable, render_text, whatsapp_codes

WINDOW = timedelta(hours=24)

# The reason-code catalogue: code -> (qualifies, meaning). Codes are stable: consumers branch on them.
REASONS: dict[str, tuple[bool, str]] = {
    "whatsapp.window_open": (True, "free-form text inside the 24 h customer service window (R1)"),
    "whatsapp.template": (True, "a template: outside the window, or only a template was given (R1)"),
    "whatsapp.window_closed_no_template": (False, "the window is closed and no template was given (R1)"),
    "whatsapp.interactive_needs_window": (
        False,
        "buttons or a list go only inside the window, and no template was given (R1, R13)",
    ),
    "whatsapp.auth_template_to_bsuid": (False, "authentication templates never go to a BSUID-only user (R3)"),
    "whatsapp.marketing_opted_out": (False, "the user stopped marketing messages (R5)"),
    "whatsapp.no_opt_in": (False, "the tenant needs a WhatsApp opt-in for this template category (R15)"),
    "whatsapp.unknown_bsuid": (False, "no customer holds this BSUID: it cannot be sent to"),
    "whatsapp.no_address": (False, "no current phone and no BSUID is known"),
    "whatsapp.not_configured": (False, "the tenant has no WhatsApp business number"),
    "whatsapp.twilio_needs_phone": (
        False,
        "WhatsApp through Twilio needs a phone: only a BSUID is known (R11)",
    ),
    "whatsapp.twilio_needs_content_sid": (
        False,
        "WhatsApp through Twilio sends a template by its `content_sid`, and the template has none (R11)",
    ),
    "whatsapp.twilio_too_long": (
        False,
        "WhatsApp through Twilio: the text with its numbered options is over Twilio's 1,600 (R11, R13)",
    ),
    "sms.current_phone": (True, "a current phone that has not opted out (R4)"),
    "sms.no_phone": (False, "no phone number is known (R4)"),
    "sms.phone_stale": (False, "the known phone is stale: the number changed hands or was left (R4)"),
    "sms.opted_out": (False, "the phone sent STOP and no START since, also across an erasure (R4, I10)"),
    "sms.no_text": (False, "SMS needs text or media; the request has only a template"),
    "sms.too_long": (False, "the SMS text, as rendered, is over Twilio's 1,600 characters (R13)"),
    "sms.not_configured": (False, "the tenant has no SMS sender"),
    "sms.unknown_customer": (False, "the customer id is unknown"),
    "whatsapp.unknown_customer": (False, "the customer id is unknown"),
}
# R10: why a channel goes out from the business number it does (the decision record's ``from_reason``).
SENDER_REASONS: dict[str, str] = {
    "from.request": "the request's `from` names one of the tenant's numbers on this channel",
    "from.last_inbound": "the number the customer last wrote to on this channel",
    "from.default": "the tenant's first sender: the first Meta number; the Messaging Service, else the "
    "first SMS number",
}
UNKNOWN_SENDER = (
    "from: not one of the tenant's Meta numbers (phone_number_id or display number) or SMS senders"
)
FALLBACK_PREFIX = "fallback.whatsapp_failed."  # + provider error code, e.g. fallback.whatsapp_failed.131026
TIMED_FALLBACK = "fallback.not_delivered_in_time"  # R14: WhatsApp not delivered in time


@dataclass(frozen=True)
class BusinessNumber:
    """One of a tenant's Meta numbers: what a request's ``from`` may name it by."""

    phone_number_id: str
    display: str = ""  # the display phone number, as the registry spells it


@dataclass(frozen=True)
class TenantChannels:
    """What a tenant can send from, and in which order it prefers channels."""

    whatsapp_business: str | None  # the default Meta phone_number_id (the first number); Twilio: sender
    sms_sender: str | None  # the default Twilio sender: the messaging service SID, else the first number
    preference: tuple[Channel, ...] = ("whatsapp", "sms")
    status_callback: str | None = None  # Twilio status callback URL
    # Every number the tenant can send from (R10); ``whatsapp_business`` / ``sms_sender`` when empty.
    whatsapp_numbers: tuple[BusinessNumber, ...] = ()
    sms_numbers: tuple[str, ...] = ()  # Twilio SMS numbers (E.164): a customer's sticky sender
    messaging_services: tuple[str, ...] = ()  # Twilio messaging service SIDs
    whatsapp_opt_in_required: tuple[str, ...] = ()  # R15: template categories that need an opt-in
    # R11: "twilio" when WhatsApp goes through Twilio (``whatsapp_numbers`` are then its WhatsApp senders,
    # ``whatsapp:+...``, as ids, with the phone as display number).
    whatsapp_provider: str = "meta"
    mms_senders: tuple[str, ...] = ()  # R13: the SMS numbers and messaging services that can send MMS

    def meta_numbers(self) -> tuple[BusinessNumber, ...]:
        if self.whatsapp_numbers or self.whatsapp_business is None:
            return self.whatsapp_numbers
        return (BusinessNumber(self.whatsapp_business),)

    def sms_senders(self) -> tuple[str, ...]:
        """Every address SMS can go out from: numbers and messaging services."""
        senders = (*self.sms_numbers, *self.messaging_services)
        return senders or ((self.sms_sender,) if self.sms_sender else ())


@dataclass(frozen=True)
class Recipient:
    """What crossroute knows about whom the request names (resolved by the caller, read-only here)."""

    customer: Customer | None
    customer_id_unknown: bool = False  # the request named a customer id nobody has
    bsuid_unknown: bool = False  # the request named a BSUID nobody holds
    phone_stale: bool = False  # the request's phone is stale on the customer holding it
    # Phone -> when an erasure suppressed SMS to it (None: not suppressed), for the phones read (R4, I10).
    suppressions: Mapping[str, datetime | None] = field(default_factory=dict)


@dataclass(frozen=True)
class ChannelDecision:
    channel: Channel
    reason: str
    outbound: Outbound | None = None  # what to send, when the channel qualifies (``business``: from)
    sender_reason: str | None = None  # why it goes out from ``outbound.business`` (R10)
    rendering: Mapping[str, object] | None = None  # R13: how rich content goes out (codes, segments)

    @property
    def qualified(self) -> bool:
        return self.outbound is not None

    def as_record(self) -> dict[str, object]:
        """R9: the channel, whether it qualified and why; a qualifying one's sender too (R10)."""
        record: dict[str, object] = {
            "channel": self.channel,
            "qualified": self.qualified,
            "reason": self.reason,
        }
        if self.outbound is not None:
            record["from"] = self.outbound.business
            record["from_reason"] = self.sender_reason
        if self.rendering is not None:
            record["rendering"] = dict(self.rendering)
        return record


@dataclass(frozen=True)
class Decision:
    considered: tuple[ChannelDecision, ...]

    @property
    def chosen(self) -> ChannelDecision | None:
        return next((c for c in self.considered if c.qualified), None)

    def after(self, channel: Channel) -> ChannelDecision | None:
        """The next qualifying channel after ``channel`` (asynchronous fallback, R7)."""
        rest = self.considered[[c.channel for c in self.considered].index(channel) + 1 :]
        return next((c for c in rest if c.qualified), None)

    def as_record(self) -> list[dict[str, object]]:
        """R9: each channel considered, whether it qualified, and why (and, qualifying, from where: R10)."""
        return [c.as_record() for c in self.considered]


def decide(request: SendRequest, recipient: Recipient, tenant: TenantChannels, now: datetime) -> Decision:
    """Evaluate every channel in preference order (R1-R6, R9); nothing here sends or stores."""
    order = request.channels or tenant.preference
    judge = {"whatsapp": _whatsapp, "sms": _sms}
    return Decision(tuple(judge[channel](request, recipient, tenant, now) for channel in order))


def _whatsapp(
    request: SendRequest, recipient: Recipient, tenant: TenantChannels, now: datetime
) -> ChannelDecision:
    if tenant.whatsapp_business is None:
        return ChannelDecision("whatsapp", "whatsapp.not_configured")
    if recipient.customer_id_unknown:
        return ChannelDecision("whatsapp", "whatsapp.unknown_customer")
    customer = recipient.customer
    phone = _current_phone(request, recipient)
    bsuid = customer.current_bsuid() if customer else None
    refusal = (
        _whatsapp_refusal(request, recipient, phone, bsuid)
        or _no_opt_in(request, recipient, tenant)
        or ("whatsapp.twilio_needs_phone" if tenant.whatsapp_provider == "twilio" and phone is None else None)
    )
    if refusal:
        return ChannelDecision("whatsapp", refusal)
    business, why = whatsapp_sender(request, customer, tenant)
    window_open = customer is not None and _window_open(customer, business, now)  # R1 for that number
    decided = _whatsapp_message(request, business, phone, bsuid, window_open=window_open)
    if tenant.whatsapp_provider == "twilio":
        decided = _through_twilio(decided, request, tenant, window_open=window_open)
    return replace(decided, sender_reason=why) if decided.qualified else decided


def _through_twilio(
    decided: ChannelDecision, request: SendRequest, tenant: TenantChannels, *, window_open: bool
) -> ChannelDecision:
    """R11: Twilio sends a template by its Content SID (without one: R1's refusal outside the window) and
    reports statuses to the tenant's callback; it has no reply context. R13: media goes as ``MediaUrl``;
    native buttons would need a Content template, so buttons and lists are numbered in the text."""
    outbound = decided.outbound
    if outbound is None:
        return decided
    if outbound.template is not None and not outbound.template.content_sid:
        reason = "whatsapp.twilio_needs_content_sid" if window_open else "whatsapp.window_closed_no_template"
        return ChannelDecision("whatsapp", reason)
    routed = replace(outbound, reply_to=None, status_callback=tenant.status_callback)
    if outbound.template is None and (outbound.media or outbound.interactive):
        rendered = render_text(outbound.text, outbound.media, request.raw, attach=True, channel="whatsapp")
        if len(rendered.text) > MAX_SMS_BODY:
            return ChannelDecision("whatsapp", "whatsapp.twilio_too_long")
        routed = _as_rendered(routed, rendered)
        return replace(decided, outbound=routed, rendering=rendered.record())
    return replace(decided, outbound=routed)


def _as_rendered(outbound: Outbound, rendered: Rendered) -> Outbound:
    """``outbound`` sending ``rendered``: its text, its attachment, its numbered options, no buttons."""
    return replace(
        outbound,
        text=rendered.text or None,
        media=rendered.attachment,
        interactive=None,
        options=rendered.options,
    )


def _whatsapp_refusal(
    request: SendRequest, recipient: Recipient, phone: str | None, bsuid: str | None
) -> str | None:
    """Why nothing goes to this recipient on WhatsApp, window or not: no address to send to, or a
    marketing template to someone who stopped marketing messages (R5)."""
    if phone is None and bsuid is None:
        return "whatsapp.unknown_bsuid" if recipient.bsuid_unknown else "whatsapp.no_address"
    template = request.template
    customer = recipient.customer
    if template and template.category == "marketing" and customer and customer.marketing_opted_out:
        return "whatsapp.marketing_opted_out"
    return None


def _no_opt_in(request: SendRequest, recipient: Recipient, tenant: TenantChannels) -> str | None:
    """R15: a template of a category the tenant lists needs the customer's recorded WhatsApp opt-in."""
    template = request.template
    if template is None or template.category not in tenant.whatsapp_opt_in_required:
        return None
    customer = recipient.customer
    return None if customer is not None and customer.whatsapp_opt_in else "whatsapp.no_opt_in"


def _whatsapp_message(
    request: SendRequest, business: str, phone: str | None, bsuid: str | None, *, window_open: bool
) -> ChannelDecision:
    """R1: free-form text inside the window (with its media, buttons or list, R13), else a template; an
    authentication template only goes to a phone (R3). Addressed to the phone when there is one, else the
    BSUID (R2: never a BSUID in ``to``)."""
    address = {"to": phone} if phone else {"recipient": bsuid}
    if (request.text or request.media) and window_open:
        outbound = Outbound(
            "whatsapp",
            business,
            text=request.text,
            reply_to=request.reply_to,
            media=request.media,
            interactive=request.interactive,
            **address,
        )
        codes = whatsapp_codes(request.media, request.interactive)
        rendering = {"codes": list(codes)} if codes else None
        return ChannelDecision("whatsapp", "whatsapp.window_open", outbound, rendering=rendering)
    template = request.template
    if template is None:
        closed = (
            "whatsapp.interactive_needs_window"
            if request.interactive
            else "whatsapp.window_closed_no_template"
        )
        return ChannelDecision("whatsapp", closed)
    if template.category == "authentication" and phone is None:
        return ChannelDecision("whatsapp", "whatsapp.auth_template_to_bsuid")  # R3
    outbound = Outbound("whatsapp", business, template=template, reply_to=request.reply_to, **address)
    return ChannelDecision("whatsapp", "whatsapp.template", outbound)


def _sms(
    request: SendRequest, recipient: Recipient, tenant: TenantChannels, now: datetime
) -> ChannelDecision:
    def no(reason: str) -> ChannelDecision:
        return ChannelDecision("sms", reason)

    if tenant.sms_sender is None:
        return no("sms.not_configured")
    if recipient.customer_id_unknown:
        return no("sms.unknown_customer")
    if not (request.text or request.media):
        return no("sms.no_text")
    customer = recipient.customer
    phone = _current_phone(request, recipient)
    if phone is None:
        stale = recipient.phone_stale or (customer is not None and bool(customer.phones))
        return no("sms.phone_stale" if stale else "sms.no_phone")
    if customer is not None and customer.sms_opted_out:
        return no("sms.opted_out")  # R4
    if _suppressed(recipient, phone):
        return no("sms.opted_out")  # R4: a STOP kept past its customer's erasure (I10)
    return _sms_message(request, phone, tenant, *sms_sender(request, customer, tenant))


def _sms_message(
    request: SendRequest, phone: str, tenant: TenantChannels, sender: str, why: str
) -> ChannelDecision:
    """The SMS to ``phone`` from ``sender``: the text, or rich content rendered as text (R13); over
    Twilio's 1,600 characters it does not qualify."""
    outbound = Outbound("sms", sender, to=phone, text=request.text, status_callback=tenant.status_callback)
    if request.media is None and request.interactive is None:
        if len(request.text or "") > MAX_SMS_BODY:
            return ChannelDecision("sms", "sms.too_long")
        return ChannelDecision("sms", "sms.current_phone", outbound, why)
    rendered = _sms_rendering(request, phone, sender, tenant)
    if len(rendered.text) > MAX_SMS_BODY:
        return ChannelDecision("sms", "sms.too_long")
    return ChannelDecision(
        "sms", "sms.current_phone", _as_rendered(outbound, rendered), why, rendering=rendered.record()
    )


def _sms_rendering(request: SendRequest, phone: str, sender: str, tenant: TenantChannels) -> Rendered:
    """R13: an image goes as MMS to a US/CA phone from a sender that can send MMS; any other media as
    its URL in the text; buttons and list rows as numbered options."""
    media = request.media
    mms = (
        media is not None and media.type == "image" and sender in tenant.mms_senders and mms_reachable(phone)
    )
    return render_text(request.text, media, request.raw, attach=mms)


def whatsapp_sender(
    request: SendRequest, customer: Customer | None, tenant: TenantChannels
) -> tuple[str, str]:
    """R10: the Meta number (phone_number_id) WhatsApp goes out from, and why: the request's ``from``
    when it names one of the tenant's Meta numbers, else the one the customer last wrote to, else the
    first. The tenant must have one (``whatsapp_business``)."""
    numbers = tenant.meta_numbers()
    named = _meta_number(numbers, request.sender) if request.sender else None
    if named is not None:
        return named, "from.request"
    ids = {n.phone_number_id for n in numbers}
    windows = customer.whatsapp_last_inbound if customer else {}
    known = [(at, number) for number, at in windows.items() if number in ids]
    if known:
        return max(known)[1], "from.last_inbound"
    assert tenant.whatsapp_business is not None
    return tenant.whatsapp_business, "from.default"


def sms_sender(request: SendRequest, customer: Customer | None, tenant: TenantChannels) -> tuple[str, str]:
    """R10: the Twilio sender SMS goes out from, and why: sticky, the tenant number the customer last
    texted; else the request's ``from`` when it is one of the tenant's SMS senders; else the default
    (the messaging service, else the first number). The tenant must have one (``sms_sender``)."""
    senders = tenant.sms_senders()
    last = customer.sms_last_to if customer else None
    if last is not None and last in senders:
        return last, "from.last_inbound"
    named = _sms_sender(senders, request.sender) if request.sender else None
    if named is not None:
        return named, "from.request"
    assert tenant.sms_sender is not None
    return tenant.sms_sender, "from.default"


def unknown_sender(request: SendRequest, tenant: TenantChannels) -> bool:
    """R10: the request's ``from`` names none of the tenant's Meta numbers and SMS senders."""
    asked = request.sender
    if asked is None:
        return False
    return (
        _meta_number(tenant.meta_numbers(), asked) is None
        and _sms_sender(tenant.sms_senders(), asked) is None
    )


def _meta_number(numbers: tuple[BusinessNumber, ...], asked: str) -> str | None:
    """The phone_number_id ``asked`` names: the id itself, or the display number (digits compared)."""
    digits = _digits(asked)
    for number in numbers:
        if asked == number.phone_number_id or (digits and digits == _digits(number.display)):
            return number.phone_number_id
    return None


def _sms_sender(senders: tuple[str, ...], asked: str) -> str | None:
    """The sender ``asked`` names: a messaging service SID as is, a number with its digits compared."""
    digits = _digits(asked)
    for sender in senders:
        if asked == sender or (digits and not sender.startswith("MG") and digits == _digits(sender)):
            return sender
    return None


def _digits(value: str) -> str:
    """The digits of a phone number as written (``+1 555-010-0001`` -> ``15550100001``); empty when it is
    not one (an id with letters)."""
    stripped = value.strip()
    if not stripped or any(c.isalpha() for c in stripped):
        return ""
    return "".join(c for c in stripped if c.isdigit())


def sms_phone(request: SendRequest, recipient: Recipient) -> str | None:
    """The phone an SMS for ``request`` would go to (R4), whether or not SMS qualifies."""
    return _current_phone(request, recipient)


def _suppressed(recipient: Recipient, phone: str) -> bool:
    """R4 across an erasure (I10): the phone is suppressed, and the customer holding it now has not
    opted in since (a START later than the suppression, and no STOP after it)."""
    since = recipient.suppressions.get(phone)
    if since is None:
        return False
    customer = recipient.customer
    if customer is None or customer.phone(phone) is None or customer.sms_opted_out:
        return True
    return customer.sms_opt_at is None or customer.sms_opt_at <= since


def _current_phone(request: SendRequest, recipient: Recipient) -> str | None:
    """The phone to use: the request's, unless stale; else the customer's current one (R2, R4)."""
    customer = recipient.customer
    asked = request.to.phone
    if asked:
        if recipient.phone_stale:
            return None
        record = customer.phone(asked) if customer else None
        if record is None or record.status == "current":
            return asked
        return None
    current = customer.current_phones() if customer else []
    return current[0] if current else None


def _window_open(customer: Customer, business: str, now: datetime) -> bool:
    last = customer.whatsapp_last_inbound.get(business)
    return last is not None and now < last + WINDOW
