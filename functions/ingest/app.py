"""Inbound queue consumer: each queued provider event becomes facts about one customer.

FIFO batches: a failed record fails the rest of its message group (order per person is kept); the
queue redelivers them and, after ``maxReceiveCount``, parks them in the DLQ.
"""

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from crossroute.bus import EventBridgePublisher
from crossroute.config import require_env
from crossroute.ingest import Ingest
from crossroute.store import tables
from crossroute.store.identity_store import DynamoIdentityStore
from crossroute.webhooks.parse import parse

logger = Logger()
processor = SqsFifoPartialProcessor(skip_group_on_error=True)
tables.bind(require_env("TABLE_NAME"))
ingest = Ingest(
    DynamoIdentityStore(), EventBridgePublisher(boto3.client("events"), require_env("EVENT_BUS_NAME"))
)


def record_handler(record: SQSRecord) -> None:
    parsed = parse(record.body)
    outcome = ingest.handle(parsed.events)
    logger.info(
        "ingested",
        extra={
            "events": outcome.handled,
            "duplicates": outcome.duplicates,
            "retries": outcome.retries,
            "unattributed": outcome.unattributed,
            "rejected": parsed.rejected,
        },
    )


@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
