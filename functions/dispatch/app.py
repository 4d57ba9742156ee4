"""Send queue consumer: send requests (the queue, EventBridge ``SendMessage``, ``POST /messages``) and
failed WhatsApp statuses (EventBridge ``MessageStatusChanged``, for the SMS fallback R7). What a message
means, how it is retried and how it is dead-lettered on its last receive (R12): ``crossroute.send_queue``."""

from functools import cache
from typing import TYPE_CHECKING

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from crossroute import privacy
from crossroute.bus import EventBridgePublisher
from crossroute.config import RegistrySource, optional_env, require_env
from crossroute.dispatch import Dispatch
from crossroute.metrics import EmfMetrics
from crossroute.ports import DeadLetters, Delivery
from crossroute.routing.pacing import Pacer
from crossroute.send_queue import SendConsumer, SqsSendDeadLetters, SqsSendQueue
from crossroute.store import tables
from crossroute.store.sends import DynamoSendStore
from crossroute.tenant_setup import Endpoints, TenantSetups

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

logger = Logger()
metrics = EmfMetrics.for_function()
processor = BatchProcessor(event_type=EventType.SQS)
tables.bind(require_env("TABLE_NAME"))
# Log fingerprints and the pair-rate key of an address are keyed hashes: the key is read on first need.
privacy.configure_from_env()


@cache
def _sqs() -> "SQSClient":
    """Only a send retried later or carried forward needs the send queue: not every cold start."""
    return boto3.client("sqs")


@cache
def dead_letters() -> DeadLetters:
    """Only a record failing on its last receive needs the DLQ (R12: parked and reported)."""
    return SqsSendDeadLetters(lambda: _sqs(), require_env("SEND_DLQ_URL"))


dispatch = Dispatch(
    DynamoSendStore(),
    TenantSetups(
        RegistrySource.from_secret(
            require_env("TENANTS_SECRET_ID"), on_invalid=lambda reason: metrics.count("RegistryInvalid")
        ),
        Endpoints.from_env(),
    ),
    EventBridgePublisher(boto3.client("events"), require_env("EVENT_BUS_NAME")),
    # Each container's share of a number's rate: the send queue feeds at most this many at once.
    pacer=Pacer(int(optional_env("DISPATCH_CONCURRENCY", "10"))),
    metrics=metrics,
)
consumer = SendConsumer(
    dispatch,
    SqsSendQueue(lambda: _sqs(), require_env("SEND_QUEUE_URL")),
    dead_letters,
    # The send queue's maxReceiveCount (a test checks they agree): on that receive the function
    # dead-letters a failing record itself and reports its request (R12).
    max_receives=int(optional_env("SEND_MAX_RECEIVES", "8")),
)


def record_handler(record: SQSRecord) -> None:
    consumer.consume(
        Delivery(
            record.body,
            record.message_id,
            int(record.attributes.approximate_receive_count),
            receipt_handle=record.receipt_handle,
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
