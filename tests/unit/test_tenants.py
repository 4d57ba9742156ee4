"""The tenant registry document and its lookups; the cached registry source."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest

from crossroute.config import ConfigurationError, RegistrySource, RegistryUnavailable, Settings
from crossroute.tenants import RegistryError, TenantRegistry
from crossroute.webhooks.errors import NoRegistry, UnknownChannel
from crossroute.webhooks.http import attempt, route
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


def test_a_tenant_claiming_a_number_an_earlier_tenant_holds_is_left_out() -> None:
    registry = TenantRegistry.from_json(registry_document(a=LOCAL_TENANT, b=LOCAL_TENANT))
    assert [t.id for t in registry.tenants] == ["a"]
    assert registry.by_phone_number_id("100000000000001") is registry.by_id("a")
    (problem,) = registry.skipped
    assert (problem.tenant, problem.path) == ("b", "$.tenants.b.meta.waba_id")
    assert problem.message == "already claimed by tenant 'a'"


def test_tenants_given_directly_cannot_claim_one_number() -> None:
    tenant = TenantRegistry.from_json(registry_document()).tenants[0]
    with pytest.raises(RegistryError, match="claimed by both") as raised:
        TenantRegistry((tenant, replace(tenant, id="other")))
    assert raised.value.reason == "conflict"


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


# ---------------------------------------------------------------- validation, tenant by tenant

BROKEN = {"meta": {"app_secret": "broken-secret", "verify_token": "v"}, "default_region": "usa"}


def test_a_malformed_tenant_is_left_out_and_the_others_are_used() -> None:
    registry = TenantRegistry.from_json(registry_document(broken=BROKEN, demo=LOCAL_TENANT))
    assert [t.id for t in registry.tenants] == ["demo"]
    assert registry.by_id("broken") is None and registry.by_phone_number_id("100000000000001")
    assert {(p.tenant, p.path) for p in registry.skipped} == {("broken", "$.tenants.broken.default_region")}
    assert "broken-secret" not in " ".join(map(str, registry.skipped))


@pytest.mark.parametrize(
    ("entry", "path"),
    [
        (
            {"twilio": {"account_sid": "AC1", "auth_token": "t", "sms_numbers": ["+1", ""]}},
            "twilio.sms_numbers[1]",
        ),
        (
            {"meta": {"app_secret": "s", "verify_token": "v", "phone_numbers": [{}]}},
            "meta.phone_numbers[0].phone_number_id",
        ),
        (
            {"meta": {"app_secret": "s", "verify_token": "v", "previous_app_secret": 7}},
            "meta.previous_app_secret",
        ),
        (
            {"twilio": {"account_sid": "AC1", "auth_token": "t", "previous_auth_token": None}},
            "twilio.previous_auth_token",
        ),
        ({"channel_preference": ["sms", "sms"]}, "channel_preference"),
        ({"channel_preference": ["fax"]}, "channel_preference[0]"),
        (
            {
                "meta": {
                    "app_secret": "s",
                    "verify_token": "v",
                    "phone_numbers": [{"phone_number_id": "9", "coexistence": "no"}],
                }
            },
            "meta.phone_numbers[0].coexistence",
        ),
        ([], ""),
    ],
)
def test_a_tenants_problem_names_its_json_path(entry: object, path: str) -> None:
    registry = TenantRegistry.from_json(json.dumps({"tenants": {"demo": LOCAL_TENANT, "acme-eu": entry}}))
    assert [t.id for t in registry.tenants] == ["demo"]
    assert [(p.tenant, p.path) for p in registry.skipped] == [
        ("acme-eu", f"$.tenants['acme-eu']{'.' * bool(path)}{path}")
    ]


def test_the_previous_secrets_are_read_and_empty_means_none() -> None:
    meta = {**LOCAL_TENANT["meta"], "previous_app_secret": "old-app-secret"}
    twilio = {**LOCAL_TENANT["twilio"], "previous_auth_token": ""}
    tenant = TenantRegistry.from_json(
        registry_document(demo={**LOCAL_TENANT, "meta": meta, "twilio": twilio})
    ).tenants[0]
    assert tenant.meta and tenant.meta.app_secrets == ("local-app-secret", "old-app-secret")
    assert tenant.twilio and tenant.twilio.auth_tokens == ("local-twilio-token",)
    assert "old-app-secret" not in repr(tenant) and "local-twilio-token" not in repr(tenant)


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ("{", "not_json"),
        ('"tenants"', "malformed"),
        ('{"tenant": {}}', "malformed"),
        ('{"tenants": {"a": {"default_region": "usa"}, "b": {"twilio": {}}}}', "no_valid_tenant"),
    ],
)
def test_a_wholly_unusable_document_has_a_reason_code(doc: str, reason: str) -> None:
    with pytest.raises(RegistryError) as raised:
        TenantRegistry.from_json(doc)
    assert raised.value.reason == reason


def test_an_empty_registry_and_unknown_keys_are_usable() -> None:
    # template.yaml creates the secret as {"tenants": {}} plus a generated "unused" key.
    assert TenantRegistry.from_json('{"tenants": {}, "unused": "x"}').tenants == ()
    extra = {**LOCAL_TENANT, "notes": "added by a newer crossroute", "meta": {**LOCAL_TENANT["meta"], "x": 1}}
    assert [t.id for t in TenantRegistry.from_json(registry_document(demo=extra)).tenants] == ["demo"]


# ---------------------------------------------------------------- the source keeps the last usable document


class Recorded(list[str]):
    def __call__(self, reason: str) -> None:
        self.append(reason)


def test_an_unusable_new_document_keeps_the_last_valid_one_and_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret, clock, invalid = FakeSecret(), Clock(), Recorded()
    source = RegistrySource(secret, max_age=300, clock=clock, on_invalid=invalid)
    first = source.get()
    for bad, reason in [
        ("not json", "not_json"),
        ("[]", "malformed"),
        (json.dumps({"tenants": {"demo": BROKEN}}), "no_valid_tenant"),
    ]:
        secret.value = bad
        clock.now += 301
        with caplog.at_level(logging.WARNING):
            assert source.get() is first
        assert invalid[-1] == reason
        assert "keeping the previous registry" in caplog.text and "broken-secret" not in caplog.text
    assert invalid == ["not_json", "malformed", "no_valid_tenant"]
    secret.value = registry_document(
        demo=LOCAL_TENANT, other={"twilio": {"account_sid": "AC2", "auth_token": "t"}}
    )
    clock.now += 301
    assert [t.id for t in source.get().tenants] == ["demo", "other"]


def test_tenants_left_out_are_logged_with_id_and_path_and_no_values_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret, invalid = FakeSecret(), Recorded()
    secret.value = registry_document(broken=BROKEN, demo=LOCAL_TENANT)
    with caplog.at_level(logging.WARNING):
        RegistrySource(secret, clock=Clock(), on_invalid=invalid).get()
    (record,) = [r for r in caplog.records if r.getMessage() == "tenant left out of the registry"]
    assert record.levelno == logging.WARNING
    assert (record.tenant, record.path) == ("broken", "$.tenants.broken.default_region")
    assert "usa" not in caplog.text and "broken-secret" not in caplog.text
    assert invalid == ["tenant_invalid"]  # the document is usable, but a tenant is not served: alarm


def test_without_any_usable_document_the_source_is_unavailable_and_retries_every_30_seconds() -> None:
    secret, clock, invalid = FakeSecret(), Clock(), Recorded()
    secret.value = "not json"
    source = RegistrySource(secret, clock=clock, on_invalid=invalid)
    with pytest.raises(RegistryUnavailable, match="not JSON"):
        source.get()
    clock.now += 29
    with pytest.raises(RegistryUnavailable):
        source.get()
    assert secret.reads == [False] and invalid == ["not_json"]
    secret.value = registry_document()
    clock.now += 1
    assert [t.id for t in source.get().tenants] == ["demo"]
    assert secret.reads == [False, True]  # the retry skips the secret's cache


def test_a_secret_that_cannot_be_read_keeps_the_last_registry() -> None:
    clock = Clock()
    values: list[str | Exception] = [registry_document(), RuntimeError("throttled")]

    def load(force: bool) -> str:
        value = values.pop(0)
        if isinstance(value, Exception):
            raise value
        return value

    source = RegistrySource(load, clock=clock)
    first = source.get()
    clock.now += 301
    assert source.get() is first
    values.append(RuntimeError("throttled"))
    with pytest.raises(RegistryUnavailable, match=r"could not be read \(RuntimeError\)"):
        RegistrySource(load, clock=clock).get()  # and none read before


def test_webhooks_answer_503_registry_unavailable_without_a_usable_registry() -> None:
    secret = FakeSecret()
    secret.value = '{"tenants": "none"}'
    source = RegistrySource(secret, clock=Clock())
    with pytest.raises(NoRegistry) as raised:
        attempt(source, lambda registry: registry.tenants)
    assert (raised.value.status, raised.value.reason) == (503, "registry_unavailable")
    assert "tenants" not in raised.value.detail  # the provider learns nothing about the registry

    def handler(event: dict[str, object]) -> dict[str, object]:
        return attempt(source, lambda registry: {"statusCode": 200})

    answer = route({"POST /webhooks/whatsapp": handler}, {"routeKey": "POST /webhooks/whatsapp"})
    assert answer["statusCode"] == 503
    assert json.loads(answer["body"])["error"] == "registry_unavailable"
