"""Warm dispatch containers pick up rotated provider credentials: ``TenantSetups`` rebuilds a tenant's setup
(its provider clients) when the tenant's entry in a freshly read registry differs, and only then."""

from __future__ import annotations

import json
from typing import Any

import pytest

from crossroute.config import RegistrySource, RegistryUnavailable
from crossroute.dispatch import TenantSetup
from crossroute.tenant_setup import Endpoints, TenantSetups
from tests.support import LOCAL_TENANT

MAX_AGE = 300.0


class Secret:
    """The registry secret: a document that an operator changes."""

    def __init__(self, **tenants: Any) -> None:
        self.tenants: dict[str, Any] = json.loads(json.dumps(tenants or {"demo": LOCAL_TENANT}))

    def __call__(self, force: bool) -> str:
        return json.dumps({"tenants": self.tenants})


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def _world(secret: Secret) -> tuple[TenantSetups, Clock]:
    clock = Clock()
    return TenantSetups(RegistrySource(secret, max_age=MAX_AGE, clock=clock), Endpoints()), clock


def sms_token(setup: TenantSetup | None) -> str:
    assert setup is not None
    return str(setup.senders["sms"]._auth_token)  # type: ignore[attr-defined]


def whatsapp_authorization(setup: TenantSetup | None) -> str:
    assert setup is not None
    return str(setup.senders["whatsapp"]._headers["Authorization"])  # type: ignore[attr-defined]


def test_a_setup_is_kept_while_the_tenants_entry_stays_the_same() -> None:
    setups, clock = _world(Secret())
    first = setups("demo")
    assert first is not None and setups("demo") is first
    clock.now += MAX_AGE + 1  # the registry is read again: the same document
    assert setups("demo") is first


def test_a_rotated_twilio_token_reaches_the_warm_container_within_the_registrys_cache_time() -> None:
    secret = Secret()
    setups, clock = _world(secret)
    first = setups("demo")
    assert sms_token(first) == "local-twilio-token"
    secret.tenants["demo"]["twilio"] |= {
        "auth_token": "new-token",
        "previous_auth_token": "local-twilio-token",
    }
    clock.now += MAX_AGE  # within the cache time: still the old clients
    assert setups("demo") is first
    clock.now += 1
    rotated = setups("demo")
    assert rotated is not first and sms_token(rotated) == "new-token"
    assert setups("demo") is rotated


def test_a_rotated_meta_access_token_rebuilds_the_whatsapp_client() -> None:
    secret = Secret()
    setups, clock = _world(secret)
    assert whatsapp_authorization(setups("demo")) == "Bearer local-access-token"
    secret.tenants["demo"]["meta"]["access_token"] = "new-access-token"
    clock.now += MAX_AGE + 1
    assert whatsapp_authorization(setups("demo")) == "Bearer new-access-token"


def test_another_tenants_change_does_not_rebuild_this_one() -> None:
    other = {"twilio": {"account_sid": "AC2", "auth_token": "t2", "sms_numbers": ["+15550109999"]}}
    secret = Secret(demo=LOCAL_TENANT, other=other)
    setups, clock = _world(secret)
    demo, before = setups("demo"), setups("other")
    secret.tenants["other"]["twilio"]["auth_token"] = "t3"
    clock.now += MAX_AGE + 1
    assert setups("demo") is demo
    assert setups("other") is not before and sms_token(setups("other")) == "t3"


def test_a_tenant_removed_from_the_registry_is_unknown_and_its_setup_dropped() -> None:
    secret = Secret()
    setups, clock = _world(secret)
    first = setups("demo")
    removed = secret.tenants.pop("demo")
    secret.tenants["someone"] = {"default_region": "US"}
    clock.now += MAX_AGE + 1
    assert setups("demo") is None
    secret.tenants["demo"] = removed
    clock.now += MAX_AGE + 1
    back = setups("demo")
    assert back is not None and back is not first


def test_an_unusable_new_registry_keeps_the_current_setups() -> None:
    secret = Secret()
    setups, clock = _world(secret)
    first = setups("demo")
    secret.tenants["demo"] = {"default_region": "usa"}  # the only tenant is malformed: wholly unusable
    clock.now += MAX_AGE + 1
    assert setups("demo") is first


def test_without_any_usable_registry_a_send_is_not_declared_undeliverable() -> None:
    setups, _ = _world(Secret(demo={"twilio": {}}))
    with pytest.raises(RegistryUnavailable):  # the send queue retries the record
        setups("demo")


def test_every_number_of_the_tenant_reaches_the_policy_each_with_its_rate() -> None:
    """R10: the first numbers are the defaults; a coexistence number is paced at its own, lower rate."""
    from crossroute.routing.pacing import COEXISTENCE_RATE, DEFAULT_RATE
    from crossroute.routing.policy import BusinessNumber

    numbers = [
        {"phone_number_id": "100000000000001", "display_phone_number": "15550100001"},
        {"phone_number_id": "100000000000002", "display_phone_number": "15550100005", "coexistence": True},
    ]
    tenant = {
        **LOCAL_TENANT,
        "meta": {**LOCAL_TENANT["meta"], "phone_numbers": numbers},
        "twilio": {**LOCAL_TENANT["twilio"], "sms_numbers": ["+15550100002", "+15550100004"]},
    }
    setup = _world(Secret(demo=tenant))[0]("demo")
    assert setup is not None
    channels = setup.channels
    assert (channels.whatsapp_business, channels.sms_sender) == ("100000000000001", "+15550100002")
    assert channels.whatsapp_numbers == (
        BusinessNumber("100000000000001", "15550100001"),
        BusinessNumber("100000000000002", "15550100005"),
    )
    assert channels.sms_numbers == ("+15550100002", "+15550100004") and channels.messaging_services == ()
    assert (setup.rate_of("100000000000001"), setup.rate_of("100000000000002")) == (
        DEFAULT_RATE,
        COEXISTENCE_RATE,
    )


def test_a_tenant_without_meta_sends_whatsapp_through_its_twilio_senders() -> None:
    """R11: no Meta number, Twilio WhatsApp senders: WhatsApp goes through Twilio, from those senders."""
    from crossroute.channels.twilio_whatsapp import TwilioWhatsAppClient
    from crossroute.routing.pacing import DEFAULT_RATE
    from crossroute.routing.policy import BusinessNumber

    senders = ["whatsapp:+15550100003", "whatsapp:+15550100005"]
    tenant = {k: v for k, v in LOCAL_TENANT.items() if k != "meta"}
    tenant["twilio"] = {**LOCAL_TENANT["twilio"], "whatsapp_senders": senders}
    setup = _world(Secret(demo=tenant))[0]("demo")
    assert setup is not None
    assert isinstance(setup.senders["whatsapp"], TwilioWhatsAppClient)
    channels = setup.channels
    assert (channels.whatsapp_provider, channels.whatsapp_business) == ("twilio", senders[0])
    assert channels.whatsapp_numbers == (
        BusinessNumber(senders[0], "+15550100003"),
        BusinessNumber(senders[1], "+15550100005"),
    )
    assert setup.rate_of(senders[1]) == DEFAULT_RATE


def test_a_tenant_with_meta_and_twilio_whatsapp_senders_sends_whatsapp_through_meta() -> None:
    from crossroute.channels.meta import MetaCloudClient

    setup = _world(Secret(demo=LOCAL_TENANT))[0]("demo")  # it has both
    assert setup is not None and isinstance(setup.senders["whatsapp"], MetaCloudClient)
    assert setup.channels.whatsapp_provider == "meta"
