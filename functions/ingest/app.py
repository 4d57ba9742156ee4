"""Inbound queue consumer: each queued provider event becomes facts about one customer
(``crossroute.ingest.InboundConsumer``: parsing, identity, the last-receive dead-lettering)."""

from functools import cache
from typing import TYPE_CHECKING

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from crossroute import privacy
from crossroute.bus import EventBridgePublisher
from crossroute.config import masking_key, optional_env, require_env
from crossroute.inbound_queue import SqsDeadLetters
from crossroute.ingest import InboundConsumer, Ingest
from crossroute.media_queue import SqsMediaJobs
from crossroute.metrics import EmfMetrics
from crossroute.ports import DeadLetters, Delivery
from crossroute.store import tables
from crossroute.store.identity_store import DynamoIdentityStore

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

logger = Logger()
metrics = EmfMetrics.for_function()
processor = SqsFifoPartialProcessor(skip_group_on_error=True)
tables.bind(require_env("TABLE_NAME"))


@cache
def _sqs() -> "SQSClient":
    """One SQS client per container, made on first need: a record failing for good (the DLQ) or a message
    with attachments (the media queue); not every cold start pays for it."""
    return boto3.client("sqs")


@cache
def dead_letters() -> DeadLetters:
    return SqsDeadLetters(_sqs(), require_env("INBOUND_DLQ_URL"))


# One key, read on first need: the erasure tombstones' keyed hashes, and the fingerprints in log lines.
key = masking_key(require_env("MASKING_KEY_SECRET_ID"))
privacy.configure(key)
ingest = Ingest(
    DynamoIdentityStore(masking_key=key),
    EventBridgePublisher(boto3.client("events"), require_env("EVENT_BUS_NAME")),
    media_jobs=SqsMediaJobs(_sqs, require_env("MEDIA_QUEUE_URL")),  # the media function copies them
)
consumer = InboundConsumer(
    ingest,
    dead_letters,
    max_receives=int(optional_env("INBOUND_MAX_RECEIVES", "5")),
    metrics=metrics,
)


def record_handler(record: SQSRecord) -> None:
    attributes = record.attributes
    consumer.consume(
        Delivery(
            record.body,
            record.message_id,
            int(attributes.approximate_receive_count),
            group_id=attributes.message_group_id or "",
        )
    )


@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    try:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    finally:
        metrics.flush()
