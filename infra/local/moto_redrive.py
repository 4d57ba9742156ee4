"""Dead-letter queue redrive for the emulator's SQS: moto (5.2) has no ``StartMessageMoveTask`` nor
``ListMessageMoveTasks``. Applied by the local stack and the emulated test account (as the speed fix in
``moto_sqs.py``), so the standard redrive (``aws sqs start-message-move-task``, boto3's
``start_message_move_task``) works against them as documented for SQS:

- the source must be a dead-letter queue of another queue (else ``InvalidParameterValue``); without a
  ``DestinationArn`` the messages go back to its source queue (here: the one queue whose
  ``RedrivePolicy`` names it; AWS remembers each moved message's own source);
- source and destination are both standard or both FIFO; a FIFO message keeps its group, and its
  deduplication id (its message id when it has none);
- every redriven message is a new message: a new id, receive count 0, retention from now; its body and
  message attributes are kept.

Unlike AWS, a task runs to its end inside the call (``MaxNumberOfMessagesPerSecond`` is not applied)
and moves the messages visible at that moment; ``ListMessageMoveTasks`` then lists it ``COMPLETED``.
``CancelMessageMoveTask`` is not emulated (there is never a running task to cancel).
``tests/adapters/test_moto_redrive.py`` checks it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

_TASKS = "_crossroute_move_tasks"  # on each moto SQS backend: its tasks, newest first


def _queue(backend: Any, arn: str) -> Any:
    from moto.sqs.exceptions import SQSException

    try:
        return backend.get_queue(str(arn).rsplit(":", 1)[-1])
    except SQSException:
        raise SQSException("ResourceNotFoundException", f"No queue {arn}") from None


def _destination(backend: Any, source: Any, destination_arn: str | None) -> Any:
    from moto.sqs.exceptions import InvalidParameterValue

    sources = backend.list_dead_letter_source_queues(source.name)
    if not sources:
        raise InvalidParameterValue("Source queue must be configured as a Dead Letter Queue.")
    if destination_arn:
        destination = _queue(backend, destination_arn)
    elif len(sources) == 1:
        destination = sources[0]
    else:
        raise InvalidParameterValue("The emulator needs a DestinationArn: this queue has several sources.")
    if bool(destination.fifo_queue) != bool(source.fifo_queue):
        raise InvalidParameterValue("Source and destination queues must both be standard or both FIFO.")
    return destination


def _move(backend: Any, source: Any, destination: Any) -> int:
    """Every visible message of ``source`` sent to ``destination`` as a new message, then removed."""
    with source._messages_lock:
        visible = [m for m in source._messages if m.visible]
    for message in visible:
        fifo = bool(destination.fifo_queue)
        backend.send_message(
            destination.name,
            message.body,
            message_attributes=message.message_attributes or None,
            delay_seconds=0,
            deduplication_id=(message.deduplication_id or message.id) if fifo else None,
            group_id=message.group_id if fifo else None,
        )
        with source._messages_lock:
            source._messages.remove(message)
            source.pending_messages.discard(message)
    return len(visible)


def _start_message_move_task(self: Any) -> Any:
    from moto.core.responses import ActionResult

    backend = self.sqs_backend
    source_arn = self._get_param("SourceArn")
    destination_arn = self._get_param("DestinationArn")
    source = _queue(backend, source_arn)
    destination = _destination(backend, source, destination_arn)
    started = int(time.time() * 1000)
    moved = _move(backend, source, destination)
    task = {
        "Status": "COMPLETED",
        "SourceArn": source_arn,
        "ApproximateNumberOfMessagesMoved": moved,
        "ApproximateNumberOfMessagesToMove": moved,
        "StartedTimestamp": started,
    }
    if destination_arn:
        task["DestinationArn"] = destination_arn
    if self._get_param("MaxNumberOfMessagesPerSecond") is not None:
        task["MaxNumberOfMessagesPerSecond"] = int(self._get_param("MaxNumberOfMessagesPerSecond"))
    tasks = backend.__dict__.setdefault(_TASKS, [])
    tasks.insert(0, task)
    return ActionResult({"TaskHandle": uuid.uuid4().hex})


def _list_message_move_tasks(self: Any) -> Any:
    from moto.core.responses import ActionResult

    backend = self.sqs_backend
    source_arn = self._get_param("SourceArn")
    _queue(backend, source_arn)
    limit = int(self._get_param("MaxResults") or 1)
    tasks = [t for t in backend.__dict__.get(_TASKS, []) if t["SourceArn"] == source_arn]
    return ActionResult({"Results": tasks[:limit]})


def support_message_move_tasks() -> None:
    """Give moto's SQS the two operations above (idempotent; kept out of the way of a moto that has
    its own)."""
    from moto.sqs.responses import SQSResponse

    if getattr(SQSResponse, "start_message_move_task", None) is None:
        SQSResponse.start_message_move_task = _start_message_move_task  # type: ignore[attr-defined]
    if getattr(SQSResponse, "list_message_move_tasks", None) is None:
        SQSResponse.list_message_move_tasks = _list_message_move_tasks  # type: ignore[attr-defined]
