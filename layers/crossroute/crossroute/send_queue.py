"""The send queue: what its messages mean, and how its consumer retries.

A message body is one of:

- a send request (contract §7; docs/routing.md), put there by ``POST /messages`` or by a producer;
- an EventBridge event the bus's rules route here: ``SendMessage`` (its ``detail`` is a send request),
  or ``MessageStatusChanged`` for a failed WhatsApp message (R7: the SMS fallback);
- a follow-up ``{"crossroute:settle": <settlement>, "then": <body>}``: a send's outcome the table did not
  take when the provider answered, to record first; then ``then`` is handled again.

``SendConsumer`` handles one delivery: a request the providers refuse for now (``RetryLater``) comes
back after an exponential backoff with jitter (``retry_delay``), never the queue's fixed visibility
timeout; an outcome that could not be recorded (``Unsettled``) is carried forward as a follow-up.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crossroute.dispatch import Dispatch, Dispatched, RetryLater, Unsettled, retry_delay
from crossroute.log import child_logger
from crossroute.ports import Delivery, SendQueue

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

logger = child_logger(__name__)

FOLLOW_UP = "crossroute:settle"  # a follow-up: a settlement to record, then the body to handle again
MAX_DELAY = 900  # seconds: SQS's longest DelaySeconds and the backoff's ceiling


class SendConsumer:
    def __init__(self, dispatch: Dispatch, queue: SendQueue) -> None:
        self._dispatch = dispatch
        self._queue = queue

    def consume(self, delivery: Delivery) -> None:
        """Handle one message; raises to have the queue deliver it again."""
        body = json.loads(delivery.body)
        if isinstance(body, dict) and FOLLOW_UP in body:
            self._dispatch.settle(body[FOLLOW_UP])
            body = body["then"]
        try:
            self._handle(body)
        except RetryLater as exc:
            delay = retry_delay(delivery.receive_count, after=exc.after)
            self._queue.retry_later(delivery.receipt_handle, delay)
            logger.info("send refused for now, retried later", extra={"delay_s": delay})
            raise
        except Unsettled as exc:
            self._carry_forward(exc, body, delivery.receive_count)

    def _handle(self, body: Any) -> None:
        kind = body.get("detail-type") if isinstance(body, dict) else None
        result: Dispatched
        if kind == "MessageStatusChanged":  # a failed WhatsApp status (the rule filters): R7
            detail = body["detail"]
            code = next((e.get("code") for e in detail.get("errors") or []), None)
            result = self._dispatch.fallback(detail["tenant"], detail["provider"], detail["message_id"], code)
        else:
            result = self._dispatch.send(body["detail"] if kind == "SendMessage" else body)
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
