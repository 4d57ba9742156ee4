"""Reading and checking a ``crossroute contacts import`` file (``crossroute_cli.records``): every row, its
line, the record sent or why it is rejected, read one row at a time."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from crossroute_cli.records import HeaderError, Rejection, Row, check, detect_format, read_rows


def rows_of(text: str, kind: str = "csv", region: str | None = "US") -> list[Row]:
    return list(read_rows(io.BytesIO(text.encode()), kind, region=region))  # type: ignore[arg-type]


def reasons(row: Row) -> list[str]:
    return [p.reason for p in row.problems]


def test_a_good_row_sends_the_fields_that_have_a_value_trimmed() -> None:
    row = check(
        {
            "external_id": " crm-1 ",
            "phone": "+1 650 555 1234",
            "bsuid": "",
            "name": "Ana",
            "sms_opted_out": "yes",
        },
        2,
    )
    assert row == Row(
        2, {"external_id": "crm-1", "phone": "+1 650 555 1234", "name": "Ana", "sms_opted_out": True}
    )


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"phone": "call me"}, "phone.invalid"),
        ({"phone": "12"}, "phone.invalid"),
        ({"bsuid": "us.123"}, "bsuid.invalid"),
        ({"bsuid": "US-123"}, "bsuid.invalid"),
        ({"phone": "+16505551234", "sms_opted_out": "maybe"}, "sms_opted_out.invalid"),
        ({"phone": "+16505551234", "marketing_opted_out": 3}, "marketing_opted_out.invalid"),
        ({"external_id": True}, "external_id.invalid"),
        ({"name": "Only a name"}, "record.no_key"),
        ({"external_id": "crm-1", "phone_number": "+16505551234"}, "column.unknown"),
    ],
)
def test_a_bad_row_is_rejected_with_its_reason(fields: dict[str, Any], reason: str) -> None:
    row = check(fields, 7)
    assert row.record is None
    assert reasons(row) == [reason]
    assert all(p.line == 7 for p in row.problems)


def test_rejection_details_never_quote_a_phone_or_bsuid() -> None:
    row = check({"phone": "555-CALL-NOW", "bsuid": "zz.1"}, 3)
    assert reasons(row) == ["phone.invalid", "bsuid.invalid"]
    assert all("555" not in p.detail and "zz" not in p.detail for p in row.problems)


def test_an_unknown_column_is_named_and_an_empty_one_is_ignored() -> None:
    row = check({"external_id": "crm-1", "emial": "a@b.c", "nickname": "", "phones2": None}, 4)
    assert row.problems == (Rejection(4, "column.unknown", "emial"),)


def test_national_phones_are_read_in_the_tenants_region() -> None:
    assert check({"phone": "020 7946 0958"}, 2, region="GB").record == {"phone": "020 7946 0958"}
    assert reasons(check({"phone": "020 7946 0958"}, 2, region="US")) == ["phone.invalid"]
    # Without the region (the registry could not be read) only plausibility is checked here.
    assert check({"phone": "020 7946 0958"}, 2, region=None).record == {"phone": "020 7946 0958"}


def test_a_contact_as_export_writes_it_imports_its_current_phone_and_bsuid() -> None:
    contact = {
        "id": "c1",
        "tenant": "demo",
        "external_id": "crm-9",
        "phones": [
            {"e164": "+15550000001", "status": "stale", "source": "meta.message"},
            {"e164": "+15550000002", "status": "current", "source": "twilio.sms"},
        ],
        "bsuids": [{"id": "US.1", "status": "previous"}, {"id": "US.2", "status": "current"}],
        "parent_bsuid": None,
        "username": "ana",
        "name": "Ana",
        "sms_opted_out": False,
        "marketing_opted_out": True,
        "whatsapp_opt_in": {"value": True, "at": "2026-01-01T00:00:00+00:00", "source": "user.keyword"},
        "whatsapp": {"window_open_until": None, "windows": {}},
        "merged_from": [],
        "created_at": "2026-01-01T00:00:00+00:00",
        "updated_at": "2026-01-01T00:00:00+00:00",
    }
    assert check(contact, 1).record == {
        "external_id": "crm-9",
        "phone": "+15550000002",
        "bsuid": "US.2",
        "name": "Ana",
        "sms_opted_out": False,
        "marketing_opted_out": True,
        "whatsapp_opt_in": True,  # R15: the view's object, as its value
    }


def test_a_whatsapp_opt_in_column_is_a_flag() -> None:
    assert check({"phone": "+16505551234", "whatsapp_opt_in": "yes"}, 2).record == {
        "phone": "+16505551234",
        "whatsapp_opt_in": True,
    }
    assert reasons(check({"phone": "+16505551234", "whatsapp_opt_in": "maybe"}, 2)) == [
        "whatsapp_opt_in.invalid"
    ]


def test_csv_rows_carry_the_line_they_start_on() -> None:
    text = (
        "\ufeffExternal_ID,Phone,Name\n"  # a byte order mark and capitalised names, as spreadsheets write
        "crm-1,+16505551234,Ana\n"
        "\n"
        'crm-2,+16505551235,"two\nlines"\n'
        "crm-3,oops,Cy\n"
        "crm-4,+16505551236,Di,extra\n"
    )
    rows = rows_of(text)
    assert [(r.line, reasons(r)) for r in rows] == [
        (2, []),
        (4, []),
        (6, ["phone.invalid"]),
        (7, ["row.malformed"]),
    ]
    assert rows[1].record == {"external_id": "crm-2", "phone": "+16505551235", "name": "two\nlines"}


def test_a_csv_without_a_header_is_bad_usage() -> None:
    with pytest.raises(HeaderError):
        rows_of("+16505551234,Ana\n+16505551235,Bo\n")


def test_jsonl_rows() -> None:
    lines = [
        json.dumps({"external_id": "crm-1", "phone": "+16505551234"}),
        "",
        "{not json",
        json.dumps(["a list"]),
        json.dumps({"external_id": 42, "sms_opted_out": False}),
    ]
    rows = rows_of("\n".join(lines) + "\n", "jsonl")
    assert [(r.line, reasons(r)) for r in rows] == [
        (1, []),
        (3, ["json.invalid"]),
        (4, ["json.invalid"]),
        (5, []),
    ]
    assert rows[-1].record == {"external_id": "42", "sms_opted_out": False}


def test_offsets_grow_to_the_file_size() -> None:
    text = "external_id,phone\n" + "".join(f"crm-{i},+1650555{i:04d}\n" for i in range(500))
    offsets = [r.offset for r in rows_of(text)]
    assert offsets == sorted(offsets)
    assert offsets[0] == len("external_id,phone\ncrm-0,+16505550000\n")
    assert offsets[-1] == len(text.encode())


class EndlessCsv(io.RawIOBase):
    """A CSV file that never ends: reading it whole would never return."""

    def __init__(self) -> None:
        self.pending = b"external_id,phone\n"
        self.n = 0
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while len(self.pending) < len(buffer):
            self.pending += f"crm-{self.n},+1650{self.n % 10_000_000:07d}\n".encode()
            self.n += 1
        size = len(buffer)
        buffer[:size], self.pending = self.pending[:size], self.pending[size:]
        self.read_bytes += size
        return size


def test_rows_are_read_one_at_a_time() -> None:
    source = EndlessCsv()
    rows = read_rows(io.BufferedReader(source), "csv", region="US")
    first = [next(rows) for _ in range(1000)]
    assert [r.line for r in first] == list(range(2, 1002))
    assert source.read_bytes < 100_000  # a few buffers, not the (endless) file


@pytest.mark.parametrize(
    ("name", "head", "kind"),
    [
        ("contacts.jsonl", b"", "jsonl"),
        ("contacts.ndjson", b"", "jsonl"),
        ("contacts.csv", b"external_id,phone", "csv"),
        ("contacts.txt", b'\xef\xbb\xbf {"phone": "+1"}', "jsonl"),
        ("contacts", b"phone,name", "csv"),
    ],
)
def test_detect_format(name: str, head: bytes, kind: str) -> None:
    assert detect_format(name, head) == kind
