"""``crossroute contacts import`` (and export) through the batch door, ``POST /contacts/batch``, on local
stacks of their own: the summary line, ``FILE.rejected.csv``, a second run, a dry run, an interrupted
import finished by running it again, the progress bar on a terminal, and export then import into an
empty stack giving the same customers. Stacks of their own (``python -m infra.local``), so that the
counts are this module's alone and an export reads only what these tests wrote.
"""

from __future__ import annotations

import csv
import itertools
import json
import random
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.local import StackClient, StackProcess
from tests.support import (
    ANSI,
    REPO,
    cli_environment,
    contact,
    new_bsuid,
    run_cli,
    run_cli_on_a_terminal,
)

pytestmark = pytest.mark.e2e

# Numbers of an area code no other test uses, counted up: no two rows of these tests share a phone.
PHONES = itertools.count(random.randrange(2_000_000, 8_000_000))


def new_number() -> str:
    return f"+1347{next(PHONES):07d}"


SUMMARY = re.compile(r"imported (\d+) rows: created (\d+), updated (\d+), unchanged (\d+), rejected (\d+)")


def start_stack() -> tuple[StackProcess, StackClient]:
    stack = StackProcess(env={"CROSSROUTE_SANDBOX_DELAY_MS": "0"})
    return stack, stack.start(timeout=60)


@pytest.fixture(scope="module")
def stack() -> Iterator[StackClient]:
    process, client = start_stack()
    try:
        yield client
    finally:
        process.stop()
        process.log_path.unlink(missing_ok=True)


def summary(stdout: str) -> tuple[int, ...]:
    """The counts of the one summary line, which ends the output."""
    last = stdout.strip().splitlines()[-1]
    found = SUMMARY.fullmatch(last)
    assert found, stdout
    return tuple(int(n) for n in found.groups())


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def rejected_rows(source: Path) -> list[list[str]]:
    return list(csv.reader(source.with_name(source.name + ".rejected.csv").open()))


def simulated(stack: StackClient, *args: str) -> str:
    done = run_cli("simulate", *args, "--wait", "--json", stack=stack)
    assert done.code == 0, done.stderr
    return str(done.json()["customer_id"])


def test_import_a_csv_then_again(stack: StackClient, tmp_path: Path) -> None:
    texter = new_number()
    texter_id = simulated(stack, "sms", "--phone", texter, "--text", "STOP")  # opted out of SMS by the user
    holder = new_number()
    holder_id = simulated(stack, "whatsapp", "--phone", holder, "--bsuid", new_bsuid(), "--text", "hi")
    given = stack.post("/contacts", json_body={"external_id": "crm-holder", "phone": holder})  # its own id
    assert given.status == 200, given.text
    header = ["external_id", "phone", "bsuid", "name", "sms_opted_out", "marketing_opted_out"]
    good = [[f"crm-{i}", new_number(), "", f"Person {i}", "", ""] for i in range(120)]
    rows = [
        *good[:60],
        ["crm-bad-phone", "call me", "", "", "", ""],  # line 62
        ["crm-bad-bsuid", "", "us.123", "", "", ""],  # 63
        ["crm-3", new_number(), "", "Again", "", ""],  # 64: crm-3 is on line 5
        ["crm-clash", holder, "", "", "", ""],  # 65: the phone of a customer with another external id
        ["crm-optin", texter, "", "Texter", "false", ""],  # 66: imported, the opt-in refused
        ["crm-bool", new_number(), "", "", "perhaps", ""],  # 67
        ["", "", "", "Nobody", "", ""],  # 68
        ["x" * 200, new_number(), "", "", "", ""],  # 69: the server refuses the external id
        *good[60:],
    ]
    path = write_csv(tmp_path / "contacts.csv", header, rows)

    first = run_cli("contacts", "import", str(path), stack=stack)
    assert first.code == 1, first.stderr
    assert summary(first.stdout) == (128, 120, 1, 0, 7)  # crm-optin updates the texter
    assert rejected_rows(path) == [
        ["line", "reason", "detail"],
        ["62", "phone.invalid", "not a phone number"],
        ["63", "bsuid.invalid", "not a BSUID"],
        ["64", "external_id.duplicate_in_file", "first on line 5"],
        ["65", "conflict.phone", holder_id],
        ["66", "opt_in.needs_user", "sms_opted_out: an SMS opt-out ends only with the user's own START"],
        ["67", "sms_opted_out.invalid", "expected true or false"],
        ["68", "record.no_key", "needs external_id, phone or bsuid"],
        ["69", "external_id.invalid", rejected_rows(path)[8][2]],
    ]
    assert rejected_rows(path)[8][2].startswith("external_id: ")
    by_id = run_cli("contacts", "get", "--external-id", "crm-119", "--json", stack=stack)
    assert (by_id.code, by_id.json()["name"]) == (0, "Person 119")
    texter_now = contact(stack, external_id="crm-optin")
    assert (texter_now["id"], texter_now["sms_opted_out"]) == (texter_id, True)
    assert contact(stack, external_id="crm-clash") is None
    for phone in (texter, holder):
        assert phone not in first.stderr

    again = run_cli("contacts", "import", str(path), "--json", stack=stack)
    assert again.code == 1
    assert again.json() == {
        "rows": 128,
        "created": 0,
        "updated": 0,
        "unchanged": 121,
        "rejected": 7,
        "refused_fields": 1,
        "dry_run": False,
        "file": str(path),
        "rejected_file": str(path) + ".rejected.csv",
    }
    assert SUMMARY.fullmatch(again.stderr.strip().splitlines()[-1])


def test_a_dry_run_checks_everything_and_writes_nothing(stack: StackClient, tmp_path: Path) -> None:
    path = tmp_path / "contacts.jsonl"
    records = [{"external_id": f"dry-{i}", "bsuid": new_bsuid(), "name": f"D{i}"} for i in range(30)]
    path.write_text(
        "\n".join(json.dumps(r) for r in records) + '\n{"external_id": "dry-x", "colour": "red"}\n'
    )
    done = run_cli("contacts", "import", str(path), "--dry-run", stack=stack)
    assert done.code == 1
    assert summary(done.stdout.replace(" (dry run: nothing written)", "")) == (31, 30, 0, 0, 1)
    assert done.stdout.strip().endswith("(dry run: nothing written)")
    assert rejected_rows(path)[1:] == [["31", "column.unknown", "colour"]]
    assert contact(stack, external_id="dry-0") is None
    assert contact(stack, bsuid=records[0]["bsuid"]) is None


def test_a_csv_without_a_header_row_is_bad_usage(stack: StackClient, tmp_path: Path) -> None:
    path = tmp_path / "no-header.csv"
    path.write_text(f"crm-x,{new_number()},Ana\n")
    done = run_cli("contacts", "import", str(path), stack=stack)
    assert (done.code, done.stdout) == (2, "")
    assert "the first row must be a header naming some of: external_id, phone" in done.stderr


def test_an_interrupted_import_is_finished_by_running_it_again(stack: StackClient, tmp_path: Path) -> None:
    rows = [[f"int-{i}", new_number(), f"I{i}"] for i in range(1500)]
    path = write_csv(tmp_path / "big.csv", ["external_id", "phone", "name"], rows)
    args = [sys.executable, "-m", "crossroute_cli", "contacts", "import", str(path), "--workers", "1"]
    proc = subprocess.Popen(
        args, cwd=REPO, env=cli_environment(stack), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    progress = proc.stderr.readline()  # the first progress line: some rows are in, most are not
    assert progress.startswith("import: "), progress
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "import interrupted; run the same command again" in stderr
    _, imported_before, *_ = summary(stdout)  # what the server did before it stopped
    assert 0 < imported_before < 1500

    again = run_cli("contacts", "import", str(path), stack=stack)
    assert again.code == 0, again.stderr
    # Each row is created once over both runs: what the first run did comes back unchanged.
    assert summary(again.stdout) == (1500, 1500 - imported_before, 0, imported_before, 0)
    assert contact(stack, external_id="int-1499")["name"] == "I1499"


def test_on_a_terminal_import_shows_a_bar_with_rate_and_eta(stack: StackClient, tmp_path: Path) -> None:
    rows = [[f"tty-{i}", new_number()] for i in range(300)]
    path = write_csv(tmp_path / "tty.csv", ["external_id", "phone"], rows)
    code, stdout, terminal = run_cli_on_a_terminal(stack, "contacts", "import", str(path), "--workers", "2")
    assert code == 0, terminal
    assert summary(stdout) == (300, 300, 0, 0, 0)
    assert ANSI.search(terminal)
    plain = ANSI.sub("", terminal)
    assert "━" in plain  # the bar
    assert re.search(r"[0-9,]+ rows · [0-9,]+ rows/s", plain), plain
    assert re.search(r"ETA \d+:\d\d:\d\d|done", plain), plain


def canonical(contacts: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    """What an import can carry: the business's id, current phone and BSUID, name, opt-outs."""
    return {
        (
            c["external_id"],
            tuple(p["e164"] for p in c["phones"] if p["status"] == "current"),
            tuple(b["id"] for b in c["bsuids"] if b["status"] == "current"),
            c["name"],
            c["sms_opted_out"],
            c["marketing_opted_out"],
        )
        for c in contacts
    }


def exported(stack: StackClient, *args: str) -> str:
    done = run_cli("contacts", "export", *args, stack=stack)
    assert done.code == 0, done.stderr
    return done.stdout


def test_export_then_import_into_an_empty_stack_gives_the_same_customers(tmp_path: Path) -> None:
    source_process, source = start_stack()
    target_process, target = start_stack()
    try:
        simulated(source, "whatsapp", "--bsuid", new_bsuid("BR"), "--name", "Only a BSUID", "--text", "oi")
        simulated(source, "sms", "--phone", new_number(), "--text", "STOP")
        header = ["external_id", "phone", "bsuid", "name", "sms_opted_out", "marketing_opted_out"]
        rows = [[f"rt-{i}", new_number(), new_bsuid(), f"R{i}", "", str(i % 3 == 0)] for i in range(40)]
        assert (
            run_cli(
                "contacts", "import", str(write_csv(tmp_path / "rt.csv", header, rows)), stack=source
            ).code
            == 0
        )
        source_jsonl = exported(source)
        contacts = [json.loads(line) for line in source_jsonl.splitlines()]
        assert len(contacts) == 42
        (tmp_path / "export.jsonl").write_text(source_jsonl)
        (tmp_path / "export.csv").write_text(exported(source, "--format", "csv"))

        into = run_cli("contacts", "import", str(tmp_path / "export.jsonl"), stack=target)
        assert into.code == 0, into.stdout + into.stderr
        assert summary(into.stdout) == (42, 42, 0, 0, 0)
        copied = [json.loads(line) for line in exported(target).splitlines()]
        assert len(copied) == 42
        assert canonical(copied) == canonical(contacts)
        # The CSV export of the same customers imports as the same customers too: every row unchanged.
        as_csv = run_cli("contacts", "import", str(tmp_path / "export.csv"), stack=target)
        assert summary(as_csv.stdout) == (42, 0, 0, 42, 0), as_csv.stdout
    finally:
        for process in (source_process, target_process):
            process.stop()
            process.log_path.unlink(missing_ok=True)
