"""The SQS event-source runner: what Lambda's SQS event source mapping does, against the emulator.

For every function event of ``Type: SQS`` one poller thread long-polls the queue, builds real SQS event
records and invokes the handler with ``{"Records": [...]}``:

- success -> every record is deleted;
- the handler raises -> nothing is deleted, the whole batch reappears after the queue's
  visibility timeout;
- ``FunctionResponseTypes: [ReportBatchItemFailures]`` -> ``{"batchItemFailures": [{"itemIdentifier":
  messageId}]}`` keeps exactly those records (a malformed response fails the whole batch, like Lambda);
- after ``maxReceiveCount`` receives a message moves to the DLQ of the queue's ``RedrivePolicy``:
  moto does that itself on receive (checked by ``tests/adapters/test_provisioning.py``).

``retry_delay`` (``CROSSROUTE_SQS_RETRY_DELAY`` seconds) optionally shortens the wait before failed
records reappear (``ChangeMessageVisibility``) so that retries and redrives are quick in tests; unset,
failed records wait the queue's real visibility timeout.
"""

from __future__ import annotations

import base64
import logging
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .aws import REGION

__all__ = [
    "BatchOutcome",
    "SqsEventSource",
    "SqsPoller",
    "build_sqs_event",
    "build_sqs_record",
    "process_batch",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SqsEventSource:
    function_id: str
    event_id: str
    queue_arn: str
    queue_url: str
    batch_size: int = 10
    report_batch_item_failures: bool = False

    @property
    def queue_name(self) -> str:
        return self.queue_arn.rsplit(":", 1)[-1]

    def describe(self) -> str:
        extra = ", ReportBatchItemFailures" if self.report_batch_item_failures else ""
        return f"{self.queue_name} -> {self.function_id} (batch {self.batch_size}{extra})"


def build_sqs_record(message: Mapping[str, Any], queue_arn: str) -> dict[str, Any]:
    """One record of a Lambda SQS event from a ``ReceiveMessage`` result message."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": _message_attributes(message.get("MessageAttributes") or {}),
        "md5OfBody": message["MD5OfBody"],
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record.update({"eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": REGION})
    return record


def _message_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """``MessageAttributes`` as Lambda spells them in a record (camelCase, binary as base64)."""
    converted: dict[str, Any] = {}
    for name, attr in attributes.items():
        entry: dict[str, Any] = {"stringListValues": [], "binaryListValues": [], "dataType": attr["DataType"]}
        if "StringValue" in attr:
            entry["stringValue"] = attr["StringValue"]
        if "BinaryValue" in attr:
            entry["binaryValue"] = base64.b64encode(attr["BinaryValue"]).decode("ascii")
        converted[name] = entry
    return converted


def build_sqs_event(messages: Sequence[Mapping[str, Any]], queue_arn: str) -> dict[str, Any]:
    return {"Records": [build_sqs_record(m, queue_arn) for m in messages]}


@dataclass(frozen=True)
class BatchOutcome:
    failed: tuple[str, ...]  # the ids of the messages left on the queue, to be retried


def _failed_ids(result: Any, ids: Sequence[str]) -> tuple[set[str], str | None]:
    """The message ids a ReportBatchItemFailures response keeps; all of them when it is malformed."""
    if result is None:
        return set(), None
    if not isinstance(result, dict):
        return set(ids), f"response is not an object: {type(result).__name__}"
    failures = result.get("batchItemFailures")
    if failures is None:
        return set(), None
    if not isinstance(failures, list):
        return set(ids), "batchItemFailures is not a list"
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in ids:
            return set(ids), f"invalid itemIdentifier {identifier!r}"
        failed.add(identifier)
    return failed, None


def process_batch(
    sqs: Any,
    source: SqsEventSource,
    invoke: Callable[[dict[str, Any]], Any],
    messages: Sequence[Mapping[str, Any]],
    *,
    retry_delay: int | None = None,
) -> BatchOutcome:
    """Invoke the function with ``messages`` and settle them with the queue as Lambda would."""
    ids = [m["MessageId"] for m in messages]
    failed = _invoke_batch(source, invoke, build_sqs_event(messages, source.queue_arn), ids)
    done = [m for m in messages if m["MessageId"] not in failed]
    _delete_messages(sqs, source.queue_url, done)
    retry = [m for m in messages if m["MessageId"] in failed]
    if retry and retry_delay is not None:
        _reappear_after(sqs, source.queue_url, retry, retry_delay)
    if failed:
        log.info(
            "%s: %d of %d messages from %s failed and will be retried",
            source.function_id,
            len(failed),
            len(ids),
            source.queue_name,
        )
    return BatchOutcome(tuple(m["MessageId"] for m in retry))


def _invoke_batch(
    source: SqsEventSource, invoke: Callable[[dict[str, Any]], Any], event: dict[str, Any], ids: list[str]
) -> set[str]:
    """Invoke the function; the ids of the records to keep on the queue (the reason is logged)."""
    try:
        result = invoke(event)
    except Exception:
        log.error(
            "%s: batch of %d from %s failed\n%s",
            source.function_id,
            len(ids),
            source.queue_name,
            traceback.format_exc().rstrip(),
        )
        return set(ids)
    if not source.report_batch_item_failures:
        return set()
    failed, error = _failed_ids(result, ids)
    if error:
        log.error("%s: malformed batch response (%s); the whole batch is retried", source.function_id, error)
    return failed


def _delete_messages(sqs: Any, queue_url: str, messages: Sequence[Mapping[str, Any]]) -> None:
    """``DeleteMessageBatch`` in chunks of 10 (its limit)."""
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
        )


def _reappear_after(sqs: Any, queue_url: str, messages: Sequence[Mapping[str, Any]], delay: int) -> None:
    """Make failed records visible again after ``delay`` s instead of the queue's visibility timeout."""
    for m in messages:
        try:
            sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=delay
            )
        except Exception:  # the message may already be gone; Lambda would not care either
            log.debug("change_message_visibility failed", exc_info=True)


class SqsPoller:
    """One thread polling one event source until :meth:`stop`."""

    def __init__(
        self,
        sqs: Any,
        source: SqsEventSource,
        invoke: Callable[[dict[str, Any]], Any],
        *,
        retry_delay: int | None = None,
        wait_seconds: int = 1,
    ) -> None:
        self.sqs = sqs
        self.source = source
        self.invoke = invoke
        self.retry_delay = retry_delay
        self.wait_seconds = wait_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"sqs-{source.function_id}-{source.event_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def signal_stop(self) -> None:
        """Receive no more batches; the one being processed (if any) goes on to its end."""
        self._stop.set()

    def stop(self, timeout: float = 10) -> bool:
        """Signal and wait up to ``timeout`` s for the batch in flight; False if it is still running."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(max(0.0, timeout))
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def poll_once(self) -> BatchOutcome | None:
        messages = self._receive()
        if not messages:
            return None
        if self._stop.is_set():
            # Received while stopping (a long poll that was under way): not invoked, not deleted; the
            # messages reappear after their visibility timeout, as with a Lambda poller that stops.
            log.debug("%s: stopping, %d messages left on the queue", self.source.describe(), len(messages))
            return None
        return process_batch(self.sqs, self.source, self.invoke, messages, retry_delay=self.retry_delay)

    def _receive(self) -> list[dict[str, Any]]:
        """One batch: ``BatchSize`` up to 10, the most one receive gives (template.yaml's is 10)."""
        messages: list[dict[str, Any]] = self.sqs.receive_message(
            QueueUrl=self.source.queue_url,
            MaxNumberOfMessages=min(10, max(1, self.source.batch_size)),
            WaitTimeSeconds=self.wait_seconds,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        return messages

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                if self._stop.is_set():
                    break
                log.error("poller %s: %s", self.source.describe(), traceback.format_exc().rstrip())
                self._stop.wait(1)
