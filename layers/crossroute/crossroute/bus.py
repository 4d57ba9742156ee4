"""Events crossroute publishes on its EventBridge bus (source ``crossroute``); schemas in docs/events.md."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from crossroute import limits

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

SOURCE = "crossroute"
# An entry's size as EventBridge counts it: 14 bytes for Time, then Source, DetailType and Detail.
_TIME_BYTES = 14
# One entry leaves room for the rest of a request; a larger detail is trimmed (strings cut, marked).
_ENTRY_BYTES = limits.EVENTBRIDGE_REQUEST_BYTES - 8 * 1024
# Every detail's ``version`` (docs/events.md), per detail-type: a major version, raised only by a change
# that breaks consumers (a field removed, retyped or given another meaning); adding a field is not one.
# docs/events/<detail-type>.schema.json requires exactly this value.
DETAIL_VERSIONS: dict[str, str] = {
    "MessageReceived": "1",
    "MessageStatusChanged": "1",
    "ContactsMerged": "1",
    "IdentityChanged": "1",
    "IdentityConflict": "1",
    "CustomerErased": "1",
    "MessageRouted": "1",
    "MessageUndeliverable": "1",
}


@dataclass(frozen=True)
class BusEvent:
    detail_type: str  # MessageReceived, MessageStatusChanged, ContactsMerged, IdentityChanged, ...
    detail: dict[str, Any]

    def entry(self, bus_name: str) -> dict[str, str]:
        """The PutEvents entry; its ``Detail`` carries the detail-type's ``version`` (added here, so that
        events republished from records stored before carry it too)."""
        versioned = {**self.detail, "version": DETAIL_VERSIONS[self.detail_type]}
        detail = json.dumps(versioned, sort_keys=True, default=str)
        if len(detail.encode()) > _ENTRY_BYTES:  # never for crossroute's own events: a last resort
            detail = limits.fitted_json(versioned, _ENTRY_BYTES)
        return {"Source": SOURCE, "DetailType": self.detail_type, "Detail": detail, "EventBusName": bus_name}


class EventPublisher(Protocol):
    def publish(self, events: Sequence[BusEvent]) -> None:
        """Publish every event or raise: the caller retries (consumers must tolerate duplicates)."""


class PublishError(RuntimeError):
    pass


class EventBridgePublisher:
    def __init__(self, client: EventBridgeClient, bus_name: str) -> None:
        self._client = client
        self._bus = bus_name

    def publish(self, events: Sequence[BusEvent]) -> None:
        for chunk in requests([e.entry(self._bus) for e in events]):
            answer = self._client.put_events(Entries=chunk)  # type: ignore[arg-type]
            if answer.get("FailedEntryCount"):
                codes = sorted({e.get("ErrorCode", "?") for e in answer["Entries"] if e.get("ErrorCode")})
                raise PublishError(f"EventBridge refused {answer['FailedEntryCount']} events: {codes}")


def requests(entries: list[dict[str, str]]) -> list[list[dict[str, str]]]:
    """``entries`` in order, in PutEvents requests of at most 10 entries and 256 KB."""
    return limits.packed(
        entries,
        lambda e: _TIME_BYTES + sum(len(e[k].encode()) for k in ("Source", "DetailType", "Detail")),
        count=limits.EVENTBRIDGE_ENTRIES,
        max_bytes=limits.EVENTBRIDGE_REQUEST_BYTES,
    )
