"""WhatsApp through Twilio's Messages API (R11): the SMS client's account, SDK and error handling, with
``whatsapp:`` addresses. Free-form text goes in ``Body``; a template is a Content API template
(``ContentSid``, ``ContentVariables`` as JSON). Twilio addresses WhatsApp by phone only: no BSUID.
"""

from __future__ import annotations

import json

from crossroute.channels import Outbound
from crossroute.channels.twilio_sms import TwilioSmsClient
from crossroute.ids import E164_PATTERN

WHATSAPP = "whatsapp:"


class TwilioWhatsAppClient(TwilioSmsClient):
    """A ``Sender`` for WhatsApp through one Twilio account (its WhatsApp senders, ``whatsapp:+...``)."""

    kind = "twilio whatsapp"

    def arguments(self, message: Outbound) -> dict[str, str]:
        return whatsapp_arguments(message)


def whatsapp_arguments(message: Outbound) -> dict[str, str]:
    """The ``messages.create`` arguments: ``from_`` the sender (``whatsapp:+...``), ``to`` the phone with the
    ``whatsapp:`` prefix, then ``body`` or ``content_sid`` (+ ``content_variables``); ``status_callback``."""
    if message.channel != "whatsapp":
        raise ValueError("not a WhatsApp message")
    if message.to is None or E164_PATTERN.fullmatch(message.to) is None:
        raise ValueError("`to` must be an E.164 phone: Twilio cannot send WhatsApp to a BSUID")
    if message.recipient is not None:
        raise ValueError("Twilio cannot send WhatsApp to a BSUID")
    sender = message.business if message.business.startswith(WHATSAPP) else WHATSAPP + message.business
    if E164_PATTERN.fullmatch(sender.removeprefix(WHATSAPP)) is None:
        raise ValueError("no sender: a whatsapp:+E.164 Twilio WhatsApp sender")
    arguments = {"from_": sender, "to": WHATSAPP + message.to}
    template = message.template
    if template is not None:
        if not template.content_sid:
            raise ValueError("a template through Twilio needs a `content_sid`")
        arguments["content_sid"] = template.content_sid
        if template.variables:
            arguments["content_variables"] = json.dumps(template.variables, separators=(",", ":"))
    elif message.text:
        arguments["body"] = message.text
    else:
        raise ValueError("a WhatsApp message needs `text` or a template")
    if message.status_callback:
        arguments["status_callback"] = message.status_callback
    return arguments
