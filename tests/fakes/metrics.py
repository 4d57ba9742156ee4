"""``Metrics`` (``crossroute.ports``) as a recorder, checking every count against the catalogue as
``EmfMetrics`` does (an unknown metric or a wrong dimension raises)."""

from __future__ import annotations

from collections import Counter

from crossroute.metrics import checked


class RecordingMetrics:
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str | None]] = Counter()

    def count(self, name: str, value: int = 1, *, dimension: str | None = None) -> None:
        checked(name, dimension)
        if value > 0:
            self.counts[(name, dimension)] += value

    def of(self, name: str) -> dict[str | None, int]:
        return {dimension: n for (metric, dimension), n in self.counts.items() if metric == name}
