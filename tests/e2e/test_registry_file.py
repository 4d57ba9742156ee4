"""The local stack with ``CROSSROUTE_TENANTS_FILE``: the registry is validated tenant by tenant at start, as
the functions validate it. A malformed tenant is left out with a warning (tenant id and JSON path) and the
stack serves the others; a file with no usable tenant stops the stack. The previous Meta app secret and
Twilio auth token of a tenant mid-rotation verify webhooks as the current ones do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.local import StackClient, StackProcess
from infra.local.process import StackStartError
from infra.template import load_template
from tests.support import (
    LOCAL_TENANT,
    REPO,
    eventually,
    fixture_bytes,
    meta_signature,
    twilio_signature,
)

pytestmark = pytest.mark.e2e

ROTATING = {
    **LOCAL_TENANT,
    "meta": {**LOCAL_TENANT["meta"], "previous_app_secret": "previous-app-secret"},
    "twilio": {**LOCAL_TENANT["twilio"], "previous_auth_token": "previous-twilio-token"},
}
BROKEN = {"meta": {"app_secret": "broken-app-secret", "verify_token": "v", "phone_numbers": [{}]}}


def _stack(tmp_path: Path, document: str) -> StackProcess:
    path = tmp_path / "registry.json"
    path.write_text(document)
    env = {
        "CROSSROUTE_TENANTS_FILE": str(path),
        "CROSSROUTE_EVENT_SOURCES": "off",
        "CROSSROUTE_CONCURRENCY": "1",
    }
    return StackProcess(env=env, log_path=tmp_path / "stack.log")


@pytest.fixture(scope="module")
def partly_broken(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackClient]:
    document = json.dumps({"tenants": {"broken": BROKEN, "demo": ROTATING}})
    stack = _stack(tmp_path_factory.mktemp("registry"), document)
    client = stack.start(timeout=60)
    try:
        yield client
    finally:
        stack.stop()


def test_a_malformed_tenant_is_left_out_with_a_warning_and_the_stack_starts(
    partly_broken: StackClient,
) -> None:
    assert partly_broken.process is not None
    output = partly_broken.process.output()
    assert "WARNING" in output
    assert (
        "tenant 'broken' left out: $.tenants.broken.meta.phone_numbers[0].phone_number_id: is required"
        in output
    )
    assert "left out (invalid): broken" in output
    assert "broken-app-secret" not in output


def test_the_other_tenants_are_served_and_the_functions_log_the_left_out_one(
    partly_broken: StackClient,
) -> None:
    raw = fixture_bytes("meta_text_bsuid_only.json")
    answer = partly_broken.post(
        "/webhooks/whatsapp",
        body=raw,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(raw)},
    )
    assert answer.status == 200, answer.text
    assert partly_broken.process is not None
    process = partly_broken.process
    record = eventually(
        lambda: next(iter(_function_logs(process.output(), "tenant left out of the registry")), None)
    )
    assert record["level"] == "WARNING" and record["function_name"].endswith("WhatsAppWebhookFunction")
    assert (record["tenant"], record["path"]) == (
        "broken",
        "$.tenants.broken.meta.phone_numbers[0].phone_number_id",
    )


def test_the_left_out_tenant_emits_registry_invalid_as_its_alarm_reads_it(partly_broken: StackClient) -> None:
    """The EMF documents the functions printed, summed as CloudWatch would for the alarm's metric (its
    namespace, name and exact dimension set): above the threshold, so ``RegistryInvalidAlarm`` fires.
    (No CloudWatch here: this checks that what is emitted is what the alarm watches.)"""
    raw = fixture_bytes("meta_text_bsuid_only.json")
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(raw)}
    assert partly_broken.post("/webhooks/whatsapp", body=raw, headers=headers).status == 200
    assert partly_broken.process is not None
    process = partly_broken.process
    alarm = load_template(REPO / "template.yaml")["Resources"]["RegistryInvalidAlarm"]["Properties"]
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    total = eventually(lambda: _emitted(process.output(), alarm) or None)
    assert total > alarm["Threshold"]
    accepted = {**alarm, "MetricName": "WebhookAccepted"}  # the same dimensions: the service's
    assert _emitted(process.output(), accepted) >= 1


def _emitted(output: str, alarm: dict[str, Any]) -> float:
    """The sum of ``alarm``'s metric over the EMF documents in ``output``: a document counts only where
    one of its dimension sets has exactly the alarm's dimensions, as CloudWatch matches them."""
    wanted = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    total = 0.0
    for line in output.splitlines():
        doc = json.loads(line) if line.startswith("{") else {}
        for directive in doc.get("_aws", {}).get("CloudWatchMetrics", []):
            if directive["Namespace"] != alarm["Namespace"]:
                continue
            for names in directive["Dimensions"]:
                if {name: doc.get(name) for name in names} != wanted:
                    continue
                for metric in directive["Metrics"]:
                    if metric["Name"] == alarm["MetricName"]:
                        value = doc[metric["Name"]]
                        total += sum(value) if isinstance(value, list) else value
    return total


def _function_logs(output: str, message: str) -> list[dict[str, Any]]:
    """The handlers' JSON log records with ``message``."""
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [r for r in records if r.get("message") == message]


@pytest.mark.parametrize("secret", ["local-app-secret", "previous-app-secret"])
def test_meta_webhooks_signed_with_the_current_or_the_previous_app_secret_are_accepted(
    partly_broken: StackClient, secret: str
) -> None:
    raw = fixture_bytes("meta_text_bsuid_only.json")
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(raw, secret)}
    assert partly_broken.post("/webhooks/whatsapp", body=raw, headers=headers).status == 200
    headers["X-Hub-Signature-256"] = meta_signature(raw, "some-other-secret")
    assert partly_broken.post("/webhooks/whatsapp", body=raw, headers=headers).status == 401


@pytest.mark.parametrize("token", ["local-twilio-token", "previous-twilio-token"])
def test_twilio_webhooks_signed_with_the_current_or_the_previous_auth_token_are_accepted(
    partly_broken: StackClient, token: str
) -> None:
    raw = fixture_bytes("twilio_sms_inbound.form")
    url = partly_broken.base_url + "/webhooks/twilio"
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": twilio_signature(url, raw, token),
    }
    assert partly_broken.post("/webhooks/twilio", body=raw, headers=headers).status == 200
    headers["X-Twilio-Signature"] = twilio_signature(url, raw, "some-other-token")
    assert partly_broken.post("/webhooks/twilio", body=raw, headers=headers).status == 401


@pytest.mark.parametrize(
    ("document", "says"),
    [
        (
            '{"tenants": {"broken": {"default_region": "usa"}}}',
            "has no usable tenant: $.tenants.broken.default_region",
        ),
        ("{not json", "is not JSON"),
        ('{"tenants": {}}', "has no tenants"),
    ],
    ids=["every-tenant-invalid", "not-json", "no-tenants"],
)
def test_a_file_with_no_usable_tenant_stops_the_stack(tmp_path: Path, document: str, says: str) -> None:
    stack = _stack(tmp_path, document)
    with pytest.raises(StackStartError) as raised:
        stack.start(timeout=30)
    assert says in str(raised.value)
    assert stack.stop() == 1
