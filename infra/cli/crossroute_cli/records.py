"""The rows of a contacts import file, read one at a time and checked before anything is sent.

A file is CSV with a header row or JSON Lines (one object per line); its fields are ``FIELDS``. A
JSONL line may also be a contact as ``contacts export`` writes it: its first current phone and BSUID are
taken when it has no ``phone`` / ``bsuid``. ``IGNORED`` are the other columns export writes; they
are read and left alone, so an export imports as it is. Any other column holding a value rejects its
row (``column.unknown``: a misspelt column is never silently dropped).

Each row becomes a :class:`Row`: its line number (where the record starts, the header being line 1 of a
CSV), the record to send (the fields that have a value, trimmed), or why it is rejected. Rejection
reasons found here: ``phone.invalid``, ``bsuid.invalid``, ``sms_opted_out.invalid``,
``marketing_opted_out.invalid``, ``whatsapp_opt_in.invalid``, ``external_id.invalid``, ``name.invalid``,
``column.unknown``, ``record.no_key`` (no ``external_id``, ``phone`` or ``bsuid``), ``json.invalid``,
``row.malformed``.
Details never quote a phone number or BSUID.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, Literal

from crossroute import ids

__all__ = [
    "FIELDS",
    "IGNORED",
    "Format",
    "Rejection",
    "Row",
    "check",
    "detect_format",
    "dict_entries",
    "first_current",
    "phone_shaped",
    "read_rows",
]

FIELDS = ("external_id", "phone", "bsuid", "name", "sms_opted_out", "marketing_opted_out", "whatsapp_opt_in")
IDENTIFYING = ("external_id", "phone", "bsuid")
BOOLEANS = ("sms_opted_out", "marketing_opted_out", "whatsapp_opt_in")
# What `contacts export` writes beside FIELDS (the contact JSON, and the CSV export's flat columns).
IGNORED = frozenset(
    {
        "id",
        "tenant",
        "phones",
        "bsuids",
        "parent_bsuid",
        "username",
        "whatsapp",
        "window_open_until",
        "merged_from",
        "created_at",
        "updated_at",
    }
)
TRUE = frozenset({"true", "t", "yes", "y", "1"})
FALSE = frozenset({"false", "f", "no", "n", "0"})
PHONE_CHARACTERS = re.compile(r"\+?[0-9 ()./-]+")
Format = Literal["csv", "jsonl"]


@dataclass(frozen=True)
class Rejection:
    """One reason a row was not imported (or, for a server's ``refused`` field, a note on it)."""

    line: int
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Row:
    line: int
    record: dict[str, Any] | None  # None: rejected, see ``problems``
    problems: tuple[Rejection, ...] = ()
    offset: int = 0  # bytes of the file read when this row was read (for the ETA)


# ---------------------------------------------------------------------- checking one record
def check(fields: Mapping[str, Any], line: int, *, region: str | None = None) -> Row:
    """The record to send for one row's fields, or its rejections. ``region``: the tenant's default
    region, to read national phone formats (None: phones are only checked for plausibility here)."""
    fields = _from_contact(fields)
    record: dict[str, Any] = {}
    problems: list[Rejection] = []
    unknown = sorted(str(k) for k, v in fields.items() if k not in FIELDS and k not in IGNORED and _given(v))
    if unknown:
        problems.append(Rejection(line, "column.unknown", " ".join(unknown)))
    for name in FIELDS:
        value = fields.get(name)
        if not _given(value):
            continue
        checked = _field(name, value, region)
        if isinstance(checked, str) and checked.startswith("!"):
            problems.append(Rejection(line, f"{name}.invalid", checked[1:]))
        else:
            record[name] = checked
    if not problems and not any(name in record for name in IDENTIFYING):
        problems.append(Rejection(line, "record.no_key", "needs external_id, phone or bsuid"))
    if problems:
        return Row(line, None, tuple(problems))
    return Row(line, record)


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _field(name: str, value: Any, region: str | None) -> Any:
    """The value to send, or ``"!<why>"``."""
    if name in BOOLEANS:
        return _boolean(value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return "!expected text"
    text = str(value).strip()
    if name == "phone":
        return text if phone_shaped(text, region) else "!not a phone number"
    if name == "bsuid":
        return text if ids.is_bsuid(ids.strip_channel_prefix(text)) else "!not a BSUID"
    return text


def _boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE:
        return True
    if word in FALSE:
        return False
    return "!expected true or false"


def phone_shaped(text: str, region: str | None = None) -> bool:
    """With the tenant's region, the functions' own normaliser decides; without it, only whether it
    could be a phone number at all (the server checks the rest)."""
    if region:
        try:
            ids.e164(text, region)
        except ids.InvalidIdentifier:
            return False
        return True
    bare = ids.strip_channel_prefix(text)
    digits = sum(ch.isdigit() for ch in bare)
    return PHONE_CHARACTERS.fullmatch(bare) is not None and 7 <= digits <= 17


def _from_contact(fields: Mapping[str, Any]) -> Mapping[str, Any]:
    """A contact as export writes it: its first current phone and BSUID as ``phone`` and ``bsuid``, and
    its ``whatsapp_opt_in`` object's value (R15)."""
    opt_in = fields.get("whatsapp_opt_in")
    if isinstance(opt_in, dict):
        fields = {**fields, "whatsapp_opt_in": opt_in.get("value")}
    phones, bsuids = fields.get("phones"), fields.get("bsuids")
    if not isinstance(phones, list) and not isinstance(bsuids, list):
        return fields
    taken = dict(fields)
    if isinstance(phones, list) and not _given(taken.get("phone")):
        taken["phone"] = first_current(phones, "e164")
    if isinstance(bsuids, list) and not _given(taken.get("bsuid")):
        taken["bsuid"] = first_current(bsuids, "id")
    return taken


def first_current(entries: list[Any], key: str) -> str | None:
    """The ``key`` of the first entry (a contact's phone or BSUID) whose status is ``current``."""
    for entry in entries:
        if isinstance(entry, dict) and entry.get("status") == "current" and isinstance(entry.get(key), str):
            return str(entry[key])
    return None


def dict_entries(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON list (nothing when it is not a list)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


# ---------------------------------------------------------------------- reading a file
def detect_format(name: str, head: bytes) -> Format:
    """JSONL for ``.jsonl`` / ``.ndjson`` / ``.json`` files or a first character ``{``; else CSV."""
    if name.lower().endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "jsonl" if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"


def read_rows(raw: IO[bytes], kind: Format, *, region: str | None = None) -> Iterator[Row]:
    """Every row of the file, checked, one at a time (memory does not grow with the file); each row
    carries the bytes read up to its end."""
    read = [0]
    lines = _lines(raw, read)
    rows = _jsonl_rows(lines, region) if kind == "jsonl" else _csv_rows(lines, region)
    for row in rows:
        yield Row(row.line, row.record, row.problems, read[0])


def _lines(raw: IO[bytes], read: list[int]) -> Iterator[str]:
    """The file's lines as text (UTF-8, a byte order mark dropped), counting bytes in ``read[0]``."""
    for number, data in enumerate(raw):
        read[0] += len(data)
        text = data.decode("utf-8", errors="replace")
        yield text.removeprefix("\ufeff") if number == 0 else text


def _jsonl_rows(lines: Iterator[str], region: str | None) -> Iterator[Row]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            yield Row(number, None, (Rejection(number, "json.invalid", "not JSON"),))
            continue
        if not isinstance(doc, dict):
            yield Row(number, None, (Rejection(number, "json.invalid", "not a JSON object"),))
            continue
        yield check({str(k).strip().lower(): v for k, v in doc.items()}, number, region=region)


class HeaderError(ValueError):
    """The CSV's first row is no header of an import file."""


def _csv_rows(lines: Iterator[str], region: str | None) -> Iterator[Row]:
    reader = csv.reader(lines)
    header = [name.strip().lower() for name in next(reader, [])]
    if not any(name in FIELDS for name in header):
        raise HeaderError("the first row must be a header naming some of: " + ", ".join(FIELDS))
    previous = reader.line_num
    for cells in reader:
        line, previous = previous + 1, reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(header):
            detail = f"{len(cells)} fields, the header has {len(header)}"
            yield Row(line, None, (Rejection(line, "row.malformed", detail),))
            continue
        yield check(dict(zip(header, cells, strict=False)), line, region=region)
