"""A speed fix for the emulator's SQS (moto), applied by the local stack and the emulated test account.

moto's ``Queue.attributes`` computes every queue attribute, including the three ``Approximate*`` counts
that walk every message of the queue, and moto reads it several times per message sent, just to look up
``ContentBasedDeduplication``. Sending to a queue holding n messages therefore costs O(n) per message:
a webhook POST with 1,000 senders took about a minute on an empty FIFO queue. This computes the same
attributes but reads the counts only when one of them is asked for (``GetQueueAttributes``).
``tests/adapters/test_provisioning.py`` checks that both give the same attributes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

_COUNTS = {
    "ApproximateNumberOfMessages": "approximate_number_of_messages",
    "ApproximateNumberOfMessagesDelayed": "approximate_number_of_messages_delayed",
    "ApproximateNumberOfMessagesNotVisible": "approximate_number_of_messages_not_visible",
}


class LazyAttributes(dict[str, Any]):
    """A queue's attributes; the message counts are read from the queue when one is looked up."""

    def __init__(self, queue: Any, values: dict[str, Any]) -> None:
        super().__init__(values)
        self._queue = queue

    def __getitem__(self, key: str) -> Any:
        if key in _COUNTS and super().__contains__(key):
            return getattr(self._queue, _COUNTS[key])
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self:
            return default
        return self[key]

    def items(self) -> Iterator[tuple[str, Any]]:  # type: ignore[override]
        return ((key, self[key]) for key in self)

    def values(self) -> Iterator[Any]:  # type: ignore[override]
        return (self[key] for key in self)


def attributes(queue: Any) -> LazyAttributes:
    """What moto's ``Queue.attributes`` answers, counts deferred."""
    from moto.core.utils import camelcase_to_underscores

    names = list(queue.BASE_ATTRIBUTES)
    names += list(queue.FIFO_ATTRIBUTES) if queue.fifo_queue else []
    names += list(queue.KMS_ATTRIBUTES) if queue.kms_master_key_id else []
    result: dict[str, Any] = {
        name: None if name in _COUNTS else getattr(queue, camelcase_to_underscores(name)) for name in names
    }
    if queue.policy:
        result["Policy"] = queue.policy
    if queue.redrive_policy:
        result["RedrivePolicy"] = json.dumps(queue.redrive_policy)
    for key, value in result.items():
        if isinstance(value, bool):
            result[key] = str(value).lower()
    return LazyAttributes(queue, result)


def motos_own() -> Any:
    """moto's own ``Queue.attributes`` getter, for comparison."""
    from moto.sqs import models

    return getattr(models.Queue, "_moto_attributes", models.Queue.attributes.fget)  # type: ignore[attr-defined]


def speed_up() -> None:
    """Give moto's SQS queues ``attributes`` above (idempotent)."""
    from moto.sqs import models

    if getattr(models.Queue, "_moto_attributes", None) is not None:
        return
    models.Queue._moto_attributes = models.Queue.attributes.fget  # type: ignore[attr-defined]
    models.Queue.attributes = property(attributes)  # type: ignore[assignment,method-assign]
