"""The operator CLI (``crossroute``, docs/cli.md) run as an operator runs it, a subprocess against the
local stack (``CROSSROUTE_PORT``): lookups, timelines, simulated customers, sends with their outcome,
erasure, dead letters (masked, redriven without loss), the tenant registry, export, exit codes,
``--json`` and the progress display on a terminal. Imports: ``test_cli_import.py``; the deployed path
(``--stack``): ``test_cli_stack.py``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crossroute.inbound_queue import QueuedEvent
from infra.local import StackClient
from tests.support import (
    ANSI,
    PHONE_NUMBER_ID,
    REPO,
    cli_environment,
    contact,
    digits,
    eventually,
    new_bsuid,
    new_phone,
    outbox,
    personal,
    registry_document,
    run_cli,
    run_cli_on_a_terminal,
    timeline,
)

pytestmark = pytest.mark.e2e


def cli(stack: StackClient, *args: str) -> Any:
    return run_cli(*args, stack=stack)


def whatsapp_user(stack: StackClient, *extra: str) -> tuple[str, str, str]:
    """A WhatsApp user with a phone and a BSUID writes in: (customer id, +phone, BSUID)."""
    phone, bsuid = "+" + new_phone(), new_bsuid()
    done = cli(
        stack,
        "simulate",
        "whatsapp",
        "--phone",
        phone,
        "--bsuid",
        bsuid,
        "--text",
        "hi",
        "--wait",
        "--json",
        *extra,
    )
    assert done.code == 0, done.stderr
    return done.json()["customer_id"], phone, bsuid


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "crossroute"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr
    for command in ("contacts", "send", "simulate", "dlq", "tenants"):
        assert command in done.stdout


def test_a_bsuid_only_user_writes_in_and_is_looked_up(local_stack: StackClient) -> None:
    bsuid = new_bsuid("DE")
    written = cli(
        local_stack, "simulate", "whatsapp", "--bsuid", bsuid, "--username", "@jonas_w", "--name", "Jonas",
        "--text", "Hallo, ist mein Paket unterwegs?", "--wait", "--json",
    )  # fmt: skip
    assert written.code == 0, written.stderr
    result = written.json()
    assert (result["channel"], result["status"]) == ("whatsapp", 200)
    assert result["message_id"].startswith("wamid.")

    found = cli(local_stack, "contacts", "get", "--bsuid", bsuid, "--json")
    assert found.code == 0, found.stderr
    assert found.json() == contact(local_stack, bsuid=bsuid)
    assert found.json()["id"] == result["customer_id"]
    assert found.json()["phones"] == []
    assert found.json()["username"] == "jonas_w"  # stored without the @

    table = cli(local_stack, "contacts", "get", "--bsuid", bsuid)
    assert table.code == 0
    assert "Jonas" in table.stdout and bsuid in table.stdout and "open until" in table.stdout

    timeline = cli(local_stack, "--json", "contacts", "timeline", result["customer_id"], "--limit", "5")
    assert timeline.code == 0, timeline.stderr
    items = timeline.json()["items"]
    assert items[0]["message_id"] == result["message_id"]  # newest first
    assert [i["at"] for i in items] == sorted((i["at"] for i in items), reverse=True)
    readable = cli(local_stack, "contacts", "timeline", result["customer_id"])
    assert "message in" in readable.stdout and "Hallo" in readable.stdout


def test_an_sms_from_a_national_number_finds_its_customer(local_stack: StackClient) -> None:
    number = "650" + "7" + digits(6)
    national = f"({number[:3]}) {number[3:6]}-{number[6:]}"
    written = cli(
        local_stack,
        "simulate",
        "sms",
        "--phone",
        national,
        "--text",
        "Where is my order?",
        "--wait",
        "--json",
    )
    assert written.code == 0, written.stderr
    found = cli(local_stack, "contacts", "get", "--phone", national, "--json")
    assert found.code == 0, found.stderr
    assert found.json()["id"] == written.json()["customer_id"]
    assert found.json()["phones"] == [{"e164": "+1" + number, "status": "current", "source": "twilio.sms"}]


@pytest.mark.parametrize(
    "args",
    [
        ["contacts", "get"],
        ["contacts", "get", "--phone", "+16505551234", "--bsuid", "US.1"],
        ["contacts", "get", "--bsuid", "not-a-bsuid"],
        ["contacts", "erase", "c1"],
        ["send", "--text", "hi"],
        ["simulate", "whatsapp", "--text", "hi"],
        ["dlq", "show", "outbound"],
        ["contacts", "import", "no-such-file.csv"],
        ["no-such-command"],
    ],
)
def test_bad_usage_exits_2_before_anything_is_sent(local_stack: StackClient, args: list[str]) -> None:
    def last() -> int:
        return max((r["n"] for r in local_stack.get("/_local/requests").json()["requests"]), default=0)

    before = last()
    done = cli(local_stack, *args)
    assert done.code == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    sent = [r for r in local_stack.get("/_local/requests").json()["requests"] if r["n"] > before]
    assert [r for r in sent if not r["route_key"].startswith("POST /webhooks/")] == []  # (status callbacks)


def test_what_is_not_found_exits_1(local_stack: StackClient) -> None:
    done = cli(local_stack, "contacts", "get", "--id", "no-such-customer")
    assert done.code == 1
    assert "no such contact" in done.stderr
    as_json = cli(local_stack, "contacts", "get", "--bsuid", new_bsuid(), "--json")
    assert as_json.code == 1
    assert as_json.json() == {"error": "not_found", "message": "contact: no such contact", "status": 404}


def test_no_local_stack_exits_1() -> None:
    env = cli_environment(CROSSROUTE_PORT="9")  # nothing listens on the discard port
    done = run_cli("contacts", "get", "--id", "c1", env=env)
    assert done.code == 1
    assert "no local stack answers at http://127.0.0.1:9" in done.stderr


def test_send_prints_the_request_id_and_waits_for_the_outcome(local_stack: StackClient) -> None:
    customer_id, _, bsuid = whatsapp_user(local_stack)
    key = f"cli-test-{time.time_ns()}"
    sent = cli(
        local_stack,
        "send",
        "--to-bsuid",
        bsuid,
        "--text",
        "Your order has shipped",
        "--key",
        key,
        "--wait",
        "--json",
    )
    assert sent.code == 0, sent.stderr
    result = sent.json()
    assert (result["outcome"], result["channel"], result["idempotency_key"]) == ("sent", "whatsapp", key)
    assert result["decision"][0] == {
        "channel": "whatsapp",
        "qualified": True,
        "reason": "whatsapp.window_open",
        "meaning": "free-form text inside the 24 h customer service window (R1)",
        "from": PHONE_NUMBER_ID,  # R10: the number the customer wrote to
        "from_reason": "from.last_inbound",
    }
    assert result["sends"]["whatsapp"]["state"] == "sent"

    again = cli(local_stack, "send", "--to-bsuid", bsuid, "--text", "Your order has shipped", "--key", key)
    assert again.code == 0
    assert again.stdout.strip() == result["request_id"]  # the same key is the same request

    readable = cli(local_stack, "send", "--to-id", customer_id, "--text", "And it arrives today", "--wait")
    assert readable.code == 0, readable.stderr
    lines = readable.stdout.splitlines()
    assert re.fullmatch(r"[0-9a-f]{32}", lines[0])
    assert lines[1] == "sent on whatsapp"
    assert "whatsapp.window_open: free-form text inside the 24 h customer service window (R1)" in lines[2]


def test_a_send_no_channel_can_take_exits_1_with_the_reasons(local_stack: StackClient) -> None:
    done = cli(local_stack, "send", "--to-bsuid", new_bsuid(), "--text", "hello?", "--wait")
    assert done.code == 1
    assert "undeliverable: no channel could take it" in done.stdout
    assert "whatsapp.unknown_bsuid: no customer holds this BSUID" in done.stdout
    assert "sms.no_phone" in done.stdout


def test_erase_needs_yes_and_then_the_contact_is_gone(local_stack: StackClient) -> None:
    customer_id, _, bsuid = whatsapp_user(local_stack)
    assert cli(local_stack, "contacts", "erase", customer_id).code == 2
    assert contact(local_stack, bsuid=bsuid) is not None
    done = cli(local_stack, "contacts", "erase", customer_id, "--yes", "--json")
    assert done.code == 0, done.stderr
    assert done.json() == {"erased": customer_id}
    assert contact(local_stack, bsuid=bsuid) is None
    assert cli(local_stack, "contacts", "erase", customer_id, "--yes").code == 1


# ---------------------------------------------------------------------- dead letters
@pytest.fixture
def empty_dead_letters(local_stack: StackClient) -> Iterator[StackClient]:
    """Both DLQs emptied (a redrive moves whatever a DLQ holds), and again after the test."""
    for dlq in ("InboundDeadLetterQueue", "SendDeadLetterQueue"):
        local_stack.drain_queue(dlq, wait_seconds=0.2)
    yield local_stack
    for dlq in ("InboundDeadLetterQueue", "SendDeadLetterQueue"):
        local_stack.drain_queue(dlq, wait_seconds=0.2)


def personal_data_in(text: str, *values: str) -> list[str]:
    return [v for v in values if v in text]


def test_an_inbound_dead_letter_is_shown_masked_and_redriven_without_loss(
    empty_dead_letters: StackClient,
) -> None:
    stack = empty_dead_letters
    bsuid = new_bsuid("DE")
    payload = json.loads(personal("meta_text_bsuid_only.json", **{"DE.88201937465502911": bsuid}))
    event = QueuedEvent.build(tenant="demo", sender=bsuid, kind="meta.webhook", content={"payload": payload})
    stack.client("sqs").send_message(
        QueueUrl=stack.physical("InboundDeadLetterQueue"),
        MessageBody=event.body,
        MessageGroupId=event.group_id,
        MessageDeduplicationId=event.dedup_id,
        MessageAttributes={"crossroute_failure": {"DataType": "String", "StringValue": "ValueError"}},
    )

    shown = cli(stack, "dlq", "show", "inbound", "--json")
    assert shown.code == 0, shown.stderr
    doc = shown.json()
    assert (doc["queue"], doc["approximate_total"], doc["shown"]) == ("inbound", 1, 1)
    (message,) = doc["messages"]
    assert {k: message[k] for k in ("receives", "failure", "tenant", "kind")} == {
        "receives": 0,
        "failure": "ValueError",
        "tenant": "demo",
        "kind": "meta.webhook",
    }
    table = cli(stack, "dlq", "show", "inbound")
    assert message["message_id"] in table.stdout
    for output in (shown.stdout + shown.stderr, table.stdout + table.stderr):
        assert personal_data_in(output, bsuid, "Hallo", "Jonas", "jonas_w") == []

    moved = cli(stack, "dlq", "redrive", "inbound", "--json")
    assert moved.code == 0, moved.stderr
    assert moved.json() == {"queue": "inbound", "moved": 1, "left": 0}
    customer = eventually(lambda: contact(stack, bsuid=bsuid))
    items = timeline(stack, customer["id"])
    assert [i["text"] for i in items if i["kind"] == "message"] == ["Hallo, ist mein Paket unterwegs?"]
    assert cli(stack, "dlq", "show", "inbound", "--json").json()["approximate_total"] == 0


def test_a_send_dead_letter_is_shown_masked_and_redriven(empty_dead_letters: StackClient) -> None:
    stack = empty_dead_letters
    phone, key = "+" + new_phone(), f"dlq-{time.time_ns()}"
    request = {"tenant": "demo", "idempotency_key": key, "to": {"phone": phone}, "text": "A parked reminder"}
    stack.client("sqs").send_message(
        QueueUrl=stack.physical("SendDeadLetterQueue"), MessageBody=json.dumps(request)
    )
    shown = cli(stack, "dlq", "show", "send")
    assert shown.code == 0
    assert "send_request" in shown.stdout and "demo" in shown.stdout
    assert personal_data_in(shown.stdout + shown.stderr, phone, phone[1:], "A parked reminder", key) == []

    moved = cli(stack, "dlq", "redrive", "send")
    assert moved.code == 0, moved.stderr
    assert moved.stdout.startswith("moved 1 message(s) from the send DLQ back to its queue; 0 left")
    (sent,) = eventually(lambda: outbox(stack, to=phone))
    assert (sent["channel"], sent["text"]) == ("sms", "A parked reminder")


def test_redriving_an_empty_dlq_moves_nothing(empty_dead_letters: StackClient) -> None:
    done = cli(empty_dead_letters, "dlq", "redrive", "send", "--json")
    assert (done.code, done.json()) == (0, {"queue": "send", "moved": 0, "left": 0})


# ---------------------------------------------------------------------- tenants
def stored_registry(stack: StackClient) -> str:
    secrets = stack.client("secretsmanager")
    return str(secrets.get_secret_value(SecretId=stack.tenants_secret_arn)["SecretString"])


def test_tenants_validate(local_stack: StackClient, tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(registry_document())
    done = cli(local_stack, "tenants", "validate", str(good))
    assert (done.code, done.stdout.strip()) == (0, f"{good}: valid; usable tenants: demo")
    bad = tmp_path / "bad.json"
    doc = json.loads(registry_document())
    del doc["tenants"]["demo"]["twilio"]["auth_token"]
    bad.write_text(json.dumps(doc))
    refused = cli(local_stack, "tenants", "validate", str(bad), "--json")
    assert refused.code == 1
    assert refused.json() == {
        "valid": False,
        "tenants": [],
        "problems": [
            {"tenant": "demo", "path": "$.tenants.demo.twilio.auth_token", "problem": "is required"}
        ],
        "reason": "no_valid_tenant",
    }


def test_tenants_put_refuses_an_invalid_document_and_stores_a_valid_one(
    local_stack: StackClient, tmp_path: Path
) -> None:
    before = stored_registry(local_stack)
    bad = tmp_path / "bad.json"
    bad.write_text('{"tenants": {"demo": {"default_region": "usa"}}}')
    refused = cli(local_stack, "tenants", "put", str(bad))
    assert refused.code == 1
    assert "$.tenants.demo.default_region" in refused.stdout
    assert stored_registry(local_stack) == before

    good = tmp_path / "good.json"
    good.write_text(json.dumps(json.loads(before), indent=1))  # the same tenants, new bytes
    try:
        stored = cli(local_stack, "tenants", "put", str(good), "--json")
        assert stored.code == 0, stored.stderr
        arn = local_stack.tenants_secret_arn
        assert stored.json() == {"stored": True, "secret": arn, "tenants": ["demo"]}
        assert stored_registry(local_stack) == good.read_text()
    finally:
        secrets = local_stack.client("secretsmanager")
        secrets.put_secret_value(SecretId=local_stack.tenants_secret_arn, SecretString=before)


def test_tenants_show_redacts_secrets(local_stack: StackClient) -> None:
    for args in (["tenants", "show"], ["tenants", "show", "--json"]):
        done = cli(local_stack, *args)
        assert done.code == 0, done.stderr
        for secret in ("local-app-secret", "local-verify-token", "local-access-token", "local-twilio-token"):
            assert secret not in done.stdout + done.stderr
        assert "<redacted>" in done.stdout
        assert "100000000000001" in done.stdout  # the phone_number_id is not a secret
    shown = json.loads(cli(local_stack, "tenants", "show", "--json").stdout)
    assert shown["tenants"]["demo"]["meta"]["app_secret"] == "<redacted>"


# ---------------------------------------------------------------------- export and progress
def test_export_streams_every_live_customer(local_stack: StackClient, tmp_path: Path) -> None:
    customer_id, phone, bsuid = whatsapp_user(local_stack)
    done = cli(local_stack, "contacts", "export")
    assert done.code == 0, done.stderr
    contacts = [json.loads(line) for line in done.stdout.splitlines()]
    (mine,) = [c for c in contacts if c["id"] == customer_id]
    assert mine == contact(local_stack, id=customer_id)
    assert all(c["tenant"] == "demo" for c in contacts)
    assert re.search(rf"export: {len(contacts):,} customers in [0-9.]+ s", done.stderr)
    assert personal_data_in(done.stderr, phone, bsuid) == []

    out = tmp_path / "contacts.csv"
    as_csv = cli(local_stack, "contacts", "export", "--format", "csv", "--out", str(out), "--json")
    assert as_csv.code == 0, as_csv.stderr
    assert as_csv.json() == {"exported": len(contacts), "format": "csv", "out": str(out), "tenant": "demo"}
    lines = out.read_text().splitlines()
    assert lines[0].startswith("id,external_id,phone,bsuid,name,")
    assert any(line.startswith(f"{customer_id},,{phone},{bsuid},") for line in lines[1:])


def test_on_a_terminal_export_shows_a_live_progress_display(local_stack: StackClient) -> None:
    code, stdout, terminal = run_cli_on_a_terminal(local_stack, "contacts", "export")
    assert code == 0
    assert len(stdout.splitlines()) >= 1  # the contacts, on stdout (not a terminal)
    assert ANSI.search(terminal), terminal  # redrawn in place with control sequences
    plain = ANSI.sub("", terminal)
    assert re.search(r"export .*[0-9,]+ customers · [0-9,]+ customers/s", plain), plain
    # Not on a terminal: plain lines, no control sequences.
    done = cli(local_stack, "contacts", "export")
    assert not ANSI.search(done.stderr)
