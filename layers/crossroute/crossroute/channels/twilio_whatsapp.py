"""WhatsApp through Twilio's Messages API (R11): the SMS client's account, SDK and error handling, with
``whatsapp:`` addresses. Free-form text goes in ``Body``; a template is a Content API template
(``ContentSid``, ``ContentVariables`` as JSON). Twilio addresses WhatsApp by phone only: no BSUID.
"""

from __future__ import annotations

import json
from typing import Any

from crossroute.channels import Outbound
from crossroute.channels.twilio_sms import TwilioSmsClient
from crossroute.ids import E164_PATTERN

WHATSAPP = "whatsapp:"


class TwilioWhatsAppClient(TwilioSmsClient):
    """A ``Sender`` for WhatsApp through one Twilio account (its WhatsApp senders, ``whatsapp:+...``)."""

    kind = "twilio whatsapp"

    def arguments(self, message: Outbound) -> dict[str, Any]:
        return whatsapp_arguments(message)


def whatsapp_arguments(message: Outbound) -> dict[str, Any]:
    """The ``messages.create`` arguments: ``from_`` the sender (``whatsapp:+...``), ``to`` the phone with the
    ``whatsapp:`` prefix, then ``body`` (and media as ``media_url``, R13) or ``content_sid``
    (+ ``content_variables``); ``status_callback``. Buttons arrive here already rendered as text."""
    if message.channel != "whatsapp":
        raise ValueError("not a WhatsApp message")
    if message.to is None or E164_PATTERN.fullmatch(message.to) is None:
        raise ValueError("`to` must be an E.164 phone: Twilio cannot send WhatsApp to a BSUID")
    if message.recipient is not None:
        raise ValueError("Twilio cannot send WhatsApp to a BSUID")
    sender = message.business if message.business.startswith(WHATSAPP) else WHATSAPP + message.business
    if E164_PATTERN.fullmatch(sender.removeprefix(WHATSAPP)) is None:
        raise ValueError("no sender: a whatsapp:+E.164 Twilio WhatsApp sender")
    if message.interactive is not None:
        raise ValueError("buttons through Twilio need a Content template: render them as text")
    arguments: dict[str, Any] = {"from_": sender, "to": WHATSAPP + message.to}
    arguments.update(_content(message))
    if message.status_callback:
        arguments["status_callback"] = message.status_callback
    return arguments


def _content(message: Outbound) -> dict[str, Any]:
    """A template by ``content_sid`` (+ ``content_variables``), else ``body`` and/or ``media_url``."""
    template = message.template
    if template is not None:
        if not template.content_sid:
            raise ValueError("a template through Twilio needs a `content_sid`")
        content: dict[str, Any] = {"content_sid": template.content_sid}
        if template.variables:
            content["content_variables"] = json.dumps(template.variables, separators=(",", ":"))
        return content
    if not (message.text or message.media):
        raise ValueError("a WhatsApp message needs `text`, media or a template")
    content = {"body": message.text} if message.text else {}
    if message.media is not None:
        content["media_url"] = [message.media.url]
    return content
