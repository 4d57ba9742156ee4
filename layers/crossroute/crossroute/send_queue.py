"""The send queue: what its messages mean, and how its consumer retries.

A message body is one of:

- a send request (contract §7; docs/routing.md), put there by ``POST /messages`` or by a producer;
- an EventBridge event the bus's rules route here: ``SendMessage`` (its ``detail`` is a send request),
  or ``MessageStatusChanged`` for a failed WhatsApp message (R7: the SMS fallback);
- an R14 check ``{"crossroute:timed_fallback": {tenant, idempotency_key, provider, message_id, due}}``:
  put there, delayed, when a request with ``fallback_after`` went out on WhatsApp (R14);
  a wait over SQS's 15 min is a chain: each link not yet due puts a new delayed copy and is done;
- a follow-up ``{"crossroute:settle": <settlement>, "then": <body>}``: a send's outcome the table did not
  take when the provider answered, to record first; then ``then`` is handled again.

``SendConsumer`` handles one delivery: a request the providers refuse for now (``RetryLater``) comes
back after an exponential backoff with jitter (``retry_delay``), never the queue's fixed visibility
timeout; an outcome that could not be recorded (``Unsettled``) is carried forward as a follow-up.

On its last receive (``max_receives``, the queue's ``maxReceiveCount``) a delivery that fails again is
put on the send DLQ here, and the send request in it is reported once (R12: ``MessageUndeliverable``,
``send.dead_lettered``; ``Dispatch.dead_lettered``). docs/operations.md says what this covers and what
it cannot (a record SQS moves itself).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crossroute import correlation
from crossroute.dispatch import (
    MAX_DELAY,
    Dispatch,
    Dispatched,
    RetryLater,
    TimedCheck,
    Unsettled,
    retry_delay,
)
from crossroute.log import child_logger
from crossroute.ports import DeadLetters, Delivery, SendQueue
from crossroute.routing.request import InvalidRequest

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

logger = child_logger(__name__)

FOLLOW_UP = "crossroute:settle"  # a follow-up: a settlement to record, then the body to handle again
TIMED_CHECK = "crossroute:timed_fallback"  # R14: look whether a WhatsApp message was delivered in time


class SendConsumer:
    """``dead_letters`` and ``max_receives`` (the send queue's DLQ and ``maxReceiveCount``): on that
    receive a delivery that fails again is parked on the DLQ and counted as done. Without them every
    failure raises, and SQS's redrive moves the record after its last receive, unreported."""

    def __init__(
        self,
        dispatch: Dispatch,
        queue: SendQueue,
        dead_letters: Callable[[], DeadLetters] | None = None,
        *,
        max_receives: int = 0,
    ) -> None:
        self._dispatch = dispatch
        self._queue = queue
        self._dead_letters = dead_letters  # made on first need: most containers never park a record
        self._max_receives = max_receives

    def consume(self, delivery: Delivery) -> None:
        """Handle one message; raises to have the queue deliver it again. Its lines carry its send's
        request id as ``correlation_id`` from the moment dispatch reads it (contract §11)."""
        with correlation.scope(None):
            self._consume_once(delivery)

    def _consume_once(self, delivery: Delivery) -> None:
        last = self._dead_letters is not None and 0 < self._max_receives <= delivery.receive_count
        try:
            self._consume(delivery, last=last)
        except Exception as exc:
            if not last:
                if not isinstance(exc, RetryLater):  # a refusal for now is logged where it is decided
                    logger.warning(
                        "record failed, the queue delivers it again",
                        extra={
                            "reason": type(exc).__name__,
                            "id": delivery.message_id,
                            "receive": delivery.receive_count,
                        },
                    )
                raise
            self._dead_letter(delivery, type(exc).__name__)  # the class only: a message may quote content

    def _consume(self, delivery: Delivery, *, last: bool) -> None:
        body = json.loads(delivery.body)
        if isinstance(body, dict) and FOLLOW_UP in body:
            self._dispatch.settle(body[FOLLOW_UP])
            body = body["then"]
        try:
            self._handle(body)
        except RetryLater as exc:
            if not last:  # on the last receive it is dead-lettered instead
                delay = retry_delay(delivery.receive_count, after=exc.after)
                self._queue.retry_later(delivery.receipt_handle, delay)
                logger.info("send refused for now, retried later", extra={"delay_s": delay})
            raise
        except Unsettled as exc:
            self._carry_forward(exc, body, delivery.receive_count)

    def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Report the request (once per key), then park the record. Either way the record ends on the
        DLQ: parked here, or, when parking raises, moved there by SQS after this last receive. So a
        report that fails (the table or the bus unavailable) does not stop the parking; it is logged."""
        reported = self._report(delivery.body)
        assert self._dead_letters is not None
        self._dead_letters().park(delivery.body, group_id="", message_id=delivery.message_id, reason=reason)
        logger.warning(
            "send failed for good, dead-lettered",
            extra={"reason": reason, "id": delivery.message_id, "reported": reported},
        )

    def _report(self, body: str) -> bool:
        """R12: ``MessageUndeliverable`` (``send.dead_lettered``) for the send request in ``body``, the
        first time its key is dead-lettered. True when this call published it."""
        request = request_in(body)
        if request is None:  # not JSON, or an R7 status: no send request to report
            logger.warning("dead-lettered record holds no send request: not reported")
            return False
        try:
            return self._dispatch.dead_lettered(request).undeliverable
        except InvalidRequest:
            logger.warning("dead-lettered request has no usable tenant or key: not reported")
        except Exception as exc:
            logger.error("dead-lettered request not reported", extra={"error": type(exc).__name__})
        return False

    def _handle(self, body: Any) -> None:
        kind = body.get("detail-type") if isinstance(body, dict) else None
        result: Dispatched
        if kind == "MessageStatusChanged":  # a failed WhatsApp status (the rule filters): R7
            detail = body["detail"]
            code = next((e.get("code") for e in detail.get("errors") or []), None)
            result = self._dispatch.fallback(detail["tenant"], detail["provider"], detail["message_id"], code)
        elif isinstance(body, dict) and TIMED_CHECK in body:  # R14
            result = self._dispatch.timed_fallback(TimedCheck.from_doc(body[TIMED_CHECK]))
        else:
            result = self._dispatch.send(body["detail"] if kind == "SendMessage" else body)
        if result.check is not None:  # R14: if this fails, the delivery is retried and puts it again
            delay = result.check.delay(self._dispatch.now())
            self._queue.enqueue(json.dumps({TIMED_CHECK: result.check.as_doc()}), delay=delay)
        logger.info(
            "dispatched",
            extra={
                "request_id": result.request_id,
                "sent": sorted(result.sent),
                "undeliverable": result.undeliverable,
            },
        )

    def _carry_forward(self, exc: Unsettled, body: Any, receive_count: int) -> None:
        """The provider answered but the table did not take it: the follow-up carries the answer, and
        this delivery is done. If the follow-up cannot be queued either, this delivery fails and is
        retried."""
        delay = retry_delay(receive_count, after=exc.after) if exc.later else 0
        try:
            self._queue.enqueue(json.dumps({FOLLOW_UP: exc.settlement.as_doc(), "then": body}), delay=delay)
        except Exception:
            # Both stores failed: the claim stays "sending" and is never sent again (R8), but what the
            # provider answered is lost. Say so, without personal data.
            settlement = exc.settlement
            logger.error(
                "send outcome could not be recorded nor carried forward",
                extra={
                    "result": settlement.result,
                    "channel": settlement.claim.channel,
                    "attempt": settlement.claim.attempt,
                },
            )
            raise
        logger.warning("send outcome carried forward on the send queue", extra={"delay_s": delay})


def request_in(body: str) -> dict[str, Any] | None:
    """The send request a send queue message carries: itself, an EventBridge ``SendMessage``'s
    ``detail``, or a follow-up's ``then`` (either of those). None for anything else: a body that is not
    JSON, an R7 ``MessageStatusChanged`` (a status, not a request), an R14 check."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if isinstance(doc, dict) and FOLLOW_UP in doc:
        doc = doc.get("then")
    if isinstance(doc, dict) and TIMED_CHECK in doc:  # R14: a check, not a request
        return None
    if isinstance(doc, dict) and "detail-type" in doc:
        doc = doc.get("detail") if doc["detail-type"] == "SendMessage" else None
    return doc if isinstance(doc, dict) else None


class SqsSendQueue:
    """``SendQueue`` on SQS. ``client`` is called on each use: a function makes its client on first need
    (most deliveries never need one) and keeps it."""

    def __init__(self, client: Callable[[], SQSClient], queue_url: str) -> None:
        self._sqs = client
        self._url = queue_url

    def enqueue(self, body: str, *, delay: int = 0) -> None:
        self._sqs().send_message(QueueUrl=self._url, MessageBody=body, DelaySeconds=min(delay, MAX_DELAY))

    def retry_later(self, receipt_handle: str, delay: int) -> None:
        self._sqs().change_message_visibility(
            QueueUrl=self._url, ReceiptHandle=receipt_handle, VisibilityTimeout=delay
        )


class SqsSendDeadLetters:
    """``DeadLetters`` on the send queue's DLQ (a standard queue: no group, no deduplication id): what
    SQS's redrive would do after the last receive, done by the consumer so that it can report the
    request (R12). The failure's class is the message attribute ``crossroute_failure``."""

    def __init__(self, client: Callable[[], SQSClient], queue_url: str) -> None:
        self._sqs = client
        self._url = queue_url

    def park(self, body: str, *, group_id: str, message_id: str, reason: str) -> None:
        self._sqs().send_message(
            QueueUrl=self._url,
            MessageBody=body,
            MessageAttributes={"crossroute_failure": {"DataType": "String", "StringValue": reason}},
        )
