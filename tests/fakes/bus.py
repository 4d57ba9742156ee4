"""``EventPublisher`` (``crossroute.bus``): a recorder of what was published, failures injectable."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from crossroute.bus import SOURCE, BusEvent, requests


class RecordingPublisher:
    """Keeps every event it publishes, in order; ``fail_next`` publishes raise first (keeping nothing),
    as a PutEvents that failed would."""

    def __init__(self, *, fail_next: int = 0) -> None:
        self.events: list[BusEvent] = []
        self.batches: list[list[BusEvent]] = []  # one per publish that succeeded
        self.fail_next = fail_next
        self.failed = 0  # publishes that raised

    def publish(self, events: Sequence[BusEvent]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            self.failed += 1
            raise ConnectionError("injected: PutEvents failed")
        self.batches.append(list(events))
        self.events.extend(events)

    def of(self, detail_type: str) -> list[dict[str, Any]]:
        """The details of the events of ``detail_type``, in order."""
        return [e.detail for e in self.events if e.detail_type == detail_type]

    def wire(self) -> list[tuple[str, dict[str, Any]]]:
        """(detail-type, detail) of each event as PutEvents sends it: the JSON ``Detail`` read back."""
        out = []
        for event in self.events:
            entry = event.entry("crossroute-test-events")
            assert entry["Source"] == SOURCE == "crossroute"
            out.append((entry["DetailType"], json.loads(entry["Detail"])))
        return out

    @property
    def put_events_calls(self) -> int:
        """The PutEvents requests ``EventBridgePublisher`` would have made for what was published."""
        return sum(len(requests([e.entry("crossroute-test-events") for e in b])) for b in self.batches)

    def clear(self) -> None:
        self.events.clear()
        self.batches.clear()
