"""Changes to moto for the soak, so that what differs is crossroute, not the emulator, and so that a
few thousand events fit in minutes.

1. **Each DynamoDB request is atomic**, as in DynamoDB: one lock around every request. moto does not
   serialise concurrent requests (in-process or ``ThreadedMotoServer``): its ``TransactWriteItems``
   checks conditions, writes, and on a failed condition puts back a copy of the table taken before,
   without a lock, so two concurrent transactions can both pass one condition, and a rollback can
   wipe out another request's writes made meanwhile (``tests/adapters/test_ingest_concurrency.py``
   uses the same lock for the same reason). The interleaving *between* requests stays as racy as the
   consumers make it: read, read, write, write still conflict and retry.
2. **A transaction's rollback copies only the items it touches**: moto deep-copies the whole table
   once per item of every ``TransactWriteItems`` to be able to roll back, which makes each write cost
   O(table size) (a few thousand events already take hours). The items a transaction names are
   copied instead and put back if it fails: the same all-or-nothing outcome.
3. **An SQS receive is atomic**: with several consumers polling one FIFO queue, two concurrent
   ``ReceiveMessage`` calls in moto can both hand out messages of one message group (each checks the
   groups in flight, then takes messages, without a lock), which SQS never does. Receives take a lock
   (and wait for messages outside it, without spinning).
4. **Cheaper bookkeeping, same answers**: moto's SQS checks each queued message's visibility with a
   ``datetime`` round trip, over the whole queue on every receive and count (the local stack's
   ``infra/local/moto_sqs.py`` already spares it the recounts per message sent), and moto's server lists
   its own package directory on disk for every request. Visibility is read from ``time.time()`` instead
   (the same clock) and the directory listing is kept.

:func:`patch_moto` applies them in this process (idempotent); the reference run uses it too. The
soak's stack runs as ``python -m infra.soak.stack``, which applies them, then runs ``infra.local``.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["LOCK", "SQS_LOCK", "patch_moto"]

LOCK = threading.RLock()  # DynamoDB requests
SQS_LOCK = threading.Lock()  # SQS receives
RECEIVE_PAUSE = 0.05  # seconds between two attempts of a long poll that found nothing it may take
_patched = False


class _CopyWithoutTables:
    """Stands in for the ``copy`` module inside ``moto.dynamodb.models``: ``deepcopy`` of a whole
    ``Table`` answers the table itself (the rollback journal below keeps what a transaction touches)."""

    def __init__(self, table_type: type) -> None:
        self._table_type = table_type

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    def deepcopy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        if isinstance(value, self._table_type):
            return value
        return copy.deepcopy(value, memo)


def patch_moto() -> None:
    global _patched
    if _patched:
        return
    import moto.dynamodb.models as models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoHandler

    call_action: Callable[..., Any] = DynamoHandler.call_action

    def atomic_call_action(self: Any) -> Any:
        with LOCK:
            return call_action(self)

    transact: Callable[..., Any] = DynamoDBBackend.transact_write_items

    def journaled_transact(self: Any, transact_items: list[dict[str, Any]]) -> Any:
        with LOCK:
            journal = []
            for entry in transact_items:
                op_type, op = next(iter(entry.items()))
                table = self.tables.get(op.get("TableName"))
                if table is None:
                    continue
                key = op.get("Key") if op_type != "Put" else op.get("Item")
                if not isinstance(key, dict) or table.hash_key_attr not in key:
                    continue
                hash_value = DynamoType(key[table.hash_key_attr])
                range_value = (
                    DynamoType(key[table.range_key_attr])
                    if table.range_key_attr and table.range_key_attr in key
                    else None
                )
                if table.has_range_key and range_value is None:
                    continue
                before = table.get_item(hash_value, range_value)
                journal.append((table, hash_value, range_value, copy.deepcopy(before)))
            try:
                return transact(self, transact_items)
            except Exception:
                for table, hash_value, range_value, before in reversed(journal):
                    _put_back(table, hash_value, range_value, before)
                raise

    import moto.backends
    from moto.sqs.models import Message, SQSBackend

    receive: Callable[..., Any] = SQSBackend.receive_message

    def atomic_receive(
        self: Any,
        queue_name: str,
        count: int,
        wait_seconds_timeout: int,
        visibility_timeout: int,
        message_attribute_names: list[str] | None = None,
    ) -> Any:
        deadline = time.monotonic() + (wait_seconds_timeout or 0)
        while True:
            with SQS_LOCK:
                got = receive(self, queue_name, count, 0, visibility_timeout, message_attribute_names)
            left = deadline - time.monotonic()
            if got or left <= 0:
                return got
            queue = self.get_queue(queue_name)
            if queue.messages:  # visible, but in message groups another consumer has in flight
                time.sleep(min(left, RECEIVE_PAUSE))
            else:
                queue.wait_for_messages(min(left, RECEIVE_PAUSE))

    SQSBackend.receive_message = atomic_receive  # type: ignore[method-assign]

    modules = tuple(moto.backends.list_of_moto_modules())
    moto.backends.list_of_moto_modules = lambda: modules
    visible = property(lambda self: time.time() * 1000.0 > self.visible_at)
    delayed = property(lambda self: time.time() * 1000.0 < self.delayed_until)
    Message.visible = visible  # type: ignore[method-assign,assignment]
    Message.delayed = delayed  # type: ignore[method-assign,assignment]
    models.copy = _CopyWithoutTables(Table)  # type: ignore[attr-defined,assignment]
    DynamoHandler.call_action = atomic_call_action  # type: ignore[method-assign]
    DynamoDBBackend.transact_write_items = journaled_transact  # type: ignore[method-assign]
    _patched = True


def _put_back(table: Any, hash_value: Any, range_value: Any, before: Any) -> None:
    """Restore one item as it was before a failed transaction (``None``: it did not exist)."""
    if range_value is None:
        if before is None:
            table.items.pop(hash_value, None)
        else:
            table.items[hash_value] = before
        return
    rows = table.items.get(hash_value)
    if before is None:
        if rows is not None:
            rows.pop(range_value, None)
            if not rows:
                table.items.pop(hash_value, None)
    else:
        table.items[hash_value][range_value] = before
