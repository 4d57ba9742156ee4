"""The tenant registry document and its lookups; the cached registry source."""

from __future__ import annotations

import json

import pytest

from crossroute.config import ConfigurationError, RegistrySource, Settings
from crossroute.tenants import RegistryError, TenantRegistry
from crossroute.webhooks.errors import UnknownChannel
from crossroute.webhooks.http import attempt
from tests.support import LOCAL_TENANT, registry_document


def test_the_local_tenant_document_resolves_every_channel() -> None:
    registry = TenantRegistry.from_json(registry_document())
    demo = registry.by_phone_number_id("100000000000001")
    assert demo and demo.id == "demo" and demo.default_region == "US"
    assert registry.by_waba_id("100000000000000") is demo
    acct = "AC00000000000000000000000000000000"
    assert registry.by_twilio_address(acct, "+15550100002") is demo
    assert registry.by_twilio_address(acct, "whatsapp:+15550100003") is demo
    assert registry.by_twilio_address("ACother", "+15550100002") is None
    assert registry.by_phone_number_id("1") is None


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ("not json", "not JSON"),
        ("[]", "registry"),
        ('{"tenants": []}', "tenants"),
        ('{"tenants": {"a": {"meta": {"verify_token": "v"}}}}', "tenants.a.meta.app_secret"),
        (
            '{"tenants": {"a": {"twilio": {"account_sid": "AC1", "auth_token": "t", "sms_numbers": "+1"}}}}',
            "sms_numbers",
        ),
        ('{"tenants": {"a": {"default_region": "usa"}}}', "default_region"),
        (
            '{"tenants": {"a": {"meta": {"app_secret": "s", "verify_token": "v", "phone_numbers": {}}}}}',
            "phone_numbers",
        ),
    ],
)
def test_a_malformed_registry_says_where(doc: str, where: str) -> None:
    with pytest.raises(RegistryError, match=where):
        TenantRegistry.from_json(doc)


def test_two_tenants_cannot_claim_one_number() -> None:
    with pytest.raises(RegistryError, match="claimed by both"):
        TenantRegistry.from_json(registry_document(a=LOCAL_TENANT, b=LOCAL_TENANT))


def test_settings_come_from_the_environment() -> None:
    env = {"TENANTS_SECRET_ID": "arn:secret", "INBOUND_QUEUE_URL": "https://q", "PUBLIC_BASE_URL": ""}
    assert Settings.from_env(env) == Settings("arn:secret", "https://q", "")
    with pytest.raises(ConfigurationError, match="INBOUND_QUEUE_URL"):
        Settings.from_env({"TENANTS_SECRET_ID": "x"})


class FakeSecret:
    def __init__(self) -> None:
        self.value = registry_document()
        self.reads: list[bool] = []

    def __call__(self, force: bool) -> str:
        self.reads.append(force)
        return self.value


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_registry_is_cached_and_re_read_after_max_age() -> None:
    secret, clock = FakeSecret(), Clock()
    source = RegistrySource(secret, max_age=300, clock=clock)
    first = source.get()
    assert source.get() is first and secret.reads == [False]
    clock.now += 301
    source.get()
    assert secret.reads == [False, False]


def test_a_miss_re_reads_the_registry_once_and_at_most_every_30_seconds() -> None:
    secret, clock = FakeSecret(), Clock()
    source = RegistrySource(secret, clock=clock)
    source.get()
    added = {
        "demo": LOCAL_TENANT,
        "new": {"meta": {"app_secret": "s", "verify_token": "v", "waba_id": "777"}},
    }
    secret.value = json.dumps({"tenants": added})

    def find(registry: TenantRegistry) -> str:
        tenant = registry.by_waba_id("777")
        if tenant is None:
            raise UnknownChannel("no")
        return tenant.id

    with pytest.raises(UnknownChannel):  # loaded a moment ago: no second read yet
        attempt(source, find)
    clock.now += 31
    assert attempt(source, find) == "new"
    assert secret.reads == [False, True]
