"""``crossroute simulate``: a provider webhook for the tenant, signed as the provider signs it.

- WhatsApp: a Meta Cloud API ``messages`` notification (the shape of ``tests/fixtures/core``), signed with
  ``X-Hub-Signature-256`` (HMAC-SHA256 of the raw body under the tenant's app secret). A BSUID-only user
  (``--bsuid`` without ``--phone``, as a WhatsApp user with a username who hides the number) is sent
  as Meta sends one: ``from_user_id`` and ``user_id``, no ``from`` / ``wa_id``.
- SMS: a Twilio inbound message form, signed with ``X-Twilio-Signature`` (HMAC-SHA1 of the public URL
  and the sorted parameters under the tenant's auth token, base64; Twilio's own ``RequestValidator``).

The secrets come from the stack's tenants secret; they are used, never printed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import click
from twilio.request_validator import RequestValidator

from .context import global_options, out, target
from .errors import Refused, usage
from .target import Target

if TYPE_CHECKING:
    from crossroute.tenants import Tenant

__all__ = ["meta_message", "meta_signature", "simulate", "twilio_message", "twilio_signature"]

WHATSAPP_PATH = "/webhooks/whatsapp"
TWILIO_PATH = "/webhooks/twilio"


def meta_signature(raw: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def twilio_signature(url: str, params: Sequence[tuple[str, str]], token: str) -> str:
    """``X-Twilio-Signature`` of a form whose parameter names are unique (as ``twilio_message`` builds it),
    computed by Twilio's own library."""
    return str(RequestValidator(token).compute_signature(url, dict(params)))


def meta_message(
    tenant: Tenant,
    *,
    text: str,
    message_id: str,
    timestamp: int,
    wa_id: str | None = None,
    bsuid: str | None = None,
    username: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """A WhatsApp text message from one user to the tenant's first number."""
    if tenant.meta is None or not tenant.meta.phone_numbers:
        raise Refused(f"tenant {tenant.id} has no WhatsApp number", code="not_found")
    number = tenant.meta.phone_numbers[0]
    profile = {k: v for k, v in (("name", name), ("username", username)) if v}
    person = {k: v for k, v in (("wa_id", wa_id), ("user_id", bsuid)) if v}
    message: dict[str, Any] = {k: v for k, v in (("from", wa_id), ("from_user_id", bsuid)) if v}
    message.update({"id": message_id, "timestamp": str(timestamp), "type": "text", "text": {"body": text}})
    value = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": number.display_phone_number,
            "phone_number_id": number.phone_number_id,
        },
        "contacts": [{"profile": profile, **person}],
        "messages": [message],
    }
    entry_id = tenant.meta.waba_id or number.phone_number_id
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": entry_id, "changes": [{"field": "messages", "value": value}]}],
    }


def twilio_message(tenant: Tenant, *, phone: str, text: str, message_sid: str) -> list[tuple[str, str]]:
    """An SMS from ``phone`` to the tenant's first Twilio number, as Twilio posts it."""
    if tenant.twilio is None or not tenant.twilio.sms_numbers:
        raise Refused(f"tenant {tenant.id} has no Twilio SMS number", code="not_found")
    return [
        ("MessageSid", message_sid),
        ("SmsMessageSid", message_sid),
        ("SmsSid", message_sid),
        ("AccountSid", tenant.twilio.account_sid),
        ("From", phone),
        ("To", tenant.twilio.sms_numbers[0]),
        ("Body", text),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("SmsStatus", "received"),
        ("ApiVersion", "2010-04-01"),
    ]


@click.group()
@global_options
def simulate() -> None:
    """Post a correctly signed provider webhook, as if a customer wrote."""


_wait = click.option("--wait", is_flag=True, help="Wait until the message is on a customer's timeline.")
_timeout = click.option("--timeout", type=click.FloatRange(1, 300), default=15, show_default=True)


@simulate.command("whatsapp")
@click.option("--phone", metavar="P", help="The user's phone number (omit for a BSUID-only user).")
@click.option("--bsuid", metavar="B", help="The user's BSUID, e.g. US.13491208655302741918.")
@click.option("--username", metavar="U", help="The user's WhatsApp username.")
@click.option("--name", metavar="N", help="The user's profile name.")
@click.option("--text", metavar="T", required=True, help="The message text.")
@_wait
@_timeout
@global_options
@click.pass_context
def whatsapp(ctx: click.Context, /, **options: Any) -> None:
    """A WhatsApp message from a user (phone, BSUID, or both) via the Meta Cloud API webhook."""
    from crossroute import ids

    phone, bsuid = options["phone"], options["bsuid"]
    if not phone and not bsuid:
        raise usage("give --phone, --bsuid, or both")
    if bsuid and not ids.is_bsuid(bsuid):
        raise usage("--bsuid: not a BSUID (two capital letters, a dot, letters and digits)")
    stack = target(ctx)
    tenant = stack.tenant()
    wa_id = _e164(phone, tenant.default_region).lstrip("+") if phone else None
    message_id = f"wamid.crossroute-cli.{uuid.uuid4().hex}"
    payload = meta_message(
        tenant,
        text=options["text"],
        message_id=message_id,
        timestamp=int(time.time()),
        wa_id=wa_id,
        bsuid=bsuid,
        username=options["username"],
        name=options["name"],
    )
    raw = json.dumps(payload, separators=(",", ":")).encode()
    if tenant.meta is None:
        raise Refused(f"tenant {tenant.id} has no WhatsApp channel", code="not_found")
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": meta_signature(raw, tenant.meta.app_secret),
    }
    answer = stack.api("POST", WHATSAPP_PATH, raw=raw, headers=headers)
    lookup = {"bsuid": bsuid} if bsuid else {"phone": "+" + str(wa_id)}
    _finish(ctx, stack, "whatsapp", message_id, answer.status, lookup, options)


@simulate.command("sms")
@click.option("--phone", metavar="P", required=True, help="The sender's phone number.")
@click.option("--text", metavar="T", required=True, help="The message text.")
@_wait
@_timeout
@global_options
@click.pass_context
def sms(ctx: click.Context, /, **options: Any) -> None:
    """An SMS from a phone number via the Twilio webhook."""
    stack = target(ctx)
    tenant = stack.tenant()
    phone = _e164(options["phone"], tenant.default_region)
    message_sid = "SM" + uuid.uuid4().hex
    params = twilio_message(tenant, phone=phone, text=options["text"], message_sid=message_sid)
    assert tenant.twilio is not None  # twilio_message refused otherwise
    signature = twilio_signature(stack.public_base_url + TWILIO_PATH, params, tenant.twilio.auth_token)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
    answer = stack.api("POST", TWILIO_PATH, raw=urlencode(params).encode(), headers=headers)
    _finish(ctx, stack, "sms", message_sid, answer.status, {"phone": phone}, options)


def _e164(phone: str, region: str) -> str:
    from crossroute import ids

    try:
        return ids.e164(phone, region)
    except ids.InvalidIdentifier:
        raise usage("--phone: not a phone number") from None


def _finish(
    ctx: click.Context,
    stack: Target,
    channel: str,
    message_id: str,
    status: int,
    lookup: dict[str, str],
    options: dict[str, Any],
) -> None:
    if not 200 <= status < 300:
        raise Refused(f"the {channel} webhook answered {status}", code="refused", status=status)
    result: dict[str, Any] = {"channel": channel, "message_id": message_id, "status": status}
    if options["wait"]:
        customer = _customer_with(stack, lookup, message_id, float(options["timeout"]))
        if customer is None:
            raise Refused(f"{channel} message {message_id} not on a timeline yet", code="timeout", **result)
        result["customer_id"] = customer
    show = out(ctx)
    if show.json_mode:
        show.emit(result)
        return
    show.line(f"{channel} message {message_id} accepted (HTTP {status})")
    if "customer_id" in result:
        show.line(f"customer {result['customer_id']}")


def _customer_with(stack: Target, lookup: dict[str, str], message_id: str, timeout: float) -> str | None:
    """The customer whose timeline holds the message, once ingest has stored it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = stack.api("GET", "/contacts", query=lookup)
        if found.status == 200:
            customer = str(found.json()["id"])
            page = stack.api("GET", f"/contacts/{customer}/timeline", query={"limit": "20"})
            items = page.json().get("items", []) if page.status == 200 else []
            if any(item.get("message_id") == message_id for item in items):
                return customer
        time.sleep(0.2)
    return None
