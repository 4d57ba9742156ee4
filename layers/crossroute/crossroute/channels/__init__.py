"""Sending: one message on one channel through a provider (Meta Cloud API, Twilio), and what a
provider's answer means for routing. The routing policy decides *whether* and *where*; this decides
nothing, it sends exactly what it is given and classifies what came back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Channel = Literal["whatsapp", "sms"]

# What a provider error means for the router (the code tables are in docs/providers.md):
#   retry     - not accepted, safe to send again later (throughput, transient service errors)
#   fallback  - this channel cannot reach the user (e.g. 131026, 131047, 131062): try the next channel
#   permanent - do not send again on this channel (bad parameter, opted out, template problem, policy)
#   unknown   - the request may or may not have been accepted (timeout after sending): never resend
Outcome = Literal["retry", "fallback", "permanent", "unknown"]


@dataclass(frozen=True)
class Template:
    name: str
    language: str
    category: str  # authentication | marketing | utility
    components: list[dict[str, Any]] = field(default_factory=list)
    # R11, WhatsApp through Twilio: the Content API template (HX...) and its variables ("1" -> value).
    content_sid: str | None = None
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Media:
    """R13: a file sent by link: ``image``, ``document``, ``audio`` or ``video`` at an http(s) ``url``."""

    type: str
    url: str
    caption: str | None = None  # not for audio
    filename: str | None = None  # documents only


@dataclass(frozen=True)
class ListRow:
    id: str
    title: str
    description: str | None = None


@dataclass(frozen=True)
class ListSection:
    title: str | None
    rows: tuple[ListRow, ...]


@dataclass(frozen=True)
class Interactive:
    """R13: reply buttons ((id, title) pairs), or a list: the label of the button that opens it and its
    sections. WhatsApp sends it natively (inside the window); SMS renders it as numbered options."""

    buttons: tuple[tuple[str, str], ...] = ()
    list_button: str | None = None
    sections: tuple[ListSection, ...] = ()

    @property
    def kind(self) -> str:
        return "list" if self.sections else "button"


@dataclass(frozen=True)
class Outbound:
    """Exactly one message on one channel. WhatsApp: ``to`` (E.164 phone) or else ``recipient`` (BSUID).
    SMS: ``to`` only, ``text`` (and an MMS image, R13) only."""

    channel: Channel
    business: str  # Meta phone_number_id; Twilio sender number or messaging service SID (MG...)
    to: str | None = None
    recipient: str | None = None
    text: str | None = None
    template: Template | None = None
    reply_to: str | None = None  # provider message id this replies to (WhatsApp context)
    status_callback: str | None = None  # Twilio: where status callbacks go
    # R13: a file (WhatsApp: a media message, or the header of a button message; Twilio: ``MediaUrl``)
    media: Media | None = None
    interactive: Interactive | None = None  # R13: WhatsApp through Meta only, inside the window
    # R13: the (id, title) of the numbered options rendered into ``text`` (SMS, Twilio WhatsApp): a reply
    # of the number k means the k-th id
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Sent:
    provider: Literal["meta", "twilio"]
    message_id: str  # wamid... / SM...
    recipient_ids: dict[str, str] = field(default_factory=dict)  # what the provider echoed (wa_id, user_id)


class SendFailed(Exception):
    """A provider refused or could not be reached; ``outcome`` tells the router what to do next."""

    def __init__(
        self,
        provider: str,
        outcome: Outcome,
        code: int | None,
        title: str = "",
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{provider} {outcome}: {code} {title}".strip())
        self.provider = provider
        self.outcome = outcome
        self.code = code
        self.title = title
        self.retry_after = retry_after


class Sender(Protocol):
    def send(self, message: Outbound) -> Sent:
        """Send once. Raises ``SendFailed``; never sends twice by itself when the outcome is unknown."""
