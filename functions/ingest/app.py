"""Inbound queue consumer: each queued provider event becomes facts about one customer.

FIFO batches: a failed record fails the rest of its message group (order per person is kept) and the
queue redelivers them. On its last receive (``INBOUND_MAX_RECEIVES``, the queue's ``maxReceiveCount``)
a record that fails again is put on the DLQ by this function and counted as done, so that the sender's
later records, held behind it, go on instead of being dead-lettered with it (docs/operations.md).
"""

import os
from functools import cache
from typing import TYPE_CHECKING

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from crossroute.bus import EventBridgePublisher
from crossroute.config import masking_key, require_env
from crossroute.inbound_queue import DeadLetters, SqsDeadLetters
from crossroute.ingest import Ingest
from crossroute.store import tables
from crossroute.store.identity_store import DynamoIdentityStore
from crossroute.webhooks.parse import parse

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

logger = Logger()
processor = SqsFifoPartialProcessor(skip_group_on_error=True)
tables.bind(require_env("TABLE_NAME"))
ingest = Ingest(
    DynamoIdentityStore(masking_key=masking_key(require_env("MASKING_KEY_SECRET_ID"))),
    EventBridgePublisher(boto3.client("events"), require_env("EVENT_BUS_NAME")),
)
MAX_RECEIVES = int(os.environ.get("INBOUND_MAX_RECEIVES", "5"))


@cache
def dead_letters() -> DeadLetters:
    """Only a record failing for good needs the DLQ: not every cold start pays for an SQS client."""
    client: SQSClient = boto3.client("sqs")
    return SqsDeadLetters(client, require_env("INBOUND_DLQ_URL"))


def record_handler(record: SQSRecord) -> None:
    try:
        _ingest(record)
    except Exception as exc:
        if int(record.attributes.approximate_receive_count) < MAX_RECEIVES:
            raise
        reason = type(exc).__name__  # never the message: it may quote content
        attributes = record.attributes
        dead_letters().park(
            record.body,
            group_id=attributes.message_group_id or "",
            message_id=record.message_id,
            reason=reason,
        )
        logger.warning(
            "record failed for good, dead-lettered", extra={"reason": reason, "id": record.message_id}
        )


def _ingest(record: SQSRecord) -> None:
    parsed = parse(record.body)
    outcome = ingest.handle(parsed.events)
    logger.info(
        "ingested",
        extra={
            "events": outcome.handled,
            "duplicates": outcome.duplicates,
            "retries": outcome.retries,
            "unattributed": outcome.unattributed,
            "erased": outcome.erased,
            "unstorable": outcome.unstorable,
            "rejected": parsed.rejected,
        },
    )


@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
