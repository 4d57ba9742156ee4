"""Events crossroute publishes on its EventBridge bus (source ``crossroute``); schemas in docs/events.md."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

SOURCE = "crossroute"
_BATCH = 10  # PutEvents takes at most 10 entries


@dataclass(frozen=True)
class BusEvent:
    detail_type: str  # MessageReceived, MessageStatusChanged, ContactsMerged, IdentityChanged, ...
    detail: dict[str, Any]

    def entry(self, bus_name: str) -> dict[str, str]:
        return {
            "Source": SOURCE,
            "DetailType": self.detail_type,
            "Detail": json.dumps(self.detail, sort_keys=True, default=str),
            "EventBusName": bus_name,
        }


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
        for start in range(0, len(events), _BATCH):
            chunk = [e.entry(self._bus) for e in events[start : start + _BATCH]]
            answer = self._client.put_events(Entries=chunk)  # type: ignore[arg-type]
            if answer.get("FailedEntryCount"):
                codes = sorted({e.get("ErrorCode", "?") for e in answer["Entries"] if e.get("ErrorCode")})
                raise PublishError(f"EventBridge refused {answer['FailedEntryCount']} events: {codes}")
