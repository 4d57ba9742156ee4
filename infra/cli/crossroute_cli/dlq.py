"""``crossroute dlq``: what is on a dead-letter queue, masked, and the standard redrive back to its queue.

``show`` receives the DLQ's messages without deleting them and makes each visible again at once
(``ChangeMessageVisibility`` 0): a look counts as one receive in SQS's ``ApproximateReceiveCount``,
which is why ``receives`` is shown less that look. On a FIFO DLQ (inbound), SQS hands out a group's later
messages only once its earlier ones are back: ``shown`` may then be below ``approximate_total``.
Nothing personal is shown: no phone number, BSUID or body, only ids, times, receive counts, the
``crossroute_failure`` attribute, the tenant and the kind of record.

``redrive`` is SQS ``StartMessageMoveTask`` from the DLQ to its queue (named: most records were put on
the DLQ by the functions, not moved there by SQS), then waits for the task to finish.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import click

from .context import global_options, out, target
from .errors import Refused

__all__ = ["QUEUES", "describe_body", "dlq"]

# which -> (DLQ URL output, queue URL output)
QUEUES = {
    "inbound": ("InboundDeadLetterQueueUrl", "InboundQueueUrl"),
    "send": ("SendDeadLetterQueueUrl", "SendQueueUrl"),
    "media": ("MediaDeadLetterQueueUrl", "MediaQueueUrl"),
}
PEEK_VISIBILITY = 30  # seconds a looked-at message stays hidden if making it visible again fails
MOVE_TIMEOUT = 120.0


def describe_body(body: str) -> tuple[str | None, str]:
    """(tenant, kind) of a queued record, read from its JSON; nothing else of it is kept."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None, "unreadable"
    if not isinstance(doc, dict):
        return None, "unreadable"
    if "crossroute:settle" in doc:
        then = doc.get("then")
        tenant = describe_body(then)[0] if isinstance(then, str) else _tenant_of(then)
        return tenant, "settlement"
    if isinstance(doc.get("detail-type"), str):
        return _tenant_of(doc.get("detail")), f"event:{doc['detail-type']}"
    if isinstance(doc.get("kind"), str) and str(doc.get("schema", "")).startswith("crossroute.inbound"):
        return _tenant_of(doc), str(doc["kind"])
    if "idempotency_key" in doc or "to" in doc:
        return _tenant_of(doc), "send_request"
    if {"provider", "message_id", "index"} <= doc.keys():  # crossroute.media.MediaJob
        return _tenant_of(doc), f"media:{doc.get('type')}"
    return _tenant_of(doc), "unknown"


def _tenant_of(doc: Any) -> str | None:
    tenant = doc.get("tenant") if isinstance(doc, dict) else None
    return tenant if isinstance(tenant, str) else None


@click.group()
@global_options
def dlq() -> None:
    """Dead-letter queues: look (masked) and redrive."""


_which = click.argument("which", type=click.Choice(sorted(QUEUES)))


@dlq.command("show")
@_which
@click.option("--max", "limit", type=click.IntRange(1, 10_000), default=1000, show_default=True)
@global_options
@click.pass_context
def show(ctx: click.Context, which: str, limit: int) -> None:
    """What is dead-lettered: ids, times, receive counts, failure, tenant, kind."""
    stack = target(ctx)
    sqs = stack.client("sqs")
    url = stack.output(QUEUES[which][0])
    total = _approximate(sqs, url)
    messages = _peek(sqs, url, limit)
    doc = {"queue": which, "approximate_total": total, "shown": len(messages), "messages": messages}
    display = out(ctx)
    if display.json_mode:
        display.emit(doc)
        return
    _table(display, doc)


def _approximate(sqs: Any, url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(found.get(n, 0)) for n in names)


def _peek(sqs: Any, url: str, limit: int) -> list[dict[str, Any]]:
    """Receive up to ``limit`` messages, describe them, and make them visible again."""
    seen: dict[str, dict[str, Any]] = {}
    handles: list[str] = []
    try:
        while len(seen) < limit:
            got = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=min(10, limit - len(seen)),
                VisibilityTimeout=PEEK_VISIBILITY,
                WaitTimeSeconds=0,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not got:
                break
            for message in got:
                handles.append(message["ReceiptHandle"])
                seen.setdefault(message["MessageId"], _described(message))
    finally:
        _release(sqs, url, handles)
    return sorted(seen.values(), key=lambda m: (m["sent_at"] or "", m["message_id"]))


def _described(message: dict[str, Any]) -> dict[str, Any]:
    attributes = message.get("Attributes") or {}
    failure = (message.get("MessageAttributes") or {}).get("crossroute_failure") or {}
    tenant, kind = describe_body(str(message.get("Body") or ""))
    group = attributes.get("MessageGroupId")
    if tenant is None and isinstance(group, str) and ":" in group:
        tenant = group.split(":", 1)[0]  # <tenant>:<keyed hash of the sender>
    return {
        "message_id": message["MessageId"],
        "sent_at": _time(attributes.get("SentTimestamp")),
        "first_received_at": _time(attributes.get("ApproximateFirstReceiveTimestamp")),
        "receives": max(0, int(attributes.get("ApproximateReceiveCount", 1)) - 1),
        "failure": failure.get("StringValue"),
        "tenant": tenant,
        "kind": kind,
    }


def _time(millis: Any) -> str | None:
    if millis in (None, ""):
        return None
    return datetime.fromtimestamp(int(millis) / 1000, UTC).isoformat(timespec="seconds")


def _release(sqs: Any, url: str, handles: list[str]) -> None:
    for start in range(0, len(handles), 10):
        chunk = handles[start : start + 10]
        entries = [{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0} for i, h in enumerate(chunk)]
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)


def _table(display: Any, doc: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{doc['queue']} DLQ: {doc['shown']} shown, ~{doc['approximate_total']} on the queue")
    for name in ("message id", "sent", "first received", "receives", "failure", "tenant", "kind"):
        table.add_column(name, overflow="fold")
    for m in doc["messages"]:
        row = (
            m["message_id"],
            m["sent_at"],
            m["first_received_at"],
            m["receives"],
            m["failure"],
            m["tenant"],
            m["kind"],
        )
        table.add_row(*(Text("" if v is None else str(v)) for v in row))
    display.stdout.print(table)


@dlq.command("redrive")
@_which
@global_options
@click.pass_context
def redrive(ctx: click.Context, which: str) -> None:
    """Move everything on the DLQ back to its queue (SQS StartMessageMoveTask)."""
    stack = target(ctx)
    sqs = stack.client("sqs")
    source = _arn(sqs, stack.output(QUEUES[which][0]))
    destination = _arn(sqs, stack.output(QUEUES[which][1]))
    before = _approximate(sqs, stack.output(QUEUES[which][0]))
    moved = _move(sqs, source, destination) if before else 0
    left = _approximate(sqs, stack.output(QUEUES[which][0]))
    doc = {"queue": which, "moved": moved, "left": left}
    display = out(ctx)
    if display.json_mode:
        display.emit(doc)
    else:
        display.line(
            f"moved {moved} message(s) from the {which} DLQ back to its queue; {left} left on the DLQ"
        )
    if left:
        ctx.exit(1)


def _arn(sqs: Any, url: str) -> str:
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


def _move(sqs: Any, source: str, destination: str) -> int:
    from botocore.exceptions import ClientError

    try:
        handle = sqs.start_message_move_task(SourceArn=source, DestinationArn=destination)["TaskHandle"]
    except ClientError as exc:
        raise Refused(f"redrive refused: {exc.response.get('Error', {}).get('Message', exc)}") from None
    deadline = time.monotonic() + MOVE_TIMEOUT
    while True:
        task = _task(sqs, source, handle)
        status = task.get("Status")
        if status == "COMPLETED":
            return int(task.get("ApproximateNumberOfMessagesMoved", 0))
        if status in ("FAILED", "CANCELLED", "CANCELLING"):
            raise Refused(f"redrive {status.lower()}: {task.get('FailureReason', '')}".strip())
        if time.monotonic() > deadline:
            raise Refused("redrive still running; look with: aws sqs list-message-move-tasks", code="timeout")
        time.sleep(1)


def _task(sqs: Any, source: str, handle: str) -> dict[str, Any]:
    """The source's most recent task: ours (SQS runs one task per source queue at a time; only a
    running task lists its handle)."""
    found = sqs.list_message_move_tasks(SourceArn=source, MaxResults=1).get("Results", [])
    task = dict(found[0]) if found else {}
    return task if task.get("TaskHandle", handle) == handle else {}
